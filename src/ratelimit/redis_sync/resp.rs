//! A small blocking RESP2 client: just enough Redis for the sync thread (connect, AUTH,
//! SELECT, pipelined commands). Blocking is fine there: the sync thread is its only user
//! and no worker ever waits on it.
//!
//! Written here rather than taking the `redis` crate: the sync thread needs a handful of
//! commands, strict timeouts and bounded parsing; the crate's sync API brings a URL and
//! connection-manager layer (and its dependency tree) we would not use.
//!
//! Invariants: every reply is parsed with bounded lengths (a hostile or broken server
//! cannot make us allocate more than [`MAX_BULK_BYTES`] per value or recurse deeper than
//! [`MAX_DEPTH`]); every read and write has the configured timeout.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::ratelimit::config::RedisTarget;

/// Longest status, error or length line accepted.
const MAX_LINE_BYTES: u64 = 64 * 1024;
/// Largest bulk string accepted (our values are decimal counters).
const MAX_BULK_BYTES: usize = 1024 * 1024;
/// Largest array accepted.
const MAX_ARRAY_LEN: usize = 1024 * 1024;
const MAX_DEPTH: usize = 4;

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    /// `None`: the nil bulk string (a missing key).
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// A counter: an integer reply, or a bulk string holding one (`GET`); nil is 0.
    pub fn counter(&self) -> Option<u64> {
        match self {
            Reply::Int(n) => u64::try_from(*n).ok(),
            Reply::Bulk(None) => Some(0),
            Reply::Bulk(Some(bytes)) => std::str::from_utf8(bytes).ok()?.parse().ok(),
            _ => None,
        }
    }
}

/// Appends one command (an array of bulk strings) to `out`.
pub fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    let mut num = itoa::Buffer::new();
    out.push(b'*');
    out.extend_from_slice(num.format(args.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    for arg in args {
        out.push(b'$');
        out.extend_from_slice(num.format(arg.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// Reads one reply.
pub fn read_reply<R: BufRead>(r: &mut R) -> io::Result<Reply> {
    read_nested(r, 0)
}

fn read_nested<R: BufRead>(r: &mut R, depth: usize) -> io::Result<Reply> {
    let line = read_line(r)?;
    let (kind, rest) = line.split_first().ok_or_else(|| bad("empty reply line"))?;
    let text = || String::from_utf8_lossy(rest).into_owned();
    match kind {
        b'+' => Ok(Reply::Status(text())),
        b'-' => Ok(Reply::Error(text())),
        b':' => Ok(Reply::Int(parse_int(rest)?)),
        b'$' => match parse_int(rest)? {
            -1 => Ok(Reply::Bulk(None)),
            n => {
                let len = usize::try_from(n)
                    .ok()
                    .filter(|n| *n <= MAX_BULK_BYTES)
                    .ok_or_else(|| bad("bulk string length out of range"))?;
                let mut value = vec![0; len + 2];
                r.read_exact(&mut value)?;
                if value[len..] != *b"\r\n" {
                    return Err(bad("bulk string not followed by CRLF"));
                }
                value.truncate(len);
                Ok(Reply::Bulk(Some(value)))
            }
        },
        b'*' => match parse_int(rest)? {
            -1 => Ok(Reply::Array(None)),
            n => {
                let len = usize::try_from(n)
                    .ok()
                    .filter(|n| *n <= MAX_ARRAY_LEN)
                    .ok_or_else(|| bad("array length out of range"))?;
                if depth >= MAX_DEPTH {
                    return Err(bad("arrays nested too deep"));
                }
                let mut items = Vec::with_capacity(len.min(1024));
                for _ in 0..len {
                    items.push(read_nested(r, depth + 1)?);
                }
                Ok(Reply::Array(Some(items)))
            }
        },
        other => Err(bad(&format!("unknown reply type {:?}", *other as char))),
    }
}

/// One CRLF-terminated line, without the CRLF.
fn read_line<R: BufRead>(r: &mut R) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    r.by_ref()
        .take(MAX_LINE_BYTES)
        .read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "redis closed the connection",
        ));
    }
    if !line.ends_with(b"\r\n") {
        return Err(bad("reply line too long or not CRLF-terminated"));
    }
    line.truncate(line.len() - 2);
    Ok(line)
}

fn parse_int(digits: &[u8]) -> io::Result<i64> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("invalid integer"))
}

fn bad(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("redis protocol: {what}"),
    )
}

/// A connection to Redis, owned by the sync thread.
pub struct Connection {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Connection {
    /// Connects (each resolved address in turn, `timeout` each), authenticates, selects
    /// the database and checks the server answers.
    pub fn open(target: &RedisTarget, timeout: Duration) -> io::Result<Connection> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address for the redis host");
        for addr in (target.host.as_str(), target.port).to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(stream) => {
                    stream.set_read_timeout(Some(timeout))?;
                    stream.set_write_timeout(Some(timeout))?;
                    stream.set_nodelay(true)?;
                    let mut conn = Connection {
                        reader: BufReader::new(stream.try_clone()?),
                        writer: stream,
                    };
                    conn.handshake(target)?;
                    return Ok(conn);
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn handshake(&mut self, target: &RedisTarget) -> io::Result<()> {
        let mut out = Vec::new();
        let db = target.db.to_string();
        match (&target.username, &target.password) {
            (Some(user), Some(password)) => {
                encode(&mut out, &[b"AUTH", user.as_bytes(), password.as_bytes()])
            }
            (None, Some(password)) => encode(&mut out, &[b"AUTH", password.as_bytes()]),
            _ => {}
        }
        if target.db != 0 {
            encode(&mut out, &[b"SELECT", db.as_bytes()]);
        }
        encode(&mut out, &[b"PING"]);
        let expected = usize::from(target.password.is_some()) + usize::from(target.db != 0) + 1;
        for reply in self.pipeline(&out, expected)? {
            if let Reply::Error(e) = reply {
                return Err(io::Error::other(format!("redis: {e}")));
            }
        }
        Ok(())
    }

    /// Sends `commands` (encoded with [`encode`]) in one write and reads `count` replies.
    pub fn pipeline(&mut self, commands: &[u8], count: usize) -> io::Result<Vec<Reply>> {
        self.writer.write_all(commands)?;
        let mut replies = Vec::with_capacity(count);
        for _ in 0..count {
            replies.push(read_reply(&mut self.reader)?);
        }
        Ok(replies)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_commands() {
        let mut out = Vec::new();
        encode(&mut out, &[b"INCRBY", b"k:1", b"3"]);
        assert_eq!(out, b"*3\r\n$6\r\nINCRBY\r\n$3\r\nk:1\r\n$1\r\n3\r\n");
    }

    #[test]
    fn parses_replies_split_anywhere() {
        let wire: &[u8] =
            b"+OK\r\n-ERR no\r\n:42\r\n$-1\r\n$3\r\na\r\n\r\n*2\r\n:1\r\n$1\r\n7\r\n*-1\r\n";
        let want = [
            Reply::Status("OK".into()),
            Reply::Error("ERR no".into()),
            Reply::Int(42),
            Reply::Bulk(None),
            Reply::Bulk(Some(b"a\r\n".to_vec())),
            Reply::Array(Some(vec![Reply::Int(1), Reply::Bulk(Some(b"7".to_vec()))])),
            Reply::Array(None),
        ];
        // A reader that hands out the bytes in two pieces, split at every offset.
        for split in 0..=wire.len() {
            let (a, b) = wire.split_at(split);
            let mut r = BufReader::with_capacity(8, a.chain(b));
            for (i, w) in want.iter().enumerate() {
                assert_eq!(read_reply(&mut r).unwrap(), *w, "split {split} reply {i}");
            }
            assert!(read_reply(&mut r).is_err(), "split {split}: end of input");
        }
    }

    #[test]
    fn rejects_bad_input() {
        let cases: &[&[u8]] = &[
            b"",
            b"\r\n",
            b"?x\r\n",
            b":x\r\n",
            b"$5\r\nab\r\n",
            b"$2\r\nabcd",
            b"$99999999999\r\n",
            b"*99999999999\r\n",
            b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
            b"+no line end",
        ];
        for case in cases {
            assert!(
                read_reply(&mut &case[..]).is_err(),
                "{:?}",
                String::from_utf8_lossy(case)
            );
        }
    }

    #[test]
    fn counters() {
        let cases = [
            (Reply::Int(5), Some(5)),
            (Reply::Int(-1), None),
            (Reply::Bulk(None), Some(0)),
            (Reply::Bulk(Some(b"17".to_vec())), Some(17)),
            (Reply::Bulk(Some(b"x".to_vec())), None),
            (Reply::Error("WRONGTYPE".into()), None),
        ];
        for (reply, want) in cases {
            assert_eq!(reply.counter(), want, "{reply:?}");
        }
    }
}
