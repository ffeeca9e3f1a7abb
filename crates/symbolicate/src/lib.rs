//! Offline symbolication of crashmon's minidumps.
//!
//! [`symbolicate_path`] reads a minidump written by the monitor
//! (`minidump-writer`), unwinds every thread with `minidump-processor`, and
//! names the frames. The result is a [`Report`] (serialisable, stored as
//! `report.json` next to the dump) that [`render_text`] turns into a
//! readable stack trace.
//!
//! * Each module's symbols are found by build id ([`Options`]): the binary
//!   at its path if it is the build that ran, a separate debug file
//!   (`.build-id`, `.gnu_debuglink`), Breakpad `.sym` trees, Breakpad
//!   symbol servers. A file of another build is never used; every module
//!   records where its symbols came from and what was tried
//!   ([`ModuleReport::symbol_source`], [`ModuleReport::symbol_misses`]).
//! * Names, lines and inlined frames come from a SymCache per module
//!   (symbolic-symcache), kept on disk per build id
//!   ([`Options::cache_dir`]), so the second report of a binary costs
//!   milliseconds. Names are demangled without parameters or Rust hashes;
//!   C names stay as in the symbol table (`_start`).
//! * Unwinding uses CFI (`.eh_frame` of the local binaries, `STACK CFI` of
//!   `.sym` files), then frame pointers and scanning; each frame's trust
//!   says which.
//! * Dumps of CPUs other than x86-64 and arm64 are refused with
//!   [`SymbolicateError::UnsupportedCpu`].
//!
//! Inlined functions get frames of their own (marked
//! [`FrameReport::inlined`]), innermost first, and each report carries a
//! crash [`Report::signature`] for grouping (see [`signature`]).
//! [`dumpsyms::write_sym`] writes a Breakpad `.sym` file of a binary.

mod buildid;
mod cache;
pub mod dumpsyms;
mod error;
mod locate;
mod process;
mod provider;
mod report;
mod server;
pub mod signature;
mod text;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use cache::{CACHE_ENV, DEFAULT_MAX_BYTES, default_cache_dir};
pub use error::SymbolicateError;
pub use provider::CacheStats;
pub use report::{
    CrashSummary, FrameReport, ModuleReport, Report, SymbolSource, SymbolStatus, SystemSummary, ThreadReport,
};
pub use text::render_text;

/// Version of the [`Report`] format ([`Report::schema_version`]).
pub const SCHEMA_VERSION: u32 = 1;

/// Options of [`symbolicate_path`]. The defaults are what crashmon uses.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// Report only the crashing thread (default: every thread).
    pub crashing_thread_only: bool,
    /// Directories searched for separate debug files
    /// (`<dir>/.build-id/xx/rest.debug`, `.gnu_debuglink` targets under
    /// `<dir>/<binary's directory>`). Default: `/usr/lib/debug`.
    pub debug_dirs: Vec<PathBuf>,
    /// Breakpad symbol trees (`<dir>/<debug file>/<DEBUG ID>/<debug file>.sym`),
    /// searched in order after the local binaries and debug files.
    pub symbol_dirs: Vec<PathBuf>,
    /// Breakpad symbol server base URLs, asked in order after
    /// [`Options::symbol_dirs`].
    pub symbol_servers: Vec<String>,
    /// Timeout of one symbol server request (default 20 s).
    pub server_timeout: Duration,
    /// The symbol cache directory (per-build symbol tables, downloaded
    /// `.sym` files); `None` disables it. Default: [`default_cache_dir`].
    pub cache_dir: Option<PathBuf>,
    /// Size bound of the symbol tables in the cache (least recently used
    /// removed first). Default: [`DEFAULT_MAX_BYTES`] (1 GiB).
    pub cache_max_bytes: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            crashing_thread_only: false,
            debug_dirs: vec![PathBuf::from("/usr/lib/debug")],
            symbol_dirs: Vec::new(),
            symbol_servers: Vec::new(),
            server_timeout: Duration::from_secs(20),
            cache_dir: default_cache_dir(),
            cache_max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// Read and symbolicate a minidump file.
///
/// Fails with a [`SymbolicateError`] naming the file and the problem if the
/// file cannot be read, is not a minidump, is truncated or damaged, or is of
/// an unsupported CPU. Missing or mismatched local binaries are not errors:
/// their frames stay unnamed and [`Report::modules`] says why.
pub fn symbolicate_path(dump: &Path, options: &Options) -> Result<Report, SymbolicateError> {
    process::symbolicate_path(dump, options).map(|(report, _)| report)
}

/// [`symbolicate_path`], also saying how the modules' symbol tables were
/// obtained (from the cache or built), for tests and benchmarks.
pub fn symbolicate_path_with_stats(dump: &Path, options: &Options) -> Result<(Report, CacheStats), SymbolicateError> {
    process::symbolicate_path(dump, options)
}
