//! Reports made from normal context: handled errors (dump without crashing)
//! and Rust panics. These may allocate and lock; they never run inside a
//! signal handler.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use crashmon_protocol as proto;

use crate::signal;

/// A report id assigned by the monitor (a UUID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReportId(pub [u8; 16]);

impl std::fmt::Display for ReportId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_char('-')?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Why a requested dump was not filed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DumpError {
    /// No handler is installed.
    #[error("the crashmon handler is not installed")]
    NotInstalled,
    /// The process is crashing; the fatal report takes precedence.
    #[error("a crash is being reported")]
    CrashInProgress,
    /// The monitor is gone.
    #[error("the monitor is not reachable")]
    Disconnected,
    /// The monitor did not answer in time.
    #[error("the monitor did not answer within the reply timeout")]
    TimedOut,
    /// The monitor answered that it could not write the dump.
    #[error("the monitor could not write the dump (errno {0})")]
    Failed(i32),
    /// The handler's filter rules left this handled error out (counted in
    /// [`crate::stats`] and logged).
    #[error("not reported: {0}")]
    Filtered(crate::Filtered),
}

/// One normal-context request at a time (the signal path has its own
/// request id and buffers and never takes this lock).
static REQUESTS: Mutex<()> = Mutex::new(());
static NEXT_ID: AtomicU32 = AtomicU32::new(1);

fn next_request_id() -> u32 {
    loop {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        if id != 0 && id != signal::SIGNAL_REQUEST_ID {
            return id;
        }
    }
}

/// Send a dump request for the calling thread and wait for the answer.
pub(crate) fn request(kind: proto::CrashKind, signo: i32, message: &str) -> Result<ReportId, DumpError> {
    request_with_context(kind, signo, message, &[])
}

/// [`request`] with a crash context (raw `CrashContext` bytes, or empty).
fn request_with_context(
    kind: proto::CrashKind,
    signo: i32,
    message: &str,
    context: &[u8],
) -> Result<ReportId, DumpError> {
    let fd = signal::socket_fd().ok_or(DumpError::NotInstalled)?;
    let _serial = REQUESTS.lock().unwrap_or_else(|e| e.into_inner());
    let request_id = next_request_id();
    let msg = proto::Message::DumpRequest(proto::DumpRequest {
        kind,
        request_id,
        signo,
        code: 0,
        pid: std::process::id(),
        tid: signal::gettid() as u32,
        address: 0,
        context,
        message: truncate_utf8(message, proto::TEXT_CAPACITY).as_bytes(),
    });
    let mut buf = vec![0u8; proto::MAX_MESSAGE_LEN];
    let n = proto::encode(&msg, &mut buf).map_err(|_| DumpError::Failed(0))?;
    if !signal::send_datagram(fd, &buf[..n]) {
        return Err(DumpError::Disconnected);
    }
    match signal::wait_reply_into(fd, request_id, signal::reply_timeout_ms(), &mut buf) {
        signal::Reply::Complete(id) => Ok(ReportId(id)),
        signal::Reply::Failed(errno) => Err(DumpError::Failed(errno)),
        signal::Reply::TimedOut => Err(DumpError::TimedOut),
        signal::Reply::Disconnected => Err(DumpError::Disconnected),
    }
}

/// File a report of the live process without crashing it: a minidump of
/// every thread (the calling thread is the one blamed) with `reason` in the
/// report's metadata. The app keeps running. Blocks until the dump is
/// durable or the reply timeout passes.
///
/// Subject to the handler's [`ReportFilter`](crate::ReportFilter) sampling:
/// a sampled-out request returns [`DumpError::Filtered`].
pub fn request_dump(reason: &str) -> Result<ReportId, DumpError> {
    request_dump_filtered(None, reason)
}

/// [`request_dump`] after the filter rules (`type_name`: the error's type,
/// for [`report_error`]).
pub(crate) fn request_dump_filtered(type_name: Option<&str>, reason: &str) -> Result<ReportId, DumpError> {
    if signal::crash_in_progress() {
        return Err(DumpError::CrashInProgress);
    }
    signal::socket_fd().ok_or(DumpError::NotInstalled)?;
    crate::filter::admit(type_name, reason).map_err(DumpError::Filtered)?;
    request(proto::CrashKind::Requested, 0, reason)
}

/// File a report for an error the application handled: like
/// [`request_dump`], with the error and its chain of sources as the reason.
///
/// The error's type name (`std::any::type_name::<E>()`) is checked against
/// [`ReportFilter::ignore_error_types`](crate::ReportFilter); an ignored or
/// sampled-out error returns [`DumpError::Filtered`].
pub fn report_error<E: std::error::Error + ?Sized + 'static>(error: &E) -> Result<ReportId, DumpError> {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        let _ = write!(text, ": {s}");
        source = s.source();
    }
    request_dump_filtered(Some(std::any::type_name::<E>()), &text)
}

/// Most annotation keys a process can set; later new keys are dropped and
/// counted (see [`annotations_dropped`]).
pub const MAX_ANNOTATIONS: usize = 400;

static ANNOTATION_KEYS: Mutex<Option<std::collections::BTreeSet<String>>> = Mutex::new(None);
static ANNOTATIONS_DROPPED: AtomicU32 = AtomicU32::new(0);
static ANNOTATIONS_TRUNCATED: AtomicU32 = AtomicU32::new(0);

/// Largest prefix of `s` of at most `cap` bytes ending on a char boundary.
pub(crate) fn truncate_utf8(s: &str, cap: usize) -> &str {
    if s.len() <= cap {
        return s;
    }
    let mut end = cap;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Set an annotation: a key/value pair that goes into every report of this
/// process (metadata, report, upload). It is sent to the monitor now, so a
/// crash later costs nothing extra.
///
/// Bounded: keys are cut to 128 bytes and values to 20 KiB (counted in
/// [`annotations_truncated`]); past [`MAX_ANNOTATIONS`] keys, new keys are
/// dropped (counted in [`annotations_dropped`]). Never panics.
pub fn annotate(key: &str, value: &str) -> Result<(), DumpError> {
    send_annotation(key, value, false)
}

/// Remove an annotation set with [`annotate`].
pub fn remove_annotation(key: &str) -> Result<(), DumpError> {
    send_annotation(key, "", true)
}

/// How many annotations were dropped because the key limit was reached.
pub fn annotations_dropped() -> u32 {
    ANNOTATIONS_DROPPED.load(Ordering::Relaxed)
}

/// How many annotation keys or values were truncated to fit.
pub fn annotations_truncated() -> u32 {
    ANNOTATIONS_TRUNCATED.load(Ordering::Relaxed)
}

fn send_annotation(key: &str, value: &str, remove: bool) -> Result<(), DumpError> {
    let fd = signal::socket_fd().ok_or(DumpError::NotInstalled)?;
    let k = truncate_utf8(key, proto::ANNOTATION_KEY_CAPACITY);
    let v = truncate_utf8(value, proto::ANNOTATION_VALUE_CAPACITY);
    if k.is_empty() {
        return Ok(());
    }
    if k.len() != key.len() || v.len() != value.len() {
        ANNOTATIONS_TRUNCATED.fetch_add(1, Ordering::Relaxed);
    }
    {
        let mut keys = ANNOTATION_KEYS.lock().unwrap_or_else(|e| e.into_inner());
        let keys = keys.get_or_insert_with(Default::default);
        if remove {
            keys.remove(k);
        } else if !keys.contains(k) {
            if keys.len() >= MAX_ANNOTATIONS {
                ANNOTATIONS_DROPPED.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            keys.insert(k.to_owned());
        }
    }
    let msg = proto::Message::Annotate(proto::Annotate { remove, key: k.as_bytes(), value: v.as_bytes() });
    let mut buf = vec![0u8; proto::HEADER_LEN + proto::Annotate::MIN_PAYLOAD_LEN + k.len() + v.len()];
    let n = proto::encode(&msg, &mut buf).map_err(|_| DumpError::Failed(0))?;
    send_one(fd, &buf[..n])
}

/// Send one datagram that expects no reply (annotation, breadcrumb). A
/// datagram is sent whole or not at all, so this takes no lock: it never
/// waits behind a dump request.
pub(crate) fn send_one(fd: libc::c_int, datagram: &[u8]) -> Result<(), DumpError> {
    if signal::send_datagram(fd, datagram) { Ok(()) } else { Err(DumpError::Disconnected) }
}

/// What the panic hook does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PanicMode {
    /// File a report for the panic, then abort: the process dies by SIGABRT
    /// (the same as `panic = "abort"`). The default: a panic is a crash.
    #[default]
    Abort,
    /// File a report for the panic, then let it unwind as usual (the
    /// application may catch it). The process keeps its normal behaviour.
    Report,
    /// Leave panics alone.
    Off,
}

/// Text of a panic: its message and location.
fn describe(info: &std::panic::PanicHookInfo<'_>) -> String {
    let payload = info.payload();
    let msg = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "Box<dyn Any>".to_owned());
    match info.location() {
        Some(l) => format!("panicked at {}:{}:{}: {msg}", l.file(), l.line(), l.column()),
        None => format!("panicked: {msg}"),
    }
}

/// Install the panic hook (chaining to the previous one).
pub(crate) fn install_panic_hook(mode: PanicMode) {
    if mode == PanicMode::Off {
        return;
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if signal::socket_fd().is_none() {
            previous(info);
            return;
        }
        let text = describe(info);
        match mode {
            PanicMode::Abort => {
                // The one fatal report of this process: claim it, so a
                // signal on another thread cannot produce a second dump.
                if signal::claim_fatal() {
                    // With a SIGABRT crash context, so that a monitor that
                    // uses it writes the dump's exception as SIGABRT at the
                    // panic (one that does not: DUMP_REQUESTED).
                    let context = signal::abort_context_bytes();
                    let result = request_with_context(proto::CrashKind::Panic, libc::SIGABRT, &text, &context);
                    if let Err(e) = result {
                        tracing::warn!("crashmon: panic not reported: {e}");
                    }
                    previous(info);
                    signal::fatal_done();
                    // Our SIGABRT handler sees the claim and only re-raises.
                    std::process::abort();
                }
                previous(info);
                std::process::abort();
            }
            PanicMode::Report | PanicMode::Off => {
                if let Err(e) = request(proto::CrashKind::Panic, 0, &text) {
                    tracing::warn!("crashmon: panic not reported: {e}");
                }
                previous(info);
            }
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_id_formats_as_uuid() {
        let id = ReportId([0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(id.to_string(), "12345678-9abc-def0-0001-020304050607");
    }

    #[test]
    fn requests_without_a_handler_are_refused() {
        assert!(matches!(request_dump("x"), Err(DumpError::NotInstalled)));
    }

    #[test]
    fn request_ids_skip_the_signal_id() {
        NEXT_ID.store(signal::SIGNAL_REQUEST_ID, Ordering::Relaxed);
        let id = next_request_id();
        assert_ne!(id, signal::SIGNAL_REQUEST_ID);
        assert_ne!(id, 0);
    }
}
