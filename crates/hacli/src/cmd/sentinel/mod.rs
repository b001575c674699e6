//! `hacli sentinel`: the drop-in for the kured "sentinel gate" DaemonSet.
//!
//! Each cycle: if the host's reboot-required file exists and the `reboot`
//! policy allows rebooting this node, take the disruption lock and create
//! the gated sentinel file kured watches; otherwise remove it. Once the node
//! has rebooted (no reboot-required file) and is Ready, release the lock.
//! One log line per cycle; one process; no child processes. The gate of
//! a cycle (observe, decide, move the leader, confirm, lock) is
//! `haops::gate`'s.
//!
//! What a cycle costs the cluster, as a DaemonSet on every node:
//! - idle (no reboot-required file, lock not ours): nothing. No API, etcd,
//!   load-balancer or Prometheus request; the metrics say "not evaluated:
//!   no reboot pending". The first cycle after the process starts reads the
//!   lock once (the sentinel may restart after its node's reboot, holding
//!   it).
//! - pending: one observation with this node's reads (`kubeadm::Reads::Node`):
//!   every Node, the named DaemonSets' pods by selector, this node's pods
//!   for its PodDisruptionBudgets, all from the apiserver's watch cache
//!   (`resourceVersion=0`); when that allows, one consistent observation of
//!   the same, evaluated again, just before the lock is taken.

mod cycle;
mod files;
mod log;
mod remediate;

use files::{pending_since, set_sentinel};

pub use remediate::RemediateArgs;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hacore::Policy;
use haops::gate::Gate;

use crate::Exit;
use crate::args::{LiveArgs, parse_duration, runtime};
use crate::sentinel_metrics::{CycleMetrics, Metrics};

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
    /// The opt-in remediation of dead masters (`--remediate`).
    #[command(flatten)]
    pub remediation: RemediateArgs,
}

/// The message and metrics reason of an idle cycle.
pub const NOT_EVALUATED: &str = "not evaluated: no reboot pending";

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
    // Remediation's settings are checked before anything is reached.
    let metrics = Metrics::with_remediation(a.remediation.remediate);
    let remediator = remediate::Remediator::new(&a, &topology, metrics.remediation())?;
    let policy = Policy::named_or_file(&a.policy)?;
    let reach = a.live.reach();
    let mut config = reach.observer_config(Some(&policy))?;
    config.reboot_required = Some((a.node.clone(), a.reboot_required.clone()));
    let identity = format!("hacli-sentinel@{}", a.node);
    metrics.set_plan(a.period, a.lock_ttl);
    runtime()?.block_on(async {
        if let Some(addr) = a.metrics_addr {
            let stale = a.period * 3 + Duration::from_secs(30);
            let bound = metrics.serve(addr, stale).await?;
            eprintln!("metrics on http://{bound}/metrics, health on http://{bound}/healthz");
        }
        let gate = Gate::new(haops::observe::connect(&topology, config).await?, reach);
        let c = cycle::Cycle {
            a: &a,
            policy: &policy,
            gate: &gate,
            identity: &identity,
        };
        // Whether we hold the lock: None until read (the first cycle).
        let mut lock_held: Option<bool> = None;
        let mut held_since: Option<f64> = None;
        for n in 1.. {
            let started = Instant::now();
            let outcome = c.run(lock_held).await;
            let duration = started.elapsed();
            let remediation = match &remediator {
                Some(r) => Some(r.tick(&a.node).await),
                None => None,
            };
            let now = jiff::Timestamp::now();
            if let Ok(o) = &outcome {
                lock_held = Some(o.lock_held);
            }
            let held = lock_held == Some(true);
            held_since = match (held, held_since) {
                (true, None) => Some(now.as_millisecond() as f64 / 1000.0),
                (true, s) => s,
                (false, _) => None,
            };
            let m = CycleMetrics {
                verdict: outcome.as_ref().ok().and_then(|o| o.verdict.as_ref()),
                probe_errors: (outcome.as_ref()).map_or(Vec::new(), |o| o.probe_errors.clone()),
                reboot_required: a.reboot_required.exists(),
                reboot_required_since: pending_since(&a.reboot_required),
                lock_held: held,
                lock_held_since: held_since,
                gated_file: a.sentinel.exists(),
                duration,
                failed: outcome.is_err(),
            };
            metrics.record(&m);
            outln!(
                "{}",
                log::line(&a, n, now, &m, &outcome, remediation.as_ref())
            );
            if a.cycles != 0 && n >= a.cycles {
                break;
            }
            tokio::time::sleep(a.period).await;
        }
        anyhow::Ok(Exit::Ok)
    })
}
