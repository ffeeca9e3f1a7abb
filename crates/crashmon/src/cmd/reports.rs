//! `crashmon list` and `crashmon show`.

use anyhow::Context as _;
use crashmon_database::{Database, DbError, Entry};
use crashmon_symbolicate::Report;
use serde::Serialize;

use crate::Context;
use crate::exit::{self, WithCode};

/// Version of the `--json` output of `list` and `show`.
pub const JSON_SCHEMA_VERSION: u32 = 1;

/// `crashmon list` arguments.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Print JSON (see docs/json-schema.md)
    #[arg(long)]
    pub json: bool,
    /// One line per crash signature, with how many reports and when first and last seen
    #[arg(long)]
    pub group: bool,
}

/// Reports sharing a crash signature.
#[derive(Serialize)]
struct Group {
    signature: String,
    count: usize,
    first_seen_ms: u64,
    last_seen_ms: u64,
    ids: Vec<String>,
}

/// The signature a report is grouped under: its symbolicated signature, or
/// what is known without one.
fn group_key(e: &Entry, r: Option<&Report>) -> String {
    match (r, &e.metadata.failure) {
        (Some(r), _) => r.signature.clone(),
        (None, Some(_)) => "(no dump)".into(),
        (None, None) => "(not symbolicated)".into(),
    }
}

fn groups(entries: &[Entry], reports: &[Option<Report>]) -> Vec<Group> {
    let mut map: std::collections::BTreeMap<String, Group> = std::collections::BTreeMap::new();
    for (e, r) in entries.iter().zip(reports) {
        let key = group_key(e, r.as_ref());
        let at = e.metadata.captured_at_ms;
        let g = map.entry(key.clone()).or_insert_with(|| Group {
            signature: key,
            count: 0,
            first_seen_ms: at,
            last_seen_ms: at,
            ids: Vec::new(),
        });
        g.count += 1;
        g.first_seen_ms = g.first_seen_ms.min(at);
        g.last_seen_ms = g.last_seen_ms.max(at);
        g.ids.push(e.id.to_string());
    }
    let mut v: Vec<Group> = map.into_values().collect();
    // Most frequent first, then most recent.
    v.sort_by(|a, b| b.count.cmp(&a.count).then(b.last_seen_ms.cmp(&a.last_seen_ms)));
    v
}

/// `crashmon show` arguments.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// Report id, or a unique prefix of it (at least 4 characters)
    pub id: String,
    /// Print JSON (see docs/json-schema.md)
    #[arg(long)]
    pub json: bool,
    /// Symbolicate the dump again with these symbol sources instead of showing the stored report
    #[command(flatten)]
    pub symbols: crate::cmd::symbolicate::SymbolArgs,
}

fn open(ctx: &Context) -> anyhow::Result<Database> {
    let path = ctx.database_path()?;
    Database::open_existing(&path)
        .with_context(|| format!("cannot open the crash database {}", path.display()))
        .code(exit::USAGE)
}

fn load_report(entry: &Entry) -> Option<Report> {
    let bytes = entry.read_report().ok().flatten()?;
    match serde_json::from_slice(&bytes) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(report = %entry.id, "unreadable report.json: {e}");
            None
        }
    }
}

#[derive(Serialize)]
struct ListItem<'a> {
    id: String,
    state: String,
    #[serde(flatten)]
    metadata: &'a crashmon_database::Metadata,
    signature: Option<String>,
}

/// `crashmon list`.
pub fn list(ctx: &Context, args: ListArgs) -> anyhow::Result<u8> {
    let db = open(ctx)?;
    let entries = db.list().code(exit::FAILURE)?;
    let reports: Vec<Option<Report>> = entries.iter().map(load_report).collect();
    if args.group {
        let groups = groups(&entries, &reports);
        if args.json {
            let doc = serde_json::json!({ "schema_version": JSON_SCHEMA_VERSION, "groups": groups });
            crate::print_out(&(serde_json::to_string_pretty(&doc)? + "\n"))?;
            return Ok(exit::OK);
        }
        let mut out =
            format!("{:>5}  {:<19}  {:<19}  {}\n", "COUNT", "FIRST SEEN (UTC)", "LAST SEEN (UTC)", "SIGNATURE");
        for g in &groups {
            out.push_str(&format!(
                "{:>5}  {:<19}  {:<19}  {}\n",
                g.count,
                format_time(g.first_seen_ms),
                format_time(g.last_seen_ms),
                g.signature
            ));
        }
        crate::print_out(&out)?;
        return Ok(exit::OK);
    }
    if args.json {
        let items: Vec<ListItem<'_>> = entries
            .iter()
            .zip(&reports)
            .map(|(e, r)| ListItem {
                id: e.id.to_string(),
                state: e.state.to_string(),
                metadata: &e.metadata,
                signature: r.as_ref().map(|r| r.signature.clone()),
            })
            .collect();
        let doc = serde_json::json!({ "schema_version": JSON_SCHEMA_VERSION, "reports": items });
        crate::print_out(&(serde_json::to_string_pretty(&doc)? + "\n"))?;
        return Ok(exit::OK);
    }
    if entries.is_empty() {
        eprintln!("no reports in {}", db.root().display());
        return Ok(exit::OK);
    }
    let mut out = format!(
        "{:<8}  {:<9}  {:<19}  {:<8}  {:<16}  {}\n",
        "ID", "STATE", "CAPTURED (UTC)", "SIGNAL", "PROGRAM", "SIGNATURE"
    );
    for (e, r) in entries.iter().zip(&reports) {
        let m = &e.metadata;
        let program = m
            .exe
            .as_ref()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "?".into());
        let signal = m.crash.signal_name.clone().unwrap_or_else(|| format!("{:?}", m.crash.kind).to_lowercase());
        let signature = match (r, &m.failure) {
            (Some(r), _) => r.signature.clone(),
            (None, Some(f)) => format!("(no dump: {f})"),
            (None, None) => "(not symbolicated)".into(),
        };
        out.push_str(&format!(
            "{:<8}  {:<9}  {:<19}  {:<8}  {:<16}  {}\n",
            &e.id.to_string()[..8],
            e.state.to_string(),
            format_time(m.captured_at_ms),
            signal,
            program,
            signature
        ));
    }
    crate::print_out(&out)?;
    Ok(exit::OK)
}

/// `crashmon show ID`.
pub fn show(ctx: &Context, args: ShowArgs) -> anyhow::Result<u8> {
    let db = open(ctx)?;
    let entry = match db.find(&args.id) {
        Ok(e) => e,
        Err(e @ (DbError::NoSuchReport { .. } | DbError::AmbiguousId { .. })) => {
            return Err(e).code(exit::NO_SUCH_REPORT);
        }
        Err(e) => return Err(e).code(exit::FAILURE),
    };
    // With symbol options the dump is symbolicated again, lazily; the
    // tables it did without are built after the output (as `symbolicate`).
    let (report, pending) = match (&entry.dump_path, args.symbols.any()) {
        (Some(dump), true) => {
            let (report, _, pending) = crashmon_symbolicate::symbolicate_path_deferred(dump, &args.symbols.options()?)
                .code(exit::BAD_INPUT)?;
            (Some(report), Some(pending))
        }
        _ => (load_report(&entry), None),
    };
    let result = print_show(ctx, &args, &entry, report.as_ref());
    if let Some(pending) = pending {
        crate::cmd::symbolicate::build_pending_tables(pending);
    }
    result
}

fn print_show(
    ctx: &Context,
    args: &ShowArgs,
    entry: &crashmon_database::Entry,
    report: Option<&Report>,
) -> anyhow::Result<u8> {
    if args.json {
        let doc = serde_json::json!({
            "schema_version": JSON_SCHEMA_VERSION,
            "id": entry.id.to_string(),
            "state": entry.state.to_string(),
            "dump_path": entry.dump_path,
            "metadata": entry.metadata,
            "report": report,
        });
        crate::print_out(&(serde_json::to_string_pretty(&doc)? + "\n"))?;
        return Ok(exit::OK);
    }
    let m = &entry.metadata;
    let mut out = String::new();
    out.push_str(&format!("Report {} ({})\n", entry.id, entry.state));
    out.push_str(&format!("Captured: {} UTC\n", format_time(m.captured_at_ms)));
    out.push_str(&format!(
        "Process: {} (pid {})\n",
        m.exe.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "?".into()),
        m.pid
    ));
    if let Some(msg) = &m.crash.message {
        out.push_str(&format!("Message: {msg}\n"));
    }
    if let Some(f) = &m.failure {
        out.push_str(&format!("Failure: {f}\n"));
    }
    if let Some(p) = &entry.dump_path {
        out.push_str(&format!("Dump: {}\n", p.display()));
    }
    out.push('\n');
    match (&report, &m.symbolication) {
        (Some(r), _) => out.push_str(&crashmon_symbolicate::render_text(r, ctx.color)),
        (None, Some(crashmon_database::SymbolicationStatus::Failed { reason })) => {
            out.push_str(&format!("Not symbolicated: {reason}\n"))
        }
        (None, _) => out.push_str("Not symbolicated yet.\n"),
    }
    crate::print_out(&out)?;
    Ok(exit::OK)
}

/// `YYYY-MM-DD HH:MM:SS` in UTC from unix milliseconds.
pub fn format_time(ms: u64) -> String {
    match time::OffsetDateTime::from_unix_timestamp((ms / 1000) as i64) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => format!("@{ms}ms"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_utc_times() {
        assert_eq!(super::format_time(0), "1970-01-01 00:00:00");
        assert_eq!(super::format_time(1_795_000_000_000), "2026-11-18 11:06:40");
        assert_eq!(super::format_time(951_782_400_000), "2000-02-29 00:00:00");
    }
}
