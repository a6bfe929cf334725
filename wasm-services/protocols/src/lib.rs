//! Typed protocols between Atoll services.
//!
//! Each protocol is a module with the endpoint name it is usually served on, a
//! `Request` and a `Response`. Messages travel as postcard; the wire format of
//! each type is postcard's (docs/abi.md describes it for other languages).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

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
    }
}
