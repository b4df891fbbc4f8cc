//! Self-signed TLS certificates for the hook tests, made fresh by each test
//! (rcgen), valid for 127.0.0.1 and localhost, written as PEM files.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// A certificate and its private key, as PEM files.
pub struct SelfSigned {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl SelfSigned {
    /// `dir/NAME.crt` and `dir/NAME.key`.
    pub fn new(dir: &Path, name: &str) -> SelfSigned {
        let made = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
        ])
        .expect("generating a self-signed certificate");
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
        SelfSigned { cert, key }
    }

    pub fn cert_path(&self) -> &str {
        self.cert.to_str().unwrap()
    }

    pub fn key_path(&self) -> &str {
        self.key.to_str().unwrap()
    }
}
