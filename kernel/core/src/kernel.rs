//! The kernel proper: the service table and the scheduler loop.
//!
//! Scheduling is round robin over a queue of ready services; each turn is one
//! fuel slice. [`Kernel::run`] returns when no service is runnable, and the
//! platform layer decides what then happens (idle or power off).

use crate::Platform;
use crate::service::{Service, SliceOutcome};
use alloc::collections::VecDeque;
use alloc::format;
use alloc::sync::Arc;
use alloc::vec::Vec;
use atoll_abi::bundle::{self, DecodeError, KernelSettings};

/// Why the kernel cannot boot at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootError {
    /// The boot bundle is missing or malformed.
    Bundle(DecodeError),
}

impl core::fmt::Display for BootError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BootError::Bundle(error) => write!(formatter, "boot bundle: {error}"),
        }
    }
}

/// How a run ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Services whose entry point returned.
    pub exited: usize,
    /// Services stopped by a trap.
    pub faulted: usize,
    /// Services that could not be loaded at boot.
    pub failed_to_load: usize,
}

/// The kernel core.
pub struct Kernel {
    platform: Arc<dyn Platform>,
    services: Vec<Service>,
    run_queue: VecDeque<usize>,
    summary: RunSummary,
    announced_ready: bool,
}

impl Kernel {
    /// Unpacks a boot bundle and loads every service in it. A service that fails to
    /// load is reported and left out; the others still boot.
    pub fn boot(
        bundle_bytes: &[u8],
        platform: Arc<dyn Platform>,
    ) -> Result<(Kernel, KernelSettings), BootError> {
        let bundle = bundle::decode(bundle_bytes).map_err(BootError::Bundle)?;
        let mut kernel = Kernel {
            platform,
            services: Vec::with_capacity(bundle.services.len()),
            run_queue: VecDeque::with_capacity(bundle.services.len()),
            summary: RunSummary::default(),
            announced_ready: false,
        };
        kernel.log(&format!(
            "system `{}`: {} services in the bundle",
            bundle.kernel.system_name,
            bundle.services.len()
        ));
        for image in &bundle.services {
            let started_at = kernel.platform.now_ns();
            match Service::load(image, Arc::clone(&kernel.platform)) {
                Ok(service) => {
                    let micros = kernel.platform.now_ns().saturating_sub(started_at) / 1000;
                    kernel.log(&format!(
                        "loaded service {} ({} bytes, {micros} us)",
                        image.name,
                        image.module.len()
                    ));
                    kernel.run_queue.push_back(kernel.services.len());
                    kernel.services.push(service);
                }
                Err(error) => {
                    kernel.summary.failed_to_load += 1;
                    kernel.log(&format!("service {} failed to load: {error}", image.name));
                }
            }
        }
        Ok((kernel, bundle.kernel))
    }

    /// The loaded services, in bundle order.
    #[must_use]
    pub fn services(&self) -> &[Service] {
        &self.services
    }

    /// Runs services until none is runnable.
    pub fn run(&mut self) -> RunSummary {
        self.announce_ready_once();
        while let Some(index) = self.run_queue.pop_front() {
            let Some(service) = self.services.get_mut(index) else {
                continue;
            };
            let outcome = service.run_slice();
            let name = service.name();
            let message = match outcome {
                SliceOutcome::Preempted => {
                    self.run_queue.push_back(index);
                    None
                }
                SliceOutcome::Exited => {
                    self.summary.exited += 1;
                    Some(format!("service {name} exited"))
                }
                SliceOutcome::Faulted(reason) => {
                    self.summary.faulted += 1;
                    Some(format!("service {name} faulted: {reason}"))
                }
            };
            if let Some(message) = message {
                self.log(&message);
            }
            self.announce_ready_once();
        }
        self.summary
    }

    /// Logs `system ready` once, as soon as every loaded service has had the CPU.
    fn announce_ready_once(&mut self) {
        if self.announced_ready || !self.services.iter().all(Service::started) {
            return;
        }
        self.announced_ready = true;
        self.log(&format!("system ready ({} services)", self.services.len()));
    }

    fn log(&self, message: &str) {
        self.platform.console_write(&format!("atoll: {message}\n"));
    }
}

#[cfg(test)]
mod tests;
