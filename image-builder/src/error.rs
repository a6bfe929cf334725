//! The errors of image-builder itself.
use std::fmt;

/// A failure of the build, with what was being done.
#[derive(Debug)]
pub enum Error {
    /// Problems in the system description or its modules.
    Diagnostics(Vec<crate::manifest::Diagnostic>),
    /// Anything else: a tool that failed, a file that could not be written.
    Other(String),
}

impl fmt::Display for Error {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Diagnostics(diagnostics) => {
                for diagnostic in diagnostics {
                    writeln!(formatter, "{diagnostic}")?;
                }
                write!(
                    formatter,
                    "error: {} problem(s) in the system description",
                    diagnostics.len()
                )
            }
            Error::Other(message) => write!(formatter, "error: {message}"),
        }
    }
}

/// Adds what was being done to an error.
pub trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, Error>;
}

impl<T, E: fmt::Display> Context<T> for Result<T, E> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, Error> {
        self.map_err(|error| Error::Other(format!("{}: {error}", what())))
    }
}
