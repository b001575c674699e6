//! # haops: the operations on a live kubeadm cluster
//!
//! The layer between the frontends (the `hacli` CLI, the `hapy` Python
//! module, the Woodpecker plugin, the sentinel, your own Rust tool) and the
//! backends (`kubeadm`, `proxmox`, `pfsense`, `ssh`) over the pure core
//! (`hacore`). Every sequence that makes an operation on a live cluster
//! safe lives here once: connect from a topology and its [`Reach`]
//! (settings and their precedence), observe, gate (with the leader move
//! and the lock), lock, disrupt, roll, replace and remove a master, drill,
//! plan (with the live inventory) and apply (journal, measurement). Each
//! operation returns data (a verdict, a report) and reports progress as
//! [`events::Event`]s; none prints, none exits. The simulated cluster is
//! one more backend bundle behind the same functions.
//!
//! Data flows one way: backends observe into a `hacore::ClusterState`;
//! `hacore` decides (verdict, plan); the executor acts through the backend
//! traits and records each step in the journal.

pub mod apply;
pub mod connect;
pub mod disrupt;
pub mod drill;
pub mod error;
pub mod events;
pub mod gate;
pub mod init;
pub mod inventory;
pub mod journal;
pub mod lb;
pub mod lock;
pub mod master;
pub mod observe;
pub mod plan;
pub mod reach;
pub mod reconcile;
pub mod recover;
pub mod remediate;
pub mod silence;
pub mod snapshot;

pub use connect::Live;
pub use error::Error;
pub use events::Event;
pub use reach::Reach;
