//! From a checked description to a bundle and disk images.
//!
//! image-builder invokes cargo once per target (the kernel for its own
//! hard-float target `kernel/x86_64/x86_64-atoll-kernel.json` with build-std,
//! services for `wasm32-unknown-unknown`; once more for the WASI shim, with
//! its own features, when a system has a WASI program) in a target
//! folder of its own (`target/cross`), so it never waits on a cargo lock held by
//! whoever started it, and never disturbs the host build of the `bootloader`
//! crate. docs/design.md explains the choice.

use crate::error::{Context, Error};
use crate::manifest::{Diagnostic, ModuleSource, System};
use atoll_abi::bundle::{self, Bundle, KernelSettings, Listen, Preopen, ServiceImage};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Which disk images to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Firmware {
    Bios,
    Uefi,
    Both,
}

/// What a build produced.
#[derive(Debug)]
pub struct Artifacts {
    /// The kernel with debug info, for GDB.
    pub kernel_elf: PathBuf,
    pub bios_image: Option<PathBuf>,
    pub uefi_image: Option<PathBuf>,
}

/// Which kernel to build.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KernelConfig {
    /// The kernel target `kernel/x86_64/x86_64-atoll-kernel.json` (SSE2,
    /// hard-float ABI, built with `-Zbuild-std`) and the workspace's wasmi
    /// configuration (tail-call dispatch).
    #[default]
    HardFloat,
    /// The kernel as it was before issue 12, for before/after measurements:
    /// the soft-float `x86_64-unknown-none` target and wasmi's portable (loop)
    /// dispatch (the kernel's `portable-dispatch` feature). Built in a target
    /// folder of its own, so switching costs no rebuild of the other.
    Baseline,
}

/// The kernel target specification, relative to the workspace.
pub const KERNEL_TARGET_SPEC: &str = "kernel/x86_64/x86_64-atoll-kernel.json";

/// Build settings from the command line.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub workspace: PathBuf,
    pub firmware: Firmware,
    pub quiet: bool,
    pub kernel: KernelConfig,
    /// Extra cargo features of the kernel (`--kernel-features`), e.g. another
    /// wasmi dispatch for measurements.
    pub kernel_features: Option<String>,
    /// The kernel's rustc flags instead of .cargo/config.toml's
    /// (`--kernel-rustflags`), e.g. `""` for rustc's default function
    /// alignment.
    pub kernel_rustflags: Option<String>,
    /// Extra cargo features of the WASI shim (`--shim-features`).
    pub shim_features: Option<String>,
}

impl BuildOptions {
    fn progress(&self, message: std::fmt::Arguments<'_>) {
        if !self.quiet {
            eprintln!("{message}");
        }
    }
}

/// Builds everything a system needs and writes its images.
pub fn build(system: &System, options: &BuildOptions) -> Result<Artifacts, Error> {
    let started = Instant::now();
    let target_dir = options.workspace.join("target").join("cross");
    let mut out_dir = options
        .workspace
        .join("target")
        .join("atoll")
        .join(&system.name);
    if options.kernel == KernelConfig::Baseline {
        out_dir.as_mut_os_string().push("-baseline");
    }
    std::fs::create_dir_all(&out_dir).context(|| format!("creating {}", out_dir.display()))?;

    let kernel_built = build_kernel(options)?;

    let modules = modules(system, options, &target_dir)?;

    // Every output is written under a temporary name and renamed into place, so
    // that two builds of the same system (e.g. parallel tests) never see each
    // other's half-written files.
    let kernel_elf = out_dir.join("kernel.elf");
    replace(&kernel_elf, |temporary| {
        std::fs::copy(&kernel_built, temporary)
            .map(|_| ())
            .context(|| format!("copying {}", kernel_built.display()))
    })?;
    let kernel = out_dir.join("kernel");
    replace(&kernel, |temporary| {
        strip(&options.workspace, &kernel_elf, temporary)
    })?;

    let bundle_bytes = encode_bundle(system, &modules)?;
    let bundle_path = out_dir.join("bundle.bin");
    replace(&bundle_path, |temporary| {
        std::fs::write(temporary, &bundle_bytes)
            .context(|| format!("writing {}", bundle_path.display()))
    })?;

    let mut artifacts = Artifacts {
        kernel_elf,
        bios_image: None,
        uefi_image: None,
    };
    if matches!(options.firmware, Firmware::Bios | Firmware::Both) {
        options.progress(format_args!("     Writing BIOS image"));
        let path = out_dir.join("atoll-bios.img");
        replace(&path, |temporary| {
            bootloader::BiosBoot::new(&kernel)
                .set_boot_config(&boot_config())
                .set_ramdisk(&bundle_path)
                .create_disk_image(temporary)
                .context(|| "writing the BIOS image".to_string())
        })?;
        artifacts.bios_image = Some(path);
    }
    if matches!(options.firmware, Firmware::Uefi | Firmware::Both) {
        options.progress(format_args!("     Writing UEFI image"));
        let path = out_dir.join("atoll-uefi.img");
        replace(&path, |temporary| {
            bootloader::UefiBoot::new(&kernel)
                .set_boot_config(&boot_config())
                .set_ramdisk(&bundle_path)
                .create_disk_image(temporary)
                .context(|| "writing the UEFI image".to_string())
        })?;
        artifacts.uefi_image = Some(path);
    }

    if !options.quiet {
        report(
            system,
            &modules.services,
            &kernel,
            &bundle_bytes,
            &artifacts,
            started,
        );
    }
    Ok(artifacts)
}

/// Builds the kernel and returns the path of its ELF file.
fn build_kernel(options: &BuildOptions) -> Result<PathBuf, Error> {
    let cross = options.workspace.join("target").join("cross");
    match options.kernel {
        KernelConfig::HardFloat => {
            options.progress(format_args!(
                "   Compiling kernel (x86_64-atoll-kernel: SSE2, hard-float)"
            ));
            let spec = options.workspace.join(KERNEL_TARGET_SPEC);
            let spec = spec.to_string_lossy();
            let mut args = vec!["--profile", "kernel", "--target", &spec];
            args.extend_from_slice(KERNEL_BUILD_STD);
            args.extend_from_slice(&["-p", "atoll-kernel"]);
            if let Some(features) = &options.kernel_features {
                args.extend_from_slice(&["--features", features]);
            }
            // cargo takes CARGO_ENCODED_RUSTFLAGS before any configuration
            // file; it reaches only this cargo run (the kernel), not the
            // services' builds.
            let rustflags = options.kernel_rustflags.as_ref().map(|flags| {
                let flags: Vec<&str> = flags.split_whitespace().collect();
                ("CARGO_ENCODED_RUSTFLAGS", flags.join("\x1f"))
            });
            cargo_with(options, &cross, &args, rustflags)?;
            Ok(cross.join("x86_64-atoll-kernel/kernel/atoll-kernel"))
        }
        KernelConfig::Baseline => {
            options.progress(format_args!(
                "   Compiling baseline kernel (x86_64-unknown-none, portable dispatch)"
            ));
            let target_dir = options.workspace.join("target").join("cross-baseline");
            cargo(
                options,
                &target_dir,
                &[
                    "--profile",
                    "kernel",
                    "--target",
                    "x86_64-unknown-none",
                    "-p",
                    "atoll-kernel",
                    "--features",
                    "portable-dispatch",
                ],
            )?;
            Ok(target_dir.join("x86_64-unknown-none/kernel/atoll-kernel"))
        }
    }
}

/// cargo's flags for a JSON target: build `core`, `alloc` and
/// `compiler_builtins` (with its `memcpy` family) from source.
pub const KERNEL_BUILD_STD: &[&str] = &[
    "-Zbuild-std=core,alloc,compiler_builtins",
    "-Zbuild-std-features=compiler-builtins-mem",
    "-Zjson-target-spec",
];

/// Writes `path` through `write`, which gets a temporary path beside it, then
/// renames the result into place.
fn replace(path: &Path, write: impl FnOnce(&Path) -> Result<(), Error>) -> Result<(), Error> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    let temporary = path.with_file_name(name);
    let result = write(&temporary).and_then(|()| {
        std::fs::rename(&temporary, path).context(|| format!("renaming into {}", path.display()))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

/// The bootloader logs only warnings and errors: its step-by-step log would
/// bury the kernel's boot log on the serial console.
fn boot_config() -> bootloader::BootConfig {
    let mut config = bootloader::BootConfig::default();
    config.log_level = bootloader_boot_config::LevelFilter::Warn;
    config
}

fn report(
    system: &System,
    modules: &[Vec<u8>],
    kernel: &Path,
    bundle: &[u8],
    artifacts: &Artifacts,
    started: Instant,
) {
    let size = |path: &Path| std::fs::metadata(path).map_or(0, |meta| meta.len());
    eprintln!(
        "    Finished system `{}` in {:.1}s",
        system.name,
        started.elapsed().as_secs_f64()
    );
    eprintln!(
        "      kernel       {:>10} bytes (stripped; {} with symbols)",
        size(kernel),
        size(&artifacts.kernel_elf)
    );
    for (service, module) in system.services.iter().zip(modules) {
        eprintln!(
            "      service {:<12} {:>7} bytes",
            service.name,
            module.len()
        );
    }
    eprintln!("      bundle       {:>10} bytes", bundle.len());
    for image in [&artifacts.bios_image, &artifacts.uefi_image]
        .into_iter()
        .flatten()
    {
        eprintln!(
            "      image        {:>10} bytes  {}",
            size(image),
            image.display()
        );
    }
}

/// Checks a description's modules as `build` would, without building the
/// kernel or writing images.
pub fn check(system: &System, options: &BuildOptions) -> Result<(), Error> {
    let target_dir = options.workspace.join("target").join("cross");
    modules(system, options, &target_dir).map(|_| ())
}

/// Builds the system's services and returns the module of `service`.
pub fn service_module(
    system: &System,
    options: &BuildOptions,
    service: &str,
) -> Result<Vec<u8>, Error> {
    let index = system
        .services
        .iter()
        .position(|spec| spec.name == service)
        .ok_or_else(|| {
            Error::Other(format!(
                "no service `{service}` in system `{}`",
                system.name
            ))
        })?;
    let target_dir = options.workspace.join("target").join("cross");
    let mut modules = modules(system, options, &target_dir)?.services;
    if index < modules.len() {
        Ok(modules.swap_remove(index))
    } else {
        Err(Error::Other(format!("no module for `{service}`")))
    }
}

/// Builds a system's services and packs them into a boot bundle, without the
/// kernel or images: what the hosted kernel core runs.
pub fn bundle_only(system: &System, options: &BuildOptions) -> Result<Vec<u8>, Error> {
    let target_dir = options.workspace.join("target").join("cross");
    let modules = modules(system, options, &target_dir)?;
    encode_bundle(system, &modules)
}

fn encode_bundle(system: &System, modules: &Modules) -> Result<Vec<u8>, Error> {
    let bundle = Bundle {
        wasi_shim: modules.wasi_shim.as_deref(),
        kernel: KernelSettings {
            system_name: system.name.clone(),
            exit_when_idle: system.exit_when_idle,
            inject_fault: system.inject_fault,
        },
        services: system
            .services
            .iter()
            .zip(&modules.services)
            .map(|(service, module)| ServiceImage {
                name: &service.name,
                module,
                limits: service.limits,
                provides: service.provides.iter().map(String::as_str).collect(),
                uses: service.uses.iter().map(String::as_str).collect(),
                supervisor: service.supervisor,
                restart: service.restart,
                args: service.args.iter().map(String::as_str).collect(),
                env: service.env.iter().map(String::as_str).collect(),
                grants: service.grants.clone(),
                preopens: service
                    .preopens
                    .iter()
                    .map(|preopen| Preopen {
                        guest: &preopen.guest,
                        endpoint: &preopen.endpoint,
                        directory: &preopen.directory,
                        read_only: preopen.read_only,
                    })
                    .collect(),
                listen: service
                    .listen
                    .iter()
                    .map(|(endpoint, port, nonblocking)| Listen {
                        endpoint,
                        port: *port,
                        nonblocking: *nonblocking,
                    })
                    .collect(),
            })
            .collect(),
    };
    bundle::encode(&bundle).context(|| "encoding the bundle".to_string())
}

/// Builds the services that come from crates, then reads and validates every
/// service's module. Returns the modules in description order.
/// A system's modules, checked: its services' in description order, and the
/// WASI shim if one of them is a WASI program.
struct Modules {
    services: Vec<Vec<u8>>,
    wasi_shim: Option<Vec<u8>>,
}

/// The crate of the WASI shim (`wasm-services/wasi-shim`).
const WASI_SHIM_CRATE: &str = "wasi-shim";

fn modules(system: &System, options: &BuildOptions, target_dir: &Path) -> Result<Modules, Error> {
    let crates: Vec<&str> = system
        .services
        .iter()
        .filter_map(|service| match &service.source {
            ModuleSource::Crate(name) => Some(name.as_str()),
            ModuleSource::File(_) => None,
        })
        .collect();
    if !crates.is_empty() {
        check_crates_exist(system, options)?;
        options.progress(format_args!("   Compiling services: {}", crates.join(", ")));
        let mut args = vec!["--profile", "service", "--target", "wasm32-unknown-unknown"];
        for name in &crates {
            args.push("-p");
            args.push(name);
        }
        cargo(options, target_dir, &args)?;
    }

    run_build_commands(system, options)?;

    let mut modules = Vec::with_capacity(system.services.len());
    let mut diagnostics = Vec::new();
    let mut uses_wasi = false;
    for service in &system.services {
        let path = match &service.source {
            ModuleSource::File(path) => path.clone(),
            ModuleSource::Crate(name) => target_dir
                .join("wasm32-unknown-unknown/service")
                .join(format!("{}.wasm", name.replace('-', "_"))),
        };
        match read_module(&path) {
            Err(error) => diagnostics.push(system.diagnostic(
                service.source_span.clone(),
                format!(
                    "service `{}`: cannot read module {}: {error}",
                    service.name,
                    path.display()
                ),
            )),
            Ok(module) => match atoll_core::loader::validate(&module, &service.limits) {
                Err(error) => diagnostics.push(system.diagnostic(
                    service.source_span.clone(),
                    format!(
                        "service `{}`: module {}: {error}",
                        service.name,
                        path.display()
                    ),
                )),
                Ok(info) => {
                    uses_wasi |= info.uses_wasi;
                    if !info.wasi_stubs.is_empty() {
                        eprintln!(
                            "{}",
                            Warning(system.diagnostic(
                                service.source_span.clone(),
                                format!(
                                    "service `{}` imports WASI functions the WASI shim only stubs (they return ENOSYS, or EBADF for a missing descriptor): {}",
                                    service.name,
                                    info.wasi_stubs.join(", ")
                                ),
                            ))
                        );
                    }
                    modules.push(module);
                }
            },
        }
    }
    if !diagnostics.is_empty() {
        return Err(Error::Diagnostics(diagnostics));
    }
    let wasi_shim = if uses_wasi {
        Some(wasi_shim(options, target_dir)?)
    } else {
        None
    };
    Ok(Modules {
        services: modules,
        wasi_shim,
    })
}

/// Builds and checks the WASI shim, which every WASI program is linked to.
fn wasi_shim(options: &BuildOptions, target_dir: &Path) -> Result<Vec<u8>, Error> {
    options.progress(format_args!("   Compiling the WASI shim"));
    let mut args = vec![
        "--profile",
        "service",
        "--target",
        "wasm32-unknown-unknown",
        "-p",
        WASI_SHIM_CRATE,
    ];
    if let Some(features) = &options.shim_features {
        args.extend(["--features", features.as_str()]);
    }
    cargo(options, target_dir, &args)?;
    let path = target_dir
        .join("wasm32-unknown-unknown/service")
        .join(format!("{}.wasm", WASI_SHIM_CRATE.replace('-', "_")));
    let shim = read_module(&path)
        .map_err(|error| Error::Other(format!("cannot read {}: {error}", path.display())))?;
    atoll_core::loader::validate_shim(&shim)
        .map_err(|error| Error::Other(format!("{}: {error}", path.display())))?;
    Ok(shim)
}

/// A diagnostic shown as a warning.
struct Warning(Diagnostic);

impl std::fmt::Display for Warning {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = self.0.to_string();
        let text = text.strip_prefix("error: ").unwrap_or(&text);
        write!(formatter, "warning: {text}")
    }
}

/// Runs the services' `build` commands (`sh -c`, in the description's folder,
/// with `ATOLL_ROOT` set to the workspace), in description order. A failing
/// command is an error at its `build` line, with its output.
fn run_build_commands(system: &System, options: &BuildOptions) -> Result<(), Error> {
    let folder = system.path.parent().unwrap_or(Path::new("."));
    let folder = if folder.as_os_str().is_empty() {
        Path::new(".")
    } else {
        folder
    };
    let root = std::fs::canonicalize(&options.workspace).unwrap_or(options.workspace.clone());
    for service in &system.services {
        let Some((command, span)) = &service.build else {
            continue;
        };
        options.progress(format_args!("    Building {}: {command}", service.name));
        let output = Command::new("sh")
            .arg("-c")
            .arg(command)
            .current_dir(folder)
            .env("ATOLL_ROOT", &root)
            .output()
            .context(|| format!("running the build command of `{}`", service.name))?;
        if !output.status.success() {
            let mut log = String::from_utf8_lossy(&output.stdout).into_owned();
            log.push_str(&String::from_utf8_lossy(&output.stderr));
            return Err(Error::Diagnostics(vec![system.diagnostic(
                span.clone(),
                format!(
                    "service `{}`: build command failed ({}):\n{}",
                    service.name,
                    output.status,
                    log.trim_end()
                ),
            )]));
        }
    }
    Ok(())
}

/// Reads a module: binary Wasm, or WebAssembly text if the file ends in `.wat`.
pub fn read_module(path: &Path) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|error| error.to_string())?;
    if path.extension().is_some_and(|extension| extension == "wat") {
        return wat::parse_bytes(&bytes)
            .map(std::borrow::Cow::into_owned)
            .map_err(|error| format!("not valid WebAssembly text: {error}"));
    }
    Ok(bytes)
}

/// Runs `cargo build` with `args` in the workspace.
fn cargo(options: &BuildOptions, target_dir: &Path, args: &[&str]) -> Result<(), Error> {
    cargo_with(options, target_dir, args, None)
}

/// [`cargo`] with one more environment variable for that run.
fn cargo_with(
    options: &BuildOptions,
    target_dir: &Path,
    args: &[&str],
    env: Option<(&str, String)>,
) -> Result<(), Error> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    if let Some((key, value)) = env {
        command.env(key, value);
    }
    command
        .current_dir(&options.workspace)
        .arg("build")
        .args(args)
        .arg("--target-dir")
        .arg(target_dir);
    if options.quiet {
        command.arg("--quiet");
    }
    let status = command.status().context(|| "running cargo".to_string())?;
    if !status.success() {
        return Err(Error::Other(format!(
            "cargo build {} failed ({status})",
            args.join(" ")
        )));
    }
    Ok(())
}

/// Reports `crate = "x"` entries that name no package of the workspace, at their line.
fn check_crates_exist(system: &System, options: &BuildOptions) -> Result<(), Error> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(&options.workspace)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .output()
        .context(|| "running cargo metadata".to_string())?;
    if !output.status.success() {
        return Err(Error::Other(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).context(|| "reading cargo metadata".to_string())?;
    let packages: Vec<&str> = metadata["packages"]
        .as_array()
        .map(|packages| packages.iter().filter_map(|p| p["name"].as_str()).collect())
        .unwrap_or_default();
    let diagnostics: Vec<Diagnostic> = system
        .services
        .iter()
        .filter_map(|service| match &service.source {
            ModuleSource::Crate(name) if !packages.contains(&name.as_str()) => {
                Some(system.diagnostic(
                    service.source_span.clone(),
                    format!(
                        "service `{}`: no crate `{name}` in the workspace",
                        service.name
                    ),
                ))
            }
            _ => None,
        })
        .collect();
    if diagnostics.is_empty() {
        Ok(())
    } else {
        Err(Error::Diagnostics(diagnostics))
    }
}

/// Writes a copy of the kernel without debug info: the BIOS loader reads the
/// kernel at ~2.7 MB/s under TCG, so every megabyte of symbols costs boot time.
fn strip(workspace: &Path, input: &Path, output: &Path) -> Result<(), Error> {
    let objcopy = llvm_tool(workspace, "llvm-objcopy")?;
    let status = Command::new(&objcopy)
        .arg("--strip-debug")
        .arg(input)
        .arg(output)
        .status()
        .context(|| format!("running {}", objcopy.display()))?;
    if !status.success() {
        return Err(Error::Other(format!(
            "{} failed ({status})",
            objcopy.display()
        )));
    }
    Ok(())
}

/// A tool of the pinned toolchain's `llvm-tools` component.
fn llvm_tool(workspace: &Path, name: &str) -> Result<PathBuf, Error> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = Command::new(&rustc)
        .current_dir(workspace)
        .args(["--print", "target-libdir"])
        .output()
        .context(|| "running rustc --print target-libdir".to_string())?;
    let libdir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    // target-libdir is <sysroot>/lib/rustlib/<host>/lib; the tools are in ../bin.
    let tool = libdir.with_file_name("bin").join(name);
    if tool.is_file() {
        Ok(tool)
    } else {
        Err(Error::Other(format!(
            "{} not found: install the toolchain's llvm-tools component (`rustup component add llvm-tools`)",
            tool.display()
        )))
    }
}
