//! CORS the way tusd does it, so a browser client on another origin can
//! upload: an `Origin` matching a regular expression is echoed back, a
//! preflight is answered 200 with the allowed methods and headers on top of
//! the tus OPTIONS answer, and the tus headers are always allowed and
//! exposed.
//!
//! Written here rather than taken from tower-http because tower-http's
//! `CorsLayer` answers every OPTIONS request carrying
//! `Access-Control-Request-Method` by itself, without calling the handler:
//! the preflight would then lack the tus OPTIONS headers (`Tus-Version`,
//! `Tus-Extension`, ...) that tusd sends with it.
//!
//! [`CorsConfig`] is the policy, in the words of tusd's flags; [`layer`]
//! checks it and turns it into middleware for an axum [`Router`](axum::Router).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::{FromFnLayer, Next};
use axum::response::Response;
use futures::future::BoxFuture;
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use regex::Regex;

/// Request headers a tus client sends; always allowed.
pub const TUS_REQUEST_HEADERS: &str = "Authorization, Origin, X-Requested-With, X-Request-ID, \
    X-HTTP-Method-Override, Content-Type, Upload-Length, Upload-Offset, Tus-Resumable, \
    Upload-Metadata, Upload-Defer-Length, Upload-Concat, Upload-Checksum";

/// Response headers a tus client must be able to read; always exposed.
pub const TUS_RESPONSE_HEADERS: &str = "Upload-Offset, Location, Upload-Length, Tus-Version, \
    Tus-Resumable, Tus-Max-Size, Tus-Extension, Upload-Metadata, Upload-Defer-Length, \
    Upload-Concat, Upload-Expires, Tus-Checksum-Algorithm";

/// [`CorsConfig::allow_origin`] unless set: any origin, as tusd.
pub const DEFAULT_ALLOW_ORIGIN: &str = ".*";
/// [`CorsConfig::allow_methods`] unless set: every method tus uses.
pub const DEFAULT_ALLOW_METHODS: &str = "POST, HEAD, PATCH, OPTIONS, GET, DELETE";
/// [`CorsConfig::max_age`] unless set, in seconds: one day.
pub const DEFAULT_MAX_AGE: u64 = 86400;

/// Which cross-origin requests get CORS headers, and which headers; the
/// defaults are tusd's.
#[derive(Clone, Debug)]
pub struct CorsConfig {
    /// A regular expression the whole `Origin` must match (it is anchored
    /// at both ends); other origins get no CORS headers at all.
    pub allow_origin: String,
    /// Send `Access-Control-Allow-Credentials: true`, so pages may send
    /// cookies and read the answers. With an `allow_origin` that matches any
    /// site that lets every web page do so; [`layer`] logs a warning then.
    pub allow_credentials: bool,
    /// `Access-Control-Allow-Methods` of a preflight answer.
    pub allow_methods: String,
    /// Request headers allowed besides [`TUS_REQUEST_HEADERS`],
    /// comma-separated; may be empty.
    pub allow_headers: String,
    /// How long a browser may cache a preflight answer, in seconds.
    pub max_age: u64,
    /// Response headers exposed besides [`TUS_RESPONSE_HEADERS`],
    /// comma-separated; may be empty.
    pub expose_headers: String,
}

impl Default for CorsConfig {
    fn default() -> CorsConfig {
        CorsConfig {
            allow_origin: DEFAULT_ALLOW_ORIGIN.to_owned(),
            allow_credentials: false,
            allow_methods: DEFAULT_ALLOW_METHODS.to_owned(),
            allow_headers: String::new(),
            max_age: DEFAULT_MAX_AGE,
            expose_headers: String::new(),
        }
    }
}

/// A [`CorsConfig`] that cannot be served; names the field at fault.
#[derive(Debug, thiserror::Error)]
pub enum CorsError {
    /// `allow_origin` does not compile.
    #[error("allow_origin is not a valid regular expression: {0}")]
    AllowOrigin(#[source] regex::Error),
    /// The named field would make a header value HTTP does not allow
    /// (a control character, a line break).
    #[error("{field} contains characters not allowed in a header")]
    NotAHeaderValue {
        /// `allow_methods`, `allow_headers` or `expose_headers`.
        field: &'static str,
    },
}

/// The middleware [`layer`] returns: apply it with `Router::layer`, outside
/// the tus routes (and any others that should answer browsers).
pub type CorsLayer = FromFnLayer<CorsFn, Arc<CorsPolicy>, (State<Arc<CorsPolicy>>, Request)>;

/// The function [`CorsLayer`] runs for each request.
pub type CorsFn = fn(State<Arc<CorsPolicy>>, Request, Next) -> BoxFuture<'static, Response>;

/// A checked [`CorsConfig`], ready to answer requests; made by [`layer`].
#[derive(Debug)]
pub struct CorsPolicy {
    origin: Regex,
    allow_methods: HeaderValue,
    allow_headers: HeaderValue,
    expose_headers: HeaderValue,
    max_age: HeaderValue,
    credentials: bool,
}

/// Checks `config` and builds the middleware that applies it. Fails, naming
/// the field, if `allow_origin` is not a regular expression or another
/// field cannot be a header value; nothing is served then.
pub fn layer(config: &CorsConfig) -> Result<CorsLayer, CorsError> {
    let policy = CorsPolicy::new(config)?;
    let run: CorsFn = |State(policy), request, next| Box::pin(apply(policy, request, next));
    Ok(axum::middleware::from_fn_with_state(Arc::new(policy), run))
}

fn joined(base: &str, extra: &str, field: &'static str) -> Result<HeaderValue, CorsError> {
    let value = if extra.trim().is_empty() {
        base.to_owned()
    } else {
        format!("{base}, {}", extra.trim())
    };
    HeaderValue::from_str(&value).map_err(|_| CorsError::NotAHeaderValue { field })
}

impl CorsPolicy {
    fn new(config: &CorsConfig) -> Result<CorsPolicy, CorsError> {
        let origin = Regex::new(&format!("^(?:{})$", config.allow_origin))
            .map_err(CorsError::AllowOrigin)?;
        if config.allow_credentials && origin.is_match("https://any-site.example") {
            // Every origin's page could then upload and read uploads with the
            // user's cookies: allowed (tusd allows it too), never silently.
            tracing::warn!(
                allow_origin = %config.allow_origin,
                "CORS allows credentials (--cors-allow-credentials) from origins that match any site (--cors-allow-origin): every web page may send credentialed requests; name your origins"
            );
        }
        Ok(CorsPolicy {
            origin,
            allow_methods: joined(&config.allow_methods, "", "allow_methods")?,
            allow_headers: joined(TUS_REQUEST_HEADERS, &config.allow_headers, "allow_headers")?,
            expose_headers: joined(
                TUS_RESPONSE_HEADERS,
                &config.expose_headers,
                "expose_headers",
            )?,
            max_age: HeaderValue::from(config.max_age),
            credentials: config.allow_credentials,
        })
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

    /// Adds what a preflight answer carries to `response`: 200, origin,
    /// allowed methods and headers, max age.
    fn preflight(&self, origin: HeaderValue, response: &mut Response) {
        // As tusd: the preflight is also a tus OPTIONS (Tus-Resumable,
        // Tus-Version, ...), answered 200 because some browsers take any
        // other status, 204 included, as a refusal.
        *response.status_mut() = StatusCode::OK;
        let h = response.headers_mut();
        self.common(origin, h);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            self.allow_methods.clone(),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            self.allow_headers.clone(),
        );
        h.insert(header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
    }

    /// Adds what any other answer carries: origin and exposed headers.
    fn actual(&self, origin: HeaderValue, response: &mut Response) {
        let h = response.headers_mut();
        self.common(origin, h);
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            self.expose_headers.clone(),
        );
    }
}

fn is_preflight(request: &Request) -> bool {
    request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// Preflights get the allow headers, other requests the expose headers;
/// both only for an allowed `Origin`. Every request reaches `next`.
async fn apply(policy: Arc<CorsPolicy>, request: Request, next: Next) -> Response {
    let Some(origin) = policy.allowed_origin(request.headers()) else {
        return next.run(request).await;
    };
    let preflight = is_preflight(&request);
    let mut response = next.run(request).await;
    if preflight {
        policy.preflight(origin, &mut response);
    } else {
        policy.actual(origin, &mut response);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(config: CorsConfig) -> CorsPolicy {
        CorsPolicy::new(&config).unwrap()
    }

    fn origin(value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn the_origin_must_match_in_full() {
        let p = policy(CorsConfig {
            allow_origin: r"https://.*\.good\.example".to_owned(),
            ..CorsConfig::default()
        });
        assert!(p
            .allowed_origin(&origin("https://app.good.example"))
            .is_some());
        assert!(p
            .allowed_origin(&origin("https://app.good.example.evil"))
            .is_none());
        assert!(p
            .allowed_origin(&origin("http://app.good.example"))
            .is_none());
        assert!(p.allowed_origin(&HeaderMap::new()).is_none());
    }

    #[test]
    fn extra_headers_are_added_to_the_tus_ones() {
        let p = policy(CorsConfig {
            allow_headers: " X-Custom ".to_owned(),
            expose_headers: "X-Exposed".to_owned(),
            ..CorsConfig::default()
        });
        assert_eq!(
            p.allow_headers,
            HeaderValue::from_str(&format!("{TUS_REQUEST_HEADERS}, X-Custom")).unwrap()
        );
        assert_eq!(
            p.expose_headers,
            HeaderValue::from_str(&format!("{TUS_RESPONSE_HEADERS}, X-Exposed")).unwrap()
        );
    }

    #[test]
    fn a_preflight_is_200_with_allow_headers_and_credentials_when_asked() {
        let p = policy(CorsConfig {
            allow_credentials: true,
            allow_origin: "https://app.example".to_owned(),
            ..CorsConfig::default()
        });
        let mut response = Response::new(axum::body::Body::empty());
        *response.status_mut() = StatusCode::NO_CONTENT;
        p.preflight(
            HeaderValue::from_static("https://app.example"),
            &mut response,
        );
        let h = response.headers();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example"
        );
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_METHODS],
            DEFAULT_ALLOW_METHODS
        );
        assert_eq!(h[header::ACCESS_CONTROL_MAX_AGE], "86400");
        assert_eq!(h[header::VARY], "Origin");
        assert!(!h.contains_key(header::ACCESS_CONTROL_EXPOSE_HEADERS));
    }

    #[test]
    fn bad_settings_name_their_field() {
        let bad_origin = CorsConfig {
            allow_origin: "(".to_owned(),
            ..CorsConfig::default()
        };
        assert!(matches!(layer(&bad_origin), Err(CorsError::AllowOrigin(_))));
        let bad_header = CorsConfig {
            expose_headers: "X-A\nX-B".to_owned(),
            ..CorsConfig::default()
        };
        assert!(matches!(
            layer(&bad_header),
            Err(CorsError::NotAHeaderValue {
                field: "expose_headers"
            })
        ));
    }
}
