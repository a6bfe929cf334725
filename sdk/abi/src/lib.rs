//! Atoll's kernel ABI, in one place for both sides.
//!
//! What is here: the import module and the host functions a service may import
//! (names and Wasm signatures), the fixed-number error codes those functions return,
//! the ABI limits, the entry-point convention, and the boot bundle that
//! image-builder hands to the kernel. The kernel, the Rust SDK and image-builder all
//! use these definitions; `docs/abi.md` is the reference page written from them.
//!
//! What is not here: any behaviour. This crate only describes.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod bundle;

/// The Wasm import module that every Atoll host function lives in.
pub const IMPORT_MODULE: &str = "atoll";

/// The export the kernel calls to start a service: `() -> ()`.
pub const ENTRY_POINT: &str = "_start";

/// The export holding a service's linear memory. Host functions that take a
/// pointer read and write this memory only.
pub const MEMORY_EXPORT: &str = "memory";

/// Size of one Wasm page.
pub const WASM_PAGE_SIZE: usize = 65_536;

/// The longest message `log` accepts, in bytes. Longer ones get
/// [`Error::TooLarge`] and nothing is printed.
pub const MAX_LOG_LEN: usize = 1024;

/// A Wasm value type, as far as the ABI uses them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    I32,
    I64,
}

/// One host function: its import name and its Wasm signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostFunction {
    pub name: &'static str,
    pub params: &'static [ValueType],
    pub results: &'static [ValueType],
}

/// `log(ptr: i32, len: i32) -> i32`: writes the UTF-8 text at `ptr..ptr+len` of the
/// caller's memory as one line on the console, prefixed with the service's name.
/// Returns 0, or a negative [`Error`].
pub const LOG: HostFunction = HostFunction {
    name: "log",
    params: &[ValueType::I32, ValueType::I32],
    results: &[ValueType::I32],
};

/// Every host function of the ABI. A module importing anything else from
/// [`IMPORT_MODULE`], or from any other module, is rejected at build time and at load.
pub const HOST_FUNCTIONS: &[HostFunction] = &[LOG];

/// Looks up a host function by its import name.
#[must_use]
pub fn host_function(name: &str) -> Option<&'static HostFunction> {
    HOST_FUNCTIONS.iter().find(|function| function.name == name)
}

/// Error codes returned by host functions, as negative `i32`s. The numbers are
/// fixed: a code keeps its number forever, new codes get new numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Error {
    /// An argument is outside its documented range (e.g. a negative length).
    InvalidArgument = -1,
    /// A pointer/length pair does not lie inside the caller's linear memory.
    OutOfBounds = -2,
    /// A buffer is longer than the limit for this call.
    TooLarge = -3,
    /// Bytes that must be UTF-8 are not.
    InvalidUtf8 = -4,
    /// The service exports no linear memory named [`MEMORY_EXPORT`].
    NoMemory = -5,
}

impl Error {
    /// Every error code, for tables and round-trip checks.
    pub const ALL: &'static [Error] = &[
        Error::InvalidArgument,
        Error::OutOfBounds,
        Error::TooLarge,
        Error::InvalidUtf8,
        Error::NoMemory,
    ];

    /// The code as returned to Wasm.
    #[must_use]
    pub const fn code(self) -> i32 {
        self as i32
    }

    /// The error with this code, if any.
    #[must_use]
    pub fn from_code(code: i32) -> Option<Error> {
        Error::ALL
            .iter()
            .copied()
            .find(|error| error.code() == code)
    }

    /// A short lowercase description.
    #[must_use]
    pub const fn description(self) -> &'static str {
        match self {
            Error::InvalidArgument => "invalid argument",
            Error::OutOfBounds => "buffer outside the caller's memory",
            Error::TooLarge => "buffer too large",
            Error::InvalidUtf8 => "text is not UTF-8",
            Error::NoMemory => "service exports no memory",
        }
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        formatter.write_str(self.description())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_round_trip_and_are_distinct() {
        for error in Error::ALL {
            assert!(error.code() < 0);
            assert_eq!(Error::from_code(error.code()), Some(*error));
        }
        assert_eq!(Error::from_code(0), None);
        assert_eq!(Error::from_code(-1000), None);
    }

    #[test]
    fn host_function_lookup() {
        assert_eq!(host_function("log"), Some(&LOG));
        assert_eq!(host_function("nope"), None);
    }
}
