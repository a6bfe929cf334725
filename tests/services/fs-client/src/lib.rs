//! test-fs-client: exercises the storage stack (fat on virtio-blk) through the
//! `fs` protocol and logs one `fs-client: PASS ...` or `fs-client: FAIL ...`
//! line per check, then `fs-client: done, N checks, M failed`.
//!
//! It lists `/`, reads `/HELLO.TXT`, writes `/WRITTEN.TXT` and reads it back,
//! and creates and removes a scratch file. With the `pci` endpoint it checks
//! the device list holds the disk. If it may control services (it is the
//! system's supervisor in the storage test system) it also stops the disk
//! driver (a read must answer `Device`), starts it again and restarts it (the
//! next reads must work).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use atoll_protocols::fs::{ENDPOINT, Error, Request, Response};
use atoll_protocols::pci;
use atoll_sdk::{CallError, Endpoint, println, supervision};

atoll_sdk::entry!(main);

const WRITTEN: &[u8] = b"Written by Atoll's fs-client through fat and virtio-blk.\n";

struct Checks {
    fs: Endpoint,
    run: u32,
    failed: u32,
}

impl Checks {
    fn call(&self, request: Request) -> Result<Response, CallError> {
        self.fs.request(&request)
    }

    fn check(&mut self, what: &str, ok: bool, detail: &str) {
        self.run += 1;
        if ok {
            println!("fs-client: PASS {what}: {detail}");
        } else {
            self.failed += 1;
            println!("fs-client: FAIL {what}: {detail}");
        }
    }

    fn read(&self, path: &str) -> Result<Response, CallError> {
        self.call(Request::Read {
            path: path.to_string(),
            offset: 0,
            len: 3072,
        })
    }
}

/// A read's answer for the log: its text if it is data.
fn shown(response: &Result<Response, CallError>) -> String {
    match response {
        Ok(Response::Data(data)) => format!("read \"{}\"", text(data)),
        other => format!("{other:?}"),
    }
}

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).trim_end().to_string()
}

fn main() {
    let fs = match Endpoint::lookup(ENDPOINT) {
        Ok(endpoint) => endpoint,
        Err(error) => {
            println!("fs-client: FAIL no fs endpoint: {error}");
            return;
        }
    };
    let mut checks = Checks {
        fs,
        run: 0,
        failed: 0,
    };

    match checks.call(Request::List {
        path: "/".into(),
        start: 0,
    }) {
        Ok(Response::Entries { entries, more }) => {
            let names: Vec<String> = entries
                .iter()
                .map(|entry| {
                    if entry.directory {
                        format!("{}/", entry.name)
                    } else {
                        format!("{} ({} bytes)", entry.name, entry.size)
                    }
                })
                .collect();
            let more = if more { ", more" } else { "" };
            checks.check("list /", true, &format!("{}{more}", names.join(", ")));
        }
        other => checks.check("list /", false, &format!("{other:?}")),
    }

    match checks.read("/hello.txt") {
        Ok(Response::Data(data)) => checks.check("read /HELLO.TXT", !data.is_empty(), &text(&data)),
        other => checks.check("read /HELLO.TXT", false, &format!("{other:?}")),
    }

    let write = checks.call(Request::Write {
        path: "/WRITTEN.TXT".into(),
        offset: 0,
        data: WRITTEN.to_vec(),
    });
    let wrote = matches!(write, Ok(Response::Written(n)) if n as usize == WRITTEN.len());
    checks.check("write /WRITTEN.TXT", wrote, &format!("{write:?}"));
    match checks.read("/WRITTEN.TXT") {
        Ok(Response::Data(data)) => {
            checks.check("read back /WRITTEN.TXT", data == WRITTEN, &text(&data))
        }
        other => checks.check("read back /WRITTEN.TXT", false, &format!("{other:?}")),
    }

    let create = checks.call(Request::Create {
        path: "/SCRATCH.TMP".into(),
    });
    let exists = checks.call(Request::Create {
        path: "/scratch.tmp".into(),
    });
    let remove = checks.call(Request::Remove {
        path: "/SCRATCH.TMP".into(),
    });
    let gone = checks.call(Request::Open {
        path: "/SCRATCH.TMP".into(),
    });
    checks.check(
        "create, create again, remove, open",
        matches!(create, Ok(Response::Done))
            && matches!(exists, Ok(Response::Error(Error::Exists)))
            && matches!(remove, Ok(Response::Done))
            && matches!(gone, Ok(Response::Error(Error::NotFound))),
        &format!("{create:?}, {exists:?}, {remove:?}, {gone:?}"),
    );

    pci_list(&mut checks);
    driver_failures(&mut checks);

    println!(
        "fs-client: done, {} checks, {} failed",
        checks.run, checks.failed
    );
}

/// If it may use the `pci` endpoint: the list holds the disk controller.
fn pci_list(checks: &mut Checks) {
    let Ok(pci) = Endpoint::lookup(pci::ENDPOINT) else {
        return;
    };
    match pci.request(&pci::Request::List { start: 0 }) {
        Ok(pci::Response::Devices { devices, more }) => {
            let disk = devices
                .iter()
                .find(|device| device.vendor == 0x1af4 && device.device == 0x1001);
            let detail = format!(
                "{} devices{}, disk {:?}",
                devices.len(),
                if more { " and more" } else { "" },
                disk
            );
            checks.check(
                "pci list",
                disk.is_some_and(|disk| disk.class == 1 && disk.irq != 0xff),
                &detail,
            );
        }
        Err(error) => checks.check("pci list", false, &format!("{error}")),
    }
}

/// With the right to control services: the file system survives its driver
/// stopping, starting again and restarting.
fn driver_failures(checks: &mut Checks) {
    match supervision::stop("virtio-blk") {
        Ok(()) => {}
        Err(error) => {
            println!("fs-client: driver restart checks skipped (stop: {error})");
            return;
        }
    }
    let stopped = checks.read("/HELLO.TXT");
    checks.check(
        "read with the driver stopped",
        matches!(stopped, Ok(Response::Error(Error::Device))),
        &format!("{stopped:?}"),
    );
    let started = supervision::start("virtio-blk");
    let again = checks.read("/HELLO.TXT");
    checks.check(
        "read after the driver started again",
        started.is_ok() && matches!(again, Ok(Response::Data(ref data)) if !data.is_empty()),
        &format!("start {started:?}, {}", shown(&again)),
    );
    let restarted = supervision::restart("virtio-blk");
    let after = checks.read("/WRITTEN.TXT");
    checks.check(
        "read after the driver restarted",
        restarted.is_ok() && matches!(after, Ok(Response::Data(ref data)) if data == WRITTEN),
        &format!("restart {restarted:?}, {}", shown(&after)),
    );
}
