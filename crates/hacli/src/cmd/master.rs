//! `hacli remove-master NODE` and `hacli replace-master OLD NEW`: take a
//! master out for good, or replace it (the new one joins first), planned
//! and run by `haops::master`. `--dry-run` prints the plan; `--backend
//! simulated` rehearses it; `--backend live` runs it, gated, locked, with
//! a journal (`--resume`).

use std::path::PathBuf;

use anyhow::Context as _;
use hacore::Topology;
use hacore::plan::{Plan, Refusal};

use crate::args::master::Common;
use crate::progress::{Progress, failed};
use crate::{Exit, Output};

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
            if let Some(e) = crate::progress::missing_input(&r) {
                return Err(e);
            }
            outln!("REFUSED:\n  - {}", r.reasons.join("\n  - "));
            return Ok(Exit::Deny);
        }
    };
    if c.dry_run {
        match c.output {
            Output::Text => out!("{}", plan.to_text()),
            o => crate::print_doc(o, "Plan", &plan)?,
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
        Output::Text => outln!("{}", report.summary()),
        o => crate::print_doc(o, "MasterReport", &report)?,
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
