//! `hacli apply PLAN --journal J`: execute a plan step by step, resumably
//! (`haops::apply`).

mod measure;

use std::path::PathBuf;

use hacore::exec::Outcome;

use crate::args::{Backend, ClusterArgs, ProxmoxArgs};
use crate::progress::{Progress, failed};
use crate::{Exit, Output};

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A plan written by `hacli plan -o json`.
    pub plan: PathBuf,
    /// The journal file (JSON lines, appended and synced before each action).
    #[arg(long)]
    pub journal: PathBuf,
    /// Observe and report what would be applied; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Continue a run whose journal already has entries.
    #[arg(long)]
    pub resume: bool,
    /// Confirm a manual step as done (repeatable).
    #[arg(long, value_name = "STEP", conflicts_with = "dry_run")]
    pub confirm: Vec<String>,
    /// Backends: `simulated` (a rehearsal) or `live` (the real systems).
    #[arg(long, value_enum)]
    pub backend: Backend,
    /// How the live backends reach the cluster.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// How the live backend reaches Proxmox.
    #[command(flatten)]
    pub proxmox: ProxmoxArgs,
    /// Carry the load-balancer steps out on the real load balancer (the
    /// plan's target topology, `loadBalancer.manage`), while the other
    /// systems stay simulated; the simulation mirrors each real change so
    /// its gates see it.
    /// (Only with `--backend simulated`; `--backend live` always uses the
    /// real load balancer.)
    #[arg(long, value_enum)]
    pub lb: Option<Backend>,
    /// Record the SSH host key of a load balancer or node seen for the
    /// first time (said loudly), instead of refusing it.
    #[arg(long)]
    pub accept_new_host_key: bool,
    /// Output format of the outcome.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: Output,
    #[command(flatten)]
    pub measure: measure::MeasureArgs,
}

/// Run. Exit 0 completed (or dry run), 1 blocked or rolled back, 2 bad
/// input or journal error, 3 the Proxmox inventory could not be read, 4
/// waiting for a manual step's `--confirm` (the command is printed).
pub fn run(a: Args) -> anyhow::Result<Exit> {
    if let (Backend::Live, Some(lb)) = (a.backend, a.lb) {
        let lb = clap::ValueEnum::to_possible_value(&lb).map(|v| v.get_name().to_string());
        anyhow::bail!(
            "--lb {} cannot be used with --backend live: the live backend already carries the load-balancer steps out on the real load balancer",
            lb.unwrap_or_default()
        );
    }
    let plan = crate::offline::read_plan(&a.plan)?;
    let opts = haops::apply::ApplyOptions {
        load_balancer: a.lb.map(Into::into),
        dry_run: a.dry_run,
        resume: a.resume,
        confirm: a.confirm.clone(),
        measure: a.measure.spec(),
        ..haops::apply::ApplyOptions::new(&a.journal, a.backend.into())
    };
    let reach = haops::Reach {
        proxmox: a.proxmox.reach(),
        ..a.cluster.reach(a.accept_new_host_key)
    };
    let progress = Progress::steps(plan.steps().count());
    let applied = haops::apply::apply(&plan, &opts, &reach, &mut |e| progress.on_event(e));
    progress.finish();
    let applied = match applied {
        Ok(x) => x,
        Err(e) => return failed("apply", e),
    };
    let outcome = &applied.outcome;
    match a.output {
        Output::Text => outln!("{}", text(outcome)),
        o => crate::print_doc(o, "ApplyOutcome", outcome)?,
    }
    if let Some(m) = &applied.measured {
        let table = measure::finish(&a.measure, m)?;
        match a.output {
            Output::Text => out!("{table}"),
            _ => eprint!("{table}"),
        }
    }
    Ok(match outcome {
        Outcome::Completed | Outcome::DryRun { .. } => Exit::Ok,
        Outcome::AwaitingConfirmation { step, .. } => {
            let mut more = vec!["--confirm", step.as_str()];
            if !a.resume {
                more.insert(0, "--resume");
            }
            crate::waiting_for(&more)
        }
        _ => Exit::Deny,
    })
}

fn text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Completed => "completed: every step is done".into(),
        Outcome::DryRun { would_apply } => format!(
            "dry run: {} step(s) would be applied: {}",
            would_apply.len(),
            would_apply.join(", ")
        ),
        Outcome::Blocked { step, reasons } => {
            format!("BLOCKED before {step}:\n  {}", reasons.join("\n  "))
        }
        Outcome::AwaitingConfirmation { step, instruction } => format!(
            "WAITING for a person: {instruction}\nthen confirm step {step} (the command is on stderr)"
        ),
        Outcome::RolledBack { phase, step, error } => format!(
            "FAILED at {step}: {error}\nphase {phase} was rolled back; fix the cause and resume"
        ),
    }
}
