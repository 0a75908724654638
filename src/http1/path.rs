//! Request path normalisation: one spelling per resource, before anything looks at the
//! path. Without it a route guarded by a credential is reachable through another spelling
//! the upstream resolves to the same resource (`/public/../admin`, `/%61dmin`, `//admin`).
//!
//! The rules, in order: percent-escapes of unreserved characters are decoded and the
//! others' hex digits upper-cased (RFC 3986 §6.2.2.1, §6.2.2.2); dot-segments are removed
//! (§5.2.4, `%2e` counting as `.` since it was decoded first); repeated slashes are merged
//! unless [`PathRules::merge_slashes`] is off. What could be read two ways is refused: an
//! encoded `/` or `\` (unless [`EscapedSlashes`] says otherwise), a `..` above the root, a
//! control byte (raw or decoded), a `%` without two hex digits.
//!
//! Invariants (fuzzed in `fuzz/fuzz_targets/path.rs`): the result starts with `/`, has no
//! `.` or `..` segment, no control byte, no `//` when merging, and normalising it again
//! gives it back unchanged. Only the path is given here: the query is never touched.

use std::borrow::Cow;

/// What to do with `%2F` (`/`) and `%5C` (`\`) inside a path segment: a gateway reading
/// it as data and an upstream reading it as a separator would disagree about the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EscapedSlashes {
    /// Refuse the request (400).
    Reject,
    /// Keep the escape, as data inside its segment (hex digits upper-cased).
    Keep,
    /// Decode it: `%2F` becomes a separator before dot-segments are removed, `%5C` a `\`.
    Decode,
}

/// `[server.paths]`: how request paths are normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathRules {
    /// Merge runs of `/` into one.
    pub merge_slashes: bool,
    pub escaped_slashes: EscapedSlashes,
}

impl Default for PathRules {
    fn default() -> Self {
        PathRules {
            merge_slashes: true,
            escaped_slashes: EscapedSlashes::Reject,
        }
    }
}

/// Why a path was refused (each a 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("an encoded slash or backslash in a path segment")]
    EscapedSlash,
    #[error("a dot-segment above the root")]
    AboveRoot,
    #[error("a control byte in the path")]
    ControlByte,
    #[error("a percent sign not followed by two hex digits")]
    BadEscape,
}

/// The normal form of `path` (the path part of a request target, without its query).
/// Borrowed when nothing changes, which the common path learns in one scan without
/// allocating. A path not starting with `/` (`*`, the empty path of `http://host`) is
/// returned as it is.
pub fn normalize<'a>(path: &'a [u8], rules: &PathRules) -> Result<Cow<'a, [u8]>, PathError> {
    if path.first() != Some(&b'/') || is_plain(path)? {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode(path, rules.escaped_slashes)?;
    let normal = remove_dot_segments(&decoded, rules.merge_slashes)?;
    Ok(if normal == path {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(normal)
    })
}

/// True when `path` has no `%`, no `//` and no segment starting with `.`, so is already
/// normal; a control byte is refused on the way. Every request runs it: one table lookup
/// per byte, and a closer look only at the few bytes the table marks.
fn is_plain(path: &[u8]) -> Result<bool, PathError> {
    for (at, &b) in path.iter().enumerate() {
        if !NEEDS_A_LOOK[b as usize] {
            continue;
        }
        match b {
            b'%' => return Ok(false),
            b'/' if matches!(path.get(at + 1), Some(b'/' | b'.')) => return Ok(false),
            b'/' => {}
            _ => return Err(PathError::ControlByte),
        }
    }
    Ok(true)
}

/// The bytes [`is_plain`] stops at: `%`, `/` and the control bytes.
static NEEDS_A_LOOK: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = is_control(b as u8) || b == b'%' as usize || b == b'/' as usize;
        b += 1;
    }
    table
};

/// `path` with unreserved characters decoded, other escapes upper-cased, and escaped
/// slashes handled by `slashes`. Decoding only unreserved characters means the result
/// holds no `%` that was not already an escape, so decoding twice is decoding once.
fn decode(path: &[u8], slashes: EscapedSlashes) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(path.len());
    let mut rest = path;
    while let Some((&b, tail)) = rest.split_first() {
        if b != b'%' {
            if is_control(b) {
                return Err(PathError::ControlByte);
            }
            out.push(b);
            rest = tail;
            continue;
        }
        let (Some(hi), Some(lo)) = (tail.first().and_then(hex), tail.get(1).and_then(hex)) else {
            return Err(PathError::BadEscape);
        };
        let byte = hi << 4 | lo;
        if is_control(byte) {
            return Err(PathError::ControlByte);
        }
        let is_slash = byte == b'/' || byte == b'\\';
        match slashes {
            EscapedSlashes::Reject if is_slash => return Err(PathError::EscapedSlash),
            EscapedSlashes::Decode if is_slash => out.push(byte),
            _ if is_unreserved(byte) => out.push(byte),
            _ => out.extend_from_slice(&[b'%', HEX_UPPER[hi as usize], HEX_UPPER[lo as usize]]),
        }
        rest = &tail[2..];
    }
    Ok(out)
}

/// RFC 3986 §5.2.4 over a path that starts with `/`, refusing a `..` above the root
/// where the RFC would silently drop it (the upstream might not). Empty segments are
/// dropped when `merge` is set, except a final one (a trailing slash is kept).
fn remove_dot_segments(path: &[u8], merge: bool) -> Result<Vec<u8>, PathError> {
    debug_assert_eq!(path.first(), Some(&b'/'));
    // `out` is "/seg" for every segment kept, so popping one is cutting at its last `/`.
    let mut out = Vec::with_capacity(path.len());
    let mut segments = path.get(1..).unwrap_or_default().split(|&b| b == b'/');
    let mut next = segments.next();
    while let Some(segment) = next {
        next = segments.next();
        let is_last = next.is_none();
        match segment {
            b"." => {}
            b".." => {
                let cut = memchr::memrchr(b'/', &out).ok_or(PathError::AboveRoot)?;
                out.truncate(cut);
            }
            b"" if merge && !is_last => continue,
            _ => {
                out.push(b'/');
                out.extend_from_slice(segment);
                continue;
            }
        }
        // A dot-segment at the end leaves the directory it names: `/a/..` is `/`.
        if is_last {
            out.push(b'/');
        }
    }
    Ok(out)
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn hex(b: &u8) -> Option<u8> {
    (*b as char).to_digit(16).map(|d| d as u8)
}

/// ALPHA DIGIT - . _ ~ (RFC 3986 §2.3).
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

const fn is_control(b: u8) -> bool {
    b.is_ascii_control()
}

#[cfg(test)]
mod tests {
    use super::*;
    use EscapedSlashes::*;
    use PathError::*;

    const DEFAULT: PathRules = PathRules {
        merge_slashes: true,
        escaped_slashes: Reject,
    };

    fn norm(path: &str, rules: PathRules) -> Result<String, PathError> {
        normalize(path.as_bytes(), &rules).map(|p| String::from_utf8_lossy(&p).into_owned())
    }

    #[test]
    fn table() {
        let cases: &[(&str, Result<&str, PathError>)] = &[
            ("/", Ok("/")),
            ("/a/b", Ok("/a/b")),
            ("/a/b/", Ok("/a/b/")),
            ("/.well-known/x", Ok("/.well-known/x")),
            ("/a/./b", Ok("/a/b")),
            ("/a/../b", Ok("/b")),
            ("/public/../admin/x", Ok("/admin/x")),
            ("/public/%2e%2e/admin/x", Ok("/admin/x")),
            ("/public/%2E%2e/admin/x", Ok("/admin/x")),
            ("/public/.%2E/admin/x", Ok("/admin/x")),
            ("/admin/%2e/x", Ok("/admin/x")),
            ("/a/.", Ok("/a/")),
            ("/a/..", Ok("/")),
            ("/a/b/..", Ok("/a/")),
            ("/.", Ok("/")),
            ("/./", Ok("/")),
            ("/..", Err(AboveRoot)),
            ("/../a", Err(AboveRoot)),
            ("/a/b/../../../x", Err(AboveRoot)),
            ("/a/b/../../x", Ok("/x")),
            ("/...", Ok("/...")),
            ("/a..b/.c", Ok("/a..b/.c")),
            ("//admin/x", Ok("/admin/x")),
            ("/a//b///c//", Ok("/a/b/c/")),
            ("//", Ok("/")),
            ("/a//..", Ok("/")),
            ("/%61dmin/x", Ok("/admin/x")),
            ("/%41%5a%7E%2D%5f%2E%30", Ok("/AZ~-_.0")),
            ("/a%3fb", Ok("/a%3Fb")),
            ("/a%3Fb", Ok("/a%3Fb")),
            ("/%c3%a9", Ok("/%C3%A9")),
            ("/%25", Ok("/%25")),
            ("/%2541", Ok("/%2541")),
            ("/x%2Fy", Err(EscapedSlash)),
            ("/x%2fy", Err(EscapedSlash)),
            ("/x%5cy", Err(EscapedSlash)),
            ("/x%00", Err(ControlByte)),
            ("/x%1f", Err(ControlByte)),
            ("/x%7F", Err(ControlByte)),
            ("/x\x01", Err(ControlByte)),
            ("/%zz", Err(BadEscape)),
            ("/%", Err(BadEscape)),
            ("/%4", Err(BadEscape)),
            ("/a%4g", Err(BadEscape)),
            ("*", Ok("*")),
            ("", Ok("")),
        ];
        for (path, want) in cases {
            assert_eq!(norm(path, DEFAULT), want.map(str::to_owned), "{path:?}");
        }
    }

    #[test]
    fn escaped_slash_actions() {
        let rules = |escaped_slashes| PathRules {
            escaped_slashes,
            ..DEFAULT
        };
        let cases: &[(&str, EscapedSlashes, Result<&str, PathError>)] = &[
            ("/x%2Fy", Keep, Ok("/x%2Fy")),
            ("/x%2fy", Keep, Ok("/x%2Fy")),
            ("/x%5cy", Keep, Ok("/x%5Cy")),
            ("/a/..%2F..", Keep, Ok("/a/..%2F..")),
            ("/x%2Fy", Decode, Ok("/x/y")),
            ("/x%5cy", Decode, Ok("/x\\y")),
            ("/a%2F%2Fb", Decode, Ok("/a/b")),
            ("/a/b%2F..%2F..%2Fc", Decode, Ok("/c")),
            ("/a/b%2F..%2Fc", Decode, Ok("/a/c")),
            ("/a%2F..%2F..%2Fc", Decode, Err(AboveRoot)),
        ];
        for (path, action, want) in cases {
            assert_eq!(
                norm(path, rules(*action)),
                want.map(str::to_owned),
                "{path:?} {action:?}"
            );
        }
    }

    #[test]
    fn merge_slashes_off_keeps_empty_segments() {
        let rules = PathRules {
            merge_slashes: false,
            ..DEFAULT
        };
        let cases: &[(&str, Result<&str, PathError>)] = &[
            ("//admin/x", Ok("//admin/x")),
            ("/a//b", Ok("/a//b")),
            ("/a//../b", Ok("/a/b")),
            ("/a/.//b", Ok("/a//b")),
            ("//..", Ok("/")),
            ("//../..", Err(AboveRoot)),
        ];
        for (path, want) in cases {
            assert_eq!(norm(path, rules), want.map(str::to_owned), "{path:?}");
        }
    }

    #[test]
    fn unchanged_paths_are_borrowed() {
        for path in ["/", "/a/b?c", "/.well-known/x", "/a%20b", "/a/b/"] {
            assert!(
                matches!(normalize(path.as_bytes(), &DEFAULT), Ok(Cow::Borrowed(_))),
                "{path}"
            );
        }
    }

    #[test]
    fn normal_forms_are_fixed_points() {
        let inputs = [
            "/public/../admin/x",
            "/%61dmin/%2e/x",
            "//a//b/../c/.",
            "/a%2f%2e%2e%2fb",
            "/%c3%a9/%7e",
        ];
        for merge_slashes in [true, false] {
            for escaped_slashes in [Keep, Decode] {
                let rules = PathRules {
                    merge_slashes,
                    escaped_slashes,
                };
                for path in inputs {
                    let Ok(once) = norm(path, rules) else {
                        continue;
                    };
                    assert_eq!(norm(&once, rules), Ok(once.clone()), "{path} {rules:?}");
                }
            }
        }
    }
}
