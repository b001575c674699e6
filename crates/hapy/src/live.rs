//! `hapy.observe`, `hapy.gate` and `hapy.lock_show/lock_take/lock_release`:
//! the live operations of the library (`haops`), as `hacli observe`,
//! `hacli gate` and `hacli lock` run them, the GIL released while waiting
//! on the network. The keywords are translated into a `haops::Reach`, over
//! the environment (`Reach::with_env`: the CLI's variables, the same
//! precedence).
//!
//! Built with the `live` feature (on by default). Without it the functions
//! exist, with the same signature, and raise `hapy.ObserveError`.

use std::path::PathBuf;

use pyo3::prelude::*;

use crate::{PyPolicy, PyState, PyTopology, PyVerdict, datetime};

/// How to reach the cluster: the keyword arguments `observe`, `gate`,
/// `disrupt` and `roll` share, with kubeadm's defaults; a thin translation
/// into `haops::Reach`.
#[cfg_attr(not(feature = "live"), allow(dead_code))]
pub(crate) struct Reach {
    pub(crate) kubeconfig: Option<PathBuf>,
    pub(crate) context: Option<String>,
    pub(crate) etcd: Option<Vec<String>>,
    pub(crate) etcd_pki: Option<PathBuf>,
    pub(crate) deadline: f64,
    pub(crate) member_timeout: f64,
    pub(crate) kill_switch: String,
    pub(crate) lock_lease: String,
    pub(crate) daemonsets: Option<Vec<String>>,
    pub(crate) prometheus_url: Option<String>,
    pub(crate) prometheus: Option<String>,
    pub(crate) apiserver_port: Option<u16>,
    pub(crate) lb_runtime_api: Option<String>,
}

/// Observe the live cluster once, within `deadline` seconds (`kubeconfig`
/// and its `context`, else kube's inference): nodes, etcd
/// (TLS, kubeadm's certificates), apiservers' /readyz, the kill-switch, the
/// lock, the load balancer's pool (HAProxy's runtime API: `lb_runtime_api`
/// as `unix:/path` or `tcp:ADDR:PORT`, else the topology's
/// `loadBalancer.runtimeApi`), with `prometheus_url` alerts, and with
/// `snapshot_dir` the newest verified etcd snapshot there. A probe that
/// fails or times out is recorded in the state's `probeErrors`, so the
/// rules that need it answer "unknown". Raises `ObserveError` if the
/// cluster cannot be reached at all (no kubeconfig, unreadable etcd
/// certificates), `ConfigError` if what answers is another cluster.
#[pyfunction]
#[pyo3(signature = (
    topology, *, kubeconfig = None, context = None, etcd = None, etcd_pki = None, deadline = 2.0,
    member_timeout = 1.0, kill_switch = "kube-system/hacli-kill-switch",
    lock_lease = "kube-system/hacli-disruption-lock", daemonsets = None,
    prometheus_url = None, prometheus = None, apiserver_port = None, lb_runtime_api = None,
    snapshot_dir = None
))]
#[allow(clippy::too_many_arguments)]
pub fn observe(
    py: Python<'_>,
    topology: &Bound<'_, PyAny>,
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
    snapshot_dir: Option<PathBuf>,
) -> PyResult<PyState> {
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
    };
    let topology = PyTopology::coerce(topology)?;
    imp::observe(py, &topology, reach, snapshot_dir)
}

/// What `hapy.gate` asks beyond how to reach the cluster.
#[cfg_attr(not(feature = "live"), allow(dead_code))]
pub(crate) struct GateAsk<'a> {
    action: hacore::Action,
    node: &'a str,
    topology: &'a hacore::Topology,
    policy: &'a hacore::Policy,
    lock: bool,
    lock_ttl: f64,
    identity: Option<String>,
    move_leader: bool,
    snapshot_dir: Option<PathBuf>,
}

/// Observe the live cluster and evaluate ACTION on NODE with the real
/// clock (`haops::gate`, as `hacli gate` does). With `move_leader=True`,
/// when `etcd-leader` is the only rule that denies, move etcd leadership
/// to the best healthy, caught-up voter (under the disruption lock) and
/// evaluate again; the lines it logs go to the `hapy` logger. With
/// `lock=True`, take the disruption lock (a Lease, `lock_ttl` seconds)
/// when the verdict allows, as `identity` (default `ACTION/NODE@HOST#PID`).
/// A lock held by someone else denies; a lock that cannot be taken makes
/// the verdict unknown. With `prometheus` (else the topology's
/// `prometheus.url`), `etcd-latency` and `master-disk` read their figures
/// from that Prometheus. Fails closed: whatever could not be observed within
/// `deadline` seconds makes the verdict "unknown".
#[pyfunction]
#[pyo3(signature = (
    action, node, topology, policy = None, *, lock = false, lock_ttl = 1800.0,
    identity = None, move_leader = false, kubeconfig = None, context = None, etcd = None,
    etcd_pki = None, deadline = 2.0, member_timeout = 1.0,
    kill_switch = "kube-system/hacli-kill-switch",
    lock_lease = "kube-system/hacli-disruption-lock", daemonsets = None,
    prometheus_url = None, prometheus = None, apiserver_port = None, lb_runtime_api = None,
    snapshot_dir = None
))]
#[allow(clippy::too_many_arguments)]
pub fn gate(
    py: Python<'_>,
    action: &str,
    node: &str,
    topology: &Bound<'_, PyAny>,
    policy: Option<&Bound<'_, PyAny>>,
    lock: bool,
    lock_ttl: f64,
    identity: Option<String>,
    move_leader: bool,
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
    snapshot_dir: Option<PathBuf>,
) -> PyResult<PyVerdict> {
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
    };
    let action: hacore::Action = action.parse().map_err(crate::config_error)?;
    let topology = PyTopology::coerce(topology)?;
    let policy = PyPolicy::coerce(policy, action)?;
    let ask = GateAsk {
        action,
        node,
        topology: &topology,
        policy: &policy,
        lock,
        lock_ttl,
        identity,
        move_leader,
        snapshot_dir,
    };
    imp::gate(py, ask, reach)
}

/// The disruption lock, as `hapy.lock_show`, `hapy.lock_take` and
/// `hapy.lock_release` (and `hacli lock show|take|release`) found or left
/// it.
#[pyclass(name = "LockResult", module = "hapy", frozen)]
#[derive(Debug, Clone)]
pub struct PyLockResult {
    /// `show`, `take` or `release`.
    #[pyo3(get)]
    pub operation: &'static str,
    /// The Lease, `namespace/name`.
    #[pyo3(get)]
    pub lease: String,
    /// Its holder after the call; None: free.
    #[pyo3(get)]
    pub holder: Option<String>,
    /// take: taken (or renewed); release: released; show: always True.
    #[pyo3(get)]
    pub done: bool,
    /// Kept after a failed rollback, for this reason, until a person
    /// releases it (show).
    #[pyo3(get)]
    pub kept_because: Option<String>,
    /// `hacli lock`'s exit code: 0 done (or shown), 1 held by someone else
    /// (take) or not held by the caller (release).
    #[pyo3(get)]
    pub exit_code: i32,
    until: Option<jiff::Timestamp>,
}

#[pymethods]
impl PyLockResult {
    /// When the lock expires unless renewed (None: free, kept, or no
    /// duration).
    #[getter]
    fn until<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, pyo3::types::PyDateTime>>> {
        self.until.map(|t| datetime(py, t)).transpose()
    }

    fn __repr__(&self) -> String {
        format!(
            "LockResult(operation={:?}, lease={:?}, holder={:?}, done={})",
            self.operation,
            self.lease,
            self.holder,
            if self.done { "True" } else { "False" }
        )
    }
}

/// Which lock operation, and for whom.
#[cfg_attr(not(feature = "live"), allow(dead_code))]
pub(crate) enum LockOp {
    Show,
    Take { identity: String, ttl: f64 },
    Release { identity: String },
}

/// Who holds the disruption lock now (`hacli lock show`).
#[pyfunction]
#[pyo3(signature = (*, kubeconfig = None, context = None, lock_lease = "kube-system/hacli-disruption-lock", deadline = 5.0))]
pub fn lock_show(
    py: Python<'_>,
    kubeconfig: Option<PathBuf>,
    context: Option<String>,
    lock_lease: &str,
    deadline: f64,
) -> PyResult<PyLockResult> {
    imp::lock(
        py,
        LockOp::Show,
        (kubeconfig, context),
        lock_lease,
        deadline,
    )
}

/// Take (or renew) the disruption lock for `identity` for `lock_ttl`
/// seconds, whatever a gate would say (`hacli lock take`): `done` False,
/// exit code 1, when someone else holds it.
#[pyfunction]
#[pyo3(signature = (identity, *, lock_ttl = 1800.0, kubeconfig = None, context = None, lock_lease = "kube-system/hacli-disruption-lock", deadline = 5.0))]
pub fn lock_take(
    py: Python<'_>,
    identity: String,
    lock_ttl: f64,
    kubeconfig: Option<PathBuf>,
    context: Option<String>,
    lock_lease: &str,
    deadline: f64,
) -> PyResult<PyLockResult> {
    let op = LockOp::Take {
        identity,
        ttl: lock_ttl,
    };
    imp::lock(py, op, (kubeconfig, context), lock_lease, deadline)
}

/// Release the disruption lock held by `identity` (`hacli lock release`):
/// `done` False, exit code 1, when it does not hold it (nothing done).
#[pyfunction]
#[pyo3(signature = (identity, *, kubeconfig = None, context = None, lock_lease = "kube-system/hacli-disruption-lock", deadline = 5.0))]
pub fn lock_release(
    py: Python<'_>,
    identity: String,
    kubeconfig: Option<PathBuf>,
    context: Option<String>,
    lock_lease: &str,
    deadline: f64,
) -> PyResult<PyLockResult> {
    imp::lock(
        py,
        LockOp::Release { identity },
        (kubeconfig, context),
        lock_lease,
        deadline,
    )
}

#[cfg(not(feature = "live"))]
mod imp {
    use super::*;

    fn unavailable() -> PyErr {
        crate::not_live("to observe a cluster")
    }

    pub fn observe(
        _: Python<'_>,
        _: &hacore::Topology,
        _: Reach,
        _: Option<PathBuf>,
    ) -> PyResult<PyState> {
        Err(unavailable())
    }

    pub fn gate(_: Python<'_>, _: GateAsk<'_>, _: Reach) -> PyResult<PyVerdict> {
        Err(unavailable())
    }

    pub fn lock(
        _: Python<'_>,
        _: LockOp,
        _: (Option<PathBuf>, Option<String>),
        _: &str,
        _: f64,
    ) -> PyResult<PyLockResult> {
        Err(unavailable())
    }
}

#[cfg(feature = "live")]
mod imp {
    use std::time::Duration;

    use haops::gate::{GateRequest, default_identity};
    use haops::lock::{Released, Taken};
    use pyo3::exceptions::PyValueError;

    // The gate's lines go to the `hapy` logger (INFO; a failed leader move
    // WARNING).

    use super::*;

    fn seconds(what: &str, s: f64) -> PyResult<Duration> {
        Duration::try_from_secs_f64(s).map_err(|_| {
            PyValueError::new_err(format!(
                "{what}={s}: expected a non-negative number of seconds"
            ))
        })
    }

    /// A library error as Python's: bad input is `ConfigError`, a cluster
    /// that cannot be reached `ObserveError`.
    fn ops_error(e: haops::Error) -> PyErr {
        match e.exit_code() {
            2 => crate::ConfigError::new_err(e.to_string()),
            _ => crate::ObserveError::new_err(e.to_string()),
        }
    }

    fn setting(keyword: &'static str, value: &str) -> PyResult<()> {
        kubeadm::ObjectRef::parse(keyword, value)
            .map(|_| ())
            .map_err(|e| crate::ConfigError::new_err(e.to_string()))
    }

    impl Reach {
        /// These keywords as the library's reach settings, over the
        /// environment (as the CLI's flags are).
        fn haops(self) -> PyResult<haops::Reach> {
            setting("kill_switch", &self.kill_switch)?;
            setting("lock_lease", &self.lock_lease)?;
            let lb_runtime_api = (self.lb_runtime_api.as_deref())
                .map(str::parse)
                .transpose()
                .map_err(|e: String| crate::ConfigError::new_err(format!("lb_runtime_api={e}")))?;
            let reach = haops::Reach {
                kubeconfig: self.kubeconfig,
                context: self.context,
                etcd_endpoints: self.etcd.unwrap_or_default(),
                etcd_tls: kubeadm::EtcdTlsOverrides {
                    pki: self.etcd_pki,
                    ..Default::default()
                },
                deadline: seconds("deadline", self.deadline)?,
                member_timeout: seconds("member_timeout", self.member_timeout)?,
                kill_switch: self.kill_switch,
                lock_lease: self.lock_lease,
                daemonsets: self.daemonsets.unwrap_or_default(),
                prometheus_url: self.prometheus_url,
                prometheus: self.prometheus,
                apiserver_port: self.apiserver_port,
                lb_runtime_api,
                ..haops::Reach::default()
            };
            reach.with_env(|k| std::env::var(k).ok()).map_err(ops_error)
        }
    }

    pub fn observe(
        py: Python<'_>,
        topology: &hacore::Topology,
        reach: Reach,
        snapshot_dir: Option<PathBuf>,
    ) -> PyResult<PyState> {
        let mut reach = reach.haops()?;
        reach.snapshot_dir = snapshot_dir.or(reach.snapshot_dir);
        let seen = py.detach(|| haops::observe::observe(topology, &reach, None).map_err(ops_error));
        Ok(PyState::observed(seen?.state))
    }

    pub fn gate(py: Python<'_>, ask: GateAsk<'_>, reach: Reach) -> PyResult<PyVerdict> {
        let mut reach = reach.haops()?;
        reach.snapshot_dir = ask.snapshot_dir.clone().or(reach.snapshot_dir);
        let identity =
            (ask.identity.clone()).unwrap_or_else(|| default_identity(ask.action, ask.node));
        let request = GateRequest {
            move_leader: ask.move_leader,
            lock: ask.lock,
            lock_ttl: seconds("lock_ttl", ask.lock_ttl)?,
            ..GateRequest::new(ask.action, ask.node, ask.policy, &identity)
        };
        let outcome = crate::progress::run(py, None, |events| {
            let now = jiff::Timestamp::now();
            haops::gate::gate(ask.topology, &reach, &request, now, events).map_err(ops_error)
        })?;
        Ok(PyVerdict {
            inner: outcome.verdict,
        })
    }

    pub fn lock(
        py: Python<'_>,
        op: LockOp,
        (kubeconfig, context): (Option<PathBuf>, Option<String>),
        lock_lease: &str,
        deadline: f64,
    ) -> PyResult<PyLockResult> {
        setting("lock_lease", lock_lease)?;
        let reach = haops::Reach {
            kubeconfig,
            context,
            lock_lease: lock_lease.to_string(),
            deadline: seconds("deadline", deadline)?,
            ..haops::Reach::default()
        }
        .with_env(|k| std::env::var(k).ok())
        .map_err(ops_error)?;
        let result = |operation, lease, holder, done: bool| PyLockResult {
            operation,
            lease,
            holder,
            done,
            kept_because: None,
            exit_code: if done { 0 } else { 1 },
            until: None,
        };
        let now = jiff::Timestamp::now();
        Ok(match op {
            LockOp::Show => {
                let s = py.detach(|| haops::lock::show(&reach, now).map_err(ops_error))?;
                PyLockResult {
                    kept_because: s.kept,
                    until: s.until,
                    ..result("show", s.lease, s.holder, true)
                }
            }
            LockOp::Take { identity, ttl } => {
                let ttl = seconds("lock_ttl", ttl)?;
                let t =
                    py.detach(|| haops::lock::take(&reach, &identity, ttl, now).map_err(ops_error));
                match t? {
                    Taken::Taken { lease, identity } => result("take", lease, Some(identity), true),
                    Taken::HeldBy {
                        lease,
                        holder,
                        until,
                    } => PyLockResult {
                        until,
                        ..result("take", lease, Some(holder), false)
                    },
                }
            }
            LockOp::Release { identity } => {
                let r = py.detach(|| haops::lock::release(&reach, &identity).map_err(ops_error));
                match r? {
                    Released::Released { lease } => result("release", lease, None, true),
                    Released::NotHeld { lease } => result("release", lease, None, false),
                }
            }
        })
    }
}
