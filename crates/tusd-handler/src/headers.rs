//! Parsers for every tus request header: each header has exactly one here.
//!
//! The parsers are strict because a lenient reading of a length or offset is
//! how bytes end up in the wrong place: anything that is not exactly what the
//! spec allows is a 400 with a one-line reason, before any state is touched.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::{header, HeaderMap};

use crate::error::HandlerError;
use crate::protocol::checksum::{Algorithm, Checksum};
use crate::UploadId;

/// The only protocol version this server speaks.
pub const TUS_VERSION: &str = "1.0.0";

/// Largest length or offset accepted: tusd stores sizes as Go `int64`, and
/// shared upload directories must stay readable by it.
pub const MAX_LENGTH: u64 = i64::MAX as u64;

/// The one value of header `name`. A header sent twice is refused: two
/// lengths or two offsets leave no safe reading.
fn text<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, HandlerError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(HandlerError::bad_request(format!("{name} is sent twice")));
    }
    value
        .to_str()
        .map(Some)
        .map_err(|_| HandlerError::bad_request(format!("{name} is not visible ASCII")))
}

/// A non-negative decimal integer with no sign, spaces or leading garbage.
fn non_negative(name: &str, value: &str) -> Result<u64, HandlerError> {
    let invalid = || HandlerError::bad_request(format!("{name} must be a non-negative integer"));
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    match value.parse::<u64>() {
        Ok(n) if n <= MAX_LENGTH => Ok(n),
        _ => Err(HandlerError::bad_request(format!(
            "{name} exceeds the largest supported value {MAX_LENGTH}"
        ))),
    }
}

/// `Tus-Resumable` must name the version this server speaks (412 otherwise).
pub fn check_tus_resumable(headers: &HeaderMap) -> Result<(), HandlerError> {
    match headers.get("tus-resumable") {
        Some(v) if v == TUS_VERSION => Ok(()),
        _ => Err(HandlerError::UnsupportedVersion),
    }
}

pub fn upload_length(headers: &HeaderMap) -> Result<Option<u64>, HandlerError> {
    text(headers, "upload-length")?
        .map(|v| non_negative("Upload-Length", v))
        .transpose()
}

/// `Upload-Offset` is required wherever it is read.
pub fn upload_offset(headers: &HeaderMap) -> Result<u64, HandlerError> {
    match text(headers, "upload-offset")? {
        Some(v) => non_negative("Upload-Offset", v),
        None => Err(HandlerError::bad_request("missing Upload-Offset header")),
    }
}

/// `Upload-Defer-Length: 1` is the only value the spec allows.
pub fn upload_defer_length(headers: &HeaderMap) -> Result<bool, HandlerError> {
    match text(headers, "upload-defer-length")? {
        None => Ok(false),
        Some("1") => Ok(true),
        Some(_) => Err(HandlerError::bad_request("Upload-Defer-Length must be 1")),
    }
}

pub fn content_length(headers: &HeaderMap) -> Result<Option<u64>, HandlerError> {
    text(headers, header::CONTENT_LENGTH.as_str())?
        .map(|v| non_negative("Content-Length", v))
        .transpose()
}

/// True when the body is declared as upload bytes.
pub fn is_offset_octet_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim())
        .is_some_and(|v| v.eq_ignore_ascii_case("application/offset+octet-stream"))
}

/// `Upload-Metadata`: comma-separated `key base64value` pairs; the value and
/// its separating space may be left out; keys are unique and non-empty.
pub fn upload_metadata(headers: &HeaderMap) -> Result<BTreeMap<String, String>, HandlerError> {
    let mut metadata = BTreeMap::new();
    let Some(raw) = text(headers, "upload-metadata")? else {
        return Ok(metadata);
    };
    if raw.trim().is_empty() {
        return Ok(metadata);
    }
    for pair in raw.split(',') {
        let pair = pair.trim_matches(' ');
        let (key, value) = match pair.split_once(' ') {
            Some((k, v)) => (k, v),
            None => (pair, ""),
        };
        if key.is_empty() {
            return Err(HandlerError::bad_request(
                "Upload-Metadata has an empty key",
            ));
        }
        if value.contains(' ') {
            return Err(HandlerError::bad_request(format!(
                "Upload-Metadata value for {key:?} contains a space"
            )));
        }
        let decoded = STANDARD.decode(value).map_err(|_| {
            HandlerError::bad_request(format!(
                "Upload-Metadata value for {key:?} is not valid base64"
            ))
        })?;
        let decoded = String::from_utf8(decoded).map_err(|_| {
            HandlerError::bad_request(format!("Upload-Metadata value for {key:?} is not UTF-8"))
        })?;
        if metadata.insert(key.to_owned(), decoded).is_some() {
            return Err(HandlerError::bad_request(format!(
                "Upload-Metadata key {key:?} appears twice"
            )));
        }
    }
    Ok(metadata)
}

/// The inverse of [`upload_metadata`], for HEAD responses.
pub fn encode_metadata(metadata: &BTreeMap<String, String>) -> String {
    metadata
        .iter()
        .map(|(k, v)| {
            if v.is_empty() {
                k.clone()
            } else {
                format!("{k} {}", STANDARD.encode(v))
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// What `Upload-Concat` asks for on creation.
#[derive(Debug, PartialEq, Eq)]
pub enum Concat {
    None,
    Partial,
    /// The partial uploads to join, in order.
    Final(Vec<UploadId>),
}

/// `Upload-Concat: partial` or `final;URL URL…`, where each URL is absolute
/// or a path under `base_path`.
pub fn upload_concat(headers: &HeaderMap, base_path: &str) -> Result<Concat, HandlerError> {
    let Some(raw) = text(headers, "upload-concat")? else {
        return Ok(Concat::None);
    };
    if raw == "partial" {
        return Ok(Concat::Partial);
    }
    let Some(list) = raw.strip_prefix("final;") else {
        return Err(HandlerError::bad_request(
            "Upload-Concat must be \"partial\" or \"final;<urls>\"",
        ));
    };
    let mut ids = Vec::new();
    for url in list.split(' ').filter(|s| !s.is_empty()) {
        let path = match url.split_once("://") {
            Some((_, rest)) => rest.find('/').map_or("", |i| &rest[i..]),
            None => url,
        };
        let id = path
            .strip_prefix(base_path)
            .and_then(UploadId::parse)
            .ok_or_else(|| {
                HandlerError::bad_request(format!(
                    "Upload-Concat names {url:?}, which is not an upload of this server"
                ))
            })?;
        ids.push(id);
    }
    if ids.is_empty() {
        return Err(HandlerError::bad_request(
            "Upload-Concat final names no partial uploads",
        ));
    }
    Ok(Concat::Final(ids))
}

/// `Upload-Checksum: <algorithm> <base64 digest>`.
pub fn upload_checksum(headers: &HeaderMap) -> Result<Option<Checksum>, HandlerError> {
    let Some(raw) = text(headers, "upload-checksum")? else {
        return Ok(None);
    };
    let (name, digest) = raw.split_once(' ').ok_or_else(|| {
        HandlerError::bad_request("Upload-Checksum must be \"<algorithm> <base64>\"")
    })?;
    let algorithm = Algorithm::from_name(name).ok_or_else(|| {
        HandlerError::bad_request(format!("unsupported checksum algorithm {name:?}"))
    })?;
    let expected = STANDARD
        .decode(digest)
        .map_err(|_| HandlerError::bad_request("Upload-Checksum digest is not valid base64"))?;
    Ok(Some(Checksum {
        algorithm,
        expected,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn lengths_are_strict() {
        assert_eq!(upload_length(&with("upload-length", "0")).unwrap(), Some(0));
        assert_eq!(
            upload_length(&with("upload-length", "42")).unwrap(),
            Some(42)
        );
        for bad in [
            "-1",
            "+1",
            " 1",
            "1.0",
            "0x10",
            "",
            "abc",
            "99999999999999999999",
            "9223372036854775808",
        ] {
            assert!(
                upload_length(&with("upload-length", bad)).is_err(),
                "{bad:?}"
            );
        }
        assert!(upload_offset(&HeaderMap::new()).is_err());
        let mut twice = with("upload-length", "3");
        twice.append("upload-length", HeaderValue::from_static("3"));
        assert!(upload_length(&twice).is_err());
    }

    #[test]
    fn metadata_parses_and_rejects() {
        let m =
            upload_metadata(&with("upload-metadata", "filename d29ybGQ=,empty,is_ok ")).unwrap();
        assert_eq!(m["filename"], "world");
        assert_eq!(m["empty"], "");
        assert_eq!(m["is_ok"], "");
        for bad in [
            "a !!!",
            "a d29ybGQ=,a d29ybGQ=",
            ",a",
            "a d29y bGQ=",
            "a d29ybGQ",
        ] {
            assert!(
                upload_metadata(&with("upload-metadata", bad)).is_err(),
                "{bad:?}"
            );
        }
        assert_eq!(
            upload_metadata(&with("upload-metadata", &encode_metadata(&m))).unwrap(),
            m
        );
    }

    #[test]
    fn concat_accepts_paths_and_urls() {
        let h = with(
            "upload-concat",
            "final;/files/abc http://example.test/files/def",
        );
        let Concat::Final(ids) = upload_concat(&h, "/files/").unwrap() else {
            panic!()
        };
        assert_eq!(
            ids.iter().map(|i| i.as_str()).collect::<Vec<_>>(),
            ["abc", "def"]
        );
        assert!(upload_concat(&with("upload-concat", "final;/other/abc"), "/files/").is_err());
        assert!(upload_concat(&with("upload-concat", "final;/files/../x"), "/files/").is_err());
        assert!(upload_concat(&with("upload-concat", "final;"), "/files/").is_err());
        assert!(upload_concat(&with("upload-concat", "whole"), "/files/").is_err());
    }

    #[test]
    fn checksum_names_known_algorithms_only() {
        assert!(upload_checksum(&with(
            "upload-checksum",
            "sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0="
        ))
        .unwrap()
        .is_some());
        assert!(upload_checksum(&with("upload-checksum", "crc32 AAAA")).is_err());
        assert!(upload_checksum(&with("upload-checksum", "sha1")).is_err());
    }

    #[test]
    fn content_type_match_ignores_parameters_and_case() {
        assert!(is_offset_octet_stream(&with(
            "content-type",
            "application/offset+octet-stream"
        )));
        assert!(is_offset_octet_stream(&with(
            "content-type",
            "Application/Offset+Octet-Stream; x=y"
        )));
        assert!(!is_offset_octet_stream(&with(
            "content-type",
            "application/octet-stream"
        )));
    }
}
