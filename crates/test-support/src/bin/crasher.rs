//! A real crashing program for crashmon's tests.
//!
//! `crasher --crash KIND [--on main|thread|pthread] [--socket PATH] [--wait-stdin]
//! [--reply-timeout-ms N] [--request-dump] [--no-handler] [--annotate K=V]...
//! [--breadcrumbs N] [--tracing-breadcrumbs N]`: installs the crashmon handler
//! (spawning `$CRASHMON_MONITOR` as sidecar, or connecting to the monitor at
//! `--socket`), prints `ready pid=P tid=T monitor=M` on stdout, and crashes the
//! requested way on the main thread, a `std::thread` or a raw `pthread_create`
//! thread (which then prints `crashing tid=T` first). With `--wait-stdin` it
//! waits for a line on stdin before crashing. With `--request-dump` it first
//! files a handled-error report, prints `requested id=ID` and keeps going. Exits 222 if it failed to crash, 1 if the handler could not
//! be installed (with the error on stderr).

use std::io::{BufRead, Write};
use std::time::Duration;

use crashmon_handler::{HandlerConfig, MonitorConnection};

static KIND: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Announce this thread and crash it with the kind stored in `KIND`.
fn crash_here() {
    let kind = crashmon_demo::Kind::ALL[KIND.load(std::sync::atomic::Ordering::SeqCst)].1;
    println!("crashing tid={}", nix::unistd::gettid());
    let _ = std::io::stdout().flush();
    crashmon_demo::crash(kind);
}

/// With `CRASHER_TIMELINE` set, print a wall-clock timestamp for `what` on
/// stderr (for profiling the crash path against the monitor's logs).
fn mark(what: &str) {
    if std::env::var_os("CRASHER_TIMELINE").is_some() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        eprintln!("timeline {:.6} {what}", t.as_secs_f64() % 60.0);
    }
}

fn main() {
    mark("main");
    let mut kind = None;
    let mut socket = None;
    let mut wait_stdin = false;
    let mut reply_timeout = None;
    let mut on = "main".to_owned();
    let mut request_dump = false;
    let mut no_handler = false;
    let mut annotations: Vec<(String, String)> = Vec::new();
    let mut breadcrumbs = 0usize;
    let mut tracing_breadcrumbs = 0usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--crash" => kind = args.next().and_then(|k| crashmon_demo::Kind::from_name(&k)),
            "--socket" => socket = args.next(),
            "--wait-stdin" => wait_stdin = true,
            "--request-dump" => request_dump = true,
            "--no-handler" => no_handler = true,
            "--breadcrumbs" => breadcrumbs = args.next().and_then(|n| n.parse().ok()).unwrap_or(0),
            "--tracing-breadcrumbs" => tracing_breadcrumbs = args.next().and_then(|n| n.parse().ok()).unwrap_or(0),
            "--annotate" => {
                let kv = args.next().unwrap_or_default();
                let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
                annotations.push((k.to_owned(), v.to_owned()));
            }
            "--on" => on = args.next().unwrap_or_default(),
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
    if no_handler {
        // The baseline of the benchmarks: the same crash, nothing installed.
        crashmon_demo::crash(kind);
        std::process::exit(crashmon_demo::FAILED_TO_CRASH);
    }
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
    mark("installed");
    for (k, v) in &annotations {
        // A value of "<remove>" removes the key again; "<big>" is 30 KiB.
        let result = match v.as_str() {
            "<remove>" => crashmon_handler::remove_annotation(k),
            "<big>" => crashmon_handler::annotate(k, &"x".repeat(30 * 1024)),
            _ => crashmon_handler::annotate(k, v),
        };
        if let Err(e) = result {
            eprintln!("crasher: annotate {k}: {e}");
        }
    }
    println!("ready pid={} tid={} monitor={}", std::process::id(), tid, guard.monitor_pid());
    let _ = std::io::stdout().flush();
    if wait_stdin {
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
    }
    for i in 0..breadcrumbs {
        let level = if i % 10 == 9 { crashmon_handler::Level::Warning } else { crashmon_handler::Level::Info };
        if let Err(e) = crashmon_handler::breadcrumb(level, "crasher", &format!("step {i}")) {
            eprintln!("crasher: breadcrumb: {e}");
        }
    }
    if tracing_breadcrumbs > 0 {
        use tracing_subscriber::layer::SubscriberExt;
        let subscriber =
            tracing_subscriber::registry().with(crashmon_handler::BreadcrumbLayer::new(tracing::Level::INFO));
        tracing::subscriber::with_default(subscriber, || {
            for i in 0..tracing_breadcrumbs {
                tracing::debug!("below the layer's level: not recorded");
                tracing::info!(order = i, "processing order");
            }
            tracing::error!("payment backend unreachable");
        });
    }
    if request_dump {
        match crashmon_handler::request_dump("crasher: handled error before the crash") {
            Ok(id) => println!("requested id={id}"),
            Err(e) => println!("requested error={e}"),
        }
        let _ = std::io::stdout().flush();
    }
    let index = crashmon_demo::Kind::ALL.iter().position(|(_, k)| *k == kind).unwrap_or(0);
    KIND.store(index, std::sync::atomic::Ordering::SeqCst);
    match on.as_str() {
        "main" => crashmon_demo::crash(kind),
        "thread" => {
            let _ = std::thread::Builder::new().name("crasher-thread".into()).spawn(crash_here).map(|h| h.join());
        }
        "pthread" => crashmon_demo::trigger::on_raw_pthread(crash_here),
        // RELIABILITY A5: 100 idle threads, then 20 threads released at
        // once that all crash.
        "many" => {
            let start = std::sync::Arc::new(std::sync::Barrier::new(21));
            let idle: Vec<_> = (0..100)
                .map(|_| std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_secs(30))))
                .collect();
            let crashing: Vec<_> = (0..20)
                .map(|_| {
                    let start = std::sync::Arc::clone(&start);
                    std::thread::spawn(move || {
                        start.wait();
                        crashmon_demo::crash(kind);
                    })
                })
                .collect();
            start.wait();
            for t in crashing {
                let _ = t.join();
            }
            drop(idle);
        }
        other => {
            eprintln!("crasher: --on {other}: expected main, thread, pthread or many");
            std::process::exit(2);
        }
    }
    drop(guard);
    std::process::exit(crashmon_demo::FAILED_TO_CRASH);
}
