//! Keeps the C/C++ header (`sdk/c/atoll.h`) and the WAT import snippet
//! (`sdk/wat/atoll-imports.wat`) in step with this crate.
//!
//! Both are rendered here from `HOST_FUNCTIONS`, `Error::ALL` and the limit
//! constants, and compared byte for byte with the files: the header's block
//! between `/* BEGIN GENERATED FROM sdk/abi */` and `/* END GENERATED */`, and
//! the whole snippet. A difference fails the test; `ATOLL_BLESS=1` rewrites
//! the files instead. When clang (and wat2wasm) are installed, both C headers
//! are also compiled as C11 and C++, `atoll_postcard.h` is run on the host
//! against the postcard crate, and the snippet is assembled; without them
//! those checks print a note and pass.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::{env, fs};

use atoll_abi::handoff::{
    MAX_STATE_LEN, STATE_ALLOC_EXPORT, STATE_RESTORE_EXPORT, STATE_SAVE_EXPORT,
};
use atoll_abi::info::ServiceState;
use atoll_abi::supervision::{
    CONTROL_RESTART, CONTROL_START, CONTROL_STOP, CONTROL_TRACE_OFF, CONTROL_TRACE_ON,
    KERNEL_SENDER,
};
use atoll_abi::{
    DEFAULT_QUEUE_DEPTH, ENTRY_POINT, Error, HOST_FUNCTIONS, HostFunction, IMPORT_MODULE,
    MAX_LOG_LEN, MAX_MESSAGE_LEN, MAX_MODULE_LEN, MAX_QUEUE_DEPTH, MEMORY_EXPORT, RECEIVE_INFO_LEN,
    RECEIVE_INFO_SENDER_OFFSET, RECEIVE_INFO_TOKEN_OFFSET, ValueType, WASM_PAGE_SIZE, info,
};
use atoll_abi::{HANDLER_DECLINED, HANDLER_DEFERRED, HANDLER_EXPORT};

const BLESS: &str = "ATOLL_BLESS=1 cargo test -p atoll-abi --test c_header";
const BEGIN: &str = "/* BEGIN GENERATED FROM sdk/abi */\n";
const END: &str = "/* END GENERATED */";

/// What the ABI table does not say: each host function's parameter names and
/// C types, and a one-line summary (from docs/abi.md). Every C type must be
/// one Wasm type on wasm32, which `c_params` checks against the ABI.
struct Names {
    function: &'static str,
    params: &'static [(&'static str, &'static str)],
    summary: &'static str,
}

const NAMES: &[Names] = &[
    Names {
        function: "log",
        params: &[("const char *", "ptr"), ("size_t", "len")],
        summary: "writes UTF-8 text to the console as one line; 0 or an error",
    },
    Names {
        function: "lookup",
        params: &[("const char *", "name_ptr"), ("size_t", "name_len")],
        summary: "the handle (> 0) of the endpoint called `name`, or an error",
    },
    Names {
        function: "send",
        params: &[
            ("int32_t", "handle"),
            ("const void *", "ptr"),
            ("size_t", "len"),
        ],
        summary: "queues a copy of the message, never blocks; 0 or an error",
    },
    Names {
        function: "call",
        params: &[
            ("int32_t", "handle"),
            ("const void *", "ptr"),
            ("size_t", "len"),
            ("void *", "reply_ptr"),
            ("size_t", "reply_cap"),
        ],
        summary: "sends and blocks until the reply; the reply's length or an error",
    },
    Names {
        function: "receive",
        params: &[
            ("int32_t", "handle"),
            ("void *", "ptr"),
            ("size_t", "cap"),
            ("int64_t", "timeout_ns"),
            ("struct atoll_receive_info *", "info_ptr"),
        ],
        summary: "takes the oldest message (timeout < 0: for ever, 0: no wait); its length or an error",
    },
    Names {
        function: "reply",
        params: &[
            ("uint32_t", "token"),
            ("const void *", "ptr"),
            ("size_t", "len"),
        ],
        summary: "answers the call `token` names, once; 0 or an error",
    },
    Names {
        function: "reply_receive",
        params: &[
            ("uint32_t", "token"),
            ("const void *", "reply_ptr"),
            ("size_t", "reply_len"),
            ("int32_t *", "status_ptr"),
            ("int32_t", "handle"),
            ("void *", "ptr"),
            ("size_t", "cap"),
            ("int64_t", "timeout_ns"),
            ("struct atoll_receive_info *", "info_ptr"),
        ],
        summary: "`reply` (none for token 0; its result at `status_ptr`), then `receive`; what `receive` returns",
    },
    Names {
        function: "sleep",
        params: &[("int64_t", "ns")],
        summary: "blocks for at least `ns` nanoseconds (0 yields); 0",
    },
    Names {
        function: "time",
        params: &[],
        summary: "nanoseconds since boot on the monotonic clock",
    },
    Names {
        function: "control",
        params: &[
            ("int32_t", "op"),
            ("const char *", "name_ptr"),
            ("size_t", "name_len"),
        ],
        summary: "supervisor only: stops, starts or restarts a service; 0 or an error",
    },
    Names {
        function: "swap",
        params: &[
            ("const char *", "name_ptr"),
            ("size_t", "name_len"),
            ("const void *", "module_ptr"),
            ("size_t", "module_len"),
        ],
        summary: "supervisor only: replaces a service with a new module; 0 or an error",
    },
    Names {
        function: "port_in",
        params: &[("int32_t", "port"), ("int32_t", "width")],
        summary: "reads a granted I/O port (width 1, 2 or 4); the value or an error",
    },
    Names {
        function: "port_out",
        params: &[
            ("int32_t", "port"),
            ("int32_t", "width"),
            ("uint32_t", "value"),
        ],
        summary: "writes the low `width` bytes of `value` to a granted I/O port; 0 or an error",
    },
    Names {
        function: "irq_ack",
        params: &[("int32_t", "irq")],
        summary: "unmasks a granted interrupt line; 0 or an error",
    },
    Names {
        function: "dma_alloc",
        params: &[("size_t", "len")],
        summary: "allocates a zeroed DMA buffer from the `dma-kib` budget; its handle (> 0) or an error",
    },
    Names {
        function: "dma_address",
        params: &[("int32_t", "handle")],
        summary: "the physical address of a DMA buffer, or an error",
    },
    Names {
        function: "dma_read",
        params: &[
            ("int32_t", "handle"),
            ("size_t", "offset"),
            ("void *", "ptr"),
            ("size_t", "len"),
        ],
        summary: "copies from a DMA buffer into memory; 0 or an error",
    },
    Names {
        function: "dma_write",
        params: &[
            ("int32_t", "handle"),
            ("size_t", "offset"),
            ("const void *", "ptr"),
            ("size_t", "len"),
        ],
        summary: "copies from memory into a DMA buffer; 0 or an error",
    },
    Names {
        function: "dma_free",
        params: &[("int32_t", "handle")],
        summary: "returns a DMA buffer to the budget; 0 or an error",
    },
    Names {
        function: "pci_read",
        params: &[("int32_t", "address"), ("int32_t", "offset")],
        summary: "reads a granted PCI function's config register; the value or an error",
    },
    Names {
        function: "pci_write",
        params: &[
            ("int32_t", "address"),
            ("int32_t", "offset"),
            ("uint32_t", "value"),
        ],
        summary: "writes the command register of a PCI function granted by name (I/O, memory, bus-master, INTx-disable bits only); 0 or an error",
    },
    Names {
        function: "info",
        params: &[
            ("int32_t", "kind"),
            ("int32_t", "index"),
            ("void *", "ptr"),
            ("size_t", "cap"),
        ],
        summary: "writes a postcard record about the system or a service; its length or an error",
    },
    Names {
        function: "startup",
        params: &[("void *", "ptr"), ("size_t", "cap")],
        summary: "writes the service's postcard start-up record if it fits; its length or an error",
    },
];

/// The repository: two levels above this crate (sdk/abi).
fn repo_root() -> PathBuf {
    let abi = Path::new(env!("CARGO_MANIFEST_DIR"));
    abi.ancestors()
        .nth(2)
        .map_or_else(|| abi.join("../.."), Path::to_path_buf)
}

fn wasm_type(value: ValueType) -> &'static str {
    match value {
        ValueType::I32 => "i32",
        ValueType::I64 => "i64",
    }
}

/// The Wasm type a C type of the table is on wasm32.
fn c_wasm_type(c_type: &str) -> ValueType {
    match c_type {
        "int64_t" => ValueType::I64,
        "int32_t" | "uint32_t" | "size_t" => ValueType::I32,
        pointer if pointer.ends_with('*') => ValueType::I32,
        other => panic!("c_header.rs: no Wasm type known for C type `{other}`"),
    }
}

/// `(C type, name)` of each parameter: from `NAMES`, checked against the
/// ABI's Wasm types, or generic (`int32_t a0`, ...) for a function `NAMES`
/// does not know yet.
fn c_params(function: &HostFunction) -> Vec<(&'static str, String)> {
    let Some(names) = NAMES.iter().find(|names| names.function == function.name) else {
        return (function.params.iter().enumerate())
            .map(|(i, value)| match value {
                ValueType::I32 => ("int32_t", format!("a{i}")),
                ValueType::I64 => ("int64_t", format!("a{i}")),
            })
            .collect();
    };
    let from_names: Vec<ValueType> = names.params.iter().map(|(t, _)| c_wasm_type(t)).collect();
    assert_eq!(
        from_names, function.params,
        "c_header.rs: NAMES for `{}` disagrees with the ABI's parameters; update NAMES",
        function.name
    );
    (names.params.iter())
        .map(|(c_type, name)| (*c_type, (*name).to_string()))
        .collect()
}

fn summary(function: &HostFunction) -> &'static str {
    (NAMES.iter())
        .find(|names| names.function == function.name)
        .map_or("(no summary in c_header.rs NAMES)", |names| names.summary)
}

fn c_result(function: &HostFunction) -> &'static str {
    match function.results {
        [] => "void",
        [ValueType::I32] => "int32_t",
        [ValueType::I64] => "int64_t",
        more => panic!(
            "c_header.rs: {} returns {more:?}; C has one result",
            function.name
        ),
    }
}

/// `log(ptr: i32, len: i32) -> i32`, as docs/abi.md writes it.
fn wasm_signature(function: &HostFunction) -> String {
    let params: Vec<String> = (c_params(function).iter().zip(function.params))
        .map(|((_, name), value)| format!("{name}: {}", wasm_type(*value)))
        .collect();
    let mut signature = format!("{}({})", function.name, params.join(", "));
    if let [result] = function.results {
        let _ = write!(signature, " -> {}", wasm_type(*result));
    }
    signature
}

/// The receive-info record's fields: name, offset and what it holds, in
/// offset order. Each is a little-endian `u32`; together they fill the record.
fn receive_info_fields() -> [(&'static str, usize, String); 2] {
    let fields = [
        (
            "token",
            RECEIVE_INFO_TOKEN_OFFSET,
            String::from("reply token; 0 for a message from `send`"),
        ),
        (
            "sender",
            RECEIVE_INFO_SENDER_OFFSET,
            format!("sender's id; KERNEL_SENDER ({KERNEL_SENDER:#x}) for the kernel"),
        ),
    ];
    let mut next = 0;
    for (name, offset, _) in &fields {
        assert_eq!(
            *offset, next,
            "receive info field `{name}` is not where expected"
        );
        next += 4;
    }
    assert_eq!(
        next, RECEIVE_INFO_LEN,
        "receive info fields do not fill the record"
    );
    fields
}

/// The handoff exports: C name suffix, export name and Wasm signature.
const HANDOFF_EXPORTS: [(&str, &str, &str); 3] = [
    ("STATE_SAVE_EXPORT", STATE_SAVE_EXPORT, "() -> i64"),
    (
        "STATE_ALLOC_EXPORT",
        STATE_ALLOC_EXPORT,
        "(len: i32) -> i32",
    ),
    (
        "STATE_RESTORE_EXPORT",
        STATE_RESTORE_EXPORT,
        "(ptr: i32, len: i32) -> ()",
    ),
];

/// `InvalidUtf8` -> `INVALID_UTF8`.
fn screaming_snake(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

fn c_state_name(state: ServiceState) -> String {
    format!("ATOLL_SERVICE_{}", screaming_snake(&format!("{state:?}")))
}

fn c_error_name(error: Error) -> String {
    format!("ATOLL_ERR_{}", screaming_snake(&format!("{error:?}")))
}

/// The header's generated block, markers included.
fn render_c_block() -> String {
    let mut out = String::from(BEGIN);
    out.push_str(&format!(
        "/* Rendered from the atoll-abi crate; do not edit. To update:\n *     {BLESS} */\n\n"
    ));

    out.push_str("/* Module names and limits. */\n");
    let strings = [
        ("IMPORT_MODULE", IMPORT_MODULE),
        ("ENTRY_POINT", ENTRY_POINT),
        ("MEMORY_EXPORT", MEMORY_EXPORT),
    ];
    for (name, value) in strings {
        let _ = writeln!(out, "#define ATOLL_{name} \"{value}\"");
    }
    let limits = [
        ("WASM_PAGE_SIZE", WASM_PAGE_SIZE),
        ("MAX_LOG_LEN", MAX_LOG_LEN),
        ("MAX_MESSAGE_LEN", MAX_MESSAGE_LEN),
        ("RECEIVE_INFO_LEN", RECEIVE_INFO_LEN),
        ("RECEIVE_INFO_TOKEN_OFFSET", RECEIVE_INFO_TOKEN_OFFSET),
        ("RECEIVE_INFO_SENDER_OFFSET", RECEIVE_INFO_SENDER_OFFSET),
        ("DEFAULT_QUEUE_DEPTH", DEFAULT_QUEUE_DEPTH as usize),
        ("MAX_QUEUE_DEPTH", MAX_QUEUE_DEPTH as usize),
        ("MAX_MODULE_LEN", MAX_MODULE_LEN),
        ("MAX_STATE_LEN", MAX_STATE_LEN),
    ];
    for (name, value) in limits {
        let _ = writeln!(out, "#define ATOLL_{name} {value}u");
    }
    let _ = writeln!(out, "#define ATOLL_KERNEL_SENDER {KERNEL_SENDER:#x}u");
    out.push_str("/* `control` operations. */\n");
    for (name, value) in [
        ("STOP", CONTROL_STOP),
        ("START", CONTROL_START),
        ("RESTART", CONTROL_RESTART),
        ("TRACE_ON", CONTROL_TRACE_ON),
        ("TRACE_OFF", CONTROL_TRACE_OFF),
    ] {
        let _ = writeln!(out, "#define ATOLL_CONTROL_{name} {value}");
    }

    out.push_str("/* `info` kinds. */\n");
    for (name, value) in [
        ("SYSTEM", info::SYSTEM),
        ("SERVICE", info::SERVICE),
        ("ENDPOINT", info::ENDPOINT),
        ("TRACE", info::TRACE),
    ] {
        let _ = writeln!(out, "#define ATOLL_INFO_{name} {value}");
    }
    out.push_str("/* Hot-swap state handoff: the exports the kernel looks for. */\n");
    for (name, export, signature) in HANDOFF_EXPORTS {
        let _ = writeln!(out, "#define ATOLL_{name} \"{export}\" /* {signature} */");
    }
    out.push_str("/* Handlers: the export a call switched to a server may go to, and what\n");
    out.push_str(" * it returns besides `(ptr << 32) | len` (docs/abi.md, \"Handlers\"). */\n");
    let _ = writeln!(
        out,
        "#define ATOLL_HANDLER_EXPORT \"{HANDLER_EXPORT}\" /* (received: i32, reply_cap: i32) -> i64 */"
    );
    let _ = writeln!(
        out,
        "#define ATOLL_HANDLER_DEFERRED ((int64_t){HANDLER_DEFERRED})"
    );
    let _ = writeln!(
        out,
        "#define ATOLL_HANDLER_DECLINED ((int64_t){HANDLER_DECLINED})"
    );

    out.push_str("\n/* The record `receive` writes at `info_ptr`, little-endian (as wasm32\n");
    out.push_str(" * is), so this struct is that record. */\n");
    out.push_str("struct atoll_receive_info {\n");
    for (name, _, what) in receive_info_fields() {
        let _ = writeln!(out, "    uint32_t {name}; /* {what} */");
    }
    out.push_str("};\n");
    let _ = writeln!(
        out,
        "ATOLL_STATIC_ASSERT(sizeof(struct atoll_receive_info) == ATOLL_RECEIVE_INFO_LEN, \"receive info size\");"
    );
    for (name, _, _) in receive_info_fields() {
        let upper = name.to_ascii_uppercase();
        let _ = writeln!(
            out,
            "ATOLL_STATIC_ASSERT(offsetof(struct atoll_receive_info, {name}) == ATOLL_RECEIVE_INFO_{upper}_OFFSET, \"receive info {name}\");"
        );
    }

    out.push_str("\n/* A service's state in its `info` record (the byte after its name).\n");
    out.push_str(" * Numbers never change; new states get new numbers. */\n");
    out.push_str("enum atoll_service_state {\n");
    for state in ServiceState::ALL {
        let _ = writeln!(out, "    {} = {},", c_state_name(*state), state.code());
    }
    out.push_str("};\n\n");
    out.push_str("/* The lowercase word `ps` shows for a service state. */\n");
    out.push_str("static inline const char *atoll_service_state_name(uint32_t state) {\n");
    out.push_str("    switch (state) {\n");
    for state in ServiceState::ALL {
        let _ = writeln!(
            out,
            "    case {}: return \"{}\";",
            c_state_name(*state),
            state.name()
        );
    }
    out.push_str("    default: return \"unknown\";\n");
    out.push_str("    }\n}\n");

    out.push_str("\n/* Error codes: host functions return them as negative results.\n");
    out.push_str(" * Numbers never change; new codes get new numbers. */\n");
    out.push_str("enum atoll_error {\n");
    for error in Error::ALL {
        let _ = writeln!(
            out,
            "    {} = {}, /* {} */",
            c_error_name(*error),
            error.code(),
            error.description()
        );
    }
    out.push_str("};\n\n");

    out.push_str("/* A short lowercase description of a host function's result. */\n");
    out.push_str("static inline const char *atoll_error_description(int32_t code) {\n");
    out.push_str("    switch (code) {\n");
    for error in Error::ALL {
        let _ = writeln!(
            out,
            "    case {}: return \"{}\";",
            c_error_name(*error),
            error.description()
        );
    }
    out.push_str("    default: return code >= 0 ? \"ok\" : \"unknown error\";\n");
    out.push_str("    }\n}\n\n");

    let _ = writeln!(
        out,
        "/* Host functions (import module \"{IMPORT_MODULE}\"). */"
    );
    for function in HOST_FUNCTIONS {
        let params: Vec<String> = (c_params(function).into_iter())
            .map(|(c_type, name)| {
                let space = if c_type.ends_with('*') { "" } else { " " };
                format!("{c_type}{space}{name}")
            })
            .collect();
        let params = if params.is_empty() {
            "void".to_string()
        } else {
            params.join(", ")
        };
        let _ = writeln!(
            out,
            "/* {}: {} */",
            wasm_signature(function),
            summary(function)
        );
        let _ = writeln!(
            out,
            "__attribute__((import_module(\"{IMPORT_MODULE}\"), import_name(\"{}\")))",
            function.name
        );
        let _ = writeln!(
            out,
            "{} atoll_{}({params});",
            c_result(function),
            function.name
        );
    }
    out.push_str(END);
    out
}

/// The whole WAT snippet.
fn render_wat() -> String {
    let mut out = String::new();
    out.push_str(";; atoll-imports.wat: the Atoll host functions as WebAssembly text imports.\n");
    out.push_str(";; Paste the (import ...) lines at the top of a service's (module ...).\n");
    out.push_str(";; Rendered from the atoll-abi crate by sdk/abi/tests/c_header.rs; do not\n");
    let _ = writeln!(out, ";; edit. To update: {BLESS}");
    out.push_str(";; See docs/abi.md for what each function does.\n\n");
    for function in HOST_FUNCTIONS {
        let _ = writeln!(
            out,
            ";; {}: {}",
            wasm_signature(function),
            summary(function)
        );
        let mut func = format!("(func $atoll_{}", function.name);
        if !function.params.is_empty() {
            let params: Vec<&str> = function.params.iter().map(|v| wasm_type(*v)).collect();
            let _ = write!(func, " (param {})", params.join(" "));
        }
        if !function.results.is_empty() {
            let results: Vec<&str> = function.results.iter().map(|v| wasm_type(*v)).collect();
            let _ = write!(func, " (result {})", results.join(" "));
        }
        let _ = writeln!(
            out,
            "(import \"{IMPORT_MODULE}\" \"{}\" {func}))",
            function.name
        );
    }
    out.push_str("\n;; Error codes, returned as negative i32 results (numbers never change):\n");
    for error in Error::ALL {
        let _ = writeln!(
            out,
            ";; {:>4}  {:<16} {}",
            error.code(),
            format!("{error:?}"),
            error.description()
        );
    }
    out.push_str(";;\n;; Limits (bytes): ");
    let _ = writeln!(
        out,
        "MAX_MESSAGE_LEN {MAX_MESSAGE_LEN}, MAX_LOG_LEN {MAX_LOG_LEN}, RECEIVE_INFO_LEN {RECEIVE_INFO_LEN}, WASM_PAGE_SIZE {WASM_PAGE_SIZE}."
    );
    let _ = writeln!(
        out,
        ";; Largest module `swap` takes: MAX_MODULE_LEN {MAX_MODULE_LEN}; most state a swap carries: MAX_STATE_LEN {MAX_STATE_LEN}."
    );
    out.push_str(";; The receive info record, little-endian u32s:");
    for (name, offset, what) in receive_info_fields() {
        let _ = write!(out, " {name} at {offset} ({what});");
    }
    out.push('\n');
    out.push_str(";; Hot-swap state handoff exports:");
    for (_, export, signature) in HANDOFF_EXPORTS {
        let _ = write!(out, " {export} {signature};");
    }
    out.push('\n');
    out.push_str(";; info service states (the byte after the name):");
    for state in ServiceState::ALL {
        let _ = write!(out, " {} {},", state.name(), state.code());
    }
    out.pop();
    out.push_str(".\n");
    let _ = writeln!(
        out,
        ";; control ops: stop {CONTROL_STOP}, start {CONTROL_START}, restart {CONTROL_RESTART}, trace on {CONTROL_TRACE_ON}, trace off {CONTROL_TRACE_OFF}."
    );
    let _ = writeln!(
        out,
        ";; info kinds: system {}, service {}, endpoint {}, trace {}.",
        info::SYSTEM,
        info::SERVICE,
        info::ENDPOINT,
        info::TRACE
    );
    out
}

/// Compares `expected` with the file at `path`; on a difference, rewrites the
/// file under `ATOLL_BLESS=1` and fails otherwise.
fn check_or_bless(path: &Path, actual: &str, expected: &str) {
    if actual == expected {
        return;
    }
    if env::var("ATOLL_BLESS").is_ok_and(|value| value == "1") {
        let written = path
            .parent()
            .map_or(Ok(()), fs::create_dir_all)
            .and_then(|()| fs::write(path, expected));
        if let Err(error) = written {
            panic!("cannot write {}: {error}", path.display());
        }
        eprintln!("c_header: rewrote {}", path.display());
        return;
    }
    let line = (actual.lines().zip(expected.lines()))
        .position(|(a, e)| a != e)
        .unwrap_or_else(|| actual.lines().count().min(expected.lines().count()));
    panic!(
        "{} is out of date with the atoll-abi crate (first difference at line {}: \
         have {:?}, want {:?}).\nRun `{BLESS}` to regenerate it.",
        path.display(),
        line + 1,
        actual.lines().nth(line).unwrap_or("<end of file>"),
        expected.lines().nth(line).unwrap_or("<end of file>"),
    );
}

#[test]
fn names_table_lists_only_host_functions() {
    for names in NAMES {
        assert!(
            atoll_abi::host_function(names.function).is_some(),
            "c_header.rs NAMES lists `{}`, which is not a host function",
            names.function
        );
    }
}

#[test]
fn c_header_matches_abi() {
    let path = repo_root().join("sdk/c/atoll.h");
    let actual = fs::read_to_string(&path).unwrap();
    let start = actual
        .find(BEGIN)
        .unwrap_or_else(|| panic!("{} has no `{}` marker", path.display(), BEGIN.trim_end()));
    let end = actual[start..]
        .find(END)
        .map(|offset| start + offset + END.len())
        .unwrap_or_else(|| panic!("{} has no `{END}` marker", path.display()));
    let expected = format!("{}{}{}", &actual[..start], render_c_block(), &actual[end..]);
    check_or_bless(&path, &actual, &expected);
}

#[test]
fn wat_imports_match_abi() {
    let path = repo_root().join("sdk/wat/atoll-imports.wat");
    // A missing file is empty: blessing creates it.
    let actual = fs::read_to_string(&path).unwrap_or_default();
    check_or_bless(&path, &actual, &render_wat());
}

/// Runs `program args...` with `stdin` as its input; `None` if the program is
/// not installed.
fn run(program: &str, args: &[&str], stdin: &str) -> Option<std::process::Output> {
    let mut child = match Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("note: {program} not installed; skipping this check");
            return None;
        }
        Err(error) => panic!("cannot run {program}: {error}"),
    };
    // Dropping stdin after writing closes it, so the program sees its end.
    if let Some(mut input) = child.stdin.take()
        && let Err(error) = std::io::Write::write_all(&mut input, stdin.as_bytes())
    {
        panic!("cannot write to {program}: {error}");
    }
    match child.wait_with_output() {
        Ok(output) => Some(output),
        Err(error) => panic!("cannot run {program}: {error}"),
    }
}

#[test]
fn c_headers_compile_as_c11_and_cpp() {
    let include = repo_root().join("sdk/c");
    let include = format!("-I{}", include.display());
    let mut source = String::from("#include \"atoll.h\"\n#include \"atoll_postcard.h\"\n");
    source.push_str("int32_t probe(void) {\n    struct atoll_receive_info info;\n");
    source.push_str("    uint8_t buf[8];\n    (void)info;\n    (void)buf;\n");
    source.push_str("    (void)atoll_service_state_name(ATOLL_SERVICE_RUNNING);\n");
    source.push_str("    return atoll_log_str(atoll_error_description(ATOLL_ERR_NOT_FOUND));\n}\n");
    source.push_str("ATOLL_EXPORT_STATE_SAVE int64_t probe_save(void) { return 0; }\n");
    source.push_str("ATOLL_EXPORT_STATE_ALLOC int32_t probe_alloc(int32_t len) { return len; }\n");
    source.push_str("ATOLL_EXPORT_STATE_RESTORE void probe_restore(int32_t ptr, int32_t len) { (void)ptr; (void)len; }\n");
    source.push_str("ATOLL_EXPORT_HANDLER int64_t probe_handle(int32_t received, int32_t reply_cap) { return received > reply_cap ? ATOLL_HANDLER_DEFERRED : ATOLL_HANDLER_DECLINED; }\n");
    for (compiler, language, standard) in
        [("clang", "c", "-std=c11"), ("clang++", "c++", "-std=c++11")]
    {
        let args = [
            "--target=wasm32",
            "-ffreestanding",
            standard,
            "-Wall",
            "-Wextra",
            "-Wpedantic",
            "-Werror",
            "-fsyntax-only",
            &include,
            "-x",
            language,
            "-",
        ];
        let Some(output) = run(compiler, &args, &source) else {
            continue;
        };
        assert!(
            output.status.success(),
            "{compiler} -x {language} rejects sdk/c/atoll.h or atoll_postcard.h:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn wat_imports_assemble() {
    let module = format!(
        "(module\n{}\n  (memory (export \"memory\") 1)\n  (func (export \"_start\")))\n",
        render_wat()
    );
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let (wat, wasm) = (
        dir.join("atoll-imports-check.wat"),
        dir.join("atoll-imports-check.wasm"),
    );
    fs::write(&wat, module).unwrap();
    let (wat, wasm) = (wat.display().to_string(), wasm.display().to_string());
    let Some(output) = run("wat2wasm", &[&wat, "-o", &wasm], "") else {
        return;
    };
    assert!(
        output.status.success(),
        "wat2wasm rejects sdk/wat/atoll-imports.wat:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A host program exercising atoll_postcard.h: one line of hex per encoding,
/// then the decoder's checks.
const POSTCARD_PROBE: &str = r#"
#include <stdio.h>
#include "atoll_postcard.h"

#define ENCODE(calls)                                           \
    do {                                                        \
        uint8_t buf[32];                                        \
        atoll_pc_writer w;                                      \
        atoll_pc_writer_init(&w, buf, sizeof buf);              \
        calls;                                                  \
        for (size_t i = 0; i < w.len && !w.error; i++)          \
            printf("%02x", buf[i]);                             \
        printf(w.error ? "overflow\n" : "\n");                  \
    } while (0)

static int failures;
#define CHECK(cond) \
    do { if (!(cond)) { printf("check failed: %s\n", #cond); failures++; } } while (0)

static atoll_pc_reader reader(const uint8_t *bytes, size_t len) {
    atoll_pc_reader r;
    atoll_pc_reader_init(&r, bytes, len);
    return r;
}

int main(void) {
    ENCODE(atoll_pc_write_u32(&w, 0));
    ENCODE(atoll_pc_write_u32(&w, 300));
    ENCODE(atoll_pc_write_u32(&w, UINT32_MAX));
    ENCODE(atoll_pc_write_u64(&w, UINT64_MAX));
    ENCODE(atoll_pc_write_i32(&w, -1));
    ENCODE(atoll_pc_write_i32(&w, INT32_MIN));
    ENCODE(atoll_pc_write_i64(&w, INT64_MIN));
    ENCODE(atoll_pc_write_i64(&w, INT64_MAX));
    ENCODE(atoll_pc_write_str(&w, "visits"));
    ENCODE(atoll_pc_write_option(&w, false));
    ENCODE(atoll_pc_write_option(&w, true); atoll_pc_write_i64(&w, -42));
    ENCODE(atoll_pc_write_bool(&w, true); atoll_pc_write_u8(&w, 200));
    ENCODE(atoll_pc_write_bytes(&w, "0123456789abcdef0123456789abcdef", 32));

    static const uint8_t u64_max[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    atoll_pc_reader r = reader(u64_max, sizeof u64_max);
    CHECK(atoll_pc_read_u64(&r) == UINT64_MAX && atoll_pc_reader_done(&r));
    r = reader(u64_max, sizeof u64_max);
    CHECK(atoll_pc_read_i64(&r) == INT64_MIN && atoll_pc_reader_done(&r));
    static const uint8_t u32_big[] = {0xff, 0xff, 0xff, 0xff, 0x10};
    r = reader(u32_big, sizeof u32_big);
    atoll_pc_read_u32(&r);
    CHECK(r.error);
    static const uint8_t u64_long[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00};
    r = reader(u64_long, sizeof u64_long);
    atoll_pc_read_u64(&r);
    CHECK(r.error);
    static const uint8_t add[] = {2, 6, 'v', 'i', 's', 'i', 't', 's', 5};
    r = reader(add, sizeof add);
    const char *text;
    size_t len;
    CHECK(atoll_pc_read_variant(&r) == 2 && atoll_pc_read_str(&r, &text, &len) && len == 6 &&
          atoll_pc_read_i64(&r) == -3 && atoll_pc_reader_done(&r));
    r = reader(add, sizeof add - 1);
    atoll_pc_read_variant(&r);
    atoll_pc_read_str(&r, &text, &len);
    atoll_pc_read_i64(&r);
    CHECK(r.error);
    static const uint8_t surrogate[] = {3, 0xed, 0xa0, 0x80};
    r = reader(surrogate, sizeof surrogate);
    CHECK(!atoll_pc_read_str(&r, &text, &len) && r.error);
    static const uint8_t emoji[] = {4, 0xf0, 0x9f, 0x8c, 0xb4};
    r = reader(emoji, sizeof emoji);
    CHECK(atoll_pc_read_str(&r, &text, &len) && len == 4 && atoll_pc_reader_done(&r));
    static const uint8_t tag2[] = {2};
    r = reader(tag2, sizeof tag2);
    CHECK(!atoll_pc_read_option(&r) && r.error);
    printf("decode failures: %d\n", failures);
    return 0;
}
"#;

#[test]
fn postcard_helpers_match_postcard() {
    use serde::Serialize;
    fn hex(value: &impl Serialize) -> String {
        let bytes = postcard::to_allocvec(value).unwrap();
        bytes.iter().map(|byte| format!("{byte:02x}")).collect()
    }
    let expected = [
        hex(&0u32),
        hex(&300u32),
        hex(&u32::MAX),
        hex(&u64::MAX),
        hex(&-1i32),
        hex(&i32::MIN),
        hex(&i64::MIN),
        hex(&i64::MAX),
        hex(&"visits"),
        hex(&None::<i64>),
        hex(&Some(-42i64)),
        hex(&(true, 200u8)),
        // 32 bytes and their length do not fit a 32-byte buffer.
        "overflow".to_string(),
        "decode failures: 0".to_string(),
    ];
    // The rejections the probe checks are postcard's too.
    assert!(postcard::from_bytes::<u32>(&[0xff, 0xff, 0xff, 0xff, 0x10]).is_err());
    assert!(postcard::from_bytes::<u64>(&[0x80; 10]).is_err());
    assert!(postcard::from_bytes::<String>(&[3, 0xed, 0xa0, 0x80]).is_err());
    assert!(postcard::from_bytes::<Option<u8>>(&[2]).is_err());

    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let binary = dir.join("atoll-postcard-probe").display().to_string();
    let include = format!("-I{}", repo_root().join("sdk/c").display());
    let args = [
        "-std=c11", "-O1", "-Wall", "-Wextra", "-Werror", &include, "-o", &binary, "-x", "c", "-",
    ];
    let Some(output) = run("clang", &args, POSTCARD_PROBE) else {
        return;
    };
    assert!(
        output.status.success(),
        "the postcard probe does not compile:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = Command::new(&binary).output().unwrap();
    let lines: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines, expected, "atoll_postcard.h disagrees with postcard");
}
