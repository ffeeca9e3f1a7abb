//! `crashmon config check` and `crashmon config show`.

use std::path::{Path, PathBuf};

use crate::Context;
use crate::config::{self, Origin};
use crate::exit::{self, WithCode};

/// `crashmon config` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Validate a configuration file (default: the one crashmon would read); exit 0 if valid, 2 if not
    Check(CheckArgs),
    /// Show the effective settings and where each came from (default, file:line, env, flag)
    Show(ShowArgs),
}

/// `crashmon config check` arguments.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The file to check [default: --config, CRASHMON_CONFIG, or the platform location]
    pub file: Option<PathBuf>,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

/// `crashmon config show` arguments.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// Print JSON (see docs/config.md)
    #[arg(long)]
    pub json: bool,
}

/// Run a `config` subcommand; `config_flag` is the global `--config`.
pub fn run(ctx: &Context, command: ConfigCommand, config_flag: Option<&Path>) -> anyhow::Result<u8> {
    match command {
        ConfigCommand::Check(args) => check(args, config_flag),
        ConfigCommand::Show(args) => show(ctx, args),
    }
}

fn check(args: CheckArgs, config_flag: Option<&Path>) -> anyhow::Result<u8> {
    let file = match args.file {
        Some(f) => Some(f),
        None => config::locate(config_flag).code(exit::USAGE)?.map(|s| s.value),
    };
    let Some(file) = file else {
        let msg = "no configuration file (none given, CRASHMON_CONFIG unset, none in the platform location): \
                   the defaults apply";
        if args.json {
            let doc = serde_json::json!({ "schema_version": 1, "file": null, "valid": true });
            crate::print_out(&(serde_json::to_string_pretty(&doc)? + "\n"))?;
        } else {
            crate::print_out(&format!("{msg}\n"))?;
        }
        return Ok(exit::OK);
    };
    let result = config::load_file(&file);
    if args.json {
        let error = result.as_ref().err().map(|e| {
            serde_json::json!({
                "message": e.message,
                "key": e.key,
                "line": e.position.map(|p| p.0),
                "column": e.position.map(|p| p.1),
            })
        });
        let doc = serde_json::json!({ "schema_version": 1, "file": file, "valid": result.is_ok(), "error": error });
        crate::print_out(&(serde_json::to_string_pretty(&doc)? + "\n"))?;
        if let Err(e) = &result {
            eprintln!("crashmon: error: {e}");
        }
        return Ok(if result.is_ok() { exit::OK } else { exit::USAGE });
    }
    result.code(exit::USAGE)?;
    crate::print_out(&format!("{}: OK\n", file.display()))?;
    Ok(exit::OK)
}

fn show(ctx: &Context, args: ShowArgs) -> anyhow::Result<u8> {
    let c = &ctx.config;
    let entries = c.entries();
    if args.json {
        let settings: Vec<serde_json::Value> = entries
            .iter()
            .map(|(key, value, origin)| {
                let mut v = serde_json::json!({ "key": key, "value": value });
                if let (Some(obj), Ok(serde_json::Value::Object(o))) = (v.as_object_mut(), serde_json::to_value(origin))
                {
                    obj.extend(o);
                }
                v
            })
            .collect();
        let file = c.file.as_ref().map(|f| serde_json::json!({ "path": f.value, "found_via": f.origin.to_string() }));
        let doc = serde_json::json!({ "schema_version": 1, "config_file": file, "settings": settings });
        crate::print_out(&(serde_json::to_string_pretty(&doc)? + "\n"))?;
        return Ok(exit::OK);
    }
    let mut out = match &c.file {
        Some(f) => format!("# configuration file: {} (found via {})\n", f.value.display(), f.origin),
        None => "# no configuration file: defaults, environment and flags only\n".to_owned(),
    };
    let width = entries.iter().map(|(k, _, _)| k.len()).max().unwrap_or(0);
    for (key, value, origin) in &entries {
        let shown = match value {
            serde_json::Value::Null => "(none)".to_owned(),
            serde_json::Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        let origin = match origin {
            Origin::File { .. } => format!("config file {origin}"),
            o => o.to_string(),
        };
        out.push_str(&format!("{key:width$} = {shown}  # {origin}\n"));
    }
    crate::print_out(&out)?;
    Ok(exit::OK)
}
