//! The CMOS real-time clock, read once at boot for WASI's wall clock, and the
//! CPU's random-number instruction for service generator seeds.
//!
//! The RTC keeps calendar time in BCD or binary, 12- or 24-hour, as status
//! register B says. It is read twice until two reads agree, so an update in
//! between cannot tear it. Years are taken as 2000-2099 (no century register).

use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::instructions::port::Port;

static BOOT_WALL_CLOCK_NS: AtomicU64 = AtomicU64::new(0);

/// Reads the RTC and remembers the wall-clock time at boot.
pub fn init() {
    let seconds = read_stable().map_or(0, |time| time.unix_seconds());
    let since_boot = crate::clock::now_ns();
    BOOT_WALL_CLOCK_NS.store(
        seconds
            .saturating_mul(1_000_000_000)
            .saturating_sub(since_boot),
        Ordering::Relaxed,
    );
}

/// Nanoseconds since the Unix epoch at boot (0 if the RTC could not be read).
pub fn boot_wall_clock_ns() -> u64 {
    BOOT_WALL_CLOCK_NS.load(Ordering::Relaxed)
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct CalendarTime {
    second: u8,
    minute: u8,
    hour: u8,
    day: u8,
    month: u8,
    year: u8,
}

impl CalendarTime {
    /// Seconds since 1970-01-01 UTC (the RTC is kept in UTC by QEMU).
    fn unix_seconds(self) -> u64 {
        let year = 2000 + i64::from(self.year);
        let month = i64::from(self.month.clamp(1, 12));
        let day = i64::from(self.day.clamp(1, 31));
        // Days from civil date (Howard Hinnant's algorithm).
        let shifted = if month <= 2 { year - 1 } else { year };
        let era = shifted.div_euclid(400);
        let year_of_era = shifted - era * 400;
        let month_index = (month + 9) % 12;
        let day_of_year = (153 * month_index + 2) / 5 + day - 1;
        let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        let days = era * 146_097 + day_of_era - 719_468;
        let seconds = days * 86_400
            + i64::from(self.hour) * 3_600
            + i64::from(self.minute) * 60
            + i64::from(self.second);
        u64::try_from(seconds).unwrap_or(0)
    }
}

fn cmos(register: u8) -> u8 {
    let mut index = Port::<u8>::new(0x70);
    let mut data = Port::<u8>::new(0x71);
    // SAFETY: ports 0x70/0x71 select and read a CMOS register (no memory
    // effect; reading the clock and status registers has no side effect).
    // Bit 7 of the index is the NMI mask, which is write-only: writing 0
    // there *unmasks* NMIs, whatever the firmware had set. We rely on the
    // firmware running with NMIs unmasked (SeaBIOS and OVMF do) and on the
    // kernel's NMI handler (interrupts.rs), which reports and exits, being
    // installed before this runs. Ports 0x70-0x71 are reserved from every
    // grant (RESERVED_PORTS), so no driver can change the index between the
    // two accesses; this runs once at boot, before any service.
    unsafe {
        index.write(register & 0x7f);
        data.read()
    }
}

fn read_once() -> Option<CalendarTime> {
    // Wait out an update in progress (status A bit 7), for at most a while.
    let mut spins = 0u32;
    while cmos(0x0a) & 0x80 != 0 {
        spins += 1;
        if spins > 1_000_000 {
            return None;
        }
    }
    let status_b = cmos(0x0b);
    let binary = status_b & 0x04 != 0;
    let hour_24 = status_b & 0x02 != 0;
    let decode = |value: u8| {
        if binary {
            value
        } else {
            (value & 0x0f) + (value >> 4) * 10
        }
    };
    let raw_hour = cmos(0x04);
    let pm = raw_hour & 0x80 != 0;
    let mut hour = decode(raw_hour & 0x7f);
    if !hour_24 {
        hour %= 12;
        if pm {
            hour += 12;
        }
    }
    Some(CalendarTime {
        second: decode(cmos(0x00)),
        minute: decode(cmos(0x02)),
        hour,
        day: decode(cmos(0x07)),
        month: decode(cmos(0x08)),
        year: decode(cmos(0x09)),
    })
}

fn read_stable() -> Option<CalendarTime> {
    let mut last = read_once()?;
    for _ in 0..5 {
        let next = read_once()?;
        if next == last {
            return Some(next);
        }
        last = next;
    }
    Some(last)
}

/// A 64-bit seed: RDRAND when the CPU has it, mixed with the TSC.
pub fn random_seed() -> u64 {
    let tsc = crate::clock::now_ns();
    let hardware = x86_64::instructions::random::RdRand::new()
        .and_then(|rdrand| rdrand.get_u64())
        .unwrap_or(0);
    tsc.rotate_left(32) ^ hardware
}
