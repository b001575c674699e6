//! `hapy.observe` and `hapy.gate`: the live cluster through the kubeadm
//! backend (crates/kubeadm), the GIL released while waiting on the network.
//!
//! Built with the `live` feature (on by default). Without it both functions
//! exist, with the same signature, and raise `hapy.ObserveError`.

use std::path::PathBuf;

use pyo3::prelude::*;

use crate::{ObserveError, PyPolicy, PyState, PyTopology, PyVerdict};

/// How to reach the cluster: the keyword arguments `observe` and `gate`
/// share, with kubeadm's defaults.
#[cfg_attr(not(feature = "live"), allow(dead_code))]
pub(crate) struct Reach {
    pub(crate) kubeconfig: Option<PathBuf>,
    pub(crate) etcd: Option<Vec<String>>,
    pub(crate) etcd_pki: Option<PathBuf>,
    pub(crate) timeout: f64,
    pub(crate) member_timeout: f64,
    pub(crate) kill_switch: String,
    pub(crate) lock_lease: String,
    pub(crate) daemonsets: Option<Vec<String>>,
    pub(crate) prometheus_url: Option<String>,
    pub(crate) apiserver_port: Option<u16>,
    pub(crate) lb_runtime_api: Option<String>,
}

/// Observe the live cluster once, within `timeout` seconds: nodes, etcd
/// (TLS, kubeadm's certificates), apiservers' /readyz, the kill-switch, the
/// lock, the load balancer's pool (HAProxy's runtime API: `lb_runtime_api`
/// as `unix:/path` or `tcp:ADDR:PORT`, else the topology's
/// `loadBalancer.runtimeApi`) and, with `prometheus_url`, alerts. A probe that fails or times out
/// is recorded in the state's `probeErrors`, so the rules that need it
/// answer "unknown". Raises `ObserveError` if the cluster cannot be reached
/// at all (no kubeconfig, unreadable etcd certificates).
#[pyfunction]
#[pyo3(signature = (
    topology, *, kubeconfig = None, etcd = None, etcd_pki = None, timeout = 2.0,
    member_timeout = 1.0, kill_switch = "kube-system/hacli-kill-switch",
    lock_lease = "kube-system/hacli-disruption-lock", daemonsets = None,
    prometheus_url = None, apiserver_port = None, lb_runtime_api = None
))]
#[allow(clippy::too_many_arguments)]
pub fn observe(
    py: Python<'_>,
    topology: &Bound<'_, PyAny>,
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
) -> PyResult<PyState> {
    let reach = Reach {
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
    };
    imp::observe(py, topology, reach)
}

/// Observe the live cluster and evaluate ACTION on NODE with the real clock;
/// with `lock=True`, take the disruption lock (a Lease, `lock_ttl` seconds)
/// when the verdict allows, as `identity` (default
/// `ACTION/NODE@HOST#PID`). A lock held by someone else denies; a lock that
/// cannot be taken makes the verdict unknown. Fails closed: whatever could
/// not be observed within `timeout` seconds makes the verdict "unknown".
#[pyfunction]
#[pyo3(signature = (
    action, node, topology, policy = None, *, lock = false, lock_ttl = 1800.0,
    identity = None, kubeconfig = None, etcd = None, etcd_pki = None,
    timeout = 2.0, member_timeout = 1.0,
    kill_switch = "kube-system/hacli-kill-switch",
    lock_lease = "kube-system/hacli-disruption-lock", daemonsets = None,
    prometheus_url = None, apiserver_port = None, lb_runtime_api = None
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
) -> PyResult<PyVerdict> {
    let reach = Reach {
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
    };
    let action: hacore::Action = action.parse().map_err(crate::config_error)?;
    let topology = PyTopology::coerce(topology)?;
    let policy = PyPolicy::coerce(policy, action)?;
    imp::gate(
        py, action, node, &topology, &policy, lock, lock_ttl, identity, reach,
    )
}

#[cfg(not(feature = "live"))]
mod imp {
    use super::*;

    fn unavailable() -> PyErr {
        ObserveError::new_err(
            "hapy was built without the `live` feature: rebuild with it (the default) to observe a cluster",
        )
    }

    pub fn observe(_: Python<'_>, _: &Bound<'_, PyAny>, _: Reach) -> PyResult<PyState> {
        Err(unavailable())
    }

    #[allow(clippy::too_many_arguments)]
    pub fn gate(
        _: Python<'_>,
        _: hacore::Action,
        _: &str,
        _: &hacore::Topology,
        _: &hacore::Policy,
        _: bool,
        _: f64,
        _: Option<String>,
        _: Reach,
    ) -> PyResult<PyVerdict> {
        Err(unavailable())
    }
}

#[cfg(feature = "live")]
mod imp {
    use std::time::Duration;

    use hacore::gate::Request;
    use hacore::{Action, Policy, Topology};
    use kubeadm::{DisruptionLock, EtcdTlsOverrides, ObjectRef, Observer, ObserverConfig};
    use pyo3::exceptions::PyValueError;

    use super::*;
    use crate::config_error;

    fn seconds(what: &str, s: f64) -> PyResult<Duration> {
        Duration::try_from_secs_f64(s).map_err(|_| {
            PyValueError::new_err(format!(
                "{what}={s}: expected a non-negative number of seconds"
            ))
        })
    }

    fn object_ref(what: &'static str, s: &str) -> PyResult<ObjectRef> {
        ObjectRef::parse(what, s).map_err(|e| crate::ConfigError::new_err(e.to_string()))
    }

    fn observe_error(e: kubeadm::Error) -> PyErr {
        ObserveError::new_err(e.to_string())
    }

    impl Reach {
        /// The observer configuration, adding the DaemonSets the policy's
        /// `daemonsets` rule names (as `hacli gate` does).
        fn config(self, policy: Option<&Policy>) -> PyResult<ObserverConfig> {
            let deadline = seconds("timeout", self.timeout)?;
            let member_timeout = seconds("member_timeout", self.member_timeout)?;
            let mut daemonsets = self.daemonsets.unwrap_or_default();
            if let Some(ds) = policy.and_then(|p| p.rules.daemonsets.as_ref()) {
                for n in &ds.names {
                    if !daemonsets.contains(n) {
                        daemonsets.push(n.clone());
                    }
                }
            }
            Ok(ObserverConfig {
                kubeconfig: self.kubeconfig,
                etcd_endpoints: self.etcd.unwrap_or_default(),
                etcd_tls: EtcdTlsOverrides {
                    pki: self.etcd_pki,
                    ..Default::default()
                },
                deadline,
                member_timeout: member_timeout.min(deadline),
                kill_switch: object_ref("kill_switch", &self.kill_switch)?,
                lock: object_ref("lock_lease", &self.lock_lease)?,
                daemonsets,
                prometheus_url: self.prometheus_url,
                apiserver_port: self.apiserver_port,
                reboot_required: None,
                lb_runtime_api: self
                    .lb_runtime_api
                    .as_deref()
                    .map(|s| s.parse())
                    .transpose()
                    .map_err(|e: String| {
                        crate::ConfigError::new_err(format!("lb_runtime_api={e}"))
                    })?,
            })
        }
    }

    fn runtime() -> PyResult<tokio::runtime::Runtime> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ObserveError::new_err(format!("starting the async runtime: {e}")))
    }

    pub fn observe(py: Python<'_>, topology: &Bound<'_, PyAny>, reach: Reach) -> PyResult<PyState> {
        let topology = PyTopology::coerce(topology)?.into_owned();
        let config = reach.config(None)?;
        let rt = runtime()?;
        let state = py.detach(|| {
            rt.block_on(async {
                let observer = Observer::new(topology, config).await?;
                Ok::<_, kubeadm::Error>(observer.observe().await)
            })
        });
        state.map(PyState::observed).map_err(observe_error)
    }

    fn hostname() -> String {
        std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unknown-host".into())
    }

    #[allow(clippy::too_many_arguments)]
    pub fn gate(
        py: Python<'_>,
        action: Action,
        node: &str,
        topology: &Topology,
        policy: &Policy,
        lock: bool,
        lock_ttl: f64,
        identity: Option<String>,
        reach: Reach,
    ) -> PyResult<PyVerdict> {
        let ttl = seconds("lock_ttl", lock_ttl)?;
        let config = reach.config(Some(policy))?;
        let deadline = config.deadline;
        let lease = config.lock.clone();
        let identity = identity
            .unwrap_or_else(|| format!("{action}/{node}@{}#{}", hostname(), std::process::id()));
        let rt = runtime()?;
        let owned = topology.clone();
        let verdict = py.detach(|| {
            rt.block_on(async {
                let observer = Observer::new(owned, config).await.map_err(observe_error)?;
                let state = observer.observe().await;
                // Another cluster than the topology's is bad input.
                state
                    .check_topology(topology, "the observed state")
                    .map_err(config_error)?;
                let now = jiff::Timestamp::now();
                let request = Request {
                    action,
                    target: node,
                    requester: Some(&identity),
                };
                let mut verdict = hacore::evaluate(topology, &state, policy, &request, now)
                    .map_err(config_error)?;
                if lock {
                    DisruptionLock::new(observer.client().clone(), lease)
                        .take_for(&mut verdict, &identity, ttl, now, deadline)
                        .await;
                }
                Ok::<_, PyErr>(verdict)
            })
        })?;
        Ok(PyVerdict { inner: verdict })
    }
}
