//! Exactly once: concurrent uploaders (threads and processes) never send a
//! report twice and leave none pending.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use common::*;
use crashmon_database::{Database, ReportState};
use crashmon_test_support::receiver::{Receiver, Reply};
use crashmon_uploader::{Outcome, SystemClock, Target, upload_pending};

const CHILD_DB: &str = "CRASHMON_UPLOADER_TEST_CHILD_DB";
const CHILD_URL: &str = "CRASHMON_UPLOADER_TEST_CHILD_URL";

/// Report ids received, from the dump part's file name, with counts.
fn received(receiver: &Receiver) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for r in receiver.requests() {
        let parts = r.multipart().unwrap();
        let dump = parts.iter().find(|p| p.name == "upload_file_minidump").unwrap();
        let name = dump.filename.clone().unwrap();
        *seen.entry(name.trim_end_matches(".dmp").to_owned()).or_default() += 1;
    }
    seen
}

fn run_batch(db: &Database, url: &str) -> Vec<Outcome> {
    let target = Target::parse(url).unwrap();
    upload_pending(db, &target, &opts(), &SystemClock, &|_| true)
        .unwrap()
        .into_iter()
        .map(|(_, r)| r.unwrap())
        .collect()
}

#[test]
fn three_threads_send_each_report_exactly_once() {
    let t = TestDb::new();
    let ids: Vec<_> = (0..30).map(|_| t.add_real()).collect();
    let receiver =
        Receiver::builder().default_reply(Reply::socorro_accepted("x").delay(Duration::from_millis(3))).start();
    let url = receiver.url("/submit");
    let outcomes: Vec<Vec<Outcome>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let db = t.reopen();
                let url = url.clone();
                s.spawn(move || run_batch(&db, &url))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let seen = received(&receiver);
    assert_eq!(seen.len(), 30, "every report arrived");
    assert!(seen.values().all(|&n| n == 1), "each exactly once: {seen:?}");
    for id in &ids {
        assert_eq!(t.state(*id), ReportState::Completed);
    }
    let accepted: usize = outcomes.iter().flatten().filter(|o| o.is_success()).count();
    assert_eq!(accepted, 30);
    assert!(
        outcomes
            .iter()
            .flatten()
            .all(|o| matches!(o, Outcome::Accepted { .. } | Outcome::Busy | Outcome::NotPending { .. }))
    );
}

/// Run by `exactly_once_across_processes` in child processes; does nothing
/// when run normally.
#[test]
fn child_uploader() {
    let (Some(db), Some(url)) = (std::env::var_os(CHILD_DB), std::env::var(CHILD_URL).ok()) else {
        return;
    };
    let db = Database::open_existing(std::path::Path::new(&db)).unwrap();
    let outcomes = run_batch(&db, &url);
    println!("child accepted {}", outcomes.iter().filter(|o| o.is_success()).count());
}

#[test]
fn two_processes_and_a_thread_send_each_report_exactly_once() {
    let t = TestDb::new();
    let ids: Vec<_> = (0..40).map(|_| t.add_real()).collect();
    let receiver =
        Receiver::builder().default_reply(Reply::socorro_accepted("y").delay(Duration::from_millis(3))).start();
    let url = receiver.url("/submit");
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| {
            Command::new(&exe)
                .args(["--exact", "child_uploader", "--nocapture", "--test-threads=1"])
                .env(CHILD_DB, t.path())
                .env(CHILD_URL, &url)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mine = run_batch(&t.reopen(), &url);
    let mut total = mine.iter().filter(|o| o.is_success()).count();
    for mut child in children {
        let status = crashmon_test_support::wait_timeout(&mut child, Duration::from_secs(30)).expect("child hung");
        assert!(status.success());
        let mut out = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
        let n: usize = out
            .lines()
            .find_map(|l| Some(&l[l.find("child accepted ")? + "child accepted ".len()..]))
            .unwrap_or_else(|| panic!("child output: {out}"))
            .trim()
            .parse()
            .unwrap();
        total += n;
    }
    let seen = received(&receiver);
    assert_eq!(seen.len(), 40);
    assert!(seen.values().all(|&n| n == 1), "{seen:?}");
    assert_eq!(total, 40);
    for id in &ids {
        assert_eq!(t.state(*id), ReportState::Completed);
    }
}
