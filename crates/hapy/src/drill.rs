//! `hapy.drill`: the failover drill, as `hacli drill` runs it
//! (`haops::drill::drill`): constant reads through the control-plane
//! endpoint while a master is disrupted (powered off through Proxmox, its
//! apiserver killed, or a planned reboot with a journal), the load
//! balancer watched; the `hacli.drill/v1` report, the GIL released while
//! it runs.
//!
//! Built with the `live` feature (on by default); without it the function
//! exists with the same signature and raises `hapy.ObserveError`.

use std::path::PathBuf;

use pyo3::prelude::*;

use crate::{PyVerdict, to_py};

/// How `hapy.drill` ended: `outcome` is "ran" (with the `report`),
/// "refused" (the gate's `verdict`: nothing was disrupted) or
/// "not-healthy" (the `reason`: nothing was disrupted); `exit_code` is the
/// CLI's (0 the target was met, 1 refused or missed, 3 not carried out).
#[pyclass(frozen, module = "hapy", name = "DrillResult")]
pub struct PyDrillResult {
    outcome: &'static str,
    exit_code: i32,
    report: Option<serde_json::Value>,
    verdict: Option<Py<PyVerdict>>,
    reason: Option<String>,
}

#[pymethods]
impl PyDrillResult {
    /// "ran", "refused" or "not-healthy".
    #[getter]
    fn outcome(&self) -> &'static str {
        self.outcome
    }

    /// `hacli drill`'s exit code for this result.
    #[getter]
    fn exit_code(&self) -> i32 {
        self.exit_code
    }

    /// The drill ran and met its target (exit code 0).
    #[getter]
    fn ok(&self) -> bool {
        self.exit_code == 0
    }

    /// The report (`hacli drill -o json`, schema `hacli.drill/v1`) as a
    /// dict, when the drill ran.
    #[getter]
    fn report<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.report.as_ref().map(|r| to_py(py, r)).transpose()
    }

    /// The gate's verdict, when it refused.
    #[getter]
    fn verdict(&self, py: Python<'_>) -> Option<Py<PyVerdict>> {
        self.verdict.as_ref().map(|v| v.clone_ref(py))
    }

    /// Why nothing was disrupted, when the cluster was not healthy.
    #[getter]
    fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    fn __repr__(&self) -> String {
        format!(
            "DrillResult(outcome={:?}, exit_code={})",
            self.outcome, self.exit_code
        )
    }
}

/// The arguments, in Python's units (seconds as floats).
#[cfg_attr(not(feature = "live"), allow(dead_code))]
struct Args {
    node: String,
    planned: bool,
    kill: Option<String>,
    journal: Option<PathBuf>,
    lock_ttl: f64,
    identity: Option<String>,
    idle_bound: f64,
    rate: f64,
    duration: f64,
    baseline: f64,
    down_for: f64,
    after: f64,
    recovery_timeout: f64,
    request_timeout: f64,
    path: String,
    keep_alive: bool,
    skip_gate: bool,
    ssh_user: String,
    ssh_port: u16,
    ssh_sudo: bool,
    ssh_identity: Option<PathBuf>,
    known_hosts: Option<PathBuf>,
    accept_new_host_key: bool,
    kubeconfig: Option<PathBuf>,
    context: Option<String>,
    etcd: Option<Vec<String>>,
    etcd_pki: Option<PathBuf>,
    deadline: f64,
    member_timeout: f64,
    lb_runtime_api: Option<String>,
    proxmox: Option<String>,
    proxmox_fingerprint: Option<String>,
    proxmox_ca: Option<PathBuf>,
    proxmox_insecure: bool,
    proxmox_token_env: Option<String>,
}

/// The failover drill of master `node`, as `hacli drill NODE`: constant
/// read traffic (`rate` per second, GET `path`) through the topology's
/// control-plane endpoint while the node is disrupted, and the measurements.
/// Unplanned (the default): its VM powered off through Proxmox (hard stop)
/// for `down_for` seconds, or with `kill="apiserver"` its kube-apiserver
/// killed over SSH. `planned=True`: `hacli disrupt reboot NODE`'s plan, run
/// with `journal` (required, a new one) under the disruption lock as
/// `identity`. The gate is asked first (`policy`, `reboot`'s by default);
/// `skip_gate=True` (unplanned only) does not ask it, loudly. `on_event`,
/// if given, is called with a dict (`kind`: "note", "warning" or "step";
/// `message`; for a step its id `step` and its `status`) for each
/// progress event, else each goes to the `hapy` logger; an exception it
/// raises is raised after the drill (a drill is never left half-done). Reach settings as
/// `hapy.gate`, the environment filling what is not given (`KUBECONFIG`,
/// `HACLI_LB_RUNTIME_API`, Proxmox's variables, ...). Bad input raises
/// `ConfigError`; a cluster that cannot be reached, `ObserveError`.
#[pyfunction]
#[pyo3(signature = (
    node, topology, *, planned = false, kill = None, journal = None, lock_ttl = 3600.0,
    identity = None, idle_bound = 30.0, rate = 20.0, duration = 60.0, baseline = 10.0,
    down_for = 20.0, after = 5.0, recovery_timeout = 300.0, request_timeout = 2.0,
    path = "/api/v1/namespaces/kube-system", keep_alive = false, skip_gate = false,
    policy = None, ssh_user = "root", ssh_port = 22, ssh_sudo = false, ssh_identity = None,
    known_hosts = None, accept_new_host_key = false, kubeconfig = None, context = None,
    etcd = None, etcd_pki = None, deadline = 2.0, member_timeout = 1.0, lb_runtime_api = None,
    proxmox = None, proxmox_fingerprint = None, proxmox_ca = None, proxmox_insecure = false,
    proxmox_token_env = None, on_event = None
))]
#[allow(clippy::too_many_arguments)]
pub fn drill(
    py: Python<'_>,
    node: String,
    topology: &Bound<'_, PyAny>,
    planned: bool,
    kill: Option<String>,
    journal: Option<PathBuf>,
    lock_ttl: f64,
    identity: Option<String>,
    idle_bound: f64,
    rate: f64,
    duration: f64,
    baseline: f64,
    down_for: f64,
    after: f64,
    recovery_timeout: f64,
    request_timeout: f64,
    path: &str,
    keep_alive: bool,
    skip_gate: bool,
    policy: Option<&Bound<'_, PyAny>>,
    ssh_user: &str,
    ssh_port: u16,
    ssh_sudo: bool,
    ssh_identity: Option<PathBuf>,
    known_hosts: Option<PathBuf>,
    accept_new_host_key: bool,
    kubeconfig: Option<PathBuf>,
    context: Option<String>,
    etcd: Option<Vec<String>>,
    etcd_pki: Option<PathBuf>,
    deadline: f64,
    member_timeout: f64,
    lb_runtime_api: Option<String>,
    proxmox: Option<String>,
    proxmox_fingerprint: Option<String>,
    proxmox_ca: Option<PathBuf>,
    proxmox_insecure: bool,
    proxmox_token_env: Option<String>,
    on_event: Option<Py<PyAny>>,
) -> PyResult<PyDrillResult> {
    let args = Args {
        node,
        planned,
        kill,
        journal,
        lock_ttl,
        identity,
        idle_bound,
        rate,
        duration,
        baseline,
        down_for,
        after,
        recovery_timeout,
        request_timeout,
        path: path.to_string(),
        keep_alive,
        skip_gate,
        ssh_user: ssh_user.to_string(),
        ssh_port,
        ssh_sudo,
        ssh_identity,
        known_hosts,
        accept_new_host_key,
        kubeconfig,
        context,
        etcd,
        etcd_pki,
        deadline,
        member_timeout,
        lb_runtime_api,
        proxmox,
        proxmox_fingerprint,
        proxmox_ca,
        proxmox_insecure,
        proxmox_token_env,
    };
    imp::drill(py, args, topology, policy, on_event)
}

#[cfg(not(feature = "live"))]
mod imp {
    use super::*;

    pub fn drill(
        _: Python<'_>,
        _: Args,
        _: &Bound<'_, PyAny>,
        _: Option<&Bound<'_, PyAny>>,
        _: Option<Py<PyAny>>,
    ) -> PyResult<PyDrillResult> {
        Err(crate::not_live("to drill a cluster"))
    }
}

#[cfg(feature = "live")]
mod imp {
    use std::time::Duration;

    use haops::drill::{KillSsh, Kind, Options, Outcome};
    use pyo3::exceptions::PyValueError;

    use super::*;
    use crate::{ConfigError, ObserveError, PyPolicy, PyTopology};

    fn seconds(what: &str, s: f64) -> PyResult<Duration> {
        Duration::try_from_secs_f64(s).map_err(|_| {
            PyValueError::new_err(format!(
                "{what}={s}: expected a non-negative number of seconds"
            ))
        })
    }

    fn kind(a: &Args) -> PyResult<Kind> {
        match (a.planned, a.kill.as_deref()) {
            (true, None) => Ok(Kind::PlannedReboot),
            (true, Some(_)) => Err(ConfigError::new_err(
                "kill: a planned drill reboots the node; kill is for an unplanned one",
            )),
            (false, None) => Ok(Kind::PowerOff),
            (false, Some("apiserver")) => Ok(Kind::KillApiserver),
            (false, Some(k)) => Err(ConfigError::new_err(format!(
                "kill={k:?}: expected \"apiserver\" (or None: power the VM off)"
            ))),
        }
    }

    fn options(a: &Args, policy: hacore::Policy) -> PyResult<Options> {
        if a.journal.is_some() && !a.planned {
            return Err(ConfigError::new_err(
                "journal: only a planned drill (planned=True) runs with a journal",
            ));
        }
        let identity = a
            .identity
            .clone()
            .unwrap_or_else(|| format!("hapy-drill#{}", std::process::id()));
        Ok(Options {
            journal: a.journal.clone(),
            lock_ttl: seconds("lock_ttl", a.lock_ttl)?,
            idle_bound: seconds("idle_bound", a.idle_bound)?,
            rate: a.rate,
            duration: seconds("duration", a.duration)?,
            baseline: seconds("baseline", a.baseline)?,
            down_for: seconds("down_for", a.down_for)?,
            after: seconds("after", a.after)?,
            recovery_timeout: seconds("recovery_timeout", a.recovery_timeout)?,
            request_timeout: seconds("request_timeout", a.request_timeout)?,
            path: a.path.clone(),
            keep_alive: a.keep_alive,
            skip_gate: a.skip_gate,
            policy: Some(policy),
            kill_ssh: KillSsh {
                user: a.ssh_user.clone(),
                port: a.ssh_port,
                sudo: a.ssh_sudo,
            },
            ..Options::new(&a.node, kind(a)?, &identity)
        })
    }

    /// The reach settings given, the environment filling the rest.
    fn reach(a: &Args) -> PyResult<haops::Reach> {
        let lb_runtime_api = a
            .lb_runtime_api
            .as_deref()
            .map(|s| s.parse())
            .transpose()
            .map_err(|e: String| ConfigError::new_err(format!("lb_runtime_api={e}")))?;
        haops::Reach {
            kubeconfig: a.kubeconfig.clone(),
            context: a.context.clone(),
            etcd_endpoints: a.etcd.clone().unwrap_or_default(),
            etcd_tls: kubeadm::EtcdTlsOverrides {
                pki: a.etcd_pki.clone(),
                ..Default::default()
            },
            deadline: seconds("deadline", a.deadline)?,
            member_timeout: seconds("member_timeout", a.member_timeout)?,
            lb_runtime_api,
            ssh: haops::reach::SshReach {
                identity: a.ssh_identity.clone(),
                known_hosts: a.known_hosts.clone(),
                accept_new_host_key: a.accept_new_host_key,
            },
            proxmox: haops::reach::ProxmoxReach {
                endpoint: a.proxmox.clone(),
                fingerprint: a.proxmox_fingerprint.clone(),
                ca_file: a.proxmox_ca.clone(),
                insecure: a.proxmox_insecure,
                token_env: a.proxmox_token_env.clone(),
            },
            ..haops::Reach::default()
        }
        .with_env(|k| std::env::var(k).ok())
        .map_err(error)
    }

    fn error(e: haops::Error) -> PyErr {
        match e.exit_code() {
            3 => ObserveError::new_err(e.to_string()),
            _ => ConfigError::new_err(e.to_string()),
        }
    }

    fn result(py: Python<'_>, outcome: Outcome) -> PyResult<PyDrillResult> {
        let exit_code = outcome.exit_code();
        let mut r = PyDrillResult {
            outcome: "ran",
            exit_code,
            report: None,
            verdict: None,
            reason: None,
        };
        match outcome {
            Outcome::Ran(report) => {
                r.report = Some(
                    serde_json::to_value(&*report)
                        .map_err(|e| crate::Error::new_err(e.to_string()))?,
                )
            }
            Outcome::Refused { verdict, .. } => {
                r.outcome = "refused";
                r.verdict = Some(Py::new(py, PyVerdict { inner: *verdict })?);
            }
            Outcome::NotHealthy { reason } => {
                r.outcome = "not-healthy";
                r.reason = Some(reason);
            }
        }
        Ok(r)
    }

    pub fn drill(
        py: Python<'_>,
        a: Args,
        topology: &Bound<'_, PyAny>,
        policy: Option<&Bound<'_, PyAny>>,
        on_event: Option<Py<PyAny>>,
    ) -> PyResult<PyDrillResult> {
        let topology = PyTopology::coerce(topology)?.into_owned();
        let policy = PyPolicy::coerce(policy, hacore::Action::Reboot)?.into_owned();
        let options = options(&a, policy)?;
        let reach = reach(&a)?;
        let outcome = crate::progress::run(py, on_event.as_ref(), |events| {
            haops::drill::drill(&topology, &reach, &options, events).map_err(error)
        })?;
        result(py, outcome)
    }
}
