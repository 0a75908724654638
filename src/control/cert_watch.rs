//! Certificate reload: when a certificate, key or CA file of the served config changes on
//! disk, the config is rebuilt ([`Control::reload_files`]) and swapped in, so that a renewed
//! certificate (certbot, cert-manager) reaches new connections without a signal. Sessions
//! already established keep the certificate they were made with.
//!
//! This module's thread, off the workers, polls every [`POLL`]: it compares each file's
//! [`FileStamp`] (device, inode, size, change and modification times) with the stamp taken
//! when the served config read it. Polling rather than inotify: it sees a file replaced by a
//! rename, a symlink swapped under it (Kubernetes secret volumes) and a directory mounted
//! anew alike, at the cost of up to [`POLL`] of delay and a few `stat` calls a second.
//!
//! A rebuild that fails (a half-written file, a key that does not match yet, an expired
//! certificate) changes nothing and is reported like any failed reload (log, admin reload
//! status, `strait_config_last_reload_success`). It is not retried until the files change
//! again: one attempt per state of the files, so a broken file does not reload every poll,
//! and the file written in full (or its key written after it) is picked up at once.

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::config::Config;
use crate::control::Control;
use crate::settings::{FileStamp, WatchedFile};

/// How often the files are looked at: a change is served within about this much, plus
/// the rebuild.
pub const POLL: Duration = Duration::from_secs(1);

/// Starts the watcher thread; it runs until the process exits.
pub fn spawn(control: Arc<Control>) -> JoinHandle<()> {
    thread::Builder::new()
        .name("strait-cert-watch".to_owned())
        .spawn(move || run(&control))
        // Like `thread::spawn`: failing to start a thread at start-up is not recoverable.
        .expect("spawning the certificate watcher thread")
}

fn run(control: &Control) {
    let mut watch = Watch::default();
    loop {
        thread::sleep(POLL);
        let config = control.current();
        let built: Vec<&WatchedFile> = watched_files(&config).collect();
        let on_disk = built
            .iter()
            .map(|file| WatchedFile {
                path: file.path.clone(),
                stamp: FileStamp::of(&file.path),
            })
            .collect();
        let Step::Reload(changed) = watch.poll(&built, on_disk) else {
            continue;
        };
        drop(config);
        let changed: Vec<String> = changed.iter().map(|p| p.display().to_string()).collect();
        tracing::info!(files = ?changed, "certificate files changed; reloading");
        match control.reload_files() {
            Ok(status) => tracing::info!(
                generation = status.generation,
                took_ms = status.took.as_secs_f64() * 1e3,
                "config reloaded (certificate files changed)"
            ),
            Err(errors) => tracing::error!(
                "certificate reload failed, still serving the previous certificates:\n{errors}"
            ),
        }
    }
}

/// The files the TLS listeners of `config` were built from.
fn watched_files(config: &Config) -> impl Iterator<Item = &WatchedFile> {
    config
        .server
        .tls
        .iter()
        .flat_map(|listener| &listener.files)
}

#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// The files are as the served config read them, or as they were at the last attempt.
    Wait,
    /// These files differ from what the served config read: rebuild.
    Reload(Vec<PathBuf>),
}

/// What the watcher remembers between polls.
#[derive(Debug, Default)]
struct Watch {
    /// The files as they were when a rebuild was last attempted for them.
    tried: Option<Vec<WatchedFile>>,
}

impl Watch {
    /// Compares `built` (the files of the served config, stamped when read) with
    /// `on_disk` (the same files, stamped now, in the same order).
    fn poll(&mut self, built: &[&WatchedFile], on_disk: Vec<WatchedFile>) -> Step {
        debug_assert_eq!(built.len(), on_disk.len());
        let changed: Vec<PathBuf> = built
            .iter()
            .zip(&on_disk)
            .filter(|(then, now)| then.stamp != now.stamp)
            .map(|(_, now)| now.path.clone())
            .collect();
        if changed.is_empty() {
            // Served as they are (a reload of any kind read them): a later change is new.
            self.tried = None;
            return Step::Wait;
        }
        if self.tried.as_ref() == Some(&on_disk) {
            return Step::Wait;
        }
        self.tried = Some(on_disk);
        Step::Reload(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stamps of three different states of one file, made by writing it.
    fn stamps(dir: &std::path::Path) -> [Option<FileStamp>; 3] {
        let path = dir.join("state");
        std::array::from_fn(|i| {
            std::fs::write(&path, "x".repeat(i + 1)).unwrap();
            FileStamp::of(&path)
        })
    }

    fn file(name: &str, stamp: Option<FileStamp>) -> WatchedFile {
        WatchedFile {
            path: PathBuf::from(name),
            stamp,
        }
    }

    #[test]
    fn one_attempt_per_state_of_the_files() {
        let dir = crate::scratch::ScratchDir::new("cert-watch");
        let [a, b, c] = stamps(&dir);
        let cert = |stamp| file("cert.pem", stamp);
        let key = |stamp| file("cert.key", stamp);
        let mut watch = Watch::default();
        // (what the served config read, what is on disk now, expected step); the served
        // config changes only when a rebuild succeeded.
        let cases: Vec<(Vec<WatchedFile>, Vec<WatchedFile>, Step)> = vec![
            (vec![cert(a), key(a)], vec![cert(a), key(a)], Step::Wait),
            // The certificate is replaced: one rebuild, which fails (its key is old).
            (
                vec![cert(a), key(a)],
                vec![cert(b), key(a)],
                Step::Reload(vec!["cert.pem".into()]),
            ),
            (vec![cert(a), key(a)], vec![cert(b), key(a)], Step::Wait),
            (vec![cert(a), key(a)], vec![cert(b), key(a)], Step::Wait),
            // Its key follows: another rebuild, which succeeds.
            (
                vec![cert(a), key(a)],
                vec![cert(b), key(b)],
                Step::Reload(vec!["cert.pem".into(), "cert.key".into()]),
            ),
            (vec![cert(b), key(b)], vec![cert(b), key(b)], Step::Wait),
            // A file removed is a change too (the rebuild reports it unreadable)...
            (
                vec![cert(b), key(b)],
                vec![cert(None), key(b)],
                Step::Reload(vec!["cert.pem".into()]),
            ),
            (vec![cert(b), key(b)], vec![cert(None), key(b)], Step::Wait),
            // ...and its return as it was needs nothing: the served config has it.
            (vec![cert(b), key(b)], vec![cert(b), key(b)], Step::Wait),
            (
                vec![cert(b), key(b)],
                vec![cert(c), key(b)],
                Step::Reload(vec!["cert.pem".into()]),
            ),
        ];
        for (i, (built, on_disk, want)) in cases.into_iter().enumerate() {
            let built: Vec<&WatchedFile> = built.iter().collect();
            assert_eq!(watch.poll(&built, on_disk), want, "case {i}");
        }
    }

    #[test]
    fn a_state_that_failed_before_is_tried_again_once_the_files_were_served_in_between() {
        let dir = crate::scratch::ScratchDir::new("cert-watch");
        let [a, b, _] = stamps(&dir);
        let mut watch = Watch::default();
        let served = [file("c.pem", a)];
        let served: Vec<&WatchedFile> = served.iter().collect();
        let step = |watch: &mut Watch, stamp| watch.poll(&served, vec![file("c.pem", stamp)]);
        assert_eq!(step(&mut watch, b), Step::Reload(vec!["c.pem".into()]));
        assert_eq!(step(&mut watch, b), Step::Wait, "failed: not again");
        assert_eq!(step(&mut watch, a), Step::Wait, "back to what is served");
        assert_eq!(step(&mut watch, b), Step::Reload(vec!["c.pem".into()]));
    }
}
