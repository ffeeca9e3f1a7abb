//! The comparison point of the crash-to-exit benchmark: Embark's
//! crash-handler + minidumper, set up like minidumper's `diskwrite` example
//! (a server process that writes the dump, a client whose signal handler
//! requests it), crashing the same way as crashmon's crasher.
//!
//! `embark-crasher DUMP_DIR` spawns `embark-crasher --server SOCKET DUMP_DIR`,
//! connects (retrying every millisecond rather than the example's 100 ms
//! sleep, to be fair), attaches the handler and crashes.
#![allow(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

struct Handler {
    dir: PathBuf,
}

impl minidumper::ServerHandler for Handler {
    fn create_minidump_file(&self) -> Result<(std::fs::File, PathBuf), std::io::Error> {
        let path = self.dir.join(format!("{}.dmp", std::process::id()));
        Ok((std::fs::File::create(&path)?, path))
    }

    fn on_minidump_created(
        &self,
        result: Result<minidumper::MinidumpBinary, minidumper::Error>,
    ) -> minidumper::LoopAction {
        if let Ok(mut md) = result {
            // Durable on disk, as crashmon's is.
            let _ = md.file.flush();
            let _ = md.file.sync_all();
        }
        minidumper::LoopAction::Exit
    }

    fn on_message(&self, _kind: u32, _buffer: Vec<u8>) {}
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--server") {
        let name = minidumper::SocketName::path(&args[2]);
        let mut server = minidumper::Server::with_name(name).expect("server");
        let stop = std::sync::atomic::AtomicBool::new(false);
        server.run(Box::new(Handler { dir: PathBuf::from(&args[3]) }), &stop, None).expect("run server");
        return;
    }
    let dir = PathBuf::from(&args[1]);
    let socket = dir.join("minidumper.sock");
    let socket_str = socket.to_str().expect("utf-8 path").to_owned();
    let server = std::process::Command::new(std::env::current_exe().expect("exe"))
        .arg("--server")
        .arg(&socket_str)
        .arg(&dir)
        .spawn()
        .expect("spawn server");
    let client = loop {
        if let Ok(c) = minidumper::Client::with_name(minidumper::SocketName::path(&socket_str)) {
            break c;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    // SAFETY: the closure only uses the client's request_dump, which is what
    // the crate's own example does in its crash event.
    let handler = crash_handler::CrashHandler::attach(unsafe {
        crash_handler::make_crash_event(move |ctx: &crash_handler::CrashContext| {
            crash_handler::CrashEventResult::Handled(client.request_dump(ctx).is_ok())
        })
    })
    .expect("attach");
    handler.set_ptracer(Some(server.id()));
    crashmon_demo::trigger::segv();
    std::process::exit(crashmon_demo::FAILED_TO_CRASH);
}
