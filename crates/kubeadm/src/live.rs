//! The live cluster as the executor's observer and as the disruption lock
//! of `hacore::disrupt::run` (synchronous adapters over the async observer
//! and Lease, each on its own runtime).

use std::time::Duration;

use hacore::backend::{BackendError, Clock};
use hacore::disrupt::{Lock, LockAnswer};
use hacore::{ClusterState, Topology};

use crate::{Acquire, DisruptionLock, Error, Observer, ObserverConfig};

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Timeout {
            what: format!("starting the async runtime: {e}"),
            ms: 0,
        })
}

/// [`Observer`] as the executor's `hacore::backend::Observer`.
pub struct LiveObserver {
    /// Shared with the lock: the Kubernetes client's pooled connections
    /// live on the runtime that made them.
    rt: std::sync::Arc<tokio::runtime::Runtime>,
    observer: Observer,
}

impl std::fmt::Debug for LiveObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveObserver")
            .field("observer", &self.observer)
            .finish_non_exhaustive()
    }
}

impl LiveObserver {
    /// Observe the cluster `topology` describes with `config`.
    pub fn new(topology: &Topology, config: ObserverConfig) -> Result<LiveObserver, Error> {
        let rt = std::sync::Arc::new(runtime()?);
        let observer = rt.block_on(Observer::new(topology.clone(), config))?;
        Ok(LiveObserver { rt, observer })
    }

    /// The disruption lock this observer's cluster holds (its configured
    /// Lease), on the same runtime.
    pub fn lock(&self, ttl: Duration) -> Result<LiveLock, Error> {
        Ok(LiveLock {
            rt: self.rt.clone(),
            lock: DisruptionLock::new(
                self.observer.client().clone(),
                self.observer.config().lock.clone(),
            ),
            ttl,
            deadline: self.observer.config().deadline.max(Duration::from_secs(5)),
        })
    }
}

impl hacore::backend::Observer for LiveObserver {
    fn observe(&mut self, _topology: &Topology) -> ClusterState {
        self.rt.block_on(Box::pin(self.observer.observe()))
    }
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct Wall;

impl Clock for Wall {
    fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::now()
    }
}

/// [`DisruptionLock`] as `hacore::disrupt::Lock`.
pub struct LiveLock {
    rt: std::sync::Arc<tokio::runtime::Runtime>,
    lock: DisruptionLock,
    ttl: Duration,
    deadline: Duration,
}

impl std::fmt::Debug for LiveLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveLock")
            .field("lock", &self.lock)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl LiveLock {
    fn failed(&self, e: impl std::fmt::Display) -> BackendError {
        BackendError::Failed {
            what: format!("disruption lock {}", self.lock.lease()),
            message: e.to_string(),
        }
    }
}

impl Lock for LiveLock {
    fn acquire(&mut self, identity: &str) -> Result<LockAnswer, BackendError> {
        let f = self
            .lock
            .acquire(identity, self.ttl, jiff::Timestamp::now());
        let deadline = self.deadline;
        match self
            .rt
            .block_on(async move { tokio::time::timeout(deadline, f).await })
        {
            Ok(Ok(Acquire::Acquired)) => {
                eprintln!(
                    "took the disruption lock {} as {identity}",
                    self.lock.lease()
                );
                Ok(LockAnswer::Acquired)
            }
            Ok(Ok(Acquire::HeldBy { holder, .. })) => Ok(LockAnswer::HeldBy(holder)),
            Ok(Err(e)) => Err(self.failed(e.chain())),
            Err(_) => Err(self.failed("no answer before the deadline")),
        }
    }

    fn release(&mut self, identity: &str) -> Result<(), BackendError> {
        let f = self.lock.release(identity);
        let deadline = self.deadline;
        match self
            .rt
            .block_on(async move { tokio::time::timeout(deadline, f).await })
        {
            Ok(Ok(_)) => {
                eprintln!("released the disruption lock {}", self.lock.lease());
                Ok(())
            }
            Ok(Err(e)) => Err(self.failed(e.chain())),
            Err(_) => Err(self.failed("no answer before the deadline")),
        }
    }
}

/// A backend that carries out none of its operations: what a planned
/// disruption does not need (no hypervisor step; no load balancer the
/// topology says how to reach).
#[derive(Debug, Clone)]
pub struct Absent(pub &'static str);

impl hacore::backend::Hypervisor for Absent {
    fn is_done(&mut self, op: &hacore::backend::HvOp) -> Result<bool, BackendError> {
        Err(BackendError::Unsupported(format!("{}: {op:?}", self.0)))
    }
    fn apply(&mut self, op: &hacore::backend::HvOp) -> Result<(), BackendError> {
        Err(BackendError::Unsupported(format!("{}: {op:?}", self.0)))
    }
}

impl hacore::backend::LoadBalancer for Absent {
    fn is_done(&mut self, op: &hacore::backend::LbOp) -> Result<bool, BackendError> {
        Err(BackendError::Unsupported(format!("{}: {op:?}", self.0)))
    }
    fn apply(&mut self, op: &hacore::backend::LbOp) -> Result<(), BackendError> {
        Err(BackendError::Unsupported(format!("{}: {op:?}", self.0)))
    }
}

/// Why [`DisruptBackends::connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The observer (kubeconfig, etcd TLS) could not be set up.
    #[error(transparent)]
    Observer(#[from] Error),
    /// The control-plane backend (SSH settings, etcd TLS) could not be set up.
    #[error(transparent)]
    ControlPlane(#[from] crate::control_plane::CpError),
}

/// The live backends of planned disruptions (`hacore::disrupt::run` and
/// `roll`), for any node of the topology, so one set serves a whole roll:
/// the observer and the disruption Lease, kubeadm's control plane (the
/// Kubernetes API, etcd, the nodes over SSH), and the load balancer the
/// caller reaches (`hacli` and `hapy` pick it from the topology).
pub struct DisruptBackends {
    observer: LiveObserver,
    lock: LiveLock,
    cp: crate::control_plane::KubeadmControlPlane,
    lb: Box<dyn hacore::backend::LoadBalancer>,
    hv: Absent,
}

impl std::fmt::Debug for DisruptBackends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DisruptBackends")
            .field("observer", &self.observer)
            .field("lock", &self.lock)
            .finish_non_exhaustive()
    }
}

impl DisruptBackends {
    /// Reach the cluster `config` describes; `cp` carries the SSH choices
    /// (its kubeconfig, etcd endpoints and TLS and apiserver port are
    /// taken from `config`); the lock lasts `lock_ttl` without renewal;
    /// `lb` None: no load balancer to reach (a step that needs it fails).
    pub fn connect(
        topology: &Topology,
        config: ObserverConfig,
        cp: crate::control_plane::ControlPlaneOptions,
        lock_ttl: Duration,
        lb: Option<Box<dyn hacore::backend::LoadBalancer>>,
    ) -> Result<DisruptBackends, ConnectError> {
        let cp_opts = crate::control_plane::ControlPlaneOptions {
            kubeconfig: config.kubeconfig.clone(),
            etcd_endpoints: config.etcd_endpoints.clone(),
            etcd_tls: config.etcd_tls.clone(),
            apiserver_port: config.apiserver_port,
            ..cp
        };
        let observer = LiveObserver::new(topology, config)?;
        let lock = observer.lock(lock_ttl)?;
        let cp = crate::control_plane::KubeadmControlPlane::from_topology(topology, &cp_opts)?;
        Ok(DisruptBackends {
            observer,
            lock,
            cp,
            lb: lb.unwrap_or_else(|| {
                Box::new(Absent(
                    "no load balancer to reach (loadBalancer.manage or runtimeApi)",
                ))
            }),
            hv: Absent("no hypervisor step in a disruption"),
        })
    }

    /// Run `f` with the backends and the lock.
    pub fn with<T>(
        &mut self,
        f: impl FnOnce(&mut hacore::backend::Backends<'_>, &mut dyn Lock) -> T,
    ) -> T {
        let mut b = hacore::backend::Backends {
            hypervisor: &mut self.hv,
            load_balancer: self.lb.as_mut(),
            control_plane: &mut self.cp,
            observer: &mut self.observer,
            clock: &Wall,
        };
        f(&mut b, &mut self.lock)
    }
}
