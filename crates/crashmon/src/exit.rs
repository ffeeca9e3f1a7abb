//! Exit codes of the `crashmon` command, in one place.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | the operation failed (e.g. the demo pipeline did not produce a report, the monitor could not serve) |
//! | 2 | usage or configuration error (bad flag, unusable database directory, missing socket) |
//! | 3 | bad input file (not a minidump, corrupt, unreadable) |
//! | 4 | no such report in the database (or the id prefix is ambiguous) |
//! | 5 | `upload`: some reports remain pending (retryable failure, not due, paused, busy, consent off) |
//! | 6 | `upload`: the server rejected some reports for good (moved to failed/) |

/// Success.
pub const OK: u8 = 0;
/// The operation failed.
pub const FAILURE: u8 = 1;
/// Usage or configuration error.
pub const USAGE: u8 = 2;
/// Bad input file.
pub const BAD_INPUT: u8 = 3;
/// No such report.
pub const NO_SUCH_REPORT: u8 = 4;

/// Some reports remain pending after `upload`.
pub const PENDING: u8 = 5;
/// The server rejected some reports for good.
pub const REJECTED: u8 = 6;

/// An error that carries the exit code it should end the process with.
#[derive(Debug)]
pub struct Coded {
    /// One of the constants of this module.
    pub code: u8,
    /// What went wrong.
    pub error: anyhow::Error,
}

impl std::fmt::Display for Coded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

impl std::error::Error for Coded {}

/// Attach an exit code to a result's error.
pub trait WithCode<T> {
    /// Map the error to a [`Coded`] with `code`.
    fn code(self, code: u8) -> Result<T, anyhow::Error>;
}

impl<T, E: Into<anyhow::Error>> WithCode<T> for Result<T, E> {
    fn code(self, code: u8) -> Result<T, anyhow::Error> {
        self.map_err(|e| Coded { code, error: e.into() }.into())
    }
}

/// The exit code for an error: its [`Coded`] code if it has one, else 1.
pub fn code_of(error: &anyhow::Error) -> u8 {
    error.downcast_ref::<Coded>().map_or(FAILURE, |c| c.code)
}
