//! What a running kubeadm cluster says of itself, for a starting topology
//! (`hacli topology init --from-cluster`). Read-only: the Nodes (roles and
//! InternalIPs), `kube-system/kubeadm-config`'s ClusterConfiguration
//! (`clusterName`, `controlPlaneEndpoint`, `kubernetesVersion`) and the
//! etcd static pods' advertised client URLs. Nothing is written.

use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::api::{Api, ListParams};
use serde_json::Value;

use crate::Error;

/// The control-plane role labels (the current one, and `master` of old
/// clusters).
const CONTROL_PLANE_LABELS: [&str; 2] = [
    "node-role.kubernetes.io/control-plane",
    "node-role.kubernetes.io/master",
];
/// The annotation kubeadm puts on each etcd static pod.
const ETCD_CLIENT_URLS: &str = "kubeadm.kubernetes.io/etcd.advertise-client-urls";

/// What the cluster says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovered {
    /// ClusterConfiguration `clusterName`.
    pub cluster_name: Option<String>,
    /// ClusterConfiguration `controlPlaneEndpoint` (`host:port`).
    pub control_plane_endpoint: Option<String>,
    /// ClusterConfiguration `kubernetesVersion`.
    pub kubernetes_version: Option<String>,
    /// Nodes with a control-plane role: name and InternalIP.
    pub masters: Vec<(String, IpAddr)>,
    /// The other Nodes.
    pub workers: Vec<(String, IpAddr)>,
    /// Each etcd pod's advertised client URLs.
    pub etcd_client_urls: Vec<String>,
    /// What could not be read, one line each (a Node without an
    /// InternalIP, no kubeadm-config).
    pub gaps: Vec<String>,
}

async fn timed<T>(
    what: &str,
    deadline: Duration,
    f: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, Error> {
    match tokio::time::timeout(deadline, f).await {
        Ok(r) => r.map_err(|e| Error::Kube {
            what: what.to_string(),
            source: Box::new(e),
        }),
        Err(_) => Err(Error::Timeout {
            what: what.to_string(),
            ms: deadline.as_millis(),
        }),
    }
}

/// A client for `context` of `kubeconfig` (else of KUBECONFIG or
/// ~/.kube/config); without a context, [`crate::kube_client`]'s (the
/// current context, or the in-cluster service account).
pub async fn client(
    kubeconfig: Option<&std::path::Path>,
    context: Option<&str>,
) -> Result<kube::Client, Error> {
    let Some(context) = context else {
        return crate::kube_client(kubeconfig).await;
    };
    let bad = |e: Box<dyn std::error::Error + Send + Sync>| Error::KubeConfig {
        path: kubeconfig.map(Into::into),
        source: e,
    };
    let options = kube::config::KubeConfigOptions {
        context: Some(context.to_string()),
        ..Default::default()
    };
    let config = match kubeconfig {
        Some(p) => {
            let kc = kube::config::Kubeconfig::read_from(p).map_err(|e| bad(Box::new(e)))?;
            kube::Config::from_custom_kubeconfig(kc, &options).await
        }
        None => kube::Config::from_kubeconfig(&options).await,
    }
    .map_err(|e| bad(Box::new(e)))?;
    crate::client_for(config).map_err(|e| bad(Box::new(e)))
}

/// Read what the cluster says; each request under `deadline`.
pub async fn discover(client: &kube::Client, deadline: Duration) -> Result<Discovered, Error> {
    let mut d = Discovered::default();
    let nodes: Api<Node> = Api::all(client.clone());
    let list = timed("list Nodes", deadline, nodes.list(&ListParams::default())).await?;
    for n in list.items {
        let name = n.metadata.name.clone().unwrap_or_default();
        let master = n
            .metadata
            .labels
            .as_ref()
            .is_some_and(|l| CONTROL_PLANE_LABELS.iter().any(|k| l.contains_key(*k)));
        let ip = n
            .status
            .and_then(|s| s.addresses)
            .unwrap_or_default()
            .into_iter()
            .find(|a| a.type_ == "InternalIP")
            .and_then(|a| a.address.parse::<IpAddr>().ok());
        match ip {
            Some(ip) if master => d.masters.push((name, ip)),
            Some(ip) => d.workers.push((name, ip)),
            None => d
                .gaps
                .push(format!("Node {name} has no InternalIP address: left out")),
        }
    }
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
    let cm = timed(
        "read ConfigMap kube-system/kubeadm-config",
        deadline,
        cms.get_opt("kubeadm-config"),
    )
    .await?;
    let cc = cm
        .and_then(|c| c.data)
        .and_then(|mut data| data.remove("ClusterConfiguration"));
    match cc.map(|t| crate::control_plane::api_ops::parse_cluster_configuration(&t)) {
        Some(Ok(v)) => {
            let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
            d.cluster_name = s("clusterName");
            d.control_plane_endpoint = s("controlPlaneEndpoint").filter(|e| !e.is_empty());
            d.kubernetes_version = s("kubernetesVersion");
        }
        Some(Err(why)) => d.gaps.push(format!(
            "kube-system/kubeadm-config: ClusterConfiguration unreadable: {why}"
        )),
        None => d.gaps.push(
            "kube-system/kubeadm-config has no ClusterConfiguration: is this a kubeadm cluster?"
                .into(),
        ),
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    let etcd = timed(
        "list the etcd pods in kube-system",
        deadline,
        pods.list(&ListParams::default().labels("component=etcd,tier=control-plane")),
    )
    .await?;
    for p in etcd.items {
        if let Some(urls) = p
            .metadata
            .annotations
            .and_then(|mut a| a.remove(ETCD_CLIENT_URLS))
        {
            d.etcd_client_urls
                .extend(urls.split(',').map(|u| u.trim().to_string()));
        }
    }
    d.masters.sort();
    d.workers.sort();
    d.etcd_client_urls.sort();
    d.etcd_client_urls.dedup();
    Ok(d)
}
