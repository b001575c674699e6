//! `hapy.disrupt` and `hapy.roll`: planned disruptions (issue 14) from
//! Python, on the live cluster or rehearsed on the simulated one, with a
//! journal, exactly as `hacli disrupt|roll` runs them: both call
//! `haops::disrupt` (same keyword names as the CLI's flags, same
//! semantics). Built with the `live` feature (on by default; haops is the
//! live operations layer): without it both raise `hapy.ObserveError`.

use std::path::PathBuf;

use hacore::disrupt::{DisruptAction, DisruptOptions, Gate};
use hacore::units::Dur;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::{ConfigError, PyPolicy, PyTopology, to_py};

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

fn seconds(what: &str, s: f64) -> PyResult<Dur> {
    if !s.is_finite() || s < 0.0 {
        return Err(PyValueError::new_err(format!(
            "{what}={s}: a number of seconds >= 0"
        )));
    }
    Ok(Dur(jiff::SignedDuration::from_secs_f64(s)))
}

fn duration(what: &str, s: f64) -> PyResult<std::time::Duration> {
    Ok(seconds(what, s)?.0.unsigned_abs())
}

/// What the disruption is: the action, its gate, its options, how it runs
/// (the keywords `disrupt` and `roll` share).
#[cfg_attr(not(feature = "live"), allow(dead_code))]
struct What {
    action: DisruptAction,
    gate: Gate,
    options: DisruptOptions,
    resume: bool,
    dry_run: bool,
}

/// How `disrupt` and `roll` run: what, where, how the cluster is reached,
/// and where progress goes (`on_event`, else the `hapy` logger).
#[cfg_attr(not(feature = "live"), allow(dead_code))]
struct Run<'a> {
    what: &'a What,
    place: &'a Where,
    reach: &'a Reach,
    on_event: Option<&'a Py<PyAny>>,
}

/// Where it runs: "simulated" (a rehearsal on the InMemoryCluster double
/// kept in `sim_state`, with the injected failures `fail`) or "live".
#[cfg_attr(not(feature = "live"), allow(dead_code))]
enum Where {
    Simulated { state: PathBuf, fail: Vec<String> },
    Live,
}

impl Where {
    fn parse(
        backend: &str,
        sim_state: Option<PathBuf>,
        fail: Option<Vec<String>>,
    ) -> PyResult<Where> {
        let fail = fail.unwrap_or_default();
        match backend {
            "simulated" => Ok(Where::Simulated {
                state: sim_state.ok_or_else(|| {
                    ConfigError::new_err(
                        "sim_state: the simulated cluster's state file (read if it exists, written back)",
                    )
                })?,
                fail,
            }),
            "live" if !fail.is_empty() => Err(ConfigError::new_err(
                "fail: injected failures are for the simulated backend only",
            )),
            "live" => Ok(Where::Live),
            other => Err(ConfigError::new_err(format!(
                "backend `{other}`: \"simulated\" (a rehearsal on the InMemoryCluster double) or \"live\""
            ))),
        }
    }
}

/// How the live backend reaches the cluster (the keywords of
/// `hapy.observe`, the SSH ones, the lock's lifetime) and where the
/// silences go: the CLI's `--kubeconfig`, `--etcd-*`, ... flags.
#[cfg_attr(not(feature = "live"), allow(dead_code))]
struct Reach {
    kubeconfig: Option<PathBuf>,
    context: Option<String>,
    etcd: Option<Vec<String>>,
    etcd_pki: Option<PathBuf>,
    deadline: f64,
    member_timeout: f64,
    kill_switch: String,
    lock_lease: String,
    daemonsets: Option<Vec<String>>,
    prometheus_url: Option<String>,
    prometheus: Option<String>,
    apiserver_port: Option<u16>,
    lb_runtime_api: Option<String>,
    lock_ttl: f64,
    ssh_identity: Option<PathBuf>,
    known_hosts: Option<PathBuf>,
    accept_new_host_key: bool,
    alertmanager_url: Option<String>,
    alertmanager_timeout: f64,
}

#[allow(clippy::too_many_arguments)]
fn what(
    kind: &str,
    version: Option<String>,
    command: Option<Vec<String>>,
    policy: Option<&Bound<'_, PyAny>>,
    identity: Option<String>,
    idle_bound: f64,
    drain: Option<bool>,
    first: Option<bool>,
    resume: bool,
    dry_run: bool,
) -> PyResult<What> {
    let action = self::action(kind, version, command)?;
    let a = action.gate_action();
    Ok(What {
        gate: Gate {
            policy: PyPolicy::coerce(policy, a)?.into_owned(),
            action: a,
            identity: identity.unwrap_or_else(|| format!("hapy-disrupt#{}", std::process::id())),
        },
        action,
        options: DisruptOptions {
            idle_bound: seconds("idle_bound", idle_bound)?,
            drain,
            first,
            // (`haops` accepts a single master's outage when the policy states it)
            accept_outage: false,
        },
        resume,
        dry_run,
    })
}

/// One planned disruption of `node` (`action`: "reboot", "upgrade" with
/// `version`, or "run" with `command`), run with a journal so it resumes:
/// gate and lock, drain its backend, move etcd leadership away, cordon and
/// drain, act, wait until healthy, restore, release the lock. A failure
/// restores what it can and names the step. Returns the report as a dict
/// (`result`: "ran" with the executor's `outcome`, or "denied" with the
/// `reasons`).
///
/// `backend="simulated"` rehearses it on the InMemoryCluster double kept
/// in `sim_state` (`fail`: injected failures, `OP/NODE`);
/// `backend="live"` runs it on the cluster, as `hacli disrupt --backend
/// live` does: reached as `hapy.observe` reaches it (`kubeconfig`,
/// `context`, `etcd`,
/// `etcd_pki`, ...), the nodes over SSH (`ssh_identity`,
/// `known_hosts`, else the topology's `ssh`), the load balancer
/// through the topology's `loadBalancer.manage`, else HAProxy's runtime
/// API (`lb_runtime_api`), the disruption Lease `lock_lease` held for at
/// most `lock_ttl` seconds. With `alertmanager_url`, the alerts the
/// disruption causes are silenced (the policy's `silence:` section) until
/// it ends. `on_event`, if given, is called with a dict for each progress
/// event (`kind` "note", "warning" or "step", `message`; a step's `step`
/// id and `status`), else each goes to the `hapy` logger.
#[pyfunction]
#[pyo3(signature = (
    action, node, topology, *, journal, sim_state = None, backend = "simulated", version = None,
    command = None, policy = None, identity = None, idle_bound = 30.0, drain = None,
    first = None, fail = None, resume = false, dry_run = false,
    kubeconfig = None, context = None, etcd = None, etcd_pki = None, deadline = 2.0,
    member_timeout = 1.0,
    kill_switch = "kube-system/hacli-kill-switch",
    lock_lease = "kube-system/hacli-disruption-lock", daemonsets = None,
    prometheus_url = None, prometheus = None, apiserver_port = None, lb_runtime_api = None, lock_ttl = 3600.0,
    ssh_identity = None, known_hosts = None, accept_new_host_key = false,
    alertmanager_url = None, alertmanager_timeout = 5.0, on_event = None
))]
#[allow(clippy::too_many_arguments)]
pub fn disrupt<'py>(
    py: Python<'py>,
    action: &str,
    node: &str,
    topology: &Bound<'py, PyAny>,
    journal: PathBuf,
    sim_state: Option<PathBuf>,
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
    kubeconfig: Option<PathBuf>,
    context: Option<String>,
    etcd: Option<Vec<String>>,
    etcd_pki: Option<PathBuf>,
    deadline: f64,
    member_timeout: f64,
    kill_switch: &str,
    lock_lease: &str,
    daemonsets: Option<Vec<String>>,
    prometheus_url: Option<String>,
    prometheus: Option<String>,
    apiserver_port: Option<u16>,
    lb_runtime_api: Option<String>,
    lock_ttl: f64,
    ssh_identity: Option<PathBuf>,
    known_hosts: Option<PathBuf>,
    accept_new_host_key: bool,
    alertmanager_url: Option<String>,
    alertmanager_timeout: f64,
    on_event: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let place = Where::parse(backend, sim_state, fail)?;
    let topology = PyTopology::coerce(topology)?.into_owned();
    let what = self::what(
        action, version, command, policy, identity, idle_bound, drain, first, resume, dry_run,
    )?;
    let reach = Reach {
        kubeconfig,
        context,
        etcd,
        etcd_pki,
        deadline,
        member_timeout,
        kill_switch: kill_switch.to_string(),
        lock_lease: lock_lease.to_string(),
        daemonsets,
        prometheus_url,
        prometheus,
        apiserver_port,
        lb_runtime_api,
        lock_ttl,
        ssh_identity,
        known_hosts,
        accept_new_host_key,
        alertmanager_url,
        alertmanager_timeout,
    };
    let node = node.to_string();
    let run = Run {
        what: &what,
        place: &place,
        reach: &reach,
        on_event: on_event.as_ref(),
    };
    let report = imp::disrupt(py, &topology, &node, &journal, run)?;
    to_py(py, &report)
}

/// A rolling operation: the masters one at a time (waiting `soak` seconds
/// after each), stopping at the first that does not complete, then the
/// workers; `nodes` restricts it. One journal per node in `journal_dir`, so
/// a stopped roll resumes (`resume=True`). Returns the roll's report as a
/// dict (`nodes`: each node's report, `notStarted`). The backends and the
/// other keywords as for [`disrupt`]; the simulated backend's soak
/// advances its clock, the live one's is a real wait.
#[pyfunction]
#[pyo3(signature = (
    action, topology, *, journal_dir, sim_state = None, backend = "simulated", nodes = None,
    version = None, command = None, soak = 0.0, policy = None, identity = None,
    idle_bound = 30.0, drain = None, first = None, fail = None, resume = false, dry_run = false,
    kubeconfig = None, context = None, etcd = None, etcd_pki = None, deadline = 2.0,
    member_timeout = 1.0,
    kill_switch = "kube-system/hacli-kill-switch",
    lock_lease = "kube-system/hacli-disruption-lock", daemonsets = None,
    prometheus_url = None, prometheus = None, apiserver_port = None, lb_runtime_api = None, lock_ttl = 3600.0,
    ssh_identity = None, known_hosts = None, accept_new_host_key = false,
    alertmanager_url = None, alertmanager_timeout = 5.0, on_event = None
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
    context: Option<String>,
    etcd: Option<Vec<String>>,
    etcd_pki: Option<PathBuf>,
    deadline: f64,
    member_timeout: f64,
    kill_switch: &str,
    lock_lease: &str,
    daemonsets: Option<Vec<String>>,
    prometheus_url: Option<String>,
    prometheus: Option<String>,
    apiserver_port: Option<u16>,
    lb_runtime_api: Option<String>,
    lock_ttl: f64,
    ssh_identity: Option<PathBuf>,
    known_hosts: Option<PathBuf>,
    accept_new_host_key: bool,
    alertmanager_url: Option<String>,
    alertmanager_timeout: f64,
    on_event: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let place = Where::parse(backend, sim_state, fail)?;
    let topology = PyTopology::coerce(topology)?.into_owned();
    let what = self::what(
        action, version, command, policy, identity, idle_bound, drain, first, resume, dry_run,
    )?;
    let soak = duration("soak", soak)?;
    let nodes = nodes.unwrap_or_default();
    let reach = Reach {
        kubeconfig,
        context,
        etcd,
        etcd_pki,
        deadline,
        member_timeout,
        kill_switch: kill_switch.to_string(),
        lock_lease: lock_lease.to_string(),
        daemonsets,
        prometheus_url,
        prometheus,
        apiserver_port,
        lb_runtime_api,
        lock_ttl,
        ssh_identity,
        known_hosts,
        accept_new_host_key,
        alertmanager_url,
        alertmanager_timeout,
    };
    let run = Run {
        what: &what,
        place: &place,
        reach: &reach,
        on_event: on_event.as_ref(),
    };
    let report = imp::roll(py, &topology, &nodes, soak, &journal_dir, run)?;
    to_py(py, &report)
}

#[cfg(not(feature = "live"))]
mod imp {
    use std::path::Path;

    use super::*;

    fn unavailable() -> PyErr {
        crate::not_live("for hapy.disrupt and hapy.roll (haops)")
    }

    pub fn disrupt(
        _: Python<'_>,
        _: &hacore::Topology,
        _: &str,
        _: &Path,
        _: Run<'_>,
    ) -> PyResult<hacore::disrupt::Report> {
        Err(unavailable())
    }

    pub fn roll(
        _: Python<'_>,
        _: &hacore::Topology,
        _: &[String],
        _: std::time::Duration,
        _: &Path,
        _: Run<'_>,
    ) -> PyResult<hacore::disrupt::RollReport> {
        Err(unavailable())
    }
}

#[cfg(feature = "live")]
mod imp {
    use std::path::Path;
    use std::time::Duration;

    use haops::disrupt::{Backend, Report, Request, RollReport, Silence, Simulated};

    use super::*;
    use crate::{Error, ObserveError};

    fn failed(e: haops::Error) -> PyErr {
        if let haops::Error::JournalInUse { journal } = &e {
            return ConfigError::new_err(format!(
                "{journal} already records a run: pass resume=True to continue it, or use a new journal"
            ));
        }
        match e.exit_code() {
            3 => ObserveError::new_err(e.to_string()),
            _ if matches!(e, haops::Error::Exec(_)) => Error::new_err(e.to_string()),
            _ => ConfigError::new_err(e.to_string()),
        }
    }

    fn backend(place: &Where, reach: &Reach) -> PyResult<Backend> {
        Ok(match place {
            Where::Simulated { state, fail } => Backend::Simulated(Simulated {
                state: state.clone(),
                fail: fail.clone(),
            }),
            Where::Live => Backend::Live(reach.to_haops()?),
        })
    }

    impl Reach {
        /// These keywords over the environment (`KUBECONFIG`,
        /// `HACLI_*`, as the CLI's flags), over the topology.
        fn to_haops(&self) -> PyResult<haops::Reach> {
            let lb_runtime_api = self
                .lb_runtime_api
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|e: String| ConfigError::new_err(format!("lb_runtime_api={e}")))?;
            haops::Reach {
                kubeconfig: self.kubeconfig.clone(),
                context: self.context.clone(),
                etcd_endpoints: self.etcd.clone().unwrap_or_default(),
                etcd_tls: kubeadm::EtcdTlsOverrides {
                    pki: self.etcd_pki.clone(),
                    ..Default::default()
                },
                deadline: duration("deadline", self.deadline)?,
                member_timeout: duration("member_timeout", self.member_timeout)?,
                kill_switch: self.kill_switch.clone(),
                lock_lease: self.lock_lease.clone(),
                daemonsets: self.daemonsets.clone().unwrap_or_default(),
                prometheus_url: self.prometheus_url.clone(),
                prometheus: self.prometheus.clone(),
                apiserver_port: self.apiserver_port,
                lb_runtime_api,
                ssh: haops::reach::SshReach {
                    identity: self.ssh_identity.clone(),
                    known_hosts: self.known_hosts.clone(),
                    accept_new_host_key: self.accept_new_host_key,
                },
                ..haops::Reach::default()
            }
            .with_env(|k| std::env::var(k).ok())
            .map_err(failed)
        }

        fn silence(&self) -> PyResult<Option<Silence>> {
            let timeout = duration("alertmanager_timeout", self.alertmanager_timeout)?;
            Ok(self.alertmanager_url.clone().map(|url| Silence {
                alertmanager_url: url,
                timeout,
            }))
        }
    }

    fn request(what: &What, reach: &Reach) -> PyResult<Request> {
        Ok(Request {
            gate: what.gate.clone(),
            options: what.options.clone(),
            resume: what.resume,
            dry_run: what.dry_run,
            lock_ttl: duration("lock_ttl", reach.lock_ttl)?,
            silence: reach.silence()?,
        })
    }

    pub fn disrupt(
        py: Python<'_>,
        topology: &hacore::Topology,
        node: &str,
        journal: &Path,
        run: Run<'_>,
    ) -> PyResult<Report> {
        let request = request(run.what, run.reach)?;
        let backend = backend(run.place, run.reach)?;
        crate::progress::run(py, run.on_event, |events| {
            haops::disrupt::disrupt(
                topology,
                &run.what.action,
                node,
                &request,
                journal,
                &backend,
                events,
            )
            .map_err(failed)
        })
    }

    pub fn roll(
        py: Python<'_>,
        topology: &hacore::Topology,
        nodes: &[String],
        soak: Duration,
        journal_dir: &Path,
        run: Run<'_>,
    ) -> PyResult<RollReport> {
        let request = request(run.what, run.reach)?;
        let backend = backend(run.place, run.reach)?;
        crate::progress::run(py, run.on_event, |events| {
            haops::disrupt::roll(
                topology,
                &run.what.action,
                nodes,
                soak,
                &request,
                journal_dir,
                &backend,
                events,
            )
            .map_err(failed)
        })
    }
}
