//! Capture: ptrace the crashed process and write its minidump.
//!
//! This is the only place in crashmon that stops and reads another process.
//! minidump-writer (patched, `vendor/minidump-writer`) seizes every thread
//! with ptrace, interrupts them all at once and waits for the stops, builds
//! the dump and, when its writer is dropped, detaches, giving each thread
//! back any signal it had pending. The process is never SIGSTOPped: if this
//! monitor dies mid-dump, the kernel detaches its threads and they run on. The dump is built in memory (minidump-writer keeps a
//! whole copy there anyway) and written to its file afterwards in one
//! write: no file I/O while the target is stopped, and ~90 small
//! `write`/`lseek` calls fewer.

use std::io::{Seek, SeekFrom, Write};

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
    /// Fault injection: the writer panics at its first write, the app's
    /// threads suspended (the monitor must fail this dump only).
    #[doc(hidden)]
    pub panic_while_suspended: bool,
}

/// What was captured.
#[derive(Debug, Clone)]
pub struct Capture {
    /// The minidump.
    pub bytes: Vec<u8>,
    /// Threads in the dump's thread list.
    pub threads: u32,
}

/// A `Write + Seek` destination that keeps nothing: minidump-writer
/// builds the whole dump in its own buffer and returns it, and insists on
/// copying each stream to a destination as it goes.
#[derive(Debug, Default)]
struct Discard {
    /// Panic at the first write ([`CaptureOptions::panic_while_suspended`]).
    panic: bool,
    pos: u64,
    /// How far anything was written: where `SeekFrom::End` counts from.
    len: u64,
}

impl Write for Discard {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if std::mem::take(&mut self.panic) {
            panic!("fault injection: the writer panics mid-dump");
        }
        self.pos += buf.len() as u64;
        self.len = self.len.max(self.pos);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Seek for Discard {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        Ok(self.pos)
    }
}

/// Reads the machine's part of every dump (`uname`, `/proc/cpuinfo`, the
/// OS release; ~0.13 ms, kept for the process's later dumps). A monitor
/// calls this on a thread as it starts (`server::prepare`), so that its
/// first dump, often of an app that crashed as it started, does not read
/// them while the app is stopped.
pub fn warm_up() {
    minidump_writer::minidump_writer::machine::warm();
}

/// Capture a minidump of `pid` in memory, blaming `tid`, with the crash
/// context the handler sent (raw bytes of `crash_context::CrashContext`, or
/// `None` for a dump without a signal context). The process runs again
/// (minus the threads it had stopped itself) when this returns, except a
/// thread that did not stop within the writer's deadline (a killable
/// wait): it stays traced by the calling thread until that thread ends,
/// so call this on a thread that ends after it.
///
/// A dump in which not a single thread could be attached is not a dump:
/// ptrace was refused, and the error says why ([`CaptureError::PtraceRefused`]).
pub fn capture_minidump(
    pid: i32,
    tid: i32,
    context: Option<&[u8]>,
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
    // A panic in the writer (a case its authors did not foresee, met in a
    // crashed app's memory) fails this one dump, not the monitor's
    // connection thread; the writer's drop has let the app's stopped
    // threads go by the time it is caught.
    let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        config
            .write(&mut Discard { panic: options.panic_while_suspended, ..Discard::default() })
            .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })
    }));
    let bytes = match written {
        Ok(bytes) => bytes.map_err(|source| CaptureError::Writer { pid, source })?,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_owned());
            return Err(CaptureError::Writer { pid, source: format!("the minidump writer panicked: {what}").into() });
        }
    };
    let threads = crate::diagnose::thread_count(&bytes).unwrap_or(0);
    if threads == 0 {
        // minidump-writer has detached and continued the process by now.
        return Err(CaptureError::PtraceRefused { pid, refusal: crate::diagnose::PtraceRefusal::probe(pid, tid) });
    }
    Ok(Capture { bytes, threads })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discard_tracks_the_position_like_a_file() {
        let mut d = Discard::default();
        d.write_all(b"0123456789").unwrap();
        assert_eq!(d.stream_position().unwrap(), 10);
        assert_eq!(d.seek(SeekFrom::Start(4)).unwrap(), 4);
        d.write_all(b"ab").unwrap();
        assert_eq!(d.seek(SeekFrom::Current(-3)).unwrap(), 3);
        assert!(d.seek(SeekFrom::Current(-4)).is_err(), "before the start");
        assert_eq!(d.stream_position().unwrap(), 3, "a failed seek moves nothing");
        assert_eq!(d.seek(SeekFrom::End(-1)).unwrap(), 9, "the end is the furthest write");
    }
}
