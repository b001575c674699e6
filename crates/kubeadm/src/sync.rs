//! The live observer and clock for hacore's synchronous executor.
//!
//! hacore's [`hacore::backend::Observer`] is synchronous and takes the
//! topology of the moment (a gate before a join sees the masters that have
//! joined so far): [`LiveObserver`] builds a [`crate::Observer`] for that
//! topology and observes it on its own runtime, under the observer's
//! deadline. A configuration error (no kubeconfig, unreadable etcd
//! certificates) is recorded as a probe error on every probe, so every rule
//! answers "unknown" and no gate allows.

use hacore::backend::Clock;
use hacore::state::{ClusterState, Probe};
use hacore::topology::Topology;
use jiff::Timestamp;

use crate::ObserverConfig;

/// Observes the live cluster for the executor's gates.
pub struct LiveObserver {
    rt: tokio::runtime::Runtime,
    config: ObserverConfig,
}

impl LiveObserver {
    /// An observer with `config` (kubeconfig, etcd TLS, runtime API, deadline).
    pub fn new(config: ObserverConfig) -> std::io::Result<LiveObserver> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(LiveObserver { rt, config })
    }
}

impl hacore::backend::Observer for LiveObserver {
    fn observe(&mut self, topology: &Topology) -> ClusterState {
        let config = self.config.clone();
        let topology = topology.clone();
        self.rt.block_on(async move {
            match crate::Observer::new(topology, config).await {
                Ok(o) => o.observe().await,
                Err(e) => {
                    let mut s = ClusterState::empty(Timestamp::now());
                    for p in [
                        Probe::Nodes,
                        Probe::Etcd,
                        Probe::EtcdAlarms,
                        Probe::LoadBalancer,
                        Probe::Apiservers,
                        Probe::Pdbs,
                        Probe::DaemonSets,
                    ] {
                        s.probe_errors.insert(p, format!("cannot observe: {e}"));
                    }
                    s
                }
            }
        })
    }
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hacore::backend::Observer as _;

    #[test]
    fn a_configuration_error_makes_every_probe_unknown() {
        let (topology, _) = Topology::from_yaml(
            "t.yaml",
            "cluster: lab\ncontrolPlaneEndpoint: { address: 127.0.0.1 }\nnodes:\n  - { name: m1, role: control-plane, address: 127.0.0.1 }\n",
        )
        .unwrap();
        let config = ObserverConfig {
            kubeconfig: Some("/nonexistent/kubeconfig".into()),
            ..Default::default()
        };
        let mut o = LiveObserver::new(config).unwrap();
        let s = o.observe(&topology);
        assert!(s.probe_errors.contains_key(&Probe::Nodes), "{s:?}");
        assert!(s.probe_errors[&Probe::Etcd].contains("cannot observe"));
    }
}
