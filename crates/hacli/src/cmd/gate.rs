//! `hacli gate ACTION NODE`: observe the live cluster, decide with the real
//! clock, and optionally take the disruption lock when allowed.

use std::time::Duration;

use hacore::{Action, Verdict};
use haops::Event;
use haops::gate::{GateRequest, default_identity, gate};

use crate::args::{LiveArgs, parse_duration};
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
    /// SSH to the masters: an upgrade's gate reads their manifests and
    /// disks (`control-plane-drift`, `master-disk`) when SSH is configured.
    #[command(flatten)]
    pub ssh: crate::args::SshArgs,
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
    render::print_verdict(&decide(&a)?, a.output)
}

/// Observe, decide and (with `--lock`) lock, through `haops::gate`
/// (`hacli drill` still calls this; it is to call `haops::gate` itself).
pub fn decide(a: &Args) -> anyhow::Result<Verdict> {
    let action: Action = a.action.parse()?;
    let topology = a.live.topology()?;
    let policy = crate::offline::policy(a.policy.as_deref(), action)?;
    let identity = (a.identity.clone()).unwrap_or_else(|| default_identity(action, &a.target));
    let request = GateRequest {
        move_leader: a.move_leader,
        lock: a.lock,
        lock_ttl: a.lock_ttl,
        ..GateRequest::new(action, &a.target, &policy, &identity)
    };
    let mut events = |e: Event| match e {
        Event::Note(line) | Event::Warning(line) => eprintln!("{line}"),
        _ => {}
    };
    let now = jiff::Timestamp::now();
    let mut reach = a.live.reach();
    reach.ssh = a.ssh.reach();
    let outcome = gate(&topology, &reach, &request, now, &mut events)?;
    if a.timings {
        eprintln!("timings: {}", render::phases(&outcome.phases));
        eprintln!("probes done at: {}", outcome.probes);
    }
    Ok(outcome.verdict)
}
