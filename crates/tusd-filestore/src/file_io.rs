//! Where the file store's short system calls run: on the async worker
//! thread that asks for them, or on tokio's blocking pool.
//!
//! A trip to the blocking pool costs two thread switches (the pool thread
//! is woken, then the worker), which is more than a read of a small file or
//! a write into the page cache takes. Measured on a 1 GiB PATCH, the trips
//! were most of the server's CPU time: context switches fell from about
//! 56,000 to 15,000–21,000 and CPU from 1.25–1.77 to 0.80–0.83 s per GiB
//! when batches were written on the worker (docs/benchmarks.md). Go servers
//! such as tusd make these calls on their goroutine's thread too.
//!
//! The price: while such a call blocks, the other requests of that worker
//! wait (tokio's other workers steal what they can). On a local disk that
//! happens when the kernel throttles writers because too much is waiting to
//! be written back; on a network file system any call can stall. For those,
//! [`FileIo::BlockingPool`] keeps every call off the workers. Calls that
//! wait on the disk by design (syncs, copies of whole files, directory
//! listings) always run on the pool.

use std::fmt;
use std::str::FromStr;

use tusd_core::StoreError;

use crate::blocking;

/// Where reads of an upload's state and writes of its bytes run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FileIo {
    /// On the worker thread handling the request.
    #[default]
    Inline,
    /// On tokio's blocking pool, one trip per call or per batch written.
    BlockingPool,
}

impl FileIo {
    /// Runs `f` where this setting says.
    pub(crate) async fn run<T, F>(self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce() -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        match self {
            FileIo::Inline => f(),
            FileIo::BlockingPool => blocking::run(f).await,
        }
    }
}

impl FromStr for FileIo {
    type Err = String;

    fn from_str(s: &str) -> Result<FileIo, String> {
        match s {
            "inline" => Ok(FileIo::Inline),
            "pool" => Ok(FileIo::BlockingPool),
            other => Err(format!(
                "unknown file I/O mode {other:?} (expected inline or pool)"
            )),
        }
    }
}

impl fmt::Display for FileIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileIo::Inline => "inline",
            FileIo::BlockingPool => "pool",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_it_prints() {
        for io in [FileIo::Inline, FileIo::BlockingPool] {
            assert_eq!(io.to_string().parse::<FileIo>(), Ok(io));
        }
        assert!("threads"
            .parse::<FileIo>()
            .unwrap_err()
            .contains("inline or pool"));
    }
}
