//! Breadcrumbs: the application's recent events, kept by the monitor in a
//! bounded ring (the newest 100) and filed with the next report. Each one is
//! sent when it happens, so a crash costs nothing extra for them.

use crashmon_protocol as proto;

use crate::request::{self, DumpError};
use crate::signal;

/// Severity of a breadcrumb.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Level {
    /// Very verbose.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal events.
    Info,
    /// Something unexpected.
    Warning,
    /// An error.
    Error,
}

impl Level {
    fn wire(self) -> u8 {
        match self {
            Level::Trace => 0,
            Level::Debug => 1,
            Level::Info => 2,
            Level::Warning => 3,
            Level::Error => 4,
        }
    }
}

/// Record a breadcrumb. Category is cut to 64 bytes, message to 1 KiB.
pub fn breadcrumb(level: Level, category: &str, message: &str) -> Result<(), DumpError> {
    let fd = signal::socket_fd().ok_or(DumpError::NotInstalled)?;
    let category = request::truncate_utf8(category, proto::BREADCRUMB_CATEGORY_CAPACITY);
    let message = request::truncate_utf8(message, proto::BREADCRUMB_MESSAGE_CAPACITY);
    let timestamp_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let msg = proto::Message::Breadcrumb(proto::Breadcrumb {
        timestamp_ms,
        level: level.wire(),
        category: category.as_bytes(),
        message: message.as_bytes(),
    });
    let mut buf = [0u8; proto::HEADER_LEN + proto::Breadcrumb::MAX_PAYLOAD_LEN];
    let n = proto::encode(&msg, &mut buf).map_err(|_| DumpError::Failed(0))?;
    request::send_one(fd, &buf[..n])
}

/// A `tracing` layer that records every event at or above `min_level` as a
/// breadcrumb (category: the event's target; message: its fields).
#[cfg(feature = "tracing-layer")]
#[derive(Debug, Clone)]
pub struct BreadcrumbLayer {
    min_level: tracing::Level,
    error_reports: Option<crate::ErrorReports>,
}

#[cfg(feature = "tracing-layer")]
impl BreadcrumbLayer {
    /// Record events at `min_level` and above (e.g. `tracing::Level::INFO`).
    pub fn new(min_level: tracing::Level) -> Self {
        BreadcrumbLayer { min_level, error_reports: None }
    }

    /// Also turn ERROR events into handled-error reports (a dump of the
    /// live process, filed from the logging thread, which waits for it),
    /// deduplicated by signature (target and source location of the event)
    /// and rate-limited by `policy`. Off unless called.
    pub fn with_error_reports(mut self, policy: crate::ErrorReports) -> Self {
        self.error_reports = Some(policy);
        self
    }
}

#[cfg(feature = "tracing-layer")]
impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for BreadcrumbLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: tracing_subscriber::layer::Context<'_, S>) {
        let meta = event.metadata();
        // tracing's Level orders TRACE as the greatest.
        if *meta.level() > self.min_level || meta.target().starts_with("crashmon") {
            return;
        }
        struct Text(String);
        impl tracing::field::Visit for Text {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                use std::fmt::Write;
                if !self.0.is_empty() {
                    self.0.push(' ');
                }
                if field.name() == "message" {
                    let _ = write!(self.0, "{value:?}");
                } else {
                    let _ = write!(self.0, "{}={value:?}", field.name());
                }
            }
        }
        let mut text = Text(String::new());
        event.record(&mut text);
        let level = match *meta.level() {
            tracing::Level::TRACE => Level::Trace,
            tracing::Level::DEBUG => Level::Debug,
            tracing::Level::INFO => Level::Info,
            tracing::Level::WARN => Level::Warning,
            tracing::Level::ERROR => Level::Error,
        };
        let _ = breadcrumb(level, meta.target(), &text.0);
        if let (Some(policy), tracing::Level::ERROR) = (&self.error_reports, *meta.level()) {
            let signature = match (meta.file(), meta.line()) {
                (Some(file), Some(line)) => format!("{}@{file}:{line}", meta.target()),
                _ => format!("{}@{}", meta.target(), meta.name()),
            };
            crate::filter::report_logged_error(policy, &signature, meta.target(), &text.0);
        }
    }
}

/// A `log` logger that records every record at or above its level as a
/// breadcrumb (category: the record's target), and optionally forwards
/// every record to the application's own logger.
#[cfg(feature = "log")]
pub struct LogAdapter {
    min_level: log::LevelFilter,
    inner: Option<Box<dyn log::Log>>,
    error_reports: Option<crate::ErrorReports>,
}

#[cfg(feature = "log")]
impl std::fmt::Debug for LogAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogAdapter")
            .field("min_level", &self.min_level)
            .field("inner", &self.inner.is_some())
            .field("error_reports", &self.error_reports)
            .finish()
    }
}

#[cfg(feature = "log")]
impl LogAdapter {
    /// Record log records at `min_level` and above as breadcrumbs.
    pub fn new(min_level: log::LevelFilter) -> Self {
        LogAdapter { min_level, inner: None, error_reports: None }
    }

    /// Forward every record to `inner` as well (the app's own logger).
    pub fn with_inner(mut self, inner: Box<dyn log::Log>) -> Self {
        self.inner = Some(inner);
        self
    }

    /// Also turn `error!` records into handled-error reports, deduplicated
    /// by signature (target and source location, else the message
    /// template) and rate-limited by `policy`. Off unless called.
    pub fn with_error_reports(mut self, policy: crate::ErrorReports) -> Self {
        self.error_reports = Some(policy);
        self
    }

    /// Make this the process's `log` logger (`log::set_boxed_logger`), with
    /// the max level raised to `min_level` if needed.
    pub fn install(self) -> Result<(), log::SetLoggerError> {
        let level = self.min_level.max(log::max_level());
        log::set_boxed_logger(Box::new(self))?;
        log::set_max_level(level);
        Ok(())
    }
}

#[cfg(feature = "log")]
impl log::Log for LogAdapter {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= self.min_level || self.inner.as_ref().is_some_and(|i| i.enabled(metadata))
    }

    fn log(&self, record: &log::Record<'_>) {
        if let Some(inner) = &self.inner {
            inner.log(record);
        }
        if record.level() > self.min_level || record.target().starts_with("crashmon") {
            return;
        }
        let level = match record.level() {
            log::Level::Trace => Level::Trace,
            log::Level::Debug => Level::Debug,
            log::Level::Info => Level::Info,
            log::Level::Warn => Level::Warning,
            log::Level::Error => Level::Error,
        };
        let text = record.args().to_string();
        let _ = breadcrumb(level, record.target(), &text);
        if let (Some(policy), log::Level::Error) = (&self.error_reports, record.level()) {
            let signature = match (record.file(), record.line(), record.args().as_str()) {
                (Some(file), Some(line), _) => format!("{}@{file}:{line}", record.target()),
                (_, _, Some(template)) => format!("{}@{template}", record.target()),
                _ => format!("{}@{text}", record.target()),
            };
            crate::filter::report_logged_error(policy, &signature, record.target(), &text);
        }
    }

    fn flush(&self) {
        if let Some(inner) = &self.inner {
            inner.flush();
        }
    }
}
