//! What a config build reports: [`ConfigError`]s, each `file:line:column: key.path: what is
//! wrong`, gathered into [`ConfigErrors`] (one per line when displayed).

use std::collections::HashMap;
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

/// Best-effort dotted key for a TOML error at `offset`: the enclosing `[table]` (with an index
/// for `[[array]]` tables) plus the key on the error's line. Empty when it cannot tell.
pub fn key_hint(text: &str, offset: usize) -> String {
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    let mut table = String::new();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for raw in text[..line_start].lines().chain(std::iter::once(line)) {
        let trimmed = raw.trim_start();
        if let Some(rest) = trimmed.strip_prefix("[[") {
            if let Some(name) = rest.split("]]").next() {
                let name = name.trim().to_owned();
                let n = counts
                    .entry(name.clone())
                    .and_modify(|n| *n += 1)
                    .or_insert(0);
                table = format!("{name}[{n}]");
            }
        } else if let Some(rest) = trimmed.strip_prefix('[') {
            if let Some(name) = rest.split(']').next() {
                let name = name.trim();
                // `[routes.mock]`-style subtables of the last array element keep its index.
                table = match counts
                    .iter()
                    .find(|(array, _)| name.starts_with(&format!("{array}.")))
                {
                    Some((array, n)) => format!("{array}[{n}]{}", &name[array.len()..]),
                    None => name.to_owned(),
                };
            }
        }
    }
    let trimmed = line.trim_start();
    let key = if trimmed.starts_with('[') {
        ""
    } else {
        trimmed
            .split('=')
            .next()
            .filter(|_| trimmed.contains('='))
            .unwrap_or("")
            .trim()
    };
    match (table.is_empty(), key.is_empty()) {
        (_, true) => table,
        (true, false) => key.to_owned(),
        (false, false) => format!("{table}.{key}"),
    }
}
