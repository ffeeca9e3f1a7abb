//! The C API and `crashmon run`, with real C programs compiled by the system
//! C compiler against `include/crashmon.h` and the built `libcrashmon.so`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crashmon_test_support::{bin, death_signal, files_with_ext, wait_for, wait_timeout, workspace_root};

/// The directory holding `libcrashmon.so`. Cargo builds only the rlib of
/// this package for its tests, so build the shared library here, with the
/// cargo that runs the tests (same profile, same target directory).
fn lib_dir() -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    let dir = bin("crashmon").parent().unwrap().to_path_buf();
    BUILT.call_once(|| {
        let built = crashmon_test_support::cargo_build(&["-p", "crashmon-capi", "--lib"], dir.ends_with("release"));
        assert!(built, "cargo build -p crashmon-capi failed");
    });
    assert!(dir.join("libcrashmon.so").is_file(), "libcrashmon.so not built in {}", dir.display());
    dir
}

fn compile(source: &str, link_crashmon: bool, out: &Path) {
    let root = workspace_root();
    let lib_dir = lib_dir();
    let mut cc = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()));
    cc.arg("-O2").arg("-g").arg(root.join(source)).arg("-o").arg(out);
    if link_crashmon {
        cc.arg("-I").arg(root.join("crates/capi/include")).arg("-L").arg(&lib_dir).arg("-lcrashmon");
        cc.arg(format!("-Wl,-rpath,{}", lib_dir.display()));
    }
    let status = cc.status().expect("a C compiler (cc) is needed for the C API tests");
    assert!(status.success(), "compiling {source} failed");
}

fn metadata_of(dump: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dump.with_extension("json")).unwrap()).unwrap()
}

fn pending(db: &Path, n: usize) -> Vec<PathBuf> {
    wait_for(Duration::from_secs(10), || {
        let d = files_with_ext(&db.join("pending"), "dmp");
        (d.len() == n).then_some(d)
    })
    .unwrap_or_else(|| panic!("{n} dumps in pending/"))
}

#[test]
fn c_program_linked_with_libcrashmon() {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("crash");
    compile("examples/c/crash.c", true, &exe);
    let db = dir.path().join("db");
    let mut child = Command::new(&exe)
        .env("CRASHMON_DATABASE", &db)
        .env("CRASHMON_MONITOR", bin("crashmon"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_timeout(&mut child, Duration::from_secs(10)).expect("the C program ended");
    assert_eq!(death_signal(&status), Some(libc::SIGSEGV), "{status:?}");
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    let requested = stdout.trim().strip_prefix("requested id=").expect("request_dump returned an id").to_owned();
    let dumps = pending(&db, 2);
    let crash = dumps.iter().find(|d| !d.to_string_lossy().contains(&requested)).unwrap();
    let m = metadata_of(crash);
    assert_eq!(m["crash"]["signal_name"], "SIGSEGV");
    assert_eq!(m["crash"]["address"], 0);
    assert_eq!(m["annotations"]["component"], "example-c");
    let req = dumps.iter().find(|d| d.to_string_lossy().contains(&requested)).unwrap();
    assert_eq!(metadata_of(req)["crash"]["message"], "example: handled error");
    minidump::Minidump::read_path(crash).expect("the dump parses");
}

#[test]
fn crashmon_run_reports_an_unmodified_program() {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("plain_crash");
    compile("examples/c/plain_crash.c", false, &exe);
    let db = dir.path().join("db");
    lib_dir();
    let mut child =
        Command::new(bin("crashmon")).arg("run").arg("--").arg(&exe).env("CRASHMON_DATABASE", &db).spawn().unwrap();
    let status = wait_timeout(&mut child, Duration::from_secs(10)).expect("crashmon run ended");
    // `crashmon run` execs the program: its status is the program's.
    assert_eq!(death_signal(&status), Some(libc::SIGSEGV), "{status:?}");
    let dumps = pending(&db, 1);
    let m = metadata_of(&dumps[0]);
    assert_eq!(m["crash"]["signal_name"], "SIGSEGV");
    assert!(m["exe"].as_str().unwrap().ends_with("/plain_crash"), "{m}");
    // Exactly one report: the monitor did not report itself.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(files_with_ext(&db.join("pending"), "dmp").len(), 1);
}
