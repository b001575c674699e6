//! `hacli remove-master NODE` and `hacli replace-master OLD NEW`: take a
//! master out for good, or replace it (the new one joins first), planned
//! and run by `haops::master`. `--dry-run` prints the plan; `--backend
//! simulated` rehearses it; `--backend live` runs it, gated, locked, with
//! a journal (`--resume`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use hacore::Topology;
use hacore::plan::{Plan, Refusal};

use crate::args::{Backend, ProxmoxArgs, SshArgs, parse_duration};
use crate::progress::{Progress, failed};
use crate::{Exit, Output};

/// Options shared by both commands.
#[derive(Debug, clap::Args)]
pub struct Common {
    /// The cluster as it is (`--topology`) and how to reach it.
    #[command(flatten)]
    pub live: crate::args::LiveArgs,
    /// Live: how the hypervisor steps reach Proxmox.
    #[command(flatten)]
    pub proxmox: ProxmoxArgs,
    /// Live: how the nodes are reached over SSH.
    #[command(flatten)]
    pub ssh: SshArgs,
    /// Live: how long the disruption lock lasts without renewal (covers the
    /// whole run).
    #[arg(long, default_value = "60m", value_parser = parse_duration)]
    pub lock_ttl: Duration,
    /// Print the plan (text, or JSON with -o json) and stop: nothing is touched.
    #[arg(long)]
    pub dry_run: bool,
    /// The journal file; needed unless --dry-run.
    #[arg(long)]
    pub journal: Option<PathBuf>,
    /// Continue a run whose journal already has entries.
    #[arg(long)]
    pub resume: bool,
    /// Backends; needed unless --dry-run.
    #[arg(long, value_enum)]
    pub backend: Option<Backend>,
    /// The simulated cluster's state file (default: next to the journal).
    #[arg(long)]
    pub sim_state: Option<PathBuf>,
    /// Simulated backend: make operation OP fail on NODE (`OP/NODE`).
    #[arg(long, value_name = "OP/NODE")]
    pub sim_fail: Vec<String>,
    /// How long to wait for the drained backend's sessions to reach 0.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub idle_bound: Duration,
    /// Lock holder identity; by default `hacli-master@HOST:JOURNAL` (the
    /// journal's absolute path: a resumed run holds the lock again).
    #[arg(long, env = "HACLI_IDENTITY")]
    pub identity: Option<String>,
    /// Alertmanager silences for the alerts the run causes.
    #[command(flatten)]
    pub silence: crate::args::silence::SilenceArgs,
    /// The policy (built-in or file) whose `silence:` gives each node's matchers (the run is gated by `preflight`).
    #[arg(long, requires = "alertmanager_url")]
    pub silence_policy: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: Output,
}

/// `remove-master` arguments.
#[derive(Debug, clap::Args)]
pub struct RemoveArgs {
    /// The master to remove.
    pub node: String,
    #[command(flatten)]
    pub common: Common,
}

/// `replace-master` arguments.
#[derive(Debug, clap::Args)]
pub struct ReplaceArgs {
    /// The master to replace.
    pub old: String,
    /// The new master (described in --target).
    pub new: String,
    /// Topology file of the cluster after the replacement: NEW with its
    /// address, hypervisor, VM id and size; OLD gone.
    #[arg(long)]
    pub target: PathBuf,
    /// VM id of the template the new master is cloned from.
    #[arg(long)]
    pub template: Option<u32>,
    /// Keep the masters apart with a Proxmox HA rule, NEW in OLD's place.
    #[command(flatten)]
    pub ha: crate::args::placement::HaArgs,
    /// OLD is powered off or unreachable: nothing is asked of it.
    #[command(flatten)]
    pub dead: crate::args::placement::DeadArgs,
    #[command(flatten)]
    pub common: Common,
}

impl Common {
    fn reach(&self) -> haops::Reach {
        haops::Reach {
            ssh: self.ssh.reach(),
            proxmox: self.proxmox.reach(),
            ..self.live.reach()
        }
    }

    fn run_options(&self, journal: PathBuf, backend: Backend) -> haops::master::RunOptions {
        haops::master::RunOptions {
            resume: self.resume,
            identity: self.identity.clone(),
            lock_ttl: self.lock_ttl,
            sim_state: self.sim_state.clone(),
            sim_fail: self.sim_fail.clone(),
            ..haops::master::RunOptions::new(journal, backend.into())
        }
    }
}

/// Print the refusal or the plan (--dry-run), or run it between its
/// silences and print the report.
fn execute(
    c: &Common,
    planned: Result<Plan, Refusal>,
    node: &str,
    silenced: &[String],
) -> anyhow::Result<Exit> {
    let plan = match planned {
        Ok(plan) => plan,
        Err(r) => {
            outln!("REFUSED:\n  - {}", r.reasons.join("\n  - "));
            return Ok(Exit::Deny);
        }
    };
    if c.dry_run {
        match c.output {
            Output::Json => crate::print_json(&plan)?,
            Output::Text => out!("{}", plan.to_text()),
        }
        return Ok(Exit::Ok);
    }
    let journal = c
        .journal
        .clone()
        .context("--journal FILE is needed to run the plan (or --dry-run to print it)")?;
    let Some(backend) = c.backend else {
        anyhow::bail!(
            "--backend live (or simulated, a rehearsal) is needed to run the plan (or --dry-run to print it)"
        );
    };
    let opts = c.run_options(journal, backend);
    let gate = haops::master::gate(&opts);
    let silences = crate::args::silence::start_for_run(
        &c.silence,
        c.silence_policy.as_deref(),
        &gate,
        silenced,
        "master",
        c.lock_ttl,
    )?;
    let progress = Progress::spinner();
    let result = haops::master::run(&plan, node, &opts, &c.reach(), &mut |e| {
        progress.on_event(e)
    });
    progress.finish();
    let report = match crate::args::silence::finish(silences, Ok(result))? {
        Ok(r) => r,
        Err(e) => return failed("master", e),
    };
    match c.output {
        Output::Json => crate::print_json(&report)?,
        Output::Text => outln!("{}", report.summary()),
    }
    Ok(if report.ok() { Exit::Ok } else { Exit::Deny })
}

/// Run `remove-master`. Exit 0 done (or planned with --dry-run), 1 refused
/// or stopped, 2 bad input, 3 the cluster or inventory could not be read.
pub fn run_remove(a: RemoveArgs) -> anyhow::Result<Exit> {
    let topology = a.common.live.topology()?;
    let planned = haops::master::plan_remove(&topology, &a.node, a.common.idle_bound)?;
    execute(&a.common, planned, &a.node, std::slice::from_ref(&a.node))
}

/// Run `replace-master`. Exit 0 done (or planned with --dry-run), 1
/// refused or stopped, 2 bad input, 3 the cluster or inventory could not
/// be read.
pub fn run_replace(a: ReplaceArgs) -> anyhow::Result<Exit> {
    let current = a.common.live.topology()?;
    let (target, warnings) = Topology::load(&a.target)?;
    crate::print_warnings(&warnings.warnings);
    let observed = match a.dead.dead {
        true => Some(a.dead.state(&a.common.live, &current)?),
        false => None,
    };
    let planned = haops::master::plan_replace(&haops::master::Replacement {
        current: &current,
        target: &target,
        old: &a.old,
        new: &a.new,
        template: a.template,
        idle_bound: a.common.idle_bound,
        dead: observed.as_ref(),
        ha_rule: a.ha.rule.as_deref(),
    })?;
    execute(&a.common, planned, &a.old, &[a.old.clone(), a.new.clone()])
}
