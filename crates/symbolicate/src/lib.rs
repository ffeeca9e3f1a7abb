//! Offline symbolication of crashmon's minidumps.
//!
//! [`symbolicate_path`] reads a minidump written by the monitor
//! (`minidump-writer`), unwinds every thread with `minidump-processor`, and
//! names the frames from the binaries on this machine: DWARF, symbol tables
//! and CFI are read straight from the files the dump's module list names
//! (`minidump-unwind`'s debug-info provider), no symbol server or Breakpad
//! `.sym` files involved. The result is a [`Report`] (serialisable, stored
//! as `report.json` next to the dump) that [`render_text`] turns into a
//! readable stack trace.
//!
//! Two things are done on top of the provider:
//!
//! * Each module's local file is verified against the dump before it is
//!   used: its GNU build id must equal the module's code id in the dump (for
//!   a binary without a build id: the hash of its first code page that
//!   `minidump-writer` records instead). After a rebuild or an upgrade the
//!   file at the path is a different binary whose symbols would name the
//!   wrong functions; such modules are left unsymbolicated and reported as
//!   [`SymbolStatus::Mismatch`]. Every module records why it was or was not
//!   used ([`ModuleReport::symbols`]).
//! * Dumps of CPUs other than x86-64 and arm64, which the provider cannot
//!   unwind (it would panic), are refused with
//!   [`SymbolicateError::UnsupportedCpu`].
//!
//! Inlined functions get frames of their own (marked
//! [`FrameReport::inlined`]), innermost first, and each report carries a
//! crash [`Report::signature`] for grouping (see [`signature`]).
//!
//! Processing is driven by a current-thread tokio runtime created per call:
//! the debug-info provider's symbol loading (wholesym) uses tokio's file
//! system functions and panics without one.
//!
//! Function names come from wholesym already demangled (Rust hashes
//! dropped). Its demangler also drops one leading underscore from names it
//! cannot demangle (`__libc_read` -> `_libc_read`); that is undone for
//! names that still start with one, so C names with a single leading
//! underscore (`_start`) show without it.

mod buildid;
mod error;
mod process;
mod report;
pub mod signature;
mod text;

use std::path::Path;

pub use error::SymbolicateError;
pub use report::{CrashSummary, FrameReport, ModuleReport, Report, SymbolStatus, SystemSummary, ThreadReport};
pub use text::render_text;

/// Version of the [`Report`] format ([`Report::schema_version`]).
pub const SCHEMA_VERSION: u32 = 1;

/// Options of [`symbolicate_path`]. The defaults are what crashmon uses.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Options {
    /// Report only the crashing thread (default: every thread).
    pub crashing_thread_only: bool,
}

/// Read and symbolicate a minidump file.
///
/// Fails with a [`SymbolicateError`] naming the file and the problem if the
/// file cannot be read, is not a minidump, is truncated or damaged, or is of
/// an unsupported CPU. Missing or mismatched local binaries are not errors:
/// their frames stay unnamed and [`Report::modules`] says why.
pub fn symbolicate_path(dump: &Path, options: &Options) -> Result<Report, SymbolicateError> {
    process::symbolicate_path(dump, options)
}
