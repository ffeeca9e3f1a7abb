//! Connection handling.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crashmon_database::{CrashInfo, CrashKind, Database, Metadata, ReportId};
use crashmon_protocol as proto;
use nix::sys::socket::{self, MsgFlags, sockopt};

use crate::capture::{self, CaptureOptions};
use crate::filter::FilterRules;

/// Work done after a dump is durable and the client has been answered
/// (symbolication, upload). Runs on the connection's thread, or on the
/// thread that retries a failed publish.
pub trait AfterCapture: Send + Sync {
    /// Called once per report filed in `pending/`.
    fn after_capture(&self, db: &Database, id: ReportId);

    /// The monitor is shutting down: finish (or give up) queued work within
    /// `timeout`. The default does nothing.
    fn drain(&self, timeout: Duration) {
        let _ = timeout;
    }
}

/// What the monitor does with a crash, beyond the defaults. Plain data with
/// [`Default`]: the CLI maps flags and config keys onto it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorOptions {
    /// Capture settings (dump size cap).
    pub capture: CaptureOptions,
    /// Reports to ignore.
    pub filters: FilterRules,
    /// Most bytes kept of each attachment (the file's tail). Default 1 MiB.
    pub max_attachment_size: u64,
}

impl Default for MonitorOptions {
    fn default() -> Self {
        MonitorOptions {
            capture: CaptureOptions::default(),
            filters: FilterRules::default(),
            max_attachment_size: DEFAULT_MAX_ATTACHMENT_SIZE,
        }
    }
}

/// Default of [`MonitorOptions::max_attachment_size`].
pub const DEFAULT_MAX_ATTACHMENT_SIZE: u64 = 1 << 20;
/// Most attachments a client may name.
pub const MAX_ATTACHMENTS: usize = 16;

/// Counters of a running monitor, shared by its connections.
#[derive(Debug, Default)]
pub struct MonitorStats {
    /// Dumps published to `pending/`.
    pub dumps: AtomicU64,
    /// Crashes recorded in `failed/` without a dump.
    pub failures: AtomicU64,
    /// Reports filtered at capture time.
    pub filtered: AtomicU64,
    /// Captures begun (a crash's dump starts: the first [`Spare`] is no
    /// longer made, see [`FIRST_SPARE_AFTER`]).
    pub dumps_begun: AtomicU64,
    /// Dumps in progress, and whether new ones are refused (shutdown).
    gate: Mutex<(usize, bool)>,
    idle: Condvar,
    /// Durable reports whose publish failed, and the thread retrying them
    /// (see [`republish_later`]).
    republish: Mutex<Republish>,
    republish_wake: Condvar,
}

/// State of the thread that retries failed publishes.
#[derive(Debug, Default)]
struct Republish {
    /// Reports it waits for (durable in `new/`).
    ids: Vec<ReportId>,
    /// Whether it runs.
    running: bool,
    /// Set by [`MonitorStats::stop_republishing`].
    stop: bool,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MonitorStats {
    /// Stop retrying failed publishes and wait for the retrying thread (a
    /// sweep in progress finishes first). Reports still unpublished stay
    /// durable in `new/` for the next sweep. Call before the final sweep
    /// and the post-processing drain, so neither races with it.
    pub fn stop_republishing(&self) {
        let thread = {
            let mut state = self.republish.lock().unwrap_or_else(|e| e.into_inner());
            state.stop = true;
            self.republish_wake.notify_all();
            state.thread.take()
        };
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }

    /// Enter a dump; false once the monitor is closing.
    fn enter(&self) -> bool {
        let mut g = self.gate.lock().unwrap_or_else(|e| e.into_inner());
        if g.1 {
            return false;
        }
        g.0 += 1;
        true
    }

    fn leave(&self) {
        let mut g = self.gate.lock().unwrap_or_else(|e| e.into_inner());
        g.0 -= 1;
        self.idle.notify_all();
    }

    /// Refuse new dumps and wait (at most `timeout`) for those in progress.
    /// Returns how many were still running at the deadline.
    pub fn close_and_wait(&self, timeout: Duration) -> usize {
        let mut g = self.gate.lock().unwrap_or_else(|e| e.into_inner());
        g.1 = true;
        let deadline = std::time::Instant::now() + timeout;
        while g.0 > 0 {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            g = self.idle.wait_timeout(g, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        g.0
    }
}

/// Settings of a monitor.
#[derive(Clone)]
pub struct MonitorConfig {
    /// Where reports go.
    pub database: Arc<Database>,
    /// Post-processing hook.
    pub after_capture: Option<Arc<dyn AfterCapture>>,
    /// Most clients served at once on a shared socket; more are refused.
    pub max_clients: usize,
    /// Test-only fault injection (see [`Fault`]); `None` in production.
    pub fault: Option<Fault>,
    /// Dump size cap, filters, attachment limits.
    pub options: MonitorOptions,
    /// Counters (and the shutdown gate).
    pub stats: Arc<MonitorStats>,
    /// The next dump's files, made ahead (see [`Spare`]).
    pub spare: Arc<Spare>,
}

/// The files of the next dump, made ahead of any crash
/// ([`crashmon_database::SpareDump`]): [`FIRST_SPARE_AFTER`] the monitor's
/// start, on the thread that also reads the machine's part of a dump, and
/// again after each dump while the monitor goes on serving. A crash that
/// finds none (two at once, or one before the first spare is made) makes
/// its files as before. Once closed (the monitor stops), no spare is made,
/// and [`Spare::close`] waits for a spare being made meanwhile and removes
/// it.
#[derive(Debug, Default)]
pub struct Spare {
    slot: std::sync::Mutex<SpareSlot>,
    /// Signalled when a spare being made is done.
    made: std::sync::Condvar,
}

#[derive(Debug, Default)]
struct SpareSlot {
    spare: Option<crashmon_database::SpareDump>,
    /// The monitor is stopping: no more spares.
    closed: bool,
    /// Spares being made right now (their files exist, or soon will, and
    /// are not in the slot yet).
    making: usize,
}

/// How long [`Spare::close`] waits for a spare being made (its two file
/// creations). Past it the monitor stops anyway; the next sweep removes
/// what is left.
const SPARE_CLOSE_WAIT: Duration = Duration::from_secs(2);

impl Spare {
    fn lock(&self) -> std::sync::MutexGuard<'_, SpareSlot> {
        self.slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The spare, if there is one (never waits long: the lock is only held
    /// to move a spare in or out).
    fn take(&self) -> Option<crashmon_database::SpareDump> {
        self.lock().spare.take()
    }

    /// Makes a spare unless there is one, one is being made, or the slot is
    /// closed. A failure (a full disk...) is logged; the next dump makes
    /// its files itself and says why if it cannot. `pause`: a wait between
    /// making the files and keeping them (fault injection only).
    pub fn refill(&self, db: &Database, pause: Option<Duration>) {
        {
            let mut slot = self.lock();
            if slot.spare.is_some() || slot.making > 0 || slot.closed {
                return;
            }
            slot.making += 1;
        }
        // Counted out however this ends (a panic too): a count left at 1
        // would stop every later refill and make each close wait in vain.
        struct Made<'a>(&'a Spare);
        impl Drop for Made<'_> {
            fn drop(&mut self) {
                self.0.lock().making -= 1;
                self.0.made.notify_all();
            }
        }
        let _made = Made(self);
        let made = db.make_spare();
        if let Some(pause) = pause {
            tracing::warn!("fault injection: the new spare waits {pause:?}");
            std::thread::sleep(pause);
        }
        // Closed meanwhile (or, defensively, filled): not kept.
        let extra = {
            let mut slot = self.lock();
            match made {
                Ok(spare) if slot.spare.is_none() && !slot.closed => {
                    slot.spare = Some(spare);
                    None
                }
                Ok(spare) => Some(spare),
                Err(e) => {
                    tracing::debug!("no spare dump files: {e}");
                    None
                }
            }
        };
        // Only after this (the extra is gone, `_made` dropped) may a
        // closing monitor go on.
        if let Some(extra) = extra {
            remove(db, extra);
        }
    }

    /// Removes the spare, if any.
    pub fn discard(&self, db: &Database) {
        let spare = self.take();
        if let Some(spare) = spare {
            remove(db, spare);
        }
    }

    /// Removes the spare and makes no other (the monitor is stopping); a
    /// spare being made is waited for (at most [`SPARE_CLOSE_WAIT`]), and
    /// its maker removes it.
    pub fn close(&self, db: &Database) {
        let spare = {
            let mut slot = self.lock();
            slot.closed = true;
            slot.spare.take()
        };
        if let Some(spare) = spare {
            remove(db, spare);
        }
        let slot = self.lock();
        if slot.making > 0 {
            tracing::info!("stopping: waiting for the spare dump files being made");
        }
        let (slot, waited) = self
            .made
            .wait_timeout_while(slot, SPARE_CLOSE_WAIT, |s| s.making > 0)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if waited.timed_out() && slot.making > 0 {
            tracing::warn!("stopping while spare dump files are being made; the next sweep removes them");
        }
    }
}

fn remove(db: &Database, spare: crashmon_database::SpareDump) {
    if let Err(e) = db.discard_spare(spare) {
        tracing::warn!("cannot remove the spare dump files: {e}");
    }
}

/// How long after its start a monitor makes its first [`Spare`]. Making
/// two files in `new/` while an app that crashed at once is being dumped
/// slows the dump's own file creation (both take the directory's lock;
/// one creation took 1.5-3 ms here then): an app that crashes within this
/// time makes its dump's files during the capture, as without a spare.
pub const FIRST_SPARE_AFTER: Duration = Duration::from_millis(20);

/// The thread that prepares for dumps; [`unprepare`] stops it.
struct Prepared {
    thread: Option<std::thread::JoinHandle<()>>,
    stop: std::sync::mpsc::Sender<()>,
}

/// Starts the thread that prepares for the first dump: reads the
/// machine's part of a dump at once ([`crate::capture::warm_up`]), then,
/// [`FIRST_SPARE_AFTER`] later and unless a dump has begun or the monitor
/// is stopping, makes the [`Spare`]. `sidecar`: a dump that begins while
/// the spare is being made is its one app's crash, and the spare is
/// removed again (nothing else would use it).
fn prepare(config: &MonitorConfig, sidecar: bool) -> Prepared {
    let (db, spare, stats) = (Arc::clone(&config.database), Arc::clone(&config.spare), Arc::clone(&config.stats));
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("crashmon-prepare".into())
        .spawn(move || {
            crate::capture::warm_up();
            let quiet =
                matches!(stopped.recv_timeout(FIRST_SPARE_AFTER), Err(std::sync::mpsc::RecvTimeoutError::Timeout));
            if quiet && stats.dumps_begun.load(Ordering::SeqCst) == 0 {
                spare.refill(&db, None);
                if sidecar && stats.dumps_begun.load(Ordering::SeqCst) > 0 {
                    spare.discard(&db);
                }
            }
        })
        .map_err(|e| tracing::warn!("cannot start the thread that prepares dumps: {e}"))
        .ok();
    Prepared { thread, stop }
}

/// Stops and joins the [`prepare`] thread, then closes the [`Spare`].
fn unprepare(config: &MonitorConfig, prepared: Prepared) {
    let Prepared { thread, stop } = prepared;
    drop(stop);
    if let Some(thread) = thread {
        let _ = thread.join();
    }
    config.spare.close(&config.database);
}

/// Points where a test can make the monitor die, to prove nothing is lost or
/// left stuck (RELIABILITY B2, B6). Selected with the environment variable
/// [`FAULT_ENV`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// SIGKILL itself while the target's threads are seized and stopped
    /// for the dump (the kernel must let them run on).
    DieMidDump,
    /// SIGKILL itself after the dump is written, before it is published.
    DieBeforePublish,
    /// SIGKILL itself once the dump is durable in `new/`, before replying
    /// to the app.
    DieBeforeReply,
    /// SIGKILL itself right after replying to the app, before publishing
    /// the durable dump from `new/` to `pending/`.
    DieAfterReply,
    /// Wait 2 s with the dump file open in `new/` before capturing: a dump
    /// in flight that a test can observe (SIGTERM while dumping).
    SlowDump,
    /// The publish of the first report fails (as on a transient I/O
    /// error): the report stays durable in `new/` for the retries.
    FailPublish,
    /// Wait 300 ms between binding the monitor's socket and listening on
    /// it (an app must never find the path before it is served).
    SlowListen,
    /// Wait 1.5 s between making a spare after a dump and keeping it: a
    /// refill in progress that a stopping monitor must wait for.
    SlowSpare,
    /// The minidump writer panics in the monitor's first dump, with the
    /// app's threads suspended: that dump fails, the app dies by its
    /// signal, and the monitor goes on serving.
    PanicMidDump,
}

/// Environment variable that selects a [`Fault`]: `die-mid-dump`,
/// `die-before-publish`, `die-before-reply`, `die-after-reply`, `slow-dump`,
/// `fail-publish`, `slow-listen`, `slow-spare`, `panic-mid-dump`.
pub const FAULT_ENV: &str = "CRASHMON_FAULT_INJECT";

impl Fault {
    /// The fault named by [`FAULT_ENV`], if any.
    pub fn from_env() -> Option<Fault> {
        match std::env::var(FAULT_ENV).ok()?.as_str() {
            "die-mid-dump" => Some(Fault::DieMidDump),
            "die-before-publish" => Some(Fault::DieBeforePublish),
            "die-before-reply" => Some(Fault::DieBeforeReply),
            "die-after-reply" => Some(Fault::DieAfterReply),
            "slow-dump" => Some(Fault::SlowDump),
            "fail-publish" => Some(Fault::FailPublish),
            "slow-listen" => Some(Fault::SlowListen),
            "slow-spare" => Some(Fault::SlowSpare),
            "panic-mid-dump" => Some(Fault::PanicMidDump),
            _ => None,
        }
    }
}

/// Whether [`Fault::FailPublish`] has failed its one publish.
static FAILED_ONCE: AtomicBool = AtomicBool::new(false);

/// First delay before a failed publish is retried; it doubles up to
/// [`REPUBLISH_MAX_DELAY`].
const REPUBLISH_FIRST_DELAY: Duration = Duration::from_secs(1);
/// Longest delay between two retries of a failed publish.
const REPUBLISH_MAX_DELAY: Duration = Duration::from_secs(60);

/// Retry publishing report `id` (durable in `new/`, unlocked) until it has
/// left `new/`: one thread per monitor sweeps `new/` after a growing delay
/// ([`Database::sweep_new`] publishes a complete dump whose writer is gone,
/// exactly once, even next to other monitors) and hands what it published
/// to the post-processing hook. It stops when none of the reports it waits
/// for is left in `new/`, or when the monitor shuts down (the next start's
/// sweep then publishes them).
fn republish_later(config: &MonitorConfig, id: ReportId) {
    let mut state = config.stats.republish.lock().unwrap_or_else(|e| e.into_inner());
    state.ids.push(id);
    if state.running || state.stop {
        return;
    }
    let config = config.clone();
    let spawned = std::thread::Builder::new().name("crashmon-republish".into()).spawn(move || {
        let stats = &config.stats;
        let mut delay = REPUBLISH_FIRST_DELAY;
        loop {
            {
                let state = stats.republish.lock().unwrap_or_else(|e| e.into_inner());
                let (mut state, _) = stats
                    .republish_wake
                    .wait_timeout_while(state, delay, |s| !s.stop)
                    .unwrap_or_else(|e| e.into_inner());
                if state.stop {
                    tracing::info!("monitor stopping; unpublished reports wait in new/ for the next sweep");
                    state.running = false;
                    return;
                }
            }
            delay = (delay * 2).min(REPUBLISH_MAX_DELAY);
            match config.database.sweep_new() {
                Ok(swept) => {
                    for &id in &swept.recovered {
                        tracing::info!(report = %id, "published a report after a failed publish");
                        if let Some(hook) = &config.after_capture {
                            hook.after_capture(&config.database, id);
                        }
                    }
                }
                Err(e) => tracing::warn!("retrying a failed publish: {e}"),
            }
            let mut state = stats.republish.lock().unwrap_or_else(|e| e.into_inner());
            state.ids.retain(|&id| config.database.is_in_new(id));
            if state.ids.is_empty() {
                state.running = false;
                return;
            }
        }
    });
    match spawned {
        Ok(handle) => {
            state.running = true;
            // A previous, finished thread's handle is simply dropped.
            state.thread = Some(handle);
        }
        Err(e) => tracing::error!("cannot retry the publish (the next sweep will): {e}"),
    }
}

fn inject(config: &MonitorConfig, at: Fault, target: i32) {
    if config.fault != Some(at) {
        return;
    }
    if at == Fault::SlowDump {
        tracing::warn!("fault injection: the dump waits 2 s");
        std::thread::sleep(std::time::Duration::from_secs(2));
        return;
    }
    tracing::warn!(?at, "fault injection: the monitor kills itself");
    if at == Fault::DieMidDump {
        // What the (patched) minidump-writer does first: seize every thread
        // of the target, interrupt them all and wait until they are stopped.
        use nix::sys::{ptrace, wait};
        let tids: Vec<nix::unistd::Pid> = std::fs::read_dir(format!("/proc/{target}/task"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok().map(nix::unistd::Pid::from_raw))
            .collect();
        let seized: Vec<_> = tids
            .into_iter()
            .filter(|&t| ptrace::seize(t, ptrace::Options::empty()).is_ok() && ptrace::interrupt(t).is_ok())
            .collect();
        for t in &seized {
            let _ = wait::waitpid(*t, Some(wait::WaitPidFlag::__WALL));
        }
        tracing::warn!(threads = seized.len(), "fault injection: the target's threads are stopped");
    }
    let _ = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGKILL);
}

impl std::fmt::Debug for MonitorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MonitorConfig")
            .field("database", &self.database.root())
            .field("max_clients", &self.max_clients)
            .finish_non_exhaustive()
    }
}

/// Errors that stop a monitor (as opposed to ending one connection).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MonitorError {
    /// The inherited client fd is not a usable socket.
    #[error("--client-fd {fd} is not a connected Unix socket: {source}")]
    BadClientFd {
        /// The fd number.
        fd: i32,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The listening socket could not be set up.
    #[error("cannot listen on {path}: {source}")]
    Listen {
        /// The socket path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Another process already serves that socket path.
    #[error("{path} is already served by another process (pid {pid:?}); refusing to take it over")]
    SocketInUse {
        /// The socket path.
        path: PathBuf,
        /// The peer's pid, when known.
        pid: Option<i32>,
    },
    /// The path exists and is not a stale socket of ours.
    #[error("{path} exists and is not a crashmon socket owned by us: {why}")]
    SocketPathTaken {
        /// The socket path.
        path: PathBuf,
        /// What is there.
        why: String,
    },
}

/// Serve the single client connected on `fd` (the sidecar case) until it
/// disconnects and its reports are processed.
pub fn serve_client(config: &MonitorConfig, fd: OwnedFd) -> Result<(), MonitorError> {
    let ty = socket::getsockopt(&fd, sockopt::SockType)
        .map_err(|e| MonitorError::BadClientFd { fd: fd.as_raw_fd(), source: e.into() })?;
    if ty != socket::SockType::SeqPacket {
        return Err(MonitorError::BadClientFd {
            fd: fd.as_raw_fd(),
            source: io::Error::other(format!("socket type is {ty:?}, expected SeqPacket")),
        });
    }
    let prepared = prepare(config, true);
    // The sidecar's one app: after a crash it is gone, and no spare is
    // made again.
    Connection::new(config, fd).with_refill_after_crash(false).run();
    unprepare(config, prepared);
    Ok(())
}

/// How long a shutdown waits for dumps in progress, then for queued
/// post-processing.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Listen on `path` and serve clients until the process is stopped.
///
/// With `stop` (see [`crate::shutdown::TermSignals`]), SIGTERM and SIGINT
/// shut the monitor down gracefully: it stops accepting, finishes the dumps
/// in progress (new requests on open connections are answered with a
/// failure), lets the post-processing hook drain, removes its socket and
/// returns `Ok`.
pub fn serve_socket(
    config: &MonitorConfig,
    path: &Path,
    stop: Option<crate::shutdown::TermSignals>,
) -> Result<(), MonitorError> {
    let listener = bind(path, config.fault == Some(Fault::SlowListen))?;
    let prepared = prepare(config, false);
    let bound_ino = {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(path).map(|m| m.ino()).ok()
    };
    tracing::info!(socket = %path.display(), "monitor listening");
    let stopping = Arc::new(AtomicBool::new(false));
    if let Some(signals) = stop {
        let stopping = Arc::clone(&stopping);
        let raw = listener.as_raw_fd();
        std::thread::Builder::new()
            .name("crashmon-signals".into())
            .spawn(move || {
                let sig = signals.wait();
                tracing::info!(signal = ?sig, "shutting down: no new connections");
                stopping.store(true, Ordering::SeqCst);
                // Wakes the accept below (EINVAL); the listener stays open
                // until serve_socket returns.
                // SAFETY-free: shutdown(2) on a descriptor we keep open.
                let _ = socket::shutdown(raw, socket::Shutdown::Both);
            })
            .map_err(|e| MonitorError::Listen { path: path.to_path_buf(), source: e })?;
    }
    let active = Arc::new(AtomicUsize::new(0));
    loop {
        if stopping.load(Ordering::SeqCst) {
            break;
        }
        let fd = match socket::accept4(listener.as_raw_fd(), socket::SockFlag::SOCK_CLOEXEC) {
            Ok(fd) => fd,
            Err(_) if stopping.load(Ordering::SeqCst) => break,
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::ECONNABORTED) => continue,
            Err(e @ (nix::errno::Errno::EMFILE | nix::errno::Errno::ENFILE)) => {
                tracing::warn!("accept: {e}; backing off");
                std::thread::sleep(std::time::Duration::from_millis(50));
                continue;
            }
            Err(e) => {
                tracing::error!("accept: {e}");
                std::thread::sleep(std::time::Duration::from_millis(10));
                continue;
            }
        };
        let fd = crate::sys::owned_from_accept(fd);
        if active.load(Ordering::SeqCst) >= config.max_clients {
            tracing::warn!(max = config.max_clients, "too many clients; refusing a connection");
            continue;
        }
        active.fetch_add(1, Ordering::SeqCst);
        let config = config.clone();
        let counter = Arc::clone(&active);
        let spawned = std::thread::Builder::new().name("crashmon-client".into()).spawn(move || {
            // Counted out however the thread ends (a panic too), or the
            // monitor would refuse clients after `max_clients` of them.
            struct Leave(Arc<std::sync::atomic::AtomicUsize>);
            impl Drop for Leave {
                fn drop(&mut self) {
                    self.0.fetch_sub(1, Ordering::SeqCst);
                }
            }
            let _leave = Leave(counter);
            Connection::new(&config, fd).run();
        });
        if let Err(e) = spawned {
            active.fetch_sub(1, Ordering::SeqCst);
            tracing::error!("cannot start a client thread: {e}");
        }
    }
    // Graceful shutdown.
    let unfinished = config.stats.close_and_wait(SHUTDOWN_GRACE);
    if unfinished > 0 {
        tracing::warn!(unfinished, "dumps still running at the end of the shutdown grace period");
    }
    config.stats.stop_republishing();
    if let Some(hook) = &config.after_capture {
        hook.drain(SHUTDOWN_GRACE);
    }
    // Remove our socket, only if it is still the one we bound.
    let current = {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(path).map(|m| m.ino()).ok()
    };
    if current.is_some() && current == bound_ino {
        let _ = std::fs::remove_file(path);
    }
    drop(listener);
    unprepare(config, prepared);
    tracing::info!(
        dumps = config.stats.dumps.load(Ordering::Relaxed),
        failures = config.stats.failures.load(Ordering::Relaxed),
        filtered = config.stats.filtered.load(Ordering::Relaxed),
        "monitor stopped"
    );
    Ok(())
}

fn bind(path: &Path, slow_listen: bool) -> Result<OwnedFd, MonitorError> {
    let listen_err = |source: io::Error| MonitorError::Listen { path: path.to_path_buf(), source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        use std::os::unix::fs::DirBuilderExt;
        if !dir.exists() {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(listen_err)?;
        }
    }
    let addr = socket::UnixAddr::new(path).map_err(|e| listen_err(e.into()))?;
    match std::fs::symlink_metadata(path) {
        Ok(meta) => {
            use std::os::unix::fs::{FileTypeExt, MetadataExt};
            if !meta.file_type().is_socket() {
                return Err(MonitorError::SocketPathTaken { path: path.into(), why: "not a socket".into() });
            }
            if meta.uid() != nix::unistd::geteuid().as_raw() {
                return Err(MonitorError::SocketPathTaken {
                    path: path.into(),
                    why: format!("owned by uid {}", meta.uid()),
                });
            }
            // Is someone serving it? Only a socket nobody answers is stale.
            let probe = socket::socket(
                socket::AddressFamily::Unix,
                socket::SockType::SeqPacket,
                socket::SockFlag::SOCK_CLOEXEC,
                None,
            )
            .map_err(|e| listen_err(e.into()))?;
            match socket::connect(probe.as_raw_fd(), &addr) {
                Ok(()) => {
                    let pid = socket::getsockopt(&probe, sockopt::PeerCredentials).ok().map(|c| c.pid());
                    return Err(MonitorError::SocketInUse { path: path.into(), pid });
                }
                Err(nix::errno::Errno::ECONNREFUSED) => {
                    tracing::info!(socket = %path.display(), "removing stale socket");
                    std::fs::remove_file(path).map_err(listen_err)?;
                }
                Err(e) => return Err(listen_err(e.into())),
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(listen_err(e)),
    }
    let fd =
        socket::socket(socket::AddressFamily::Unix, socket::SockType::SeqPacket, socket::SockFlag::SOCK_CLOEXEC, None)
            .map_err(|e| listen_err(e.into()))?;
    // The path appears only once the socket listens: bound and listening
    // under a temporary name, then linked to its name (an app connecting
    // between a bind and a listen on the path itself would be refused).
    // The link fails if the name was taken meanwhile, as a bind would.
    // Without room for a temporary name (sun_path is 108 bytes), the path
    // itself.
    let tmp = path.file_name().map(|name| {
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{}.tmp", std::process::id()));
        path.with_file_name(tmp_name)
    });
    let tmp = tmp.and_then(|tmp| Some((socket::UnixAddr::new(&tmp).ok()?, tmp)));
    let bind_addr = tmp.as_ref().map_or(&addr, |(tmp_addr, _)| tmp_addr);
    if let Some((_, tmp)) = &tmp {
        // A leftover of a monitor that died in between.
        let _ = std::fs::remove_file(tmp);
    }
    // Create the socket file 0600 whatever the umask.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let bound = socket::bind(fd.as_raw_fd(), bind_addr);
    nix::sys::stat::umask(old);
    bound.map_err(|e| listen_err(e.into()))?;
    if slow_listen {
        tracing::warn!("fault injection: 300 ms between bind and listen");
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let published = socket::listen(&fd, socket::Backlog::new(128).unwrap_or(socket::Backlog::MAXCONN))
        .map_err(io::Error::from)
        .and_then(|()| match &tmp {
            Some((_, tmp)) => std::fs::hard_link(tmp, path),
            None => Ok(()),
        });
    if let Some((_, tmp)) = &tmp {
        let _ = std::fs::remove_file(tmp);
    }
    published.map_err(listen_err)?;
    Ok(fd)
}

/// One client connection.
struct Connection<'a> {
    config: &'a MonitorConfig,
    fd: OwnedFd,
    peer_pid: i32,
    peer_uid: u32,
    greeted: bool,
    /// The client's annotations, bounded (see [`MAX_ANNOTATIONS`]).
    annotations: BTreeMap<String, String>,
    annotation_bytes: usize,
    /// The client's most recent breadcrumbs (at most [`MAX_BREADCRUMBS`]).
    breadcrumbs: std::collections::VecDeque<crashmon_database::Breadcrumb>,
    /// Files to copy into each report (at most [`MAX_ATTACHMENTS`]).
    attachments: Vec<PathBuf>,
    /// Whether to make a [`Spare`] again after a crash's dump (not for a
    /// sidecar, whose one app is then gone).
    refill_after_crash: bool,
}

/// Messages up to this size are received into a buffer on the connection
/// thread's stack (hello, breadcrumbs, small annotations); larger ones into
/// a heap buffer that lives only while the message is handled.
const SMALL_MESSAGE: usize = 512;

/// Breadcrumbs kept per client: the newest win.
pub const MAX_BREADCRUMBS: usize = 100;

/// Most annotations kept per client (the handler enforces the same).
pub const MAX_ANNOTATIONS: usize = 400;
/// Most annotation bytes (keys + values) kept per client.
pub const MAX_ANNOTATION_BYTES: usize = 1024 * 1024;

impl<'a> Connection<'a> {
    fn new(config: &'a MonitorConfig, fd: OwnedFd) -> Self {
        Connection {
            config,
            fd,
            peer_pid: 0,
            peer_uid: u32::MAX,
            greeted: false,
            annotations: BTreeMap::new(),
            annotation_bytes: 0,
            breadcrumbs: std::collections::VecDeque::with_capacity(MAX_BREADCRUMBS),
            attachments: Vec::new(),
            refill_after_crash: true,
        }
    }

    fn with_refill_after_crash(mut self, refill: bool) -> Self {
        self.refill_after_crash = refill;
        self
    }

    fn run(mut self) {
        // Credentials first: nothing from a stranger is decoded.
        match socket::getsockopt(&self.fd, sockopt::PeerCredentials) {
            Ok(cred) => {
                self.peer_pid = cred.pid();
                self.peer_uid = cred.uid();
            }
            Err(e) => {
                tracing::warn!("cannot read peer credentials: {e}; dropping connection");
                return;
            }
        }
        let me = nix::unistd::geteuid().as_raw();
        if self.peer_uid != me {
            tracing::warn!(peer_uid = self.peer_uid, peer_pid = self.peer_pid, "refusing a client of another user");
            return;
        }
        // No receive buffer while the client is idle (most of a shared
        // monitor's clients, most of the time): learn the next message's
        // length first (MSG_PEEK|MSG_TRUNC into nothing, which blocks until
        // one arrives), then receive it into a buffer of exactly that size
        // (never more than MAX_MESSAGE_LEN: a peer does not choose our
        // allocation), freed once the message is handled.
        let mut small = [0u8; SMALL_MESSAGE];
        let mut large = Vec::new();
        loop {
            let len = match socket::recv(self.fd.as_raw_fd(), &mut [], MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC) {
                Ok(0) => {
                    tracing::debug!(pid = self.peer_pid, "client disconnected");
                    return;
                }
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    tracing::debug!(pid = self.peer_pid, "recv: {e}");
                    return;
                }
            };
            if len > proto::MAX_MESSAGE_LEN {
                tracing::warn!(pid = self.peer_pid, len, "oversized message; dropping connection");
                return;
            }
            let buf: &mut [u8] = if len <= SMALL_MESSAGE {
                &mut small[..len]
            } else {
                large.resize(len, 0);
                &mut large[..]
            };
            let n = match socket::recv(self.fd.as_raw_fd(), buf, MsgFlags::MSG_DONTWAIT) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => continue,
                Err(e) => {
                    tracing::debug!(pid = self.peer_pid, "recv: {e}");
                    return;
                }
            };
            let msg = match proto::decode(&buf[..n]) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(pid = self.peer_pid, "malformed message: {e}; dropping connection");
                    return;
                }
            };
            if !self.handle(msg) {
                return;
            }
            large = Vec::new();
        }
    }

    /// Returns false to end the connection.
    fn handle(&mut self, msg: proto::Message<'_>) -> bool {
        match msg {
            proto::Message::Hello(h) => {
                if h.pid as i32 != self.peer_pid {
                    tracing::warn!(
                        claimed = h.pid,
                        peer_pid = self.peer_pid,
                        peer_uid = self.peer_uid,
                        "client claims another pid; dropping"
                    );
                    return false;
                }
                self.greeted = true;
                tracing::debug!(pid = self.peer_pid, "hello");
                self.send(&proto::Message::HelloAck(proto::HelloAck { monitor_pid: std::process::id() }))
            }
            proto::Message::DumpRequest(req) => {
                if !self.greeted {
                    tracing::warn!(pid = self.peer_pid, "dump request before hello; dropping");
                    return false;
                }
                if req.pid as i32 != self.peer_pid {
                    tracing::warn!(
                        claimed = req.pid,
                        peer_pid = self.peer_pid,
                        "dump request for another pid refused (a forked child without its own connection?)"
                    );
                    let reason = format!("pid {} is not the connected process {}", req.pid, self.peer_pid);
                    return self.send(&proto::Message::DumpFailed(proto::DumpFailed {
                        request_id: req.request_id,
                        errno: nix::errno::Errno::EPERM as i32,
                        reason: reason.as_bytes(),
                    }));
                }
                tracing::debug!(pid = self.peer_pid, tid = req.tid, kind = ?req.kind, "dump requested");
                let ok = self.dump(&req);
                // After the reply (and, for a crash, while the app dies).
                if req.kind == proto::CrashKind::Requested || self.refill_after_crash {
                    let pause = (self.config.fault == Some(Fault::SlowSpare)).then_some(Duration::from_millis(1500));
                    self.config.spare.refill(&self.config.database, pause);
                }
                ok
            }
            proto::Message::Breadcrumb(b) => {
                if !self.greeted {
                    tracing::warn!(pid = self.peer_pid, "breadcrumb before hello; dropping");
                    return false;
                }
                if self.breadcrumbs.len() == MAX_BREADCRUMBS {
                    self.breadcrumbs.pop_front();
                }
                const LEVELS: [&str; 5] = ["trace", "debug", "info", "warning", "error"];
                self.breadcrumbs.push_back(crashmon_database::Breadcrumb {
                    timestamp_ms: b.timestamp_ms,
                    level: LEVELS[usize::from(b.level.min(4))].to_owned(),
                    category: String::from_utf8_lossy(b.category).into_owned(),
                    message: String::from_utf8_lossy(b.message).into_owned(),
                });
                true
            }
            proto::Message::Annotate(a) => {
                if !self.greeted {
                    tracing::warn!(pid = self.peer_pid, "annotation before hello; dropping");
                    return false;
                }
                self.annotate(&a);
                true
            }
            proto::Message::Attach(a) => {
                if !self.greeted {
                    tracing::warn!(pid = self.peer_pid, "attachment before hello; dropping");
                    return false;
                }
                use std::os::unix::ffi::OsStrExt;
                let path = PathBuf::from(std::ffi::OsStr::from_bytes(a.path));
                self.attachments.retain(|p| *p != path);
                if !a.remove {
                    if self.attachments.len() >= MAX_ATTACHMENTS {
                        tracing::warn!(pid = self.peer_pid, path = %path.display(), "attachment limit reached; dropping");
                    } else {
                        self.attachments.push(path);
                    }
                }
                true
            }
            other => {
                tracing::warn!(pid = self.peer_pid, "unexpected message {:?}; dropping", kind_name(&other));
                false
            }
        }
    }

    fn annotate(&mut self, a: &proto::Annotate<'_>) {
        let key = String::from_utf8_lossy(a.key).into_owned();
        if let Some(old) = self.annotations.remove(&key) {
            self.annotation_bytes -= key.len() + old.len();
        }
        if a.remove {
            return;
        }
        let value = String::from_utf8_lossy(a.value).into_owned();
        let size = key.len() + value.len();
        if self.annotations.len() >= MAX_ANNOTATIONS || self.annotation_bytes + size > MAX_ANNOTATION_BYTES {
            tracing::warn!(pid = self.peer_pid, key, "annotation limit reached; dropping");
            return;
        }
        self.annotation_bytes += size;
        self.annotations.insert(key, value);
    }

    fn send(&self, msg: &proto::Message<'_>) -> bool {
        // The monitor sends only HelloAck, DumpComplete and DumpFailed (at
        // most 284 bytes): a small stack buffer. A MAX_MESSAGE_LEN (20 KiB)
        // one here cost every connection thread 20 KiB of resident stack
        // (the stack probe touches every page of the frame, once, for good).
        let mut small = [0u8; SMALL_MESSAGE];
        let mut large = Vec::new();
        let (buf, n) = match proto::encode(msg, &mut small) {
            Ok(n) => (&small[..], n),
            Err(_) => {
                large.resize(proto::MAX_MESSAGE_LEN, 0);
                let Ok(n) = proto::encode(msg, &mut large) else { return false };
                (&large[..], n)
            }
        };
        match socket::send(self.fd.as_raw_fd(), &buf[..n], MsgFlags::MSG_NOSIGNAL) {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!(pid = self.peer_pid, "send: {e}");
                false
            }
        }
    }

    // Never inlined into the receive loop: its frame (and minidump-writer's
    // below it) belongs on the stack only while a dump is written, not in
    // every idle connection's resident stack.
    #[inline(never)]
    fn dump(&self, req: &proto::DumpRequest<'_>) -> bool {
        let stats = &self.config.stats;
        if !stats.enter() {
            tracing::warn!(pid = self.peer_pid, "dump request while shutting down; refused");
            return self.send(&proto::Message::DumpFailed(proto::DumpFailed {
                request_id: req.request_id,
                errno: libc::ESHUTDOWN,
                reason: b"the monitor is shutting down",
            }));
        }
        let ok = self.dump_entered(req);
        stats.leave();
        ok
    }

    fn dump_entered(&self, req: &proto::DumpRequest<'_>) -> bool {
        let db = &self.config.database;
        let options = &self.config.options;
        let stats = &self.config.stats;
        let pid = req.pid as i32;
        let tid = req.tid as i32;
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
        let mut metadata = Metadata {
            exe,
            annotations: self.annotations.clone(),
            breadcrumbs: self.breadcrumbs.iter().cloned().collect(),
            ..Metadata::new(ReportId::new_random(), now_ms(), pid, crash_info(req))
        };
        // Filter rules on annotations: no dump, but a record in failed/.
        if let Some(rule) = options.filters.match_annotations(&metadata.annotations) {
            let count = stats.filtered.fetch_add(1, Ordering::Relaxed) + 1;
            metadata.filtered = Some(rule.clone());
            metadata.failure = Some(format!("filtered: {rule}"));
            match db.record_failure(&metadata) {
                Ok(id) => {
                    tracing::info!(pid, report = %id, rule, filtered = count, "crash filtered; recorded in failed/")
                }
                Err(e) => tracing::error!(pid, rule, "crash filtered; cannot record it: {e}"),
            }
            let reason = format!("filtered by the monitor: {rule}");
            return self.send(&proto::Message::DumpFailed(proto::DumpFailed {
                request_id: req.request_id,
                errno: 0,
                reason: reason.as_bytes(),
            }));
        }
        let started = std::time::Instant::now();
        // A panic's handler sends a SIGABRT context of the panicking thread
        // (issue 4, A4), so its dump's exception says SIGABRT.
        let context = (req.kind == proto::CrashKind::Signal
            || (req.kind == proto::CrashKind::Panic && !req.context.is_empty()))
        .then_some(req.context);
        // The dump's files: the spare made ahead if there is one, else
        // created on another thread while this one captures (in memory), so
        // that neither waits for the other's directory updates and ptrace
        // stops.
        self.config.stats.dumps_begun.fetch_add(1, Ordering::SeqCst);
        let spare = self.config.spare.take();
        let (new, captured) = std::thread::scope(|scope| {
            let files = match spare {
                Some(spare) => Err(db.use_spare(spare).or_else(|e| {
                    tracing::warn!("the spare dump files are gone ({e}); making new ones");
                    db.begin_dump()
                })),
                // No thread to be had (EAGAIN): create them here, first.
                None => std::thread::Builder::new()
                    .name("crashmon-dumpfile".into())
                    .spawn_scoped(scope, || db.begin_dump())
                    .map_err(|_| db.begin_dump()),
            };
            if let Ok(files) = &files
                && matches!(self.config.fault, Some(Fault::DieMidDump | Fault::SlowDump))
            {
                // Wait or die with the dump's (empty) files in new/, as a
                // monitor in the middle of a dump would.
                while !files.is_finished() {
                    std::thread::yield_now();
                }
            }
            inject(self.config, Fault::SlowDump, pid);
            inject(self.config, Fault::DieMidDump, pid);
            let t0 = std::time::Instant::now();
            let mut capture_options = options.capture.clone();
            capture_options.panic_while_suspended = self.config.fault == Some(Fault::PanicMidDump)
                && self.config.stats.dumps_begun.load(Ordering::SeqCst) == 1;
            let capture = || capture::capture_minidump(pid, tid, context, &capture_options);
            // An app that goes on after its dump (a handled error, a
            // reported panic): its capture runs on a thread of its own,
            // which ends with it. A thread of the app that did not stop in
            // time (a killable wait) stays traced by the thread that
            // seized it until that thread ends, and would stop for good
            // when its wait ends. A signal crash keeps this thread (a
            // thread spawn is ~0.2 ms on the crash path, measured): the
            // app dies after the reply, and this connection ends when its
            // last thread has exited and closed the socket, letting that
            // thread go.
            let captured = if req.kind == proto::CrashKind::Signal {
                capture()
            } else {
                std::thread::scope(|own| {
                    match std::thread::Builder::new().name("crashmon-capture".into()).spawn_scoped(own, capture) {
                        Ok(thread) => thread.join().unwrap_or_else(|_| {
                            Err(capture::CaptureError::Writer { pid, source: "the capture thread panicked".into() })
                        }),
                        // No thread to be had (EAGAIN): here, then.
                        Err(_) => capture(),
                    }
                })
            };
            tracing::debug!(
                write_us = t0.elapsed().as_micros() as u64,
                machine_reads = minidump_writer::minidump_writer::machine::reads(),
                "captured"
            );
            let new = match files {
                Ok(thread) => thread.join().unwrap_or_else(|_| {
                    Err(crashmon_database::DbError::Io {
                        op: "create",
                        path: db.root().join("new"),
                        source: std::io::Error::other("the thread creating the dump file panicked"),
                    })
                }),
                Err(created) => created,
            };
            (new, captured)
        });
        let result = new.map_err(|e| (capture::error_chain(&e), db_errno(&e))).and_then(|mut new| {
            metadata.id = new.id;
            let stored = captured.map_err(|e| (capture::error_chain(&e), e.errno())).and_then(|c| {
                let size = c.bytes.len() as u64;
                if let Some(cap) = options.capture.max_dump_size.filter(|&cap| size > cap) {
                    tracing::warn!(pid, size, cap, threads = c.threads, "the dump exceeds its size cap");
                }
                new.write(&c.bytes).map(|()| size).map_err(|e| (capture::error_chain(&e), db_errno(&e)))
            });
            match stored {
                Ok(size) => {
                    metadata.dump_size = Some(size);
                    metadata.attachments = self.copy_attachments(db, new.id);
                    inject(self.config, Fault::DieBeforePublish, pid);
                    // Durable before the reply; published after it.
                    db.make_durable(new, &metadata).map_err(|e| {
                        let _ = db.remove_attachments(metadata.id);
                        (capture::error_chain(&e), db_errno(&e))
                    })
                }
                Err(e) => {
                    if let Err(ae) = db.abandon_dump(new) {
                        tracing::warn!("cannot remove the partial dump: {ae}");
                    }
                    Err(e)
                }
            }
        });
        match result {
            Ok(durable) => {
                let id = durable.id;
                stats.dumps.fetch_add(1, Ordering::Relaxed);
                inject(self.config, Fault::DieBeforeReply, pid);
                // The dump and its metadata are fsynced (in new/): a
                // crashing app may die now. Publishing to pending/ (two
                // renames and a directory fsync) happens while it does; if
                // this monitor dies first, the next sweep publishes the
                // dump. An app that asked for a dump and keeps running gets
                // its answer once the report is published, so the id it
                // gets is one `crashmon show` finds.
                let reply = || {
                    let ok = self.send(&proto::Message::DumpComplete(proto::DumpComplete {
                        request_id: req.request_id,
                        report_id: *id.as_uuid().as_bytes(),
                    }));
                    tracing::debug!(pid, "replied");
                    ok
                };
                let crashing = req.kind != proto::CrashKind::Requested;
                let early = crashing.then(reply);
                if crashing {
                    inject(self.config, Fault::DieAfterReply, pid);
                }
                let published =
                    if self.config.fault == Some(Fault::FailPublish) && !FAILED_ONCE.swap(true, Ordering::SeqCst) {
                        tracing::warn!("fault injection: the publish fails");
                        drop(durable);
                        Err(crashmon_database::DbError::Io {
                            op: "move into place",
                            path: db.root().join("pending"),
                            source: io::Error::other("injected fault"),
                        })
                    } else {
                        db.publish(durable)
                    };
                let ok = match early {
                    Some(ok) => ok,
                    None => reply(),
                };
                if let Err(e) = published {
                    // Still complete and durable in new/: a sweep publishes
                    // it (and hands it to post-processing), retried from now
                    // on, not only at the next start.
                    tracing::error!(pid, report = %id, "cannot publish the dump yet (retrying): {e}");
                    republish_later(self.config, id);
                    return ok;
                }
                tracing::info!(
                    pid,
                    tid,
                    report = %id,
                    signal = metadata.crash.signal_name.as_deref().unwrap_or("-"),
                    ms = started.elapsed().as_millis() as u64,
                    "dump written"
                );
                if let Some(hook) = &self.config.after_capture {
                    hook.after_capture(db, id);
                }
                ok
            }
            Err((reason, errno)) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                let errno_name = (errno != 0).then(|| nix::errno::Errno::from_raw(errno).to_string());
                tracing::error!(pid, tid, errno = errno_name.as_deref().unwrap_or("-"), "no dump: {reason}");
                metadata.failure = Some(reason.clone());
                if let Err(e) = db.record_failure(&metadata) {
                    tracing::error!("cannot record the failure in the database: {e}");
                }
                self.send(&proto::Message::DumpFailed(proto::DumpFailed {
                    request_id: req.request_id,
                    errno,
                    reason: reason.as_bytes(),
                }))
            }
        }
    }

    /// Copy the client's attachments into report `id`; a file that cannot
    /// be copied is logged and left out, never fails the dump.
    fn copy_attachments(&self, db: &Database, id: ReportId) -> Vec<crashmon_database::Attachment> {
        let max = self.config.options.max_attachment_size;
        let mut out = Vec::new();
        for path in &self.attachments {
            match db.store_attachment(id, path, max) {
                Ok(a) => {
                    if a.truncated {
                        tracing::info!(report = %id, path = %path.display(), kept = a.size, "attachment cut to its tail");
                    }
                    out.push(a);
                }
                Err(e) => tracing::warn!(report = %id, "attachment left out: {e}"),
            }
        }
        out
    }
}

/// The OS error behind a database error (ENOSPC, EFBIG...), 0 if none.
fn db_errno(e: &crashmon_database::DbError) -> i32 {
    capture::io_errno(e).unwrap_or(0)
}

fn kind_name(msg: &proto::Message<'_>) -> &'static str {
    match msg {
        proto::Message::Hello(_) => "Hello",
        proto::Message::HelloAck(_) => "HelloAck",
        proto::Message::DumpRequest(_) => "DumpRequest",
        proto::Message::DumpComplete(_) => "DumpComplete",
        proto::Message::DumpFailed(_) => "DumpFailed",
        proto::Message::Annotate(_) => "Annotate",
        proto::Message::Breadcrumb(_) => "Breadcrumb",
        proto::Message::Attach(_) => "Attach",
    }
}

fn crash_info(req: &proto::DumpRequest<'_>) -> CrashInfo {
    let kind = match req.kind {
        proto::CrashKind::Signal => CrashKind::Signal,
        proto::CrashKind::Panic => CrashKind::Panic,
        proto::CrashKind::Requested => CrashKind::Requested,
    };
    let has_signal = req.signo > 0;
    // Only a real signal has a meaningful si_code and fault address.
    let is_signal = has_signal && req.kind == proto::CrashKind::Signal;
    CrashInfo {
        kind,
        signal: has_signal.then_some(req.signo),
        signal_name: crashmon_database::signal_name(req.signo).map(str::to_owned),
        code: is_signal.then_some(req.code),
        code_name: if is_signal {
            crashmon_database::signal_code_name(req.signo, req.code).map(str::to_owned)
        } else {
            None
        },
        address: is_signal.then_some(req.address),
        tid: Some(req.tid as i32),
        message: (!req.message.is_empty()).then(|| String::from_utf8_lossy(req.message).into_owned()),
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
