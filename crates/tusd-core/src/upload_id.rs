//! Upload ids as they travel through URLs, stores and lock names.
//!
//! An id comes from a URL path segment, so it is attacker-controlled. The
//! handler accepts only ids of the shape a store could have generated, which
//! means no store ever sees a path separator, `..`, NUL or an empty name, and
//! no lock name can nest inside another id's range.

use std::fmt;

/// The longest id the handler accepts; longer ones are answered with 404.
pub const MAX_ID_LEN: usize = 128;

/// A validated upload id: 1 to [`MAX_ID_LEN`] ASCII letters, digits, `-` or `_`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UploadId(String);

impl UploadId {
    /// Accepts `raw` only when every character is one a store generates.
    pub fn parse(raw: &str) -> Option<UploadId> {
        let ok = !raw.is_empty()
            && raw.len() <= MAX_ID_LEN
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
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
    }

    #[test]
    fn refuses_anything_a_store_would_not_generate() {
        for bad in [
            "", "a/b", "..", "a..b", "a\\b", "a\0b", "a b", "a%2Fb", "é", ".info",
        ] {
            assert!(UploadId::parse(bad).is_none(), "{bad:?} accepted");
        }
        assert!(UploadId::parse(&"a".repeat(MAX_ID_LEN + 1)).is_none());
    }
}
