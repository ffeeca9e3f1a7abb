//! The `crashmon` command line: runs the monitor, lists and shows reports,
//! symbolicates dumps and runs the demo. See `crashmon --help`.

mod cmd;
pub mod config;
pub mod exit;
mod postprocess;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

/// Out-of-process crash reporter for native Linux programs.
#[derive(Debug, Parser)]
#[command(name = "crashmon", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// The flags every subcommand takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do
    #[command(subcommand)]
    pub command: Command,
}

/// The global flags, shared by the `crashmon` CLI and `crashmon-monitor`.
#[derive(Debug, clap::Args)]
pub struct GlobalArgs {
    /// Configuration file [default: $CRASHMON_CONFIG, else $XDG_CONFIG_HOME/crashmon/config.toml if it exists]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Crash database directory [default: ~/.local/share/crashmon]
    #[arg(long, global = true, env = crashmon_database::DATABASE_ENV, value_name = "DIR")]
    pub database: Option<PathBuf>,
    /// More log output (repeat for more)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// When to use colour on stdout
    #[arg(long, global = true, value_enum, default_value_t = Color::Auto)]
    pub color: Color,
}

/// `crashmon-monitor`: the monitor alone, in a smaller executable whose
/// exec costs ~0.8 ms less than the whole CLI's (the handler's sidecar,
/// started on an app's critical path). Same flags, configuration, logging and exit
/// codes as `crashmon monitor`; a leading `monitor` word is accepted, so
/// both executables take the same command line.
#[derive(Debug, Parser)]
#[command(name = "crashmon-monitor", version, long_about = None)]
#[command(about = "crashmon's monitor alone: captures crashes of connected apps (same as `crashmon monitor`)")]
pub struct MonitorCli {
    /// The flags every subcommand takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The monitor's own flags.
    #[command(flatten)]
    pub args: cmd::monitor::Args,
}

/// Colour choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Color {
    /// Colour when stdout is a terminal.
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

impl Color {
    fn enabled(self) -> bool {
        match self {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the monitor that captures crashes of connected apps
    Monitor(cmd::monitor::Args),
    /// Crash a bundled example app and show the symbolicated report
    Demo(cmd::demo::Args),
    /// List the reports in the database
    List(cmd::reports::ListArgs),
    /// Show one report, symbolicated
    Show(cmd::reports::ShowArgs),
    /// Symbolicate a minidump file and print its stack
    Symbolicate(cmd::symbolicate::Args),
    /// Write a Breakpad .sym file of a binary (for collectors that symbolicate server-side)
    DumpSyms(cmd::dump_syms::Args),
    /// Upload pending reports to a crash collector
    Upload(cmd::upload::UploadArgs),
    /// Enable, disable or show upload consent
    Consent(cmd::upload::ConsentArgs),
    /// Run a program with the crash handler preloaded (no code changes)
    Run(cmd::run::RunArgs),
    /// Remove the oldest reports beyond count, size and age limits
    Prune(cmd::prune::PruneArgs),
    /// Check the configuration file or show the effective settings
    #[command(subcommand)]
    Config(cmd::config::ConfigCommand),
    /// Check ptrace permission, the monitor socket, the database and the upload target
    Doctor(cmd::doctor::DoctorArgs),
    /// Internal: symbolicate a report in a resource-limited child process
    #[command(name = "__symbolicate-report", hide = true)]
    SymbolicateReport(postprocess::ChildArgs),
    /// Internal: the demo application
    #[command(name = "__demo-app", hide = true)]
    DemoApp(cmd::demo::AppArgs),
    /// Internal: a process for `crashmon doctor` to ptrace
    #[command(name = "__doctor-ptracee", hide = true)]
    DoctorPtracee,
}

/// Global context handed to every subcommand.
#[derive(Debug)]
pub struct Context {
    /// The database directory from `--database`, `CRASHMON_DATABASE` or the
    /// configuration file (in that order); `None`: the platform default.
    pub database: Option<PathBuf>,
    /// Colour on stdout.
    pub color: bool,
    /// `--quiet`: only errors (no progress bars).
    pub quiet: bool,
    /// The validated settings (flag > env > config file > default), with
    /// where each came from. Read the subcommand's own flags first.
    pub config: Arc<config::Config>,
    /// Which executable runs: the whole CLI or the lean monitor (which has
    /// none of the other subcommands, e.g. the symbolication child's).
    pub program: Program,
}

/// The executable running, of the two this package builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Program {
    /// `crashmon`: every subcommand.
    Cli,
    /// `crashmon-monitor`: `monitor` only.
    Monitor,
}

/// File name of the whole CLI.
pub const CLI_EXE: &str = "crashmon";
/// File name of the lean monitor executable.
pub const MONITOR_EXE: &str = "crashmon-monitor";

/// The monitor executable to hand to the handler (`CRASHMON_MONITOR`) of
/// an app that `exe` (the running `crashmon`) starts: `crashmon-monitor`
/// next to it (it starts faster; see `crashmon_handler::find_monitor_in`),
/// else `exe` itself. A `crashmon-monitor` older than `exe` by more than a
/// minute is a build left behind (`cargo run -p crashmon` rebuilds only
/// `crashmon`): `exe` is used, so a demo never runs a stale monitor.
pub fn monitor_exe_beside(exe: &std::path::Path) -> PathBuf {
    const STALE: std::time::Duration = std::time::Duration::from_secs(60);
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match exe.parent().and_then(crashmon_handler::find_monitor_in) {
        Some(lean) if lean.file_name().is_some_and(|n| n == MONITOR_EXE) => {
            let stale = matches!((modified(&lean), modified(exe)), (Some(l), Some(e))
                if e.duration_since(l).is_ok_and(|d| d > STALE));
            if stale { exe.to_path_buf() } else { lean }
        }
        _ => exe.to_path_buf(),
    }
}

impl Context {
    /// The database path to use: the flag/env, else the platform default.
    pub fn database_path(&self) -> anyhow::Result<PathBuf> {
        use exit::WithCode;
        match &self.database {
            Some(p) if p.is_relative() => Ok(std::env::current_dir().code(exit::USAGE)?.join(p)),
            Some(p) => Ok(p.clone()),
            None => crashmon_database::default_path()
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "no database location: pass --database, set CRASHMON_DATABASE or `database` in the config file"
                    )
                })
                .code(exit::USAGE),
        }
    }
}

fn init_logging(global: &GlobalArgs) {
    let default = if global.quiet {
        "error"
    } else {
        match global.verbose {
            0 => "warn",
            1 => "info",
            2 => "debug",
            _ => "trace",
        }
    };
    // minidump-writer logs every mapping without a build id ([heap],
    // [stack], ...) as a warning: expected, so quiet unless asked for.
    let filter: tracing_subscriber::filter::Targets = std::env::var("CRASHMON_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| format!("{default},minidump_writer=error,goblin=error").parse().expect("a valid default"));
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .with_target(false),
        )
        .try_init();
}

/// Parse the command line with `T`'s parser; on a parse error (or
/// `--help`/`--version`) the exit code to return.
fn parse<T: CommandFactory + FromArgMatches>(
    argv: impl IntoIterator<Item = std::ffi::OsString>,
) -> Result<(T, clap::ArgMatches), ExitCode> {
    let parsed = T::command().try_get_matches_from(argv).and_then(|m| T::from_arg_matches(&m).map(|t| (t, m)));
    parsed.map_err(|e| {
        let _ = e.print();
        ExitCode::from(if e.use_stderr() { exit::USAGE } else { exit::OK })
    })
}

/// What every entry point does before its command: logging, then the
/// validated configuration (flag > env > file > default) made global, then
/// the [`Context`]. `load_config: false` (for `config check`, which reports
/// on a file itself) skips the file. On an invalid configuration, prints
/// the error and returns the usage exit code.
fn start(
    global: &GlobalArgs,
    matches: &clap::ArgMatches,
    load_config: bool,
    program: Program,
) -> Result<Context, ExitCode> {
    init_logging(global);
    let database = global.database.clone().map(|value| {
        let origin = match matches.value_source("database") {
            Some(clap::parser::ValueSource::EnvVariable) => {
                config::Origin::Env { name: crashmon_database::DATABASE_ENV.into() }
            }
            _ => config::Origin::Flag { name: "--database".into() },
        };
        config::Setting { value, origin }
    });
    let config = if load_config {
        match config::load(global.config.as_deref(), database) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("crashmon: error: {e}");
                return Err(ExitCode::from(exit::USAGE));
            }
        }
    } else {
        config::Config { database: database.clone(), ..Default::default() }
    };
    let config = Arc::new(config);
    config::set_global(config.clone());
    Ok(Context {
        database: config.database.as_ref().map(|s| s.value.clone()),
        color: global.color.enabled(),
        quiet: global.quiet,
        config,
        program,
    })
}

/// A command's outcome as the process's exit code (errors printed).
fn finish(result: anyhow::Result<u8>) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let code = exit::code_of(&e);
            eprintln!("crashmon: error: {e:#}");
            ExitCode::from(code)
        }
    }
}

/// `crashmon`: parse the command line, run, and turn the outcome into an
/// exit code.
pub fn main_impl() -> ExitCode {
    let (cli, matches) = match parse::<Cli>(std::env::args_os()) {
        Ok(v) => v,
        Err(code) => return code,
    };
    // `config check` reports on a file itself; everything else needs a
    // valid configuration before it does anything.
    let load_config = !matches!(cli.command, Command::Config(cmd::config::ConfigCommand::Check(_)));
    let ctx = match start(&cli.global, &matches, load_config, Program::Cli) {
        Ok(ctx) => ctx,
        Err(code) => return code,
    };
    let config_flag = cli.global.config.clone();
    finish(match cli.command {
        Command::Monitor(args) => cmd::monitor::run(&ctx, args),
        Command::Demo(args) => cmd::demo::run(&ctx, args),
        Command::List(args) => cmd::reports::list(&ctx, args),
        Command::Show(args) => cmd::reports::show(&ctx, args),
        Command::Symbolicate(args) => cmd::symbolicate::run(&ctx, args),
        Command::DumpSyms(args) => cmd::dump_syms::run(&ctx, args),
        Command::Upload(args) => cmd::upload::upload(&ctx, args),
        Command::Consent(args) => cmd::upload::consent(&ctx, args),
        Command::Run(args) => cmd::run::run(&ctx, args),
        Command::Prune(args) => cmd::prune::prune(&ctx, args),
        Command::SymbolicateReport(args) => postprocess::child_main(&ctx, args),
        Command::DemoApp(args) => cmd::demo::app_main(args),
        Command::Config(c) => cmd::config::run(&ctx, c, config_flag.as_deref()),
        Command::Doctor(args) => cmd::doctor::run(&ctx, args),
        Command::DoctorPtracee => cmd::doctor::ptracee_main(),
    })
}

/// `crashmon-monitor`: exactly `crashmon monitor` (same flags, start-up and
/// exit codes), without linking the other subcommands. A `monitor` word
/// right after the program name is skipped, so the handler can give either
/// executable the same arguments.
pub fn monitor_main() -> ExitCode {
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(i) = monitor_word(&argv) {
        argv.remove(i);
    }
    let (cli, matches) = match parse::<MonitorCli>(argv) {
        Ok(v) => v,
        Err(code) => return code,
    };
    let ctx = match start(&cli.global, &matches, true, Program::Monitor) {
        Ok(ctx) => ctx,
        Err(code) => return code,
    };
    finish(cmd::monitor::run(&ctx, cli.args))
}

/// Where `crashmon-monitor`'s command line has the optional `monitor`
/// word: after the global options only (`--config F -v monitor ...`, as
/// `crashmon --config F -v monitor ...`), never a flag's value.
fn monitor_word(argv: &[std::ffi::OsString]) -> Option<usize> {
    let mut i = 1;
    while let Some(arg) = argv.get(i).and_then(|a| a.to_str()) {
        match arg {
            "monitor" => return Some(i),
            "--config" | "--database" | "--color" => i += 2,
            "-q" | "--quiet" | "--verbose" => i += 1,
            a if a.starts_with("--config=") || a.starts_with("--database=") || a.starts_with("--color=") => i += 1,
            a if a.len() > 1 && a.starts_with('-') && !a.starts_with("--") && a[1..].chars().all(|c| c == 'v') => {
                i += 1
            }
            _ => return None,
        }
    }
    None
}

/// Write to stdout; a closed pipe (`crashmon list | head`) is not an error.
pub(crate) fn print_out(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}
