//! The report types: what a symbolicated minidump says, serialisable as
//! JSON (`report.json` in the database).

use serde::{Deserialize, Serialize};

/// A symbolicated minidump.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    /// Version of this report format, [`crate::SCHEMA_VERSION`] when written.
    pub schema_version: u32,
    /// The crash, `None` for a dump without an exception stream.
    pub crash: Option<CrashSummary>,
    /// The machine the dump was written on.
    pub system: SystemSummary,
    /// Index into [`Report::threads`] of the crashing (or dump-requesting)
    /// thread.
    pub crashing_thread: Option<usize>,
    /// Every thread in the dump (or only the crashing one, see
    /// [`crate::Options::crashing_thread_only`]), in dump order.
    pub threads: Vec<ThreadReport>,
    /// Every module (executable, shared library) mapped in the process.
    pub modules: Vec<ModuleReport>,
    /// A short crash signature for grouping crashes: the top meaningful
    /// functions of the crashing thread joined with `" | "` (see
    /// [`crate::signature`]).
    pub signature: String,
}

impl Report {
    /// Where the symbols of the module whose file name is `file_name`
    /// (e.g. `libc.so.6`) came from; `None` if there is no such module or
    /// it has no symbols.
    pub fn symbol_source_of(&self, file_name: &str) -> Option<SymbolSource> {
        self.modules
            .iter()
            .find(|m| std::path::Path::new(&m.code_file).file_name().is_some_and(|n| n == file_name))
            .and_then(|m| m.symbol_source)
    }
}

/// Why and where the process crashed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CrashSummary {
    /// The crash reason as a whole, e.g. `"SIGSEGV / SEGV_MAPERR"`.
    pub reason: String,
    /// The signal name, e.g. `"SIGSEGV"` (`None` if the reason is not a
    /// signal).
    pub signal: Option<String>,
    /// The signal code, e.g. `"SEGV_MAPERR"`, if the reason has one.
    pub code: Option<String>,
    /// The address the crash implicates: the faulting data address for
    /// memory errors, the instruction otherwise.
    pub address: u64,
    /// The thread the exception stream blames.
    pub tid: Option<u32>,
}

/// The machine (and operating system) the dump was written on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SystemSummary {
    /// Operating system, e.g. `"linux"`.
    pub os: String,
    /// Operating system version and build, e.g. `"0.0.0 Linux 6.8.0 ... x86_64"`.
    pub os_version: Option<String>,
    /// CPU architecture, e.g. `"amd64"`, `"arm64"`.
    pub cpu: String,
    /// Number of CPUs, if recorded.
    pub cpu_count: Option<u32>,
}

/// One thread and its stack.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ThreadReport {
    /// Thread id.
    pub tid: u32,
    /// Thread name, if recorded.
    pub name: Option<String>,
    /// Whether this is the crashing (or dump-requesting) thread.
    pub crashed: bool,
    /// The stack, innermost frame first, inlined frames expanded.
    pub frames: Vec<FrameReport>,
}

/// One frame of a stack: a physical frame, or a function inlined into one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FrameReport {
    /// Position in the flattened list (inlined frames expanded, innermost
    /// first).
    pub index: usize,
    /// Instruction address (for a caller frame: inside the call
    /// instruction, so it names the call's line).
    pub instruction: u64,
    /// File name (basename) of the module the instruction is in.
    pub module: Option<String>,
    /// Offset of the instruction in that module.
    pub module_offset: Option<u64>,
    /// Function name, demangled, without the Rust hash suffix.
    pub function: Option<String>,
    /// Offset of the instruction from the function's start (for an inlined
    /// frame: from the start of the physical function it was inlined into).
    pub function_offset: Option<u64>,
    /// Source file as recorded in the debug info.
    pub file: Option<String>,
    /// Source line (1-based).
    pub line: Option<u32>,
    /// `true` for a function inlined into the next physical frame.
    pub inlined: bool,
    /// How the frame was found: `"context"`, `"cfi"`, `"frame-pointer"`,
    /// `"scan"`, `"cfi-scan"`, `"prewalked"`, `"inline"` or `"none"`.
    pub trust: String,
}

/// One module mapped in the process, and whether its symbols were used.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModuleReport {
    /// Load address.
    pub base: u64,
    /// Size of the mapping.
    pub size: u64,
    /// Path of the file as the dump names it.
    pub code_file: String,
    /// Code identifier from the dump (for Linux: the ELF build id, hex).
    pub code_id: Option<String>,
    /// Breakpad-style debug identifier from the dump.
    pub debug_id: Option<String>,
    /// Whether symbols were found for the module (`loaded`), and if not,
    /// why the local file could not be used.
    pub symbols: SymbolStatus,
    /// Where the symbols came from, when `symbols` is `loaded`.
    #[serde(default)]
    pub symbol_source: Option<SymbolSource>,
    /// The file (or URL) the symbols were read from.
    #[serde(default)]
    pub symbol_file: Option<String>,
    /// Places that were tried and failed, with the reason (e.g. a symbol
    /// server that was unreachable), in lookup order.
    #[serde(default)]
    pub symbol_misses: Vec<String>,
}

/// Where a module's symbols came from.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum SymbolSource {
    /// The binary at the module's path (its build id matches the dump's).
    Binary,
    /// A separate debug file: `<debug dir>/.build-id/xx/rest.debug` or the
    /// binary's `.gnu_debuglink`, build id (and CRC) checked.
    DebugFile,
    /// A Breakpad `.sym` file in a `--symbols` directory.
    SymbolsDir,
    /// A Breakpad `.sym` file from a `--symbol-server` (or its on-disk cache).
    SymbolServer,
}

impl SymbolSource {
    /// The source as written in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            SymbolSource::Binary => "binary",
            SymbolSource::DebugFile => "debug-file",
            SymbolSource::SymbolsDir => "symbols-dir",
            SymbolSource::SymbolServer => "symbol-server",
        }
    }
}

impl std::fmt::Display for SymbolSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether symbols were found for a module; if not, what is wrong with the
/// local file named in the dump (see [`ModuleReport::symbol_source`] for
/// where found symbols came from).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum SymbolStatus {
    /// Symbols matching the dump's build were found and used (from the
    /// local file or another source, see [`ModuleReport::symbol_source`]).
    Loaded,
    /// No file at that path (or the dump names no real path, like
    /// `linux-gate.so`).
    Missing,
    /// The local file is a different build than the one that ran.
    Mismatch,
    /// The build cannot be verified: the dump records no build id for the
    /// module, or the local file has none to compare; not used.
    NoBuildId,
    /// The local file exists but could not be read or is not ELF.
    Unreadable,
}

impl SymbolStatus {
    /// The status as written in JSON: `"loaded"`, `"missing"`,
    /// `"mismatch"`, `"no-build-id"`, `"unreadable"`.
    pub fn as_str(self) -> &'static str {
        match self {
            SymbolStatus::Loaded => "loaded",
            SymbolStatus::Missing => "missing",
            SymbolStatus::Mismatch => "mismatch",
            SymbolStatus::NoBuildId => "no-build-id",
            SymbolStatus::Unreadable => "unreadable",
        }
    }

    /// A short explanation for people, e.g. for the text report.
    pub fn describe(self) -> &'static str {
        match self {
            SymbolStatus::Loaded => "symbols loaded",
            SymbolStatus::Missing => "file not found",
            SymbolStatus::Mismatch => "local file is a different build (build id differs)",
            SymbolStatus::NoBuildId => "no build id to verify the local file against",
            SymbolStatus::Unreadable => "local file could not be read as ELF",
        }
    }
}

impl std::fmt::Display for SymbolStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
