//! Test support: a scratch directory under the system's temporary directory that removes
//! itself, with everything in it, when it goes out of scope, whether the test passed or
//! panicked. Compiled for unit tests only.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory, `strait-<tag>-<pid>-<n>`, removed on drop.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    pub fn new(tag: &str) -> ScratchDir {
        let path = std::env::temp_dir().join(format!(
            "strait-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        ScratchDir(path)
    }
}

impl Deref for ScratchDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for ScratchDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_on_drop_even_when_a_test_panics() {
        let dir = ScratchDir::new("scratch-test");
        let path = dir.to_path_buf();
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("a/b/file"), "x").unwrap();
        drop(dir);
        assert!(!path.exists());

        let path = std::panic::catch_unwind(|| {
            let dir = ScratchDir::new("scratch-test");
            std::fs::write(dir.join("file"), "x").unwrap();
            panic!("{}", dir.display());
        })
        .unwrap_err()
        .downcast::<String>()
        .unwrap();
        assert!(!Path::new(path.as_str()).exists(), "{path}");
    }
}
