//! Makes `cpu::atoll_entry` the kernel's ELF entry point: it enables SSE before
//! any compiled Rust code (which may use XMM registers anywhere) runs, then
//! jumps to `bootloader_api`'s `_start`.

fn main() {
    println!("cargo::rustc-link-arg-bins=--entry=atoll_entry");
    println!("cargo::rerun-if-changed=build.rs");
}
