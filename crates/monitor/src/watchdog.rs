//! The dump watchdog: makes sure a crashed app never stays stopped because
//! the monitor died in the middle of its dump.
//!
//! minidump-writer stops the target with SIGSTOP before attaching. If the
//! monitor is killed while the target is stopped, the kernel detaches the
//! ptrace attachments but the group stop remains, and the app — which would
//! otherwise give up on the monitor after its reply timeout — can never run
//! again. The watchdog is a small process forked from the monitor at start-up
//! (before the monitor has any other thread) that reads a pipe: `+PID` before
//! a dump, `-PID` after. When the pipe reaches end-of-file (the monitor is
//! gone, however it died) it sends SIGCONT to every pid still in progress;
//! the app then sees its connection closed and dies by its own signal.
//! A sidecar forks it right after its `HelloAck` ([`Slot::deferred`]):
//! the fork then overlaps with the app's own work instead of delaying the
//! handshake of an app that may be about to crash; it is always there
//! before the first dump, which only a greeted client can request.
//!
//! The child runs only raw system calls and the allocation-free [`Tracker`].

use std::io::Write;
use std::os::fd::OwnedFd;
use std::sync::{Mutex, OnceLock};

/// The monitor's side: the write end of the watchdog's pipe.
#[derive(Debug)]
pub struct Watchdog {
    pipe: Mutex<std::fs::File>,
    pid: i32,
}

impl Watchdog {
    /// Fork the watchdog. The child runs only raw system calls, so this may
    /// be called at any time, but before the first dump.
    pub fn fork() -> std::io::Result<Watchdog> {
        let (pipe, pid): (OwnedFd, i32) = crate::sys::fork_watchdog()?;
        Ok(Watchdog { pipe: Mutex::new(std::fs::File::from(pipe)), pid })
    }

    /// The watchdog's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    fn send(&self, line: &str) {
        let mut pipe = self.pipe.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = pipe.write_all(line.as_bytes()) {
            tracing::warn!("dump watchdog unreachable: {e}");
        }
    }

    /// Announce that `pid` is about to be stopped for a dump.
    pub fn begin(&self, pid: i32) {
        self.send(&format!("+{pid}\n"));
    }

    /// Announce that `pid` is no longer being dumped.
    pub fn end(&self, pid: i32) {
        self.send(&format!("-{pid}\n"));
    }
}

/// A watchdog forked at once or at first use; a failed fork is logged
/// once and leaves the slot empty (dumps still work, unguarded).
#[derive(Debug)]
pub struct Slot {
    cell: OnceLock<Option<Watchdog>>,
}

impl Slot {
    /// Fork the watchdog now.
    pub fn now() -> Slot {
        let slot = Slot::deferred();
        slot.get();
        slot
    }

    /// Fork the watchdog at the first [`get`](Self::get).
    pub fn deferred() -> Slot {
        Slot { cell: OnceLock::new() }
    }

    /// The watchdog, forked now if it was not yet.
    pub fn get(&self) -> Option<&Watchdog> {
        self.cell
            .get_or_init(|| match Watchdog::fork() {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!(
                        "cannot start the dump watchdog ({e}); a monitor crash mid-dump could leave an app stopped"
                    );
                    None
                }
            })
            .as_ref()
    }
}

/// Most dumps in progress at once that the watchdog tracks.
pub const MAX_IN_PROGRESS: usize = 256;

/// The watchdog's state: pids being dumped, parsed from the pipe's bytes.
/// Fixed-size, no allocation (it runs in a forked child).
#[derive(Debug)]
pub struct Tracker {
    pids: [i32; MAX_IN_PROGRESS],
    line: [u8; 16],
    line_len: usize,
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker { pids: [0; MAX_IN_PROGRESS], line: [0; 16], line_len: 0 }
    }
}

impl Tracker {
    /// Feed bytes read from the pipe.
    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                self.apply_line();
                self.line_len = 0;
            } else if self.line_len < self.line.len() {
                self.line[self.line_len] = b;
                self.line_len += 1;
            }
        }
    }

    fn apply_line(&mut self) {
        let line = &self.line[..self.line_len];
        let Some((&sign, digits)) = line.split_first() else { return };
        let mut pid: i32 = 0;
        for &d in digits {
            if !d.is_ascii_digit() {
                return;
            }
            pid = match pid.checked_mul(10).and_then(|p| p.checked_add(i32::from(d - b'0'))) {
                Some(p) => p,
                None => return,
            };
        }
        if pid <= 0 {
            return;
        }
        match sign {
            b'+' => {
                if let Some(slot) = self.pids.iter_mut().find(|p| **p == 0) {
                    *slot = pid;
                }
            }
            b'-' => {
                if let Some(slot) = self.pids.iter_mut().find(|p| **p == pid) {
                    *slot = 0;
                }
            }
            _ => {}
        }
    }

    /// The pids still in progress.
    pub fn in_progress(&self) -> impl Iterator<Item = i32> + '_ {
        self.pids.iter().copied().filter(|&p| p != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_begin_and_end_across_partial_reads() {
        let mut t = Tracker::default();
        t.feed(b"+101\n+10");
        t.feed(b"2\n-101\ngarbage\n+-3\n+99999999999999\n\n-\n");
        assert_eq!(t.in_progress().collect::<Vec<_>>(), vec![102]);
        t.feed(b"-102\n");
        assert_eq!(t.in_progress().count(), 0);
    }

    #[test]
    fn a_real_forked_watchdog_resumes_a_stopped_process_when_the_pipe_closes() {
        // A victim we stop, as minidump-writer would. Killed on every exit
        // path (SIGKILL works on a stopped process too).
        struct Victim(std::process::Child);
        impl Drop for Victim {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let victim = Victim(
            std::process::Command::new("sleep")
                .arg("30")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        let vpid = victim.0.id() as i32;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(vpid), nix::sys::signal::Signal::SIGSTOP).unwrap();
        let state = || {
            std::fs::read_to_string(format!("/proc/{vpid}/stat"))
                .ok()
                .and_then(|s| s.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().next().map(str::to_owned)))
        };
        let until = |want: &str| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while std::time::Instant::now() < deadline {
                if state().as_deref() == Some(want) {
                    return true;
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            false
        };
        assert!(until("T"), "victim stopped");
        let w = Watchdog::fork().unwrap();
        let wpid = w.pid();
        w.begin(vpid);
        // The monitor "dies": its end of the pipe closes.
        drop(w);
        assert!(until("S"), "the watchdog resumed the victim (state {:?})", state());
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(wpid), None);
    }

    /// A deferred slot forks nothing until asked, then exactly once; the
    /// watchdog it forks exits when its pipe closes.
    #[test]
    fn a_deferred_slot_forks_once_at_first_use() {
        let slot = Slot::deferred();
        assert!(slot.cell.get().is_none(), "nothing forked yet");
        let pid = slot.get().expect("forked").pid();
        assert_eq!(slot.get().map(Watchdog::pid), Some(pid), "the same watchdog again");
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists(), "the watchdog runs");
        drop(slot);
        let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap();
        assert_eq!(status, nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(pid), 0));
    }
}
