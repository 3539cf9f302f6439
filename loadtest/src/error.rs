//! Every way a loadtest command fails, each with its one-line message and exit code.

use std::path::Path;

/// A command's failure. The message is one line, printed as `loadtest: <message>`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad arguments, a missing key or setting.
    #[error("{0}")]
    Usage(String),
    /// The gatekeeper or a database cannot be reached, or is not ready.
    #[error("{0}")]
    Unreachable(String),
    /// The gateway refused a setup step (the key's role, the table).
    #[error("{0}")]
    Refused(String),
    /// An external tool (sysbench) failed, or printed what cannot be parsed.
    #[error("{0}")]
    Tool(String),
    /// Reading or writing a file.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// Drawing a chart.
    #[error("chart {0}")]
    Chart(String),
    /// The rows found differ from the rows written; the report was still written.
    #[error("{0}")]
    Verification(String),
}

/// Exit codes (sysexits.h where one fits).
pub mod exit {
    pub const USAGE: i32 = 64;
    pub const DATA: i32 = 65;
    pub const UNAVAILABLE: i32 = 69;
    pub const SOFTWARE: i32 = 70;
    pub const IO: i32 = 74;
    pub const NOPERM: i32 = 77;
    /// Rows written and rows found disagree.
    pub const MISMATCH: i32 = 3;
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => exit::USAGE,
            Error::Unreachable(_) => exit::UNAVAILABLE,
            Error::Refused(_) => exit::NOPERM,
            Error::Tool(_) => exit::DATA,
            Error::Io { .. } => exit::IO,
            Error::Chart(_) => exit::SOFTWARE,
            Error::Verification(_) => exit::MISMATCH,
        }
    }

    /// An I/O failure on `path`, saying what was being done.
    pub fn io(what: &str, path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            context: format!("cannot {what} {}", path.display()),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_has_its_own_exit_code() {
        let cases = [
            (Error::Usage("x".into()), exit::USAGE, "usage"),
            (
                Error::Unreachable("x".into()),
                exit::UNAVAILABLE,
                "unreachable",
            ),
            (Error::Refused("x".into()), exit::NOPERM, "refused"),
            (Error::Tool("x".into()), exit::DATA, "tool"),
            (
                Error::io(
                    "write",
                    Path::new("/x"),
                    std::io::ErrorKind::NotFound.into(),
                ),
                exit::IO,
                "io",
            ),
            (Error::Chart("x".into()), exit::SOFTWARE, "chart"),
            (
                Error::Verification("x".into()),
                exit::MISMATCH,
                "verification",
            ),
        ];
        for (e, code, what) in cases {
            assert_eq!(e.exit_code(), code, "{what}: {e}");
            assert!(!e.to_string().contains('\n'), "{what}: one line");
        }
    }
}
