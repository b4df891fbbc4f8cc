//! CORS the way tusd does it: an Origin matching a regular expression is
//! echoed back, a preflight is answered 200 with the allowed methods and
//! headers on top of the tus OPTIONS answer, and the tus headers are always
//! allowed and exposed.
//!
//! Written here rather than taken from tower-http because tower-http's layer
//! answers every OPTIONS request as a preflight, which would swallow the tus
//! OPTIONS request (the one that reports `Tus-Version` and `Tus-Extension`).

use std::sync::Arc;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use regex::Regex;

use crate::cli::Cli;

/// Request headers a tus client sends.
const TUS_REQUEST_HEADERS: &str = "Authorization, Origin, X-Requested-With, X-Request-ID, \
    X-HTTP-Method-Override, Content-Type, Upload-Length, Upload-Offset, Tus-Resumable, \
    Upload-Metadata, Upload-Defer-Length, Upload-Concat, Upload-Checksum";

/// Response headers a tus client must be able to read.
const TUS_RESPONSE_HEADERS: &str = "Upload-Offset, Location, Upload-Length, Tus-Version, \
    Tus-Resumable, Tus-Max-Size, Tus-Extension, Upload-Metadata, Upload-Defer-Length, \
    Upload-Concat, Upload-Expires, Tus-Checksum-Algorithm";

/// The CORS policy from the server's flags.
pub struct Cors {
    origin: Regex,
    allow_methods: HeaderValue,
    allow_headers: HeaderValue,
    expose_headers: HeaderValue,
    max_age: HeaderValue,
    credentials: bool,
}

fn joined(base: &str, extra: &str, flag: &str) -> Result<HeaderValue, String> {
    let value = if extra.trim().is_empty() {
        base.to_owned()
    } else {
        format!("{base}, {}", extra.trim())
    };
    HeaderValue::from_str(&value)
        .map_err(|_| format!("{flag} contains characters not allowed in a header"))
}

impl Cors {
    /// `None` with `--disable-cors`.
    pub fn from_cli(cli: &Cli) -> Result<Option<Arc<Cors>>, String> {
        if cli.disable_cors {
            return Ok(None);
        }
        let origin = Regex::new(&format!("^(?:{})$", cli.cors_allow_origin))
            .map_err(|e| format!("--cors-allow-origin is not a valid regular expression: {e}"))?;
        if cli.cors_allow_credentials && origin.is_match("https://any-site.example") {
            // Every origin's page could then upload and read uploads with the
            // user's cookies: allowed (tusd allows it too), never silently.
            tracing::warn!(
                allow_origin = %cli.cors_allow_origin,
                "--cors-allow-credentials with a --cors-allow-origin that matches any site: every web page may send credentialed requests; name your origins"
            );
        }
        Ok(Some(Arc::new(Cors {
            origin,
            allow_methods: joined(&cli.cors_allow_methods, "", "--cors-allow-methods")?,
            allow_headers: joined(
                TUS_REQUEST_HEADERS,
                &cli.cors_allow_headers,
                "--cors-allow-headers",
            )?,
            expose_headers: joined(
                TUS_RESPONSE_HEADERS,
                &cli.cors_expose_headers,
                "--cors-expose-headers",
            )?,
            max_age: HeaderValue::from(cli.cors_max_age),
            credentials: cli.cors_allow_credentials,
        })))
    }

    fn allowed_origin(&self, headers: &HeaderMap) -> Option<HeaderValue> {
        let origin = headers.get(header::ORIGIN)?;
        self.origin
            .is_match(origin.to_str().ok()?)
            .then(|| origin.clone())
    }

    fn common(&self, origin: HeaderValue, h: &mut HeaderMap) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.append(header::VARY, HeaderValue::from_static("Origin"));
        if self.credentials {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }
}

/// The middleware: preflights get the allow headers, other requests the
/// expose headers; both only for an allowed Origin.
pub async fn apply(cors: Arc<Cors>, req: Request, next: Next) -> Response {
    let Some(origin) = cors.allowed_origin(req.headers()) else {
        return next.run(req).await;
    };
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        // As tusd: the preflight is also a tus OPTIONS (Tus-Resumable,
        // Tus-Version, ...), answered 200 because some browsers take any
        // other status, 204 included, as a refusal.
        let mut response = next.run(req).await;
        *response.status_mut() = StatusCode::OK;
        let h = response.headers_mut();
        cors.common(origin, h);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            cors.allow_methods.clone(),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            cors.allow_headers.clone(),
        );
        h.insert(header::ACCESS_CONTROL_MAX_AGE, cors.max_age.clone());
        return response;
    }
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    cors.common(origin, h);
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        cors.expose_headers.clone(),
    );
    response
}
