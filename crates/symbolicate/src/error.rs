//! Errors of [`crate::symbolicate_path`].

use std::path::PathBuf;

/// Why a minidump could not be symbolicated. Each message names the file and
/// the problem, e.g. `/x/y.dmp is not a minidump: it does not start with the
/// MDMP signature`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SymbolicateError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The dump's path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a minidump at all.
    #[error("{} is not a minidump: {reason}", path.display())]
    NotMinidump {
        /// The dump's path.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The file is a minidump, but truncated or damaged.
    #[error("{} is a damaged minidump: {reason}", path.display())]
    Damaged {
        /// The dump's path.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The dump is of a CPU architecture the local unwinder does not support.
    #[error("cannot symbolicate {}: it is a dump of a {cpu} process; only amd64 and arm64 are supported", path.display())]
    UnsupportedCpu {
        /// The dump's path.
        path: PathBuf,
        /// The dump's CPU architecture, e.g. `x86`.
        cpu: String,
    },
    /// The async runtime that drives the processor could not be started.
    #[error("cannot symbolicate {}: cannot start the async runtime: {source}", path.display())]
    Runtime {
        /// The dump's path.
        path: PathBuf,
        /// The error starting it.
        #[source]
        source: std::io::Error,
    },
}
