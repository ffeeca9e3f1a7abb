//! The `<id>.json` metadata stored next to every dump.
//!
//! Every field that a report may lack is `#[serde(default)]`, so metadata
//! written by an older crashmon (or with fields left out) keeps parsing. The
//! only required fields are `id`, `captured_at_ms`, `pid` and `crash.kind`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::ReportId;
use crate::signals::{signal_code_name, signal_name};

/// The metadata schema version written by this crate.
pub const METADATA_SCHEMA_VERSION: u32 = 1;

fn schema_v1() -> u32 {
    METADATA_SCHEMA_VERSION
}

/// Everything known about one crash besides the dump itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// Schema version of this record ([`METADATA_SCHEMA_VERSION`]).
    #[serde(default = "schema_v1")]
    pub schema_version: u32,
    /// The report this metadata belongs to.
    pub id: ReportId,
    /// When the crash was captured, in milliseconds since the Unix epoch.
    pub captured_at_ms: u64,
    /// Process id of the crashed process.
    pub pid: i32,
    /// Executable of the crashed process, if known.
    #[serde(default)]
    pub exe: Option<PathBuf>,
    /// How the process crashed.
    pub crash: CrashInfo,
    /// Free-form key/value pairs supplied by the application.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// The application's most recent events before the report, oldest first.
    #[serde(default)]
    pub breadcrumbs: Vec<Breadcrumb>,
    /// Size of the dump file in bytes.
    #[serde(default)]
    pub dump_size: Option<u64>,
    /// Outcome of symbolication, once attempted.
    #[serde(default)]
    pub symbolication: Option<SymbolicationStatus>,
    /// Upload bookkeeping.
    #[serde(default)]
    pub upload: UploadState,
    /// Why the report is in `failed/`.
    #[serde(default)]
    pub failure: Option<String>,
    /// Files the application named, copied by the monitor at crash time into
    /// [`Database::attachments_dir`](crate::Database::attachments_dir).
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    /// The filter rule that kept this report from being uploaded, if any.
    /// A filtered report stays in the database (counted and listed), but no
    /// uploader sends it.
    #[serde(default)]
    pub filtered: Option<String>,
}

impl Metadata {
    /// Metadata with the required fields set and everything else empty.
    pub fn new(id: ReportId, captured_at_ms: u64, pid: i32, crash: CrashInfo) -> Metadata {
        Metadata {
            schema_version: METADATA_SCHEMA_VERSION,
            id,
            captured_at_ms,
            pid,
            exe: None,
            crash,
            annotations: BTreeMap::new(),
            breadcrumbs: Vec::new(),
            dump_size: None,
            symbolication: None,
            upload: UploadState::default(),
            failure: None,
            attachments: Vec::new(),
            filtered: None,
        }
    }
}

/// A file copied into the report at crash time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// File name inside the report's attachments directory (no `/`, no
    /// leading `.`), normally the base name of the application's file.
    pub name: String,
    /// Bytes copied.
    pub size: u64,
    /// The application's file was longer than the attachment size limit and
    /// only its last `size` bytes were copied.
    #[serde(default)]
    pub truncated: bool,
}

/// One recent event of the application (a log line, a user action).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breadcrumb {
    /// Unix time in milliseconds.
    pub timestamp_ms: u64,
    /// `trace`, `debug`, `info`, `warning` or `error`.
    pub level: String,
    /// Where it comes from (e.g. a log target).
    #[serde(default)]
    pub category: String,
    /// The text.
    pub message: String,
}

/// What kind of event produced the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CrashKind {
    /// A fatal signal (SIGSEGV, SIGABRT, ...).
    Signal,
    /// A Rust panic reported by the handler.
    Panic,
    /// The application asked for a dump without crashing.
    Requested,
}

/// Details of the crash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrashInfo {
    /// What kind of event this was.
    pub kind: CrashKind,
    /// Signal number, for [`CrashKind::Signal`].
    #[serde(default)]
    pub signal: Option<i32>,
    /// Signal name, e.g. `"SIGSEGV"`.
    #[serde(default)]
    pub signal_name: Option<String>,
    /// `si_code` of the signal.
    #[serde(default)]
    pub code: Option<i32>,
    /// Name of `si_code`, e.g. `"SEGV_MAPERR"`.
    #[serde(default)]
    pub code_name: Option<String>,
    /// Faulting address (`si_addr`), where meaningful.
    #[serde(default)]
    pub address: Option<u64>,
    /// The thread that crashed.
    #[serde(default)]
    pub tid: Option<i32>,
    /// Panic message or the reason given for a requested dump.
    #[serde(default)]
    pub message: Option<String>,
}

impl CrashInfo {
    /// A crash of `kind` with no details.
    pub fn new(kind: CrashKind) -> CrashInfo {
        CrashInfo {
            kind,
            signal: None,
            signal_name: None,
            code: None,
            code_name: None,
            address: None,
            tid: None,
            message: None,
        }
    }

    /// A [`CrashKind::Signal`] crash, with the signal and code names filled in
    /// from [`signal_name`] and [`signal_code_name`].
    pub fn from_signal(signo: i32, code: i32, address: Option<u64>, tid: Option<i32>) -> CrashInfo {
        CrashInfo {
            signal: Some(signo),
            signal_name: signal_name(signo).map(str::to_owned),
            code: Some(code),
            code_name: signal_code_name(signo, code).map(str::to_owned),
            address,
            tid,
            ..CrashInfo::new(CrashKind::Signal)
        }
    }
}

/// Outcome of symbolicating a dump.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum SymbolicationStatus {
    /// A report was produced (`<id>.report.json`).
    Ok,
    /// Symbolication gave up.
    Failed {
        /// Why.
        reason: String,
    },
}

/// Upload bookkeeping of a report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UploadState {
    /// Upload attempts made so far.
    pub attempts: u32,
    /// Earliest time of the next attempt, in Unix milliseconds.
    pub next_attempt_ms: Option<u64>,
    /// The id the server assigned, once uploaded.
    pub server_report_id: Option<String>,
    /// The error of the last failed attempt.
    pub last_error: Option<String>,
}
