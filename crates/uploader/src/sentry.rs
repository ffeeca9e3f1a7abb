//! The Sentry event sent along with a dump.
//!
//! - `event_id` is the report id as 32 hex digits: the same on every retry,
//!   so Sentry drops a second copy sent after a reply was lost.
//! - When the on-device symbolicated report (`<id>.report.json`) exists, its
//!   crashing thread becomes the exception's stack trace (Sentry wants the
//!   outermost frame first, so the report's innermost-first frames are
//!   reversed); its signature goes to `extra`.
//! - Annotations (already scrubbed) go to `extra`, and to `tags` when they
//!   fit Sentry's tag limits (key ≤ 32, value ≤ 200 characters, one line).
//!
//! The symbolicated report is read leniently (`serde_json::Value`): fields
//! missing or of another shape are simply left out.

use std::collections::BTreeMap;

use crashmon_database::{Breadcrumb, CrashKind, Metadata};
use serde_json::{Map, Value, json};

/// Most frames sent.
const MAX_FRAMES: usize = 256;

/// The `event_id` of a report.
pub(crate) fn event_id(metadata: &Metadata) -> String {
    metadata.id.as_uuid().simple().to_string()
}

fn str_field<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, key| v.get(key))?.as_str()
}

/// An address as Sentry wants it: `"0x..."`.
fn hex_addr(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Number(n) => n.as_u64().map(|a| format!("{a:#x}")),
        Value::String(s) if s.starts_with("0x") => Some(s.clone()),
        _ => None,
    }
}

/// The crashing thread of a symbolicated report: named by index, flagged
/// `crashed`, or matching the crashing tid; else the first.
fn crashing_thread(report: &Value, tid: Option<i32>) -> Option<&Value> {
    let threads = report.get("threads")?.as_array()?;
    let index = ["crashing_thread", "crashing_thread_index"]
        .iter()
        .find_map(|k| report.get(k).or_else(|| report.get("crash")?.get(k))?.as_u64())
        .and_then(|i| usize::try_from(i).ok());
    index
        .and_then(|i| threads.get(i))
        .or_else(|| threads.iter().find(|t| t.get("crashed").and_then(Value::as_bool) == Some(true)))
        .or_else(|| {
            let tid = i64::from(tid?);
            threads
                .iter()
                .find(|t| ["tid", "id", "thread_id"].iter().any(|k| t.get(k).and_then(Value::as_i64) == Some(tid)))
        })
        .or_else(|| threads.first())
}

fn frames(thread: &Value) -> Vec<Value> {
    let Some(frames) = thread.get("frames").and_then(Value::as_array) else {
        return Vec::new();
    };
    let mut out: Vec<Value> = frames
        .iter()
        .take(MAX_FRAMES)
        .map(|f| {
            let mut frame = Map::new();
            let text = |keys: &[&str]| keys.iter().find_map(|k| f.get(k)?.as_str()).map(|s| Value::from(s.to_owned()));
            if let Some(v) = text(&["function", "function_name"]) {
                frame.insert("function".into(), v);
            }
            if let Some(v) = text(&["file", "filename", "source_file"]) {
                frame.insert("filename".into(), v);
            }
            if let Some(line) = ["line", "lineno", "source_line"].iter().find_map(|k| f.get(k)?.as_u64()) {
                frame.insert("lineno".into(), line.into());
            }
            if let Some(v) = text(&["module", "module_name", "package"]) {
                frame.insert("package".into(), v);
            }
            if let Some(addr) =
                ["address", "instruction", "instruction_addr", "pc"].iter().find_map(|k| hex_addr(f.get(k)))
            {
                frame.insert("instruction_addr".into(), addr.into());
            }
            Value::Object(frame)
        })
        .collect();
    out.reverse();
    out
}

/// A breadcrumb level as Sentry names it.
fn sentry_level(level: &str) -> &'static str {
    match level.to_ascii_lowercase().as_str() {
        "trace" | "debug" => "debug",
        "warn" | "warning" => "warning",
        "error" => "error",
        "fatal" | "critical" => "fatal",
        _ => "info",
    }
}

/// Builds the event for a report. `annotations` and `breadcrumbs` must
/// already be scrubbed.
pub(crate) fn build_event(
    metadata: &Metadata,
    annotations: &BTreeMap<String, String>,
    report: Option<&Value>,
    release: Option<&str>,
    breadcrumbs: &[Breadcrumb],
) -> Value {
    let crash = &metadata.crash;
    let (ty, value) = match crash.kind {
        CrashKind::Signal => {
            let name = crash.signal_name.clone().unwrap_or_else(|| format!("signal {}", crash.signal.unwrap_or(0)));
            let mut value = report
                .and_then(|r| str_field(r, &["crash", "reason"]))
                .map(str::to_owned)
                .or_else(|| crash.code_name.clone())
                .unwrap_or_else(|| name.clone());
            if let Some(addr) = crash.address {
                value.push_str(&format!(" at {addr:#x}"));
            }
            (name, value)
        }
        CrashKind::Panic => ("panic".to_owned(), crash.message.clone().unwrap_or_else(|| "panic".to_owned())),
        CrashKind::Requested => {
            ("requested dump".to_owned(), crash.message.clone().unwrap_or_else(|| "dump requested".to_owned()))
        }
    };
    let mut exception = json!({
        "type": ty,
        "value": value,
        "mechanism": {
            "type": if crash.kind == CrashKind::Signal { "signalhandler" } else { "crashmon" },
            "handled": crash.kind == CrashKind::Requested,
        },
    });
    if let Some(signal) = crash.signal {
        exception["mechanism"]["meta"] = json!({"signal": {
            "number": signal,
            "name": crash.signal_name,
            "code": crash.code,
            "code_name": crash.code_name,
        }});
    }
    if let Some(tid) = crash.tid {
        exception["thread_id"] = tid.into();
    }
    let stack = report.and_then(|r| crashing_thread(r, crash.tid)).map(frames).unwrap_or_default();
    if !stack.is_empty() {
        exception["stacktrace"] = json!({ "frames": stack });
    }

    let mut extra: Map<String, Value> = annotations.iter().map(|(k, v)| (k.clone(), Value::from(v.clone()))).collect();
    extra.insert("crashmon_report_id".into(), metadata.id.to_string().into());
    if let Some(sig) = report.and_then(|r| str_field(r, &["signature"])) {
        extra.insert("crashmon_signature".into(), sig.into());
    }
    if let Some(exe) = &metadata.exe {
        extra.insert("executable".into(), exe.display().to_string().into());
    }
    let tags: Map<String, Value> = annotations
        .iter()
        .filter(|(k, v)| k.chars().count() <= 32 && v.chars().count() <= 200 && !v.contains('\n') && !v.is_empty())
        .map(|(k, v)| (k.clone(), Value::from(v.clone())))
        .collect();

    let mut event = json!({
        "event_id": event_id(metadata),
        "timestamp": metadata.captured_at_ms as f64 / 1000.0,
        "platform": "native",
        "level": "fatal",
        "sdk": {"name": "crashmon", "version": env!("CARGO_PKG_VERSION")},
        "exception": {"values": [exception]},
        "tags": tags,
        "extra": extra,
    });
    if let Some(release) = release {
        event["release"] = release.into();
    }
    if !breadcrumbs.is_empty() {
        let values: Vec<Value> = breadcrumbs
            .iter()
            .map(|b| {
                let mut crumb = json!({
                    "timestamp": b.timestamp_ms as f64 / 1000.0,
                    "level": sentry_level(&b.level),
                    "message": b.message,
                });
                if !b.category.is_empty() {
                    crumb["category"] = b.category.clone().into();
                }
                crumb
            })
            .collect();
        event["breadcrumbs"] = json!({ "values": values });
    }
    if let Some(env) = annotations.get("environment") {
        event["environment"] = env.clone().into();
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;
    use crashmon_database::{CrashInfo, ReportId};

    #[test]
    fn event_from_report() {
        let id = ReportId::new_random();
        let metadata = Metadata::new(id, 1_700_000_000_123, 42, CrashInfo::from_signal(11, 1, Some(0x10), Some(43)));
        let report = json!({
            "signature": "crash_here",
            "crash": {"reason": "SIGSEGV / SEGV_MAPERR"},
            "threads": [
                {"tid": 42, "frames": [{"function": "idle"}]},
                {"tid": 43, "frames": [
                    {"function": "crash_here", "file": "src/a.rs", "line": 7, "module": "app", "address": 4096},
                    {"function": "main", "module": "app", "address": "0x2000"},
                ]},
            ],
        });
        let annotations = BTreeMap::from([("channel".to_owned(), "beta".to_owned())]);
        let event = build_event(&metadata, &annotations, Some(&report), Some("1.2.3"), &[]);
        assert_eq!(event["event_id"], id.as_uuid().simple().to_string());
        let exc = &event["exception"]["values"][0];
        assert_eq!(exc["type"], "SIGSEGV");
        assert_eq!(exc["value"], "SIGSEGV / SEGV_MAPERR at 0x10");
        let frames = exc["stacktrace"]["frames"].as_array().unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0]["function"], "main");
        assert_eq!(frames[1]["function"], "crash_here");
        assert_eq!(frames[1]["filename"], "src/a.rs");
        assert_eq!(frames[1]["lineno"], 7);
        assert_eq!(frames[1]["package"], "app");
        assert_eq!(frames[1]["instruction_addr"], "0x1000");
        assert_eq!(event["tags"]["channel"], "beta");
        assert_eq!(event["extra"]["crashmon_signature"], "crash_here");
        assert_eq!(event["release"], "1.2.3");
    }

    #[test]
    fn event_without_report() {
        let id = ReportId::new_random();
        let mut info = CrashInfo::new(CrashKind::Panic);
        info.message = Some("boom".into());
        let metadata = Metadata::new(id, 1, 1, info);
        let event = build_event(&metadata, &BTreeMap::new(), None, None, &[]);
        assert_eq!(event["exception"]["values"][0]["type"], "panic");
        assert!(event["exception"]["values"][0].get("stacktrace").is_none());
        assert!(event.get("release").is_none());
    }
}
