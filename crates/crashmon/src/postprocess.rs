//! Symbolication after capture, in a child process with memory, CPU and
//! wall-clock limits, so a hostile or corrupt dump can only fail its own
//! report, never the monitor.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use crashmon_database::{Database, ReportId, SymbolicationStatus};
use crashmon_monitor::AfterCapture;
use nix::sys::resource::{Resource, setrlimit};

use crate::Context;
use crate::exit::{self, WithCode};

/// Address-space limit of the symbolication child.
const MEMORY_LIMIT: u64 = 8 << 30;
/// CPU-time limit of the symbolication child, seconds.
const CPU_LIMIT_SECS: u64 = 120;
/// Wall-clock limit after which the child is killed.
const WALL_LIMIT: Duration = Duration::from_secs(180);

/// Post-processing of each new report: `crashmon __symbolicate-report` in
/// a limited child, the upload if a target is configured, then retention.
#[derive(Debug)]
pub struct PostProcess {
    exe: PathBuf,
    upload: Option<(crashmon_uploader::Target, crashmon_uploader::UploadOptions)>,
}

impl PostProcess {
    /// Use the running `crashmon` executable as the child; upload to
    /// `upload` afterwards when given.
    pub fn new(upload: Option<(crashmon_uploader::Target, crashmon_uploader::UploadOptions)>) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find the crashmon executable")?;
        Ok(PostProcess { exe, upload })
    }

    fn run_child(&self, db: &Database, id: ReportId) -> Result<(), String> {
        let mut child = Command::new(&self.exe)
            .arg("--database")
            .arg(db.root())
            .arg("__symbolicate-report")
            .arg(id.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the symbolication child: {e}"))?;
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
        let deadline = Instant::now() + WALL_LIMIT;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break Err(format!("symbolication took longer than {}s and was stopped", WALL_LIMIT.as_secs()));
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
            None => format!("symbolication failed: {last}"),
        })
    }
}

impl AfterCapture for PostProcess {
    fn after_capture(&self, db: &Database, id: ReportId) {
        let started = Instant::now();
        match self.run_child(db, id) {
            Ok(()) => tracing::info!(report = %id, ms = started.elapsed().as_millis() as u64, "symbolicated"),
            Err(reason) => {
                tracing::warn!(report = %id, "{reason}");
                if let Ok(entry) = db.find(&id.to_string()) {
                    let mut metadata = entry.metadata;
                    metadata.symbolication = Some(SymbolicationStatus::Failed { reason });
                    if let Err(e) = db.update_metadata(id, &metadata) {
                        tracing::warn!(report = %id, "cannot record the symbolication failure: {e}");
                    }
                }
            }
        }
        // The raw dump is uploadable even if symbolication failed.
        if let Some((target, options)) = &self.upload {
            match crashmon_uploader::upload_report(db, id, target, options, &crashmon_uploader::SystemClock) {
                Ok(outcome) if outcome.is_success() => tracing::info!(report = %id, %target, "{outcome}"),
                Ok(outcome) => tracing::warn!(report = %id, %target, "{outcome}"),
                Err(e) => tracing::warn!(report = %id, %target, "upload: {e}"),
            }
        }
        // Retention, so a crash loop cannot fill the disk.
        match db.prune(&crate::cmd::prune::default_retention(), crate::cmd::prune::now_ms()) {
            Ok(s) if s.removed > 0 => tracing::info!(removed = s.removed, freed = s.bytes_freed, "retention applied"),
            Ok(_) => {}
            Err(e) => tracing::warn!("retention: {e}"),
        }
    }
}

/// Arguments of the internal child command.
#[derive(Debug, clap::Args)]
pub struct ChildArgs {
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
    let report = crashmon_symbolicate::symbolicate_path(&dump, &crashmon_symbolicate::Options::default())
        .code(exit::BAD_INPUT)?;
    let json = serde_json::to_vec_pretty(&report)?;
    db.write_report(entry.id, &json)?;
    let mut metadata = entry.metadata;
    metadata.symbolication = Some(SymbolicationStatus::Ok);
    db.update_metadata(entry.id, &metadata)?;
    Ok(exit::OK)
}
