//! What happens to uploads, as the outside world learns of it: events after
//! the fact, and decisions asked for before.
//!
//! Every event comes from one place, the handler's state (`state.rs`), at
//! the moment the change is stored: an upload created, bytes received, an
//! upload finished (after the store's `finish_upload`), an upload
//! terminated. The metrics count them; an embedder's [`Hooks`] see them too,
//! which is where tusd-compatible hooks plug in.
//!
//! A decision is asked for before a change, and blocks the request while it
//! is made: [`Hooks::pre_create`] may refuse an upload with a response of
//! its own ([`Rejection`]) or change its id, metadata and storage hints;
//! [`Hooks::pre_finish`] may refuse or change the answer to the request that
//! stored the last byte; [`Hooks::pre_terminate`] may refuse a DELETE;
//! [`Hooks::pre_access`] (beyond tusd, asked only when
//! [`Hooks::checks_access`] says so) may refuse any HEAD, PATCH, GET or
//! DELETE of an existing upload. A progress event that arrives while the
//! body still flows carries an [`UploadStopper`], with which a hook stops
//! the upload (tusd's `StopUpload`: the body ends, the upload is
//! terminated, the client gets the hook's answer).
//!
//! Events fire once, on the node that did the work, from `state.rs`:
//! progress every `Config::progress_interval` while bytes arrive (when the
//! offset moved) and once more when the body ends.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, Uri};
use tokio_util::sync::CancellationToken;

use crate::{NewUpload, UploadInfo};

/// Which change an [`UploadEvent`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The upload exists (its length may still be deferred).
    Created,
    /// A request stored bytes; `upload.offset` is where it stands now.
    Progress,
    /// Every byte is stored and the store's `finish_upload` succeeded.
    /// Emitted once per upload.
    Finished,
    /// The upload's bytes and state are gone (DELETE or expiry).
    Terminated,
}

/// One change to one upload, with the request that caused it.
#[derive(Clone, Debug)]
pub struct UploadEvent {
    pub kind: EventKind,
    /// The upload's state right after the change.
    pub upload: UploadInfo,
    /// `None` when no request caused it (the expiration sweep), or when the
    /// handler has no hooks and so did not capture requests.
    pub request: Option<Arc<RequestInfo>>,
    /// Present on progress events while the request body still flows:
    /// stops the upload (see [`UploadStopper`]).
    pub stop: Option<UploadStopper>,
}

/// Stops one upload's body in flight (tusd's `StopUpload`). Cheap to clone;
/// safe to use from any task, also after the body ended (then a no-op).
///
/// What happens: the body stops flowing into the store, the upload is
/// terminated (if the store can terminate; a post-terminate event follows),
/// and the client's request is answered with `response`.
#[derive(Clone, Debug, Default)]
pub struct UploadStopper {
    token: CancellationToken,
    response: Arc<Mutex<Option<Rejection>>>,
}

impl UploadStopper {
    /// Stops the upload; the first call's `response` is what the client gets.
    pub fn stop(&self, response: Rejection) {
        self.response.lock().unwrap().get_or_insert(response);
        self.token.cancel();
    }

    pub(crate) fn token(&self) -> &CancellationToken {
        &self.token
    }

    pub(crate) fn take_response(&self) -> Option<Rejection> {
        self.response.lock().unwrap().take()
    }
}

/// What a hook adds to the answer the handler would give (tusd's
/// `HTTPResponse` merged into it): a status and a body if set, and headers
/// that replace the handler's of the same name.
#[derive(Clone, Debug, Default)]
pub struct ResponseChange {
    pub status: Option<StatusCode>,
    pub headers: HeaderMap,
    pub body: Option<Bytes>,
}

impl ResponseChange {
    /// Applies the change to `response`.
    pub fn apply(self, response: axum::response::Response) -> axum::response::Response {
        let (mut parts, body) = response.into_parts();
        if let Some(status) = self.status {
            parts.status = status;
        }
        for (name, value) in self.headers.iter() {
            parts.headers.insert(name.clone(), value.clone());
        }
        match self.body {
            Some(new) => {
                parts.headers.remove(http::header::CONTENT_LENGTH);
                axum::response::Response::from_parts(parts, axum::body::Body::from(new))
            }
            None => axum::response::Response::from_parts(parts, body),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.status.is_none() && self.headers.is_empty() && self.body.is_none()
    }
}

/// The parts of a request a hook may look at (tusd's `HTTPRequest`).
#[derive(Clone, Debug)]
pub struct RequestInfo {
    pub method: Method,
    pub uri: Uri,
    /// The peer's address, when the server recorded it (`ConnectInfo`).
    pub remote_addr: Option<SocketAddr>,
    pub headers: HeaderMap,
}

impl RequestInfo {
    pub(crate) fn capture<B>(method: &Method, req: &http::Request<B>) -> RequestInfo {
        RequestInfo {
            method: method.clone(),
            uri: req.uri().clone(),
            remote_addr: req
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| *addr),
            headers: req.headers().clone(),
        }
    }
}

/// The answer a hook gives instead of the protocol's: any status, headers
/// and body. Sent as it is, plus `Tus-Resumable`.
#[derive(Clone, Debug)]
pub struct Rejection {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Rejection {
    /// A rejection with `status` and a one-line text body.
    pub fn new(status: StatusCode, reason: impl Into<String>) -> Rejection {
        let mut body = reason.into();
        body.push('\n');
        Rejection {
            status,
            headers: HeaderMap::new(),
            body: Bytes::from(body),
        }
    }
}

/// What an embedder plugs into a handler to see uploads change and to
/// decide on them. Every method has a default that does nothing, so an
/// implementation names only what it uses.
#[async_trait]
pub trait Hooks: Send + Sync + 'static {
    /// Asked before an upload is created, with the request that asks for
    /// it. `Err` answers the client with the rejection and creates nothing.
    /// Changing `upload.metadata` changes what is stored; setting
    /// `upload.id` asks the store for that id; `upload.storage` is passed
    /// on. `Ok` changes the 201 (a pre-finish change, for an upload
    /// finished by the same request, is applied over it).
    async fn pre_create(
        &self,
        request: &RequestInfo,
        upload: &mut NewUpload,
    ) -> Result<ResponseChange, Rejection> {
        let _ = (request, upload);
        Ok(ResponseChange::default())
    }

    /// Asked when an upload's last byte is stored and the store's
    /// `finish_upload` succeeded, before the request that did it is
    /// answered (tusd's pre-finish). `Ok` changes that answer; `Err` answers
    /// with the rejection instead, and then no finished event follows (the
    /// upload stays complete in the store, as in tusd). Only asked for
    /// requests (not for work no request caused).
    async fn pre_finish(&self, event: &UploadEvent) -> Result<ResponseChange, Rejection> {
        let _ = event;
        Ok(ResponseChange::default())
    }

    /// Asked before a DELETE terminates an upload, under its lock (tusd's
    /// pre-terminate). `Err` keeps the upload and answers with the
    /// rejection; `Ok` changes the 204. Not asked for an upload stopped by
    /// an [`UploadStopper`] or removed by the expiration sweep.
    async fn pre_terminate(&self, event: &UploadEvent) -> Result<ResponseChange, Rejection> {
        let _ = event;
        Ok(ResponseChange::default())
    }

    /// Whether [`Hooks::pre_access`] is to be asked. The handler reads the
    /// upload's state for it only when this is true, so hooks that do not
    /// authorise access cost no store read per request. Asked once per
    /// request; it should be a constant.
    fn checks_access(&self) -> bool {
        false
    }

    /// Asked before a HEAD, PATCH, GET or DELETE of an existing upload is
    /// served, before its lock is taken or its body read (beyond tusd:
    /// authorisation of every request, not only of creation). `upload` is
    /// the state as stored when the request arrived, read without the lock,
    /// so a PATCH in flight may move its offset. `Err` answers the client
    /// with the rejection and leaves the upload as it was. Not asked for an
    /// id that names no upload (that is a 404), nor for OPTIONS and POST.
    async fn pre_access(
        &self,
        request: &RequestInfo,
        upload: &UploadInfo,
    ) -> Result<(), Rejection> {
        let _ = (request, upload);
        Ok(())
    }

    /// Told after a change is stored. Called on the request's own task, so
    /// it must return quickly: spawn slow work (and keep the event's
    /// [`UploadStopper`] to act on its outcome).
    fn on_event(&self, event: &UploadEvent) {
        let _ = event;
    }
}
