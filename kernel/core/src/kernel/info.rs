//! `info`: the system and per-service records, and the states the host sees.

use super::*;

impl Core {
    /// Names and states of the loaded services, in bundle order.
    pub(super) fn service_states(&self) -> Vec<(String, ServiceState, ServiceStats)> {
        self.services
            .iter()
            .zip(self.sched.states())
            .map(|(slot, state)| (slot.image.name.clone(), state.clone(), slot.stats))
            .collect()
    }

    /// `info`: writes a system or service record into the caller's buffer.
    pub(super) fn info(
        &mut self,
        id: ServiceId,
        kind: i32,
        index: i32,
        buffer: GuestSlice,
    ) -> Result<Then, Error> {
        let record = match kind {
            atoll_abi::info::SYSTEM => postcard::to_allocvec(&atoll_abi::info::SystemInfo {
                system_name: self.system_name.clone(),
                uptime_ns: self.platform.now_ns(),
                services: u32::try_from(self.services.len()).unwrap_or(u32::MAX),
                heap_in_use: self.platform.heap_in_use().unwrap_or(0) as u64,
                heap_available: self.heap.available() as u64,
                queued_bytes: self.queued_bytes as u64,
                message_budget: self.message_budget as u64,
                messages: self.messages,
                interrupts: self.interrupts,
            }),
            atoll_abi::info::SERVICE => {
                let index = usize::try_from(index).map_err(|_| Error::NotFound)?;
                let slot = self.services.get(index).ok_or(Error::NotFound)?;
                let state = self.sched.state(index).ok_or(Error::NotFound)?;
                postcard::to_allocvec(&atoll_abi::info::ServiceInfo {
                    name: slot.image.name.clone(),
                    // The caller is the one service on the CPU.
                    state: if index == id {
                        atoll_abi::info::ServiceState::Running
                    } else {
                        info_state(state)
                    },
                    memory_bytes: slot.service.as_deref().map_or(0, Service::memory_size) as u64,
                    fuel_used: slot.service.as_deref().map_or(0, Service::fuel_used),
                    sent: slot.stats.sent,
                    received: slot.stats.received,
                    restarts: slot.restarts,
                    swaps: slot.swaps,
                    dma_bytes: slot.service.as_deref().map_or(0, Service::dma_bytes) as u64,
                })
            }
            _ => return Err(Error::InvalidArgument),
        }
        .map_err(|_| Error::InvalidArgument)?;
        let len = i32::try_from(record.len()).map_err(|_| Error::TooLarge)?;
        let slot = self.services.get_mut(id).ok_or(Error::BadHandle)?;
        let service = slot.service.as_mut().ok_or(Error::BadHandle)?;
        service.write_memory(buffer, &record)?;
        Ok(Then::Continue(len))
    }
}

/// A service state as `info` reports it.
fn info_state(state: &ServiceState) -> atoll_abi::info::ServiceState {
    use atoll_abi::info::ServiceState as Info;
    match state {
        ServiceState::Ready => Info::Ready,
        ServiceState::Blocked(Wait::Receive { .. }) => Info::Receiving,
        ServiceState::Blocked(Wait::Reply { .. }) => Info::Calling,
        ServiceState::Blocked(Wait::Sleep { .. }) => Info::Sleeping,
        ServiceState::Exited => Info::Exited,
        ServiceState::Faulted(_) => Info::Faulted,
        ServiceState::Stopped => Info::Stopped,
    }
}
