//! WASI files from Rust std: an ordinary `wasm32-wasip1` program using
//! `std::fs` on its preopened directory, printing PASS/FAIL lines.

use std::fs;
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};

fn main() {
    let mut failures = 0;
    let mut check = |ok: bool, what: &str| {
        println!("{} {what}", if ok { "PASS" } else { "FAIL" });
        if !ok {
            failures += 1;
        }
    };
    check(fs::create_dir_all("rust/deep/er").is_ok(), "create_dir_all rust/deep/er");
    check(fs::write("rust/hello.txt", "hello from Rust std\n").is_ok(), "fs::write");
    check(
        fs::read_to_string("rust/hello.txt").ok().as_deref() == Some("hello from Rust std\n"),
        "fs::read_to_string",
    );
    let input = fs::read_to_string("INPUT.TXT").unwrap_or_default();
    check(input.starts_with("made on the host"), "read the host's INPUT.TXT");
    let mut file = fs::OpenOptions::new()
        .append(true)
        .open("rust/hello.txt")
        .expect("open for append");
    check(file.write_all(b"appended\n").is_ok(), "append");
    drop(file);
    let mut file = fs::File::open("rust/hello.txt").expect("open");
    let mut text = String::new();
    check(
        file.seek(SeekFrom::Start(6)).is_ok() && file.read_to_string(&mut text).is_ok(),
        "seek and read",
    );
    check(text == "from Rust std\nappended\n", "the file holds both writes");
    let metadata = fs::metadata("rust/hello.txt");
    check(
        metadata.as_ref().is_ok_and(|m| m.is_file() && m.len() == 29),
        "metadata: a 29-byte file",
    );
    check(fs::metadata("rust/deep").is_ok_and(|m| m.is_dir()), "metadata: a directory");
    check(fs::rename("rust/hello.txt", "rust/deep/er/Moved File.txt").is_ok(), "rename across directories");
    let names: Vec<String> = fs::read_dir("rust/deep/er")
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok())
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    check(names == ["Moved File.txt"], "read_dir shows the moved file");
    check(
        fs::read("missing.bin").is_err_and(|error| error.kind() == ErrorKind::NotFound),
        "a missing file: NotFound",
    );
    check(
        fs::remove_dir("rust/deep").is_err_and(|error| error.kind() == ErrorKind::DirectoryNotEmpty),
        "remove_dir of a non-empty directory: DirectoryNotEmpty",
    );
    check(
        fs::read_to_string("rust").is_err_and(|error| error.kind() == ErrorKind::IsADirectory),
        "reading a directory: IsADirectory",
    );
    check(fs::write("rust/scratch.txt", "x").is_ok() && fs::remove_file("rust/scratch.txt").is_ok(), "remove_file");
    check(fs::write("rust.done", "done\n").is_ok(), "rust.done written");
    println!("rust-files: {failures} failures");
    std::process::exit(if failures == 0 { 0 } else { 1 });
}
