//! A Proxmox VE API client and hacore's [`Hypervisor`](hacore::backend::Hypervisor)
//! backend on it.
//!
//! - Authentication with API tokens (`Authorization: PVEAPIToken=USER@REALM!ID=SECRET`),
//!   configured from flags, the topology, or the variables users already set
//!   for bpg's and Telmate's Terraform providers ([`Settings::from_env`]).
//! - TLS against the system roots, a CA file, or a pinned SHA-256 certificate
//!   fingerprint; verification is skipped only when asked, with a warning.
//! - Tasks ([`Upid`]) are polled under a deadline with a backoff capped at
//!   200 ms; a locked VM is waited on; only idempotent reads are retried on
//!   connection errors.
//! - Errors name the endpoint and carry Proxmox's own text (the `errors` map,
//!   the `message` field, the reason phrase). The token is never in logs,
//!   errors or `Debug`.
#![warn(missing_docs)]

pub mod backend;
pub mod client;
pub mod config;
pub mod error;
pub mod ha;
pub mod inventory;
pub mod mark;
pub mod task;
mod tls;

pub use backend::ProxmoxHypervisor;
pub use client::{
    Client, CloneParams, ClusterVm, NodeEntry, NodeStatus, QemuEntry, TaskStatus, VmStatus,
    encode_sshkeys,
};
pub use config::{Config, ConfigError, Settings, TlsMode, Token};
pub use error::Error;
pub use inventory::{HostView, InventoryView, VmView};
pub use mark::{Found, Owner};
pub use reqwest::Method;
pub use task::{TaskOutcome, Upid};
