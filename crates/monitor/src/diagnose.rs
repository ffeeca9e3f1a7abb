//! Why ptrace was refused, and what to do about it (RELIABILITY B4).
//!
//! minidump-writer treats a thread it cannot attach to as a soft error, so a
//! refused ptrace shows up as a dump without threads. The monitor then probes
//! an attach itself to learn the errno, and gathers what the system says:
//! the Yama scope, whether the monitor runs under seccomp or without
//! `CAP_SYS_PTRACE`, whether the target is non-dumpable or already traced.

use std::fmt;

use nix::errno::Errno;
use nix::unistd::Pid;

/// Bit number of `CAP_SYS_PTRACE` in the capability sets.
const CAP_SYS_PTRACE: u32 = 19;

/// Where Yama's setting lives.
pub const YAMA_SCOPE_PATH: &str = "/proc/sys/kernel/yama/ptrace_scope";

/// What was found out about a refused ptrace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PtraceRefusal {
    /// The errno of the monitor's own attach probe (`None` if the probe
    /// attached: the refusal was transient or specific to minidump-writer).
    pub errno: Option<Errno>,
    /// `kernel.yama.ptrace_scope`, `None` without Yama.
    pub yama_scope: Option<u8>,
    /// The monitor's seccomp mode (0 none, 1 strict, 2 filter).
    pub monitor_seccomp: Option<u8>,
    /// Whether the monitor holds `CAP_SYS_PTRACE`.
    pub monitor_cap_sys_ptrace: Option<bool>,
    /// The target's tracer, if another process traces it.
    pub traced_by: Option<i32>,
    /// The target is not dumpable (`prctl(PR_SET_DUMPABLE, 0)` or a setuid
    /// program): its `/proc` entries belong to root.
    pub target_non_dumpable: bool,
}

impl PtraceRefusal {
    /// Probe `tid` and read the system's settings.
    pub fn probe(pid: i32, tid: i32) -> PtraceRefusal {
        let status = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let field = |text: &str, name: &str| -> Option<String> {
            text.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_owned())
        };
        let me = status("/proc/self/status");
        let target = status(&format!("/proc/{pid}/status"));
        let cap_eff = field(&me, "CapEff:").and_then(|v| u64::from_str_radix(&v, 16).ok());
        let traced_by = field(&target, "TracerPid:").and_then(|v| v.parse::<i32>().ok()).filter(|&t| t != 0);
        let target_uid = field(&target, "Uid:").and_then(|v| v.split_whitespace().next()?.parse::<u32>().ok());
        let proc_owner = {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(format!("/proc/{pid}")).ok().map(|m| m.uid())
        };
        PtraceRefusal {
            errno: probe_attach(tid).err(),
            yama_scope: std::fs::read_to_string(YAMA_SCOPE_PATH).ok().and_then(|s| s.trim().parse().ok()),
            monitor_seccomp: field(&me, "Seccomp:").and_then(|v| v.parse().ok()),
            monitor_cap_sys_ptrace: cap_eff.map(|c| c & (1u64 << CAP_SYS_PTRACE) != 0),
            traced_by,
            target_non_dumpable: matches!((proc_owner, target_uid), (Some(0), Some(u)) if u != 0),
        }
    }

    /// The most likely cause and the fix, in one sentence.
    pub fn advice(&self) -> String {
        if let Some(t) = self.traced_by {
            return format!("the process is already traced by pid {t} (a debugger or another crash reporter)");
        }
        if self.monitor_seccomp == Some(2) && self.errno == Some(Errno::EPERM) {
            return "the monitor runs under a seccomp filter that denies ptrace: allow the ptrace syscall \
                    for crashmon (container runtimes: a seccomp profile permitting ptrace, or \
                    --cap-add SYS_PTRACE with a runtime that then allows it)"
                .into();
        }
        if self.target_non_dumpable && self.monitor_cap_sys_ptrace != Some(true) {
            return "the app is not dumpable (setuid/setgid or PR_SET_DUMPABLE 0): run the monitor with \
                    CAP_SYS_PTRACE or keep the app dumpable"
                .into();
        }
        match self.yama_scope {
            Some(3) => "Yama ptrace_scope is 3 (no ptrace at all until reboot): crash dumps are impossible on \
                        this boot; set kernel.yama.ptrace_scope to 1 in sysctl.d and reboot"
                .into(),
            Some(2) if self.monitor_cap_sys_ptrace != Some(true) => {
                "Yama ptrace_scope is 2 (admin only): give the monitor CAP_SYS_PTRACE \
                 (systemd AmbientCapabilities=CAP_SYS_PTRACE) or set kernel.yama.ptrace_scope to 1"
                    .into()
            }
            Some(1) if self.monitor_cap_sys_ptrace != Some(true) => {
                "Yama ptrace_scope is 1: the app must name the monitor with PR_SET_PTRACER (crashmon's \
                 handler does; a shared monitor's pid must be the one the app connected to) or the \
                 monitor needs CAP_SYS_PTRACE"
                    .into()
            }
            _ if self.errno == Some(Errno::EPERM) || self.errno == Some(Errno::EACCES) => {
                "the kernel or a security module (SELinux, AppArmor, a container's seccomp profile) denies \
                 ptrace: allow ptrace for the crashmon monitor"
                    .into()
            }
            _ => "check that the app and the monitor run as the same user in the same PID namespace".into(),
        }
    }
}

impl fmt::Display for PtraceRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.errno {
            Some(e) => write!(f, "ptrace refused: {} ({})", e.desc(), e)?,
            None => write!(f, "ptrace refused (a later probe could attach)")?,
        }
        match self.yama_scope {
            Some(s) => write!(f, "; yama ptrace_scope={s}")?,
            None => write!(f, "; no yama")?,
        }
        if let Some(s) = self.monitor_seccomp.filter(|&s| s != 0) {
            write!(f, "; monitor seccomp mode {s}")?;
        }
        if let Some(cap) = self.monitor_cap_sys_ptrace {
            write!(f, "; monitor {} CAP_SYS_PTRACE", if cap { "has" } else { "lacks" })?;
        }
        if self.target_non_dumpable {
            write!(f, "; app is non-dumpable")?;
        }
        if let Some(t) = self.traced_by {
            write!(f, "; app traced by pid {t}")?;
        }
        write!(f, ". What to do: {}", self.advice())
    }
}

/// Attach to `tid` the way the (patched) minidump-writer does, wait for the
/// stop and detach again. Only used after a failed dump, to learn the errno.
fn probe_attach(tid: i32) -> Result<(), Errno> {
    use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
    let tid = Pid::from_raw(tid);
    // As the capture does: seize (no SIGSTOP), interrupt, wait without
    // consuming the stop (a pending signal stays the thread's), then
    // detach giving back the signal of a signal-delivery stop.
    nix::sys::ptrace::seize(tid, nix::sys::ptrace::Options::empty())?;
    if nix::sys::ptrace::interrupt(tid).is_err() {
        return Ok(());
    }
    let flags = WaitPidFlag::WSTOPPED | WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT | WaitPidFlag::__WALL;
    let status = loop {
        match waitid(Id::Pid(tid), flags) {
            Err(Errno::EINTR) => continue,
            other => break other,
        }
    };
    let signal = match status {
        Ok(WaitStatus::PtraceEvent(_, sig, 0)) => Some(sig),
        Ok(WaitStatus::PtraceEvent(..)) => None,
        // Gone (reap it if it left a status) or not ours: nothing to detach.
        _ => {
            let _ = nix::sys::wait::waitpid(tid, Some(WaitPidFlag::__WALL | WaitPidFlag::WNOHANG));
            return Ok(());
        }
    };
    let _ = nix::sys::ptrace::detach(tid, signal);
    Ok(())
}

/// Number of threads in a minidump's thread list stream, read from the
/// writer's own in-memory copy (`None` if there is no thread list).
pub fn thread_count(dump: &[u8]) -> Option<u32> {
    const THREAD_LIST_STREAM: u32 = 3;
    let u32_at = |off: usize| -> Option<u32> {
        dump.get(off..off.checked_add(4)?).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let streams = u32_at(8)? as usize;
    let dir = u32_at(12)? as usize;
    for i in 0..streams.min(4096) {
        let entry = dir.checked_add(i.checked_mul(12)?)?;
        if u32_at(entry)? == THREAD_LIST_STREAM {
            let rva = u32_at(entry + 8)? as usize;
            return u32_at(rva);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_count_reads_the_directory_and_survives_garbage() {
        assert_eq!(thread_count(&[]), None);
        assert_eq!(thread_count(&[0xff; 64]), None);
        // Header: 2 streams, directory at 32; stream 3 at rva 64 with 7 threads.
        let mut d = vec![0u8; 80];
        d[8..12].copy_from_slice(&2u32.to_le_bytes());
        d[12..16].copy_from_slice(&32u32.to_le_bytes());
        d[32..36].copy_from_slice(&4u32.to_le_bytes());
        d[44..48].copy_from_slice(&3u32.to_le_bytes());
        d[52..56].copy_from_slice(&64u32.to_le_bytes());
        d[64..68].copy_from_slice(&7u32.to_le_bytes());
        assert_eq!(thread_count(&d), Some(7));
        d.truncate(66);
        assert_eq!(thread_count(&d), None);
    }

    #[test]
    fn the_message_names_errno_scope_and_a_fix() {
        let r = PtraceRefusal {
            errno: Some(Errno::EPERM),
            yama_scope: Some(2),
            monitor_seccomp: Some(0),
            monitor_cap_sys_ptrace: Some(false),
            traced_by: None,
            target_non_dumpable: false,
        };
        let text = r.to_string();
        assert!(text.contains("EPERM") && text.contains("ptrace_scope=2") && text.contains("CAP_SYS_PTRACE"), "{text}");
    }
}
