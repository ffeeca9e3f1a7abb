//! Process set-up for the monitor tests that std cannot express: a seccomp
//! filter denying ptrace, a file size limit, prlimit on a running process.
#![allow(unsafe_code)]

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Run `cmd` under a seccomp filter that fails every `ptrace` call with
/// EPERM (what a container's default profile does). Real refusal, no hook.
pub fn deny_ptrace(cmd: &mut Command) {
    #[cfg(target_arch = "x86_64")]
    const AUDIT_ARCH: u32 = 0xC000_003E;
    #[cfg(target_arch = "aarch64")]
    const AUDIT_ARCH: u32 = 0xC000_00B7;
    const BPF_LD_W_ABS: u16 = 0x20;
    const BPF_JEQ_K: u16 = 0x15;
    const BPF_RET_K: u16 = 0x06;
    let ins = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    let filter = [
        ins(BPF_LD_W_ABS, 0, 0, 4), // arch
        ins(BPF_JEQ_K, 0, 3, AUDIT_ARCH),
        ins(BPF_LD_W_ABS, 0, 0, 0), // syscall number
        ins(BPF_JEQ_K, 0, 1, libc::SYS_ptrace as u32),
        ins(BPF_RET_K, 0, 0, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32),
        ins(BPF_RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ];
    // SAFETY: the closure runs in the forked child before exec and only
    // makes two prctl calls on memory it owns (async-signal-safe).
    unsafe {
        cmd.pre_exec(move || {
            let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr() as *mut _ };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog as *const _ as usize, 0, 0) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Run `cmd` with RLIMIT_FSIZE at `bytes` and SIGXFSZ ignored, so an
/// oversize write fails with EFBIG instead of killing the process.
pub fn limit_file_size(cmd: &mut Command, bytes: u64) {
    // SAFETY: signal() and setrlimit() are async-signal-safe; nothing else
    // runs in the child before exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let lim = libc::rlimit { rlim_cur: bytes, rlim_max: libc::RLIM_INFINITY };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Lift the file size limit of the running process `pid`.
pub fn unlimit_file_size(pid: u32) {
    let lim = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: prlimit on another process with a valid new limit and no old.
    let rc = unsafe { libc::prlimit(pid as i32, libc::RLIMIT_FSIZE, &lim, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
}

/// Yama's `ptrace_scope`, or `None` when the kernel has no Yama.
#[allow(dead_code)]
pub fn yama_scope() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope").ok()?.trim().parse().ok()
}

const CAP_SYS_PTRACE: u32 = 19;

/// Run `cmd` without CAP_SYS_PTRACE (dropped from its bounding set, so root
/// does not regain it at exec), like a stranger made by
/// [`ptrace_seize_as_stranger`]: the kernel lets a tracer trace only a
/// tracee whose capabilities are a subset of its own.
#[allow(dead_code)]
pub fn drop_cap_sys_ptrace(cmd: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and makes
    // one prctl call (async-signal-safe).
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_CAPBSET_DROP, CAP_SYS_PTRACE as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// What an unrelated same-uid process gets when it tries to trace `pid`:
/// a forked child (not an ancestor of `pid`) drops CAP_SYS_PTRACE (so it
/// cannot override Yama, even as root), then
/// `PTRACE_SEIZE`s `pid` (no stop is sent; its exit detaches). `Ok(())`
/// if it could trace it, else the errno.
#[allow(dead_code)]
pub fn ptrace_seize_as_stranger(pid: i32) -> Result<(), i32> {
    #[repr(C)]
    struct CapHeader {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct CapData {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    // SAFETY: fork in a (multi-threaded) test process; the child only makes
    // raw syscalls (capset, ptrace, _exit) on its own stack memory, which
    // is async-signal-safe, and never returns into Rust code.
    let child = unsafe { libc::fork() };
    if child == 0 {
        let header = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
        let mut data = [CapData { effective: 0, permitted: 0, inheritable: 0 }; 2];
        // SAFETY: see above; pointers to live locals.
        unsafe {
            if libc::syscall(libc::SYS_capget, &header as *const CapHeader, data.as_mut_ptr()) != 0 {
                libc::_exit(200);
            }
            let bit = !(1u32 << CAP_SYS_PTRACE);
            data[0].effective &= bit;
            data[0].permitted &= bit;
            data[0].inheritable &= bit;
            if libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) != 0 {
                libc::_exit(200);
            }
            let r = libc::ptrace(libc::PTRACE_SEIZE, pid, 0, 0);
            let code = if r == 0 { 0 } else { *libc::__errno_location() };
            libc::_exit(code.clamp(0, 199));
        }
    }
    assert!(child > 0, "fork: {}", std::io::Error::last_os_error());
    let mut status = 0;
    // SAFETY: waits for the child forked above; status is a live local.
    let r = unsafe { libc::waitpid(child, &mut status, 0) };
    assert_eq!(r, child, "waitpid");
    assert!(libc::WIFEXITED(status), "the prober exited: {status:#x}");
    match libc::WEXITSTATUS(status) {
        0 => Ok(()),
        200 => panic!("capget/capset failed in the prober"),
        errno => Err(errno),
    }
}
