//! The handler's shared state, and the one place uploads change.
//!
//! The protocol modules depend on this module; the router (`handler.rs`)
//! depends on both; nothing here knows HTTP routes. Every call that changes
//! an upload goes through a method here, which is what makes two promises
//! checkable in one file:
//! - a capability the composed store lacks is refused (501) before any store
//!   is asked, and `Tus-Extension` lists only what is present;
//! - every change emits its event exactly here: created, progress, finished
//!   (after the store's `finish_upload`, once per upload) and terminated, to
//!   the metrics and to the embedder's [`Hooks`];
//! - every blocking decision is asked here, next to the change it guards:
//!   pre-create before `create_upload`, pre-finish between `finish_upload`
//!   and the finished event, pre-terminate before a DELETE's `terminate`,
//!   pre-access before any other work on an existing upload.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::error::HandlerError;
use crate::events::{EventKind, Hooks, RequestInfo, ResponseChange, UploadEvent, UploadStopper};
use crate::metrics::Metrics;
use crate::rate_limit::CreationLimiter;
use crate::{
    ChunkStager, ChunkStream, Concater, DataStore, FencingToken, LengthDeferrer, Lister, Lock,
    Locker, NewUpload, StagedChunk, StoreComposer, StoreError, Terminater, Truncater, UploadId,
    UploadInfo, UploadReader,
};

/// Why a handler could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("the StoreComposer has no data store")]
    NoStore,
    #[error("the StoreComposer has no locker")]
    NoLocker,
    #[error("CORS settings: {0}")]
    Cors(#[from] crate::cors::CorsError),
}

/// The request an event is attributed to, if the handler captures requests.
pub(crate) type Origin = Option<Arc<RequestInfo>>;

/// One body's progress reporting: the stopper its progress events carry,
/// and the offset last reported, so the report at the body's end is not a
/// repeat of the last periodic one.
pub(crate) struct Progress {
    pub(crate) stopper: UploadStopper,
    last_reported: u64,
}

impl Progress {
    pub(crate) fn new(offset: u64) -> Progress {
        Progress {
            stopper: UploadStopper::default(),
            last_reported: offset,
        }
    }
}

/// What [`State::write`] did with a body.
pub(crate) enum Written {
    /// This many bytes are part of the upload now.
    Stored(u64),
    /// The body waits, outside the upload, for its checksum to be compared.
    Staged(Box<dyn StagedChunk>),
}

pub(crate) struct State {
    config: Config,
    core: Arc<dyn DataStore>,
    terminater: Option<Arc<dyn Terminater>>,
    concater: Option<Arc<dyn Concater>>,
    length_deferrer: Option<Arc<dyn LengthDeferrer>>,
    truncater: Option<Arc<dyn Truncater>>,
    chunk_stager: Option<Arc<dyn ChunkStager>>,
    lister: Option<Arc<dyn Lister>>,
    locker: Arc<dyn Locker>,
    hooks: Option<Arc<dyn Hooks>>,
    metrics: Metrics,
    creations: CreationLimiter,
    /// Cancelled at shutdown: in-flight bodies stop, keeping what they stored.
    shutdown: CancellationToken,
}

impl State {
    pub(crate) fn new(
        composer: &StoreComposer,
        config: Config,
        hooks: Option<Arc<dyn Hooks>>,
    ) -> Result<State, BuildError> {
        Ok(State {
            core: composer.core().ok_or(BuildError::NoStore)?.clone(),
            locker: composer.locker().ok_or(BuildError::NoLocker)?.clone(),
            terminater: composer.terminater().cloned(),
            concater: composer.concater().cloned(),
            length_deferrer: composer.length_deferrer().cloned(),
            truncater: composer.truncater().cloned(),
            chunk_stager: composer.chunk_stager().cloned(),
            lister: composer.lister().cloned(),
            creations: CreationLimiter::new(config.creations_per_minute),
            config,
            hooks,
            metrics: Metrics::default(),
            shutdown: CancellationToken::new(),
        })
    }

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub(crate) fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    pub(crate) fn creations(&self) -> &CreationLimiter {
        &self.creations
    }

    /// The tus extensions this handler offers, from what its store can do.
    pub(crate) fn extensions(&self) -> Vec<&'static str> {
        let mut extensions = vec!["creation", "creation-with-upload"];
        if self.length_deferrer.is_some() {
            extensions.push("creation-defer-length");
        }
        if self.terminates() {
            extensions.push("termination");
        }
        if self.concater.is_some() {
            extensions.extend(["concatenation", "concatenation-unfinished"]);
        }
        if self.checks_checksums() {
            extensions.push("checksum");
        }
        if self.expires() {
            extensions.push("expiration");
        }
        extensions
    }

    /// Whether DELETE is served: the store can and the operator allows it.
    pub(crate) fn terminates(&self) -> bool {
        self.terminater.is_some() && !self.config.disable_termination
    }

    /// Whether expiration is on: configured, and the store can both list
    /// uploads and delete them.
    pub(crate) fn expires(&self) -> bool {
        self.config.expire_after.is_some() && self.lister.is_some() && self.terminater.is_some()
    }

    /// Whether a mismatching chunk can be kept out of the upload: the store
    /// stages chunks, or it can cut them off again.
    pub(crate) fn checks_checksums(&self) -> bool {
        self.chunk_stager.is_some() || self.truncater.is_some()
    }

    /// What to attribute this request's events to: captured only when a
    /// hook could look at it, so a handler without hooks copies no headers.
    pub(crate) fn origin<B>(&self, method: &http::Method, req: &http::Request<B>) -> Origin {
        self.hooks
            .as_ref()
            .map(|_| Arc::new(RequestInfo::capture(method, req)))
    }

    /// Takes `id`'s lock, waiting up to the configured timeout (423 after).
    pub(crate) async fn lock(&self, id: &UploadId) -> Result<Lock, HandlerError> {
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + self.config.acquire_lock_timeout;
        let result = self.locker.lock(id, deadline).await;
        self.metrics.lock_wait(started.elapsed(), result.is_ok());
        Ok(result?)
    }

    pub(crate) async fn info(&self, id: &UploadId) -> Result<UploadInfo, HandlerError> {
        Ok(self.core.get_info(id).await?)
    }

    /// `info` with the bytes stored since it was read (see
    /// [`DataStore::refresh_progress`]).
    pub(crate) async fn refresh_progress(
        &self,
        id: &UploadId,
        info: UploadInfo,
    ) -> Result<UploadInfo, HandlerError> {
        Ok(self.core.refresh_progress(id, info).await?)
    }

    pub(crate) async fn read_range(
        &self,
        id: &UploadId,
        start: u64,
        len: u64,
    ) -> Result<UploadReader, HandlerError> {
        Ok(self.core.read_range(id, start, len).await?)
    }

    pub(crate) async fn list_uploads(&self) -> Result<Vec<UploadId>, HandlerError> {
        let lister = self.lister.as_ref().ok_or_else(|| missing("listing"))?;
        Ok(lister.list_uploads().await?)
    }

    /// The pre-access decision, when the hooks ask for it: reads the
    /// upload's state (404 when there is none) and lets the hooks refuse the
    /// request before anything else is done for it.
    pub(crate) async fn pre_access(
        &self,
        id: &UploadId,
        origin: &Origin,
    ) -> Result<(), HandlerError> {
        match (&self.hooks, origin) {
            (Some(hooks), Some(request)) if hooks.checks_access() => {
                let upload = self.info(id).await?;
                hooks
                    .pre_access(request, &upload)
                    .await
                    .map_err(|r| HandlerError::Rejected(Box::new(r)))
            }
            _ => Ok(()),
        }
    }

    /// The pre-create decision: the hooks may refuse or adjust `upload`,
    /// and change the 201.
    pub(crate) async fn pre_create(
        &self,
        origin: &Origin,
        upload: &mut NewUpload,
    ) -> Result<ResponseChange, HandlerError> {
        match (&self.hooks, origin) {
            (Some(hooks), Some(request)) => hooks
                .pre_create(request, upload)
                .await
                .map_err(|r| HandlerError::Rejected(Box::new(r))),
            _ => Ok(ResponseChange::default()),
        }
    }

    /// Creates an upload. One that is complete at once (zero bytes long) is
    /// finished here too; nobody else knows its id, so there is no lock.
    pub(crate) async fn create(
        &self,
        upload: NewUpload,
        origin: &Origin,
    ) -> Result<UploadInfo, HandlerError> {
        if upload.size.is_none() && !upload.is_final && self.length_deferrer.is_none() {
            return Err(missing("creation-defer-length"));
        }
        if (upload.is_final || upload.is_partial) && self.concater.is_none() {
            return Err(missing("concatenation"));
        }
        let mut info = self.core.create_upload(upload).await?;
        info.modified.get_or_insert_with(std::time::SystemTime::now);
        self.emit(EventKind::Created, &info, origin);
        if !info.is_final {
            self.finish_if_complete(&info, None, origin).await?;
        }
        Ok(info)
    }

    /// Streams `chunks` into the upload `info` describes, at its offset.
    /// Returns what the store returned; the caller classifies a failure,
    /// since whether it is the client's or the server's depends on how the
    /// body ended.
    ///
    /// A body that is to be verified (`verify`: it carries a checksum) is
    /// only staged when the store can stage chunks: the caller then commits
    /// it with [`State::commit_chunk`] or drops it.
    ///
    /// With hooks, a progress event reports `info.offset + passed()` every
    /// `progress_interval` while the store writes, when it moved, carrying
    /// `progress.stopper` (tusd counts bytes read from the body, as
    /// `passed` does).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn write(
        &self,
        info: &UploadInfo,
        lock: &Lock,
        chunks: ChunkStream,
        verify: bool,
        passed: impl Fn() -> u64,
        progress: &mut Progress,
        origin: &Origin,
    ) -> Result<Written, StoreError> {
        let id = UploadId::parse(&info.id)
            .ok_or_else(|| StoreError::Corrupt(format!("invalid id {:?}", info.id)))?;
        let write = async {
            match self.chunk_stager.as_ref().filter(|_| verify) {
                Some(stager) => stager
                    .stage_chunk(&id, info.offset, chunks)
                    .await
                    .map(Written::Staged),
                None => self
                    .core
                    .write_chunk(&id, info.offset, lock.fencing_token(), chunks)
                    .await
                    .map(Written::Stored),
            }
        };
        if self.hooks.is_none() || origin.is_none() {
            return write.await;
        }
        tokio::pin!(write);
        let period = self.config.progress_interval.max(Duration::from_millis(1));
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            tokio::select! {
                written = &mut write => return written,
                _ = ticks.tick() => {
                    let offset = info.offset + passed();
                    if offset != progress.last_reported {
                        progress.last_reported = offset;
                        let mut now = info.clone();
                        now.offset = offset;
                        self.emit_with(EventKind::Progress, &now, origin, Some(progress.stopper.clone()));
                    }
                }
            }
        }
    }

    /// Records that a request left the upload at `info` after storing
    /// bytes, and finishes it if that was its last byte. Returns the
    /// pre-finish hook's change to the answer, if it finished.
    pub(crate) async fn received(
        &self,
        info: &UploadInfo,
        stored: u64,
        lock: &Lock,
        origin: &Origin,
        progress: &mut Progress,
    ) -> Result<ResponseChange, HandlerError> {
        if stored == 0 {
            return Ok(ResponseChange::default());
        }
        if info.offset != progress.last_reported {
            progress.last_reported = info.offset;
            self.emit(EventKind::Progress, info, origin);
        }
        self.finish_if_complete(info, lock.fencing_token(), origin)
            .await
    }

    /// A hook stopped the upload while its body flowed (tusd's
    /// `StopUpload`): terminates it, if the store can, without asking
    /// pre-terminate, as tusd does. A failure is only logged: the client is
    /// answered with the hook's response either way.
    pub(crate) async fn stopped_by_hook(&self, info: &UploadInfo, lock: &Lock, origin: &Origin) {
        if self.terminater.is_none() {
            return;
        }
        if let Err(e) = self.terminate(info, lock.fencing_token(), origin).await {
            tracing::warn!(id = %info.id, error = %e, "terminating an upload a hook stopped failed");
        }
    }

    /// Cuts off a chunk whose checksum did not match.
    /// Makes a verified staged chunk part of its upload; returns how many
    /// bytes it added.
    pub(crate) async fn commit_chunk(
        &self,
        chunk: Box<dyn StagedChunk>,
        lock: &Lock,
    ) -> Result<u64, HandlerError> {
        Ok(chunk.commit(lock.fencing_token()).await?)
    }

    pub(crate) async fn discard_chunk(
        &self,
        id: &UploadId,
        offset: u64,
        lock: &Lock,
    ) -> Result<(), HandlerError> {
        let truncater = self.truncater.as_ref().ok_or_else(|| missing("checksum"))?;
        Ok(truncater.truncate(id, offset, lock.fencing_token()).await?)
    }

    /// Fixes a deferred length; finishes the upload if it already holds
    /// that many bytes.
    pub(crate) async fn declare_length(
        &self,
        info: &mut UploadInfo,
        length: u64,
        lock: &Lock,
        origin: &Origin,
    ) -> Result<(), HandlerError> {
        let deferrer = self
            .length_deferrer
            .as_ref()
            .ok_or_else(|| missing("creation-defer-length"))?;
        let id = stored_id(info)?;
        deferrer
            .declare_length(&id, length, lock.fencing_token())
            .await?;
        info.size = length;
        info.size_is_deferred = false;
        self.finish_if_complete(info, lock.fencing_token(), origin)
            .await?;
        Ok(())
    }

    /// Joins `partials` into the final upload `id` and finishes it.
    pub(crate) async fn concat(
        &self,
        id: &UploadId,
        partials: &[UploadId],
        fence: Option<&FencingToken>,
        origin: &Origin,
    ) -> Result<UploadInfo, HandlerError> {
        let concater = self
            .concater
            .as_ref()
            .ok_or_else(|| missing("concatenation"))?;
        concater.concat(id, partials, fence).await?;
        let info = self.core.get_info(id).await?;
        self.finish_if_complete(&info, fence, origin).await?;
        Ok(info)
    }

    /// The pre-terminate decision for a DELETE of `info`, asked under the
    /// upload's lock: the hooks may refuse (the upload stays) or change the
    /// 204.
    pub(crate) async fn pre_terminate(
        &self,
        info: &UploadInfo,
        origin: &Origin,
    ) -> Result<ResponseChange, HandlerError> {
        match (&self.hooks, origin) {
            (Some(hooks), Some(_)) => hooks
                .pre_terminate(&self.event(EventKind::Terminated, info, origin, None))
                .await
                .map_err(|r| HandlerError::Rejected(Box::new(r))),
            _ => Ok(ResponseChange::default()),
        }
    }

    /// Deletes the upload `info` describes, under `fence`.
    pub(crate) async fn terminate(
        &self,
        info: &UploadInfo,
        fence: Option<&FencingToken>,
        origin: &Origin,
    ) -> Result<(), HandlerError> {
        let terminater = self
            .terminater
            .as_ref()
            .ok_or_else(|| missing("termination"))?;
        terminater.terminate(&stored_id(info)?, fence).await?;
        self.emit(EventKind::Terminated, info, origin);
        Ok(())
    }

    /// The completion point: called wherever an upload may just have
    /// received its last byte, and the only caller of the store's
    /// `finish_upload`. Every caller passes an upload that was not complete
    /// before its change, so this runs once per upload.
    ///
    /// Between `finish_upload` and the finished event the pre-finish hook
    /// is asked (for a request only); its refusal is the request's answer
    /// and then no finished event is emitted, as in tusd. Returns its
    /// change to the answer.
    async fn finish_if_complete(
        &self,
        info: &UploadInfo,
        fence: Option<&FencingToken>,
        origin: &Origin,
    ) -> Result<ResponseChange, HandlerError> {
        if !info.is_complete() {
            return Ok(ResponseChange::default());
        }
        self.core.finish_upload(&stored_id(info)?, fence).await?;
        let change = match (&self.hooks, origin) {
            (Some(hooks), Some(_)) => hooks
                .pre_finish(&self.event(EventKind::Finished, info, origin, None))
                .await
                .map_err(|r| HandlerError::Rejected(Box::new(r)))?,
            _ => ResponseChange::default(),
        };
        self.emit(EventKind::Finished, info, origin);
        Ok(change)
    }

    fn event(
        &self,
        kind: EventKind,
        info: &UploadInfo,
        origin: &Origin,
        stop: Option<UploadStopper>,
    ) -> UploadEvent {
        UploadEvent {
            kind,
            upload: info.clone(),
            request: origin.clone(),
            stop,
        }
    }

    fn emit(&self, kind: EventKind, info: &UploadInfo, origin: &Origin) {
        self.emit_with(kind, info, origin, None);
    }

    fn emit_with(
        &self,
        kind: EventKind,
        info: &UploadInfo,
        origin: &Origin,
        stop: Option<UploadStopper>,
    ) {
        self.metrics.upload_event(kind);
        if let Some(hooks) = &self.hooks {
            hooks.on_event(&self.event(kind, info, origin, stop));
        }
    }
}

/// 501, as tusd answers a request for an extension its store lacks.
fn missing(extension: &str) -> HandlerError {
    HandlerError::NotImplemented(format!(
        "this server's store does not support the {extension} extension"
    ))
}

fn stored_id(info: &UploadInfo) -> Result<UploadId, HandlerError> {
    UploadId::parse(&info.id)
        .ok_or_else(|| HandlerError::Internal(format!("store reported invalid id {:?}", info.id)))
}
