//! The dotted key path of a place in a TOML text (`routes[0].rate_limits[1].limit`), for
//! the errors the TOML parser reports: they carry a byte span, not a path.
//!
//! A small scanner reads the text up to the error's offset and follows what a path is made
//! of: `[table]` headers, `[[array]]` tables (each counted within the element of its parent
//! array that is current, so the second route's first `[[routes.rate_limits]]` is
//! `routes[1].rate_limits[0]`), keys (bare, quoted, dotted), inline tables and arrays, on
//! one line or many. Strings and comments are skipped whole, so brackets inside them do not
//! count. It never fails: on text it cannot follow it returns the best path it has, and at
//! worst an empty one.
//!
//! The path names the element the offset is in: the key at or before it in a table, the
//! element's index in an array (`rate_limits[1]` for a missing field, whose span is the
//! inline table's), the array itself between elements.

use std::collections::HashMap;

/// The key path at byte `offset` of `text`; empty when it is at the top level.
pub fn at(text: &str, offset: usize) -> String {
    Scanner::new(text).path_at(offset.min(text.len()))
}

/// What the scanner is inside of.
enum Frame {
    /// The current `[table]` (the bottom frame) or an inline table. `key` is set between a
    /// key and the end of its value.
    Table { path: String, key: Option<String> },
    /// An array value; `index` is the element being read.
    Array { path: String, index: usize },
}

struct Scanner<'a> {
    text: &'a [u8],
    pos: usize,
    /// The current index of every array of tables, by its path (`routes`,
    /// `routes[0].rate_limits`).
    arrays: HashMap<String, usize>,
    /// Never empty: the bottom frame is the current `[table]`.
    stack: Vec<Frame>,
}

/// A token's kind, as far as paths are concerned.
enum Token {
    /// Blanks, newlines (the bool: at least one) and comments.
    Space(bool),
    /// A table header, `[a.b]` or `[[a.b]]` (the bool), with its key segments.
    Header(Vec<String>, bool),
    /// A key, its dotted segments joined.
    Key(String),
    Equals,
    Open(u8),
    Close(u8),
    Comma,
    /// A string, number, boolean or date: a value that is skipped whole.
    Value,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Self {
        Scanner {
            text: text.as_bytes(),
            pos: 0,
            arrays: HashMap::new(),
            stack: vec![Frame::Table {
                path: String::new(),
                key: None,
            }],
        }
    }

    fn path_at(mut self, offset: usize) -> String {
        loop {
            let start = self.pos;
            let Some(token) = self.token() else {
                return self.path_here(None);
            };
            // The token at the offset, or the one the offset is inside of.
            if start >= offset || self.pos > offset {
                return self.path_here(Some(token));
            }
            self.apply(token);
        }
    }

    /// The path of `token`, read at the offset, from the state before it.
    fn path_here(&mut self, token: Option<Token>) -> String {
        if let Some(Token::Header(segments, is_array)) = token {
            return self.header(&segments, is_array);
        }
        match self.stack.last() {
            Some(Frame::Array { path, index }) => match token {
                Some(Token::Open(_) | Token::Value) => format!("{path}[{index}]"),
                // Between elements or at the end of the text (unclosed): the array.
                _ => path.clone(),
            },
            Some(Frame::Table {
                path,
                key: Some(key),
            }) => join(path, key),
            Some(Frame::Table { path, key: None }) => match token {
                Some(Token::Key(key)) => join(path, &key),
                _ => path.clone(),
            },
            None => String::new(),
        }
    }

    /// Updates the state with a token that ends before the offset.
    fn apply(&mut self, token: Token) {
        let depth = self.stack.len();
        match token {
            Token::Header(segments, is_array) => {
                let path = self.header(&segments, is_array);
                self.stack = vec![Frame::Table { path, key: None }];
            }
            Token::Key(new) => {
                if let Some(Frame::Table {
                    key: key @ None, ..
                }) = self.stack.last_mut()
                {
                    *key = Some(new);
                }
            }
            Token::Open(open) => {
                let path = match self.stack.last_mut() {
                    Some(Frame::Table { path, key }) => key.take().map(|key| join(path, &key)),
                    Some(Frame::Array { path, index }) => Some(format!("{path}[{index}]")),
                    None => None,
                };
                if let Some(path) = path {
                    self.stack.push(if open == b'{' {
                        Frame::Table { path, key: None }
                    } else {
                        Frame::Array { path, index: 0 }
                    });
                }
            }
            Token::Close(close) => {
                let closes_top = matches!(
                    (self.stack.last(), close),
                    (Some(Frame::Table { .. }), b'}') | (Some(Frame::Array { .. }), b']')
                );
                if closes_top && depth > 1 {
                    self.stack.pop();
                }
            }
            Token::Comma => match self.stack.last_mut() {
                Some(Frame::Array { index, .. }) => *index += 1,
                Some(Frame::Table { key, .. }) => *key = None,
                None => {}
            },
            // A newline ends a top-level value; inside brackets it is only space.
            Token::Space(true) if depth == 1 => self.end_value(),
            Token::Value => self.end_value(),
            Token::Space(_) | Token::Equals => {}
        }
    }

    /// The current key's value has been read.
    fn end_value(&mut self) {
        if let Some(Frame::Table { key, .. }) = self.stack.last_mut() {
            *key = None;
        }
    }

    /// The path of a table header, counting a new element for `[[...]]`.
    fn header(&mut self, segments: &[String], is_array: bool) -> String {
        let mut path = String::new();
        for (i, segment) in segments.iter().enumerate() {
            path = join(&path, segment);
            let last = i + 1 == segments.len();
            let index = if last && is_array {
                let n = self
                    .arrays
                    .entry(path.clone())
                    .and_modify(|n| *n += 1)
                    .or_insert(0);
                Some(*n)
            } else {
                self.arrays.get(&path).copied()
            };
            if let Some(n) = index {
                path = format!("{path}[{n}]");
            }
        }
        path
    }

    /// Reads the next token; `None` at the end of the text.
    fn token(&mut self) -> Option<Token> {
        let &b = self.text.get(self.pos)?;
        let expects_key = matches!(self.stack.last(), Some(Frame::Table { key: None, .. }));
        let token = match b {
            b' ' | b'\t' | b'\r' | b'\n' => {
                let start = self.pos;
                self.skip_while(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'));
                Token::Space(self.text[start..self.pos].contains(&b'\n'))
            }
            b'#' => {
                self.skip_while(|b| b != b'\n');
                Token::Space(false)
            }
            b'[' if expects_key && self.stack.len() == 1 => self.header_token(),
            b'{' | b'[' => {
                self.pos += 1;
                Token::Open(b)
            }
            b'}' | b']' => {
                self.pos += 1;
                Token::Close(b)
            }
            b',' => {
                self.pos += 1;
                Token::Comma
            }
            b'=' => {
                self.pos += 1;
                Token::Equals
            }
            _ if expects_key => {
                let segments = self.key();
                if segments.is_empty() {
                    Token::Value
                } else {
                    Token::Key(segments.join("."))
                }
            }
            b'"' | b'\'' => {
                self.string();
                Token::Value
            }
            _ => {
                self.skip_while(|b| !b",}]\n#".contains(&b));
                Token::Value
            }
        };
        Some(token)
    }

    /// `[a.b]` or `[[a.b]]`, up to its closing brackets (or the end of the line).
    fn header_token(&mut self) -> Token {
        let is_array = self.text.get(self.pos + 1) == Some(&b'[');
        self.pos += if is_array { 2 } else { 1 };
        let segments = self.key();
        self.skip_while(|b| b == b' ' || b == b'\t');
        self.skip_while(|b| b == b']');
        Token::Header(segments, is_array)
    }

    /// A dotted key: bare or quoted segments separated by dots, with blanks around them.
    fn key(&mut self) -> Vec<String> {
        let mut segments = Vec::new();
        loop {
            self.skip_while(|b| b == b' ' || b == b'\t');
            let start = self.pos;
            match self.text.get(self.pos) {
                Some(b'"' | b'\'') => {
                    self.string();
                    let end = self.pos.saturating_sub(1).max(start + 1);
                    segments.push(self.slice(start + 1, end));
                }
                _ => {
                    self.skip_while(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                    if self.pos == start {
                        // Not a key at all: step over one byte so that scanning goes on.
                        if segments.is_empty() {
                            self.pos += 1;
                        }
                        return segments;
                    }
                    segments.push(self.slice(start, self.pos));
                }
            }
            self.skip_while(|b| b == b' ' || b == b'\t');
            if self.text.get(self.pos) != Some(&b'.') {
                return segments;
            }
            self.pos += 1;
        }
    }

    /// A basic or literal string, one-line or multi-line, including its quotes; an
    /// unterminated one-line string ends at the end of its line.
    fn string(&mut self) {
        let quote = self.text[self.pos];
        let triple = [quote; 3];
        if self.text[self.pos..].starts_with(&triple) {
            self.pos += 3;
            while self.pos < self.text.len() && !self.text[self.pos..].starts_with(&triple) {
                self.pos += if quote == b'"' && self.text[self.pos] == b'\\' {
                    2
                } else {
                    1
                };
            }
            self.pos = (self.pos + 3).min(self.text.len());
            // A closing `"""` may be followed by up to two more quotes of the content.
            self.skip_while(|b| b == quote);
            return;
        }
        self.pos += 1;
        while let Some(&b) = self.text.get(self.pos) {
            match b {
                b'\n' => return,
                b'\\' if quote == b'"' => self.pos += 2,
                _ if b == quote => {
                    self.pos += 1;
                    return;
                }
                _ => self.pos += 1,
            }
        }
        self.pos = self.pos.min(self.text.len());
    }

    fn skip_while(&mut self, mut keep: impl FnMut(u8) -> bool) {
        while self.text.get(self.pos).is_some_and(|&b| keep(b)) {
            self.pos += 1;
        }
    }

    fn slice(&self, start: usize, end: usize) -> String {
        String::from_utf8_lossy(self.text.get(start..end).unwrap_or_default()).into_owned()
    }
}

/// `path.key`, or `key` at the top level.
fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_at_offsets() {
        // (text, the text at the offset, the path there)
        let cases: &[(&str, &str, &str)] = &[
            ("a = 1", "a", "a"),
            ("a = 1", "1", "a"),
            (
                "[server]\nlisten = [\"x\"]\nworkers = 2",
                "workers",
                "server.workers",
            ),
            (
                "[server]\nlisten = [\"x\", \"y\"]",
                "\"y\"",
                "server.listen[1]",
            ),
            ("[server]\nlisten = [\"x\"", "", "server.listen"),
            (
                "[server.timeouts]\nheader_read = 5",
                "5",
                "server.timeouts.header_read",
            ),
            // Arrays of tables count per parent element; subtables keep the index.
            (
                "[[r]]\n[[r]]\n[r.mock]\nstatus = 1",
                "status",
                "r[1].mock.status",
            ),
            (
                "[[r]]\n[[r.l]]\n[[r.l]]\n[[r]]\n[[r.l]]\nx = 1",
                "x",
                "r[1].l[0].x",
            ),
            (
                "[[r]]\n[[r.l]]\nx = 1\n[[r.l]]\nx = 2",
                "x = 2",
                "r[0].l[1].x",
            ),
            ("[[r]]\na = 1\n[[r]]\n", "[[r]]\n", "r[1]"),
            // Inline tables and arrays, on one line or many.
            (
                "[[r]]\nl = [{ a = 1 }, { a = 2, b = 3 }]",
                "b",
                "r[0].l[1].b",
            ),
            (
                "[[r]]\nl = [{ a = 1 }, { a = 2, b = 3 }]",
                "{ a = 2",
                "r[0].l[1]",
            ),
            (
                "[[r]]\nl = [\n  { a = 1 },\n  { a = 2 },\n]\nc = 1",
                "a = 2",
                "r[0].l[1].a",
            ),
            ("[[r]]\nl = [\n  { a = 1 },\n]\nc = 1", "c", "r[0].c"),
            ("x = [[1, 2], [3, 4]]", "4", "x[1][1]"),
            ("m = { a = { b = 1 }, c = 2 }", "c", "m.c"),
            ("m = { a = { b = 1 }, c = 2 }", "1", "m.a.b"),
            // Brackets, braces, commas and '#' inside strings or comments do not count.
            ("l = [\"[{,#\", 'a]}', \"\"\"\n],\n\"\"\", 7]", "7", "l[3]"),
            ("l = [ # a [ comment, {\n  1, 2 ]\nn = 3", "2", "l[1]"),
            ("l = [\"a\\\"]\", 5]", "5", "l[1]"),
            // Dotted and quoted keys.
            (
                "[upstreams.\"my.app\"]\nhealth.path = 1",
                "1",
                "upstreams.my.app.health.path",
            ),
            ("[ a . b ]\nc = 1", "c", "a.b.c"),
        ];
        for &(text, at_text, want) in cases {
            let offset = if at_text.is_empty() {
                text.len()
            } else {
                text.rfind(at_text).unwrap()
            };
            assert_eq!(at(text, offset), want, "{text:?} at {at_text:?}");
        }
    }

    #[test]
    fn never_panics_on_partial_or_broken_text() {
        let text =
            "[[r]]\nl = [{ a = \"x\\\", b = '''y\n[x\n\"\"\"\n\u{e9} = { [ ] } ] ,, == ]]\n[";
        for offset in 0..=text.len() + 2 {
            let _ = at(text, offset);
        }
        assert_eq!(at("", 0), "");
    }
}
