//! `hacli apply PLAN --journal J`: execute a plan step by step, resumably.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use hacore::backend::{BackendError, LbOp, LoadBalancer};
use hacore::exec::{self, Event, FileJournal, Journal, Outcome};
use hacore::simulated::{SimHandle, SimulatedCluster, with_backends};
use indicatif::{ProgressBar, ProgressStyle};

use crate::{Exit, Output};

/// Which backends carry the plan out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// The in-memory SimulatedCluster test double, persisted next to the
    /// journal (`JOURNAL.sim.json`): a rehearsal, nothing real is touched.
    Simulated,
}

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
    #[arg(long, value_name = "STEP")]
    pub confirm: Vec<String>,
    /// Backends. Only `simulated` exists until the Proxmox, pfSense and
    /// kubeadm backends land.
    #[arg(long, value_enum)]
    pub backend: Backend,
    /// Carry the load-balancer steps out on the real load balancer (the
    /// plan's target topology, `loadBalancer.manage`), while the other
    /// systems stay simulated; the simulation mirrors each real change so
    /// its gates see it.
    #[arg(long, value_enum, default_value = "simulated")]
    pub lb: LbBackendKind,
    /// Record the SSH host key of a load balancer seen for the first time.
    #[arg(long)]
    pub accept_new_host_key: bool,
    /// Output format of the outcome.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: Output,
    #[command(flatten)]
    pub measure: super::measure::MeasureArgs,
}

/// Where the load-balancer steps go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LbBackendKind {
    /// The simulation.
    Simulated,
    /// The real load balancer (`loadBalancer.manage` in the plan's target).
    Live,
}

/// The real load balancer, with the simulation following each change.
struct Mirrored<'a> {
    live: &'a mut pfsense::lb::LbBackend,
    sim: hacore::simulated::SimHandle,
}

impl LoadBalancer for Mirrored<'_> {
    fn is_done(&mut self, op: &LbOp) -> Result<bool, BackendError> {
        self.live.is_done(op)
    }
    fn apply(&mut self, op: &LbOp) -> Result<(), BackendError> {
        self.live.apply(op)?;
        if !self.sim.is_done(op)? {
            self.sim.apply(op)?;
        }
        Ok(())
    }
}

fn sim_path(journal: &Path) -> PathBuf {
    let mut p = journal.as_os_str().to_owned();
    p.push(".sim.json");
    PathBuf::from(p)
}

/// Run. Exit 0 completed (or dry run), 1 blocked, awaiting confirmation or
/// rolled back, 2 bad input or journal error.
pub fn run(a: Args) -> anyhow::Result<Exit> {
    let plan = super::simulate::read_plan(&a.plan)?;
    let mut journal = FileJournal::open(&a.journal)?;
    if !journal.records().is_empty() && !a.resume && !a.dry_run {
        anyhow::bail!(
            "{} already records a run: pass --resume to continue it, or use a new journal",
            a.journal.display()
        );
    }
    let step_ids: BTreeSet<&str> = plan.steps().map(|(_, s)| s.id.as_str()).collect();
    for c in &a.confirm {
        if !step_ids.contains(c.as_str()) {
            anyhow::bail!("--confirm {c}: no such step in the plan");
        }
    }
    let Backend::Simulated = a.backend;
    let sim_file = sim_path(&a.journal);
    let sim = match std::fs::read_to_string(&sim_file) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("{}: not a simulated cluster", sim_file.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            SimulatedCluster::new(&plan.from, &plan.to, jiff::Timestamp::now())
        }
        Err(e) => return Err(e).with_context(|| format!("{}: cannot read", sim_file.display())),
    };
    let sim = sim.shared();
    let opts = exec::Options {
        dry_run: a.dry_run,
        confirm: a.confirm.iter().cloned().collect(),
    };

    let bar = ProgressBar::new(plan.steps().count() as u64);
    bar.set_style(
        ProgressStyle::with_template("{pos:>3}/{len} [{bar:30}] {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let mut measure = super::measure::start(&a.measure, &plan)?;
    let mut on_event = |e: Event| {
        if let Some(m) = measure.as_mut() {
            super::measure::on_event(m, &plan, &e);
        }
        match e {
            Event::Step { index, id, .. } => {
                bar.set_position(index as u64);
                bar.set_message(id);
            }
            Event::Skipped { id, why } => bar.println(format!("skip {id}: {why}")),
            Event::WouldApply { id } => bar.println(format!("would apply {id}")),
            Event::Done { id } => bar.println(format!("done {id}")),
            Event::CertificateKey => bar.println("uploaded a fresh certificate key"),
            Event::Failed { id, error } => bar.println(format!("FAILED {id}: {error}")),
            Event::RollingBack { id } => bar.println(format!("rolling back {id}")),
        }
    };
    let result = match a.lb {
        LbBackendKind::Simulated => with_backends(&sim, |b| {
            exec::run(&plan, b, &mut journal, &opts, &mut on_event)
        }),
        LbBackendKind::Live => {
            let lb_opts = pfsense::lb::LbOptions {
                accept_new_host_key: a.accept_new_host_key,
                ..Default::default()
            };
            let mut live = pfsense::lb::LbBackend::from_topology(&plan.to, &lb_opts)
                .context("the plan's target topology: loadBalancer")?;
            bar.println(format!("load balancer: {}", live.describe()));
            let mut lb = Mirrored {
                live: &mut live,
                sim: SimHandle(sim.clone()),
            };
            let (mut hv, mut cp, mut ob, clock) = (
                SimHandle(sim.clone()),
                SimHandle(sim.clone()),
                SimHandle(sim.clone()),
                SimHandle(sim.clone()),
            );
            let mut b = hacore::backend::Backends {
                hypervisor: &mut hv,
                load_balancer: &mut lb,
                control_plane: &mut cp,
                observer: &mut ob,
                clock: &clock,
            };
            exec::run(&plan, &mut b, &mut journal, &opts, &mut on_event)
        }
    };
    bar.finish_and_clear();
    let measured = match measure.take() {
        Some(m) => Some(super::measure::finish(&a.measure, m)?),
        None => None,
    };
    if !a.dry_run {
        std::fs::write(&sim_file, serde_json::to_string_pretty(&*sim.borrow())?)
            .with_context(|| format!("{}: cannot write", sim_file.display()))?;
    }
    let outcome = result?;
    match a.output {
        Output::Json => crate::print_json(&outcome)?,
        Output::Text => match &outcome {
            Outcome::Completed => outln!("completed: every step is done"),
            Outcome::DryRun { would_apply } => outln!(
                "dry run: {} step(s) would be applied: {}",
                would_apply.len(),
                would_apply.join(", ")
            ),
            Outcome::Blocked { step, reasons } => {
                outln!("BLOCKED before {step}:\n  {}", reasons.join("\n  "))
            }
            Outcome::AwaitingConfirmation { step, instruction } => {
                outln!(
                    "WAITING for a person: {instruction}\nthen: hacli apply ... --resume --confirm {step}"
                )
            }
            Outcome::RolledBack { phase, step, error } => outln!(
                "FAILED at {step}: {error}\nphase {phase} was rolled back; fix the cause and resume"
            ),
        },
    }
    if let Some((_, table)) = &measured {
        match a.output {
            Output::Text => out!("{table}"),
            Output::Json => eprint!("{table}"),
        }
    }
    Ok(match outcome {
        Outcome::Completed | Outcome::DryRun { .. } => Exit::Ok,
        _ => Exit::Deny,
    })
}
