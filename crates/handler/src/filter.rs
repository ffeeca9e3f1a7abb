//! Signal vs noise on the handler side: which handled errors become reports.
//!
//! - [`ReportFilter`] (in [`crate::HandlerConfig`]): ignore handled errors by
//!   type name, and sample a fraction of handled errors.
//! - [`ErrorReports`]: the opt-in policy that turns error-level log events
//!   (the `tracing` layer, the `log` adapter) into handled-error reports,
//!   deduplicated by a signature and rate-limited.
//!
//! Nothing is dropped silently: every filtered report is counted in
//! [`stats`] and logged with `tracing` (target `crashmon_handler`, which the
//! breadcrumb layer itself ignores).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Rules that keep noise out of the crash database. Crashes are never
/// filtered; these apply to handled errors ([`crate::report_error`],
/// [`crate::request_dump`] and error reports from logging).
#[derive(Debug, Clone, PartialEq)]
pub struct ReportFilter {
    /// Error types [`crate::report_error`] does not report. A rule matches
    /// the error's type name as `std::any::type_name` spells it
    /// (`std::io::error::Error`, `my_app::ParseError`) either whole or by its
    /// trailing path segments (`ParseError`, `my_app::ParseError`). Errors
    /// passed as `&dyn Error` have no concrete type name and match nothing.
    pub ignore_error_types: Vec<String>,
    /// Fraction of handled errors that are reported, `0.0..=1.0`. Default
    /// 1.0 (all). Each handled error is kept or sampled out independently.
    pub handled_error_sample_rate: f64,
    /// Seed of the sampling generator. `None` (the default): seeded from the
    /// clock and the pid, so processes sample differently. With a seed the
    /// decisions are reproducible: the same sequence of handled errors is
    /// kept and sampled out the same way in every run (tests, replays).
    pub sample_seed: Option<u64>,
}

impl Default for ReportFilter {
    fn default() -> Self {
        ReportFilter { ignore_error_types: Vec::new(), handled_error_sample_rate: 1.0, sample_seed: None }
    }
}

impl ReportFilter {
    pub(crate) fn validate(&self) -> Result<(), &'static str> {
        let r = self.handled_error_sample_rate;
        if !r.is_finite() || !(0.0..=1.0).contains(&r) {
            return Err("report filter: handled_error_sample_rate must be within 0.0..=1.0");
        }
        if self.ignore_error_types.iter().any(|t| t.trim().is_empty()) {
            return Err("report filter: an ignored error type name is empty");
        }
        Ok(())
    }

    fn ignores_type(&self, type_name: &str) -> bool {
        self.ignore_error_types.iter().any(|rule| {
            type_name == rule || type_name.strip_suffix(rule.as_str()).is_some_and(|head| head.ends_with("::"))
        })
    }
}

/// How error-level log events become handled-error reports (opt-in: see
/// `BreadcrumbLayer::with_error_reports` and `LogAdapter::with_error_reports`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReports {
    /// An event's signature (its target and the source location of the log
    /// call, or its message template) is reported at most once per window.
    /// Default 1 hour.
    pub dedup_window: Duration,
    /// At most this many reports from logging per minute, all signatures
    /// together. Default 5.
    pub max_per_minute: u32,
}

impl Default for ErrorReports {
    fn default() -> Self {
        ErrorReports { dedup_window: Duration::from_secs(3600), max_per_minute: 5 }
    }
}

/// Counters of what the handler filtered (since the process started).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Handled errors not reported because their type is ignored.
    pub filtered_by_type: u64,
    /// Handled errors not reported because sampling left them out.
    pub sampled_out: u64,
    /// Error log events reported as handled errors.
    pub error_events_reported: u64,
    /// Error log events not reported: their signature was reported within
    /// the dedup window.
    pub error_events_deduplicated: u64,
    /// Error log events not reported: over the per-minute limit.
    pub error_events_rate_limited: u64,
    /// Crashes in forked children that were declined (they share their
    /// parent's monitor connection).
    pub forked_child_crashes: u64,
    /// Annotations dropped because the key limit was reached.
    pub annotations_dropped: u64,
    /// Annotation keys or values truncated to fit.
    pub annotations_truncated: u64,
}

static FILTERED_BY_TYPE: AtomicU64 = AtomicU64::new(0);
static SAMPLED_OUT: AtomicU64 = AtomicU64::new(0);
static EVENTS_REPORTED: AtomicU64 = AtomicU64::new(0);
static EVENTS_DEDUPLICATED: AtomicU64 = AtomicU64::new(0);
static EVENTS_RATE_LIMITED: AtomicU64 = AtomicU64::new(0);

/// What the handler filtered so far.
pub fn stats() -> Stats {
    Stats {
        filtered_by_type: FILTERED_BY_TYPE.load(Ordering::Relaxed),
        sampled_out: SAMPLED_OUT.load(Ordering::Relaxed),
        error_events_reported: EVENTS_REPORTED.load(Ordering::Relaxed),
        error_events_deduplicated: EVENTS_DEDUPLICATED.load(Ordering::Relaxed),
        error_events_rate_limited: EVENTS_RATE_LIMITED.load(Ordering::Relaxed),
        forked_child_crashes: u64::from(crate::signal::forked_child_crashes()),
        annotations_dropped: u64::from(crate::request::annotations_dropped()),
        annotations_truncated: u64::from(crate::request::annotations_truncated()),
    }
}

static FILTER: Mutex<Option<ReportFilter>> = Mutex::new(None);

/// Set by `install`.
pub(crate) fn set_filter(filter: ReportFilter) {
    if let Some(seed) = filter.sample_seed {
        SAMPLER.store(seeded_state(seed), Ordering::Relaxed);
    }
    *FILTER.lock().unwrap_or_else(|e| e.into_inner()) = Some(filter);
}

/// Why a handled error was not reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Filtered {
    /// Its error type is in [`ReportFilter::ignore_error_types`].
    ErrorType,
    /// Sampling left it out ([`ReportFilter::handled_error_sample_rate`]).
    Sampled,
    /// An error log event whose signature was reported recently.
    Duplicate,
    /// An error log event over [`ErrorReports::max_per_minute`].
    RateLimited,
}

impl std::fmt::Display for Filtered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Filtered::ErrorType => "its error type is ignored",
            Filtered::Sampled => "sampled out",
            Filtered::Duplicate => "the same error was reported recently",
            Filtered::RateLimited => "too many error reports this minute",
        })
    }
}

/// Decide whether a handled error is reported; counts and logs a refusal.
/// `type_name` is the error's type for [`crate::report_error`].
pub(crate) fn admit(type_name: Option<&str>, what: &str) -> Result<(), Filtered> {
    let guard = FILTER.lock().unwrap_or_else(|e| e.into_inner());
    let Some(filter) = guard.as_ref() else { return Ok(()) };
    if let Some(t) = type_name.filter(|t| filter.ignores_type(t)) {
        FILTERED_BY_TYPE.fetch_add(1, Ordering::Relaxed);
        tracing::info!(error_type = t, "crashmon: handled error not reported (its type is ignored): {what}");
        return Err(Filtered::ErrorType);
    }
    let rate = filter.handled_error_sample_rate;
    if rate < 1.0 && next_unit() >= rate {
        SAMPLED_OUT.fetch_add(1, Ordering::Relaxed);
        tracing::info!(rate, "crashmon: handled error sampled out: {what}");
        return Err(Filtered::Sampled);
    }
    Ok(())
}

/// The sampling generator's state (0: not seeded yet).
static SAMPLER: AtomicU64 = AtomicU64::new(0);

/// A non-zero xorshift state from any seed (splitmix64, so nearby seeds
/// give unrelated sequences).
fn seeded_state(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)).max(1)
}

/// One xorshift64 step: the next state and a uniform number in `[0, 1)`.
fn step(mut x: u64) -> (u64, f64) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    (x, (x >> 11) as f64 / (1u64 << 53) as f64)
}

/// A uniform number in `[0, 1)` from a xorshift generator seeded by
/// [`ReportFilter::sample_seed`], else from the clock and the pid (sampling
/// needs no cryptographic quality).
fn next_unit() -> f64 {
    let mut x = SAMPLER.load(Ordering::Relaxed);
    if x == 0 {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
        x = seeded_state(t ^ (u64::from(std::process::id()) << 32));
    }
    let (next, unit) = step(x);
    SAMPLER.store(next, Ordering::Relaxed);
    unit
}

#[cfg_attr(not(any(feature = "tracing-layer", feature = "log")), allow(dead_code))]
struct EventWindow {
    last_by_signature: HashMap<String, Instant>,
    minute_start: Option<Instant>,
    in_minute: u32,
}

#[cfg_attr(not(any(feature = "tracing-layer", feature = "log")), allow(dead_code))]
static EVENTS: Mutex<Option<EventWindow>> = Mutex::new(None);

/// Most signatures remembered for deduplication (older ones are forgotten).
#[cfg_attr(not(any(feature = "tracing-layer", feature = "log")), allow(dead_code))]
const MAX_SIGNATURES: usize = 1024;

/// Decide whether an error log event with `signature` becomes a report.
#[cfg_attr(not(any(feature = "tracing-layer", feature = "log")), allow(dead_code))]
fn admit_event(policy: &ErrorReports, signature: &str) -> Result<(), Filtered> {
    let now = Instant::now();
    let mut guard = EVENTS.lock().unwrap_or_else(|e| e.into_inner());
    let w = guard.get_or_insert_with(|| EventWindow {
        last_by_signature: HashMap::new(),
        minute_start: None,
        in_minute: 0,
    });
    if w.last_by_signature.get(signature).is_some_and(|t| now.duration_since(*t) < policy.dedup_window) {
        return Err(Filtered::Duplicate);
    }
    if w.minute_start.is_none_or(|s| now.duration_since(s) >= Duration::from_secs(60)) {
        w.minute_start = Some(now);
        w.in_minute = 0;
    }
    if w.in_minute >= policy.max_per_minute {
        return Err(Filtered::RateLimited);
    }
    w.in_minute += 1;
    if w.last_by_signature.len() >= MAX_SIGNATURES {
        let window = policy.dedup_window;
        w.last_by_signature.retain(|_, t| now.duration_since(*t) < window);
        if w.last_by_signature.len() >= MAX_SIGNATURES {
            w.last_by_signature.clear();
        }
    }
    w.last_by_signature.insert(signature.to_owned(), now);
    Ok(())
}

/// File a handled-error report for an error-level log event, unless the
/// policy or the filter leaves it out (counted and logged).
#[cfg_attr(not(any(feature = "tracing-layer", feature = "log")), allow(dead_code))]
pub(crate) fn report_logged_error(policy: &ErrorReports, signature: &str, target: &str, message: &str) {
    if crate::signal::socket_fd().is_none() {
        return;
    }
    match admit_event(policy, signature) {
        Ok(()) => {}
        Err(why) => {
            let counter = if why == Filtered::Duplicate { &EVENTS_DEDUPLICATED } else { &EVENTS_RATE_LIMITED };
            counter.fetch_add(1, Ordering::Relaxed);
            tracing::info!(signature, "crashmon: error event not reported ({why})");
            return;
        }
    }
    let reason = format!("error logged by {target}: {message}");
    match crate::request::request_dump_filtered(None, &reason) {
        Ok(_) => {
            EVENTS_REPORTED.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => tracing::info!(signature, "crashmon: error event not reported: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_rules_match_whole_names_and_trailing_segments() {
        let f = ReportFilter {
            ignore_error_types: vec!["ParseError".into(), "std::io::error::Error".into()],
            ..Default::default()
        };
        assert!(f.ignores_type("my_app::ParseError"));
        assert!(f.ignores_type("ParseError"));
        assert!(!f.ignores_type("my_app::MyParseError"));
        assert!(f.ignores_type("std::io::error::Error"));
        assert!(!f.ignores_type("core::fmt::Error"));
    }

    #[test]
    fn sample_rate_is_validated() {
        for bad in [-0.1, 1.5, f64::NAN] {
            let f = ReportFilter { handled_error_sample_rate: bad, ..Default::default() };
            assert!(f.validate().is_err(), "{bad}");
        }
        assert!(ReportFilter::default().validate().is_ok());
    }

    #[test]
    fn events_are_deduplicated_then_rate_limited() {
        let policy = ErrorReports { dedup_window: Duration::from_secs(60), max_per_minute: 2 };
        assert_eq!(admit_event(&policy, "t@a.rs:1"), Ok(()));
        assert_eq!(admit_event(&policy, "t@a.rs:1"), Err(Filtered::Duplicate));
        assert_eq!(admit_event(&policy, "t@a.rs:2"), Ok(()));
        assert_eq!(admit_event(&policy, "t@a.rs:3"), Err(Filtered::RateLimited));
    }

    #[test]
    fn unit_samples_stay_in_range() {
        for _ in 0..1000 {
            let u = next_unit();
            assert!((0.0..1.0).contains(&u));
        }
    }

    /// `n` decisions at `rate` from `seed`, without the global state.
    fn decisions(seed: u64, rate: f64, n: usize) -> Vec<bool> {
        let mut x = seeded_state(seed);
        (0..n)
            .map(|_| {
                let (next, unit) = step(x);
                x = next;
                unit < rate
            })
            .collect()
    }

    #[test]
    fn a_seed_makes_sampling_reproducible() {
        assert_eq!(decisions(42, 0.5, 64), decisions(42, 0.5, 64));
        assert_ne!(decisions(42, 0.5, 64), decisions(43, 0.5, 64), "another seed, another sequence");
        assert_ne!(seeded_state(0), 0, "seed 0 still gives a working generator");
    }

    /// The kept fraction follows the rate, for many seeds (deterministic:
    /// fixed seeds, so this cannot fail by chance on one run and pass on
    /// the next).
    #[test]
    fn the_kept_fraction_follows_the_rate() {
        for seed in 0..20u64 {
            for rate in [0.1, 0.5, 0.9] {
                let kept = decisions(seed, rate, 10_000).iter().filter(|k| **k).count() as f64 / 10_000.0;
                assert!((kept - rate).abs() < 0.03, "seed {seed}, rate {rate}: kept {kept}");
            }
        }
        assert!(decisions(7, 0.0, 1000).iter().all(|k| !k));
        assert!(decisions(7, 1.0, 1000).iter().all(|k| *k));
    }
}
