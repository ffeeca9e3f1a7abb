//! What the app tells crashmon, with a real monitor: errors that bubble up
//! through logging (the `log` adapter and the `tracing` layer, opt-in,
//! deduplicated and rate-limited), the handler's filter rules for handled
//! errors (ignored types, sampling: counted, never silently lost), and
//! `install()` refusing a bad configuration.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crashmon_test_support::{bin, death_signal, files_with_ext, wait_timeout};

struct Run {
    signal: Option<i32>,
    code: Option<i32>,
    stdout: Vec<String>,
    stderr: String,
    db: tempfile::TempDir,
}

fn run(args: &[&str]) -> Run {
    let db = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin("crasher"))
        .args(args)
        .env("CRASHMON_DATABASE", db.path())
        .env("CRASHMON_MONITOR", bin("crashmon"))
        .env_remove("CRASHMON_FAULT_INJECT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    let err = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let status = wait_timeout(&mut child, Duration::from_secs(20)).expect("crasher ended within 20 s");
    Run {
        signal: death_signal(&status),
        code: status.code(),
        stdout: out.join().unwrap().lines().map(str::to_owned).collect(),
        stderr: err.join().unwrap(),
        db,
    }
}

fn dumps(db: &Path) -> Vec<PathBuf> {
    files_with_ext(&db.join("pending"), "dmp")
}

fn metadata(dump: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dump.with_extension("json")).unwrap()).unwrap()
}

fn stat(run: &Run, key: &str) -> u64 {
    run.stdout
        .iter()
        .find(|l| l.starts_with("stats "))
        .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok()))
        .unwrap_or_else(|| panic!("{key} in the stats line: {:?}", run.stdout))
}

/// (requested dumps' messages, the crash dump's metadata).
fn split_reports(db: &Path) -> (Vec<String>, serde_json::Value) {
    let mut requested = Vec::new();
    let mut crash = None;
    for d in dumps(db) {
        let m = metadata(&d);
        minidump::Minidump::read_path(&d).expect("every dump parses");
        match m["crash"]["kind"].as_str() {
            Some("requested") => requested.push(m["crash"]["message"].as_str().unwrap().to_owned()),
            Some("signal") => crash = Some(m),
            other => panic!("unexpected kind {other:?}"),
        }
    }
    requested.sort();
    (requested, crash.expect("the crash's dump"))
}

/// Error events from 3 call sites (the first logged 3 times): the repeats
/// are deduplicated, the third site is over the 2-a-minute limit; all are
/// breadcrumbs of the crash, and every one is accounted for.
fn check_error_events(run: &Run, source: &str) {
    assert_eq!(run.signal, Some(libc::SIGSEGV), "{source}: {}", run.stderr);
    assert_eq!(stat(run, "reported"), 2, "{source}");
    assert_eq!(stat(run, "deduplicated"), 2, "{source}");
    assert_eq!(stat(run, "rate_limited"), 1, "{source}");
    let (requested, crash) = split_reports(run.db.path());
    assert_eq!(requested.len(), 2, "{source}: {requested:?}");
    assert!(requested[0].starts_with("error logged by crasher: ledger index corrupt"), "{requested:?}");
    assert!(requested[1].starts_with("error logged by crasher: ledger write failed"), "{requested:?}");
    let crumbs: Vec<&str> =
        crash["breadcrumbs"].as_array().unwrap().iter().map(|c| c["message"].as_str().unwrap()).collect();
    assert_eq!(crumbs.len(), 6, "{source}: {crumbs:?}");
    assert_eq!(crumbs[0], "opening the ledger");
    assert!(crumbs[5].contains("ledger backup missing"), "{crumbs:?}");
}

#[test]
fn log_errors_become_deduplicated_rate_limited_reports() {
    let run = run(&["--crash", "segv", "--log-errors"]);
    check_error_events(&run, "log");
}

#[test]
fn tracing_errors_become_deduplicated_rate_limited_reports() {
    let run = run(&["--crash", "segv", "--tracing-errors"]);
    check_error_events(&run, "tracing");
}

/// Without `with_error_reports`, error events are breadcrumbs only.
#[test]
fn error_events_are_not_reports_by_default() {
    let run = run(&["--crash", "segv", "--tracing-breadcrumbs", "1"]);
    assert_eq!(run.signal, Some(libc::SIGSEGV));
    assert_eq!(dumps(run.db.path()).len(), 1, "only the crash");
}

#[test]
fn handled_errors_of_an_ignored_type_are_counted_not_reported() {
    let run = run(&["--crash", "segv", "--report-errors", "3", "--ignore-error-type", "std::io::error::Error"]);
    assert_eq!(run.signal, Some(libc::SIGSEGV));
    assert_eq!(run.stdout.iter().filter(|l| *l == "report-error filtered").count(), 3, "{:?}", run.stdout);
    assert_eq!(stat(&run, "filtered_by_type"), 3);
    assert_eq!(dumps(run.db.path()).len(), 1, "only the crash");
    // Another type name does not match.
    let run = run_other_type();
    assert_eq!(run.stdout.iter().filter(|l| l.starts_with("report-error ok")).count(), 1, "{:?}", run.stdout);
    assert_eq!(stat(&run, "filtered_by_type"), 0);
}

fn run_other_type() -> Run {
    run(&["--crash", "segv", "--report-errors", "1", "--ignore-error-type", "ParseError"])
}

/// Sampling at 0.5 over 16 handled errors: some kept, some sampled out,
/// every one accounted for (kept + sampled out = 16, kept = dumps filed).
/// The sampler is seeded (`ReportFilter::sample_seed`), so the outcome is
/// the same in every run: a second run with the same seed keeps and drops
/// exactly the same reports. (The sampler's statistics are checked over
/// many seeds in the handler's unit tests.)
#[test]
fn handled_errors_are_sampled_and_counted() {
    let args = ["--crash", "segv", "--report-errors", "16", "--sample-rate", "0.5", "--sample-seed", "1"];
    let run1 = run(&args);
    assert_eq!(run1.signal, Some(libc::SIGSEGV));
    let kept = run1.stdout.iter().filter(|l| l.starts_with("report-error ok")).count() as u64;
    let out = stat(&run1, "sampled_out");
    assert_eq!(kept + out, 16, "{:?}", run1.stdout);
    assert!(kept > 0 && out > 0, "kept {kept}, sampled out {out}");
    assert_eq!(dumps(run1.db.path()).len() as u64, kept + 1, "kept ones and the crash");

    let decisions = |r: &Run| -> Vec<bool> {
        r.stdout.iter().filter(|l| l.starts_with("report-error")).map(|l| l.starts_with("report-error ok")).collect()
    };
    let run2 = run(&args);
    assert_eq!(decisions(&run1), decisions(&run2), "the same seed samples the same way");
}

#[test]
fn install_refuses_a_bad_config_with_typed_errors() {
    let run1 = run(&["--crash", "segv", "--reply-timeout-ms", "0"]);
    assert_eq!(run1.code, Some(1));
    assert!(run1.stderr.contains("reply_timeout must be greater than zero"), "{}", run1.stderr);

    let file = tempfile::NamedTempFile::new().unwrap();
    let under_file = file.path().join("db");
    let run2 = run(&["--crash", "segv", "--config-database", under_file.to_str().unwrap()]);
    assert_eq!(run2.code, Some(1));
    assert!(run2.stderr.contains("cannot use the crash database"), "{}", run2.stderr);
    assert!(run2.stderr.contains("is not a directory"), "{}", run2.stderr);

    let run3 = run(&["--crash", "segv", "--sample-rate", "1.5"]);
    assert_eq!(run3.code, Some(1));
    assert!(run3.stderr.contains("handled_error_sample_rate"), "{}", run3.stderr);
    for r in [&run1, &run2, &run3] {
        assert!(dumps(r.db.path()).is_empty());
    }
}

#[test]
fn second_install_is_already_installed() {
    let run = run(&["--crash", "segv", "--install-twice"]);
    assert!(run.stdout.iter().any(|l| l == "second install: AlreadyInstalled"), "{:?}", run.stdout);
    // The first installation is unharmed.
    assert_eq!(run.signal, Some(libc::SIGSEGV));
    assert_eq!(dumps(run.db.path()).len(), 1);
}
