//! Typed protocols between Atoll services.
//!
//! Each protocol is a module with the endpoint name it is usually served on, a
//! `Request` and a `Response`. Messages travel as postcard; the wire format of
//! each type is postcard's (docs/abi.md describes it for other languages).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

/// Sockets (one definition with the WASI shim, which speaks it for WASI programs).
pub use atoll_abi::net;

/// Echo: answers with what it is sent. The smallest useful protocol.
pub mod echo {
    use alloc::string::String;
    use serde::{Deserialize, Serialize};

    pub const ENDPOINT: &str = "echo";

    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub enum Request {
        /// Answer with this text.
        Echo(String),
        /// Answer with this number.
        Ping(u64),
    }

    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub enum Response {
        Echo(String),
        Pong(u64),
    }
}

/// Key-value store: named 64-bit counters.
pub mod kv {
    use alloc::string::String;
    use serde::{Deserialize, Serialize};

    pub const ENDPOINT: &str = "kv";

    /// The longest key, in bytes.
    pub const MAX_KEY_LEN: usize = 64;

    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub enum Request {
        Get {
            key: String,
        },
        Put {
            key: String,
            value: i64,
        },
        /// Adds `delta` (wrapping) and answers the new value; a missing key counts from 0.
        Add {
            key: String,
            delta: i64,
        },
        Remove {
            key: String,
        },
        /// How many keys are stored.
        Len,
    }

    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub enum Response {
        /// The key's value, or `None` if absent.
        Value(Option<i64>),
        Len(u32),
        Error(Error),
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub enum Error {
        /// The key is longer than [`MAX_KEY_LEN`].
        KeyTooLong,
        /// The store holds as many keys as it can.
        Full,
    }
}

/// Block devices: sectors of a disk (served by the virtio-blk driver).
pub mod block {
    use alloc::vec::Vec;
    use serde::{Deserialize, Serialize};

    pub const ENDPOINT: &str = "block";

    /// Bytes per sector.
    pub const SECTOR_SIZE: usize = 512;
    /// The most sectors one `Read` or `Write` carries (a message is at most
    /// 4 KiB, with room for its header).
    pub const MAX_SECTORS: u32 = 7;

    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub enum Request {
        /// How many sectors the disk has.
        Capacity,
        /// `count` sectors (1..=MAX_SECTORS) from `sector`.
        Read { sector: u64, count: u32 },
        /// Whole sectors from `sector` (`data.len()` a multiple of SECTOR_SIZE).
        Write {
            sector: u64,
            #[serde(with = "serde_bytes")]
            data: Vec<u8>,
        },
        /// Makes earlier writes durable.
        Flush,
    }

    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub enum Response {
        Capacity { sectors: u64 },
        Data(#[serde(with = "serde_bytes")] Vec<u8>),
        Done,
        Error(Error),
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub enum Error {
        /// Past the end of the disk.
        OutOfRange,
        /// More than MAX_SECTORS, none, or not whole sectors.
        BadLength,
        /// The device reported an error.
        Io,
        /// No device, or it failed to initialise.
        NoDevice,
    }
}

/// Files: a FAT volume on a block device (served by the fat service).
/// Defined in the ABI crate, because the WASI shim speaks it too: WASI files
/// in preopened directories.
pub use atoll_abi::fs;

/// The serial console (served by the console driver). Defined in the ABI
/// crate, because the WASI shim speaks it too: WASI `fd_read` on stdin.
pub use atoll_abi::console;

/// PCI devices found at boot (served by the pci service).
pub mod pci {
    use alloc::vec::Vec;
    use serde::{Deserialize, Serialize};

    pub const ENDPOINT: &str = "pci";

    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub enum Request {
        /// Up to 32 devices from index `start`.
        List { start: u32 },
    }

    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub enum Response {
        Devices { devices: Vec<Device>, more: bool },
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Device {
        /// `bus << 8 | device << 3 | function`.
        pub address: u16,
        pub vendor: u16,
        pub device: u16,
        pub class: u8,
        pub subclass: u8,
        /// Interrupt line (0xff: none).
        pub irq: u8,
    }
}

/// Administration requests to the supervisor, on its endpoint (the shell's
/// `stop`, `start`, `restart`, `swap`). The kernel's reports arrive on the
/// same endpoint from the kernel's sender id.
pub mod admin {
    use alloc::string::String;
    use serde::{Deserialize, Serialize};

    pub const ENDPOINT: &str = "supervisor";

    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub enum Request {
        Stop(String),
        Start(String),
        Restart(String),
        /// Swaps service `name` for the module in file `path` (fs protocol).
        SwapFromFile {
            name: String,
            path: String,
        },
        /// Turns the kernel's trace ring on (`true`) or off.
        Trace(bool),
    }

    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub enum Response {
        Done,
        Error(String),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn requests_round_trip_through_postcard() {
        let request = kv::Request::Add {
            key: "visits".to_string(),
            delta: -3,
        };
        let bytes = postcard::to_allocvec(&request).unwrap();
        assert_eq!(
            postcard::from_bytes::<kv::Request>(&bytes).unwrap(),
            request
        );
        // The wire format is stable: variant index 2, then the key, then zigzag -3.
        assert_eq!(bytes, [2, 6, b'v', b'i', b's', b'i', b't', b's', 5]);
        let echo = echo::Request::Echo("hi".to_string());
        assert_eq!(postcard::to_allocvec(&echo).unwrap(), [0, 2, b'h', b'i']);
        // Byte payloads keep the wire format of a plain Vec<u8>: the length,
        // then the bytes.
        let data = fs::Response::Data(alloc::vec![1, 2, 3]);
        let bytes = postcard::to_allocvec(&data).unwrap();
        assert_eq!(bytes, [2, 3, 1, 2, 3]);
        #[derive(serde::Serialize)]
        enum Plain {
            _Entry,
            _Entries,
            Data(alloc::vec::Vec<u8>),
        }
        assert_eq!(
            postcard::to_allocvec(&Plain::Data(alloc::vec![1, 2, 3])).unwrap(),
            bytes
        );
        assert_eq!(postcard::from_bytes::<fs::Response>(&bytes).unwrap(), data);
    }

    #[test]
    fn net_messages_round_trip_and_carry_bytes_in_one_piece() {
        let write = net::Request::Write {
            socket: 5,
            data: alloc::vec![1, 2, 3],
        };
        let bytes = postcard::to_allocvec(&write).unwrap();
        // Variant 4, socket 5, then the length and the bytes.
        assert_eq!(bytes, [4, 5, 3, 1, 2, 3]);
        assert_eq!(postcard::from_bytes::<net::Request>(&bytes).unwrap(), write);
        // A full-size frame from the driver fits in one message.
        let frame = net::Request::Link(net::Link::Frame(alloc::vec![0xab; 1514]));
        assert!(postcard::to_allocvec(&frame).unwrap().len() <= atoll_abi::MAX_MESSAGE_LEN);
        let data = net::Response::Data(alloc::vec![0; net::MAX_DATA as usize]);
        assert!(postcard::to_allocvec(&data).unwrap().len() <= atoll_abi::MAX_MESSAGE_LEN);
        let wait = net::Request::Wait {
            interests: alloc::vec![
                net::Interest {
                    socket: u32::MAX,
                    read: true,
                    write: true,
                };
                net::MAX_WAIT
            ],
            timeout_ms: u32::MAX,
        };
        assert!(postcard::to_allocvec(&wait).unwrap().len() <= atoll_abi::MAX_MESSAGE_LEN);
    }

    #[test]
    fn a_full_frame_batch_fits_in_one_message_either_way() {
        for size in [1, 54, 60, 127, 128, 700, 1514] {
            let mut batch = net::FrameBatch::default();
            let mut refused = None;
            for _ in 0..5000 {
                if let Err(frame) = batch.push(alloc::vec![0xab; size]) {
                    refused = Some(frame);
                    break;
                }
            }
            assert_eq!(refused.map(|frame| frame.len()), Some(size));
            let count = batch.len();
            assert!(count >= 2, "{size}-byte frames: {count} per batch");
            let frames = batch.take();
            assert!(batch.is_empty());
            let link = net::Request::Link(net::Link::Frames(frames.clone()));
            let bytes = postcard::to_allocvec(&link).unwrap();
            assert!(
                bytes.len() <= atoll_abi::MAX_MESSAGE_LEN,
                "{size}: {}",
                bytes.len()
            );
            assert_eq!(postcard::from_bytes::<net::Request>(&bytes).unwrap(), link);
            let transmit = net::nic::Request::Frames(frames);
            let bytes = postcard::to_allocvec(&transmit).unwrap();
            assert!(
                bytes.len() <= atoll_abi::MAX_MESSAGE_LEN,
                "{size}: {}",
                bytes.len()
            );
            assert_eq!(
                postcard::from_bytes::<net::nic::Request>(&bytes).unwrap(),
                transmit
            );
        }
        // A frame larger than a batch is still taken alone (the receiver
        // refuses what is over the MTU).
        let mut batch = net::FrameBatch::default();
        assert!(batch.push(alloc::vec![0; 5000]).is_ok());
    }
}
