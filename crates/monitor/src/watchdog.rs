//! The dump watchdog: makes sure a crashed app never stays stopped because
//! the monitor died in the middle of its dump.
//!
//! minidump-writer stops the target with SIGSTOP before attaching. If the
//! monitor is killed while the target is stopped, the kernel detaches the
//! ptrace attachments but the group stop remains, and the app — which would
//! otherwise give up on the monitor after its reply timeout — can never run
//! again. The watchdog is a separate small process (`crashmon __watchdog`)
//! reading a pipe from the monitor: `+PID` before a dump, `-PID` after. When
//! the pipe reaches end-of-file (the monitor is gone, however it died) it
//! sends SIGCONT to every pid still in progress; the app then sees its
//! connection closed and dies by its own signal.

use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The monitor's side: a handle on the watchdog process, started in the
/// background so that starting it costs the app nothing; the first dump
/// waits for it if it is not up yet.
#[derive(Debug)]
pub struct Watchdog {
    process: std::sync::OnceLock<Option<Process>>,
}

#[derive(Debug)]
struct Process {
    pipe: Mutex<Option<ChildStdin>>,
    child: Mutex<Child>,
}

impl Watchdog {
    /// Start `exe __watchdog` on a background thread.
    pub fn start(exe: std::path::PathBuf) -> std::sync::Arc<Watchdog> {
        let w = std::sync::Arc::new(Watchdog { process: std::sync::OnceLock::new() });
        let setter = std::sync::Arc::clone(&w);
        let spawned = std::thread::Builder::new().name("crashmon-watchdog-start".into()).spawn(move || {
            let process = match Process::spawn(&exe) {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::warn!(
                        "cannot start the dump watchdog ({e}); a monitor crash mid-dump could leave an app stopped"
                    );
                    None
                }
            };
            let _ = setter.process.set(process);
        });
        if spawned.is_err() {
            let _ = w.process.set(None);
        }
        w
    }

    fn send(&self, line: &str) {
        if let Some(p) = self.process.wait() {
            p.send(line);
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

impl Process {
    /// Start `exe __watchdog` with a pipe on its stdin.
    fn spawn(exe: &std::path::Path) -> std::io::Result<Process> {
        use std::os::unix::process::CommandExt;
        let mut child = Command::new(exe)
            .arg("__watchdog")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            // Not in the monitor's process group: a signal to the group must
            // not take the watchdog with it.
            .process_group(0)
            .spawn()?;
        let pipe = child.stdin.take().ok_or_else(|| std::io::Error::other("watchdog has no stdin"))?;
        Ok(Process { pipe: Mutex::new(Some(pipe)), child: Mutex::new(child) })
    }

    fn send(&self, line: &str) {
        let mut pipe = self.pipe.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = pipe.as_mut()
            && let Err(e) = p.write_all(line.as_bytes()).and_then(|()| p.flush())
        {
            tracing::warn!("dump watchdog unreachable: {e}");
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Closing the pipe ends the watchdog (nothing is in progress when the
        // monitor shuts down cleanly); then reap it.
        drop(self.pipe.get_mut().unwrap_or_else(|e| e.into_inner()).take());
        let _ = self.child.get_mut().unwrap_or_else(|e| e.into_inner()).wait();
    }
}

/// The watchdog process: read `+PID`/`-PID` lines until EOF, then resume
/// every pid still marked in progress. Returns the pids it resumed.
pub fn run_watchdog(input: impl BufRead) -> Vec<i32> {
    let mut in_progress = BTreeSet::new();
    for line in input.lines() {
        let Ok(line) = line else { break };
        let (sign, pid) = line.split_at(line.len().min(1));
        match (sign, pid.trim().parse::<i32>()) {
            ("+", Ok(pid)) if pid > 0 => {
                in_progress.insert(pid);
            }
            ("-", Ok(pid)) => {
                in_progress.remove(&pid);
            }
            _ => {}
        }
    }
    for &pid in &in_progress {
        // The app is stopped mid-dump; let it run so its handler can see the
        // monitor is gone and re-raise its signal.
        let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
    }
    in_progress.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resumes_only_unfinished_pids() {
        // Use pids that cannot exist so kill() is harmless.
        let input = "+999999901\n+999999902\n-999999901\ngarbage\n+-3\n";
        assert_eq!(run_watchdog(input.as_bytes()), vec![999_999_902]);
    }
}
