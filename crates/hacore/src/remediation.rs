//! Remediating masters by policy (issue 26): whether to replace a master
//! whose Node is NotReady, or whose etcd member is unhealthy, right now.
//! Pure: the loop that observes, holds the lock and replaces lives in
//! haops; this module decides, one observation at a time, and says why.
//!
//! The rules, after Cluster API's control-plane remediation:
//! - a master is a candidate once it has been unhealthy for longer than
//!   [`Policy::unhealthy_for`] (the first tick that sees it starts its clock);
//! - one at a time: nothing starts while a remediation is in progress;
//! - never when the replacement would lose etcd quorum (the member's
//!   removal and the new member's join, as `replace-master --dead` checks);
//! - a retry budget: at most [`Policy::max_retries`] attempts within
//!   [`Policy::retry_period`], then it stops and says so;
//! - a minimum healthy period: a new remediation starts only
//!   [`Policy::min_healthy_period`] after the previous one ended;
//! - a target that answers again before its remediation starts is
//!   cancelled, and the decision says so.
//!
//! Every [`Decision`] has a kind (a metric label) and a reason (a sentence).

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::quorum::{Membership, Safety};
use crate::state::ClusterState;
use crate::topology::Topology;
use crate::units::Dur;

/// The remediation policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// How long a master must stay unhealthy before it is replaced.
    pub unhealthy_for: Dur,
    /// At most this many attempts within `retry_period`.
    pub max_retries: u32,
    /// The window the retry budget counts in.
    pub retry_period: Dur,
    /// How long after a remediation ends the next may start.
    pub min_healthy_period: Dur,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            unhealthy_for: Dur::secs(300),
            max_retries: 2,
            retry_period: Dur::hours(1),
            min_healthy_period: Dur::secs(600),
        }
    }
}

/// One remediation attempt, as the loop records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// The master replaced.
    pub node: String,
    /// When it started.
    pub started: Timestamp,
    /// When it ended (`None`: in progress).
    pub ended: Option<Timestamp>,
    /// Whether it succeeded.
    pub succeeded: bool,
}

/// What the loop remembers between observations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    /// Each unhealthy master and since when (first seen unhealthy).
    pub unhealthy_since: BTreeMap<String, Timestamp>,
    /// Attempts so far, oldest first.
    pub attempts: Vec<Attempt>,
    /// The master chosen at the previous observation, not yet started
    /// (the loop takes the lock and looks again before it starts).
    pub pending: Option<String>,
}

/// Why a decision is what it is, as a class: the metric label
/// `reason_class`, and what frontends map exit codes from (never the
/// sentence).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// Every master is Ready and its etcd member healthy.
    Healthy,
    /// A master's health was not observed: unknown, never replaced nor
    /// called healthy.
    Unobserved,
    /// A master is unhealthy, not yet for longer than the bound.
    WithinBound,
    /// One at a time: another remediation is in progress, or the
    /// disruption lock is held by another.
    OneAtATime,
    /// The disruption lock could not be taken or read.
    Lock,
    /// The minimum healthy period after the previous remediation.
    MinHealthyPeriod,
    /// The retry budget is spent.
    RetryBudget,
    /// The replacement would lose etcd quorum, or whether it would is
    /// unknown.
    Quorum,
    /// Unhealthy past its bound, quorum holds through the replacement.
    PastBound,
    /// The replacement ran and succeeded.
    Replaced,
    /// The replacement ran and failed (or was refused by its plan).
    Failed,
    /// The master chosen answers again: cancelled before it started.
    AnswersAgain,
}

impl Class {
    /// The label: `healthy`, `unobserved`, `within-bound`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Healthy => "healthy",
            Class::Unobserved => "unobserved",
            Class::WithinBound => "within-bound",
            Class::OneAtATime => "one-at-a-time",
            Class::Lock => "lock",
            Class::MinHealthyPeriod => "min-healthy-period",
            Class::RetryBudget => "retry-budget",
            Class::Quorum => "quorum",
            Class::PastBound => "past-bound",
            Class::Replaced => "replaced",
            Class::Failed => "failed",
            Class::AnswersAgain => "answers-again",
        }
    }
}

impl std::fmt::Display for Class {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The decision for one observation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "kebab-case")]
pub enum Decision {
    /// Every master is healthy.
    Healthy,
    /// A master is unhealthy, not yet for long enough, or the policy asks
    /// to wait (one at a time, the minimum healthy period).
    Wait {
        /// The master.
        node: String,
        /// Why.
        reason: String,
        /// Why, as a class.
        class: Class,
    },
    /// Replace this master now.
    Replace {
        /// The master.
        node: String,
        /// Why.
        reason: String,
        /// Why, as a class.
        class: Class,
    },
    /// The master stays as it is: replacing it is unsafe or over budget.
    Refused {
        /// The master.
        node: String,
        /// Why.
        reason: String,
        /// Why, as a class.
        class: Class,
    },
    /// The master chosen before answers again: its remediation is
    /// cancelled before it started.
    Cancelled {
        /// The master.
        node: String,
        /// Why.
        reason: String,
        /// Why, as a class.
        class: Class,
    },
}

impl Decision {
    /// The metric label: `healthy`, `wait`, `replace`, `refused`, `cancelled`.
    pub fn kind(&self) -> &'static str {
        match self {
            Decision::Healthy => "healthy",
            Decision::Wait { .. } => "wait",
            Decision::Replace { .. } => "replace",
            Decision::Refused { .. } => "refused",
            Decision::Cancelled { .. } => "cancelled",
        }
    }

    /// Why, as a class.
    pub fn class(&self) -> Class {
        match self {
            Decision::Healthy => Class::Healthy,
            Decision::Wait { class, .. }
            | Decision::Replace { class, .. }
            | Decision::Refused { class, .. }
            | Decision::Cancelled { class, .. } => *class,
        }
    }

    /// Whether it stands on a health that was not observed (unknown:
    /// exit 3 in `hacli remediate`).
    pub fn unobserved(&self) -> bool {
        self.class() == Class::Unobserved
    }

    /// The master it is about.
    pub fn node(&self) -> Option<&str> {
        match self {
            Decision::Healthy => None,
            Decision::Wait { node, .. }
            | Decision::Replace { node, .. }
            | Decision::Refused { node, .. }
            | Decision::Cancelled { node, .. } => Some(node),
        }
    }

    /// The sentence.
    pub fn reason(&self) -> &str {
        match self {
            Decision::Healthy => "every master is Ready and its etcd member healthy",
            Decision::Wait { reason, .. }
            | Decision::Replace { reason, .. }
            | Decision::Refused { reason, .. }
            | Decision::Cancelled { reason, .. } => reason,
        }
    }

    /// One line for people: `replace m1: ...`.
    pub fn line(&self) -> String {
        match self.node() {
            Some(n) => format!("{} {n}: {}", self.kind(), self.reason()),
            None => format!("{}: {}", self.kind(), self.reason()),
        }
    }
}

/// The masters that are unhealthy in `state`, each with why: its Node is
/// NotReady, or its etcd member is unhealthy. A master whose health was not
/// observed is not a candidate (unknown is not unhealthy enough to replace
/// it, and never healthy enough to call the cluster healthy: see
/// [`unknown_masters`]).
pub fn unhealthy_masters(topology: &Topology, state: &ClusterState) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for m in topology.control_plane_nodes() {
        let mut why = Vec::new();
        if state
            .nodes
            .iter()
            .flatten()
            .any(|n| n.name == m.name && n.ready == Some(false))
        {
            why.push("its Node is NotReady".to_string());
        }
        if let Some(e) = state
            .etcd
            .iter()
            .flat_map(|e| &e.members)
            .find(|e| e.name == m.name && e.healthy == Some(false))
        {
            why.push(format!("its etcd member (id {}) is unhealthy", e.id));
        }
        if !why.is_empty() {
            out.push((m.name.clone(), why.join(" and ")));
        }
    }
    out
}

/// The masters whose health was not observed (no Node state, no member
/// health).
pub fn unknown_masters(topology: &Topology, state: &ClusterState) -> Vec<String> {
    topology
        .control_plane_nodes()
        .filter(|m| {
            let node = state
                .nodes
                .iter()
                .flatten()
                .find(|n| n.name == m.name)
                .and_then(|n| n.ready);
            let member = state
                .etcd
                .iter()
                .flat_map(|e| &e.members)
                .find(|e| e.name == m.name)
                .and_then(|e| e.healthy);
            node.is_none() && member.is_none()
        })
        .map(|m| m.name.clone())
        .collect()
}

/// Whether replacing `node` (its member removed, a new one joined) keeps
/// etcd quorum in `state`; the sentence either way.
pub fn quorum_through_replacement(state: &ClusterState, node: &str) -> Result<String, String> {
    let Some(etcd) = &state.etcd else {
        return Err(
            "etcd's members were not observed: quorum through the replacement is unknown".into(),
        );
    };
    let voters: Vec<_> = etcd.members.iter().filter(|m| !m.is_learner).collect();
    let m = Membership {
        voters: voters.len(),
        healthy: voters.iter().filter(|m| m.healthy == Some(true)).count(),
        unknown: voters.iter().filter(|m| m.healthy.is_none()).count(),
        learners: etcd.members.len() - voters.len(),
    };
    let target = voters.iter().find(|v| v.name == node);
    let removed = match target.map(|t| t.healthy) {
        Some(Some(true)) => m.remove(1, 0, 0),
        Some(None) => m.remove(0, 1, 0),
        Some(Some(false)) => m.remove(0, 0, 1),
        None => m.remove(0, 0, 0),
    };
    let join = Membership {
        voters: removed.voters,
        healthy: removed.healthy_min,
        unknown: removed.healthy_max - removed.healthy_min,
        learners: m.learners,
    }
    .add_healthy_voter();
    if m.healthy < m.quorum() {
        return Err(format!(
            "etcd has {} of {} voters healthy, below its quorum of {}: quorum is already lost, a replacement cannot restore it",
            m.healthy,
            m.voters,
            m.quorum()
        ));
    }
    if removed.safety() != Safety::Safe || join.safety() != Safety::Safe {
        return Err(format!(
            "replacing {node} would pass through {} voters with {} healthy, quorum {}: quorum would not hold",
            removed.voters, removed.healthy_min, removed.quorum
        ));
    }
    Ok(format!(
        "etcd keeps quorum: {} of {} voters healthy now, {} of {} after {node}'s member is removed, {} of {} after the new member joins",
        m.healthy, m.voters, removed.healthy_min, removed.voters, join.healthy_min, join.voters
    ))
}

/// With no master unhealthy: healthy, unless a master's health was not
/// observed (a wait, of class [`Class::Unobserved`]).
fn healthy_or_unobserved(topology: &Topology, state: &ClusterState) -> Decision {
    let unknown = unknown_masters(topology, state);
    match unknown.first() {
        Some(u) => Decision::Wait {
            node: u.clone(),
            reason: format!(
                "the health of {} was not observed: unknown is never replaced, nor called healthy",
                unknown.join(", ")
            ),
            class: Class::Unobserved,
        },
        None => Decision::Healthy,
    }
}

/// Decide for the observation `state` at `now`, updating `memory` (each
/// unhealthy master's clock; the pending choice). The loop records the
/// attempts it starts and ends in `memory.attempts`.
pub fn decide(
    topology: &Topology,
    state: &ClusterState,
    memory: &mut Memory,
    policy: &Policy,
    now: Timestamp,
) -> Decision {
    let unhealthy = unhealthy_masters(topology, state);
    memory
        .unhealthy_since
        .retain(|n, _| unhealthy.iter().any(|(u, _)| u == n));
    for (n, _) in &unhealthy {
        memory.unhealthy_since.entry(n.clone()).or_insert(now);
    }
    // The master chosen before answers again: cancelled.
    if let Some(p) = memory.pending.take()
        && !unhealthy.iter().any(|(u, _)| *u == p)
    {
        return Decision::Cancelled {
            reason: format!(
                "{p} answers again (its Node Ready, its etcd member not unhealthy) before its replacement started: cancelled"
            ),
            node: p,
            class: Class::AnswersAgain,
        };
    }
    if unhealthy.is_empty() {
        return healthy_or_unobserved(topology, state);
    }
    // The one unhealthy the longest.
    let (node, why) = unhealthy
        .iter()
        .min_by_key(|(n, _)| (memory.unhealthy_since[n], n.clone()))
        .cloned()
        .expect("not empty");
    let since = memory.unhealthy_since[&node];
    let for_ = Dur(now.duration_since(since));
    if let Some(a) = memory.attempts.iter().find(|a| a.ended.is_none()) {
        return Decision::Wait {
            reason: format!(
                "{why}; one remediation at a time: {}'s, started {}, is in progress",
                a.node, a.started
            ),
            node,
            class: Class::OneAtATime,
        };
    }
    if for_.0 < policy.unhealthy_for.0 {
        return Decision::Wait {
            reason: format!("{why}, for {for_}; replaced after {}", policy.unhealthy_for),
            node,
            class: Class::WithinBound,
        };
    }
    let recent = budget(memory, policy, now).used;
    if recent >= policy.max_retries {
        return Decision::Refused {
            reason: format!(
                "{why}, for {for_}; the retry budget is spent: {recent} attempt(s) in the last {} (at most {}): a person must look",
                policy.retry_period, policy.max_retries
            ),
            node,
            class: Class::RetryBudget,
        };
    }
    if let Some(end) = memory.attempts.iter().filter_map(|a| a.ended).max()
        && now.duration_since(end) < policy.min_healthy_period.0
    {
        return Decision::Wait {
            reason: format!(
                "{why}; the previous remediation ended at {end}: the next waits {} after it",
                policy.min_healthy_period
            ),
            node,
            class: Class::MinHealthyPeriod,
        };
    }
    match quorum_through_replacement(state, &node) {
        Err(q) => Decision::Refused {
            reason: format!("{why}, for {for_}; {q}"),
            node,
            class: Class::Quorum,
        },
        Ok(q) => {
            memory.pending = Some(node.clone());
            Decision::Replace {
                reason: format!("{why}, for {for_} (bound {}); {q}", policy.unhealthy_for),
                node,
                class: Class::PastBound,
            }
        }
    }
}

/// The retry budget at `now`: attempts started within the retry period,
/// and how many more it allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Attempts started within the retry period.
    pub used: u32,
    /// Attempts allowed within it.
    pub allowed: u32,
}

impl Budget {
    /// How many more attempts the budget allows now.
    pub fn remaining(&self) -> u32 {
        self.allowed.saturating_sub(self.used)
    }
}

/// The retry budget at `now`.
pub fn budget(memory: &Memory, policy: &Policy, now: Timestamp) -> Budget {
    let used = memory
        .attempts
        .iter()
        .filter(|a| now.duration_since(a.started) < policy.retry_period.0)
        .count();
    Budget {
        used: u32::try_from(used).unwrap_or(u32::MAX),
        allowed: policy.max_retries,
    }
}

/// The decision as Prometheus text (node-exporter's textfile collector):
/// `hacli_remediation_decision` (1 for the current decision, with its kind,
/// node, reason and `reason_class`), `hacli_remediation_attempts` within
/// the retry period, `hacli_remediation_retry_budget` and
/// `hacli_remediation_budget_remaining` ([`budget`], as the sentinel
/// exports it).
pub fn metrics(d: &Decision, memory: &Memory, policy: &Policy, now: Timestamp) -> String {
    let esc = |s: &str| {
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', " ")
    };
    let b = budget(memory, policy, now);
    format!(
        "# HELP hacli_remediation_decision The remediation loop's last decision (1), with its reason.\n# TYPE hacli_remediation_decision gauge\nhacli_remediation_decision{{decision=\"{}\",node=\"{}\",reason=\"{}\",reason_class=\"{}\"}} 1\n# HELP hacli_remediation_attempts Remediation attempts within the retry period.\n# TYPE hacli_remediation_attempts gauge\nhacli_remediation_attempts {}\n# HELP hacli_remediation_retry_budget Attempts allowed within the retry period.\n# TYPE hacli_remediation_retry_budget gauge\nhacli_remediation_retry_budget {}\n# HELP hacli_remediation_budget_remaining Attempts the retry budget still allows.\n# TYPE hacli_remediation_budget_remaining gauge\nhacli_remediation_budget_remaining {}\n",
        d.kind(),
        esc(d.node().unwrap_or("")),
        esc(d.reason()),
        d.class(),
        b.used,
        b.allowed,
        b.remaining()
    )
}

/// The topology after `old` is replaced by the spare master `spare`:
/// `spare` in `old`'s place, and each etcd endpoint on `old`'s address moved
/// to `spare`'s. Refused (the sentence) when `old` is not a master of
/// `current`, `spare` is not a control-plane node, its name, address or VM
/// id is taken in `current`, or the result is not a valid topology.
pub fn with_spare(
    current: &Topology,
    old: &str,
    spare: &crate::topology::Node,
) -> Result<Topology, String> {
    let Some(gone) = current.node(old).filter(|n| n.is_control_plane()) else {
        return Err(format!("`{old}` is not a master of the topology"));
    };
    if !spare.is_control_plane() {
        return Err(format!(
            "the spare `{}` is not a control-plane node (role: control-plane)",
            spare.name
        ));
    }
    for n in &current.nodes {
        let taken = if n.name == spare.name {
            Some("name")
        } else if n.address == spare.address {
            Some("address")
        } else if spare.vmid.is_some() && n.vmid == spare.vmid {
            Some("VM id")
        } else {
            None
        };
        if let Some(what) = taken {
            return Err(format!(
                "the spare `{}`'s {what} is taken: node `{}` of the topology has it",
                spare.name, n.name
            ));
        }
    }
    let (from, to) = (gone.address.to_string(), spare.address.to_string());
    let mut target = current.clone();
    for n in &mut target.nodes {
        if n.name == old {
            *n = spare.clone();
        }
    }
    for e in &mut target.etcd.endpoints {
        if crate::topology::url_host(e) == Some(from.as_str()) {
            *e = e.replacen(&from, &to, 1);
        }
    }
    let report = target.validate();
    if let Some(d) = report.errors.first() {
        return Err(format!(
            "the topology with `{}` in `{old}`'s place is not valid: {d}",
            spare.name
        ));
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{EtcdMember, EtcdState, MemberId, NodeState};
    use proptest::prelude::*;

    fn topo(n: usize) -> Topology {
        let mut y = String::from(
            "cluster: lab\ncontrolPlaneEndpoint: { address: 10.0.0.10 }\nloadBalancer: { kind: haproxy, pool: k8s-apiserver, frontend: \"10.0.0.10:6443\" }\nnodes:\n",
        );
        for i in 1..=n {
            y.push_str(&format!(
                "  - {{ name: m{i}, role: control-plane, address: 10.0.0.1{i} }}\n"
            ));
        }
        Topology::from_yaml("t.yaml", &y).unwrap().0
    }

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_780_000_000 + secs).unwrap()
    }

    fn state(n: usize, down: &[usize]) -> ClusterState {
        let mut s = ClusterState::empty(t(0));
        s.nodes = Some(
            (1..=n)
                .map(|i| {
                    let mut st = NodeState::ready(format!("m{i}"), t(-3600));
                    st.ready = Some(!down.contains(&i));
                    st
                })
                .collect(),
        );
        s.etcd = Some(EtcdState {
            members: (1..=n)
                .map(|i| EtcdMember {
                    id: MemberId(0x100 + i as u64),
                    name: format!("m{i}"),
                    peer_urls: vec![],
                    client_urls: vec![],
                    is_learner: false,
                    healthy: Some(!down.contains(&i)),
                    leader: false,
                    raft_index: None,
                    alarms: vec![],
                })
                .collect(),
        });
        s
    }

    #[test]
    fn one_master_down_past_the_bound_is_replaced() {
        let (topo, p) = (topo(3), Policy::default());
        let mut mem = Memory::default();
        let d = decide(&topo, &state(3, &[1]), &mut mem, &p, t(0));
        assert_eq!(d.kind(), "wait", "{d:?}");
        assert!(d.reason().contains("replaced after 5m"), "{}", d.line());
        let d = decide(&topo, &state(3, &[1]), &mut mem, &p, t(301));
        assert_eq!(d.kind(), "replace", "{}", d.line());
        assert_eq!(d.node(), Some("m1"));
        assert!(
            d.reason()
                .contains("its Node is NotReady and its etcd member (id 101) is unhealthy"),
            "{}",
            d.line()
        );
        assert!(
            d.reason()
                .contains("2 of 2 after m1's member is removed, 3 of 3 after the new member joins"),
            "{}",
            d.line()
        );
        let m = metrics(&d, &mem, &p, t(301));
        assert!(
            m.contains(
                "hacli_remediation_decision{decision=\"replace\",node=\"m1\",reason=\"its Node"
            ),
            "{m}"
        );
    }

    #[test]
    fn two_masters_down_of_three_are_refused_for_quorum() {
        let (topo, p) = (topo(3), Policy::default());
        let mut mem = Memory::default();
        decide(&topo, &state(3, &[1, 3]), &mut mem, &p, t(0));
        let d = decide(&topo, &state(3, &[1, 3]), &mut mem, &p, t(400));
        assert_eq!(d.kind(), "refused", "{}", d.line());
        assert!(
            d.reason().contains("quorum is already lost"),
            "{}",
            d.line()
        );
    }

    #[test]
    fn a_remediation_failing_twice_stops_at_its_budget() {
        let (topo, p) = (topo(3), Policy::default());
        let mut mem = Memory::default();
        decide(&topo, &state(3, &[1]), &mut mem, &p, t(0));
        let mut now = 301;
        for i in 0..2 {
            let d = decide(&topo, &state(3, &[1]), &mut mem, &p, t(now));
            assert_eq!(d.kind(), "replace", "{}", d.line());
            // The loop starts it, it fails.
            mem.pending = None;
            mem.attempts.push(Attempt {
                node: "m1".into(),
                started: t(now),
                ended: Some(t(now + 60)),
                succeeded: false,
            });
            if i == 0 {
                // After the first: the minimum healthy period.
                let d = decide(&topo, &state(3, &[1]), &mut mem, &p, t(now + 120));
                assert_eq!(d.kind(), "wait", "{}", d.line());
                assert!(
                    d.reason().contains("the next waits 10m after it"),
                    "{}",
                    d.line()
                );
            }
            now += 60 + 601;
        }
        let d = decide(&topo, &state(3, &[1]), &mut mem, &p, t(now));
        assert_eq!(d.kind(), "refused", "{}", d.line());
        assert!(
            d.reason()
                .contains("the retry budget is spent: 2 attempt(s) in the last 1h"),
            "{}",
            d.line()
        );
    }

    #[test]
    fn one_at_a_time_and_a_target_that_answers_again_is_cancelled() {
        let (topo, p) = (topo(5), Policy::default());
        let mut mem = Memory::default();
        decide(&topo, &state(5, &[1]), &mut mem, &p, t(0));
        let d = decide(&topo, &state(5, &[1]), &mut mem, &p, t(301));
        assert_eq!(d.kind(), "replace");
        // m1 is back before the loop started the replacement.
        let d = decide(&topo, &state(5, &[]), &mut mem, &p, t(302));
        assert_eq!(d.kind(), "cancelled", "{}", d.line());
        assert!(d.reason().contains("m1 answers again"), "{}", d.line());
        // A remediation in progress holds every other.
        mem.attempts.push(Attempt {
            node: "m2".into(),
            started: t(303),
            ended: None,
            succeeded: false,
        });
        decide(&topo, &state(5, &[3]), &mut mem, &p, t(303));
        let d = decide(&topo, &state(5, &[3]), &mut mem, &p, t(1000));
        assert_eq!(d.kind(), "wait", "{}", d.line());
        assert!(
            d.reason().contains("one remediation at a time: m2's"),
            "{}",
            d.line()
        );
    }

    #[test]
    fn a_spare_takes_the_dead_masters_place_and_its_etcd_endpoint() {
        let mut current = topo(3);
        current.etcd.endpoints = (1..=3)
            .map(|i| format!("https://10.0.0.1{i}:2379"))
            .collect();
        let spare = |name: &str, addr: &str| crate::topology::Node {
            name: name.into(),
            role: crate::topology::Role::ControlPlane,
            address: addr.parse().unwrap(),
            hypervisor: None,
            vmid: None,
            cpus: None,
            memory_gib: None,
            disk_gib: None,
        };
        let t = with_spare(&current, "m2", &spare("m5", "10.0.0.15")).unwrap();
        let names: Vec<_> = t.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["m1", "m5", "m3"]);
        assert_eq!(t.etcd.endpoints[1], "https://10.0.0.15:2379");
        assert_eq!(t.etcd.endpoints[0], "https://10.0.0.11:2379");
        let e = with_spare(&current, "m2", &spare("m3", "10.0.0.15")).unwrap_err();
        assert!(e.contains("name is taken: node `m3`"), "{e}");
        let e = with_spare(&current, "m2", &spare("m5", "10.0.0.13")).unwrap_err();
        assert!(e.contains("address is taken: node `m3`"), "{e}");
        let e = with_spare(&current, "m9", &spare("m5", "10.0.0.15")).unwrap_err();
        assert!(e.contains("`m9` is not a master"), "{e}");
    }

    #[test]
    fn unobserved_health_is_never_replaced_nor_healthy() {
        let mut s = state(3, &[]);
        s.nodes = None;
        s.etcd = None;
        let d = decide(
            &topo(3),
            &s,
            &mut Memory::default(),
            &Policy::default(),
            t(0),
        );
        assert_eq!(d.kind(), "wait", "{}", d.line());
        assert_eq!(d.class(), Class::Unobserved);
        assert!(d.unobserved());
        let m = metrics(&d, &Memory::default(), &Policy::default(), t(0));
        assert!(m.contains("reason_class=\"unobserved\"} 1"), "{m}");
        // A wait for the bound is not an unobserved health, whatever its words.
        let mut mem = Memory::default();
        let d = decide(
            &topo(3),
            &state(3, &[2]),
            &mut mem,
            &Policy::default(),
            t(0),
        );
        assert_eq!(d.class(), Class::WithinBound, "{}", d.line());
        assert!(!d.unobserved());
    }

    #[test]
    fn each_refusal_has_its_class_and_the_budget_counts_down() {
        let (topo, p) = (topo(3), Policy::default());
        let mut mem = Memory::default();
        decide(&topo, &state(3, &[1, 3]), &mut mem, &p, t(0));
        let d = decide(&topo, &state(3, &[1, 3]), &mut mem, &p, t(400));
        assert_eq!(d.class(), Class::Quorum, "{}", d.line());
        let mut mem = Memory::default();
        decide(&topo, &state(3, &[1]), &mut mem, &p, t(0));
        let d = decide(&topo, &state(3, &[1]), &mut mem, &p, t(301));
        assert_eq!(d.class(), Class::PastBound, "{}", d.line());
        assert_eq!(budget(&mem, &p, t(301)).remaining(), 2);
        for i in 0..2 {
            mem.attempts.push(Attempt {
                node: "m1".into(),
                started: t(301 + i),
                ended: Some(t(302 + i)),
                succeeded: false,
            });
        }
        mem.pending = None;
        assert_eq!(budget(&mem, &p, t(400)).remaining(), 0);
        let d = decide(&topo, &state(3, &[1]), &mut mem, &p, t(400));
        assert_eq!(d.class(), Class::RetryBudget, "{}", d.line());
        let m = metrics(&d, &mem, &p, t(400));
        assert!(m.contains("hacli_remediation_budget_remaining 0\n"), "{m}");
        assert!(m.contains("reason_class=\"retry-budget\"} 1"), "{m}");
        // An hour on, the budget is whole again.
        assert_eq!(budget(&mem, &p, t(301 + 3600)).remaining(), 1);
        assert_eq!(budget(&mem, &p, t(302 + 3600)).remaining(), 2);
    }

    proptest! {
        /// Whatever is down, a replacement is decided only when the
        /// healthy voters reach quorum after the removal.
        #[test]
        fn never_replace_when_quorum_would_be_lost(n in prop::sample::select(vec![1usize, 3, 5, 7]), down in prop::collection::btree_set(1usize..=7, 0..5), wait in 0i64..2000) {
            let down: Vec<usize> = down.into_iter().filter(|d| *d <= n).collect();
            let topo = topo(n);
            let mut mem = Memory::default();
            decide(&topo, &state(n, &down), &mut mem, &Policy::default(), t(0));
            let d = decide(&topo, &state(n, &down), &mut mem, &Policy::default(), t(wait));
            if d.kind() == "replace" {
                let healthy = n - down.len();
                prop_assert!(healthy >= crate::quorum::quorum(n - 1), "{} {:?}", n, down);
                prop_assert!(wait >= 300);
            }
        }
    }
}
