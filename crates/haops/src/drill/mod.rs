//! The failover drill, once for every frontend: constant read traffic
//! through the control-plane endpoint (the VIP, `kubeadm::traffic`) while
//! one master is disrupted, the load balancer watched, measured into one
//! report (`hacli.drill/v1`, [`DrillReport`]).
//!
//! The disruptions ([`Kind`]): the node's VM powered off through Proxmox
//! (a hard stop) and on again after `down_for`; its apiserver killed over
//! SSH (kubelet restarts it); or a planned reboot, `hacli disrupt reboot
//! NODE`'s plan run on the live cluster with its journal while the
//! traffic goes, whose steps, etcd leadership and lock holder the report
//! adds on the drill's time axis (from the executor's events, stamped as
//! they happen).
//!
//! Before anything is disrupted the gate is asked whether `reboot` of the
//! node is allowed now (unless the caller skips it, loudly; a planned
//! disruption is always gated, and its own plan moves etcd leadership, so
//! `etcd-leader`'s deny does not stop it here). [`drill`] returns the
//! report as data ([`Outcome`]) and its progress as events; it prints
//! nothing.

mod disruptions;
pub mod in_plan;
mod planned;
mod sequence;

use std::cell::RefCell;
use std::path::PathBuf;
use std::time::Duration;

use hacore::verdict::{Finding, Severity};
use hacore::{Action, Policy, Topology, Verdict};
use kubeadm::drill::DrillConfig;
pub use kubeadm::drill::{
    DrillReport, LbWatch, PlannedLeadership, PlannedReport, PlannedStep, SCHEMA,
};
use kubeadm::traffic::{Connections, TrafficConfig};

use crate::events::{Event, Events};
use crate::{Error, Reach};
use disruptions::{KillApiserver, PowerOff};
use planned::{Planned, PlannedRun, Sink, emit};
pub use sequence::Disruption;

/// How the node is disrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Unplanned: power its VM off through Proxmox (hard stop), on again
    /// after `down_for`.
    PowerOff,
    /// Unplanned: kill its kube-apiserver over SSH (kubelet restarts it).
    KillApiserver,
    /// Planned: `hacli disrupt reboot NODE`'s plan, with a journal.
    PlannedReboot,
}

impl Kind {
    /// The report's `mode`.
    pub fn mode(self) -> &'static str {
        match self {
            Kind::PowerOff => "unplanned-poweroff",
            Kind::KillApiserver => "unplanned-kill-apiserver",
            Kind::PlannedReboot => "planned-reboot",
        }
    }
}

/// How [`Kind::KillApiserver`] reaches the node (the key and known_hosts
/// are the [`Reach`]'s SSH settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillSsh {
    /// The SSH user.
    pub user: String,
    /// The SSH port.
    pub port: u16,
    /// Use sudo for the kill.
    pub sudo: bool,
}

/// What the drill does. [`Options::new`] gives the CLI's defaults.
#[derive(Debug, Clone)]
pub struct Options {
    /// The master to disrupt.
    pub node: String,
    /// How.
    pub kind: Kind,
    /// Planned (required): the disruption's journal; a new one (a journal
    /// that records a run is refused).
    pub journal: Option<PathBuf>,
    /// Planned: how long the disruption lock lasts without renewal.
    pub lock_ttl: Duration,
    /// The lock holder (planned) and the gate's requester.
    pub identity: String,
    /// Planned: how long to wait for the drained backend's sessions to reach 0.
    pub idle_bound: Duration,
    /// Read requests per second (0 < rate <= 1000).
    pub rate: f64,
    /// Total traffic time (longer if the node takes longer to come back).
    pub duration: Duration,
    /// Traffic before the disruption.
    pub baseline: Duration,
    /// How long a powered-off VM stays off.
    pub down_for: Duration,
    /// Traffic after the node's backend is UP again, at least.
    pub after: Duration,
    /// How long to wait for the node's backend to come UP again.
    pub recovery_timeout: Duration,
    /// Each request's deadline.
    pub request_timeout: Duration,
    /// The path read.
    pub path: String,
    /// One connection kept alive for all requests instead of a fresh one
    /// per request.
    pub keep_alive: bool,
    /// Do NOT ask the gate first (unplanned only; said loudly).
    pub skip_gate: bool,
    /// The gate's policy; `reboot`'s built-in by default.
    pub policy: Option<Policy>,
    /// The apiserver kill's SSH user, port and sudo.
    pub kill_ssh: KillSsh,
}

impl Options {
    /// The CLI's defaults for a drill of `node`.
    pub fn new(node: &str, kind: Kind, identity: &str) -> Options {
        Options {
            node: node.into(),
            kind,
            journal: None,
            lock_ttl: Duration::from_secs(3600),
            identity: identity.into(),
            idle_bound: Duration::from_secs(30),
            rate: 20.0,
            duration: Duration::from_secs(60),
            baseline: Duration::from_secs(10),
            down_for: Duration::from_secs(20),
            after: Duration::from_secs(5),
            recovery_timeout: Duration::from_secs(300),
            request_timeout: Duration::from_secs(2),
            path: "/api/v1/namespaces/kube-system".into(),
            keep_alive: false,
            skip_gate: false,
            policy: None,
            kill_ssh: KillSsh {
                user: "root".into(),
                port: 22,
                sudo: false,
            },
        }
    }
}

/// How a drill ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The gate does not allow taking the node down now: nothing was
    /// disrupted. `deny`: a rule denies (else one could not tell).
    Refused {
        /// The gate's verdict.
        verdict: Box<Verdict>,
        /// Whether a blocking finding denies (exit 1; else unknown, 3).
        deny: bool,
    },
    /// The cluster was not healthy before the disruption (the API did not
    /// answer, or the node's server was not UP): nothing was disrupted.
    NotHealthy {
        /// What was wrong (`not disrupting NODE: ...`).
        reason: String,
    },
    /// The drill ran: its report.
    Ran(Box<DrillReport>),
}

impl Outcome {
    /// The CLI's exit code: 0 the drill ran and met its target, 1 refused
    /// by the gate or the target missed, 3 not carried out.
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Refused { deny: true, .. } => 1,
            Outcome::Refused { deny: false, .. } | Outcome::NotHealthy { .. } => 3,
            Outcome::Ran(r) => exit_code(r),
        }
    }
}

/// A report's exit code: 1 when the planned disruption was denied; 3 when
/// the disruption or the restore failed, or the node did not come back;
/// else 0 when the drill met its target (unplanned: the longest gap
/// within `fall × interval + interval`; planned: no failed request), 1
/// when it did not.
pub fn exit_code(r: &DrillReport) -> i32 {
    if r.planned.as_ref().is_some_and(|p| p.result == "denied") {
        return 1;
    }
    if r.disruption.error.is_some() {
        return 3;
    }
    let met = if r.mode.starts_with("planned") {
        r.total.failed == 0
    } else {
        r.bound.as_ref().is_none_or(|b| b.gap_within)
    };
    if met { 0 } else { 1 }
}

fn setting(node: &str, why: String) -> Error {
    Error::Setting {
        what: format!("drill {node}"),
        why,
    }
}

/// Bad input, found before anything is contacted.
fn check(topology: &Topology, o: &Options) -> Result<(), Error> {
    let node = &o.node;
    if o.kind == Kind::PlannedReboot && o.journal.is_none() {
        return Err(setting(node, "a planned drill needs a journal (the planned disruption's plan runs with one, so an interrupted run can be resumed)".into()));
    }
    if o.kind == Kind::PlannedReboot && o.skip_gate {
        return Err(setting(
            node,
            "a planned disruption is always gated: the gate cannot be skipped".into(),
        ));
    }
    if !(o.rate.is_finite() && o.rate > 0.0 && o.rate <= 1000.0) {
        return Err(setting(
            node,
            format!("rate {}: give 0 < requests per second <= 1000", o.rate),
        ));
    }
    let Some(n) = topology.nodes.iter().find(|n| n.name == *node) else {
        let names: Vec<&str> = topology.nodes.iter().map(|n| n.name.as_str()).collect();
        return Err(setting(
            node,
            format!(
                "no node `{node}` in the topology (nodes: {})",
                names.join(", ")
            ),
        ));
    };
    if !n.is_control_plane() {
        return Err(setting(
            node,
            format!("a drill disrupts a master; `{node}` is a worker"),
        ));
    }
    if o.kind == Kind::PowerOff && (n.hypervisor.is_none() || n.vmid.is_none()) {
        return Err(setting(
            node,
            format!(
                "node `{node}` needs `hypervisor` (the Proxmox node) and `vmid` to be powered off; or kill its apiserver instead"
            ),
        ));
    }
    Ok(())
}

/// The load balancer the drill watches: the topology's pool through
/// HAProxy's runtime API; absent (said) when either is not known.
fn lb_watch(topology: &Topology, reach: &Reach, node: &str, sink: &Sink<'_>) -> Option<LbWatch> {
    let lb = &topology.load_balancer;
    let api = reach
        .lb_runtime_api
        .clone()
        .or_else(|| lb.runtime_api.clone());
    match (topology.has_load_balancer(), api, &lb.pool) {
        (true, Some(api), Some(pool)) => Some(LbWatch {
            api,
            pool: pool.clone(),
            server: node.into(),
            fall: lb.health_check.fall,
            interval: lb
                .health_check
                .interval
                .0
                .try_into()
                .unwrap_or(Duration::from_secs(2)),
        }),
        (true, _, _) => {
            emit(sink, Event::Warning("the load balancer is not watched: set loadBalancer.runtimeApi and loadBalancer.pool in the topology (or the lb runtime API setting); DOWN/UP times and the gap bound will be missing".into()));
            None
        }
        (false, _, _) => None,
    }
}

/// Whether a gate finding is one the planned disruption's plan takes care
/// of itself: `etcd-leader`'s deny (the plan moves leadership first).
fn moved_by_the_plan(f: &Finding) -> bool {
    f.rule == hacore::rules::etcd_leader::ID && f.severity == Severity::Deny
}

/// The gate: is it safe to take this master down now? `Some` when not.
fn gate(
    topology: &Topology,
    reach: &Reach,
    policy: &Policy,
    o: &Options,
    sink: &Sink<'_>,
) -> Result<Option<Outcome>, Error> {
    if o.skip_gate {
        emit(
            sink,
            Event::Warning(format!(
                "--skip-gate (skip_gate): disrupting {} without asking the gate (nothing checks that the other masters can carry the cluster)",
                o.node
            )),
        );
        return Ok(None);
    }
    // The gate every frontend asks (`haops::gate`), without leader move or
    // lock: the planned run takes them itself.
    let request = crate::gate::GateRequest::new(Action::Reboot, &o.node, policy, &o.identity);
    let mut quiet = crate::events::ignore;
    let verdict = crate::gate::gate(
        topology,
        reach,
        &request,
        jiff::Timestamp::now(),
        &mut quiet,
    )?
    .verdict;
    let planned = o.kind == Kind::PlannedReboot;
    let blocking: Vec<&Finding> = verdict
        .blocking()
        .filter(|f| !(planned && moved_by_the_plan(f)))
        .collect();
    if !blocking.is_empty() {
        let deny = blocking.iter().any(|f| f.severity == Severity::Deny);
        return Ok(Some(Outcome::Refused {
            verdict: Box::new(verdict),
            deny,
        }));
    }
    if planned && !verdict.allowed() {
        emit(
            sink,
            Event::Note(format!(
                "the gate's etcd-leader rule denies: {} leads etcd; the planned disruption moves leadership away first",
                o.node
            )),
        );
    }
    Ok(None)
}

/// The drill's configuration: the traffic through the endpoint, its phases.
fn config(topology: &Topology, o: &Options, lb: Option<LbWatch>) -> DrillConfig {
    DrillConfig {
        node: o.node.clone(),
        mode: o.kind.mode().into(),
        endpoint: format!("https://{}", topology.control_plane_endpoint.socket()),
        traffic: TrafficConfig {
            rate: o.rate,
            path: o.path.clone(),
            timeout: o.request_timeout,
            connections: if o.keep_alive {
                Connections::KeepAlive
            } else {
                Connections::Fresh
            },
        },
        duration: o.duration,
        baseline: o.baseline,
        down_for: o.down_for,
        after: o.after,
        recovery_timeout: o.recovery_timeout,
        lb,
    }
}

/// The disruption of an unplanned drill.
fn power_off(
    topology: &Topology,
    reach: &Reach,
    o: &Options,
    sink: &Sink<'_>,
) -> Result<PowerOff, Error> {
    let node = topology
        .node(&o.node)
        .ok_or_else(|| setting(&o.node, "not in the topology".into()))?;
    let (Some(hv), Some(vmid)) = (&node.hypervisor, node.vmid) else {
        return Err(setting(&o.node, "no `hypervisor` and `vmid`".into()));
    };
    let (client, warnings) = reach.proxmox_client(Some(topology))?;
    for w in warnings {
        emit(sink, Event::Warning(w));
    }
    Ok(PowerOff {
        client,
        hypervisor: hv.clone(),
        vmid,
        stopped: false,
    })
}

fn kill_apiserver(topology: &Topology, reach: &Reach, o: &Options) -> Result<KillApiserver, Error> {
    let node = topology
        .node(&o.node)
        .ok_or_else(|| setting(&o.node, "not in the topology".into()))?;
    let k = &o.kill_ssh;
    let mut ssh = ssh::Config::new(&node.name, node.address.to_string(), &k.user)
        .port(k.port)
        .sudo(k.sudo);
    if let Some(key) = &reach.ssh.identity {
        ssh = ssh.key(key);
    }
    if let Some(kh) = &reach.ssh.known_hosts {
        ssh = ssh.known_hosts(kh);
    }
    Ok(KillApiserver { ssh })
}

/// The drill's report, or why nothing was disrupted.
fn outcome(result: Result<DrillReport, kubeadm::Error>) -> Result<Outcome, Error> {
    match result {
        Ok(r) => Ok(Outcome::Ran(Box::new(r))),
        Err(e @ kubeadm::Error::NotHealthy { .. }) => Ok(Outcome::NotHealthy {
            reason: e.to_string(),
        }),
        Err(e) => Err(e.into()),
    }
}

/// The drill: ask the gate (unless skipped), start the traffic through
/// the control-plane endpoint, check that the cluster is healthy, disrupt
/// the node, restore it, wait until its backend is UP again, keep the
/// traffic going, report. Progress as events (notes, warnings, and for a
/// planned drill the executor's steps).
pub fn drill(
    topology: &Topology,
    reach: &Reach,
    o: &Options,
    events: Events<'_>,
) -> Result<Outcome, Error> {
    check(topology, o)?;
    let sink: Sink<'_> = RefCell::new(events);
    let policy = o
        .policy
        .clone()
        .unwrap_or_else(|| Policy::for_action(Action::Reboot));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Unreachable(format!("starting the async runtime: {e}")))?;
    let lb = lb_watch(topology, reach, &o.node, &sink);
    if let Some(refused) = gate(topology, reach, &policy, o, &sink)? {
        return Ok(refused);
    }
    let cfg = config(topology, o, lb);
    let progress = |line: &str| emit(&sink, Event::Note(line.into()));
    let kubeconfig = (reach.kubeconfig.as_deref(), reach.context.as_deref());
    let result = match o.kind {
        Kind::PowerOff => {
            let d = power_off(topology, reach, o, &sink)?;
            rt.block_on(sequence::run(kubeconfig, cfg, d, progress))
        }
        Kind::KillApiserver => {
            let d = kill_apiserver(topology, reach, o)?;
            rt.block_on(sequence::run(kubeconfig, cfg, d, progress))
        }
        Kind::PlannedReboot => {
            return planned(&rt, topology, reach, o, policy, cfg, &sink);
        }
    };
    outcome(result)
}

/// A planned drill: the plan, the journal (a new one), the traffic.
fn planned(
    rt: &tokio::runtime::Runtime,
    topology: &Topology,
    reach: &Reach,
    o: &Options,
    policy: Policy,
    cfg: DrillConfig,
    sink: &Sink<'_>,
) -> Result<Outcome, Error> {
    let path = o
        .journal
        .clone()
        .ok_or_else(|| setting(&o.node, "no journal".into()))?;
    let action = hacore::disrupt::DisruptAction::Reboot;
    let options =
        hacore::disrupt::DisruptOptions {
            idle_bound: hacore::units::Dur(o.idle_bound.try_into().map_err(|_| {
                setting(&o.node, format!("idle bound {:?}: too long", o.idle_bound))
            })?),
            drain: None,
            first: None,
            // A drill measures an HA control plane: never a single master's outage.
            accept_outage: false,
        };
    let plan = hacore::disrupt::plan(topology, &action, &o.node, &options)
        .map_err(|e| setting(&o.node, e.to_string()))?;
    let gate = hacore::disrupt::Gate {
        policy,
        action: action.gate_action(),
        identity: o.identity.clone(),
    };
    let config = reach.observer_config(Some(&gate.policy))?;
    // Refuse a journal that records another run before the traffic starts
    // (the run opens it again, with the same guard).
    drop(crate::journal::open_for_run(&path, false, false)?);
    emit(
        sink,
        Event::Note(format!(
            "the planned disruption runs under the lock as {}, journal {}",
            o.identity,
            path.display()
        )),
    );
    let run = RefCell::new(PlannedRun::default());
    let disruption = Planned {
        job: Some(planned::Job {
            topology: topology.clone(),
            plan,
            gate,
            journal: path.clone(),
            reach: reach.clone(),
            lock_ttl: o.lock_ttl,
        }),
        node: o.node.clone(),
        config,
        run: &run,
        sink,
    };
    let progress = |line: &str| emit(sink, Event::Note(line.into()));
    let kubeconfig = (reach.kubeconfig.as_deref(), reach.context.as_deref());
    let result = rt.block_on(sequence::run(kubeconfig, cfg, disruption, progress));
    let mut out = outcome(result)?;
    if let Outcome::Ran(report) = &mut out {
        let section = run
            .into_inner()
            .into_report(report.started_at, o.identity.clone(), &path);
        report.planned = Some(section);
    }
    Ok(out)
}
