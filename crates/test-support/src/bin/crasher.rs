//! A real crashing program for crashmon's tests.
//!
//! `crasher --crash KIND [--socket PATH] [--wait-stdin]`: installs the crashmon
//! handler (spawning `$CRASHMON_MONITOR` as sidecar, or connecting to the
//! monitor at `--socket`), prints `ready pid=P tid=T monitor=M` on stdout, and
//! crashes the requested way. With `--wait-stdin` it waits for a line on stdin
//! before crashing. Exits 222 if it failed to crash, 1 if the handler could not
//! be installed (with the error on stderr).

use std::io::{BufRead, Write};
use std::time::Duration;

use crashmon_handler::{HandlerConfig, MonitorConnection};

fn main() {
    let mut kind = None;
    let mut socket = None;
    let mut wait_stdin = false;
    let mut reply_timeout = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--crash" => kind = args.next().and_then(|k| crashmon_demo::Kind::from_name(&k)),
            "--socket" => socket = args.next(),
            "--wait-stdin" => wait_stdin = true,
            "--reply-timeout-ms" => reply_timeout = args.next().and_then(|v| v.parse::<u64>().ok()),
            other => {
                eprintln!("crasher: unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    let Some(kind) = kind else {
        eprintln!("crasher: --crash KIND is required");
        std::process::exit(2);
    };
    let mut config = HandlerConfig::default();
    if let Some(path) = socket {
        config.monitor = MonitorConnection::Socket(path.into());
    }
    if let Some(ms) = reply_timeout {
        config.reply_timeout = Duration::from_millis(ms);
    }
    let guard = match crashmon_handler::install(config) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("crasher: {e}");
            std::process::exit(1);
        }
    };
    let tid = nix::unistd::gettid();
    println!("ready pid={} tid={} monitor={}", std::process::id(), tid, guard.monitor_pid());
    let _ = std::io::stdout().flush();
    if wait_stdin {
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
    }
    crashmon_demo::crash(kind);
    drop(guard);
    std::process::exit(crashmon_demo::FAILED_TO_CRASH);
}
