//! Apply a plan step by step with a journal, resumably: on the simulated
//! backend (a rehearsal, the double persisted next to the journal,
//! optionally with the real load balancer), or on the live systems
//! (checked against the Proxmox cluster as it is before the first step),
//! optionally measuring the API's availability for the whole run.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hacore::backend::{BackendError, LbOp, LoadBalancer};
use hacore::exec::{self, Journal, Outcome};

use crate::journal::FileJournal;
use hacore::in_memory::{InMemoryCluster, InMemoryHandle, with_backends};
use hacore::plan::Plan;
use kubeadm::measure::{Measure, MeasureReport};
use kubeadm::traffic::{Connections, TrafficConfig};

use crate::connect::{Live, Wiring};
use crate::events::{Event, Events};
use crate::{Error, Reach};

/// Which backends carry a plan out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The in-memory simulated cluster, persisted in a state file: a
    /// rehearsal, nothing real is touched.
    Simulated,
    /// The real systems.
    Live,
}

impl std::str::FromStr for Backend {
    type Err = Error;
    fn from_str(s: &str) -> Result<Backend, Error> {
        match s {
            "simulated" => Ok(Backend::Simulated),
            "live" => Ok(Backend::Live),
            other => Err(Error::Setting {
                what: format!("backend `{other}`"),
                why: "expected \"simulated\" (a rehearsal) or \"live\"".into(),
            }),
        }
    }
}

/// Steady reads to the API for the whole run (`kubeadm::measure`): to the
/// source master until the cut-over begins, through the VIP from then on.
#[derive(Debug, Clone)]
pub struct MeasureSpec {
    /// kubeconfig whose credentials and CA the reads use.
    pub kubeconfig: Option<PathBuf>,
    /// Reads per second (0 < rate <= 1000).
    pub rate: f64,
    /// Each read's deadline.
    pub timeout: Duration,
    /// The path read.
    pub path: String,
}

/// How to apply.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// The journal file (JSON lines, appended and synced before each action).
    pub journal: PathBuf,
    /// The backends.
    pub backend: Backend,
    /// Where the load-balancer steps go, when not the backend's own:
    /// `Live` with the simulated backend carries them out on the real load
    /// balancer (the target's `loadBalancer.manage`), the simulation
    /// mirroring each change.
    pub load_balancer: Option<Backend>,
    /// Observe and report what would be applied; change nothing.
    pub dry_run: bool,
    /// Continue a run whose journal already has entries.
    pub resume: bool,
    /// Manual steps confirmed as done.
    pub confirm: Vec<String>,
    /// The simulated cluster's state file (default: `JOURNAL.sim.json`).
    pub sim_state: Option<PathBuf>,
    /// Measure the API's availability during the run.
    pub measure: Option<MeasureSpec>,
}

impl ApplyOptions {
    /// Options for `journal` on `backend`, everything else off.
    pub fn new(journal: impl Into<PathBuf>, backend: Backend) -> ApplyOptions {
        ApplyOptions {
            journal: journal.into(),
            backend,
            load_balancer: None,
            dry_run: false,
            resume: false,
            confirm: Vec::new(),
            sim_state: None,
            measure: None,
        }
    }

    fn sim_state(&self) -> PathBuf {
        self.sim_state.clone().unwrap_or_else(|| {
            let mut p = self.journal.as_os_str().to_owned();
            p.push(".sim.json");
            PathBuf::from(p)
        })
    }
}

/// What an apply came to.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Applied {
    /// The executor's outcome.
    pub outcome: Outcome,
    /// The availability measured, when asked.
    pub measured: Option<MeasureReport>,
}

/// Apply `plan` as `opts` says, reaching the live systems with `reach`;
/// progress as [`Event::Step`]s. A blocked step, a manual step waiting and
/// a rolled-back phase are outcomes, not errors.
pub fn apply(
    plan: &Plan,
    opts: &ApplyOptions,
    reach: &Reach,
    events: Events<'_>,
) -> Result<Applied, Error> {
    let steps: BTreeSet<&str> = plan.steps().map(|(_, s)| s.id.as_str()).collect();
    if let Some(c) = opts.confirm.iter().find(|c| !steps.contains(c.as_str())) {
        return Err(Error::Setting {
            what: format!("confirm {c}"),
            why: "no such step in the plan".into(),
        });
    }
    if opts.backend == Backend::Live && opts.load_balancer == Some(Backend::Simulated) {
        return Err(Error::Setting {
            what: "the load balancer `simulated`".into(),
            why: "with the live backend every system is real; use the simulated backend for a rehearsal".into(),
        });
    }
    let mut journal = crate::journal::open_for_run(&opts.journal, opts.resume, opts.dry_run)?;
    let mut measure = match &opts.measure {
        Some(spec) => Some(start_measure(spec, plan, events)?),
        None => None,
    };
    let exec_opts = exec::Options {
        dry_run: opts.dry_run,
        confirm: opts.confirm.iter().cloned().collect(),
    };
    let mut on_event = |e: exec::Event| {
        if let Some(m) = measure.as_mut() {
            measure_step(m, plan, &e);
        }
        events(Event::Step(e));
    };
    let result = match opts.backend {
        Backend::Simulated => simulated(plan, opts, reach, &mut journal, &exec_opts, &mut on_event),
        Backend::Live => live(plan, opts, reach, &mut journal, &exec_opts, &mut on_event),
    };
    let measured = measure.take().map(Measure::finish);
    Ok(Applied {
        outcome: result?,
        measured,
    })
}

fn simulated(
    plan: &Plan,
    opts: &ApplyOptions,
    reach: &Reach,
    journal: &mut FileJournal,
    exec_opts: &exec::Options,
    on_event: &mut dyn FnMut(exec::Event),
) -> Result<Outcome, Error> {
    let file = opts.sim_state();
    let sim: InMemoryCluster = match std::fs::read_to_string(&file) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| Error::Setting {
            what: file.display().to_string(),
            why: format!("not a simulated cluster: {e}"),
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            InMemoryCluster::new(&plan.from, &plan.to, jiff::Timestamp::now())
        }
        Err(e) => return Err(file_error(&file, "cannot read", e)),
    };
    let sim = sim.shared();
    let result = if opts.load_balancer == Some(Backend::Live) {
        let live = real_load_balancer(plan, reach)?;
        let mut lb = Mirrored {
            live,
            sim: InMemoryHandle(sim.clone()),
        };
        let (mut hv, mut cp, mut ob, clock) = (
            InMemoryHandle(sim.clone()),
            InMemoryHandle(sim.clone()),
            InMemoryHandle(sim.clone()),
            InMemoryHandle(sim.clone()),
        );
        let mut b = hacore::backend::Backends {
            hypervisor: &mut hv,
            load_balancer: &mut lb,
            control_plane: &mut cp,
            observer: &mut ob,
            clock: &clock,
        };
        exec::run(plan, &mut b, journal, exec_opts, on_event)
    } else {
        with_backends(&sim, |b| exec::run(plan, b, journal, exec_opts, on_event))
    };
    if !exec_opts.dry_run {
        let text = serde_json::to_string_pretty(&*sim.borrow()).map_err(|e| Error::Setting {
            what: file.display().to_string(),
            why: e.to_string(),
        })?;
        std::fs::write(&file, text).map_err(|e| file_error(&file, "cannot write", e))?;
    }
    Ok(result?)
}

fn file_error(file: &Path, what: &str, e: std::io::Error) -> Error {
    Error::Setting {
        what: file.display().to_string(),
        why: format!("{what}: {e}"),
    }
}

/// The real load balancer of the plan's target (`loadBalancer.manage`).
fn real_load_balancer(plan: &Plan, reach: &Reach) -> Result<Box<dyn LoadBalancer>, Error> {
    if plan.to.load_balancer.manage.is_none() {
        return Err(Error::Setting {
            what: "the plan's target topology: loadBalancer.manage".into(),
            why: "the real load balancer is reached through it, and it is not set".into(),
        });
    }
    crate::connect::load_balancer(&plan.to, reach)?.ok_or_else(|| Error::Setting {
        what: "the plan's target topology: loadBalancer".into(),
        why: "no way to reach it".into(),
    })
}

/// The real load balancer, with the simulation following each change.
struct Mirrored {
    live: Box<dyn LoadBalancer>,
    sim: InMemoryHandle,
}

impl LoadBalancer for Mirrored {
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

/// The live run: before the first step, the plan against the Proxmox
/// cluster as it is now (whatever the plan was made from); then the
/// executor on the live backends.
fn live(
    plan: &Plan,
    opts: &ApplyOptions,
    reach: &Reach,
    journal: &mut FileJournal,
    exec_opts: &exec::Options,
    on_event: &mut dyn FnMut(exec::Event),
) -> Result<Outcome, Error> {
    let owner = crate::inventory::owner(plan, &opts.journal, journal.records());
    let refusals = crate::inventory::refusals(plan, reach, &owner)?;
    if !refusals.is_empty() {
        let (status, _, _) = exec::replay(journal.records());
        let step = plan
            .steps()
            .map(|(_, s)| &s.id)
            .find(|id| status.get(*id) != Some(&exec::StepStatus::Done))
            .cloned()
            .unwrap_or_default();
        return Ok(Outcome::Blocked {
            step,
            reasons: refusals,
        });
    }
    let hv = crate::inventory::hypervisor(plan, reach, owner)?;
    let mut live = Live::wire(
        reach,
        Wiring {
            require_load_balancer: plan
                .steps()
                .any(|(_, s)| matches!(s.op, hacore::backend::Op::LoadBalancer(_))),
            ..Wiring::plan(plan, None, None, hv)
        },
    )?;
    let identity = format!(
        "hacli-apply@{}#{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into()),
        std::process::id()
    );
    Ok(live.with(|b, _| {
        let mut cp = crate::drill::in_plan::WithDrill::new(
            &mut *b.control_plane,
            &plan.to,
            reach,
            &opts.journal,
            identity,
        );
        let mut b = hacore::backend::Backends {
            hypervisor: &mut *b.hypervisor,
            load_balancer: &mut *b.load_balancer,
            control_plane: &mut cp,
            observer: &mut *b.observer,
            clock: b.clock,
        };
        exec::run(plan, &mut b, journal, exec_opts, on_event)
    })?)
}

fn start_measure(spec: &MeasureSpec, plan: &Plan, events: Events<'_>) -> Result<Measure, Error> {
    if !(spec.rate.is_finite() && spec.rate > 0.0 && spec.rate <= 1000.0) {
        return Err(Error::Setting {
            what: format!("the measure rate {}", spec.rate),
            why: "give 0 < reads per second <= 1000".into(),
        });
    }
    let kube =
        crate::inventory::runtime()?.block_on(kubeadm::kube_config(spec.kubeconfig.as_deref()))?;
    let direct = format!("https://{}", plan.from.control_plane_endpoint.socket());
    let vip = format!("https://{}", plan.to.control_plane_endpoint.socket());
    let m = Measure::start(
        kube,
        &direct,
        &vip,
        TrafficConfig {
            rate: spec.rate,
            path: spec.path.clone(),
            timeout: spec.timeout,
            connections: Connections::Fresh,
        },
    )?;
    events(Event::Note(format!(
        "measure: {} reads/s to {direct} until the cut-over, then to {vip}",
        spec.rate
    )));
    Ok(m)
}

/// Mark each step as it begins (the first cut-over step moves the traffic
/// to the VIP first).
fn measure_step(m: &mut Measure, plan: &Plan, e: &exec::Event) {
    if let exec::Event::Step { id, .. } = e {
        if id.starts_with("cutover") {
            m.via_vip();
        }
        let declared = plan
            .steps()
            .find(|(_, s)| s.id == *id)
            .and_then(|(_, s)| s.outage.as_ref())
            .map(|o| {
                (
                    Duration::try_from(o.up_to.0).unwrap_or_default(),
                    o.what.clone(),
                )
            });
        m.step(id, declared);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backend_that_is_not_simulated_or_live_is_named() {
        assert_eq!("live".parse::<Backend>().unwrap(), Backend::Live);
        let e = "real".parse::<Backend>().unwrap_err();
        assert!(e.to_string().contains("backend `real`"), "{e}");
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn a_confirmation_of_a_step_the_plan_lacks_is_refused_before_the_journal_is_made() {
        let dir = tempfile::tempdir().unwrap();
        let (from, _) = hacore::Topology::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/topology/single-master.yaml"
        )))
        .unwrap();
        let (to, _) = hacore::Topology::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/topology/ha.yaml"
        )))
        .unwrap();
        let plan = hacore::plan::plan(
            &from,
            &to,
            None,
            &hacore::plan::Options {
                template: Some(9000),
            },
        )
        .unwrap();
        let journal = dir.path().join("j.jsonl");
        let opts = ApplyOptions {
            confirm: vec!["no/such/step".into()],
            ..ApplyOptions::new(&journal, Backend::Simulated)
        };
        let e = apply(&plan, &opts, &Reach::default(), &mut crate::events::ignore).unwrap_err();
        assert!(e.to_string().contains("confirm no/such/step"), "{e}");
        assert!(!journal.exists(), "nothing was written");
    }
}
