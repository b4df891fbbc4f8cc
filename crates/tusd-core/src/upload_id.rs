//! Upload ids as they travel through URLs, stores and lock names.
//!
//! An id comes from a URL path segment, so it is attacker-controlled. The
//! handler accepts only ids of a shape some store could have generated, which
//! means no store ever sees a path separator, `..`, NUL, a space, a percent
//! escape or an empty name, and no lock name can nest inside another id's
//! range.
//!
//! The alphabet is the union of what the stores generate: the file store's
//! ids are 32 hex digits (tusd's), the S3 store's are tusd's
//! `{object id}+{multipart upload id}`, and multipart upload ids are chosen
//! by the S3 server: hex on Garage, base64url-like with `.`, `_` and `-` on
//! AWS (and `~` in its newer `2~...` form, which Ceph uses too), `=` padding
//! on some others. Each store refuses (as `NotFound`) any id outside the
//! alphabet it generates itself, since a character that is harmless in one
//! store may be meaningful in another (a `.` in a file name, for one).

use std::fmt;

/// The longest id the handler accepts; longer ones are answered with 404.
/// Room for a 32-character object id, `+`, and a multipart upload id as long
/// as AWS's (which reach about 150 characters).
pub const MAX_ID_LEN: usize = 255;

/// A validated upload id: 1 to [`MAX_ID_LEN`] ASCII letters, digits and the
/// marks in [`is_id_mark`], not starting with `.` and not containing `..`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UploadId(String);

/// The characters besides ASCII letters and digits an id may contain: what
/// S3 servers put in multipart upload ids, and the `+` tusd's S3 store joins
/// the two halves with. None of them is a path separator, a percent escape
/// or whitespace, and all are safe in a URL path segment as they are.
pub fn is_id_mark(b: u8) -> bool {
    matches!(b, b'-' | b'_' | b'.' | b'~' | b'+' | b'=')
}

impl UploadId {
    /// Accepts `raw` only when every character is one a store generates.
    pub fn parse(raw: &str) -> Option<UploadId> {
        let ok = !raw.is_empty()
            && raw.len() <= MAX_ID_LEN
            && !raw.starts_with('.')
            && !raw.contains("..")
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || is_id_mark(b));
        ok.then(|| UploadId(raw.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_generated_shapes() {
        assert!(UploadId::parse("0123456789abcdef0123456789abcdef").is_some());
        assert!(UploadId::parse("a-b_C").is_some());
        // Garage: hex multipart upload ids.
        assert!(UploadId::parse(&format!("{}+{}", "a".repeat(32), "0f".repeat(32))).is_some());
        // AWS: base64url-like, with dots, and the newer 2~ form.
        assert!(UploadId::parse(
            "4a3b+.O0CiGUBNtbrAzmHBVt.jVOWnAjCeVEk4gRfZwKfC2v6O1bMRdB3nt3mbsN1emCdZJv0RkkPe7h.HH0Hj3YGFw--"
        )
        .is_some());
        assert!(UploadId::parse("4a3b+2~iCw_lDY8VoNxIK2cEUifB4zeFaa8tb9").is_some());
        assert!(UploadId::parse("4a3b+YWJj=").is_some());
        assert!(UploadId::parse(&"a".repeat(MAX_ID_LEN)).is_some());
    }

    #[test]
    fn refuses_anything_a_store_would_not_generate() {
        for bad in [
            "", "a/b", "..", "a..b", "a\\b", "a\0b", "a b", "a%2Fb", "é", ".info", ".", ".a",
            "a\nb", "a?b", "a#b", "a:b", "a*b",
        ] {
            assert!(UploadId::parse(bad).is_none(), "{bad:?} accepted");
        }
        assert!(UploadId::parse(&"a".repeat(MAX_ID_LEN + 1)).is_none());
    }
}
