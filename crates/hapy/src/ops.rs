//! `hapy.plan`, `hapy.apply`, `hapy.replace_master` and
//! `hapy.remove_master`: the CLI's `plan`, `apply`, `replace-master` and
//! `remove-master`, same names and semantics, through the same functions
//! of the live operations layer (`haops::plan`, `haops::apply`,
//! `haops::master`), the GIL released while they run. Each returns its
//! result as a dict, shaped as the CLI's JSON.

use std::path::PathBuf;
use std::time::Duration;

use hacore::plan::Plan;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::progress;
use crate::{ConfigError, Error, ObserveError, PyState, PyTopology, fspath, to_py, type_error};

/// A `haops::Error` as the Python exception of the same meaning: could
/// not reach or read (the CLI's exit 3) is `ObserveError`, a bad setting
/// or input `ConfigError`, anything else `Error`.
pub(crate) fn py_err(e: haops::Error) -> PyErr {
    match e.exit_code() {
        3 => ObserveError::new_err(e.to_string()),
        2 if !matches!(e, haops::Error::Exec(_)) => ConfigError::new_err(e.to_string()),
        _ => Error::new_err(e.to_string()),
    }
}

pub(crate) fn seconds(what: &str, s: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(s)
        .map_err(|_| ConfigError::new_err(format!("{what}={s}: a number of seconds >= 0")))
}

/// The reach keywords (`**reach`, see `reach.rs`) as a `haops::Reach`,
/// with kubeadm's default deadline unless given.
fn reach(function: &str, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<haops::Reach> {
    crate::reach::reach(function, kwargs, haops::Reach::default().deadline)
}

/// A plan: a dict (as `plan()` returns under `"plan"`), or a path to a
/// plan file written by `hacli plan -o json`.
fn coerce_plan(obj: &Bound<'_, PyAny>) -> PyResult<Plan> {
    let (text, name) = if let Ok(d) = obj.cast::<PyDict>() {
        let text: String = obj
            .py()
            .import("json")?
            .call_method1("dumps", (d,))?
            .extract()?;
        (text, "<dict>".to_string())
    } else if let Some(path) = fspath(obj) {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| ConfigError::new_err(format!("{}: cannot read: {e}", path.display())))?;
        (text, path.display().to_string())
    } else {
        return Err(type_error("plan", "a dict or a path to a plan file", obj));
    };
    serde_json::from_str(&text).map_err(|e| {
        ConfigError::new_err(format!(
            "{name}:{}:{}: not a plan: {e}",
            e.line(),
            e.column()
        ))
    })
}

fn backend(name: &str) -> PyResult<haops::apply::Backend> {
    name.parse().map_err(py_err)
}

/// The migration plan from `from_` to `to` (topologies: a `Topology`, a
/// path or a dict), as `hacli plan` makes it: from the Proxmox cluster's
/// own inventory when the keywords (`proxmox=`, ...), `to`'s `proxmox:`
/// section or the environment name its API, and, with `probe_addresses=True`, with the
/// addresses to take probed over SSH from the nodes of `from_`. Returns
/// `{"result": "planned", "plan": {...}}` or `{"result": "refused",
/// "reasons": [...]}`. An inventory or an address that cannot be read
/// raises `ObserveError` (never planned as free).
/// `on_event`, if given, is called with a dict for each progress event
/// (`kind` "note", "warning" or "step", `message`; a step's `step` id and
/// `status`), else each goes to the `hapy` logger.
#[pyfunction]
#[pyo3(signature = (
    from_, to, *, state = None, template = None, probe_addresses = false, on_event = None, **reach
))]
#[allow(clippy::too_many_arguments)]
pub fn plan<'py>(
    py: Python<'py>,
    from_: &Bound<'py, PyAny>,
    to: &Bound<'py, PyAny>,
    state: Option<&Bound<'py, PyAny>>,
    template: Option<u32>,
    probe_addresses: bool,
    on_event: Option<Py<PyAny>>,
    reach: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyAny>> {
    let from = PyTopology::coerce(from_)?.into_owned();
    let to = PyTopology::coerce(to)?.into_owned();
    let state = match state {
        Some(s) => Some(PyState::coerce(s, &from)?.into_owned()),
        None => None,
    };
    let reach = self::reach("plan", reach)?;
    let request = haops::plan::Request {
        from: &from,
        to: &to,
        state,
        template,
        probe_addresses,
        ha_rule: None,
    };
    let planned = progress::run(py, on_event.as_ref(), |events| {
        haops::plan::plan(request, &reach, events).map_err(py_err)
    })?;
    let out = match planned {
        Ok(p) => serde_json::json!({"result": "planned", "plan": p}),
        Err(r) => serde_json::json!({"result": "refused", "reasons": r.reasons}),
    };
    to_py(py, &out)
}

/// Carry `plan` out step by step with the journal `journal`, resumably,
/// as `hacli apply` does: `backend="simulated"` rehearses it on the
/// simulated cluster kept in `sim_state` (default `JOURNAL.sim.json`;
/// `lb="live"`: the load-balancer steps on the real load balancer);
/// `backend="live"` on the real systems, reached as the keywords say, after
/// checking the plan against the Proxmox cluster as it is. `measure=True`
/// sends steady reads to the API during the run (`measure_rate` per
/// second, `measure_kubeconfig`'s credentials). Returns `{"outcome":
/// {...}, "measured": {...} | None}`; a blocked step, a manual step
/// waiting (`confirm=[STEP]` to go on) or a rolled-back phase is an
/// outcome, not an exception.
/// `on_event`, if given, is called with a dict for each progress event
/// (`kind` "note", "warning" or "step", `message`; a step's `step` id and
/// `status`), else each goes to the `hapy` logger.
#[pyfunction]
#[pyo3(signature = (
    plan, *, journal, backend = "simulated", sim_state = None, lb = None, dry_run = false,
    resume = false, confirm = None, measure = false, measure_kubeconfig = None,
    measure_rate = 10.0, measure_timeout = 2.0,
    measure_path = "/api/v1/namespaces/kube-system", on_event = None, **reach
))]
#[allow(clippy::too_many_arguments)]
pub fn apply<'py>(
    py: Python<'py>,
    plan: &Bound<'py, PyAny>,
    journal: PathBuf,
    backend: &str,
    sim_state: Option<PathBuf>,
    lb: Option<&str>,
    dry_run: bool,
    resume: bool,
    confirm: Option<Vec<String>>,
    measure: bool,
    measure_kubeconfig: Option<PathBuf>,
    measure_rate: f64,
    measure_timeout: f64,
    measure_path: &str,
    on_event: Option<Py<PyAny>>,
    reach: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyAny>> {
    let plan = coerce_plan(plan)?;
    let measure = match measure {
        true => Some(haops::apply::MeasureSpec {
            kubeconfig: measure_kubeconfig,
            rate: measure_rate,
            timeout: seconds("measure_timeout", measure_timeout)?,
            path: measure_path.to_string(),
        }),
        false => None,
    };
    let opts = haops::apply::ApplyOptions {
        load_balancer: lb.map(self::backend).transpose()?,
        dry_run,
        resume,
        confirm: confirm.unwrap_or_default(),
        sim_state,
        measure,
        ..haops::apply::ApplyOptions::new(journal, self::backend(backend)?)
    };
    let reach = self::reach("apply", reach)?;
    let applied = progress::run(py, on_event.as_ref(), |events| {
        haops::apply::apply(&plan, &opts, &reach, events).map_err(py_err)
    })?;
    to_py(py, &applied)
}

/// How a master's removal or replacement runs (the keywords both take).
struct Run {
    dry_run: bool,
    opts: Option<haops::master::RunOptions>,
    idle_bound: Duration,
}

#[allow(clippy::too_many_arguments)]
fn run_options(
    journal: Option<PathBuf>,
    backend: Option<&str>,
    dry_run: bool,
    resume: bool,
    sim_state: Option<PathBuf>,
    fail: Option<Vec<String>>,
    identity: Option<String>,
    lock_ttl: f64,
    idle_bound: f64,
) -> PyResult<Run> {
    let opts = match (journal, backend) {
        (Some(journal), Some(backend)) => Some(haops::master::RunOptions {
            resume,
            identity,
            lock_ttl: seconds("lock_ttl", lock_ttl)?,
            sim_state,
            sim_fail: fail.unwrap_or_default(),
            ..haops::master::RunOptions::new(journal, self::backend(backend)?)
        }),
        _ if dry_run => None,
        _ => {
            return Err(ConfigError::new_err(
                "journal=... and backend=\"live\" (or \"simulated\", a rehearsal) are needed to run the plan (or dry_run=True to get it)",
            ));
        }
    };
    Ok(Run {
        dry_run,
        opts,
        idle_bound: seconds("idle_bound", idle_bound)?,
    })
}

fn ran<'py>(
    py: Python<'py>,
    function: &str,
    run: Run,
    planned: PyResult<Result<Plan, hacore::plan::Refusal>>,
    node: &str,
    on_event: Option<&Py<PyAny>>,
    reach: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyAny>> {
    let outcome = match (planned?, run.opts) {
        (Err(r), _) => haops::master::Outcome::Refused { reasons: r.reasons },
        (Ok(plan), _) if run.dry_run => haops::master::Outcome::Planned {
            plan: Box::new(plan),
        },
        (Ok(plan), Some(opts)) => {
            let reach = self::reach(function, reach)?;
            let report = progress::run(py, on_event, |events| {
                haops::master::run(&plan, node, &opts, &reach, events).map_err(py_err)
            })?;
            haops::master::Outcome::Ran { report }
        }
        (Ok(_), None) => unreachable!("run_options needs a journal and a backend to run"),
    };
    to_py(py, &outcome)
}

/// Remove the master `node` for good, as `hacli remove-master` does:
/// drain, etcd member remove by id, kubeadm reset, delete the Node,
/// remove its server, delete its VM; refused when it would leave an even
/// number of voters. Gated (`preflight`), under the disruption lock, with
/// a journal so a stopped run resumes. Returns `{"result": "refused",
/// "reasons"}`, `{"result": "planned", "plan"}` (`dry_run=True`) or
/// `{"result": "ran", "report"}`.
/// `on_event`, if given, is called with a dict for each progress event
/// (`kind` "note", "warning" or "step", `message`; a step's `step` id and
/// `status`), else each goes to the `hapy` logger.
#[pyfunction]
#[pyo3(signature = (
    node, topology, *, journal = None, backend = None, dry_run = false, resume = false,
    sim_state = None, fail = None, identity = None, lock_ttl = 3600.0, idle_bound = 30.0,
    on_event = None, **reach
))]
#[allow(clippy::too_many_arguments)]
pub fn remove_master<'py>(
    py: Python<'py>,
    node: &str,
    topology: &Bound<'py, PyAny>,
    journal: Option<PathBuf>,
    backend: Option<&str>,
    dry_run: bool,
    resume: bool,
    sim_state: Option<PathBuf>,
    fail: Option<Vec<String>>,
    identity: Option<String>,
    lock_ttl: f64,
    idle_bound: f64,
    on_event: Option<Py<PyAny>>,
    reach: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyAny>> {
    let topology = PyTopology::coerce(topology)?.into_owned();
    let run = run_options(
        journal, backend, dry_run, resume, sim_state, fail, identity, lock_ttl, idle_bound,
    )?;
    let planned = haops::master::plan_remove(&topology, node, run.idle_bound).map_err(py_err);
    ran(
        py,
        "remove_master",
        run,
        planned,
        node,
        on_event.as_ref(),
        reach,
    )
}

/// Replace the master `old` with `new` (described in `target`, the
/// topology after: `new` with its address, hypervisor, VM id and size,
/// `old` gone), as `hacli replace-master` does: the new one joins first,
/// then the old one is removed. Same keywords and results as
/// `remove_master`; `template` is the VM id new masters are cloned from.
/// `on_event`, if given, is called with a dict for each progress event
/// (`kind` "note", "warning" or "step", `message`; a step's `step` id and
/// `status`), else each goes to the `hapy` logger.
#[pyfunction]
#[pyo3(signature = (
    old, new, topology, target, *, template = None, journal = None, backend = None,
    dry_run = false, resume = false, sim_state = None, fail = None, identity = None,
    lock_ttl = 3600.0, idle_bound = 30.0, on_event = None, **reach
))]
#[allow(clippy::too_many_arguments)]
pub fn replace_master<'py>(
    py: Python<'py>,
    old: &str,
    new: &str,
    topology: &Bound<'py, PyAny>,
    target: &Bound<'py, PyAny>,
    template: Option<u32>,
    journal: Option<PathBuf>,
    backend: Option<&str>,
    dry_run: bool,
    resume: bool,
    sim_state: Option<PathBuf>,
    fail: Option<Vec<String>>,
    identity: Option<String>,
    lock_ttl: f64,
    idle_bound: f64,
    on_event: Option<Py<PyAny>>,
    reach: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyAny>> {
    let current = PyTopology::coerce(topology)?.into_owned();
    let target = PyTopology::coerce(target)?.into_owned();
    let run = run_options(
        journal, backend, dry_run, resume, sim_state, fail, identity, lock_ttl, idle_bound,
    )?;
    let planned = haops::master::plan_replace(&haops::master::Replacement {
        current: &current,
        target: &target,
        old,
        new,
        template,
        idle_bound: run.idle_bound,
        dead: None,
        ha_rule: None,
    })
    .map_err(py_err);
    ran(
        py,
        "replace_master",
        run,
        planned,
        old,
        on_event.as_ref(),
        reach,
    )
}

/// Every set of up to `failures` (at most 3) simultaneous failures tried
/// at every step of `plan` (a dict or a plan file), as `hacli simulate`
/// does: the risk windows. Returns the report as a dict (`critical`: the
/// steps that break the control plane with no failure at all and are not
/// declared outages).
#[pyfunction]
#[pyo3(signature = (plan, failures = 1))]
pub fn simulate<'py>(
    py: Python<'py>,
    plan: &Bound<'py, PyAny>,
    failures: usize,
) -> PyResult<Bound<'py, PyAny>> {
    if failures > 3 {
        return Err(ConfigError::new_err(format!(
            "failures={failures}: at most 3 simultaneous failures are simulated"
        )));
    }
    let plan = coerce_plan(plan)?;
    let report = py.detach(|| hacore::simulate::simulate(&plan, failures));
    to_py(py, &report)
}

/// The apiserver load balancer the topology's `loadBalancer` section
/// names, as `hacli lb ACTION` reaches it: `"show"` (the pool: each
/// server's address, status, sessions, last check), `"add-server"` and
/// `"remove-server"` (`node`'s server, at `address` or the node's address
/// and the endpoint's port; `dry_run=True` shows the edit), `"drain"`,
/// `"ready"` and `"maint"` (`node`'s server through HAProxy's runtime
/// API). `deadline` (seconds, 60 by default) bounds the whole operation,
/// waits included. Returns
/// the CLI's JSON as a dict; a refusal (not ours, still in use) raises
/// `Error`, a load balancer that does not answer `ObserveError`.
#[pyfunction]
#[pyo3(signature = (action, topology, node = None, *, address = None, dry_run = false, **reach))]
#[allow(clippy::too_many_arguments)]
pub fn lb<'py>(
    py: Python<'py>,
    action: &str,
    topology: &Bound<'py, PyAny>,
    node: Option<String>,
    address: Option<String>,
    dry_run: bool,
    reach: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyAny>> {
    use pfsense::AdminState;
    let topology = PyTopology::coerce(topology)?.into_owned();
    let reach = crate::reach::reach("lb", reach, Duration::from_secs(60))?;
    let timeout = reach.deadline;
    let node = || {
        node.clone()
            .ok_or_else(|| ConfigError::new_err(format!("lb(\"{action}\"): node=... is needed")))
    };
    let state = match action {
        "show" | "add-server" | "remove-server" => None,
        "drain" => Some(AdminState::Drain),
        "ready" => Some(AdminState::Ready),
        "maint" => Some(AdminState::Maint),
        other => {
            return Err(ConfigError::new_err(format!(
                "action `{other}`: expected show, add-server, remove-server, drain, ready or maint"
            )));
        }
    };
    let address: Option<std::net::SocketAddr> = match address {
        Some(a) => Some(a.parse().map_err(|e| {
            ConfigError::new_err(format!("address `{a}`: expected ADDRESS:PORT: {e}"))
        })?),
        None => None,
    };
    let target = haops::lb::open(&topology, &reach, timeout).map_err(py_err)?;
    let out = match (action, state) {
        ("show", _) => serde_json::to_value(py.detach(|| target.show().map_err(py_err))?),
        (_, None) => {
            let (node, add) = (node()?, action == "add-server");
            serde_json::to_value(
                py.detach(|| target.change(&node, add, address, dry_run).map_err(py_err))?,
            )
        }
        (_, Some(s)) => {
            let node = node()?;
            if !dry_run {
                py.detach(|| {
                    target
                        .set_state(&node, s, &mut haops::events::ignore)
                        .map_err(py_err)
                })?;
            }
            Ok(serde_json::json!({"server": node, "state": s.as_str(), "dryRun": dry_run}))
        }
    };
    to_py(py, &out.map_err(|e| Error::new_err(e.to_string()))?)
}

/// `action="show"`: the Proxmox cluster as it really is, as `hacli
/// hypervisor show -o json` prints it: per host, committed memory and
/// vCPUs (running and stopped VMs) against physical memory and CPUs, and
/// its VMs (`hosts`); with `topology`, where each master runs
/// (`placement`) and the hosts two share (`sharedHosts`); the HA
/// resources and rules (`ha`, each negative affinity's `notMet`), or
/// `haError` when they cannot be read. The API is named by the keywords
/// (`proxmox=`, ...), the environment, or `topology`'s `proxmox:` section.
/// An inventory that cannot be read raises `ObserveError`.
#[pyfunction]
#[pyo3(signature = (action = "show", topology = None, **reach))]
pub fn hypervisor<'py>(
    py: Python<'py>,
    action: &str,
    topology: Option<&Bound<'py, PyAny>>,
    reach: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyAny>> {
    if action != "show" {
        return Err(ConfigError::new_err(format!(
            "action `{action}`: expected show"
        )));
    }
    let topology = match topology {
        Some(t) => Some(PyTopology::coerce(t)?.into_owned()),
        None => None,
    };
    let reach = self::reach("hypervisor", reach)?;
    let (client, _) = reach.proxmox_client(topology.as_ref()).map_err(py_err)?;
    let doc = py.detach(|| {
        let inv = haops::inventory::read(&client).map_err(py_err)?;
        let ha = haops::inventory::ha(&client);
        Ok::<_, PyErr>(haops::inventory::show_json(&inv, topology.as_ref(), &ha))
    })?;
    to_py(py, &doc)
}

/// `hacli reconcile-config`: compare every master's static-pod manifests
/// (over SSH: `ssh_identity`, `known_hosts`) with kube-system/kubeadm-config;
/// with `confirm=True`, write the flags and mounts `kubeadm upgrade` would
/// revert into kubeadm-config through kubeadm (a copy of the ConfigMap kept
/// first). Without `confirm` nothing changes: the result lists what would
/// be written. A cluster that cannot be reached raises `ObserveError`.
#[pyfunction]
#[pyo3(signature = (topology, *, confirm = false, **reach))]
pub fn reconcile_config<'py>(
    py: Python<'py>,
    topology: &Bound<'py, PyAny>,
    confirm: bool,
    reach: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyAny>> {
    let topology = PyTopology::coerce(topology)?.into_owned();
    let reach = self::reach("reconcile_config", reach)?;
    let done = py.detach(|| {
        haops::reconcile::reconcile_config(&topology, &reach, confirm).map_err(py_err)
    })?;
    to_py(py, &done)
}
