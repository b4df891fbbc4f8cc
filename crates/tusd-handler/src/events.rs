//! What happens to uploads, as the outside world learns of it: events after
//! the fact, and decisions asked for before.
//!
//! Every event comes from one place, the handler's state (`state.rs`), at
//! the moment the change is stored: an upload created, bytes received, an
//! upload finished (after the store's `finish_upload`), an upload
//! terminated. The metrics count them; an embedder's [`Hooks`] see them too,
//! which is where tusd-compatible hooks plug in.
//!
//! A decision is asked for before a change: [`Hooks::pre_create`] may refuse
//! an upload with a response of its own ([`Rejection`]) or adjust its
//! metadata.

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, Uri};

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
    /// Changing `upload.metadata` changes what is stored.
    async fn pre_create(
        &self,
        request: &RequestInfo,
        upload: &mut NewUpload,
    ) -> Result<(), Rejection> {
        let _ = (request, upload);
        Ok(())
    }

    /// Told after a change is stored. Called on the request's own task, so
    /// it must return quickly: spawn slow work.
    fn on_event(&self, event: &UploadEvent) {
        let _ = event;
    }
}
