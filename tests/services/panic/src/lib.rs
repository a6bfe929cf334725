//! test-panic: a Rust service that panics. The SDK's panic handler logs the
//! message and traps; the kernel reports the fault and goes on.
#![no_std]
#![forbid(unsafe_code)]

atoll_sdk::entry!(main);

fn main() {
    let divisor = core::hint::black_box(0u32);
    atoll_sdk::log("about to panic");
    let value = 10u32.checked_div(divisor);
    panic!("deliberate panic (10 / {divisor} = {value:?})");
}
