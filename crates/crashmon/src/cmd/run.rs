//! `crashmon run -- CMD ARGS...`: crash-report an unmodified program by
//! preloading the crashmon handler (`libcrashmon.so`) into it.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use anyhow::Context as _;
use crashmon_database::Database;

use crate::Context;
use crate::exit::{self, WithCode};

/// `crashmon run` arguments.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The shared library to preload [default: libcrashmon.so next to this executable]
    #[arg(long, value_name = "FILE")]
    pub library: Option<PathBuf>,
    /// The program and its arguments
    #[arg(trailing_var_arg = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

/// Replace this process with the program, the handler preloaded into it.
pub fn run(ctx: &Context, args: RunArgs) -> anyhow::Result<u8> {
    let exe = std::env::current_exe().context("cannot find the crashmon executable")?;
    let library = match args.library {
        Some(l) => l,
        None => exe.parent().map(|d| d.join("libcrashmon.so")).unwrap_or_default(),
    };
    if !library.is_file() {
        return Err(anyhow::anyhow!(
            "{} not found (build it with `cargo build --release -p crashmon-capi`, or pass --library)",
            library.display()
        ))
        .code(exit::USAGE);
    }
    let db_path = ctx.database_path()?;
    Database::open_or_create(&db_path)
        .with_context(|| format!("cannot use the crash database {}", db_path.display()))
        .code(exit::USAGE)?;
    let mut preload = library.into_os_string();
    if let Some(existing) = std::env::var_os("LD_PRELOAD").filter(|p| !p.is_empty()) {
        preload.push(":");
        preload.push(existing);
    }
    let (program, rest) = args.command.split_first().context("no command given")?;
    let err = Command::new(program)
        .args(rest)
        .env("LD_PRELOAD", preload)
        // The library installs itself only where this is set, and removes it
        // from its environment first: the monitor and the program's own
        // children inherit LD_PRELOAD but stay unhandled.
        .env("CRASHMON_PRELOAD", "1")
        .env(crashmon_handler::MONITOR_ENV, &exe)
        .env(crashmon_database::DATABASE_ENV, &db_path)
        .exec();
    Err(anyhow::anyhow!("cannot run {}: {err}", program.to_string_lossy())).code(exit::FAILURE)
}
