//! `hacore`: the pure core of hacli.
//!
//! It models a kubeadm cluster's control plane (masters with stacked etcd, an
//! apiserver load balancer and its VIP, the hypervisor hosts the VMs run on),
//! holds an observed snapshot of it, and decides from data alone whether an
//! action on a node is safe now. Nothing here does I/O beyond reading the
//! files it is asked to load, and nothing reads the clock: time comes in as an
//! argument.
//!
//! ```
//! use hacore::{Action, ClusterState, Policy, Request, Topology, evaluate};
//!
//! let (topology, _warnings) = Topology::from_yaml("t.yaml", r#"
//! cluster: lab
//! controlPlaneEndpoint: { address: 10.0.0.10 }
//! nodes:
//!   - { name: m1, role: control-plane, address: 10.0.0.10 }
//!   - { name: w1, role: worker, address: 10.0.0.20 }
//! "#).unwrap();
//! let state = ClusterState::empty("2026-05-21T12:00:00Z".parse().unwrap());
//! let verdict = evaluate(
//!     &topology,
//!     &state,
//!     &Policy::for_action(Action::Reboot),
//!     &Request { action: Action::Reboot, target: "m1", requester: None },
//!     state.observed_at,
//! ).unwrap();
//! // Nothing was observed, and the only master cannot go down: never "allow".
//! assert!(!verdict.allowed());
//! ```
#![warn(missing_docs)]

pub mod action;
pub mod backend;
pub mod diagnostic;
pub mod disrupt;
pub mod error;
pub mod exec;
#[doc(hidden)]
pub mod fuzzing;
pub mod gate;
pub mod in_memory;
pub mod leadership;
pub mod masters;
pub mod plan;
pub mod quorum;
pub mod recover;
pub mod remediation;
pub mod replace;
pub mod rules;
pub mod silence;
pub mod simulate;
pub mod skeleton;
pub mod source;
pub mod state;
pub mod status;
pub mod topology;
pub mod units;
pub mod verdict;
pub mod wording;

pub use action::Action;
pub use error::Error;
pub use gate::{Policy, Request, RuleSet, evaluate};
pub use state::ClusterState;
pub use topology::Topology;
pub use verdict::{Decision, Finding, Severity, Verdict};
