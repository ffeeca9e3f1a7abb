//! Graceful shutdown of a shared monitor on SIGTERM or SIGINT.
//!
//! The signals are blocked in the process before it starts any thread (every
//! thread inherits the mask), and one thread takes them with `sigwait`: no
//! signal handler, so nothing async-signal-unsafe can run at a bad moment.

use nix::sys::signal::{SigSet, SigmaskHow, Signal};

/// SIGTERM and SIGINT, blocked, waiting for [`TermSignals::wait`].
#[derive(Debug)]
pub struct TermSignals {
    set: SigSet,
}

impl TermSignals {
    /// Block SIGTERM and SIGINT in the calling thread and every thread it
    /// starts afterwards. Call this before the process starts any thread.
    pub fn block() -> nix::Result<TermSignals> {
        let mut set = SigSet::empty();
        set.add(Signal::SIGTERM);
        set.add(Signal::SIGINT);
        nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
        Ok(TermSignals { set })
    }

    /// Wait for one of the signals.
    pub fn wait(&self) -> Option<Signal> {
        loop {
            match self.set.wait() {
                Ok(sig) => return Some(sig),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return None,
            }
        }
    }
}
