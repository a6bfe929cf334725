//! Boots small test systems in QEMU and checks their serial logs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking"
)]

mod support;

use std::time::Duration;
use support::{Firmware, boot};

const TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn hello_boots_from_the_bios_image() {
    boot("hello", Firmware::Bios, None, TIMEOUT)
        .expect("atoll: booting")
        .expect("[hello] hello from a Wasm service")
        .expect("atoll: system ready (1 services)")
        .expect(
            "atoll: no service can run: 1 exited, 0 faulted, 0 failed to load, 0 waiting for ever",
        )
        .expect_status(0);
}

#[test]
fn hello_boots_from_the_uefi_image() {
    boot("hello", Firmware::Uefi, None, TIMEOUT)
        .expect("[hello] hello from a Wasm service")
        .expect("atoll: system ready (1 services)")
        .expect_status(0);
}

#[test]
fn the_default_system_becomes_ready() {
    let boot = support::boot_path(
        support::workspace().join("examples/default/system.toml"),
        Firmware::Bios,
        Some("atoll: no service can run"),
        TIMEOUT,
    );
    boot.expect("[hello] hello from a Wasm service")
        .expect("atoll: system ready (5 services)")
        .expect("[echo-client] echo replied: hello over IPC")
        .expect("[echo-client] 10 pings, 10 pongs in")
        .expect("[kv-client] visits = Some(3), answer = Ok(Value(Some(42))), long key: Ok(Error(KeyTooLong)), keys: Ok(Len(2))");
    assert_eq!(boot.status, None, "the default system idles:\n{}", boot.log);
}

/// Boots a system whose kernel provokes a fault in itself.
fn fault(name: &str) -> support::Boot {
    let boot = boot(name, Firmware::Bios, None, TIMEOUT);
    boot.expect("atoll: self-test: provoking").expect_status(1);
    boot.expect_no("did not stop the kernel");
    boot
}

#[test]
fn a_page_fault_in_the_kernel_is_reported() {
    fault("fault-page")
        .expect("atoll: fault address 0xffffff0000000000 (the guard page below the kernel stack)")
        .expect("atoll: CPU EXCEPTION page fault (vector 14, error code 0x0) at rip 0x");
}

#[test]
fn a_kernel_stack_overflow_hits_the_guard_page_and_is_reported() {
    fault("fault-stack-overflow")
        .expect("atoll: kernel stack overflow (access to the guard page")
        .expect("atoll: CPU EXCEPTION double fault (vector 8, error code 0x0)");
}

#[test]
fn a_divide_error_in_the_kernel_is_reported() {
    fault("fault-divide").expect("atoll: CPU EXCEPTION divide error (vector 0) at rip 0x");
}

#[test]
fn an_invalid_opcode_in_the_kernel_is_reported() {
    fault("fault-invalid-opcode")
        .expect("atoll: CPU EXCEPTION invalid opcode (vector 6) at rip 0x");
}

#[test]
fn a_breakpoint_in_the_kernel_is_reported() {
    fault("fault-breakpoint").expect("atoll: CPU EXCEPTION breakpoint (vector 3) at rip 0x");
}

#[test]
fn a_kernel_panic_is_reported_with_its_location() {
    fault("fault-panic").expect("atoll: KERNEL PANIC: panicked at kernel/x86_64/src/selftest.rs:");
}
