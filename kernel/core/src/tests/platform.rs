//! The one platform of the host tests: a console and a control channel that
//! record, a clock that counts in steps, and, where a test asks for them, a
//! finite heap, interrupt lines, and a fake PC with PCI functions, ports and DMA.
//!
//! What is not here: services and bundles ([`super::system`]).

use crate::Platform;
use atoll_abi::driver::PciAddress;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// A platform that records what the kernel does to the machine.
#[derive(Default)]
pub(crate) struct TestPlatform {
    console: Mutex<String>,
    clock: Mutex<u64>,
    /// Heap reported as available (`None`: unlimited).
    heap: Option<usize>,
    /// Report what the thread's [`crate::test_allocator::FiniteHeap`] leaves.
    finite_heap: bool,
    /// Instead of recording console text, sample the thread's live heap bytes
    /// at every console line (into a preallocated vector: never allocates).
    heap_samples: Option<Mutex<Vec<isize>>>,
    /// Interrupt lines unmasked by `irq_ack`; each fires once after it is
    /// (every time it is, with `refire`: a device that keeps asking).
    unmasked: Mutex<Vec<u8>>,
    refire: bool,
    fired: Mutex<Vec<u8>>,
    /// What the kernel wrote to the host control channel.
    control: Mutex<String>,
    /// What the host sends on the control channel, read by the kernel.
    control_input: Mutex<Vec<u8>>,
    /// PCI functions of a fake PC (`None`: no PCI, no DMA).
    pci: Option<Mutex<BTreeMap<PciAddress, Function>>>,
    /// Every configuration write, as `(address, offset, value)`.
    config_writes: Mutex<Vec<(PciAddress, u8, u32)>>,
    /// Every port a service read or wrote.
    ports: Mutex<Vec<u16>>,
}

impl TestPlatform {
    /// An unlimited machine with no devices.
    pub(crate) fn new() -> TestPlatform {
        TestPlatform::default()
    }

    /// Reports `bytes` of kernel heap available, for ever.
    pub(crate) fn heap_available(self, bytes: usize) -> TestPlatform {
        TestPlatform {
            heap: Some(bytes),
            ..self
        }
    }

    /// Reports what the calling thread's finite heap leaves.
    pub(crate) fn finite_heap(self) -> TestPlatform {
        TestPlatform {
            finite_heap: true,
            ..self
        }
    }

    /// Samples the live heap at each console line (up to `capacity` samples)
    /// instead of recording the console.
    pub(crate) fn sampling_heap(self, capacity: usize) -> TestPlatform {
        TestPlatform {
            heap_samples: Some(Mutex::new(Vec::with_capacity(capacity))),
            ..self
        }
    }

    /// Interrupt lines fire again each time they are acknowledged.
    pub(crate) fn refiring_interrupts(self) -> TestPlatform {
        TestPlatform {
            refire: true,
            ..self
        }
    }

    /// A fake PC with these PCI functions, port I/O and DMA.
    pub(crate) fn machine(self, functions: &[(PciAddress, Function)]) -> TestPlatform {
        TestPlatform {
            pci: Some(Mutex::new(functions.iter().cloned().collect())),
            ..self
        }
    }

    /// Everything the kernel and its services wrote to the console.
    pub(crate) fn console(&self) -> String {
        self.console.lock().unwrap().clone()
    }

    /// Makes room for `bytes` of console first, so that its growth is not
    /// counted against a finite heap.
    pub(crate) fn reserve_console(&self, bytes: usize) {
        self.console.lock().unwrap().reserve(bytes);
    }

    /// What the kernel wrote to the host control channel.
    pub(crate) fn control_output(&self) -> String {
        self.control.lock().unwrap().clone()
    }

    /// Queues bytes from the host on the control channel.
    pub(crate) fn send_control(&self, bytes: &[u8]) {
        self.control_input.lock().unwrap().extend_from_slice(bytes);
    }

    /// The interrupt lines unmasked so far, in order.
    pub(crate) fn unmasked(&self) -> Vec<u8> {
        self.unmasked.lock().unwrap().clone()
    }

    /// The live-heap samples taken at console lines.
    pub(crate) fn heap_samples(&self) -> Vec<isize> {
        self.heap_samples
            .as_ref()
            .map(|samples| samples.lock().unwrap().clone())
            .unwrap_or_default()
    }

    /// Configuration register `offset` of the PCI function at `address`.
    pub(crate) fn register(&self, address: PciAddress, offset: u8) -> u32 {
        let functions = self.pci.as_ref().unwrap().lock().unwrap();
        functions[&address].registers[usize::from(offset / 4)]
    }

    /// Every PCI configuration write so far.
    pub(crate) fn config_writes(&self) -> Vec<(PciAddress, u8, u32)> {
        self.config_writes.lock().unwrap().clone()
    }

    /// Every port accessed so far.
    pub(crate) fn ports(&self) -> Vec<u16> {
        self.ports.lock().unwrap().clone()
    }
}

impl Platform for TestPlatform {
    fn now_ns(&self) -> u64 {
        let mut clock = self.clock.lock().unwrap();
        *clock += 1000;
        *clock
    }
    fn console_write(&self, text: &str) {
        match &self.heap_samples {
            Some(samples) => {
                let live = crate::test_allocator::live_bytes();
                let mut samples = samples.lock().unwrap();
                if samples.len() < samples.capacity() {
                    samples.push(live);
                }
            }
            None => self.console.lock().unwrap().push_str(text),
        }
    }
    fn wait_until(&self, deadline_ns: u64) {
        let mut clock = self.clock.lock().unwrap();
        *clock = (*clock).max(deadline_ns);
    }
    fn heap_available(&self) -> usize {
        if self.finite_heap {
            return crate::test_allocator::available();
        }
        self.heap.unwrap_or(usize::MAX)
    }
    fn control_write(&self, text: &str) {
        self.control.lock().unwrap().push_str(text);
    }
    fn control_read(&self, buffer: &mut [u8]) -> usize {
        let mut input = self.control_input.lock().unwrap();
        let count = input.len().min(buffer.len());
        buffer[..count].copy_from_slice(&input[..count]);
        input.drain(..count);
        count
    }
    fn irq_unmask(&self, irq: u8) {
        self.unmasked.lock().unwrap().push(irq);
    }
    fn take_interrupts(&self) -> u16 {
        let unmasked = if self.refire {
            // Masked again as it fires; fires again once acknowledged.
            std::mem::take(&mut *self.unmasked.lock().unwrap())
        } else {
            self.unmasked.lock().unwrap().clone()
        };
        let mut fired = self.fired.lock().unwrap();
        let mut lines = 0;
        for irq in unmasked {
            if self.refire || !fired.contains(&irq) {
                fired.push(irq);
                lines |= 1 << irq;
            }
        }
        lines
    }
    fn port_in(&self, port: u16, _width: u8) -> u32 {
        self.ports.lock().unwrap().push(port);
        0x5a
    }
    fn port_out(&self, port: u16, _width: u8, _value: u32) {
        self.ports.lock().unwrap().push(port);
    }
    fn pci_read(&self, address: u16, offset: u8) -> Option<u32> {
        let functions = self.pci.as_ref()?.lock().unwrap();
        Some(functions.get(&address).map_or(u32::MAX, |function| {
            function.registers[usize::from(offset / 4)]
        }))
    }
    fn pci_write(&self, address: u16, offset: u8, value: u32) {
        self.config_writes
            .lock()
            .unwrap()
            .push((address, offset, value));
        let Some(pci) = &self.pci else {
            return;
        };
        let mut functions = pci.lock().unwrap();
        let Some(function) = functions.get_mut(&address) else {
            return;
        };
        let index = usize::from(offset / 4);
        let header_type = (function.registers[3] >> 16) & 0x7f;
        if header_type == 0 && (4..10).contains(&index) {
            let mask = function.bar_masks[index - 4];
            let old = function.registers[index];
            function.registers[index] = (value & mask) | (old & !mask);
        } else {
            function.registers[index] = value;
        }
    }
    fn physical_address(&self, virtual_address: usize) -> Option<u64> {
        self.pci.as_ref().map(|_| virtual_address as u64)
    }
}

/// One fake PCI function: its 64 configuration registers, and the writable
/// bits of each BAR (0: not implemented).
#[derive(Clone)]
pub(crate) struct Function {
    registers: [u32; 64],
    bar_masks: [u32; 6],
}

impl Function {
    /// A function with these ids, class code (`class << 8 | subclass`) and
    /// header type.
    pub(crate) fn new(vendor: u16, device: u16, class: u16, header_type: u8) -> Function {
        let mut registers = [0u32; 64];
        registers[0] = u32::from(device) << 16 | u32::from(vendor);
        registers[2] = u32::from(class) << 16;
        registers[3] = u32::from(header_type) << 16;
        Function {
            registers,
            bar_masks: [0; 6],
        }
    }

    /// Gives BAR `index` the value `bar` and the writable bits `mask`.
    pub(crate) fn bar(mut self, index: usize, bar: u32, mask: u32) -> Function {
        self.registers[4 + index] = bar;
        self.bar_masks[index] = mask;
        self
    }

    /// Sets register `offset` (a multiple of 4).
    pub(crate) fn register(mut self, offset: u8, value: u32) -> Function {
        self.registers[usize::from(offset / 4)] = value;
        self
    }
}
