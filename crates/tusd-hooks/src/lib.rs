//! Hooks compatible with tusd v2: the same events, the same JSON, the same
//! answers, so a hook receiver written for tusd works unchanged.
//!
//! # Layout
//! - [`wire`]: the JSON tusd sends (`HookRequest`: `Type`, `Event.Upload`,
//!   `Event.HTTPRequest`) and the JSON it understands back (`HookResponse`:
//!   `HTTPResponse`, `RejectUpload`, `RejectTermination`, `ChangeFileInfo`,
//!   `StopUpload`).
//! - [`http`]: [`HttpHook`], a POST per event to one endpoint (tusd's
//!   `--hooks-http`), retried with a fixed backoff, on one reused client.
//! - [`file`](mod@file): [`FileHook`], an executable per event in a directory (tusd's
//!   `--hooks-dir`), the JSON on stdin, `TUS_*` variables, stdout parsed.
//! - `grpc` (feature `grpc`): `GrpcHook`, tusd's `HookHandler.InvokeHook`
//!   over gRPC (proto/hook.proto, tonic; `--hooks-grpc`), plaintext or TLS
//!   (`GrpcTls`, rustls).
//! - This file: [`HookType`] (the event names and tusd's default set), the
//!   [`HookHandler`] backends implement, and [`TusdHooks`], which turns the
//!   handler's decision points and events into hook calls
//!   (`tusd_handler::Hooks`).
//!
//! How a backend's answer becomes the client's, as in tusd's
//! `pkg/hooks/hooks.go`: a blocking hook (pre-create, pre-finish,
//! pre-terminate, pre-access) that fails (unreachable after its retries, non-2xx,
//! unparsable answer) answers the client 500
//! `ERR_INTERNAL_SERVER_ERROR: <reason>`; `RejectUpload` answers 400
//! `ERR_UPLOAD_REJECTED: ...` and `RejectTermination` 400
//! `ERR_UPLOAD_TERMINATION_REJECTED: ...`, each overridden field by field by
//! the hook's `HTTPResponse`; `StopUpload` in a post-receive answer stops the
//! body and terminates the upload, answering 400 `ERR_UPLOAD_STOPPED: ...`
//! merged the same way; in a pre-access answer (beyond tusd) `RejectUpload`
//! refuses the request, 403 `ERR_UPLOAD_ACCESS_DENIED: ...` merged the same
//! way. A failing non-blocking hook is only logged.

pub mod file;
#[cfg(feature = "grpc")]
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod wire;

use std::collections::BTreeSet;
use std::sync::Arc;

use ::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use async_trait::async_trait;
use bytes::Bytes;
use tusd_handler::{
    EventKind, Hooks, NewUpload, Rejection, RequestInfo, ResponseChange, UploadEvent, UploadId,
    UploadInfo,
};

pub use crate::file::FileHook;
pub use crate::http::HttpHook;
pub use crate::metrics::HookMetrics;
use crate::wire::{HookRequest, HookResponse, HttpResponse};

/// A hook event, named as tusd names it (and its file hooks).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HookType {
    PreCreate,
    PostCreate,
    PostReceive,
    PreFinish,
    PostFinish,
    PreTerminate,
    PostTerminate,
    /// Beyond tusd: asked before a HEAD, PATCH, GET or DELETE of an
    /// existing upload; only when named in `--hooks-enabled-events`.
    PreAccess,
}

impl HookType {
    /// Every event tusd-rs can call.
    pub const ALL: [HookType; 8] = [
        HookType::PreCreate,
        HookType::PostCreate,
        HookType::PostReceive,
        HookType::PreTerminate,
        HookType::PostTerminate,
        HookType::PostFinish,
        HookType::PreFinish,
        HookType::PreAccess,
    ];

    /// tusd's seven events: what an empty `--hooks-enabled-events` enables,
    /// as in tusd. `pre-access` is left out, so a receiver written for tusd
    /// never sees an event it does not know unless the operator names it.
    pub const TUSD: [HookType; 7] = [
        HookType::PreCreate,
        HookType::PostCreate,
        HookType::PostReceive,
        HookType::PreTerminate,
        HookType::PostTerminate,
        HookType::PostFinish,
        HookType::PreFinish,
    ];

    /// tusd's default `--hooks-enabled-events`: pre-finish and
    /// pre-terminate only when asked for.
    pub const DEFAULT: &'static str =
        "pre-create,post-create,post-receive,post-terminate,post-finish";

    pub fn name(self) -> &'static str {
        match self {
            HookType::PreCreate => "pre-create",
            HookType::PostCreate => "post-create",
            HookType::PostReceive => "post-receive",
            HookType::PreFinish => "pre-finish",
            HookType::PostFinish => "post-finish",
            HookType::PreTerminate => "pre-terminate",
            HookType::PostTerminate => "post-terminate",
            HookType::PreAccess => "pre-access",
        }
    }

    pub fn parse(name: &str) -> Option<HookType> {
        HookType::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Parses a `--hooks-enabled-events` value: comma-separated names; an
    /// empty list enables tusd's seven events, as in tusd (not
    /// `pre-access`).
    pub fn parse_list(list: &str) -> Result<BTreeSet<HookType>, String> {
        let mut set = BTreeSet::new();
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            set.insert(HookType::parse(name).ok_or_else(|| {
                format!("unknown hook event type in --hooks-enabled-events: {name}")
            })?);
        }
        if set.is_empty() {
            set.extend(HookType::TUSD);
        }
        Ok(set)
    }
}

impl std::fmt::Display for HookType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a hook call failed: tusd's `err` from `InvokeHook`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HookError(pub String);

/// A hook backend: tusd's `HookHandler.InvokeHook`. `Err` means the hook
/// did not complete (the answer, if any, is ignored).
#[async_trait]
pub trait HookHandler: Send + Sync + 'static {
    async fn invoke(&self, request: &HookRequest) -> Result<HookResponse, HookError>;

    /// The backend's name in metrics (`kind` label).
    fn kind(&self) -> &'static str {
        "custom"
    }
}

/// The handler's `Hooks`, calling one backend for each enabled event.
pub struct TusdHooks {
    backend: Arc<dyn HookHandler>,
    enabled: BTreeSet<HookType>,
    metrics: HookMetrics,
}

impl TusdHooks {
    pub fn new(backend: Arc<dyn HookHandler>, enabled: BTreeSet<HookType>) -> TusdHooks {
        TusdHooks {
            backend,
            enabled,
            metrics: HookMetrics::default(),
        }
    }

    /// The calls', failures' and latencies' metrics, to register.
    pub fn metrics(&self) -> &HookMetrics {
        &self.metrics
    }

    /// Calls the hook if enabled: `Ok(None)` when it is not.
    async fn call(
        &self,
        kind: HookType,
        upload: UploadInfo,
        request: Option<&RequestInfo>,
    ) -> Result<Option<HookResponse>, HookError> {
        if !self.enabled.contains(&kind) {
            return Ok(None);
        }
        let req = HookRequest::new(kind, upload, request);
        invoke_logged(&*self.backend, &self.metrics, &req)
            .await
            .map(Some)
    }
}

async fn invoke_logged(
    backend: &dyn HookHandler,
    metrics: &HookMetrics,
    req: &HookRequest,
) -> Result<HookResponse, HookError> {
    let started = std::time::Instant::now();
    let result = backend.invoke(req).await;
    metrics.observe(req.kind, backend.kind(), started.elapsed(), result.is_ok());
    match &result {
        Ok(_) => {
            tracing::debug!(hook = %req.kind, id = %req.event.upload.id, elapsed_ms = started.elapsed().as_millis() as u64, "hook finished")
        }
        Err(e) => {
            tracing::error!(hook = %req.kind, id = %req.event.upload.id, error = %e, "hook failed")
        }
    }
    result
}

/// tusd's `NewError(code, message, status)` merged with a hook's
/// `HTTPResponse` (`MergeWith`): the hook's non-empty fields win.
pub fn tusd_error(code: &str, message: &str, status: u16, hook: &HttpResponse) -> Rejection {
    let mut headers = HeaderMap::new();
    headers.insert(
        ::http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    let change = response_change(hook);
    headers.extend(change.headers);
    Rejection {
        status: change
            .status
            .unwrap_or(StatusCode::from_u16(status).expect("valid status")),
        headers,
        body: change
            .body
            .unwrap_or_else(|| Bytes::from(format!("{code}: {message}\n"))),
    }
}

/// 500 for a blocking hook that failed, as tusd's `sendError` answers an
/// error that is not one of its own.
fn hook_failed(e: &HookError) -> Rejection {
    tusd_error(
        "ERR_INTERNAL_SERVER_ERROR",
        &e.0,
        500,
        &HttpResponse::default(),
    )
}

/// A hook's `HTTPResponse` as a change to the handler's answer. A header
/// name or value that is not valid HTTP is dropped (and logged).
pub fn response_change(hook: &HttpResponse) -> ResponseChange {
    let mut headers = HeaderMap::new();
    for (name, value) in &hook.header {
        match (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) {
            (Ok(n), Ok(v)) => {
                headers.insert(n, v);
            }
            _ => tracing::warn!(header = %name, "hook response header is not valid HTTP; dropped"),
        }
    }
    ResponseChange {
        status: match hook.status_code {
            0 => None,
            code => u16::try_from(code)
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok()),
        },
        headers,
        body: (!hook.body.is_empty()).then(|| Bytes::from(hook.body.clone())),
    }
}

/// The upload as tusd's pre-create sees it: no id, offset 0.
fn new_upload_info(upload: &NewUpload) -> UploadInfo {
    UploadInfo {
        id: upload
            .id
            .as_ref()
            .map(|i| i.to_string())
            .unwrap_or_default(),
        size: upload.size.unwrap_or(0),
        size_is_deferred: upload.size.is_none(),
        offset: 0,
        metadata: upload.metadata.clone(),
        is_partial: upload.is_partial,
        is_final: upload.is_final,
        partial_uploads: upload
            .partial_uploads
            .iter()
            .map(|p| p.to_string())
            .collect(),
        storage: upload.storage.clone(),
        modified: None,
    }
}

#[async_trait]
impl Hooks for TusdHooks {
    async fn pre_create(
        &self,
        request: &RequestInfo,
        upload: &mut NewUpload,
    ) -> Result<ResponseChange, Rejection> {
        let Some(res) = self
            .call(HookType::PreCreate, new_upload_info(upload), Some(request))
            .await
            .map_err(|e| hook_failed(&e))?
        else {
            return Ok(ResponseChange::default());
        };
        if res.reject_upload {
            return Err(tusd_error(
                "ERR_UPLOAD_REJECTED",
                "upload creation has been rejected by server",
                400,
                &res.http_response,
            ));
        }
        let changes = res.change_file_info;
        if !changes.id.is_empty() {
            let id = UploadId::parse(&changes.id).ok_or_else(|| {
                hook_failed(&HookError(format!(
                    "validation error in FileInfoChanges: ID must be 1-255 of A-Z a-z 0-9 - _ + . ~ =, not start with a dot nor contain '..' (got: {})",
                    changes.id
                )))
            })?;
            upload.id = Some(id);
        }
        if let Some(metadata) = changes.metadata {
            upload.metadata = metadata;
        }
        if let Some(storage) = changes.storage {
            upload.storage = storage;
        }
        Ok(response_change(&res.http_response))
    }

    async fn pre_finish(&self, event: &UploadEvent) -> Result<ResponseChange, Rejection> {
        match self
            .call(
                HookType::PreFinish,
                event.upload.clone(),
                event.request.as_deref(),
            )
            .await
        {
            Ok(Some(res)) => Ok(response_change(&res.http_response)),
            Ok(None) => Ok(ResponseChange::default()),
            Err(e) => Err(hook_failed(&e)),
        }
    }

    async fn pre_terminate(&self, event: &UploadEvent) -> Result<ResponseChange, Rejection> {
        match self
            .call(
                HookType::PreTerminate,
                event.upload.clone(),
                event.request.as_deref(),
            )
            .await
        {
            Ok(Some(res)) if res.reject_termination => Err(tusd_error(
                "ERR_UPLOAD_TERMINATION_REJECTED",
                "upload termination has been rejected by server",
                400,
                &res.http_response,
            )),
            Ok(Some(res)) => Ok(response_change(&res.http_response)),
            Ok(None) => Ok(ResponseChange::default()),
            Err(e) => Err(hook_failed(&e)),
        }
    }

    fn checks_access(&self) -> bool {
        self.enabled.contains(&HookType::PreAccess)
    }

    /// `RejectUpload` refuses (tusd's answer has no field of its own for
    /// this, and gRPC's message must stay tusd's): 403
    /// `ERR_UPLOAD_ACCESS_DENIED`, merged with `HTTPResponse`. Any other
    /// answer lets the request through unchanged.
    async fn pre_access(
        &self,
        request: &RequestInfo,
        upload: &UploadInfo,
    ) -> Result<(), Rejection> {
        match self
            .call(HookType::PreAccess, upload.clone(), Some(request))
            .await
        {
            Ok(Some(res)) if res.reject_upload => Err(tusd_error(
                "ERR_UPLOAD_ACCESS_DENIED",
                "access to this upload has been denied by server",
                403,
                &res.http_response,
            )),
            Ok(_) => Ok(()),
            Err(e) => Err(hook_failed(&e)),
        }
    }

    fn on_event(&self, event: &UploadEvent) {
        let kind = match event.kind {
            EventKind::Created => HookType::PostCreate,
            EventKind::Progress => HookType::PostReceive,
            EventKind::Finished => HookType::PostFinish,
            EventKind::Terminated => HookType::PostTerminate,
        };
        if !self.enabled.contains(&kind) {
            return;
        }
        let req = HookRequest::new(kind, event.upload.clone(), event.request.as_deref());
        let backend = self.backend.clone();
        let metrics = self.metrics.clone();
        let stop = event.stop.clone();
        tokio::spawn(async move {
            let Ok(res) = invoke_logged(&*backend, &metrics, &req).await else {
                return;
            };
            if let (true, Some(stop)) = (res.stop_upload, stop) {
                tracing::info!(id = %req.event.upload.id, "a post-receive hook stopped the upload");
                stop.stop(tusd_error(
                    "ERR_UPLOAD_STOPPED",
                    "upload has been stopped by server",
                    400,
                    &res.http_response,
                ));
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enabled_events_default_and_empty() {
        let default = HookType::parse_list(HookType::DEFAULT).unwrap();
        assert_eq!(default.len(), 5);
        assert!(!default.contains(&HookType::PreFinish));
        assert!(!default.contains(&HookType::PreAccess));
        let empty = HookType::parse_list("").unwrap();
        assert_eq!(empty.len(), 7);
        assert!(!empty.contains(&HookType::PreAccess));
        let named = HookType::parse_list("pre-access").unwrap();
        assert_eq!(named.into_iter().collect::<Vec<_>>(), [HookType::PreAccess]);
        assert!(HookType::parse_list("pre-create,nope").is_err());
    }

    #[test]
    fn rejection_merges_hook_response_over_tusd_error() {
        let mut hook = HttpResponse {
            status_code: 403,
            ..HttpResponse::default()
        };
        hook.header.insert("X-Why".into(), "quota".into());
        let r = tusd_error("ERR_UPLOAD_REJECTED", "no", 400, &hook);
        assert_eq!(r.status, 403);
        assert_eq!(r.headers["x-why"], "quota");
        assert_eq!(&r.body[..], b"ERR_UPLOAD_REJECTED: no\n");
    }
}
