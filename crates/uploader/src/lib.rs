//! crashmon's uploader: sends pending crash reports to a collector.
//!
//! - [`Target`]: where to ([`Target::parse`] takes a collector URL or a
//!   Sentry DSN; see [`target`]).
//! - [`upload_report`] uploads one report, [`upload_pending`] every pending
//!   report that is due; both return an [`Outcome`] per report and move the
//!   report on: `completed/` when accepted (server id in the metadata),
//!   `failed/` when rejected for good (reason in `metadata.failure`),
//!   otherwise it stays in `pending/` with `attempts`, `next_attempt_ms` and
//!   `last_error` updated ([`retry`]).
//! - Nothing is sent unless the user agreed (`settings.uploads_enabled`,
//!   see [`set_consent`]) or the caller overrides it
//!   ([`UploadOptions::ignore_consent`]).
//! - Each report is locked while it is uploaded ([`lock`]: `flock` on
//!   `pending/<id>.dmp`), so concurrent uploaders — threads, `crashmon
//!   upload` runs, the monitor — never send a report twice.
//! - Dumps are streamed from disk, never read whole into memory, and
//!   scrubbed of secrets from the environment and command line on the way
//!   ([`scrub`]).
//! - Replies are classified by kind ([`reply`]); rate limits pause every
//!   report to the target, persisted in `<db>/upload-state.json`
//!   ([`state`]).
//! - Redirects are never followed, TLS never falls back to plain HTTP, one
//!   timeout bounds each request and replies are read only in part
//!   ([`http`]).
//! - Sentry events carry the report id as `event_id` and the on-device
//!   stack trace ([`sentry`]); what each protocol's request contains is in
//!   [`request`].

mod body;
pub mod http;
pub mod lock;
pub mod reply;
pub mod request;
pub mod retry;
pub mod scrub;
pub mod sentry;
pub mod state;
pub mod target;

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use crashmon_database::{Breadcrumb, Database, DbError, Entry, ReportId, ReportState, Settings};
use serde::Serialize;

pub use http::check_options;
pub use reply::{Failure, Verdict};
pub use retry::{Clock, ManualClock, SystemClock};
pub use scrub::ScrubOptions;
pub use state::{TargetPause, paused_targets, target_pause};
pub use target::{Flavor, SentryDsn, SentryEndpoint, Target, TargetError};

use crate::body::{AttachmentFile, DumpSource};
use crate::lock::Locked;
use crate::reply::Protocol;
use crate::scrub::{ScrubError, ScrubPlan};

/// How to upload.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct UploadOptions {
    /// Bound on one whole request, from DNS lookup to the last byte of the
    /// reply (default 60 s, as Crashpad). A stalled or trickling server
    /// ends at this timeout and the report is retried later.
    pub timeout: Duration,
    /// Bound on resolving the host and opening the connection, TLS
    /// handshake and proxy negotiation included (default 10 s; never more
    /// than `timeout`).
    pub connect_timeout: Duration,
    /// A proxy URL (`http://[user:password@]host:port`, or `https://`) used
    /// for every request, in place of the environment's. Default none.
    pub proxy: Option<String>,
    /// A PEM file of CA certificates trusted for TLS instead of the built-in
    /// Mozilla roots (a private collector's CA). Default none.
    pub ca_file: Option<PathBuf>,
    /// Compress (default on): gzip the whole body (Breakpad, Sentry
    /// envelope) or the dump part (Sentry minidump endpoint).
    pub compress: bool,
    /// Secret scrubbing (default on).
    pub scrub: ScrubOptions,
    /// Upload even though the user has not enabled uploads (an explicit
    /// command-line override). Default false.
    pub ignore_consent: bool,
    /// Ignore a report's `next_attempt_ms` (e.g. the user named the report).
    /// A rate-limit pause of the target is still honoured. Default false.
    pub force: bool,
    /// Product name to send; default: the report's annotation, else the
    /// executable's name.
    pub product: Option<String>,
    /// Version to send; default: the report's annotation.
    pub version: Option<String>,
    /// Most bytes of a reply body read (default 64 KiB).
    pub max_reply_bytes: usize,
    /// Use a proxy from the environment when [`proxy`](Self::proxy) is not
    /// set (default true): for an `https` target `https_proxy`/`HTTPS_PROXY`,
    /// for an `http` target `http_proxy` (lowercase only, as curl: CGI
    /// servers set `HTTP_PROXY` from a request header), else
    /// `all_proxy`/`ALL_PROXY`; not for a host matched by
    /// `no_proxy`/`NO_PROXY`. See [`http`].
    pub use_env_proxy: bool,
    /// Seed of the jitter and multipart boundaries (default: random).
    pub rng_seed: Option<u64>,
}

impl Default for UploadOptions {
    fn default() -> UploadOptions {
        UploadOptions {
            timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            proxy: None,
            ca_file: None,
            compress: true,
            scrub: ScrubOptions::default(),
            ignore_consent: false,
            force: false,
            product: None,
            version: None,
            max_reply_bytes: 64 * 1024,
            use_env_proxy: true,
            rng_seed: None,
        }
    }
}

/// A local error: the database, the target string or the dump file, as
/// opposed to what the server said (which is an [`Outcome`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UploadError {
    /// The database failed.
    #[error(transparent)]
    Database(#[from] DbError),
    /// The target string is not usable.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// The report has no dump.
    #[error("report {id} has no dump to upload")]
    NoDump {
        /// The report.
        id: ReportId,
    },
    /// The dump could not be opened, locked or read.
    #[error("cannot lock or read the dump of report {id}: {source}")]
    Dump {
        /// The report.
        id: ReportId,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The proxy URL is not usable.
    #[error("bad proxy {proxy} (from {from}): {detail}")]
    Proxy {
        /// The proxy, credentials removed.
        proxy: String,
        /// Where it came from (`--proxy`, `HTTPS_PROXY`, ...).
        from: String,
        /// What is wrong.
        detail: String,
    },
    /// The CA file cannot be read or holds no certificate.
    #[error("cannot use the CA file {}: {detail}", .path.display())]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The shared upload state (rate-limit pauses) failed.
    #[error("cannot {op} {}: {source}", .path.display())]
    State {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// What happened to one report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// Uploaded; moved to `completed/`. The metadata's
    /// `upload.server_report_id` holds the server's id, or `""` if it gave
    /// none (the mark that the report was accepted).
    Accepted {
        /// The server's id for it, if it gave one.
        server_id: Option<String>,
    },
    /// Refused for good (or unsendable); moved to `failed/`.
    Rejected {
        /// Why.
        failure: Failure,
    },
    /// Failed now, stays pending; retried after a backoff.
    RetryLater {
        /// Why.
        failure: Failure,
        /// Attempts made so far.
        attempts: u32,
        /// Earliest next attempt (Unix ms).
        next_attempt_ms: u64,
    },
    /// The target refuses us whatever the report (credentials, URL,
    /// redirect); stays pending with a backoff; the rest of a batch is not
    /// attempted. Fix the target.
    TargetRefused {
        /// Why.
        failure: Failure,
        /// Attempts made so far.
        attempts: u32,
        /// Earliest next attempt (Unix ms).
        next_attempt_ms: u64,
    },
    /// The server asked us to slow down; stays pending, and every report to
    /// this target waits until `until_ms`.
    RateLimited {
        /// The reply.
        failure: Failure,
        /// Attempts made so far.
        attempts: u32,
        /// No request to the target before this (Unix ms).
        until_ms: u64,
    },
    /// Not sent: its next attempt is later.
    NotDue {
        /// When it is due (Unix ms).
        next_attempt_ms: u64,
    },
    /// Not sent: the target is paused (rate limit).
    TargetPaused {
        /// Until when (Unix ms).
        until_ms: u64,
    },
    /// Not sent: another uploader is sending it right now.
    Busy,
    /// Not sent: it is not pending (any more).
    NotPending {
        /// Where it is.
        state: ReportState,
    },
    /// Not sent: an earlier report of the batch showed the target
    /// unreachable or refusing.
    Skipped {
        /// Why.
        reason: String,
    },
    /// Not sent: the user has not enabled uploads.
    ConsentOff,
    /// Never sent: a filter rule kept the report back (its metadata's
    /// `filtered`); moved to `failed/` with the failure `filtered: <rule>`.
    Filtered {
        /// The rule.
        rule: String,
    },
}

impl Outcome {
    /// The report was uploaded.
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Accepted { .. })
    }

    /// The report was attempted and failed, or rejected, or skipped because
    /// of such a failure: something for a non-zero exit status. Reports
    /// that were simply not due, paused, busy, not pending or held back by
    /// consent are not failures.
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            Outcome::Rejected { .. }
                | Outcome::RetryLater { .. }
                | Outcome::TargetRefused { .. }
                | Outcome::RateLimited { .. }
                | Outcome::Skipped { .. }
        )
    }
}

fn at(ms: u64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_millis(ms))
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Accepted { server_id: Some(id) } => write!(f, "uploaded, server id {id}"),
            Outcome::Accepted { server_id: None } => write!(f, "uploaded"),
            Outcome::Rejected { failure } => write!(f, "rejected, moved to failed/: {failure}"),
            Outcome::RetryLater { failure, attempts, next_attempt_ms } => {
                write!(f, "failed (attempt {attempts}), retry after {}: {failure}", at(*next_attempt_ms))
            }
            Outcome::TargetRefused { failure, attempts, next_attempt_ms } => write!(
                f,
                "target refused (attempt {attempts}; kept pending, retry after {}): {failure}",
                at(*next_attempt_ms)
            ),
            Outcome::RateLimited { failure, attempts, until_ms } => {
                write!(f, "rate limited (attempt {attempts}), target paused until {}: {failure}", at(*until_ms))
            }
            Outcome::NotDue { next_attempt_ms } => write!(f, "not due before {}", at(*next_attempt_ms)),
            Outcome::TargetPaused { until_ms } => write!(f, "target paused until {} (rate limit)", at(*until_ms)),
            Outcome::Busy => write!(f, "being uploaded by another process"),
            Outcome::NotPending { state } => write!(f, "not pending (in {state}/)"),
            Outcome::Skipped { reason } => write!(f, "not attempted: {reason}"),
            Outcome::ConsentOff => write!(f, "not sent: uploads are disabled (crashmon consent enable)"),
            Outcome::Filtered { rule } => write!(f, "filtered ({rule}), never sent; moved to failed/"),
        }
    }
}

/// The result for one report of [`upload_pending`].
pub type ReportResult = (ReportId, Result<Outcome, UploadError>);

/// Whether the user has enabled uploads.
pub fn consent(db: &Database) -> Result<bool, UploadError> {
    Ok(db.settings()?.uploads_enabled)
}

/// Enables or disables uploads; returns the new settings.
pub fn set_consent(db: &Database, enabled: bool) -> Result<Settings, UploadError> {
    let mut settings = db.settings()?;
    if settings.uploads_enabled != enabled {
        settings.uploads_enabled = enabled;
        db.write_settings(&settings)?;
        tracing::info!(enabled, "upload consent changed");
    }
    Ok(settings)
}

/// Uploads report `id` if it is pending, due (or `options.force`), its
/// target is not paused, consent is given and no other uploader holds it.
pub fn upload_report(
    db: &Database,
    id: ReportId,
    target: &Target,
    options: &UploadOptions,
    clock: &dyn Clock,
) -> Result<Outcome, UploadError> {
    Run::new(db, target, options, clock)?.attempt(id)
}

/// Uploads the pending reports that `filter` accepts, oldest first, each
/// as [`upload_report`] would. After an attempt that shows the target
/// unreachable or refusing ([`Outcome::RetryLater`] for anything but a
/// local read error, [`Outcome::TargetRefused`]), the rest are not
/// attempted ([`Outcome::Skipped`]); after a rate limit they come back as
/// [`Outcome::TargetPaused`]. Returns one result per report considered;
/// `Err` only if the settings or the list of reports cannot be read.
pub fn upload_pending(
    db: &Database,
    target: &Target,
    options: &UploadOptions,
    clock: &dyn Clock,
    filter: &dyn Fn(&Entry) -> bool,
) -> Result<Vec<ReportResult>, UploadError> {
    upload_pending_with(db, target, options, clock, filter, &mut |_| {})
}

/// What [`upload_pending_with`] reports as it goes (e.g. for a progress
/// bar).
#[derive(Debug)]
#[non_exhaustive]
pub enum BatchEvent<'a> {
    /// The reports to consider are known.
    Start {
        /// How many.
        total: usize,
    },
    /// One report is done with.
    Done {
        /// Its result.
        result: &'a ReportResult,
    },
}

/// [`upload_pending`], calling `on_event` before the first report and after
/// each.
pub fn upload_pending_with(
    db: &Database,
    target: &Target,
    options: &UploadOptions,
    clock: &dyn Clock,
    filter: &dyn Fn(&Entry) -> bool,
    on_event: &mut dyn FnMut(BatchEvent<'_>),
) -> Result<Vec<ReportResult>, UploadError> {
    let run = Run::new(db, target, options, clock)?;
    let mut pending: Vec<Entry> =
        db.list()?.into_iter().filter(|e| e.state == ReportState::Pending && e.has_dump() && filter(e)).collect();
    pending.sort_by_key(|e| (e.metadata.captured_at_ms, e.id));
    on_event(BatchEvent::Start { total: pending.len() });
    let mut stop: Option<String> = None;
    let mut results = Vec::with_capacity(pending.len());
    for entry in pending {
        if let Some(reason) = &stop {
            results.push((entry.id, Ok(Outcome::Skipped { reason: reason.clone() })));
            if let Some(last) = results.last() {
                on_event(BatchEvent::Done { result: last });
            }
            continue;
        }
        let result = run.attempt(entry.id);
        // A rate limit needs no stop: the pause it recorded holds the rest
        // back (as TargetPaused).
        match &result {
            Ok(Outcome::TargetRefused { failure, .. }) | Ok(Outcome::RetryLater { failure, .. })
                if !matches!(failure, Failure::LocalRead { .. }) =>
            {
                stop = Some(format!("report {} failed first: {failure}", entry.id));
            }
            _ => {}
        }
        results.push((entry.id, result));
        if let Some(last) = results.last() {
            on_event(BatchEvent::Done { result: last });
        }
    }
    Ok(results)
}

/// One upload session: database, target, options, HTTP client.
struct Run<'a> {
    db: &'a Database,
    target: &'a Target,
    options: &'a UploadOptions,
    clock: &'a dyn Clock,
    agent: ureq::Agent,
    settings: Settings,
    seed: u64,
}

impl<'a> Run<'a> {
    fn new(
        db: &'a Database,
        target: &'a Target,
        options: &'a UploadOptions,
        clock: &'a dyn Clock,
    ) -> Result<Run<'a>, UploadError> {
        Ok(Run {
            db,
            target,
            options,
            clock,
            agent: http::agent(options, target)?,
            settings: db.settings()?,
            seed: options.rng_seed.unwrap_or_else(|| fastrand::u64(..)),
        })
    }

    fn pending_entry(&self, id: ReportId) -> Result<Result<Entry, Outcome>, UploadError> {
        let entry = self.db.find(&id.to_string())?;
        if entry.state != ReportState::Pending {
            return Ok(Err(Outcome::NotPending { state: entry.state }));
        }
        Ok(Ok(entry))
    }

    /// Whether the report must wait (backoff or target pause).
    fn must_wait(&self, entry: &Entry) -> Result<Option<Outcome>, UploadError> {
        let now = self.clock.now_ms();
        if !self.options.force
            && let Some(next) = entry.metadata.upload.next_attempt_ms
            && next > now
        {
            return Ok(Some(Outcome::NotDue { next_attempt_ms: next }));
        }
        if let Some(pause) = target_pause(self.db, self.target, now)? {
            return Ok(Some(Outcome::TargetPaused { until_ms: pause.until_ms }));
        }
        Ok(None)
    }

    fn attempt(&self, id: ReportId) -> Result<Outcome, UploadError> {
        let entry = match self.pending_entry(id)? {
            Ok(entry) => entry,
            Err(outcome) => return Ok(outcome),
        };
        // A filtered report is moved out of the way whatever the consent,
        // backoff or pause: it will never be sent.
        if entry.metadata.filtered.is_none() {
            if !self.settings.uploads_enabled && !self.options.ignore_consent {
                return Ok(Outcome::ConsentOff);
            }
            if let Some(outcome) = self.must_wait(&entry)? {
                return Ok(outcome);
            }
        }
        let dump_path = entry.dump_path.clone().ok_or(UploadError::NoDump { id })?;
        let lock = match lock::try_lock(&dump_path).map_err(|source| UploadError::Dump { id, source })? {
            Locked::Yes(lock) => lock,
            Locked::Busy => return Ok(Outcome::Busy),
            Locked::Gone => {
                return Ok(match self.pending_entry(id)? {
                    Err(outcome) => outcome,
                    Ok(_) => Outcome::Busy, // replaced under us; let the next run look again
                });
            }
        };
        // Under the lock: read the report afresh; another uploader may have
        // finished with it or set a backoff.
        let entry = match self.pending_entry(id)? {
            Ok(entry) => entry,
            Err(outcome) => return Ok(outcome),
        };
        if let Some(rule) = entry.metadata.filtered.clone() {
            let mut metadata = entry.metadata;
            metadata.failure = Some(format!("filtered: {rule}"));
            metadata.upload.next_attempt_ms = None;
            self.db.update_metadata(id, &metadata)?;
            self.db.transition(id, ReportState::Failed)?;
            tracing::info!(report = %id, rule = %rule, "filtered report never sent; moved to failed/");
            return Ok(Outcome::Filtered { rule });
        }
        if !self.settings.uploads_enabled && !self.options.ignore_consent {
            return Ok(Outcome::ConsentOff);
        }
        if entry.metadata.upload.server_report_id.is_some() {
            // Accepted earlier, but the move to completed/ did not happen
            // (crash in between): finish it without sending again.
            self.db.transition(id, ReportState::Completed)?;
            tracing::info!(report = %id, "already uploaded earlier; moved to completed/");
            return Ok(Outcome::Accepted { server_id: entry.metadata.upload.server_report_id });
        }
        if let Some(outcome) = self.must_wait(&entry)? {
            return Ok(outcome);
        }

        let (verdict, pause) = self.send(&entry, lock.file())?;
        let outcome = self.record(id, verdict, pause)?;
        drop(lock);
        Ok(outcome)
    }

    /// Builds and sends the request; the verdict and any target pause.
    fn send(&self, entry: &Entry, file: &std::fs::File) -> Result<(Verdict, Option<Duration>), UploadError> {
        let id = entry.id;
        let len = file.metadata().map_err(|source| UploadError::Dump { id, source })?.len();
        let plan = match ScrubPlan::for_dump(file, len, &self.options.scrub) {
            Ok(plan) => plan,
            Err(ScrubError::Io(source)) => return Err(UploadError::Dump { id, source }),
            Err(e @ ScrubError::NotAMinidump(_)) => {
                return Ok((Verdict::Rejected(Failure::CannotScrub { detail: e.to_string() }), None));
            }
        };
        if plan.secrets_found() > 0 {
            tracing::info!(report = %id, secrets = plan.secrets_found(), "scrubbing secrets from the dump");
        }
        // Annotation values and breadcrumbs: secret-looking assignments and
        // URL passwords, then every secret value found in the dump.
        let scrub = &self.options.scrub;
        let annotations: BTreeMap<String, String> = entry
            .metadata
            .annotations
            .iter()
            .map(|(k, v)| (k.clone(), plan.scrub_text(&scrub.scrub_annotation(k, v))))
            .collect();
        let breadcrumbs: Vec<Breadcrumb> = entry
            .metadata
            .breadcrumbs
            .iter()
            .map(|b| Breadcrumb {
                category: plan.scrub_text(&scrub.scrub_text(&b.category)),
                message: plan.scrub_text(&scrub.scrub_text(&b.message)),
                ..b.clone()
            })
            .collect();
        let attachments = self.open_attachments(entry);
        let attachment_plan = plan.replacements_only();
        let report = match entry.read_report() {
            Ok(Some(bytes)) => serde_json::from_slice::<serde_json::Value>(&bytes)
                .inspect_err(|e| tracing::warn!(report = %id, "ignoring unreadable symbolicated report: {e}"))
                .ok(),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(report = %id, "ignoring unreadable symbolicated report: {e}");
                None
            }
        };
        let mut rng = fastrand::Rng::with_seed(self.seed ^ id.as_uuid().as_u64_pair().0);
        let data = request::ReportData {
            metadata: &entry.metadata,
            annotations: &annotations,
            client_id: &self.settings.client_id,
            report: report.as_ref(),
            dump_len: len,
            breadcrumbs: &breadcrumbs,
            attachments: &attachments,
        };
        let request = request::build(self.target, &data, self.options, &mut rng);
        let protocol = match self.target {
            Target::Breakpad { flavor, .. } => Protocol::Breakpad(*flavor),
            Target::Sentry { .. } => Protocol::Sentry,
        };
        tracing::info!(report = %id, target = %self.target, bytes = len, "uploading crash report");
        let dump = DumpSource { file, len, plan: &plan, attachments: &attachments, attachment_plan: &attachment_plan };
        let (mut verdict, pause) =
            match http::send(&self.agent, self.target, &request, &dump, self.options.max_reply_bytes) {
                Ok(reply) => reply::classify(protocol, &reply, self.clock.now_ms()),
                Err(failure @ Failure::Redirect { .. }) => (Verdict::TargetRefused(failure), None),
                Err(failure) => (Verdict::Retry { failure, retry_after: None }, None),
            };
        // A server may echo our credentials back; they are stored and shown.
        if let Some(failure) = verdict.failure_mut() {
            failure.map_text(|text| self.target.redact_message(text));
        }
        Ok((verdict, pause))
    }

    /// Opens the report's attachments. One that is missing, unreadable or
    /// badly named is left out with a warning: the dump matters more.
    fn open_attachments(&self, entry: &Entry) -> Vec<AttachmentFile> {
        let dir = self.db.attachments_dir(entry.id);
        let mut out: Vec<AttachmentFile> = Vec::new();
        for attachment in &entry.metadata.attachments {
            let name = &attachment.name;
            let bad_name = name.is_empty()
                || name.starts_with('.')
                || name.contains(['/', '\\', '\0', '"', '\r', '\n'])
                || out.iter().any(|a| &a.name == name);
            if bad_name {
                tracing::warn!(report = %entry.id, attachment = %name.escape_debug(), "attachment left out: bad or repeated name");
                continue;
            }
            // Never follow a symlink planted in the database.
            let opened = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
                .open(dir.join(name))
                .and_then(|file| {
                    let meta = file.metadata()?;
                    if !meta.is_file() {
                        return Err(io::Error::other("not a regular file"));
                    }
                    Ok((file, meta.len()))
                });
            match opened {
                Ok((file, len)) => out.push(AttachmentFile { name: name.clone(), file, len }),
                Err(e) => tracing::warn!(report = %entry.id, attachment = %name, "attachment left out: {e}"),
            }
        }
        out
    }

    /// Stores the verdict in the report's metadata and moves it on.
    fn record(&self, id: ReportId, verdict: Verdict, pause: Option<Duration>) -> Result<Outcome, UploadError> {
        let now = self.clock.now_ms();
        if let Some(pause) = pause {
            let reason = match &verdict {
                Verdict::RateLimited { failure, .. } => failure.to_string(),
                _ => "Sentry rate limit".to_owned(),
            };
            state::pause_target(self.db, self.target, now.saturating_add(pause.as_millis() as u64), now, &reason)?;
        }
        // Re-read right before writing, to keep what others wrote meanwhile
        // (e.g. the symbolication status).
        let mut metadata = self.db.find(&id.to_string())?.metadata;
        let upload = &mut metadata.upload;
        upload.attempts = upload.attempts.saturating_add(1);
        let attempts = upload.attempts;
        let mut rng = fastrand::Rng::with_seed(self.seed ^ id.as_uuid().as_u64_pair().1 ^ u64::from(attempts));
        let later = |delay: Duration| now.saturating_add(delay.as_millis() as u64);
        let outcome = match verdict {
            Verdict::Accepted { server_id } => {
                upload.server_report_id = Some(server_id.clone().unwrap_or_default());
                upload.last_error = None;
                upload.next_attempt_ms = None;
                self.db.update_metadata(id, &metadata)?;
                self.db.transition(id, ReportState::Completed)?;
                tracing::info!(report = %id, server_id = ?server_id, "crash report uploaded");
                return Ok(Outcome::Accepted { server_id });
            }
            Verdict::Rejected(failure) => {
                upload.last_error = Some(failure.to_string());
                upload.next_attempt_ms = None;
                metadata.failure = Some(format!("upload rejected: {failure}"));
                self.db.update_metadata(id, &metadata)?;
                self.db.transition(id, ReportState::Failed)?;
                tracing::warn!(report = %id, "crash report rejected, moved to failed/: {failure}");
                return Ok(Outcome::Rejected { failure });
            }
            Verdict::TargetRefused(failure) => {
                let next_attempt_ms = later(retry::backoff(attempts, &mut rng));
                upload.last_error = Some(failure.to_string());
                upload.next_attempt_ms = Some(next_attempt_ms);
                Outcome::TargetRefused { failure, attempts, next_attempt_ms }
            }
            Verdict::Retry { failure, retry_after } => {
                let delay = retry::backoff(attempts, &mut rng).max(retry_after.unwrap_or_default());
                let next_attempt_ms = later(delay);
                upload.last_error = Some(failure.to_string());
                upload.next_attempt_ms = Some(next_attempt_ms);
                Outcome::RetryLater { failure, attempts, next_attempt_ms }
            }
            Verdict::RateLimited { retry_after, failure } => {
                let until_ms = later(retry_after);
                upload.last_error = Some(failure.to_string());
                upload.next_attempt_ms = Some(until_ms);
                Outcome::RateLimited { failure, attempts, until_ms }
            }
        };
        self.db.update_metadata(id, &metadata)?;
        tracing::warn!(report = %id, target = %self.target, "crash report upload failed: {outcome}");
        Ok(outcome)
    }
}
