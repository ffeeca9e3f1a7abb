//! The command-line surface: every documented subcommand is there, internal
//! ones are hidden, `--version` and `--help` go to stdout with exit 0.
//! (Also what makes `cargo test --workspace` build the `crashmon` binary that
//! the end-to-end tests run.)

use std::process::Command;

use clap::Parser as _;

fn crashmon(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_crashmon")).args(args).output().expect("run crashmon")
}

#[test]
fn help_lists_the_documented_commands_and_hides_internal_ones() {
    let out = crashmon(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8(out.stdout).unwrap();
    for cmd in
        ["monitor", "demo", "list", "show", "symbolicate", "upload", "consent", "run", "prune", "config", "doctor"]
    {
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

/// The systemd unit's `ExecStart=` is a command line the CLI accepts, with
/// the socket in the runtime directory (`%t`).
#[test]
fn systemd_unit_exec_start_parses_as_a_monitor_command() {
    let unit = include_str!("../../../contrib/systemd/crashmon.service");
    let exec: Vec<&str> = unit.lines().filter_map(|l| l.strip_prefix("ExecStart=")).collect();
    assert_eq!(exec.len(), 1, "one ExecStart in {unit}");
    let line = exec[0].replace("%t", "/run/user/1000").replace("%h", "/home/u");
    let argv: Vec<&str> = line.split_whitespace().collect();
    assert!(argv[0].starts_with('/') && argv[0].ends_with("/crashmon"), "{argv:?}");
    let cli = crashmon_cli::Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{line}: {e}"));
    match cli.command {
        crashmon_cli::Command::Monitor(args) => {
            assert_eq!(args.socket.as_deref(), Some(std::path::Path::new("/run/user/1000/crashmon/monitor.sock")));
            assert!(args.client_fd.is_none());
        }
        other => panic!("ExecStart runs {other:?}, not the monitor"),
    }
    for needed in
        ["Restart=on-failure", "RuntimeDirectory=crashmon", "RuntimeDirectoryMode=0700", "NoNewPrivileges=yes"]
    {
        assert!(unit.lines().any(|l| l.trim() == needed), "{needed} missing");
    }
    for breaks_ptrace in ["PrivateUsers=yes", "PrivatePIDs=yes"] {
        assert!(!unit.lines().any(|l| l.trim() == breaks_ptrace), "{breaks_ptrace} breaks ptrace");
    }
}
