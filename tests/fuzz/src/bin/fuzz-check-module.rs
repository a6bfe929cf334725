//! Runs one module file (.wasm, or .wat text) through `loader::validate`:
//! exit status 0 accepted, 1 refused, 101 the loader panicked. For
//! narrowing down what a fuzz target found.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: fuzz-check-module FILE.wasm|FILE.wat");
        return ExitCode::from(2);
    };
    let module = match wat::parse_file(&path) {
        Ok(module) => module,
        Err(error) => {
            eprintln!("{path}: {error}");
            return ExitCode::from(2);
        }
    };
    match atoll_core::loader::validate(&module, &atoll_fuzz::hosted::LIMITS) {
        Ok(_) => {
            println!("{path}: accepted");
            ExitCode::SUCCESS
        }
        Err(error) => {
            println!("{path}: refused: {error}");
            ExitCode::from(1)
        }
    }
}
