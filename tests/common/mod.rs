//! Test harness: the real `strait` binary on a loopback port with a config written for the
//! test, small upstream servers on their own threads, and a raw HTTP/1.1 client that reads
//! exactly one response at a time.
#![allow(dead_code)]

pub mod certs;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long a test waits for anything before it fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A running `strait` process; killed on drop, and its scratch directory removed.
pub struct Strait {
    child: Child,
    pub addr: SocketAddr,
    pub dir: ScratchDir,
    /// Everything the process wrote on stderr so far (filled by a reader thread).
    pub log: Arc<Mutex<String>>,
}

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// A scratch directory under the system's temporary directory, removed with everything in
/// it when dropped: at the end of the test, whether it passed or panicked.
pub struct ScratchDir(PathBuf);

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

impl AsRef<OsStr> for ScratchDir {
    fn as_ref(&self) -> &OsStr {
        self.0.as_os_str()
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh scratch directory for one test; keep the guard alive as long as the directory
/// is used.
pub fn scratch_dir() -> ScratchDir {
    let dir = std::env::temp_dir().join(format!(
        "strait-test-{}-{}",
        std::process::id(),
        NEXT_DIR.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    ScratchDir(dir)
}

impl Strait {
    /// Starts strait with `config` (its `listen` should be `127.0.0.1:0`) and one worker.
    pub fn start(config: &str) -> Strait {
        Strait::start_with(config, &["--workers", "1"])
    }

    /// The admin API's address (every test instance gets one on a free port).
    pub fn admin_addr(&self) -> SocketAddr {
        let start = Instant::now();
        loop {
            if let Some(addr) = self.log.lock().unwrap().lines().find_map(admin_addr) {
                return addr;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "admin api did not report listening"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// The Prometheus text of the admin API's `GET /metrics`.
    pub fn metrics(&self) -> String {
        let mut stream = connect(self.admin_addr());
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\n\r\n")
            .unwrap();
        let response = read_response(&mut stream).unwrap();
        assert_eq!(response.status, 200, "{}", response.text());
        response.text()
    }

    pub fn start_with(config: &str, args: &[&str]) -> Strait {
        Strait::start_with_env(config, args, &[])
    }

    /// [`Strait::start_with`], with `env` added to the process's environment.
    pub fn start_with_env(config: &str, args: &[&str], env: &[(&str, &OsStr)]) -> Strait {
        let dir = scratch_dir();
        let path = dir.join("strait.toml");
        std::fs::write(&path, config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_strait"))
            .arg("--config")
            .arg(&path)
            .args(["--admin-listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn strait");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let sink = log.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = listening_addr(&line) {
                    let _ = tx.send(addr);
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = match rx.recv_timeout(DEADLINE) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "strait did not report listening; log:\n{}",
                    log.lock().unwrap()
                );
            }
        };
        Strait {
            child,
            addr,
            dir,
            log,
        }
    }

    pub fn connect(&self) -> TcpStream {
        connect(self.addr)
    }

    /// Sends one request on a new connection and reads one response.
    pub fn request(&self, raw: &[u8]) -> Response {
        let mut stream = self.connect();
        stream.write_all(raw).unwrap();
        read_response(&mut stream).unwrap_or_else(|e| panic!("no response: {e}"))
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Strait {
    fn drop(&mut self) {
        // The process first; its directory goes with the `dir` field, right after.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pulls `127.0.0.1:PORT` out of the "listening addr=..." log line.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    if !line.contains("listening") || line.contains("admin") {
        return None;
    }
    let plain: String = strip_ansi(line);
    let start = plain.find("addr=")? + 5;
    plain[start..].split_whitespace().next()?.parse().ok()
}

/// Pulls the address out of the "admin api listening addr=..." log line.
fn admin_addr(line: &str) -> Option<SocketAddr> {
    if !line.contains("admin api listening") {
        return None;
    }
    let plain: String = strip_ansi(line);
    let start = plain.find("addr=")? + 5;
    plain[start..].split_whitespace().next()?.parse().ok()
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.set_write_timeout(Some(DEADLINE)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// One HTTP response as a client sees it.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Trailer fields of a chunked body.
    pub trailers: Vec<(String, String)>,
    /// The raw head, for exact-bytes assertions.
    pub head: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A byte reader over a stream that keeps what it read past the current message.
pub struct Reader<'a, S: Read> {
    stream: &'a mut S,
    buf: Vec<u8>,
}

impl<'a, S: Read> Reader<'a, S> {
    pub fn new(stream: &'a mut S) -> Self {
        Reader {
            stream,
            buf: Vec::new(),
        }
    }

    fn fill(&mut self) -> std::io::Result<usize> {
        let mut chunk = [0u8; 64 * 1024];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Reads up to and including `\r\n\r\n`.
    pub fn read_head(&mut self) -> std::io::Result<String> {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..i + 4).collect();
                return Ok(String::from_utf8_lossy(&head).into_owned());
            }
            if self.fill()? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "eof in head",
                ));
            }
        }
    }

    pub fn read_line(&mut self) -> std::io::Result<String> {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..i + 2).collect();
                return Ok(String::from_utf8_lossy(&line[..i]).into_owned());
            }
            if self.fill()? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "eof in line",
                ));
            }
        }
    }

    pub fn read_exact_vec(&mut self, n: usize) -> std::io::Result<Vec<u8>> {
        while self.buf.len() < n {
            if self.fill()? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "eof in body",
                ));
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    pub fn read_to_end(&mut self) -> std::io::Result<Vec<u8>> {
        while self.fill()? > 0 {}
        Ok(std::mem::take(&mut self.buf))
    }

    /// Reads one response to a request of `method`.
    pub fn read_response(&mut self, method: &str) -> std::io::Result<Response> {
        loop {
            let head = self.read_head()?;
            let (status, headers) = parse_head(&head);
            if (100..200).contains(&status) {
                continue;
            }
            let mut response = Response {
                status,
                headers,
                body: Vec::new(),
                trailers: Vec::new(),
                head,
            };
            if method == "HEAD" || status == 204 || status == 304 {
                return Ok(response);
            }
            if response
                .header("transfer-encoding")
                .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
            {
                loop {
                    let line = self.read_line()?;
                    let size =
                        usize::from_str_radix(line.split(';').next().unwrap().trim(), 16).unwrap();
                    if size == 0 {
                        loop {
                            let trailer = self.read_line()?;
                            if trailer.is_empty() {
                                return Ok(response);
                            }
                            let (n, v) = trailer.split_once(':').unwrap();
                            response
                                .trailers
                                .push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
                        }
                    }
                    let data = self.read_exact_vec(size + 2)?;
                    response.body.extend_from_slice(&data[..size]);
                }
            } else if let Some(len) = response.header("content-length") {
                let len: usize = len.parse().unwrap();
                response.body = self.read_exact_vec(len)?;
                return Ok(response);
            } else {
                response.body = self.read_to_end()?;
                return Ok(response);
            }
        }
    }
}

/// Reads one response to a GET from `stream` (bytes past it are lost: use [`Reader`] for
/// pipelining).
pub fn read_response(stream: &mut TcpStream) -> std::io::Result<Response> {
    Reader::new(stream).read_response("GET")
}

fn parse_head(head: &str) -> (u16, Vec<(String, String)>) {
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap_or((l, ""));
            (n.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    (status, headers)
}

/// The value of one series (`name{labels}` exactly as rendered) in a metrics scrape.
pub fn metric_value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// True once the peer has closed `stream` (reads EOF or a reset) within the deadline.
pub fn is_closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

/// A request as an upstream test server received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub head: String,
    pub body: Vec<u8>,
    /// Which accepted connection (0-based) carried it.
    pub conn: usize,
}

impl Received {
    /// Header values by lower-case name.
    pub fn header(&self, name: &str) -> Option<String> {
        parse_head(&format!(
            "X 0\r\n{}",
            self.head.split_once("\r\n").map(|x| x.1).unwrap_or("")
        ))
        .1
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
    }

    pub fn request_line(&self) -> &str {
        self.head.split("\r\n").next().unwrap_or("")
    }
}

/// What a test upstream does with one received request.
pub type Handler = dyn Fn(&Received) -> Vec<u8> + Send + Sync;

/// A keep-alive HTTP/1.1 origin on a loopback port that records what it receives.
pub struct Upstream {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
    pub connections: Arc<AtomicUsize>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Upstream {
    /// Answers every request with `handler`'s bytes (a whole response).
    pub fn start(handler: impl Fn(&Received) -> Vec<u8> + Send + Sync + 'static) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let (rec, conns, stopping) = (received.clone(), connections.clone(), stop.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let conn = conns.fetch_add(1, Ordering::Relaxed);
                let (rec, handler) = (rec.clone(), handler.clone());
                thread::spawn(move || serve_upstream(stream, conn, rec, handler));
            }
        });
        Upstream {
            addr,
            received,
            connections,
            stop,
        }
    }

    /// An origin that answers 200 with `body` and a Content-Length.
    pub fn fixed(body: &'static str) -> Upstream {
        Upstream::start(move |_| ok(body))
    }

    /// An origin that answers with what it received: request line and body.
    pub fn echo() -> Upstream {
        Upstream::start(|r| {
            let mut body = r.request_line().as_bytes().to_vec();
            body.push(b'\n');
            body.extend_from_slice(&r.body);
            let mut out =
                format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len()).into_bytes();
            out.extend_from_slice(&body);
            out
        })
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn last(&self) -> Received {
        self.requests().pop().expect("upstream received no request")
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// A 200 response with a Content-Length.
pub fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{}",
        body.len(),
        body
    )
    .into_bytes()
}

fn serve_upstream(
    mut stream: TcpStream,
    conn: usize,
    received: Arc<Mutex<Vec<Received>>>,
    handler: Arc<Handler>,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader_stream = stream.try_clone().unwrap();
    let mut reader = Reader::new(&mut reader_stream);
    loop {
        let Ok(head) = reader.read_head() else { return };
        let (_, headers) = parse_head(&format!(
            "X 0\r\n{}",
            head.split_once("\r\n").map(|x| x.1).unwrap_or("")
        ));
        let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let mut body = Vec::new();
        if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            loop {
                let Ok(line) = reader.read_line() else { return };
                let size =
                    usize::from_str_radix(line.split(';').next().unwrap().trim(), 16).unwrap_or(0);
                if size == 0 {
                    while reader.read_line().map(|l| !l.is_empty()).unwrap_or(false) {}
                    break;
                }
                let Ok(data) = reader.read_exact_vec(size + 2) else {
                    return;
                };
                body.extend_from_slice(&data[..size]);
            }
        } else if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
            let Ok(data) = reader.read_exact_vec(len) else {
                return;
            };
            body = data;
        }
        let request = Received { head, body, conn };
        let response = handler(&request);
        received.lock().unwrap().push(request);
        if response.is_empty() {
            // An empty answer means: close without responding.
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
        if stream.write_all(&response).is_err() {
            return;
        }
    }
}

/// Polls `condition` until it holds or the deadline passes.
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// A config with a mock route `hello` (`/hello`, 200 "hi") and a route `api` (`/api/*`)
/// proxied to upstream `app`; `extra` goes after `[server]`'s `listen`.
pub fn hello_api_config(upstream: SocketAddr, extra: &str) -> String {
    format!(
        r#"[server]
listen = ["127.0.0.1:0"]
{extra}
[upstreams.app]
endpoints = ["{upstream}"]

[[routes]]
name = "hello"
path = "/hello"
mock = {{ status = 200, body = "hi" }}

[[routes]]
name = "api"
path = "/api/{{*rest}}"
upstream = "app"
"#
    )
}

/// A config with one upstream `app` at `upstream` and a catch-all route to it, plus `extra`.
pub fn proxy_config(upstream: SocketAddr, extra: &str) -> String {
    format!(
        r#"[server]
listen = ["127.0.0.1:0"]
{extra}
[upstreams.app]
endpoints = ["{upstream}"]

[[routes]]
path = "/{{*rest}}"
upstream = "app"

[[routes]]
path = "/"
upstream = "app"
"#
    )
}

impl Strait {
    /// The process id of the running strait (for reading `/proc/<pid>/status`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl<'a, S: Read> Reader<'a, S> {
    /// Bytes read past the last message returned (e.g. a response that should not exist).
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }
}

impl Strait {
    /// Sends `signal` (a `libc::SIG*` number) to the strait process.
    pub fn signal(&self, signal: i32) {
        send_signal(self.pid(), signal);
    }

    /// The config file strait was started with.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("strait.toml")
    }

    /// Replaces the config file atomically (write aside, rename over), so that a reload
    /// never reads half a file.
    pub fn write_config(&self, config: &str) {
        let aside = self.dir.join("strait.toml.new");
        std::fs::write(&aside, config).unwrap();
        std::fs::rename(&aside, self.config_path()).unwrap();
    }

    /// Everything strait (and any successor it started, which shares its stderr) logged so
    /// far, without colour codes.
    pub fn log_text(&self) -> String {
        strip_ansi(&self.log.lock().unwrap())
    }

    /// Polls until the process has exited (failing after `within`) and returns its status.
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < within,
                "strait did not exit within {within:?}; log:\n{}",
                self.log_text()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Sends `signal` to process `pid`.
pub fn send_signal(pid: u32, signal: i32) {
    // SAFETY: kill has no memory-safety preconditions; a bad pid only fails.
    let rc = unsafe { libc::kill(pid as libc::pid_t, signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal}) failed");
}

/// A loopback port that was free a moment ago, for configs that cannot use port 0 (a binary
/// upgrade re-reads the config, and port 0 would pick a different port).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether `id` has the shape of a request ID Strait generated: 36 bytes, lower-case hex in
/// 8-4-4-4-12 groups, version nibble 4 and RFC 9562 variant (`[89ab]`).
pub fn is_generated_request_id(id: &str) -> bool {
    let groups: Vec<&str> = id.split('-').collect();
    id.len() == 36
        && groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        && groups[2].starts_with('4')
        && groups[3].starts_with(['8', '9', 'a', 'b'])
}

/// The value of the single `x-request-id: ` line in the raw head at the start of `raw`
/// (Strait writes the name lower-case), asserted to be a generated ID.
pub fn generated_request_id(raw: &str) -> String {
    let head = raw.split("\r\n\r\n").next().unwrap_or("");
    let ids: Vec<&str> = head
        .split("\r\n")
        .filter_map(|l| l.strip_prefix("x-request-id: "))
        .collect();
    assert_eq!(ids.len(), 1, "expected one x-request-id line in {raw:?}");
    assert!(
        is_generated_request_id(ids[0]),
        "not a generated request id: {:?}",
        ids[0]
    );
    ids[0].to_string()
}

/// An origin that hands each accepted connection (and its 0-based index) to `serve` on its
/// own thread, for upstreams whose behaviour `Upstream` cannot express.
pub fn raw_upstream(
    serve: impl Fn(TcpStream, usize) + Send + Sync + 'static,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    let serve = Arc::new(serve);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            stream.set_read_timeout(Some(DEADLINE)).unwrap();
            let conn = count.fetch_add(1, Ordering::SeqCst);
            let serve = serve.clone();
            thread::spawn(move || serve(stream, conn));
        }
    });
    (addr, connections)
}

/// Polls until a connection to `addr` is refused: the workers have stopped accepting, so a
/// drain has begun (connections that still get through are closed at once).
pub fn wait_refused(addr: SocketAddr) {
    wait_until(
        "new connections to be refused",
        || match TcpStream::connect(addr) {
            Ok(_) => false,
            Err(e) => {
                assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
                true
            }
        },
    );
}

/// Stops load threads (they poll the flag) when dropped, even when a test fails half-way.
pub struct StopOnDrop(pub Arc<std::sync::atomic::AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Runs strait with the config file at `path` and `args` until it exits (killed, failing
/// the test, if it still runs after the deadline); returns its exit status and everything
/// it wrote on stderr.
pub fn run_file_to_exit(
    path: &std::path::Path,
    args: &[&str],
) -> (std::process::ExitStatus, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_strait"))
        .arg("--config")
        .arg(path)
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn strait");
    let mut stderr = child.stderr.take().unwrap();
    let reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("strait did not exit: {}", reader.join().unwrap());
        }
        thread::sleep(Duration::from_millis(10));
    };
    (status, reader.join().unwrap())
}

/// What `strait --check` says of `config`, and whether it accepted it.
pub fn check(config: &str) -> (bool, String) {
    let dir = scratch_dir();
    let path = dir.join("strait.toml");
    std::fs::write(&path, config).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strait"))
        .args(["--check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (out.status.success(), text)
}

/// A config with upstream `app` at `upstream`, consumer `alice` (API key `alice-key`), and
/// `routes` after them.
pub fn app_config(upstream: SocketAddr, routes: &str) -> String {
    format!(
        r#"[server]
listen = ["127.0.0.1:0"]

[upstreams.app]
endpoints = ["{upstream}"]

[consumers.alice]
api_keys = ["alice-key"]

{routes}"#
    )
}
