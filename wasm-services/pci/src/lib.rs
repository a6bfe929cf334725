//! pci: the PCI device list, read once at start.
//!
//! What it is: a service granted read access to every PCI function's
//! configuration space (`pci = ["*"]` in `system.toml`). At start it walks
//! buses 0 to 255, devices 0 to 31 and, on multi-function devices, functions
//! 0 to 7, logs one line per function found (`00:03.0 1af4:1001 class 01.00
//! irq 11`), then serves the `pci` protocol: `List { start }` answers up to 32
//! devices from that index.
//!
//! What it is not: a bus driver. It does not follow bridges (a brute-force scan
//! of every bus finds their functions anyway), assign resources, or write any
//! register; drivers read their own device's configuration themselves, with
//! their own grants. The list is what was there at boot (no hot-plug).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;
use atoll_protocols::pci::{Device, ENDPOINT, Request, Response};
use atoll_sdk::driver::pci_read;

/// The most devices one `List` answer holds.
const PAGE: usize = 32;

/// Configuration register offsets.
const ID: u8 = 0x00;
const CLASS: u8 = 0x08;
const HEADER: u8 = 0x0c;
const INTERRUPT: u8 = 0x3c;

atoll_sdk::entry!(main);

fn main() {
    let devices = scan();
    atoll_sdk::println!("{} PCI functions", devices.len());
    atoll_sdk::serve_named(ENDPOINT, |request: Request| match request {
        Request::List { start } => list(&devices, start),
    });
}

/// Every function on every bus, in address order.
fn scan() -> Vec<Device> {
    let mut devices = Vec::new();
    for bus in 0..=255u16 {
        for slot in 0..32u16 {
            let first = bus << 8 | slot << 3;
            let Some(device) = probe(first) else {
                continue;
            };
            devices.push(device);
            // Bit 7 of the header type: the device has functions 1 to 7 too.
            let multi = pci_read(first, HEADER).is_ok_and(|header| header & 0x0080_0000 != 0);
            if multi {
                devices.extend((1..8u16).filter_map(|function| probe(first | function)));
            }
        }
    }
    devices
}

/// The function at `address`, if one answers (an absent one reads as all ones;
/// one this service may not read is skipped the same way).
fn probe(address: u16) -> Option<Device> {
    let id = pci_read(address, ID).ok()?;
    let vendor = (id & 0xffff) as u16;
    if vendor == 0xffff || vendor == 0 {
        return None;
    }
    let class = pci_read(address, CLASS).unwrap_or(0);
    // Interrupt line in the low byte, pin (0: none) in the next.
    let interrupt = pci_read(address, INTERRUPT).unwrap_or(0);
    let irq = if interrupt & 0xff00 == 0 {
        0xff
    } else {
        (interrupt & 0xff) as u8
    };
    let device = Device {
        address,
        vendor,
        device: (id >> 16) as u16,
        class: (class >> 24) as u8,
        subclass: (class >> 16) as u8,
        irq,
    };
    log_device(&device);
    Some(device)
}

fn log_device(device: &Device) {
    let (bus, slot, function) = (
        device.address >> 8,
        (device.address >> 3) & 0x1f,
        device.address & 0x7,
    );
    let (vendor, id, class, subclass) =
        (device.vendor, device.device, device.class, device.subclass);
    if device.irq == 0xff {
        atoll_sdk::println!(
            "{bus:02x}:{slot:02x}.{function} {vendor:04x}:{id:04x} class {class:02x}.{subclass:02x} no irq"
        );
    } else {
        atoll_sdk::println!(
            "{bus:02x}:{slot:02x}.{function} {vendor:04x}:{id:04x} class {class:02x}.{subclass:02x} irq {}",
            device.irq
        );
    }
}

/// Up to [`PAGE`] devices from index `start`.
fn list(devices: &[Device], start: u32) -> Response {
    let rest = devices.get(start as usize..).unwrap_or(&[]);
    let page = rest.get(..PAGE).unwrap_or(rest);
    Response::Devices {
        devices: page.to_vec(),
        more: rest.len() > page.len(),
    }
}
