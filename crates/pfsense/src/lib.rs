//! `pfsense`: the load-balancer backend for pfSense's HAProxy package.
//!
//! Today it holds [`haproxy`], an async client for HAProxy's runtime API
//! (the stats socket): it reads the apiserver pool as a
//! [`hacore::state::LbState`] and changes a server's administrative state
//! (`ready`, `drain`, `maint`) for a planned disruption, waiting with a
//! deadline for the result. pfSense configuration management (its
//! `config.xml` pools and frontends) will live beside it.
#![warn(missing_docs)]

#[doc(hidden)]
pub mod fuzzing;
pub mod haproxy;
pub mod lb;

pub use haproxy::{AdminState, Error, RuntimeClient, ServerStat, ServerStatus, Stats, Want};
