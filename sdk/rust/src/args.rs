//! A service's arguments (`args = [...]` in system.toml), read through WASI
//! preview1's `args_sizes_get` / `args_get`, which the kernel links for any
//! module importing them. Only a service that calls [`arguments`] imports
//! them.

use alloc::string::String;
use alloc::vec::Vec;

#[link(wasm_import_module = "wasi_snapshot_preview1")]
unsafe extern "C" {
    fn args_sizes_get(count: *mut u32, bytes: *mut u32) -> i32;
    fn args_get(pointers: *mut u32, bytes: *mut u8) -> i32;
}

/// argv: the service's name, then its `args`; empty if the kernel refuses.
#[must_use]
pub fn arguments() -> Vec<String> {
    let (mut count, mut bytes) = (0u32, 0u32);
    // SAFETY: the kernel writes one u32 at each pointer, both live locals.
    if unsafe { args_sizes_get(&mut count, &mut bytes) } != 0 {
        return Vec::new();
    }
    let mut pointers = alloc::vec![0u32; count as usize];
    let mut text = alloc::vec![0u8; bytes as usize];
    // SAFETY: the buffers have the sizes `args_sizes_get` gave; the kernel
    // writes `count` pointers and `bytes` bytes of NUL-ended strings.
    if unsafe { args_get(pointers.as_mut_ptr(), text.as_mut_ptr()) } != 0 {
        return Vec::new();
    }
    text.split(|&byte| byte == 0)
        .take(count as usize)
        .map(|argument| String::from_utf8_lossy(argument).into_owned())
        .collect()
}
