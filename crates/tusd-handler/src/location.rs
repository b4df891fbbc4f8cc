//! Building the URL of an upload for `Location` and `Upload-Concat`.
//!
//! Behind a proxy the client knows the server by the proxy's host and
//! scheme, so with `behind_proxy` the `Forwarded` header (RFC 7239) and then
//! `X-Forwarded-Host` / `X-Forwarded-Proto` override what the connection
//! says. Without it, those headers are ignored: a client must not be able to
//! point other clients' uploads at a host of its choosing.

use http::{header, HeaderMap};

use crate::UploadId;

/// The absolute URL of upload `id`, or its path when no host is known.
pub fn upload_url(
    headers: &HeaderMap,
    behind_proxy: bool,
    base_path: &str,
    id: &UploadId,
) -> String {
    let mut host = text(headers, header::HOST.as_str());
    let mut proto = None;
    if behind_proxy {
        if let Some(forwarded) = text(headers, "forwarded") {
            // Only the first element: the one the outermost proxy added.
            let first = forwarded.split(',').next().unwrap_or("");
            for pair in first.split(';') {
                if let Some((k, v)) = pair.trim().split_once('=') {
                    let v = v.trim_matches('"');
                    match k.to_ascii_lowercase().as_str() {
                        "host" => host = Some(v),
                        "proto" => proto = Some(v),
                        _ => {}
                    }
                }
            }
        }
        if let Some(h) = text(headers, "x-forwarded-host") {
            host = Some(h.split(',').next().unwrap_or(h).trim());
        }
        if let Some(p) = text(headers, "x-forwarded-proto") {
            proto = Some(p.split(',').next().unwrap_or(p).trim());
        }
    }
    let proto = match proto {
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        _ => "http",
    };
    match host.filter(|h| is_host(h)) {
        Some(host) => format!("{proto}://{host}{base_path}{id}"),
        None => format!("{base_path}{id}"),
    }
}

fn text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A host or host:port: letters, digits, `.`, `-`, `:` and IPv6 brackets only.
fn is_host(h: &str) -> bool {
    !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn proxy_headers_only_count_behind_a_proxy() {
        let id = UploadId::parse("abc").unwrap();
        let h = headers(&[
            ("host", "internal:8080"),
            ("x-forwarded-host", "uploads.example"),
            ("x-forwarded-proto", "https"),
        ]);
        assert_eq!(
            upload_url(&h, false, "/files/", &id),
            "http://internal:8080/files/abc"
        );
        assert_eq!(
            upload_url(&h, true, "/files/", &id),
            "https://uploads.example/files/abc"
        );
        let h = headers(&[
            ("host", "internal"),
            (
                "forwarded",
                "for=1.2.3.4;host=\"a.example\";proto=https, host=b",
            ),
        ]);
        assert_eq!(
            upload_url(&h, true, "/files/", &id),
            "https://a.example/files/abc"
        );
        let h = headers(&[("host", "evil/x")]);
        assert_eq!(upload_url(&h, false, "/files/", &id), "/files/abc");
    }
}
