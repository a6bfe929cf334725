//! Directory entries this service writes itself (no I/O here): long-name
//! (VFAT) entries, their checksum, the 8.3 alias of a long name, and the
//! FAT date and time of a moment.
//!
//! embedded-sdmmc reads long names but writes only 8.3 ones; a file or
//! directory whose name is not a valid 8.3 name is created by embedded-sdmmc
//! under an alias (`ALONGF~1.TXT`) and then given its long-name entries here.

use alloc::string::String;
use alloc::vec::Vec;

/// Bytes of one directory entry.
pub const ENTRY: usize = 32;
/// The attribute byte of a long-name entry.
pub const LONG_NAME_ATTRIBUTE: u8 = 0x0f;
/// The first byte of a deleted entry.
pub const DELETED: u8 = 0xe5;
/// UTF-16 units per long-name entry.
const UNITS_PER_ENTRY: usize = 13;
/// Where a long-name entry keeps its 13 units.
const UNIT_OFFSETS: [usize; UNITS_PER_ENTRY] = [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30];

/// Whether `name` is a valid 8.3 name as it stands (upper case, at most 8
/// and 3 characters, no characters FAT keeps out of short names). Lower case
/// is refused: a name in lower case keeps it through a long name.
#[must_use]
pub fn is_short(name: &str) -> bool {
    let (base, extension) = match name.rsplit_once('.') {
        Some((base, extension)) => (base, Some(extension)),
        None => (name, None),
    };
    let plain = |part: &str, most: usize| {
        !part.is_empty()
            && part.len() <= most
            && part.bytes().all(|byte| {
                byte.is_ascii_uppercase()
                    || byte.is_ascii_digit()
                    || b"!#$%&'()-@^_`{}~".contains(&byte)
            })
    };
    plain(base, 8) && extension.is_none_or(|extension| plain(extension, 3))
}

/// Whether `name` may be a long name: not empty, not `.` or `..`, at most
/// 255 UTF-16 units, none of the characters FAT forbids, not ending in a
/// space or dot.
#[must_use]
pub fn is_valid_long(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.encode_utf16().count() <= 255
        && !name.ends_with([' ', '.'])
        && !name
            .chars()
            .any(|c| (c as u32) < 0x20 || "\"*/:<>?\\|".contains(c))
}

/// The 11 bytes of an 8.3 alias for a long name, with `~number`: the name
/// upper-cased, with spaces, dots but the last, and characters short names
/// cannot hold dropped (`_` for those past ASCII), cut to fit.
#[must_use]
pub fn alias(name: &str, number: u32) -> [u8; 11] {
    let clean = |part: &str| -> Vec<u8> {
        part.chars()
            .filter(|c| *c != ' ' && *c != '.')
            .map(|c| {
                let upper = c.to_ascii_uppercase();
                if upper.is_ascii_uppercase()
                    || upper.is_ascii_digit()
                    || "!#$%&'()-@^_`{}~".contains(upper)
                {
                    upper as u8
                } else {
                    b'_'
                }
            })
            .collect()
    };
    let (base, extension) = match name.trim_start_matches('.').rsplit_once('.') {
        Some((base, extension)) => (clean(base), clean(extension)),
        None => (clean(name), Vec::new()),
    };
    let tail = alloc::format!("~{number}");
    let keep = 8usize.saturating_sub(tail.len()).min(base.len()).max(1);
    let mut bytes = [b' '; 11];
    let mut base: Vec<u8> = base.into_iter().take(keep).collect();
    if base.is_empty() {
        base.push(b'_');
    }
    base.extend_from_slice(tail.as_bytes());
    for (slot, byte) in bytes.iter_mut().zip(base.iter().take(8)) {
        *slot = *byte;
    }
    for (slot, byte) in bytes[8..].iter_mut().zip(extension.iter().take(3)) {
        *slot = *byte;
    }
    bytes
}

/// The alias as a string embedded-sdmmc accepts (`BASE.EXT`).
#[must_use]
pub fn alias_text(alias: &[u8; 11]) -> String {
    let base = core::str::from_utf8(&alias[..8]).unwrap_or("_").trim_end();
    let extension = core::str::from_utf8(&alias[8..]).unwrap_or("").trim_end();
    if extension.is_empty() {
        String::from(base)
    } else {
        alloc::format!("{base}.{extension}")
    }
}

/// The checksum of an 8.3 name that its long-name entries carry.
#[must_use]
pub fn checksum(short: &[u8]) -> u8 {
    short.iter().take(11).fold(0u8, |sum, byte| {
        (sum >> 1).wrapping_add(sum << 7).wrapping_add(*byte)
    })
}

/// The long-name entries of `name` for a short entry named `short`, in disk
/// order (the last part of the name first).
#[must_use]
pub fn long_entries(name: &str, short: &[u8]) -> Vec<[u8; ENTRY]> {
    let units: Vec<u16> = name.encode_utf16().collect();
    let count = units.len().div_ceil(UNITS_PER_ENTRY).max(1);
    let sum = checksum(short);
    let mut entries = Vec::with_capacity(count);
    for index in (0..count).rev() {
        let mut entry = [0u8; ENTRY];
        let sequence = (index + 1) as u8;
        entry[0] = if index + 1 == count {
            sequence | 0x40
        } else {
            sequence
        };
        entry[11] = LONG_NAME_ATTRIBUTE;
        entry[13] = sum;
        for (slot, offset) in UNIT_OFFSETS.iter().enumerate() {
            let position = index * UNITS_PER_ENTRY + slot;
            let unit = match position.cmp(&units.len()) {
                core::cmp::Ordering::Less => units.get(position).copied().unwrap_or(0xffff),
                core::cmp::Ordering::Equal => 0,
                core::cmp::Ordering::Greater => 0xffff,
            };
            if let Some(field) = entry.get_mut(*offset..offset + 2) {
                field.copy_from_slice(&unit.to_le_bytes());
            }
        }
        entries.push(entry);
    }
    entries
}

/// FAT's date and time fields for `seconds` since 1970-01-01 (years before
/// 1980 are stamped 1980-01-01).
#[must_use]
pub fn fat_date_time(seconds: u64) -> (u16, u16) {
    let days = seconds / 86_400;
    let in_day = seconds % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    if year < 1980 {
        return ((1 << 5) | 1, 0);
    }
    let date = (((year - 1980).min(127) << 9) | (month << 5) | day) as u16;
    let time = (((in_day / 3600) << 11) | (((in_day / 60) % 60) << 5) | ((in_day % 60) / 2)) as u16;
    (date, time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_names() {
        assert!(is_short("HELLO.TXT"));
        assert!(is_short("README"));
        assert!(!is_short("hello.txt"));
        assert!(!is_short("A long file name.txt"));
        assert!(!is_short("TOOLONGNAME.TXT"));
        assert!(!is_short("A.B.C"));
        assert!(is_valid_long("A long file name.txt"));
        assert!(!is_valid_long("a:b"));
        assert!(!is_valid_long(".."));
        assert!(!is_valid_long(&"x".repeat(256)));
        assert!(is_valid_long(&"x".repeat(255)));
    }

    #[test]
    fn aliases_look_like_windows_ones() {
        assert_eq!(&alias("A long file name.txt", 1), b"ALONGF~1TXT");
        assert_eq!(
            alias_text(&alias("A long file name.txt", 1)),
            "ALONGF~1.TXT"
        );
        assert_eq!(alias_text(&alias("notes", 12)), "NOTES~12");
        assert_eq!(alias_text(&alias("é.md", 1)), "_~1.MD");
    }

    #[test]
    fn long_entries_hold_the_name() {
        let short = alias("A long file name.txt", 1);
        let entries = long_entries("A long file name.txt", &short);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0][0], 0x42);
        assert_eq!(entries[1][0], 0x01);
        assert!(entries.iter().all(|entry| entry[11] == 0x0f));
        // 20 units: the second entry holds units 13..20, a NUL, then 0xffff.
        assert_eq!(&entries[1][1..3], &u16::from(b'A').to_le_bytes());
        assert_eq!(&entries[0][18..20], &0u16.to_le_bytes());
        assert_eq!(&entries[0][20..22], &0xffffu16.to_le_bytes());
    }

    #[test]
    fn dates() {
        // 2026-11-29 21:34:12 UTC
        let (date, time) = fat_date_time(1_795_988_052);
        assert_eq!(date >> 9, 46);
        assert_eq!((date >> 5) & 0xf, 11);
        assert_eq!(date & 0x1f, 29);
        assert_eq!(time >> 11, 21);
        assert_eq!((time >> 5) & 0x3f, 34);
        assert_eq!(fat_date_time(0), (0x21, 0));
    }
}
