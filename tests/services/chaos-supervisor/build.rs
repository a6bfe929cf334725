//! Assembles the campaign's victim (WAT) into `OUT_DIR/victim.wasm`: the
//! module the supervisor swaps a victim to in the middle of a call.

fn main() {
    let source = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../systems/chaos/victim.wat"
    );
    println!("cargo::rerun-if-changed={source}");
    let wasm = match wat::parse_file(source) {
        Ok(wasm) => wasm,
        Err(error) => panic!("{source}: {error}"),
    };
    let out = std::env::var_os("OUT_DIR").map(std::path::PathBuf::from);
    let Some(out) = out else {
        panic!("cargo sets OUT_DIR for build scripts");
    };
    if let Err(error) = std::fs::write(out.join("victim.wasm"), wasm) {
        panic!("writing victim.wasm: {error}");
    }
}
