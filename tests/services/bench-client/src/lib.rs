//! test-bench-client: measures IPC from inside a service and prints
//! `bench: NAME=VALUE` lines that `image-builder bench` collects.
#![no_std]
#![forbid(unsafe_code)]

use atoll_sdk::{Endpoint, Error, println};

atoll_sdk::entry!(main);

const ROUND_TRIPS: u64 = 2000;
const MESSAGES: u64 = 5000;
const RESTARTS: usize = 21;

fn main() {
    let bench = Endpoint::from_handle(1);
    let request = [7u8; 16];
    let mut reply = [0u8; 64];

    // Round trips of a 16-byte message, after a warm-up.
    for _ in 0..100 {
        let _ = bench.call(&request, &mut reply);
    }
    let started = atoll_sdk::time();
    let mut failures = 0u64;
    for _ in 0..ROUND_TRIPS {
        if bench.call(&request, &mut reply).map(<[u8]>::len) != Ok(16) {
            failures += 1;
        }
    }
    let elapsed = atoll_sdk::time() - started;
    println!("bench: ipc_round_trip_ns={}", elapsed / ROUND_TRIPS);
    println!("bench: ipc_round_trip_failures={failures}");

    // One-way sends of 16 bytes; a full queue makes the sender yield.
    let started = atoll_sdk::time();
    let mut sent = 0u64;
    let mut refused = 0u64;
    while sent < MESSAGES {
        match bench.send(&request) {
            Ok(()) => sent += 1,
            Err(Error::QueueFull) => {
                refused += 1;
                atoll_sdk::sleep(0);
            }
            Err(error) => {
                println!("send failed: {error}");
                return;
            }
        }
    }
    // A call behind the last message returns once the server has taken them all.
    let _ = bench.call(&[], &mut reply);
    let elapsed = (atoll_sdk::time() - started).max(1);
    println!(
        "bench: send_per_second={}",
        MESSAGES * 1_000_000_000 / elapsed
    );
    println!("bench: send_queue_full={refused}");
    // Restart: a request that kills the supervised server, then one that is
    // served by its restarted instance. The time includes one round trip.
    let crasher = Endpoint::from_handle(2);
    // Postcard: variant 1 (Ping), then the number as a varint.
    let poison = [1u8, 4]; // echo::Request::Ping(4): the crasher dies on it
    let ping = [1u8, 1]; // echo::Request::Ping(1)
    let mut samples = [0u64; RESTARTS];
    for sample in &mut samples {
        let started = atoll_sdk::time();
        let died = crasher.call(&poison, &mut reply).is_err();
        let served = crasher.call(&ping, &mut reply).is_ok();
        if !(died && served) {
            println!("restart benchmark: unexpected answers");
            return;
        }
        *sample = atoll_sdk::time() - started;
    }
    samples.sort_unstable();
    println!("bench: restart_ns={}", samples[RESTARTS / 2]);
    println!("bench: done=1");
}
