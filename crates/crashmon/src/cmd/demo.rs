//! `crashmon demo`: the whole pipeline on a bundled app.

use std::collections::HashSet;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use crashmon_database::Database;
use crashmon_demo::Kind;

use crate::Context;
use crate::exit::{self, WithCode};

fn parse_kind(s: &str) -> Result<Kind, String> {
    Kind::from_name(s).ok_or_else(|| {
        let names: Vec<&str> = Kind::ALL.iter().map(|(n, _)| *n).collect();
        format!("unknown crash kind {s:?}; one of: {}", names.join(", "))
    })
}

/// `crashmon demo` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// How the demo app crashes: segv, abort, bus, fpe, ill, trap, stack-overflow
    #[arg(long, default_value = "segv", value_parser = parse_kind)]
    pub crash: Kind,
    /// Print the report as JSON instead of text
    #[arg(long)]
    pub json: bool,
    /// Upload the report (a URL or --dsn): the monitor sends it after filing it
    #[command(flatten)]
    pub target: crate::cmd::upload::TargetArgs,
}

/// Arguments of the hidden demo-app command.
#[derive(Debug, clap::Args)]
pub struct AppArgs {
    /// Crash kind
    #[arg(long, value_parser = parse_kind)]
    pub crash: Kind,
    /// Passed on to the monitor
    #[command(flatten)]
    pub target: crate::cmd::upload::TargetArgs,
}

/// How long the demo waits for each stage.
const APP_TIMEOUT: Duration = Duration::from_secs(30);
const REPORT_TIMEOUT: Duration = Duration::from_secs(120);

/// Run the demo app, wait for its report, print it.
pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let upload = args.target.resolve()?;
    let db_path = ctx.database_path()?;
    let db = Database::open_or_create(&db_path)
        .with_context(|| format!("cannot use the crash database {}", db_path.display()))
        .code(exit::USAGE)?;
    let before: HashSet<_> = db.list()?.into_iter().map(|e| e.id).collect();
    let exe = std::env::current_exe().context("cannot find the crashmon executable")?;

    eprintln!("crashmon demo: starting the demo app (crash kind: {})", args.crash.name());
    let started = Instant::now();
    let mut app = Command::new(&exe);
    if let Some(c) = &ctx.config.file {
        // The app's monitor reads the same configuration, however it was found.
        app.env(crate::config::CONFIG_ENV, std::path::absolute(&c.value).unwrap_or_else(|_| c.value.clone()));
    }
    let mut child = app
        .arg("__demo-app")
        .arg("--crash")
        .arg(args.crash.name())
        .args(args.target.to_args())
        .env(crashmon_database::DATABASE_ENV, &db_path)
        .env(crashmon_handler::MONITOR_ENV, crate::monitor_exe_beside(&exe))
        .stdin(Stdio::null())
        .spawn()
        .context("cannot start the demo app")?;
    let pid = child.id() as i32;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > APP_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the demo app did not exit within {}s", APP_TIMEOUT.as_secs());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let expected = args.crash.signal();
    match status.signal() {
        Some(sig) if sig == expected => {
            eprintln!("crashmon demo: the app died by signal {sig} after {} ms", started.elapsed().as_millis())
        }
        Some(sig) => bail!("the demo app died by signal {sig}, expected {expected}"),
        None => bail!("the demo app exited with {status} instead of crashing"),
    }

    // The monitor files the dump before the app dies; symbolication follows.
    let entry = loop {
        let found = db.list()?.into_iter().find(|e| !before.contains(&e.id) && e.metadata.pid == pid);
        match found {
            Some(e)
                if e.report_path.is_some() || e.metadata.symbolication.is_some() || e.metadata.failure.is_some() =>
            {
                break e;
            }
            found if started.elapsed() > REPORT_TIMEOUT => match found {
                Some(e) => bail!("report {} was filed but not symbolicated within {}s", e.id, REPORT_TIMEOUT.as_secs()),
                None => bail!("no report for pid {pid} appeared in {}", db_path.display()),
            },
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    if let Some(failure) = &entry.metadata.failure {
        bail!("the monitor could not dump the demo app: {failure}");
    }
    let bytes = entry.read_report()?.ok_or_else(|| match &entry.metadata.symbolication {
        Some(crashmon_database::SymbolicationStatus::Failed { reason }) => {
            anyhow::anyhow!("symbolication failed: {reason}")
        }
        _ => anyhow::anyhow!("report {} has no symbolicated report", entry.id),
    })?;
    let report: crashmon_symbolicate::Report = serde_json::from_slice(&bytes).context("reading report.json")?;
    eprintln!(
        "crashmon demo: report {} filed in {} ({} ms from start to symbolicated report)\n",
        entry.id,
        db_path.display(),
        started.elapsed().as_millis()
    );
    if args.json {
        crate::print_out(&(serde_json::to_string_pretty(&report)? + "\n"))?;
    } else {
        crate::print_out(&crashmon_symbolicate::render_text(&report, ctx.color))?;
    }

    // The demo's promise: the report names the demo's own code.
    let crashed = report.crashing_thread.and_then(|i| report.threads.get(i));
    let names_demo = crashed.is_some_and(|t| {
        t.frames.iter().any(|f| f.function.as_deref() == Some(args.crash.crashing_function()) && f.line.is_some())
    });
    if !names_demo {
        eprintln!(
            "crashmon demo: FAILED: the crashing thread's stack does not name {} with a source line",
            args.crash.crashing_function()
        );
        return Ok(exit::FAILURE);
    }
    if let Some((target, _)) = upload {
        // The monitor uploads right after symbolicating.
        let done = loop {
            let e = db.find(&entry.id.to_string())?;
            if e.state != crashmon_database::ReportState::Pending || e.metadata.upload.attempts > 0 {
                break e;
            }
            if started.elapsed() > REPORT_TIMEOUT {
                bail!("report {} was not uploaded within {}s", entry.id, REPORT_TIMEOUT.as_secs());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        match (done.state, &done.metadata.upload.server_report_id) {
            (crashmon_database::ReportState::Completed, id) => {
                eprintln!("crashmon demo: uploaded to {target} (server id {})", id.as_deref().unwrap_or("-"))
            }
            (state, _) => {
                let why = done.metadata.upload.last_error.clone().or(done.metadata.failure.clone()).unwrap_or_default();
                eprintln!("crashmon demo: FAILED: the upload to {target} did not succeed (report is {state}): {why}");
                return Ok(exit::FAILURE);
            }
        }
    }
    eprintln!("\ncrashmon demo: OK (see it again with: crashmon show {})", &entry.id.to_string()[..8]);
    Ok(exit::OK)
}

/// The demo application process.
pub fn app_main(args: AppArgs) -> anyhow::Result<u8> {
    let config = crashmon_handler::HandlerConfig {
        monitor: crashmon_handler::MonitorConnection::Spawn { exe: None, args: args.target.to_args() },
        ..Default::default()
    };
    crashmon_demo::run(args.crash, config).context("cannot install the crash handler")?;
    eprintln!("crashmon demo app: the {} crash did not happen", args.crash.name());
    Ok(crashmon_demo::FAILED_TO_CRASH as u8)
}
