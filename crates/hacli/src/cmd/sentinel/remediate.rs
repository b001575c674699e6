//! `hacli sentinel --remediate`: the opt-in remediation mode. After each
//! cycle's gate work, one remediation tick, the same as `hacli remediate
//! --confirm` runs (`haops::remediate::run_outcome`): observe, decide
//! (`hacore::remediation`); a `replace` decision is carried out under the
//! disruption lock, the cluster observed again right before it starts (a
//! master that answers again is cancelled), `replace-master --dead` for it
//! and the spare, journalled. Every decision line goes to stderr; the one
//! that stands is in the cycle's log line and on `/metrics`.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context as _;
use hacore::Topology;
use hacore::remediation::{Decision, Policy, budget};

use crate::args::parse_duration;
use crate::args::remediate::{PolicyArgs, WithArgs};
use crate::remediation_metrics::RemediationMetrics;

/// The remediation flags of the sentinel.
#[derive(Debug, clap::Args)]
pub struct RemediateArgs {
    /// Opt in: replace a master unhealthy for longer than --unhealthy-for
    /// with --spare, by policy (quorum, one at a time under the lock, the
    /// retry budget, the minimum healthy period). Off by default; logged
    /// loudly when on. Give it to one sentinel only (one --memory).
    #[arg(long, requires_all = ["spare", "journal", "memory"])]
    pub remediate: bool,
    /// The remediation policy.
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Where the remediation's memory lives (each master's unhealthy clock,
    /// the attempts): read and written every cycle, so that a restart
    /// forgets neither the clocks nor the retry budget.
    #[arg(long, value_name = "FILE")]
    pub memory: Option<PathBuf>,
    /// How long the disruption lock lasts without renewal during a
    /// replacement (the holder is `hacli-sentinel-remediate@NODE`).
    #[arg(long, default_value = "60m", value_parser = parse_duration)]
    pub remediation_lock_ttl: Duration,
    /// The spare, the journal, how Proxmox and the nodes are reached.
    #[command(flatten)]
    pub with: WithArgs,
}

/// The remediation of one sentinel.
pub(super) struct Remediator {
    /// The topology: after a replacement, the spare in the dead master's
    /// place.
    topology: Mutex<Topology>,
    reach: haops::Reach,
    policy: Policy,
    memory: PathBuf,
    act: haops::remediate::Act,
    metrics: RemediationMetrics,
}

impl Remediator {
    /// With `--remediate`: the settings checked now (the spare read, the
    /// memory parsed), and said loudly on stderr. Else `None`.
    pub fn new(
        a: &super::Args,
        topology: &Topology,
        metrics: Option<&RemediationMetrics>,
    ) -> anyhow::Result<Option<Remediator>> {
        let r = &a.remediation;
        let (true, Some(memory), Some(metrics)) = (r.remediate, &r.memory, metrics) else {
            return Ok(None);
        };
        let identity = format!("hacli-sentinel-remediate@{}", a.node);
        let act = r
            .with
            .act("--remediate", Some(identity), r.remediation_lock_ttl)?;
        let policy = r.policy.policy()?;
        haops::remediate::read_memory(memory)?;
        eprintln!(
            "REMEDIATION ON: a master unhealthy for longer than {} is replaced by the spare {} ({}), at most {} attempt(s) per {}, {} apart; journal {}, memory {}",
            policy.unhealthy_for,
            act.spare.name,
            act.spare.address,
            policy.max_retries,
            policy.retry_period,
            policy.min_healthy_period,
            act.run.journal.display(),
            memory.display()
        );
        Ok(Some(Remediator {
            topology: Mutex::new(topology.clone()),
            reach: r.with.reach(&a.live),
            policy,
            memory: memory.clone(),
            act,
            metrics: metrics.clone(),
        }))
    }

    /// One tick: the decision that stands, recorded in the metrics and the
    /// memory file.
    pub async fn tick(&self, node: &str) -> anyhow::Result<Decision> {
        let mut memory = haops::remediate::read_memory(&self.memory)?;
        let before = memory.attempts.len();
        let topology = self.topology.lock().expect("not poisoned").clone();
        let (reach, policy, act, node) = (
            self.reach.clone(),
            self.policy,
            self.act.clone(),
            node.to_string(),
        );
        // run_outcome blocks (it has its own runtime): off this one.
        let (outcome, memory) = tokio::task::spawn_blocking(move || {
            let o = haops::remediate::run_outcome(
                &topology,
                &reach,
                &policy,
                &mut memory,
                Some(&act),
                &mut |e| match e {
                    haops::Event::Note(l) => {
                        eprintln!("{} node {node}: remediation: {l}", jiff::Timestamp::now())
                    }
                    haops::Event::Warning(l) => eprintln!(
                        "{} node {node}: remediation: warning: {l}",
                        jiff::Timestamp::now()
                    ),
                    _ => {}
                },
            );
            (o, memory)
        })
        .await
        .context("the remediation tick stopped")?;
        std::fs::write(&self.memory, serde_json::to_string_pretty(&memory)?)
            .with_context(|| format!("--memory {}", self.memory.display()))?;
        let ended: Vec<_> = memory.attempts[before.min(memory.attempts.len())..]
            .iter()
            .filter(|a| a.ended.is_some())
            .cloned()
            .collect();
        let b = budget(&memory, &self.policy, jiff::Timestamp::now());
        self.metrics.record(&outcome.decision, b, &ended);
        if let Some((journal, target)) = outcome.replaced {
            let file = haops::remediate::write_topology(&journal, &target)?;
            eprintln!(
                "REMEDIATION: the topology from now on is {} (journal {}): update --topology and restart the sentinels",
                file.display(),
                journal.display()
            );
            *self.topology.lock().expect("not poisoned") = target;
        }
        Ok(outcome.decision)
    }
}
