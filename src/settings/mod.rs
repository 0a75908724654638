//! The config toolkit: what every section of the config file uses to turn its serde mirror
//! into runtime types, and nothing that knows a section.
//!
//! Layering: each capability (`auth/`, `ratelimit/`, `upstream/`, …) owns its section in
//! its own `config.rs` and imports this module; this module imports no capability. The
//! assembly, `crate::config`, lists the sections, parses the file and builds them in order
//! with one [`Ctx`].
//!
//! - [`Ctx`]: the collect-every-error context; each error is
//!   `file:line:column: key.path: message`, positions taken from `toml::Spanned` values.
//! - [`ConfigError`], [`ConfigErrors`], [`key_path::at`] (the key path of a TOML parser error).
//! - Units: [`DurationValue`] and [`SizeValue`] as written, [`parse_duration`],
//!   [`parse_size`].
//! - Names and tokens: [`is_token`], [`is_name`], [`is_host_header`], …
//! - [`FileStamp`], [`WatchedFile`]: files whose changes on disk reload the config.

mod context;
mod error;
mod file_stamp;
pub mod key_path;
mod names;
mod units;

pub use context::Ctx;
pub use error::{ConfigError, ConfigErrors};
pub use file_stamp::{FileStamp, WatchedFile};
pub use names::{
    is_host_header, is_name, is_tchar, is_token, normalize_host_pattern, strip_line_end,
};
pub use units::{parse_duration, parse_size, show_duration, size_value, DurationValue, SizeValue};
