//! `hacli remove-master NODE` and `hacli replace-master OLD NEW`: take a
//! master out for good, or replace it (the new master joins first), the way
//! Cluster API does (hacore::replace). Steps that would leave etcd without
//! quorum, or with an even number of voters for good, are refused with the
//! reason. `--dry-run` prints the plan and touches nothing.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use hacore::disrupt::{self, DisruptOptions, Gate, Rehearsal};
use hacore::exec;
use hacore::plan::Plan;
use hacore::units::Dur;
use hacore::{Action, Policy, Topology};
use indicatif::ProgressBar;

use super::disrupt::{Backend, progress};
use super::live::parse_duration;
use crate::{Exit, Output};

/// Options shared by both commands.
#[derive(Debug, clap::Args)]
pub struct Common {
    /// Topology file of the cluster as it is (YAML or JSON).
    #[arg(long, short = 't', env = "HACLI_TOPOLOGY")]
    pub topology: PathBuf,
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
    /// Lock holder identity; by default `hacli-master@HOST#PID`.
    #[arg(long, env = "HACLI_IDENTITY")]
    pub identity: Option<String>,
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
    #[command(flatten)]
    pub common: Common,
}

fn load(path: &std::path::Path) -> anyhow::Result<Topology> {
    let (t, warnings) = Topology::load(path)?;
    crate::print_warnings(&warnings.warnings);
    Ok(t)
}

fn execute(c: &Common, plan: &Plan, node: &str) -> anyhow::Result<Exit> {
    if c.dry_run {
        match c.output {
            Output::Json => crate::print_json(plan)?,
            Output::Text => out!("{}", plan.to_text()),
        }
        return Ok(Exit::Ok);
    }
    let journal = c
        .journal
        .clone()
        .context("--journal FILE is needed to run the plan (or --dry-run to print it)")?;
    let Some(Backend::Simulated) = c.backend else {
        anyhow::bail!("--backend simulated is needed to run the plan (or --dry-run to print it)");
    };
    let state = c.sim_state.clone().unwrap_or_else(|| {
        let mut p = journal.as_os_str().to_owned();
        p.push(".sim.json");
        PathBuf::from(p)
    });
    let gate = Gate {
        policy: Policy::builtin("preflight").expect("built-in"),
        action: Action::Drain,
        identity: c.identity.clone().unwrap_or_else(|| {
            format!(
                "hacli-master@{}#{}",
                super::live::hostname(),
                std::process::id()
            )
        }),
    };
    let files = Rehearsal {
        state: &state,
        fail: &c.sim_fail,
        resume: c.resume,
    };
    let bar = ProgressBar::new_spinner();
    let result = disrupt::rehearse_plan(
        plan,
        node,
        &gate,
        &journal,
        &files,
        &exec::Options::default(),
        &mut progress(&bar),
    );
    bar.finish_and_clear();
    let report = result?;
    match c.output {
        Output::Json => crate::print_json(&report)?,
        Output::Text => outln!("{}", report.summary()),
    }
    Ok(if report.ok() { Exit::Ok } else { Exit::Deny })
}

fn options(c: &Common) -> anyhow::Result<DisruptOptions> {
    Ok(DisruptOptions {
        idle_bound: Dur(c.idle_bound.try_into().context("--idle-bound")?),
        ..Default::default()
    })
}

/// Run `remove-master`. Exit 0 done (or planned with --dry-run), 1 refused
/// or stopped, 2 bad input.
pub fn run_remove(a: RemoveArgs) -> anyhow::Result<Exit> {
    let topology = load(&a.common.topology)?;
    match hacore::replace::remove_master(&topology, &a.node, &options(&a.common)?) {
        Ok(plan) => execute(&a.common, &plan, &a.node),
        Err(r) => {
            outln!("REFUSED:\n  - {}", r.reasons.join("\n  - "));
            Ok(Exit::Deny)
        }
    }
}

/// Run `replace-master`. Exit 0 done (or planned with --dry-run), 1
/// refused or stopped, 2 bad input.
pub fn run_replace(a: ReplaceArgs) -> anyhow::Result<Exit> {
    let current = load(&a.common.topology)?;
    let target = load(&a.target)?;
    let plan_opts = hacore::plan::Options {
        template: a.template,
    };
    match hacore::replace::replace_master(
        &current,
        &target,
        &a.old,
        &a.new,
        &plan_opts,
        &options(&a.common)?,
    ) {
        Ok(plan) => execute(&a.common, &plan, &a.old),
        Err(r) => {
            outln!("REFUSED:\n  - {}", r.reasons.join("\n  - "));
            Ok(Exit::Deny)
        }
    }
}
