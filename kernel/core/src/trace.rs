//! The trace ring: a fixed number of compact event records
//! ([`atoll_abi::trace::Record`], 24 bytes), the newest overwriting the oldest.
//!
//! What is here: turning recording on and off, recording, the counts of what
//! was recorded and overwritten, and reading the ring oldest first. Its fields
//! are private: only this module moves the write position. What is not here:
//! deciding what to record (the kernel's loop, messages and lifecycle do) and
//! sending the ring to the host (`kernel::swap`, the control channel).
//!
//! Shape (docs/design.md, "The trace ring"): the memory is taken once, when
//! tracing is first turned on, and never grows, so recording allocates
//! nothing and cannot fail; when off, recording is one predictable branch on
//! a field the caller already holds, and reads no clock. The same event
//! coming again right after itself is counted on the record before instead of
//! taking a slot (a service refused in a loop would otherwise wipe the
//! ring; an empty `receive(timeout 0)` records nothing). With the cargo feature `no-trace` recording compiles to nothing (the
//! build the overhead is measured against).

use alloc::vec::Vec;
use atoll_abi::trace::{Kind, Record};

/// Records the ring holds: 4,096 × 24 bytes = 96 KiB, taken when tracing is
/// first turned on.
pub const CAPACITY: usize = 4096;

/// The ring.
#[derive(Debug, Default)]
pub struct Trace {
    on: bool,
    records: Vec<Record>,
    /// Where the next record goes, once the ring is full.
    next: usize,
    recorded: u64,
    overwritten: u64,
}

/// Why tracing could not be turned on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoMemory;

impl Trace {
    /// Bytes turning recording on would take from the heap now: the ring's
    /// memory the first time, nothing after (the caller admits them).
    pub fn bytes_to_turn_on(&self) -> usize {
        if cfg!(feature = "no-trace") {
            return 0;
        }
        CAPACITY.saturating_sub(self.records.capacity()) * core::mem::size_of::<Record>()
    }

    /// Turns recording on (taking the ring's memory the first time) or off;
    /// what the ring holds stays either way.
    pub fn set(&mut self, on: bool) -> Result<(), NoMemory> {
        if cfg!(feature = "no-trace") {
            return Ok(());
        }
        if on && self.records.capacity() < CAPACITY {
            self.records
                .try_reserve_exact(CAPACITY - self.records.len())
                .map_err(|_| NoMemory)?;
        }
        self.on = on;
        Ok(())
    }

    /// Whether events are recorded.
    #[inline]
    #[must_use]
    pub fn is_on(&self) -> bool {
        self.on
    }

    /// Records an event if tracing is on; `now` is called only then.
    #[inline]
    pub fn record(
        &mut self,
        now: impl FnOnce() -> u64,
        kind: Kind,
        service: usize,
        peer: usize,
        token: u32,
        detail: u32,
    ) {
        #[cfg(not(feature = "no-trace"))]
        if self.on {
            self.push(Record {
                time_ns: now(),
                service: short(service),
                peer: short(peer),
                token,
                detail,
                repeats: 0,
                kind,
            });
        }
        #[cfg(feature = "no-trace")]
        let _ = (now, kind, service, peer, token, detail);
    }

    #[cold]
    #[inline(never)]
    #[cfg_attr(
        feature = "no-trace",
        allow(dead_code, reason = "recording is compiled out")
    )]
    fn push(&mut self, record: Record) {
        self.recorded += 1;
        let last = match self.next.checked_sub(1) {
            Some(last) => last,
            None if self.records.len() == CAPACITY => CAPACITY - 1,
            None => self.records.len().wrapping_sub(1),
        };
        if let Some(previous) = self.records.get_mut(last)
            && previous.repeats_as(&record)
            && previous.repeats < u16::MAX
        {
            previous.repeats += 1;
            return;
        }
        if self.records.len() < CAPACITY {
            self.records.push(record);
            return;
        }
        if let Some(slot) = self.records.get_mut(self.next) {
            *slot = record;
            self.overwritten += 1;
        }
        self.next = (self.next + 1) % CAPACITY;
    }

    /// The records held, oldest first.
    #[must_use]
    pub fn records(&self) -> Vec<Record> {
        let (newer, older) = self.records.split_at(self.next.min(self.records.len()));
        older.iter().chain(newer).copied().collect()
    }

    /// Events recorded since boot (repeats included) and records overwritten.
    #[must_use]
    pub fn counts(&self) -> (u64, u64) {
        (self.recorded, self.overwritten)
    }

    /// Records held now.
    #[must_use]
    pub fn held(&self) -> usize {
        self.records.len()
    }
}

/// A service or endpoint index as a record holds it (the kernel: `u16::MAX`).
#[cfg_attr(
    feature = "no-trace",
    allow(dead_code, reason = "recording is compiled out")
)]
fn short(index: usize) -> u16 {
    u16::try_from(index).unwrap_or(atoll_abi::trace::KERNEL_PEER)
}

#[cfg(all(test, not(feature = "no-trace")))]
mod tests {
    use super::*;

    fn record(trace: &mut Trace, time: u64, kind: Kind, service: usize) {
        trace.record(|| time, kind, service, 1, 0, 0);
    }

    #[test]
    fn nothing_is_recorded_while_off_and_the_clock_is_not_read() {
        let mut trace = Trace::default();
        trace.record(|| panic!("the clock was read"), Kind::Send, 0, 1, 0, 0);
        assert_eq!(trace.held(), 0);
        assert_eq!(trace.counts(), (0, 0));
        trace.set(true).unwrap();
        record(&mut trace, 5, Kind::Send, 0);
        trace.set(false).unwrap();
        record(&mut trace, 6, Kind::Send, 1);
        assert_eq!(trace.records().len(), 1);
        assert_eq!(trace.records()[0].time_ns, 5);
    }

    #[test]
    fn the_ring_wraps_keeping_the_newest_oldest_first() {
        let mut trace = Trace::default();
        trace.set(true).unwrap();
        let total = CAPACITY as u64 * 2 + 17;
        for time in 0..total {
            // Alternating services: no record repeats the one before.
            record(&mut trace, time, Kind::Wake, (time % 2) as usize);
        }
        let records = trace.records();
        assert_eq!(records.len(), CAPACITY);
        let times: Vec<u64> = records.iter().map(|record| record.time_ns).collect();
        let expected: Vec<u64> = (total - CAPACITY as u64..total).collect();
        assert_eq!(times, expected);
        assert_eq!(trace.counts(), (total, total - CAPACITY as u64));
        assert_eq!(trace.held(), CAPACITY);
    }

    #[test]
    fn repeats_are_counted_on_one_record_even_across_the_wrap() {
        let mut trace = Trace::default();
        trace.set(true).unwrap();
        for time in 0..CAPACITY as u64 {
            record(&mut trace, time, Kind::Wake, (time % 2) as usize);
        }
        // The ring is full and the next slot is 0: the last record is at
        // the end of the storage.
        let last = trace.records()[CAPACITY - 1];
        for time in 0..5 {
            record(
                &mut trace,
                100_000 + time,
                last.kind,
                usize::from(last.service),
            );
        }
        let records = trace.records();
        assert_eq!(records.len(), CAPACITY);
        assert_eq!(records[CAPACITY - 1].repeats, 5);
        assert_eq!(records[CAPACITY - 1].time_ns, last.time_ns);
        assert_eq!(trace.counts(), (CAPACITY as u64 + 5, 0));
        // Something else breaks the run; the same event after it is new.
        record(&mut trace, 200_000, Kind::Fault, 7);
        record(&mut trace, 200_001, last.kind, usize::from(last.service));
        record(&mut trace, 200_002, last.kind, usize::from(last.service));
        let records = trace.records();
        assert_eq!(records[CAPACITY - 1].repeats, 1);
        assert_eq!(records[CAPACITY - 1].time_ns, 200_001);
        assert_eq!(records[CAPACITY - 2].kind, Kind::Fault);
        assert_eq!(trace.counts(), (CAPACITY as u64 + 8, 2));
    }

    #[test]
    fn a_different_token_or_detail_is_a_new_record() {
        let mut trace = Trace::default();
        trace.set(true).unwrap();
        trace.record(|| 1, Kind::Call, 0, 1, 7, 0);
        trace.record(|| 2, Kind::Call, 0, 1, 8, 0);
        trace.record(|| 3, Kind::Send, 0, 1, 0, 16);
        trace.record(|| 4, Kind::Send, 0, 1, 0, 17);
        assert_eq!(trace.records().len(), 4);
        assert!(trace.records().iter().all(|record| record.repeats == 0));
    }
}
