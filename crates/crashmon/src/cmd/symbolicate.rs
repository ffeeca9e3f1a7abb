//! `crashmon symbolicate FILE`.

use std::path::PathBuf;

use crate::Context;
use crate::exit::{self, WithCode};

/// `crashmon symbolicate` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The minidump file
    pub file: PathBuf,
    /// Print the report as JSON (see docs/json-schema.md)
    #[arg(long)]
    pub json: bool,
}

/// Symbolicate one file and print it.
pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    if !args.file.exists() {
        return Err(anyhow::anyhow!("{}: no such file", args.file.display())).code(exit::BAD_INPUT);
    }
    let report = crashmon_symbolicate::symbolicate_path(&args.file, &crashmon_symbolicate::Options::default())
        .code(exit::BAD_INPUT)?;
    if args.json {
        crate::print_out(&(serde_json::to_string_pretty(&report)? + "\n"))?;
    } else {
        crate::print_out(&crashmon_symbolicate::render_text(&report, ctx.color))?;
    }
    Ok(exit::OK)
}
