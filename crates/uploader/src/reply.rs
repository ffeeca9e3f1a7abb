//! What a collector's reply (or the lack of one) means.
//!
//! The reply is parsed once into a [`Verdict`] holding a typed [`Failure`];
//! everything after that matches on those kinds, never on text.
//!
//! | reply | verdict |
//! |---|---|
//! | 2xx, Socorro: `CrashID=bp-<uuid>` | accepted, id `bp-<uuid>` |
//! | 2xx, any flavor: `Discarded=<rule>` | rejected (Socorro's throttle rules) |
//! | 2xx, Socorro, anything else | retry (not Antenna's answer: a captive portal?) |
//! | 2xx, Crashpad | accepted; a short one-line body is the report id |
//! | 2xx, Sentry: JSON `{"id": ...}` or a bare id | accepted (else retry: the event id dedups) |
//! | 3xx | target refused: redirects are never followed |
//! | 400, 413, other 4xx | rejected for good (413: too large) |
//! | 401, 403, 404, 405, 410 | target refused (credentials or URL wrong) |
//! | 408, 5xx | retry (with `Retry-After` as a floor) |
//! | 429 | rate limited for `Retry-After` (or `X-Sentry-Rate-Limits`) |
//! | connection refused, DNS, reset, timeout, TLS, bad HTTP, other network errors | retry |
//!
//! "Rejected" moves the report to `failed/`. "Target refused" is about the
//! target, not the report: the report stays pending (with backoff) and the
//! rest of a batch is not attempted, so a revoked key or a wrong URL loses
//! no report.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::target::Flavor;

/// Longest wait any reply can impose.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);
/// Wait used when `Retry-After` is missing or unreadable.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Longest piece of a reply body quoted in a message.
const MAX_QUOTE: usize = 200;

/// Why an attempt did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Failure {
    /// The server discarded the report by rule (Socorro `Discarded=...`).
    Discarded {
        /// HTTP status.
        status: u16,
        /// The rule named by the server.
        rule: String,
    },
    /// `413`: the report is too large for the server.
    TooLarge {
        /// HTTP status.
        status: u16,
    },
    /// `401`/`403`: the server refuses our credentials.
    Unauthorized {
        /// HTTP status.
        status: u16,
        /// Start of the reply body.
        detail: String,
    },
    /// `404`/`405`/`410`: nothing accepts uploads at this URL.
    NoEndpoint {
        /// HTTP status.
        status: u16,
    },
    /// A redirect, which we never follow.
    Redirect {
        /// HTTP status.
        status: u16,
        /// The `Location` header, redacted.
        location: Option<String>,
    },
    /// Another `4xx`: the server refuses this report.
    ClientError {
        /// HTTP status.
        status: u16,
        /// Start of the reply body.
        detail: String,
    },
    /// `5xx` or `408`: the server cannot take it now.
    ServerError {
        /// HTTP status.
        status: u16,
        /// Start of the reply body.
        detail: String,
    },
    /// `429` (or a Sentry rate limit).
    RateLimited {
        /// HTTP status.
        status: u16,
        /// Seconds to wait, after clamping.
        retry_after_secs: u64,
    },
    /// A reply that does not say whether the report was taken.
    UnexpectedReply {
        /// HTTP status.
        status: u16,
        /// Start of the reply body.
        detail: String,
    },
    /// The connection could not be made (refused, unreachable).
    Connect {
        /// The error.
        detail: String,
    },
    /// The host name did not resolve.
    Dns {
        /// The error.
        detail: String,
    },
    /// The request timed out (stalled server, trickling reply).
    Timeout {
        /// The error.
        detail: String,
    },
    /// The connection broke (reset, closed mid-reply).
    ConnectionLost {
        /// The error.
        detail: String,
    },
    /// Another network error (e.g. name resolution by the system resolver,
    /// which has no error kind of its own).
    Network {
        /// The error.
        detail: String,
    },
    /// TLS failed. Never followed by a plain-HTTP attempt.
    Tls {
        /// The error.
        detail: String,
    },
    /// The server did not speak HTTP/1.1 properly.
    Protocol {
        /// The error.
        detail: String,
    },
    /// Reading the dump on this machine failed.
    LocalRead {
        /// The error.
        detail: String,
    },
    /// The dump could not be scrubbed, so it was not sent.
    CannotScrub {
        /// Why.
        detail: String,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Discarded { status, rule } => write!(f, "server discarded the report (HTTP {status}, {rule})"),
            Failure::TooLarge { status } => {
                write!(f, "HTTP {status}: too large; compression may help (it is on unless disabled)")
            }
            Failure::Unauthorized { status, detail } => {
                write!(f, "HTTP {status}: the server refuses our credentials; check the URL or DSN")?;
                quote(f, detail)
            }
            Failure::NoEndpoint { status } => {
                write!(f, "HTTP {status}: no upload endpoint at this URL; check the URL or DSN")
            }
            Failure::Redirect { status, location } => write!(
                f,
                "HTTP {status}: redirected to {}; redirects are not followed, configure that URL directly if it is right",
                location.as_deref().unwrap_or("(no Location)")
            ),
            Failure::ClientError { status, detail } => {
                write!(f, "HTTP {status}: the server refused the report")?;
                quote(f, detail)
            }
            Failure::ServerError { status, detail } => {
                write!(f, "HTTP {status}: server error")?;
                quote(f, detail)
            }
            Failure::RateLimited { status, retry_after_secs } => {
                write!(f, "HTTP {status}: rate limited; waiting {retry_after_secs} s")
            }
            Failure::UnexpectedReply { status, detail } => {
                write!(f, "HTTP {status}: unexpected reply")?;
                quote(f, detail)
            }
            Failure::Connect { detail } => write!(f, "cannot connect: {detail}"),
            Failure::Dns { detail } => write!(f, "cannot resolve the host: {detail}"),
            Failure::Timeout { detail } => write!(f, "timed out: {detail}"),
            Failure::ConnectionLost { detail } => write!(f, "connection lost: {detail}"),
            Failure::Network { detail } => write!(f, "network error: {detail}"),
            Failure::Tls { detail } => write!(f, "TLS failed (not retried without TLS): {detail}"),
            Failure::Protocol { detail } => write!(f, "bad HTTP from the server: {detail}"),
            Failure::LocalRead { detail } => write!(f, "cannot read the dump: {detail}"),
            Failure::CannotScrub { detail } => write!(f, "not sent: {detail}"),
        }
    }
}

impl Failure {
    /// Applies `f` to every text of the failure (e.g. to redact a
    /// credential a server echoed back).
    pub(crate) fn map_text(&mut self, f: impl Fn(&str) -> String) {
        match self {
            Failure::Discarded { rule: text, .. }
            | Failure::Unauthorized { detail: text, .. }
            | Failure::ClientError { detail: text, .. }
            | Failure::ServerError { detail: text, .. }
            | Failure::UnexpectedReply { detail: text, .. }
            | Failure::Connect { detail: text }
            | Failure::Dns { detail: text }
            | Failure::Timeout { detail: text }
            | Failure::ConnectionLost { detail: text }
            | Failure::Network { detail: text }
            | Failure::Tls { detail: text }
            | Failure::Protocol { detail: text }
            | Failure::LocalRead { detail: text }
            | Failure::CannotScrub { detail: text } => *text = f(text),
            Failure::Redirect { location: Some(text), .. } => *text = f(text),
            Failure::TooLarge { .. }
            | Failure::NoEndpoint { .. }
            | Failure::Redirect { location: None, .. }
            | Failure::RateLimited { .. } => {}
        }
    }
}

impl Verdict {
    /// The failure inside, if any.
    pub(crate) fn failure_mut(&mut self) -> Option<&mut Failure> {
        match self {
            Verdict::Accepted { .. } => None,
            Verdict::Rejected(f) | Verdict::TargetRefused(f) => Some(f),
            Verdict::Retry { failure, .. } | Verdict::RateLimited { failure, .. } => Some(failure),
        }
    }
}

fn quote(f: &mut fmt::Formatter<'_>, detail: &str) -> fmt::Result {
    if detail.is_empty() { Ok(()) } else { write!(f, ": {detail:?}") }
}

/// What to do with a report after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Taken by the server.
    Accepted {
        /// The server's id for it, if it said.
        server_id: Option<String>,
    },
    /// Refused for good: move to `failed/`.
    Rejected(Failure),
    /// The target refuses us whatever the report: keep it pending, stop
    /// the batch.
    TargetRefused(Failure),
    /// Try again later (backoff; `Retry-After` as a floor when given).
    Retry {
        /// Why.
        failure: Failure,
        /// A `Retry-After` the server sent along, clamped.
        retry_after: Option<Duration>,
    },
    /// Wait this long before sending anything to this target.
    RateLimited {
        /// How long, clamped to [`MAX_RETRY_AFTER`].
        retry_after: Duration,
        /// The reply.
        failure: Failure,
    },
}

/// Which protocol a reply answers (decides how 2xx bodies are read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Breakpad(Flavor),
    Sentry,
}

/// A received reply: status, the headers we look at, and at most the first
/// 64 KiB (configurable) of the body.
#[derive(Debug, Clone, Default)]
pub(crate) struct RawReply {
    pub(crate) status: u16,
    pub(crate) retry_after: Option<String>,
    pub(crate) sentry_rate_limits: Option<String>,
    pub(crate) location: Option<String>,
    pub(crate) body: Vec<u8>,
}

/// A printable excerpt of a reply body: its first non-empty line, control
/// characters dropped, at most 200 characters.
pub(crate) fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    let mut out: String = line.chars().filter(|c| !c.is_control()).take(MAX_QUOTE).collect();
    if line.chars().count() > MAX_QUOTE {
        out.push_str("...");
    }
    out
}

/// A plausible report id: one short token of printable ASCII.
fn plausible_id(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic())).then(|| s.to_owned())
}

/// The value of a `KEY=value` line (Socorro's replies).
fn socorro_field<'a>(body: &'a str, key: &str) -> Option<&'a str> {
    body.lines().find_map(|l| l.trim().strip_prefix(key)?.strip_prefix('=')).map(str::trim)
}

/// Parses `Retry-After`: delta-seconds or an HTTP date (relative to
/// `now_ms`); missing or garbage gives 60 s; at most 24 h; a date in the
/// past gives 0.
pub fn parse_retry_after(value: Option<&str>, now_ms: u64) -> Duration {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return DEFAULT_RETRY_AFTER;
    };
    if value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for u64 is "huge", not garbage.
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return Duration::from_secs(secs).min(MAX_RETRY_AFTER);
    }
    match httpdate::parse_http_date(value) {
        Ok(date) => {
            let date_ms = date.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
            Duration::from_millis(date_ms.saturating_sub(now_ms)).min(MAX_RETRY_AFTER)
        }
        Err(_) => DEFAULT_RETRY_AFTER,
    }
}

/// Parses Sentry's `X-Sentry-Rate-Limits`
/// (`SECONDS:CATEGORIES:SCOPE[:REASON[:NAMESPACES]], ...`) and returns the
/// longest wait among the limits that apply to crash reports (categories
/// empty — all — or including `error`, `default` or `attachment`).
pub fn parse_sentry_rate_limits(value: &str) -> Option<Duration> {
    value
        .split(',')
        .filter_map(|quota| {
            let mut fields = quota.trim().split(':');
            let secs = fields.next()?.trim().parse::<f64>().ok().filter(|s| s.is_finite() && *s >= 0.0)?;
            let categories = fields.next().unwrap_or("").trim();
            let applies = categories.is_empty()
                || categories.split(';').any(|c| matches!(c.trim(), "error" | "default" | "attachment"));
            applies.then(|| Duration::from_secs_f64(secs.ceil().min(MAX_RETRY_AFTER.as_secs_f64())))
        })
        .max()
}

/// Classifies a reply. Also returns how long the whole target must pause
/// (a `429`, or a Sentry rate-limit header on any reply).
pub(crate) fn classify(protocol: Protocol, reply: &RawReply, now_ms: u64) -> (Verdict, Option<Duration>) {
    let status = reply.status;
    let sentry_limit = match protocol {
        Protocol::Sentry => reply.sentry_rate_limits.as_deref().and_then(parse_sentry_rate_limits),
        Protocol::Breakpad(_) => None,
    };
    let body = String::from_utf8_lossy(&reply.body);
    let detail = excerpt(&reply.body);
    let verdict = match status {
        429 => {
            let retry_after = sentry_limit.unwrap_or_else(|| parse_retry_after(reply.retry_after.as_deref(), now_ms));
            let failure = Failure::RateLimited { status, retry_after_secs: retry_after.as_secs() };
            return (Verdict::RateLimited { retry_after, failure }, Some(retry_after));
        }
        200..=299 => classify_success(protocol, status, &body, detail),
        300..=399 => Verdict::TargetRefused(Failure::Redirect {
            status,
            location: reply.location.as_deref().map(crate::target::redact),
        }),
        400 => match socorro_field(&body, "Discarded") {
            Some(rule) => Verdict::Rejected(Failure::Discarded { status, rule: excerpt(rule.as_bytes()) }),
            None => Verdict::Rejected(Failure::ClientError { status, detail }),
        },
        401 | 403 => Verdict::TargetRefused(Failure::Unauthorized { status, detail }),
        404 | 405 | 410 => Verdict::TargetRefused(Failure::NoEndpoint { status }),
        408 => Verdict::Retry { failure: Failure::ServerError { status, detail }, retry_after: None },
        413 => Verdict::Rejected(Failure::TooLarge { status }),
        _ if (400..500).contains(&status) => Verdict::Rejected(Failure::ClientError { status, detail }),
        500..=599 => Verdict::Retry {
            failure: Failure::ServerError { status, detail },
            retry_after: reply.retry_after.as_deref().map(|v| parse_retry_after(Some(v), now_ms)),
        },
        _ => Verdict::Retry { failure: Failure::UnexpectedReply { status, detail }, retry_after: None },
    };
    (verdict, sentry_limit)
}

fn classify_success(protocol: Protocol, status: u16, body: &str, detail: String) -> Verdict {
    if let Some(rule) = socorro_field(body, "Discarded") {
        return Verdict::Rejected(Failure::Discarded { status, rule: excerpt(rule.as_bytes()) });
    }
    let crash_id = socorro_field(body, "CrashID").and_then(plausible_id);
    match protocol {
        Protocol::Breakpad(Flavor::Socorro) => match crash_id {
            Some(id) => Verdict::Accepted { server_id: Some(id) },
            None => Verdict::Retry { failure: Failure::UnexpectedReply { status, detail }, retry_after: None },
        },
        // Crashpad: any 2xx is success and the body is the report id.
        Protocol::Breakpad(Flavor::Crashpad) => {
            let first_line = body.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
            Verdict::Accepted { server_id: crash_id.or_else(|| plausible_id(first_line)) }
        }
        Protocol::Sentry => {
            let json_id = serde_json::from_str::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v.get("id")?.as_str().and_then(plausible_id));
            let bare_id = plausible_id(body)
                .filter(|id| id.len() >= 32 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'));
            match json_id.or(bare_id) {
                Some(id) => Verdict::Accepted { server_id: Some(id) },
                None => Verdict::Retry { failure: Failure::UnexpectedReply { status, detail }, retry_after: None },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000;
    const SOCORRO: Protocol = Protocol::Breakpad(Flavor::Socorro);
    const CRASHPAD: Protocol = Protocol::Breakpad(Flavor::Crashpad);

    fn reply(status: u16, body: &str) -> RawReply {
        RawReply { status, body: body.as_bytes().to_vec(), ..RawReply::default() }
    }

    fn verdict(p: Protocol, r: &RawReply) -> Verdict {
        classify(p, r, NOW).0
    }

    #[test]
    fn socorro_replies() {
        let id = "bp-6d4b2c1a-0d3c-4d9e-8f6a-1b2c3d240101";
        assert_eq!(
            verdict(SOCORRO, &reply(200, &format!("CrashID={id}\n"))),
            Verdict::Accepted { server_id: Some(id.into()) }
        );
        assert_eq!(
            verdict(SOCORRO, &reply(200, "Discarded=rule_has_hangid_and_browser\n")),
            Verdict::Rejected(Failure::Discarded { status: 200, rule: "rule_has_hangid_and_browser".into() })
        );
        assert_eq!(
            verdict(SOCORRO, &reply(400, "Discarded=malformed_no_annotations")),
            Verdict::Rejected(Failure::Discarded { status: 400, rule: "malformed_no_annotations".into() })
        );
        assert!(matches!(verdict(SOCORRO, &reply(200, "<html>wifi login</html>")), Verdict::Retry { .. }));
        assert_eq!(verdict(SOCORRO, &reply(413, "")), Verdict::Rejected(Failure::TooLarge { status: 413 }));
        assert!(Failure::TooLarge { status: 413 }.to_string().contains("too large; compression may help"));
        assert!(matches!(verdict(SOCORRO, &reply(503, "")), Verdict::Retry { retry_after: None, .. }));
        assert!(matches!(verdict(SOCORRO, &reply(500, &"x".repeat(100_000))), Verdict::Retry { .. }));
        assert!(matches!(
            verdict(SOCORRO, &reply(401, "")),
            Verdict::TargetRefused(Failure::Unauthorized { status: 401, .. })
        ));
        let redirect = RawReply {
            status: 307,
            location: Some("https://user:pw@evil.example/x?token=1".into()),
            ..RawReply::default()
        };
        assert_eq!(
            verdict(SOCORRO, &redirect),
            Verdict::TargetRefused(Failure::Redirect {
                status: 307,
                location: Some("https://***@evil.example/x?***".into())
            })
        );
    }

    #[test]
    fn crashpad_and_sentry_replies() {
        assert_eq!(
            verdict(CRASHPAD, &reply(200, "abc-123\n")),
            Verdict::Accepted { server_id: Some("abc-123".into()) }
        );
        assert_eq!(verdict(CRASHPAD, &reply(200, "")), Verdict::Accepted { server_id: None });
        assert_eq!(verdict(CRASHPAD, &reply(200, "some words here")), Verdict::Accepted { server_id: None });
        let id = "fc6d8c0c43fc4630ad850ee518f1b9d0";
        assert_eq!(
            verdict(Protocol::Sentry, &reply(200, &format!("{{\"id\":\"{id}\"}}"))),
            Verdict::Accepted { server_id: Some(id.into()) }
        );
        assert_eq!(
            verdict(Protocol::Sentry, &reply(200, "fc6d8c0c-43fc-4630-ad85-0ee518f1b9d0")),
            Verdict::Accepted { server_id: Some("fc6d8c0c-43fc-4630-ad85-0ee518f1b9d0".into()) }
        );
        assert!(matches!(verdict(Protocol::Sentry, &reply(200, "<html>")), Verdict::Retry { .. }));
    }

    #[test]
    fn retry_after_values() {
        assert_eq!(parse_retry_after(Some("120"), NOW), Duration::from_secs(120));
        assert_eq!(parse_retry_after(Some(" 0 "), NOW), Duration::ZERO);
        assert_eq!(parse_retry_after(Some("soon"), NOW), DEFAULT_RETRY_AFTER);
        assert_eq!(parse_retry_after(Some("-5"), NOW), DEFAULT_RETRY_AFTER);
        assert_eq!(parse_retry_after(None, NOW), DEFAULT_RETRY_AFTER);
        assert_eq!(parse_retry_after(Some("99999999999999999999999"), NOW), MAX_RETRY_AFTER);
        assert_eq!(parse_retry_after(Some("86401"), NOW), MAX_RETRY_AFTER);
        let date = std::time::UNIX_EPOCH + Duration::from_millis(NOW) + Duration::from_secs(300);
        let text = httpdate::fmt_http_date(date);
        assert_eq!(parse_retry_after(Some(&text), NOW), Duration::from_secs(300));
        let past = httpdate::fmt_http_date(std::time::UNIX_EPOCH + Duration::from_secs(1));
        assert_eq!(parse_retry_after(Some(&past), NOW), Duration::ZERO);
        let far = httpdate::fmt_http_date(std::time::UNIX_EPOCH + Duration::from_millis(NOW) + MAX_RETRY_AFTER * 30);
        assert_eq!(parse_retry_after(Some(&far), NOW), MAX_RETRY_AFTER);
    }

    #[test]
    fn sentry_rate_limits() {
        assert_eq!(parse_sentry_rate_limits("60::organization"), Some(Duration::from_secs(60)));
        assert_eq!(
            parse_sentry_rate_limits("60:transaction:key, 2700:default;error:organization"),
            Some(Duration::from_secs(2700))
        );
        assert_eq!(parse_sentry_rate_limits("60:transaction:key"), None);
        assert_eq!(parse_sentry_rate_limits("1.5:attachment:key:quota"), Some(Duration::from_secs(2)));
        assert_eq!(parse_sentry_rate_limits("garbage"), None);
        assert_eq!(parse_sentry_rate_limits("999999999::org"), Some(MAX_RETRY_AFTER));
        let r = RawReply {
            status: 429,
            retry_after: Some("5".into()),
            sentry_rate_limits: Some("300:error:project".into()),
            ..RawReply::default()
        };
        let (v, pause) = classify(Protocol::Sentry, &r, NOW);
        assert!(matches!(v, Verdict::RateLimited { retry_after, .. } if retry_after == Duration::from_secs(300)));
        assert_eq!(pause, Some(Duration::from_secs(300)));
        // A limit on a successful reply pauses the target too.
        let r = RawReply {
            status: 200,
            body: br#"{"id":"0123456789abcdef0123456789abcdef"}"#.to_vec(),
            sentry_rate_limits: Some("60::org".into()),
            ..RawReply::default()
        };
        let (v, pause) = classify(Protocol::Sentry, &r, NOW);
        assert!(matches!(v, Verdict::Accepted { .. }));
        assert_eq!(pause, Some(Duration::from_secs(60)));
    }
}
