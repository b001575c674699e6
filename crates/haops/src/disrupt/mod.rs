//! Planned disruptions of one node (reboot, upgrade, a command) and rolls
//! over many, once for every frontend: gate and lock, drain the node's
//! backend, move etcd leadership away, cordon and drain, act, wait until
//! healthy, put the backend back, uncordon, release the lock
//! (`hacore::disrupt` plans and runs it), with a journal so a killed run
//! resumes, and the Alertmanager silences of the alerts it causes.
//!
//! The live cluster and the simulated one are two [`Backend`]s behind the
//! same functions: [`disrupt`], [`roll`] and, for any disruption plan (a
//! master's removal or replacement), [`run_plan`].

use std::cell::RefCell;
use std::path::Path;
use std::time::Duration;

use hacore::backend::Backends;
use hacore::disrupt::{self as core, DisruptAction, DisruptOptions, Gate, Lock};
pub use hacore::disrupt::{Report, RollReport};
use hacore::plan::Plan;
use hacore::units::Dur;
use hacore::{Policy, Topology};

use crate::events::{self, Event, Events};
use crate::{Error, Live, Reach, journal, silence};

mod simulated;

pub use crate::silence::Silence;
pub use simulated::Simulated;

/// Which backends carry a disruption out.
// One value per operation: the live variant's size costs nothing, and a
// caller writes `Backend::Live(reach)` without a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Backend {
    /// The live cluster, reached with these settings
    /// ([`Live::connect`]): the Kubernetes API, etcd, the nodes over SSH,
    /// the load balancer, the disruption Lease.
    Live(Reach),
    /// The simulated cluster kept in a file: a rehearsal.
    Simulated(Simulated),
}

/// What a disruption (or a roll) is asked to do beyond its action and
/// node: how it is gated and locked, its options, and how it runs.
#[derive(Debug, Clone)]
pub struct Request {
    /// The policy, the gate's action, the lock holder's identity.
    pub gate: Gate,
    /// Drain, idle bound, the upgrade's first node.
    pub options: DisruptOptions,
    /// Continue the run the journal records (else a journal with records
    /// is refused).
    pub resume: bool,
    /// Observe and report what would be applied; change nothing.
    pub dry_run: bool,
    /// How long the lock lasts without renewal (the whole disruption);
    /// silences end after it (a roll: after every node's and the soaks).
    pub lock_ttl: Duration,
    /// Silence the alerts the disruption causes; None: nothing silenced.
    pub silence: Option<Silence>,
}

impl Request {
    /// A request for `action`: gated by `policy` (the action's built-in
    /// policy when None), the lock held as `identity`, default options.
    pub fn new(action: &DisruptAction, policy: Option<Policy>, identity: String) -> Request {
        let a = action.gate_action();
        Request {
            gate: Gate {
                policy: policy.unwrap_or_else(|| Policy::for_action(a)),
                action: a,
                identity,
            },
            options: DisruptOptions::default(),
            resume: false,
            dry_run: false,
            lock_ttl: Duration::from_secs(3600),
            silence: None,
        }
    }

    /// The options plans are made with: the caller's, and the outage of a
    /// cluster's only master accepted when the gate's policy states it
    /// (`single-master`).
    fn plan_options(&self) -> DisruptOptions {
        DisruptOptions {
            accept_outage: self.options.accept_outage || core::accepts_outage(&self.gate.policy),
            ..self.options.clone()
        }
    }

    fn exec_options(&self) -> hacore::exec::Options {
        hacore::exec::Options {
            dry_run: self.dry_run,
            confirm: Default::default(),
        }
    }
}

/// One planned disruption of `node`, with its journal at `journal`.
/// Returns the report: denied (gate or lock, nothing touched) or ran (the
/// executor's outcome, a failure restored). An error is a refused plan, a
/// setting, a journal that already records a run (not resumed), or a
/// cluster that could not be reached.
pub fn disrupt(
    topology: &Topology,
    action: &DisruptAction,
    node: &str,
    request: &Request,
    journal: &Path,
    backend: &Backend,
    events: Events<'_>,
) -> Result<Report, Error> {
    let plan = core::plan(topology, action, node, &request.plan_options())?;
    run_plan(&plan, node, "disrupt", request, journal, backend, events)
}

/// Any disruption plan (one node's, a master's removal or replacement) on
/// `backend`: the silences (`what` names the run in their comment), the
/// journal guard, gate, lock, run, release. The live backends are
/// connected for the plan's starting topology.
pub fn run_plan(
    plan: &Plan,
    node: &str,
    what: &str,
    request: &Request,
    journal: &Path,
    backend: &Backend,
    events: Events<'_>,
) -> Result<Report, Error> {
    let silences = start_silences(request, &[node.to_string()], what, request.lock_ttl, events)?;
    let result =
        journal::open_for_run(journal, request.resume, request.dry_run).and_then(|mut journal| {
            with_backends(backend, &plan.from, &plan.to, request, |b, lock, _| {
                core::run(
                    plan,
                    node,
                    &request.gate,
                    b,
                    lock,
                    &mut journal,
                    &request.exec_options(),
                    &mut events::steps(&mut *events),
                )
            })
        });
    silence::finish(silences, &mut *events);
    Ok(result??)
}

/// A rolling operation: the masters one at a time (waiting `soak` after
/// each), stopping at the first node that does not complete, then the
/// workers; `nodes` restricts it (every node when empty). One journal per
/// node, `NODE.jsonl` in `journal_dir`, so a stopped roll resumes; one set
/// of backends serves every node. On the simulated backend the soak
/// advances the simulated clock.
#[allow(clippy::too_many_arguments)]
pub fn roll(
    topology: &Topology,
    action: &DisruptAction,
    nodes: &[String],
    soak: Duration,
    request: &Request,
    journal_dir: &Path,
    backend: &Backend,
    events: Events<'_>,
) -> Result<RollReport, Error> {
    let order = core::roll_order(topology, nodes)?;
    let soak = Dur(soak.try_into().map_err(|e| Error::Setting {
        what: "soak".into(),
        why: format!("{e}"),
    })?);
    std::fs::create_dir_all(journal_dir).map_err(|e| Error::Setting {
        what: journal_dir.display().to_string(),
        why: format!("cannot create: {e}"),
    })?;
    let path = |node: &str| journal_dir.join(format!("{node}.jsonl"));
    if let Some(first) = order.first() {
        journal::open_for_run(&path(first), request.resume, request.dry_run)?;
    }
    // Every node is silenced from the start until the roll's bound: each
    // node's lock TTL, and the soaks between them.
    let n = u32::try_from(order.len()).unwrap_or(u32::MAX);
    let bound = request.lock_ttl.saturating_mul(n)
        + soak.0.unsigned_abs().saturating_mul(n.saturating_sub(1));
    let silences = start_silences(request, &order, "roll", bound, events)?;
    let events = RefCell::new(events);
    let result = with_backends(backend, topology, topology, request, |b, lock, wait| {
        let mut journal =
            |node: &str| -> Result<Box<dyn hacore::exec::Journal>, hacore::exec::ExecError> {
                Ok(Box::new(journal::FileJournal::open(&path(node))?))
            };
        let mut soak_wait = |d: Dur| {
            (events.borrow_mut())(Event::Note(format!(
                "soak: waiting {d} before the next node"
            )));
            wait(d);
        };
        core::roll(
            topology,
            action,
            &order,
            &request.plan_options(),
            soak,
            &request.gate,
            b,
            lock,
            &mut core::RollIo {
                journal: &mut journal,
                wait: &mut soak_wait,
            },
            &request.exec_options(),
            &mut |e| (events.borrow_mut())(Event::Step(e)),
        )
    });
    silence::finish(silences, events.into_inner());
    Ok(result???)
}

fn start_silences(
    request: &Request,
    nodes: &[String],
    what: &str,
    bound: Duration,
    events: Events<'_>,
) -> Result<Option<silence::Silences>, Error> {
    if request.dry_run {
        return Ok(None);
    }
    silence::start(
        request.silence.as_ref(),
        &request.gate.policy,
        nodes,
        &request.gate.identity,
        what,
        bound,
        jiff::Timestamp::now(),
        events,
    )
}

/// Run `f` with `backend`'s backends, its lock and its way of waiting (a
/// real sleep, or the simulated clock advanced).
fn with_backends<R>(
    backend: &Backend,
    from: &Topology,
    to: &Topology,
    request: &Request,
    f: impl FnOnce(&mut Backends<'_>, &mut dyn Lock, &mut dyn FnMut(Dur)) -> R,
) -> Result<R, Error> {
    match backend {
        Backend::Live(reach) => {
            let mut live =
                Live::connect(from, reach, Some(&request.gate.policy), request.lock_ttl)?;
            Ok(live.with(|b, lock| {
                f(b, lock, &mut |d: Dur| {
                    std::thread::sleep(d.0.unsigned_abs())
                })
            }))
        }
        Backend::Simulated(sim) => sim.with(from, to, request.dry_run, f),
    }
}
