//! Checks on a module's bytes before the interpreter sees them.
//!
//! wasmi builds and drops constant expressions (global initialisers, table
//! initialisers, element items, data and element segment offsets) as trees,
//! recursively: one level of native stack per operator. Extended constant
//! expressions (`i32.add`, `i64.mul`, ...) let a module nest them as deep as
//! its size allows, and a 60 KB module of nested `i32.add` overflows the
//! kernel stack. So every constant expression is bounded here, by reading the
//! sections that hold them with `wasmparser` (which reads iteratively), before
//! the bytes reach `Module::new`.
//!
//! What is here: the bound and the scan. What is not: validation proper (wasmi
//! does it; a module that does not parse is left for wasmi to refuse with its
//! own reason).

use wasmparser::{ConstExpr, DataKind, ElementItems, ElementKind, Parser, Payload, TableInit};

/// The most operators (including the final `end`) one constant expression may
/// hold. Compilers emit at most a handful (`global.get $base; i32.const 16;
/// i32.add; end` for position-independent code); the bound keeps the
/// interpreter's recursion over one expression to a few kilobytes of stack.
pub const MAX_CONST_EXPR_OPERATORS: usize = 128;

/// Why a module was refused before compilation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PreflightError {
    /// A constant expression (in the named section) holds more operators than
    /// [`MAX_CONST_EXPR_OPERATORS`].
    #[error(
        "a constant expression in the {section} section has more than {} operators",
        MAX_CONST_EXPR_OPERATORS
    )]
    ConstExprTooLong { section: &'static str },
}

/// Checks every constant expression of `module`. A module that does not parse
/// passes: the interpreter refuses it with its own reason.
pub fn check(module: &[u8]) -> Result<(), PreflightError> {
    for payload in Parser::new(0).parse_all(module) {
        let Ok(payload) = payload else {
            return Ok(());
        };
        let result = match payload {
            Payload::GlobalSection(reader) => reader.into_iter().try_for_each(|global| {
                global.map_or(Ok(()), |global| bounded(&global.init_expr, "global"))
            }),
            Payload::TableSection(reader) => reader.into_iter().try_for_each(|table| match table {
                Ok(wasmparser::Table {
                    init: TableInit::Expr(expr),
                    ..
                }) => bounded(&expr, "table"),
                _ => Ok(()),
            }),
            Payload::ElementSection(reader) => reader.into_iter().try_for_each(|element| {
                let Ok(element) = element else {
                    return Ok(());
                };
                if let ElementKind::Active { offset_expr, .. } = &element.kind {
                    bounded(offset_expr, "element")?;
                }
                if let ElementItems::Expressions(_, items) = element.items {
                    for item in items.into_iter().flatten() {
                        bounded(&item, "element")?;
                    }
                }
                Ok(())
            }),
            Payload::DataSection(reader) => reader.into_iter().try_for_each(|data| match data {
                Ok(wasmparser::Data {
                    kind: DataKind::Active { offset_expr, .. },
                    ..
                }) => bounded(&offset_expr, "data"),
                _ => Ok(()),
            }),
            _ => Ok(()),
        };
        result?;
    }
    Ok(())
}

/// Bytes of heap that compiling and instantiating `module` may take, besides
/// its linear memory and tables (admitted as they grow): a fixed part for the
/// Engine, Store and linker, 8 bytes per module byte (code), and a per-item
/// cost for each kind of item a module declares, since those cost memory
/// whatever the bytes that declare them (200,000 empty functions are an
/// 800 KB module and about 42 MB compiled). Measured on the services of this
/// repository (2-6x their size) and on hostile shapes (per function about 210
/// bytes, per element item 28, per global 88), each with a margin of at least
/// 1.2x; the test `compile_cost_bounds_hostile_shapes` checks the bound. Counts
/// items as far as the module parses.
#[must_use]
pub fn compile_cost(module: &[u8]) -> usize {
    let mut items: u64 = 0;
    for payload in Parser::new(0).parse_all(module) {
        let Ok(payload) = payload else {
            break;
        };
        let (count, cost) = match payload {
            Payload::FunctionSection(reader) => (reader.count(), 256),
            Payload::TypeSection(reader) => (reader.count(), 128),
            Payload::ImportSection(reader) => (reader.count(), 128),
            Payload::ExportSection(reader) => (reader.count(), 128),
            Payload::GlobalSection(reader) => (reader.count(), 128),
            Payload::DataSection(reader) => (reader.count(), 64),
            Payload::ElementSection(reader) => {
                let elements = reader
                    .into_iter()
                    .flatten()
                    .map(|element| match element.items {
                        ElementItems::Functions(items) => items.count(),
                        ElementItems::Expressions(_, items) => items.count(),
                    });
                (elements.fold(0u32, u32::saturating_add), 40)
            }
            _ => continue,
        };
        items = items.saturating_add(u64::from(count).saturating_mul(cost));
    }
    usize::try_from(items)
        .unwrap_or(usize::MAX)
        .saturating_add(module.len().saturating_mul(8))
        .saturating_add(256 * 1024)
}

/// Counts the operators of one expression, stopping at the bound.
fn bounded(expr: &ConstExpr<'_>, section: &'static str) -> Result<(), PreflightError> {
    let mut reader = expr.get_operators_reader();
    let mut operators = 0usize;
    while !reader.eof() {
        if reader.read().is_err() {
            // Malformed: wasmi will say so.
            return Ok(());
        }
        operators += 1;
        if operators > MAX_CONST_EXPR_OPERATORS {
            return Err(PreflightError::ConstExprTooLong { section });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]
    use super::*;
    use alloc::string::String;

    /// A module whose one global is initialised by `depth` nested `i32.add`.
    fn nested_global(depth: usize) -> alloc::vec::Vec<u8> {
        let mut text = String::from("(module (global i32 (i32.const 1)");
        for _ in 0..depth {
            text.push_str(" i32.const 1 i32.add");
        }
        text.push_str(") (memory (export \"memory\") 1) (func (export \"_start\")))");
        wat::parse_str(&text).unwrap()
    }

    #[test]
    fn ordinary_expressions_pass() {
        assert_eq!(check(&nested_global(3)), Ok(()));
        let pic = wat::parse_str(
            r#"(module
                 (import "env" "base" (global $base i32))
                 (memory 1) (table 2 funcref)
                 (global i32 (i32.add (global.get $base) (i32.const 16)))
                 (data (i32.add (global.get $base) (i32.const 8)) "x")
                 (elem (i32.const 0) funcref (ref.null func)))"#,
        )
        .unwrap();
        assert_eq!(check(&pic), Ok(()));
    }

    #[test]
    fn the_bound_is_exact() {
        // `i32.const` + depth * (`i32.const`, `i32.add`) + `end`.
        let fits = (MAX_CONST_EXPR_OPERATORS - 2) / 2;
        assert_eq!(check(&nested_global(fits)), Ok(()));
        assert!(check(&nested_global(fits + 1)).is_err());
    }

    #[test]
    fn deep_expressions_are_refused_in_every_section() {
        let deep = " i32.const 1 i32.add".repeat(200);
        for (text, section) in [
            (
                alloc::format!("(module (global i32 (i32.const 0){deep}))"),
                "global",
            ),
            (
                alloc::format!("(module (memory 1) (data (offset i32.const 0{deep}) \"x\"))"),
                "data",
            ),
            (
                alloc::format!("(module (table 1 funcref) (elem (offset i32.const 0{deep}) func))"),
                "element",
            ),
        ] {
            let module = wat::parse_str(&text).unwrap();
            assert_eq!(
                check(&module),
                Err(PreflightError::ConstExprTooLong { section }),
                "{text:.60}"
            );
        }
    }

    #[test]
    fn garbage_is_left_to_the_interpreter() {
        assert_eq!(check(b"not wasm at all"), Ok(()));
        assert_eq!(check(&[]), Ok(()));
    }
}
