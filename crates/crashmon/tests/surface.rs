//! The command-line surface: every documented subcommand is there, internal
//! ones are hidden, `--version` and `--help` go to stdout with exit 0.
//! (Also what makes `cargo test --workspace` build the `crashmon` binary that
//! the end-to-end tests run.)

use std::process::Command;

fn crashmon(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_crashmon")).args(args).output().expect("run crashmon")
}

#[test]
fn help_lists_the_documented_commands_and_hides_internal_ones() {
    let out = crashmon(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8(out.stdout).unwrap();
    for cmd in ["monitor", "demo", "list", "show", "symbolicate", "upload", "consent", "run", "prune"] {
        assert!(help.lines().any(|l| l.trim_start().starts_with(cmd)), "{cmd} missing from:\n{help}");
    }
    assert!(!help.contains("__"), "internal commands are hidden:\n{help}");
    assert!(help.contains("--database"), "{help}");
}

#[test]
fn version_is_the_package_version() {
    let out = crashmon(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), format!("crashmon {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn demo_rejects_an_unknown_crash_kind_listing_the_known_ones() {
    let out = crashmon(&["demo", "--crash", "meteor"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("unknown crash kind \"meteor\""), "{stderr}");
    assert!(stderr.contains("thread-stack-overflow"), "{stderr}");
}
