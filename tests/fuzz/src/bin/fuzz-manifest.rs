//! Fuzz target: image-builder's `system.toml` parser (the same source file,
//! `image-builder/src/manifest.rs`), on any text: it must answer with a
//! system or with diagnostics, never panic, and every diagnostic must render
//! (file:line:col and the source line) without panicking either.
#![forbid(unsafe_code)]

#[path = "../../../../image-builder/src/manifest.rs"]
#[allow(
    dead_code,
    reason = "the fuzz target uses the parser, not everything image-builder needs"
)]
mod manifest;

use atoll_fuzz::Outcome;
use std::path::Path;
use std::process::ExitCode;

fn target(bytes: &[u8]) -> Outcome {
    let source = String::from_utf8_lossy(bytes);
    match manifest::parse(Path::new("fuzz/system.toml"), &source) {
        Ok(system) => {
            assert!(
                !system.name.is_empty(),
                "a system without a name was accepted"
            );
            "accepted"
        }
        Err(diagnostics) => {
            assert!(!diagnostics.is_empty(), "refused without a diagnostic");
            for diagnostic in &diagnostics {
                let _ = diagnostic.to_string();
            }
            "diagnostics"
        }
    }
}

fn main() -> ExitCode {
    atoll_fuzz::run("manifest", 2048, target)
}
