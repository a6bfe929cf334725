//! The kernel's trace records and the text lines that carry them to the host.
//!
//! What is here: [`Record`] (one event: what, who, with whom, when), its
//! [`Kind`]s with fixed numbers, and the line format the kernel writes on the
//! host control channel when asked for its ring (`image-builder trace` parses
//! it with [`parse_line`]). What is not here: the ring itself (kernel/core's
//! `trace` module) and the pictures (image-builder).
//!
//! A dump is, line by line:
//!
//! ```text
//! trace: begin <records> <overwritten> <services> <endpoints>
//! trace-service <index> <name>
//! trace-endpoint <index> <provider index or -> <name>
//! trace-record <time_ns> <kind> <service> <peer> <token> <detail> <repeats>
//! trace: end <records>
//! ```

use alloc::string::String;

/// What happened. The numbers are fixed like error codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// `service` sent a message to endpoint `peer` (`detail`: its length).
    Send = 0,
    /// `service` called endpoint `peer`; the call is `token`.
    Call = 1,
    /// `service` took a message from service `peer` (the kernel: `u16::MAX`);
    /// `token` is the call's, 0 for a send.
    Receive = 2,
    /// `service` replied to call `token` of service `peer`.
    Reply = 3,
    /// `service` blocked (`detail`: [`BLOCK_RECEIVE`], [`BLOCK_REPLY`] or
    /// [`BLOCK_SLEEP`]).
    Block = 4,
    /// `service` was made ready (`detail`: the value it resumes with, as `u32`).
    Wake = 5,
    /// `service` trapped.
    Fault = 6,
    /// `service` was started afresh.
    Restart = 7,
    /// `service` was swapped to a new version.
    Swap = 8,
    /// Interrupt line `detail` was delivered to `service`.
    Interrupt = 9,
}

/// [`Kind::Block`] details: what the service waits for.
pub const BLOCK_RECEIVE: u32 = 0;
pub const BLOCK_REPLY: u32 = 1;
pub const BLOCK_SLEEP: u32 = 2;

/// `peer` when the kernel itself is the other side.
pub const KERNEL_PEER: u16 = u16::MAX;

impl Kind {
    /// Every kind, in number order.
    pub const ALL: &'static [Kind] = &[
        Kind::Send,
        Kind::Call,
        Kind::Receive,
        Kind::Reply,
        Kind::Block,
        Kind::Wake,
        Kind::Fault,
        Kind::Restart,
        Kind::Swap,
        Kind::Interrupt,
    ];

    /// The lowercase word the dump and the pictures use.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Send => "send",
            Kind::Call => "call",
            Kind::Receive => "receive",
            Kind::Reply => "reply",
            Kind::Block => "block",
            Kind::Wake => "wake",
            Kind::Fault => "fault",
            Kind::Restart => "restart",
            Kind::Swap => "swap",
            Kind::Interrupt => "interrupt",
        }
    }

    /// The kind with this name, if any.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|kind| kind.name() == name)
    }
}

/// One event, 24 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// The platform clock (nanoseconds since boot) at the kernel entry in
    /// which it happened (records of one entry share it); for a repeated
    /// record, the first time.
    pub time_ns: u64,
    /// The service it happened to or that did it.
    pub service: u16,
    /// The other side: an endpoint (send, call) or a service (receive, reply).
    pub peer: u16,
    /// The call's token (call, receive, reply), else 0.
    pub token: u32,
    /// Kind-specific: a length, a block reason, a resume value, a line.
    pub detail: u32,
    /// How many more times the same event came right after this one
    /// (recorded once, counted here, so that a service polling in a loop does
    /// not flush the ring).
    pub repeats: u16,
    pub kind: Kind,
}

impl Record {
    /// Whether `other` is the same event again (time and repeats aside).
    #[must_use]
    pub fn repeats_as(&self, other: &Record) -> bool {
        self.kind == other.kind
            && self.service == other.service
            && self.peer == other.peer
            && self.token == other.token
            && self.detail == other.detail
    }

    /// The record as one dump line (with a newline).
    #[must_use]
    pub fn to_line(&self) -> String {
        alloc::format!(
            "trace-record {} {} {} {} {} {} {}\n",
            self.time_ns,
            self.kind.name(),
            self.service,
            self.peer,
            self.token,
            self.detail,
            self.repeats
        )
    }
}

/// One line of a dump, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    Begin {
        records: u64,
        overwritten: u64,
        services: u32,
        endpoints: u32,
    },
    Service {
        index: u32,
        name: String,
    },
    Endpoint {
        index: u32,
        provider: Option<u32>,
        name: String,
    },
    Record(Record),
    End {
        records: u64,
    },
}

impl Line {
    /// The line as a dump holds it (with a newline); [`parse_line`] reads it
    /// back.
    #[must_use]
    pub fn to_line(&self) -> String {
        match self {
            Line::Begin {
                records,
                overwritten,
                services,
                endpoints,
            } => alloc::format!("trace: begin {records} {overwritten} {services} {endpoints}\n"),
            Line::Service { index, name } => alloc::format!("trace-service {index} {name}\n"),
            Line::Endpoint {
                index,
                provider: Some(provider),
                name,
            } => alloc::format!("trace-endpoint {index} {provider} {name}\n"),
            Line::Endpoint { index, name, .. } => {
                alloc::format!("trace-endpoint {index} - {name}\n")
            }
            Line::Record(record) => record.to_line(),
            Line::End { records } => alloc::format!("trace: end {records}\n"),
        }
    }
}

/// Parses one dump line (without its newline); `None` if it is not one.
#[must_use]
pub fn parse_line(line: &str) -> Option<Line> {
    let line = line.trim_end();
    let words: alloc::vec::Vec<&str> = line.split(' ').collect();
    let number = |at: usize| words.get(at)?.parse::<u64>().ok();
    let small = |at: usize| u32::try_from(number(at)?).ok();
    let short = |at: usize| u16::try_from(number(at)?).ok();
    // The rest of the line from word `at` on (a name may hold spaces).
    let rest = |at: usize| {
        Some(String::from(
            *line
                .splitn(at + 1, ' ')
                .collect::<alloc::vec::Vec<_>>()
                .get(at)?,
        ))
    };
    match (words.first().copied()?, words.get(1).copied()) {
        ("trace:", Some("begin")) => Some(Line::Begin {
            records: number(2)?,
            overwritten: number(3)?,
            services: small(4)?,
            endpoints: small(5)?,
        }),
        ("trace:", Some("end")) => Some(Line::End {
            records: number(2)?,
        }),
        ("trace-service", _) => Some(Line::Service {
            index: small(1)?,
            name: rest(2)?,
        }),
        ("trace-endpoint", _) => Some(Line::Endpoint {
            index: small(1)?,
            provider: match words.get(2).copied()? {
                "-" => None,
                _ => Some(small(2)?),
            },
            name: rest(3)?,
        }),
        ("trace-record", _) if words.len() == 8 => Some(Line::Record(Record {
            time_ns: number(1)?,
            kind: Kind::from_name(words.get(2)?)?,
            service: short(3)?,
            peer: short(4)?,
            token: small(5)?,
            detail: small(6)?,
            repeats: short(7)?,
        })),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        for (number, kind) in Kind::ALL.iter().enumerate() {
            assert_eq!(*kind as usize, number);
            let record = Record {
                time_ns: 123_456_789_012,
                service: 3,
                peer: KERNEL_PEER,
                token: 0x1_0002,
                detail: u32::MAX,
                repeats: 7,
                kind: *kind,
            };
            let line = record.to_line();
            assert_eq!(line, Line::Record(record).to_line());
            assert!(line.ends_with('\n'));
            assert_eq!(parse_line(&line), Some(Line::Record(record)), "{line}");
        }
        assert_eq!(
            parse_line("trace: begin 10 2 3 4"),
            Some(Line::Begin {
                records: 10,
                overwritten: 2,
                services: 3,
                endpoints: 4
            })
        );
        assert_eq!(
            parse_line("trace-service 2 kv server"),
            Some(Line::Service {
                index: 2,
                name: "kv server".into()
            })
        );
        assert_eq!(
            parse_line("trace-endpoint 1 - kv"),
            Some(Line::Endpoint {
                index: 1,
                provider: None,
                name: "kv".into()
            })
        );
        assert_eq!(
            parse_line("trace-endpoint 1 4 kv"),
            Some(Line::Endpoint {
                index: 1,
                provider: Some(4),
                name: "kv".into()
            })
        );
        assert_eq!(parse_line("trace: end 10"), Some(Line::End { records: 10 }));
        // And back: each line writes as it was read.
        for text in [
            "trace: begin 10 2 3 4",
            "trace-service 2 kv server",
            "trace-endpoint 1 - kv",
            "trace-endpoint 1 4 kv",
            "trace: end 10",
        ] {
            let line = parse_line(text).map(|line| line.to_line());
            assert_eq!(line, Some(alloc::format!("{text}\n")));
        }
        assert_eq!(parse_line("trace-record 1 jump 0 0 0 0 0"), None);
        assert_eq!(parse_line("trace-record 1 send 70000 0 0 0 0"), None);
        assert_eq!(parse_line("atoll: hello"), None);
    }
}
