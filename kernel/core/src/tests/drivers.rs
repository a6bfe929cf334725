//! Drivers on a fake machine: interrupts, which PCI functions, configuration
//! registers and ports a grant reaches, what the kernel keeps for itself, and
//! DMA buffers across a hot swap.

use super::platform::{Function, TestPlatform};
use super::probes::code;
use super::system::{LIMITS, System, TestSystem};
use atoll_abi::Error;
use atoll_abi::bundle::ServiceLimits;
use atoll_abi::driver::{Grants, PciAddress, PciGrant, PortRange};

/// Drivers get longer slices than other test services.
const DRIVER_LIMITS: ServiceLimits = ServiceLimits {
    fuel_slice: 10_000,
    ..LIMITS
};

/// Boots one driver `name` (providing `dev`) with `grants` on `machine`.
fn boot(machine: TestPlatform, name: &str, wat: &str, grants: Grants) -> System {
    TestSystem::new()
        .service(name, wat)
        .provides("dev")
        .limits(DRIVER_LIMITS)
        .grants(grants)
        .platform(machine)
        .boot()
}

/// A driver module: `extra` module fields, then `_start` running `body`.
/// `(call $report X)` logs the i64 X as one line.
fn driver(extra: &str, body: &str) -> String {
    format!(
        r#"(module
        (import "atoll" "log" (func $log (param i32 i32) (result i32)))
        (import "atoll" "receive" (func $receive (param i32 i32 i32 i64 i32) (result i32)))
        (import "atoll" "port_in" (func $port_in (param i32 i32) (result i64)))
        (import "atoll" "port_out" (func $port_out (param i32 i32 i32) (result i32)))
        (import "atoll" "dma_alloc" (func $dma_alloc (param i32) (result i32)))
        (import "atoll" "dma_address" (func $dma_address (param i32) (result i64)))
        (import "atoll" "dma_free" (func $dma_free (param i32) (result i32)))
        (import "atoll" "pci_read" (func $pci_read (param i32 i32) (result i64)))
        (import "atoll" "pci_write" (func $pci_write (param i32 i32 i32) (result i32)))
        (memory (export "memory") 1)
        (func $report (param $v i64) (local $p i32) (local $neg i32) (local $n i64)
            (local.set $p (i32.const 2048))
            (local.set $neg (i64.lt_s (local.get $v) (i64.const 0)))
            (local.set $n (select (i64.sub (i64.const 0) (local.get $v)) (local.get $v) (local.get $neg)))
            (loop $digits
                (local.set $p (i32.sub (local.get $p) (i32.const 1)))
                (i64.store8 (local.get $p) (i64.add (i64.const 48) (i64.rem_u (local.get $n) (i64.const 10))))
                (local.set $n (i64.div_u (local.get $n) (i64.const 10)))
                (br_if $digits (i64.ne (local.get $n) (i64.const 0))))
            (if (local.get $neg) (then
                (local.set $p (i32.sub (local.get $p) (i32.const 1)))
                (i32.store8 (local.get $p) (i32.const 45))))
            (drop (call $log (local.get $p) (i32.sub (i32.const 2048) (local.get $p)))))
        (func $wait
            (drop (call $receive (i32.const 1) (i32.const 100) (i32.const 64) (i64.const -1) (i32.const 200))))
        {extra}
        (func (export "_start") {body}))"#
    )
}

// Interrupts.

#[test]
fn an_interrupt_reaches_its_driver_as_a_kernel_notification_once_acknowledged() {
    let module = r#"(module
            (import "atoll" "log" (func $log (param i32 i32) (result i32)))
            (import "atoll" "irq_ack" (func $irq_ack (param i32) (result i32)))
            (import "atoll" "receive" (func $receive (param i32 i32 i32 i64 i32) (result i32)))
            (memory (export "memory") 1)
            (data (i32.const 0) "irq=? len=? kernel=?")
            (func (export "_start")
                (local $len i32)
                ;; Not granted: refused, and nothing is unmasked.
                (if (i32.ne (call $irq_ack (i32.const 6)) (i32.const -13)) (then unreachable))
                (drop (call $irq_ack (i32.const 5)))
                (local.set $len (call $receive (i32.const 1) (i32.const 100) (i32.const 16)
                    (i64.const -1) (i32.const 200)))
                (i32.store8 (i32.const 4) (i32.add (i32.const 48) (i32.load8_u (i32.const 100))))
                (i32.store8 (i32.const 10) (i32.add (i32.const 48) (local.get $len)))
                (i32.store8 (i32.const 19) (i32.add (i32.const 48)
                    (i32.eq (i32.load (i32.const 204)) (i32.const -1))))
                (drop (call $log (i32.const 0) (i32.const 20)))))"#;
    let (system, summary) = TestSystem::new()
        .service("driver", module)
        .provides("dev")
        .grants(Grants {
            irqs: vec![5],
            ..Grants::default()
        })
        .run();
    assert_eq!(system.lines_of("driver"), ["irq=5 len=1 kernel=1"]);
    assert_eq!(system.platform.unmasked(), [5]);
    assert_eq!(summary.faulted, 0, "{}", system.console());
}

#[test]
fn a_driver_that_acknowledges_without_receiving_gets_one_notification() {
    // Before: one more notification queued per acknowledgement, without bound.
    let module = r#"(module
            (import "atoll" "log" (func $log (param i32 i32) (result i32)))
            (import "atoll" "irq_ack" (func $irq_ack (param i32) (result i32)))
            (import "atoll" "sleep" (func $sleep (param i64) (result i32)))
            (import "atoll" "receive" (func $receive (param i32 i32 i32 i64 i32) (result i32)))
            (memory (export "memory") 1)
            (data (i32.const 0) "notifications: ?")
            (func (export "_start") (local $i i32) (local $n i32)
                (loop $ack
                    (drop (call $irq_ack (i32.const 5)))
                    (drop (call $sleep (i64.const 1000)))
                    (local.set $i (i32.add (local.get $i) (i32.const 1)))
                    (br_if $ack (i32.lt_u (local.get $i) (i32.const 50))))
                (loop $drain
                    (if (i32.ge_s (call $receive (i32.const 1) (i32.const 100) (i32.const 16)
                            (i64.const 0) (i32.const 200)) (i32.const 0)) (then
                        (local.set $n (i32.add (local.get $n) (i32.const 1)))
                        (br $drain))))
                (i32.store8 (i32.const 15) (i32.add (i32.const 48) (local.get $n)))
                (drop (call $log (i32.const 0) (i32.const 16)))))"#;
    let (system, summary) = TestSystem::new()
        .service("driver", module)
        .provides("dev")
        .grants(Grants {
            irqs: vec![5],
            ..Grants::default()
        })
        .platform(TestPlatform::new().refiring_interrupts())
        .run();
    assert_eq!(summary.faulted, 0, "{}", system.console());
    assert_eq!(system.lines_of("driver"), ["notifications: 1"]);
}

// DMA buffers across a hot swap (issue 10, item 10).

fn dma_grant(kib: u32) -> Grants {
    Grants {
        dma_kib: kib,
        ..Grants::default()
    }
}

#[test]
fn freed_dma_buffers_are_reused_smallest_first_so_the_same_sizes_fit_the_budget_again() {
    // 12 KiB: a page (handle 1) and two pages (handle 2), freed big one
    // first, then allocated again in the first order: first fit would give
    // the page the two-page block and find no room for the second.
    let machine = TestPlatform::new().machine(&[]);
    let mut system = boot(
        machine,
        "drv",
        &driver(
            "",
            "(drop (call $dma_alloc (i32.const 4096)))
             (drop (call $dma_alloc (i32.const 8192)))
             (call $report (i64.extend_i32_s (call $dma_free (i32.const 2))))
             (call $report (i64.extend_i32_s (call $dma_free (i32.const 1))))
             (call $report (i64.extend_i32_s (call $dma_alloc (i32.const 4096))))
             (call $report (i64.extend_i32_s (call $dma_alloc (i32.const 8192))))
             (call $wait)",
        ),
        dma_grant(12),
    );
    system.run();
    let console = system.console();
    let reports: Vec<&str> = console
        .lines()
        .filter_map(|line| line.strip_prefix("[drv] "))
        .collect();
    assert_eq!(reports, ["0", "0", "1", "2"], "{console}");
    assert_eq!(system.kernel.dma_bytes("drv"), Some(12 * 1024));
}

/// Version 1 of a swapped driver: allocates one page (handle 1), offers a
/// 4-byte state, and waits in `receive`.
fn first_version() -> String {
    driver(
        r#"(func (export "atoll_state_save") (result i64)
            (i64.or (i64.shl (i64.const 500) (i64.const 32)) (i64.const 4)))"#,
        "(call $report (i64.extend_i32_s (call $dma_alloc (i32.const 4096))))
         (call $wait)",
    )
}

/// Version 2: its state restore allocates a page, tries a second one and
/// tries to free handle 1, keeping the results at 700, 704 and 708, then
/// runs `restore_tail`.
fn second_version(restore_tail: &str, body: &str) -> String {
    driver(
        &format!(
            r#"(func (export "atoll_state_alloc") (param i32) (result i32) (i32.const 600))
            (func (export "atoll_state_restore") (param i32 i32)
                (i32.store (i32.const 700) (call $dma_alloc (i32.const 4096)))
                (i32.store (i32.const 704) (call $dma_alloc (i32.const 4096)))
                (i32.store (i32.const 708) (call $dma_free (i32.const 1)))
                {restore_tail})"#
        ),
        body,
    )
}

/// Asks, as the host, to swap service `name` to `wat` now, and returns the
/// control channel's answer line.
fn host_swap(system: &mut System, name: &str, wat: &str) -> String {
    let module = wat::parse_str(wat).unwrap();
    let before = system.platform.control_output().len();
    system
        .platform
        .send_control(&atoll_abi::control::encode_swap(name, &module));
    system.kernel.poll_control();
    system.platform.control_output()[before..].to_string()
}

#[test]
fn dma_allocated_while_restoring_state_counts_against_the_budget_and_stays_with_the_driver() {
    let machine = TestPlatform::new().machine(&[]);
    let mut system = boot(machine, "drv", &first_version(), dma_grant(8));
    system.run();
    assert_eq!(system.kernel.dma_bytes("drv"), Some(4096));
    let v2 = second_version(
        "",
        "(call $report (i64.extend_i32_s (i32.load (i32.const 700))))
         (call $report (i64.extend_i32_s (i32.load (i32.const 704))))
         (call $report (i64.extend_i32_s (i32.load (i32.const 708))))
         (call $report (i64.extend_i32_u (i64.gt_s (call $dma_address (i32.load (i32.const 700))) (i64.const 0))))
         (call $report (i64.extend_i32_u (i64.gt_s (call $dma_address (i32.const 1)) (i64.const 0))))
         (call $wait)",
    );
    let answer = host_swap(&mut system, "drv", &v2);
    assert!(answer.starts_with("ok: "), "{answer}");
    // Both pages, the old version's and the restore's, are the driver's: 8 KiB.
    assert_eq!(system.kernel.dma_bytes("drv"), Some(8192));
    system.run();
    // v1: handle 1. v2's restore: handle 2, then TooLarge (the budget holds
    // both versions' buffers), and NotPermitted for a free before the swap is
    // done; both handles still name buffers once v2 runs.
    assert_eq!(
        system.lines_of("drv"),
        [
            "1",
            "2",
            &code(Error::TooLarge),
            &code(Error::NotPermitted),
            "1",
            "1"
        ]
    );
    assert_eq!(system.kernel.dma_bytes("drv"), Some(8192));
    assert_eq!(system.kernel.swaps("drv"), Some(1));
}

#[test]
fn a_failed_restore_retires_its_dma_buffers_instead_of_freeing_them() {
    let machine = TestPlatform::new().machine(&[]);
    let mut system = boot(machine, "drv", &first_version(), dma_grant(8));
    system.run();
    assert_eq!(system.kernel.dma_bytes("drv"), Some(4096));
    // The restore allocates a page (which it could have given the device),
    // then traps: the swap fails and the old version goes on.
    let answer = host_swap(&mut system, "drv", &second_version("unreachable", ""));
    assert!(
        answer.starts_with("error: swap of drv failed, old version kept"),
        "{answer}"
    );
    assert_eq!(system.kernel.swaps("drv"), Some(0));
    // The restore's page is retired, still held (and counted) until the
    // driver's bus mastering is off.
    assert_eq!(system.kernel.dma_bytes("drv"), Some(8192));
    // The old version keeps handle 1, and handle 2 names nothing: a version
    // that takes the pool over without allocating sees exactly that.
    let v3 = driver(
        r#"(func (export "atoll_state_alloc") (param i32) (result i32) (i32.const 600))
           (func (export "atoll_state_restore") (param i32 i32))"#,
        "(call $report (i64.extend_i32_u (i64.gt_s (call $dma_address (i32.const 1)) (i64.const 0))))
         (call $report (call $dma_address (i32.const 2)))
         (call $wait)",
    );
    let answer = host_swap(&mut system, "drv", &v3);
    assert!(answer.starts_with("ok: "), "{answer}");
    system.run();
    assert_eq!(system.lines_of("drv"), ["1", "1", &code(Error::BadHandle)]);
    assert_eq!(system.kernel.dma_bytes("drv"), Some(8192));
}

// PCI grants (issue 10, item 6).

/// A legacy virtio block device as QEMU shows it: I/O BAR0 (64 ports at
/// 0xc000), memory BAR1 (its MSI-X table), the expansion ROM BAR, line 11,
/// and an MSI-X capability at 0x40.
fn virtio_block() -> Function {
    Function::new(0x1af4, 0x1001, 0x0100, 0)
        .bar(0, 0xc001, 0xffff_ffc0)
        .bar(1, 0xfebf_1000, 0xffff_f000)
        .register(0x04, 0x0000_0103) // I/O, memory, SERR# on
        .register(0x30, 0xfeb8_0000)
        .register(0x34, 0x40)
        .register(0x3c, 0x0000_010b)
        .register(0x40, 0x0001_0011)
}

fn pci_grant(vendor: u16, device: Option<u16>) -> Grants {
    pci_grants(&[(vendor, device)])
}

fn pci_grants(grants: &[(u16, Option<u16>)]) -> Grants {
    Grants {
        pci: grants
            .iter()
            .map(|&(vendor, device)| PciGrant {
                vendor: Some(vendor),
                device,
            })
            .collect(),
        ..Grants::default()
    }
}

#[test]
fn a_pci_grant_writes_only_the_driver_bits_of_the_command_register() {
    const DISK: PciAddress = 3 << 3;
    let write = |offset: u32, value: u32| {
        format!(
            "(call $report (i64.extend_i32_s (call $pci_write (i32.const {DISK}) (i32.const {offset}) (i32.const {value}))))"
        )
    };
    let body = [
        write(0x30, 0x0010_0001),     // expansion ROM BAR, enabled, moved
        write(0x40, 0x8001_0011),     // MSI-X enable
        write(0x44, 0xfee0_0000),     // capability body (MSI address)
        write(0x0c, 0x4000_0000),     // BIST start
        write(0x3c, 0x0000_0105),     // interrupt line
        write(0x14, 0),               // a BAR
        write(0x04, 0x0000_0507),     // bus master on, INTx off: the driver's bits
        write(0x04, 0x0000_0007),     // SERR# off: not the driver's
        write(0x04, 0x0000_0117 | 8), // special cycles on: not the driver's
    ]
    .concat();
    let machine = TestPlatform::new().machine(&[(DISK, virtio_block())]);
    let mut system = boot(
        machine,
        "disk",
        &driver("", &body),
        pci_grant(0x1af4, Some(0x1001)),
    );
    system.run();
    let refused = code(Error::NotPermitted);
    let refused = refused.as_str();
    assert_eq!(
        system.lines_of("disk"),
        [
            refused, refused, refused, refused, refused, refused, "0", refused, refused
        ]
    );
    let machine = &system.platform;
    assert_eq!(machine.register(DISK, 0x30), 0xfeb8_0000);
    assert_eq!(machine.register(DISK, 0x40), 0x0001_0011);
    // Bus mastering is on (the driver's write), then off (the driver ended).
    assert_eq!(machine.register(DISK, 0x04), 0x0000_0503);
}

#[test]
fn bridges_and_chipset_functions_are_never_granted_even_by_a_vendor_grant() {
    const HOST_BRIDGE: PciAddress = 0;
    const ISA_BRIDGE: PciAddress = 1 << 3;
    const POWER: PciAddress = 1 << 3 | 3;
    const NIC: PciAddress = 4 << 3;
    const PCI_BRIDGE: PciAddress = 5 << 3;
    let machine = TestPlatform::new().machine(&[
        (HOST_BRIDGE, Function::new(0x8086, 0x1237, 0x0600, 0)),
        (ISA_BRIDGE, Function::new(0x8086, 0x7000, 0x0601, 0x80)),
        (
            POWER,
            Function::new(0x8086, 0x7113, 0x0680, 0).register(0x40, 0x0601),
        ),
        (
            NIC,
            Function::new(0x8086, 0x100e, 0x0200, 0).bar(1, 0xc041, 0xffff_ffc0),
        ),
        (
            PCI_BRIDGE,
            // Header type 1: 0x18 holds bus numbers, 0x1c the I/O window.
            Function::new(0x1b36, 0x0001, 0x0604, 1)
                .register(0x18, 0x0001_0100)
                .register(0x1c, 0x0000_f1f1),
        ),
    ]);
    let read = |address: PciAddress| {
        format!(
            "(call $report (i64.extend_i32_u (i64.lt_s (call $pci_read (i32.const {address}) (i32.const 0)) (i64.const 0))))"
        )
    };
    let body = [
        read(HOST_BRIDGE),
        read(ISA_BRIDGE),
        read(POWER),
        read(PCI_BRIDGE),
        read(NIC),
        // The bridge control (secondary bus reset) of the PCI bridge.
        format!(
            "(call $report (i64.extend_i32_s (call $pci_write (i32.const {PCI_BRIDGE}) (i32.const 0x3c) (i32.const 0x00400000))))"
        ),
        // The NIC's I/O BAR is granted.
        "(call $report (call $port_in (i32.const 0xc040) (i32.const 1)))".to_string(),
    ]
    .concat();
    let mut system = boot(
        machine,
        "nic",
        &driver("", &body),
        pci_grants(&[(0x8086, None), (0x1b36, None)]),
    );
    system.run();
    // 1: refused (negative); 0: granted.
    assert_eq!(
        system.lines_of("nic"),
        ["1", "1", "1", "1", "0", &code(Error::NotPermitted), "90"]
    );
    // Why, only in the kernel's report.
    let console = system.console();
    assert!(
        console.contains("not granted: PCI function 0x000b (8086:7113) is a chipset function"),
        "{console}"
    );
    assert!(
        console
            .contains("not granted: PCI function 0x0028 (1b36:0001) is a bridge (header type 1)"),
        "{console}"
    );
    // The kernel never sized "BARs" in a bridge's header: nothing was written there.
    let writes = system.platform.config_writes();
    assert!(
        writes.iter().all(|&(address, _, _)| address == NIC),
        "{writes:x?}"
    );
}

#[test]
fn bar_parsing_skips_the_upper_half_of_a_64_bit_bar_and_sizes_with_decoding_off() {
    const DEVICE: PciAddress = 3 << 3;
    const OTHER: PciAddress = 4 << 3;
    let machine = TestPlatform::new().machine(&[
        (
            DEVICE,
            // BAR0-1: a 64-bit memory BAR at 0xc001_fe00_0000 (its upper
            // half has bit 0 set, like an I/O BAR); BAR2: 32 ports at 0xc100.
            Function::new(0x1af4, 0x1001, 0x0100, 0)
                .bar(0, 0xfe00_000c, 0xffff_c000)
                .bar(1, 0x0000_c001, 0xffff_ffff)
                .bar(2, 0xc101, 0xffff_ffe0)
                .register(0x04, 0x0000_0003),
        ),
        (
            OTHER,
            Function::new(0x1af4, 0x1000, 0x0200, 0).bar(0, 0xc001, 0xffff_ffc0),
        ),
    ]);
    let mut system = boot(
        machine,
        "disk",
        &driver(
            "",
            "(call $report (call $port_in (i32.const 0xc000) (i32.const 1)))
             (call $report (call $port_in (i32.const 0xc100) (i32.const 1)))",
        ),
        pci_grant(0x1af4, Some(0x1001)),
    );
    system.run();
    // Not the other device's ports; its own BAR2.
    assert_eq!(
        system.lines_of("disk"),
        [code(Error::NotPermitted), "90".into()]
    );
    let machine = &system.platform;
    assert_eq!(machine.ports(), [0xc100]);
    // Decoding went off before the first BAR was sized, and came back after.
    let writes = machine.config_writes();
    assert_eq!(writes.first(), Some(&(DEVICE, 0x04, 0)), "{writes:x?}");
    assert_eq!(writes.last(), Some(&(DEVICE, 0x04, 3)), "{writes:x?}");
    // Every BAR reads as before.
    assert_eq!(machine.register(DEVICE, 0x10), 0xfe00_000c);
    assert_eq!(machine.register(DEVICE, 0x14), 0x0000_c001);
    assert_eq!(machine.register(DEVICE, 0x18), 0xc101);
}

#[test]
fn functions_with_unassigned_bars_or_bars_on_reserved_ports_are_not_granted() {
    let machine = TestPlatform::new().machine(&[
        (
            3 << 3,
            // An I/O BAR the firmware left at 0: enabling I/O decoding would
            // put the device on the DMA controller's ports.
            Function::new(0x1af4, 0x1001, 0x0100, 0).bar(0, 0x0001, 0xffff_ffc0),
        ),
        (
            4 << 3,
            Function::new(0x1af4, 0x1001, 0x0100, 0).bar(1, 0x0000_0000, 0xffff_f000),
        ),
        (
            5 << 3,
            Function::new(0x1af4, 0x1001, 0x0100, 0).bar(0, 0x0061, 0xffff_fffc),
        ),
    ]);
    let mut system = boot(
        machine,
        "disk",
        &driver(
            "",
            "(call $report (call $pci_read (i32.const 24) (i32.const 0)))
             (call $report (call $pci_read (i32.const 32) (i32.const 0)))
             (call $report (call $pci_read (i32.const 40) (i32.const 0)))
             (call $report (call $port_in (i32.const 0x61) (i32.const 1)))",
        ),
        pci_grant(0x1af4, Some(0x1001)),
    );
    system.run();
    let refused = code(Error::NotPermitted);
    assert_eq!(
        system.lines_of("disk"),
        [refused.as_str(), &refused, &refused, &refused]
    );
    assert!(system.platform.ports().is_empty());
    // Why, only in the kernel's report.
    let console = system.console();
    for reason in [
        "PCI function 0x0018 (1af4:1001) has I/O BAR 0 unassigned",
        "PCI function 0x0020 (1af4:1001) has memory BAR 1 unassigned",
        "PCI function 0x0028 (1af4:1001) decodes ports 0x60-0x63, which overlap",
    ] {
        assert!(console.contains(reason), "{reason}: {console}");
    }
}

// Reserved ports (issue 10, item 11).

#[test]
fn chipset_and_firmware_ports_are_never_granted() {
    // The PIIX4 power-management function with its PM block moved to 0x4000
    // and its SMBus block at 0x4100: the kernel reserves what it says.
    let machine = TestPlatform::new().machine(&[
        (1 << 3, Function::new(0x8086, 0x7000, 0x0601, 0x80)),
        (
            1 << 3 | 3,
            Function::new(0x8086, 0x7113, 0x0680, 0)
                .register(0x40, 0x4001)
                .register(0x90, 0x4101),
        ),
    ]);
    let probes: [(u16, u16); 15] = [
        (0x00, 0x1f),     // ISA DMA controller
        (0x60, 0x60),     // keyboard controller data
        (0x64, 0x64),     // keyboard controller command (reset)
        (0x80, 0x8f),     // DMA page registers
        (0x92, 0x92),     // fast A20 and reset
        (0xc0, 0xdf),     // second DMA controller
        (0x4d0, 0x4d1),   // PIC edge/level control
        (0x510, 0x51b),   // fw_cfg and its DMA
        (0x600, 0x63f),   // ACPI PM block where SeaBIOS puts it
        (0x700, 0x70f),   // SMBus where SeaBIOS puts it
        (0xb000, 0xb03f), // ACPI PM block where OVMF puts it
        (0xb100, 0xb10f), // SMBus where OVMF puts it
        (0x4000, 0x403f), // this machine's PM block
        (0x4100, 0x410f), // this machine's SMBus
        (0x3f8, 0x3ff),   // COM1: granted
    ];
    let body: String = probes
        .iter()
        .map(|&(first, _)| {
            format!("(call $report (call $port_in (i32.const {first}) (i32.const 1)))")
        })
        .collect();
    let grants = Grants {
        ports: probes
            .iter()
            .map(|&(first, last)| PortRange { first, last })
            .collect(),
        ..Grants::default()
    };
    let mut system = boot(machine, "probe", &driver("", &body), grants);
    system.run();
    let mut expected = vec![code(Error::NotPermitted); probes.len() - 1];
    expected.push("90".into());
    assert_eq!(system.lines_of("probe"), expected);
    assert_eq!(system.platform.ports(), [0x3f8]);
    // What was reserved and why, only in the kernel's report.
    let console = system.console();
    assert!(
        console.contains("reserved the ACPI power-management block at ports 0x4000-0x403f (PCI function 0x000b, 8086:7113)"),
        "{console}"
    );
    assert!(
        console.contains("not granted: ports 0x4100-0x410f overlap the SMBus controller"),
        "{console}"
    );
}

#[test]
fn the_fixed_reserved_ports_include_the_kernels_own_devices() {
    // What the SAFETY notes of the x86_64 layer rely on (issue 10, item 18):
    // no grant reaches the PICs, the PIT, CMOS (index and NMI mask), COM2,
    // the debug exit or PCI configuration.
    for port in [
        0x20, 0x21, 0x40, 0x43, 0x70, 0x71, 0xa0, 0xa1, 0xf4, 0x2f8, 0xcf8, 0xcfc, 0xcf9,
    ] {
        assert!(
            atoll_abi::driver::reserved(&PortRange {
                first: port,
                last: port
            })
            .is_some(),
            "{port:#x}"
        );
    }
}
