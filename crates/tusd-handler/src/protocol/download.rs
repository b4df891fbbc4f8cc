//! GET: downloads an upload, with Range support.
//!
//! A finished upload never changes, so downloading it takes no lock and any
//! number of downloads run side by side. An unfinished upload is read under
//! its lock just long enough to learn its offset; the bytes before the
//! offset are then streamed without the lock, since writes only append.

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap, HeaderValue, StatusCode};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use tokio_util::io::ReaderStream;

use crate::error::HandlerError;
use crate::protocol::core::settled_info;
use crate::state::{Origin, State};
use crate::{UploadId, UploadInfo};

/// Types a browser may render inline without risk of running script in our
/// origin; everything else is served as an attachment.
const INLINE_TYPES: &[&str] = &[
    "text/plain",
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/bmp",
    "image/webp",
    "image/avif",
    "audio/wave",
    "audio/wav",
    "audio/x-wav",
    "audio/webm",
    "audio/ogg",
    "audio/mpeg",
    "video/mp4",
    "video/webm",
    "video/ogg",
    "application/ogg",
];

pub async fn get(
    state: &State,
    id: &UploadId,
    req: Request,
    origin: &Origin,
) -> Result<Response, HandlerError> {
    if state.config().disable_download {
        return Err(HandlerError::MethodNotAllowed);
    }
    let info = settled_info(state, id, origin).await?;
    let size = info.offset;
    let (status, start, len) = match requested_range(req.headers(), size)? {
        Some((start, end)) => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        None => (StatusCode::OK, 0, size),
    };
    let reader = state.read_range(id, start, len).await?;
    let mut response = (status, Body::from_stream(ReaderStream::new(reader))).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if status == StatusCode::PARTIAL_CONTENT {
        let range = format!("bytes {start}-{}/{size}", start + len - 1);
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&range).expect("ascii"),
        );
    }
    let (content_type, disposition) = content_headers(&info);
    h.insert(header::CONTENT_TYPE, content_type);
    h.insert(header::CONTENT_DISPOSITION, disposition);
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}

/// The one byte range to serve, inclusive. A missing, malformed or
/// multi-range header means the whole upload (RFC 9110 lets a server ignore
/// Range); a well-formed range outside the upload is a 416.
fn requested_range(headers: &HeaderMap, size: u64) -> Result<Option<(u64, u64)>, HandlerError> {
    let Some(raw) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let Ok(parsed) = http_range_header::parse_range_header(raw) else {
        return Ok(None);
    };
    match parsed.validate(size) {
        Ok(ranges) if ranges.len() == 1 => Ok(Some((*ranges[0].start(), *ranges[0].end()))),
        Ok(_) => Ok(None),
        Err(_) => Err(HandlerError::RangeNotSatisfiable { size }),
    }
}

/// Content-Type from the `filetype` metadata when it looks like a media
/// type, and a Content-Disposition that is `inline` only for safe types.
fn content_headers(info: &UploadInfo) -> (HeaderValue, HeaderValue) {
    let declared = info
        .metadata
        .get("filetype")
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| is_media_type(t));
    let content_type = declared
        .clone()
        .unwrap_or_else(|| "application/octet-stream".into());
    let inline = declared.is_some_and(|t| INLINE_TYPES.contains(&t.as_str()));
    let mut disposition = String::from(if inline { "inline" } else { "attachment" });
    if let Some(name) = info.metadata.get("filename").filter(|n| !n.is_empty()) {
        let plain: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let encoded = utf8_percent_encode(name, NON_ALPHANUMERIC);
        disposition.push_str(&format!(
            "; filename=\"{plain}\"; filename*=UTF-8''{encoded}"
        ));
    }
    (
        HeaderValue::from_str(&content_type).expect("checked media type"),
        HeaderValue::from_str(&disposition).expect("ascii by construction"),
    )
}

fn is_media_type(t: &str) -> bool {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    matches!(t.split_once('/'), Some((a, b)) if token(a) && token(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(pairs: &[(&str, &str)]) -> UploadInfo {
        UploadInfo {
            metadata: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..UploadInfo::default()
        }
    }

    #[test]
    fn only_safe_types_are_inline() {
        let (t, d) = content_headers(&info(&[("filetype", "image/png"), ("filename", "a.png")]));
        assert_eq!(t, "image/png");
        assert!(d
            .to_str()
            .unwrap()
            .starts_with("inline; filename=\"a.png\""));
        let (t, d) = content_headers(&info(&[("filetype", "text/html")]));
        assert_eq!(t, "text/html");
        assert_eq!(d, "attachment");
        let (t, _) = content_headers(&info(&[("filetype", "bad type\r\n")]));
        assert_eq!(t, "application/octet-stream");
    }

    #[test]
    fn filenames_cannot_break_the_header() {
        let (_, d) = content_headers(&info(&[("filename", "a\"b\\c\r\nd é.txt")]));
        let d = d.to_str().unwrap();
        assert!(d.contains("filename=\"a_b_c__d _.txt\""), "{d}");
        assert!(
            d.contains("filename*=UTF-8''a%22b%5Cc%0D%0Ad%20%C3%A9%2Etxt"),
            "{d}"
        );
    }

    #[test]
    fn ranges() {
        let mut h = HeaderMap::new();
        assert_eq!(requested_range(&h, 10).unwrap(), None);
        h.insert(header::RANGE, HeaderValue::from_static("bytes=2-4"));
        assert_eq!(requested_range(&h, 10).unwrap(), Some((2, 4)));
        h.insert(header::RANGE, HeaderValue::from_static("bytes=-3"));
        assert_eq!(requested_range(&h, 10).unwrap(), Some((7, 9)));
        h.insert(header::RANGE, HeaderValue::from_static("bytes=20-30"));
        assert!(requested_range(&h, 10).is_err());
        h.insert(header::RANGE, HeaderValue::from_static("pages=1"));
        assert_eq!(requested_range(&h, 10).unwrap(), None);
    }
}
