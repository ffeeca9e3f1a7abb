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
//!   ([`Options::cache_dir`], memory-mapped), so the second report of a
//!   binary costs milliseconds. A module whose table is not cached is
//!   looked up address by address in its ELF file, parsing only the
//!   compilation units that contain the addresses, with the same results
//!   as the table; its table is built afterwards
//!   ([`symbolicate_path_deferred`], [`PendingTables`]). Names are
//!   demangled without parameters or Rust hashes; C names stay as in the
//!   symbol table (`_start`).
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
mod lazy;
mod locate;
mod mapped;
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
    /// Build each module's whole symbol table before the report, instead
    /// of looking up the report's addresses lazily and leaving the tables
    /// to [`PendingTables::build_and_store`] (default: false). The names
    /// are the same either way.
    pub build_tables_first: bool,
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
            build_tables_first: false,
        }
    }
}

/// Read and symbolicate a minidump file.
///
/// Fails with a [`SymbolicateError`] naming the file and the problem if the
/// file cannot be read, is not a minidump, is truncated or damaged, or is of
/// an unsupported CPU. Missing or mismatched local binaries are not errors:
/// their frames stay unnamed and [`Report::modules`] says why.
///
/// Modules whose symbol table is not in the cache are looked up address by
/// address in their symbol files; their tables are not built (see
/// [`symbolicate_path_deferred`]).
///
/// Symbol files and cache entries are memory-mapped, not read. If a symbol
/// file is truncated while it is mapped (rewritten in place by `cp` onto the
/// existing file or `rsync --inplace`, rather than replaced by a new file),
/// reading it raises SIGBUS and the calling process dies. The monitor
/// therefore symbolicates in a child process (where that fails one report);
/// callers in their own process, such as `crashmon symbolicate` and
/// `crashmon show`, die with "Bus error" and should be rerun once the file
/// is complete.
pub fn symbolicate_path(dump: &Path, options: &Options) -> Result<Report, SymbolicateError> {
    process::symbolicate_path(dump, options).map(|(report, _, _)| report)
}

/// [`symbolicate_path`], also saying how the modules' symbol tables were
/// obtained (from the cache, built, or looked up lazily), for tests and
/// benchmarks.
pub fn symbolicate_path_with_stats(dump: &Path, options: &Options) -> Result<(Report, CacheStats), SymbolicateError> {
    process::symbolicate_path(dump, options).map(|(report, stats, _)| (report, stats))
}

/// [`symbolicate_path_with_stats`], also returning the symbol tables the
/// report did without: build and store them with
/// [`PendingTables::build_and_store`] once the report is written, so the
/// next report of the same binaries reads them from the cache while this
/// one never waited for them. Symbol files are memory-mapped as in
/// [`symbolicate_path`] (and by [`PendingTables::build_and_store`]): a
/// file truncated meanwhile kills the process with SIGBUS.
pub fn symbolicate_path_deferred(
    dump: &Path,
    options: &Options,
) -> Result<(Report, CacheStats, PendingTables), SymbolicateError> {
    process::symbolicate_path(dump, options)
}

/// Symbol tables of modules that a report looked up lazily, to be built and
/// stored in the symbol cache after the report is out.
#[derive(Debug, Default)]
pub struct PendingTables {
    cache: Option<cache::SymbolCache>,
    entries: Vec<(locate::SymbolFile, String)>,
}

impl PendingTables {
    /// Number of tables to build.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is nothing to build.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Builds each table and stores it in the cache (skipping any that
    /// another process stored or is building meanwhile). Returns how many
    /// were stored; a file that cannot be read is logged and skipped.
    ///
    /// A failed build (symbolic stops at the first DWARF error in any unit,
    /// while the lazy lookup reads only the units it needs) leaves a marker
    /// in the cache: that table is not tried again for a day, so every
    /// report of the binary keeps using the lazy lookup instead of burning
    /// seconds of CPU on a build that fails again.
    pub fn build_and_store(self) -> usize {
        let Some(cache) = self.cache else { return 0 };
        let mut stored = 0;
        for (file, key) in self.entries {
            if cache.contains(&key) {
                continue;
            }
            if cache.failed_recently(&key) {
                tracing::debug!(key, "building this symbol table failed recently; not trying again yet");
                continue;
            }
            let Some(_lock) = cache.build_lock(&key) else {
                tracing::debug!(key, "another process is building this symbol table");
                continue;
            };
            // Stored, or failed, by the process that held the lock before.
            if cache.contains(&key) || cache.failed_recently(&key) {
                continue;
            }
            let started = std::time::Instant::now();
            match provider::build_symcache(&file) {
                Ok(bytes) => {
                    cache.store(&key, &bytes);
                    stored += 1;
                    tracing::debug!(
                        file = %file.path().display(),
                        ms = started.elapsed().as_millis() as u64,
                        bytes = bytes.len(),
                        "stored a symbol table for the next report"
                    );
                }
                Err(e) => {
                    tracing::warn!(file = %file.path().display(), "cannot build its symbol table: {e}");
                    cache.record_failure(&key, &e);
                }
            }
        }
        stored
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table whose build failed is not built again after every report of
    /// its binary, only once its failure marker has expired.
    #[test]
    fn failed_table_builds_are_not_retried_until_the_marker_expires() {
        let dir = tempfile::tempdir().unwrap();
        let cache = cache::SymbolCache::new(&dir.path().join("cache"), DEFAULT_MAX_BYTES);
        let sym = dir.path().join("t.sym");
        let pending = || PendingTables {
            cache: Some(cache.clone()),
            entries: vec![(locate::SymbolFile::Breakpad(sym.clone()), "k".to_owned())],
        };
        std::fs::write(&sym, b"not a symbol file").unwrap();
        assert_eq!(pending().build_and_store(), 0);
        assert!(cache.failed_recently("k"));
        // The file is readable now, but the failure is recent: not built.
        std::fs::write(
            &sym,
            b"MODULE Linux x86_64 0123456789ABCDEF0123456789ABCDEF0 t\nFILE 0 a.c\nFUNC 1000 10 0 f\n1000 10 7 0\n",
        )
        .unwrap();
        assert_eq!(pending().build_and_store(), 0);
        assert!(!cache.contains("k"));
        // Once the marker is a day old, the table is built again.
        let marker = dir.path().join("cache/symcache/.failed-k");
        let old = std::time::SystemTime::now() - cache::FAILURE_RETRY - Duration::from_secs(1);
        std::fs::File::options().append(true).open(&marker).unwrap().set_modified(old).unwrap();
        assert_eq!(pending().build_and_store(), 1);
        assert!(cache.contains("k"));
        // Storing trimmed the expired marker.
        assert!(!marker.exists());
    }
}
