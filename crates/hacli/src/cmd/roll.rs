//! `hacli roll reboot|upgrade`: the masters one at a time with a soak
//! between them, stopping at the first failure, then the workers; each
//! node a planned disruption with its own journal in `--journal-dir`, so a
//! stopped roll resumes where it stopped (`haops::disrupt::roll`, on the
//! live cluster or the simulated one).

use std::path::PathBuf;
use std::time::Duration;

use hacore::disrupt::{DisruptAction, Report, RollReport};

use crate::args::disrupt::{Common, Kind, with_spinner};
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
    let p = c.prepare(a.action, &a.command, "roll", || {
        a.journal_dir.join("sim.json")
    })?;
    // A live upgrade: kubeadm's version rules, and the backups pruned,
    // before anything is touched.
    if let (haops::disrupt::Backend::Live(reach), DisruptAction::Upgrade { version }) =
        (&p.backend, &p.action)
    {
        let order = hacore::disrupt::roll_order(&p.topology, &a.nodes)?;
        let refused = with_spinner(|events| {
            haops::reconcile::before_upgrade(
                &p.topology,
                reach,
                &order,
                version,
                a.prune_kubeadm_backups,
                c.dry_run,
                events,
            )
            .map_err(anyhow::Error::from)
        })?;
        if let Some(why) = refused {
            eprintln!("REFUSED before any change: {why}");
            return Ok(Exit::Deny);
        }
    }
    let result = with_spinner(|events| {
        haops::disrupt::roll(
            &p.topology,
            &p.action,
            &a.nodes,
            a.soak,
            &p.request,
            &a.journal_dir,
            &p.backend,
            events,
        )
        .map_err(anyhow::Error::from)
    });
    let report = result?;
    match c.output {
        Output::Text => print_text(&report),
        o => crate::print_doc(o, "RollReport", &report)?,
    }
    Ok(if report.ok() { Exit::Ok } else { Exit::Deny })
}

fn print_text(report: &RollReport) {
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
        None => {
            let done: Vec<&str> = report
                .nodes
                .iter()
                .map(|r| match r {
                    Report::Denied { node, .. } | Report::Ran { node, .. } => node.as_str(),
                })
                .collect();
            outln!("roll complete: {}", done.join(", "));
        }
    }
}
