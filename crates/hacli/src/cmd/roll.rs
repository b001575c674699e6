//! `hacli roll reboot|upgrade`: the masters one at a time with a soak
//! between them, stopping at the first failure, then the workers; each
//! node a planned disruption (`hacli disrupt`) with its own journal in
//! `--journal-dir`, so a stopped roll resumes where it stopped.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use hacore::disrupt;
use hacore::units::Dur;
use indicatif::ProgressBar;

use super::disrupt::{Common, Kind, progress};
use crate::args::parse_duration;
use crate::{Exit, Output};

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// reboot or upgrade (run: give the command after `--`).
    #[arg(value_enum)]
    pub action: Kind,
    /// For run: the command and its arguments, after `--`.
    #[arg(last = true)]
    pub command: Vec<String>,
    /// Only these nodes (comma-separated); every node by default. Masters
    /// still go first, in topology order.
    #[arg(long, value_delimiter = ',')]
    pub nodes: Vec<String>,
    /// Wait this long after each master before the next node.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub soak: Duration,
    /// Directory for the journals (NODE.jsonl each) and, with the simulated
    /// backend, its state (sim.json).
    #[arg(long)]
    pub journal_dir: PathBuf,
    /// Live upgrade: before it starts, remove all but the newest N of
    /// kubeadm's backup directories on each master of the roll (only
    /// `/etc/kubernetes/tmp/kubeadm-backup-{etcd,manifests}-*`).
    #[arg(long, value_name = "N")]
    pub prune_kubeadm_backups: Option<usize>,
    #[command(flatten)]
    pub common: Common,
}

/// Run. Exit 0 every node done, 1 the roll stopped (denied, or a failure
/// restored), 2 bad input.
pub fn run(a: Args) -> anyhow::Result<Exit> {
    let c = &a.common;
    let topology = c.load_topology()?;
    let action = c.action(a.action, &a.command)?;
    let order = disrupt::roll_order(&topology, &a.nodes)?;
    let gate = c.gate(&action, "roll")?;
    if c.backend == super::disrupt::Backend::Live
        && let Some(exit) = super::reconcile_config::before_upgrade(
            c,
            &topology,
            &order,
            &action,
            a.prune_kubeadm_backups,
        )?
    {
        return Ok(exit);
    }
    // Every node of the roll is silenced from the start until the roll's
    // bound: each node's lock TTL, and the soaks between them.
    let silences = if c.dry_run {
        None
    } else {
        let n = u32::try_from(order.len()).unwrap_or(u32::MAX);
        let bound = c.lock_ttl.saturating_mul(n) + a.soak.saturating_mul(n.saturating_sub(1));
        super::silence::start(
            &c.silence,
            &gate.policy,
            &order,
            &gate.identity,
            "roll",
            bound,
        )?
    };
    let bar = ProgressBar::new_spinner();
    let result = if c.backend == super::disrupt::Backend::Live {
        roll_live(&a, &topology, &action, &order, &gate, &bar)
    } else {
        let sim_file = c
            .sim_state
            .clone()
            .unwrap_or_else(|| a.journal_dir.join("sim.json"));
        disrupt::rehearse_roll(
            &topology,
            &action,
            &order,
            &c.options()?,
            Dur(a.soak.try_into().context("--soak")?),
            &gate,
            &a.journal_dir,
            &c.rehearsal(&sim_file),
            &c.exec_options(),
            &mut progress(&bar),
        )
        .map_err(anyhow::Error::from)
    };
    bar.finish_and_clear();
    let report = super::silence::finish(silences, result)?;
    match c.output {
        Output::Json => crate::print_json(&report)?,
        Output::Text => {
            for r in &report.nodes {
                outln!("{}", r.summary());
            }
            match report.stopped_at() {
                Some(at) => outln!(
                    "STOPPED at {at}; not started: {}",
                    if report.not_started.is_empty() {
                        "none".to_string()
                    } else {
                        report.not_started.join(", ")
                    }
                ),
                None => outln!("roll complete: {}", order.join(", ")),
            }
        }
    }
    Ok(if report.ok() { Exit::Ok } else { Exit::Deny })
}

/// The roll on the live cluster: one set of live backends
/// ([`super::disrupt::live_backends`]) for every node, a journal per node
/// (`NODE.jsonl` in `--journal-dir`), the soak a real wait.
fn roll_live(
    a: &Args,
    topology: &hacore::Topology,
    action: &disrupt::DisruptAction,
    order: &[String],
    gate: &disrupt::Gate,
    bar: &ProgressBar,
) -> anyhow::Result<disrupt::RollReport> {
    let c = &a.common;
    let soak = Dur(a.soak.try_into().context("--soak")?);
    let opts = c.options()?;
    std::fs::create_dir_all(&a.journal_dir)
        .with_context(|| format!("{}: cannot create", a.journal_dir.display()))?;
    let path = |node: &str| a.journal_dir.join(format!("{node}.jsonl"));
    if let Some(first) = order.first() {
        super::disrupt::open_journal(c, &path(first))?;
    }
    let mut live = super::disrupt::live_backends(c, topology, gate)?;
    let mut journal =
        |node: &str| -> Result<Box<dyn hacore::exec::Journal>, hacore::exec::ExecError> {
            Ok(Box::new(hacore::exec::FileJournal::open(&path(node))?))
        };
    let mut wait = |d: Dur| {
        bar.println(format!("soak: waiting {d} before the next node"));
        std::thread::sleep(d.0.unsigned_abs());
    };
    let report = live.with(|b, lock| {
        disrupt::roll(
            topology,
            action,
            order,
            &opts,
            soak,
            gate,
            b,
            lock,
            &mut disrupt::RollIo {
                journal: &mut journal,
                wait: &mut wait,
            },
            &c.exec_options(),
            &mut progress(bar),
        )
    })?;
    Ok(report?)
}
