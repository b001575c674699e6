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

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

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

/// An append-only JSON-lines journal file, synced to disk on every append.
#[derive(Debug)]
pub struct FileJournal {
    path: PathBuf,
    file: File,
    records: Vec<Record>,
}

impl FileJournal {
    /// Open (or create) a journal. A torn last line (a crash mid-write) is
    /// ignored; any other unreadable line is an error naming its line.
    pub fn open(path: &Path) -> Result<FileJournal, ExecError> {
        let io = |e: std::io::Error| ExecError::Journal(format!("{}: {e}", path.display()));
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        let mut text = String::new();
        (&file).read_to_string(&mut text).map_err(io)?;
        let records = parse_journal(&path.display().to_string(), &text)?;
        Ok(FileJournal {
            path: path.to_path_buf(),
            file,
            records,
        })
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

impl Journal for FileJournal {
    fn records(&self) -> &[Record] {
        &self.records
    }
    fn append(&mut self, record: Record) -> Result<(), ExecError> {
        let io = |e: std::io::Error| ExecError::Journal(format!("{}: {e}", self.path.display()));
        let mut line =
            serde_json::to_string(&record).map_err(|e| ExecError::Journal(e.to_string()))?;
        line.push('\n');
        self.file.write_all(line.as_bytes()).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        self.records.push(record);
        Ok(())
    }
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
            Record::Begin { .. } | Record::Blocked { .. } | Record::Finished { .. } => {}
        }
    }
    (status, key, confirmed)
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
    let digest = plan.digest();
    match journal.records().first() {
        Some(Record::Begin { plan: d, .. }) if *d != digest => {
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
    let (mut status, mut key_at, mut confirmed) = replay(journal.records());
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
                gates,
                requester,
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

#[allow(clippy::too_many_arguments)]
fn run_step(
    plan: &Plan,
    step: &Step,
    gates: bool,
    requester: Option<&str>,
    b: &mut Backends<'_>,
    journal: &mut dyn Journal,
    opts: &Options,
    on_event: &mut dyn FnMut(Event),
    key_at: &mut Option<Timestamp>,
    confirmed: &mut BTreeSet<String>,
) -> Result<StepEnd, StepFailure> {
    // Manual steps: a person does them and says so.
    if step.op.is_manual() {
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
        return record_done(step, b, journal, on_event);
    }
    // Already in place? Then there is nothing to do, whatever the journal says.
    let done = b
        .is_done(&step.op)
        .map_err(|e| StepFailure::Step(failed("checking whether it is done", e)))?;
    if done && !step.op.is_check() {
        if !opts.dry_run {
            journal.append(Record::Done {
                step: step.id.clone(),
                at: b.clock.now(),
                skipped: true,
            })?;
        }
        on_event(Event::Skipped {
            id: step.id.clone(),
            why: "already in place".into(),
        });
        return Ok(StepEnd::Done);
    }
    // Gates.
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
            if !opts.dry_run {
                journal.append(Record::Blocked {
                    step: step.id.clone(),
                    at: b.clock.now(),
                    reasons: reasons.clone(),
                })?;
            }
            return Ok(StepEnd::Stop(Outcome::Blocked {
                step: step.id.clone(),
                reasons,
            }));
        }
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
    }
    journal.append(Record::Started {
        step: step.id.clone(),
        at: b.clock.now(),
    })?;
    if !step.op.is_check() {
        b.apply(&step.op)
            .map_err(|e| StepFailure::Step(failed("applying", e)))?;
    }
    if step.op == Op::ControlPlane(CpOp::UploadCerts) {
        let at = b.clock.now();
        journal.append(Record::CertificateKey { at })?;
        *key_at = Some(at);
    }
    let verified = b
        .is_done(&step.op)
        .map_err(|e| StepFailure::Step(failed("verifying", e)))?;
    if !verified {
        return Err(StepFailure::Step(format!(
            "verification failed: `{}` is not in effect",
            step.op
        )));
    }
    record_done(step, b, journal, on_event)
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

fn rollback(
    phase: &Phase,
    status: &BTreeMap<String, StepStatus>,
    b: &mut Backends<'_>,
    journal: &mut dyn Journal,
    on_event: &mut dyn FnMut(Event),
) -> Result<(), ExecError> {
    for step in phase.steps.iter().rev() {
        let touched = matches!(
            status.get(&step.id),
            Some(StepStatus::Done | StepStatus::Started)
        );
        if !touched {
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
