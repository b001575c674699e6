//! `hacli remediate`: decide from one observation whether a dead master is
//! to be replaced (`hacore::remediation`), remembering attempts between
//! runs; print the decision, its reason and the command; with `--confirm`,
//! carry the replacement out (`haops::remediate`).

use std::path::PathBuf;

use anyhow::Context as _;
use hacore::Topology;

use crate::args::placement::DeadArgs;

/// `hacli remediate` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The topology file of the cluster, and how to reach it.
    #[command(flatten)]
    pub live: crate::args::LiveArgs,
    /// Decide from a state file (as `hacli check --state`) instead of
    /// observing the live cluster.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// A master is replaced once unhealthy (Node NotReady, etcd member
    /// unhealthy) for longer than this.
    #[arg(long, default_value = "5m", value_parser = crate::args::parse_duration)]
    pub unhealthy_for: std::time::Duration,
    /// At most this many attempts within --retry-period.
    #[arg(long, default_value_t = 2)]
    pub max_retries: u32,
    /// The window the retry budget counts in.
    #[arg(long, default_value = "1h", value_parser = crate::args::parse_duration)]
    pub retry_period: std::time::Duration,
    /// How long after a remediation ends the next may start.
    #[arg(long, default_value = "10m", value_parser = crate::args::parse_duration)]
    pub min_healthy_period: std::time::Duration,
    /// Where the loop's memory lives between runs (each master's unhealthy
    /// clock, the attempts): one run per observation, from cron or a timer.
    #[arg(long, value_name = "FILE")]
    pub memory: PathBuf,
    /// Write the decision as Prometheus text here (node-exporter's
    /// textfile collector).
    #[arg(long, value_name = "FILE")]
    pub metrics: Option<PathBuf>,
    /// Acting on a `replace` decision (--confirm) and with what.
    #[command(flatten)]
    pub act: crate::args::remediate::ActArgs,
}

fn dur(d: std::time::Duration, flag: &str) -> anyhow::Result<hacore::units::Dur> {
    Ok(hacore::units::Dur(
        d.try_into().with_context(|| flag.to_string())?,
    ))
}

/// Run one observation's decision (and, with --confirm, its
/// replacement). Exit 0 healthy, waiting, cancelled, replaced, or to be
/// replaced (without --confirm: the command printed); 1 refused (quorum,
/// budget) or the replacement failed; 3 when the cluster cannot be
/// observed.
pub fn run(a: Args) -> anyhow::Result<crate::Exit> {
    let (topology, report) = Topology::load(&a.live.topology)?;
    crate::print_warnings(&report.warnings);
    let policy = hacore::remediation::Policy {
        unhealthy_for: dur(a.unhealthy_for, "--unhealthy-for")?,
        max_retries: a.max_retries,
        retry_period: dur(a.retry_period, "--retry-period")?,
        min_healthy_period: dur(a.min_healthy_period, "--min-healthy-period")?,
    };
    let mut memory: hacore::remediation::Memory = match std::fs::read_to_string(&a.memory) {
        Ok(text) => serde_json::from_str(&text).with_context(|| {
            format!("--memory {}: not a remediation memory", a.memory.display())
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
        Err(e) => return Err(anyhow::anyhow!("--memory {}: {e}", a.memory.display())),
    };
    let act = a.act.act()?;
    let now = jiff::Timestamp::now();
    let (d, replaced) = match &a.state {
        Some(_) => {
            let dead = DeadArgs {
                dead: true,
                state: a.state.clone(),
            };
            let state = dead.state(&a.live, &topology)?;
            let d = hacore::remediation::decide(&topology, &state, &mut memory, &policy, now);
            outln!("{}", d.line());
            (d, None)
        }
        None => {
            let reach = a.act.reach(&a.live);
            let progress = crate::progress::Progress::spinner();
            let o = haops::remediate::run_outcome(
                &topology,
                &reach,
                &policy,
                &mut memory,
                act.as_ref(),
                &mut |e| match e {
                    haops::Event::Note(l) => outln!("{l}"),
                    haops::Event::Warning(l) => eprintln!("warning: {l}"),
                    e => progress.on_event(e),
                },
            );
            progress.finish();
            (o.decision, o.replaced)
        }
    };
    if let (hacore::remediation::Decision::Replace { node, .. }, None) = (&d, &act) {
        outln!(
            "run: hacli replace-master {node} NEW -t {} --target TARGET --dead --journal FILE --backend live",
            a.live.topology.display()
        );
        outln!("not acting: pass --confirm --spare FILE --journal FILE to replace {node} now");
    }
    if let Some((journal, target)) = &replaced {
        let file = PathBuf::from(format!("{}.yaml", journal.display()));
        std::fs::write(&file, serde_json::to_string_pretty(target)?)
            .with_context(|| format!("the topology after the replacement, {}", file.display()))?;
        outln!(
            "journal: {}; the topology from now on: {}",
            journal.display(),
            file.display()
        );
    }
    std::fs::write(&a.memory, serde_json::to_string_pretty(&memory)?)
        .with_context(|| format!("--memory {}", a.memory.display()))?;
    if let Some(p) = &a.metrics {
        std::fs::write(p, hacore::remediation::metrics(&d, &memory, &policy, now))
            .with_context(|| format!("--metrics {}", p.display()))?;
    }
    let unobserved = matches!(&d, hacore::remediation::Decision::Wait { reason, .. } if reason.contains("was not observed"));
    Ok(match d.kind() {
        "refused" => crate::Exit::Deny,
        _ if unobserved => crate::Exit::Unknown,
        _ => crate::Exit::Ok,
    })
}
