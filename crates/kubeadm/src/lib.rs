//! `kubeadm`: the live backend for kubeadm clusters.
//!
//! - [`Observer`] fills a [`hacore::ClusterState`] from the Kubernetes API
//!   (`kube` + `k8s-openapi`), etcd (`etcd-client` with TLS client
//!   certificates), each apiserver's `/readyz` and Prometheus alerts, every
//!   probe concurrently under one overall deadline, and the load balancer's
//!   pool through HAProxy's runtime API ([`observe_load_balancer`], with
//!   crates/pfsense). A probe that fails or times out is recorded in
//!   `probeErrors`, so the rules answer "unknown".
//! - [`DisruptionLock`] is a `coordination.k8s.io/v1` Lease taken with
//!   optimistic concurrency: two racing gates can never both hold it, and a
//!   dead holder's lease expires after its TTL.
//!
//! Defaults follow kubeadm: etcd endpoints are the control-plane nodes'
//! addresses on :2379 and certificates are read from
//! `/etc/kubernetes/pki/etcd/{ca.crt,healthcheck-client.crt,healthcheck-client.key}`;
//! the kubeconfig comes from kube's standard inference (`KUBECONFIG`,
//! `~/.kube/config`, in-cluster service account).
#![warn(missing_docs)]

pub mod config;
pub mod error;
pub mod lb;
pub mod lock;
pub mod observe;

pub use config::{EtcdTls, EtcdTlsOverrides, ObjectRef, ObserverConfig};
pub use error::Error;
pub use lb::observe_load_balancer;
pub use lock::{Acquire, DisruptionLock};
pub use observe::Observer;

/// Build a Kubernetes client: from `kubeconfig` if given, else by kube's
/// standard inference.
pub async fn kube_client(kubeconfig: Option<&std::path::Path>) -> Result<kube::Client, Error> {
    let config = kube_config(kubeconfig).await?;
    kube::Client::try_from(config).map_err(|e| Error::KubeConfig {
        path: kubeconfig.map(Into::into),
        source: Box::new(e),
    })
}

/// The client configuration (see [`kube_client`]).
pub async fn kube_config(kubeconfig: Option<&std::path::Path>) -> Result<kube::Config, Error> {
    match kubeconfig {
        Some(p) => {
            let kc = kube::config::Kubeconfig::read_from(p).map_err(|e| Error::KubeConfig {
                path: Some(p.into()),
                source: Box::new(e),
            })?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|e| Error::KubeConfig {
                    path: Some(p.into()),
                    source: Box::new(e),
                })
        }
        None => kube::Config::infer().await.map_err(|e| Error::KubeConfig {
            path: None,
            source: Box::new(e),
        }),
    }
}

pub(crate) fn to_jiff(
    t: &k8s_openapi::chrono::DateTime<k8s_openapi::chrono::Utc>,
) -> jiff::Timestamp {
    jiff::Timestamp::new(t.timestamp(), t.timestamp_subsec_nanos() as i32).unwrap_or_default()
}

pub(crate) fn to_chrono(
    t: jiff::Timestamp,
) -> k8s_openapi::chrono::DateTime<k8s_openapi::chrono::Utc> {
    k8s_openapi::chrono::DateTime::from_timestamp(t.as_second(), t.subsec_nanosecond() as u32)
        .unwrap_or_default()
}
