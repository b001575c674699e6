//! The load balancer in front of the apiservers, observed through HAProxy's
//! runtime API (crates/pfsense): the topology's pool, one backend per
//! master, with its status and current sessions.

use hacore::Topology;
use hacore::state::LbState;
use hacore::topology::RuntimeApi;
use pfsense::RuntimeClient;
use tokio::time::Instant;

/// What [`observe_load_balancer`] answers when the topology declares a load
/// balancer but no runtime API is known.
pub const NO_RUNTIME_API: &str =
    "no runtime API configured: set loadBalancer.runtimeApi in the topology or --lb-runtime-api";

/// Observe the topology's load-balancer pool before `until`.
///
/// None when the topology declares no load balancer (the rules then need
/// none). Otherwise the pool's state, read with `show stat` from
/// `override_api` or else the topology's `loadBalancer.runtimeApi`; an
/// error (for `probeErrors`) when neither is set, when HAProxy does not
/// answer by `until`, or when the pool or a server's status cannot be read.
/// The error names the endpoint and what to do.
pub async fn observe_load_balancer(
    topology: &Topology,
    override_api: Option<&RuntimeApi>,
    until: Instant,
) -> Option<Result<LbState, String>> {
    if !topology.has_load_balancer() {
        return None;
    }
    let lb = &topology.load_balancer;
    let Some(api) = override_api.or(lb.runtime_api.as_ref()) else {
        return Some(Err(NO_RUNTIME_API.into()));
    };
    let Some(pool) = lb.pool.as_deref() else {
        return Some(Err(
            "loadBalancer.pool is not set: name the apiserver backend pool in the topology".into(),
        ));
    };
    Some(
        RuntimeClient::new(api.clone())
            .pool_state(pool, until)
            .await
            .map_err(|e| e.to_string()),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn topology(lb: &str) -> Topology {
        // Without a load balancer the endpoint is the master itself.
        let endpoint = if lb.is_empty() {
            "10.0.0.1"
        } else {
            "10.0.0.100"
        };
        let yaml = format!(
            "cluster: t\ncontrolPlaneEndpoint: {{ address: {endpoint} }}\n{lb}nodes:\n  - {{ name: m1, role: control-plane, address: 10.0.0.1 }}\n"
        );
        Topology::from_yaml("t.yaml", &yaml).unwrap().0
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(2)
    }

    #[tokio::test]
    async fn no_load_balancer_no_observation() {
        assert_eq!(
            observe_load_balancer(&topology(""), None, soon()).await,
            None
        );
    }

    #[tokio::test]
    async fn a_load_balancer_without_a_runtime_api_says_what_to_set() {
        let t =
            topology("loadBalancer: { kind: haproxy, frontend: \"10.0.0.100:6443\", pool: k8s }\n");
        assert_eq!(
            observe_load_balancer(&t, None, soon()).await,
            Some(Err(NO_RUNTIME_API.to_string()))
        );
    }

    #[tokio::test]
    async fn the_override_wins_over_the_topology() {
        let dir = std::env::temp_dir().join(format!("kubeadm-lb-{}", std::process::id()));
        let t = topology(&format!(
            "loadBalancer: {{ kind: haproxy, frontend: \"10.0.0.100:6443\", pool: k8s, runtimeApi: \"unix:{}/topology.sock\" }}\n",
            dir.display()
        ));
        let flag: RuntimeApi = format!("unix:{}/flag.sock", dir.display()).parse().unwrap();
        let got = observe_load_balancer(&t, Some(&flag), soon()).await;
        let err = got.unwrap().unwrap_err();
        assert!(err.contains("flag.sock"), "{err}");
        let got = observe_load_balancer(&t, None, soon()).await;
        let err = got.unwrap().unwrap_err();
        assert!(err.contains("topology.sock"), "{err}");
    }
}
