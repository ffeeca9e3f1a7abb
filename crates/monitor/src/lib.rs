//! The crashmon monitor: the sidecar process that serves crash handlers.
//!
//! A client (an application with `crashmon-handler` installed) connects over a
//! `SOCK_SEQPACKET` Unix socket, either a socket pair inherited by a spawned
//! sidecar ([`serve_client`]) or a listening socket shared by many apps
//! ([`serve_socket`]). The monitor checks the peer's credentials before it
//! decodes anything, answers the hello, and on a dump request suspends the
//! process with ptrace, writes a minidump into the crash database's `new/`,
//! publishes it to `pending/` with its metadata, and replies so the app can
//! die by its own signal. Post-processing (symbolication) runs afterwards
//! through the [`AfterCapture`] hook.
//!
//! A malformed message or a refused peer only ends that connection.

pub mod capture;
mod server;
mod sys;
pub mod watchdog;

pub use server::{AfterCapture, FAULT_ENV, Fault, MonitorConfig, MonitorError, serve_client, serve_socket};
pub use sys::owned_from_inherited;
