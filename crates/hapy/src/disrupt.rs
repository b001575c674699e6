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

use crate::live::{LiveDisrupt, Reach, with_disrupt_backends};
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
        accept_outage: false,
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
            "backend `{name}`: only \"simulated\" (a rehearsal on the SimulatedCluster double) is available for hapy.disrupt; hapy.roll also takes \"live\""
        )))
    }
}

/// The simulated state file a rehearsal needs.
fn sim_state(sim_state: Option<PathBuf>) -> PyResult<PathBuf> {
    sim_state.ok_or_else(|| {
        ConfigError::new_err(
            "sim_state: the simulated cluster's state file (read if it exists, written back)",
        )
    })
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
///
/// `backend="simulated"` rehearses it on the SimulatedCluster double kept
/// in `sim_state`; `backend="live"` runs it on the cluster, as `hacli roll
/// --backend live` does: reached as `hapy.observe` reaches it (`kubeconfig`,
/// `etcd`, `etcd_pki`, ...), the nodes over SSH (`ssh_identity`,
/// `ssh_known_hosts`, else the topology's `ssh`), the load balancer through
/// the topology's `loadBalancer.manage`, else HAProxy's runtime API
/// (`lb_runtime_api`), the disruption Lease `lock_lease` held for at most
/// `lock_ttl` seconds per node.
#[pyfunction]
#[pyo3(signature = (
    action, topology, *, journal_dir, sim_state = None, backend = "simulated", nodes = None,
    version = None, command = None, soak = 0.0, policy = None, identity = None,
    idle_bound = 30.0, drain = None, first = None, fail = None, resume = false, dry_run = false,
    kubeconfig = None, etcd = None, etcd_pki = None, timeout = 2.0, member_timeout = 1.0,
    kill_switch = "kube-system/hacli-kill-switch",
    lock_lease = "kube-system/hacli-disruption-lock", daemonsets = None,
    prometheus_url = None, apiserver_port = None, lb_runtime_api = None, lock_ttl = 3600.0,
    ssh_identity = None, ssh_known_hosts = None, accept_new_host_key = false
))]
#[allow(clippy::too_many_arguments)]
pub fn roll<'py>(
    py: Python<'py>,
    action: &str,
    topology: &Bound<'py, PyAny>,
    journal_dir: PathBuf,
    sim_state: Option<PathBuf>,
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
    kubeconfig: Option<PathBuf>,
    etcd: Option<Vec<String>>,
    etcd_pki: Option<PathBuf>,
    timeout: f64,
    member_timeout: f64,
    kill_switch: &str,
    lock_lease: &str,
    daemonsets: Option<Vec<String>>,
    prometheus_url: Option<String>,
    apiserver_port: Option<u16>,
    lb_runtime_api: Option<String>,
    lock_ttl: f64,
    ssh_identity: Option<PathBuf>,
    ssh_known_hosts: Option<PathBuf>,
    accept_new_host_key: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let live = match backend {
        "live" => Some(LiveDisrupt {
            reach: Reach {
                kubeconfig,
                etcd,
                etcd_pki,
                timeout,
                member_timeout,
                kill_switch: kill_switch.to_string(),
                lock_lease: lock_lease.to_string(),
                daemonsets,
                prometheus_url,
                apiserver_port,
                lb_runtime_api,
            },
            lock_ttl,
            ssh_identity,
            ssh_known_hosts,
            accept_new_host_key,
        }),
        "simulated" => None,
        other => {
            return Err(ConfigError::new_err(format!(
                "backend `{other}`: \"simulated\" (a rehearsal on the SimulatedCluster double) or \"live\""
            )));
        }
    };
    let topology = PyTopology::coerce(topology)?.into_owned();
    let action = self::action(action, version, command)?;
    let gate = self::gate(&action, policy, identity)?;
    let opts = options(idle_bound, drain, first)?;
    let soak = seconds("soak", soak)?;
    let order = core::roll_order(&topology, &nodes.unwrap_or_default())
        .map_err(|r| ConfigError::new_err(r.to_string()))?;
    let exec_opts = exec::Options {
        dry_run,
        confirm: Default::default(),
    };
    if let Some(live) = live {
        if fail.is_some_and(|f| !f.is_empty()) {
            return Err(ConfigError::new_err(
                "fail: injected failures are for the simulated backend only",
            ));
        }
        let report = roll_live(
            py,
            &topology,
            &action,
            &order,
            &opts,
            soak,
            &gate,
            &journal_dir,
            resume,
            &exec_opts,
            live,
        )?;
        return to_py(py, &report);
    }
    let sim_state = self::sim_state(sim_state)?;
    let fail = fail.unwrap_or_default();
    let files = Rehearsal {
        state: &sim_state,
        fail: &fail,
        resume,
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

/// `roll` with the live backends, one journal per node (`NODE.jsonl` in
/// `journal_dir`), the soak a real wait (the GIL released throughout).
#[allow(clippy::too_many_arguments)]
fn roll_live(
    py: Python<'_>,
    topology: &hacore::Topology,
    action: &DisruptAction,
    order: &[String],
    opts: &DisruptOptions,
    soak: Dur,
    gate: &Gate,
    journal_dir: &std::path::Path,
    resume: bool,
    exec_opts: &exec::Options,
    live: LiveDisrupt,
) -> PyResult<core::RollReport> {
    std::fs::create_dir_all(journal_dir)
        .map_err(|e| Error::new_err(format!("{}: cannot create: {e}", journal_dir.display())))?;
    let path = |node: &str| journal_dir.join(format!("{node}.jsonl"));
    if let Some(first) = order.first() {
        let j = exec::FileJournal::open(&path(first)).map_err(|e| Error::new_err(e.to_string()))?;
        if !exec::Journal::records(&j).is_empty() && !resume && !exec_opts.dry_run {
            return Err(ConfigError::new_err(format!(
                "{} already records a run: pass resume=True to continue it, or use a new journal_dir",
                path(first).display()
            )));
        }
    }
    let result = with_disrupt_backends(py, topology, &gate.policy, live, |b, lock| {
        let mut journal = |node: &str| -> Result<Box<dyn exec::Journal>, exec::ExecError> {
            Ok(Box::new(exec::FileJournal::open(&path(node))?))
        };
        let mut wait = |d: Dur| std::thread::sleep(d.0.unsigned_abs());
        core::roll(
            topology,
            action,
            order,
            opts,
            soak,
            gate,
            b,
            lock,
            &mut core::RollIo {
                journal: &mut journal,
                wait: &mut wait,
            },
            exec_opts,
            &mut |_| {},
        )
    })?;
    match result {
        Ok(Ok(report)) => Ok(report),
        Ok(Err(refusal)) => Err(ConfigError::new_err(refusal.to_string())),
        Err(e) => Err(Error::new_err(e.to_string())),
    }
}
