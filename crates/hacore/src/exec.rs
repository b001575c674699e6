//! The executor: runs a plan through the backend traits, one step at a time.
//!
//! For each step it asks the backend whether the effect is already in place
//! (so a resumed run never doubles a half-done step), checks the step's
//! gates against a fresh observation, writes `started` to the journal and
//! flushes it to disk, acts, verifies (the effect must now be in place) and
//! writes `done`. A failed step rolls back the current phase in reverse
//! order. A gate that does not allow a step stops the run without rolling
//! back: the cluster is not in a state to take more changes, rollbacks
//! included. Manual steps wait for a confirmation. Joins get a certificate
//! key younger than its 2-hour lifetime, re-uploading when needed.
//!
//! Pauses (issue 21): a reboot records the node's boot id in the journal
//! before it acts, so a resumed run knows whether the reboot happened (the
//! id changed: done) and never asks twice (unchanged: it waits for the one
//! asked). A caller's [`Watch`] is asked at every step boundary whether
//! the run may still act (the disruption lock held), and, in a run resumed
//! from its journal, for its gate again before each step that takes
//! something down. The journal is a trait: the file (`haops::journal`)
//! cuts a torn last line ([`intact`]) before it appends, and syncs every
//! record; this module does no I/O.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::backend::{BackendError, Backends, CpOp, Op};
use crate::gate::{Policy, Request, evaluate};
use crate::plan::{CERTIFICATE_KEY_MARGIN, CERTIFICATE_KEY_TTL, Phase, Plan, Step};
use crate::verdict::Decision;

/// One journal line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "event")]
pub enum Record {
    /// The journal belongs to this plan.
    Begin {
        /// Plan digest.
        plan: String,
        /// When.
        at: Timestamp,
    },
    /// About to act on a step.
    Started {
        /// Step id.
        step: String,
        /// When.
        at: Timestamp,
    },
    /// The step's effect is in place.
    Done {
        /// Step id.
        step: String,
        /// When.
        at: Timestamp,
        /// It was already in place: nothing was done.
        #[serde(default)]
        skipped: bool,
    },
    /// The step failed.
    Failed {
        /// Step id.
        step: String,
        /// When.
        at: Timestamp,
        /// Why.
        error: String,
    },
    /// A gate did not allow the step.
    Blocked {
        /// Step id.
        step: String,
        /// When.
        at: Timestamp,
        /// The blocking findings.
        reasons: Vec<String>,
    },
    /// A step's effect was undone.
    RolledBack {
        /// Step id.
        step: String,
        /// When.
        at: Timestamp,
    },
    /// A person confirmed a manual step.
    Confirmed {
        /// Step id.
        step: String,
        /// When.
        at: Timestamp,
    },
    /// Before a reboot: the node's boot id, so that a resumed run tells
    /// whether the reboot happened (the id changed) and never asks twice.
    BootId {
        /// Step id.
        step: String,
        /// The node.
        node: String,
        /// Its boot id before the reboot.
        boot_id: String,
        /// When.
        at: Timestamp,
    },
    /// A certificate key was issued.
    CertificateKey {
        /// When.
        at: Timestamp,
    },
    /// Every step is done.
    Finished {
        /// When.
        at: Timestamp,
    },
}

/// Where records go. Appends must be durable before they return.
pub trait Journal {
    /// Every record so far.
    fn records(&self) -> &[Record];
    /// Append one record, durably.
    fn append(&mut self, record: Record) -> Result<(), ExecError>;
}

/// A journal in memory (tests, dry runs).
#[derive(Debug, Default, Clone)]
pub struct MemJournal {
    /// The records.
    pub records: Vec<Record>,
}

impl Journal for MemJournal {
    fn records(&self) -> &[Record] {
        &self.records
    }
    fn append(&mut self, record: Record) -> Result<(), ExecError> {
        self.records.push(record);
        Ok(())
    }
}

/// What of a journal file to keep (see [`intact`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intact {
    /// Bytes to keep from the start: everything before a torn last line.
    pub keep: usize,
    /// The kept text's last record lacks its newline: append one.
    pub newline: bool,
}

/// Where a journal file's records end: its last non-blank line is cut when
/// it is not a whole record (a write torn by a crash: cut short, or zeros
/// where the data never reached the disk), and a whole last record
/// without its newline is completed. Only the last line is judged: an
/// unreadable line before it is for [`parse_journal`] to name.
pub fn intact(bytes: &[u8]) -> Intact {
    let blank = |l: &[u8]| l.iter().all(u8::is_ascii_whitespace);
    // The last non-blank line: [start, end), end excluding its newline.
    let mut end = bytes.len();
    loop {
        let start = bytes[..end]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let line = &bytes[start..end];
        if !blank(line) {
            let whole = std::str::from_utf8(line)
                .ok()
                .is_some_and(|l| serde_json::from_str::<Record>(l).is_ok());
            return if whole {
                Intact {
                    keep: bytes.len(),
                    newline: !bytes[end..].contains(&b'\n'),
                }
            } else {
                Intact {
                    keep: start,
                    newline: false,
                }
            };
        }
        if start == 0 {
            // Only blank lines: nothing to keep.
            return Intact {
                keep: 0,
                newline: false,
            };
        }
        end = start - 1;
    }
}

/// Parse a journal's text, one JSON record a line; `file` names it in
/// errors. A torn last line (a crash mid-write) is ignored; any other
/// unreadable line is an error naming its line.
pub fn parse_journal(file: &str, text: &str) -> Result<Vec<Record>, ExecError> {
    let mut records = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let n = lines.len();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(r) => records.push(r),
            Err(_) if i + 1 == n => break,
            Err(e) => {
                return Err(ExecError::Journal(format!("{file}:{}: {e}", i + 1)));
            }
        }
    }
    Ok(records)
}

/// What the executor reports while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A step begins (index from 0, total).
    Step {
        /// Index.
        index: usize,
        /// Total steps.
        total: usize,
        /// Step id.
        id: String,
        /// Title.
        title: String,
    },
    /// The step was already done.
    Skipped {
        /// Step id.
        id: String,
        /// Why.
        why: String,
    },
    /// Would apply (dry run).
    WouldApply {
        /// Step id.
        id: String,
    },
    /// The step's effect is in place.
    Done {
        /// Step id.
        id: String,
    },
    /// A new certificate key was uploaded.
    CertificateKey,
    /// The step failed.
    Failed {
        /// Step id.
        id: String,
        /// Why.
        error: String,
    },
    /// Undoing a step.
    RollingBack {
        /// Step id.
        id: String,
    },
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "outcome")]
pub enum Outcome {
    /// Every step is done.
    Completed,
    /// A dry run: these steps would be applied.
    DryRun {
        /// Step ids.
        #[serde(rename = "wouldApply")]
        would_apply: Vec<String>,
    },
    /// A gate did not allow a step; nothing was rolled back.
    Blocked {
        /// Step id.
        step: String,
        /// Why.
        reasons: Vec<String>,
    },
    /// A manual step waits for a person.
    AwaitingConfirmation {
        /// Step id.
        step: String,
        /// What to do.
        instruction: String,
    },
    /// A step failed and its phase was rolled back.
    RolledBack {
        /// Phase id.
        phase: String,
        /// Step id.
        step: String,
        /// Why.
        error: String,
    },
}

/// Errors that stop the executor itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    /// The journal could not be read or written.
    #[error("journal: {0}")]
    Journal(String),
    /// The journal was written for another plan.
    #[error(
        "the journal belongs to plan {journal}, not this plan ({plan}); use a new journal file"
    )]
    PlanMismatch {
        /// The journal's digest.
        journal: String,
        /// This plan's digest.
        plan: String,
    },
    /// A rollback failed: the cluster needs a person.
    #[error("rolling back step {step} failed: {error}; the journal says what was done")]
    RollbackFailed {
        /// Step id.
        step: String,
        /// Why.
        error: String,
    },
}

/// Options.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Read-only: observe and report what would be applied.
    pub dry_run: bool,
    /// Manual steps a person confirms as done.
    pub confirm: BTreeSet<String>,
}

/// Where each step stands according to the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepStatus {
    /// Never started.
    Pending,
    /// Started, not recorded as done (a crash or a failure).
    Started,
    /// Done.
    Done,
    /// Undone by a rollback.
    RolledBack,
}

/// Replay a journal into step statuses, the last certificate key time, and
/// the confirmed steps.
pub fn replay(
    records: &[Record],
) -> (
    BTreeMap<String, StepStatus>,
    Option<Timestamp>,
    BTreeSet<String>,
) {
    let mut status = BTreeMap::new();
    let mut key = None;
    let mut confirmed = BTreeSet::new();
    for r in records {
        match r {
            Record::Started { step, .. } | Record::Failed { step, .. } => {
                status.insert(step.clone(), StepStatus::Started);
            }
            Record::Done { step, .. } => {
                status.insert(step.clone(), StepStatus::Done);
            }
            Record::RolledBack { step, .. } => {
                status.insert(step.clone(), StepStatus::RolledBack);
            }
            Record::Confirmed { step, .. } => {
                confirmed.insert(step.clone());
            }
            Record::CertificateKey { at } => key = Some(*at),
            Record::Begin { .. }
            | Record::Blocked { .. }
            | Record::BootId { .. }
            | Record::Finished { .. } => {}
        }
    }
    (status, key, confirmed)
}

/// The boot ids recorded before reboots whose step has not ended since
/// (no `done`, no `rolled-back`): reboots an earlier run asked for, by
/// step id, with the node and its boot id then.
pub fn pending_reboots(records: &[Record]) -> BTreeMap<String, (String, String)> {
    let mut pending = BTreeMap::new();
    for r in records {
        match r {
            Record::BootId {
                step,
                node,
                boot_id,
                ..
            } => {
                pending.insert(step.clone(), (node.clone(), boot_id.clone()));
            }
            Record::Done { step, .. } | Record::RolledBack { step, .. } => {
                pending.remove(step);
            }
            _ => {}
        }
    }
    pending
}

/// What the caller of a run checks at the step boundaries, besides the
/// steps' own gates (their preconditions, evaluated in every run).
pub trait Watch {
    /// Right before a step acts: whether the run may still act (the
    /// disruption lock is still held). `Err(why)`: the run stops there and
    /// rolls the current phase back, saying why.
    fn hold(&mut self, b: &mut Backends<'_>) -> Result<(), String>;
    /// Before a step that takes something down ([`Op::takes_down`]) and has
    /// no gate of its own, in a run resumed from its journal: the blocking
    /// reasons of the caller's gate on the cluster as it is now (none:
    /// allowed; `Err`: the gate could not be evaluated).
    fn regate(&mut self, step: &Step, b: &mut Backends<'_>) -> Result<Vec<String>, String>;
}

/// No lock, no gate of the caller's: only the steps' own gates.
struct Unwatched;

impl Watch for Unwatched {
    fn hold(&mut self, _: &mut Backends<'_>) -> Result<(), String> {
        Ok(())
    }
    fn regate(&mut self, _: &Step, _: &mut Backends<'_>) -> Result<Vec<String>, String> {
        Ok(Vec::new())
    }
}

fn failed(what: &str, e: BackendError) -> String {
    format!("{what}: {e}")
}

/// Run (or resume) `plan`.
pub fn run(
    plan: &Plan,
    b: &mut Backends<'_>,
    journal: &mut dyn Journal,
    opts: &Options,
    on_event: &mut dyn FnMut(Event),
) -> Result<Outcome, ExecError> {
    run_as(plan, b, journal, opts, None, on_event)
}

/// [`run`] for `requester`, the identity that holds the disruption lock
/// while the plan runs: the steps' gates see the lock as the requester's
/// (the `lock` rule passes for its holder).
pub fn run_as(
    plan: &Plan,
    b: &mut Backends<'_>,
    journal: &mut dyn Journal,
    opts: &Options,
    requester: Option<&str>,
    on_event: &mut dyn FnMut(Event),
) -> Result<Outcome, ExecError> {
    run_watched(plan, b, journal, opts, requester, &mut Unwatched, on_event)
}

/// [`run_as`] under `watch`: before each step acts, `watch.hold` (a lost
/// lock stops the run and rolls back the current phase); in a run resumed
/// from its journal, before each step that takes something down and has
/// no gate of its own, `watch.regate` (a gate that does not allow it
/// stops the run, as a step's own gate does).
pub fn run_watched(
    plan: &Plan,
    b: &mut Backends<'_>,
    journal: &mut dyn Journal,
    opts: &Options,
    requester: Option<&str>,
    watch: &mut dyn Watch,
    on_event: &mut dyn FnMut(Event),
) -> Result<Outcome, ExecError> {
    let resumed = begin(plan, b, journal, opts)?;
    let (mut status, mut key_at, mut confirmed) = replay(journal.records());
    let reboots = pending_reboots(journal.records());
    let total = plan.steps().count();
    let mut index = 0;
    let mut would_apply: Vec<String> = Vec::new();
    for phase in &plan.phases {
        for step in &phase.steps {
            on_event(Event::Step {
                index,
                total,
                id: step.id.clone(),
                title: step.title.clone(),
            });
            index += 1;
            if status.get(&step.id) == Some(&StepStatus::Done) {
                on_event(Event::Skipped {
                    id: step.id.clone(),
                    why: "done in an earlier run".into(),
                });
                continue;
            }
            // In a dry run, gates after the first step that would change
            // something describe a cluster that does not exist yet: skip them.
            let gates = !opts.dry_run || would_apply.is_empty();
            let attempt = run_step(
                plan,
                step,
                Gating {
                    gates,
                    resumed,
                    requester,
                    asked: reboots.get(&step.id),
                },
                watch,
                b,
                journal,
                opts,
                on_event,
                &mut key_at,
                &mut confirmed,
            );
            match attempt {
                Ok(StepEnd::Done) => {
                    status.insert(step.id.clone(), StepStatus::Done);
                }
                Ok(StepEnd::WouldApply) => would_apply.push(step.id.clone()),
                Ok(StepEnd::Stop(outcome)) => return Ok(outcome),
                Err(StepFailure::Exec(e)) => return Err(e),
                Err(StepFailure::Step(error)) => {
                    status.insert(step.id.clone(), StepStatus::Started);
                    journal.append(Record::Failed {
                        step: step.id.clone(),
                        at: b.clock.now(),
                        error: error.clone(),
                    })?;
                    on_event(Event::Failed {
                        id: step.id.clone(),
                        error: error.clone(),
                    });
                    rollback(phase, &status, b, journal, on_event)?;
                    return Ok(Outcome::RolledBack {
                        phase: phase.id.clone(),
                        step: step.id.clone(),
                        error,
                    });
                }
            }
        }
    }
    if opts.dry_run {
        return Ok(Outcome::DryRun { would_apply });
    }
    journal.append(Record::Finished { at: b.clock.now() })?;
    Ok(Outcome::Completed)
}

enum StepEnd {
    Done,
    WouldApply,
    Stop(Outcome),
}

enum StepFailure {
    Step(String),
    Exec(ExecError),
}

impl From<ExecError> for StepFailure {
    fn from(e: ExecError) -> Self {
        StepFailure::Exec(e)
    }
}

/// The journal begins with this plan (a fresh run records `begin`, but
/// not a dry run); whether the run is resumed from it.
fn begin(
    plan: &Plan,
    b: &mut Backends<'_>,
    journal: &mut dyn Journal,
    opts: &Options,
) -> Result<bool, ExecError> {
    let digest = plan.digest();
    let resumed = !journal.records().is_empty();
    match journal.records().first() {
        Some(Record::Begin { plan: d, .. }) if *d != digest && *d != plan.legacy_digest() => {
            return Err(ExecError::PlanMismatch {
                journal: d.clone(),
                plan: digest,
            });
        }
        Some(Record::Begin { .. }) => {}
        Some(_) => {
            return Err(ExecError::Journal(
                "the journal does not start with `begin`".into(),
            ));
        }
        None if !opts.dry_run => journal.append(Record::Begin {
            plan: digest,
            at: b.clock.now(),
        })?,
        None => {}
    }
    Ok(resumed)
}

/// How a step is gated.
struct Gating<'a> {
    /// Evaluate gates at all (a dry run skips them after its first change).
    gates: bool,
    /// The run is resumed from its journal.
    resumed: bool,
    /// The lock holder.
    requester: Option<&'a str>,
    /// A reboot an earlier run asked for: node, boot id before.
    asked: Option<&'a (String, String)>,
}

#[allow(clippy::too_many_arguments)]
fn run_step(
    plan: &Plan,
    step: &Step,
    gating: Gating<'_>,
    watch: &mut dyn Watch,
    b: &mut Backends<'_>,
    journal: &mut dyn Journal,
    opts: &Options,
    on_event: &mut dyn FnMut(Event),
    key_at: &mut Option<Timestamp>,
    confirmed: &mut BTreeSet<String>,
) -> Result<StepEnd, StepFailure> {
    // A step boundary: still ours to act? (The lock may have been lost
    // during the last step.)
    if !opts.dry_run {
        watch
            .hold(b)
            .map_err(|why| StepFailure::Step(format!("stopped before acting: {why}")))?;
    }
    // Manual steps: a person does them and says so.
    if step.op.is_manual() {
        return manual_step(step, b, journal, opts, on_event, confirmed);
    }
    let asked = gating.asked;
    let done = match already_done(step, asked, b, journal, opts, on_event)? {
        Done::Skipped => return Ok(StepEnd::Done),
        Done::InPlace => true,
        Done::No => false,
    };
    if let Some(end) = gate_step(plan, step, gating, watch, b, journal, opts)? {
        return Ok(end);
    }
    if opts.dry_run {
        if !step.op.is_check() {
            on_event(Event::WouldApply {
                id: step.id.clone(),
            });
            return Ok(StepEnd::WouldApply);
        }
        // Checks are read-only: run them.
        return if done {
            Ok(StepEnd::Done)
        } else {
            Ok(StepEnd::WouldApply)
        };
    }
    // A join needs a certificate key that outlives it.
    if step.op.needs_certificate_key() {
        fresh_certificate_key(step, b, journal, on_event, key_at)?;
    }
    journal.append(Record::Started {
        step: step.id.clone(),
        at: b.clock.now(),
    })?;
    act(step, asked, b, journal)?;
    if step.op == Op::ControlPlane(CpOp::UploadCerts) {
        let at = b.clock.now();
        journal.append(Record::CertificateKey { at })?;
        *key_at = Some(at);
    }
    let verified = match (&step.op, asked) {
        // The backend did not ask for this reboot: the boot id tells.
        (Op::ControlPlane(CpOp::Reboot { node }), Some((_, before))) => b
            .control_plane
            .boot_id(node)
            .map_err(|e| StepFailure::Step(failed("verifying", e)))?
            .is_some_and(|id| !id.is_empty() && id != *before),
        _ => b
            .is_done(&step.op)
            .map_err(|e| StepFailure::Step(failed("verifying", e)))?,
    };
    if !verified {
        return Err(StepFailure::Step(format!(
            "verification failed: `{}` is not in effect",
            step.op
        )));
    }
    record_done(step, b, journal, on_event)
}

/// A manual step: a person does it and says so (`--confirm STEP`).
fn manual_step(
    step: &Step,
    b: &mut Backends<'_>,
    journal: &mut dyn Journal,
    opts: &Options,
    on_event: &mut dyn FnMut(Event),
    confirmed: &mut BTreeSet<String>,
) -> Result<StepEnd, StepFailure> {
    if opts.dry_run && !confirmed.contains(&step.id) {
        on_event(Event::WouldApply {
            id: step.id.clone(),
        });
        return Ok(StepEnd::WouldApply);
    }
    if !confirmed.contains(&step.id) {
        if !opts.confirm.contains(&step.id) {
            return Ok(StepEnd::Stop(Outcome::AwaitingConfirmation {
                step: step.id.clone(),
                instruction: step.title.clone(),
            }));
        }
        journal.append(Record::Confirmed {
            step: step.id.clone(),
            at: b.clock.now(),
        })?;
        confirmed.insert(step.id.clone());
    }
    record_done(step, b, journal, on_event)
}

/// Whether a step needs doing.
enum Done {
    /// Done before: journaled as skipped.
    Skipped,
    /// A check whose condition already holds: it still runs (and, in a
    /// dry run, counts as done).
    InPlace,
    /// To do.
    No,
}

/// A reboot an earlier run asked for is done if the node booted since (its
/// boot id changed); else it may be under way, and is waited for, never
/// asked again. Any other step already in place has nothing to do,
/// whatever the journal says.
fn already_done(
    step: &Step,
    asked: Option<&(String, String)>,
    b: &mut Backends<'_>,
    journal: &mut dyn Journal,
    opts: &Options,
    on_event: &mut dyn FnMut(Event),
) -> Result<Done, StepFailure> {
    let mut skip = |why: String, b: &mut Backends<'_>| -> Result<Done, StepFailure> {
        if !opts.dry_run {
            journal.append(Record::Done {
                step: step.id.clone(),
                at: b.clock.now(),
                skipped: true,
            })?;
        }
        on_event(Event::Skipped {
            id: step.id.clone(),
            why,
        });
        Ok(Done::Skipped)
    };
    if let Some((node, before)) = asked {
        // Unreadable (the node or the API down mid-reboot): not known yet.
        let now = b.control_plane.boot_id(node).ok().flatten();
        if now
            .as_ref()
            .is_some_and(|id| !id.is_empty() && id != before)
        {
            return skip(
                format!("{node} rebooted after an earlier run asked (boot id {before} then)"),
                b,
            );
        }
    }
    let done = asked.is_none()
        && b.is_done(&step.op)
            .map_err(|e| StepFailure::Step(failed("checking whether it is done", e)))?;
    if done && !step.op.is_check() {
        return skip("already in place".into(), b);
    }
    Ok(if done { Done::InPlace } else { Done::No })
}

/// The step's gates (its preconditions' policies), and for a resumed run
/// the caller's gate again before taking anything down: the cluster may
/// have changed while the run was stopped. `Some` when blocked.
fn gate_step(
    plan: &Plan,
    step: &Step,
    gating: Gating<'_>,
    watch: &mut dyn Watch,
    b: &mut Backends<'_>,
    journal: &mut dyn Journal,
    opts: &Options,
) -> Result<Option<StepEnd>, StepFailure> {
    let Gating {
        gates,
        resumed,
        requester,
        ..
    } = gating;
    for g in step.preconditions.iter().filter(|_| gates) {
        let topology = plan.topology_with(&g.nodes);
        let state = b.observer.observe(&topology);
        let policy = Policy::builtin(&g.policy).ok_or_else(|| {
            StepFailure::Step(format!("unknown policy `{}` in the plan", g.policy))
        })?;
        let request = Request {
            action: g.action,
            target: &g.target,
            requester,
        };
        let verdict = evaluate(&topology, &state, &policy, &request, b.clock.now())
            .map_err(|e| StepFailure::Step(e.to_string()))?;
        if verdict.decision != Decision::Allow {
            let reasons: Vec<String> = verdict
                .blocking()
                .map(|f| format!("{} ({}): {}", f.rule, f.severity, f.message))
                .collect();
            return blocked(step, reasons, b, journal, opts).map(Some);
        }
    }
    if gates && resumed && step.op.takes_down() && step.preconditions.is_empty() {
        let reasons = watch
            .regate(step, b)
            .map_err(|e| StepFailure::Step(format!("gate: {e}")))?;
        if !reasons.is_empty() {
            return blocked(step, reasons, b, journal, opts).map(Some);
        }
    }
    Ok(None)
}

/// Uploads the certificates again unless the key outlives the step.
fn fresh_certificate_key(
    step: &Step,
    b: &mut Backends<'_>,
    journal: &mut dyn Journal,
    on_event: &mut dyn FnMut(Event),
    key_at: &mut Option<Timestamp>,
) -> Result<(), StepFailure> {
    let now = b.clock.now();
    let budget = CERTIFICATE_KEY_TTL.0 - CERTIFICATE_KEY_MARGIN.0;
    let fresh =
        key_at.is_some_and(|at| now.duration_since(at) + step.expected_duration.0 <= budget);
    if !fresh {
        let upload = Op::ControlPlane(CpOp::UploadCerts);
        b.apply(&upload)
            .map_err(|e| StepFailure::Step(failed("re-uploading certificates", e)))?;
        let at = b.clock.now();
        journal.append(Record::CertificateKey { at })?;
        *key_at = Some(at);
        on_event(Event::CertificateKey);
    }
    Ok(())
}

/// The step's act: a reboot journals the node's boot id first (or, asked
/// by an earlier run, is waited for); a check does nothing.
fn act(
    step: &Step,
    asked: Option<&(String, String)>,
    b: &mut Backends<'_>,
    journal: &mut dyn Journal,
) -> Result<(), StepFailure> {
    match (&step.op, asked) {
        (Op::ControlPlane(CpOp::Reboot { node }), Some((_, before))) => {
            b.control_plane.await_reboot(node, before).map_err(|e| {
                StepFailure::Step(format!(
                    "the reboot of {node} an earlier run asked for (boot id {before} then) has not happened: {e}; not asking again: reboot it by hand, or check it, then resume"
                ))
            })?;
        }
        (Op::ControlPlane(CpOp::Reboot { node }), None) => {
            let id = b.control_plane.boot_id(node).map_err(|e| {
                StepFailure::Step(failed(
                    &format!("reading {node}'s boot id before its reboot"),
                    e,
                ))
            })?;
            if let Some(boot_id) = id {
                journal.append(Record::BootId {
                    step: step.id.clone(),
                    node: node.clone(),
                    boot_id,
                    at: b.clock.now(),
                })?;
            }
            b.apply(&step.op)
                .map_err(|e| StepFailure::Step(failed("applying", e)))?;
        }
        _ if !step.op.is_check() => {
            b.apply(&step.op)
                .map_err(|e| StepFailure::Step(failed("applying", e)))?;
        }
        _ => {}
    }
    Ok(())
}

/// Record a step as done and say so.
fn record_done(
    step: &Step,
    b: &mut Backends<'_>,
    journal: &mut dyn Journal,
    on_event: &mut dyn FnMut(Event),
) -> Result<StepEnd, StepFailure> {
    journal.append(Record::Done {
        step: step.id.clone(),
        at: b.clock.now(),
        skipped: false,
    })?;
    on_event(Event::Done {
        id: step.id.clone(),
    });
    Ok(StepEnd::Done)
}

/// A gate did not allow `step`: journal it (unless a dry run) and stop.
fn blocked(
    step: &Step,
    reasons: Vec<String>,
    b: &mut Backends<'_>,
    journal: &mut dyn Journal,
    opts: &Options,
) -> Result<StepEnd, StepFailure> {
    if !opts.dry_run {
        journal.append(Record::Blocked {
            step: step.id.clone(),
            at: b.clock.now(),
            reasons: reasons.clone(),
        })?;
    }
    Ok(StepEnd::Stop(Outcome::Blocked {
        step: step.id.clone(),
        reasons,
    }))
}

fn rollback(
    phase: &Phase,
    status: &BTreeMap<String, StepStatus>,
    b: &mut Backends<'_>,
    journal: &mut dyn Journal,
    on_event: &mut dyn FnMut(Event),
) -> Result<(), ExecError> {
    // The steps this tool acted on, in this run or an earlier one (a
    // `started` record). A step recorded done without one was found in
    // place before any run touched it: its effect is not ours to undo.
    let ours: BTreeSet<String> = journal
        .records()
        .iter()
        .filter_map(|r| match r {
            Record::Started { step, .. } => Some(step.clone()),
            _ => None,
        })
        .collect();
    for step in phase.steps.iter().rev() {
        let touched = matches!(
            status.get(&step.id),
            Some(StepStatus::Done | StepStatus::Started)
        );
        if !touched {
            continue;
        }
        if step.rollback.is_some() && !ours.contains(&step.id) {
            on_event(Event::Skipped {
                id: step.id.clone(),
                why: "in place before this tool acted on it: not ours to undo, left as found"
                    .into(),
            });
            journal.append(Record::RolledBack {
                step: step.id.clone(),
                at: b.clock.now(),
            })?;
            continue;
        }
        // Steps without an undo (checks, waits) are still marked rolled back,
        // so that a resumed run redoes the whole phase.
        let Some(undo) = &step.rollback else {
            journal.append(Record::RolledBack {
                step: step.id.clone(),
                at: b.clock.now(),
            })?;
            continue;
        };
        on_event(Event::RollingBack {
            id: step.id.clone(),
        });
        let err = |e: BackendError| ExecError::RollbackFailed {
            step: step.id.clone(),
            error: e.to_string(),
        };
        if !b.is_done(undo).map_err(err)? {
            b.apply(undo).map_err(err)?;
            if !b.is_done(undo).map_err(err)? {
                return Err(ExecError::RollbackFailed {
                    step: step.id.clone(),
                    error: format!("`{undo}` is not in effect after applying it"),
                });
            }
        }
        journal.append(Record::RolledBack {
            step: step.id.clone(),
            at: b.clock.now(),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod parse_journal_tests {
    use super::*;

    #[test]
    fn lines_are_read_torn_last_line_skipped_other_errors_named() {
        let begin = r#"{"event":"begin","plan":"p","at":"2026-05-21T22:00:00Z"}"#;
        let done = r#"{"event":"finished","at":"2026-05-21T22:00:01Z"}"#;
        let crlf = format!("{begin}\r\n\r\n{done}\r\n");
        assert_eq!(parse_journal("j", &crlf).unwrap().len(), 2);
        let torn = format!("{begin}\n{{\"event\":\"sta");
        assert_eq!(parse_journal("j", &torn).unwrap().len(), 1);
        let bad = format!("{begin}\nnot json\n{done}\n");
        let err = parse_journal("run.jsonl", &bad).unwrap_err().to_string();
        assert!(err.contains("run.jsonl:2: "), "{err}");
    }
}
