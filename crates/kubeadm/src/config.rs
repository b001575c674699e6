//! What the observer looks at, with kubeadm's defaults.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hacore::Topology;
use hacore::topology::RuntimeApi;

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

/// The etcd client certificates as given by flags, the environment or an
/// API caller. Each file is taken from the first place that names it: its
/// own override, the override directory, the topology's file, the
/// topology's `etcd.pki`, then kubeadm's `/etc/kubernetes/pki/etcd`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdTlsOverrides {
    /// Directory in kubeadm's layout.
    pub pki: Option<PathBuf>,
    /// CA bundle.
    pub ca: Option<PathBuf>,
    /// Client certificate.
    pub cert: Option<PathBuf>,
    /// Client key (its path only).
    pub key: Option<PathBuf>,
}

impl EtcdTlsOverrides {
    /// The files to use with this topology.
    pub fn resolve(&self, topology: &Topology) -> EtcdTls {
        let etcd = &topology.etcd;
        let over = self.pki.as_deref().map(EtcdTls::kubeadm);
        let declared = etcd.pki.as_deref().map(EtcdTls::kubeadm);
        let default = EtcdTls::kubeadm(Path::new(KUBEADM_ETCD_PKI));
        let pick =
            |own: &Option<PathBuf>, dir: fn(&EtcdTls) -> &PathBuf, topo: &Option<PathBuf>| {
                own.clone()
                    .or_else(|| over.as_ref().map(|t| dir(t).clone()))
                    .or_else(|| topo.clone())
                    .or_else(|| declared.as_ref().map(|t| dir(t).clone()))
                    .unwrap_or_else(|| dir(&default).clone())
            };
        EtcdTls {
            ca: pick(&self.ca, |t| &t.ca, &etcd.ca_file),
            cert: pick(&self.cert, |t| &t.cert, &etcd.cert_file),
            key: pick(&self.key, |t| &t.key, &etcd.key_file),
        }
    }
}

/// kubeadm's etcd certificate directory.
pub const KUBEADM_ETCD_PKI: &str = "/etc/kubernetes/pki/etcd";

/// What to observe and how long to wait. Its `Debug` shows URLs without
/// their credentials.
#[derive(Clone)]
pub struct ObserverConfig {
    /// kubeconfig file; None: kube's standard inference.
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig's context to use; None: its current context.
    pub kube_context: Option<String>,
    /// etcd client URLs; empty: the topology's `etcd.endpoints`, else every
    /// control-plane node's address on :2379.
    pub etcd_endpoints: Vec<String>,
    /// etcd client TLS files, over the topology's.
    pub etcd_tls: EtcdTlsOverrides,
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
    /// HAProxy's runtime API for the load balancer, over the topology's
    /// `loadBalancer.runtimeApi`; with neither, a declared load balancer is
    /// not observed (its probe fails, and the rules that need it answer
    /// unknown).
    pub lb_runtime_api: Option<RuntimeApi>,
    /// Read the etcd members' `/metrics` over this window (the
    /// `etcd-latency` rule's); None: their latency is not observed.
    pub etcd_latency_window: Option<Duration>,
    /// The Prometheus `etcd-latency` and `master-disk` read their figures
    /// from, over the topology's `prometheus`; with neither, etcd's
    /// latency comes from each member's `/metrics` and the masters' disks
    /// over SSH.
    pub prometheus: Option<PrometheusSource>,
    /// Read the masters' file systems from Prometheus (the policy has
    /// `master-disk`); only with a Prometheus.
    pub master_disks: bool,
}

/// A Prometheus as a source of figures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrometheusSource {
    /// Its base URL.
    pub url: String,
    /// A CA bundle (PEM) to trust instead of the system's roots.
    pub ca_file: Option<PathBuf>,
}

impl ObserverConfig {
    /// The Prometheus to read figures from: this configuration's, else the
    /// topology's.
    pub fn prometheus_source(&self, topology: &Topology) -> Option<PrometheusSource> {
        self.prometheus.clone().or_else(|| {
            topology.prometheus.as_ref().map(|p| PrometheusSource {
                url: p.url.clone(),
                ca_file: p.ca_file.clone(),
            })
        })
    }
}

impl std::fmt::Debug for ObserverConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |urls: &[String]| -> Vec<String> {
            urls.iter()
                .map(|u| crate::redact_url(u).into_owned())
                .collect()
        };
        f.debug_struct("ObserverConfig")
            .field("kubeconfig", &self.kubeconfig)
            .field("kube_context", &self.kube_context)
            .field("etcd_endpoints", &redacted(&self.etcd_endpoints))
            .field("etcd_tls", &self.etcd_tls)
            .field("deadline", &self.deadline)
            .field("member_timeout", &self.member_timeout)
            .field("kill_switch", &self.kill_switch)
            .field("lock", &self.lock)
            .field("daemonsets", &self.daemonsets)
            .field(
                "prometheus_url",
                &self.prometheus_url.as_deref().map(crate::redact_url),
            )
            .field("apiserver_port", &self.apiserver_port)
            .field("reboot_required", &self.reboot_required)
            .field("lb_runtime_api", &self.lb_runtime_api)
            .field("etcd_latency_window", &self.etcd_latency_window)
            .field(
                "prometheus",
                &self.prometheus.as_ref().map(|p| crate::redact_url(&p.url)),
            )
            .field("master_disks", &self.master_disks)
            .finish()
    }
}

impl Default for ObserverConfig {
    fn default() -> Self {
        ObserverConfig {
            kubeconfig: None,
            kube_context: None,
            etcd_endpoints: Vec::new(),
            etcd_tls: EtcdTlsOverrides::default(),
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
            lb_runtime_api: None,
            etcd_latency_window: None,
            prometheus: None,
            master_disks: false,
        }
    }
}

impl ObserverConfig {
    /// The etcd endpoints to probe: the configured ones, the topology's, or
    /// kubeadm's default (each control-plane node's address on :2379).
    pub fn etcd_endpoints(&self, topology: &Topology) -> Vec<String> {
        if !self.etcd_endpoints.is_empty() {
            return self.etcd_endpoints.clone();
        }
        if !topology.etcd.endpoints.is_empty() {
            return topology.etcd.endpoints.clone();
        }
        topology
            .nodes
            .iter()
            .filter(|n| n.is_control_plane())
            .map(|n| format!("https://{}", std::net::SocketAddr::new(n.address, 2379)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_urls_without_credentials() {
        let c = ObserverConfig {
            prometheus_url: Some("http://scraper:s3cret-pw@127.0.0.1:9090/".into()),
            prometheus: Some(PrometheusSource {
                url: "https://reader:s3cret-pw@127.0.0.1:9091/".into(),
                ca_file: None,
            }),
            etcd_endpoints: vec!["https://u:etcd-pw@10.0.0.1:2379".into()],
            ..Default::default()
        };
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s3cret-pw") && !shown.contains("etcd-pw"),
            "{shown}"
        );
        assert!(shown.contains("http://***@127.0.0.1:9090/"), "{shown}");
        assert!(shown.contains("https://***@127.0.0.1:9091/"), "{shown}");
    }

    fn topology(etcd: &str) -> Topology {
        let yaml = format!(
            "cluster: t\ncontrolPlaneEndpoint: {{ address: 10.0.0.1 }}\netcd: {etcd}\nnodes:\n  - {{ name: m1, role: control-plane, address: 10.0.0.1 }}\n"
        );
        Topology::from_yaml("t.yaml", &yaml).unwrap().0
    }

    #[test]
    fn endpoints_come_from_the_flag_then_the_topology_then_kubeadm() {
        let t = topology("{ endpoints: [\"https://10.0.0.9:12379\"] }");
        let mut c = ObserverConfig::default();
        assert_eq!(c.etcd_endpoints(&t), ["https://10.0.0.9:12379"]);
        c.etcd_endpoints = vec!["https://10.0.0.8:2379".into()];
        assert_eq!(c.etcd_endpoints(&t), ["https://10.0.0.8:2379"]);
        let bare = topology("{}");
        assert_eq!(
            ObserverConfig::default().etcd_endpoints(&bare),
            ["https://10.0.0.1:2379"]
        );
    }

    #[test]
    fn certificate_files_resolve_file_by_file() {
        let t = topology("{ pki: /srv/etcd, keyFile: /srv/other/client.key }");
        let none = EtcdTlsOverrides::default();
        let got = none.resolve(&t);
        assert_eq!(got.ca, Path::new("/srv/etcd/ca.crt"));
        assert_eq!(got.cert, Path::new("/srv/etcd/healthcheck-client.crt"));
        assert_eq!(got.key, Path::new("/srv/other/client.key"));

        let flags = EtcdTlsOverrides {
            pki: Some("/flag".into()),
            ca: Some("/flag-ca.pem".into()),
            ..Default::default()
        };
        let got = flags.resolve(&t);
        assert_eq!(got.ca, Path::new("/flag-ca.pem"));
        assert_eq!(got.cert, Path::new("/flag/healthcheck-client.crt"));
        assert_eq!(got.key, Path::new("/flag/healthcheck-client.key"));

        let got = none.resolve(&topology("{}"));
        assert_eq!(got, EtcdTls::kubeadm(Path::new(KUBEADM_ETCD_PKI)));
    }
}
