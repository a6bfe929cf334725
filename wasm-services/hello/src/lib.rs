//! hello: the smallest Atoll service. It logs one greeting and returns.
#![no_std]
#![forbid(unsafe_code)]

atoll_sdk::entry!(main);

fn main() {
    atoll_sdk::log("hello from a Wasm service");
}
