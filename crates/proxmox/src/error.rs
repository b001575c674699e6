//! Errors of the client: each names the endpoint and carries Proxmox's text.

use std::collections::BTreeMap;
use std::time::Duration;

/// Why a call failed. Never holds the token's secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The token was refused (HTTP 401).
    #[error(
        "{method} {endpoint}: HTTP 401 {message}: the API token `{token_id}` was refused; check its id and secret (Datacenter > Permissions > API Tokens)"
    )]
    Unauthorized {
        /// HTTP method.
        method: String,
        /// Endpoint (path after `/api2/json`).
        endpoint: String,
        /// Proxmox's text.
        message: String,
        /// The token id (never the secret).
        token_id: String,
    },
    /// Proxmox answered with an error status.
    #[error("{method} {endpoint}: HTTP {status} {message}{}", fmt_errors(.errors))]
    Api {
        /// HTTP method.
        method: String,
        /// Endpoint (path after `/api2/json`).
        endpoint: String,
        /// HTTP status.
        status: u16,
        /// Proxmox's text (the `message` field, else the reason phrase).
        message: String,
        /// The `errors` map (parameter -> text) of a 400.
        errors: BTreeMap<String, String>,
    },
    /// The request did not reach Proxmox, or its answer was cut.
    #[error("{method} {endpoint}: {detail}")]
    Transport {
        /// HTTP method.
        method: String,
        /// Endpoint.
        endpoint: String,
        /// What happened (the whole cause chain).
        detail: String,
    },
    /// The server's certificate was refused (not retried).
    #[error("{method} {endpoint}: TLS: {detail}")]
    Tls {
        /// HTTP method.
        method: String,
        /// Endpoint.
        endpoint: String,
        /// Why (the whole cause chain).
        detail: String,
    },
    /// The answer did not have the expected shape.
    #[error("{method} {endpoint}: unexpected answer: {detail}")]
    Decode {
        /// HTTP method.
        method: String,
        /// Endpoint.
        endpoint: String,
        /// What did not fit.
        detail: String,
    },
    /// Something did not finish within its deadline.
    #[error("{what}: not done within {}s", .deadline.as_secs_f64())]
    Timeout {
        /// What was waited on.
        what: String,
        /// The deadline.
        deadline: Duration,
    },
    /// A task ended with an error.
    #[error("task {upid} ({kind} on {node}) failed: {exitstatus}")]
    TaskFailed {
        /// The task.
        upid: String,
        /// Task type (`qmclone`, `qmstart`...).
        kind: String,
        /// Node.
        node: String,
        /// Proxmox's exit status text.
        exitstatus: String,
    },
    /// The VM is not one this tool created (or not the one named): it is
    /// left alone. The message names what was found, e.g. `VM 205 is
    /// k8s-node5 (running), not created by hacli: not deleting it`.
    #[error("{0}")]
    NotOurs(String),
    /// A UPID could not be parsed.
    #[error("not a UPID: `{0}` (expected UPID:node:pid:pstart:starttime:type:id:user:)")]
    BadUpid(String),
}

fn fmt_errors(errors: &BTreeMap<String, String>) -> String {
    if errors.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = errors
        .iter()
        .map(|(k, v)| format!("{k}: {}", v.trim()))
        .collect();
    format!(" ({})", parts.join("; "))
}

impl Error {
    /// HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            Error::Unauthorized { .. } => Some(401),
            _ => None,
        }
    }

    /// Whether Proxmox refused because the VM is locked.
    pub fn is_locked(&self) -> bool {
        matches!(self, Error::Api { message, .. } if message.contains("VM is locked"))
    }

    /// Whether Proxmox said the VM does not exist.
    pub fn is_missing_vm(&self) -> bool {
        matches!(self, Error::Api { status: 500 | 404, message, .. }
            if message.contains("does not exist"))
    }
}
