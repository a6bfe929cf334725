//! wasmi-runner: calls a module's exported `() -> i64` functions under plain
//! wasmi (default features, default `Config`: no fuel, lazy compilation) and
//! prints how long each took.
//!
//! `wasmi-runner [--fuel] MODULE.wasm EXPORT...` prints, per export,
//! `EXPORT ns=NANOSECONDS checksum=0x...`: the best of three calls, each on a
//! fresh instance. Every import of the module is satisfied by a function that
//! returns zeros (the benchmark functions call none). This is the reference
//! column of `image-builder bench`: what the same interpreter reaches on the
//! host without Atoll around it. `--fuel` turns on fuel metering (with
//! unlimited fuel), to tell its cost apart from Atoll's.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Instant;
use wasmi::{Config, Engine, Linker, Module, Store, Val};

const CALLS: usize = 3;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1).peekable();
    let fuel = args.next_if(|arg| arg == "--fuel").is_some();
    let Some(path) = args.next() else {
        eprintln!("usage: wasmi-runner [--fuel] MODULE.wasm EXPORT...");
        return ExitCode::from(2);
    };
    match run(&path, args.collect(), fuel) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("wasmi-runner: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(path: &str, exports: Vec<String>, fuel: bool) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|error| format!("{path}: {error}"))?;
    let mut config = Config::default();
    config.consume_fuel(fuel);
    let engine = Engine::new(&config);
    let module = Module::new(&engine, &bytes).map_err(|error| error.to_string())?;
    for export in exports {
        let mut best = u128::MAX;
        let mut checksum = 0i64;
        for _ in 0..CALLS {
            let mut store = Store::new(&engine, ());
            if fuel {
                store
                    .set_fuel(u64::MAX)
                    .map_err(|error| error.to_string())?;
            }
            let mut linker = Linker::<()>::new(&engine);
            for import in module.imports() {
                let Some(ty) = import.ty().func() else {
                    return Err(format!("import {} is not a function", import.name()));
                };
                let results: Vec<Val> = ty
                    .results()
                    .iter()
                    .map(|ty| Val::default_for_ty(*ty))
                    .collect();
                linker
                    .func_new(
                        import.module(),
                        import.name(),
                        ty.clone(),
                        move |_, _, out| {
                            out.clone_from_slice(&results);
                            Ok(())
                        },
                    )
                    .map_err(|error| error.to_string())?;
            }
            let instance = linker
                .instantiate_and_start(&mut store, &module)
                .map_err(|error| error.to_string())?;
            let function = instance
                .get_typed_func::<(), i64>(&store, &export)
                .map_err(|error| format!("{export}: {error}"))?;
            let started = Instant::now();
            checksum = function
                .call(&mut store, ())
                .map_err(|error| format!("{export}: {error}"))?;
            best = best.min(started.elapsed().as_nanos());
        }
        println!("{export} ns={best} checksum={checksum:#018x}");
    }
    Ok(())
}
