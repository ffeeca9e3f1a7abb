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
    /// What to do
    #[command(subcommand)]
    pub command: Command,
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

fn init_logging(cli: &Cli) {
    let default = if cli.quiet {
        "error"
    } else {
        match cli.verbose {
            0 => "warn",
            1 => "info",
            2 => "debug",
            _ => "trace",
        }
    };
    // minidump-writer logs every mapping without a build id ([heap],
    // [stack], ...) as a warning: expected, so quiet unless asked for.
    let filter = tracing_subscriber::EnvFilter::try_from_env("CRASHMON_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{default},minidump_writer=error,goblin=error"))
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// Parse the command line, run, and turn the outcome into an exit code.
pub fn main_impl() -> ExitCode {
    let parsed = Cli::command().try_get_matches().and_then(|m| Cli::from_arg_matches(&m).map(|cli| (cli, m)));
    let (cli, matches) = match parsed {
        Ok(v) => v,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::USAGE } else { exit::OK });
        }
    };
    init_logging(&cli);
    let database = cli.database.clone().map(|value| {
        let origin = match matches.value_source("database") {
            Some(clap::parser::ValueSource::EnvVariable) => {
                config::Origin::Env { name: crashmon_database::DATABASE_ENV.into() }
            }
            _ => config::Origin::Flag { name: "--database".into() },
        };
        config::Setting { value, origin }
    });
    // `config check` reports on a file itself; everything else needs a
    // valid configuration before it does anything.
    let config = if matches!(cli.command, Command::Config(cmd::config::ConfigCommand::Check(_))) {
        config::Config { database: database.clone(), ..Default::default() }
    } else {
        match config::load(cli.config.as_deref(), database) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("crashmon: error: {e}");
                return ExitCode::from(exit::USAGE);
            }
        }
    };
    let config = Arc::new(config);
    config::set_global(config.clone());
    let ctx = Context {
        database: config.database.as_ref().map(|s| s.value.clone()),
        color: cli.color.enabled(),
        quiet: cli.quiet,
        config,
    };
    let config_flag = cli.config.clone();
    let result = match cli.command {
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
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let code = exit::code_of(&e);
            eprintln!("crashmon: error: {e:#}");
            ExitCode::from(code)
        }
    }
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
