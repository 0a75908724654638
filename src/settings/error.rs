//! What a config build reports: [`ConfigError`]s, each `file:line:column: key.path: what is
//! wrong`, gathered into [`ConfigErrors`] (one per line when displayed).

use std::fmt;
use std::fmt::Write as _;

/// One problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file path as given, or a name such as `<embedded default>`.
    pub origin: String,
    /// 1-based line and column (in characters), when the problem has a place in the file.
    pub position: Option<(usize, usize)>,
    /// Dotted key path (`routes[1].upstream`); empty when unknown.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in a config file, in file order; displayed one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render_errors(.errors))]
pub struct ConfigErrors {
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// One error about the whole of `origin` (an unreadable file, say).
    pub fn single(origin: &str, message: String) -> Self {
        ConfigErrors {
            errors: vec![ConfigError {
                origin: origin.to_owned(),
                position: None,
                key: String::new(),
                message,
            }],
        }
    }
}

fn render_errors(errors: &[ConfigError]) -> String {
    let mut out = String::new();
    for (index, error) in errors.iter().enumerate() {
        if index > 0 {
            out.push('\n');
        }
        let _ = write!(out, "{error}");
    }
    out
}
