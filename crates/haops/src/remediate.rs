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
//! renders it for Prometheus.

use hacore::ClusterState;
use hacore::Topology;
use hacore::backend::Observer;
use hacore::disrupt::{Lock, LockAnswer};
use std::path::{Path, PathBuf};

use hacore::remediation::{Attempt, Decision, Memory, Policy, decide, metrics};
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
            };
            events(Event::Note(d.line()));
            return d;
        }
        Err(e) => {
            memory.pending = None;
            let d = Decision::Wait {
                reason: format!("the disruption lock could not be taken: {e}"),
                node,
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
                },
                Err(e) => {
                    let d = Decision::Refused {
                        node: node.clone(),
                        reason: format!("the replacement of {node} failed: {e}"),
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
    let write = |p: &Path, text: String| {
        std::fs::write(p, text).map_err(|e| Error::Setting {
            what: p.display().to_string(),
            why: format!("cannot write: {e}"),
        })
    };
    let text = serde_json::to_string_pretty(&memory).map_err(|e| Error::Setting {
        what: "memory".into(),
        why: e.to_string(),
    })?;
    write(&opts.memory, text)?;
    if let Some(p) = &opts.metrics {
        write(p, metrics(&decision, &memory, &opts.policy, now))?;
    }
    Ok(Decided { decision, memory })
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
}
