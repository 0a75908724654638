//! [`FileStamp`]: what tells one version of a file from the next without reading it, so
//! that files a config was built from (certificates, keys) can be watched by polling.
//!
//! A stamp is taken *before* the file is read: if the file is replaced between the two, the
//! stamp is the old one, the watcher sees a change that is not there, and one extra reload
//! reads the same file again. The other order could miss a change for good.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Device, inode, size and change time of a file, following symbolic links (so that a
/// Kubernetes secret volume, which swaps a symlinked directory, shows a new inode).
///
/// The change time (`ctime`) and not only the modification time: `cp -p` and `touch -r`
/// can set `mtime` back to what it was, but any write or rename sets `ctime` to now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    ctime: i64,
    ctime_nsec: i64,
    mtime: i64,
    mtime_nsec: i64,
}

impl FileStamp {
    /// The stamp of the file at `path`; `None` when it cannot be looked at (missing,
    /// no permission), which is itself a state the watcher compares.
    pub fn of(path: &Path) -> Option<FileStamp> {
        let meta = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            ctime: meta.ctime(),
            ctime_nsec: meta.ctime_nsec(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        })
    }
}

/// A file a config was built from, as it was when read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedFile {
    /// Resolved against the config file's directory.
    pub path: PathBuf,
    pub stamp: Option<FileStamp>,
}

impl WatchedFile {
    /// Stamps `path` now (call it before reading the file).
    pub fn stamp(path: PathBuf) -> WatchedFile {
        let stamp = FileStamp::of(&path);
        WatchedFile { path, stamp }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_changes_with_the_file() {
        let dir = crate::scratch::ScratchDir::new("stamp");
        let path = dir.join("a.pem");
        assert_eq!(FileStamp::of(&path), None, "missing");
        std::fs::write(&path, "one").unwrap();
        let first = FileStamp::of(&path).unwrap();
        assert_eq!(FileStamp::of(&path), Some(first), "unchanged");

        // Replaced by a rename, same size: another inode.
        let aside = dir.join("a.pem.new");
        std::fs::write(&aside, "two").unwrap();
        std::fs::rename(&aside, &path).unwrap();
        let renamed = FileStamp::of(&path).unwrap();
        assert_ne!(renamed, first);

        // Rewritten in place with a longer text: another size.
        std::fs::write(&path, "three").unwrap();
        assert_ne!(FileStamp::of(&path).unwrap(), renamed);
    }
}
