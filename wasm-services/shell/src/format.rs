//! Text for people: aligned tables, byte counts and durations.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

/// How a column's cells line up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A table with a header row, columns padded to their widest cell and two
/// blanks apart; every line ends in `\n` and none has trailing blanks.
pub fn table(columns: &[(&str, Align)], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = columns
        .iter()
        .map(|(header, _)| header.chars().count())
        .collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let header: Vec<&str> = columns.iter().map(|(header, _)| *header).collect();
    line(&mut text, columns, &widths, header.iter().copied());
    for row in rows {
        line(&mut text, columns, &widths, row.iter().map(String::as_str));
    }
    text
}

fn line<'a>(
    text: &mut String,
    columns: &[(&str, Align)],
    widths: &[usize],
    cells: impl Iterator<Item = &'a str>,
) {
    let start = text.len();
    for (index, ((cell, (_, align)), width)) in cells.zip(columns).zip(widths).enumerate() {
        if index > 0 {
            text.push_str("  ");
        }
        let _ = match align {
            Align::Left => write!(text, "{cell:<width$}"),
            Align::Right => write!(text, "{cell:>width$}"),
        };
    }
    let end = text.get(start..).map_or(0, |line| line.trim_end().len());
    text.truncate(start + end);
    text.push('\n');
}

/// `n` bytes as B, KiB, MiB or GiB with one decimal.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 3] = ["KiB", "MiB", "GiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut unit = 0;
    let mut scale: u64 = 1024;
    while unit + 1 < UNITS.len() && n >= scale.saturating_mul(1024) {
        scale = scale.saturating_mul(1024);
        unit += 1;
    }
    let tenths = (u128::from(n) * 10 + u128::from(scale) / 2) / u128::from(scale);
    let name = UNITS.get(unit).copied().unwrap_or("GiB");
    format!("{}.{} {name}", tenths / 10, tenths % 10)
}

/// A duration in nanoseconds as `1h 02m 03.456s`, leaving out the leading
/// zero units.
pub fn duration(ns: u64) -> String {
    let millis = ns / 1_000_000;
    let (hours, minutes) = (millis / 3_600_000, millis / 60_000 % 60);
    let (seconds, millis) = (millis / 1000 % 60, millis % 1000);
    if hours > 0 {
        format!("{hours}h {minutes:02}m {seconds:02}.{millis:03}s")
    } else if minutes > 0 {
        format!("{minutes}m {seconds:02}.{millis:03}s")
    } else {
        format!("{seconds}.{millis:03}s")
    }
}

/// A PCI address (`bus << 8 | device << 3 | function`) as `bb:dd.f`.
pub fn pci_address(address: u16) -> String {
    format!(
        "{:02x}:{:02x}.{}",
        address >> 8,
        (address >> 3) & 0x1f,
        address & 0x7
    )
}

/// The name of a PCI base class.
pub fn pci_class(class: u8, subclass: u8) -> &'static str {
    match (class, subclass) {
        (0x01, 0x01) => "IDE controller",
        (0x01, 0x06) => "SATA controller",
        (0x01, 0x08) => "NVMe controller",
        (0x01, _) => "storage controller",
        (0x02, _) => "network controller",
        (0x03, _) => "display controller",
        (0x04, _) => "multimedia controller",
        (0x05, _) => "memory controller",
        (0x06, 0x00) => "host bridge",
        (0x06, 0x01) => "ISA bridge",
        (0x06, 0x04) => "PCI bridge",
        (0x06, _) => "bridge",
        (0x07, _) => "communication controller",
        (0x08, _) => "system peripheral",
        (0x0c, 0x03) => "USB controller",
        (0x0c, 0x05) => "SMBus controller",
        (0x0c, _) => "serial bus controller",
        (0xff, _) => "unassigned",
        _ => "other",
    }
}

/// Appends the text of `bytes` to `out`, with U+FFFD for each malformed
/// sequence, and returns how many bytes it used: an incomplete character at
/// the end is left for the next call unless `end` says no more bytes follow.
pub fn decode_lossy(bytes: &[u8], end: bool, out: &mut String) -> usize {
    let mut rest = bytes;
    loop {
        match core::str::from_utf8(rest) {
            Ok(text) => {
                out.push_str(text);
                return bytes.len();
            }
            Err(error) => {
                let (valid, after) = rest.split_at(error.valid_up_to());
                out.push_str(core::str::from_utf8(valid).unwrap_or_default());
                match error.error_len() {
                    Some(len) => {
                        out.push(char::REPLACEMENT_CHARACTER);
                        rest = after.get(len..).unwrap_or_default();
                    }
                    None if end => {
                        out.push(char::REPLACEMENT_CHARACTER);
                        return bytes.len();
                    }
                    None => return bytes.len() - after.len(),
                }
            }
        }
    }
}

/// A file system error, for people.
pub fn fs_error(error: &atoll_protocols::fs::Error) -> String {
    use atoll_protocols::fs::Error;
    String::from(match error {
        Error::NotFound => "not found",
        Error::Exists => "already exists",
        Error::NotADirectory => "not a directory",
        Error::IsADirectory => "is a directory",
        Error::InvalidName => "invalid name",
        Error::NoSpace => "no space left on the volume",
        Error::Device => "disk error",
        Error::NoVolume => "no FAT volume mounted",
        Error::Other(text) => text,
        Error::NotEmpty => "directory not empty",
        Error::NameTooLong => "name too long",
        Error::NotStaged => "the pieces of a staged write were dropped",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    #[test]
    fn tables_align_their_columns() {
        let rows = vec![
            vec![
                "supervisor".to_string(),
                "receiving".to_string(),
                "64".to_string(),
            ],
            vec!["kv".to_string(), "ready".to_string(), "1088".to_string()],
        ];
        let text = table(
            &[
                ("NAME", Align::Left),
                ("STATE", Align::Left),
                ("MEM KiB", Align::Right),
            ],
            &rows,
        );
        assert_eq!(
            text,
            "NAME        STATE      MEM KiB\n\
             supervisor  receiving       64\n\
             kv          ready         1088\n"
        );
    }

    #[test]
    fn trailing_blanks_are_trimmed() {
        let rows = vec![vec!["a".to_string(), String::new()]];
        let text = table(&[("X", Align::Right), ("LONG", Align::Left)], &rows);
        assert_eq!(text, "X  LONG\na\n");
    }

    #[test]
    fn byte_counts() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1.0 KiB");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(64 << 20), "64.0 MiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
        assert_eq!(bytes(5 << 40), "5120.0 GiB");
        assert_eq!(bytes(u64::MAX), "17179869184.0 GiB");
    }

    #[test]
    fn durations() {
        assert_eq!(duration(0), "0.000s");
        assert_eq!(duration(1_234_567_890), "1.234s");
        assert_eq!(duration(61_000_000_000), "1m 01.000s");
        assert_eq!(duration(3_723_004_000_000), "1h 02m 03.004s");
    }

    #[test]
    fn lossy_decoding_keeps_split_characters_for_later() {
        let text = "né".as_bytes();
        let mut out = String::new();
        // "n" and the first byte of "é": the byte waits.
        assert_eq!(decode_lossy(&text[..2], false, &mut out), 1);
        assert_eq!(out, "n");
        assert_eq!(decode_lossy(&text[1..], false, &mut out), 2);
        assert_eq!(out, "né");
        out.clear();
        assert_eq!(decode_lossy(b"a\xffb\xc3", false, &mut out), 3);
        assert_eq!(out, "a\u{fffd}b");
        out.clear();
        assert_eq!(decode_lossy(b"a\xc3", true, &mut out), 2);
        assert_eq!(out, "a\u{fffd}");
    }

    #[test]
    fn pci_names() {
        assert_eq!(pci_address(0x00f9), "00:1f.1");
        assert_eq!(pci_address(0x0118), "01:03.0");
        assert_eq!(pci_class(0x06, 0x00), "host bridge");
        assert_eq!(pci_class(0x42, 0x00), "other");
    }
}

/// A dotted IPv4 address; `None` unless exactly four decimal bytes.
#[must_use]
pub fn parse_ipv4(text: &str) -> Option<[u8; 4]> {
    let mut address = [0u8; 4];
    let mut parts = text.split('.');
    for byte in &mut address {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *byte = part.parse().ok()?;
    }
    parts.next().is_none().then_some(address)
}

/// `a.b.c.d`.
#[must_use]
pub fn ipv4(address: [u8; 4]) -> String {
    let [a, b, c, d] = address;
    alloc::format!("{a}.{b}.{c}.{d}")
}

/// `aa:bb:cc:dd:ee:ff`.
#[must_use]
pub fn mac(address: [u8; 6]) -> String {
    let [a, b, c, d, e, f] = address;
    alloc::format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

#[cfg(test)]
mod network_tests {
    use super::*;

    #[test]
    fn addresses_parse_and_print() {
        assert_eq!(parse_ipv4("10.0.2.2"), Some([10, 0, 2, 2]));
        assert_eq!(parse_ipv4("10.0.2"), None);
        assert_eq!(parse_ipv4("10.0.2.256"), None);
        assert_eq!(parse_ipv4("10.0.2.2.1"), None);
        assert_eq!(parse_ipv4("a.b.c.d"), None);
        assert_eq!(parse_ipv4("+1.0.0.0"), None);
        assert_eq!(ipv4([127, 0, 0, 1]), "127.0.0.1");
        assert_eq!(mac([0x52, 0x54, 0, 0x12, 0x34, 0x56]), "52:54:00:12:34:56");
    }
}
