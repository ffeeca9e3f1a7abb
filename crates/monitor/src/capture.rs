//! Capture: ptrace the crashed process and write its minidump.
//!
//! This is the only place in crashmon that stops and reads another process.
//! minidump-writer stops the process (SIGSTOP), attaches to every thread,
//! writes the dump and, when its writer is dropped, detaches and continues
//! the process again.

use std::fs::File;
use std::time::Duration;

use minidump_writer::crash_context::CrashContext;
use minidump_writer::minidump_writer::MinidumpWriterConfig;

/// Size in bytes of the crash context a handler of this platform sends.
pub const CONTEXT_LEN: usize = std::mem::size_of::<CrashContext>();

/// Why no dump could be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// The crash context has the wrong size for this platform.
    #[error("crash context is {actual} bytes, expected {expected} for this platform")]
    BadContext {
        /// Expected length.
        expected: usize,
        /// Received length.
        actual: usize,
    },
    /// minidump-writer failed.
    #[error("writing the minidump of pid {pid} failed: {source}")]
    Writer {
        /// The target.
        pid: i32,
        /// The writer's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The process could not be traced (RELIABILITY B4).
    #[error("cannot dump pid {pid}: {refusal}")]
    PtraceRefused {
        /// The target.
        pid: i32,
        /// The errno, the detected causes and the advice.
        refusal: crate::diagnose::PtraceRefusal,
    },
}

impl CaptureError {
    /// The errno to report to the client, 0 if none applies.
    pub fn errno(&self) -> i32 {
        match self {
            CaptureError::PtraceRefused { refusal, .. } => refusal.errno.map_or(0, |e| e as i32),
            CaptureError::Writer { source, .. } => io_errno(source.as_ref()).unwrap_or(0),
            CaptureError::BadContext { .. } => libc::EINVAL,
        }
    }
}

/// An error and its sources, joined by `": "` (minidump-writer's own
/// messages leave out the OS error, e.g. "Failed to write to file").
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        cur = e.source();
    }
    text
}

/// The OS error somewhere in an error's source chain (ENOSPC, EFBIG...).
pub fn io_errno(err: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(code) = e.downcast_ref::<std::io::Error>().and_then(std::io::Error::raw_os_error) {
            return Some(code);
        }
        cur = e.source();
    }
    None
}

/// How to capture.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaptureOptions {
    /// Size the dump should stay within (RELIABILITY A12). minidump-writer
    /// then keeps the full stacks of the crashing thread and the first 20
    /// threads, and at most 2 KiB of stack of every other thread.
    pub max_dump_size: Option<u64>,
}

/// What was captured.
#[derive(Debug, Clone)]
pub struct Capture {
    /// Bytes written.
    pub size: u64,
    /// Threads in the dump's thread list.
    pub threads: u32,
}

/// How long to wait for the target to stop before dumping anyway
/// (minidump-writer treats a process that does not stop as a soft error).
const STOP_TIMEOUT: Duration = Duration::from_millis(100);

/// SIGSTOP `pid` and wait (at most `timeout`) until `/proc/PID/stat` says
/// it is stopped, checking every few tens of µs. Returns whether it did.
/// The caller has announced the dump to the watchdog, which resumes the
/// process if this monitor dies before minidump-writer's final SIGCONT.
fn stop_and_wait(pid: i32, timeout: Duration) -> bool {
    use nix::sys::signal::{Signal, kill};
    if kill(nix::unistd::Pid::from_raw(pid), Signal::SIGSTOP).is_err() {
        return false;
    }
    let path = format!("/proc/{pid}/stat");
    let deadline = std::time::Instant::now() + timeout;
    let mut buf = [0u8; 512];
    for round in 0u32.. {
        if proc_state(&path, &mut buf).is_some_and(|s| s == b'T' || s == b't') {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        // The target needs a CPU to reach its stop: yield first, then nap.
        if round < 20 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
    false
}

/// The state letter of a `/proc/PID/stat` file (the field after the
/// command name, which may itself contain spaces and parentheses).
fn proc_state(path: &str, buf: &mut [u8]) -> Option<u8> {
    use std::io::Read;
    let n = std::fs::File::open(path).ok()?.read(buf).ok()?;
    let text = &buf[..n];
    let close = text.iter().rposition(|&b| b == b')')?;
    text.get(close + 2).copied()
}

/// Write a minidump of `pid`, blaming `tid`, with the crash context the
/// handler sent (raw bytes of `crash_context::CrashContext`, or `None` for a
/// dump without a signal context).
///
/// A dump in which not a single thread could be attached is not a dump:
/// ptrace was refused, and the error says why ([`CaptureError::PtraceRefused`]).
pub fn write_minidump(
    pid: i32,
    tid: i32,
    context: Option<&[u8]>,
    out: &mut File,
    options: &CaptureOptions,
) -> Result<Capture, CaptureError> {
    let mut config = MinidumpWriterConfig::new(pid, tid);
    if let Some(limit) = options.max_dump_size {
        config.set_minidump_size_limit(limit);
    }
    if let Some(bytes) = context {
        let ctx = CrashContext::from_bytes(bytes)
            .ok_or(CaptureError::BadContext { expected: CONTEXT_LEN, actual: bytes.len() })?;
        // The context's own pid/tid fields must agree with what we dump.
        if ctx.pid != pid || ctx.tid != tid {
            return Err(CaptureError::Writer {
                pid,
                source: format!(
                    "crash context names pid {} tid {}, request names pid {pid} tid {tid}",
                    ctx.pid, ctx.tid
                )
                .into(),
            });
        }
        config.set_crash_context(minidump_writer::CrashContextExt { inner: ctx });
    }
    // minidump-writer stops the process itself (SIGSTOP), then polls
    // /proc/PID/stat with 1 ms sleeps until it reads "stopped": its first
    // read almost always comes before the target has run to its stop, so
    // every dump paid a 1 ms sleep. Stop it first and poll more finely; its
    // own check then finds it stopped at once. (Right before `write`, whose
    // writer always SIGCONTs the process when it is dropped, even on error.)
    let stopped = stop_and_wait(pid, STOP_TIMEOUT);
    config.stop_timeout(if stopped { STOP_TIMEOUT } else { Duration::ZERO });
    let written = config.write(out).map_err(|e| CaptureError::Writer { pid, source: Box::new(e) })?;
    let threads = crate::diagnose::thread_count(&written).unwrap_or(0);
    if threads == 0 {
        // minidump-writer has detached and continued the process by now.
        return Err(CaptureError::PtraceRefused { pid, refusal: crate::diagnose::PtraceRefusal::probe(pid, tid) });
    }
    let size = out.metadata().map(|m| m.len()).unwrap_or(0);
    Ok(Capture { size, threads })
}
