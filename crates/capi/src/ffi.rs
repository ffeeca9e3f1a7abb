//! The exported C functions and the preload constructor: pointer handling
//! only, everything else is in the safe functions of the crate root.
#![allow(unsafe_code)]

use std::ffi::{CStr, c_char, c_int, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::code;

/// Borrow a C string as UTF-8; `None` for NULL or invalid UTF-8.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that outlives the
/// returned borrow.
unsafe fn str_arg<'a>(p: *const c_char) -> Option<&'a str> {
    if p.is_null() {
        return None;
    }
    // SAFETY: per the contract.
    unsafe { CStr::from_ptr(p) }.to_str().ok()
}

/// See `crashmon.h`.
///
/// # Safety
/// `database` is NULL or a valid NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn crashmon_init(database: *const c_char) -> i32 {
    if database.is_null() {
        return crate::init(None);
    }
    // SAFETY: non-NULL, and the caller promises a C string.
    match unsafe { str_arg(database) } {
        Some(db) => crate::init(Some(db)),
        None => crate::fail(code::INVALID, "database is not UTF-8"),
    }
}

/// See `crashmon.h`.
///
/// # Safety
/// `key` and `value` are valid NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn crashmon_annotate(key: *const c_char, value: *const c_char) -> i32 {
    // SAFETY: the caller promises C strings (or NULL, which we refuse).
    match unsafe { (str_arg(key), str_arg(value)) } {
        (Some(k), Some(v)) => crate::annotate(k, v),
        _ => crate::fail(code::INVALID, "key and value must be non-NULL UTF-8 strings"),
    }
}

/// See `crashmon.h`.
///
/// # Safety
/// `category` and `message` are valid NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn crashmon_breadcrumb(level: c_int, category: *const c_char, message: *const c_char) -> i32 {
    // SAFETY: the caller promises C strings (or NULL, which we refuse).
    match unsafe { (str_arg(category), str_arg(message)) } {
        (Some(c), Some(m)) => crate::breadcrumb(level, c, m),
        _ => crate::fail(code::INVALID, "category and message must be non-NULL UTF-8 strings"),
    }
}

/// See `crashmon.h`.
///
/// # Safety
/// `reason` is a valid NUL-terminated string; `report_id` is NULL or points
/// to at least 37 writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn crashmon_request_dump(reason: *const c_char, report_id: *mut c_char) -> i32 {
    // SAFETY: the caller promises a C string (or NULL, which we refuse).
    let Some(reason) = (unsafe { str_arg(reason) }) else {
        return crate::fail(code::INVALID, "reason must be a non-NULL UTF-8 string");
    };
    match crate::request_dump(reason) {
        Ok(id) => {
            if !report_id.is_null() {
                let bytes = id.as_bytes();
                let n = bytes.len().min(36);
                // SAFETY: the caller provides 37 bytes; we write n <= 36 and
                // a NUL.
                unsafe {
                    std::ptr::copy_nonoverlapping(bytes.as_ptr().cast::<c_char>(), report_id, n);
                    *report_id.add(n) = 0;
                }
            }
            code::OK
        }
        Err(rc) => rc,
    }
}

/// See `crashmon.h`.
#[unsafe(no_mangle)]
pub extern "C" fn crashmon_shutdown() {
    crate::shutdown();
}

/// See `crashmon.h`.
#[unsafe(no_mangle)]
pub extern "C" fn crashmon_set_signal_interposition(enabled: c_int) {
    crashmon_handler_signal::set_interposition(enabled != 0);
}

/// See `crashmon.h`.
///
/// # Safety
/// `handler` is NULL or an async-signal-safe function with the signature
/// the header gives.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn crashmon_set_first_chance_handler(handler: Option<crashmon_handler::FirstChanceHandler>) {
    // SAFETY: the caller's promise, per the same contract.
    unsafe { crashmon_handler::set_first_chance_handler(handler) };
}

/// See `crashmon.h`.
#[unsafe(no_mangle)]
pub extern "C" fn crashmon_last_error() -> *const c_char {
    // The CString lives in a thread-local until the next call on this
    // thread, as the header documents.
    crate::LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// Runs when the library is loaded (`LD_PRELOAD` by `crashmon run`).
extern "C" fn preload_constructor() {
    // Before anything can call the interposed `sigaction` below: find
    // libc's (dlsym is not signal-safe, so not later).
    crashmon_handler_signal::resolve_real_sigaction();
    // And the real exit and jump functions, which are called from signal
    // handlers.
    resolve_exit_and_jump_functions();
    if std::env::var_os(crate::INTERPOSE_SIGNALS_ENV).is_some_and(|v| v == "0") {
        crashmon_handler_signal::set_interposition(false);
    }
    if std::env::var_os(crate::PRELOAD_ENV).is_none_or(|v| v != "1") {
        return;
    }
    // SAFETY: a library constructor runs before the program's main, while
    // the process has a single thread: nothing reads the environment
    // concurrently.
    unsafe { std::env::remove_var(crate::PRELOAD_ENV) };
    crate::preload();
}

/// Registers [`preload_constructor`] to run at load time.
#[used]
// SAFETY: .init_array holds pointers to functions the loader calls with no
// arguments; ours has that signature.
#[unsafe(link_section = ".init_array")]
static PRELOAD: extern "C" fn() = preload_constructor;

/// The start routine of a thread, as C passes it to `pthread_create`. It may
/// unwind (C++ exceptions, `pthread_exit`'s forced unwind).
type StartRoutine = extern "C-unwind" fn(*mut c_void) -> *mut c_void;
type PthreadCreate =
    unsafe extern "C" fn(*mut libc::pthread_t, *const libc::pthread_attr_t, StartRoutine, *mut c_void) -> c_int;

/// The next definition of `name` in the lookup order (libc's), found once
/// and kept in `cache`; never `ours` (our own interposing definition, which
/// `RTLD_NEXT` can return in a static link).
fn next_symbol(name: &std::ffi::CStr, ours: usize, cache: &AtomicUsize) -> Option<usize> {
    let mut f = cache.load(Ordering::Acquire);
    if f == 0 {
        // SAFETY: dlsym with a valid NUL-terminated name.
        f = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) } as usize;
        if f == 0 || f == ours {
            return None;
        }
        cache.store(f, Ordering::Release);
    }
    Some(f)
}

/// The next `pthread_create` in the lookup order (libc's), found once.
fn real_pthread_create() -> Option<PthreadCreate> {
    static REAL: AtomicUsize = AtomicUsize::new(0);
    let f = next_symbol(c"pthread_create", pthread_create as PthreadCreate as usize, &REAL)?;
    // SAFETY: `f` is the address of libc's pthread_create, whose signature
    // is `PthreadCreate`.
    Some(unsafe { std::mem::transmute::<usize, PthreadCreate>(f) })
}

/// What the trampoline needs to start the app's thread.
struct ThreadStart {
    start: StartRoutine,
    arg: *mut c_void,
}

/// Runs first on every thread created through [`pthread_create`]: give the
/// thread an alternate signal stack (unmapped at thread exit), then run the
/// app's start routine. This frame holds nothing with a destructor, so a
/// forced unwind (`pthread_exit`) may pass through it.
extern "C-unwind" fn thread_trampoline(p: *mut c_void) -> *mut c_void {
    // SAFETY: `p` is the Box leaked by `pthread_create` below, handed to
    // exactly this one thread.
    let ThreadStart { start, arg } = *unsafe { Box::from_raw(p.cast::<ThreadStart>()) };
    // Best effort: without it the thread runs as it would have anyway.
    let _ = crashmon_handler::ensure_thread_alt_stack();
    start(arg)
}

/// Interposes libc's `pthread_create` (in `libcrashmon.so`, which programs
/// link or `crashmon run` preloads): every thread C code creates gets an
/// alternate signal stack, so a stack overflow on it is reported too.
///
/// # Safety
/// The contract of `pthread_create(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_create(
    thread: *mut libc::pthread_t,
    attr: *const libc::pthread_attr_t,
    start: StartRoutine,
    arg: *mut c_void,
) -> c_int {
    let Some(real) = real_pthread_create() else { return libc::EAGAIN };
    let boxed = Box::into_raw(Box::new(ThreadStart { start, arg }));
    // SAFETY: the caller's arguments, with our trampoline and its box.
    let rc = unsafe { real(thread, attr, thread_trampoline, boxed.cast()) };
    if rc != 0 {
        // SAFETY: the thread was not created, so the box is still ours.
        drop(unsafe { Box::from_raw(boxed) });
    }
    rc
}

/// Interposes libc's `sigaction` (in `libcrashmon.so`): while crashmon is
/// installed, a crash signal's new disposition becomes the one crashmon
/// chains to after its dump, and crashmon's handler stays; the app gets
/// back the disposition it set before (libsigchain-style). Every other
/// call goes to libc's. See `crashmon_handler_signal::sigaction`.
///
/// # Safety
/// The contract of `sigaction(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sigaction(sig: c_int, act: *const libc::sigaction, old: *mut libc::sigaction) -> c_int {
    // SAFETY: the caller's arguments, per the same contract.
    unsafe { crashmon_handler_signal::sigaction(sig, act, old) }
}

/// Interposes `signal` (BSD semantics, as glibc's) with the rules of
/// [`sigaction`].
///
/// # Safety
/// The contract of `signal(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn signal(sig: c_int, handler: libc::sighandler_t) -> libc::sighandler_t {
    // SAFETY: the caller's arguments, per the same contract.
    unsafe { crashmon_handler_signal::signal(sig, handler, crashmon_handler_signal::SignalFlavor::Bsd) }
}

/// Interposes `bsd_signal` (the same as `signal`).
///
/// # Safety
/// The contract of `signal(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bsd_signal(sig: c_int, handler: libc::sighandler_t) -> libc::sighandler_t {
    // SAFETY: the caller's arguments, per the same contract.
    unsafe { crashmon_handler_signal::signal(sig, handler, crashmon_handler_signal::SignalFlavor::Bsd) }
}

/// Interposes `sysv_signal` (`SA_RESETHAND | SA_NODEFER`).
///
/// # Safety
/// The contract of `sysv_signal(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sysv_signal(sig: c_int, handler: libc::sighandler_t) -> libc::sighandler_t {
    // SAFETY: the caller's arguments, per the same contract.
    unsafe { crashmon_handler_signal::signal(sig, handler, crashmon_handler_signal::SignalFlavor::SysV) }
}

/// Interposes `__sysv_signal`, which glibc's headers substitute for
/// `signal` in strict standard modes (`-std=c99` without `_DEFAULT_SOURCE`).
///
/// # Safety
/// The contract of `sysv_signal(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __sysv_signal(sig: c_int, handler: libc::sighandler_t) -> libc::sighandler_t {
    // SAFETY: the caller's arguments, per the same contract.
    unsafe { crashmon_handler_signal::signal(sig, handler, crashmon_handler_signal::SignalFlavor::SysV) }
}

/// The next definition of an exit-like or jump function, found once (at
/// load time, by the constructor, so never by `dlsym` in a signal handler).
macro_rules! next_fn {
    ($name:literal, $ty:ty, $ours:expr) => {{
        static REAL: AtomicUsize = AtomicUsize::new(0);
        next_symbol($name, $ours as $ty as usize, &REAL)
            // SAFETY: the address of libc's function of that name, whose
            // signature is `$ty`.
            .map(|f| unsafe { std::mem::transmute::<usize, $ty>(f) })
    }};
}

type ExitFn = unsafe extern "C" fn(c_int) -> !;
type JumpFn = unsafe extern "C" fn(*mut c_void, c_int) -> !;

fn real_exit() -> Option<ExitFn> {
    next_fn!(c"exit", ExitFn, exit)
}

fn real_underscore_exit() -> Option<ExitFn> {
    next_fn!(c"_exit", ExitFn, _exit)
}

fn real_longjmp() -> Option<JumpFn> {
    next_fn!(c"longjmp", JumpFn, longjmp)
}

fn real_underscore_longjmp() -> Option<JumpFn> {
    next_fn!(c"_longjmp", JumpFn, _longjmp)
}

fn real_siglongjmp() -> Option<JumpFn> {
    next_fn!(c"siglongjmp", JumpFn, siglongjmp)
}

fn real_longjmp_chk() -> Option<JumpFn> {
    next_fn!(c"__longjmp_chk", JumpFn, __longjmp_chk)
}

/// Resolve every function below while the program is still starting.
fn resolve_exit_and_jump_functions() {
    let _ = (real_exit(), real_underscore_exit());
    let _ = (real_longjmp(), real_underscore_longjmp(), real_siglongjmp(), real_longjmp_chk());
}

/// Interposes `exit`: a program's own crash-signal handler that gives up
/// on a fault by exiting still gets the fault reported first, and an exit
/// while another thread is being dumped waits for that dump (whose thread
/// then ends the process by its signal). Anything else exits as usual.
/// (`exit` is also hooked with `atexit`, for programs that link
/// `crashmon-handler` without this library.) Fully static programs cannot
/// link `libcrashmon.a`: libc.a's `exit`/`_exit` are strong symbols too,
/// and `dlsym`, which the interposition needs, does not work there.
///
/// # Safety
/// The contract of `exit(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn exit(status: c_int) -> ! {
    crashmon_handler_signal::report_before_exit();
    match real_exit() {
        // SAFETY: libc's exit with the caller's argument.
        Some(f) => unsafe { f(status) },
        // Unreachable in a dynamic link: end without atexit handlers
        // rather than recurse.
        None => exit_group(status),
    }
}

/// Interposes `_exit` (async-signal-safe, the usual way a crash handler
/// ends the process), like [`exit`].
///
/// # Safety
/// The contract of `_exit(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn _exit(status: c_int) -> ! {
    crashmon_handler_signal::report_before_exit();
    match real_underscore_exit() {
        // SAFETY: libc's _exit with the caller's argument.
        Some(f) => unsafe { f(status) },
        None => exit_group(status),
    }
}

/// Interposes `_Exit` (the same as `_exit`).
///
/// # Safety
/// The contract of `_Exit(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn _Exit(status: c_int) -> ! {
    // SAFETY: per the same contract.
    unsafe { _exit(status) }
}

fn exit_group(status: c_int) -> ! {
    loop {
        // SAFETY: exit_group takes a plain integer and does not return.
        unsafe { libc::syscall(libc::SYS_exit_group, status) };
    }
}

/// Jumps out of a handler that saw a fault before crashmon (a
/// `sigsetjmp` probe): forget that handler's record of the fault, then
/// jump. See `crashmon_handler_signal::leaving_handler`.
fn jump(real: Option<JumpFn>, env: *mut c_void, val: c_int) -> ! {
    crashmon_handler_signal::leaving_handler();
    match real {
        // SAFETY: libc's function with the caller's arguments.
        Some(f) => unsafe { f(env, val) },
        // No libc behind us (cannot happen in a dynamic link).
        None => std::process::abort(),
    }
}

/// Interposes `longjmp` (see [`jump`]).
///
/// # Safety
/// The contract of `longjmp(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn longjmp(env: *mut c_void, val: c_int) -> ! {
    jump(real_longjmp(), env, val)
}

/// Interposes `_longjmp` (see [`jump`]).
///
/// # Safety
/// The contract of `_longjmp(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn _longjmp(env: *mut c_void, val: c_int) -> ! {
    jump(real_underscore_longjmp(), env, val)
}

/// Interposes `siglongjmp` (see [`jump`]).
///
/// # Safety
/// The contract of `siglongjmp(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn siglongjmp(env: *mut c_void, val: c_int) -> ! {
    jump(real_siglongjmp(), env, val)
}

/// Interposes `__longjmp_chk` (what `longjmp` becomes with
/// `_FORTIFY_SOURCE`; see [`jump`]).
///
/// # Safety
/// The contract of `longjmp(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __longjmp_chk(env: *mut c_void, val: c_int) -> ! {
    jump(real_longjmp_chk(), env, val)
}
