//! Remove a master for good, or replace it (the new one joins first), the
//! way Cluster API does (`hacore::replace` plans it; steps that would
//! leave etcd without quorum, or with an even number of voters for good,
//! are refused with the reason). The run is gated (`preflight`: the
//! cluster is healthy now), under the disruption lock, with a journal so a
//! stopped run resumes; on the simulated backend it is a rehearsal, on
//! the live one it first checks the plan against the Proxmox cluster as
//! it is (only VMs this tool made are deleted).

use std::path::PathBuf;
use std::time::Duration;

use hacore::disrupt::{self, DisruptOptions, Gate, Report};
use hacore::exec;
use hacore::plan::{Plan, Refusal};
use hacore::units::Dur;
use hacore::{Action, Policy, Topology};

use crate::apply::Backend;
use crate::connect::Live;
use crate::events::{Events, steps};
use crate::{Error, Reach};

/// How a master's removal or replacement runs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The journal file.
    pub journal: PathBuf,
    /// The backends.
    pub backend: Backend,
    /// Continue a run whose journal already has entries.
    pub resume: bool,
    /// The lock holder; by default `hacli-master@HOST:JOURNAL`
    /// ([`crate::journal::run_identity`]).
    pub identity: Option<String>,
    /// Live: how long the disruption lock lasts without renewal (covers
    /// the whole run).
    pub lock_ttl: Duration,
    /// Simulated: the simulated cluster's state file (default: next to
    /// the journal, `JOURNAL.sim.json`).
    pub sim_state: Option<PathBuf>,
    /// Simulated: make operation OP fail on NODE (`OP/NODE`).
    pub sim_fail: Vec<String>,
}

impl RunOptions {
    /// Options for `journal` on `backend`: a fresh run, a 60 minute lock.
    pub fn new(journal: impl Into<PathBuf>, backend: Backend) -> RunOptions {
        RunOptions {
            journal: journal.into(),
            backend,
            resume: false,
            identity: None,
            lock_ttl: Duration::from_secs(3600),
            sim_state: None,
            sim_fail: Vec::new(),
        }
    }
}

/// What a removal or replacement came to.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase", tag = "result")]
pub enum Outcome {
    /// It cannot be made safe: nothing was touched.
    Refused {
        /// Why.
        reasons: Vec<String>,
    },
    /// The plan (a dry run: nothing was touched).
    Planned {
        /// The plan.
        plan: Box<Plan>,
    },
    /// It ran (or was denied by its gate).
    Ran {
        /// The run's report.
        report: Report,
    },
}

/// The gate before the run: the cluster is healthy now (`preflight`), the
/// lock held by this run's identity.
pub fn gate(opts: &RunOptions) -> Gate {
    Gate {
        policy: Policy::builtin("preflight").expect("a built-in policy"),
        action: Action::Drain,
        identity: opts
            .identity
            .clone()
            .unwrap_or_else(|| crate::journal::run_identity("hacli-master", &opts.journal)),
    }
}

fn disrupt_options(idle_bound: Duration) -> Result<DisruptOptions, Error> {
    Ok(DisruptOptions {
        idle_bound: Dur(idle_bound.try_into().map_err(|_| Error::Setting {
            what: "the idle bound".into(),
            why: format!("{idle_bound:?} is too long"),
        })?),
        ..Default::default()
    })
}

/// The plan that removes `node` from `topology` for good, waiting at most
/// `idle_bound` for its drained backend's sessions to end.
pub fn plan_remove(
    topology: &Topology,
    node: &str,
    idle_bound: Duration,
) -> Result<Result<Plan, Refusal>, Error> {
    Ok(hacore::replace::remove_master(
        topology,
        node,
        &disrupt_options(idle_bound)?,
    ))
}

/// What a replacement is.
#[derive(Debug, Clone, Copy)]
pub struct Replacement<'a> {
    /// The cluster as it is.
    pub current: &'a Topology,
    /// The cluster after: `new` with its address, hypervisor, VM id and
    /// size; `old` gone.
    pub target: &'a Topology,
    /// The master to replace.
    pub old: &'a str,
    /// The new master.
    pub new: &'a str,
    /// VM id of the template the new master is cloned from.
    pub template: Option<u32>,
    /// How long to wait for the drained backend's sessions to end.
    pub idle_bound: Duration,
    /// `old` is dead (powered off or unreachable): the cluster as observed
    /// now decides whether it is, and whether its removal keeps quorum;
    /// nothing is asked of it (`hacore::replace::replace_dead_master`).
    pub dead: Option<&'a hacore::ClusterState>,
    /// Keep the masters apart with this Proxmox HA rule, `new` in `old`'s
    /// place.
    pub ha_rule: Option<&'a str>,
}

/// The plan that replaces `r.old` with `r.new`.
pub fn plan_replace(r: &Replacement<'_>) -> Result<Result<Plan, Refusal>, Error> {
    let opts = hacore::plan::Options {
        template: r.template,
    };
    let planned = match r.dead {
        Some(state) => {
            hacore::replace::replace_dead_master(r.current, r.target, r.old, r.new, state, &opts)
        }
        None => hacore::replace::replace_master(
            r.current,
            r.target,
            r.old,
            r.new,
            &opts,
            &disrupt_options(r.idle_bound)?,
        ),
    };
    Ok(planned.map(|p| match r.ha_rule {
        Some(rule) => hacore::plan::placement::with_ha(p, rule),
        None => p,
    }))
}

/// Remove `node` for good: plan, then (unless `dry_run`) run.
pub fn remove_master(
    topology: &Topology,
    node: &str,
    idle_bound: Duration,
    dry_run: bool,
    opts: &RunOptions,
    reach: &Reach,
    events: Events<'_>,
) -> Result<Outcome, Error> {
    let planned = plan_remove(topology, node, idle_bound)?;
    finish(planned, node, dry_run, opts, reach, events)
}

/// Replace `r.old` with `r.new`: plan, then (unless `dry_run`) run.
pub fn replace_master(
    r: &Replacement<'_>,
    dry_run: bool,
    opts: &RunOptions,
    reach: &Reach,
    events: Events<'_>,
) -> Result<Outcome, Error> {
    let planned = plan_replace(r)?;
    finish(planned, r.old, dry_run, opts, reach, events)
}

fn finish(
    planned: Result<Plan, Refusal>,
    node: &str,
    dry_run: bool,
    opts: &RunOptions,
    reach: &Reach,
    events: Events<'_>,
) -> Result<Outcome, Error> {
    Ok(match planned {
        Err(r) => Outcome::Refused { reasons: r.reasons },
        Ok(plan) if dry_run => Outcome::Planned {
            plan: Box::new(plan),
        },
        Ok(plan) => Outcome::Ran {
            report: run(&plan, node, opts, reach, events)?,
        },
    })
}

/// Run a removal's or replacement's `plan` (its subject `node`): gated,
/// locked, journalled, on `opts.backend`.
pub fn run(
    plan: &Plan,
    node: &str,
    opts: &RunOptions,
    reach: &Reach,
    events: Events<'_>,
) -> Result<Report, Error> {
    let gate = gate(opts);
    let mut journal = crate::journal::open_for_run(&opts.journal, opts.resume, false)?;
    let exec_opts = exec::Options::default();
    if opts.backend == Backend::Simulated {
        // The simulated cluster: one more backend bundle behind the same
        // run as the live one (`haops::disrupt::run_plan`).
        drop(journal);
        let state = opts
            .sim_state
            .clone()
            .unwrap_or_else(|| crate::disrupt::Simulated::beside(&opts.journal, Vec::new()).state);
        let request = crate::disrupt::Request {
            gate,
            options: DisruptOptions::default(),
            resume: true,
            dry_run: false,
            lock_ttl: opts.lock_ttl,
            silence: None,
        };
        let backend = crate::disrupt::Backend::Simulated(crate::disrupt::Simulated {
            state,
            fail: opts.sim_fail.clone(),
        });
        return crate::disrupt::run_plan(
            plan,
            node,
            "master",
            &request,
            &opts.journal,
            &backend,
            events,
        );
    }
    // Before anything: the VMs the plan creates or deletes, against the
    // Proxmox cluster as it is now (only VMs this tool created are deleted).
    let owner = crate::inventory::owner(plan, &opts.journal, exec::Journal::records(&journal));
    let reasons = crate::inventory::refusals(plan, reach, &owner)?;
    if !reasons.is_empty() {
        return Ok(Report::Denied {
            node: node.into(),
            reasons,
        });
    }
    let hv = crate::inventory::hypervisor(plan, reach, owner)?;
    let mut live = Live::connect_plan(plan, reach, Some(&gate.policy), Some(opts.lock_ttl), hv)?;
    Ok(live.with(|b, lock| {
        disrupt::run(
            plan,
            node,
            &gate,
            b,
            lock,
            &mut journal,
            &exec_opts,
            &mut steps(events),
        )
    })?)
}
