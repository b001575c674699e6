//! Connect: from a topology and its [`Reach`], the backends every live
//! operation runs through, wired once.

use std::time::Duration;

use hacore::Topology;

use crate::{Error, Reach};

/// The live backends of an operation on the cluster `topology` describes:
/// the observer and the disruption Lease, kubeadm's control plane (the
/// Kubernetes API, etcd, the nodes over SSH), and the load balancer (its
/// `loadBalancer.manage` settings, else HAProxy's runtime API; absent when
/// neither says how to reach it: a step that needs it fails). One set
/// serves a whole roll.
pub struct Live {
    backends: kubeadm::live::DisruptBackends,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("backends", &self.backends)
            .finish()
    }
}

impl Live {
    /// Reach the cluster: `policy` adds the DaemonSets its rule names to
    /// the observation; the disruption lock lasts `lock_ttl` without
    /// renewal.
    pub fn connect(
        topology: &Topology,
        reach: &Reach,
        policy: Option<&hacore::Policy>,
        lock_ttl: Duration,
    ) -> Result<Live, Error> {
        let config = reach.observer_config(policy)?;
        let lb = pfsense::lb::for_disruption(topology, &reach.lb_options())?;
        let backends = kubeadm::live::DisruptBackends::connect(
            topology,
            config,
            reach.control_plane_options(),
            lock_ttl,
            lb,
        )
        .map_err(|e| match e {
            kubeadm::live::ConnectError::Observer(e) => Error::Kubeadm(e),
            kubeadm::live::ConnectError::ControlPlane(e) => Error::ControlPlane(e),
        })?;
        Ok(Live { backends })
    }

    /// Run `f` with the backends and the lock.
    pub fn with<T>(
        &mut self,
        f: impl FnOnce(&mut hacore::backend::Backends<'_>, &mut dyn hacore::disrupt::Lock) -> T,
    ) -> T {
        self.backends.with(f)
    }
}
