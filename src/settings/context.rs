//! [`Ctx`]: the validation state one config build carries through every section — the
//! text (for positions), the config file's directory (for relative paths) and the errors
//! found so far — with the value checks every section shares.
//!
//! A check never stops the build: it records an error (with the value's span, turned into
//! `line:column` here) and returns a placeholder, so that one run reports every problem.
//! The placeholder is never served: a build with any error is discarded.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::error::ConfigError;
use super::file_stamp::WatchedFile;
use super::units::{parse_duration, size_value, DurationValue, SizeValue};

/// Validation state: the text (for positions) and the errors found so far.
pub struct Ctx<'a> {
    origin: &'a str,
    text: &'a str,
    /// Byte offset where each line starts.
    line_starts: Vec<usize>,
    base_dir: PathBuf,
    errors: Vec<ConfigError>,
}

impl<'a> Ctx<'a> {
    /// A context for config `text`; `origin` names it in messages, and relative paths
    /// resolve against its parent directory.
    pub fn new(text: &'a str, origin: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        let base_dir = Path::new(origin)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        Ctx {
            origin,
            text,
            line_starts,
            base_dir,
            errors: Vec::new(),
        }
    }

    /// 1-based line and column (in characters) of byte `offset`.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let line = self
            .line_starts
            .partition_point(|&start| start <= offset)
            .max(1);
        let start = self.line_starts.get(line - 1).copied().unwrap_or(0);
        let column = self
            .text
            .get(start..offset)
            .map_or(1, |s| s.chars().count() + 1);
        (line, column)
    }

    /// Records a problem with the value at `span`, named by its dotted `key`.
    pub fn error(
        &mut self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        let position = Some(self.line_col(span.start));
        self.push(position, key.into(), message.into());
    }

    /// Records a problem at `position` (`None`: the file as a whole).
    pub fn push(&mut self, position: Option<(usize, usize)>, key: String, message: String) {
        self.errors.push(ConfigError {
            origin: self.origin.to_owned(),
            position,
            key,
            message,
        });
    }

    /// How many errors were recorded so far: a section compares it before and after a
    /// group of checks to tell whether that group failed.
    pub fn error_count(&self) -> usize {
        self.errors.len()
    }

    /// The errors recorded, in file order (errors at the same place keep the order in
    /// which they were found).
    pub fn into_errors(mut self) -> Vec<ConfigError> {
        self.errors.sort_by_key(|error| error.position);
        self.errors
    }

    /// `path` as written in the config, resolved against the config file's directory.
    pub fn relative_path(&self, path: &str) -> PathBuf {
        self.base_dir.join(path)
    }

    /// The file at `path` (relative to the config file's directory), or an error naming it.
    pub fn read_relative(&mut self, path: &Spanned<String>, key: &str) -> Option<Vec<u8>> {
        let full = self.relative_path(path.get_ref());
        std::fs::read(&full)
            .map_err(|err| {
                let why = format!("cannot read \"{}\": {err}", full.display());
                self.error(path.span(), key, why);
            })
            .ok()
    }

    /// [`Ctx::read_relative`] for a file whose changes reload the config (a certificate, a
    /// key): it is stamped first and added to `watched`, whether or not it can be read.
    pub fn read_watched(
        &mut self,
        path: &Spanned<String>,
        key: &str,
        watched: &mut Vec<WatchedFile>,
    ) -> Option<Vec<u8>> {
        watched.push(WatchedFile::stamp(self.relative_path(path.get_ref())));
        self.read_relative(path, key)
    }

    /// An `ip:port` (host names are not accepted here: listeners bind addresses).
    pub fn socket_addr(&mut self, addr: &Spanned<String>, key: &str) -> Option<SocketAddr> {
        match addr.get_ref().parse::<SocketAddr>() {
            Ok(parsed) => Some(parsed),
            Err(_) => {
                self.error(
                    addr.span(),
                    key,
                    format!(
                        "invalid address \"{}\": expected ip:port such as \"127.0.0.1:8080\" or \
                         \"[::1]:8080\" (host names are not resolved)",
                        addr.get_ref()
                    ),
                );
                None
            }
        }
    }

    /// An integer within `min..=max`, as a `usize`.
    pub fn count(&mut self, value: &Spanned<i64>, key: &str, min: i64, max: i64) -> Option<usize> {
        let n = *value.get_ref();
        match usize::try_from(n) {
            Ok(converted) if (min..=max).contains(&n) => Some(converted),
            _ => {
                let range = if max == i64::MAX {
                    format!("at least {min}")
                } else {
                    format!("{min}..={max}")
                };
                self.error(
                    value.span(),
                    key,
                    format!("{n} is out of range: must be {range}"),
                );
                None
            }
        }
    }

    /// A percentage, 0..=100; `default` when absent.
    pub fn percent(&mut self, value: &Option<Spanned<i64>>, key: &str, default: u8) -> u8 {
        match value {
            None => default,
            Some(value) => self
                .count(value, key, 0, 100)
                .and_then(|n| u8::try_from(n).ok())
                .unwrap_or(0),
        }
    }

    /// A share within 0.0..=1.0; `default` when absent.
    pub fn ratio(&mut self, value: &Option<Spanned<f64>>, key: &str, default: f64) -> f64 {
        match value {
            None => default,
            Some(v) if (0.0..=1.0).contains(v.get_ref()) => *v.get_ref(),
            Some(v) => {
                self.error(
                    v.span(),
                    key,
                    format!("{} is out of range: must be 0.0..=1.0", v.get_ref()),
                );
                default
            }
        }
    }

    /// A size greater than zero; `default` when absent. On error, records it and returns 0
    /// (the config is discarded anyway).
    pub fn size(&mut self, value: &Option<Spanned<SizeValue>>, key: &str, default: u64) -> u64 {
        let Some(value) = value else { return default };
        match size_value(value.get_ref()) {
            Ok(0) => self.error(value.span(), key, "must be greater than zero"),
            Ok(n) => return n,
            Err(why) => self.error(value.span(), key, why),
        }
        0
    }

    /// A size where zero is meaningful; `default` when absent.
    pub fn size_or_zero(
        &mut self,
        value: &Option<Spanned<SizeValue>>,
        key: &str,
        default: u64,
    ) -> u64 {
        let Some(value) = value else { return default };
        size_value(value.get_ref()).unwrap_or_else(|why| {
            self.error(value.span(), key, why);
            0
        })
    }

    /// [`Ctx::size`] as a `usize` (an in-memory limit).
    pub fn size_usize(
        &mut self,
        value: &Option<Spanned<SizeValue>>,
        key: &str,
        default: u64,
    ) -> usize {
        let n = self.size(value, key, default);
        usize::try_from(n).unwrap_or_else(|_| {
            if let Some(value) = value {
                self.error(value.span(), key, "too large for this platform");
            }
            0
        })
    }

    /// A duration greater than zero (a zero timeout would fail every request); `default`
    /// when absent.
    pub fn duration(
        &mut self,
        value: &Option<Spanned<DurationValue>>,
        key: &str,
        default: Duration,
    ) -> Duration {
        let Some(value) = value else { return default };
        match parse_duration(&value.get_ref().0) {
            Ok(d) if d.is_zero() => self.error(value.span(), key, "must be greater than zero"),
            Ok(d) => return d,
            Err(why) => self.error(value.span(), key, why),
        }
        Duration::ZERO
    }

    /// A duration where zero is meaningful (it turns a cache off, allows no skew);
    /// `default` when absent.
    pub fn duration_or_zero(
        &mut self,
        value: &Option<Spanned<DurationValue>>,
        key: &str,
        default: Duration,
    ) -> Duration {
        let Some(value) = value else { return default };
        parse_duration(&value.get_ref().0).unwrap_or_else(|why| {
            self.error(value.span(), key, why);
            Duration::ZERO
        })
    }

    /// An optional duration greater than zero; `None` when absent (or invalid: the error is
    /// recorded and the config discarded).
    pub fn opt_duration(
        &mut self,
        value: &Option<Spanned<DurationValue>>,
        key: &str,
    ) -> Option<Duration> {
        value.as_ref()?;
        Some(self.duration(value, key, Duration::ZERO)).filter(|d| !d.is_zero())
    }
}
