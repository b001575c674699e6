//! Planned disruptions of one node, and rolling them over many (issue 14).
//!
//! A disruption is a small [`Plan`] run by the same executor and journal as
//! a migration ([`crate::exec`]), so a crashed run resumes. For node `N`:
//!
//! 1. gate (the action's policy) and take the disruption lock: done by
//!    [`run`] before the executor starts, because the gate must see the
//!    cluster before anything moves and the lock must be held throughout;
//! 2. set `N`'s load-balancer backend to `drain` and wait until its sessions
//!    reach 0, or a bound;
//! 3. move etcd leadership away if `N` leads;
//! 4. cordon (and drain, for actions that need it);
//! 5. the act: reboot, `kubeadm upgrade`, or a person's command;
//! 6. wait until `N` is Ready, its etcd member healthy and caught up, its
//!    apiserver answers `/readyz` directly;
//! 7. set the backend `ready` (waiting until it is UP), check it is UP, uncordon;
//! 8. release the lock ([`run`], whatever happened).
//!
//! Steps 2 to 7 are ONE phase: the executor rolls back the current phase
//! when a step fails, and a failure anywhere must restore what was changed
//! before it (the backend set ready again, the node uncordoned). A rolling
//! operation is one such plan per node, run one after the other.
//!
//! The pure choice of where etcd leadership goes ([`leader_transfer`], in
//! [`crate::leadership`]) and the disruption [`Lock`] (in [`crate::backend`])
//! are re-exported here, where their callers have always found them.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::action::Action;
use crate::backend::{BackendError, Backends, CpOp, LbOp, Op, ServerState};
use crate::exec::{self, Event, ExecError, Journal, Outcome};
use crate::gate::{Policy, Request, evaluate};
use crate::plan::{Phase, Plan, Refusal, Step};
use crate::topology::Topology;
use crate::units::Dur;

pub use crate::backend::{Lock, LockAnswer};
pub use crate::leadership::{CAUGHT_UP_LAG, Leadership, leader_transfer};

/// What a planned disruption does to its node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "action")]
pub enum DisruptAction {
    /// Reboot it (over SSH or the hypervisor), waiting until it is back.
    Reboot,
    /// `kubeadm upgrade apply VERSION -y` (the first master) or `kubeadm
    /// upgrade node` (the others and workers).
    Upgrade {
        /// Target version, `vX.Y.Z`.
        version: String,
    },
    /// A person's command, run over SSH.
    Run {
        /// Command and arguments.
        command: Vec<String>,
    },
}

impl DisruptAction {
    /// The gate's action (whose built-in policy gates it by default).
    pub fn gate_action(&self) -> Action {
        match self {
            DisruptAction::Upgrade { .. } => Action::Upgrade,
            DisruptAction::Reboot | DisruptAction::Run { .. } => Action::Reboot,
        }
    }

    /// Short name for step ids: `reboot`, `upgrade`, `run`.
    pub fn name(&self) -> &'static str {
        match self {
            DisruptAction::Reboot => "reboot",
            DisruptAction::Upgrade { .. } => "upgrade",
            DisruptAction::Run { .. } => "run",
        }
    }
}

impl fmt::Display for DisruptAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisruptAction::Reboot => f.write_str("reboot"),
            DisruptAction::Upgrade { version } => write!(f, "upgrade to {version}"),
            DisruptAction::Run { command } => write!(f, "run `{}`", command.join(" ")),
        }
    }
}

/// Choices that are not part of the topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisruptOptions {
    /// How long to wait for the drained backend's sessions to reach 0.
    pub idle_bound: Dur,
    /// Whether pods are evicted before the act; None: reboot and upgrade
    /// drain, a command does not.
    pub drain: Option<bool>,
    /// For an upgrade: whether this node runs `kubeadm upgrade apply`; None:
    /// the first control-plane node of the topology does.
    pub first: Option<bool>,
    /// The outage of a cluster's only master is stated and accepted (the
    /// gate's policy is `single-master`, or has its rule): the plan takes
    /// the API down with the master instead of refusing.
    pub accept_outage: bool,
}

impl Default for DisruptOptions {
    fn default() -> Self {
        DisruptOptions {
            idle_bound: Dur::secs(30),
            drain: None,
            first: None,
            accept_outage: false,
        }
    }
}

fn step(id: String, title: String, op: Op, secs: i64) -> Step {
    Step {
        id,
        title,
        op,
        preconditions: Vec::new(),
        rollback: None,
        expected_duration: Dur::secs(secs),
        outage: None,
        notes: Vec::new(),
        command: None,
        rollback_command: None,
    }
}

/// Validate a version such as `v1.33.2`.
pub fn check_version(v: &str) -> Result<(), String> {
    let parts: Vec<&str> = v.strip_prefix('v').unwrap_or("").split('.').collect();
    if parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        Ok(())
    } else {
        Err(format!("`{v}` is not a Kubernetes version such as v1.33.2"))
    }
}

/// Why `action` on `node` is refused, if it is: an unknown node, a bad
/// version or an empty command, a master of fewer than three (unless the
/// only master's outage is accepted). Returns whether the node is a master.
fn check(
    topology: &Topology,
    action: &DisruptAction,
    node: &str,
    opts: &DisruptOptions,
) -> Result<bool, Refusal> {
    let Some(n) = topology.node(node) else {
        return Err(Refusal::bad_input(vec![format!(
            "`{node}` is not a node of the topology (known: {})",
            topology
                .nodes
                .iter()
                .map(|n| n.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )]));
    };
    let master = n.is_control_plane();
    let mut reasons = Vec::new();
    match action {
        DisruptAction::Upgrade { version } => {
            if let Err(e) = check_version(version) {
                reasons.push(format!("--to: {e}"));
            }
        }
        DisruptAction::Run { command } if command.is_empty() => {
            reasons.push("run: give the command after `--`".into());
        }
        _ => {}
    }
    if !reasons.is_empty() {
        return Err(Refusal::bad_input(reasons));
    }
    let masters = topology.control_plane_nodes().count();
    if master && masters == 1 && !opts.accept_outage {
        reasons.push(format!(
            "{node} is the cluster's only master: the Kubernetes API and etcd go down with it. To accept that outage, disrupt it under the `single-master` policy (--policy single-master: the outage stated, only in its window, with a verified etcd snapshot)"
        ));
    } else if master && (2..3).contains(&masters) {
        reasons.push(format!(
            "{node} is one of {masters} masters: a planned disruption needs at least three, so the others keep quorum and serve the API"
        ));
    }
    if !reasons.is_empty() {
        return Err(Refusal::unsafe_for(reasons));
    }
    Ok(master)
}

/// Drain `node`'s backend in `pool` (restored by the rollback) and wait
/// until it has no sessions, at most the idle bound.
fn drain_backend(
    pool: &str,
    node: &str,
    opts: &DisruptOptions,
    id: &dyn Fn(&str) -> String,
) -> Vec<Step> {
    let pool = pool.to_string();
    let mut steps = Vec::new();
    let mut s = step(
        id("backend-drain"),
        format!("set backend {pool}/{node} to drain: no new connections"),
        Op::LoadBalancer(LbOp::SetServerState {
            pool: pool.clone(),
            server: node.into(),
            state: ServerState::Drain,
        }),
        5,
    );
    s.rollback = Some(Op::LoadBalancer(LbOp::SetServerState {
        pool: pool.clone(),
        server: node.into(),
        state: ServerState::Ready,
    }));
    steps.push(s);
    steps.push(step(
        id("backend-idle"),
        format!(
            "wait until {pool}/{node} has no sessions, at most {}",
            opts.idle_bound
        ),
        Op::LoadBalancer(LbOp::WaitServerIdle {
            pool: pool.clone(),
            server: node.into(),
            bound: opts.idle_bound,
        }),
        opts.idle_bound.0.as_secs().max(1),
    ));
    steps
}

/// The act itself: its operation, title and expected seconds. An
/// upgrade's first master (`opts.first`, else the topology's first)
/// runs `kubeadm upgrade apply`.
fn the_act(
    topology: &Topology,
    action: &DisruptAction,
    node: &str,
    master: bool,
    opts: &DisruptOptions,
) -> (CpOp, String, i64) {
    match action {
        DisruptAction::Reboot => (
            CpOp::Reboot { node: node.into() },
            format!("reboot {node} and wait until it is back"),
            300,
        ),
        DisruptAction::Upgrade { version } => {
            let first = opts.first.unwrap_or_else(|| {
                master
                    && topology
                        .control_plane_nodes()
                        .next()
                        .is_some_and(|m| m.name == node)
            });
            (
                CpOp::Upgrade {
                    node: node.into(),
                    version: version.clone(),
                    first,
                },
                if first {
                    format!("kubeadm upgrade apply {version} -y on {node}")
                } else {
                    format!("kubeadm upgrade node on {node} (to {version})")
                },
                600,
            )
        }
        DisruptAction::Run { command } => (
            CpOp::RunCommand {
                node: node.into(),
                command: command.clone(),
            },
            format!("run `{}` on {node}", command.join(" ")),
            300,
        ),
    }
}

/// Set `node`'s backend in `pool` ready, and check that it is UP.
fn ready_backend(pool: &str, node: &str, id: &dyn Fn(&str) -> String) -> Vec<Step> {
    let pool = pool.to_string();
    let mut steps = Vec::new();
    steps.push(step(
        id("backend-ready"),
        format!("set backend {pool}/{node} ready and wait until it is UP"),
        Op::LoadBalancer(LbOp::SetServerState {
            pool: pool.clone(),
            server: node.into(),
            state: ServerState::Ready,
        }),
        30,
    ));
    steps.push(step(
        id("backend-up"),
        format!("{pool}/{node} is UP"),
        Op::LoadBalancer(LbOp::VerifyServersUp {
            pool: pool.clone(),
            servers: vec![node.into()],
        }),
        5,
    ));
    steps
}

/// The phase that disrupts `node`: its steps, with rollbacks that restore
/// the backend and the node's schedulability.
pub fn phase(
    topology: &Topology,
    action: &DisruptAction,
    node: &str,
    opts: &DisruptOptions,
) -> Result<Phase, Refusal> {
    let master = check(topology, action, node, opts)?;
    let pool = topology
        .load_balancer
        .pool
        .clone()
        .filter(|_| master && topology.has_load_balancer());
    let id = |s: &str| format!("{}/{node}/{s}", action.name());
    let mut steps = Vec::new();
    if let Some(pool) = &pool {
        steps.extend(drain_backend(pool, node, opts, &id));
    }
    if master {
        steps.push(step(
            id("move-leader"),
            format!("if {node} leads etcd, move leadership to the best healthy caught-up voter"),
            Op::ControlPlane(CpOp::MoveLeader { from: node.into() }),
            10,
        ));
    }
    let mut s = step(
        id("cordon"),
        format!("cordon {node}"),
        Op::ControlPlane(CpOp::Cordon { node: node.into() }),
        5,
    );
    s.rollback = Some(Op::ControlPlane(CpOp::Uncordon { node: node.into() }));
    steps.push(s);
    let drain = opts
        .drain
        .unwrap_or(!matches!(action, DisruptAction::Run { .. }));
    if drain {
        let mut s = step(
            id("drain"),
            format!("drain {node} through the Eviction API, honouring PodDisruptionBudgets"),
            Op::ControlPlane(CpOp::Drain { node: node.into() }),
            120,
        );
        s.rollback = Some(Op::ControlPlane(CpOp::Uncordon { node: node.into() }));
        steps.push(s);
    }
    let (op, title, secs) = the_act(topology, action, node, master, opts);
    let mut s = step(id(action.name()), title, Op::ControlPlane(op), secs);
    if master {
        s.outage = Some(crate::plan::Outage {
            up_to: Dur::secs(0),
            what: format!("none through the VIP; direct clients of {node} while it is down"),
            only_if: None,
        });
    }
    steps.push(s);
    steps.push(step(
        id("wait-healthy"),
        if master {
            format!(
                "wait until {node} is Ready, its etcd member healthy and caught up, its apiserver answers /readyz directly"
            )
        } else {
            format!("wait until {node} is Ready")
        },
        Op::ControlPlane(CpOp::WaitHealthy { node: node.into() }),
        300,
    ));
    if let Some(pool) = &pool {
        steps.extend(ready_backend(pool, node, &id));
    }
    steps.push(step(
        id("uncordon"),
        format!("uncordon {node}"),
        Op::ControlPlane(CpOp::Uncordon { node: node.into() }),
        5,
    ));
    Ok(Phase {
        id: format!("{}/{node}", action.name()),
        title: format!("{} {node}", capitalized(&action.to_string())),
        steps,
        rollback: Some(format!(
            "set {node}'s load-balancer backend ready and uncordon it; the lock is released either way"
        )),
    })
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Whether `policy` states and accepts the outage of a cluster's only master
/// (it runs the `single-master` rule, as the built-in `single-master` does).
pub fn accepts_outage(policy: &Policy) -> bool {
    policy.rules.single_master.is_some()
}

/// The plan of one planned disruption of `node`.
pub fn plan(
    topology: &Topology,
    action: &DisruptAction,
    node: &str,
    opts: &DisruptOptions,
) -> Result<Plan, Refusal> {
    let phase = phase(topology, action, node, opts)?;
    let mut warnings = Vec::new();
    if topology.node(node).is_some_and(|n| n.is_control_plane())
        && topology.control_plane_nodes().count() == 1
    {
        warnings.push(format!(
            "OUTAGE ACCEPTED: {node} is the only master: the Kubernetes API and etcd are down from its {action} until it is back"
        ));
    }
    Ok(Plan {
        cluster: topology.cluster.clone(),
        from: topology.clone(),
        to: topology.clone(),
        learner_joins: topology.etcd.learner_joins,
        phases: vec![phase],
        warnings,
        recovery: None,
    })
}

/// The order of a rolling operation: the masters first, one at a time, in
/// topology order, then the workers; `only` (when not empty) restricts it
/// to those nodes, each of which must exist.
pub fn roll_order(topology: &Topology, only: &[String]) -> Result<Vec<String>, Refusal> {
    let unknown: Vec<String> = only
        .iter()
        .filter(|n| topology.node(n).is_none())
        .map(|n| format!("--nodes: `{n}` is not a node of the topology"))
        .collect();
    if !unknown.is_empty() {
        return Err(Refusal::bad_input(unknown));
    }
    let pick = |n: &&crate::topology::Node| only.is_empty() || only.contains(&n.name);
    let masters = topology.control_plane_nodes().filter(pick);
    let workers = topology
        .nodes
        .iter()
        .filter(|n| !n.is_control_plane())
        .filter(pick);
    Ok(masters.chain(workers).map(|n| n.name.clone()).collect())
}

/// How [`run`] gates.
#[derive(Debug, Clone)]
pub struct Gate {
    /// The policy.
    pub policy: Policy,
    /// The gate's action.
    pub action: Action,
    /// Lock holder identity (and requester for the `lock` rule).
    pub identity: String,
}

/// How a disruption ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(
    rename_all = "kebab-case",
    rename_all_fields = "camelCase",
    tag = "result"
)]
pub enum Report {
    /// The gate or the lock refused: nothing was touched.
    Denied {
        /// Node.
        node: String,
        /// Every blocking reason (the lock holder named).
        reasons: Vec<String>,
    },
    /// The executor ran: its outcome, and whether the lock was released.
    Ran {
        /// Node.
        node: String,
        /// The executor's outcome.
        outcome: Outcome,
        /// The lock was released afterwards.
        lock_released: bool,
        /// Why releasing the lock failed, if it did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        release_error: Option<String>,
    },
}

impl Report {
    /// Whether the disruption completed (or, in a dry run, would run).
    pub fn ok(&self) -> bool {
        matches!(
            self,
            Report::Ran {
                outcome: Outcome::Completed | Outcome::DryRun { .. },
                ..
            }
        )
    }

    /// One line for people.
    pub fn summary(&self) -> String {
        match self {
            Report::Denied { node, reasons } => {
                format!("DENIED {node}: {}", reasons.join("; "))
            }
            Report::Ran {
                node,
                outcome,
                lock_released,
                release_error,
            } => {
                let lock = match (lock_released, release_error) {
                    (true, _) => "lock released".to_string(),
                    (false, Some(e)) => format!("releasing the lock FAILED: {e}"),
                    (false, None) => "lock not held".to_string(),
                };
                match outcome {
                    Outcome::Completed => format!("{node}: done; {lock}"),
                    Outcome::DryRun { would_apply } => {
                        format!("{node}: dry run, would apply {}", would_apply.join(", "))
                    }
                    Outcome::Blocked { step, reasons } => {
                        format!(
                            "{node}: BLOCKED before {step}: {}; {lock}",
                            reasons.join("; ")
                        )
                    }
                    Outcome::AwaitingConfirmation { step, .. } => {
                        format!("{node}: waiting for confirmation of {step}; {lock}")
                    }
                    Outcome::RolledBack { step, error, .. } => format!(
                        "{node}: FAILED at step {step}: {error}; restored (backend ready, uncordoned); {lock}"
                    ),
                }
            }
        }
    }
}

/// Whether a finding blocks a disruption whose plan moves leadership
/// itself: every blocking finding does except `etcd-leader`'s deny.
fn blocks(f: &crate::verdict::Finding, moves_leader: bool) -> bool {
    !(moves_leader
        && f.rule == crate::rules::etcd_leader::ID
        && f.severity == crate::verdict::Severity::Deny)
}

/// The gate's blocking reasons for `node` on the cluster as it is now
/// (`plan.from`: a replacement's new master may not exist yet).
fn gate_reasons(
    plan: &Plan,
    node: &str,
    gate: &Gate,
    b: &mut Backends<'_>,
    moves_leader: bool,
) -> Result<Vec<String>, String> {
    let state = b.observer.observe(&plan.from);
    let request = Request {
        action: gate.action,
        target: node,
        requester: Some(&gate.identity),
    };
    let verdict = evaluate(&plan.from, &state, &gate.policy, &request, b.clock.now())
        .map_err(|e| e.to_string())?;
    Ok(verdict
        .blocking()
        .filter(|f| blocks(f, moves_leader))
        .map(|f| format!("{} ({}): {}", f.rule, f.severity, f.message))
        .collect())
}

/// What a disruption's run watches at its step boundaries: the lock it
/// holds, and (resumed) its gate before the act.
struct DisruptWatch<'a> {
    plan: &'a Plan,
    node: &'a str,
    gate: &'a Gate,
    lock: &'a mut dyn Lock,
    moves_leader: bool,
}

impl exec::Watch for DisruptWatch<'_> {
    fn hold(&mut self, _: &mut Backends<'_>) -> Result<(), String> {
        self.lock.held(&self.gate.identity)
    }
    fn regate(&mut self, step: &Step, b: &mut Backends<'_>) -> Result<Vec<String>, String> {
        // The act on the disrupted node (reboot, upgrade, a command): what
        // the gate was asked about. A removal's later steps (reset, the
        // VM) act on a node already out of etcd, behind the member
        // removal's own gate.
        let act = matches!(
            &step.op,
            Op::ControlPlane(
                CpOp::Reboot { node } | CpOp::Upgrade { node, .. } | CpOp::RunCommand { node, .. }
            ) if node == self.node
        );
        if !act {
            return Ok(Vec::new());
        }
        gate_reasons(self.plan, self.node, self.gate, b, self.moves_leader)
    }
}

/// Gate, lock, run the plan of one node's disruption through the executor,
/// release the lock. A resumed run (its journal has records) is not gated
/// at its start (the node may be down mid-way): it takes the lock again,
/// and asks the gate again, on the cluster as it is now, right before the
/// act (a reboot asked by the killed run included: never asked twice).
/// The lock is checked before every step acts: lost (not renewed in time,
/// or another holder), the run stops there and restores what the phase
/// changed. A rollback that fails keeps the lock, with the reason, for a
/// person. The `etcd-leader` rule does not block: the plan moves
/// leadership first.
#[allow(clippy::too_many_arguments)]
pub fn run(
    plan: &Plan,
    node: &str,
    gate: &Gate,
    b: &mut Backends<'_>,
    lock: &mut dyn Lock,
    journal: &mut dyn Journal,
    opts: &exec::Options,
    on_event: &mut dyn FnMut(Event),
) -> Result<Report, ExecError> {
    let moves_leader = plan
        .steps()
        .any(|(_, s)| matches!(&s.op, Op::ControlPlane(CpOp::MoveLeader { .. })));
    let resumed = !journal.records().is_empty();
    if !resumed {
        // The cluster as it is now (a replacement's new master does not
        // exist yet).
        let reasons = gate_reasons(plan, node, gate, b, moves_leader)
            .map_err(|e| ExecError::Journal(format!("gate: {e}")))?;
        if !reasons.is_empty() {
            return Ok(Report::Denied {
                node: node.into(),
                reasons,
            });
        }
    }
    if opts.dry_run {
        let mut watch = DisruptWatch {
            plan,
            node,
            gate,
            lock: &mut NoLock,
            moves_leader,
        };
        let outcome = exec::run_watched(
            plan,
            b,
            journal,
            opts,
            Some(&gate.identity),
            &mut watch,
            on_event,
        )?;
        return Ok(Report::Ran {
            node: node.into(),
            outcome,
            lock_released: false,
            release_error: None,
        });
    }
    if let Some(denied) = take_lock(lock, node, &gate.identity) {
        return Ok(denied);
    }
    let mut watch = DisruptWatch {
        plan,
        node,
        gate,
        lock,
        moves_leader,
    };
    let result = exec::run_watched(
        plan,
        b,
        journal,
        opts,
        Some(&gate.identity),
        &mut watch,
        on_event,
    );
    if let Err(ExecError::RollbackFailed { step, error }) = result {
        // The cluster needs a person: no next disruption before one looks.
        let reason = format!("rolling back step {step} of {node} failed: {error}");
        let kept = match lock.keep(&gate.identity, &reason) {
            Ok(()) => format!(
                "the disruption lock stays held by {} with this reason (hacli lock show) until a person releases it",
                gate.identity
            ),
            Err(e) => format!("keeping the disruption lock with this reason failed too: {e}"),
        };
        return Err(ExecError::RollbackFailed {
            step,
            error: format!("{error}; {kept}"),
        });
    }
    let release = lock.release(&gate.identity);
    let outcome = result?;
    Ok(Report::Ran {
        node: node.into(),
        outcome,
        lock_released: release.is_ok(),
        release_error: release.err().map(|e| e.to_string()),
    })
}

/// Take the disruption lock as `identity`; the report that denies `node`
/// when it is held by someone else or cannot be taken (unknown).
fn take_lock(lock: &mut dyn Lock, node: &str, identity: &str) -> Option<Report> {
    let reason = match lock.acquire(identity) {
        Ok(LockAnswer::Acquired) => return None,
        Ok(LockAnswer::HeldBy(holder)) => {
            format!("lock (deny): the disruption lock is held by {holder}")
        }
        Err(e) => format!("lock (unknown): could not take the lock: {e}"),
    };
    Some(Report::Denied {
        node: node.into(),
        reasons: vec![reason],
    })
}

/// The lock of a dry run: not taken, never lost.
struct NoLock;

impl Lock for NoLock {
    fn acquire(&mut self, _: &str) -> Result<LockAnswer, BackendError> {
        Ok(LockAnswer::Acquired)
    }
    fn release(&mut self, _: &str) -> Result<(), BackendError> {
        Ok(())
    }
    fn keep(&mut self, _: &str, _: &str) -> Result<(), BackendError> {
        Ok(())
    }
}

/// How a rolling operation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RollReport {
    /// Each node's report, in order, up to the one that stopped the roll.
    pub nodes: Vec<Report>,
    /// Nodes never started because the roll stopped.
    pub not_started: Vec<String>,
}

impl RollReport {
    /// Whether every node completed.
    pub fn ok(&self) -> bool {
        self.not_started.is_empty() && self.nodes.iter().all(Report::ok)
    }

    /// Where it stopped, for people: the node and step, or None.
    pub fn stopped_at(&self) -> Option<String> {
        self.nodes.iter().find(|r| !r.ok()).map(|r| match r {
            Report::Denied { node, .. } => format!("{node} (gate)"),
            Report::Ran { node, outcome, .. } => match outcome {
                Outcome::Blocked { step, .. }
                | Outcome::AwaitingConfirmation { step, .. }
                | Outcome::RolledBack { step, .. } => format!("{node} at step {step}"),
                _ => node.clone(),
            },
        })
    }
}

/// Opens the journal of one node's disruption.
pub type OpenJournal<'a> = dyn FnMut(&str) -> Result<Box<dyn Journal>, ExecError> + 'a;

/// Where a rolling operation keeps its journals and how it waits.
pub struct RollIo<'a> {
    /// The journal of one node's disruption (a resumed roll finds the
    /// journals of the nodes already done).
    pub journal: &'a mut OpenJournal<'a>,
    /// Wait this long (the soak between masters).
    pub wait: &'a mut dyn FnMut(Dur),
}

/// A rolling operation: each node of `order` in turn (masters first, see
/// [`roll_order`]), each a planned disruption run by [`run`], waiting
/// `soak` after each master before the next node, and stopping at the
/// first node that does not complete. For an upgrade, the first master of
/// the order runs `kubeadm upgrade apply` (unless `opts.first` says no).
#[allow(clippy::too_many_arguments)]
pub fn roll(
    topology: &Topology,
    action: &DisruptAction,
    order: &[String],
    opts: &DisruptOptions,
    soak: Dur,
    gate: &Gate,
    b: &mut Backends<'_>,
    lock: &mut dyn Lock,
    io: &mut RollIo<'_>,
    exec_opts: &exec::Options,
    on_event: &mut dyn FnMut(Event),
) -> Result<Result<RollReport, Refusal>, ExecError> {
    let mut plans = Vec::new();
    let mut first_master = true;
    for node in order {
        let master = topology.node(node).is_some_and(|n| n.is_control_plane());
        let node_opts = DisruptOptions {
            first: Some(opts.first.unwrap_or(true) && master && first_master),
            ..opts.clone()
        };
        if master {
            first_master = false;
        }
        match plan(topology, action, node, &node_opts) {
            Ok(p) => plans.push((node.clone(), master, p)),
            Err(r) => return Ok(Err(r)),
        }
    }
    let mut report = RollReport {
        nodes: Vec::new(),
        not_started: Vec::new(),
    };
    let n = plans.len();
    for (i, (node, master, p)) in plans.into_iter().enumerate() {
        let mut journal = (io.journal)(&node)?;
        let finished = journal
            .records()
            .iter()
            .any(|r| matches!(r, exec::Record::Finished { .. }));
        let r = run(
            &p,
            &node,
            gate,
            b,
            lock,
            journal.as_mut(),
            exec_opts,
            on_event,
        )?;
        let ok = r.ok();
        report.nodes.push(r);
        if !ok {
            report.not_started = order[i + 1..].to_vec();
            break;
        }
        if master && i + 1 < n && !finished && !exec_opts.dry_run {
            (io.wait)(soak);
        }
        b.observer.start_new_window();
    }
    Ok(Ok(report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{ClusterState, EtcdMember, EtcdState, MemberId};

    fn topo() -> Topology {
        Topology::from_yaml(
            "t.yaml",
            r#"
cluster: lab
controlPlaneEndpoint: { address: 10.0.0.10 }
loadBalancer: { kind: haproxy, pool: k8s-apiserver, frontend: "10.0.0.10:6443" }
nodes:
  - { name: m1, role: control-plane, address: 10.0.0.11 }
  - { name: m2, role: control-plane, address: 10.0.0.12 }
  - { name: m3, role: control-plane, address: 10.0.0.13 }
  - { name: w1, role: worker, address: 10.0.0.21 }
"#,
        )
        .unwrap()
        .0
    }

    fn member(i: u64, leader: bool, index: u64, healthy: bool, learner: bool) -> EtcdMember {
        EtcdMember {
            id: MemberId(i),
            name: format!("m{i}"),
            peer_urls: vec![format!("https://10.0.0.1{i}:2380")],
            client_urls: vec![format!("https://10.0.0.1{i}:2379")],
            is_learner: learner,
            healthy: Some(healthy),
            leader,
            raft_index: Some(index),
            alarms: Vec::new(),
        }
    }

    fn state(members: Vec<EtcdMember>) -> ClusterState {
        let now: jiff::Timestamp = "2026-05-21T12:00:00Z".parse().unwrap();
        let mut s = ClusterState::empty(now);
        s.etcd = Some(EtcdState { members });
        s
    }

    #[test]
    fn leadership_goes_to_the_most_caught_up_healthy_voter() {
        let t = topo();
        let now = "2026-05-21T12:00:00Z".parse().unwrap();
        let s = state(vec![
            member(1, true, 5000, true, false),
            member(2, false, 4990, true, false),
            member(3, false, 4999, true, false),
        ]);
        assert_eq!(
            leader_transfer(&t, &s, "m1", now).unwrap(),
            Leadership::Move {
                from_id: 1,
                from: "m1".into(),
                to_id: 3,
                to: "m3".into()
            }
        );
        assert_eq!(
            leader_transfer(&t, &s, "m2", now).unwrap(),
            Leadership::NotLeader {
                leader: Some("m1".into())
            }
        );
        // Never a learner, never an unhealthy member, never one far behind.
        let s = state(vec![
            member(1, true, 5000, true, false),
            member(2, false, 5000, false, false),
            member(3, false, 5000, true, true),
        ]);
        let e = leader_transfer(&t, &s, "m1", now).unwrap_err();
        assert!(e.contains("no other healthy voter"), "{e}");
        let s = state(vec![
            member(1, true, 5000, true, false),
            member(2, false, 3000, true, false),
            member(3, false, 5000, false, false),
        ]);
        let e = leader_transfer(&t, &s, "m1", now).unwrap_err();
        assert!(
            e.contains("not caught up") || e.contains("no healthy voter is caught up"),
            "{e}"
        );
        assert!(e.contains("m2 (raft index 3000, leader 5000)"), "{e}");
    }

    #[test]
    fn a_master_reboot_drains_moves_leadership_and_restores_in_one_phase() {
        let t = topo();
        let p = plan(&t, &DisruptAction::Reboot, "m2", &DisruptOptions::default()).unwrap();
        assert_eq!(p.phases.len(), 1);
        let ids: Vec<&str> = p.steps().map(|(_, s)| s.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "reboot/m2/backend-drain",
                "reboot/m2/backend-idle",
                "reboot/m2/move-leader",
                "reboot/m2/cordon",
                "reboot/m2/drain",
                "reboot/m2/reboot",
                "reboot/m2/wait-healthy",
                "reboot/m2/backend-ready",
                "reboot/m2/backend-up",
                "reboot/m2/uncordon",
            ]
        );
        let rollbacks: Vec<String> = p
            .steps()
            .filter_map(|(_, s)| s.rollback.as_ref().map(|r| r.to_string()))
            .collect();
        assert!(
            rollbacks
                .iter()
                .any(|r| r.contains("set-server-state") && r.contains("state=ready")),
            "{rollbacks:?}"
        );
        assert!(
            rollbacks.iter().any(|r| r.contains("uncordon")),
            "{rollbacks:?}"
        );
        // A worker: no backend, no leadership; a command does not drain.
        let p = plan(
            &t,
            &DisruptAction::Run {
                command: vec!["true".into()],
            },
            "w1",
            &DisruptOptions::default(),
        )
        .unwrap();
        let ids: Vec<&str> = p.steps().map(|(_, s)| s.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "run/w1/cordon",
                "run/w1/run",
                "run/w1/wait-healthy",
                "run/w1/uncordon"
            ]
        );
    }
}
