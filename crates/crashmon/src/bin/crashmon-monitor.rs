//! `crashmon-monitor`: the monitor alone, the same as `crashmon monitor`
//! (flags, configuration, exit codes), in an executable that links only
//! what the monitor needs, so it starts faster. The handler spawns it as
//! its sidecar when it is installed; the symbolication of each report runs
//! in a `crashmon` child, found next to this executable or on `PATH`.
fn main() -> std::process::ExitCode {
    crashmon_cli::monitor_main()
}
