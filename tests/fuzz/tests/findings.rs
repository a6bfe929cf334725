//! What the fuzz targets found, one test per finding, each on the input
//! that showed it (`tests/fuzz/findings/`). A test that still fails is
//! `#[ignore]`d with the reason; `cargo test -p atoll-fuzz -- --ignored`
//! runs them.

use atoll_core::loader::validate;
use atoll_fuzz::hosted::LIMITS;

/// fuzz-modules, seed 15, input 4349 (`make fuzz`, 2026-11-29): a 3.6 KB
/// module wasm-smith made. wasmi 2.0.0's translator reaches `unreachable!()`
/// (`engine/translator/func/mod.rs:2583`, a store whose pointer and value
/// are both in its register, for a store type without that form) while
/// compiling it. `validate` (image-builder's check), the boot loader and
/// `swap` all compile with wasmi, so in the kernel this is a panic: any
/// service module, or any module a supervisor swaps in, can stop the
/// kernel. Fixed in the vendored wasmi (vendor/wasmi/ATOLL.md): the module
/// is refused with a compile error.
#[test]
fn a_module_that_panics_wasmi_is_refused_not_a_panic() {
    let module = include_bytes!("../findings/wasmi-store-unreachable.wasm");
    let outcome = std::panic::catch_unwind(|| validate(module, &LIMITS).is_ok());
    assert_eq!(
        outcome.ok(),
        Some(false),
        "validate panicked on the module, or took it"
    );
}
