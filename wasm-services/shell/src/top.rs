//! `top`: per-service CPU share, messages per second and memory between two
//! samples of the kernel's counters, as the rows of a table. Pure, so the
//! arithmetic tests on the host; the shell takes the samples and redraws.
//!
//! CPU share is the service's share of the interpreter fuel burnt between the
//! samples (fuel is what a slice is measured in: one unit per Wasm
//! instruction, plus the kernel's copying charged to the service).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// One service's counters at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    pub name: String,
    pub state: &'static str,
    pub fuel_used: u64,
    /// Messages sent plus received.
    pub messages: u64,
    pub memory_bytes: u64,
}

/// Clears the screen and puts the cursor top left (ANSI).
pub const CLEAR: &str = "\x1b[H\x1b[2J";

/// The column headers of [`rows`].
pub const COLUMNS: [&str; 5] = ["NAME", "STATE", "CPU %", "MSG/S", "MEM KiB"];

/// Rows for the services in `after`, busiest first; `before` is matched by
/// name (a service new since then counts from zero), `elapsed_ns` apart.
#[must_use]
pub fn rows(before: &[Sample], after: &[Sample], elapsed_ns: u64) -> Vec<[String; 5]> {
    let previous = |name: &str| before.iter().find(|sample| sample.name == name);
    let deltas: Vec<(u64, u64)> = after
        .iter()
        .map(|sample| {
            let old = previous(&sample.name);
            // A restarted service's counters start again: count from zero.
            let fuel = match old {
                Some(old) if old.fuel_used <= sample.fuel_used => sample.fuel_used - old.fuel_used,
                _ => sample.fuel_used,
            };
            let messages = match old {
                Some(old) if old.messages <= sample.messages => sample.messages - old.messages,
                _ => sample.messages,
            };
            (fuel, messages)
        })
        .collect();
    let total_fuel: u64 = deltas.iter().map(|(fuel, _)| fuel).sum();
    let mut order: Vec<usize> = (0..after.len()).collect();
    order.sort_by_key(|&index| core::cmp::Reverse(deltas.get(index).map_or(0, |d| d.0)));
    order
        .into_iter()
        .filter_map(|index| {
            let sample = after.get(index)?;
            let (fuel, messages) = deltas.get(index).copied()?;
            let tenths = if total_fuel == 0 {
                0
            } else {
                (u128::from(fuel) * 1000 + u128::from(total_fuel) / 2) / u128::from(total_fuel)
            };
            let per_second = if elapsed_ns == 0 {
                0
            } else {
                u128::from(messages) * 1_000_000_000 / u128::from(elapsed_ns)
            };
            Some([
                sample.name.clone(),
                String::from(sample.state),
                format!("{}.{}", tenths / 10, tenths % 10),
                format!("{per_second}"),
                format!("{}", sample.memory_bytes / 1024),
            ])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn sample(name: &str, fuel_used: u64, messages: u64) -> Sample {
        Sample {
            name: name.into(),
            state: "ready",
            fuel_used,
            messages,
            memory_bytes: 131_072,
        }
    }

    #[test]
    fn shares_rates_and_order() {
        let before = vec![sample("a", 100, 10), sample("b", 1000, 0)];
        let after = vec![
            sample("a", 400, 30),
            sample("b", 1100, 0),
            sample("new", 0, 4),
        ];
        // Half a second apart: a burnt 300 of 400 fuel, moved 20 messages.
        let rows = rows(&before, &after, 500_000_000);
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[0],
            ["a", "ready", "75.0", "40", "128"].map(String::from)
        );
        assert_eq!(
            rows[1],
            ["b", "ready", "25.0", "0", "128"].map(String::from)
        );
        assert_eq!(
            rows[2],
            ["new", "ready", "0.0", "8", "128"].map(String::from)
        );
    }

    #[test]
    fn restarted_counters_and_idle_systems_do_not_underflow() {
        let before = vec![sample("a", 500, 9)];
        let after = vec![sample("a", 50, 1)];
        let rows = rows(&before, &after, 0);
        assert_eq!(
            rows[0],
            ["a", "ready", "100.0", "0", "128"].map(String::from)
        );
        let idle = super::rows(&after, &after, 1_000_000_000);
        assert_eq!(idle[0][2], "0.0");
    }
}
