//! The crashmon monitor: the sidecar process that serves crash handlers.
//!
//! A client (an application with `crashmon-handler` installed) connects over a
//! `SOCK_SEQPACKET` Unix socket, either a socket pair inherited by a spawned
//! sidecar ([`serve_client`]) or a listening socket shared by many apps
//! ([`serve_socket`]). The monitor checks the peer's credentials before it
//! decodes anything, answers the hello, and on a dump request suspends the
//! process with ptrace, writes a minidump into the crash database's `new/`,
//! makes it durable there with its metadata (one fsync round), replies so
//! the app can die by its own signal, and then publishes the report to
//! `pending/` (a monitor killed before that leaves a complete report that
//! the next sweep publishes). Post-processing (symbolication) runs
//! afterwards through the [`AfterCapture`] hook.
//!
//! A malformed message or a refused peer only ends that connection.

pub mod capture;
pub mod diagnose;
pub mod filter;
mod server;
pub mod shutdown;
mod sys;

pub use capture::CaptureOptions;
pub use filter::FilterRules;
pub use server::{
    AfterCapture, DEFAULT_MAX_ATTACHMENT_SIZE, FAULT_ENV, Fault, MAX_ATTACHMENTS, MonitorConfig, MonitorError,
    MonitorOptions, MonitorStats, SHUTDOWN_GRACE, serve_client, serve_socket,
};
pub use sys::owned_from_inherited;
