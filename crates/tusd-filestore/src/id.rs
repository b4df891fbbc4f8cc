//! Fresh upload ids.
//!
//! tusd's `uid` package draws 128 random bits and hex-encodes them; ids made
//! here have the same shape, so both servers' ids look alike in one
//! directory. 128 bits from a CSPRNG make ids unguessable, which matters
//! because knowing an id is all a client needs to append to an upload.

use tusd_core::UploadId;

/// A new random id: 32 lowercase hex characters.
pub(crate) fn new_upload_id() -> UploadId {
    let bits: u128 = rand::random();
    UploadId::parse(&format!("{bits:032x}")).expect("hex digits are a valid upload id")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_32_lowercase_hex_and_differ() {
        let a = new_upload_id();
        let b = new_upload_id();
        assert_eq!(a.as_str().len(), 32);
        assert!(a
            .as_str()
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
        assert_ne!(a, b);
    }
}
