//! The planned disruption of a drill: `hacli disrupt reboot NODE`'s plan
//! (gate and lock, drain the backend, move etcd leadership away, cordon
//! and drain, reboot, wait until healthy, backend ready, uncordon,
//! release), run on the live cluster with its journal on a thread of its
//! own while the drill's traffic goes. The drill follows the executor's
//! events, each stamped with the moment it happened (never the journal
//! file): every step on the drill's time axis, and the etcd leader
//! observed before, right after the move-leader step and after.

use std::cell::RefCell;

use hacore::exec;

use kubeadm::drill::{PlannedLeadership, PlannedReport, PlannedStep};

use super::Disruption;

use crate::Reach;
use crate::events::{self, Event, Stamped};

/// Where the drill's events go: the caller's sink, shared by the drill's
/// progress lines and the planned disruption (one thread, brief borrows).
pub(super) type Sink<'e> = RefCell<&'e mut dyn FnMut(Event)>;

/// Send `e` to the sink.
pub(super) fn emit(sink: &Sink<'_>, e: Event) {
    (*sink.borrow_mut())(e)
}

/// What the planned disruption needs to run (moved to its thread).
pub(super) struct Job {
    pub(super) topology: hacore::Topology,
    pub(super) plan: hacore::plan::Plan,
    pub(super) gate: hacore::disrupt::Gate,
    pub(super) journal: std::path::PathBuf,
    pub(super) reach: Reach,
    pub(super) lock_ttl: std::time::Duration,
}

/// What the planned disruption did, gathered while it ran.
#[derive(Default)]
pub(super) struct PlannedRun {
    pub(super) report: Option<Result<hacore::disrupt::Report, String>>,
    pub(super) leadership: PlannedLeadership,
    /// The executor's events, stamped.
    pub(super) events: Vec<Stamped>,
}

/// The disruption the drill runs.
pub(super) struct Planned<'a, 'e> {
    pub(super) job: Option<Job>,
    pub(super) node: String,
    pub(super) config: kubeadm::ObserverConfig,
    pub(super) run: &'a RefCell<PlannedRun>,
    pub(super) sink: &'a Sink<'e>,
}

/// Run the plan on the live cluster: connect, gate and lock, the executor
/// with the journal, release; each executor event stamped and sent.
/// The plan through `haops::disrupt::run_plan` (gate and lock, the
/// executor with the journal, release), as `hacli disrupt` runs it, on the
/// live backend; the caller silences what it causes.
fn run_plan(
    job: Job,
    node: &str,
    tx: tokio::sync::mpsc::UnboundedSender<Stamped>,
) -> Result<hacore::disrupt::Report, String> {
    let Job {
        topology: _,
        plan,
        gate,
        journal,
        reach,
        lock_ttl,
    } = job;
    let request = crate::disrupt::Request {
        gate,
        options: Default::default(),
        resume: false,
        dry_run: false,
        lock_ttl,
        silence: None,
    };
    let mut sink = events::stamped(move |s| {
        let _ = tx.send(s);
    });
    crate::disrupt::run_plan(
        &plan,
        node,
        "drill",
        &request,
        &journal,
        &crate::disrupt::Backend::Live(reach),
        &mut sink,
    )
    .map_err(|e| e.to_string())
}

/// The etcd leader (member name) now, and the state it was seen in.
async fn etcd_leader(
    obs: &kubeadm::Observer,
) -> Result<(Option<String>, hacore::ClusterState), String> {
    let state = Box::pin(obs.observe()).await;
    if let Some(e) = state.probe_errors.get(&hacore::state::Probe::Etcd) {
        return Err(format!("etcd not observed: {e}"));
    }
    let leader = state
        .etcd
        .as_ref()
        .and_then(|e| e.members.iter().find(|m| m.leader))
        .map(hacore::rules::member_label);
    Ok((leader, state))
}

impl Planned<'_, '_> {
    /// The leader before, and where the plan would move it.
    async fn before(
        &self,
        obs: &kubeadm::Observer,
        topology: &hacore::Topology,
    ) -> Result<(), String> {
        let (leader, state) = etcd_leader(obs).await.map_err(|e| format!("before: {e}"))?;
        let mut run = self.run.borrow_mut();
        run.leadership.before = leader;
        if let Ok(hacore::disrupt::Leadership::Move { to, .. }) =
            hacore::disrupt::leader_transfer(topology, &state, &self.node, jiff::Timestamp::now())
        {
            run.leadership.expected_to = Some(to);
        }
        Ok(())
    }

    /// One executor event: kept, passed on, and right after the
    /// move-leader step, the leader observed.
    async fn seen(&self, s: Stamped, obs: Option<&kubeadm::Observer>, errors: &mut Vec<String>) {
        let moved = matches!(&s.event, Event::Step(exec::Event::Done { id }) if id.ends_with("/move-leader"));
        emit(self.sink, s.event.clone());
        self.run.borrow_mut().events.push(s);
        if let (true, Some(obs)) = (moved, obs) {
            match etcd_leader(obs).await {
                Ok((leader, _)) => self.run.borrow_mut().leadership.after_move = leader,
                Err(e) => errors.push(format!("after the move: {e}")),
            }
        }
    }
}

impl Disruption for Planned<'_, '_> {
    fn describe(&self) -> String {
        format!(
            "planned reboot of {} (`hacli disrupt reboot {}`: drain the backend, move etcd leadership away, cordon, drain, reboot, wait until healthy, backend ready, uncordon)",
            self.node, self.node
        )
    }
    async fn disrupt(&mut self) -> Result<(), String> {
        let Some(job) = self.job.take() else {
            return Err("the planned disruption already ran".into());
        };
        let mut errors = Vec::new();
        let obs = kubeadm::Observer::new(job.topology.clone(), self.config.clone())
            .await
            .map_err(|e| errors.push(format!("observing the etcd leader: {e}")))
            .ok();
        if let Some(obs) = &obs {
            if let Err(e) = self.before(obs, &job.topology).await {
                errors.push(e);
            }
        }
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let node = self.node.clone();
        // A thread of its own: the live backends run their own runtimes.
        std::thread::Builder::new()
            .name("planned-disruption".into())
            .spawn(move || {
                let _ = done_tx.send(run_plan(job, &node, tx));
            })
            .map_err(|e| format!("starting the disruption's thread: {e}"))?;
        // The sender is dropped when the run is over.
        while let Some(s) = rx.recv().await {
            self.seen(s, obs.as_ref(), &mut errors).await;
        }
        let result = done_rx
            .await
            .unwrap_or_else(|_| Err("the disruption's thread died".into()));
        if let Some(obs) = &obs {
            match etcd_leader(obs).await {
                Ok((leader, _)) => self.run.borrow_mut().leadership.after = leader,
                Err(e) => errors.push(format!("after: {e}")),
            }
        }
        let mut run = self.run.borrow_mut();
        if !errors.is_empty() {
            run.leadership.error = Some(errors.join("; "));
        }
        run.report = Some(result.clone());
        match result {
            Ok(r) if r.ok() => Ok(()),
            Ok(r) => Err(r.summary()),
            Err(e) => Err(e),
        }
    }
    async fn restore(&mut self) -> Result<(), String> {
        // The plan restores what it changed itself (backend ready,
        // uncordon) when a step fails.
        Ok(())
    }
    fn holds(&self) -> bool {
        false
    }
}

/// The entry of step `id`, added at the end the first time.
fn step_of<'a>(steps: &'a mut Vec<PlannedStep>, id: &str) -> &'a mut PlannedStep {
    let i = match steps.iter().position(|s| s.id == id) {
        Some(i) => i,
        None => {
            steps.push(PlannedStep {
                id: id.into(),
                ..Default::default()
            });
            steps.len() - 1
        }
    };
    &mut steps[i]
}

impl PlannedRun {
    /// Each step on the drill's time axis (ms since `started_at`), from the
    /// executor's stamped events: begun, done (or already so), failed,
    /// undone (a step skipped after a failure was left as found: undone).
    fn steps(
        &self,
        started_at: jiff::Timestamp,
        leadership: &mut PlannedLeadership,
    ) -> Vec<PlannedStep> {
        let rel = |t: &jiff::Timestamp| t.duration_since(started_at).as_secs_f64() * 1000.0;
        let mut steps = Vec::new();
        let mut failed = false;
        for s in &self.events {
            let Event::Step(e) = &s.event else { continue };
            let t = Some(rel(&s.at));
            match e {
                exec::Event::Step { id, .. } => step_of(&mut steps, id).started_ms = t,
                exec::Event::Done { id } => {
                    step_of(&mut steps, id).done_ms = t;
                    if id.ends_with("/move-leader") {
                        leadership.moved = true;
                        leadership.moved_at_ms = t;
                    }
                }
                exec::Event::Skipped { id, .. } if !failed => {
                    let st = step_of(&mut steps, id);
                    st.done_ms = t;
                    st.skipped = true;
                }
                exec::Event::Skipped { id, .. } | exec::Event::RollingBack { id } => {
                    step_of(&mut steps, id).rolled_back = true
                }
                exec::Event::Failed { id, error } => {
                    failed = true;
                    step_of(&mut steps, id).error = Some(error.clone());
                }
                exec::Event::WouldApply { .. } | exec::Event::CertificateKey => {}
            }
        }
        steps
    }

    /// The report's section, times on the drill's axis.
    pub(super) fn into_report(
        self,
        started_at: jiff::Timestamp,
        holder: String,
        journal: &std::path::Path,
    ) -> PlannedReport {
        use hacore::disrupt::Report;
        let mut leadership = self.leadership.clone();
        let steps = self.steps(started_at, &mut leadership);
        let (result, summary, lock_released, json) = match &self.report {
            Some(Ok(r)) => {
                let (result, released) = match r {
                    Report::Denied { .. } => ("denied", None),
                    Report::Ran {
                        outcome: exec::Outcome::Completed,
                        lock_released,
                        ..
                    } => ("done", Some(*lock_released)),
                    Report::Ran { lock_released, .. } => ("failed", Some(*lock_released)),
                };
                (result, r.summary(), released, serde_json::to_value(r).ok())
            }
            Some(Err(e)) => ("failed", e.clone(), None, None),
            None => (
                "failed",
                "the disruption did not run".to_string(),
                None,
                None,
            ),
        };
        PlannedReport {
            result: result.into(),
            summary,
            report: json,
            journal: journal.display().to_string(),
            lock_holder: holder,
            lock_released,
            leadership,
            steps,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hacore::exec::Outcome;

    fn at(s: f64) -> jiff::Timestamp {
        jiff::Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_secs_f64(s)
    }

    fn ev(s: f64, e: exec::Event) -> Stamped {
        Stamped {
            at: at(s),
            event: Event::Step(e),
        }
    }

    fn step(s: f64, id: &str) -> Stamped {
        ev(
            s,
            exec::Event::Step {
                index: 0,
                total: 4,
                id: id.into(),
                title: id.into(),
            },
        )
    }

    fn done(s: f64, id: &str) -> Stamped {
        ev(s, exec::Event::Done { id: id.into() })
    }

    #[test]
    fn the_planned_section_puts_the_executors_events_on_the_drills_time_axis() {
        let events = vec![
            step(10.5, "reboot/m1/backend-drain"),
            done(10.6, "reboot/m1/backend-drain"),
            step(11.0, "reboot/m1/move-leader"),
            done(11.25, "reboot/m1/move-leader"),
            step(11.5, "reboot/m1/cordon"),
            ev(
                11.5,
                exec::Event::Skipped {
                    id: "reboot/m1/cordon".into(),
                    why: "already in place".into(),
                },
            ),
            step(12.0, "reboot/m1/reboot"),
            ev(
                40.0,
                exec::Event::Failed {
                    id: "reboot/m1/reboot".into(),
                    error: "no boot".into(),
                },
            ),
            ev(
                40.5,
                exec::Event::Skipped {
                    id: "reboot/m1/cordon".into(),
                    why: "in place before this tool acted on it".into(),
                },
            ),
            ev(
                41.0,
                exec::Event::RollingBack {
                    id: "reboot/m1/backend-drain".into(),
                },
            ),
            Stamped {
                at: at(41.5),
                event: Event::Note("not a step".into()),
            },
        ];
        let run = PlannedRun {
            report: Some(Ok(hacore::disrupt::Report::Ran {
                node: "m1".into(),
                outcome: Outcome::RolledBack {
                    phase: "reboot/m1".into(),
                    step: "reboot/m1/reboot".into(),
                    error: "no boot".into(),
                },
                lock_released: true,
                release_error: None,
            })),
            leadership: PlannedLeadership {
                before: Some("m1".into()),
                after_move: Some("m2".into()),
                ..Default::default()
            },
            events,
        };
        let p = run.into_report(at(10.0), "drill-m1".into(), std::path::Path::new("j"));
        assert_eq!(p.result, "failed");
        assert_eq!(p.lock_released, Some(true));
        assert_eq!(p.lock_holder, "drill-m1");
        assert!(
            p.summary.contains("FAILED at step reboot/m1/reboot"),
            "{}",
            p.summary
        );
        assert!(p.leadership.moved);
        assert_eq!(p.leadership.moved_at_ms, Some(1250.0));
        let ids: Vec<&str> = p.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "reboot/m1/backend-drain",
                "reboot/m1/move-leader",
                "reboot/m1/cordon",
                "reboot/m1/reboot"
            ]
        );
        assert_eq!(p.steps[0].started_ms, Some(500.0));
        assert_eq!(p.steps[0].done_ms, Some(600.0));
        assert!(p.steps[0].rolled_back);
        assert!(!p.steps[1].skipped && !p.steps[1].rolled_back);
        assert!(p.steps[2].skipped, "already in place");
        assert!(p.steps[2].rolled_back, "left as found after the failure");
        assert_eq!(p.steps[3].error.as_deref(), Some("no boot"));
        assert_eq!(p.steps[3].done_ms, None);
        assert_eq!(p.report.as_ref().unwrap()["result"], "ran");

        // Denied: nothing ran, leadership not moved.
        let denied = PlannedRun {
            report: Some(Ok(hacore::disrupt::Report::Denied {
                node: "m1".into(),
                reasons: vec!["lock (deny): the disruption lock is held by x".into()],
            })),
            ..Default::default()
        }
        .into_report(at(0.0), "d".into(), std::path::Path::new("j"));
        assert_eq!(denied.result, "denied");
        assert_eq!(denied.lock_released, None);
        assert!(!denied.leadership.moved);
        assert!(denied.steps.is_empty());
    }
}
