//! The wire format between the in-process crash handler and the crashmon monitor.
//!
//! Every message is one datagram on a `SOCK_SEQPACKET` Unix socket: a fixed
//! 16-byte [`Header`] followed by a payload whose size is fixed by the message
//! kind. Decoding checks the magic, the version, the kind and that the datagram
//! is exactly as long as that kind requires; it never allocates and never trusts
//! a length chosen by the peer. Encoding writes into a caller-provided buffer, so
//! the handler can build a message inside a signal handler.
//!
//! The crate is `no_std` and has no dependencies: it is shared by code that runs
//! in a signal handler and by the monitor.
#![no_std]

/// `b"CMON"` as a little-endian `u32`.
pub const MAGIC: u32 = u32::from_le_bytes(*b"CMON");
/// Protocol version; bumped on any incompatible change.
pub const VERSION: u16 = 1;
/// Size of the [`Header`] on the wire.
pub const HEADER_LEN: usize = 16;
/// Capacity reserved for the raw crash context (registers, signal info) in a
/// [`DumpRequest`]. The monitor checks the exact length it expects for its
/// platform; this is only the upper bound of the field.
pub const CONTEXT_CAPACITY: usize = 2048;
/// Capacity of the free-text reason in [`DumpFailed`] and of the message in
/// [`DumpRequest`].
pub const TEXT_CAPACITY: usize = 256;
/// Longest breadcrumb category, bytes.
pub const BREADCRUMB_CATEGORY_CAPACITY: usize = 64;
/// Longest breadcrumb message, bytes.
pub const BREADCRUMB_MESSAGE_CAPACITY: usize = 1024;
/// Longest annotation key, bytes.
pub const ANNOTATION_KEY_CAPACITY: usize = 128;
/// Longest annotation value, bytes (20 KiB).
pub const ANNOTATION_VALUE_CAPACITY: usize = 20 * 1024;
/// Longest attachment path, bytes (`PATH_MAX`).
pub const ATTACHMENT_PATH_CAPACITY: usize = 4096;
/// The largest datagram of this protocol; a receive buffer of this size always
/// holds a whole message, so anything longer is malformed by definition.
pub const MAX_MESSAGE_LEN: usize = HEADER_LEN + Annotate::MAX_PAYLOAD_LEN;
const _: () = assert!(Annotate::MAX_PAYLOAD_LEN >= DumpRequest::PAYLOAD_LEN);
const _: () = assert!(Annotate::MAX_PAYLOAD_LEN >= Attach::MAX_PAYLOAD_LEN);

/// What a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Kind {
    /// Client → monitor, first message on a connection.
    Hello = 1,
    /// Monitor → client, answer to [`Kind::Hello`].
    HelloAck = 2,
    /// Client → monitor: dump this process now.
    DumpRequest = 3,
    /// Monitor → client: the dump is durable on disk.
    DumpComplete = 4,
    /// Monitor → client: no dump could be written.
    DumpFailed = 5,
    /// Client → monitor: set or remove an annotation.
    Annotate = 6,
    /// Client → monitor: a recent event for the breadcrumb ring.
    Breadcrumb = 7,
    /// Client → monitor: name (or forget) a file to copy into every report.
    Attach = 8,
}

impl Kind {
    fn from_u16(v: u16) -> Option<Kind> {
        Some(match v {
            1 => Kind::Hello,
            2 => Kind::HelloAck,
            3 => Kind::DumpRequest,
            4 => Kind::DumpComplete,
            5 => Kind::DumpFailed,
            6 => Kind::Annotate,
            7 => Kind::Breadcrumb,
            8 => Kind::Attach,
            _ => return None,
        })
    }

    /// The smallest and largest payload length of this kind (equal for
    /// fixed-size kinds).
    pub const fn payload_bounds(self) -> (usize, usize) {
        let fixed = match self {
            Kind::Hello => Hello::PAYLOAD_LEN,
            Kind::HelloAck => HelloAck::PAYLOAD_LEN,
            Kind::DumpRequest => DumpRequest::PAYLOAD_LEN,
            Kind::DumpComplete => DumpComplete::PAYLOAD_LEN,
            Kind::DumpFailed => DumpFailed::PAYLOAD_LEN,
            Kind::Annotate => return (Annotate::MIN_PAYLOAD_LEN, Annotate::MAX_PAYLOAD_LEN),
            Kind::Breadcrumb => return (Breadcrumb::MIN_PAYLOAD_LEN, Breadcrumb::MAX_PAYLOAD_LEN),
            Kind::Attach => return (Attach::MIN_PAYLOAD_LEN, Attach::MAX_PAYLOAD_LEN),
        };
        (fixed, fixed)
    }
}

/// Why a datagram was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than a header.
    TooShort {
        /// Bytes received.
        len: usize,
    },
    /// The first four bytes are not [`MAGIC`].
    BadMagic(u32),
    /// A version this build does not speak.
    UnsupportedVersion(u16),
    /// An unknown message kind.
    UnknownKind(u16),
    /// The datagram length does not match what the kind requires.
    BadLength {
        /// The kind named in the header.
        kind: Kind,
        /// Payload bytes expected for that kind.
        expected: usize,
        /// Payload bytes present (or claimed by the header).
        actual: usize,
    },
    /// A field holds a value outside its domain.
    BadField(&'static str),
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DecodeError::TooShort { len } => {
                write!(f, "message of {len} bytes is shorter than the {HEADER_LEN}-byte header")
            }
            DecodeError::BadMagic(m) => write!(f, "bad magic 0x{m:08x}"),
            DecodeError::UnsupportedVersion(v) => {
                write!(f, "unsupported protocol version {v} (this build speaks {VERSION})")
            }
            DecodeError::UnknownKind(k) => write!(f, "unknown message kind {k}"),
            DecodeError::BadLength { kind, expected, actual } => {
                write!(f, "{kind:?} payload must be {expected} bytes, got {actual}")
            }
            DecodeError::BadField(name) => write!(f, "invalid value in field {name}"),
        }
    }
}

/// Why a message could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// The output buffer is too small.
    BufferTooSmall,
    /// A variable part is longer than its fixed capacity.
    TooLong,
}

/// The fixed header in front of every message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// What follows.
    pub kind: Kind,
    /// Length of the payload after the header.
    pub payload_len: u32,
}

/// Why a dump is requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum CrashKind {
    /// A fatal signal.
    Signal = 1,
    /// A Rust panic (the process aborts after the dump).
    Panic = 2,
    /// A dump the application asked for without crashing.
    Requested = 3,
}

impl CrashKind {
    fn from_u32(v: u32) -> Option<CrashKind> {
        Some(match v {
            1 => CrashKind::Signal,
            2 => CrashKind::Panic,
            3 => CrashKind::Requested,
            _ => return None,
        })
    }
}

/// Client → monitor: who is speaking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// The client's pid as it sees itself (checked against `SO_PEERCRED`).
    pub pid: u32,
    /// Reserved feature bits; zero.
    pub flags: u32,
}

impl Hello {
    /// Payload bytes on the wire.
    pub const PAYLOAD_LEN: usize = 8;
}

/// Monitor → client: connection accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HelloAck {
    /// The monitor's pid (the only process the client lets ptrace it).
    pub monitor_pid: u32,
}

impl HelloAck {
    /// Payload bytes on the wire.
    pub const PAYLOAD_LEN: usize = 8;
}

/// Client → monitor: write a minidump of me now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DumpRequest<'a> {
    /// Why.
    pub kind: CrashKind,
    /// Chosen by the client; echoed in the reply so concurrent requests on one
    /// connection cannot take each other's answers.
    pub request_id: u32,
    /// Signal number (0 for a requested dump).
    pub signo: i32,
    /// `si_code` of the signal.
    pub code: i32,
    /// Process id of the crashing process.
    pub pid: u32,
    /// Thread id of the crashing thread.
    pub tid: u32,
    /// Fault address (`si_addr`) or 0.
    pub address: u64,
    /// Raw platform crash context (the bytes of `crash_context::CrashContext`).
    pub context: &'a [u8],
    /// Short UTF-8 text (panic message, reason); may be truncated at a char
    /// boundary by the encoder.
    pub message: &'a [u8],
}

impl DumpRequest<'_> {
    /// Payload bytes on the wire (fixed whatever the context and message length).
    pub const PAYLOAD_LEN: usize = 4 + 4 + 4 + 4 + 4 + 4 + 8 + 4 + 4 + CONTEXT_CAPACITY + TEXT_CAPACITY;
}

/// Monitor → client: the dump is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DumpComplete {
    /// The `request_id` of the request this answers.
    pub request_id: u32,
    /// The report id (a UUID's 16 bytes).
    pub report_id: [u8; 16],
}

impl DumpComplete {
    /// Payload bytes on the wire.
    pub const PAYLOAD_LEN: usize = 4 + 4 + 16;
}

/// Monitor → client: no dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DumpFailed<'a> {
    /// The `request_id` of the request this answers.
    pub request_id: u32,
    /// An errno-like code, 0 if none applies.
    pub errno: i32,
    /// Human-readable reason (UTF-8, possibly truncated).
    pub reason: &'a [u8],
}

impl DumpFailed<'_> {
    /// Payload bytes on the wire.
    pub const PAYLOAD_LEN: usize = 4 + 4 + 4 + TEXT_CAPACITY;
}

/// Client → monitor: set (or, with `remove`, delete) an annotation that
/// goes into every report of this process. Sent ahead of time, so a crash
/// costs nothing extra.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Annotate<'a> {
    /// Delete the key instead of setting it.
    pub remove: bool,
    /// The key (UTF-8, at most [`ANNOTATION_KEY_CAPACITY`] bytes).
    pub key: &'a [u8],
    /// The value (UTF-8, at most [`ANNOTATION_VALUE_CAPACITY`] bytes).
    pub value: &'a [u8],
}

impl Annotate<'_> {
    /// Payload bytes before the key and value.
    pub const MIN_PAYLOAD_LEN: usize = 12;
    /// Largest payload.
    pub const MAX_PAYLOAD_LEN: usize = Self::MIN_PAYLOAD_LEN + ANNOTATION_KEY_CAPACITY + ANNOTATION_VALUE_CAPACITY;
}

/// Client → monitor: one recent event (a log line, a user action) kept in
/// a bounded ring by the monitor and filed with the next report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breadcrumb<'a> {
    /// Unix time in milliseconds.
    pub timestamp_ms: u64,
    /// Severity: 0 trace, 1 debug, 2 info, 3 warning, 4 error.
    pub level: u8,
    /// Where it comes from (e.g. a log target), at most
    /// [`BREADCRUMB_CATEGORY_CAPACITY`] bytes.
    pub category: &'a [u8],
    /// The text, at most [`BREADCRUMB_MESSAGE_CAPACITY`] bytes.
    pub message: &'a [u8],
}

impl Breadcrumb<'_> {
    /// Payload bytes before the category and message.
    pub const MIN_PAYLOAD_LEN: usize = 8 + 4 + 4 + 4;
    /// Largest payload.
    pub const MAX_PAYLOAD_LEN: usize =
        Self::MIN_PAYLOAD_LEN + BREADCRUMB_CATEGORY_CAPACITY + BREADCRUMB_MESSAGE_CAPACITY;
}

/// Client → monitor: copy the file at `path` into every report of this
/// process, at crash time (or, with `remove`, stop doing so). Sent ahead of
/// time like [`Annotate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attach<'a> {
    /// Forget the path instead of adding it.
    pub remove: bool,
    /// Absolute path of the file (bytes of a Unix path, no NUL, at most
    /// [`ATTACHMENT_PATH_CAPACITY`] bytes).
    pub path: &'a [u8],
}

impl Attach<'_> {
    /// Payload bytes before the path.
    pub const MIN_PAYLOAD_LEN: usize = 8;
    /// Largest payload.
    pub const MAX_PAYLOAD_LEN: usize = Self::MIN_PAYLOAD_LEN + ATTACHMENT_PATH_CAPACITY;
}

/// A decoded message, borrowing variable parts from the receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// See [`Hello`].
    Hello(Hello),
    /// See [`HelloAck`].
    HelloAck(HelloAck),
    /// See [`DumpRequest`].
    DumpRequest(DumpRequest<'a>),
    /// See [`DumpComplete`].
    DumpComplete(DumpComplete),
    /// See [`DumpFailed`].
    DumpFailed(DumpFailed<'a>),
    /// See [`Annotate`].
    Annotate(Annotate<'a>),
    /// See [`Breadcrumb`].
    Breadcrumb(Breadcrumb<'a>),
    /// See [`Attach`].
    Attach(Attach<'a>),
}

/// Little-endian cursor over a byte slice; every read is bounds-checked by the
/// caller having validated the total length first.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        out
    }
    fn u16(&mut self) -> u16 {
        let b = self.bytes(2);
        u16::from_le_bytes([b[0], b[1]])
    }
    fn u32(&mut self) -> u32 {
        let b = self.bytes(4);
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
    fn i32(&mut self) -> i32 {
        self.u32() as i32
    }
    fn u64(&mut self) -> u64 {
        let b = self.bytes(8);
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        u64::from_le_bytes(a)
    }
    /// A `len: u32` followed by `cap` bytes of which the first `len` count.
    fn sized(&mut self, cap: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.u32() as usize;
        let all = self.bytes(cap);
        if len > cap {
            return Err(DecodeError::BadField(field));
        }
        Ok(&all[..len])
    }
}

struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl Writer<'_> {
    fn put(&mut self, b: &[u8]) {
        self.buf[self.pos..self.pos + b.len()].copy_from_slice(b);
        self.pos += b.len();
    }
    fn sized(&mut self, data: &[u8], cap: usize) {
        let n = data.len().min(cap);
        self.put(&(n as u32).to_le_bytes());
        self.put(&data[..n]);
        self.buf[self.pos..self.pos + (cap - n)].fill(0);
        self.pos += cap - n;
    }
}

/// Decode the header of a datagram.
pub fn decode_header(buf: &[u8]) -> Result<Header, DecodeError> {
    if buf.len() < HEADER_LEN {
        return Err(DecodeError::TooShort { len: buf.len() });
    }
    let mut r = Reader { buf, pos: 0 };
    let magic = r.u32();
    if magic != MAGIC {
        return Err(DecodeError::BadMagic(magic));
    }
    let version = r.u16();
    if version != VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let raw_kind = r.u16();
    let kind = Kind::from_u16(raw_kind).ok_or(DecodeError::UnknownKind(raw_kind))?;
    let payload_len = r.u32();
    let (min, max) = kind.payload_bounds();
    if (payload_len as usize) < min || payload_len as usize > max {
        let expected = if (payload_len as usize) < min { min } else { max };
        return Err(DecodeError::BadLength { kind, expected, actual: payload_len as usize });
    }
    Ok(Header { kind, payload_len })
}

/// Decode one whole datagram.
pub fn decode(buf: &[u8]) -> Result<Message<'_>, DecodeError> {
    let header = decode_header(buf)?;
    let expected = header.payload_len as usize;
    let actual = buf.len() - HEADER_LEN;
    if actual != expected {
        return Err(DecodeError::BadLength { kind: header.kind, expected, actual });
    }
    let mut r = Reader { buf, pos: HEADER_LEN };
    Ok(match header.kind {
        Kind::Hello => Message::Hello(Hello { pid: r.u32(), flags: r.u32() }),
        Kind::HelloAck => {
            let monitor_pid = r.u32();
            let _reserved = r.u32();
            Message::HelloAck(HelloAck { monitor_pid })
        }
        Kind::DumpRequest => {
            let kind = CrashKind::from_u32(r.u32()).ok_or(DecodeError::BadField("kind"))?;
            let signo = r.i32();
            let code = r.i32();
            let pid = r.u32();
            let tid = r.u32();
            let request_id = r.u32();
            let address = r.u64();
            let context = r.sized(CONTEXT_CAPACITY, "context")?;
            let message = r.sized(TEXT_CAPACITY, "message")?;
            if pid == 0 || tid == 0 {
                return Err(DecodeError::BadField("pid/tid"));
            }
            Message::DumpRequest(DumpRequest { kind, request_id, signo, code, pid, tid, address, context, message })
        }
        Kind::DumpComplete => {
            let request_id = r.u32();
            let _reserved = r.u32();
            let mut report_id = [0u8; 16];
            report_id.copy_from_slice(r.bytes(16));
            Message::DumpComplete(DumpComplete { request_id, report_id })
        }
        Kind::DumpFailed => {
            let request_id = r.u32();
            let errno = r.i32();
            let reason = r.sized(TEXT_CAPACITY, "reason")?;
            Message::DumpFailed(DumpFailed { request_id, errno, reason })
        }
        Kind::Annotate => {
            let flags = r.u32();
            let key_len = r.u32() as usize;
            let value_len = r.u32() as usize;
            if flags > 1 {
                return Err(DecodeError::BadField("flags"));
            }
            if key_len == 0 || key_len > ANNOTATION_KEY_CAPACITY {
                return Err(DecodeError::BadField("key"));
            }
            if value_len > ANNOTATION_VALUE_CAPACITY || Annotate::MIN_PAYLOAD_LEN + key_len + value_len != actual {
                return Err(DecodeError::BadField("value"));
            }
            let key = r.bytes(key_len);
            let value = r.bytes(value_len);
            Message::Annotate(Annotate { remove: flags == 1, key, value })
        }
        Kind::Breadcrumb => {
            let timestamp_ms = r.u64();
            let level = r.u32();
            let category_len = r.u32() as usize;
            let message_len = r.u32() as usize;
            if level > 4 {
                return Err(DecodeError::BadField("level"));
            }
            if category_len > BREADCRUMB_CATEGORY_CAPACITY {
                return Err(DecodeError::BadField("category"));
            }
            if message_len > BREADCRUMB_MESSAGE_CAPACITY
                || Breadcrumb::MIN_PAYLOAD_LEN + category_len + message_len != actual
            {
                return Err(DecodeError::BadField("message"));
            }
            let category = r.bytes(category_len);
            let message = r.bytes(message_len);
            Message::Breadcrumb(Breadcrumb { timestamp_ms, level: level as u8, category, message })
        }
        Kind::Attach => {
            let flags = r.u32();
            let path_len = r.u32() as usize;
            if flags > 1 {
                return Err(DecodeError::BadField("flags"));
            }
            if path_len == 0 || path_len > ATTACHMENT_PATH_CAPACITY || Attach::MIN_PAYLOAD_LEN + path_len != actual {
                return Err(DecodeError::BadField("path"));
            }
            let path = r.bytes(path_len);
            if path[0] != b'/' || path.contains(&0) {
                return Err(DecodeError::BadField("path"));
            }
            Message::Attach(Attach { remove: flags == 1, path })
        }
    })
}

fn header(w: &mut Writer<'_>, kind: Kind, payload_len: usize) {
    w.put(&MAGIC.to_le_bytes());
    w.put(&VERSION.to_le_bytes());
    w.put(&(kind as u16).to_le_bytes());
    w.put(&(payload_len as u32).to_le_bytes());
    w.put(&0u32.to_le_bytes());
}

/// Largest prefix of `s` that fits `cap` bytes without splitting a UTF-8 char.
fn utf8_prefix(s: &[u8], cap: usize) -> &[u8] {
    if s.len() <= cap {
        return s;
    }
    let mut end = cap;
    // Back off continuation bytes (0b10xx_xxxx).
    while end > 0 && (s[end] & 0xC0) == 0x80 {
        end -= 1;
    }
    &s[..end]
}

/// Encode a message into `buf`; returns the number of bytes to send.
///
/// Signal-safe: no allocation, no locks. A context longer than
/// [`CONTEXT_CAPACITY`] is an error; text longer than [`TEXT_CAPACITY`] is
/// truncated at a UTF-8 boundary.
pub fn encode(msg: &Message<'_>, buf: &mut [u8]) -> Result<usize, EncodeError> {
    let kind = match msg {
        Message::Hello(_) => Kind::Hello,
        Message::HelloAck(_) => Kind::HelloAck,
        Message::DumpRequest(_) => Kind::DumpRequest,
        Message::DumpComplete(_) => Kind::DumpComplete,
        Message::DumpFailed(_) => Kind::DumpFailed,
        Message::Annotate(_) => Kind::Annotate,
        Message::Breadcrumb(_) => Kind::Breadcrumb,
        Message::Attach(_) => Kind::Attach,
    };
    let payload_len = match msg {
        Message::Annotate(a) => {
            if a.key.is_empty() || a.key.len() > ANNOTATION_KEY_CAPACITY || a.value.len() > ANNOTATION_VALUE_CAPACITY {
                return Err(EncodeError::TooLong);
            }
            Annotate::MIN_PAYLOAD_LEN + a.key.len() + a.value.len()
        }
        Message::Breadcrumb(b) => {
            if b.level > 4
                || b.category.len() > BREADCRUMB_CATEGORY_CAPACITY
                || b.message.len() > BREADCRUMB_MESSAGE_CAPACITY
            {
                return Err(EncodeError::TooLong);
            }
            Breadcrumb::MIN_PAYLOAD_LEN + b.category.len() + b.message.len()
        }
        Message::Attach(a) => {
            if a.path.first() != Some(&b'/') || a.path.len() > ATTACHMENT_PATH_CAPACITY || a.path.contains(&0) {
                return Err(EncodeError::TooLong);
            }
            Attach::MIN_PAYLOAD_LEN + a.path.len()
        }
        _ => kind.payload_bounds().0,
    };
    let total = HEADER_LEN + payload_len;
    if buf.len() < total {
        return Err(EncodeError::BufferTooSmall);
    }
    let mut w = Writer { buf, pos: 0 };
    header(&mut w, kind, payload_len);
    match msg {
        Message::Hello(h) => {
            w.put(&h.pid.to_le_bytes());
            w.put(&h.flags.to_le_bytes());
        }
        Message::HelloAck(a) => {
            w.put(&a.monitor_pid.to_le_bytes());
            w.put(&0u32.to_le_bytes());
        }
        Message::DumpRequest(d) => {
            if d.context.len() > CONTEXT_CAPACITY {
                return Err(EncodeError::TooLong);
            }
            w.put(&(d.kind as u32).to_le_bytes());
            w.put(&d.signo.to_le_bytes());
            w.put(&d.code.to_le_bytes());
            w.put(&d.pid.to_le_bytes());
            w.put(&d.tid.to_le_bytes());
            w.put(&d.request_id.to_le_bytes());
            w.put(&d.address.to_le_bytes());
            w.sized(d.context, CONTEXT_CAPACITY);
            w.sized(utf8_prefix(d.message, TEXT_CAPACITY), TEXT_CAPACITY);
        }
        Message::DumpComplete(c) => {
            w.put(&c.request_id.to_le_bytes());
            w.put(&0u32.to_le_bytes());
            w.put(&c.report_id);
        }
        Message::DumpFailed(f) => {
            w.put(&f.request_id.to_le_bytes());
            w.put(&f.errno.to_le_bytes());
            w.sized(utf8_prefix(f.reason, TEXT_CAPACITY), TEXT_CAPACITY);
        }
        Message::Annotate(a) => {
            w.put(&u32::from(a.remove).to_le_bytes());
            w.put(&(a.key.len() as u32).to_le_bytes());
            w.put(&(a.value.len() as u32).to_le_bytes());
            w.put(a.key);
            w.put(a.value);
        }
        Message::Breadcrumb(b) => {
            w.put(&b.timestamp_ms.to_le_bytes());
            w.put(&u32::from(b.level).to_le_bytes());
            w.put(&(b.category.len() as u32).to_le_bytes());
            w.put(&(b.message.len() as u32).to_le_bytes());
            w.put(b.category);
            w.put(b.message);
        }
        Message::Attach(a) => {
            w.put(&u32::from(a.remove).to_le_bytes());
            w.put(&(a.path.len() as u32).to_le_bytes());
            w.put(a.path);
        }
    }
    debug_assert_eq!(w.pos, total);
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(msg: Message<'_>) {
        let mut buf = [0u8; MAX_MESSAGE_LEN];
        let n = encode(&msg, &mut buf).unwrap();
        assert_eq!(decode(&buf[..n]).unwrap(), msg);
    }

    #[test]
    fn every_kind_round_trips() {
        roundtrip(Message::Hello(Hello { pid: 42, flags: 0 }));
        roundtrip(Message::HelloAck(HelloAck { monitor_pid: 7 }));
        let ctx = [0xABu8; 1000];
        roundtrip(Message::DumpRequest(DumpRequest {
            kind: CrashKind::Signal,
            request_id: 9,
            signo: 11,
            code: 1,
            pid: 10,
            tid: 11,
            address: 0xdead_beef,
            context: &ctx,
            message: b"boom",
        }));
        roundtrip(Message::DumpComplete(DumpComplete { request_id: 9, report_id: [3; 16] }));
        roundtrip(Message::DumpFailed(DumpFailed { request_id: 9, errno: 1, reason: b"ptrace: EPERM" }));
        roundtrip(Message::Annotate(Annotate { remove: false, key: b"version", value: b"1.2.3" }));
        roundtrip(Message::Annotate(Annotate { remove: true, key: b"version", value: b"" }));
        roundtrip(Message::Breadcrumb(Breadcrumb { timestamp_ms: 1, level: 4, category: b"db", message: b"timeout" }));
        roundtrip(Message::Breadcrumb(Breadcrumb { timestamp_ms: 1, level: 0, category: b"", message: b"" }));
        let big = [b'v'; ANNOTATION_VALUE_CAPACITY];
        roundtrip(Message::Annotate(Annotate { remove: false, key: &[b'k'; ANNOTATION_KEY_CAPACITY], value: &big }));
    }

    #[test]
    fn breadcrumb_fields_are_bounded() {
        let mut buf = [0u8; MAX_MESSAGE_LEN];
        let b = Breadcrumb { timestamp_ms: 5, level: 2, category: b"net", message: b"connected" };
        let n = encode(&Message::Breadcrumb(b), &mut buf).unwrap();
        let mut bad = buf;
        bad[HEADER_LEN + 8..HEADER_LEN + 12].copy_from_slice(&9u32.to_le_bytes());
        assert_eq!(decode(&bad[..n]), Err(DecodeError::BadField("level")));
        let mut bad = buf;
        bad[HEADER_LEN + 16..HEADER_LEN + 20].copy_from_slice(&500u32.to_le_bytes());
        assert_eq!(decode(&bad[..n]), Err(DecodeError::BadField("message")));
        let long = [b'm'; BREADCRUMB_MESSAGE_CAPACITY + 1];
        let b = Breadcrumb { message: &long, ..b };
        assert_eq!(encode(&Message::Breadcrumb(b), &mut buf), Err(EncodeError::TooLong));
    }

    #[test]
    fn annotate_lengths_must_agree_with_the_datagram() {
        let mut buf = [0u8; MAX_MESSAGE_LEN];
        let n = encode(&Message::Annotate(Annotate { remove: false, key: b"k", value: b"value" }), &mut buf).unwrap();
        // Datagram cut short or padded: the header's length no longer matches.
        assert!(matches!(decode(&buf[..n - 1]), Err(DecodeError::BadLength { .. })));
        // Inner value length inflated to claim bytes that are not there.
        let mut bad = buf;
        bad[HEADER_LEN + 8..HEADER_LEN + 12].copy_from_slice(&1000u32.to_le_bytes());
        assert_eq!(decode(&bad[..n]), Err(DecodeError::BadField("value")));
        // An empty key, an oversized key.
        let mut bad = buf;
        bad[HEADER_LEN + 4..HEADER_LEN + 8].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(decode(&bad[..n]), Err(DecodeError::BadField("key")));
        let mut bad = buf;
        bad[HEADER_LEN + 4..HEADER_LEN + 8].copy_from_slice(&(ANNOTATION_KEY_CAPACITY as u32 + 1).to_le_bytes());
        assert_eq!(decode(&bad[..n]), Err(DecodeError::BadField("key")));
        // A header claiming more than the largest annotation.
        let mut bad = buf;
        bad[8..12].copy_from_slice(&(Annotate::MAX_PAYLOAD_LEN as u32 + 1).to_le_bytes());
        assert!(matches!(decode_header(&bad), Err(DecodeError::BadLength { .. })));
        // Too long to encode.
        let long = [b'x'; ANNOTATION_VALUE_CAPACITY + 1];
        assert_eq!(
            encode(&Message::Annotate(Annotate { remove: false, key: b"k", value: &long }), &mut buf),
            Err(EncodeError::TooLong)
        );
    }

    #[test]
    fn rejects_short_bad_magic_version_kind_and_length() {
        let mut buf = [0u8; MAX_MESSAGE_LEN];
        let n = encode(&Message::Hello(Hello { pid: 1, flags: 0 }), &mut buf).unwrap();
        assert_eq!(decode(&buf[..3]), Err(DecodeError::TooShort { len: 3 }));
        let mut bad = buf;
        bad[0] ^= 0xff;
        assert!(matches!(decode(&bad[..n]), Err(DecodeError::BadMagic(_))));
        let mut bad = buf;
        bad[4] = 99;
        assert_eq!(decode(&bad[..n]), Err(DecodeError::UnsupportedVersion(99)));
        let mut bad = buf;
        bad[6] = 200;
        assert_eq!(decode(&bad[..n]), Err(DecodeError::UnknownKind(200)));
        // Truncated and over-long datagrams.
        assert!(matches!(decode(&buf[..n - 1]), Err(DecodeError::BadLength { .. })));
        assert!(matches!(decode(&buf[..n + 1]), Err(DecodeError::BadLength { .. })));
        // A header claiming a huge payload is refused from the header alone.
        let mut bad = buf;
        bad[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(
            matches!(decode_header(&bad[..n]), Err(DecodeError::BadLength { actual, .. }) if actual == u32::MAX as usize)
        );
    }

    #[test]
    fn inner_lengths_are_bounded() {
        let mut buf = [0u8; MAX_MESSAGE_LEN];
        let n = encode(&Message::DumpFailed(DumpFailed { request_id: 1, errno: 0, reason: b"x" }), &mut buf).unwrap();
        // Claim a reason longer than its capacity.
        buf[HEADER_LEN + 8..HEADER_LEN + 12].copy_from_slice(&(TEXT_CAPACITY as u32 + 1).to_le_bytes());
        assert_eq!(decode(&buf[..n]), Err(DecodeError::BadField("reason")));
    }

    #[test]
    fn oversize_context_is_an_encode_error_and_text_is_cut_on_char_boundary() {
        let mut buf = [0u8; MAX_MESSAGE_LEN];
        let ctx = [0u8; CONTEXT_CAPACITY + 1];
        let req = DumpRequest {
            kind: CrashKind::Panic,
            request_id: 1,
            signo: 6,
            code: 0,
            pid: 1,
            tid: 1,
            address: 0,
            context: &ctx,
            message: b"",
        };
        assert_eq!(encode(&Message::DumpRequest(req), &mut buf), Err(EncodeError::TooLong));
        // 'é' is two bytes; a message of 255 'a' + 'é' must be cut before 'é'.
        let mut text = [b'a'; TEXT_CAPACITY + 1];
        text[TEXT_CAPACITY - 1] = 0xC3;
        text[TEXT_CAPACITY] = 0xA9;
        let req = DumpRequest { context: &[], message: &text, ..req };
        let n = encode(&Message::DumpRequest(req), &mut buf).unwrap();
        let Message::DumpRequest(back) = decode(&buf[..n]).unwrap() else { panic!("wrong kind") };
        assert_eq!(back.message.len(), TEXT_CAPACITY - 1);
        assert!(core::str::from_utf8(back.message).is_ok());
    }

    #[test]
    fn zero_pid_or_unknown_crash_kind_is_refused() {
        let mut buf = [0u8; MAX_MESSAGE_LEN];
        let req = DumpRequest {
            kind: CrashKind::Signal,
            request_id: 1,
            signo: 11,
            code: 1,
            pid: 0,
            tid: 1,
            address: 0,
            context: &[],
            message: b"",
        };
        let n = encode(&Message::DumpRequest(req), &mut buf).unwrap();
        assert_eq!(decode(&buf[..n]), Err(DecodeError::BadField("pid/tid")));
        let req = DumpRequest { pid: 5, ..req };
        let n = encode(&Message::DumpRequest(req), &mut buf).unwrap();
        buf[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&9u32.to_le_bytes());
        assert_eq!(decode(&buf[..n]), Err(DecodeError::BadField("kind")));
    }

    #[test]
    fn attach_round_trips_and_is_bounded() {
        roundtrip(Message::Attach(Attach { remove: false, path: b"/var/log/app.log" }));
        roundtrip(Message::Attach(Attach { remove: true, path: b"/x" }));
        let long = [b'/'; ATTACHMENT_PATH_CAPACITY];
        roundtrip(Message::Attach(Attach { remove: false, path: &long }));
        let mut buf = [0u8; MAX_MESSAGE_LEN];
        let too_long = [b'/'; ATTACHMENT_PATH_CAPACITY + 1];
        for bad in [&b""[..], b"relative/path", b"/nul\0inside", &too_long] {
            assert_eq!(
                encode(&Message::Attach(Attach { remove: false, path: bad }), &mut buf),
                Err(EncodeError::TooLong)
            );
        }
        // Hand-made datagrams: a relative path, a NUL, lengths that disagree.
        let datagram = |flags: u32, len: u32, path: &[u8]| {
            let mut v = [0u8; 64];
            let payload = 8 + path.len();
            v[..4].copy_from_slice(&MAGIC.to_le_bytes());
            v[4..6].copy_from_slice(&VERSION.to_le_bytes());
            v[6..8].copy_from_slice(&(Kind::Attach as u16).to_le_bytes());
            v[8..12].copy_from_slice(&(payload as u32).to_le_bytes());
            v[16..20].copy_from_slice(&flags.to_le_bytes());
            v[20..24].copy_from_slice(&len.to_le_bytes());
            v[24..24 + path.len()].copy_from_slice(path);
            (v, 16 + payload)
        };
        let (v, n) = datagram(0, 4, b"/abc");
        assert!(matches!(decode(&v[..n]), Ok(Message::Attach(a)) if a.path == b"/abc"));
        for (flags, len, path) in [(0, 3, &b"abc"[..]), (0, 4, b"/a\0c"), (2, 4, b"/abc"), (0, 5, b"/abc"), (0, 0, b"")]
        {
            let (v, n) = datagram(flags, len, path);
            assert!(decode(&v[..n]).is_err(), "flags {flags} len {len} {path:?}");
        }
    }

    /// Deterministic random datagrams: mutations of valid messages and pure
    /// noise. Decoding never panics, and whatever decodes re-encodes to the
    /// same bytes (the decoder accepts only canonical datagrams).
    #[test]
    fn randomized_decode_never_panics_and_accepts_only_canonical_bytes() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let ctx = [7u8; 600];
        let seeds: [Message<'_>; 9] = [
            Message::Hello(Hello { pid: 42, flags: 0 }),
            Message::HelloAck(HelloAck { monitor_pid: 7 }),
            Message::DumpRequest(DumpRequest {
                kind: CrashKind::Panic,
                request_id: 1,
                signo: 6,
                code: 0,
                pid: 5,
                tid: 6,
                address: 0,
                context: &ctx,
                message: b"panic",
            }),
            Message::DumpComplete(DumpComplete { request_id: 9, report_id: [3; 16] }),
            Message::DumpFailed(DumpFailed { request_id: 9, errno: 1, reason: b"no" }),
            Message::Annotate(Annotate { remove: false, key: b"k", value: b"value" }),
            Message::Breadcrumb(Breadcrumb { timestamp_ms: 3, level: 2, category: b"c", message: b"m" }),
            Message::Attach(Attach { remove: false, path: b"/tmp/log" }),
            Message::Attach(Attach { remove: true, path: b"/tmp/log" }),
        ];
        let mut buf = [0u8; MAX_MESSAGE_LEN + 64];
        let mut out = [0u8; MAX_MESSAGE_LEN];
        let mut decoded = 0u32;
        for round in 0..50_000u32 {
            let len = if round % 4 == 0 {
                let n = (next() % 200) as usize;
                for b in &mut buf[..n] {
                    *b = next() as u8;
                }
                n
            } else {
                let seed = &seeds[(next() % seeds.len() as u64) as usize];
                let mut n = encode(seed, &mut buf).unwrap();
                for _ in 0..1 + next() % 4 {
                    let at = (next() as usize) % (n + 1);
                    match next() % 4 {
                        0 if at < n => buf[at] = next() as u8,
                        1 if at < n => buf[at] ^= 1 << (next() % 8),
                        2 => n = at.max(1),
                        _ => n = (n + (next() % 8) as usize).min(buf.len()),
                    }
                }
                n
            };
            if let Ok(msg) = decode(&buf[..len]) {
                decoded += 1;
                let m = encode(&msg, &mut out).expect("a decoded message encodes");
                // Reserved header/payload fields are ignored by decode and
                // written as zero by encode; compare everything else.
                let again = decode(&out[..m]).expect("re-decodes");
                assert_eq!(again, msg);
                assert_eq!(m, len, "decoded length equals the datagram's");
            }
        }
        assert!(decoded > 1000, "mutations keep some datagrams valid ({decoded})");
    }
}
