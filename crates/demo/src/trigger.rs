//! Ways to crash on purpose, one per kind. Each function really faults; if
//! it ever returns, the caller treats that as "failed to crash".
#![allow(unsafe_code)]

use std::hint::black_box;

/// The address the `segv` trigger writes to: below `mmap_min_addr`, so never
/// mapped.
pub const SEGV_ADDRESS: usize = 0xbad;

/// Write to [`SEGV_ADDRESS`] (SIGSEGV / SEGV_MAPERR).
#[inline(never)]
pub fn segv() {
    let p = black_box(SEGV_ADDRESS) as *mut u8;
    // SAFETY: not safe at all: this is the crash we want.
    unsafe { std::ptr::write_volatile(p, 42) };
}

/// `abort()` (SIGABRT).
#[inline(never)]
pub fn abort() {
    std::process::abort();
}

/// Touch a file mapping past the end of its file (SIGBUS / BUS_ADRERR).
#[inline(never)]
pub fn bus() {
    let Ok(file) = tempfile_for_bus() else { return };
    use std::os::fd::AsRawFd;
    // SAFETY: a private read mapping of an empty file; reading it faults,
    // which is the point.
    unsafe {
        let page = libc::sysconf(libc::_SC_PAGESIZE) as usize;
        let p = libc::mmap(std::ptr::null_mut(), page, libc::PROT_READ, libc::MAP_PRIVATE, file.as_raw_fd(), 0);
        if p == libc::MAP_FAILED {
            return;
        }
        black_box(std::ptr::read_volatile(p.cast::<u8>()));
    }
}

fn tempfile_for_bus() -> std::io::Result<std::fs::File> {
    let path = std::env::temp_dir().join(format!("crashmon-bus-{}", std::process::id()));
    let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)?;
    let _ = std::fs::remove_file(&path);
    Ok(file)
}

/// Integer division by zero (SIGFPE / FPE_INTDIV).
#[inline(never)]
pub fn fpe() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: divides by zero in the CPU, which traps.
    unsafe {
        std::arch::asm!("xor edx, edx", "mov eax, 1", "xor ecx, ecx", "div ecx", out("eax") _, out("edx") _, out("ecx") _);
    }
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: raising a signal at ourselves. (aarch64 does not trap on
    // integer division by zero.)
    unsafe {
        libc::raise(libc::SIGFPE);
    }
}

/// An undefined instruction (SIGILL / ILL_ILLOPN).
#[inline(never)]
pub fn ill() {
    // SAFETY: executes an instruction defined to be invalid.
    unsafe {
        #[cfg(target_arch = "x86_64")]
        std::arch::asm!("ud2");
        #[cfg(target_arch = "aarch64")]
        std::arch::asm!("udf #0");
    }
}

/// A breakpoint instruction (SIGTRAP).
#[inline(never)]
pub fn trap() {
    // SAFETY: a breakpoint; without a debugger the kernel sends SIGTRAP.
    unsafe {
        #[cfg(target_arch = "x86_64")]
        std::arch::asm!("int3");
        #[cfg(target_arch = "aarch64")]
        std::arch::asm!("brk #0");
    }
}

/// Unbounded recursion with a large frame (SIGSEGV on the guard page).
#[inline(never)]
pub fn stack_overflow() {
    #[inline(never)]
    fn recurse(depth: u64) -> u64 {
        let frame = black_box([depth; 512]);
        if black_box(depth) == u64::MAX {
            return 0;
        }
        black_box(recurse(black_box(depth + 1))) + frame[black_box(7)]
    }
    black_box(recurse(0));
}

/// Make the `getppid` system call fail with SIGSYS through a seccomp filter
/// (`SECCOMP_RET_TRAP`), then call it (SIGSYS / SYS_SECCOMP).
#[inline(never)]
pub fn sys() {
    // Offsets into struct seccomp_data: nr is at 0.
    const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const BPF_JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const BPF_RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const SECCOMP_RET_TRAP: u32 = 0x0003_0000;
    const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
    let filter = [
        libc::sock_filter { code: BPF_LD_W_ABS, jt: 0, jf: 0, k: 0 },
        libc::sock_filter { code: BPF_JEQ_K, jt: 0, jf: 1, k: libc::SYS_getppid as u32 },
        libc::sock_filter { code: BPF_RET_K, jt: 0, jf: 0, k: SECCOMP_RET_TRAP },
        libc::sock_filter { code: BPF_RET_K, jt: 0, jf: 0, k: SECCOMP_RET_ALLOW },
    ];
    let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr() as *mut libc::sock_filter };
    // SAFETY: installs a valid seccomp program (it outlives the call: the
    // kernel copies it), then makes the trapped system call.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return;
        }
        if libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog as *const libc::sock_fprog) != 0 {
            return;
        }
        libc::syscall(libc::SYS_getppid);
    }
}

/// Run `f` on a thread created with plain `pthread_create` (as C code would:
/// no Rust runtime set-up, so no alternate signal stack from std), with a
/// 256 KiB stack, and wait for it.
pub fn on_raw_pthread(f: fn()) {
    extern "C" fn start(arg: *mut libc::c_void) -> *mut libc::c_void {
        // SAFETY: `arg` is the `fn()` passed below, cast to a pointer.
        let f: fn() = unsafe { std::mem::transmute::<*mut libc::c_void, fn()>(arg) };
        f();
        std::ptr::null_mut()
    }
    // SAFETY: standard pthread attribute/creation calls with valid pointers;
    // `f` is a plain function pointer, valid for the program's lifetime.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        libc::pthread_attr_init(&mut attr);
        libc::pthread_attr_setstacksize(&mut attr, 256 * 1024);
        let mut thread: libc::pthread_t = std::mem::zeroed();
        let rc = libc::pthread_create(&mut thread, &attr, start, f as *mut libc::c_void);
        libc::pthread_attr_destroy(&mut attr);
        if rc == 0 {
            libc::pthread_join(thread, std::ptr::null_mut());
        }
    }
}

/// `raise(SIGSEGV)`: a SIGSEGV the process sends itself (`si_code` SI_TKILL),
/// which does not re-fault when a handler returns.
#[inline(never)]
pub fn raise_segv() {
    // SAFETY: raising a signal at ourselves.
    unsafe {
        libc::raise(libc::SIGSEGV);
    }
}

/// Free the same block twice: glibc's malloc detects it and calls `abort()`
/// from inside `free` (SIGABRT, "free(): double free detected").
#[inline(never)]
pub fn double_free() {
    // SAFETY: not safe at all: the second free is the heap corruption glibc
    // must catch.
    unsafe {
        let p = libc::malloc(black_box(64));
        libc::free(p);
        libc::free(black_box(p));
    }
}
