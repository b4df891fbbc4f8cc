//! [`TusHandler`]: the routes, and what every request goes through on its
//! way to the extension that serves it.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State as AxumState};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use http::{HeaderValue, Method};

use crate::config::{normalize_base_path, Config};
use crate::cors::{self, CorsLayer};
use crate::drain;
use crate::error::HandlerError;
use crate::events::Hooks;
use crate::headers::{check_tus_resumable, TUS_VERSION};
use crate::metrics::Metrics;
use crate::protocol::{core, creation, download, expiration, termination};
use crate::request_log::{loggable, BytesStored, FailureReason};
use crate::state::{BuildError, State};
use crate::{StoreComposer, UploadId};

/// A tus 1.0 server over one data store and one locker. Cheap to clone.
#[derive(Clone)]
pub struct TusHandler {
    pub(crate) inner: Arc<State>,
    /// Built from `Config::cors` at construction, so a bad setting fails
    /// there rather than at the first browser request.
    cors: Option<CorsLayer>,
}

impl TusHandler {
    /// Builds a handler from the composer's store, its capabilities and
    /// its locker.
    pub fn new(composer: &StoreComposer, config: Config) -> Result<TusHandler, BuildError> {
        TusHandler::build(composer, config, None)
    }

    /// Like [`TusHandler::new`], with `hooks` told of every upload event and
    /// asked before every creation.
    pub fn with_hooks(
        composer: &StoreComposer,
        config: Config,
        hooks: Arc<dyn Hooks>,
    ) -> Result<TusHandler, BuildError> {
        TusHandler::build(composer, config, Some(hooks))
    }

    fn build(
        composer: &StoreComposer,
        mut config: Config,
        hooks: Option<Arc<dyn Hooks>>,
    ) -> Result<TusHandler, BuildError> {
        config.base_path = normalize_base_path(&config.base_path);
        let cors = config.cors.as_ref().map(cors::layer).transpose()?;
        Ok(TusHandler {
            inner: Arc::new(State::new(composer, config, hooks)?),
            cors,
        })
    }

    /// The routes under the base path, ready to merge into any axum app,
    /// with tus-aware CORS when `Config::cors` is set (the default).
    /// Every path below the base reaches the one dispatcher, even one with several
    /// segments, so that every answer under the base (a 404 for a path that
    /// is no upload id included) carries `Tus-Resumable`.
    pub fn router(&self) -> Router {
        let base = self.inner.config().base_path.clone();
        let mut router = Router::new()
            .route(&base, any(dispatch))
            .route(&format!("{base}{{*rest}}"), any(dispatch));
        if base != "/" {
            router = router.route(base.trim_end_matches('/'), any(dispatch));
        }
        let router = router.with_state(self.inner.clone());
        match &self.cors {
            Some(cors) => router.layer(cors.clone()),
            None => router,
        }
    }

    pub fn config(&self) -> &Config {
        self.inner.config()
    }

    pub fn metrics(&self) -> &Metrics {
        self.inner.metrics()
    }

    /// Starts shutdown: request bodies in flight stop at their next chunk and
    /// answer with the offset they reached, so their locks free up quickly.
    pub fn begin_shutdown(&self) {
        self.inner.shutdown().cancel();
    }

    /// Removes expired unfinished uploads every `interval`, until shutdown.
    /// Does nothing when expiration is off.
    pub fn spawn_expiration_sweeper(
        &self,
        interval: std::time::Duration,
    ) -> tokio::task::JoinHandle<()> {
        let inner = self.inner.clone();
        tokio::spawn(async move { expiration::sweep_forever(&inner, interval).await })
    }
}

/// `X-HTTP-Method-Override` lets clients behind restrictive proxies send
/// PATCH and DELETE as POST. Only a POST is overridden, as in tusd: a GET
/// that a browser or crawler can be tricked into sending must never become
/// a DELETE.
fn effective_method(req: &Request) -> Method {
    if req.method() != Method::POST {
        return req.method().clone();
    }
    req.headers()
        .get("x-http-method-override")
        .and_then(|v| Method::from_bytes(v.as_bytes().to_ascii_uppercase().as_slice()).ok())
        .unwrap_or_else(|| req.method().clone())
}

async fn dispatch(AxumState(inner): AxumState<Arc<State>>, req: Request<Body>) -> Response {
    let started = Instant::now();
    let method = effective_method(&req);
    let rest = req
        .uri()
        .path()
        .strip_prefix(inner.config().base_path.as_str())
        .unwrap_or("")
        .to_owned();
    let id = UploadId::parse(&rest);
    // A body answered before its end is read on within bounds, so that the
    // answer reaches the client (or nginx) instead of a reset: see drain.rs.
    let limits = drain::Limits::new(inner.config().network_timeout, inner.shutdown().clone());
    let req = drain::wrap_request(req, limits);
    // The request runs as a task of its own, so a client that disconnects
    // cannot cancel it halfway: bytes that arrived are written and the lock
    // is released only after the write, never while it is still going on.
    let task = {
        let (inner, method, id) = (inner.clone(), method.clone(), id.clone());
        tokio::spawn(async move { route(&inner, &method, &rest, id, req).await })
    };
    let mut response = match task.await {
        Ok(result) => result.unwrap_or_else(IntoResponse::into_response),
        Err(e) => HandlerError::Internal(format!("request task failed: {e}")).into_response(),
    };
    if let Some(FailureReason(reason)) = response.extensions_mut().remove::<FailureReason>() {
        tracing::error!(
            target: "tusd::request",
            id = id.as_ref().map_or("", |i| i.as_str()),
            status = response.status().as_u16(),
            reason,
            "request failed"
        );
    }
    response
        .headers_mut()
        .insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));

    let status = response.status().as_u16();
    let bytes = response
        .extensions()
        .get::<BytesStored>()
        .map_or(0, |b| b.0);
    inner.metrics().request(method.as_str(), status);
    tracing::info!(
        target: "tusd::request",
        method = %loggable(method.as_str(), 16),
        id = id.as_ref().map_or("", |i| i.as_str()),
        status,
        bytes,
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    response
}

/// RFC 9112: a transfer coding the server does not implement is a 501. Only
/// `chunked` is decoded here; storing another coding's bytes (say gzip) as
/// upload data would corrupt the upload silently.
fn check_transfer_encoding(headers: &http::HeaderMap) -> Result<(), HandlerError> {
    for value in headers.get_all(http::header::TRANSFER_ENCODING) {
        let codings = value.to_str().unwrap_or("?");
        let only_chunked = codings
            .split(',')
            .map(str::trim)
            .all(|c| c.eq_ignore_ascii_case("chunked"));
        if !only_chunked {
            return Err(HandlerError::NotImplemented(format!(
                "transfer coding {:?} is not supported; only chunked is",
                loggable(codings, 64)
            )));
        }
    }
    Ok(())
}

async fn route(
    inner: &State,
    method: &Method,
    rest: &str,
    id: Option<UploadId>,
    req: Request<Body>,
) -> Result<Response, HandlerError> {
    if *method == Method::OPTIONS {
        return Ok(core::options(inner));
    }
    check_transfer_encoding(req.headers())?;
    // Browsers download with plain GETs that carry no tus headers.
    if *method != Method::GET {
        check_tus_resumable(req.headers())?;
    }
    let origin = inner.origin(method, &req);
    if rest.is_empty() {
        return match *method {
            Method::POST => creation::post(inner, req, &origin).await,
            _ => Err(HandlerError::MethodNotAllowed),
        };
    }
    let id = id.ok_or(HandlerError::NotFound)?;
    if matches!(
        *method,
        Method::HEAD | Method::PATCH | Method::DELETE | Method::GET
    ) {
        inner.pre_access(&id, &origin).await?;
    }
    match *method {
        Method::HEAD => core::head(inner, &id, req.headers(), &origin).await,
        Method::PATCH => core::patch(inner, &id, req, &origin).await,
        Method::DELETE => termination::delete(inner, &id, &origin).await,
        Method::GET => download::get(inner, &id, req, &origin).await,
        _ => Err(HandlerError::MethodNotAllowed),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use async_trait::async_trait;

    use super::*;
    use crate::{
        ChunkStream, DataStore, FencingToken, Lock, Locker, NewUpload, StoreError, UploadInfo,
        UploadReader,
    };

    /// One unfinished upload, "abc", 2 of 4 bytes stored.
    struct OneUpload;

    #[async_trait]
    impl DataStore for OneUpload {
        async fn create_upload(&self, _: NewUpload) -> Result<UploadInfo, StoreError> {
            unreachable!()
        }
        async fn get_info(&self, id: &UploadId) -> Result<UploadInfo, StoreError> {
            match id.as_str() {
                "abc" => Ok(UploadInfo {
                    id: "abc".into(),
                    size: 4,
                    offset: 2,
                    ..UploadInfo::default()
                }),
                _ => Err(StoreError::NotFound),
            }
        }
        async fn write_chunk(
            &self,
            _: &UploadId,
            _: u64,
            _: Option<&FencingToken>,
            _: ChunkStream,
        ) -> Result<u64, StoreError> {
            panic!("nothing may be written without the lock")
        }
        async fn read_range(
            &self,
            _: &UploadId,
            _: u64,
            _: u64,
        ) -> Result<UploadReader, StoreError> {
            panic!("an unfinished upload is not read without the lock")
        }
    }

    #[async_trait]
    impl crate::Terminater for OneUpload {
        async fn terminate(
            &self,
            _: &UploadId,
            _: Option<&FencingToken>,
        ) -> Result<(), StoreError> {
            panic!("nothing may be deleted without the lock")
        }
    }

    /// A locker whose holder never lets go: every lock attempt waits for
    /// its deadline and times out.
    struct HeldForever;

    #[async_trait]
    impl Locker for HeldForever {
        async fn lock(
            &self,
            _: &UploadId,
            deadline: tokio::time::Instant,
        ) -> Result<Lock, crate::LockError> {
            tokio::time::sleep_until(deadline).await;
            Err(crate::LockError::Timeout)
        }
    }

    fn handler() -> Arc<State> {
        let mut composer = StoreComposer::new();
        composer.use_core(Arc::new(OneUpload));
        composer.use_terminater(Arc::new(OneUpload));
        composer.use_locker(Arc::new(HeldForever));
        let config = Config {
            acquire_lock_timeout: Duration::from_millis(20),
            ..Config::default()
        };
        TusHandler::new(&composer, config).unwrap().inner
    }

    fn request(method: &str, headers: &[(&str, &str)], body: &'static str) -> Request<Body> {
        let mut builder = Request::builder()
            .method(method)
            .uri("/files/abc")
            .header("tus-resumable", "1.0.0");
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        builder.body(Body::from(body)).unwrap()
    }

    #[tokio::test]
    async fn a_lock_not_had_by_the_deadline_is_423_with_retry_after() {
        let inner = handler();
        let patch_headers = [
            ("upload-offset", "2"),
            ("content-type", "application/offset+octet-stream"),
        ];
        for req in [
            request("HEAD", &[], ""),
            request("PATCH", &patch_headers, "cd"),
            request("DELETE", &[], ""),
            request("GET", &[], ""),
        ] {
            let method = req.method().clone();
            let response = dispatch(AxumState(inner.clone()), req).await;
            assert_eq!(response.status(), http::StatusCode::LOCKED, "{method}");
            assert_eq!(response.headers()["retry-after"], "1", "{method}");
            assert_eq!(response.headers()["tus-resumable"], TUS_VERSION);
            let body = axum::body::to_bytes(response.into_body(), 1024)
                .await
                .unwrap();
            let text = std::str::from_utf8(&body).unwrap();
            assert!(
                text.ends_with('\n') && text.trim_end().lines().count() == 1,
                "{text:?}"
            );
        }
    }
}
