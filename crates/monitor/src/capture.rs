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
}

/// What was captured.
#[derive(Debug, Clone)]
pub struct Capture {
    /// Bytes written.
    pub size: u64,
}

/// Write a minidump of `pid`, blaming `tid`, with the crash context the
/// handler sent (raw bytes of `crash_context::CrashContext`, or `None` for a
/// dump without a signal context).
pub fn write_minidump(pid: i32, tid: i32, context: Option<&[u8]>, out: &mut File) -> Result<Capture, CaptureError> {
    let mut config = MinidumpWriterConfig::new(pid, tid);
    config.stop_timeout(Duration::from_millis(100));
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
    config.write(out).map_err(|e| CaptureError::Writer { pid, source: Box::new(e) })?;
    let size = out.metadata().map(|m| m.len()).unwrap_or(0);
    Ok(Capture { size })
}
