//! `hacli sentinel`: the drop-in for the kured "sentinel gate" DaemonSet.
//!
//! Each cycle: if the host's reboot-required file exists and the `reboot`
//! policy allows rebooting this node, take the disruption lock and create
//! the gated sentinel file kured watches; otherwise remove it. Once the node
//! has rebooted (no reboot-required file) and is Ready, release the lock.
//! One log line per cycle; one process; no child processes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hacore::gate::{Request, evaluate};
use hacore::state::Probe;
use hacore::{Action, Policy, Verdict};
use kubeadm::{Acquire, DisruptionLock, Observer};

use super::live::{LiveArgs, parse_duration, runtime};
use super::sentinel_metrics::{CycleMetrics, Metrics};
use crate::Exit;

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
}

/// What one cycle did.
struct Outcome {
    message: String,
    verdict: Verdict,
    probe_errors: Vec<Probe>,
    lock_held: bool,
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
    rt.block_on(async {
        if let Some(addr) = a.metrics_addr {
            let stale = a.period * 3 + Duration::from_secs(30);
            let bound = metrics.serve(addr, stale).await?;
            eprintln!("metrics on http://{bound}/metrics, health on http://{bound}/healthz");
        }
        let observer = Observer::new(topology.clone(), config).await?;
        let lock = DisruptionLock::new(observer.client().clone(), lock_ref);
        let mut cycle = 0u64;
        let mut lock_held = false;
        loop {
            cycle += 1;
            let started = Instant::now();
            let outcome = one_cycle(&a, &topology, &policy, &observer, &lock, &identity).await;
            let duration = started.elapsed();
            let now = jiff::Timestamp::now();
            let needs = a.reboot_required.exists();
            let gated = a.sentinel.exists();
            match &outcome {
                Ok(o) => {
                    lock_held = o.lock_held;
                    metrics.record(&CycleMetrics {
                        verdict: Some(&o.verdict),
                        probe_errors: o.probe_errors.clone(),
                        reboot_required: needs,
                        lock_held,
                        gated_file: gated,
                        duration,
                        failed: false,
                    });
                }
                Err(_) => metrics.record(&CycleMetrics {
                    verdict: None,
                    probe_errors: Vec::new(),
                    reboot_required: needs,
                    lock_held,
                    gated_file: gated,
                    duration,
                    failed: true,
                }),
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
                        "decision": o.verdict.decision,
                        "blocking": o.verdict.blocking().map(|f| &f.rule).collect::<Vec<_>>(),
                        "rebootRequired": needs,
                        "lockHeld": lock_held,
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
) -> anyhow::Result<Outcome> {
    let state = observer.observe().await;
    let now = jiff::Timestamp::now();
    let needs = a.reboot_required.exists();
    let holds = state
        .lock
        .as_ref()
        .and_then(|l| l.live_holder(now))
        .is_some_and(|h| h == identity);
    // Evaluated every cycle, so the metrics say whether a reboot of this
    // node would be allowed now even before one is needed.
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
    let verdict = verdict;
    let probe_errors: Vec<Probe> = state.probe_errors.keys().copied().collect();
    let outcome = |message: String, lock_held: bool| Outcome {
        message,
        verdict: verdict.clone(),
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
                "reboot required but {} by policy {}{moved}{}{}: {}",
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
