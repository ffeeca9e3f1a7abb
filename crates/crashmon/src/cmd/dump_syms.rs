//! `crashmon dump-syms BINARY [-o FILE]`: a Breakpad `.sym` file.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;

use crate::Context;
use crate::exit::{self, WithCode};

/// `crashmon dump-syms` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The ELF binary (executable or shared library)
    pub binary: PathBuf,
    /// Write the .sym file here (default: stdout)
    #[arg(short, long, value_name = "FILE", conflicts_with = "store")]
    pub output: Option<PathBuf>,
    /// Write it into this Breakpad symbol tree instead, as DIR/<name>/<DEBUG ID>/<name>.sym
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Read the debug information from this separate debug file
    #[arg(long, value_name = "FILE")]
    pub debug_file: Option<PathBuf>,
    /// Directory of separate debug files, searched by build id if the binary has no DWARF [default:
    /// /usr/lib/debug]; repeatable
    #[arg(long = "debug-dir", value_name = "DIR")]
    pub debug_dirs: Vec<PathBuf>,
}

/// Write the `.sym` file.
pub fn run(_ctx: &Context, args: Args) -> anyhow::Result<u8> {
    if !args.binary.is_file() {
        return Err(anyhow::anyhow!("{}: no such file", args.binary.display())).code(exit::BAD_INPUT);
    }
    let debug_dirs =
        if args.debug_dirs.is_empty() { crashmon_symbolicate::Options::default().debug_dirs } else { args.debug_dirs };
    let mut buffer = Vec::new();
    let summary =
        crashmon_symbolicate::dumpsyms::write_sym(&args.binary, args.debug_file.as_deref(), &debug_dirs, &mut buffer)
            .code(exit::BAD_INPUT)?;
    let target = match (&args.output, &args.store) {
        (Some(path), _) => Some(path.clone()),
        (None, Some(dir)) => Some(dir.join(summary.tree_path())),
        (None, None) => None,
    };
    match target {
        Some(path) => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
            }
            let tmp = path.with_extension("sym.tmp");
            std::fs::write(&tmp, &buffer).with_context(|| format!("cannot write {}", tmp.display()))?;
            std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "wrote {} ({} functions, {} public symbols, {} CFI ranges; debug info from {})",
                path.display(),
                summary.functions,
                summary.publics,
                summary.cfi,
                summary.debug_info_from.display()
            );
        }
        None => {
            let mut out = std::io::stdout().lock();
            match out.write_all(&buffer).and_then(|()| out.flush()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.into()),
                _ => {}
            }
        }
    }
    Ok(exit::OK)
}
