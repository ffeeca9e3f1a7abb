//! [`DbError`]: everything that can go wrong with the database.

use std::path::PathBuf;

use crate::{ReportId, ReportState};

/// An error of a database operation. Messages name the path or report
/// concerned and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// The database directory (or one of its subdirectories) is missing.
    #[error("database directory {} does not exist", .path.display())]
    NotFound {
        /// The missing directory.
        path: PathBuf,
    },
    /// The database directory is a symbolic link.
    #[error("database directory {} is a symlink; refusing to use it", .path.display())]
    Symlink {
        /// The link.
        path: PathBuf,
    },
    /// Something that must be a directory is not.
    #[error("{} is not a directory", .path.display())]
    NotADirectory {
        /// The offending path.
        path: PathBuf,
    },
    /// A database directory belongs to another user.
    #[error("{} is owned by uid {owner}, not by the current user (uid {uid}); refusing", .path.display())]
    WrongOwner {
        /// The directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Our effective uid.
        uid: u32,
    },
    /// A database directory is writable by others.
    #[error("{} is group- or world-writable (mode {mode:04o}); refusing", .path.display())]
    InsecureMode {
        /// The directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A file system operation failed.
    #[error("cannot {op} {}: {source}", .path.display())]
    Io {
        /// What was being done ("open", "create", "rename", ...).
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file of the database does not parse.
    #[error("{} is corrupt: {source}", .path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// No report has this id or id prefix.
    #[error("no report matches {query:?}")]
    NoSuchReport {
        /// The id or prefix looked for.
        query: String,
    },
    /// An id prefix matches more than one report.
    #[error("{query:?} matches {count} reports; give more of the id")]
    AmbiguousId {
        /// The prefix looked for.
        query: String,
        /// How many reports it matches.
        count: usize,
    },
    /// A query is neither a report id nor a usable id prefix.
    #[error("invalid report id {query:?}: {reason}")]
    InvalidQuery {
        /// The query.
        query: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A report cannot move between these states.
    #[error("cannot move report {id} from {from} to {to}")]
    InvalidTransition {
        /// The report.
        id: ReportId,
        /// Its current state.
        from: ReportState,
        /// The requested state.
        to: ReportState,
    },
    /// Metadata passed for one report carries the id of another.
    #[error("metadata for report {id} carries the id {metadata_id}")]
    IdMismatch {
        /// The report being updated.
        id: ReportId,
        /// The id inside the metadata.
        metadata_id: ReportId,
    },
    /// A symbolicated report handed to the database is not JSON.
    #[error("symbolicated report for {id} is not valid JSON: {source}")]
    InvalidReport {
        /// The report.
        id: ReportId,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
}
