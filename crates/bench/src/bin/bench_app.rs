//! The application the benchmark harness measures crashmon in (BENCHMARKS.md).
//!
//! `bench-app [--mode crash|idle|micro] [--threads N] [--heap-mb M]
//! [--socket PATH] [--no-handler] [--wait-stdin] [--iters N]`
//!
//! - `crash` (default): installs the crashmon handler (a sidecar monitor from
//!   `$CRASHMON_MONITOR`, or the shared monitor at `--socket`), starts
//!   `N - 1` extra threads (so the process has N) that all run before it
//!   goes on, allocates and touches M MiB of heap, prints
//!   `ready pid=P threads=N`, waits for a line on stdin with `--wait-stdin`,
//!   prints `crash mono_ns=T` (CLOCK_MONOTONIC, the harness's clock) and dies
//!   by SIGSEGV on the main thread. `--no-handler`: the same without crashmon.
//! - `idle`: installs the handler, prints `ready pid=P`, and waits for EOF on
//!   stdin (a connected app that never crashes).
//! - `micro`: measures the handler while nothing crashes and prints
//!   `key=value` lines: `install_us`, `annotate_ns`, `breadcrumb_ns`,
//!   `thread_rss_bytes`/`thread_vm_bytes` (per thread started after install,
//!   100 threads), `main_altstack_bytes`, `thread_altstack_bytes`. With `--no-handler`: only the thread
//!   costs, for the baseline.

use std::io::{BufRead, Write};
use std::sync::{Arc, Barrier};
use std::time::Instant;

use crashmon_handler::{HandlerConfig, MonitorConnection};

fn mono_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("clock_gettime");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

/// A field of /proc/self/status in KiB.
fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Start `n` threads that each touch a little stack and then park forever;
/// returns once all of them run.
fn start_threads(n: usize) -> Vec<std::thread::JoinHandle<()>> {
    let barrier = Arc::new(Barrier::new(n + 1));
    let handles = (0..n)
        .map(|i| {
            let barrier = Arc::clone(&barrier);
            std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || {
                    let frame = std::hint::black_box([i as u8; 1024]);
                    barrier.wait();
                    loop {
                        std::thread::park();
                        std::hint::black_box(&frame);
                    }
                })
                .expect("spawn thread")
        })
        .collect();
    barrier.wait();
    handles
}

fn touch_heap(mb: usize) -> Vec<u8> {
    let mut heap = vec![0u8; mb << 20];
    for (i, page) in heap.chunks_mut(4096).enumerate() {
        page[0] = i as u8 | 1;
    }
    std::hint::black_box(heap)
}

fn fail(msg: &str) -> ! {
    eprintln!("bench-app: {msg}");
    std::process::exit(2);
}

fn main() {
    let mut mode = String::from("crash");
    let mut threads = 1usize;
    let mut heap_mb = 0usize;
    let mut socket = None;
    let mut no_handler = false;
    let mut wait_stdin = false;
    let mut iters = 100_000usize;
    let mut args = std::env::args().skip(1);
    let num = |v: Option<String>, what: &str| -> usize {
        v.and_then(|v| v.parse().ok()).unwrap_or_else(|| fail(&format!("{what} needs a number")))
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--mode" => mode = args.next().unwrap_or_default(),
            "--threads" => threads = num(args.next(), "--threads").max(1),
            "--heap-mb" => heap_mb = num(args.next(), "--heap-mb"),
            "--iters" => iters = num(args.next(), "--iters").max(1),
            "--socket" => socket = args.next(),
            "--no-handler" => no_handler = true,
            "--wait-stdin" => wait_stdin = true,
            other => fail(&format!("unknown argument {other}")),
        }
    }
    let mut config = HandlerConfig::default();
    if let Some(path) = socket {
        config.monitor = MonitorConnection::Socket(path.into());
    }
    let mut out = std::io::stdout().lock();
    match mode.as_str() {
        "crash" => {
            let _guard =
                (!no_handler).then(|| crashmon_handler::install(config).unwrap_or_else(|e| fail(&e.to_string())));
            let _threads = start_threads(threads - 1);
            let _heap = touch_heap(heap_mb);
            let _ = writeln!(out, "ready pid={} threads={threads}", std::process::id());
            let _ = out.flush();
            if wait_stdin {
                let mut line = String::new();
                let _ = std::io::stdin().lock().read_line(&mut line);
            }
            let _ = writeln!(out, "crash mono_ns={}", mono_ns());
            let _ = out.flush();
            crashmon_demo::trigger::segv();
            std::process::exit(crashmon_demo::FAILED_TO_CRASH);
        }
        "idle" => {
            let _guard = crashmon_handler::install(config).unwrap_or_else(|e| fail(&e.to_string()));
            let _ = writeln!(out, "ready pid={}", std::process::id());
            let _ = out.flush();
            let mut sink = String::new();
            while std::io::stdin().lock().read_line(&mut sink).is_ok_and(|n| n > 0) {
                sink.clear();
            }
        }
        "micro" => {
            let mut guard = None;
            if !no_handler {
                let vm_before = status_kib("VmSize");
                let started = Instant::now();
                guard = Some(crashmon_handler::install(config).unwrap_or_else(|e| fail(&e.to_string())));
                let _ = writeln!(out, "install_us={}", started.elapsed().as_micros());
                let _ = writeln!(out, "install_vm_kib={}", status_kib("VmSize").saturating_sub(vm_before));
                let _ = writeln!(out, "main_altstack_bytes={}", altstack::current().1);
                // Warm up, then time many calls.
                for i in 0..1000 {
                    let _ = crashmon_handler::annotate("bench.key", &format!("warm {i}"));
                }
                let value = "a typical annotation value, 40 bytes ok";
                let started = Instant::now();
                for i in 0..iters {
                    let key = if i % 2 == 0 { "bench.even" } else { "bench.odd" };
                    if let Err(e) = crashmon_handler::annotate(key, value) {
                        fail(&format!("annotate: {e}"));
                    }
                }
                let _ = writeln!(out, "annotate_ns={}", started.elapsed().as_nanos() / iters as u128);
                let started = Instant::now();
                for _ in 0..iters {
                    if let Err(e) =
                        crashmon_handler::breadcrumb(crashmon_handler::Level::Info, "bench", "a typical event message")
                    {
                        fail(&format!("breadcrumb: {e}"));
                    }
                }
                let _ = writeln!(out, "breadcrumb_ns={}", started.elapsed().as_nanos() / iters as u128);
            }
            const N: u64 = 100;
            let (rss, vm) = (status_kib("VmRSS"), status_kib("VmSize"));
            let handles = start_threads(N as usize);
            let (rss2, vm2) = (status_kib("VmRSS"), status_kib("VmSize"));
            let _ = writeln!(out, "thread_rss_bytes={}", (rss2.saturating_sub(rss)) * 1024 / N);
            let _ = writeln!(out, "thread_vm_bytes={}", (vm2.saturating_sub(vm)) * 1024 / N);
            let (on, size) = std::thread::spawn(altstack::current).join().unwrap_or((false, 0));
            let _ = writeln!(out, "thread_altstack_bytes={}", if on { size } else { 0 });
            let _ = out.flush();
            drop(handles);
            drop(guard);
        }
        other => fail(&format!("--mode {other}: expected crash, idle or micro")),
    }
}

#[allow(unsafe_code)]
mod altstack {
    /// (enabled, size) of the calling thread's alternate signal stack.
    pub fn current() -> (bool, usize) {
        // SAFETY: sigaltstack with a null new stack only reads the current
        // one into a zeroed, properly sized stack_t we own.
        unsafe {
            let mut ss: libc::stack_t = core::mem::zeroed();
            if libc::sigaltstack(core::ptr::null(), &mut ss) != 0 {
                return (false, 0);
            }
            (ss.ss_flags & libc::SS_DISABLE == 0, ss.ss_size)
        }
    }
}
