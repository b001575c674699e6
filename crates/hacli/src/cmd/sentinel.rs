//! `hacli sentinel`: the drop-in for the kured "sentinel gate" DaemonSet.
//!
//! Each cycle: if the host's reboot-required file exists and the `reboot`
//! policy allows rebooting this node, take the disruption lock and create
//! the gated sentinel file kured watches; otherwise remove it. Once the node
//! has rebooted (no reboot-required file) and is Ready, release the lock.
//! One log line per cycle; one process; no child processes.
//!
//! What a cycle costs the cluster, as a DaemonSet on every node:
//! - idle (no reboot-required file, lock not ours): nothing. No API, etcd,
//!   load-balancer or Prometheus request; the metrics say "not evaluated:
//!   no reboot pending". The first cycle after the process starts reads the
//!   lock once (the sentinel may restart after its node's reboot, holding
//!   it).
//! - pending: one observation with this node's reads ([`Reads::Node`]):
//!   every Node, the named DaemonSets' pods by selector, this node's pods
//!   for its PodDisruptionBudgets, all from the apiserver's watch cache
//!   (`resourceVersion=0`); when that allows, one consistent observation of
//!   the same, evaluated again, just before the lock is taken.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hacore::gate::{Request, evaluate};
use hacore::state::Probe;
use hacore::{Action, Policy, Verdict};
use kubeadm::{Acquire, DisruptionLock, Observer, Reads};

use super::sentinel_metrics::{CycleMetrics, Metrics};
use crate::Exit;
use crate::args::{LiveArgs, parse_duration, runtime};

/// How each cycle is logged (one line per cycle, on stdout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum LogFormat {
    /// `TIME cycle N node NODE: what happened`.
    #[default]
    Text,
    /// One JSON object per line (time, cycle, node, decision, lock, ...).
    Json,
}

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// This node's name (the DaemonSet passes spec.nodeName).
    #[arg(long, env = "NODE_NAME")]
    pub node: String,
    #[command(flatten)]
    pub live: LiveArgs,
    /// The host's reboot-required file.
    #[arg(long, default_value = "/var/run/reboot-required")]
    pub reboot_required: PathBuf,
    /// The gated sentinel file kured watches (its --reboot-sentinel).
    #[arg(long, default_value = "/var/run/reboot-required.gated")]
    pub sentinel: PathBuf,
    /// A built-in policy name or a policy file.
    #[arg(long, short = 'p', default_value = "reboot")]
    pub policy: String,
    /// Time between cycles.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub period: Duration,
    /// How long the lock lasts without renewal (covers the reboot itself).
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    pub lock_ttl: Duration,
    /// Stop after this many cycles (0: run forever).
    #[arg(long, default_value_t = 0)]
    pub cycles: u64,
    /// Serve Prometheus metrics on /metrics and a health check on /healthz
    /// at this address, e.g. 0.0.0.0:9102 (port 0: any free port, printed).
    #[arg(long, env = "HACLI_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// When a reboot is required and `etcd-leader` is the only rule that
    /// denies (this node leads etcd), move leadership to the best healthy,
    /// caught-up voter (under the disruption lock, logged on stderr), then
    /// evaluate again.
    #[arg(long, env = "HACLI_MOVE_LEADER")]
    pub move_leader: bool,
    /// Log format of the per-cycle line.
    #[arg(long, value_enum, default_value_t)]
    pub log_format: LogFormat,
    /// The behaviour before the fleet-cost change, kept for the fleet
    /// benchmark's "before" (scripts/bench-fleet.sh): observe the whole
    /// cluster with consistent reads on every cycle, pending or not.
    #[arg(long, hide = true)]
    pub observe_every_cycle: bool,
}

/// The message and metrics reason of an idle cycle.
pub const NOT_EVALUATED: &str = "not evaluated: no reboot pending";

/// What one cycle did.
struct Outcome {
    message: String,
    /// None: not evaluated (no reboot pending, nothing observed).
    verdict: Option<Verdict>,
    probe_errors: Vec<Probe>,
    lock_held: bool,
}

/// When the reboot-required file appeared (its modification time), as
/// Unix seconds; None without one.
fn pending_since(path: &Path) -> Option<f64> {
    let m = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(
        m.duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64(),
    )
}

fn set_sentinel(path: &Path, on: bool) -> anyhow::Result<bool> {
    if on {
        if !path.exists() {
            std::fs::write(path, "gated by hacli sentinel\n")
                .with_context(|| format!("creating the sentinel {}", path.display()))?;
        }
        Ok(true)
    } else {
        match std::fs::remove_file(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).with_context(|| format!("removing the sentinel {}", path.display())),
        }
    }
}

/// Run.
pub fn run(a: Args) -> anyhow::Result<Exit> {
    let topology = a.live.topology()?;
    if topology.node(&a.node).is_none() {
        anyhow::bail!(
            "--node `{}` is not in the topology {}",
            a.node,
            a.live.topology.display()
        );
    }
    let policy = Policy::named_or_file(&a.policy)?;
    let mut config = a.live.config(Some(&policy))?;
    config.reboot_required = Some((a.node.clone(), a.reboot_required.clone()));
    let identity = format!("hacli-sentinel@{}", a.node);
    let lock_ref = config.lock.clone();
    let rt = runtime()?;
    let metrics = Metrics::new();
    metrics.set_plan(a.period, a.lock_ttl);
    rt.block_on(async {
        if let Some(addr) = a.metrics_addr {
            let stale = a.period * 3 + Duration::from_secs(30);
            let bound = metrics.serve(addr, stale).await?;
            eprintln!("metrics on http://{bound}/metrics, health on http://{bound}/healthz");
        }
        let observer = Observer::new(topology.clone(), config).await?;
        let lock = DisruptionLock::new(observer.client().clone(), lock_ref);
        let mut cycle = 0u64;
        // Whether we hold the lock: None until read (the first cycle).
        let mut lock_held: Option<bool> = None;
        let mut held_since: Option<f64> = None;
        loop {
            cycle += 1;
            let started = Instant::now();
            let outcome = one_cycle(
                &a, &topology, &policy, &observer, &lock, &identity, lock_held,
            )
            .await;
            let duration = started.elapsed();
            let now = jiff::Timestamp::now();
            let needs = a.reboot_required.exists();
            let gated = a.sentinel.exists();
            if let Ok(o) = &outcome {
                lock_held = Some(o.lock_held);
            }
            let held = lock_held == Some(true);
            held_since = match (held, held_since) {
                (true, None) => Some(now.as_millisecond() as f64 / 1000.0),
                (true, s) => s,
                (false, _) => None,
            };
            let common = |verdict, probe_errors, failed| CycleMetrics {
                verdict,
                probe_errors,
                reboot_required: needs,
                reboot_required_since: pending_since(&a.reboot_required),
                lock_held: held,
                lock_held_since: held_since,
                gated_file: gated,
                duration,
                failed,
            };
            match &outcome {
                Ok(o) => metrics.record(&common(o.verdict.as_ref(), o.probe_errors.clone(), false)),
                Err(_) => metrics.record(&common(None, Vec::new(), true)),
            }
            match (a.log_format, &outcome) {
                (LogFormat::Text, Ok(o)) => {
                    outln!("{now} cycle {cycle} node {}: {}", a.node, o.message)
                }
                (LogFormat::Text, Err(e)) => {
                    outln!(
                        "{now} cycle {cycle} node {}: error: {}",
                        a.node,
                        kubeadm::redact_urls_in(&format!("{e:#}"))
                    )
                }
                (LogFormat::Json, Ok(o)) => outln!(
                    "{}",
                    serde_json::json!({
                        "time": now.to_string(),
                        "level": "info",
                        "cycle": cycle,
                        "node": a.node,
                        "message": o.message,
                        "evaluated": o.verdict.is_some(),
                        "decision": o.verdict.as_ref().map(|v| v.decision),
                        "blocking": o.verdict.iter().flat_map(|v| v.blocking()).map(|f| &f.rule).collect::<Vec<_>>(),
                        "rebootRequired": needs,
                        "lockHeld": held,
                        "gatedFile": gated,
                        "probeErrors": o.probe_errors.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                        "durationSeconds": duration.as_secs_f64(),
                    })
                ),
                (LogFormat::Json, Err(e)) => outln!(
                    "{}",
                    serde_json::json!({
                        "time": now.to_string(),
                        "level": "error",
                        "cycle": cycle,
                        "node": a.node,
                        "error": kubeadm::redact_urls_in(&format!("{e:#}")),
                        "rebootRequired": needs,
                        "gatedFile": gated,
                        "durationSeconds": duration.as_secs_f64(),
                    })
                ),
            }
            if a.cycles != 0 && cycle >= a.cycles {
                return anyhow::Ok(Exit::Ok);
            }
            tokio::time::sleep(a.period).await;
        }
    })
}

async fn one_cycle(
    a: &Args,
    topology: &hacore::Topology,
    policy: &Policy,
    observer: &Observer,
    lock: &DisruptionLock,
    identity: &str,
    lock_held: Option<bool>,
) -> anyhow::Result<Outcome> {
    let needs = a.reboot_required.exists();
    // Idle: no reboot pending and the lock is not ours. Nothing to observe,
    // nothing asked of the cluster (the first cycle reads the lock once).
    if !needs && !a.observe_every_cycle {
        let holds = match lock_held {
            Some(h) => h,
            None => {
                let deadline = observer.config().deadline.max(Duration::from_secs(5));
                let now = jiff::Timestamp::now();
                match tokio::time::timeout(deadline, lock.holder(now)).await {
                    Ok(Ok(h)) => h.as_deref() == Some(identity),
                    Ok(Err(e)) => return Err(anyhow::anyhow!(e.chain())),
                    Err(_) => anyhow::bail!(
                        "reading the lock {}: no answer within {} ms",
                        lock.lease(),
                        deadline.as_millis()
                    ),
                }
            }
        };
        if !holds {
            let removed = set_sentinel(&a.sentinel, false)?;
            return Ok(Outcome {
                message: format!(
                    "no reboot required{}; {NOT_EVALUATED}",
                    if removed { "; sentinel removed" } else { "" }
                ),
                verdict: None,
                probe_errors: Vec::new(),
                lock_held: false,
            });
        }
    }
    let reads = if a.observe_every_cycle {
        Reads::Cluster
    } else {
        Reads::Node {
            name: &a.node,
            consistent: false,
        }
    };
    let state = observer.observe_reads(reads).await;
    let now = jiff::Timestamp::now();
    let holds = state
        .lock
        .as_ref()
        .and_then(|l| l.live_holder(now))
        .is_some_and(|h| h == identity);
    let request = Request {
        action: Action::Reboot,
        target: &a.node,
        requester: Some(identity),
    };
    let mut verdict = evaluate(topology, &state, policy, &request, now)?;
    let mut moved = String::new();
    if needs && a.move_leader {
        let mut log = |line: String| eprintln!("{now} node {}: {line}", a.node);
        match kubeadm::etcd_leader::gate_moving_leader(
            observer,
            policy,
            &request,
            &verdict,
            lock,
            identity,
            a.lock_ttl,
            observer.config().deadline.max(Duration::from_secs(10)),
            &mut log,
        )
        .await
        {
            Ok(Some(m)) => {
                moved = format!(" ({})", m.message);
                verdict = m.verdict;
            }
            Ok(None) => {}
            Err(e) => {
                let e = e.chain();
                log(format!("move-leader failed: {e}"));
                moved = format!(" (moving etcd leadership failed: {e})");
            }
        }
    }
    let mut probe_errors: Vec<Probe> = state.probe_errors.keys().copied().collect();
    // Allowed on advisory reads: read again, consistently, what the
    // decision rests on, and decide on that just before taking the lock.
    let mut confirmed = "";
    if needs && verdict.allowed() && !a.observe_every_cycle {
        let state = observer
            .observe_reads(Reads::Node {
                name: &a.node,
                consistent: true,
            })
            .await;
        let now = jiff::Timestamp::now();
        let again = evaluate(topology, &state, policy, &request, now)?;
        for p in state.probe_errors.keys() {
            if !probe_errors.contains(p) {
                probe_errors.push(*p);
            }
        }
        if !again.allowed() {
            confirmed = " (on a consistent read just before taking the lock)";
        }
        verdict = again;
    }
    let verdict = verdict;
    let outcome = |message: String, lock_held: bool| Outcome {
        message,
        verdict: Some(verdict.clone()),
        probe_errors: probe_errors.clone(),
        lock_held,
    };
    if !needs {
        let removed = set_sentinel(&a.sentinel, false)?;
        let ready = state.node(&a.node).and_then(|n| n.ready) == Some(true);
        let mut msg = String::from("no reboot required");
        if removed {
            msg.push_str("; sentinel removed");
        }
        let mut held = holds;
        if holds && ready {
            lock.release(identity).await?;
            held = false;
            msg.push_str("; node is Ready after reboot: lock released");
        } else if holds {
            msg.push_str("; holding the lock until the node is Ready");
        }
        return Ok(outcome(msg, held));
    }
    if !verdict.allowed() {
        let removed = set_sentinel(&a.sentinel, false)?;
        let why: Vec<String> = verdict
            .blocking()
            .map(|f| format!("{}: {}", f.rule, f.message))
            .take(3)
            .collect();
        // A lock we hold is not released here, nor renewed: kured may already
        // be draining this node. It lapses after its TTL, or is released once
        // the node has rebooted and is Ready.
        return Ok(outcome(
            format!(
                "reboot required but {} by policy {}{moved}{confirmed}{}{}: {}",
                verdict.decision,
                policy.name,
                if removed { " (sentinel removed)" } else { "" },
                if holds {
                    " (our lock is left to lapse unless the node reboots)"
                } else {
                    ""
                },
                why.join("; ")
            ),
            holds,
        ));
    }
    match lock.acquire(identity, a.lock_ttl, now).await? {
        Acquire::Acquired => {
            set_sentinel(&a.sentinel, true)?;
            Ok(outcome(
                format!(
                    "reboot required and allowed by policy {}{moved}: lock {} held, sentinel {} present",
                    policy.name,
                    lock.lease(),
                    a.sentinel.display()
                ),
                true,
            ))
        }
        Acquire::HeldBy { holder, .. } => {
            set_sentinel(&a.sentinel, false)?;
            Ok(outcome(
                format!("reboot required and allowed, but the lock is held by {holder}: waiting"),
                false,
            ))
        }
    }
}
