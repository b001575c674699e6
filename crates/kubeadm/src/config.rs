//! What the observer looks at, with kubeadm's defaults.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hacore::Topology;

use crate::Error;

/// A namespaced object name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjectRef {
    /// Parse `namespace/name`.
    pub fn parse(what: &'static str, s: &str) -> Result<ObjectRef, Error> {
        match s.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(ObjectRef {
                    namespace: ns.into(),
                    name: name.into(),
                })
            }
            _ => Err(Error::BadUrl {
                what,
                url: s.into(),
                reason: "expected namespace/name".into(),
            }),
        }
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Where the etcd client certificates are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTls {
    /// CA bundle that signed the members' server certificates.
    pub ca: PathBuf,
    /// Client certificate.
    pub cert: PathBuf,
    /// Client key (its contents never reach logs or errors).
    pub key: PathBuf,
}

impl EtcdTls {
    /// kubeadm's layout under `dir` (default `/etc/kubernetes/pki/etcd`):
    /// `ca.crt`, `healthcheck-client.crt`, `healthcheck-client.key`.
    pub fn kubeadm(dir: &Path) -> EtcdTls {
        EtcdTls {
            ca: dir.join("ca.crt"),
            cert: dir.join("healthcheck-client.crt"),
            key: dir.join("healthcheck-client.key"),
        }
    }
}

/// kubeadm's etcd certificate directory.
pub const KUBEADM_ETCD_PKI: &str = "/etc/kubernetes/pki/etcd";

/// What to observe and how long to wait.
#[derive(Debug, Clone)]
pub struct ObserverConfig {
    /// kubeconfig file; None: kube's standard inference.
    pub kubeconfig: Option<PathBuf>,
    /// etcd client URLs; empty: every control-plane node's address on :2379.
    pub etcd_endpoints: Vec<String>,
    /// etcd client TLS files.
    pub etcd_tls: EtcdTls,
    /// The overall deadline for one observation.
    pub deadline: Duration,
    /// How long one etcd member may take to answer (bounded by the deadline).
    pub member_timeout: Duration,
    /// The kill-switch ConfigMap.
    pub kill_switch: ObjectRef,
    /// The disruption lock Lease.
    pub lock: ObjectRef,
    /// DaemonSets whose pod must run on every node.
    pub daemonsets: Vec<String>,
    /// Prometheus base URL; None: alerts are not observed.
    pub prometheus_url: Option<String>,
    /// apiserver port on each master; None: the control-plane endpoint's.
    pub apiserver_port: Option<u16>,
    /// When running on a node: (node name, reboot-required file).
    pub reboot_required: Option<(String, PathBuf)>,
}

impl Default for ObserverConfig {
    fn default() -> Self {
        ObserverConfig {
            kubeconfig: None,
            etcd_endpoints: Vec::new(),
            etcd_tls: EtcdTls::kubeadm(Path::new(KUBEADM_ETCD_PKI)),
            deadline: Duration::from_secs(2),
            member_timeout: Duration::from_millis(1000),
            kill_switch: ObjectRef {
                namespace: "kube-system".into(),
                name: "hacli-kill-switch".into(),
            },
            lock: ObjectRef {
                namespace: "kube-system".into(),
                name: "hacli-disruption-lock".into(),
            },
            daemonsets: Vec::new(),
            prometheus_url: None,
            apiserver_port: None,
            reboot_required: None,
        }
    }
}

impl ObserverConfig {
    /// The etcd endpoints to probe: the configured ones, or kubeadm's
    /// default (each control-plane node's address on :2379).
    pub fn etcd_endpoints(&self, topology: &Topology) -> Vec<String> {
        if !self.etcd_endpoints.is_empty() {
            return self.etcd_endpoints.clone();
        }
        topology
            .nodes
            .iter()
            .filter(|n| n.is_control_plane())
            .map(|n| format!("https://{}", std::net::SocketAddr::new(n.address, 2379)))
            .collect()
    }
}
