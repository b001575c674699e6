//! `hacli remediate` (issue 26): decide from one observation whether a
//! dead master is to be replaced (`hacore::remediation`), remembering
//! attempts between runs; print the decision, its reason and the command.

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
}

fn dur(d: std::time::Duration, flag: &str) -> anyhow::Result<hacore::units::Dur> {
    Ok(hacore::units::Dur(
        d.try_into().with_context(|| flag.to_string())?,
    ))
}

/// Run one observation's decision. Exit 0 healthy, waiting or cancelled; 1
/// refused (quorum, budget); 0 with the `replace-master --dead` command to
/// run when a master is to be replaced (the run that carries it out, under
/// the lock, is `haops::remediate::tick`); 3 when the cluster cannot be
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
    let dead = DeadArgs {
        dead: true,
        state: a.state.clone(),
    };
    let state = dead.state(&a.live, &topology)?;
    let now = jiff::Timestamp::now();
    let d = hacore::remediation::decide(&topology, &state, &mut memory, &policy, now);
    outln!("{}", d.line());
    if let hacore::remediation::Decision::Replace { node, .. } = &d {
        outln!(
            "run: hacli replace-master {node} NEW -t {} --target TARGET --dead --journal FILE --backend live",
            a.live.topology.display()
        );
    }
    std::fs::write(&a.memory, serde_json::to_string_pretty(&memory)?)
        .with_context(|| format!("--memory {}", a.memory.display()))?;
    if let Some(p) = &a.metrics {
        std::fs::write(p, hacore::remediation::metrics(&d, &memory, &policy, now))
            .with_context(|| format!("--metrics {}", p.display()))?;
    }
    Ok(match d.kind() {
        "refused" => crate::Exit::Deny,
        _ => crate::Exit::Ok,
    })
}
