//! The checksum extension: a PATCH may carry the digest of its body; a
//! mismatch discards the chunk (460) and leaves the offset where it was.

use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// The algorithms advertised in `Tus-Checksum-Algorithm`.
pub const ALGORITHMS: &str = "md5,sha1,sha256";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Sha1,
    Sha256,
}

impl Algorithm {
    pub fn from_name(name: &str) -> Option<Algorithm> {
        match name {
            "md5" => Some(Algorithm::Md5),
            "sha1" => Some(Algorithm::Sha1),
            "sha256" => Some(Algorithm::Sha256),
            _ => None,
        }
    }

    pub fn hasher(self) -> Hasher {
        match self {
            Algorithm::Md5 => Hasher::Md5(Md5::new()),
            Algorithm::Sha1 => Hasher::Sha1(Sha1::new()),
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
        }
    }
}

/// What a request's `Upload-Checksum` claims about its body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checksum {
    pub algorithm: Algorithm,
    pub expected: Vec<u8>,
}

/// A running digest over the bytes that reached the store.
pub enum Hasher {
    Md5(Md5),
    Sha1(Sha1),
    Sha256(Sha256),
}

impl Hasher {
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Md5(h) => h.update(bytes),
            Hasher::Sha1(h) => h.update(bytes),
            Hasher::Sha256(h) => h.update(bytes),
        }
    }

    pub fn finish(self) -> Vec<u8> {
        match self {
            Hasher::Md5(h) => h.finalize().to_vec(),
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_match_known_vectors() {
        let mut h = Algorithm::Sha1.hasher();
        h.update(b"hello ");
        h.update(b"world");
        assert_eq!(
            h.finish(),
            [
                0x2a, 0xae, 0x6c, 0x35, 0xc9, 0x4f, 0xcf, 0xb4, 0x15, 0xdb, 0xe9, 0x5f, 0x40, 0x8b,
                0x9c, 0xe9, 0x1e, 0xe8, 0x46, 0xed
            ]
        );
        assert_eq!(Algorithm::Md5.hasher().finish().len(), 16);
        assert_eq!(Algorithm::Sha256.hasher().finish().len(), 32);
        assert_eq!(Algorithm::from_name("crc32"), None);
    }
}
