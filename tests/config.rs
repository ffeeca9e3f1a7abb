//! Configuration (RELIABILITY C4), `crashmon config check/show`, precedence
//! (flag > env > config file > default), retention from the file, and
//! `crashmon doctor`, each with real `crashmon` processes.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crashmon_test_support::{KillOnDrop, bin, wait_for, wait_timeout};

/// A `crashmon` command isolated from the caller's environment: no
/// database, upload target or configuration from outside the test.
fn crashmon(home: &Path) -> Command {
    crashmon_test_support::isolated_command(&bin("crashmon"), home)
}

/// Run with a 20 s cap; returns the output and the wall time.
fn run(mut cmd: Command) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn crashmon");
    let status = wait_timeout(&mut child, Duration::from_secs(20));
    let elapsed = started.elapsed();
    assert!(status.is_some(), "crashmon did not finish within 20 s");
    (child.wait_with_output().expect("output"), elapsed)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every path under `dir`, sorted (to prove nothing was created).
fn tree(dir: &Path) -> Vec<PathBuf> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                out.push(e.path());
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&e.path(), out);
                }
            }
        }
    }
    let mut v = Vec::new();
    walk(dir, &mut v);
    v.sort();
    v
}

/// C4: each bad configuration ends every command with exit code 2 within
/// 1 s, the message names the file, line and key, and nothing is created
/// on disk (neither the database nor the monitor socket).
#[test]
fn bad_configuration_exits_2_naming_key_and_line_and_creates_nothing() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let db = h.join("db");
    let open = h.join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let dbline = format!("database = {:?}\n", db.display().to_string());
    // (name, file contents, key named, line named, words in the message)
    let cases: Vec<(&str, String, &str, usize, &str)> = vec![
        (
            "syntax error",
            format!("{dbline}[upload\nurl = \"https://x.example/submit\"\n"),
            "upload",
            2,
            "unclosed table",
        ),
        ("unknown key", format!("{dbline}[monitor]\nmax_client = 4\n"), "monitor.max_client", 3, "unknown field"),
        ("unknown section", format!("{dbline}\n[uplaod]\n"), "uplaod", 3, "unknown field"),
        ("ftp upload url", format!("{dbline}[upload]\nurl = \"ftp://x.example/submit\"\n"), "upload.url", 3, "scheme"),
        ("file proxy", format!("{dbline}[upload]\nproxy = \"socks9://p:1\"\n"), "upload.proxy", 3, "scheme"),
        ("relative database", "database = \"var/crash\"\n".to_owned(), "database", 1, "relative"),
        (
            "world-writable database",
            format!("database = {:?}\n", open.display().to_string()),
            "database",
            1,
            "chmod 700",
        ),
        ("negative timeout", format!("{dbline}[upload]\n\ntimeout_secs = -1\n"), "upload.timeout_secs", 4, "positive"),
        (
            "zero timeout",
            format!("{dbline}[upload]\nconnect_timeout_secs = 0\n"),
            "upload.connect_timeout_secs",
            3,
            "positive",
        ),
        ("bad size unit", format!("{dbline}[retention]\nmax_size = \"10GB\"\n"), "retention.max_size", 3, "unit"),
        ("negative count", format!("{dbline}[retention]\nmax_count = -3\n"), "retention.max_count", 3, "positive"),
        (
            "wrong type",
            format!("{dbline}[monitor]\nmax_clients = \"many\"\n"),
            "monitor.max_clients",
            3,
            "invalid type",
        ),
        (
            "relative socket",
            format!("{dbline}[monitor]\nsocket = \"crashmon.sock\"\n"),
            "monitor.socket",
            3,
            "relative",
        ),
        (
            "not supported yet",
            format!("{dbline}[monitor]\nreply_timeout_secs = 5\n"),
            "monitor.reply_timeout_secs",
            3,
            "not supported yet",
        ),
    ];
    let socket = h.join("run/mon.sock");
    for (name, text, key, line, words) in &cases {
        let file = h.join("config.toml");
        std::fs::write(&file, text).unwrap();
        let before = tree(h);
        let attempts: Vec<(&str, Command)> = vec![
            ("--config + consent", {
                let mut c = crashmon(h);
                c.arg("--config").arg(&file).args(["consent", "status"]);
                c
            }),
            ("CRASHMON_CONFIG + monitor", {
                let mut c = crashmon(h);
                c.env("CRASHMON_CONFIG", &file).arg("monitor").arg("--socket").arg(&socket);
                c
            }),
            ("config check", {
                let mut c = crashmon(h);
                c.args(["config", "check"]).arg(&file);
                c
            }),
        ];
        for (how, cmd) in attempts {
            let (out, took) = run(cmd);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{name} via {how}: {err}");
            assert!(took < Duration::from_secs(1), "{name} via {how}: took {took:?}");
            assert!(err.contains(&format!("key `{key}`")), "{name} via {how}: no key {key}: {err}");
            assert!(err.contains(&format!("config.toml:{line}:")), "{name} via {how}: no line {line}: {err}");
            assert!(err.contains(words), "{name} via {how}: no {words:?}: {err}");
            assert_eq!(err.trim_end().lines().count(), 1, "{name} via {how}: one line: {err}");
            assert_eq!(tree(h), before, "{name} via {how}: something was created");
        }
    }
    assert!(!db.exists() && !socket.exists());
}

#[test]
fn a_missing_config_file_named_explicitly_is_an_error_but_an_absent_default_is_not() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let mut cmd = crashmon(h);
    cmd.arg("--config").arg(h.join("nope.toml")).args(["config", "show"]);
    let (out, _) = run(cmd);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("nope.toml") && stderr(&out).contains("does not exist"), "{}", stderr(&out));
    let mut cmd = crashmon(h);
    cmd.env("CRASHMON_CONFIG", h.join("nope.toml")).args(["config", "show"]);
    let (out, _) = run(cmd);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("CRASHMON_CONFIG"), "{}", stderr(&out));
    let mut cmd = crashmon(h);
    cmd.args(["config", "show"]);
    let (out, _) = run(cmd);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("no configuration file"), "{}", stdout(&out));
}

fn show_json(cmd: Command) -> serde_json::Value {
    let (out, _) = run(cmd);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn setting<'a>(doc: &'a serde_json::Value, key: &str) -> &'a serde_json::Value {
    doc["settings"].as_array().unwrap().iter().find(|s| s["key"] == key).unwrap_or_else(|| panic!("{key} in {doc:#}"))
}

/// Precedence: flag > env > config file > default, and `config show` says
/// where each value came from (file and line for the file).
#[test]
fn show_reports_effective_values_and_origins_with_flag_over_env_over_file() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let dir = h.join("xdg-config/crashmon");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("config.toml");
    std::fs::write(
        &file,
        "# found in the platform config dir\ndatabase = \"/srv/crash-db\"\n\n[upload]\nurl = \"https://crash.example.com/submit\"\n\
         timeout_secs = 7\n[retention]\nmax_count = 50\nmax_size = \"64MiB\"\n",
    )
    .unwrap();

    let mut cmd = crashmon(h);
    cmd.args(["config", "show", "--json"]);
    let doc = show_json(cmd);
    assert_eq!(doc["config_file"]["path"], file.display().to_string(), "{doc:#}");
    let db = setting(&doc, "database");
    assert_eq!(db["value"], "/srv/crash-db");
    assert_eq!(db["source"], "file");
    assert_eq!(db["line"], 2);
    assert_eq!(setting(&doc, "upload.timeout_secs")["value"], 7);
    assert_eq!(setting(&doc, "upload.timeout_secs")["line"], 6);
    assert_eq!(setting(&doc, "retention.max_size")["value"], 64 << 20);
    assert_eq!(setting(&doc, "upload.connect_timeout_secs")["source"], "default");
    assert_eq!(setting(&doc, "upload.target")["source"], "file");

    // env over file
    let mut cmd = crashmon(h);
    cmd.env("CRASHMON_DATABASE", "/env/db").env("CRASHMON_UPLOAD", "https://other.example.com/submit");
    cmd.args(["config", "show", "--json"]);
    let doc = show_json(cmd);
    assert_eq!(setting(&doc, "database")["value"], "/env/db");
    assert_eq!(setting(&doc, "database")["source"], "env");
    assert_eq!(setting(&doc, "database")["name"], "CRASHMON_DATABASE");
    assert_eq!(setting(&doc, "upload.target")["source"], "env");

    // flag over env
    let mut cmd = crashmon(h);
    cmd.env("CRASHMON_DATABASE", "/env/db").args(["--database", "/flag/db", "config", "show", "--json"]);
    let doc = show_json(cmd);
    assert_eq!(setting(&doc, "database")["value"], "/flag/db");
    assert_eq!(setting(&doc, "database")["source"], "flag");

    // CRASHMON_CONFIG over the platform location, --config over both
    let other = h.join("other.toml");
    std::fs::write(&other, "[retention]\nmax_age_days = 3\n").unwrap();
    let third = h.join("third.toml");
    std::fs::write(&third, "\n\n[retention]\nmax_age_days = 9\n").unwrap();
    let mut cmd = crashmon(h);
    cmd.env("CRASHMON_CONFIG", &other).args(["config", "show", "--json"]);
    let doc = show_json(cmd);
    assert_eq!(setting(&doc, "retention.max_age_days")["value"], 3);
    assert_eq!(setting(&doc, "database")["source"], "default", "the platform file is not read then");
    let mut cmd = crashmon(h);
    cmd.env("CRASHMON_CONFIG", &other).arg("--config").arg(&third).args(["config", "show", "--json"]);
    let doc = show_json(cmd);
    assert_eq!(setting(&doc, "retention.max_age_days")["value"], 9);
    assert_eq!(setting(&doc, "retention.max_age_days")["line"], 4);

    // The text form names the origin too.
    let mut cmd = crashmon(h);
    cmd.args(["config", "show"]);
    let (out, _) = run(cmd);
    let text = stdout(&out);
    let line = text.lines().find(|l| l.starts_with("database ")).unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("/srv/crash-db") && line.contains(&format!("{}:2", file.display())), "{line}");
}

#[test]
fn config_check_accepts_a_full_valid_file() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let ca = h.join("ca.pem");
    std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\n").unwrap();
    let file = h.join("full.toml");
    std::fs::write(
        &file,
        format!(
            "database = {:?}\n[monitor]\nsocket = \"/run/user/1000/crashmon/monitor.sock\"\nmax_clients = 64\n\
             [upload]\ndsn = \"https://key@sentry.example.com/1\"\ntimeout_secs = 30\nconnect_timeout_secs = 10\n\
             proxy = \"http://proxy.example.com:3128\"\nca_file = {:?}\nscrub = true\nscrub_patterns = [\"MY_SECRET\"]\n\
             [symbols]\ndirs = [\"/srv/symbols\"]\nservers = [\"https://symbols.example.com\"]\ncache_dir = \"/var/cache/crashmon\"\n\
             cache_max_size = \"1GiB\"\n[retention]\nmax_count = 1000\nmax_size = \"128MiB\"\nmax_age_days = 365\n",
            h.join("db").display().to_string(),
            ca.display().to_string()
        ),
    )
    .unwrap();
    let mut cmd = crashmon(h);
    cmd.args(["config", "check"]).arg(&file);
    let (out, _) = run(cmd);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("OK"));
    let mut cmd = crashmon(h);
    cmd.args(["config", "check", "--json"]).arg(&file);
    let doc = show_json(cmd);
    assert_eq!(doc["valid"], true);
    assert!(!h.join("db").exists(), "check creates nothing");

    std::fs::write(&file, "[upload]\nurl = \"gopher://x\"\n").unwrap();
    let mut cmd = crashmon(h);
    cmd.args(["config", "check", "--json"]).arg(&file);
    let (out, _) = run(cmd);
    assert_eq!(out.status.code(), Some(2));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["valid"], false);
    assert_eq!(doc["error"]["key"], "upload.url");
    assert_eq!(doc["error"]["line"], 2);
}

fn add_failed_reports(db: &Path, n: usize) {
    let database = crashmon_database::Database::open_or_create(db).unwrap();
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    for i in 0..n {
        let crash = crashmon_database::CrashInfo::new(crashmon_database::CrashKind::Signal);
        let meta = crashmon_database::Metadata::new(
            crashmon_database::ReportId::new_random(),
            now_ms - 60_000 + i as u64,
            1,
            crash,
        );
        database.record_failure(&meta).unwrap();
    }
}

/// `[retention]` drives `crashmon prune`; a flag beats the file.
#[test]
fn retention_limits_come_from_the_config_file() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let db = h.join("db");
    add_failed_reports(&db, 5);
    let file = h.join("c.toml");
    std::fs::write(&file, format!("database = {:?}\n[retention]\nmax_count = 3\n", db.display().to_string())).unwrap();
    let mut cmd = crashmon(h);
    cmd.arg("--config").arg(&file).args(["prune", "--json"]);
    let doc = show_json(cmd);
    assert_eq!(doc["result"]["removed"], 2, "{doc:#}");
    assert_eq!(doc["result"]["kept"], 3, "{doc:#}");
    let mut cmd = crashmon(h);
    cmd.arg("--config").arg(&file).args(["prune", "--json", "--max-count", "1"]);
    let doc = show_json(cmd);
    assert_eq!(doc["result"]["removed"], 2, "{doc:#}");
    assert_eq!(doc["result"]["kept"], 1, "{doc:#}");
}

// ------------------------------------------------------------------ doctor

fn doctor(cmd: Command) -> (Option<i32>, serde_json::Value) {
    let (out, _) = run(cmd);
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {} {}", stdout(&out), stderr(&out)));
    (out.status.code(), doc)
}

fn check<'a>(doc: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    doc["checks"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("{name} in {doc:#}"))
}

#[test]
fn doctor_passes_on_a_healthy_setup_and_names_the_fix_for_a_shared_database() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let db = h.join("db");
    add_failed_reports(&db, 2);
    let mut cmd = crashmon(h);
    cmd.arg("--database").arg(&db).args(["doctor", "--json"]);
    let (code, doc) = doctor(cmd);
    assert_eq!(check(&doc, "ptrace attach")["status"], "ok", "{doc:#}");
    assert_eq!(check(&doc, "monitor socket")["status"], "skip", "{doc:#}");
    assert_eq!(check(&doc, "upload target")["status"], "skip", "{doc:#}");
    let dbc = check(&doc, "database");
    assert_eq!(dbc["status"], "ok", "{doc:#}");
    assert!(dbc["detail"].as_str().unwrap().contains("2 failed"), "{dbc:#}");
    assert_eq!(code, Some(0), "{doc:#}");
    assert_eq!(doc["ok"], true);

    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o770)).unwrap();
    let mut cmd = crashmon(h);
    cmd.arg("--database").arg(&db).arg("doctor");
    let (out, _) = run(cmd);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("[FAIL] database") && text.contains(&format!("fix: chmod 700 {}", db.display())), "{text}");
}

#[test]
fn doctor_tells_a_live_monitor_socket_from_a_stale_one() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let db = h.join("db");
    let socket = h.join("mon.sock");
    let file = h.join("c.toml");
    std::fs::write(&file, format!("[monitor]\nsocket = {:?}\n", socket.display().to_string())).unwrap();
    // The monitor takes its socket path from the configuration file.
    let mut monitor = crashmon(h);
    monitor.arg("--database").arg(&db).arg("--config").arg(&file).arg("monitor").stderr(Stdio::null());
    let mut monitor = KillOnDrop(monitor.spawn().unwrap());
    assert!(wait_for(Duration::from_secs(20), || socket.exists().then_some(())).is_some(), "monitor socket");
    let mut cmd = crashmon(h);
    cmd.arg("--database").arg(&db).arg("--config").arg(&file).args(["doctor", "--json"]);
    let (code, doc) = doctor(cmd);
    assert_eq!(check(&doc, "monitor socket")["status"], "ok", "{doc:#}");
    assert_eq!(code, Some(0), "{doc:#}");

    // SIGKILL leaves the socket file behind with nobody listening.
    monitor.0.kill().unwrap();
    monitor.0.wait().unwrap();
    assert!(socket.exists());
    let mut cmd = crashmon(h);
    cmd.arg("--database").arg(&db).args(["doctor", "--json", "--socket"]).arg(&socket);
    let (code, doc) = doctor(cmd);
    let s = check(&doc, "monitor socket");
    assert_eq!(s["status"], "fail", "{doc:#}");
    assert!(s["fix"].as_str().unwrap().contains("stale"), "{s:#}");
    assert_eq!(code, Some(1));
}

#[test]
fn doctor_checks_upload_target_consent_and_network() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let db = h.join("db");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let file = h.join("c.toml");
    std::fs::write(
        &file,
        format!("database = {:?}\n[upload]\nurl = \"http://127.0.0.1:{port}/submit\"\n", db.display().to_string()),
    )
    .unwrap();
    let (out, _) = run({
        let mut c = crashmon(h);
        c.arg("--config").arg(&file).args(["consent", "disable"]);
        c
    });
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mut cmd = crashmon(h);
    cmd.arg("--config").arg(&file).args(["doctor", "--json", "--network"]);
    let (code, doc) = doctor(cmd);
    assert_eq!(check(&doc, "upload target")["status"], "ok", "{doc:#}");
    assert!(check(&doc, "upload target")["detail"].as_str().unwrap().contains("c.toml:3"), "{doc:#}");
    assert_eq!(check(&doc, "upload consent")["status"], "warn", "{doc:#}");
    assert_eq!(check(&doc, "upload consent")["fix"], "crashmon consent enable");
    assert_eq!(check(&doc, "upload network")["status"], "ok", "{doc:#}");
    assert_eq!(code, Some(1));

    let (out, _) = run({
        let mut c = crashmon(h);
        c.arg("--config").arg(&file).args(["consent", "enable"]);
        c
    });
    assert_eq!(out.status.code(), Some(0));
    let mut cmd = crashmon(h);
    cmd.arg("--config").arg(&file).args(["doctor", "--json", "--network"]);
    let (code, doc) = doctor(cmd);
    assert_eq!(check(&doc, "upload consent")["status"], "ok", "{doc:#}");
    assert_eq!(code, Some(0), "{doc:#}");

    drop(listener);
    let mut cmd = crashmon(h);
    cmd.arg("--config").arg(&file).args(["doctor", "--json", "--network"]);
    let (code, doc) = doctor(cmd);
    assert_eq!(check(&doc, "upload network")["status"], "fail", "{doc:#}");
    assert_eq!(code, Some(1));
}

/// The configuration's upload target is used when neither a flag nor
/// `CRASHMON_UPLOAD` names one; an unsupported one never gets that far.
#[test]
fn upload_takes_its_target_from_the_config_file() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let db = h.join("db");
    add_failed_reports(&db, 1);
    let mut cmd = crashmon(h);
    cmd.arg("--database").arg(&db).args(["upload", "--json"]);
    let (out, _) = run(cmd);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("no upload target"), "{}", stderr(&out));

    let file = h.join("c.toml");
    std::fs::write(&file, "[upload]\nurl = \"http://127.0.0.1:9/submit\"\ntimeout_secs = 3\n").unwrap();
    let mut cmd = crashmon(h);
    cmd.arg("--database").arg(&db).arg("--config").arg(&file).args(["upload", "--json"]);
    let doc = show_json(cmd);
    assert_eq!(doc["target"], "http://127.0.0.1:9/submit (socorro)", "{doc:#}");
    assert_eq!(doc["results"], serde_json::json!([]), "no pending report: {doc:#}");
}
