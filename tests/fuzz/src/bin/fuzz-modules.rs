//! Fuzz target: module loading. wasm-smith generates a module from the
//! input (any of its features, imports drawn from Atoll's and WASI's host
//! functions, sometimes forced to export `_start` and `memory`, loops and
//! calls bounded). `atoll_core::loader::validate` (what image-builder's
//! `check` runs) and `Program::compile_with_shim` (the kernel loader) must agree and
//! neither may panic; a module both accept is then booted in a hosted
//! kernel and run to its end. `FUZZ_SAVE_MODULE=file` writes each
//! generated module there (for replaying one input).
#![forbid(unsafe_code)]

use arbitrary::Unstructured;
use atoll_core::loader::{Program, Translation, validate};
use atoll_fuzz::Outcome;
use atoll_fuzz::hosted::{self, LIMITS, Spec, VirtualPlatform};
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};

fn imports() -> &'static [u8] {
    static IMPORTS: OnceLock<Vec<u8>> = OnceLock::new();
    IMPORTS.get_or_init(|| match wat::parse_str(hosted::imports_wat()) {
        Ok(module) => module,
        Err(error) => panic!("the imports module does not assemble: {error}"),
    })
}

fn exports() -> &'static [u8] {
    static EXPORTS: OnceLock<Vec<u8>> = OnceLock::new();
    EXPORTS.get_or_init(|| {
        match wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "_start")))"#) {
            Ok(module) => module,
            Err(error) => panic!("the exports module does not assemble: {error}"),
        }
    })
}

fn target(bytes: &[u8]) -> Outcome {
    let mut input = Unstructured::new(bytes);
    let Ok(mut config) = input.arbitrary::<wasm_smith::Config>() else {
        return "short input";
    };
    config.available_imports = Some(imports().to_vec());
    if input.arbitrary::<bool>().unwrap_or(true) {
        config.exports = Some(exports().to_vec());
        // Mostly the proposals the kernel's interpreter takes, so that
        // modules get past compilation to the loader's own checks and run.
        if input.ratio(3u8, 4u8).unwrap_or(true) {
            config.threads_enabled = false;
            config.shared_everything_threads_enabled = false;
            config.gc_enabled = false;
            config.exceptions_enabled = false;
            config.relaxed_simd_enabled = false;
            config.memory64_enabled = false;
            config.max_memories = 1;
            config.max_tables = config.max_tables.min(1);
        }
    }
    // As wasmi's own fuzzers: memories of at most about 1 MB.
    config.max_memory32_bytes = config.max_memory32_bytes.min(1 << 20);
    config.max_memory64_bytes = config.max_memory64_bytes.min(1 << 20);
    let Ok(mut module) = wasm_smith::Module::new(config, &mut input) else {
        return "short input";
    };
    if module.ensure_termination(10_000).is_err() {
        return "not terminable";
    }
    let wasm = module.to_bytes();
    if let Some(path) = std::env::var_os("FUZZ_SAVE_MODULE") {
        // Replaying one input (`--start I --iterations 1`): keep its module.
        let _ = std::fs::write(path, &wasm);
    }
    let checked = validate(&wasm, &LIMITS);
    let platform: Arc<dyn atoll_core::Platform> = Arc::new(VirtualPlatform::default());
    let heap = atoll_core::heap::Heap::new(platform);
    let shim = hosted::wasi_shim();
    let loaded = Program::compile_with_shim(&wasm, &LIMITS, &heap, Translation::Eager, Some(&shim));
    match (&checked, &loaded) {
        (Ok(_), Ok(_)) => {}
        (Err(check), Err(load)) => {
            assert_eq!(
                check.to_string(),
                load.to_string(),
                "check and loader refuse for different reasons"
            );
            return refusal(load);
        }
        (Ok(_), Err(error)) => panic!("check accepts, the loader refuses: {error}"),
        (Err(error), Ok(_)) => panic!("the loader accepts, check refuses: {error}"),
    }
    drop(loaded);
    let ran = hosted::run(
        &[Spec {
            name: "generated",
            module: &wasm,
            provides: vec!["generated"],
            uses: Vec::new(),
            supervisor: false,
        }],
        Some(&shim),
    );
    match ran {
        Some((summary, _)) if summary.faulted > 0 => "accepted, faulted",
        Some((summary, _)) if summary.failed_to_load > 0 => "accepted, failed to start",
        Some(_) => "accepted, ran",
        None => panic!("a bundle of one accepted module does not boot"),
    }
}

/// The kind of a refusal, for the summary.
fn refusal(error: &atoll_core::LoadError) -> Outcome {
    use atoll_core::LoadError as Refused;
    match error {
        Refused::Preflight(_) => "refused: preflight bounds",
        Refused::Compile(_) => "refused: does not compile",
        Refused::OutOfMemory => "refused: kernel heap",
        Refused::UnknownImports(_) | Refused::ImportSignature(..) | Refused::WasiWithAtoll => {
            "refused: imports"
        }
        Refused::MissingEntryPoint | Refused::MissingMemory => "refused: exports",
        _ => "refused: limits or segments",
    }
}

fn main() -> ExitCode {
    atoll_fuzz::run("modules", 16 * 1024, target)
}
