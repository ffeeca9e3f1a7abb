//! The dispositions behind ours: what the app (or whoever came before us)
//! wants for each crash signal, kept so the signal path can chain to it and
//! restore it, and so that an app that sets a crash signal's disposition
//! after [`crate::install`] gets what it asked for without removing ours.
//!
//! The table is written in normal context only (install, uninstall,
//! [`sigaction`]/[`signal`] called by an interposing library, [`rearm`]),
//! with every signal blocked and a writers-only spin lock held, and read by
//! the signal path without any lock: a sequence counter (seqlock) over
//! atomics, read with a bounded number of retries.
//!
//! Our own calls go to the *real* `sigaction`, found once with
//! `dlsym(RTLD_NEXT)` in normal context, because a library that interposes
//! `sigaction` (libcrashmon.so) would otherwise call itself.
#![allow(unsafe_code)]

use core::mem::size_of;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence};

use libc::c_int;

use crate::{SIGNALS, sys};

/// Whether our handlers are installed (set and cleared under the writer lock).
pub(crate) static HANDLERS_ACTIVE: AtomicBool = AtomicBool::new(false);

const MASK_WORDS: usize = size_of::<libc::sigset_t>() / size_of::<u64>();
const _: () = assert!(size_of::<libc::sigset_t>() == MASK_WORDS * size_of::<u64>());

/// One saved `struct sigaction`, as atomics.
struct Slot {
    handler: AtomicUsize,
    flags: AtomicI32,
    mask: [AtomicU64; MASK_WORDS],
    /// Set by the app through the interposition after [`crate::install`]
    /// (see [`Origin`]).
    late: AtomicBool,
}

impl Slot {
    const fn new() -> Slot {
        Slot {
            handler: AtomicUsize::new(libc::SIG_DFL),
            flags: AtomicI32::new(0),
            mask: [const { AtomicU64::new(0) }; MASK_WORDS],
            late: AtomicBool::new(false),
        }
    }
}

/// Where a saved action came from, which decides who sees a fault first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// There before [`crate::install`], or taken over by [`rearm`]: our
    /// dump comes first, then this handler (Breakpad/Crashpad order).
    Before,
    /// Set through the interposed [`sigaction`]/[`signal`] after install:
    /// the handler of a runtime that recovers from its own faults (a JVM,
    /// a GC's guard pages, a wasm runtime, a `sigsetjmp` probe) runs first
    /// for kernel-generated faults, as it would without us; we dump only if
    /// it gives up (resets to `SIG_DFL`, aborts, raises, exits).
    Late,
}

/// A saved action and its [`Origin`].
#[derive(Clone, Copy)]
pub(crate) struct Saved {
    pub(crate) action: libc::sigaction,
    pub(crate) origin: Origin,
}

impl Saved {
    /// Whether the action is a function (not `SIG_DFL`/`SIG_IGN`).
    pub(crate) fn is_function(&self) -> bool {
        let h = self.action.sa_sigaction;
        h != libc::SIG_DFL && h != libc::SIG_IGN
    }
}

static SLOTS: [Slot; SIGNALS.len()] = [const { Slot::new() }; SIGNALS.len()];
/// The handlers that were there when we installed: an app that restores
/// one of them (after replacing it for a while) gets back the order it had
/// ([`Origin::Before`]), not the order of handlers set after install.
static ORIGINAL: [AtomicUsize; SIGNALS.len()] = [const { AtomicUsize::new(libc::SIG_DFL) }; SIGNALS.len()];
/// Odd while a writer is changing `SLOTS`.
static SEQ: AtomicU32 = AtomicU32::new(0);
/// Writers-only lock (never taken on the signal path).
static WRITER: AtomicBool = AtomicBool::new(false);

pub(crate) fn index(sig: c_int) -> Option<usize> {
    SIGNALS.iter().position(|&s| s == sig)
}

fn mask_words(set: &libc::sigset_t) -> [u64; MASK_WORDS] {
    // SAFETY: sigset_t is plain data of exactly MASK_WORDS u64s (checked at
    // compile time above) and at least as aligned as u64.
    unsafe { core::ptr::read_unaligned((set as *const libc::sigset_t).cast::<[u64; MASK_WORDS]>()) }
}

fn mask_from_words(words: &[u64; MASK_WORDS]) -> libc::sigset_t {
    // SAFETY: as in `mask_words`; every bit pattern is a valid sigset_t.
    unsafe { core::ptr::read_unaligned((words as *const [u64; MASK_WORDS]).cast::<libc::sigset_t>()) }
}

fn zeroed_action() -> libc::sigaction {
    // SAFETY: struct sigaction is plain data; all zeroes is SIG_DFL, no
    // flags, empty mask.
    unsafe { core::mem::zeroed() }
}

/// Read the saved action of `SIGNALS[i]`. Signal-safe, lock-free: retries
/// while a writer is active, at most a bounded number of times (a writer
/// never blocks, so this only matters if one died mid-write).
pub(crate) fn load(i: usize) -> libc::sigaction {
    load_saved(i).action
}

/// [`load`] with the action's [`Origin`].
pub(crate) fn load_saved(i: usize) -> Saved {
    let slot = &SLOTS[i];
    let mut action = zeroed_action();
    let mut late = false;
    for _ in 0..10_000 {
        let before = SEQ.load(Ordering::Acquire);
        if before % 2 == 1 {
            core::hint::spin_loop();
            continue;
        }
        action.sa_sigaction = slot.handler.load(Ordering::Relaxed);
        action.sa_flags = slot.flags.load(Ordering::Relaxed);
        let mut words = [0u64; MASK_WORDS];
        for (w, a) in words.iter_mut().zip(&slot.mask) {
            *w = a.load(Ordering::Relaxed);
        }
        action.sa_mask = mask_from_words(&words);
        late = slot.late.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        if SEQ.load(Ordering::Relaxed) == before {
            break;
        }
    }
    Saved { action, origin: if late { Origin::Late } else { Origin::Before } }
}

/// Held while the table (and the real dispositions) change: every signal
/// blocked on this thread, the writer lock taken.
pub(crate) struct WriteGuard {
    mask: libc::sigset_t,
}

impl WriteGuard {
    pub(crate) fn lock() -> WriteGuard {
        let mask = sys::block_all();
        while WRITER.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            core::hint::spin_loop();
        }
        WriteGuard { mask }
    }

    /// [`WriteGuard::lock`] for the signal path: gives up (None) after a
    /// bounded number of tries. The holder is always another thread (a
    /// writer blocks every signal on its own thread and cannot fault while
    /// holding the lock), so this only waits for its few stores.
    pub(crate) fn try_lock() -> Option<WriteGuard> {
        let mask = sys::block_all();
        for _ in 0..100_000 {
            if WRITER.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                return Some(WriteGuard { mask });
            }
            core::hint::spin_loop();
        }
        sys::set_mask(&mask);
        None
    }

    /// Save `action` as the one behind ours for `SIGNALS[i]`.
    pub(crate) fn store(&self, i: usize, action: &libc::sigaction, origin: Origin) {
        let slot = &SLOTS[i];
        SEQ.fetch_add(1, Ordering::AcqRel);
        fence(Ordering::Release);
        slot.handler.store(action.sa_sigaction, Ordering::Relaxed);
        slot.flags.store(action.sa_flags, Ordering::Relaxed);
        for (a, w) in slot.mask.iter().zip(mask_words(&action.sa_mask)) {
            a.store(w, Ordering::Relaxed);
        }
        slot.late.store(origin == Origin::Late, Ordering::Relaxed);
        SEQ.fetch_add(1, Ordering::Release);
    }
}

/// `SA_RESETHAND` of a handler we call ourselves: the kernel resets the
/// disposition on entry to a handler with that flag, so when we run such a
/// saved handler first we reset its slot to `SIG_DFL` (if it still holds
/// `handler`), and a handler that re-installs itself with `signal()` puts
/// itself back. Signal path: bounded, returns false if the writer lock
/// stayed taken.
pub(crate) fn reset_one_shot(i: usize, handler: usize) -> bool {
    let Some(guard) = WriteGuard::try_lock() else { return false };
    if load(i).sa_sigaction == handler {
        guard.store(i, &zeroed_action(), Origin::Before);
    }
    true
}

impl Drop for WriteGuard {
    fn drop(&mut self) {
        WRITER.store(false, Ordering::Release);
        sys::set_mask(&self.mask);
    }
}

type SigactionFn = unsafe extern "C" fn(c_int, *const libc::sigaction, *mut libc::sigaction) -> c_int;
static REAL_SIGACTION: AtomicUsize = AtomicUsize::new(0);

/// Find the real `sigaction` (the next one after the object this crate is
/// linked into). Normal context only (`dlsym` is not signal-safe); called by
/// [`crate::install`] and by an interposing library's constructor.
pub fn resolve_real_sigaction() {
    if REAL_SIGACTION.load(Ordering::Acquire) != 0 {
        return;
    }
    // SAFETY: dlsym with a valid NUL-terminated name.
    let mut f = unsafe { libc::dlsym(libc::RTLD_NEXT, c"sigaction".as_ptr()) } as usize;
    if f == 0 {
        // glibc's other name for it, which no interposer defines.
        // SAFETY: as above.
        f = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"__sigaction".as_ptr()) } as usize;
    }
    if f != 0 {
        REAL_SIGACTION.store(f, Ordering::Release);
    }
}

/// The real `sigaction(2)`, bypassing any interposition. If it was not
/// resolved yet (only possible before [`crate::install`], so never on our
/// signal path) it is resolved now; if `dlsym` finds neither `sigaction`
/// after us nor glibc's `__sigaction` (a fully static binary, where no
/// interposition exists either) this calls the `sigaction` symbol.
///
/// # Safety
/// The contract of `sigaction(2)`: `act`/`old` are NULL or valid.
pub unsafe fn real_sigaction(sig: c_int, act: *const libc::sigaction, old: *mut libc::sigaction) -> c_int {
    let mut f = REAL_SIGACTION.load(Ordering::Acquire);
    if f == 0 {
        resolve_real_sigaction();
        f = REAL_SIGACTION.load(Ordering::Acquire);
    }
    if f == 0 {
        // SAFETY: per the contract.
        return unsafe { libc::sigaction(sig, act, old) };
    }
    // SAFETY: `f` is the address of libc's sigaction, whose signature is
    // `SigactionFn`; the arguments are per the contract.
    unsafe { core::mem::transmute::<usize, SigactionFn>(f)(sig, act, old) }
}

/// Install `ours` for every crash signal, saving what was there.
pub(crate) fn install_all(ours: &libc::sigaction) -> Result<(), (c_int, i32)> {
    resolve_real_sigaction();
    static ATFORK: AtomicBool = AtomicBool::new(false);
    if !ATFORK.swap(true, Ordering::SeqCst) {
        // SAFETY: registers a child handler that only touches atomics.
        unsafe { libc::pthread_atfork(None, None, Some(release_writer_after_fork)) };
    }
    let guard = WriteGuard::lock();
    let mut old = [zeroed_action(); SIGNALS.len()];
    for (i, &sig) in SIGNALS.iter().enumerate() {
        // SAFETY: valid pointers.
        if unsafe { real_sigaction(sig, ours, &mut old[i]) } != 0 {
            let errno = sys::errno();
            for (j, &prev) in SIGNALS.iter().enumerate().take(i) {
                // SAFETY: valid pointers; puts back what was there.
                unsafe { real_sigaction(prev, &old[j], core::ptr::null_mut()) };
            }
            return Err((sig, errno));
        }
    }
    for (i, action) in old.iter().enumerate() {
        guard.store(i, action, Origin::Before);
        ORIGINAL[i].store(action.sa_sigaction, Ordering::Relaxed);
    }
    HANDLERS_ACTIVE.store(true, Ordering::SeqCst);
    Ok(())
}

/// In a child forked while another thread of the parent held the writer
/// lock (that thread does not exist in the child): release it, and end the
/// half-made update, so the child's first `sigaction` does not spin forever.
extern "C" fn release_writer_after_fork() {
    if SEQ.load(Ordering::Relaxed) % 2 == 1 {
        SEQ.fetch_add(1, Ordering::Release);
    }
    WRITER.store(false, Ordering::Release);
}

/// The crash path gives up its handlers ([`restore_all`] follows): from now
/// on `sigaction`/`signal` calls of the app (e.g. its own handler resetting
/// to `SIG_DFL` before re-raising) go straight to the real `sigaction`, or
/// a declined crash would loop between the app's handler and a saved table
/// no one reads. Signal-safe (one atomic store).
pub(crate) fn deactivate() {
    HANDLERS_ACTIVE.store(false, Ordering::SeqCst);
}

/// Put the saved dispositions back and stop interposing.
pub(crate) fn uninstall_all() {
    let _guard = WriteGuard::lock();
    if HANDLERS_ACTIVE.swap(false, Ordering::SeqCst) {
        restore_all();
    }
}

/// Make the saved dispositions the real ones. Signal-safe (no lock).
pub(crate) fn restore_all() {
    for (i, &sig) in SIGNALS.iter().enumerate() {
        let action = load(i);
        // SAFETY: a valid action; sigaction is async-signal-safe.
        unsafe { real_sigaction(sig, &action, core::ptr::null_mut()) };
    }
}

/// Set the default action for `sig`. Signal-safe.
pub(crate) fn set_default(sig: c_int) {
    let action = zeroed_action();
    // SAFETY: a zeroed sigaction is SIG_DFL; sigaction is async-signal-safe.
    unsafe { real_sigaction(sig, &action, core::ptr::null_mut()) };
}

/// Whether [`sigaction`]/[`signal`] keep crash signals for us (see
/// [`set_interposition`]).
static INTERPOSE: AtomicBool = AtomicBool::new(true);

/// Turn the rules of [`sigaction`]/[`signal`] off (`false`: every call goes
/// straight to the real `sigaction`, so an app that sets a crash signal's
/// disposition after install takes that signal from us) or on again. For
/// programs that use a crash signal in normal operation (a JVM, a garbage
/// collector or a wasm runtime handling its own guard-page faults), which
/// must see those faults first.
pub fn set_interposition(enabled: bool) {
    INTERPOSE.store(enabled, Ordering::SeqCst);
}

/// `sigaction(2)` for a library that interposes it (libcrashmon.so).
///
/// While crashmon's handlers are installed, for a crash signal
/// ([`SIGNALS`]) the new action is saved as the one behind ours (a function
/// runs first for kernel-generated signals, see [`Origin::Late`], and after
/// our dump for the others; it takes over when we decline; `SIG_DFL` still ends the
/// process by the signal; `SIG_IGN` keeps ignoring signals sent by a
/// process and gives up on kernel-generated faults, which the kernel would
/// not let it ignore) and the previous saved action is returned, so the app
/// sees the dispositions it set. Our handler stays installed. Anything else
/// goes to the real `sigaction`.
///
/// # Safety
/// The contract of `sigaction(2)`: `act`/`old` are NULL or valid.
pub unsafe fn sigaction(sig: c_int, act: *const libc::sigaction, old: *mut libc::sigaction) -> c_int {
    let Some(i) = index(sig).filter(|_| INTERPOSE.load(Ordering::SeqCst)) else {
        // SAFETY: per the contract.
        return unsafe { real_sigaction(sig, act, old) };
    };
    let guard = WriteGuard::lock();
    if !HANDLERS_ACTIVE.load(Ordering::SeqCst) {
        // SAFETY: per the contract.
        return unsafe { real_sigaction(sig, act, old) };
    }
    let previous = load(i);
    if !act.is_null() {
        // SAFETY: per the contract, `act` is valid.
        let act = unsafe { &*act };
        let h = act.sa_sigaction;
        let origin = if h == libc::SIG_DFL || h == libc::SIG_IGN || h == ORIGINAL[i].load(Ordering::Relaxed) {
            Origin::Before
        } else {
            Origin::Late
        };
        guard.store(i, act, origin);
    }
    if !old.is_null() {
        // SAFETY: per the contract, `old` is valid for writing.
        unsafe { old.write(previous) };
    }
    0
}

/// Which `signal()` semantics to emulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalFlavor {
    /// `signal`/`bsd_signal` (glibc's default): `SA_RESTART`, the signal
    /// blocked in its handler.
    Bsd,
    /// `sysv_signal`: `SA_RESETHAND | SA_NODEFER`.
    SysV,
}

/// `signal()` for a library that interposes it, built on [`sigaction`]
/// (the same rules for crash signals). Returns the previous handler or
/// `SIG_ERR` (errno set).
///
/// # Safety
/// `handler` is `SIG_DFL`, `SIG_IGN` or a function the app wants to run
/// as a one-argument signal handler.
pub unsafe fn signal(sig: c_int, handler: libc::sighandler_t, flavor: SignalFlavor) -> libc::sighandler_t {
    if handler == libc::SIG_ERR {
        // SAFETY: the errno location is thread-local and valid.
        unsafe { *libc::__errno_location() = libc::EINVAL };
        return libc::SIG_ERR;
    }
    let mut act = zeroed_action();
    act.sa_sigaction = handler;
    match flavor {
        SignalFlavor::Bsd => {
            act.sa_flags = libc::SA_RESTART;
            // SAFETY: a valid sigset_t; an out-of-range `sig` is refused by
            // sigaction below.
            unsafe { libc::sigaddset(&mut act.sa_mask, sig) };
        }
        SignalFlavor::SysV => act.sa_flags = libc::SA_RESETHAND | libc::SA_NODEFER,
    }
    let mut old = zeroed_action();
    // SAFETY: valid pointers.
    if unsafe { sigaction(sig, &act, &mut old) } != 0 {
        return libc::SIG_ERR;
    }
    old.sa_sigaction
}

/// Put our handler back for every crash signal whose disposition someone
/// changed behind our back (a direct `sigaction` that no interposition
/// saw, e.g. from a Rust app): their action becomes the one behind ours.
/// Returns how many signals were re-armed (0 if not installed). Normal
/// context.
pub fn rearm(ours: &libc::sigaction) -> u32 {
    let guard = WriteGuard::lock();
    if !HANDLERS_ACTIVE.load(Ordering::SeqCst) {
        return 0;
    }
    let mut rearmed = 0;
    for (i, &sig) in SIGNALS.iter().enumerate() {
        let mut current = zeroed_action();
        // SAFETY: a query with a valid out pointer.
        if unsafe { real_sigaction(sig, core::ptr::null(), &mut current) } != 0 {
            continue;
        }
        if current.sa_sigaction == ours.sa_sigaction {
            continue;
        }
        guard.store(i, &current, Origin::Before);
        // SAFETY: valid pointers.
        if unsafe { real_sigaction(sig, ours, core::ptr::null_mut()) } == 0 {
            rearmed += 1;
        }
    }
    rearmed
}
