//! image-builder: from a system description to a bootable Atoll image.
//!
//! `check` validates a description and its modules; `build` also compiles the
//! kernel and the services and writes BIOS and UEFI images; `run` builds and
//! boots the result in QEMU with the serial console on the terminal. Run with
//! `--help` for the options.
#![forbid(unsafe_code)]

mod backlog;
mod bench;
mod boot_time;
mod builder;
mod chaos;
mod chaos_qemu;
mod charts;
mod compute;
mod disk;
mod error;
mod host_clock;
mod hosted;
mod manifest;
mod netbench;
mod push;
mod qemu;
mod trace;
mod trace_bench;

use builder::{BuildOptions, Firmware, KernelConfig};
use clap::{Parser, Subcommand};
use error::Error;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// The process heap, counted: `chaos` reads the kernel core's heap from it.
#[global_allocator]
static ALLOCATOR: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);

fn live_heap() -> usize {
    ALLOCATOR.allocated()
}

#[derive(Parser)]
#[command(version, about = "Builds and boots Atoll systems")]
struct Cli {
    /// The Atoll workspace (where the kernel and the service crates are).
    #[arg(long, global = true, default_value = default_workspace())]
    workspace: PathBuf,
    /// Print only errors and the guest's console.
    #[arg(long, short, global = true)]
    quiet: bool,
    /// Build the kernel as before issue 12 (soft-float `x86_64-unknown-none`,
    /// wasmi's portable dispatch), for before/after comparisons.
    #[arg(long, global = true)]
    baseline_kernel: bool,
    /// Extra cargo features for the kernel, e.g. `unstable-dispatch` or
    /// `portable-dispatch,indirect-dispatch` (wasmi dispatch variants).
    #[arg(long, global = true)]
    kernel_features: Option<String>,
    /// The kernel's rustc flags, replacing those of .cargo/config.toml
    /// (`-Zmin-function-alignment=64`); `--kernel-rustflags ""` builds with
    /// rustc's default function alignment, for before/after comparisons.
    #[arg(long, global = true)]
    kernel_rustflags: Option<String>,
    /// Extra cargo features for the WASI shim, e.g. `plain-writes` (WASI
    /// writes as before staged writes), for before/after comparisons.
    #[arg(long, global = true)]
    shim_features: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a system description and its modules, without writing images.
    Check {
        /// The system description (`system.toml`).
        system: PathBuf,
    },
    /// Build the kernel and services and write the disk images.
    Build {
        system: PathBuf,
        /// Which images to write.
        #[arg(long, value_enum, default_value_t = Firmware::Both)]
        firmware: Firmware,
    },
    /// Build, then boot in QEMU (headless, serial console on this terminal).
    ///
    /// Exit status (as host-run's; a system ends only with `exit-when-idle`):
    /// 0 when no service faulted or failed to load, 1 when a service faulted
    /// or failed to load, 2 when image-builder fails (description, build), 3
    /// when the kernel fails (panic, CPU exception, no bundle) or QEMU ends
    /// without the kernel's report (e.g. a triple fault), 124 on timeout.
    Run {
        system: PathBuf,
        /// Boot through UEFI (OVMF) instead of BIOS.
        #[arg(long)]
        uefi: bool,
        /// Stop QEMU after this many seconds.
        #[arg(long)]
        timeout: Option<u64>,
        /// Wait for GDB on localhost:1234 before the first instruction.
        #[arg(long)]
        gdb: bool,
        /// Guest memory in MiB.
        #[arg(long, default_value_t = 512)]
        memory: u32,
        /// Attach a data disk: a raw image (used in place, writes persist) or
        /// a folder (copied into a fresh FAT image). Overrides `[disk]`.
        #[arg(long)]
        disk: Option<PathBuf>,
        /// The host port (on 127.0.0.1) forwarded to the guest's port 80,
        /// when the system has a network driver (a service granted the
        /// virtio-net card, `pci = ["1af4:1000"]`).
        #[arg(long, default_value_t = 8080)]
        http_port: u16,
        /// Also forward host port HOST (on 127.0.0.1) to guest port GUEST,
        /// e.g. to a WASI program's listening socket (`listen` in
        /// system.toml); may be repeated.
        #[arg(long, value_name = "HOST:GUEST", value_parser = parse_forward)]
        forward: Vec<(u16, u16)>,
        /// Write the network card's traffic to this pcap file.
        #[arg(long)]
        capture: Option<PathBuf>,
        /// Open QEMU's monitor on this Unix socket (with a network card:
        /// `set_link n0 off` / `on` take its link down and up).
        #[arg(long)]
        monitor: Option<PathBuf>,
        /// Run a separate copy of the system: its made data disk and control
        /// socket live in target/atoll/<system>/instances/NAME/ (a second
        /// run of the same copy is refused while the first one lives).
        #[arg(long)]
        instance: Option<String>,
    },
    /// Send a new version of one service to the system running under `run`,
    /// which swaps it in without a reboot. Builds the service as `build` does
    /// unless --module is given. Exit status 0 when the new version serves.
    Push {
        system: PathBuf,
        /// The service to replace.
        #[arg(long)]
        service: String,
        /// The new module (.wasm or .wat) instead of the one the description builds.
        #[arg(long)]
        module: Option<PathBuf>,
        /// Seconds to watch for a rollback after the swap.
        #[arg(long, default_value_t = 3)]
        watch: u64,
        /// The copy of the system started with `run --instance NAME`.
        #[arg(long)]
        instance: Option<String>,
    },
    /// Run a system's services in the kernel core hosted on Linux (no QEMU):
    /// the same scheduler, IPC and interpreter, natively.
    ///
    /// Exit status (as run's): 0 when no service faulted or failed to load, 1
    /// when a service faulted or failed to load, 2 when image-builder fails,
    /// 3 when the kernel core cannot boot the bundle.
    HostRun {
        system: PathBuf,
        /// Trace the whole run (the kernel's ring keeps the last 4,096
        /// events) and write DIR/trace.json (Chrome/Perfetto) and
        /// DIR/trace.svg when it ends.
        #[arg(long, value_name = "DIR")]
        trace: Option<PathBuf>,
    },
    /// Trace the system running under `run` for a while: turns the kernel's
    /// trace ring on over the control channel, waits, turns it off, fetches
    /// it, and writes OUT/trace.json (open it in https://ui.perfetto.dev or
    /// chrome://tracing) and OUT/trace.svg (a timeline, one lane per service).
    Trace {
        system: PathBuf,
        /// The copy of the system started with `run --instance NAME`.
        #[arg(long)]
        instance: Option<String>,
        /// How long to record.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        /// Where to write the files (default target/trace/<system>/).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Measure IPC and spawn costs in QEMU and hosted, with a Linux pipe as the
    /// baseline; print a table and append JSON lines to target/bench/.
    Bench {
        #[arg(default_value = "tests/systems/bench.toml")]
        system: PathBuf,
        /// Only the network rows (curl bulk download, `ab` requests per
        /// second and p99 request time, ping round trip) of the default system.
        #[arg(long)]
        network_only: bool,
        /// Only the boot rows: the default system's boot to `system ready`
        /// against the floor, with lazy and with eager translation, BIOS and
        /// UEFI, interleaved.
        #[arg(long)]
        boot_only: bool,
        /// Only the storage rows (block, FAT and WASI file throughput in
        /// QEMU), printed and not recorded.
        #[arg(long)]
        storage_only: bool,
        /// Only the compute rows (three interleaved rounds of the guest on
        /// the current and the baseline kernel, the hosted core and plain
        /// wasmi) and the stack torture test, printed and appended as JSON
        /// lines.
        #[arg(long)]
        compute_only: bool,
        /// Only the hot-swap rows (swaps pushed into a running VM, and in
        /// the hosted core), printed and appended as JSON lines.
        #[arg(long)]
        swap_only: bool,
        /// Only the hosted IPC round trip with the trace ring off, on, and
        /// compiled out (atoll-core's `no-trace`), with the system's Rust
        /// `bench-server` in place of the WAT one, and plain wasmi's floor
        /// for the same round trip (parked server, upcall), ROUNDS runs of
        /// each in turn.
        #[arg(long)]
        trace_overhead: bool,
        /// Rounds for --trace-overhead.
        #[arg(long, default_value_t = 15)]
        rounds: usize,
        /// Only redraw target/bench/latest.svg and history.svg from
        /// target/bench/results.jsonl.
        #[arg(long)]
        charts_only: bool,
    },
    /// Run the seeded fault-injection campaign in the hosted kernel core:
    /// faults of every kind injected into victims under a numbered request
    /// stream, invariants checked throughout (docs/reliability.md). Prints a
    /// report and appends a JSON line to target/bench/chaos.jsonl.
    ///
    /// Exit status: 0 passed, 1 an invariant failed, 2 image-builder
    /// failed, 3 the kernel panicked, 124 the kernel loop went silent.
    Chaos {
        /// Faults to inject.
        #[arg(long, default_value_t = 10_000)]
        faults: u64,
        /// Seed of the fault sequence (kinds, victims, random arguments).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print the whole console (very long for big runs).
        #[arg(long)]
        verbose: bool,
        /// Run the QEMU campaign: faults into the disk driver, the file
        /// system and the console while a reader verifies a file.
        #[arg(long)]
        qemu: bool,
        /// With --qemu: run as this copy of the system (its own state
        /// folder and disk, as `run --instance`).
        #[arg(long)]
        instance: Option<String>,
        /// The campaign's system (default tests/systems/chaos.toml, or
        /// tests/systems/storage-chaos.toml with --qemu).
        #[arg(long)]
        system: Option<PathBuf>,
    },
    /// The echo side of the pipe baseline (used by `bench`).
    #[command(hide = true)]
    PipeEcho,
}

/// `HOST:GUEST`, two TCP ports, for `run --forward`.
fn parse_forward(text: &str) -> Result<(u16, u16), String> {
    let (host, guest) = text
        .split_once(':')
        .ok_or_else(|| format!("`{text}` is not HOST:GUEST"))?;
    let port = |part: &str| {
        part.parse::<u16>()
            .ok()
            .filter(|port| *port != 0)
            .ok_or_else(|| format!("`{part}` is not a port from 1 to 65535"))
    };
    Ok((port(host)?, port(guest)?))
}

fn default_workspace() -> &'static str {
    // image-builder lives in <workspace>/image-builder.
    concat!(env!("CARGO_MANIFEST_DIR"), "/..")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("{error}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<u8, Error> {
    let workspace = cli.workspace.canonicalize().unwrap_or(cli.workspace);
    let load = |path: &PathBuf| manifest::load(path).map_err(Error::Diagnostics);
    let quiet = cli.quiet;
    let kernel_features = cli.kernel_features;
    let kernel_rustflags = cli.kernel_rustflags;
    let shim_features = cli.shim_features;
    let kernel = if cli.baseline_kernel {
        KernelConfig::Baseline
    } else {
        KernelConfig::HardFloat
    };
    let options = |firmware| BuildOptions {
        workspace: workspace.clone(),
        firmware,
        quiet,
        kernel,
        kernel_features: kernel_features.clone(),
        kernel_rustflags: kernel_rustflags.clone(),
        shim_features: shim_features.clone(),
    };
    match cli.command {
        Command::Check { system } => {
            let system = load(&system)?;
            builder::check(&system, &options(Firmware::Both))?;
            if !cli.quiet {
                eprintln!(
                    "system `{}`: {} services, all valid",
                    system.name,
                    system.services.len()
                );
            }
            Ok(0)
        }
        Command::Build { system, firmware } => {
            let system = load(&system)?;
            builder::build(&system, &options(firmware))?;
            Ok(0)
        }
        Command::HostRun { system, trace } => {
            let system = load(&system)?;
            let options = options(Firmware::Both);
            let bundle = builder::bundle_only(&system, &options)?;
            let outcome = match hosted::run_traced(&bundle, true, trace.is_some()) {
                Ok((_, summary, observed)) => {
                    if !cli.quiet {
                        eprintln!("\n{}", observed.counters);
                    }
                    if let Some(out) = &trace {
                        let dump = trace::Dump::parse(observed.dump.iter().map(String::as_str))
                            .ok_or_else(|| Error::Other("the trace dump was incomplete".into()))?;
                        let (json, svg) = trace::write(&dump, out)?;
                        eprintln!(
                            "trace: {}; wrote {} and {}",
                            trace::summary(&dump),
                            json.display(),
                            svg.display()
                        );
                    }
                    qemu::Outcome::of_summary(&summary)
                }
                Err(error) => {
                    eprintln!("error: {error}");
                    qemu::Outcome::KernelFailure
                }
            };
            if !cli.quiet || outcome != qemu::Outcome::Success {
                eprintln!("image-builder: {outcome}");
            }
            Ok(outcome.exit_code())
        }
        Command::Bench {
            system,
            network_only,
            boot_only,
            storage_only,
            compute_only,
            swap_only,
            trace_overhead,
            rounds,
            charts_only,
        } => {
            let system = load(&workspace.join(system))?;
            let options = BuildOptions {
                workspace,
                firmware: Firmware::Bios,
                quiet: true,
                kernel,
                kernel_features: kernel_features.clone(),
                kernel_rustflags: kernel_rustflags.clone(),
                shim_features: shim_features.clone(),
            };
            if charts_only {
                bench::charts(&options)?;
            } else if trace_overhead {
                bench::trace_overhead(&options, &system, rounds)?;
            } else if network_only {
                bench::run_network(&options)?;
            } else if boot_only {
                bench::run_boot(&options)?;
            } else if storage_only {
                bench::run_storage(&options)?;
            } else if compute_only {
                bench::run_compute(&options)?;
            } else if swap_only {
                bench::run_swaps(&options)?;
            } else {
                bench::run(&system, &options)?;
            }
            Ok(0)
        }
        Command::Push {
            system,
            service,
            module,
            watch,
            instance,
        } => {
            let system = load(&system)?;
            let state = push::state_dir(&workspace, &system.name, instance.as_deref())?;
            let options = options(Firmware::Bios);
            let module = match module {
                Some(path) => builder::read_module(&path)
                    .map_err(|error| Error::Other(format!("{}: {error}", path.display())))?,
                None => builder::service_module(&system, &options, &service)?,
            };
            let socket = push::socket_path(&state);
            let served = push::push(&socket, &service, &module, Duration::from_secs(watch))?;
            Ok(if served { 0 } else { 1 })
        }
        Command::Chaos {
            faults,
            seed,
            verbose,
            qemu,
            instance,
            system,
        } => {
            let settings = chaos::Settings {
                faults,
                seed,
                verbose,
            };
            if qemu {
                let system = system.unwrap_or_else(|| "tests/systems/storage-chaos.toml".into());
                return chaos_qemu::run(
                    &workspace.join(system),
                    &options(Firmware::Bios),
                    &settings,
                    instance.as_deref(),
                );
            }
            let system = system.unwrap_or_else(|| "tests/systems/chaos.toml".into());
            chaos::run(
                &workspace.join(system),
                &options(Firmware::Both),
                &settings,
                live_heap,
            )
        }
        Command::Trace {
            system,
            instance,
            seconds,
            out,
        } => {
            let system = load(&system)?;
            let state = push::state_dir(&workspace, &system.name, instance.as_deref())?;
            let out = out.unwrap_or_else(|| {
                let mut out = workspace.join("target/trace").join(&system.name);
                if let Some(instance) = &instance {
                    out = out.join(instance);
                }
                out
            });
            let dump = trace::fetch(&push::socket_path(&state), seconds)?;
            let (json, svg) = trace::write(&dump, &out)?;
            println!(
                "trace: {}; wrote {} and {}",
                trace::summary(&dump),
                json.display(),
                svg.display()
            );
            Ok(0)
        }
        Command::PipeEcho => {
            bench::pipe_echo()?;
            Ok(0)
        }
        Command::Run {
            system,
            uefi,
            timeout,
            gdb,
            memory,
            disk,
            http_port,
            forward,
            capture,
            monitor,
            instance,
        } => {
            let system = load(&system)?;
            let state = push::state_dir(&workspace, &system.name, instance.as_deref())?;
            // Held until QEMU has ended (dropped at the end of this arm).
            let _running = push::lock_run(&state, &system.name)?;
            let made = state.join("disk.img");
            let disk = disk::prepare(system.disk.as_ref(), disk.as_deref(), &made)?;
            if let (Some(disk), false) = (&disk, cli.quiet) {
                eprintln!("image-builder: data disk {}", disk.display());
            }
            let firmware = if uefi { Firmware::Uefi } else { Firmware::Bios };
            let control_socket = push::socket_path(&state);
            let artifacts = builder::build(&system, &options(firmware))?;
            let image = if uefi {
                artifacts.uefi_image
            } else {
                artifacts.bios_image
            };
            let image = image.ok_or_else(|| Error::Other("no image was written".into()))?;
            if gdb {
                eprintln!(
                    "QEMU waits for GDB. In another terminal:\n  gdb -ex 'symbol-file {} -o {:#x}' -ex 'target remote localhost:1234'",
                    artifacts.kernel_elf.display(),
                    atoll_abi::bundle::KERNEL_BASE
                );
            }
            if !cli.quiet {
                eprintln!(
                    "image-builder: host control channel at {} (image-builder push)",
                    control_socket.display()
                );
            }
            let options = qemu::RunOptions {
                uefi,
                timeout: timeout.map(Duration::from_secs),
                gdb,
                memory_mib: memory,
                control_socket: Some(control_socket),
                disk,
                network: manifest::has_network_card(&system).then_some(qemu::Network {
                    host_port: http_port,
                    forwards: forward,
                    capture,
                    monitor,
                }),
            };
            if let (Some(network), false) = (&options.network, cli.quiet) {
                eprintln!(
                    "image-builder: the system's web server: http://127.0.0.1:{}/ (status: http://127.0.0.1:{}/status)",
                    network.host_port, network.host_port
                );
                if let Some(capture) = &network.capture {
                    eprintln!(
                        "image-builder: capturing the network to {}",
                        capture.display()
                    );
                }
            }
            let outcome = qemu::run(&image, &options)?;
            if !cli.quiet || outcome != qemu::Outcome::Success {
                eprintln!("image-builder: {outcome}");
            }
            Ok(outcome.exit_code())
        }
    }
}
