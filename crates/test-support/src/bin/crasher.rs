//! A real crashing program for crashmon's tests.
//!
//! `crasher --crash KIND [--on main|thread|pthread] [--socket PATH] [--wait-stdin]
//! [--reply-timeout-ms N] [--no-wait-for-monitor] [--request-dump] [--no-handler] [--annotate K=V]...
//! [--breadcrumbs N] [--tracing-breadcrumbs N]`: installs the crashmon handler
//! (spawning `$CRASHMON_MONITOR` as sidecar, or connecting to the monitor at
//! `--socket`), prints `ready pid=P tid=T monitor=M` on stdout, and crashes the
//! requested way on the main thread, a `std::thread` or a raw `pthread_create`
//! thread (which then prints `crashing tid=T` first). With `--wait-stdin` it
//! waits for a line on stdin before crashing. With `--request-dump` it first
//! files a handled-error report, prints `requested id=ID` and keeps going. Exits 222 if it failed to crash, 1 if the handler could not
//! be installed (with the error on stderr).
//!
//! Besides the demo's kinds, `--crash` takes `raise-segv` (`raise(SIGSEGV)`),
//! `double-free` (glibc aborts inside `free`), `alloc-crash` (SIGSEGV inside
//! the allocator while its lock is held), `wait` (sleep until killed from
//! outside), `bad-sp` (SIGILL with the stack pointer at the top of the
//! address space), `sp-in-heap` (SIGILL with the stack pointer near the
//! start of a 64 MiB read-write mapping) and `jump-prot-none` (a call into
//! a PROT_NONE page); the last three print `stack-pointer sp=0x…` or
//! `jump addr=0x…` first. Reliability flags: `--count-allocs` (print
//! `alloc-after-crash size=N` for every allocation after the crash starts),
//! `--alloc-lock-held` (another thread holds the allocator lock during the
//! crash), `--prev-handler` (install a SIGSEGV/SIGABRT handler before
//! crashmon's; it prints `previous handler ran sig=N`), `--undumpable`
//! (`PR_SET_DUMPABLE 0`), `--fork-child-first` (a forked child crashes the
//! same way first; the parent prints `child pid=P signal=S`, then crashes),
//! `--second-crash KIND` (another thread crashes with KIND while the first
//! crash is handled), `--corrupt-link-map` (the loader's link map becomes a
//! cycle and `r_debug.r_state` an invalid value; prints `link-map entries=N`),
//! `--dlopen PATH` (repeatable: loads the library before crashing),
//! `--map-then-fifo PATH` (an executable mapping of a file at PATH, which
//! is then replaced by a FIFO), `--vfork-stuck` (a thread stays in a vfork
//! wait; its child prints `vfork-child pid=N`, then pauses until killed),
//! `--map-file PATH` (repeatable: maps the file's first 8 KiB).
//!
//! Reporting flags: `--ignore-error-type NAME`, `--sample-rate R`,
//! `--sample-seed N` (the handler's filter), `--report-errors N` (N handled
//! `std::io::Error`s, each printing `report-error ok id=ID` or
//! `report-error filtered`),
//! `--log-errors` / `--tracing-errors` (error events through the `log`
//! adapter / the `tracing` layer with error reports on: 3 from one call
//! site, then 2 from two others, at most 2 a minute), `--install-twice`,
//! `--config-database PATH`; then `stats ...` is printed before the crash.
//!
//! Signal-reset flags: `--late-handler handler|default` (after install, the
//! app replaces the SIGSEGV/SIGABRT dispositions with `libc::sigaction`: a
//! handler printing `late handler ran sig=N`, or SIG_DFL), `--rearm` (then
//! calls `crashmon_handler::rearm()` and prints `rearmed n=N`).
//! `--churn N`: N threads start and join short-lived threads in a loop
//! (threads appear and exit during the dump).
//! `--on small-pthread` crashes on a thread made by `libc::pthread_create`
//! with a 64 KiB stack (as C code makes them: no alternate signal stack);
//! with `--thread-alt-stack` that thread first calls
//! `crashmon_handler::ensure_thread_alt_stack()`.

use std::io::{BufRead, Write};
use std::time::Duration;

use crashmon_handler::{HandlerConfig, MonitorConnection};

mod counting_alloc {
    //! The crasher's global allocator: the system allocator behind a spin
    //! lock of its own (a stand-in for any allocator's lock), counting the
    //! allocations made after [`arm`]. Each one is reported on stdout with a
    //! raw `write`, so the report survives the crash.
    #![allow(unsafe_code)]

    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    static ARMED: AtomicBool = AtomicBool::new(false);
    static LOCKING: AtomicBool = AtomicBool::new(false);
    static LOCK: AtomicBool = AtomicBool::new(false);
    static CRASH_INSIDE: AtomicBool = AtomicBool::new(false);
    /// Allocations since [`arm`].
    pub static AFTER_CRASH: AtomicUsize = AtomicUsize::new(0);

    pub struct Counting;

    fn lock() {
        while LOCK.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            std::hint::spin_loop();
        }
    }

    fn unlock() {
        LOCK.store(false, Ordering::Release);
    }

    fn note(size: usize) {
        if !ARMED.load(Ordering::SeqCst) {
            return;
        }
        AFTER_CRASH.fetch_add(1, Ordering::SeqCst);
        let mut line = *b"alloc-after-crash size=0000000000\n";
        let mut n = size;
        for i in (23..33).rev() {
            line[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
        // SAFETY: a valid buffer; write(2) is async-signal-safe.
        unsafe { libc::write(1, line.as_ptr().cast(), line.len()) };
    }

    // SAFETY: every method forwards to `System` with the caller's layout.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            note(layout.size());
            let locking = LOCKING.load(Ordering::SeqCst);
            if locking {
                lock();
                if CRASH_INSIDE.load(Ordering::SeqCst) {
                    // SIGSEGV with the allocator lock held.
                    crashmon_demo::trigger::segv();
                }
            }
            // SAFETY: forwarded contract.
            let p = unsafe { System.alloc(layout) };
            if locking {
                unlock();
            }
            p
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            let locking = LOCKING.load(Ordering::SeqCst);
            if locking {
                lock();
            }
            // SAFETY: forwarded contract.
            unsafe { System.dealloc(ptr, layout) };
            if locking {
                unlock();
            }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            note(new_size);
            let locking = LOCKING.load(Ordering::SeqCst);
            if locking {
                lock();
            }
            // SAFETY: forwarded contract.
            let p = unsafe { System.realloc(ptr, layout, new_size) };
            if locking {
                unlock();
            }
            p
        }
    }

    /// From now on every allocation is reported.
    pub fn arm() {
        ARMED.store(true, Ordering::SeqCst);
    }

    /// Make every allocation take the lock.
    pub fn enable_lock() {
        LOCKING.store(true, Ordering::SeqCst);
    }

    /// Take the allocator lock on a new thread and never give it back.
    /// Returns once the lock is held.
    pub fn hold_lock_forever() {
        enable_lock();
        let held = std::sync::Arc::new(AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&held);
        let _ = std::thread::spawn(move || {
            lock();
            flag.store(true, Ordering::SeqCst);
            loop {
                // SAFETY: plain sleep, no allocation.
                unsafe { libc::sleep(60) };
            }
        });
        while !held.load(Ordering::SeqCst) {
            std::hint::spin_loop();
        }
    }

    /// Allocate with the next allocation crashing inside the allocator
    /// while it holds its lock.
    pub fn crash_inside() {
        enable_lock();
        CRASH_INSIDE.store(true, Ordering::SeqCst);
        std::hint::black_box(Box::new(std::hint::black_box(7u64)));
    }
}

#[global_allocator]
static ALLOCATOR: counting_alloc::Counting = counting_alloc::Counting;

mod raw {
    //! The few libc calls the reliability flags need.
    #![allow(unsafe_code)]

    extern "C" fn previous_handler(sig: libc::c_int, _info: *mut libc::siginfo_t, _uc: *mut libc::c_void) {
        let mut line = *b"previous handler ran sig=00\n";
        line[25] = b'0' + (sig / 10) as u8;
        line[26] = b'0' + (sig % 10) as u8;
        // SAFETY: write(2) and sigaction(2) are async-signal-safe; a zeroed
        // sigaction with SIG_DFL is valid.
        unsafe {
            libc::write(1, line.as_ptr().cast(), line.len());
            // Like many apps' handlers: do our thing, then let the default
            // action happen.
            let mut dfl: libc::sigaction = std::mem::zeroed();
            dfl.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(sig, &dfl, std::ptr::null_mut());
        }
    }

    static GUARD_PAGE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    const PAGE: usize = 4096;

    /// A first-chance handler (a runtime's): a fault in the guard page is
    /// handled by making the page writable; anything else is declined.
    unsafe extern "C-unwind" fn guard_first_chance(
        _sig: libc::c_int,
        info: *mut libc::siginfo_t,
        _uc: *mut libc::c_void,
    ) -> libc::c_int {
        let page = GUARD_PAGE.load(std::sync::atomic::Ordering::SeqCst);
        // SAFETY: the kernel-provided siginfo of a fault.
        let addr = unsafe { (*info).si_addr() } as usize;
        if page == 0 || !(page..page + PAGE).contains(&addr) {
            return 0;
        }
        // SAFETY: the guard page is ours; mprotect is async-signal-safe.
        libc::c_int::from(unsafe { libc::mprotect(page as *mut _, PAGE, libc::PROT_READ | libc::PROT_WRITE) } == 0)
    }

    /// Register [`guard_first_chance`] with crashmon, then write to a
    /// PROT_NONE page three times (protecting it again after each write).
    /// Returns how many writes went through.
    pub fn guard_writes_with_first_chance() -> usize {
        // SAFETY: guard_first_chance only reads the siginfo and calls
        // mprotect.
        unsafe { crashmon_handler::set_first_chance_handler(Some(guard_first_chance)) };
        // SAFETY: a fresh anonymous mapping.
        let page = unsafe {
            libc::mmap(std::ptr::null_mut(), PAGE, libc::PROT_NONE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
        };
        assert_ne!(page, libc::MAP_FAILED);
        GUARD_PAGE.store(page as usize, std::sync::atomic::Ordering::SeqCst);
        let mut recovered = 0;
        for i in 0..3u8 {
            let p = page.cast::<u8>().wrapping_add(usize::from(i) * 64);
            // SAFETY: inside our mapping; the first access faults and the
            // first-chance handler makes the page writable.
            unsafe {
                std::ptr::write_volatile(p, i + 1);
                if std::ptr::read_volatile(p) == i + 1 {
                    recovered += 1;
                }
                libc::mprotect(page, PAGE, libc::PROT_NONE);
            }
        }
        recovered
    }

    /// Install `previous_handler` for SIGSEGV and SIGABRT.
    pub fn install_previous_handler() {
        // SAFETY: a valid sigaction struct pointing at a handler with the
        // SA_SIGINFO signature.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction =
                previous_handler as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) as usize;
            action.sa_flags = libc::SA_SIGINFO;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(libc::SIGSEGV, &action, std::ptr::null_mut());
            libc::sigaction(libc::SIGABRT, &action, std::ptr::null_mut());
        }
    }

    extern "C" fn late_handler(sig: libc::c_int, _info: *mut libc::siginfo_t, _uc: *mut libc::c_void) {
        let mut line = *b"late handler ran sig=00\n";
        line[21] = b'0' + (sig / 10) as u8;
        line[22] = b'0' + (sig % 10) as u8;
        // SAFETY: write(2) and sigaction(2) are async-signal-safe; a zeroed
        // sigaction with SIG_DFL is valid.
        unsafe {
            libc::write(1, line.as_ptr().cast(), line.len());
            let mut dfl: libc::sigaction = std::mem::zeroed();
            dfl.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(sig, &dfl, std::ptr::null_mut());
        }
    }

    /// After install: replace the SIGSEGV and SIGABRT dispositions with
    /// `late_handler` (`handler`) or SIG_DFL (`default`), directly with
    /// libc's sigaction (a Rust app has no interposition).
    pub fn replace_dispositions(mode: &str) {
        // SAFETY: a valid sigaction struct; the handler has the SA_SIGINFO
        // signature.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            if mode == "handler" {
                action.sa_sigaction =
                    late_handler as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) as usize;
                action.sa_flags = libc::SA_SIGINFO;
            } else {
                action.sa_sigaction = libc::SIG_DFL;
            }
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(libc::SIGSEGV, &action, std::ptr::null_mut());
            libc::sigaction(libc::SIGABRT, &action, std::ptr::null_mut());
        }
    }

    /// Run `f` on a thread made by `libc::pthread_create` with a 64 KiB
    /// stack (no alternate signal stack, as C code makes threads), first
    /// calling `ensure_thread_alt_stack()` on it if `alt_stack`; wait for it.
    pub fn on_small_pthread(f: fn(), alt_stack: bool) {
        struct Start {
            f: fn(),
            alt_stack: bool,
        }
        extern "C" fn start(arg: *mut libc::c_void) -> *mut libc::c_void {
            // SAFETY: `arg` is the `Start` below, alive until the join.
            let start = unsafe { &*arg.cast::<Start>() };
            if start.alt_stack
                && let Err(e) = crashmon_handler::ensure_thread_alt_stack()
            {
                eprintln!("crasher: ensure_thread_alt_stack: {e}");
            }
            (start.f)();
            std::ptr::null_mut()
        }
        let mut arg = Start { f, alt_stack };
        // SAFETY: standard pthread attribute/creation calls with valid
        // pointers; `arg` outlives the thread (joined below).
        unsafe {
            let mut attr: libc::pthread_attr_t = std::mem::zeroed();
            libc::pthread_attr_init(&mut attr);
            libc::pthread_attr_setstacksize(&mut attr, 64 * 1024);
            let mut thread: libc::pthread_t = std::mem::zeroed();
            let rc = libc::pthread_create(&mut thread, &attr, start, (&raw mut arg).cast());
            libc::pthread_attr_destroy(&mut attr);
            if rc == 0 {
                libc::pthread_join(thread, std::ptr::null_mut());
            }
        }
    }

    #[repr(C)]
    struct LinkMap {
        l_addr: usize,
        l_name: *const libc::c_char,
        l_ld: *mut libc::c_void,
        l_next: *mut LinkMap,
        l_prev: *mut LinkMap,
    }

    #[repr(C)]
    struct RDebug {
        r_version: libc::c_int,
        r_map: *mut LinkMap,
        r_brk: usize,
        r_state: libc::c_int,
        r_ldbase: usize,
    }

    unsafe extern "C" {
        /// The dynamic loader's debugger interface (`<link.h>`).
        static mut _r_debug: RDebug;
    }

    /// Corrupts what the dynamic loader shows debuggers, as a memory bug
    /// could: the link map's last entry points back at its first (the
    /// chain never ends) and `r_state` holds a value outside its enum.
    /// Returns the number of entries in the chain before.
    pub fn corrupt_link_map() -> usize {
        // SAFETY: `_r_debug` and the link map are the loader's, alive for
        // the whole process; nothing else walks them after this (the app
        // crashes next, and the handler does not look at them).
        unsafe {
            let r_debug = &raw mut _r_debug;
            let first = (*r_debug).r_map;
            if first.is_null() {
                return 0;
            }
            let mut last = first;
            let mut count = 1;
            while !(*last).l_next.is_null() {
                last = (*last).l_next;
                count += 1;
            }
            (*last).l_next = first;
            (*r_debug).r_state = 77;
            count
        }
    }

    /// A fresh anonymous private mapping of `len` bytes with `prot`; its
    /// address.
    pub fn map(len: usize, prot: libc::c_int) -> usize {
        // SAFETY: a new anonymous mapping; nothing else refers to it.
        let addr =
            unsafe { libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0) };
        assert_ne!(addr, libc::MAP_FAILED, "mmap");
        addr as usize
    }

    /// Loads `sp` into the stack pointer and executes an invalid
    /// instruction: SIGILL, delivered on the alternate signal stack, with
    /// a context whose stack pointer is `sp` (as after stack corruption).
    pub fn crash_with_sp(sp: usize) -> ! {
        println!("stack-pointer sp={sp:#x}");
        let _ = std::io::Write::flush(&mut std::io::stdout());
        // SAFETY: never returns; nothing runs on the new stack pointer
        // before the fault.
        unsafe {
            #[cfg(target_arch = "x86_64")]
            std::arch::asm!("mov rsp, {0}", "ud2", in(reg) sp, options(noreturn));
            #[cfg(target_arch = "aarch64")]
            std::arch::asm!("mov sp, {0}", "udf #0", in(reg) sp, options(noreturn));
        }
    }

    /// Calls `addr` as a function (a wild jump: SIGSEGV with the
    /// instruction pointer at `addr`).
    pub fn jump_to(addr: usize) -> ! {
        println!("jump addr={addr:#x}");
        let _ = std::io::Write::flush(&mut std::io::stdout());
        // SAFETY: not safe at all, on purpose: the call faults at once.
        let f: extern "C" fn() = unsafe { std::mem::transmute::<usize, extern "C" fn()>(addr) };
        f();
        std::process::exit(crashmon_demo::FAILED_TO_CRASH);
    }

    /// Maps an 8 KiB file at `path` readable and executable, removes the
    /// file, and makes a FIFO under its name: the mapping's name in
    /// `/proc/<pid>/maps` (less " (deleted)") then names a FIFO.
    pub fn map_then_fifo(path: &str) -> bool {
        let Ok(file) = std::fs::File::create_new(path) else { return false };
        if file.set_len(8192).is_err() || !map_file(&file) {
            return false;
        }
        let Ok(c) = std::ffi::CString::new(path) else { return false };
        // SAFETY: a NUL-terminated path.
        std::fs::remove_file(path).is_ok() && unsafe { libc::mkfifo(c.as_ptr(), 0o600) } == 0
    }

    /// Maps the first 8 KiB of `file` readable and executable (private,
    /// never unmapped); whether it worked.
    pub fn map_file(file: &std::fs::File) -> bool {
        use std::os::fd::AsRawFd;
        // SAFETY: a new private mapping of an open file, never unmapped.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                8192,
                libc::PROT_READ | libc::PROT_EXEC,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        addr != libc::MAP_FAILED
    }

    /// Set by the vfork child (it shares the app's memory) once it runs.
    static VFORK_CHILD_RUNS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

    extern "C" fn vfork_child(_: *mut libc::c_void) -> libc::c_int {
        // The child shares the app's memory: no allocation, raw calls only.
        let mut line = *b"vfork-child pid=0000000000\n";
        // SAFETY: plain syscalls on a stack buffer.
        unsafe {
            // Killed when the thread that made it dies (with the app), so
            // that it never outlives a test.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            let mut pid = libc::getpid() as u32;
            for i in (16..26).rev() {
                line[i] = b'0' + (pid % 10) as u8;
                pid /= 10;
            }
            libc::write(1, line.as_ptr().cast(), line.len());
            // Let go of the app's stdout, stderr and monitor socket
            // (close_range needs Linux 5.9).
            if libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32) != 0 {
                for fd in 0..1024 {
                    libc::close(fd);
                }
            }
            VFORK_CHILD_RUNS.store(true, std::sync::atomic::Ordering::SeqCst);
            loop {
                libc::pause();
            }
        }
    }

    /// Starts a thread that vforks (`clone(CLONE_VM | CLONE_VFORK)`, as
    /// `posix_spawn` does) a child that never execs: the thread stays in
    /// the kernel's killable vfork wait, where PTRACE_INTERRUPT does not
    /// stop it. The child prints `vfork-child pid=N` and pauses.
    pub fn start_stuck_vfork() {
        std::thread::spawn(|| {
            STUCK_TID.store(nix::unistd::gettid().as_raw(), std::sync::atomic::Ordering::SeqCst);
            let mut stack = vec![0u8; 64 * 1024];
            // SAFETY: one past the end of the same allocation.
            let top = unsafe { stack.as_mut_ptr().add(stack.len()) };
            // SAFETY: the child runs `vfork_child` on its own stack (the
            // top of `stack`, which outlives it: this thread does not
            // return from the clone while the child lives).
            unsafe {
                libc::clone(
                    vfork_child,
                    top.cast(),
                    libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                    std::ptr::null_mut(),
                );
            }
            drop(stack);
        });
        // Wait until the child runs and the thread is in the vfork wait
        // ('D' in its stat), at most 10 s.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let waiting = || {
            let tid = STUCK_TID.load(std::sync::atomic::Ordering::SeqCst);
            VFORK_CHILD_RUNS.load(std::sync::atomic::Ordering::SeqCst)
                && std::fs::read_to_string(format!("/proc/self/task/{tid}/stat"))
                    .ok()
                    .and_then(|st| st.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with('D')))
                    .unwrap_or(false)
        };
        while !waiting() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// The thread [`start_stuck_vfork`] started.
    pub static STUCK_TID: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

    /// The `TracerPid` of the stuck vfork thread, once it is 0 or after
    /// 1 s.
    pub fn stuck_thread_tracer() -> i64 {
        let tid = STUCK_TID.load(std::sync::atomic::Ordering::SeqCst);
        let read = || {
            std::fs::read_to_string(format!("/proc/self/task/{tid}/status"))
                .ok()?
                .lines()
                .find_map(|l| l.strip_prefix("TracerPid:")?.trim().parse::<i64>().ok())
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        loop {
            let tracer = read().unwrap_or(-1);
            if tracer == 0 || std::time::Instant::now() >= deadline {
                return tracer;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// `dlopen(path, RTLD_NOW)`: whether it loaded.
    pub fn dlopen(path: &str) -> bool {
        let Ok(c) = std::ffi::CString::new(path) else { return false };
        // SAFETY: a NUL-terminated path; the handle is kept (never closed).
        !unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW) }.is_null()
    }

    /// `prctl(PR_SET_DUMPABLE, 0)`.
    pub fn set_undumpable() -> bool {
        // SAFETY: plain prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) == 0 }
    }

    /// `fork()` without exec; in the child run `child` (which must not
    /// return normally: it crashes, or the child exits 222). In the parent
    /// returns the child's pid and how it ended (`None` for an exit).
    pub fn fork_and_wait(child: fn()) -> (i32, Option<i32>) {
        // SAFETY: the child only runs `child` (a crash trigger) and `_exit`.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            child();
            // SAFETY: leaving the child without running the parent's atexit.
            unsafe { libc::_exit(222) };
        }
        let mut status = 0;
        // SAFETY: valid out pointer.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        let signal = libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status));
        (pid, signal)
    }
}

static KIND: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Crash kinds of the crasher only (not of `crashmon demo`).
const EXTRA_KINDS: [&str; 7] =
    ["raise-segv", "double-free", "alloc-crash", "wait", "bad-sp", "sp-in-heap", "jump-prot-none"];
/// 0: a demo kind (`KIND`); i + 1: `EXTRA_KINDS[i]`.
static EXTRA: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static COUNT_ALLOCS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Crash the way `KIND` / `EXTRA` say.
fn crash_selected() {
    if COUNT_ALLOCS.load(std::sync::atomic::Ordering::SeqCst) {
        println!("armed");
        let _ = std::io::stdout().flush();
        counting_alloc::arm();
    }
    match EXTRA.load(std::sync::atomic::Ordering::SeqCst) {
        0 => crashmon_demo::crash(crashmon_demo::Kind::ALL[KIND.load(std::sync::atomic::Ordering::SeqCst)].1),
        i => match EXTRA_KINDS[i - 1] {
            "raise-segv" => crashmon_demo::trigger::raise_segv(),
            "double-free" => crashmon_demo::trigger::double_free(),
            "alloc-crash" => counting_alloc::crash_inside(),
            // The top of the address space: no mapping, and nothing above.
            "bad-sp" => raw::crash_with_sp(usize::MAX - 7),
            "sp-in-heap" => raw::crash_with_sp(raw::map(SP_IN_HEAP_MAPPING, libc::PROT_READ | libc::PROT_WRITE) + 4096),
            "jump-prot-none" => raw::jump_to(raw::map(4096, libc::PROT_NONE)),
            _ => loop {
                std::thread::sleep(Duration::from_secs(60));
            },
        },
    }
}

/// The size of the read-write mapping `--crash sp-in-heap` points its
/// stack pointer into (near its start, so the "stack" above it is large).
const SP_IN_HEAP_MAPPING: usize = 64 << 20;

/// Announce this thread and crash it with the selected kind.
fn crash_here() {
    println!("crashing tid={}", nix::unistd::gettid());
    let _ = std::io::stdout().flush();
    crash_selected();
}

/// With `CRASHER_TIMELINE` set, print a wall-clock timestamp for `what` on
/// stderr (for profiling the crash path against the monitor's logs).
fn mark(what: &str) {
    if std::env::var_os("CRASHER_TIMELINE").is_some() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        eprintln!("timeline {:.6} {what}", t.as_secs_f64() % 60.0);
    }
}

fn main() {
    mark("main");
    let mut kind = None;
    let mut socket = None;
    let mut wait_stdin = false;
    let mut reply_timeout = None;
    let mut no_wait_for_monitor = false;
    let mut on = "main".to_owned();
    let mut request_dump = false;
    let mut no_handler = false;
    let mut annotations: Vec<(String, String)> = Vec::new();
    // Monitor tests: `--attach PATH` (repeatable), `--threads N` idle
    // threads each holding `--thread-stack-kib K` of used stack,
    // `--heap-mib M` of reserved heap.
    let mut attach: Vec<String> = Vec::new();
    let mut idle_threads = 0usize;
    let mut churn_threads = 0usize;
    let mut thread_stack_kib = 0usize;
    let mut heap_mib = 0usize;
    let mut breadcrumbs = 0usize;
    let mut tracing_breadcrumbs = 0usize;
    let mut extra = None;
    let mut alloc_lock_held = false;
    let mut prev_handler = false;
    let mut undumpable = false;
    let mut corrupt_link_map = false;
    let mut dlopen: Vec<String> = Vec::new();
    let mut map_then_fifo = None;
    let mut vfork_stuck = false;
    let mut map_files: Vec<String> = Vec::new();
    let mut fork_child_first = false;
    let mut second_crash = None;
    let mut second_delay_ms = 5u64;
    let mut ignore_types: Vec<String> = Vec::new();
    let mut sample_rate = None;
    let mut sample_seed = None;
    let mut late_handler: Option<String> = None;
    let mut rearm = false;
    let mut first_chance_guard = false;
    let mut thread_alt_stack = false;
    let mut report_errors = 0usize;
    let mut log_errors = false;
    let mut tracing_errors = false;
    let mut install_twice = false;
    let mut config_database = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--crash" => {
                let k = args.next().unwrap_or_default();
                extra = EXTRA_KINDS.iter().position(|e| *e == k);
                kind = crashmon_demo::Kind::from_name(&k).or(extra.map(|_| crashmon_demo::Kind::Segv));
            }
            "--count-allocs" => COUNT_ALLOCS.store(true, std::sync::atomic::Ordering::SeqCst),
            "--alloc-lock-held" => alloc_lock_held = true,
            "--prev-handler" => prev_handler = true,
            "--undumpable" => undumpable = true,
            "--corrupt-link-map" => corrupt_link_map = true,
            "--dlopen" => dlopen.extend(args.next()),
            "--map-then-fifo" => map_then_fifo = args.next(),
            "--vfork-stuck" => vfork_stuck = true,
            "--map-file" => map_files.extend(args.next()),
            "--fork-child-first" => fork_child_first = true,
            "--second-crash" => second_crash = args.next().and_then(|k| crashmon_demo::Kind::from_name(&k)),
            "--ignore-error-type" => ignore_types.push(args.next().unwrap_or_default()),
            "--sample-rate" => sample_rate = args.next().and_then(|r| r.parse::<f64>().ok()),
            "--sample-seed" => sample_seed = args.next().and_then(|r| r.parse::<u64>().ok()),
            "--late-handler" => late_handler = args.next(),
            "--rearm" => rearm = true,
            "--first-chance-guard" => first_chance_guard = true,
            "--thread-alt-stack" => thread_alt_stack = true,
            "--report-errors" => report_errors = args.next().and_then(|n| n.parse().ok()).unwrap_or(0),
            "--log-errors" => log_errors = true,
            "--tracing-errors" => tracing_errors = true,
            "--install-twice" => install_twice = true,
            "--config-database" => config_database = args.next(),
            "--second-delay-ms" => second_delay_ms = args.next().and_then(|n| n.parse().ok()).unwrap_or(5),
            "--socket" => socket = args.next(),
            "--wait-stdin" => wait_stdin = true,
            "--request-dump" => request_dump = true,
            "--no-handler" => no_handler = true,
            "--breadcrumbs" => breadcrumbs = args.next().and_then(|n| n.parse().ok()).unwrap_or(0),
            "--tracing-breadcrumbs" => tracing_breadcrumbs = args.next().and_then(|n| n.parse().ok()).unwrap_or(0),
            "--annotate" => {
                let kv = args.next().unwrap_or_default();
                let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
                annotations.push((k.to_owned(), v.to_owned()));
            }
            "--on" => on = args.next().unwrap_or_default(),
            "--attach" => attach.extend(args.next()),
            "--threads" => idle_threads = args.next().and_then(|n| n.parse().ok()).unwrap_or(0),
            "--churn" => churn_threads = args.next().and_then(|n| n.parse().ok()).unwrap_or(0),
            "--thread-stack-kib" => thread_stack_kib = args.next().and_then(|n| n.parse().ok()).unwrap_or(0),
            "--heap-mib" => heap_mib = args.next().and_then(|n| n.parse().ok()).unwrap_or(0),
            "--reply-timeout-ms" => reply_timeout = args.next().and_then(|v| v.parse::<u64>().ok()),
            "--no-wait-for-monitor" => no_wait_for_monitor = true,
            other => {
                eprintln!("crasher: unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    let Some(kind) = kind else {
        eprintln!("crasher: --crash KIND is required");
        std::process::exit(2);
    };
    if no_handler {
        // The baseline of the benchmarks: the same crash, nothing installed.
        crashmon_demo::crash(kind);
        std::process::exit(crashmon_demo::FAILED_TO_CRASH);
    }
    if prev_handler {
        raw::install_previous_handler();
    }
    let mut config = HandlerConfig::default();
    if let Some(path) = socket {
        config.monitor = MonitorConnection::Socket(path.into());
    }
    if let Some(ms) = reply_timeout {
        config.reply_timeout = Duration::from_millis(ms);
    }
    config.wait_for_monitor = !no_wait_for_monitor;
    config.filter.ignore_error_types = ignore_types;
    if let Some(rate) = sample_rate {
        config.filter.handled_error_sample_rate = rate;
    }
    config.filter.sample_seed = sample_seed;
    config.database = config_database.map(Into::into);
    let again = config.clone();
    let guard = match crashmon_handler::install(config) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("crasher: {e}");
            std::process::exit(1);
        }
    };
    let tid = nix::unistd::gettid();
    mark("installed");
    if install_twice {
        match crashmon_handler::install(again) {
            Ok(_) => println!("second install: ok"),
            Err(e) => println!("second install: {e:?}"),
        }
    }
    if let Some(mode) = &late_handler {
        raw::replace_dispositions(mode);
    }
    if rearm {
        println!("rearmed n={}", crashmon_handler::rearm());
    }
    if first_chance_guard {
        println!("recovered={}", raw::guard_writes_with_first_chance());
    }
    for path in &dlopen {
        if !raw::dlopen(path) {
            eprintln!("crasher: dlopen {path} failed");
            std::process::exit(1);
        }
    }
    if let Some(path) = &map_then_fifo
        && !raw::map_then_fifo(path)
    {
        eprintln!("crasher: mapping {path} then making a FIFO there failed");
        std::process::exit(1);
    }
    if vfork_stuck {
        raw::start_stuck_vfork();
    }
    for path in &map_files {
        if !std::fs::File::open(path).is_ok_and(|f| raw::map_file(&f)) {
            eprintln!("crasher: cannot map {path}");
            std::process::exit(1);
        }
    }
    if corrupt_link_map {
        println!("link-map entries={}", raw::corrupt_link_map());
    }
    if undumpable && !raw::set_undumpable() {
        eprintln!("crasher: PR_SET_DUMPABLE failed");
        std::process::exit(1);
    }
    for (k, v) in &annotations {
        // A value of "<remove>" removes the key again; "<big>" is 30 KiB.
        let result = match v.as_str() {
            "<remove>" => crashmon_handler::remove_annotation(k),
            "<big>" => crashmon_handler::annotate(k, &"x".repeat(30 * 1024)),
            _ => crashmon_handler::annotate(k, v),
        };
        if let Err(e) = result {
            eprintln!("crasher: annotate {k}: {e}");
        }
    }
    for path in &attach {
        if let Err(e) = crashmon_handler::attach_file(path) {
            eprintln!("crasher: attach {path}: {e}");
        }
    }
    let heap: Vec<u8> = Vec::with_capacity(heap_mib << 20);
    // Each idle thread says when it runs (named, its stack in use) before
    // the app says it is ready; the app prints `idle-I tid=T` for each.
    let (running, started) = std::sync::mpsc::channel();
    let idle: Vec<_> = (0..idle_threads)
        .filter_map(|i| {
            let running = running.clone();
            std::thread::Builder::new()
                .name(format!("idle-{i}"))
                .stack_size((thread_stack_kib + 64) << 10)
                // Used stack the dump copies, then wait to be dumped.
                .spawn(move || hold_stack(thread_stack_kib, i, running))
                .ok()
        })
        .collect();
    drop(running);
    for _ in 0..idle.len() {
        match started.recv() {
            Ok((i, tid)) => println!("idle-{i} tid={tid}"),
            Err(_) => break,
        }
    }
    std::mem::forget(idle);
    // `--churn N`: N threads that start and join short-lived threads
    // without pause, so threads appear and exit while the app is dumped.
    // Each says when it runs (and has its name).
    let (churning, churn_started) = std::sync::mpsc::channel::<()>();
    for _ in 0..churn_threads {
        let churning = churning.clone();
        let _ = std::thread::Builder::new().name("churn".into()).spawn(move || {
            let _ = churning.send(());
            drop(churning);
            loop {
                if let Ok(t) = std::thread::Builder::new().name("churned".into()).spawn(|| std::hint::black_box(1)) {
                    let _ = t.join();
                }
            }
        });
    }
    drop(churning);
    while churn_started.recv().is_ok() {}
    std::hint::black_box(&heap);
    println!("ready pid={} tid={} monitor={}", std::process::id(), tid, guard.monitor_pid());
    let _ = std::io::stdout().flush();
    if wait_stdin {
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
    }
    for i in 0..breadcrumbs {
        let level = if i % 10 == 9 { crashmon_handler::Level::Warning } else { crashmon_handler::Level::Info };
        if let Err(e) = crashmon_handler::breadcrumb(level, "crasher", &format!("step {i}")) {
            eprintln!("crasher: breadcrumb: {e}");
        }
    }
    if tracing_breadcrumbs > 0 {
        use tracing_subscriber::layer::SubscriberExt;
        let subscriber =
            tracing_subscriber::registry().with(crashmon_handler::BreadcrumbLayer::new(tracing::Level::INFO));
        tracing::subscriber::with_default(subscriber, || {
            for i in 0..tracing_breadcrumbs {
                tracing::debug!("below the layer's level: not recorded");
                tracing::info!(order = i, "processing order");
            }
            tracing::error!("payment backend unreachable");
        });
    }
    for _ in 0..report_errors {
        let error = std::io::Error::other("disk on fire");
        match crashmon_handler::report_error(&error) {
            Ok(id) => println!("report-error ok id={id}"),
            Err(crashmon_handler::DumpError::Filtered(_)) => println!("report-error filtered"),
            Err(e) => println!("report-error error={e}"),
        }
    }
    if log_errors {
        let policy = crashmon_handler::ErrorReports { max_per_minute: 2, ..Default::default() };
        let adapter = crashmon_handler::LogAdapter::new(log::LevelFilter::Info).with_error_reports(policy);
        if let Err(e) = adapter.install() {
            eprintln!("crasher: log adapter: {e}");
        }
        log::debug!("below the adapter's level: not recorded");
        log::info!("opening the ledger");
        for i in 0..3 {
            log::error!("ledger write failed (attempt {i})");
        }
        log::error!("ledger index corrupt");
        log::error!("ledger backup missing");
    }
    if tracing_errors {
        use tracing_subscriber::layer::SubscriberExt;
        let policy = crashmon_handler::ErrorReports { max_per_minute: 2, ..Default::default() };
        let layer = crashmon_handler::BreadcrumbLayer::new(tracing::Level::INFO).with_error_reports(policy);
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("opening the ledger");
            for i in 0..3 {
                tracing::error!(attempt = i, "ledger write failed");
            }
            tracing::error!("ledger index corrupt");
            tracing::error!("ledger backup missing");
        });
    }
    if report_errors > 0 || log_errors || tracing_errors {
        let s = crashmon_handler::stats();
        println!(
            "stats filtered_by_type={} sampled_out={} reported={} deduplicated={} rate_limited={}",
            s.filtered_by_type,
            s.sampled_out,
            s.error_events_reported,
            s.error_events_deduplicated,
            s.error_events_rate_limited
        );
        let _ = std::io::stdout().flush();
    }
    if request_dump {
        match crashmon_handler::request_dump("crasher: handled error before the crash") {
            Ok(id) => {
                println!("requested id={id}");
                if vfork_stuck {
                    println!("stuck-thread tracer={}", raw::stuck_thread_tracer());
                }
                // Whether the report is already listed when request_dump
                // returns (the database from $CRASHMON_DATABASE).
                if let Some(db) = std::env::var_os("CRASHMON_DATABASE") {
                    let listed = std::path::Path::new(&db).join("pending").join(format!("{id}.dmp")).is_file();
                    println!("requested listed={}", if listed { "yes" } else { "no" });
                }
            }
            Err(e) => println!("requested error={e}"),
        }
        let _ = std::io::stdout().flush();
    }
    let index = crashmon_demo::Kind::ALL.iter().position(|(_, k)| *k == kind).unwrap_or(0);
    KIND.store(index, std::sync::atomic::Ordering::SeqCst);
    EXTRA.store(extra.map_or(0, |i| i + 1), std::sync::atomic::Ordering::SeqCst);
    if fork_child_first {
        let (pid, signal) = raw::fork_and_wait(crash_selected);
        println!("child pid={pid} signal={}", signal.unwrap_or(0));
        let _ = std::io::stdout().flush();
    }
    // RELIABILITY A6: another thread crashes while the first crash is being
    // handled (it was started before, so nothing allocates at crash time).
    let go = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    if let Some(second) = second_crash {
        let go = std::sync::Arc::clone(&go);
        std::thread::spawn(move || {
            while !go.load(std::sync::atomic::Ordering::SeqCst) {
                std::hint::spin_loop();
            }
            let start = std::time::Instant::now();
            while start.elapsed() < Duration::from_millis(second_delay_ms) {
                std::hint::spin_loop();
            }
            crashmon_demo::crash(second);
        });
    }
    if alloc_lock_held {
        counting_alloc::hold_lock_forever();
    }
    go.store(true, std::sync::atomic::Ordering::SeqCst);
    match on.as_str() {
        "main" => crash_selected(),
        "thread" => {
            let _ = std::thread::Builder::new().name("crasher-thread".into()).spawn(crash_here).map(|h| h.join());
        }
        "pthread" => crashmon_demo::trigger::on_raw_pthread(crash_here),
        "small-pthread" => raw::on_small_pthread(crash_here, thread_alt_stack),
        // RELIABILITY A5: 100 idle threads, then 20 threads released at
        // once that all crash.
        "many" => {
            let start = std::sync::Arc::new(std::sync::Barrier::new(21));
            let idle: Vec<_> = (0..100)
                .map(|_| std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_secs(30))))
                .collect();
            let crashing: Vec<_> = (0..20)
                .map(|_| {
                    let start = std::sync::Arc::clone(&start);
                    std::thread::spawn(move || {
                        start.wait();
                        crashmon_demo::crash(kind);
                    })
                })
                .collect();
            start.wait();
            for t in crashing {
                let _ = t.join();
            }
            drop(idle);
        }
        other => {
            eprintln!("crasher: --on {other}: expected main, thread, pthread, small-pthread or many");
            std::process::exit(2);
        }
    }
    drop(guard);
    std::process::exit(crashmon_demo::FAILED_TO_CRASH);
}

/// Recurse until about `kib` KiB of stack are in use, then sleep there.
fn hold_stack(kib: usize, index: usize, running: std::sync::mpsc::Sender<(usize, libc::pid_t)>) {
    let page = std::hint::black_box([1u8; 1024]);
    if kib > 1 {
        hold_stack(kib - 1, index, running);
    } else {
        let _ = running.send((index, nix::unistd::gettid().as_raw()));
        drop(running);
        std::thread::sleep(Duration::from_secs(60));
    }
    std::hint::black_box(&page);
}
