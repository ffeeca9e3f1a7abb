//! Symbolication after capture, in a child process with memory, CPU and
//! wall-clock limits, so a hostile or corrupt dump can only fail its own
//! report, never the monitor.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use crashmon_database::{Database, ReportId, ReportState, SymbolicationStatus};
use crashmon_monitor::AfterCapture;
use nix::sys::resource::{Resource, setrlimit};

use crate::exit::{self, WithCode};
use crate::{Context, Program};

/// Address-space limit of the symbolication child.
const MEMORY_LIMIT: u64 = 8 << 30;
/// CPU-time limit of the symbolication child, seconds.
const CPU_LIMIT_SECS: u64 = 120;
/// Wall-clock limit after which the child is killed.
const WALL_LIMIT: Duration = Duration::from_secs(180);

/// Settings of the post-processing after each report. Plain data: the CLI
/// maps flags and config keys onto it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostProcessOptions {
    /// Retention applied while the monitor runs.
    pub retention: crashmon_database::Retention,
    /// Reports waiting for symbolication at most; a report beyond that is
    /// filed without symbolication (recorded in its metadata) — the
    /// backpressure of a crash loop.
    pub queue_capacity: usize,
    /// Retention runs at most this often (it lists the whole database).
    pub prune_interval: Duration,
    /// Reports to filter after symbolication (by signature).
    pub filters: crashmon_monitor::FilterRules,
}

impl Default for PostProcessOptions {
    fn default() -> Self {
        PostProcessOptions {
            retention: crate::cmd::prune::default_retention(),
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            prune_interval: Duration::from_secs(1),
            filters: crashmon_monitor::FilterRules::default(),
        }
    }
}

/// Default of [`PostProcessOptions::queue_capacity`].
pub const DEFAULT_QUEUE_CAPACITY: usize = 16;

/// Post-processing of each new report, off the connection's thread: one
/// worker runs `crashmon __symbolicate-report` in a limited child, applies
/// signature filters and uploads if a target is configured. The queue in
/// front of it is bounded; retention runs at most once per
/// [`PostProcessOptions::prune_interval`].
#[derive(Debug)]
pub struct PostProcess {
    shared: Arc<Shared>,
    queue: Mutex<Option<SyncSender<ReportId>>>,
    worker: Mutex<Option<std::thread::JoinHandle<()>>>,
}

#[derive(Debug)]
struct Shared {
    /// The `crashmon` CLI that runs the child, or why it was not (yet)
    /// found (looked up for each report until found).
    cli: Mutex<Result<PathBuf, String>>,
    /// Which executable this monitor is.
    program: Program,
    upload: Option<(crashmon_uploader::Target, crashmon_uploader::UploadOptions)>,
    options: PostProcessOptions,
    last_prune: Mutex<Option<Instant>>,
    stopping: AtomicBool,
    skipped: AtomicU64,
    filtered: AtomicU64,
    /// Threads waiting for children that wrote their report and now build
    /// symbol tables for the next reports.
    builders: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// Set at the end of `drain`: builders still running are stopped.
    stop_builders: AtomicBool,
}

impl PostProcess {
    /// Run the child with the `crashmon` CLI ([`find_cli`]); upload to
    /// `upload` afterwards when given. A CLI that cannot be found fails
    /// only the symbolication of each report (recorded in its metadata).
    pub fn new(
        upload: Option<(crashmon_uploader::Target, crashmon_uploader::UploadOptions)>,
        options: PostProcessOptions,
        program: Program,
    ) -> Self {
        PostProcess {
            shared: Arc::new(Shared {
                // Looked up at the first report, not on the sidecar's
                // start-up (the path of a crash right after install()).
                cli: Mutex::new(Err("not looked up yet".into())),
                program,
                upload,
                options,
                last_prune: Mutex::new(None),
                stopping: AtomicBool::new(false),
                skipped: AtomicU64::new(0),
                filtered: AtomicU64::new(0),
                builders: Mutex::new(Vec::new()),
                stop_builders: AtomicBool::new(false),
            }),
            queue: Mutex::new(None),
            worker: Mutex::new(None),
        }
    }

    /// The queue, starting the worker on first use.
    fn sender(&self, db: &Database) -> Option<SyncSender<ReportId>> {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if queue.is_none() && !self.shared.stopping.load(Ordering::SeqCst) {
            let (tx, rx) = std::sync::mpsc::sync_channel(self.shared.options.queue_capacity.max(1));
            let shared = Arc::clone(&self.shared);
            let db = db.clone();
            match std::thread::Builder::new().name("crashmon-postprocess".into()).spawn(move || {
                for id in rx {
                    if shared.stopping.load(Ordering::SeqCst) {
                        shared.skip(&db, id, "the monitor stopped before symbolicating it");
                        continue;
                    }
                    shared.process(&db, id);
                }
            }) {
                Ok(handle) => {
                    *self.worker.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
                    *queue = Some(tx);
                }
                Err(e) => tracing::error!("cannot start the post-processing worker: {e}"),
            }
        }
        queue.clone()
    }
}

impl Shared {
    /// Record that `id` was filed without symbolication.
    fn skip(&self, db: &Database, id: ReportId, why: &str) {
        let n = self.skipped.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(report = %id, skipped = n, "symbolication skipped: {why}");
        let reason = format!(
            "skipped: {why}; `crashmon symbolicate` on its dump (or `crashmon show ID` with symbol options) symbolicates it"
        );
        self.record_symbolication(db, id, SymbolicationStatus::Failed { reason });
    }

    fn record_symbolication(&self, db: &Database, id: ReportId, status: SymbolicationStatus) {
        if let Ok(entry) = db.find(&id.to_string()) {
            let mut metadata = entry.metadata;
            metadata.symbolication = Some(status);
            if let Err(e) = db.update_metadata(id, &metadata) {
                tracing::warn!(report = %id, "cannot record the symbolication status: {e}");
            }
        }
    }

    /// Symbolicate, filter, upload.
    fn process(self: &Arc<Self>, db: &Database, id: ReportId) {
        let started = Instant::now();
        match self.run_child(db, id) {
            Ok(()) => tracing::info!(report = %id, ms = started.elapsed().as_millis() as u64, "symbolicated"),
            Err(reason) => {
                tracing::warn!(report = %id, "{reason}");
                self.record_symbolication(db, id, SymbolicationStatus::Failed { reason });
            }
        }
        if self.filter_by_signature(db, id) {
            return;
        }
        // The raw dump is uploadable even if symbolication failed.
        if let Some((target, options)) = &self.upload {
            match crashmon_uploader::upload_report(db, id, target, options, &crashmon_uploader::SystemClock) {
                Ok(outcome) if outcome.is_success() => tracing::info!(report = %id, %target, "{outcome}"),
                Ok(outcome) => tracing::warn!(report = %id, %target, "{outcome}"),
                Err(e) => tracing::warn!(report = %id, %target, "upload: {e}"),
            }
        }
    }

    /// Apply the signature rules; true if the report was filtered (moved
    /// to failed/ with the rule recorded).
    fn filter_by_signature(&self, db: &Database, id: ReportId) -> bool {
        if self.options.filters.ignore_signatures.is_empty() {
            return false;
        }
        let Ok(entry) = db.find(&id.to_string()) else { return false };
        let signature = match entry.read_report() {
            Ok(Some(bytes)) => serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("signature").and_then(|s| s.as_str()).map(str::to_owned)),
            _ => None,
        };
        let Some(signature) = signature else { return false };
        let Some(rule) = self.options.filters.match_signature(&signature) else { return false };
        let mut metadata = entry.metadata;
        metadata.filtered = Some(rule.clone());
        metadata.failure = Some(format!("filtered: {rule}"));
        let moved = db.update_metadata(id, &metadata).and_then(|()| db.transition(id, ReportState::Failed));
        let n = self.filtered.fetch_add(1, Ordering::Relaxed) + 1;
        match moved {
            Ok(()) => tracing::info!(report = %id, rule, signature, filtered = n, "report filtered; moved to failed/"),
            Err(e) => tracing::warn!(report = %id, rule, "report filtered, but cannot move it to failed/: {e}"),
        }
        true
    }

    /// Retention, at most once per interval: a crash loop cannot fill the
    /// disk, and does not pay a full listing of the database per crash.
    fn maybe_prune(&self, db: &Database, force: bool) {
        let Ok(mut last) = self.last_prune.try_lock() else { return };
        if !force && last.is_some_and(|t| t.elapsed() < self.options.prune_interval) {
            return;
        }
        *last = Some(Instant::now());
        match db.prune(&self.options.retention, crate::cmd::prune::now_ms()) {
            Ok(s) if s.removed > 0 => tracing::info!(removed = s.removed, freed = s.bytes_freed, "retention applied"),
            Ok(_) => {}
            Err(e) => tracing::warn!("retention: {e}"),
        }
    }

    /// The `crashmon` CLI for the child; looked up at first use, and again
    /// while not found.
    fn cli(&self) -> Result<PathBuf, String> {
        let mut cli = self.cli.lock().unwrap_or_else(|e| e.into_inner());
        if cli.is_err() {
            *cli = find_cli(self.program);
        }
        cli.clone()
    }

    /// Whether a child that wrote its report is still building symbol
    /// tables.
    fn builder_running(&self) -> bool {
        self.builders.lock().unwrap_or_else(|e| e.into_inner()).iter().any(|h| !h.is_finished())
    }

    /// Runs the child until it has written the report. A child that then
    /// goes on building symbol tables (the first report of a new binary)
    /// is left to it under the same limits, watched by a builder thread:
    /// the next report, the filters and the upload do not wait for it.
    ///
    /// At most one child builds at a time (each may use
    /// [`MEMORY_LIMIT`] and seconds of CPU): while one is, the next child is
    /// told not to build (`--no-table-build`), so a crash storm of several
    /// new binaries does not start a builder per report. Its binaries'
    /// tables are built after a later report of them.
    fn run_child(self: &Arc<Self>, db: &Database, id: ReportId) -> Result<(), String> {
        let started = Instant::now();
        let exe = self.cli()?;
        let mut child = Command::new(&exe);
        if let Some(f) = &crate::config::global().file {
            // The child reads the monitor's configuration ([symbols]).
            child.arg("--config").arg(std::path::absolute(&f.value).unwrap_or_else(|_| f.value.clone()));
        }
        child.arg("--database").arg(db.root()).arg("__symbolicate-report");
        if self.builder_running() {
            child.arg("--no-table-build");
        }
        let mut child = child
            .arg(id.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                // Moved or uninstalled since it was found: look again next time.
                *self.cli.lock().unwrap_or_else(|e| e.into_inner()) = Err(e.to_string());
                format!("cannot start the symbolication child {}: {e}", exe.display())
            })?;
        // Read stderr on a thread so a chatty child cannot block on a full pipe.
        let stderr = child.stderr.take();
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut s) = stderr {
                use std::io::Read;
                let _ = s.by_ref().take(64 * 1024).read_to_string(&mut text);
                let _ = std::io::copy(&mut s, &mut std::io::sink());
            }
            text
        });
        // The child says on stdout when the report is stored.
        let stdout = child.stdout.take();
        let (written_tx, written_rx) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let Some(stdout) = stdout else { return };
            for line in std::io::BufReader::new(stdout).lines() {
                match line {
                    Ok(line) if line.trim() == REPORT_WRITTEN => {
                        let _ = written_tx.send(());
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
        let deadline = started + WALL_LIMIT;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break Err(format!("symbolication took longer than {}s and was stopped", WALL_LIMIT.as_secs()));
                }
                Ok(None) if written_rx.try_recv().is_ok() => {
                    self.watch_builder(child, deadline, reader);
                    return Ok(());
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => break Err(format!("waiting for the symbolication child: {e}")),
            }
        };
        let stderr = reader.join().unwrap_or_default();
        let status = status?;
        if status.success() {
            return Ok(());
        }
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
        use std::os::unix::process::ExitStatusExt;
        Err(match status.signal() {
            Some(sig) => format!("symbolication child killed by signal {sig} (memory or CPU limit?) {last}"),
            None => format!("symbolication failed ({}): {last}", exe.display()),
        })
    }

    /// Waits (on a thread) for a child that has written its report and is
    /// building symbol tables; kills it at the wall-clock limit or when the
    /// monitor stops. Its failures only cost the cache entries.
    fn watch_builder(
        self: &Arc<Self>,
        mut child: std::process::Child,
        deadline: Instant,
        stderr: std::thread::JoinHandle<String>,
    ) {
        let shared = Arc::clone(self);
        let watcher = std::thread::Builder::new().name("crashmon-symbol-tables".into()).spawn(move || {
            loop {
                match child.try_wait() {
                    Ok(Some(status)) if status.success() => break,
                    Ok(Some(status)) => {
                        let stderr = stderr.join().unwrap_or_default();
                        let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
                        tracing::warn!("building symbol tables after a report failed ({status}): {last}");
                        return;
                    }
                    Ok(None) if Instant::now() >= deadline || shared.stop_builders.load(Ordering::SeqCst) => {
                        tracing::info!("symbol table building stopped (time limit or shutdown)");
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                    Err(_) => break,
                }
            }
            let _ = stderr.join();
        });
        match watcher {
            Ok(handle) => {
                let mut builders = self.builders.lock().unwrap_or_else(|e| e.into_inner());
                builders.retain(|h| !h.is_finished());
                builders.push(handle);
            }
            Err(e) => tracing::warn!("cannot watch the symbol table builder: {e}"),
        }
    }
}

/// The `crashmon` CLI, which has the child's `__symbolicate-report`
/// command: the running executable if it is the CLI; for
/// `crashmon-monitor`, `crashmon` next to it (the same installation), else
/// `crashmon` on `PATH`. The error names where it looked.
fn find_cli(program: Program) -> Result<PathBuf, String> {
    let me = std::env::current_exe();
    if program == Program::Cli {
        return me.map_err(|e| format!("cannot find the running crashmon executable: {e}"));
    }
    let beside = me.as_ref().ok().and_then(|me| me.parent()).map(|d| d.join(crate::CLI_EXE));
    if let Some(p) = beside.as_ref().filter(|p| p.is_file()) {
        return Ok(p.clone());
    }
    let on_path = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        // Relative entries would depend on the app's working directory.
        .filter(|d| d.is_absolute())
        .map(|d| d.join(crate::CLI_EXE))
        .find(|p| p.is_file());
    on_path.ok_or_else(|| match beside {
        Some(p) => format!(
            "cannot find the `crashmon` CLI to symbolicate with: not at {} and not on PATH \
             (install it next to {}; the report stays unsymbolicated)",
            p.display(),
            crate::MONITOR_EXE
        ),
        None => format!(
            "cannot find the `crashmon` CLI to symbolicate with: not on PATH \
             (install it next to {}; the report stays unsymbolicated)",
            crate::MONITOR_EXE
        ),
    })
}

/// What the child prints on stdout once the report is stored.
const REPORT_WRITTEN: &str = "report-written";

impl AfterCapture for PostProcess {
    fn after_capture(&self, db: &Database, id: ReportId) {
        match self.sender(db).map(|tx| tx.try_send(id)) {
            Some(Ok(())) => {}
            Some(Err(TrySendError::Full(_))) => self.shared.skip(
                db,
                id,
                &format!("post-processing queue full ({} reports waiting)", self.shared.options.queue_capacity),
            ),
            Some(Err(TrySendError::Disconnected(_))) | None => self.shared.skip(db, id, "no post-processing worker"),
        }
        self.shared.maybe_prune(db, false);
    }

    fn drain(&self, timeout: Duration) {
        // Work through the queue within `timeout`; what is left then is
        // marked as skipped (the dumps are durable in pending/).
        let deadline = Instant::now() + timeout;
        drop(self.queue.lock().unwrap_or_else(|e| e.into_inner()).take());
        let worker = self.worker.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(worker) = worker {
            while !worker.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            self.shared.stopping.store(true, Ordering::SeqCst);
            if worker.is_finished() {
                let _ = worker.join();
            } else {
                tracing::warn!("post-processing did not finish within {}s", timeout.as_secs());
            }
        }
        // Children still building symbol tables get the rest of the time
        // (a monitor that ends with its app would otherwise never cache the
        // app's tables), then are stopped: the next report of their
        // binaries is looked up lazily again.
        let builders = std::mem::take(&mut *self.shared.builders.lock().unwrap_or_else(|e| e.into_inner()));
        while builders.iter().any(|b| !b.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.stop_builders.store(true, Ordering::SeqCst);
        for builder in builders {
            let _ = builder.join();
        }
    }
}

/// Arguments of the internal child command.
#[derive(Debug, clap::Args)]
pub struct ChildArgs {
    /// Do not build the symbol tables the report did without (another
    /// child is building tables)
    #[arg(long)]
    pub no_table_build: bool,
    /// The report to symbolicate
    pub id: String,
}

/// The child: apply limits, symbolicate, store the report.
pub fn child_main(ctx: &Context, args: ChildArgs) -> anyhow::Result<u8> {
    setrlimit(Resource::RLIMIT_AS, MEMORY_LIMIT, MEMORY_LIMIT).context("setrlimit(RLIMIT_AS)")?;
    setrlimit(Resource::RLIMIT_CPU, CPU_LIMIT_SECS, CPU_LIMIT_SECS).context("setrlimit(RLIMIT_CPU)")?;
    setrlimit(Resource::RLIMIT_CORE, 0, 0).context("setrlimit(RLIMIT_CORE)")?;
    let db_path = ctx.database_path()?;
    let db = Database::open_existing(&db_path).code(exit::USAGE)?;
    let entry = db.find(&args.id).code(exit::NO_SUCH_REPORT)?;
    let dump = entry.dump_path.clone().ok_or_else(|| anyhow::anyhow!("report {} has no dump", entry.id))?;
    // Modules without a cached symbol table are looked up lazily: the report
    // never waits for a table to be built.
    let (report, _, pending) = crashmon_symbolicate::symbolicate_path_deferred(
        &dump,
        &crate::config::global().apply_symbols(crashmon_symbolicate::Options::default()),
    )
    .code(exit::BAD_INPUT)?;
    let json = serde_json::to_vec_pretty(&report)?;
    db.write_report(entry.id, &json)?;
    // Re-read: an uploader may have recorded attempts (or moved the report)
    // while this child ran; writing the copy read at the start would undo it.
    let mut metadata = db.find(&entry.id.to_string())?.metadata;
    metadata.symbolication = Some(SymbolicationStatus::Ok);
    db.update_metadata(entry.id, &metadata)?;
    // Tell the monitor the report is stored (it goes on with filters and
    // upload), then build the missing tables for the next reports, under
    // this process's limits.
    crate::print_out(&format!("{REPORT_WRITTEN}\n"))?;
    if args.no_table_build {
        if !pending.is_empty() {
            tracing::debug!(pending = pending.len(), "another child is building symbol tables; not building these now");
        }
    } else {
        crate::cmd::symbolicate::build_pending_tables(pending);
    }
    Ok(exit::OK)
}
