//! `hacli gate ACTION NODE`: observe the live cluster, decide with the real
//! clock, and optionally take the disruption lock when allowed.

use std::time::Duration;

use hacore::gate::{Request, evaluate};
use hacore::{Action, Policy, Verdict};
use kubeadm::{DisruptionLock, Observer};

use crate::args::{LiveArgs, parse_duration, runtime};
use crate::{Exit, Output, render};

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// reboot, drain, upgrade, shutdown, remove-member or join.
    pub action: String,
    /// A node name, or a hypervisor host name (all its VMs).
    pub target: String,
    #[command(flatten)]
    pub live: LiveArgs,
    /// A built-in policy name or a policy file; the action's built-in by default.
    #[arg(long, short = 'p')]
    pub policy: Option<String>,
    /// When allowed, take the disruption lock (a Lease) for this caller.
    #[arg(long)]
    pub lock: bool,
    /// How long the lock lasts without renewal.
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    pub lock_ttl: Duration,
    /// Lock holder identity; unique per process by default
    /// (`ACTION/TARGET@HOST#PID`). Give a stable one to re-run idempotently.
    #[arg(long, env = "HACLI_IDENTITY")]
    pub identity: Option<String>,
    /// When `etcd-leader` is the only rule that denies, move etcd leadership
    /// to the best healthy, caught-up voter (under the disruption lock,
    /// logged on stderr), then evaluate again.
    #[arg(long)]
    pub move_leader: bool,
    /// Print how long each phase took on stderr (setup, observe, decide, lock).
    #[arg(long)]
    pub timings: bool,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: Output,
}

/// Run.
pub fn run(a: Args) -> anyhow::Result<Exit> {
    let verdict = decide(&a)?;
    match a.output {
        Output::Json => crate::print_json(&verdict)?,
        Output::Text => out!("{}", render::verdict(&verdict)),
    }
    Ok(verdict.decision.into())
}

/// Observe, decide and (with `--lock`) lock: the verdict these arguments
/// ask for (shared with `hacli plugin`).
pub fn decide(a: &Args) -> anyhow::Result<Verdict> {
    let action: Action = a.action.parse()?;
    let topology = a.live.topology()?;
    let policy = match &a.policy {
        Some(p) => Policy::named_or_file(p)?,
        None => Policy::for_action(action),
    };
    let config = a.live.config(Some(&policy))?;
    let identity = a.identity.clone().unwrap_or_else(|| {
        format!(
            "{action}/{}@{}#{}",
            a.target,
            crate::args::hostname(),
            std::process::id()
        )
    });
    let lock_ref = config.lock.clone();
    let deadline = config.deadline;
    let started = std::time::Instant::now();
    let mut phases: Vec<(&str, Duration)> = Vec::new();
    let mark = |name, phases: &mut Vec<(&str, Duration)>| phases.push((name, started.elapsed()));
    let rt = runtime()?;
    let (verdict, probes) = rt.block_on(async {
        let observer = Observer::new(topology.clone(), config).await?;
        mark("setup", &mut phases);
        let (mut state, probes) = observer.observe_timed().await;
        a.live.observe_backup(&mut state);
        mark("observe", &mut phases);
        // A cluster that is not the topology's (the kubeconfig or the etcd
        // endpoints reach another one) is bad input, not a verdict.
        state.check_topology(&topology, "the observed state")?;
        let now = jiff::Timestamp::now();
        let request = Request {
            action,
            target: &a.target,
            requester: Some(&identity),
        };
        let mut verdict = evaluate(&topology, &state, &policy, &request, now)?;
        mark("decide", &mut phases);
        if a.move_leader {
            let lock = DisruptionLock::new(observer.client().clone(), lock_ref.clone());
            let mut log = |line: String| eprintln!("{line}");
            match kubeadm::etcd_leader::gate_moving_leader(
                &observer,
                &policy,
                &request,
                &verdict,
                &lock,
                &identity,
                a.lock_ttl,
                deadline.max(Duration::from_secs(10)),
                &mut log,
            )
            .await
            {
                Ok(Some(moved)) => verdict = moved.verdict,
                Ok(None) => {}
                Err(e) => eprintln!("move-leader: {}", e.chain()),
            }
            mark("move-leader", &mut phases);
        }
        if a.lock && verdict.allowed() {
            DisruptionLock::new(observer.client().clone(), lock_ref)
                .take_for(&mut verdict, &identity, a.lock_ttl, now, deadline)
                .await;
            mark("lock", &mut phases);
        }
        anyhow::Ok((verdict, probes))
    })?;
    if a.timings {
        let mut last = Duration::ZERO;
        let line: Vec<String> = phases
            .iter()
            .map(|(n, at)| {
                let d = at.saturating_sub(last);
                last = *at;
                format!("{n} {:.1} ms", d.as_secs_f64() * 1000.0)
            })
            .collect();
        eprintln!("timings: {}", line.join(", "));
        eprintln!("probes done at: {probes}");
    }
    Ok(verdict)
}
