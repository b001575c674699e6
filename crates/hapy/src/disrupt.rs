//! `hapy.disrupt` and `hapy.roll`: planned disruptions (issue 14) from
//! Python, rehearsed on the simulated backend with a journal, exactly as
//! `hacli disrupt|roll --backend simulated` runs them
//! (`hacore::disrupt::rehearse`, `rehearse_roll`).

use std::path::PathBuf;

use hacore::disrupt::{self as core, DisruptAction, DisruptOptions, Gate, Rehearsal};
use hacore::exec;
use hacore::units::Dur;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::{ConfigError, Error, PyPolicy, PyTopology, to_py};

fn action(
    kind: &str,
    version: Option<String>,
    command: Option<Vec<String>>,
) -> PyResult<DisruptAction> {
    match kind {
        "reboot" => Ok(DisruptAction::Reboot),
        "upgrade" => Ok(DisruptAction::Upgrade {
            version: version.ok_or_else(|| {
                ConfigError::new_err("upgrade needs version=\"vX.Y.Z\", the version to upgrade to")
            })?,
        }),
        "run" => Ok(DisruptAction::Run {
            command: command.unwrap_or_default(),
        }),
        other => Err(ConfigError::new_err(format!(
            "action `{other}`: expected reboot, upgrade or run"
        ))),
    }
}

fn options(idle_bound: f64, drain: Option<bool>, first: Option<bool>) -> PyResult<DisruptOptions> {
    Ok(DisruptOptions {
        idle_bound: seconds("idle_bound", idle_bound)?,
        drain,
        first,
    })
}

fn seconds(what: &str, s: f64) -> PyResult<Dur> {
    if !s.is_finite() || s < 0.0 {
        return Err(PyValueError::new_err(format!(
            "{what}={s}: a number of seconds >= 0"
        )));
    }
    Ok(Dur(jiff::SignedDuration::from_secs_f64(s)))
}

fn gate(
    action: &DisruptAction,
    policy: Option<&Bound<'_, PyAny>>,
    identity: Option<String>,
) -> PyResult<Gate> {
    let a = action.gate_action();
    Ok(Gate {
        policy: PyPolicy::coerce(policy, a)?.into_owned(),
        action: a,
        identity: identity.unwrap_or_else(|| format!("hapy-disrupt#{}", std::process::id())),
    })
}

fn backend(name: &str) -> PyResult<()> {
    if name == "simulated" {
        Ok(())
    } else {
        Err(ConfigError::new_err(format!(
            "backend `{name}`: only \"simulated\" (a rehearsal on the SimulatedCluster double) is available from Python"
        )))
    }
}

fn failed(e: core::RehearsalError) -> PyErr {
    match e {
        core::RehearsalError::Refused(r) => ConfigError::new_err(r.to_string()),
        other => Error::new_err(other.to_string()),
    }
}

/// One planned disruption of `node` (`action`: "reboot", "upgrade" with
/// `version`, or "run" with `command`), run with a journal so it resumes:
/// gate and lock, drain its backend, move etcd leadership away, cordon and
/// drain, act, wait until healthy, restore, release the lock. A failure
/// restores what it can and names the step. Returns the report as a dict
/// (`result`: "ran" with the executor's `outcome`, or "denied" with the
/// `reasons`).
#[pyfunction]
#[pyo3(signature = (
    action, node, topology, *, journal, sim_state, backend = "simulated", version = None,
    command = None, policy = None, identity = None, idle_bound = 30.0, drain = None,
    first = None, fail = None, resume = false, dry_run = false
))]
#[allow(clippy::too_many_arguments)]
pub fn disrupt<'py>(
    py: Python<'py>,
    action: &str,
    node: &str,
    topology: &Bound<'py, PyAny>,
    journal: PathBuf,
    sim_state: PathBuf,
    backend: &str,
    version: Option<String>,
    command: Option<Vec<String>>,
    policy: Option<&Bound<'py, PyAny>>,
    identity: Option<String>,
    idle_bound: f64,
    drain: Option<bool>,
    first: Option<bool>,
    fail: Option<Vec<String>>,
    resume: bool,
    dry_run: bool,
) -> PyResult<Bound<'py, PyAny>> {
    self::backend(backend)?;
    let topology = PyTopology::coerce(topology)?.into_owned();
    let action = self::action(action, version, command)?;
    let gate = self::gate(&action, policy, identity)?;
    let opts = options(idle_bound, drain, first)?;
    let fail = fail.unwrap_or_default();
    let files = Rehearsal {
        state: &sim_state,
        fail: &fail,
        resume,
    };
    let exec_opts = exec::Options {
        dry_run,
        confirm: Default::default(),
    };
    let report = py
        .detach(|| {
            core::rehearse(
                &topology,
                &action,
                node,
                &opts,
                &gate,
                &journal,
                &files,
                &exec_opts,
                &mut |_| {},
            )
        })
        .map_err(failed)?;
    to_py(py, &report)
}

/// A rolling operation: the masters one at a time (waiting `soak` seconds
/// after each), stopping at the first that does not complete, then the
/// workers; `nodes` restricts it. One journal per node in `journal_dir`, so
/// a stopped roll resumes (`resume=True`). Returns the roll's report as a
/// dict (`nodes`: each node's report, `notStarted`).
#[pyfunction]
#[pyo3(signature = (
    action, topology, *, journal_dir, sim_state, backend = "simulated", nodes = None,
    version = None, command = None, soak = 0.0, policy = None, identity = None,
    idle_bound = 30.0, drain = None, first = None, fail = None, resume = false, dry_run = false
))]
#[allow(clippy::too_many_arguments)]
pub fn roll<'py>(
    py: Python<'py>,
    action: &str,
    topology: &Bound<'py, PyAny>,
    journal_dir: PathBuf,
    sim_state: PathBuf,
    backend: &str,
    nodes: Option<Vec<String>>,
    version: Option<String>,
    command: Option<Vec<String>>,
    soak: f64,
    policy: Option<&Bound<'py, PyAny>>,
    identity: Option<String>,
    idle_bound: f64,
    drain: Option<bool>,
    first: Option<bool>,
    fail: Option<Vec<String>>,
    resume: bool,
    dry_run: bool,
) -> PyResult<Bound<'py, PyAny>> {
    self::backend(backend)?;
    let topology = PyTopology::coerce(topology)?.into_owned();
    let action = self::action(action, version, command)?;
    let gate = self::gate(&action, policy, identity)?;
    let opts = options(idle_bound, drain, first)?;
    let soak = seconds("soak", soak)?;
    let order = core::roll_order(&topology, &nodes.unwrap_or_default())
        .map_err(|r| ConfigError::new_err(r.to_string()))?;
    let fail = fail.unwrap_or_default();
    let files = Rehearsal {
        state: &sim_state,
        fail: &fail,
        resume,
    };
    let exec_opts = exec::Options {
        dry_run,
        confirm: Default::default(),
    };
    let report = py
        .detach(|| {
            core::rehearse_roll(
                &topology,
                &action,
                &order,
                &opts,
                soak,
                &gate,
                &journal_dir,
                &files,
                &exec_opts,
                &mut |_| {},
            )
        })
        .map_err(failed)?;
    to_py(py, &report)
}
