//! The human-readable rendering of a [`Report`].

use std::fmt::Write as _;

use crate::report::{FrameReport, Report, SymbolStatus, ThreadReport};

/// Frames shown per thread other than the crashing one.
const OTHER_THREAD_FRAMES: usize = 8;

const BOLD: &str = "\x1b[1m";
const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

/// ANSI styling, or none.
#[derive(Clone, Copy)]
struct Style {
    color: bool,
}

impl Style {
    fn paint(self, style: &str, text: &str) -> String {
        if self.color { format!("{style}{text}{RESET}") } else { text.to_owned() }
    }
    fn bold(self, text: &str) -> String {
        self.paint(BOLD, text)
    }
    fn dim(self, text: &str) -> String {
        self.paint(DIM, text)
    }
}

/// Human-readable text of a report, like a good stack trace:
///
/// ```text
/// Crash reason: SIGSEGV / SEGV_MAPERR
/// Crash address: 0xbad
/// Crashing thread: 4242 (main)
/// Signature: crashmon_demo::trigger::segv | crashmon_demo::crash | crasher::main
///
/// Thread 4242 (main) crashed:
///  0  crashmon_demo::trigger::segv (crates/demo/src/trigger.rs:16)  [crasher +0x1234]
///  1  core::ptr::write (…/ptr/mod.rs:1400)  (inlined)
///  …
///
/// Thread 4243 (worker):
///  0  syscall  [libc.so.6 +0x11c8f9]
///  …
///
/// Modules without symbols:
///   linux-gate.so  missing: file not found
/// ```
///
/// The crashing thread is shown in full; other threads by their first few
/// frames. The modules section lists only modules whose symbols were not
/// used, and why. With `color`, function names are bold and source
/// locations dim (ANSI escapes); without it the text is plain.
pub fn render_text(report: &Report, color: bool) -> String {
    let style = Style { color };
    let mut out = String::new();

    match &report.crash {
        Some(crash) => {
            let _ = writeln!(out, "Crash reason: {}", crash.reason);
            let _ = writeln!(out, "Crash address: {:#x}", crash.address);
        }
        None => out.push_str("Crash reason: none (the dump was not written for a crash)\n"),
    }
    let crashing = report.crashing_thread.and_then(|i| report.threads.get(i));
    match crashing {
        Some(thread) => {
            let _ = writeln!(out, "Crashing thread: {}", thread_title(thread));
        }
        None => {
            if let Some(tid) = report.crash.as_ref().and_then(|c| c.tid) {
                let _ = writeln!(out, "Crashing thread: {tid} (not in the dump)");
            }
        }
    }
    let _ = writeln!(out, "Signature: {}", report.signature);

    if let Some(thread) = crashing {
        let _ = writeln!(out, "\nThread {} crashed:", thread_title(thread));
        render_frames(&mut out, &thread.frames, usize::MAX, style);
    }
    for (i, thread) in report.threads.iter().enumerate() {
        if Some(i) == report.crashing_thread {
            continue;
        }
        let _ = writeln!(out, "\nThread {}:", thread_title(thread));
        render_frames(&mut out, &thread.frames, OTHER_THREAD_FRAMES, style);
    }

    let without: Vec<_> = report.modules.iter().filter(|m| m.symbols != SymbolStatus::Loaded).collect();
    if !without.is_empty() {
        out.push_str("\nModules without symbols:\n");
        let width = without.iter().map(|m| m.code_file.chars().count()).max().unwrap_or(0);
        for module in without {
            // Names that are not paths (the kernel's vDSO) never have a file.
            let why = if module.symbols == SymbolStatus::Missing && !module.code_file.starts_with('/') {
                "not a file on disk"
            } else {
                module.symbols.describe()
            };
            let _ = writeln!(out, "  {:<width$}  {}: {why}", module.code_file, module.symbols.as_str());
            // Other places that were tried (debug files, symbol trees and
            // servers), with why each failed.
            for miss in module.symbol_misses.iter().filter(|m| !m.starts_with(&module.code_file)) {
                let _ = writeln!(out, "  {:<width$}    tried {miss}", "");
            }
        }
    }
    out
}

fn thread_title(thread: &ThreadReport) -> String {
    match &thread.name {
        Some(name) => format!("{} ({name})", thread.tid),
        None => thread.tid.to_string(),
    }
}

fn render_frames(out: &mut String, frames: &[FrameReport], limit: usize, style: Style) {
    if frames.is_empty() {
        out.push_str("    <no frames>\n");
        return;
    }
    let shown = &frames[..frames.len().min(limit)];
    let width = shown.last().map_or(0, |f| f.index.to_string().len()).max(2);
    let mut i = 0;
    while i < shown.len() {
        // Deep recursion (a stack overflow): show a run of identical frames
        // once or twice, then how many more there are.
        let run = shown[i..].iter().take_while(|f| same_place(f, &shown[i])).count();
        if run > REPEAT_SHOWN + 1 {
            for frame in &shown[i..i + REPEAT_SHOWN] {
                out.push_str(&frame_line(frame, width, style));
                out.push('\n');
            }
            let _ = writeln!(out, "    … the same frame {} more times", run - REPEAT_SHOWN);
            i += run;
        } else {
            out.push_str(&frame_line(&shown[i], width, style));
            out.push('\n');
            i += 1;
        }
    }
    if frames.len() > limit {
        let _ = writeln!(out, "    … {} more frames", frames.len() - limit);
    }
}

/// How many frames of a run of identical ones are shown.
const REPEAT_SHOWN: usize = 2;

/// Whether two frames are the same code location (recursion).
fn same_place(a: &FrameReport, b: &FrameReport) -> bool {
    a.function.is_some()
        && (&a.function, &a.file, a.line, &a.module, a.module_offset, a.inlined)
            == (&b.function, &b.file, b.line, &b.module, b.module_offset, b.inlined)
}

/// One frame: ` 0  function (file:line)  [module +0xoffset]`.
fn frame_line(frame: &FrameReport, width: usize, style: Style) -> String {
    let mut line = format!("{:>width$}  ", frame.index);
    if let Some(function) = &frame.function {
        line.push_str(&style.bold(function));
        if let Some(location) = location(frame) {
            line.push(' ');
            line.push_str(&style.dim(&format!("({location})")));
        }
        line.push_str("  ");
    }
    if frame.inlined {
        line.push_str(&style.dim("(inlined)"));
    } else {
        match (&frame.module, frame.module_offset) {
            (Some(module), Some(offset)) => {
                let _ = write!(line, "[{module} +{offset:#x}]");
            }
            _ => {
                let _ = write!(line, "[{:#x}]", frame.instruction);
            }
        }
        if let Some(note) = trust_note(&frame.trust) {
            line.push_str("  ");
            line.push_str(&style.dim(note));
        }
    }
    line.trim_end().to_owned()
}

fn location(frame: &FrameReport) -> Option<String> {
    let file = frame.file.as_deref()?;
    Some(match frame.line {
        Some(line) if line > 0 => format!("{file}:{line}"),
        _ => file.to_owned(),
    })
}

/// A warning for frames found by guessing, which may be bogus.
fn trust_note(trust: &str) -> Option<&'static str> {
    match trust {
        "scan" | "cfi-scan" => Some("(found by stack scanning)"),
        "none" => Some("(unreliable)"),
        _ => None,
    }
}
