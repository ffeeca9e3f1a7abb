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
}

#[cfg(feature = "tracing-layer")]
impl BreadcrumbLayer {
    /// Record events at `min_level` and above (e.g. `tracing::Level::INFO`).
    pub fn new(min_level: tracing::Level) -> Self {
        BreadcrumbLayer { min_level }
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
    }
}
