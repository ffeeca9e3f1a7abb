//! A loopback HTTP/1.1 collector for upload tests.
//!
//! [`Receiver`] listens on `127.0.0.1:0` only, answers each connection with
//! the next scripted [`Reply`] (or the default reply: Socorro's
//! `CrashID=bp-<uuid>`), records every [`Request`] (body decompressed when
//! it came with `Content-Encoding: gzip`) and can split a multipart body
//! into [`Part`]s or an envelope into items.
//!
//! Bounds, so that no test can hang on it: it stops when dropped, after its
//! lifetime (default 60 s) and after `max_requests` connections (default
//! 1,000). Each connection has 10 s read and write timeouts, stalls and
//! trickles end when the receiver stops, and every reply carries
//! `Connection: close`.
//!
//! It also acts as an HTTP proxy that tunnels to itself: a `CONNECT
//! host:port` request is answered `200 Connection established`, recorded
//! ([`Receiver::proxy_connects`]), and the request that follows on the same
//! connection is served as any other. A request line in absolute form
//! (`POST http://host/path`, as a forwarding proxy gets) is recorded with
//! the absolute URL as its `path`.
//!
//! Presets reproduce the replies listed in `/work/shared/PROTOCOLS.md`:
//! [`Reply::socorro_accepted`], [`Reply::socorro_discarded`],
//! [`Reply::socorro_malformed`], [`Reply::too_large`],
//! [`Reply::server_error`], [`Reply::unavailable`], [`Reply::rate_limited`]
//! (with any `Retry-After` text), [`Reply::rate_limited_until`] (HTTP date),
//! [`Reply::redirect`], [`Reply::sentry_id`], [`Reply::crashpad_id`].

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// Longest request head (request line and headers) accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Read and write timeout of each connection.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest decompressed body kept.
const MAX_DECOMPRESSED: u64 = 512 << 20;

/// How a reply is delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// All at once.
    Normal,
    /// Headers, then the body `chunk` bytes at a time every `interval`.
    Trickle {
        /// Bytes per write.
        chunk: usize,
        /// Pause between writes.
        interval: Duration,
    },
    /// Headers announcing the whole body, half the body, then close.
    CloseMidBody,
    /// Read the request and never answer (until the client gives up or the
    /// receiver stops).
    Stall,
    /// Read the request and close without a reply.
    CloseWithoutReply,
}

/// A scripted reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
    /// Wait this long (after reading the request) before answering.
    pub delay: Duration,
    /// How to deliver it.
    pub behaviour: Behaviour,
}

impl Reply {
    /// A reply with this status and body.
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply { status, headers: Vec::new(), body: body.into(), delay: Duration::ZERO, behaviour: Behaviour::Normal }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Answers only after `delay`.
    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    /// Delivers the reply this way.
    pub fn behaviour(mut self, behaviour: Behaviour) -> Reply {
        self.behaviour = behaviour;
        self
    }

    /// Socorro accepted: `200 CrashID=bp-<uuid>` (`crash_id` without the
    /// `bp-` prefix).
    pub fn socorro_accepted(crash_id: &str) -> Reply {
        Reply::new(200, format!("CrashID=bp-{crash_id}\n")).header("Content-Type", "text/plain")
    }

    /// Socorro accepted with a fresh random crash id.
    pub fn socorro_accepted_random() -> Reply {
        Reply::socorro_accepted(&uuid::Uuid::new_v4().hyphenated().to_string())
    }

    /// Socorro throttled by rule: `200 Discarded=<rule>`.
    pub fn socorro_discarded(rule: &str) -> Reply {
        Reply::new(200, format!("Discarded={rule}\n")).header("Content-Type", "text/plain")
    }

    /// Socorro malformed submission: `400 Discarded=malformed_<what>`.
    pub fn socorro_malformed(what: &str) -> Reply {
        Reply::new(400, format!("Discarded=malformed_{what}\n")).header("Content-Type", "text/plain")
    }

    /// `413 Request Entity Too Large`.
    pub fn too_large() -> Reply {
        Reply::new(413, "<html><body>413 Request Entity Too Large</body></html>").header("Content-Type", "text/html")
    }

    /// `500` with a short body.
    pub fn server_error() -> Reply {
        Reply::new(500, "Internal Server Error")
    }

    /// `503 Service Unavailable`.
    pub fn unavailable() -> Reply {
        Reply::new(503, "Service Unavailable")
    }

    /// `429` with `Retry-After: <retry_after>` (any text: seconds, a date,
    /// garbage).
    pub fn rate_limited(retry_after: &str) -> Reply {
        Reply::new(429, "Too Many Requests").header("Retry-After", retry_after)
    }

    /// `429` with `Retry-After` as an HTTP date.
    pub fn rate_limited_until(when: SystemTime) -> Reply {
        Reply::rate_limited(&httpdate::fmt_http_date(when))
    }

    /// `307` to `location`.
    pub fn redirect(location: &str) -> Reply {
        Reply::new(307, "").header("Location", location)
    }

    /// Sentry's reply: `200 {"id":"<id>"}`.
    pub fn sentry_id(id: &str) -> Reply {
        Reply::new(200, format!("{{\"id\":\"{id}\"}}")).header("Content-Type", "application/json")
    }

    /// Crashpad-style: `200` with the report id as the body.
    pub fn crashpad_id(id: &str) -> Reply {
        Reply::new(200, id.to_owned())
    }
}

/// A recorded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `POST`, ...
    pub method: String,
    /// Path, without the query.
    pub path: String,
    /// Query string, without `?`.
    pub query: Option<String>,
    /// Headers in order (names as sent).
    pub headers: Vec<(String, String)>,
    /// The body, decompressed if it was sent with `Content-Encoding: gzip`
    /// (and not truncated); at most `record_limit` bytes of the raw body.
    pub body: Vec<u8>,
    /// Bytes of body received on the wire.
    pub wire_len: u64,
    /// The raw or decompressed body was longer than the record limit (then
    /// `body` is its start; a raw body is then not decompressed).
    pub truncated: bool,
    /// The body was gzip and decompressed successfully.
    pub decompressed: bool,
}

/// A part of a `multipart/form-data` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Field name.
    pub name: String,
    /// File name, for file parts.
    pub filename: Option<String>,
    /// Content type, if given.
    pub content_type: Option<String>,
    /// Content.
    pub data: Vec<u8>,
}

impl Part {
    /// The content as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

impl Request {
    /// The first header of this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// A query parameter, percent-decoded.
    pub fn query_param(&self, key: &str) -> Option<String> {
        self.query.as_deref()?.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k) == key).then(|| percent_decode(v))
        })
    }

    /// The parts of a `multipart/form-data` body.
    pub fn multipart(&self) -> Result<Vec<Part>, String> {
        parse_multipart(self.header("content-type").unwrap_or(""), &self.body)
    }

    /// The items of a Sentry envelope body: `(item header, payload)`, after
    /// the envelope header (returned first, with an empty payload).
    pub fn envelope(&self) -> Result<Vec<(serde_json::Value, Vec<u8>)>, String> {
        parse_envelope(&self.body)
    }

    /// The body contains `needle` anywhere.
    pub fn body_contains(&self, needle: &[u8]) -> bool {
        !needle.is_empty() && self.body.windows(needle.len()).any(|w| w == needle)
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from > haystack.len() {
        return None;
    }
    haystack[from..].windows(needle.len()).position(|w| w == needle).map(|p| p + from)
}

/// Splits a `form-data` header parameter list, honouring quotes.
fn disposition_params(value: &str) -> Vec<(String, String)> {
    let mut params = Vec::new();
    let mut rest = value;
    while let Some(semi) = rest.find(';') {
        rest = rest[semi + 1..].trim_start();
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].trim().to_ascii_lowercase();
        let after = &rest[eq + 1..];
        let (val, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            (quoted[..end].to_owned(), &quoted[(end + 1).min(quoted.len())..])
        } else {
            let end = after.find(';').unwrap_or(after.len());
            (after[..end].trim().to_owned(), &after[end..])
        };
        let val = val.replace("%22", "\"").replace("%0D", "\r").replace("%0A", "\n");
        params.push((key, val));
        rest = remaining;
    }
    params
}

/// Parses a `multipart/form-data` body.
pub fn parse_multipart(content_type: &str, body: &[u8]) -> Result<Vec<Part>, String> {
    let boundary = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .map(|b| b.trim_matches('"'))
        .filter(|b| !b.is_empty())
        .ok_or_else(|| format!("no boundary in content type {content_type:?}"))?;
    let delimiter = format!("--{boundary}").into_bytes();
    let next_delimiter = format!("\r\n--{boundary}").into_bytes();
    if !body.starts_with(&delimiter) {
        return Err("body does not start with the boundary".into());
    }
    let mut parts = Vec::new();
    let mut pos = delimiter.len();
    loop {
        if body[pos..].starts_with(b"--") {
            return Ok(parts);
        }
        if !body[pos..].starts_with(b"\r\n") {
            return Err(format!("no CRLF after a boundary at {pos}"));
        }
        pos += 2;
        let head_end = find(body, b"\r\n\r\n", pos).ok_or("part headers not terminated")?;
        let head = String::from_utf8_lossy(&body[pos..head_end]).into_owned();
        let data_start = head_end + 4;
        let data_end = find(body, &next_delimiter, data_start).ok_or("part not terminated by the boundary")?;
        let mut part = Part { name: String::new(), filename: None, content_type: None, data: Vec::new() };
        for line in head.split("\r\n") {
            let Some((name, value)) = line.split_once(':') else { continue };
            if name.eq_ignore_ascii_case("content-disposition") {
                for (key, val) in disposition_params(value) {
                    match key.as_str() {
                        "name" => part.name = val,
                        "filename" => part.filename = Some(val),
                        _ => {}
                    }
                }
            } else if name.eq_ignore_ascii_case("content-type") {
                part.content_type = Some(value.trim().to_owned());
            }
        }
        part.data = body[data_start..data_end].to_vec();
        parts.push(part);
        pos = data_end + next_delimiter.len();
    }
}

/// Parses a Sentry envelope.
pub fn parse_envelope(body: &[u8]) -> Result<Vec<(serde_json::Value, Vec<u8>)>, String> {
    let line_end = |from: usize| body[from..].iter().position(|&b| b == b'\n').map_or(body.len(), |p| from + p);
    let end = line_end(0);
    let header: serde_json::Value =
        serde_json::from_slice(&body[..end]).map_err(|e| format!("envelope header: {e}"))?;
    let mut items = vec![(header, Vec::new())];
    let mut pos = end + 1;
    while pos < body.len() {
        let end = line_end(pos);
        if end == pos {
            pos += 1;
            continue;
        }
        let header: serde_json::Value =
            serde_json::from_slice(&body[pos..end]).map_err(|e| format!("item header at {pos}: {e}"))?;
        let start = end + 1;
        let len = match header.get("length").and_then(serde_json::Value::as_u64) {
            Some(len) => len as usize,
            None => line_end(start.min(body.len())) - start.min(body.len()),
        };
        if start + len > body.len() {
            return Err(format!("item at {pos} runs past the end"));
        }
        items.push((header, body[start..start + len].to_vec()));
        pos = start + len + 1;
    }
    Ok(items)
}

/// Builds a [`Receiver`].
#[derive(Debug, Clone)]
pub struct ReceiverBuilder {
    lifetime: Duration,
    max_requests: usize,
    record_limit: usize,
    default_reply: Option<Reply>,
    replies: Vec<Reply>,
}

impl Default for ReceiverBuilder {
    fn default() -> ReceiverBuilder {
        ReceiverBuilder {
            lifetime: Duration::from_secs(60),
            max_requests: 1000,
            record_limit: 256 << 20,
            default_reply: None,
            replies: Vec::new(),
        }
    }
}

impl ReceiverBuilder {
    /// Stop after this long (at most 10 minutes).
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime.min(Duration::from_secs(600));
        self
    }

    /// Stop accepting after this many connections.
    pub fn max_requests(mut self, n: usize) -> Self {
        self.max_requests = n;
        self
    }

    /// Keep at most this many bytes of each body, raw or decompressed (the
    /// rest is read and counted, not kept). Default 256 MiB.
    pub fn record_limit(mut self, bytes: usize) -> Self {
        self.record_limit = bytes;
        self
    }

    /// The reply when the script is exhausted (default: Socorro accepted
    /// with a fresh id).
    pub fn default_reply(mut self, reply: Reply) -> Self {
        self.default_reply = Some(reply);
        self
    }

    /// Scripted replies, in order.
    pub fn replies(mut self, replies: impl IntoIterator<Item = Reply>) -> Self {
        self.replies.extend(replies);
        self
    }

    /// Starts listening on `127.0.0.1:0`.
    pub fn start(self) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("nonblocking listener");
        let addr = listener.local_addr().expect("local_addr");
        let shared = Arc::new(Shared {
            replies: Mutex::new(self.replies.into()),
            default_reply: self.default_reply,
            requests: Mutex::new(Vec::new()),
            connects: Mutex::new(Vec::new()),
            changed: Condvar::new(),
            malformed: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            deadline: Instant::now() + self.lifetime,
            record_limit: self.record_limit,
        });
        let max_requests = self.max_requests;
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("receiver".into())
            .spawn(move || accept_loop(listener, thread_shared, max_requests))
            .expect("spawn receiver");
        Receiver { addr, shared, thread: Some(thread) }
    }
}

struct Shared {
    replies: Mutex<VecDeque<Reply>>,
    default_reply: Option<Reply>,
    requests: Mutex<Vec<Request>>,
    connects: Mutex<Vec<String>>,
    changed: Condvar,
    malformed: AtomicUsize,
    connections: AtomicUsize,
    stop: AtomicBool,
    deadline: Instant,
    record_limit: usize,
}

impl Shared {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst) || Instant::now() >= self.deadline
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running loopback collector. Stops when dropped.
pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver").field("addr", &self.addr).finish()
    }
}

impl Receiver {
    /// A receiver with default settings.
    pub fn start() -> Receiver {
        ReceiverBuilder::default().start()
    }

    /// A builder.
    pub fn builder() -> ReceiverBuilder {
        ReceiverBuilder::default()
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Appends a scripted reply.
    pub fn push(&self, reply: Reply) {
        lock(&self.shared.replies).push_back(reply);
    }

    /// All requests recorded so far.
    pub fn requests(&self) -> Vec<Request> {
        lock(&self.shared.requests).clone()
    }

    /// The `host:port` of every `CONNECT` request received (as a proxy).
    pub fn proxy_connects(&self) -> Vec<String> {
        lock(&self.shared.connects).clone()
    }

    /// How many requests were recorded.
    pub fn request_count(&self) -> usize {
        lock(&self.shared.requests).len()
    }

    /// Connections that did not carry a readable HTTP request (e.g. a TLS
    /// handshake).
    pub fn malformed_count(&self) -> usize {
        self.shared.malformed.load(Ordering::SeqCst)
    }

    /// Connections accepted.
    pub fn connection_count(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Waits (at most `timeout`) until `n` requests were recorded; returns
    /// them all.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<Request> {
        let deadline = Instant::now() + timeout;
        let mut requests = lock(&self.shared.requests);
        while requests.len() < n {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            requests = self
                .shared
                .changed
                .wait_timeout(requests, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        requests.clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>, max_requests: usize) {
    let mut accepted = 0;
    while !shared.stopping() && accepted < max_requests {
        match listener.accept() {
            Ok((stream, _)) => {
                accepted += 1;
                shared.connections.fetch_add(1, Ordering::SeqCst);
                let shared = Arc::clone(&shared);
                let _ = std::thread::Builder::new().name("receiver-conn".into()).spawn(move || serve(stream, &shared));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn serve(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let Ok(mut writer) = stream.try_clone() else { return };
    let mut reader = BufReader::new(stream);
    let mut request = match read_request(&mut reader, &mut writer, shared.record_limit) {
        Ok(request) => request,
        Err(_) => {
            shared.malformed.fetch_add(1, Ordering::SeqCst);
            return;
        }
    };
    if request.method == "CONNECT" {
        // A proxy tunnel to ourselves: the real request follows.
        lock(&shared.connects).push(request.path.clone());
        if writer.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").is_err() {
            return;
        }
        request = match read_request(&mut reader, &mut writer, shared.record_limit) {
            Ok(request) => request,
            Err(_) => {
                shared.malformed.fetch_add(1, Ordering::SeqCst);
                return;
            }
        };
    }
    let reply = lock(&shared.replies).pop_front();
    let reply = reply.or_else(|| shared.default_reply.clone()).unwrap_or_else(Reply::socorro_accepted_random);
    lock(&shared.requests).push(request);
    shared.changed.notify_all();
    if !sleep_unless_stopped(reply.delay, shared) {
        return;
    }
    let _ = write_reply(&mut writer, reader.get_mut(), &reply, shared);
    let _ = writer.flush();
    let _ = writer.shutdown(Shutdown::Both);
}

/// Sleeps `d` in small steps; false if the receiver stopped meanwhile.
fn sleep_unless_stopped(d: Duration, shared: &Shared) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if shared.stopping() {
            return false;
        }
        std::thread::sleep((end - Instant::now()).min(Duration::from_millis(10)));
    }
    true
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}

fn read_request(reader: &mut BufReader<TcpStream>, writer: &mut TcpStream, record_limit: usize) -> io::Result<Request> {
    // Like a real HTTP server, answer 400 at once to something that does not
    // start like a request (e.g. a TLS ClientHello).
    let first = reader.fill_buf()?.first().copied();
    match first {
        None => return Err(bad("connection closed before a request")),
        Some(b) if !b.is_ascii_uppercase() => {
            let _ = writer.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            return Err(bad("not an HTTP request"));
        }
        Some(_) => {}
    }
    let mut head = Vec::new();
    loop {
        let n = reader.by_ref().take((MAX_HEAD - head.len()) as u64).read_until(b'\n', &mut head)?;
        if n == 0 {
            return Err(bad("connection closed in the request head"));
        }
        if head.ends_with(b"\r\n\r\n") || head == b"\r\n" {
            break;
        }
        if head.len() >= MAX_HEAD {
            return Err(bad("request head too long"));
        }
    }
    let head = String::from_utf8(head).map_err(|_| bad("request head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut words = request_line.split(' ');
    let (Some(method), Some(target), Some(version)) = (words.next(), words.next(), words.next()) else {
        return Err(bad("bad request line"));
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(bad("not HTTP/1.x"));
    }
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').ok_or_else(|| bad("bad header line"))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (target.to_owned(), None),
    };
    let mut request = Request {
        method: method.to_owned(),
        path,
        query,
        headers,
        body: Vec::new(),
        wire_len: 0,
        truncated: false,
        decompressed: false,
    };
    if request.header("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let chunked = request.header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let keep = |request: &mut Request, data: &[u8]| {
        request.wire_len += data.len() as u64;
        let room = record_limit.saturating_sub(request.body.len());
        if data.len() > room {
            request.truncated = true;
        }
        request.body.extend_from_slice(&data[..data.len().min(room)]);
    };
    const BUF: usize = 64 * 1024;
    let mut buf = vec![0u8; BUF];
    if chunked {
        loop {
            let mut size_line = String::new();
            reader.by_ref().take(1024).read_line(&mut size_line)?;
            let size_hex = size_line.trim().split(';').next().unwrap_or("");
            let mut size = u64::from_str_radix(size_hex, 16).map_err(|_| bad("bad chunk size"))?;
            if size == 0 {
                // Trailers until an empty line.
                loop {
                    let mut line = String::new();
                    if reader.by_ref().take(MAX_HEAD as u64).read_line(&mut line)? == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            while size > 0 {
                let n = reader.read(&mut buf[..size.min(BUF as u64) as usize])?;
                if n == 0 {
                    return Err(bad("connection closed in a chunk"));
                }
                keep(&mut request, &buf[..n]);
                size -= n as u64;
            }
            let mut crlf = [0u8; 2];
            reader.read_exact(&mut crlf)?;
        }
    } else if let Some(len) = request.header("content-length") {
        let mut left: u64 = len.parse().map_err(|_| bad("bad content-length"))?;
        while left > 0 {
            let n = reader.read(&mut buf[..left.min(BUF as u64) as usize])?;
            if n == 0 {
                return Err(bad("connection closed in the body"));
            }
            keep(&mut request, &buf[..n]);
            left -= n as u64;
        }
    }
    let gzip = request.header("content-encoding").is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    if gzip && !request.truncated {
        let mut plain = Vec::new();
        let limit = (record_limit as u64).min(MAX_DECOMPRESSED);
        let decoded = flate2::read::GzDecoder::new(request.body.as_slice()).take(limit + 1).read_to_end(&mut plain);
        if decoded.is_ok() {
            if plain.len() as u64 > limit {
                plain.truncate(limit as usize);
                request.truncated = true;
            }
            request.body = plain;
            request.decompressed = true;
        }
    }
    Ok(request)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => "Moved Permanently",
        302 => "Found",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        413 => "Request Entity Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn write_reply(writer: &mut TcpStream, reader: &mut TcpStream, reply: &Reply, shared: &Shared) -> io::Result<()> {
    match &reply.behaviour {
        Behaviour::CloseWithoutReply => return Ok(()),
        Behaviour::Stall => {
            // Wait for the client to give up (EOF or error) or the receiver to stop.
            reader.set_read_timeout(Some(Duration::from_millis(20)))?;
            let mut byte = [0u8; 1];
            while !shared.stopping() {
                match reader.read(&mut byte) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                    Err(_) => break,
                }
            }
            return Ok(());
        }
        _ => {}
    }
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reason(reply.status),
        reply.body.len()
    );
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    writer.write_all(head.as_bytes())?;
    match &reply.behaviour {
        Behaviour::Normal => writer.write_all(&reply.body),
        Behaviour::CloseMidBody => writer.write_all(&reply.body[..reply.body.len() / 2]),
        Behaviour::Trickle { chunk, interval } => {
            for piece in reply.body.chunks((*chunk).max(1)) {
                writer.write_all(piece)?;
                writer.flush()?;
                if !sleep_unless_stopped(*interval, shared) {
                    break;
                }
            }
            Ok(())
        }
        Behaviour::Stall | Behaviour::CloseWithoutReply => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_round_trip() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x;y.dmp\"\r\nContent-Type: application/octet-stream\r\n\r\n\x00\x01\r\n--X\r\n\
--XyZ--\r\n";
        let parts = parse_multipart("multipart/form-data; boundary=XyZ", body).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "a");
        assert_eq!(parts[0].text(), "1");
        assert_eq!(parts[1].filename.as_deref(), Some("x;y.dmp"));
        assert_eq!(parts[1].data, b"\x00\x01\r\n--X");
        assert!(parse_multipart("multipart/form-data", body).is_err());
    }

    #[test]
    fn envelope_items() {
        let body = b"{\"event_id\":\"1\"}\n{\"type\":\"event\",\"length\":2}\n{}\n{\"type\":\"attachment\",\"length\":3}\na\nb\n";
        let items = parse_envelope(body).unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!(items[2].1, b"a\nb");
    }

    #[test]
    fn serves_and_records() {
        let receiver = Receiver::builder().replies([Reply::sentry_id("abc")]).start();
        let mut s = TcpStream::connect(receiver.addr()).unwrap();
        s.write_all(b"POST /api/1/minidump/?sentry_key=k%21 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
            .unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
        assert!(reply.ends_with("{\"id\":\"abc\"}"));
        let requests = receiver.wait_for_requests(1, Duration::from_secs(5));
        assert_eq!(requests[0].path, "/api/1/minidump/");
        assert_eq!(requests[0].query_param("sentry_key").as_deref(), Some("k!"));
        assert_eq!(requests[0].body, b"hello");
        // Default reply afterwards.
        let mut s = TcpStream::connect(receiver.addr()).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        assert!(reply.contains("CrashID=bp-"), "{reply}");
        // Garbage is counted, not recorded.
        let mut s = TcpStream::connect(receiver.addr()).unwrap();
        s.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n").unwrap();
        let _ = s.read_to_end(&mut Vec::new());
        assert!(crate::wait_for(Duration::from_secs(5), || (receiver.malformed_count() == 1).then_some(())).is_some());
        assert_eq!(receiver.request_count(), 2);
    }
}
