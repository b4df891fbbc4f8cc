//! [`S3Store`]: the `DataStore` on an S3 bucket, one short method per
//! operation; the work is in the modules named in the crate docs.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use futures::{StreamExt, TryStreamExt};
use tokio::sync::Semaphore;
use tusd_core::{
    ChunkStager, ChunkStream, Concater, DataStore, FencingToken, LengthDeferrer, Lister, NewUpload,
    StagedChunk, StoreComposer, StoreError, Terminater, UploadId, UploadInfo, UploadReader,
};

use crate::client::{check_bucket, s3_client, ConnectError, S3ClientConfig};
use crate::complete::abort;
use crate::error::io;
use crate::keys::{new_object_id, Prefixes, UploadKeys};
use crate::options::S3StoreOptions;
use crate::state::{load, write_info, Multipart};
use crate::{complete, concat, fence, read, stage, write, Inner};

/// Uploads stored in an S3 bucket in tusd's `s3store` layout (see the crate
/// docs). Cheap to clone: clones share the client and the part-upload limit.
#[derive(Clone)]
pub struct S3Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store")
            .field("bucket", &self.inner.bucket)
            .field("prefixes", &self.inner.prefixes)
            .finish()
    }
}

impl S3Store {
    /// A store using `client` as `options` say. Checks nothing: see
    /// [`S3Store::check_bucket`].
    pub fn new(client: Client, options: S3StoreOptions) -> S3Store {
        S3Store {
            inner: Arc::new(Inner {
                client,
                bucket: options.bucket.clone(),
                prefixes: Prefixes::new(&options.object_prefix, &options.metadata_object_prefix),
                upload_slots: Semaphore::new(options.concurrent_part_uploads.max(1)),
                endpoint: "AWS S3".to_owned(),
                options,
            }),
        }
    }

    /// Makes the client from `config` and the AWS environment, and checks
    /// that it may use the bucket: the one call a server makes at start-up.
    pub async fn connect(
        config: &S3ClientConfig,
        mut options: S3StoreOptions,
    ) -> Result<S3Store, ConnectError> {
        options.disable_content_hashes |= config.disable_content_hashes;
        let mut config = config.clone();
        config.disable_content_hashes = options.disable_content_hashes;
        let mut store = S3Store::new(s3_client(&config).await, options);
        if let (Some(endpoint), Some(inner)) = (&config.endpoint, Arc::get_mut(&mut store.inner)) {
            inner.endpoint = endpoint.clone();
        }
        store.check_bucket().await?;
        Ok(store)
    }

    /// Checks, with one HeadBucket, that the endpoint answers, the
    /// credentials are accepted and the bucket exists.
    pub async fn check_bucket(&self) -> Result<(), ConnectError> {
        check_bucket(&self.inner.client, &self.inner.bucket, &self.inner.endpoint).await
    }

    /// Makes this store the composer's data store, with every capability it
    /// has: termination, concatenation, defer-length, chunk staging (so
    /// checksums) and listing (so the expiration sweep). Not truncation: S3
    /// cannot take back a part, which is why checksums stage instead.
    pub fn use_in(self, composer: &mut StoreComposer) {
        let store = Arc::new(self);
        composer.use_core(store.clone());
        composer.use_terminater(store.clone());
        composer.use_concater(store.clone());
        composer.use_length_deferrer(store.clone());
        composer.use_chunk_stager(store.clone());
        composer.use_lister(store);
    }

    /// The client, e.g. for tests that look at the bucket.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.inner.bucket
    }

    /// The prefix of the uploads' bytes as used (with its trailing `/`
    /// unless empty).
    pub fn prefix(&self) -> &str {
        &self.inner.prefixes.object
    }

    /// The prefix of `.info`, `.part` and `.fence` as used: the object
    /// prefix unless a metadata prefix was set.
    pub fn metadata_prefix(&self) -> &str {
        &self.inner.prefixes.metadata
    }

    fn keys(&self, id: &UploadId) -> Result<UploadKeys, StoreError> {
        UploadKeys::new(&self.inner.prefixes, id)
    }
}

#[async_trait]
impl DataStore for S3Store {
    /// Starts the multipart upload (with the metadata S3 can carry, for the
    /// finished object), then writes the `.info`; if that fails the
    /// multipart upload is aborted again.
    async fn create_upload(&self, upload: NewUpload) -> Result<UploadInfo, StoreError> {
        let inner = &self.inner;
        let object_id = new_object_id();
        let object = format!("{}{object_id}", inner.prefixes.object);
        let mut create = inner
            .client
            .create_multipart_upload()
            .bucket(&inner.bucket)
            .key(&object)
            .set_metadata(Some(object_metadata(&upload.metadata)));
        if let Some(content_type) = upload
            .metadata
            .get("filetype")
            .filter(|t| is_header_value(t))
        {
            create = create.content_type(content_type);
        }
        let created = create
            .send()
            .await
            .map_err(|e| io("CreateMultipartUpload", &object, e))?;
        let multipart_id = created.upload_id().unwrap_or_default().to_owned();
        let Some(id) = UploadId::parse(&format!("{object_id}+{multipart_id}")) else {
            let _ = abort(inner, &object, &multipart_id).await;
            return Err(StoreError::Io(std::io::Error::other(format!(
                "S3 answered a multipart upload id {multipart_id:?} outside the characters an upload id may hold"
            ))));
        };
        let keys = self.keys(&id)?;
        let info = upload.into_info(
            &id,
            BTreeMap::from([
                ("Type".to_owned(), "s3store".to_owned()),
                ("Bucket".to_owned(), inner.bucket.clone()),
                ("Key".to_owned(), object.clone()),
            ]),
        );
        if let Err(e) = write_info(inner, &keys, &info).await {
            let _ = abort(inner, &object, &multipart_id).await;
            return Err(e);
        }
        Ok(info)
    }

    async fn get_info(&self, id: &UploadId) -> Result<UploadInfo, StoreError> {
        Ok(load(&self.inner, &self.keys(id)?).await?.info)
    }

    async fn write_chunk(
        &self,
        id: &UploadId,
        offset: u64,
        fence: Option<&FencingToken>,
        chunk: ChunkStream,
    ) -> Result<u64, StoreError> {
        let keys = self.keys(id)?;
        // Boxed: see `write` on the size of the SDK's futures.
        let state = Box::pin(load(&self.inner, &keys)).await?;
        if state.info.offset != offset {
            return Err(StoreError::OffsetMoved {
                expected: offset,
                actual: state.info.offset,
            });
        }
        write::write(&self.inner, &keys, state, fence, chunk).await
    }

    /// Completes the multipart upload: the object `{prefix}{object id}`
    /// appears.
    async fn finish_upload(
        &self,
        id: &UploadId,
        fence: Option<&FencingToken>,
    ) -> Result<(), StoreError> {
        let keys = self.keys(id)?;
        let state = load(&self.inner, &keys).await?;
        if let Multipart::Completed = state.multipart {
            return Ok(());
        }
        fence::admit(&self.inner, &keys, fence).await?;
        complete::complete(&self.inner, &keys, &state).await
    }

    async fn read_range(
        &self,
        id: &UploadId,
        start: u64,
        len: u64,
    ) -> Result<UploadReader, StoreError> {
        read::read_range(&self.inner, &self.keys(id)?, start, len).await
    }
}

#[async_trait]
impl Terminater for S3Store {
    /// Aborts the multipart upload (which drops its parts) and deletes the
    /// object, `.part` and `.fence`, then the `.info` last, so that an
    /// interrupted termination still lists the upload for the next sweep.
    async fn terminate(
        &self,
        id: &UploadId,
        fence: Option<&FencingToken>,
    ) -> Result<(), StoreError> {
        let inner = &self.inner;
        let keys = self.keys(id)?;
        load(inner, &keys).await?;
        fence::admit(inner, &keys, fence).await?;
        abort(inner, &keys.object, &keys.multipart_id).await?;
        for key in [&keys.object, &keys.part, &keys.fence, &keys.info] {
            write::delete(inner, key).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl LengthDeferrer for S3Store {
    async fn declare_length(
        &self,
        id: &UploadId,
        size: u64,
        fence: Option<&FencingToken>,
    ) -> Result<(), StoreError> {
        let keys = self.keys(id)?;
        let mut info = load(&self.inner, &keys).await?.info;
        fence::admit(&self.inner, &keys, fence).await?;
        info.size = size;
        info.size_is_deferred = false;
        write_info(&self.inner, &keys, &info).await
    }
}

#[async_trait]
impl Concater for S3Store {
    async fn concat(
        &self,
        id: &UploadId,
        partials: &[UploadId],
        fence: Option<&FencingToken>,
    ) -> Result<(), StoreError> {
        let keys = self.keys(id)?;
        fence::admit(&self.inner, &keys, fence).await?;
        concat::concat(&self.inner, &keys, partials).await
    }
}

#[async_trait]
impl ChunkStager for S3Store {
    /// Keeps the chunk on local disk; see `stage`.
    async fn stage_chunk(
        &self,
        id: &UploadId,
        offset: u64,
        chunk: ChunkStream,
    ) -> Result<Box<dyn StagedChunk>, StoreError> {
        let staged = stage::stage(&self.inner, self.keys(id)?, offset, chunk).await?;
        Ok(Box::new(staged))
    }
}

#[async_trait]
impl Lister for S3Store {
    /// Every `{object id}.info` directly under the metadata prefix, by the
    /// id it records (one GET each, 16 at a time): the id holds the
    /// multipart upload id, which the key does not.
    async fn list_uploads(&self) -> Result<Vec<UploadId>, StoreError> {
        let inner = &self.inner;
        let mut info_keys = Vec::new();
        let mut pages = inner
            .client
            .list_objects_v2()
            .bucket(&inner.bucket)
            .prefix(&inner.prefixes.metadata)
            .delimiter("/")
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| io("ListObjectsV2", &inner.prefixes.metadata, e))?;
            for object in page.contents() {
                if let Some(key) = object.key().filter(|k| k.ends_with(".info")) {
                    info_keys.push(key.to_owned());
                }
            }
        }
        let mut ids: Vec<UploadId> = futures::stream::iter(info_keys)
            .map(|key| async move { recorded_id(inner, &key).await })
            .buffer_unordered(16)
            .try_filter_map(|id| async move { Ok(id) })
            .try_collect()
            .await?;
        ids.sort();
        Ok(ids)
    }
}

/// The id an `.info` object records, if it is one this store could use
/// (its keys lead back to this `.info`).
async fn recorded_id(inner: &Inner, key: &str) -> Result<Option<UploadId>, StoreError> {
    // None: terminated meanwhile.
    let Some(got) = crate::write::get_small(inner, key).await? else {
        return Ok(None);
    };
    let body = got.bytes;
    let Ok(info) = serde_json::from_slice::<UploadInfo>(&body) else {
        tracing::warn!(key, "unreadable .info object, not listed");
        return Ok(None);
    };
    let id = UploadId::parse(&info.id);
    Ok(id.filter(|id| UploadKeys::new(&inner.prefixes, id).is_ok_and(|keys| keys.info == key)))
}

/// The upload's metadata as S3 object metadata, for the finished object:
/// S3 carries it in HTTP headers, so (as tusd does) keys that are not
/// header-name tokens are left out and characters a header value cannot
/// hold become `?`. The `.info` keeps the metadata unchanged.
fn object_metadata(
    metadata: &BTreeMap<String, String>,
) -> std::collections::HashMap<String, String> {
    metadata
        .iter()
        .filter(|(key, _)| {
            !key.is_empty()
                && key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(|(key, value)| {
            let value = value
                .chars()
                .map(|c| {
                    if c == '\t' || (' '..='~').contains(&c) {
                        c
                    } else {
                        '?'
                    }
                })
                .collect();
            (key.to_ascii_lowercase(), value)
        })
        .collect()
}

fn is_header_value(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
}
