//! Crash signatures: a short string that groups reports of the same crash.
//!
//! The signature is the function names of the top (up to
//! [`SIGNATURE_FRAMES`]) meaningful frames of the crashing thread, joined
//! with `" | "`, e.g. `crashmon_demo::trigger::segv | crashmon_demo::crash |
//! crasher::main`. Frames of the machinery that turns a bug into a signal
//! (libc's `raise`/`abort`, Rust's panic runtime, our own handler) are the
//! same for every crash of a kind and are skipped: see
//! [`SIGNATURE_SKIP_PREFIXES`], [`SIGNATURE_SKIP_NAMES`] and
//! [`PANIC_ENTRY_PREFIXES`]. For a panic, the standard library helper that
//! panicked (`Option::unwrap`, slice indexing...) is skipped too, so the
//! signature starts at the code that called it. A frame without a function
//! name contributes `module+0xoffset`. If nothing is left, the signature is
//! the crash reason.
//!
//! Frames of the standard library where a signal crash really happened
//! (e.g. `core::ptr::write_volatile` in a debug build) are kept: the crash
//! is there.

use crate::report::{FrameReport, Report};

/// How many frames a signature names at most.
pub const SIGNATURE_FRAMES: usize = 3;

/// Function names (or prefixes of them) that are signal, abort, panic or
/// crash-handler machinery and never name the bug. A frame is skipped when
/// its function name (any `@VERSION` suffix ignored) starts with one of
/// these.
///
/// Entries that are whole libc function names (`raise`, `abort`,
/// `gsignal`, `pthread_kill`) only match that exact name.
pub const SIGNATURE_SKIP_PREFIXES: &[&str] = &[
    // glibc: raise() -> pthread_kill() -> __pthread_kill_implementation(),
    // abort(), the signal trampoline.
    "__GI_",
    "__pthread_kill",
    "__restore_rt",
    "__libc_signal_restore_set",
    // Rust panics and aborts.
    "core::panicking::",
    "core::panic::",
    "core::result::unwrap_failed",
    "core::option::unwrap_failed",
    "core::option::expect_failed",
    "std::panicking::",
    "std::panic::",
    "std::process::abort",
    "std::sys::backtrace::",
    "std::sys::pal::unix::abort_internal",
    "std::sys::abort_internal",
    "rust_panic",
    "__rust_start_panic",
    "__rustc::rust_begin_unwind",
    "__rustc::rust_panic",
    "rust_begin_unwind",
    "panic_abort::",
    "panic_unwind::",
    // The panic hook is called through a boxed closure.
    "<alloc::boxed::Box<F,A> as core::ops::function::Fn<Args>>::call",
    // Our own crash handler (and the crate it builds on).
    "crashmon_handler::",
    "crash_handler::",
];

/// Whole function names (matched exactly) that are skipped like
/// [`SIGNATURE_SKIP_PREFIXES`]: libc entry points whose names are too short
/// to be prefixes.
pub const SIGNATURE_SKIP_NAMES: &[&str] = &["raise", "abort", "gsignal", "pthread_kill", "kill", "tgkill"];

/// Prefixes of the functions through which every Rust panic passes. When
/// the crashing thread has such a frame, the crash is a panic (turned into
/// an abort) and everything above the outermost of them is the panic
/// runtime, whatever its names: the signature starts below it, at the code
/// that panicked.
pub const PANIC_ENTRY_PREFIXES: &[&str] = &[
    "core::panicking::",
    "std::panicking::begin_panic",
    "__rustc::rust_begin_unwind",
    "rust_begin_unwind",
    "core::result::unwrap_failed",
    "core::option::unwrap_failed",
    "core::option::expect_failed",
];

/// Whether `function` is crash machinery that a signature skips.
pub fn is_skipped_function(function: &str) -> bool {
    let name = strip_symbol_version(function);
    SIGNATURE_SKIP_NAMES.contains(&name) || SIGNATURE_SKIP_PREFIXES.iter().any(|p| name.starts_with(p))
}

fn is_panic_entry(function: &str) -> bool {
    let name = strip_symbol_version(function);
    PANIC_ENTRY_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// `pthread_kill@@GLIBC_2.34` -> `pthread_kill`.
fn strip_symbol_version(function: &str) -> &str {
    match function.find('@') {
        Some(i) if i > 0 => &function[..i],
        _ => function,
    }
}

/// How a frame appears in a signature.
fn frame_label(frame: &FrameReport) -> String {
    match (&frame.function, &frame.module, frame.module_offset) {
        (Some(function), _, _) => function.clone(),
        (None, Some(module), Some(offset)) => format!("{module}+{offset:#x}"),
        (None, _, _) => format!("{:#x}", frame.instruction),
    }
}

/// Whether a frame is code of the Rust standard library (`core`, `alloc`,
/// `std`): its source file is under the remapped `/rustc/<commit>/library/`
/// path, or, without a source file, its name says so.
pub fn is_std_library_frame(frame: &FrameReport) -> bool {
    match (&frame.file, &frame.function) {
        (Some(file), _) => file.starts_with("/rustc/") && file.contains("/library/"),
        (None, Some(function)) => STD_LIBRARY_PREFIXES.iter().any(|p| function.starts_with(p)),
        (None, None) => false,
    }
}

const STD_LIBRARY_PREFIXES: &[&str] = &["core::", "alloc::", "std::", "<core::", "<alloc::", "<std::"];

/// The signature of `frames` (the crashing thread's, innermost first);
/// `fallback` (the crash reason) if no frame is meaningful.
///
/// For a panic (a frame matching [`PANIC_ENTRY_PREFIXES`]) the signature
/// starts below the outermost panic entry, also skipping the standard
/// library frames right below it: those are the helper that panicked
/// (`Option::unwrap`, slice indexing, `RefCell::borrow_mut`...), called by
/// the code with the bug.
pub fn signature_of(frames: &[FrameReport], fallback: &str) -> String {
    let start = match frames.iter().rposition(|f| f.function.as_deref().is_some_and(is_panic_entry)) {
        Some(entry) => {
            let below = &frames[entry + 1..];
            entry + 1 + below.iter().take_while(|f| is_std_library_frame(f)).count().min(below.len().saturating_sub(1))
        }
        None => 0,
    };
    let parts: Vec<String> = frames[start..]
        .iter()
        .filter(|f| !f.function.as_deref().is_some_and(is_skipped_function))
        .take(SIGNATURE_FRAMES)
        .map(frame_label)
        .collect();
    if parts.is_empty() { fallback.to_owned() } else { parts.join(" | ") }
}

/// The signature of a report: [`signature_of`] its crashing thread, falling
/// back to the crash reason (or `"no crash"` for a dump without one).
pub fn report_signature(report: &Report) -> String {
    let fallback = report.crash.as_ref().map_or("no crash", |c| c.reason.as_str());
    let frames = report.crashing_thread.and_then(|i| report.threads.get(i)).map_or(&[][..], |t| &t.frames[..]);
    signature_of(frames, fallback)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: Option<&str>) -> FrameReport {
        FrameReport {
            index: 0,
            instruction: 0x7000_1234,
            module: Some("libfoo.so".into()),
            module_offset: Some(0x1234),
            function: function.map(str::to_owned),
            function_offset: None,
            file: None,
            line: None,
            inlined: false,
            trust: "cfi".into(),
        }
    }

    fn sig(names: &[Option<&str>]) -> String {
        let frames: Vec<_> = names.iter().map(|n| frame(*n)).collect();
        signature_of(&frames, "SIGABRT")
    }

    #[test]
    fn skips_abort_machinery() {
        let s = sig(&[
            Some("__pthread_kill_implementation"),
            Some("raise"),
            Some("abort"),
            Some("std::sys::pal::unix::abort_internal"),
            Some("std::process::abort"),
            Some("app::trigger::abort"),
            Some("app::crash"),
            Some("app::main"),
            Some("core::ops::function::FnOnce::call_once"),
        ]);
        assert_eq!(s, "app::trigger::abort | app::crash | app::main");
    }

    #[test]
    fn panic_starts_below_the_panic_runtime() {
        let s = sig(&[
            Some("__pthread_kill_implementation"),
            Some("raise"),
            Some("abort"),
            Some("std::process::abort"),
            Some("crashmon_handler::panic::hook"),
            Some("<alloc::boxed::Box<F,A> as core::ops::function::Fn<Args>>::call"),
            Some("std::panicking::panic_with_hook"),
            Some("std::panicking::begin_panic_handler::{{closure}}"),
            Some("std::sys::backtrace::__rust_end_short_backtrace"),
            Some("__rustc::rust_begin_unwind"),
            Some("core::panicking::panic_fmt"),
            Some("core::option::unwrap_failed"),
            Some("app::parse"),
            None,
        ]);
        assert_eq!(s, "app::parse | libfoo.so+0x1234");
    }

    #[test]
    fn panic_in_a_std_helper_blames_its_caller() {
        let std_frame = |name: &str| FrameReport {
            file: Some("/rustc/0123abcd/library/core/src/slice/index.rs".into()),
            ..frame(Some(name))
        };
        let frames = vec![
            frame(Some("__rustc::rust_begin_unwind")),
            frame(Some("core::panicking::panic_fmt")),
            frame(Some("core::panicking::panic_bounds_check")),
            std_frame("<usize as core::slice::index::SliceIndex<[T]>>::index"),
            frame(Some("<alloc::vec::Vec<T,A> as core::ops::index::Index<I>>::index")),
            frame(Some("app::parse")),
            std_frame("core::ops::function::FnOnce::call_once"),
        ];
        assert_eq!(signature_of(&frames, "SIGABRT"), "app::parse | core::ops::function::FnOnce::call_once");
    }

    #[test]
    fn symbol_versions_and_exact_names() {
        assert!(is_skipped_function("pthread_kill@@GLIBC_2.34"));
        assert!(is_skipped_function("raise"));
        // Only the exact libc names, not functions that start with them.
        assert!(!is_skipped_function("raise_error"));
        assert!(!is_skipped_function("abort_transaction"));
        assert!(!is_skipped_function("app::trigger::abort"));
    }

    #[test]
    fn falls_back_to_the_reason() {
        assert_eq!(sig(&[Some("raise"), Some("abort")]), "SIGABRT");
        assert_eq!(sig(&[]), "SIGABRT");
    }
}
