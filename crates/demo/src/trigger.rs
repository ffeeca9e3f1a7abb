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
