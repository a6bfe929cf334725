//! test-bench-client: measures IPC from inside a service and prints
//! `bench: NAME=VALUE` lines that `image-builder bench` collects.
#![no_std]
#![forbid(unsafe_code)]

use atoll_sdk::{Endpoint, Error, println};

atoll_sdk::entry!(main);

const ROUND_TRIPS: u64 = 2000;
const WARM_UP: u64 = 2000;
const MESSAGES: u64 = 5000;
const RESTARTS: usize = 21;
/// Batches of round trips with tracing off, then on, in turn.
const TRACE_BATCHES: usize = 5;

/// The round trip with the kernel's trace ring off and on, in turns, asked
/// of the supervisor (handle 3, `admin` protocol: `Trace(bool)` is variant
/// 4, postcard `[4, on]`); the best batch of each. Nothing if there is no
/// supervisor to ask.
fn tracing_off_and_on(bench: Endpoint, request: &[u8], reply: &mut [u8]) {
    let supervisor = Endpoint::from_handle(3);
    let mut answer = [0u8; 64];
    let mut trace = |on: bool| {
        supervisor
            .call(&[4, u8::from(on)], &mut answer)
            .map(|a| a == [0])
    };
    let mut best = [u64::MAX; 2];
    for _ in 0..TRACE_BATCHES {
        for (slot, on) in best.iter_mut().zip([false, true]) {
            if trace(on) != Ok(true) {
                return;
            }
            let started = atoll_sdk::time();
            for _ in 0..ROUND_TRIPS {
                let _ = bench.call(request, reply);
            }
            *slot = (*slot).min((atoll_sdk::time() - started) / ROUND_TRIPS);
        }
    }
    let _ = trace(false);
    println!("bench: ipc_round_trip_trace_off_best_ns={}", best[0]);
    println!("bench: ipc_round_trip_trace_on_best_ns={}", best[1]);
}

fn main() {
    let bench = Endpoint::from_handle(1);
    let request = [7u8; 16];
    let mut reply = [0u8; 64];

    // The steady state: every other service has had its first turns and
    // waits. (Calls answered in place never end this service's slice, so
    // round trips alone would not let the twenty spawn services start
    // before the timed loop.) Each sleep lets every ready service run.
    for _ in 0..10 {
        atoll_sdk::sleep(1_000_000);
    }
    // Then a warm-up right before the timed loop: after the sleeps the
    // machine (caches, the host CPU's clock) has idled; WARM_UP round trips
    // bring it back to the state the timed loop measures.
    for _ in 0..WARM_UP {
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
    tracing_off_and_on(bench, &request, &mut reply);

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
