//! `info`: the system and per-service records, and the states the host sees.

use super::*;
use atoll_abi::trace::Line;

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
                let mut record = self.service_info(index, Some(id)).ok_or(Error::NotFound)?;
                if !self.observes(id) {
                    // How often and how long a service runs and waits tells
                    // of its traffic: for observers only.
                    record.slices = 0;
                    record.syscalls = 0;
                    record.blocked_receive_ns = 0;
                    record.blocked_reply_ns = 0;
                    record.blocked_sleep_ns = 0;
                }
                postcard::to_allocvec(&record)
            }
            atoll_abi::info::ENDPOINT | atoll_abi::info::TRACE if !self.observes(id) => {
                return Err(Error::NotPermitted);
            }
            atoll_abi::info::ENDPOINT => {
                let index = usize::try_from(index).map_err(|_| Error::NotFound)?;
                let record = self.endpoint_info(index).ok_or(Error::NotFound)?;
                postcard::to_allocvec(&record)
            }
            atoll_abi::info::TRACE => {
                let trace = self.sched.trace_ref();
                let (recorded, overwritten) = trace.counts();
                postcard::to_allocvec(&atoll_abi::info::TraceInfo {
                    on: trace.is_on(),
                    held: u32::try_from(trace.held()).unwrap_or(u32::MAX),
                    capacity: crate::trace::CAPACITY as u32,
                    recorded,
                    overwritten,
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

impl Core {
    /// Whether service `id` may read the counters (endpoint records, the
    /// trace ring's state, the per-service run and wait counters): the
    /// supervisor, and services it gave its endpoint to (the shell, a
    /// benchmark client). Holding the supervisor's endpoint is already the
    /// right to stop and restart services; reading how they run goes with it.
    fn observes(&self, id: ServiceId) -> bool {
        let Some(supervisor) = self.supervisor else {
            return false;
        };
        id == supervisor
            || self.services.get(id).is_some_and(|slot| {
                slot.handles.iter().any(|handle| {
                    self.endpoints
                        .get(handle.endpoint)
                        .is_some_and(|endpoint| endpoint.owner == Some(supervisor))
                })
            })
    }

    /// Service `index`'s record; `asking` is the service on the CPU (which
    /// `info` reports running).
    pub(super) fn service_info(
        &self,
        index: usize,
        asking: Option<ServiceId>,
    ) -> Option<atoll_abi::info::ServiceInfo> {
        let slot = self.services.get(index)?;
        let state = self.sched.state(index)?;
        let [blocked_receive_ns, blocked_reply_ns, blocked_sleep_ns] = self.sched.blocked_ns(index);
        Some(atoll_abi::info::ServiceInfo {
            name: slot.image.name.clone(),
            state: if asking == Some(index) {
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
            slices: slot.stats.slices,
            syscalls: slot.stats.syscalls,
            faults: slot.stats.faults,
            blocked_receive_ns,
            blocked_reply_ns,
            blocked_sleep_ns,
        })
    }

    /// Endpoint `index`'s record.
    pub(super) fn endpoint_info(&self, index: usize) -> Option<atoll_abi::info::EndpointInfo> {
        let endpoint = self.endpoints.get(index)?;
        let stats = endpoint.stats();
        Some(atoll_abi::info::EndpointInfo {
            name: endpoint.name.clone(),
            provider: endpoint.owner.and_then(|owner| u32::try_from(owner).ok()),
            queue_len: u32::try_from(endpoint.len()).unwrap_or(u32::MAX),
            queue_depth: u32::try_from(endpoint.depth()).unwrap_or(u32::MAX),
            queued: stats.queued,
            queue_full: stats.queue_full,
            peer_gone: stats.peer_gone,
            deepest: stats.deepest,
        })
    }

    /// The trace ring as dump lines ([`atoll_abi::trace`]): a header, the
    /// services' and endpoints' names, the records oldest first, an end line.
    pub(super) fn trace_dump(&self) -> Vec<String> {
        let trace = self.sched.trace_ref();
        let records = trace.records();
        let (_, overwritten) = trace.counts();
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let mut lines = Vec::with_capacity(records.len() + self.services.len() + 8);
        let begin = Line::Begin {
            records: records.len() as u64,
            overwritten,
            services: count(self.services.len()),
            endpoints: count(self.endpoints.len()),
        };
        lines.push(begin.to_line());
        for (index, slot) in self.services.iter().enumerate() {
            let (index, name) = (count(index), slot.image.name.clone());
            lines.push(Line::Service { index, name }.to_line());
        }
        for (index, endpoint) in self.endpoints.iter().enumerate() {
            let (index, name) = (count(index), endpoint.name.clone());
            let provider = endpoint.owner.map(count);
            let line = Line::Endpoint {
                index,
                provider,
                name,
            };
            lines.push(line.to_line());
        }
        lines.extend(records.iter().map(atoll_abi::trace::Record::to_line));
        lines.push(
            Line::End {
                records: records.len() as u64,
            }
            .to_line(),
        );
        lines
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
