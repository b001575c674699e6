//! The migration planner: from the current topology (a single master, or
//! fewer masters) to the target (an odd number of masters behind a load
//! balancer VIP), an ordered plan of phases and steps.
//!
//! Each step carries its operation, the gate that must allow it, how it is
//! verified (the operation's own `is_done`), its rollback, its expected
//! duration and the client-visible outage it causes. The plan is refused,
//! with every reason, when it cannot be safe: an even target size, an
//! over-committed hypervisor, a VM id or address already in use, a missing
//! load balancer.
//!
//! One module per phase, each a function from the `Ctx` (the two
//! topologies, the options and what follows from them) to its steps, in the
//! order [`plan`] runs them:
//!
//! | module | decides |
//! |---|---|
//! | `refusals` | whether the migration can be made safe, and the accepted risks |
//! | `preflight` | the free addresses, etcd and VM snapshots |
//! | `endpoint` | the `controlPlaneEndpoint` and apiserver SAN retrofit |
//! | `load_balancer` | the VIP, DNS name, pool and frontend |
//! | `provision` | a VM per new master, checked: not joined by itself, the master's versions |
//! | `join_material` | the certificate key (and its renewal before a join) |
//! | `joins` | each new master's join, one at a time, checked before the pool gets it |
//! | `cutover` | every client moved to the VIP |
//! | `verify` | the end state checked; the jobs pinned to the old master reviewed |
//!
//! Each phase says what its rollback does. `recovery` writes the worst case
//! outside the run: the preflight etcd snapshot restored onto the first
//! master by hand, with the exact commands. `render` writes a plan for
//! people (markdown and text).

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::action::Action;
use crate::backend::Op;
use crate::state::ClusterState;
use crate::topology::{Node, Topology};
use crate::units::Dur;

pub mod commands;
mod cutover;
mod endpoint;
mod join_material;
mod joins;
mod load_balancer;
pub mod placement;
pub use verify::with_drill;
mod preflight;
mod provision;
mod recovery;
mod refusals;
mod render;
mod verify;

/// How long a `kubeadm init phase upload-certs` key (and the `kubeadm-certs`
/// Secret) lives.
pub const CERTIFICATE_KEY_TTL: Dur = Dur::hours(2);

/// Margin kept before the key expires: a join must finish this long before it.
pub const CERTIFICATE_KEY_MARGIN: Dur = Dur::secs(15 * 60);

/// A reviewed, ordered migration plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// Cluster name.
    pub cluster: String,
    /// The topology now.
    pub from: Topology,
    /// The topology wanted.
    pub to: Topology,
    /// Whether joins go through etcd learners.
    pub learner_joins: bool,
    /// Phases, in order; a failure rolls back the current phase.
    pub phases: Vec<Phase>,
    /// Things the reviewer should know (accepted risks).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The worst case, outside the run: restoring the preflight etcd
    /// snapshot onto one master, by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<Recovery>,
}

/// A documented manual procedure for when rolling back a phase is not
/// enough (etcd lost quorum, the cluster's data is damaged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recovery {
    /// What it achieves.
    pub title: String,
    /// When to use it, and what it costs.
    pub when: String,
    /// Steps, in order; a person runs each and checks it off.
    pub steps: Vec<RecoveryStep>,
}

/// One manual recovery step: where to run what, and how to know it worked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryStep {
    /// Stable id.
    pub id: String,
    /// What it does.
    pub title: String,
    /// Where the commands run (a host, or where hacli ran).
    pub on: String,
    /// The exact commands, in order.
    pub commands: Vec<String>,
    /// What the person checks before going on.
    pub confirm: String,
}

/// A unit of rollback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Phase {
    /// Stable id.
    pub id: String,
    /// What the phase achieves.
    pub title: String,
    /// Steps, in order.
    pub steps: Vec<Step>,
    /// What rolling the phase back does, for people (the steps' rollbacks
    /// carry it out, in reverse order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<String>,
}

/// One step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// Stable id, unique in the plan (journal key).
    pub id: String,
    /// What it does, for people.
    pub title: String,
    /// The operation.
    pub op: Op,
    /// Gates that must allow the step right before it runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preconditions: Vec<Precondition>,
    /// The operation that undoes it, if it has an effect to undo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<Op>,
    /// How long it should take.
    pub expected_duration: Dur,
    /// What clients see while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outage: Option<Outage>,
    /// Notes for the reviewer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// What the step runs, for people: the command on the node, the etcd
    /// call, the Proxmox API request, the load balancer's change (secrets
    /// shown as `$TOKEN` and `<redacted>`). The executor runs `op`; this is
    /// its description. Absent from plans written before it existed, which
    /// keep their digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// What the rollback runs, described the same way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_command: Option<String>,
}

/// A gate evaluated before a step: `policy` must allow `action` on `target`
/// in the topology made of `nodes` (the nodes that exist at that point).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Precondition {
    /// Built-in policy name.
    pub policy: String,
    /// Action the gate is asked about.
    pub action: Action,
    /// Target node.
    pub target: String,
    /// Nodes that exist when the step runs.
    pub nodes: Vec<String>,
}

/// A client-visible outage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outage {
    /// Worst-case length.
    #[serde(rename = "upTo", alias = "up_to")]
    pub up_to: Dur,
    /// What is unavailable.
    pub what: String,
    /// When it happens only on a fallback path, the condition (e.g. the
    /// apiserver did not reload its certificate in time and is restarted).
    /// None: the step always causes it. Absent from plans written before the
    /// field existed, which keep their digest.
    #[serde(
        rename = "onlyIf",
        alias = "only_if",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub only_if: Option<String>,
}

impl Outage {
    /// An outage the step always causes, if it lasts at all.
    pub fn is_declared(&self) -> bool {
        self.only_if.is_none() && !self.up_to.0.is_zero()
    }

    /// An outage that only a fallback path causes.
    pub fn is_conditional(&self) -> bool {
        self.only_if.is_some() && !self.up_to.0.is_zero()
    }
}

/// Options that are not part of either topology.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Options {
    /// VM id of the template new masters are cloned from.
    pub template: Option<u32>,
}

/// The refusal's reason when new masters are to be cloned and no
/// template was given: missing input (the caller's usage), not a safety
/// refusal.
pub const NEEDS_TEMPLATE: &str =
    "new masters are cloned from a template VM: give its id (--template)";

/// Why a plan was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("{}:\n{}", if *bad_input { "the request is not valid" } else { "the plan cannot be made safe" }, reasons.iter().map(|r| format!("  - {r}")).collect::<Vec<_>>().join("\n"))]
pub struct Refusal {
    /// Every reason.
    pub reasons: Vec<String>,
    /// The reasons are the request's own (a node that does not exist, a
    /// malformed version, a missing command): the caller's usage, not a
    /// safety refusal.
    #[serde(skip)]
    pub bad_input: bool,
}

impl Refusal {
    /// A refusal as unsafe (or impossible) for these reasons.
    pub fn unsafe_for(reasons: Vec<String>) -> Refusal {
        Refusal {
            reasons,
            bad_input: false,
        }
    }

    /// A refusal of the request itself: bad input.
    pub fn bad_input(reasons: Vec<String>) -> Refusal {
        Refusal {
            reasons,
            bad_input: true,
        }
    }

    /// The CLI's exit code: 2 for bad input, 1 refused as unsafe.
    pub fn exit_code(&self) -> i32 {
        if self.bad_input { 2 } else { 1 }
    }
}

pub(crate) fn api_socket(n: &Node, port: u16) -> SocketAddr {
    SocketAddr::new(n.address, port)
}

pub(crate) fn url(addr: IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V6(a) => format!("https://[{a}]:{port}"),
        IpAddr::V4(a) => format!("https://{a}:{port}"),
    }
}

/// What every phase planner reads: the two topologies, the options, and
/// what follows from them.
pub(crate) struct Ctx<'a> {
    /// The topology now.
    pub from: &'a Topology,
    /// The topology wanted.
    pub to: &'a Topology,
    /// Options.
    pub opts: &'a Options,
    /// The masters now.
    pub masters_from: Vec<&'a Node>,
    /// The masters wanted.
    pub masters_to: Vec<&'a Node>,
    /// Masters of the target that do not exist yet, in the target's order.
    pub new_masters: Vec<&'a Node>,
    /// Addresses that must be free: the new masters' and a new VIP.
    pub wanted: Vec<(String, IpAddr)>,
    /// The VIP.
    pub vip: IpAddr,
    /// The apiserver port behind the VIP.
    pub port: u16,
    /// The server clients use now.
    pub old_server: String,
    /// The server clients use after the cut-over.
    pub new_server: String,
    /// The load balancer's pool.
    pub pool: String,
    /// The load balancer's frontend.
    pub frontend: SocketAddr,
    /// SANs every apiserver certificate must carry.
    pub sans: Vec<String>,
    /// Whether the cluster has a single master now.
    pub single: bool,
    /// The first master now (etcd snapshot, the reference for new masters).
    pub first: String,
}

impl<'a> Ctx<'a> {
    fn new(from: &'a Topology, to: &'a Topology, opts: &'a Options) -> Self {
        let masters_from: Vec<&Node> = from.control_plane_nodes().collect();
        let masters_to: Vec<&Node> = to.control_plane_nodes().collect();
        let new_masters: Vec<&Node> = masters_to
            .iter()
            .copied()
            .filter(|n| from.node(&n.name).is_none())
            .collect();
        let vip = to.control_plane_endpoint.address;
        let mut wanted: Vec<(String, IpAddr)> = new_masters
            .iter()
            .map(|n| (format!("node `{}`", n.name), n.address))
            .collect();
        if to.has_load_balancer() && !from.has_load_balancer() {
            wanted.push(("the VIP".into(), vip));
        }
        let port = to.control_plane_endpoint.port;
        let mut sans = vec![vip.to_string()];
        sans.extend(to.control_plane_endpoint.dns_name.clone());
        Ctx {
            from,
            to,
            opts,
            single: masters_from.len() == 1,
            first: masters_from
                .first()
                .map(|m| m.name.clone())
                .unwrap_or_default(),
            masters_from,
            masters_to,
            new_masters,
            wanted,
            vip,
            port,
            old_server: url(
                from.control_plane_endpoint.address,
                from.control_plane_endpoint.port,
            ),
            new_server: url(vip, port),
            pool: to.load_balancer.pool.clone().unwrap_or_default(),
            frontend: to
                .load_balancer
                .frontend
                .unwrap_or_else(|| to.control_plane_endpoint.socket()),
            sans,
        }
    }

    /// The nodes that exist before any join.
    fn existing(&self) -> Vec<String> {
        self.from.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// The nodes that exist once every new master has joined.
    fn existing_after_joins(&self) -> Vec<String> {
        let mut nodes = self.existing();
        nodes.extend(self.new_masters.iter().map(|n| n.name.clone()));
        nodes
    }
}

/// The addresses a migration from `from` to `to` takes, which must be free
/// (the new masters' and a new VIP), each with what it is for.
pub fn addresses_to_take(from: &Topology, to: &Topology) -> Vec<(String, IpAddr)> {
    Ctx::new(from, to, &Options::default()).wanted
}

/// Plan the migration from `from` to `to`. `state`, when given, supplies the
/// hypervisors' observed capacity and VM ids and the addresses in use.
pub fn plan(
    from: &Topology,
    to: &Topology,
    state: Option<&ClusterState>,
    opts: &Options,
) -> Result<Plan, Refusal> {
    // New masters that name no host are placed across hosts first.
    let placed = placement::place(from, to, state);
    let to = &placed;
    let ctx = Ctx::new(from, to, opts);
    let warnings = refusals::check(&ctx, state)?;
    let mut phases = vec![preflight::phase(&ctx)];
    phases.extend(endpoint::phase(&ctx));
    phases.extend(load_balancer::phase(&ctx));
    phases.extend(provision::phases(&ctx));
    phases.extend(join_material::phase(&ctx));
    phases.extend(joins::phases(&ctx));
    phases.extend(cutover::phase(&ctx));
    phases.push(verify::phase(&ctx));
    for st in phases.iter_mut().flat_map(|p| p.steps.iter_mut()) {
        st.command = Some(commands::describe(&st.op, to));
        st.rollback_command = st.rollback.as_ref().map(|r| commands::describe(r, to));
    }
    Ok(Plan {
        cluster: to.cluster.clone(),
        from: from.clone(),
        to: to.clone(),
        learner_joins: to.etcd.learner_joins,
        phases,
        warnings,
        recovery: recovery::plan(&ctx),
    })
}

/// A gate: `policy` must allow `action` on `target` among `nodes`.
pub(crate) fn gate(policy: &str, action: Action, target: &str, nodes: &[String]) -> Precondition {
    Precondition {
        policy: policy.into(),
        action,
        target: target.into(),
        nodes: nodes.to_vec(),
    }
}

/// A step with no gate, rollback, outage or note yet.
pub(crate) fn step(id: &str, title: String, op: Op, expected_duration: Dur) -> Step {
    Step {
        id: id.to_string(),
        title,
        op,
        preconditions: Vec::new(),
        rollback: None,
        expected_duration,
        outage: None,
        notes: Vec::new(),
        command: None,
        rollback_command: None,
    }
}

impl Plan {
    /// Every step, in order, with its phase.
    pub fn steps(&self) -> impl Iterator<Item = (&Phase, &Step)> {
        self.phases
            .iter()
            .flat_map(|p| p.steps.iter().map(move |s| (p, s)))
    }

    /// Expected total duration.
    pub fn expected_duration(&self) -> Dur {
        Dur(self.steps().map(|(_, s)| s.expected_duration.0).sum())
    }

    /// The target topology restricted to `nodes` (what exists at a step).
    pub fn topology_with(&self, nodes: &[String]) -> Topology {
        let mut t = self.to.clone();
        t.nodes.retain(|n| nodes.contains(&n.name));
        t
    }

    /// A stable digest of the plan, so a journal is only resumed with the
    /// plan it was written for.
    pub fn digest(&self) -> String {
        fnv(&serde_json::to_string(self).unwrap_or_default())
    }

    /// The digest journals recorded for this plan before plan files named
    /// every field in camelCase (`upTo`, `onlyIf`, a clone's `memoryGiB`
    /// and `diskGiB` were `up_to`, `only_if`, `memory_gib`, `disk_gib`): a
    /// run begun then still resumes.
    pub fn legacy_digest(&self) -> String {
        fnv(&self.legacy_json())
    }

    /// The plan as JSON with the names plan files used before camelCase
    /// everywhere (the same fields, in the same order).
    pub fn legacy_json(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_default();
        let json = json
            .replace("\"upTo\":", "\"up_to\":")
            .replace("\"onlyIf\":", "\"only_if\":");
        // A clone's object holds no other object: its fields end at `}`.
        let mut out = String::with_capacity(json.len());
        let mut rest = json.as_str();
        while let Some(at) = rest.find("{\"op\":\"clone-vm\"") {
            let end = rest[at..].find('}').map_or(rest.len(), |e| at + e);
            out.push_str(&rest[..at]);
            out.push_str(
                &rest[at..end]
                    .replace("\"memoryGiB\":", "\"memory_gib\":")
                    .replace("\"diskGiB\":", "\"disk_gib\":"),
            );
            rest = &rest[end..];
        }
        out.push_str(rest);
        out
    }
}

/// FNV-1a, 64 bit: stable across builds and platforms.
fn fnv(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}
