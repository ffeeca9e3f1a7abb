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
    /// Upload each report to this target after it is filed (passed to the
    /// monitor as CRASHMON_UPLOAD, so it needs `crashmon consent enable`)
    #[command(flatten)]
    pub target: crate::cmd::upload::TargetArgs,
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
    // Validate the target before anything touches the disk.
    let target = match (&args.target.upload, &args.target.dsn) {
        (Some(t), _) | (None, Some(t)) => {
            crashmon_uploader::Target::parse(t).context("bad upload target").code(exit::USAGE)?;
            Some(t.clone())
        }
        _ => None,
    };
    let db_path = ctx.database_path()?;
    let db = Database::open_or_create(&db_path)
        .with_context(|| format!("cannot use the crash database {}", db_path.display()))
        .code(exit::USAGE)?;
    if target.is_some() && !crashmon_uploader::consent(&db).unwrap_or(false) {
        eprintln!(
            "crashmon: warning: uploads are disabled: reports stay pending until `crashmon consent enable` \
             (or `crashmon upload --upload URL` sends them)"
        );
    }
    let mut preload = library.into_os_string();
    if let Some(existing) = std::env::var_os("LD_PRELOAD").filter(|p| !p.is_empty()) {
        preload.push(":");
        preload.push(existing);
    }
    let (program, rest) = args.command.split_first().context("no command given")?;
    let mut cmd = Command::new(program);
    if let Some(t) = &target {
        // The preloaded handler spawns a sidecar monitor that inherits this.
        cmd.env(crate::cmd::upload::UPLOAD_ENV, t);
    }
    if let Some(c) = &ctx.config.file {
        // The monitor reads the same configuration, however it was found.
        cmd.env(crate::config::CONFIG_ENV, std::path::absolute(&c.value).unwrap_or_else(|_| c.value.clone()));
    }
    let err = cmd
        .args(rest)
        .env("LD_PRELOAD", preload)
        // The library installs itself only where this is set, and removes it
        // from its environment first: the monitor and the program's own
        // children inherit LD_PRELOAD but stay unhandled.
        .env("CRASHMON_PRELOAD", "1")
        // Its sidecar: `crashmon-monitor` next to this executable when it
        // is there (it starts faster), else this executable.
        .env(crashmon_handler::MONITOR_ENV, crate::monitor_exe_beside(&exe))
        .env(crashmon_database::DATABASE_ENV, &db_path)
        .exec();
    Err(anyhow::anyhow!("cannot run {}: {err}", program.to_string_lossy())).code(exit::FAILURE)
}
