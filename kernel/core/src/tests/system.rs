//! The builder of test systems: services from WAT or bytes, their endpoints,
//! limits and grants, the supervisor, and the platform they boot on.
//!
//! ```ignore
//! let (system, summary) = TestSystem::new()
//!     .service("server", echo_server()).provides("echo")
//!     .service("client", client).uses("echo")
//!     .run();
//! assert_eq!(system.lines_of("client"), ["5", "alpha"]);
//! ```
//!
//! Every boot bundle and service image of the tests is built here. What is not
//! here: the platform ([`super::platform`]) and the probe services
//! ([`super::probes`]).

use super::platform::TestPlatform;
use crate::service::Service;
use crate::{Kernel, LoadError, RunSummary, ServiceState};
use alloc::sync::Arc;
use atoll_abi::bundle::{self, Bundle, KernelSettings, ServiceImage, ServiceLimits};
use atoll_abi::driver::Grants;
use atoll_abi::supervision::RestartPolicy;

/// The limits a service gets unless the test gives others.
pub(crate) const LIMITS: ServiceLimits = ServiceLimits {
    memory_bytes: 1 << 20,
    fuel_slice: 1000,
    queue_depth: 4,
    swap_probation_ms: 2000,
};

/// One service of a test system.
struct Spec {
    name: String,
    module: Vec<u8>,
    limits: ServiceLimits,
    provides: Vec<String>,
    uses: Vec<String>,
    supervisor: bool,
    args: Vec<String>,
    env: Vec<String>,
    grants: Grants,
    /// (guest, endpoint, directory, read-only)
    preopens: Vec<(String, String, String, bool)>,
    /// (endpoint, port) of its listening sockets.
    listen: Vec<(String, u16)>,
}

/// A system under construction. Settings after a `service` or `module` apply
/// to that service.
pub(crate) struct TestSystem {
    services: Vec<Spec>,
    platform: TestPlatform,
    message_budget: Option<usize>,
    /// The bundle's WASI shim.
    wasi_shim: Option<Vec<u8>>,
}

impl TestSystem {
    pub(crate) fn new() -> TestSystem {
        TestSystem {
            services: Vec::new(),
            platform: TestPlatform::new(),
            message_budget: None,
            wasi_shim: None,
        }
    }

    /// Adds a service written in WAT.
    pub(crate) fn service(self, name: &str, wat: impl AsRef<str>) -> TestSystem {
        let module = wat::parse_str(wat.as_ref()).unwrap();
        self.module(name, module)
    }

    /// Adds a service given as module bytes (which may be invalid).
    pub(crate) fn module(mut self, name: &str, module: impl Into<Vec<u8>>) -> TestSystem {
        self.services.push(Spec {
            name: name.into(),
            module: module.into(),
            limits: LIMITS,
            provides: Vec::new(),
            uses: Vec::new(),
            supervisor: false,
            args: Vec::new(),
            env: Vec::new(),
            grants: Grants::default(),
            preopens: Vec::new(),
            listen: Vec::new(),
        });
        self
    }

    fn last(&mut self) -> &mut Spec {
        self.services
            .last_mut()
            .expect("a service to apply the setting to")
    }

    /// The last service provides `endpoint` (its next handle).
    pub(crate) fn provides(mut self, endpoint: &str) -> TestSystem {
        self.last().provides.push(endpoint.into());
        self
    }

    /// The last service uses `endpoint` (its next handle after those it provides).
    pub(crate) fn uses(mut self, endpoint: &str) -> TestSystem {
        self.last().uses.push(endpoint.into());
        self
    }

    /// The last service gets `limits` instead of [`LIMITS`].
    pub(crate) fn limits(mut self, limits: ServiceLimits) -> TestSystem {
        self.last().limits = limits;
        self
    }

    /// The last service is the system's supervisor.
    pub(crate) fn supervisor(mut self) -> TestSystem {
        self.last().supervisor = true;
        self
    }

    /// The last service's WASI arguments and environment.
    pub(crate) fn wasi(mut self, args: &[&str], env: &[&str]) -> TestSystem {
        let spec = self.last();
        spec.args = args.iter().map(|&arg| arg.into()).collect();
        spec.env = env.iter().map(|&var| var.into()).collect();
        self
    }

    /// The last service finds `directory` of the file service on `endpoint`
    /// preopened as `guest`.
    pub(crate) fn preopen(
        mut self,
        guest: &str,
        endpoint: &str,
        directory: &str,
        read_only: bool,
    ) -> TestSystem {
        self.last()
            .preopens
            .push((guest.into(), endpoint.into(), directory.into(), read_only));
        self
    }

    /// The last service gets a listening socket on `port` of the TCP/IP
    /// service on `endpoint` (a WASI descriptor after its preopens).
    pub(crate) fn listen(mut self, endpoint: &str, port: u16) -> TestSystem {
        self.last().listen.push((endpoint.into(), port));
        self
    }

    /// The last service's driver grants.
    pub(crate) fn grants(mut self, grants: Grants) -> TestSystem {
        self.last().grants = grants;
        self
    }

    /// Boots on `platform` instead of a plain [`TestPlatform`].
    pub(crate) fn platform(mut self, platform: TestPlatform) -> TestSystem {
        self.platform = platform;
        self
    }

    /// Puts `shim` (WAT or bytes) in the bundle as its WASI shim.
    pub(crate) fn wasi_shim(mut self, shim: impl AsRef<[u8]>) -> TestSystem {
        self.wasi_shim = Some(wat::parse_bytes(shim.as_ref()).unwrap().into_owned());
        self
    }

    /// Sets the kernel's message budget after boot.
    pub(crate) fn message_budget(mut self, bytes: usize) -> TestSystem {
        self.message_budget = Some(bytes);
        self
    }

    fn images(&self) -> Vec<ServiceImage<'_>> {
        self.services
            .iter()
            .map(|spec| ServiceImage {
                name: &spec.name,
                module: &spec.module,
                limits: spec.limits,
                provides: spec.provides.iter().map(String::as_str).collect(),
                uses: spec.uses.iter().map(String::as_str).collect(),
                supervisor: spec.supervisor,
                restart: RestartPolicy::default(),
                args: spec.args.iter().map(String::as_str).collect(),
                env: spec.env.iter().map(String::as_str).collect(),
                grants: spec.grants.clone(),
                preopens: spec
                    .preopens
                    .iter()
                    .map(|(guest, endpoint, directory, read_only)| bundle::Preopen {
                        guest,
                        endpoint,
                        directory,
                        read_only: *read_only,
                    })
                    .collect(),
                listen: spec
                    .listen
                    .iter()
                    .map(|(endpoint, port)| bundle::Listen {
                        endpoint,
                        port: *port,
                        nonblocking: false,
                    })
                    .collect(),
            })
            .collect()
    }

    /// The boot bundle of the system.
    pub(crate) fn bundle(&self) -> Vec<u8> {
        bundle::encode(&Bundle {
            kernel: KernelSettings {
                system_name: "test".into(),
                exit_when_idle: true,
                inject_fault: None,
            },
            services: self.images(),
            wasi_shim: self.wasi_shim.as_deref(),
        })
        .unwrap()
    }

    /// Boots the system; nothing has run yet.
    pub(crate) fn boot(self) -> System {
        let bundle = self.bundle();
        let platform = Arc::new(self.platform);
        let (mut kernel, settings) = Kernel::boot(&bundle, platform.clone()).unwrap();
        assert!(settings.exit_when_idle);
        if let Some(bytes) = self.message_budget {
            kernel.set_message_budget(bytes);
        }
        System { kernel, platform }
    }

    /// Boots the system and runs it until nothing can run again.
    pub(crate) fn run(self) -> (System, RunSummary) {
        let mut system = self.boot();
        let summary = system.kernel.run();
        (system, summary)
    }

    /// [`TestSystem::run`] with a kernel heap of `bytes` beyond what the
    /// thread holds (a [`crate::test_allocator::FiniteHeap`], which the
    /// platform reports), and no message budget: the heap alone bounds what
    /// services make the kernel hold. The kernel is dropped within the limit.
    pub(crate) fn run_within_heap(self, bytes: usize) -> (String, RunSummary) {
        let system = self.platform(TestPlatform::new().finite_heap());
        // The console's growth is the test's, not the kernel's.
        system.platform.reserve_console(1 << 20);
        let system = system.message_budget(usize::MAX);
        let limit = crate::test_allocator::FiniteHeap::new(bytes);
        let (system, summary) = system.run();
        let platform = Arc::clone(&system.platform);
        drop(system);
        drop(limit);
        (platform.console(), summary)
    }

    /// Loads the first service alone, outside any kernel, on an unlimited
    /// platform.
    pub(crate) fn load_alone(&self) -> Result<Service, LoadError> {
        self.load_alone_on(TestPlatform::new())
    }

    /// [`TestSystem::load_alone`] on `platform` (e.g. a small heap).
    pub(crate) fn load_alone_on(&self, platform: TestPlatform) -> Result<Service, LoadError> {
        let platform: Arc<dyn crate::Platform> = Arc::new(platform);
        let heap = crate::heap::Heap::new(Arc::clone(&platform));
        let images = self.images();
        let image = images.first().expect("a service to load");
        let program = crate::loader::Program::compile_with_shim(
            image.module,
            &image.limits,
            &heap,
            crate::loader::Translation::Eager,
            self.wasi_shim.as_deref(),
        )?;
        let image = crate::service::Image {
            name: image.name.into(),
            program: Arc::new(program),
            limits: image.limits,
            endpoint_names: Vec::new(),
            args: image.args.iter().map(|arg| (*arg).to_string()).collect(),
            env: image.env.iter().map(|var| (*var).to_string()).collect(),
            preopens: Vec::new(),
            listeners: Vec::new(),
            grants: Default::default(),
        };
        Service::start(&image, platform, &heap)
    }
}

/// A booted test system: the kernel and the platform it runs on.
pub(crate) struct System {
    pub(crate) kernel: Kernel,
    pub(crate) platform: Arc<TestPlatform>,
}

impl System {
    /// Runs until nothing can run again.
    pub(crate) fn run(&mut self) -> RunSummary {
        self.kernel.run()
    }

    /// Everything written to the console so far.
    pub(crate) fn console(&self) -> String {
        self.platform.console()
    }

    /// The lines service `name` logged, without its prefix.
    pub(crate) fn lines_of(&self, name: &str) -> Vec<String> {
        lines_of(&self.console(), name)
    }

    /// Where service `name` is in its life (`None`: not loaded).
    pub(crate) fn state_of(&self, name: &str) -> Option<ServiceState> {
        self.kernel
            .service_states()
            .into_iter()
            .find(|(service, _, _)| service == name)
            .map(|(_, state, _)| state)
    }
}

/// The lines service `name` logged on `console`, without the prefix.
pub(crate) fn lines_of(console: &str, name: &str) -> Vec<String> {
    let prefix = format!("[{name}] ");
    console
        .lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .map(String::from)
        .collect()
}
