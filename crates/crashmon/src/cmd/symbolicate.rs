//! `crashmon symbolicate FILE`.

use std::path::PathBuf;

use crate::Context;
use crate::exit::{self, WithCode};

/// Where symbols come from, shared by `symbolicate` and `show`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SymbolArgs {
    /// Breakpad symbol tree (DIR/<debug file>/<DEBUG ID>/<debug file>.sym), searched after the local
    /// binaries and debug files; repeatable
    #[arg(long = "symbols", value_name = "DIR")]
    pub symbols: Vec<PathBuf>,
    /// Breakpad symbol server base URL (same layout over HTTP), asked after --symbols; repeatable
    #[arg(long = "symbol-server", value_name = "URL")]
    pub symbol_servers: Vec<String>,
    /// Directory of separate debug files (.build-id/xx/rest.debug, .gnu_debuglink) [default:
    /// /usr/lib/debug]; repeatable
    #[arg(long = "debug-dir", value_name = "DIR")]
    pub debug_dirs: Vec<PathBuf>,
    /// Symbol cache directory [default: $CRASHMON_SYMBOL_CACHE, else ~/.cache/crashmon/symbols]
    #[arg(long, value_name = "DIR", conflicts_with = "no_symbol_cache")]
    pub symbol_cache: Option<PathBuf>,
    /// Neither read nor write the symbol cache
    #[arg(long)]
    pub no_symbol_cache: bool,
}

impl SymbolArgs {
    /// Whether any option asks for something other than the defaults.
    pub fn any(&self) -> bool {
        !self.symbols.is_empty()
            || !self.symbol_servers.is_empty()
            || !self.debug_dirs.is_empty()
            || self.symbol_cache.is_some()
            || self.no_symbol_cache
    }

    /// The symbolication options; a symbol directory that does not exist
    /// is a usage error naming it.
    pub fn options(&self) -> anyhow::Result<crashmon_symbolicate::Options> {
        // The configuration's [symbols]; flags given replace them.
        let mut options = crate::config::global().apply_symbols(crashmon_symbolicate::Options::default());
        for dir in self.symbols.iter().chain(&self.debug_dirs) {
            if !dir.is_dir() {
                return Err(anyhow::anyhow!("{}: no such symbol directory", dir.display())).code(exit::USAGE);
            }
        }
        for url in &self.symbol_servers {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(anyhow::anyhow!("--symbol-server {url}: not an http:// or https:// URL")).code(exit::USAGE);
            }
        }
        if !self.symbols.is_empty() {
            options.symbol_dirs = self.symbols.clone();
        }
        if !self.symbol_servers.is_empty() {
            options.symbol_servers = self.symbol_servers.clone();
        }
        if !self.debug_dirs.is_empty() {
            options.debug_dirs = self.debug_dirs.clone();
        }
        if self.no_symbol_cache {
            options.cache_dir = None;
        } else if let Some(dir) = &self.symbol_cache {
            options.cache_dir = Some(dir.clone());
        }
        Ok(options)
    }
}

/// `crashmon symbolicate` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The minidump file
    pub file: PathBuf,
    /// Print the report as JSON (see docs/json-schema.md)
    #[arg(long)]
    pub json: bool,
    /// Only the crashing thread
    #[arg(long)]
    pub crashing_thread_only: bool,
    /// Where symbols come from
    #[command(flatten)]
    pub symbols: SymbolArgs,
}

/// Symbolicate one file and print it.
pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    if !args.file.exists() {
        return Err(anyhow::anyhow!("{}: no such file", args.file.display())).code(exit::BAD_INPUT);
    }
    let mut options = args.symbols.options()?;
    options.crashing_thread_only = args.crashing_thread_only;
    let (report, _, pending) =
        crashmon_symbolicate::symbolicate_path_deferred(&args.file, &options).code(exit::BAD_INPUT)?;
    if args.json {
        crate::print_out(&(serde_json::to_string_pretty(&report)? + "\n"))?;
    } else {
        crate::print_out(&crashmon_symbolicate::render_text(&report, ctx.color))?;
    }
    // The report is out. Now build the symbol tables of the binaries that
    // were looked up lazily, so the next report of them reads the cache;
    // stdout is closed first so a pipe reader is not kept waiting.
    build_pending_tables(pending);
    Ok(exit::OK)
}

/// Builds and caches the tables a report did without, after closing stdout
/// (pointing it at /dev/null). Failures are logged: the cache is only an
/// optimisation.
pub(crate) fn build_pending_tables(pending: crashmon_symbolicate::PendingTables) {
    if pending.is_empty() {
        return;
    }
    if let Ok(null) = std::fs::File::options().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdout(&null);
    }
    let started = std::time::Instant::now();
    let n = pending.len();
    let stored = pending.build_and_store();
    tracing::debug!(pending = n, stored, ms = started.elapsed().as_millis() as u64, "symbol tables cached");
}
