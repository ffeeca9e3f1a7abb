//! Waiting for the monitor's answer to a dump request. Signal-safe: the
//! buffer is the caller's, the calls are `poll` and `recv`.

use libc::c_int;

use crashmon_protocol as proto;

use crate::sys;

/// The monitor's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The dump is durable; the report id.
    Complete([u8; 16]),
    /// The monitor could not dump; errno-like code.
    Failed(i32),
    /// No answer in time.
    TimedOut,
    /// The connection is gone.
    Disconnected,
}

/// Wait for the reply to `request_id`, ignoring anything else (another
/// request's answer, a `HelloAck` not read yet, garbage). Signal-safe (no
/// allocation): `buf` is caller-provided.
pub fn wait_reply_into(fd: c_int, request_id: u32, timeout_ms: u64, buf: &mut [u8]) -> Reply {
    let deadline = sys::now_ms() + timeout_ms;
    loop {
        let now = sys::now_ms();
        if now >= deadline {
            return Reply::TimedOut;
        }
        let r = sys::poll_in(fd, (deadline - now).min(i32::MAX as u64) as c_int);
        if r < 0 {
            if sys::errno() == libc::EINTR {
                continue;
            }
            return Reply::Disconnected;
        }
        if r == 0 {
            return Reply::TimedOut;
        }
        let n = sys::recv_nonblocking(fd, buf);
        if n == 0 {
            return Reply::Disconnected;
        }
        if n < 0 {
            let e = sys::errno();
            if e == libc::EINTR || e == libc::EAGAIN {
                continue;
            }
            return Reply::Disconnected;
        }
        match buf.get(..n as usize).map(proto::decode) {
            Some(Ok(proto::Message::DumpComplete(c))) if c.request_id == request_id => {
                return Reply::Complete(c.report_id);
            }
            Some(Ok(proto::Message::DumpFailed(f))) if f.request_id == request_id => return Reply::Failed(f.errno),
            // Anything else: keep waiting.
            _ => {}
        }
    }
}
