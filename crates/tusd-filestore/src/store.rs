//! [`FileStore`]: the `DataStore` on a local directory.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncSeekExt, BufReader};
use tusd_core::{
    ChunkStream, Concater, DataStore, FencingToken, LengthDeferrer, Lister, NewUpload,
    StoreComposer, StoreError, Terminater, Truncater, UploadId, UploadInfo, UploadReader,
};

use crate::append::append;
use crate::blocking;
use crate::data_file::{self, Access};
use crate::durability::Durability;
use crate::fence::{self, Fence};
use crate::file_io::FileIo;
use crate::id::new_upload_id;
use crate::info_file;
use crate::paths::{id_of_info_file, UploadPaths};

/// How much a reader returned by `read_range` reads from disk at a time.
const READ_BUFFER: usize = 256 * 1024;

/// Uploads stored as files in one directory, in tusd's `filestore` layout
/// (see the crate docs). Cheap to share: it holds only the directory path
/// and what to sync.
#[derive(Clone, Debug)]
pub struct FileStore {
    dir: PathBuf,
    durability: Durability,
    io: FileIo,
}

impl FileStore {
    /// A store in `dir`, creating the directory (and its parents) if missing.
    pub fn new(dir: impl Into<PathBuf>) -> io::Result<FileStore> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        Ok(FileStore {
            dir,
            durability: Durability::default(),
            io: FileIo::default(),
        })
    }

    /// The same store, syncing what `durability` promises (see
    /// [`Durability`]; the default is [`Durability::Complete`]).
    pub fn with_durability(self, durability: Durability) -> FileStore {
        FileStore { durability, ..self }
    }

    /// What this store syncs.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// The same store, making its short reads and writes where `io` says
    /// (see [`FileIo`]; the default is [`FileIo::Inline`]).
    pub fn with_io(self, io: FileIo) -> FileStore {
        FileStore { io, ..self }
    }

    /// Makes this store the composer's data store, with every optional
    /// capability: the file store can do all of them.
    pub fn use_in(self, composer: &mut StoreComposer) {
        let store = Arc::new(self);
        composer.use_core(store.clone());
        composer.use_terminater(store.clone());
        composer.use_concater(store.clone());
        composer.use_length_deferrer(store.clone());
        composer.use_truncater(store.clone());
        composer.use_lister(store);
    }

    /// The directory the uploads live in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The files of `id`; `NotFound` for an id outside the file store's
    /// alphabet (see `paths`).
    fn paths(&self, id: &UploadId) -> Result<UploadPaths, StoreError> {
        UploadPaths::new(&self.dir, id)
    }
}

#[async_trait]
impl DataStore for FileStore {
    /// Creates the empty data file, then the `.info`; if the `.info` cannot
    /// be written the data file is removed again, so no half-created upload
    /// is left behind. Without a sync these are a few small calls, made
    /// where [`FileIo`] says; a sync always waits on the blocking pool. The
    /// state returned is the one written, not read back: both files are new
    /// and nobody else knows the id yet, so reading them again (an open,
    /// two stats and a read) could only return the same.
    async fn create_upload(&self, upload: NewUpload) -> Result<UploadInfo, StoreError> {
        let dir = self.dir.clone();
        let sync = self.durability.syncs_state();
        let io = if sync { FileIo::BlockingPool } else { self.io };
        io.run(move || {
            let (id, paths) = create_data_file(&dir, upload.id.as_ref())?;
            let info = upload.into_info(&id, storage_fields(&paths));
            if let Err(e) = info_file::create(&paths, &info, sync) {
                let _ = fs::remove_file(&paths.data);
                return Err(e);
            }
            Ok(info)
        })
        .await
    }

    /// A HEAD makes up to two of these calls, each a small read and a stat
    /// that cost less than a trip to the blocking pool (see [`FileIo`]).
    async fn get_info(&self, id: &UploadId) -> Result<UploadInfo, StoreError> {
        let paths = self.paths(id)?;
        self.io.run(move || info_file::load(&paths)).await
    }

    /// One `stat` of the data file instead of reading the `.info` again.
    async fn refresh_progress(
        &self,
        id: &UploadId,
        info: UploadInfo,
    ) -> Result<UploadInfo, StoreError> {
        let paths = self.paths(id)?;
        self.io.run(move || info_file::refresh(&paths, info)).await
    }

    async fn write_chunk(
        &self,
        id: &UploadId,
        offset: u64,
        fence: Option<&FencingToken>,
        chunk: ChunkStream,
    ) -> Result<u64, StoreError> {
        append(self.paths(id)?, offset, fence, chunk, self.io).await
    }

    /// With [`Durability::Complete`], syncs the data file and the directory
    /// (which holds the names of the data file and the `.info`; the `.info`'s
    /// contents were synced when written), so the completing `204` is
    /// never followed by a shorter or missing file after a power loss.
    async fn finish_upload(
        &self,
        id: &UploadId,
        _fence: Option<&FencingToken>,
    ) -> Result<(), StoreError> {
        if !self.durability.syncs_completion() {
            return Ok(());
        }
        let paths = self.paths(id)?;
        let dir = self.dir.clone();
        blocking::run(move || {
            data_file::open(&paths.data, Access::Read)?.sync_data()?;
            fs::File::open(&dir)?.sync_all()?;
            Ok(())
        })
        .await
    }

    /// The reader ends early if the upload holds fewer than `start + len`
    /// bytes.
    async fn read_range(
        &self,
        id: &UploadId,
        start: u64,
        len: u64,
    ) -> Result<UploadReader, StoreError> {
        let path = self.paths(id)?.data;
        let file = blocking::run(move || data_file::open(&path, Access::Read)).await?;
        let mut file = tokio::fs::File::from_std(file);
        file.seek(SeekFrom::Start(start)).await?;
        Ok(Box::new(BufReader::with_capacity(
            READ_BUFFER,
            file.take(len),
        )))
    }
}

#[async_trait]
impl Truncater for FileStore {
    async fn truncate(
        &self,
        id: &UploadId,
        offset: u64,
        fence: Option<&FencingToken>,
    ) -> Result<(), StoreError> {
        let paths = self.paths(id)?;
        let mut fence = Fence::new(paths.fence.clone(), fence);
        blocking::run(move || {
            let file = data_file::open(&paths.data, Access::Write)?;
            let _entered = fence.enter(&file, None)?;
            Ok(file.set_len(offset)?)
        })
        .await
    }
}

#[async_trait]
impl LengthDeferrer for FileStore {
    async fn declare_length(
        &self,
        id: &UploadId,
        size: u64,
        fence: Option<&FencingToken>,
    ) -> Result<(), StoreError> {
        let paths = self.paths(id)?;
        let mut fence = Fence::new(paths.fence.clone(), fence);
        let sync = self.durability.syncs_state();
        blocking::run(move || {
            let data = data_file::open(&paths.data, Access::Read)?;
            let _entered = fence.enter(&data, None)?;
            let mut info = info_file::load(&paths)?;
            info.size = size;
            info.size_is_deferred = false;
            info_file::store(&paths, &info, sync)
        })
        .await
    }
}

#[async_trait]
impl Terminater for FileStore {
    /// Removes the data file first, then the `.info`, then the fencing
    /// record: if the process dies in between, the `.info` still lists the
    /// upload so a later sweep finishes the job. `NotFound` only when
    /// neither file existed.
    async fn terminate(
        &self,
        id: &UploadId,
        fence: Option<&FencingToken>,
    ) -> Result<(), StoreError> {
        let paths = self.paths(id)?;
        let mut fence = Fence::new(paths.fence.clone(), fence);
        blocking::run(move || {
            // Fenced like any change; an upload whose data file is already
            // gone has nothing left to protect and is just cleared away.
            let data = match data_file::open(&paths.data, Access::Read) {
                Ok(data) => Some(data),
                Err(StoreError::NotFound) => None,
                Err(e) => return Err(e),
            };
            let _entered = data.as_ref().map(|d| fence.enter(d, None)).transpose()?;
            let data = remove_if_present(&paths.data)?;
            let info = remove_if_present(&paths.info)?;
            remove_if_present(&paths.fence)?;
            if data || info {
                Ok(())
            } else {
                Err(StoreError::NotFound)
            }
        })
        .await
    }
}

#[async_trait]
impl Concater for FileStore {
    /// Rewrites the final upload's data file from empty, so a retried concat
    /// cannot duplicate bytes, then records the total as its size.
    async fn concat(
        &self,
        id: &UploadId,
        partials: &[UploadId],
        fence: Option<&FencingToken>,
    ) -> Result<(), StoreError> {
        let paths = self.paths(id)?;
        let partials = partials
            .iter()
            .map(|p| Ok(self.paths(p)?.data))
            .collect::<Result<Vec<PathBuf>, StoreError>>()?;
        let mut fence = Fence::new(paths.fence.clone(), fence);
        let sync = self.durability.syncs_state();
        blocking::run(move || {
            let target = data_file::open(&paths.data, Access::Write)?;
            let _entered = fence.enter(&target, None)?;
            target.set_len(0)?;
            let mut total = 0;
            for partial in &partials {
                let mut source = data_file::open(partial, Access::Read)?;
                total += io::copy(&mut source, &mut &target)?;
            }
            let mut info = info_file::load(&paths)?;
            info.size = total;
            info.size_is_deferred = false;
            info_file::store(&paths, &info, sync)
        })
        .await
    }
}

#[async_trait]
impl Lister for FileStore {
    /// Every `{id}.info` in the directory, including uploads whose data file
    /// is missing, so that the expiration sweep can remove them.
    async fn list_uploads(&self) -> Result<Vec<UploadId>, StoreError> {
        let dir = self.dir.clone();
        blocking::run(move || {
            let mut ids = Vec::new();
            for entry in fs::read_dir(&dir)? {
                let entry = entry?;
                let id = entry.file_name().to_str().and_then(id_of_info_file);
                if let Some(id) = id {
                    if !entry.file_type()?.is_dir() {
                        ids.push(id);
                    }
                }
            }
            ids.sort();
            Ok(ids)
        })
        .await
    }
}

/// Creates the empty data file of a new upload: under `chosen` (a pre-create
/// hook's id) if given, which must be new, else under a fresh random id. An
/// existing file is never reused: a collision of 128 random bits means a
/// broken random source, and trying again is cheaper than reasoning about
/// it.
fn create_data_file(
    dir: &Path,
    chosen: Option<&UploadId>,
) -> Result<(UploadId, UploadPaths), StoreError> {
    if let Some(id) = chosen {
        let paths = UploadPaths::new(dir, id).map_err(|_| {
            StoreError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the file store cannot name an upload {id:?}: its ids are letters, digits, - and _"),
            ))
        })?;
        fence::mark_new(&info_file::create_new(&paths.data)?);
        return Ok((id.clone(), paths));
    }
    let mut attempts = 0;
    loop {
        let id = new_upload_id();
        let paths = UploadPaths::new(dir, &id)?;
        match info_file::create_new(&paths.data) {
            Ok(file) => {
                fence::mark_new(&file);
                return Ok((id, paths));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 3 => attempts += 1,
            Err(e) => return Err(StoreError::Io(e)),
        }
    }
}

/// tusd's `Storage` map for the filestore; tusd reads `Path` to find the
/// data file, so it must name ours.
fn storage_fields(paths: &UploadPaths) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("Type".to_owned(), "filestore".to_owned()),
        ("Path".to_owned(), paths.data.to_string_lossy().into_owned()),
        (
            "InfoPath".to_owned(),
            paths.info.to_string_lossy().into_owned(),
        ),
    ])
}

fn remove_if_present(path: &Path) -> Result<bool, StoreError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StoreError::Io(e)),
    }
}
