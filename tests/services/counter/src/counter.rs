// Shared by test-counter and test-counter-v2 (which set `VERSION`).

use alloc::vec::Vec;
use atoll_protocols::echo::{Request, Response};
use core::sync::atomic::{AtomicU64, Ordering};

static SERVED: AtomicU64 = AtomicU64::new(0);

fn save() -> Vec<u8> {
    SERVED.load(Ordering::Relaxed).to_le_bytes().to_vec()
}

fn restore(state: &[u8]) {
    if let Ok(bytes) = <[u8; 8]>::try_from(state) {
        SERVED.store(u64::from_le_bytes(bytes), Ordering::Relaxed);
    }
}

atoll_sdk::state_handoff!(save, restore);
atoll_sdk::entry!(main);

fn main() {
    atoll_sdk::println!("version {VERSION} starting at {}", SERVED.load(Ordering::Relaxed));
    atoll_sdk::serve_named("echo", |request: Request| match request {
        Request::Ping(_) => {
            let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
            Response::Pong(VERSION * 1_000_000 + served)
        }
        Request::Echo(text) => Response::Echo(text),
    });
}
