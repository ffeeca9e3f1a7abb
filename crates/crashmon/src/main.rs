//! The `crashmon` command. All logic lives in the library.
fn main() -> std::process::ExitCode {
    crashmon_cli::main_impl()
}
