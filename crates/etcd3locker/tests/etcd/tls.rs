//! A cluster reached over TLS with client certificates: `connect` with a CA
//! file, a client certificate and key locks; without the client
//! certificate it is a clear error. Certificates are made by `openssl`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use etcd3locker::{connect, ConnectOptions, Etcd3Locker};
use tusd_core::Locker;
use tusd_testsupport::{etcd_bin, ports::free_port};

use crate::{id, in_secs};

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A CA, and a certificate for 127.0.0.1 signed by it, usable by both the
/// server and the client.
fn make_certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=tusd-test-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "node.key",
            "-out",
            "node.csr",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "node.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
            "-out",
            "node.pem",
        ],
    );
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn locks_over_tls_with_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_certificates(d);
    let (client_port, peer_port) = (free_port(), free_port());
    let endpoint = format!("https://127.0.0.1:{client_port}");
    let file = |name: &str| d.join(name).display().to_string();
    let _etcd = KillOnDrop(
        Command::new(etcd_bin())
            .arg(format!("--data-dir={}", file("data")))
            .arg(format!("--listen-client-urls={endpoint}"))
            .arg(format!("--advertise-client-urls={endpoint}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"
            ))
            .arg(format!(
                "--initial-cluster=default=http://127.0.0.1:{peer_port}"
            ))
            .arg(format!("--cert-file={}", file("node.pem")))
            .arg(format!("--key-file={}", file("node.key")))
            .arg(format!("--trusted-ca-file={}", file("ca.pem")))
            .arg("--client-cert-auth")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd"),
    );

    let mut options = ConnectOptions::new(vec![endpoint.clone()]);
    options.ca_file = Some(d.join("ca.pem"));
    options.cert_file = Some(d.join("node.pem"));
    options.key_file = Some(d.join("node.key"));
    options.connect_timeout = Duration::from_secs(2);
    let mut client = None;
    for _ in 0..30 {
        if let Ok(c) = connect(&options).await {
            client = Some(c);
            break;
        }
    }
    let locker = Etcd3Locker::new(client.expect("never connected over TLS"));
    let lock = locker.lock(&id("over-tls"), in_secs(10)).await.unwrap();
    assert!(crate::token(&lock) > 0);
    lock.unlock().await.unwrap();
    locker.shutdown().await;

    // The server verifies clients: without a certificate, no connection.
    options.cert_file = None;
    options.key_file = None;
    let error = connect(&options)
        .await
        .err()
        .expect("connected without a client certificate");
    assert!(error.to_string().contains(&endpoint), "{error}");
}
