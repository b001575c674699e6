//! The one error type of `hacore`.

use crate::diagnostic::Diagnostic;

/// Everything that can go wrong loading or evaluating in the core.
///
/// Every variant a user can cause names the file, field, node or value
/// involved, and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read. The I/O error is part of the message (and
    /// not also a `source()`, so that a chain of causes prints it once).
    #[error("{file}: cannot read: {cause}")]
    Io {
        /// The file.
        file: String,
        /// The underlying error.
        cause: std::io::Error,
    },
    /// A document is not valid YAML/JSON or does not match the schema.
    #[error("{file}:{line}:{column}: {}{message}", field_prefix(field))]
    Parse {
        /// The file (or a name given to an in-memory document).
        file: String,
        /// 1-based line; 0 when unknown.
        line: usize,
        /// 1-based column; 0 when unknown.
        column: usize,
        /// The field's path (`etcd.members[0].id`); empty when the error is
        /// not in a field (a syntax error, the document as a whole).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A document parsed but failed validation; every error is listed.
    #[error("{file}: {}:\n{}", if errors.len() == 1 { "1 error".to_string() } else { format!("{} errors", errors.len()) }, render(errors))]
    Invalid {
        /// The file.
        file: String,
        /// The errors, each located where possible.
        errors: Vec<Diagnostic>,
    },
    /// The named target is neither a node nor a hypervisor host of the topology.
    #[error(
        "unknown target `{target}`: not a node or hypervisor host in the topology (known: {known})"
    )]
    UnknownTarget {
        /// What the user asked for.
        target: String,
        /// The names that exist, comma-separated.
        known: String,
    },
    /// An action name was not recognised.
    #[error(
        "unknown action `{0}`: expected one of reboot, drain, upgrade, shutdown, remove-member, join"
    )]
    UnknownAction(String),
    /// A built-in policy name was not recognised.
    #[error("unknown policy `{0}`: expected a file path or one of the built-ins: {1}")]
    UnknownPolicy(String, String),
    /// A policy given as a path names no file.
    #[error(
        "policy file `{0}` does not exist (a policy is a file path or one of the built-ins: {1})"
    )]
    PolicyFileMissing(String, String),
}

fn field_prefix(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!("{field}: ")
    }
}

fn render(errors: &[Diagnostic]) -> String {
    errors
        .iter()
        .map(|d| format!("  {d}"))
        .collect::<Vec<_>>()
        .join("\n")
}
