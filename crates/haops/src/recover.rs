//! Recovery from lost etcd quorum (issue 24): observe what survives (each
//! master's data directory over SSH, whether its etcd answers as a voter,
//! the snapshots), decide (`hacore::recover`: refused while quorum holds;
//! else the source that loses least and what it loses), then, confirmed,
//! carry out the steps: the pool reduced to one master, a one-member
//! cluster restored on it, its apiserver back, the other masters reset and
//! rejoined through the migration's learner-first join path.
//!
//! It is a plan: the decision and its steps are written beside the journal
//! (`JOURNAL.plan.json`) before the first step, every step is journalled
//! (`haops::journal::open_for_run`), a resumed run (`resume`) takes the
//! saved plan (it never decides again: after the restore, quorum holds)
//! and skips what the journal records done. A step that fails while the
//! master is being restored rolls back, in reverse, every restore step
//! done (each has its rollback); a failure while the others rejoin stops
//! the run there (the recovered master serves; resume when fixed).

use std::path::{Path, PathBuf};
use std::time::Duration;

use hacore::Topology;
use hacore::backend::{ControlPlane as _, CpOp, LoadBalancer, Op};
use hacore::exec::{Journal, Record};
use hacore::recover::{Decision, MemberFacts, RecoverOp, RecoverStep, SnapshotFacts};
use kubeadm::control_plane::KubeadmControlPlane;
use serde::{Deserialize, Serialize};

use crate::events::{Event, Events};
use crate::{Error, Reach};

/// What a recovery is asked.
#[derive(Debug, Clone)]
pub struct Options {
    /// Snapshot files to consider; empty: every snapshot of ours in the
    /// reach's snapshot directory (when set).
    pub snapshots: Vec<PathBuf>,
    /// The master to restore on (else the source member, else the first
    /// master answering over SSH).
    pub on: Option<String>,
    /// The journal.
    pub journal: PathBuf,
    /// Continue the run the journal records.
    pub resume: bool,
    /// Only observe and decide.
    pub dry_run: bool,
    /// Act (without it: observe, decide, and stop).
    pub confirm: bool,
    /// `etcdutl` (else `HACLI_ETCDUTL`, else on PATH).
    pub etcdutl: Option<PathBuf>,
    /// How long the restored master may take to serve.
    pub serving_bound: Duration,
}

/// The saved plan of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// What was observed.
    pub members: Vec<MemberFacts>,
    /// The snapshots checked.
    pub snapshots: Vec<SnapshotFacts>,
    /// The decision.
    pub decision: Decision,
    /// Its steps (none when refused).
    pub steps: Vec<RecoverStep>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "outcome")]
pub enum Outcome {
    /// Not a recovery (quorum holds, nothing to recover from).
    Refused,
    /// Observed and decided only.
    DryRun,
    /// Decided; acting needs `confirm`.
    NeedsConfirm,
    /// Every step done.
    Done,
    /// A step failed.
    Failed {
        /// Its id.
        step: String,
        /// Why.
        error: String,
        /// The steps rolled back, in order.
        rolled_back: Vec<String>,
    },
}

impl Outcome {
    /// The CLI's exit code: 0 done or dry run, 1 refused, 3 failed, 4
    /// decided and waiting for `--confirm`.
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Done | Outcome::DryRun => 0,
            Outcome::Refused => 1,
            Outcome::Failed { .. } => 3,
            Outcome::NeedsConfirm => 4,
        }
    }
}

/// A run's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The plan.
    pub plan: Plan,
    /// How it ended.
    pub outcome: Outcome,
}

fn plan_file(journal: &Path) -> PathBuf {
    let mut s = journal.as_os_str().to_owned();
    s.push(".plan.json");
    PathBuf::from(s)
}

fn tools(etcdutl: Option<&Path>) -> Result<kubeadm::snapshot::Tools, Error> {
    let env = std::env::var_os("HACLI_ETCDUTL").map(PathBuf::from);
    kubeadm::snapshot::Tools::find(etcdutl.or(env.as_deref())).map_err(|e| Error::Setting {
        what: "etcdutl (--etcdutl, HACLI_ETCDUTL)".into(),
        why: e.to_string(),
    })
}

/// Observe and decide: refused while quorum holds; a snapshot named in
/// `opts.snapshots` that fails its integrity check is an error naming the
/// file and what failed.
pub fn observe(
    topology: &Topology,
    reach: &Reach,
    opts: &Options,
    cp: &KubeadmControlPlane,
) -> Result<Plan, Error> {
    let tools = tools(opts.etcdutl.as_deref())?;
    let mut files = opts.snapshots.clone();
    if files.is_empty()
        && let Some(dir) = &reach.snapshot_dir
        && dir.is_dir()
    {
        files = kubeadm::snapshot::ours(dir)
            .map_err(|e| Error::Setting {
                what: format!("the snapshot directory {}", dir.display()),
                why: e.to_string(),
            })?
            .into_iter()
            .map(|r| r.path)
            .collect();
    }
    let snapshots: Vec<SnapshotFacts> = files
        .iter()
        .map(|f| kubeadm::recover::snapshot_facts(&tools, f))
        .collect();
    if !opts.snapshots.is_empty() {
        refuse_failed(&snapshots)?;
    }
    let members = cp.recover_observe(&tools, reach.member_timeout, reach.deadline)?;
    let decision = hacore::recover::decide(&members, &snapshots, opts.on.as_deref());
    let steps = match &decision {
        Decision::Refused { .. } => Vec::new(),
        Decision::Recover {
            on,
            address,
            source,
            others,
            ..
        } => {
            let others: Vec<_> = others
                .iter()
                .filter_map(|o| members.iter().find(|m| &m.name == o))
                .map(|m| (m.name.clone(), m.address, m.reachable))
                .collect();
            let pool = topology
                .load_balancer
                .pool
                .clone()
                .filter(|_| topology.has_load_balancer());
            let run = jiff::Timestamp::now()
                .strftime("%Y%m%dT%H%M%SZ")
                .to_string();
            hacore::recover::steps(
                &run,
                on,
                *address,
                source,
                &others,
                pool.as_deref(),
                reach
                    .apiserver_port
                    .unwrap_or(topology.control_plane_endpoint.port),
            )
        }
    };
    Ok(Plan {
        members,
        snapshots,
        decision,
        steps,
    })
}

/// A snapshot named by the caller that fails its integrity check is
/// refused, naming the file and what failed.
fn refuse_failed(snapshots: &[SnapshotFacts]) -> Result<(), Error> {
    match snapshots.iter().find(|s| s.failed.is_some()) {
        Some(bad) => Err(Error::Setting {
            what: bad.path.clone(),
            why: format!(
                "integrity check failed: {}: refused",
                bad.failed.as_deref().unwrap_or_default()
            ),
        }),
        None => Ok(()),
    }
}

fn is_restore_phase(id: &str) -> bool {
    [
        "recover/pool-remove/",
        "recover/fence/",
        "recover/stop/",
        "recover/restore/",
        "recover/manifest/",
        "recover/start/",
        "recover/serving/",
    ]
    .iter()
    .any(|p| id.starts_with(p))
}

struct Ctx<'a> {
    cp: &'a mut KubeadmControlPlane,
    lb: Option<Box<dyn LoadBalancer>>,
    tools: kubeadm::snapshot::Tools,
    serving_bound: Duration,
    boot_wait: Duration,
}

impl Ctx<'_> {
    /// Carry out `op`; Ok(true) when it was already done.
    fn act(&mut self, op: &RecoverOp) -> Result<bool, Error> {
        let cp = &mut *self.cp;
        Ok(match op {
            RecoverOp::StopControlPlane { node } => {
                let done = cp.recover_is_stopped(node)?;
                cp.recover_stop(node)?;
                done
            }
            RecoverOp::StartControlPlane { node } => !cp.recover_start(node)?,
            RecoverOp::Restore {
                node,
                address,
                source,
                kept_suffix,
            } => {
                if cp.recover_is_restored(node, kept_suffix)? {
                    true
                } else {
                    cp.recover_restore(&self.tools, node, *address, source, kept_suffix)?;
                    false
                }
            }
            RecoverOp::PutBackData { node, kept_suffix } => {
                cp.recover_put_back_data(node, kept_suffix)?;
                false
            }
            RecoverOp::OneMemberManifest { node, address } => {
                let done = cp.recover_is_one_member(node, *address)?;
                cp.recover_one_member(node, *address)?;
                done
            }
            RecoverOp::PutBackManifest { node } => {
                cp.recover_put_back_manifest(node)?;
                false
            }
            RecoverOp::WaitServing { node } => {
                cp.recover_wait_serving(node, self.serving_bound)?;
                false
            }
            RecoverOp::WaitReachable { node } => {
                cp.recover_wait_ssh(node, self.boot_wait)?;
                false
            }
            RecoverOp::LoadBalancer(op) => {
                let lb = self.lb.as_mut().ok_or_else(|| Error::Setting {
                    what: "the load balancer".into(),
                    why: "the topology's loadBalancer.manage or runtimeApi says how to reach it"
                        .into(),
                })?;
                let what = Op::LoadBalancer(op.clone()).to_string();
                let fail =
                    |e: hacore::backend::BackendError| Error::Unreachable(format!("{what}: {e}"));
                if lb.is_done(op).map_err(fail)? {
                    true
                } else {
                    lb.apply(op).map_err(fail)?;
                    false
                }
            }
            RecoverOp::ControlPlane(op) => {
                let what = Op::ControlPlane(op.clone()).to_string();
                let fail =
                    |e: hacore::backend::BackendError| Error::Unreachable(format!("{what}: {e}"));
                let check = matches!(op, CpOp::MemberPromoted { .. });
                if cp.is_done(op).map_err(fail)? {
                    true
                } else if check {
                    return Err(Error::Unreachable(format!("{what}: not so")));
                } else {
                    cp.apply(op).map_err(fail)?;
                    false
                }
            }
        })
    }
}

fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

/// Observe, decide and, confirmed, recover (see the module documentation).
/// Progress goes to `events`; nothing is printed.
pub fn run(
    topology: &Topology,
    reach: &Reach,
    opts: &Options,
    events: Events<'_>,
) -> Result<Report, Error> {
    let mut cp_opts = reach.control_plane_options();
    let saved = plan_file(&opts.journal);
    if !opts.resume && !opts.snapshots.is_empty() {
        // Before anything is reached: the files named are checked first.
        let tools = tools(opts.etcdutl.as_deref())?;
        let checked: Vec<SnapshotFacts> = opts
            .snapshots
            .iter()
            .map(|f| kubeadm::recover::snapshot_facts(&tools, f))
            .collect();
        refuse_failed(&checked)?;
    }
    let plan = if opts.resume && saved.exists() {
        Some(saved_plan(&saved, &mut *events)?)
    } else {
        None
    };
    if let Some(Plan {
        decision: Decision::Recover { on, .. },
        ..
    }) = &plan
    {
        cp_opts.primary = Some(on.clone());
    }
    let mut cp = KubeadmControlPlane::from_topology(topology, &cp_opts)?;
    let plan = match plan {
        Some(p) => p,
        None => {
            let t = std::time::Instant::now();
            let p = observe(topology, reach, opts, &cp)?;
            events(Event::Phase {
                name: "observe",
                took: t.elapsed(),
            });
            p
        }
    };
    let on = match &plan.decision {
        Decision::Refused { .. } => {
            return Ok(Report {
                plan,
                outcome: Outcome::Refused,
            });
        }
        Decision::Recover { on, .. } => on.clone(),
    };
    if opts.dry_run || !opts.confirm {
        return Ok(Report {
            plan,
            outcome: if opts.dry_run {
                Outcome::DryRun
            } else {
                Outcome::NeedsConfirm
            },
        });
    }
    if cp_opts.primary.as_deref() != Some(on.as_str()) {
        cp_opts.primary = Some(on.clone());
        cp = KubeadmControlPlane::from_topology(topology, &cp_opts)?;
    }
    let mut journal = crate::journal::open_for_run(&opts.journal, opts.resume, false)?;
    if !opts.resume || !saved.exists() {
        let text =
            serde_json::to_vec_pretty(&plan).map_err(|e| Error::Unreachable(e.to_string()))?;
        std::fs::write(&saved, text).map_err(|e| Error::Setting {
            what: saved.display().to_string(),
            why: e.to_string(),
        })?;
        journal.append(Record::Begin {
            plan: format!("recover {on}"),
            at: now(),
        })?;
    }
    let lb = pfsense::lb::for_disruption(topology, &reach.lb_options())?;
    let mut ctx = Ctx {
        cp: &mut cp,
        lb,
        tools: tools(opts.etcdutl.as_deref())?,
        serving_bound: opts.serving_bound,
        boot_wait: reach.boot_wait,
    };
    execute(&mut ctx, plan, &mut journal, events)
}

/// Run `plan`'s steps not done before (per `journal`), each journaled; on
/// a failure in the restore phase, what was done there is undone.
fn execute(
    ctx: &mut Ctx<'_>,
    plan: Plan,
    journal: &mut crate::journal::FileJournal,
    events: Events<'_>,
) -> Result<Report, Error> {
    let done_before: Vec<String> = journal
        .records()
        .iter()
        .filter_map(|r| match r {
            Record::Done { step, .. } => Some(step.clone()),
            _ => None,
        })
        .collect();
    let mut done_now: Vec<&RecoverStep> = Vec::new();
    for step in &plan.steps {
        if done_before.contains(&step.id) {
            events(Event::Note(format!("{}: done before (journal)", step.id)));
            continue;
        }
        journal.append(Record::Started {
            step: step.id.clone(),
            at: now(),
        })?;
        let t = std::time::Instant::now();
        // Every operation is idempotent (done is checked first): one that
        // failed on a transient error (a connection cut by the load
        // balancer's reload) is tried again, twice at most.
        let result = act_retrying(ctx, step, &mut *events);
        match result {
            Ok(skipped) => {
                journal.append(Record::Done {
                    step: step.id.clone(),
                    at: now(),
                    skipped,
                })?;
                events(Event::Note(format!(
                    "{}: {} ({:.1} s){}",
                    step.id,
                    step.title,
                    t.elapsed().as_secs_f64(),
                    if skipped { ", already so" } else { "" }
                )));
                done_now.push(step);
            }
            Err(e) => {
                let error = e.to_string();
                journal.append(Record::Failed {
                    step: step.id.clone(),
                    at: now(),
                    error: error.clone(),
                })?;
                let rolled_back = if is_restore_phase(&step.id) {
                    roll_back_restore(ctx, &plan, &done_before, &done_now, journal, &mut *events)?
                } else {
                    Vec::new()
                };
                let outcome = Outcome::Failed {
                    step: step.id.clone(),
                    error,
                    rolled_back,
                };
                return Ok(Report {
                    plan: plan.clone(),
                    outcome,
                });
            }
        }
    }
    journal.append(Record::Finished { at: now() })?;
    Ok(Report {
        plan,
        outcome: Outcome::Done,
    })
}

/// The plan a run that is resumed saved in `saved`.
fn saved_plan(saved: &Path, events: &mut dyn FnMut(Event)) -> Result<Plan, Error> {
    let text = std::fs::read(saved).map_err(|e| Error::Setting {
        what: saved.display().to_string(),
        why: e.to_string(),
    })?;
    let plan: Plan = serde_json::from_slice(&text).map_err(|e| Error::Setting {
        what: saved.display().to_string(),
        why: format!("not a recovery plan: {e}"),
    })?;
    events(Event::Note(format!(
        "resuming the plan saved in {}",
        saved.display()
    )));
    Ok(plan)
}

/// Do `step`; one that failed on a transient error is tried again, twice
/// at most.
fn act_retrying(
    ctx: &mut Ctx<'_>,
    step: &RecoverStep,
    events: &mut dyn FnMut(Event),
) -> Result<bool, Error> {
    let mut result = ctx.act(&step.op);
    for _ in 0..2 {
        let transient = matches!(
            step.op,
            RecoverOp::ControlPlane(_) | RecoverOp::LoadBalancer(_)
        );
        match &result {
            Err(e) if transient => {
                events(Event::Warning(format!("{}: {e}; trying again", step.id)));
                std::thread::sleep(Duration::from_secs(2));
                result = ctx.act(&step.op);
            }
            _ => break,
        }
    }
    result
}

/// After a failure in the restore phase: undo, last first, each restore
/// step done (before, per the journal, or in this run) that has a
/// rollback; stop at the first rollback that fails. The ids rolled back.
fn roll_back_restore(
    ctx: &mut Ctx<'_>,
    plan: &Plan,
    done_before: &[String],
    done_now: &[&RecoverStep],
    journal: &mut crate::journal::FileJournal,
    events: &mut dyn FnMut(Event),
) -> Result<Vec<String>, Error> {
    let mut rolled_back = Vec::new();
    let mut undo: Vec<&RecoverStep> = plan
        .steps
        .iter()
        .filter(|s| is_restore_phase(&s.id))
        .filter(|s| done_before.contains(&s.id) || done_now.iter().any(|d| d.id == s.id))
        .collect();
    undo.reverse();
    for s in undo {
        let Some(rb) = &s.rollback else { continue };
        match ctx.act(rb) {
            Ok(_) => {
                journal.append(Record::RolledBack {
                    step: s.id.clone(),
                    at: now(),
                })?;
                rolled_back.push(s.id.clone());
            }
            Err(e) => {
                events(Event::Warning(format!(
                    "{}: its rollback failed: {e}",
                    s.id
                )));
                break;
            }
        }
    }
    Ok(rolled_back)
}
