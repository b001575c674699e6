//! The gate: observe → evaluate → (move the etcd leader) → (confirm) →
//! (take the lock), once, for every frontend: `hacli gate`, the Woodpecker
//! plugin, the sentinel's cycle, Python's `hapy.gate`.
//!
//! - **observe**: [`crate::observe::observe_with`] (the snapshot directory,
//!   another cluster's state refused);
//! - **decide**: `hacore::gate::evaluate` at `now` (an argument: the
//!   frontend passes the clock's time; later evaluations in the same gate
//!   add the time elapsed since);
//! - **move-leader** (asked for, and `etcd-leader` the only rule that
//!   denies): take the disruption lock, move etcd leadership to the best
//!   healthy, caught-up voter, observe and evaluate again, release the lock
//!   unless the caller held it before;
//! - **confirm** (advisory reads, and the lock to be taken): read again
//!   consistently what the decision rests on and decide on that;
//! - **lock** (asked for, and allowed): take the disruption Lease, its
//!   outcome recorded as the verdict's `lock` finding (held by another:
//!   deny; no answer: unknown).
//!
//! Each phase is reported as [`Event::Phase`], the leader move's lines as
//! [`Event::Note`], a failed move as [`Event::Warning`].

use std::time::{Duration, Instant};

use hacore::gate::{Request, evaluate};
use hacore::state::Probe;
use hacore::verdict::Severity;
use hacore::{Action, ClusterState, Policy, Topology, Verdict};
use kubeadm::control_plane::KubeadmControlPlane;
use kubeadm::{Acquire, DisruptionLock, Observer, Reads, Timings};
use tokio::time::timeout;

use crate::events::{Event, Events};
use crate::observe::{connect, observe_with, runtime};
use crate::{Error, Reach};

/// What to gate, and what to do around the decision.
#[derive(Debug, Clone)]
pub struct GateRequest<'a> {
    /// The disruption asked for.
    pub action: Action,
    /// A node, or a hypervisor host (all its VMs).
    pub target: &'a str,
    /// The policy that decides.
    pub policy: &'a Policy,
    /// Who asks: the lock's holder identity (a lock it holds does not
    /// block it). [`default_identity`] is unique per process.
    pub identity: &'a str,
    /// When `etcd-leader` is the only rule that denies, move etcd
    /// leadership away (under the lock), then evaluate again.
    pub move_leader: bool,
    /// When allowed, take the disruption lock.
    pub lock: bool,
    /// How long a lock taken here lasts without renewal (also the lock
    /// held while leadership moves).
    pub lock_ttl: Duration,
    /// The observation's reads: [`Reads::Cluster`] for a one-off gate; a
    /// sentinel's advisory [`Reads::Node`], read again consistently before
    /// the lock is taken.
    pub reads: Reads<'a>,
}

impl<'a> GateRequest<'a> {
    /// Gate `action` on `target` under `policy` for `identity`: consistent
    /// reads, no leader move, no lock (a lock taken later lasts 30 min).
    pub fn new(
        action: Action,
        target: &'a str,
        policy: &'a Policy,
        identity: &'a str,
    ) -> GateRequest<'a> {
        GateRequest {
            action,
            target,
            policy,
            identity,
            move_leader: false,
            lock: false,
            lock_ttl: Duration::from_secs(30 * 60),
            reads: Reads::Cluster,
        }
    }
}

/// What the leader move did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaderMove {
    /// Leadership moved (or stayed: the node did not lead), in one line.
    Moved(String),
    /// Not moved: the disruption lock is held by someone else.
    LockHeld(String),
    /// The move failed: why.
    Failed(String),
}

/// What a gate found and did.
#[derive(Debug, Clone)]
pub struct GateOutcome {
    /// The decision (with the `lock` finding when the lock was asked for).
    pub verdict: Verdict,
    /// The observation the verdict rests on.
    pub state: ClusterState,
    /// Every probe that failed in any of the gate's observations.
    pub probe_errors: Vec<Probe>,
    /// Each phase and how long it took, in order (`setup`, `observe`,
    /// `decide`, `move-leader`, `confirm`, `lock`).
    pub phases: Vec<(&'static str, Duration)>,
    /// When each probe of the first observation finished.
    pub probes: Timings,
    /// The leader move, when one was attempted.
    pub leader: Option<LeaderMove>,
    /// The consistent read just before taking the lock denied what the
    /// advisory one allowed.
    pub denied_on_confirmation: bool,
    /// The lock: None when not tried (not asked for, or not allowed);
    /// taken (or renewed), or why not (the `lock` finding's message: held
    /// by another, no answer).
    pub lock: Option<Result<(), String>>,
}

/// The lock identity of a caller that gives none: `ACTION/TARGET@HOST#PID`,
/// unique per process.
pub fn default_identity(action: Action, target: &str) -> String {
    format!("{action}/{target}@{}#{}", hostname(), std::process::id())
}

pub use crate::journal::hostname;

/// Gate once: connect, then [`Gate::run`]. Blocking: runs on a runtime of
/// its own. `now` is the decision's time (pass `jiff::Timestamp::now()`).
pub fn gate(
    topology: &Topology,
    reach: &Reach,
    request: &GateRequest<'_>,
    now: jiff::Timestamp,
    events: Events<'_>,
) -> Result<GateOutcome, Error> {
    let config = reach.observer_config(Some(request.policy))?;
    // Made before the gate's runtime: the control plane runs its own.
    let masters = match masters_read(topology, reach, request) {
        Ok(true) => Some(std::sync::Arc::new(KubeadmControlPlane::from_topology(
            topology,
            &reach.control_plane_options(),
        )?)),
        _ => None,
    };
    // The control plane's own runtime may not be dropped inside the
    // gate's: this reference outlives the gate and is dropped after it.
    let keep = masters.clone();
    let outcome = runtime()?.block_on(async {
        let started = Instant::now();
        let mut gate = Gate::new(connect(topology, config).await?, reach.clone());
        gate.masters = masters;
        let setup = started.elapsed();
        events(Event::Phase {
            name: "setup",
            took: setup,
        });
        let mut outcome = gate.run(request, now, events).await?;
        outcome.phases.insert(0, ("setup", setup));
        Ok(outcome)
    });
    drop(keep);
    outcome
}

/// Whether a gate reads the masters' files over SSH: its policy has a
/// rule that needs them (`control-plane-drift`, `master-disk`) for an
/// upgrade, and SSH is configured (the topology's `ssh:` section, or an
/// identity given). Err: why not, when a rule needs them.
pub fn masters_read(
    topology: &Topology,
    reach: &Reach,
    request: &GateRequest<'_>,
) -> Result<bool, &'static str> {
    let rules = &request.policy.rules;
    if request.action != Action::Upgrade
        || (rules.control_plane_drift.is_none() && rules.master_disk.is_none())
    {
        return Ok(false);
    }
    if topology.ssh.is_none() && reach.ssh.identity.is_none() {
        return Err("SSH is not configured");
    }
    Ok(true)
}

/// The masters as read over SSH (`ssh`) and their disks as Prometheus gave
/// them (`prometheus`): Prometheus's disks stand over `df`'s; without SSH
/// the rest (manifests, kubeadm-config, kubeadm's backups) is unread, and
/// says why.
fn merge_masters(
    prometheus: Option<hacore::masters::MastersState>,
    ssh: Option<hacore::masters::MastersState>,
) -> Option<hacore::masters::MastersState> {
    const NO_SSH: &str =
        "not read: SSH is not configured (the topology's `ssh:` section or --ssh-identity)";
    match (ssh, prometheus) {
        (Some(ssh), Some(p)) => Some(ssh.with_disks_from(p, "not read over SSH")),
        (Some(ssh), None) => Some(ssh),
        (None, Some(mut p)) => {
            for n in &mut p.nodes {
                n.error.get_or_insert_with(|| NO_SSH.into());
            }
            p.kubeadm_config_error.get_or_insert_with(|| NO_SSH.into());
            Some(p)
        }
        (None, None) => None,
    }
}

/// The phases of one gate, each reported as it ends.
struct Phases<'e, 'f> {
    last: Instant,
    done: Vec<(&'static str, Duration)>,
    events: &'e mut Events<'f>,
}

impl Phases<'_, '_> {
    fn mark(&mut self, name: &'static str) {
        let took = self.last.elapsed();
        self.last = Instant::now();
        self.done.push((name, took));
        (self.events)(Event::Phase { name, took });
    }
}

/// A gate connected to its cluster: build once, run many times (the
/// sentinel runs one each cycle on the same connections).
#[derive(Debug)]
pub struct Gate {
    observer: Observer,
    lock: DisruptionLock,
    reach: Reach,
    /// When set, each observation also reads the masters' files over SSH
    /// (for `control-plane-drift` and `master-disk`).
    masters: Option<std::sync::Arc<KubeadmControlPlane>>,
}

impl Gate {
    /// A gate over `observer` (see [`crate::observe::connect`]); `reach`
    /// names the snapshot directory.
    pub fn new(observer: Observer, reach: Reach) -> Gate {
        let lock = DisruptionLock::new(observer.client().clone(), observer.config().lock.clone());
        Gate {
            observer,
            lock,
            reach,
            masters: None,
        }
    }

    /// Observe with the probes and, when configured, the masters' files
    /// (read alongside, over SSH, on the control plane's own runtime).
    async fn observe(&self, reads: Reads<'_>) -> Result<(ClusterState, Timings), Error> {
        let masters = self
            .masters
            .clone()
            .map(|cp| tokio::task::spawn_blocking(move || kubeadm::masters::observe_blocking(&cp)));
        let (mut state, probes) = observe_with(&self.observer, &self.reach, reads).await?;
        let ssh = match masters {
            Some(m) => Some(m.await.unwrap_or_else(|e| hacore::masters::MastersState {
                kubeadm_config_error: Some(format!("reading the masters' files failed: {e}")),
                ..Default::default()
            })),
            None => None,
        };
        state.masters = merge_masters(state.masters.take(), ssh);
        Ok((state, probes))
    }

    /// The observer.
    pub fn observer(&self) -> &Observer {
        &self.observer
    }

    /// The disruption lock.
    pub fn lock(&self) -> &DisruptionLock {
        &self.lock
    }

    fn deadline(&self) -> Duration {
        self.observer.config().deadline
    }

    /// Observe, decide, and do what `request` asks around the decision
    /// (see the module documentation), deciding as of `now` plus the time
    /// elapsed since the call.
    pub async fn run(
        &self,
        request: &GateRequest<'_>,
        now: jiff::Timestamp,
        mut events: Events<'_>,
    ) -> Result<GateOutcome, Error> {
        let started = Instant::now();
        let at = || now + jiff::SignedDuration::try_from(started.elapsed()).unwrap_or_default();
        let mut phases = Phases {
            last: started,
            done: Vec::new(),
            events: &mut events,
        };
        let ask = Request {
            action: request.action,
            target: request.target,
            requester: Some(request.identity),
        };
        let topology = self.observer.topology();
        let (mut state, probes) = self.observe(request.reads).await?;
        let mut probe_errors: Vec<Probe> = state.probe_errors.keys().copied().collect();
        phases.mark("observe");
        let mut verdict = evaluate(topology, &state, request.policy, &ask, at())?;
        phases.mark("decide");
        let mut leader = None;
        if request.move_leader && kubeadm::etcd_leader::only_leader_denies(&verdict) {
            let moved = self.move_leader(request, &ask, at(), phases.events).await;
            leader = Some(match moved {
                Ok((m, Some((s, v)))) => {
                    (state, verdict) = (s, v);
                    m
                }
                Ok((m, None)) => m,
                Err(e) => {
                    let why = e.to_string();
                    (phases.events)(Event::Warning(format!("move-leader failed: {why}")));
                    LeaderMove::Failed(why)
                }
            });
            phases.mark("move-leader");
        }
        let mut denied_on_confirmation = false;
        if let Reads::Node {
            name,
            consistent: false,
        } = request.reads
            && request.lock
            && verdict.allowed()
        {
            let reads = Reads::Node {
                name,
                consistent: true,
            };
            let (again, _) = self.observe(reads).await?;
            for p in again.probe_errors.keys() {
                if !probe_errors.contains(p) {
                    probe_errors.push(*p);
                }
            }
            verdict = evaluate(topology, &again, request.policy, &ask, at())?;
            denied_on_confirmation = !verdict.allowed();
            state = again;
            phases.mark("confirm");
        }
        let mut lock = None;
        if request.lock && verdict.allowed() {
            self.lock
                .take_for(
                    &mut verdict,
                    request.identity,
                    request.lock_ttl,
                    at(),
                    self.deadline(),
                )
                .await;
            lock = verdict.findings.last().map(|f| match f.severity {
                Severity::Pass => Ok(()),
                _ => Err(f.message.clone()),
            });
            phases.mark("lock");
        }
        Ok(GateOutcome {
            verdict,
            state,
            probe_errors,
            phases: phases.done,
            probes,
            leader,
            denied_on_confirmation,
            lock,
        })
    }

    /// Take the lock, move leadership off `request.target`, observe and
    /// evaluate again, release the lock unless it was held before. The new
    /// state and verdict when leadership moved.
    async fn move_leader(
        &self,
        request: &GateRequest<'_>,
        ask: &Request<'_>,
        now: jiff::Timestamp,
        events: &mut Events<'_>,
    ) -> Result<(LeaderMove, Option<(ClusterState, Verdict)>), Error> {
        let deadline = self.deadline().max(Duration::from_secs(10));
        let (lock, identity) = (&self.lock, request.identity);
        let held_before = lock.holder(now).await?.as_deref() == Some(identity);
        let taken = timeout(deadline, lock.acquire(identity, request.lock_ttl, now))
            .await
            .map_err(|_| {
                Error::Unreachable(format!(
                    "taking the lock {}: no answer within {} ms",
                    lock.lease(),
                    deadline.as_millis()
                ))
            })??;
        if let Acquire::HeldBy { holder, .. } = taken {
            let line = format!("the disruption lock is held by {holder}: leadership not moved");
            events(Event::Note(format!("move-leader: {line}")));
            return Ok((LeaderMove::LockHeld(line), None));
        }
        events(Event::Note(format!(
            "move-leader: took the disruption lock {} as {identity}",
            lock.lease()
        )));
        let moved = self
            .moved_and_decided(request, ask, now, deadline, events)
            .await;
        if !held_before {
            events(Event::Note(match lock.release(identity).await {
                Ok(_) => format!("move-leader: released the disruption lock {}", lock.lease()),
                Err(e) => format!(
                    "move-leader: releasing the disruption lock failed: {}",
                    e.chain()
                ),
            }));
        }
        moved
    }

    async fn moved_and_decided(
        &self,
        request: &GateRequest<'_>,
        ask: &Request<'_>,
        now: jiff::Timestamp,
        deadline: Duration,
        events: &mut Events<'_>,
    ) -> Result<(LeaderMove, Option<(ClusterState, Verdict)>), Error> {
        let started = Instant::now();
        let m = kubeadm::etcd_leader::move_leader_away(&self.observer, request.target, deadline)
            .await?;
        events(Event::Note(format!("move-leader: {m}")));
        let (state, _) = self.observe(Reads::Cluster).await?;
        let now = now + jiff::SignedDuration::try_from(started.elapsed()).unwrap_or_default();
        let verdict = evaluate(self.observer.topology(), &state, request.policy, ask, now)?;
        Ok((LeaderMove::Moved(m.to_string()), Some((state, verdict))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology(ssh: &str) -> Topology {
        Topology::from_yaml(
            "t.yaml",
            &format!("cluster: lab\ncontrolPlaneEndpoint: {{ address: 127.0.0.1 }}\n{ssh}nodes:\n  - {{ name: m1, role: control-plane, address: 127.0.0.1 }}\n"),
        )
        .unwrap()
        .0
    }

    #[test]
    fn an_upgrade_gate_reads_the_masters_only_when_ssh_is_configured() {
        let upgrade = Policy::builtin("upgrade").unwrap();
        let reboot = Policy::builtin("reboot").unwrap();
        let up = GateRequest::new(Action::Upgrade, "m1", &upgrade, "me");
        let bare = topology("");
        let with_ssh = topology("ssh: { user: root }\n");
        assert_eq!(
            masters_read(&bare, &Reach::default(), &up),
            Err("SSH is not configured")
        );
        assert_eq!(masters_read(&with_ssh, &Reach::default(), &up), Ok(true));
        let mut reach = Reach::default();
        reach.ssh.identity = Some("/k".into());
        assert_eq!(masters_read(&bare, &reach, &up), Ok(true));
        // A reboot's policy has no rule that reads them.
        let rb = GateRequest::new(Action::Reboot, "m1", &reboot, "me");
        assert_eq!(masters_read(&with_ssh, &reach, &rb), Ok(false));
    }

    #[test]
    fn prometheus_disks_stand_over_ssh_and_without_ssh_the_rest_says_why() {
        use hacore::masters::{MasterFiles, MastersState};
        let prom = MastersState {
            nodes: vec![MasterFiles {
                node: "m1".into(),
                disks_source: Some("prometheus http://127.0.0.1:9090".into()),
                disks_error: Some("no series".into()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let alone = merge_masters(Some(prom.clone()), None).unwrap();
        assert!(
            alone.nodes[0]
                .error
                .as_deref()
                .unwrap()
                .contains("SSH is not configured")
        );
        assert!(
            alone
                .kubeadm_config_error
                .as_deref()
                .unwrap()
                .contains("SSH is not configured")
        );
        let ssh = MastersState::simulated(["m1", "m2"]);
        let both = merge_masters(Some(prom), Some(ssh.clone())).unwrap();
        let m1 = both.node("m1").unwrap();
        assert_eq!(
            (m1.disks.as_ref(), m1.disks_error.as_deref()),
            (None, Some("no series"))
        );
        assert_eq!(m1.kubeadm_backups, Some(Vec::new()), "backups stay SSH's");
        assert_eq!(both.node("m2"), ssh.node("m2"));
        assert_eq!(merge_masters(None, None), None);
    }
}
