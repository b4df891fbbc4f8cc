//! What the file store syncs to disk, and when: the promise an
//! acknowledgement carries if the machine (not just the process) goes down.
//!
//! A process that exits, crashes or is killed loses nothing the file store
//! wrote: written bytes sit in the kernel's page cache and reach the disk
//! on their own. Syncing only matters for a kernel crash or a power loss,
//! and it is paid per call (a journal commit, a disk flush), so each level
//! syncs at the moments it names and nowhere else. Nothing is synced per
//! chunk: a tus client that loses bytes of an unfinished upload learns the
//! shorter offset from its next HEAD and sends them again. The one
//! acknowledgement a client cannot check again is the `204` that completes
//! an upload: after it the client forgets the file and hooks act on it.
//! tusd, rustus and @tus/server sync nothing.

use std::fmt;
use std::str::FromStr;

/// The file store's durability level; levels are cumulative.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// Nothing is synced, as in tusd, rustus and @tus/server. After a power
    /// loss any upload may be shorter than acknowledged, or missing, or its
    /// `.info` empty.
    None,
    /// Every `.info` is synced before it is renamed into place (at creation,
    /// a declared length, a concatenation), so a power loss leaves the old
    /// state or the new one, never a torn `.info`. Bytes are not synced, and
    /// an upload created just before the loss may be missing.
    Create,
    /// `Create`, plus: when an upload's last byte is stored, its data file
    /// and the directory are synced before the upload is reported complete
    /// (before the `204` and the finished hooks), so a completed upload
    /// survives a power loss whole.
    #[default]
    Complete,
}

impl Durability {
    /// Whether `.info` writes are synced.
    pub(crate) fn syncs_state(self) -> bool {
        self != Durability::None
    }

    /// Whether a completed upload's bytes are synced.
    pub(crate) fn syncs_completion(self) -> bool {
        self == Durability::Complete
    }
}

impl FromStr for Durability {
    type Err = String;

    fn from_str(s: &str) -> Result<Durability, String> {
        match s {
            "none" => Ok(Durability::None),
            "create" => Ok(Durability::Create),
            "complete" => Ok(Durability::Complete),
            other => Err(format!(
                "unknown durability {other:?} (expected none, create or complete)"
            )),
        }
    }
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Durability::None => "none",
            Durability::Create => "create",
            Durability::Complete => "complete",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_are_refused() {
        for level in [Durability::None, Durability::Create, Durability::Complete] {
            assert_eq!(level.to_string().parse::<Durability>(), Ok(level));
        }
        assert!("fsync".parse::<Durability>().unwrap_err().contains("none"));
        assert_eq!(Durability::default(), Durability::Complete);
    }
}
