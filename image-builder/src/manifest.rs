//! `system.toml`: reading and checking a system description.
//!
//! The description is parsed with every table closed to unknown fields, then
//! checked field by field. Every problem becomes a [`Diagnostic`] naming the
//! file, line and column it applies to, like a compiler's.

use atoll_abi::bundle::{DEFAULT_FUEL_SLICE, DEFAULT_MEMORY_LIMIT, InjectedFault, ServiceLimits};
use atoll_abi::driver::{Grants, PciGrant, PortRange};
use atoll_abi::supervision::{RestartPolicy, Strategy};
use atoll_abi::{DEFAULT_QUEUE_DEPTH, MAX_QUEUE_DEPTH};
use serde::Deserialize;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// One problem in a system description, at a place in it.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
    source_line: String,
}

impl Diagnostic {
    /// A diagnostic at byte offset `span.start` of `source`.
    pub fn at(file: &Path, source: &str, span: Range<usize>, message: impl Into<String>) -> Self {
        let start = span.start.min(source.len());
        let before = source.get(..start).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |index| index + 1);
        let column = before
            .get(line_start..)
            .map_or(0, |text| text.chars().count())
            + 1;
        let source_line = source
            .get(line_start..)
            .and_then(|rest| rest.lines().next())
            .unwrap_or("")
            .to_string();
        Diagnostic {
            file: file.to_path_buf(),
            line,
            column,
            message: message.into(),
            source_line,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let gutter = " ".repeat(self.line.to_string().len());
        writeln!(formatter, "error: {}", self.message)?;
        if self.line == 0 {
            // About the file as a whole.
            return write!(formatter, "{gutter}--> {}", self.file.display());
        }
        writeln!(
            formatter,
            "{gutter}--> {}:{}:{}",
            self.file.display(),
            self.line,
            self.column
        )?;
        writeln!(formatter, "{gutter} |")?;
        writeln!(formatter, "{} | {}", self.line, self.source_line)?;
        write!(
            formatter,
            "{gutter} | {}^",
            " ".repeat(self.column.saturating_sub(1))
        )
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawDescription {
    system: RawSystem,
    #[serde(default)]
    kernel: RawKernel,
    #[serde(default, rename = "service")]
    services: Vec<RawService>,
    disk: Option<RawDisk>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawDisk {
    image: Option<Spanned<String>>,
    folder: Option<Spanned<String>>,
    size_mib: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawSystem {
    name: Spanned<String>,
    #[serde(default)]
    exit_when_idle: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawKernel {
    inject_fault: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawService {
    name: Spanned<String>,
    module: Option<Spanned<String>>,
    #[serde(rename = "crate")]
    krate: Option<Spanned<String>>,
    build: Option<Spanned<String>>,
    #[serde(default)]
    args: Vec<Spanned<String>>,
    env: Option<Spanned<std::collections::BTreeMap<String, String>>>,
    preopens: Option<std::collections::BTreeMap<String, Spanned<String>>>,
    #[serde(default)]
    listen: Vec<Spanned<String>>,
    #[serde(default)]
    io_ports: Vec<Spanned<String>>,
    #[serde(default)]
    irqs: Vec<Spanned<u8>>,
    #[serde(default)]
    pci: Vec<Spanned<String>>,
    dma_kib: Option<Spanned<u32>>,
    memory_limit_kib: Option<Spanned<u64>>,
    fuel_slice: Option<Spanned<u64>>,
    queue_depth: Option<Spanned<u32>>,
    #[serde(default)]
    provides: Vec<Spanned<String>>,
    #[serde(default)]
    uses: Vec<Spanned<String>>,
    #[serde(default)]
    supervisor: Option<Spanned<bool>>,
    restart: Option<Spanned<String>>,
    max_restarts: Option<u32>,
    restart_window_ms: Option<u64>,
    swap_probation_ms: Option<u64>,
}

/// Where a service's module comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleSource {
    /// A prebuilt `.wasm` file (absolute, resolved against the description's folder).
    File(PathBuf),
    /// A crate of this workspace, built for wasm32 by image-builder.
    Crate(String),
}

/// A checked service entry.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    pub name: String,
    pub source: ModuleSource,
    /// Where `module = ` or `crate = ` is written, for later diagnostics.
    pub source_span: Range<usize>,
    /// A shell command that builds the module file, run in the description's
    /// folder before the module is read; with where it is written.
    pub build: Option<(String, Range<usize>)>,
    /// WASI command-line arguments: the service's name, then `args`.
    pub args: Vec<String>,
    /// WASI environment, as `KEY=value`.
    pub env: Vec<String>,
    /// WASI preopened directories, in descriptor order.
    pub preopens: Vec<PreopenSpec>,
    /// WASI listening sockets `(endpoint, TCP port, non-blocking)`, in
    /// descriptor order after the preopens.
    pub listen: Vec<(String, u16, bool)>,
    /// Driver capabilities.
    pub grants: Grants,
    pub limits: ServiceLimits,
    /// Endpoints the service provides.
    pub provides: Vec<String>,
    /// Endpoints of other services the service may send to and call.
    pub uses: Vec<String>,
    /// The system's supervisor (gets fault reports on its first endpoint).
    pub supervisor: bool,
    pub restart: RestartPolicy,
}

/// A checked preopened directory: `preopens = { "/docs" = "fs:/DOCS:ro" }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreopenSpec {
    /// The directory as the program sees it.
    pub guest: String,
    /// The file service's endpoint.
    pub endpoint: String,
    /// The directory inside the file service.
    pub directory: String,
    pub read_only: bool,
}

/// Whether a service of `system` is granted the legacy virtio network card
/// (`pci = ["1af4:1000"]`): then `run` gives the guest one.
#[must_use]
pub fn has_network_card(system: &System) -> bool {
    system.services.iter().any(|service| {
        service
            .grants
            .pci
            .iter()
            .any(|grant| grant.vendor == Some(0x1af4) && grant.device == Some(0x1000))
    })
}

/// A checked system description.
#[derive(Debug, Clone)]
pub struct System {
    pub path: PathBuf,
    pub source: String,
    pub name: String,
    pub exit_when_idle: bool,
    pub inject_fault: Option<InjectedFault>,
    pub services: Vec<ServiceSpec>,
    /// The data disk `run` attaches, if any.
    pub disk: Option<Disk>,
}

/// A data disk for `run`: an existing image, or a FAT image made from a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disk {
    Image(PathBuf),
    Folder { path: PathBuf, size_mib: u32 },
}

/// Default size of a FAT image made from a folder.
pub const DEFAULT_DISK_MIB: u32 = 32;

impl System {
    /// A diagnostic about this description.
    pub fn diagnostic(&self, span: Range<usize>, message: impl Into<String>) -> Diagnostic {
        Diagnostic::at(&self.path, &self.source, span, message)
    }
}

/// The largest memory limit a service may ask for: the 4 GiB of wasm32.
const MAX_MEMORY_LIMIT_KIB: u64 = 4 * 1024 * 1024;

/// Reads and checks a system description. Returns every problem found.
pub fn load(path: &Path) -> Result<System, Vec<Diagnostic>> {
    let source = std::fs::read_to_string(path).map_err(|error| {
        vec![Diagnostic {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            message: format!("cannot read the system description: {error}"),
            source_line: String::new(),
        }]
    })?;
    parse(path, &source)
}

/// Checks a system description given as text.
pub fn parse(path: &Path, source: &str) -> Result<System, Vec<Diagnostic>> {
    let raw: RawDescription = toml::from_str(source).map_err(|error| {
        let span = error.span().unwrap_or(0..0);
        vec![Diagnostic::at(
            path,
            source,
            span,
            error.message().trim_end(),
        )]
    })?;
    let mut diagnostics = Vec::new();
    let at = |span: Range<usize>, message: String| Diagnostic::at(path, source, span, message);
    let base = path.parent().unwrap_or(Path::new("."));

    let name = raw.system.name.get_ref().clone();
    if let Err(problem) = check_name(&name) {
        diagnostics.push(at(raw.system.name.span(), format!("system name {problem}")));
    }
    let inject_fault = raw.kernel.inject_fault.as_ref().and_then(|fault| {
        let found = InjectedFault::from_name(fault.get_ref());
        if found.is_none() {
            let names: Vec<&str> = InjectedFault::ALL.iter().map(|(_, name)| *name).collect();
            diagnostics.push(at(
                fault.span(),
                format!(
                    "unknown fault `{}`, expected one of: {}",
                    fault.get_ref(),
                    names.join(", ")
                ),
            ));
        }
        found
    });

    let mut services: Vec<ServiceSpec> = Vec::new();
    let mut seen_names: Vec<&str> = Vec::new();
    // (endpoint, providing service)
    let mut provided: Vec<(String, String)> = Vec::new();
    let mut supervisor_name: Option<String> = None;
    let mut irq_owners: Vec<(u8, String)> = Vec::new();
    let mut port_owners: Vec<(PortRange, String)> = Vec::new();
    let mut pci_owners: Vec<(PciGrant, String)> = Vec::new();
    for service in &raw.services {
        let name = service.name.get_ref();
        if let Err(problem) = check_name(name) {
            diagnostics.push(at(service.name.span(), format!("service name {problem}")));
        }
        if seen_names.contains(&name.as_str()) {
            diagnostics.push(at(
                service.name.span(),
                format!("service `{name}` is described twice"),
            ));
        }
        seen_names.push(name);
        let source = match (&service.module, &service.krate) {
            (Some(module), None) => Some((
                ModuleSource::File(base.join(module.get_ref())),
                module.span(),
            )),
            (None, Some(krate)) => {
                Some((ModuleSource::Crate(krate.get_ref().clone()), krate.span()))
            }
            (Some(module), Some(_)) => {
                diagnostics.push(at(
                    module.span(),
                    format!("service `{name}` has both `module` and `crate`; give one"),
                ));
                None
            }
            (None, None) => {
                diagnostics.push(at(
                    service.name.span(),
                    format!(
                        "service `{name}` has no module: give `module = \"path.wasm\"` or `crate = \"name\"`"
                    ),
                ));
                None
            }
        };
        let mut limits = ServiceLimits {
            memory_bytes: DEFAULT_MEMORY_LIMIT,
            fuel_slice: DEFAULT_FUEL_SLICE,
            queue_depth: DEFAULT_QUEUE_DEPTH,
            swap_probation_ms: service
                .swap_probation_ms
                .unwrap_or(atoll_abi::bundle::DEFAULT_SWAP_PROBATION_MS),
        };
        if let Some(depth) = &service.queue_depth {
            let value = *depth.get_ref();
            if value == 0 || value > MAX_QUEUE_DEPTH {
                diagnostics.push(at(
                    depth.span(),
                    format!("queue-depth must be between 1 and {MAX_QUEUE_DEPTH}"),
                ));
            } else {
                limits.queue_depth = value;
            }
        }
        for endpoint in service.provides.iter().chain(&service.uses) {
            if let Err(problem) = check_name(endpoint.get_ref()) {
                diagnostics.push(at(endpoint.span(), format!("endpoint name {problem}")));
            }
        }
        for endpoint in &service.provides {
            let name = endpoint.get_ref();
            if let Some(other) = provided.iter().find(|(known, _)| known == name) {
                diagnostics.push(at(
                    endpoint.span(),
                    format!(
                        "endpoint `{name}` is already provided by service `{}`",
                        other.1
                    ),
                ));
            } else {
                provided.push((name.clone(), service.name.get_ref().clone()));
            }
        }
        if let Some(kib) = &service.memory_limit_kib {
            let value = *kib.get_ref();
            if value == 0 || value > MAX_MEMORY_LIMIT_KIB {
                diagnostics.push(at(
                    kib.span(),
                    format!("memory-limit-kib must be between 1 and {MAX_MEMORY_LIMIT_KIB}"),
                ));
            } else {
                limits.memory_bytes = u32::try_from(value * 1024).unwrap_or(u32::MAX);
            }
        }
        if let Some(fuel) = &service.fuel_slice {
            if *fuel.get_ref() == 0 {
                diagnostics.push(at(fuel.span(), "fuel-slice must be at least 1".to_string()));
            } else {
                limits.fuel_slice = *fuel.get_ref();
            }
        }
        let mut restart = RestartPolicy::default();
        if let Some(strategy) = &service.restart {
            restart.strategy = match strategy.get_ref().as_str() {
                "permanent" => Strategy::Permanent,
                "transient" => Strategy::Transient,
                "temporary" => Strategy::Temporary,
                other => {
                    diagnostics.push(at(
                        strategy.span(),
                        format!(
                            "unknown restart strategy `{other}`, expected permanent, transient or temporary"
                        ),
                    ));
                    Strategy::Transient
                }
            };
        }
        if let Some(max) = service.max_restarts {
            restart.max_restarts = max;
        }
        if let Some(window) = service.restart_window_ms {
            restart.window_ms = window;
        }
        let is_supervisor = service
            .supervisor
            .as_ref()
            .is_some_and(|flag| *flag.get_ref());
        if let Some(flag) = service.supervisor.as_ref().filter(|flag| *flag.get_ref()) {
            if let Some(first) = &supervisor_name {
                diagnostics.push(at(
                    flag.span(),
                    format!("service `{first}` is already the supervisor; a system has one"),
                ));
            } else {
                supervisor_name = Some(name.clone());
            }
            if service.provides.is_empty() {
                diagnostics.push(at(
                    flag.span(),
                    format!(
                        "supervisor `{name}` must provide an endpoint: its first one receives the kernel's reports"
                    ),
                ));
            }
        }
        let build = service
            .build
            .as_ref()
            .map(|build| (build.get_ref().clone(), build.span()));
        if let (Some(build), Some(_)) = (&service.build, &service.krate) {
            diagnostics.push(at(
                build.span(),
                format!("service `{name}`: `build` goes with `module` (a crate is built by cargo)"),
            ));
        }
        let (args, env) = wasi_strings(service, &mut diagnostics, &at);
        let preopens = preopens(service, &mut diagnostics, &at);
        let listen = listen(service, &mut diagnostics, &at);
        let grants = driver_grants(service, &mut diagnostics, &at);
        for &irq in &grants.irqs {
            if let Some((_, owner)) = irq_owners.iter().find(|(known, _)| *known == irq) {
                diagnostics.push(at(
                    service.name.span(),
                    format!("IRQ {irq} is granted to both `{owner}` and `{name}`"),
                ));
            } else {
                irq_owners.push((irq, name.clone()));
            }
        }
        for range in &grants.ports {
            if let Some((_, owner)) = port_owners.iter().find(|(known, _)| known.overlaps(range)) {
                diagnostics.push(at(
                    service.name.span(),
                    format!(
                        "ports {:#x}-{:#x} of `{name}` overlap ports granted to `{owner}`",
                        range.first, range.last
                    ),
                ));
            } else {
                port_owners.push((*range, name.clone()));
            }
        }
        // A PCI function goes to one driver (the kernel gives it to the
        // first): two grants that could match the same function are refused.
        // `*` (configuration reads, for enumeration) is shared.
        for grant in grants.pci.iter().filter(|grant| grant.vendor.is_some()) {
            let overlapping = |known: &PciGrant| {
                known.vendor == grant.vendor
                    && (known.device.is_none()
                        || grant.device.is_none()
                        || known.device == grant.device)
            };
            if let Some((_, owner)) = pci_owners
                .iter()
                .find(|(known, owner)| owner != name && overlapping(known))
            {
                diagnostics.push(at(
                    service.name.span(),
                    format!(
                        "PCI grant {} of `{name}` may match the functions granted to `{owner}`",
                        pci_grant_text(grant)
                    ),
                ));
            } else {
                pci_owners.push((*grant, name.clone()));
            }
        }
        if !grants.irqs.is_empty() && service.provides.is_empty() {
            diagnostics.push(at(
                service.name.span(),
                format!("service `{name}` is granted interrupts but provides no endpoint to receive them on"),
            ));
        }
        if let Some((source, source_span)) = source {
            services.push(ServiceSpec {
                name: name.clone(),
                source,
                source_span,
                build,
                args,
                env,
                preopens,
                listen,
                grants,
                limits,
                provides: service
                    .provides
                    .iter()
                    .map(|e| e.get_ref().clone())
                    .collect(),
                uses: service.uses.iter().map(|e| e.get_ref().clone()).collect(),
                supervisor: is_supervisor,
                restart,
            });
        }
    }
    for service in &raw.services {
        for endpoint in &service.uses {
            let name = endpoint.get_ref();
            if !provided.iter().any(|(known, _)| known == name) {
                diagnostics.push(at(
                    endpoint.span(),
                    format!(
                        "service `{}` uses endpoint `{name}`, which no service provides",
                        service.name.get_ref()
                    ),
                ));
            }
        }
    }
    let disk = raw
        .disk
        .as_ref()
        .and_then(|disk| match (&disk.image, &disk.folder) {
            (Some(image), None) => Some(Disk::Image(base.join(image.get_ref()))),
            (None, Some(folder)) => Some(Disk::Folder {
                path: base.join(folder.get_ref()),
                size_mib: disk
                    .size_mib
                    .as_ref()
                    .map_or(DEFAULT_DISK_MIB, |size| *size.get_ref()),
            }),
            (Some(image), Some(_)) => {
                diagnostics.push(at(
                    image.span(),
                    "[disk] has both `image` and `folder`; give one".to_string(),
                ));
                None
            }
            (None, None) => {
                diagnostics.push(Diagnostic::at(
                    path,
                    source,
                    0..0,
                    "[disk] needs `image = \"file.img\"` or `folder = \"dir\"`",
                ));
                None
            }
        });
    if let Some(size) = raw.disk.as_ref().and_then(|disk| disk.size_mib.as_ref())
        && !(8..=4096).contains(size.get_ref())
    {
        diagnostics.push(at(
            size.span(),
            "size-mib must be between 8 and 4096".to_string(),
        ));
    }
    if !diagnostics.is_empty() {
        return Err(diagnostics);
    }
    Ok(System {
        disk,
        path: path.to_path_buf(),
        source: source.to_string(),
        name,
        exit_when_idle: raw.system.exit_when_idle,
        inject_fault,
        services,
    })
}

/// A service's driver grants, checked: port ranges (`"0x3f8-0x3ff"` or one
/// port) clear of the kernel's own, interrupt lines 1-15 but the kernel's,
/// PCI `"vvvv:dddd"`, `"vvvv:*"` or `"*"`, a bounded DMA budget.
fn driver_grants(
    service: &RawService,
    diagnostics: &mut Vec<Diagnostic>,
    at: &dyn Fn(Range<usize>, String) -> Diagnostic,
) -> Grants {
    let mut grants = Grants::default();
    for text in &service.io_ports {
        match parse_port_range(text.get_ref()) {
            Some(range) => match atoll_abi::driver::reserved(&range) {
                Some(owner) => diagnostics.push(at(
                    text.span(),
                    format!(
                        "ports `{}` include {owner}, which the kernel keeps",
                        text.get_ref()
                    ),
                )),
                None => grants.ports.push(range),
            },
            None => diagnostics.push(at(
                text.span(),
                format!(
                    "`{}` is not a port range: write \"0x3f8-0x3ff\" or \"0x60\"",
                    text.get_ref()
                ),
            )),
        }
    }
    for irq in &service.irqs {
        let value = *irq.get_ref();
        if value == 0
            || value > atoll_abi::driver::MAX_IRQ
            || atoll_abi::driver::RESERVED_IRQS.contains(&value)
        {
            diagnostics.push(at(
                irq.span(),
                format!("IRQ {value} cannot be granted: lines 1-15 except 2, 7 and 15"),
            ));
        } else if !grants.irqs.contains(&value) {
            grants.irqs.push(value);
        }
    }
    for text in &service.pci {
        match parse_pci_grant(text.get_ref()) {
            Some(grant) => grants.pci.push(grant),
            None => diagnostics.push(at(
                text.span(),
                format!(
                    "`{}` is not a PCI grant: write \"1af4:1001\", \"1af4:*\" or \"*\"",
                    text.get_ref()
                ),
            )),
        }
    }
    if let Some(kib) = &service.dma_kib {
        if *kib.get_ref() > atoll_abi::driver::MAX_DMA_KIB {
            diagnostics.push(at(
                kib.span(),
                format!("dma-kib must be at most {}", atoll_abi::driver::MAX_DMA_KIB),
            ));
        } else {
            grants.dma_kib = *kib.get_ref();
        }
    }
    grants
}

fn parse_number(text: &str) -> Option<u16> {
    let text = text.trim();
    match text.strip_prefix("0x") {
        Some(hex) => u16::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

fn parse_port_range(text: &str) -> Option<PortRange> {
    let (first, last) = match text.split_once('-') {
        Some((first, last)) => (parse_number(first)?, parse_number(last)?),
        None => {
            let port = parse_number(text)?;
            (port, port)
        }
    };
    (first <= last).then_some(PortRange { first, last })
}

/// A PCI grant as `system.toml` writes it.
fn pci_grant_text(grant: &PciGrant) -> String {
    match (grant.vendor, grant.device) {
        (None, _) => "`*`".to_string(),
        (Some(vendor), None) => format!("`{vendor:04x}:*`"),
        (Some(vendor), Some(device)) => format!("`{vendor:04x}:{device:04x}`"),
    }
}

fn parse_pci_grant(text: &str) -> Option<PciGrant> {
    if text == "*" {
        return Some(PciGrant {
            vendor: None,
            device: None,
        });
    }
    let (vendor, device) = text.split_once(':')?;
    let hex = |part: &str| {
        (part.len() == 4)
            .then(|| u16::from_str_radix(part, 16).ok())
            .flatten()
    };
    Some(PciGrant {
        vendor: Some(hex(vendor)?),
        device: if device == "*" {
            None
        } else {
            Some(hex(device)?)
        },
    })
}

/// A service's WASI arguments (its name first) and environment, checked: no
/// NUL bytes (they end C strings), no `=` in variable names, and at most
/// [`atoll_abi::wasi::MAX_ARGS_ENV_LEN`] bytes together.
fn wasi_strings(
    service: &RawService,
    diagnostics: &mut Vec<Diagnostic>,
    at: &dyn Fn(Range<usize>, String) -> Diagnostic,
) -> (Vec<String>, Vec<String>) {
    let mut args = vec![service.name.get_ref().clone()];
    for arg in &service.args {
        if arg.get_ref().contains('\0') {
            diagnostics.push(at(
                arg.span(),
                "an argument cannot hold a NUL byte".to_string(),
            ));
        }
        args.push(arg.get_ref().clone());
    }
    let mut env = Vec::new();
    if let Some(table) = &service.env {
        for (key, value) in table.get_ref() {
            if key.is_empty() || key.contains('=') || key.contains('\0') || value.contains('\0') {
                diagnostics.push(at(
                    table.span(),
                    format!("environment variable `{key}`: names are non-empty without `=` or NUL, values without NUL"),
                ));
            }
            env.push(format!("{key}={value}"));
        }
    }
    let total: usize = args.iter().chain(&env).map(|text| text.len() + 1).sum();
    if total > atoll_abi::wasi::MAX_ARGS_ENV_LEN {
        diagnostics.push(at(
            service.name.span(),
            format!(
                "service `{}`: args and env hold {total} bytes, more than {}",
                service.name.get_ref(),
                atoll_abi::wasi::MAX_ARGS_ENV_LEN
            ),
        ));
    }
    (args, env)
}

/// A service's preopened directories, checked: each guest path is absolute
/// and plain (no `.`, `..` or empty components, no NUL), each value is
/// `endpoint[:/directory][:ro]` naming an endpoint the service `uses`.
/// A `BTreeMap` keeps them in guest-path order, which is descriptor order.
fn preopens(
    service: &RawService,
    diagnostics: &mut Vec<Diagnostic>,
    at: &dyn Fn(Range<usize>, String) -> Diagnostic,
) -> Vec<PreopenSpec> {
    let mut preopens = Vec::new();
    let Some(table) = &service.preopens else {
        return preopens;
    };
    for (guest, value) in table {
        match parse_preopen(guest, value.get_ref()) {
            Ok(preopen) => {
                if !service
                    .uses
                    .iter()
                    .any(|used| *used.get_ref() == preopen.endpoint)
                {
                    diagnostics.push(at(
                        value.span(),
                        format!(
                            "preopen `{guest}`: service `{}` does not use endpoint `{}`: add it to `uses`",
                            service.name.get_ref(),
                            preopen.endpoint
                        ),
                    ));
                }
                preopens.push(preopen);
            }
            Err(problem) => {
                diagnostics.push(at(value.span(), format!("preopen `{guest}`: {problem}")))
            }
        }
    }
    preopens
}

/// A service's listening sockets, checked: each is
/// `[endpoint:]tcp:PORT[:nonblocking]` (endpoint `net` when left out) with a
/// port from 1 to 65535 and an endpoint the service `uses`.
fn listen(
    service: &RawService,
    diagnostics: &mut Vec<Diagnostic>,
    at: &dyn Fn(Range<usize>, String) -> Diagnostic,
) -> Vec<(String, u16, bool)> {
    let mut listen = Vec::new();
    for value in &service.listen {
        let mut parts: Vec<&str> = value.get_ref().split(':').collect();
        let nonblocking = parts.last() == Some(&"nonblocking");
        if nonblocking {
            parts.pop();
        }
        let (endpoint, port) = match parts.as_slice() {
            ["tcp", port] => ("net", port),
            [endpoint, "tcp", port] => (*endpoint, port),
            _ => ("", &""),
        };
        let Some(port) = port.parse::<u16>().ok().filter(|port| *port != 0) else {
            diagnostics.push(at(
                value.span(),
                format!(
                    "listening socket `{}` is not `[endpoint:]tcp:PORT[:nonblocking]` with a port from 1 to 65535",
                    value.get_ref()
                ),
            ));
            continue;
        };
        if !service.uses.iter().any(|used| used.get_ref() == endpoint) {
            diagnostics.push(at(
                value.span(),
                format!(
                    "listening socket `{}`: service `{}` does not use endpoint `{endpoint}`: add it to `uses`",
                    value.get_ref(),
                    service.name.get_ref()
                ),
            ));
        }
        listen.push((endpoint.to_string(), port, nonblocking));
    }
    listen
}

/// Whether `path` is absolute and plain: `/`, or `/a/b` without `.`, `..`,
/// empty components or NUL.
fn plain_absolute(path: &str) -> bool {
    path == "/"
        || (path.starts_with('/')
            && !path.contains('\0')
            && path
                .split('/')
                .skip(1)
                .all(|part| !part.is_empty() && part != "." && part != ".."))
}

fn parse_preopen(guest: &str, value: &str) -> Result<PreopenSpec, String> {
    if !plain_absolute(guest) {
        return Err("the directory a program sees must be absolute, like `/` or `/docs`, without `.`, `..` or a trailing `/`".to_string());
    }
    let mut parts = value.split(':');
    let endpoint = parts.next().unwrap_or("").to_string();
    check_name(&endpoint).map_err(|problem| {
        format!("`{value}` is not `endpoint[:/directory][:ro]`: endpoint name {problem}")
    })?;
    let mut directory = "/".to_string();
    let mut read_only = false;
    for (index, part) in parts.enumerate() {
        if part == "ro" {
            read_only = true;
        } else if index == 0 && plain_absolute(part) {
            directory = part.to_string();
        } else {
            return Err(format!(
                "`{value}` is not `endpoint[:/directory][:ro]`: `{part}` is neither an absolute plain directory nor `ro`"
            ));
        }
    }
    Ok(PreopenSpec {
        guest: guest.to_string(),
        endpoint,
        directory,
        read_only,
    })
}

/// Names are used in logs, file names and (later) IPC: keep them plain.
fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 64 {
        return Err("must be 1 to 64 characters long");
    }
    let plain = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !plain || !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err("must start with a-z and hold only a-z, 0-9, `-` and `_`");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(source: &str) -> Vec<String> {
        match parse(Path::new("system.toml"), source) {
            Ok(_) => Vec::new(),
            Err(diagnostics) => diagnostics
                .iter()
                .map(|d| format!("{}:{}: {}", d.line, d.column, d.message))
                .collect(),
        }
    }

    #[test]
    fn a_good_description_parses() {
        let system = parse(
            Path::new("/x/system.toml"),
            "[system]\nname = \"demo\"\n\n[[service]]\nname = \"hello\"\ncrate = \"hello\"\n\n[[service]]\nname = \"b\"\nmodule = \"b.wasm\"\nmemory-limit-kib = 128\nfuel-slice = 5\n",
        )
        .unwrap();
        assert_eq!(system.name, "demo");
        assert_eq!(system.services.len(), 2);
        assert_eq!(
            system.services[0].source,
            ModuleSource::Crate("hello".into())
        );
        assert_eq!(
            system.services[1].source,
            ModuleSource::File("/x/b.wasm".into())
        );
        assert_eq!(system.services[1].limits.memory_bytes, 128 * 1024);
        assert_eq!(system.services[1].limits.fuel_slice, 5);
    }

    #[test]
    fn preopens_name_used_endpoints_and_plain_directories() {
        let system = parse(
            Path::new("/x/system.toml"),
            "[system]\nname = \"demo\"\n[[service]]\nname = \"fat\"\ncrate = \"fat\"\nprovides = [\"fs\"]\n[[service]]\nname = \"w\"\nmodule = \"w.wasm\"\nuses = [\"fs\"]\npreopens = { \"/\" = \"fs\", \"/docs\" = \"fs:/DOCS:ro\" }\n",
        )
        .unwrap();
        assert_eq!(
            system.services[1].preopens,
            [
                PreopenSpec {
                    guest: "/".into(),
                    endpoint: "fs".into(),
                    directory: "/".into(),
                    read_only: false,
                },
                PreopenSpec {
                    guest: "/docs".into(),
                    endpoint: "fs".into(),
                    directory: "/DOCS".into(),
                    read_only: true,
                },
            ]
        );
        let found = errors(
            "[system]\nname = \"demo\"\n[[service]]\nname = \"fat\"\ncrate = \"fat\"\nprovides = [\"fs\"]\n[[service]]\nname = \"w\"\nmodule = \"w.wasm\"\npreopens = { \"/\" = \"fs\", \"/a/../b\" = \"fs\", \"/c\" = \"fs:DOCS\", \"/d\" = \"fs:/x:rw\" }\n",
        );
        assert_eq!(found.len(), 4, "{found:?}");
        assert!(
            found[0].starts_with("10:20: preopen `/`: service `w` does not use endpoint `fs`"),
            "{found:?}"
        );
        assert!(
            found[1].contains("preopen `/a/../b`: the directory a program sees must be absolute"),
            "{found:?}"
        );
        assert!(
            found[2].contains("`DOCS` is neither an absolute plain directory nor `ro`"),
            "{found:?}"
        );
        assert!(found[3].contains("`rw` is neither"), "{found:?}");
    }

    #[test]
    fn listening_sockets_name_a_used_endpoint_and_a_port() {
        let head = "[system]\nname = \"demo\"\n[[service]]\nname = \"net\"\ncrate = \"netstack\"\nprovides = [\"net\"]\n[[service]]\nname = \"w\"\nmodule = \"w.wasm\"\n";
        let system = parse(
            Path::new("/x/system.toml"),
            &format!(
                "{head}uses = [\"net\"]\nlisten = [\"tcp:8081\", \"net:tcp:8082:nonblocking\"]\n"
            ),
        )
        .unwrap();
        assert_eq!(
            system.services[1].listen,
            [
                ("net".to_string(), 8081, false),
                ("net".to_string(), 8082, true)
            ]
        );
        let found = errors(&format!(
            "{head}listen = [\"tcp:80\", \"udp:53\", \"tcp:0\", \"tcp:http\"]\n"
        ));
        assert_eq!(found.len(), 4, "{found:?}");
        assert!(
            found[0].starts_with(
                "10:11: listening socket `tcp:80`: service `w` does not use endpoint `net`"
            ),
            "{found:?}"
        );
        for (problem, value) in found[1..].iter().zip(["udp:53", "tcp:0", "tcp:http"]) {
            assert!(
                problem.contains(&format!(
                    "`{value}` is not `[endpoint:]tcp:PORT[:nonblocking]`"
                )),
                "{found:?}"
            );
        }
    }

    #[test]
    fn unknown_fields_are_errors_with_their_line() {
        let found = errors(
            "[system]\nname = \"demo\"\n\n[[service]]\nname = \"a\"\ncrate = \"a\"\ncolour = \"blue\"\n",
        );
        assert_eq!(found.len(), 1);
        assert!(
            found[0].starts_with("7:1: unknown field `colour`"),
            "{found:?}"
        );
    }

    #[test]
    fn every_problem_is_reported() {
        let found = errors(
            "[system]\nname = \"Demo\"\n[kernel]\ninject-fault = \"melt\"\n[[service]]\nname = \"a\"\n[[service]]\nname = \"a\"\ncrate = \"x\"\nmodule = \"y\"\nmemory-limit-kib = 0\n",
        );
        assert_eq!(found.len(), 6, "{found:?}");
        assert!(
            found[0].starts_with("2:8: system name must start"),
            "{found:?}"
        );
        assert!(
            found[1].starts_with("4:16: unknown fault `melt`"),
            "{found:?}"
        );
        assert!(
            found[2].starts_with("6:8: service `a` has no module"),
            "{found:?}"
        );
        assert!(
            found[3].starts_with("8:8: service `a` is described twice"),
            "{found:?}"
        );
        assert!(
            found[4].starts_with("10:10: service `a` has both"),
            "{found:?}"
        );
        assert!(
            found[5].starts_with("11:20: memory-limit-kib must be"),
            "{found:?}"
        );
    }

    #[test]
    fn capabilities_must_match_up() {
        let found = errors(
            "[system]\nname = \"demo\"\n[[service]]\nname = \"a\"\ncrate = \"a\"\nprovides = [\"echo\"]\n[[service]]\nname = \"b\"\ncrate = \"b\"\nprovides = [\"echo\"]\nuses = [\"echo\", \"nobody\"]\nqueue-depth = 0\n",
        );
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(
            found[0].starts_with("12:15: queue-depth must be"),
            "{found:?}"
        );
        assert!(
            found[1].starts_with("10:13: endpoint `echo` is already provided by service `a`"),
            "{found:?}"
        );
        assert!(
            found[2].starts_with(
                "11:17: service `b` uses endpoint `nobody`, which no service provides"
            ),
            "{found:?}"
        );
    }

    #[test]
    fn chipset_ports_and_shared_pci_functions_cannot_be_granted() {
        let found = errors(
            "[system]\nname = \"demo\"\n[[service]]\nname = \"a\"\ncrate = \"a\"\nio-ports = [\"0x92\", \"0x60\", \"0x64\", \"0x510-0x51b\", \"0x0-0x1f\", \"0x80\", \"0xc0-0xdf\", \"0x600-0x63f\", \"0xb000\", \"0x4d0\", \"0x3f8-0x3ff\"]\npci = [\"1af4:1001\", \"*\"]\n[[service]]\nname = \"b\"\ncrate = \"b\"\npci = [\"1af4:*\", \"*\", \"8086:100e\"]\n",
        );
        assert_eq!(found.len(), 11, "{found:?}");
        for (problem, range) in found.iter().zip([
            "0x92",
            "0x60",
            "0x64",
            "0x510-0x51b",
            "0x0-0x1f",
            "0x80",
            "0xc0-0xdf",
            "0x600-0x63f",
            "0xb000",
            "0x4d0",
        ]) {
            assert!(
                problem.starts_with("6:") && problem.contains(&format!("ports `{range}` include")),
                "{found:?}"
            );
            assert!(problem.ends_with("which the kernel keeps"), "{found:?}");
        }
        assert!(
            found[10].starts_with(
                "9:8: PCI grant `1af4:*` of `b` may match the functions granted to `a`"
            ),
            "{found:?}"
        );
    }

    #[test]
    fn supervision_settings_are_checked() {
        let found = errors(
            "[system]\nname = \"demo\"\n[[service]]\nname = \"a\"\ncrate = \"a\"\nsupervisor = true\n[[service]]\nname = \"b\"\ncrate = \"b\"\nsupervisor = true\nprovides = [\"x\"]\nrestart = \"sometimes\"\n",
        );
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(
            found[0].starts_with("6:14: supervisor `a` must provide an endpoint"),
            "{found:?}"
        );
        assert!(
            found[1].starts_with("12:11: unknown restart strategy `sometimes`"),
            "{found:?}"
        );
        assert!(
            found[2].starts_with("10:14: service `a` is already the supervisor"),
            "{found:?}"
        );
    }

    #[test]
    fn diagnostics_show_the_line() {
        let diagnostic = Diagnostic::at(Path::new("s.toml"), "a = 1\nbad = 2\n", 6..9, "oops");
        assert_eq!(
            diagnostic.to_string(),
            "error: oops\n --> s.toml:2:1\n  |\n2 | bad = 2\n  | ^"
        );
    }
}
