//! Remediating masters by policy (issue 26): one tick of the loop.
//!
//! Each tick observes the cluster and asks `hacore::remediation::decide`.
//! A `replace` decision is carried out under the disruption lock, one at a
//! time: the lock is taken, the cluster observed again (a pause passed: look
//! again before anything is taken down) and decided again; a target that
//! answers again is cancelled and says so. The replacement itself (the
//! `replace-master --dead` plan for the target and a spare) is the
//! caller's `replace`; its outcome is recorded as an attempt, which the
//! retry budget and the minimum healthy period count. Every decision is
//! reported as an event with its reason; `hacore::remediation::metrics`
//! renders it for Prometheus. [`run_outcome`] is one run on the live cluster (the
//! observer, the Lease and `replace-master --dead` for [`tick`]), with
//! plain data in and out so that any frontend can call it.

use hacore::ClusterState;
use hacore::Topology;
use hacore::backend::Observer;
use hacore::disrupt::{Lock, LockAnswer};
use std::path::{Path, PathBuf};

use hacore::remediation::{Attempt, Class, Decision, Memory, Policy, decide, metrics};
use jiff::Timestamp;
use serde::Serialize;

use crate::Error;
use crate::events::Event;

/// One tick at `now` (then `now_after()` for the end of a replacement).
/// Returns the decision that stands once the tick is over.
#[allow(clippy::too_many_arguments)]
pub fn tick(
    topology: &Topology,
    observer: &mut dyn Observer,
    lock: &mut dyn Lock,
    identity: &str,
    policy: &Policy,
    memory: &mut Memory,
    now: Timestamp,
    now_after: &mut dyn FnMut() -> Timestamp,
    replace: &mut dyn FnMut(&str, &ClusterState) -> Result<(), String>,
    events: &mut dyn FnMut(Event),
) -> Decision {
    let state = observer.observe(topology);
    let d = decide(topology, &state, memory, policy, now);
    events(Event::Note(d.line()));
    let Decision::Replace { node, .. } = &d else {
        return d;
    };
    let node = node.clone();
    match lock.acquire(identity) {
        Ok(LockAnswer::Acquired) => {}
        Ok(LockAnswer::HeldBy(h)) => {
            memory.pending = None;
            let d = Decision::Wait {
                reason: format!("one at a time: the disruption lock is held by {h}"),
                node,
                class: Class::OneAtATime,
            };
            events(Event::Note(d.line()));
            return d;
        }
        Err(e) => {
            memory.pending = None;
            let d = Decision::Wait {
                reason: format!("the disruption lock could not be taken: {e}"),
                node,
                class: Class::Lock,
            };
            events(Event::Note(d.line()));
            return d;
        }
    }
    // Look again under the lock: the target may answer again.
    let again = observer.observe(topology);
    let d2 = decide(topology, &again, memory, policy, now);
    events(Event::Note(d2.line()));
    let d = match d2 {
        Decision::Replace { node: n, .. } if n == node => {
            memory.pending = None;
            memory.attempts.push(Attempt {
                node: node.clone(),
                started: now,
                ended: None,
                succeeded: false,
            });
            let result = replace(&node, &again);
            let a = memory.attempts.last_mut().expect("pushed");
            a.ended = Some(now_after());
            a.succeeded = result.is_ok();
            match result {
                Ok(()) => Decision::Replace {
                    node: node.clone(),
                    reason: format!("{node} replaced"),
                    class: Class::Replaced,
                },
                Err(e) => {
                    let d = Decision::Refused {
                        node: node.clone(),
                        reason: format!("the replacement of {node} failed: {e}"),
                        class: Class::Failed,
                    };
                    events(Event::Warning(d.line()));
                    d
                }
            }
        }
        other => {
            memory.pending = None;
            other
        }
    };
    if let Err(e) = lock.release(identity) {
        events(Event::Warning(format!(
            "the disruption lock was not released: {e}"
        )));
    }
    events(Event::Note(d.line()));
    d
}

/// What one decision (`hacli remediate`, `hapy.remediate`) is asked
/// besides the cluster's state.
#[derive(Debug, Clone)]
pub struct Once {
    /// The policy.
    pub policy: Policy,
    /// Where the loop's memory lives between decisions (read if it exists,
    /// written back).
    pub memory: PathBuf,
    /// Where to write the decision as Prometheus text, if anywhere.
    pub metrics: Option<PathBuf>,
}

/// One decision with the memory it leaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Decided {
    /// The decision (`decision`: healthy, wait, replace, refused,
    /// cancelled; `node`, `reason`).
    #[serde(flatten)]
    pub decision: Decision,
    /// The memory written back.
    pub memory: Memory,
}

/// The memory file: empty when it does not exist yet; one that does not
/// parse is an error naming it (never a fresh memory: the retry budget
/// would be forgotten).
pub fn read_memory(path: &Path) -> Result<Memory, Error> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| Error::Setting {
            what: format!("memory {}:{}:{}", path.display(), e.line(), e.column()),
            why: format!("not a remediation memory: {e}"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Memory::default()),
        Err(e) => Err(Error::Setting {
            what: format!("memory {}", path.display()),
            why: e.to_string(),
        }),
    }
}

/// Decide once from `state` at `now` (`hacore::remediation::decide`),
/// remembering in `opts.memory`; the decision's metrics written when asked.
/// Nothing is acted on: a `replace` decision is carried out by
/// `replace-master --dead`, or by [`tick`] under the lock.
pub fn decide_once(
    topology: &Topology,
    state: &ClusterState,
    opts: &Once,
    now: Timestamp,
) -> Result<Decided, Error> {
    let mut memory = read_memory(&opts.memory)?;
    let decision = decide(topology, state, &mut memory, &opts.policy, now);
    write_memory(opts, &decision, &memory, now)?;
    Ok(Decided { decision, memory })
}

/// One run with its memory and metrics files, as `hacli remediate` and
/// `hapy.remediate` make it on the live cluster: the memory read from
/// `opts.memory` (one that does not parse is an error, never forgotten),
/// [`run_outcome`] (acting only with `act`), the memory written back, the
/// decision's metrics when asked, and after a replacement the topology from
/// now on next to its journal ([`write_topology`]).
pub fn run_once(
    topology: &Topology,
    reach: &crate::Reach,
    opts: &Once,
    act: Option<&Act>,
    events: &mut dyn FnMut(Event),
) -> Result<Ran, Error> {
    let mut memory = read_memory(&opts.memory)?;
    let o = run_outcome(topology, reach, &opts.policy, &mut memory, act, events);
    write_memory(opts, &o.decision, &memory, Timestamp::now())?;
    let replaced = match &o.replaced {
        Some((journal, target)) => Some(Replaced {
            journal: journal.clone(),
            topology: write_topology(journal, target)?,
        }),
        None => None,
    };
    Ok(Ran {
        decided: Decided {
            decision: o.decision,
            memory,
        },
        replaced,
    })
}

/// A run of [`run_once`]: the decision, the memory, and the replacement's
/// files when one ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ran {
    /// The decision and the memory written back.
    #[serde(flatten)]
    pub decided: Decided,
    /// After a replacement: its journal and the topology from now on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced: Option<Replaced>,
}

/// The files a replacement leaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Replaced {
    /// Its journal.
    pub journal: PathBuf,
    /// The topology from now on (the spare in the dead master's place).
    pub topology: PathBuf,
}

/// The topology after a replacement, written next to its journal
/// (`JOURNAL.yaml`); its path.
pub fn write_topology(journal: &Path, target: &Topology) -> Result<PathBuf, Error> {
    let file = PathBuf::from(format!("{}.yaml", journal.display()));
    let text = serde_json::to_string_pretty(target).map_err(|e| Error::Setting {
        what: "topology".into(),
        why: e.to_string(),
    })?;
    std::fs::write(&file, text).map_err(|e| Error::Setting {
        what: format!("the topology after the replacement, {}", file.display()),
        why: format!("cannot write: {e}"),
    })?;
    Ok(file)
}

/// The memory written back to `opts.memory`, and the decision's metrics
/// to `opts.metrics` when asked.
fn write_memory(opts: &Once, d: &Decision, memory: &Memory, now: Timestamp) -> Result<(), Error> {
    let write = |p: &Path, text: String| {
        std::fs::write(p, text).map_err(|e| Error::Setting {
            what: p.display().to_string(),
            why: format!("cannot write: {e}"),
        })
    };
    let text = serde_json::to_string_pretty(memory).map_err(|e| Error::Setting {
        what: "memory".into(),
        why: e.to_string(),
    })?;
    write(&opts.memory, text)?;
    if let Some(p) = &opts.metrics {
        write(p, metrics(d, memory, &opts.policy, now))?;
    }
    Ok(())
}

/// What `act` replaces a dead master with, and how the run goes.
#[derive(Debug, Clone)]
pub struct Act {
    /// The spare master: it takes the dead one's place
    /// (`hacore::remediation::with_spare`).
    pub spare: hacore::topology::Node,
    /// VM id of the template the spare is cloned from.
    pub template: Option<u32>,
    /// How long to wait for a drained backend's sessions to reach 0.
    pub idle_bound: std::time::Duration,
    /// Keep the masters apart with this Proxmox HA rule.
    pub ha_rule: Option<String>,
    /// The run's options: `journal` is the base name (each attempt
    /// journals to `JOURNAL.OLD.N`), `identity` the lock holder (by
    /// default `hacli-remediate@HOST:JOURNAL`), the backend.
    pub run: crate::master::RunOptions,
}

/// What one remediation run came to.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The decision that stands.
    pub decision: Decision,
    /// After a replacement that ran: its journal and the topology from now
    /// on (the spare in the dead master's place).
    pub replaced: Option<(std::path::PathBuf, Topology)>,
}

/// The live cluster as an [`Observer`]: an observation that fails is an
/// empty state (everything unknown: never replaced, never healthy).
struct LiveObserver<'a>(&'a crate::Reach);

impl Observer for LiveObserver<'_> {
    fn observe(&mut self, topology: &Topology) -> ClusterState {
        match crate::observe::observe(topology, self.0, None) {
            Ok(o) => o.state,
            Err(e) => {
                let mut s = ClusterState::empty(Timestamp::now());
                s.probe_errors
                    .insert(hacore::state::Probe::Nodes, e.to_string());
                s
            }
        }
    }
}

/// The disruption lock (the Lease `reach` names) as a [`Lock`]; a lock
/// kept after a failed rollback is left held.
struct LiveLock<'a>(&'a crate::Reach, std::time::Duration);

fn failed(what: &str, e: crate::Error) -> hacore::backend::BackendError {
    hacore::backend::BackendError::Failed {
        what: what.into(),
        message: e.to_string(),
    }
}

impl Lock for LiveLock<'_> {
    fn acquire(&mut self, id: &str) -> Result<LockAnswer, hacore::backend::BackendError> {
        match crate::lock::take(self.0, id, self.1, Timestamp::now()) {
            Ok(crate::lock::Taken::Taken { .. }) => Ok(LockAnswer::Acquired),
            Ok(crate::lock::Taken::HeldBy { holder, .. }) => Ok(LockAnswer::HeldBy(holder)),
            Err(e) => Err(failed("taking the disruption lock", e)),
        }
    }
    fn release(&mut self, id: &str) -> Result<(), hacore::backend::BackendError> {
        let status = crate::lock::show(self.0, Timestamp::now())
            .map_err(|e| failed("reading the disruption lock", e))?;
        if status.kept.is_some() {
            return Ok(());
        }
        crate::lock::release(self.0, id)
            .map(|_| ())
            .map_err(|e| failed("releasing the disruption lock", e))
    }
    fn keep(&mut self, _: &str, _: &str) -> Result<(), hacore::backend::BackendError> {
        Ok(())
    }
}

/// One remediation run on the live cluster (with the replacement's journal
/// and topology when one ran): observe, decide (updating
/// `memory`); with `act`, a `replace` decision is carried out by [`tick`]
/// under the disruption lock (`reach`'s Lease): the cluster observed and
/// decided again right before it starts (a target that answers again is
/// cancelled), then the `replace-master --dead` plan for the target and
/// `act.spare`, run by `crate::master::run`, journalled. Without `act`
/// nothing is touched.
pub fn run_outcome(
    topology: &Topology,
    reach: &crate::Reach,
    policy: &Policy,
    memory: &mut Memory,
    act: Option<&Act>,
    events: &mut dyn FnMut(Event),
) -> Outcome {
    let mut observer = LiveObserver(reach);
    let now = Timestamp::now();
    let Some(act) = act else {
        let state = observer.observe(topology);
        let d = decide(topology, &state, memory, policy, now);
        events(Event::Note(d.line()));
        return Outcome {
            decision: d,
            replaced: None,
        };
    };
    let n = memory.attempts.len() + 1;
    let identity = act
        .run
        .identity
        .clone()
        .unwrap_or_else(|| crate::journal::run_identity("hacli-remediate", &act.run.journal));
    let mut lock = LiveLock(reach, act.run.lock_ttl);
    let mut replaced = None;
    // The run's step events go to the same sink (never while tick reports).
    let events = std::cell::RefCell::new(events);
    let mut replace = |old: &str, state: &ClusterState| -> Result<(), String> {
        let mut steps = |e: Event| (**events.borrow_mut())(e);
        let r = replace_one(topology, act, old, n, &identity, state, reach, &mut steps)?;
        replaced = Some(r);
        Ok(())
    };
    let mut sink = |e: Event| (**events.borrow_mut())(e);
    let decision = tick(
        topology,
        &mut observer,
        &mut lock,
        &identity,
        policy,
        memory,
        now,
        &mut Timestamp::now,
        &mut replace,
        &mut sink,
    );
    Outcome { decision, replaced }
}

/// The dead master `old` replaced by `act.spare`: planned against
/// `state` (refused: the reasons), run, journalled to `JOURNAL.OLD.N`.
#[allow(clippy::too_many_arguments)]
fn replace_one(
    current: &Topology,
    act: &Act,
    old: &str,
    n: usize,
    identity: &str,
    state: &ClusterState,
    reach: &crate::Reach,
    events: &mut dyn FnMut(Event),
) -> Result<(std::path::PathBuf, Topology), String> {
    let target = hacore::remediation::with_spare(current, old, &act.spare)?;
    let planned = crate::master::plan_replace(&crate::master::Replacement {
        current,
        target: &target,
        old,
        new: &act.spare.name,
        template: act.template,
        idle_bound: act.idle_bound,
        dead: Some(state),
        ha_rule: act.ha_rule.as_deref(),
    })
    .map_err(|e| e.to_string())?
    .map_err(|r| format!("refused: {}", r.reasons.join("; ")))?;
    let mut journal = act.run.journal.clone().into_os_string();
    journal.push(format!(".{old}.{n}"));
    let opts = crate::master::RunOptions {
        journal: journal.into(),
        identity: Some(identity.to_string()),
        resume: false,
        ..act.run.clone()
    };
    let report =
        crate::master::run(&planned, old, &opts, reach, events).map_err(|e| e.to_string())?;
    if !report.ok() {
        return Err(report.summary());
    }
    Ok((opts.journal, target))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hacore::backend::BackendError;
    use hacore::state::{EtcdMember, EtcdState, MemberId, NodeState};

    fn topo() -> Topology {
        let mut y = String::from(
            "cluster: lab\ncontrolPlaneEndpoint: { address: 198.18.20.10 }\nloadBalancer: { kind: haproxy, pool: k8s-apiserver, frontend: \"198.18.20.10:6443\" }\nnodes:\n",
        );
        for i in 1..=3 {
            y.push_str(&format!(
                "  - {{ name: m{i}, role: control-plane, address: 198.18.20.1{i} }}\n"
            ));
        }
        Topology::from_yaml("t.yaml", &y).unwrap().0
    }

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_780_000_000 + secs).unwrap()
    }

    fn state(down: &[usize]) -> ClusterState {
        let mut s = ClusterState::empty(t(0));
        s.nodes = Some(
            (1..=3)
                .map(|i| {
                    let mut n = NodeState::ready(format!("m{i}"), t(-3600));
                    n.ready = Some(!down.contains(&i));
                    n
                })
                .collect(),
        );
        s.etcd = Some(EtcdState {
            members: (1..=3)
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

    /// Observations in turn (the last repeats).
    struct Seq(Vec<ClusterState>);
    impl Observer for Seq {
        fn observe(&mut self, _: &Topology) -> ClusterState {
            if self.0.len() > 1 {
                self.0.remove(0)
            } else {
                self.0[0].clone()
            }
        }
    }

    #[derive(Default)]
    struct MemLock(Option<String>, Vec<String>);
    impl Lock for MemLock {
        fn acquire(&mut self, id: &str) -> Result<LockAnswer, BackendError> {
            match &self.0 {
                Some(h) if h != id => Ok(LockAnswer::HeldBy(h.clone())),
                _ => {
                    self.0 = Some(id.into());
                    self.1.push(format!("acquire {id}"));
                    Ok(LockAnswer::Acquired)
                }
            }
        }
        fn release(&mut self, id: &str) -> Result<(), BackendError> {
            if self.0.as_deref() == Some(id) {
                self.0 = None;
                self.1.push(format!("release {id}"));
            }
            Ok(())
        }
        fn keep(&mut self, _: &str, _: &str) -> Result<(), BackendError> {
            Ok(())
        }
    }

    fn run(
        obs: &mut Seq,
        lock: &mut MemLock,
        memory: &mut Memory,
        now: i64,
        replace: &mut dyn FnMut(&str, &ClusterState) -> Result<(), String>,
    ) -> (Decision, Vec<String>) {
        let mut lines = Vec::new();
        let d = tick(
            &topo(),
            obs,
            lock,
            "remediator",
            &Policy::default(),
            memory,
            t(now),
            &mut || t(now + 60),
            replace,
            &mut |e| {
                if let Event::Note(l) | Event::Warning(l) = e {
                    lines.push(l)
                }
            },
        );
        (d, lines)
    }

    #[test]
    fn one_master_down_is_replaced_under_the_lock_after_its_bound() {
        let mut memory = Memory::default();
        let mut lock = MemLock::default();
        let mut replaced = Vec::new();
        let mut obs = Seq(vec![state(&[1])]);
        let (d, _) = run(&mut obs, &mut lock, &mut memory, 0, &mut |n, _| {
            replaced.push(n.to_string());
            Ok(())
        });
        assert_eq!(d.kind(), "wait");
        let (d, lines) = run(&mut obs, &mut lock, &mut memory, 301, &mut |n, _| {
            replaced.push(n.to_string());
            Ok(())
        });
        assert_eq!(d.line(), "replace m1: m1 replaced", "{lines:?}");
        assert_eq!(replaced, ["m1"]);
        assert_eq!(lock.1, ["acquire remediator", "release remediator"]);
        assert_eq!(memory.attempts.len(), 1);
        assert!(memory.attempts[0].succeeded);
    }

    #[test]
    fn a_target_that_answers_under_the_lock_is_cancelled_and_nothing_is_replaced() {
        let mut memory = Memory::default();
        let mut lock = MemLock::default();
        let mut obs = Seq(vec![state(&[1]), state(&[1]), state(&[])]);
        let mut never =
            |_: &str, _: &ClusterState| -> Result<(), String> { panic!("nothing is replaced") };
        run(&mut obs, &mut lock, &mut memory, 0, &mut never);
        let (d, lines) = run(&mut obs, &mut lock, &mut memory, 301, &mut never);
        assert_eq!(d.kind(), "cancelled", "{lines:?}");
        assert!(d.reason().contains("m1 answers again"), "{}", d.line());
        assert!(memory.attempts.is_empty());
        assert_eq!(lock.0, None, "the lock is released");
    }

    #[test]
    fn a_lock_held_by_another_waits_and_a_failing_replacement_stops_at_the_budget() {
        let mut memory = Memory::default();
        let mut lock = MemLock(Some("hacli-roll@ci".into()), vec![]);
        let mut obs = Seq(vec![state(&[1])]);
        let mut fail = |_: &str, _: &ClusterState| -> Result<(), String> {
            Err("the join of m4 failed".into())
        };
        run(&mut obs, &mut lock, &mut memory, 0, &mut fail);
        let (d, _) = run(&mut obs, &mut lock, &mut memory, 301, &mut fail);
        assert_eq!(
            d.line(),
            "wait m1: one at a time: the disruption lock is held by hacli-roll@ci"
        );
        lock.0 = None;
        let (d, _) = run(&mut obs, &mut lock, &mut memory, 302, &mut fail);
        assert!(d.reason().contains("the join of m4 failed"), "{}", d.line());
        let (d, _) = run(&mut obs, &mut lock, &mut memory, 302 + 60 + 601, &mut fail);
        assert_eq!(d.kind(), "refused", "{}", d.line());
        let (d, _) = run(&mut obs, &mut lock, &mut memory, 302 + 2 * 661, &mut fail);
        assert_eq!(d.kind(), "refused", "{}", d.line());
        assert!(
            d.reason().contains("the retry budget is spent"),
            "{}",
            d.line()
        );
        assert_eq!(memory.attempts.len(), 2);
    }

    #[test]
    fn a_quorum_refusal_takes_no_lock_and_replaces_nothing() {
        let mut memory = Memory::default();
        let mut lock = MemLock::default();
        let mut obs = Seq(vec![state(&[1, 3])]);
        let mut never =
            |_: &str, _: &ClusterState| -> Result<(), String> { panic!("nothing is replaced") };
        run(&mut obs, &mut lock, &mut memory, 0, &mut never);
        let (d, lines) = run(&mut obs, &mut lock, &mut memory, 301, &mut never);
        assert_eq!(d.class(), Class::Quorum, "{lines:?}");
        assert_eq!(d.kind(), "refused");
        assert!(lock.1.is_empty(), "the lock was never taken: {:?}", lock.1);
        assert!(memory.attempts.is_empty());
        assert_eq!(memory.pending, None);
    }
}
