//! test-spinner: burns CPU for ever without a kernel call. The scheduler must
//! preempt it so that other services keep running.
#![no_std]
#![forbid(unsafe_code)]

atoll_sdk::entry!(main);

fn main() {
    atoll_sdk::log("spinning for ever");
    let mut counter: u64 = 0;
    loop {
        counter = core::hint::black_box(counter.wrapping_add(1));
    }
}
