//! The handler's seams, driven over real HTTP on loopback with the real file
//! store and memory locker: which extensions a composed store offers, the
//! one completion point, the events, and the pre-create decision.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use http::{HeaderMap, HeaderValue, StatusCode};
use tusd_filestore::FileStore;
use tusd_handler::{
    ChunkStream, Config, DataStore, EventKind, FencingToken, Hooks, NewUpload, Rejection,
    RequestInfo, ResponseChange, StoreComposer, StoreError, TusHandler, UploadEvent, UploadId,
    UploadInfo, UploadReader,
};
use tusd_memorylocker::MemoryLocker;

/// The file store as a core-only store that counts `finish_upload` calls:
/// the wrapper adds no behaviour, so every answer is the file store's.
struct CoreOnly {
    inner: FileStore,
    finished: AtomicUsize,
}

#[async_trait]
impl DataStore for CoreOnly {
    async fn create_upload(&self, upload: NewUpload) -> Result<UploadInfo, StoreError> {
        self.inner.create_upload(upload).await
    }
    async fn get_info(&self, id: &UploadId) -> Result<UploadInfo, StoreError> {
        self.inner.get_info(id).await
    }
    async fn write_chunk(
        &self,
        id: &UploadId,
        offset: u64,
        fence: Option<&FencingToken>,
        chunk: ChunkStream,
    ) -> Result<u64, StoreError> {
        self.inner.write_chunk(id, offset, fence, chunk).await
    }
    async fn finish_upload(
        &self,
        id: &UploadId,
        fence: Option<&FencingToken>,
    ) -> Result<(), StoreError> {
        self.finished.fetch_add(1, Ordering::SeqCst);
        self.inner.finish_upload(id, fence).await
    }
    async fn read_range(
        &self,
        id: &UploadId,
        start: u64,
        len: u64,
    ) -> Result<UploadReader, StoreError> {
        self.inner.read_range(id, start, len).await
    }
}

/// Records every event; refuses uploads whose metadata names `refuse`, and
/// stamps `checked=yes` into the metadata of the others.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<(EventKind, u64, Option<String>)>>,
}

#[async_trait]
impl Hooks for Recorder {
    async fn pre_create(
        &self,
        request: &RequestInfo,
        upload: &mut NewUpload,
    ) -> Result<ResponseChange, Rejection> {
        assert!(request.remote_addr.is_none() || request.remote_addr.unwrap().ip().is_loopback());
        if upload.metadata.contains_key("refuse") {
            let mut headers = HeaderMap::new();
            headers.insert("x-reason", HeaderValue::from_static("quota"));
            return Err(Rejection {
                status: StatusCode::PAYMENT_REQUIRED,
                headers,
                body: "{\"error\":\"over quota\"}".into(),
            });
        }
        upload.metadata.insert("checked".into(), "yes".into());
        Ok(ResponseChange::default())
    }

    fn on_event(&self, event: &UploadEvent) {
        let method = event.request.as_ref().map(|r| r.method.to_string());
        self.events
            .lock()
            .unwrap()
            .push((event.kind, event.upload.offset, method));
    }
}

struct Server {
    url: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn serve(handler: TusHandler, dir: tempfile::TempDir) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, handler.router()).await });
    Server {
        url: format!("http://{addr}/files/"),
        client: reqwest::Client::new(),
        _dir: dir,
    }
}

impl Server {
    fn req(&self, method: &str, url: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method.parse().unwrap(), url)
            .header("tus-resumable", "1.0.0")
    }

    async fn create(&self, length: &str, metadata: Option<&str>) -> reqwest::Response {
        let mut req = self.req("POST", &self.url).header("upload-length", length);
        if let Some(m) = metadata {
            req = req.header("upload-metadata", m);
        }
        req.send().await.unwrap()
    }

    async fn patch(&self, location: &str, offset: u64, body: &'static [u8]) -> reqwest::Response {
        self.req("PATCH", location)
            .header("upload-offset", offset)
            .header("content-type", "application/offset+octet-stream")
            .body(body)
            .send()
            .await
            .unwrap()
    }
}

fn location(response: &reqwest::Response) -> String {
    response.headers()["location"].to_str().unwrap().to_owned()
}

async fn core_only() -> (Server, Arc<CoreOnly>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(CoreOnly {
        inner: FileStore::new(dir.path()).unwrap(),
        finished: AtomicUsize::new(0),
    });
    let mut composer = StoreComposer::new();
    composer.use_core(store.clone());
    MemoryLocker::new().use_in(&mut composer);
    let config = Config {
        expire_after: Some(std::time::Duration::from_secs(60)),
        ..Config::default()
    };
    let handler = TusHandler::new(&composer, config).unwrap();
    (serve(handler, dir).await, store)
}

#[tokio::test]
async fn options_lists_only_what_the_composed_store_offers() {
    let (server, _) = core_only().await;
    let response = server.req("OPTIONS", &server.url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        response.headers()["tus-extension"],
        "creation,creation-with-upload"
    );
    assert!(response.headers().get("tus-checksum-algorithm").is_none());

    let dir = tempfile::tempdir().unwrap();
    let mut composer = StoreComposer::new();
    FileStore::new(dir.path()).unwrap().use_in(&mut composer);
    MemoryLocker::new().use_in(&mut composer);
    let config = Config {
        expire_after: Some(std::time::Duration::from_secs(60)),
        ..Config::default()
    };
    let full = serve(TusHandler::new(&composer, config).unwrap(), dir).await;
    let response = full.req("OPTIONS", &full.url).send().await.unwrap();
    assert_eq!(
        response.headers()["tus-extension"],
        "creation,creation-with-upload,creation-defer-length,termination,\
         concatenation,concatenation-unfinished,checksum,expiration"
    );
}

#[tokio::test]
async fn a_missing_capability_is_501_and_changes_nothing() {
    let (server, _) = core_only().await;
    let created = server.create("4", None).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let upload = location(&created);
    // No Upload-Expires: expiration needs a store that can list and delete.
    assert!(created.headers().get("upload-expires").is_none());

    let deferred = server
        .req("POST", &server.url)
        .header("upload-defer-length", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(deferred.status(), StatusCode::NOT_IMPLEMENTED);
    let partial = server
        .req("POST", &server.url)
        .header("upload-length", "2")
        .header("upload-concat", "partial")
        .send()
        .await
        .unwrap();
    assert_eq!(partial.status(), StatusCode::NOT_IMPLEMENTED);
    let delete = server.req("DELETE", &upload).send().await.unwrap();
    assert_eq!(delete.status(), StatusCode::NOT_IMPLEMENTED);
    let with_checksum = server
        .req("PATCH", &upload)
        .header("upload-offset", "0")
        .header("content-type", "application/offset+octet-stream")
        .header("upload-checksum", "sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=")
        .body("ab")
        .send()
        .await
        .unwrap();
    assert_eq!(with_checksum.status(), StatusCode::NOT_IMPLEMENTED);
    let text = with_checksum.text().await.unwrap();
    assert!(text.contains("checksum"), "{text}");

    let head = server.req("HEAD", &upload).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["upload-offset"], "0");
}

#[tokio::test]
async fn finish_upload_is_called_once_when_the_last_byte_is_stored() {
    let (server, store) = core_only().await;
    let upload = location(&server.create("4", None).await);
    assert_eq!(server.patch(&upload, 0, b"ab").await.status(), 204);
    assert_eq!(store.finished.load(Ordering::SeqCst), 0);
    assert_eq!(server.patch(&upload, 2, b"cd").await.status(), 204);
    assert_eq!(store.finished.load(Ordering::SeqCst), 1);
    // An empty PATCH at the end and a HEAD change nothing.
    assert_eq!(server.patch(&upload, 4, b"").await.status(), 204);
    server.req("HEAD", &upload).send().await.unwrap();
    assert_eq!(store.finished.load(Ordering::SeqCst), 1);
    // An empty upload is finished the moment it exists.
    server.create("0", None).await;
    assert_eq!(store.finished.load(Ordering::SeqCst), 2);
}

async fn with_hooks() -> (Server, Arc<Recorder>, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let mut composer = StoreComposer::new();
    FileStore::new(dir.path()).unwrap().use_in(&mut composer);
    MemoryLocker::new().use_in(&mut composer);
    let hooks = Arc::new(Recorder::default());
    let handler = TusHandler::with_hooks(&composer, Config::default(), hooks.clone()).unwrap();
    (serve(handler, dir).await, hooks, path)
}

#[tokio::test]
async fn every_change_emits_its_event_once_with_its_request() {
    let (server, hooks, _) = with_hooks().await;
    let created = server.create("4", None).await;
    let upload = location(&created);
    server.patch(&upload, 0, b"ab").await;
    server.patch(&upload, 2, b"cd").await;
    server.req("DELETE", &upload).send().await.unwrap();
    let events = hooks.events.lock().unwrap().clone();
    let post = Some("POST".to_owned());
    let patch = Some("PATCH".to_owned());
    assert_eq!(
        events,
        vec![
            (EventKind::Created, 0, post),
            (EventKind::Progress, 2, patch.clone()),
            (EventKind::Progress, 4, patch.clone()),
            (EventKind::Finished, 4, patch),
            (EventKind::Terminated, 4, Some("DELETE".to_owned())),
        ]
    );
}

#[tokio::test]
async fn pre_create_can_refuse_with_its_own_answer_or_change_metadata() {
    let (server, hooks, dir) = with_hooks().await;
    // "refuse" with an empty value
    let refused = server.create("4", Some("refuse")).await;
    assert_eq!(refused.status(), StatusCode::PAYMENT_REQUIRED);
    assert_eq!(refused.headers()["x-reason"], "quota");
    assert_eq!(refused.headers()["tus-resumable"], "1.0.0");
    assert!(refused.headers().get("location").is_none());
    assert_eq!(refused.text().await.unwrap(), "{\"error\":\"over quota\"}");
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "nothing stored"
    );
    assert!(hooks.events.lock().unwrap().is_empty());

    // "name" = "a.txt"
    let created = server.create("4", Some("name YS50eHQ=")).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let head = server
        .req("HEAD", &location(&created))
        .send()
        .await
        .unwrap();
    let metadata = head.headers()["upload-metadata"].to_str().unwrap();
    let mut pairs: BTreeMap<&str, &str> = BTreeMap::new();
    for pair in metadata.split(',') {
        let mut kv = pair.splitn(2, ' ');
        pairs.insert(kv.next().unwrap(), kv.next().unwrap_or(""));
    }
    assert_eq!(pairs.get("checked"), Some(&"eWVz"), "{metadata}");
    assert_eq!(pairs.get("name"), Some(&"YS50eHQ="), "{metadata}");
}
