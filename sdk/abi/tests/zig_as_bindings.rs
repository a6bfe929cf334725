//! Keeps the Zig and AssemblyScript bindings (`sdk/zig/atoll.zig`,
//! `sdk/assemblyscript/atoll.ts`) in step with this crate: each must declare
//! every host function of [`HOST_FUNCTIONS`] with its Wasm signature, every
//! error code of [`Error::ALL`] and every service state of
//! [`ServiceState::ALL`] with its number, the limits, the receive-info offsets
//! and the state-handoff export names, and nothing else. The bindings are written one declaration per line, which is
//! all the parsing here relies on.

use std::collections::BTreeMap;
use std::path::Path;

use atoll_abi::handoff::{
    MAX_STATE_LEN, STATE_ALLOC_EXPORT, STATE_RESTORE_EXPORT, STATE_SAVE_EXPORT,
};
use atoll_abi::info::ServiceState;
use atoll_abi::{
    Error, HOST_FUNCTIONS, IMPORT_MODULE, MAX_LOG_LEN, MAX_MESSAGE_LEN, MAX_MODULE_LEN,
    RECEIVE_INFO_LEN, RECEIVE_INFO_SENDER_OFFSET, RECEIVE_INFO_TOKEN_OFFSET, ValueType,
};

/// A host function's Wasm parameter and result types.
type Signature = (Vec<ValueType>, Vec<ValueType>);

/// How one language writes the declarations this test reads.
struct Language {
    /// The bindings file, relative to `sdk/`.
    path: &'static str,
    /// A word that every import declaration contains, and no other code line.
    import_marker: &'static str,
    /// Parses one import line into (import name, signature).
    parse_import: fn(&str) -> (String, Signature),
    /// The line opening the error-code enum, and the line closing it.
    errors_open: &'static str,
    errors_close: &'static str,
    /// The line opening the service-state enum (closed like the errors').
    states_open: &'static str,
    /// The declarations of `MAX_LOG_LEN`, `MAX_MESSAGE_LEN`,
    /// `RECEIVE_INFO_LEN`, `RECEIVE_INFO_TOKEN_OFFSET`,
    /// `RECEIVE_INFO_SENDER_OFFSET`, `MAX_MODULE_LEN` and `MAX_STATE_LEN`, up
    /// to the `=`.
    limits: [&'static str; 7],
    /// The declarations of `STATE_SAVE_EXPORT`, `STATE_ALLOC_EXPORT`,
    /// `STATE_RESTORE_EXPORT` and `HANDLER_EXPORT`, up to the `=`.
    exports: [&'static str; 4],
}

/// The values `Language::limits` must declare, in that order.
const LIMITS: [usize; 7] = [
    MAX_LOG_LEN,
    MAX_MESSAGE_LEN,
    RECEIVE_INFO_LEN,
    RECEIVE_INFO_TOKEN_OFFSET,
    RECEIVE_INFO_SENDER_OFFSET,
    MAX_MODULE_LEN,
    MAX_STATE_LEN,
];

/// The names `Language::exports` must declare, in that order.
const EXPORTS: [&str; 4] = [
    STATE_SAVE_EXPORT,
    STATE_ALLOC_EXPORT,
    STATE_RESTORE_EXPORT,
    atoll_abi::HANDLER_EXPORT,
];

const ZIG: Language = Language {
    path: "zig/atoll.zig",
    import_marker: "extern",
    parse_import: zig_import,
    errors_open: "pub const Error = enum(i32) {",
    errors_close: "};",
    states_open: "pub const ServiceState = enum(u8) {",
    limits: [
        "pub const max_log_len: usize",
        "pub const max_message_len: usize",
        "pub const receive_info_len: usize",
        "pub const receive_info_token_offset: usize",
        "pub const receive_info_sender_offset: usize",
        "pub const max_module_len: usize",
        "pub const max_state_len: usize",
    ],
    exports: [
        "pub const state_save_export",
        "pub const state_alloc_export",
        "pub const state_restore_export",
        "pub const handler_export",
    ],
};

const ASSEMBLYSCRIPT: Language = Language {
    path: "assemblyscript/atoll.ts",
    import_marker: "declare",
    parse_import: assemblyscript_import,
    errors_open: "export enum ErrorCode {",
    errors_close: "}",
    states_open: "export enum ServiceState {",
    limits: [
        "export const MAX_LOG_LEN: i32",
        "export const MAX_MESSAGE_LEN: i32",
        "export const RECEIVE_INFO_LEN: i32",
        "export const RECEIVE_INFO_TOKEN_OFFSET: i32",
        "export const RECEIVE_INFO_SENDER_OFFSET: i32",
        "export const MAX_MODULE_LEN: i32",
        "export const MAX_STATE_LEN: i32",
    ],
    exports: [
        "export const STATE_SAVE_EXPORT: string",
        "export const STATE_ALLOC_EXPORT: string",
        "export const STATE_RESTORE_EXPORT: string",
        "export const HANDLER_EXPORT: string",
    ],
};

/// `pub extern "atoll" fn name(a: T, b: U) R;`
fn zig_import(line: &str) -> (String, Signature) {
    let prefix = format!("pub extern \"{IMPORT_MODULE}\" fn ");
    let rest = line
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("Zig import not of the form `{prefix}...`: {line}"));
    let (name, params, result) = split_signature(line, rest);
    (name.to_string(), signature(line, &params, result, zig_type))
}

/// `@external("atoll", "name") export declare function name(a: T, b: U): R;`
fn assemblyscript_import(line: &str) -> (String, Signature) {
    let prefix = format!("@external(\"{IMPORT_MODULE}\", \"");
    let (name, rest) = line
        .strip_prefix(&prefix)
        .and_then(|rest| rest.split_once("\")"))
        .unwrap_or_else(|| {
            panic!("AssemblyScript import not of the form `{prefix}...\")`: {line}")
        });
    let function = rest
        .trim()
        .strip_prefix("export declare function ")
        .unwrap_or_else(|| panic!("expected `export declare function` after @external: {line}"));
    let (function_name, params, result) = split_signature(line, function);
    assert_eq!(
        function_name, name,
        "function name differs from import name: {line}"
    );
    let result = result
        .strip_prefix(':')
        .unwrap_or_else(|| panic!("no `: result` type: {line}"))
        .trim();
    (
        name.to_string(),
        signature(line, &params, result, assemblyscript_type),
    )
}

/// Splits `name(a: T, b: U) rest;` into the name, the parameter types and `rest`.
fn split_signature<'a>(line: &str, text: &'a str) -> (&'a str, Vec<&'a str>, &'a str) {
    let (name, after_name) = text
        .split_once('(')
        .unwrap_or_else(|| panic!("no parameter list: {line}"));
    let (params, result) = after_name
        .rsplit_once(')')
        .unwrap_or_else(|| panic!("unclosed parameter list: {line}"));
    let params = params
        .split(',')
        .map(str::trim)
        .filter(|param| !param.is_empty())
        .map(|param| {
            let (_, ty) = param
                .split_once(':')
                .unwrap_or_else(|| panic!("parameter `{param}` has no type: {line}"));
            ty.trim()
        })
        .collect();
    let result = result
        .trim()
        .strip_suffix(';')
        .unwrap_or_else(|| panic!("declaration does not end with `;`: {line}"))
        .trim();
    (name.trim(), params, result)
}

fn signature(
    line: &str,
    params: &[&str],
    result: &str,
    map: fn(&str) -> Option<ValueType>,
) -> Signature {
    let wasm = |ty: &str| map(ty).unwrap_or_else(|| panic!("unknown type `{ty}`: {line}"));
    let results = if result == "void" {
        Vec::new()
    } else {
        vec![wasm(result)]
    };
    (params.iter().map(|ty| wasm(ty)).collect(), results)
}

/// The Wasm type of a Zig type on wasm32.
fn zig_type(ty: &str) -> Option<ValueType> {
    match ty {
        "i32" | "u32" | "usize" | "[*]const u8" | "[*]u8" | "*i32" => Some(ValueType::I32),
        "i64" | "u64" => Some(ValueType::I64),
        _ => None,
    }
}

/// The Wasm type of an AssemblyScript type on wasm32.
fn assemblyscript_type(ty: &str) -> Option<ValueType> {
    match ty {
        "i32" | "u32" | "usize" => Some(ValueType::I32),
        "i64" | "u64" => Some(ValueType::I64),
        _ => None,
    }
}

fn read(language: &Language) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(language.path);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

/// Lines that are code, not comments.
fn code_lines(source: &str) -> impl Iterator<Item = &str> {
    source.lines().map(str::trim).filter(|line| {
        !line.is_empty()
            && !line.starts_with("//")
            && !line.starts_with("/*")
            && !line.starts_with('*')
    })
}

fn declared_imports(language: &Language, source: &str) -> BTreeMap<String, Signature> {
    let mut imports = BTreeMap::new();
    for line in code_lines(source).filter(|line| line.contains(language.import_marker)) {
        let (name, signature) = (language.parse_import)(line);
        assert!(
            imports.insert(name.clone(), signature).is_none(),
            "{}: `{name}` declared twice",
            language.path
        );
    }
    imports
}

/// The `Name = number,` entries of the enum opened by the line `open`.
fn declared_enum(language: &Language, source: &str, open: &str) -> BTreeMap<String, i32> {
    let mut lines = source
        .lines()
        .skip_while(|line| *line != open)
        .skip(1)
        .take_while(|line| *line != language.errors_close)
        .map(str::trim)
        .filter(|line| {
            !line.is_empty()
                && !line.starts_with("//")
                && !line.starts_with("/*")
                && !line.starts_with('*')
        })
        .peekable();
    assert!(
        lines.peek().is_some(),
        "{}: no entries between `{open}` and `{}`",
        language.path,
        language.errors_close
    );
    let mut errors = BTreeMap::new();
    for line in lines {
        let (name, code) = line
            .strip_suffix(',')
            .and_then(|entry| entry.split_once('='))
            .and_then(|(name, code)| Some((name.trim(), code.trim().parse::<i32>().ok()?)))
            .unwrap_or_else(|| panic!("{}: not `Name = code,`: {line}", language.path));
        assert!(
            errors.insert(name.to_string(), code).is_none(),
            "{}: `{name}` declared twice in `{open}`",
            language.path
        );
    }
    errors
}

/// What `declaration = value;` declares (its one declaration), up to the `;`.
fn declared_value<'a>(language: &Language, source: &'a str, declaration: &str) -> &'a str {
    let mut found = code_lines(source).filter_map(|line| line.strip_prefix(declaration));
    let value = found
        .next()
        .unwrap_or_else(|| panic!("{}: no `{declaration}`", language.path));
    assert!(
        found.next().is_none(),
        "{}: `{declaration}` twice",
        language.path
    );
    value
        .trim()
        .strip_prefix('=')
        .and_then(|value| value.trim().strip_suffix(';'))
        .map(str::trim)
        .unwrap_or_else(|| panic!("{}: `{declaration}` is not `= value;`", language.path))
}

fn declared_limit(language: &Language, source: &str, declaration: &str) -> usize {
    declared_value(language, source, declaration)
        .parse()
        .unwrap_or_else(|_| panic!("{}: `{declaration}` is not `= number;`", language.path))
}

fn declared_string<'a>(language: &Language, source: &'a str, declaration: &str) -> &'a str {
    declared_value(language, source, declaration)
        .strip_prefix('"')
        .and_then(|value| value.strip_suffix('"'))
        .unwrap_or_else(|| panic!("{}: `{declaration}` is not `= \"text\";`", language.path))
}

fn check(language: &Language) {
    let source = read(language);

    let expected: BTreeMap<String, Signature> = HOST_FUNCTIONS
        .iter()
        .map(|function| {
            let signature = (function.params.to_vec(), function.results.to_vec());
            (function.name.to_string(), signature)
        })
        .collect();
    assert_eq!(
        declared_imports(language, &source),
        expected,
        "{}: host functions differ from atoll_abi::HOST_FUNCTIONS",
        language.path
    );

    let expected: BTreeMap<String, i32> = Error::ALL
        .iter()
        .map(|error| (format!("{error:?}"), error.code()))
        .collect();
    assert_eq!(
        declared_enum(language, &source, language.errors_open),
        expected,
        "{}: error codes differ from atoll_abi::Error::ALL",
        language.path
    );

    let expected: BTreeMap<String, i32> = ServiceState::ALL
        .iter()
        .map(|state| (format!("{state:?}"), i32::from(state.code())))
        .collect();
    assert_eq!(
        declared_enum(language, &source, language.states_open),
        expected,
        "{}: service states differ from atoll_abi::info::ServiceState::ALL",
        language.path
    );

    for (declaration, expected) in language.limits.iter().zip(LIMITS) {
        assert_eq!(
            declared_limit(language, &source, declaration),
            expected,
            "{}: `{declaration}`",
            language.path
        );
    }
    for (declaration, expected) in language.exports.iter().zip(EXPORTS) {
        assert_eq!(
            declared_string(language, &source, declaration),
            expected,
            "{}: `{declaration}`",
            language.path
        );
    }
}

#[test]
fn zig_bindings_match_the_abi() {
    check(&ZIG);
}

#[test]
fn assemblyscript_bindings_match_the_abi() {
    check(&ASSEMBLYSCRIPT);
}

/// The parsers themselves: a drifted declaration must be seen as different.
#[test]
fn parsers_read_what_they_should() {
    let (name, signature) = zig_import(
        "pub extern \"atoll\" fn receive(h: i32, p: [*]u8, c: usize, t: i64, i: [*]u8) i32;",
    );
    assert_eq!(name, "receive");
    let receive = atoll_abi::RECEIVE;
    assert_eq!(
        signature,
        (receive.params.to_vec(), receive.results.to_vec())
    );
    let (name, signature) = assemblyscript_import(
        "@external(\"atoll\", \"time\") export declare function time(): i64;",
    );
    assert_eq!(name, "time");
    assert_eq!(signature, (Vec::new(), vec![ValueType::I64]));
    let (_, signature) = zig_import("pub extern \"atoll\" fn sleep(ns: i32) void;");
    assert_ne!(signature, (vec![ValueType::I64], vec![ValueType::I32]));
}
