//! A tus data store on a local directory, laid out exactly like tusd's
//! `filestore`, so a tusd upload directory can be served by tusd-rs and the
//! other way round.
//!
//! Every upload is two files side by side in one directory:
//! - `{dir}/{id}`: the upload's bytes. Its length *is* the upload's offset;
//!   no offset is recorded anywhere else that could disagree with it.
//! - `{dir}/{id}.info`: the upload's state as JSON with tusd's field names
//!   (`ID`, `Size`, `SizeIsDeferred`, `Offset`, `MetaData`, `IsPartial`,
//!   `IsFinal`, `PartialUploads`, `Storage`). It is rewritten only when the
//!   state changes (creation, declared length, concatenation), never per
//!   chunk, and always by writing a temporary file and renaming it over the
//!   old one, so a reader never sees half an `.info`.
//!
//! The first change made under a lock also records, in the data file's
//! extended attribute `user.tusd.fence` (or, where the file system keeps no
//! user attributes, in a third file `{dir}/{id}.fence`), the newest fencing
//! token that changed the upload, so that a holder who lost its lock
//! without knowing it (a paused process) is refused instead of writing
//! after its successor. tusd ignores it.
//!
//! The store keeps nothing about an upload in memory between calls, so any
//! number of processes may serve the same directory, provided a shared locker
//! keeps one writer per upload (see `tusd_core::Locker`); the fence makes
//! the store itself refuse a writer the locker no longer vouches for.
//!
//! # Layout
//! - `store`: [`FileStore`], the `DataStore` implementation, one short
//!   method per operation.
//! - `durability`: [`Durability`], what is synced to disk and when.
//! - `file_io`: [`FileIo`], whether short reads and writes run on the
//!   request's worker thread or on the blocking pool.
//! - `paths`: the two paths of an upload; the only place that turns an id
//!   into a path.
//! - `info_file`: reading the `.info` (distrustfully) and replacing it atomically.
//! - `data_file`: opening the data file, refusing symlinks and non-files.
//! - `append`: streaming a request body onto the end of the data file.
//! - `fence`: the critical section every change runs in, and the fencing
//!   record that refuses a holder who lost its lock.
//! - `id`: fresh upload ids, 32 lowercase hex characters like tusd's.
//! - `blocking`: running file system calls off the async threads.

mod append;
mod blocking;
mod data_file;
mod durability;
mod fence;
mod file_io;
mod id;
mod info_file;
mod paths;
mod store;

pub use durability::Durability;
pub use file_io::FileIo;
pub use store::FileStore;

/// The fencing record of upload `id` in `upload_dir`, as its JSON text
/// (`{"Issuer": ..., "Token": ..., "Retired": [...]}`); `None` when no
/// holder with a token has changed the upload. For tests and operators
/// looking at a directory: the record lives in an extended attribute of the
/// data file (`getfattr -n user.tusd.fence {id}` shows it) or in
/// `{id}.fence` (see the `fence` module).
pub fn fence_record(upload_dir: &std::path::Path, id: &str) -> std::io::Result<Option<String>> {
    let data = upload_dir.join(id);
    let record = upload_dir.join(format!("{id}{}", paths::FENCE_SUFFIX));
    let json = fence::record_json(&data, &record)?;
    Ok(json.map(|json| String::from_utf8_lossy(&json).into_owned()))
}
