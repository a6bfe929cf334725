//! WASI sockets from Rust std: an ordinary `wasm32-wasip1` program serving
//! HTTP/1.0-style responses (one per connection) on the listening socket it
//! is given as descriptor 3.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::fd::FromRawFd;

fn main() {
    // SAFETY: descriptor 3 is the listening socket the system gives this
    // program (`listen` in system.toml), owned by nothing else.
    let listener = unsafe { TcpListener::from_raw_fd(3) };
    println!("rust-server: serving HTTP on descriptor 3");
    let mut served = 0u32;
    for stream in listener.incoming() {
        let mut stream = match stream {
            Ok(stream) => stream,
            Err(error) => {
                println!("rust-server: accept failed: {error}");
                continue;
            }
        };
        let mut request = Vec::new();
        let mut buffer = [0u8; 1024];
        while !request.windows(4).any(|window| window == b"\r\n\r\n") && request.len() < 8192 {
            match stream.read(&mut buffer) {
                Ok(0) => break,
                Ok(read) => request.extend_from_slice(&buffer[..read]),
                Err(error) => {
                    println!("rust-server: read failed: {error}");
                    break;
                }
            }
        }
        let head = String::from_utf8_lossy(&request);
        let path = head.split_whitespace().nth(1).unwrap_or("?").to_string();
        served += 1;
        let body = format!(
            "Hello from a Rust std program (wasm32-wasip1) on Atoll: request {served} for {path}\n"
        );
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        match stream.write_all(response.as_bytes()) {
            Ok(()) => println!("rust-server: answered request {served} for {path}"),
            Err(error) => println!("rust-server: write failed: {error}"),
        }
    }
}
