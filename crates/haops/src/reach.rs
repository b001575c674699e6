//! How every live operation reaches the cluster, and the one place where
//! the precedence of its settings is decided.
//!
//! Each setting is taken from the first of these that gives it:
//!
//! 1. the caller (a CLI flag, a Python keyword, a field set in Rust);
//! 2. the environment ([`Reach::with_env`]: `KUBECONFIG`, `HACLI_CONTEXT`,
//!    `HACLI_ETCD_ENDPOINTS`, `HACLI_ETCD_PKI`, `ETCDCTL_CACERT`,
//!    `ETCDCTL_CERT`, `ETCDCTL_KEY`, `HACLI_KILL_SWITCH`, `HACLI_LOCK`,
//!    `HACLI_PROMETHEUS_URL`, `HACLI_PROMETHEUS`, `HACLI_LB_RUNTIME_API`,
//!    `HACLI_SNAPSHOT_DIR`,
//!    `HACLI_IDENTITY`, and Proxmox's variables as `proxmox::Settings`
//!    reads them);
//! 3. the topology (`etcd.endpoints`, `etcd.pki`, `ssh.*`,
//!    `loadBalancer.runtimeApi` and `loadBalancer.manage`, `proxmox`,
//!    `prometheus`),
//!    applied by the backends when the two above left a setting unset;
//! 4. kubeadm's defaults (`/etc/kubernetes/pki/etcd`, every control-plane
//!    node's address on :2379, kube's kubeconfig inference).
//!
//! A [`Reach`] is plain data: building one does no I/O. Its `Debug` shows
//! no secret (it holds none: Proxmox tokens are read from the environment
//! variable it names, when a client is made).

use std::path::PathBuf;
use std::time::Duration;

use hacore::topology::RuntimeApi;
use kubeadm::{EtcdTlsOverrides, ObjectRef, ObserverConfig};

use crate::Error;

/// How to reach the cluster's nodes over SSH.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SshReach {
    /// The private key (else the topology's `ssh.identityFile`, ssh-agent,
    /// `~/.ssh/id_*`).
    pub identity: Option<PathBuf>,
    /// The known_hosts file (else the topology's, `~/.ssh/known_hosts`).
    pub known_hosts: Option<PathBuf>,
    /// Record the host key of a host seen for the first time (said loudly)
    /// instead of refusing.
    pub accept_new_host_key: bool,
}

/// How to reach the Proxmox API (over the environment's bpg/Telmate
/// variables, over the topology's `proxmox` section).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxmoxReach {
    /// `https://HOST:8006`.
    pub endpoint: Option<String>,
    /// The server certificate's pinned SHA-256 fingerprint.
    pub fingerprint: Option<String>,
    /// A CA file (PEM) to trust.
    pub ca_file: Option<PathBuf>,
    /// Do NOT verify the certificate (loud).
    pub insecure: bool,
    /// The environment variable holding the API token.
    pub token_env: Option<String>,
}

/// How every live operation reaches the cluster: the Kubernetes API, etcd,
/// the nodes over SSH, the load balancer, Proxmox, Prometheus and the
/// snapshot directory. See the module documentation for the precedence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    /// kubeconfig file; None: kube's inference (KUBECONFIG, ~/.kube/config,
    /// the in-cluster service account).
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig's context (`--context`); None: its current context.
    pub context: Option<String>,
    /// etcd client URLs; empty: the topology's `etcd.endpoints`, else every
    /// control-plane node's address on :2379.
    pub etcd_endpoints: Vec<String>,
    /// etcd client TLS files, over the topology's `etcd.pki`.
    pub etcd_tls: EtcdTlsOverrides,
    /// Deadline of one observation: what has not answered by then is
    /// unknown.
    pub deadline: Duration,
    /// How long one etcd member may take (an unresponsive member is
    /// unhealthy); at most [`Reach::deadline`].
    pub member_timeout: Duration,
    /// The kill-switch ConfigMap, `namespace/name`.
    pub kill_switch: String,
    /// The disruption lock Lease, `namespace/name`.
    pub lock_lease: String,
    /// DaemonSets whose pod must run on every node (the policy's
    /// `daemonsets` rule adds its own).
    pub daemonsets: Vec<String>,
    /// Prometheus base URL for firing alerts; None: alerts not observed.
    pub prometheus_url: Option<String>,
    /// The Prometheus `etcd-latency` and `master-disk` read their figures
    /// from (etcd's histograms and counters, node-exporter's file
    /// systems), over the topology's `prometheus.url`; None and no
    /// topology's: each member's `/metrics`, and the masters over SSH.
    pub prometheus: Option<String>,
    /// The apiserver port on each master; None: the control-plane
    /// endpoint's.
    pub apiserver_port: Option<u16>,
    /// HAProxy's runtime API, over the topology's `loadBalancer.runtimeApi`.
    pub lb_runtime_api: Option<RuntimeApi>,
    /// The directory of `hacli snapshot`'s etcd snapshots.
    pub snapshot_dir: Option<PathBuf>,
    /// How long a VM just started may take until its sshd answers.
    pub boot_wait: Duration,
    /// SSH to the nodes (and to a load balancer managed over SSH).
    pub ssh: SshReach,
    /// The Proxmox API.
    pub proxmox: ProxmoxReach,
}

impl Default for Reach {
    fn default() -> Self {
        Reach {
            kubeconfig: None,
            context: None,
            etcd_endpoints: Vec::new(),
            etcd_tls: EtcdTlsOverrides::default(),
            deadline: Duration::from_secs(2),
            member_timeout: Duration::from_secs(1),
            kill_switch: "kube-system/hacli-kill-switch".into(),
            lock_lease: "kube-system/hacli-disruption-lock".into(),
            daemonsets: Vec::new(),
            prometheus_url: None,
            prometheus: None,
            apiserver_port: None,
            lb_runtime_api: None,
            snapshot_dir: None,
            boot_wait: Duration::from_secs(300),
            ssh: SshReach::default(),
            proxmox: ProxmoxReach::default(),
        }
    }
}

impl Reach {
    /// Fill what the caller left unset from the environment, looked up by
    /// `get` (`|k| std::env::var(k).ok()` for the process's). A variable
    /// set but empty counts as unset. A malformed value is an error naming
    /// the variable. Settings with a default (the kill switch, the lock)
    /// are taken from the environment only while they hold the default.
    pub fn with_env(mut self, get: impl Fn(&str) -> Option<String>) -> Result<Reach, Error> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let defaults = Reach::default();
        if self.kubeconfig.is_none() {
            self.kubeconfig = get("KUBECONFIG").map(PathBuf::from);
        }
        if self.context.is_none() {
            self.context = get("HACLI_CONTEXT");
        }
        if self.etcd_endpoints.is_empty() {
            if let Some(v) = get("HACLI_ETCD_ENDPOINTS") {
                self.etcd_endpoints = v.split(',').map(|s| s.trim().to_string()).collect();
            }
        }
        let tls = &mut self.etcd_tls;
        for (slot, var) in [
            (&mut tls.pki, "HACLI_ETCD_PKI"),
            (&mut tls.ca, "ETCDCTL_CACERT"),
            (&mut tls.cert, "ETCDCTL_CERT"),
            (&mut tls.key, "ETCDCTL_KEY"),
            (&mut self.snapshot_dir, "HACLI_SNAPSHOT_DIR"),
        ] {
            if slot.is_none() {
                *slot = get(var).map(PathBuf::from);
            }
        }
        if self.kill_switch == defaults.kill_switch {
            if let Some(v) = get("HACLI_KILL_SWITCH") {
                self.kill_switch = v;
            }
        }
        if self.lock_lease == defaults.lock_lease {
            if let Some(v) = get("HACLI_LOCK") {
                self.lock_lease = v;
            }
        }
        if self.prometheus_url.is_none() {
            self.prometheus_url = get("HACLI_PROMETHEUS_URL");
        }
        if self.prometheus.is_none() {
            self.prometheus = get("HACLI_PROMETHEUS");
        }
        if self.lb_runtime_api.is_none() {
            if let Some(v) = get("HACLI_LB_RUNTIME_API") {
                self.lb_runtime_api = Some(v.parse().map_err(|e: String| Error::Setting {
                    what: "HACLI_LB_RUNTIME_API".into(),
                    why: e,
                })?);
            }
        }
        Ok(self)
    }

    /// The observer's configuration: these settings, and the DaemonSets
    /// `policy`'s `daemonsets` rule names.
    pub fn observer_config(
        &self,
        policy: Option<&hacore::Policy>,
    ) -> Result<ObserverConfig, Error> {
        let mut daemonsets = self.daemonsets.clone();
        if let Some(ds) = policy.and_then(|p| p.rules.daemonsets.as_ref()) {
            for n in &ds.names {
                if !daemonsets.contains(n) {
                    daemonsets.push(n.clone());
                }
            }
        }
        let object = |what: &'static str, v: &str| {
            ObjectRef::parse(what, v).map_err(|e| Error::Setting {
                what: what.into(),
                why: e.to_string(),
            })
        };
        Ok(ObserverConfig {
            kubeconfig: self.kubeconfig.clone(),
            kube_context: self.context.clone(),
            etcd_endpoints: self.etcd_endpoints.clone(),
            etcd_tls: self.etcd_tls.clone(),
            deadline: self.deadline,
            member_timeout: self.member_timeout.min(self.deadline),
            kill_switch: object("kill switch", &self.kill_switch)?,
            lock: object("lock lease", &self.lock_lease)?,
            daemonsets,
            prometheus_url: self.prometheus_url.clone(),
            apiserver_port: self.apiserver_port,
            reboot_required: None,
            lb_runtime_api: self.lb_runtime_api.clone(),
            // The etcd-latency rule's window: its members' metrics are
            // read only when the policy judges them.
            etcd_latency_window: policy
                .and_then(|p| p.rules.etcd_latency.as_ref())
                .map(|l| l.window.0.unsigned_abs()),
            // The topology's `prometheus` (with its CA file) when unset.
            prometheus: self
                .prometheus
                .clone()
                .map(|url| kubeadm::PrometheusSource { url, ca_file: None }),
            master_disks: policy.is_some_and(|p| p.rules.master_disk.is_some()),
        })
    }

    /// kubeadm's control-plane backend options: these settings over its
    /// defaults.
    pub fn control_plane_options(&self) -> kubeadm::control_plane::ControlPlaneOptions {
        let defaults = kubeadm::control_plane::ControlPlaneOptions::default();
        kubeadm::control_plane::ControlPlaneOptions {
            kubeconfig: self.kubeconfig.clone(),
            kube_context: self.context.clone(),
            etcd_endpoints: self.etcd_endpoints.clone(),
            etcd_tls: self.etcd_tls.clone(),
            apiserver_port: self.apiserver_port,
            snapshot_dir: self
                .snapshot_dir
                .clone()
                .unwrap_or(defaults.snapshot_dir.clone()),
            boot_wait: self.boot_wait,
            accept_new_host_key: self.ssh.accept_new_host_key,
            known_hosts: self.ssh.known_hosts.clone(),
            identity_file: self.ssh.identity.clone(),
            ..defaults
        }
    }

    /// The load balancer backend's options.
    pub fn lb_options(&self) -> pfsense::lb::LbOptions {
        pfsense::lb::LbOptions {
            runtime_api: self.lb_runtime_api.clone(),
            accept_new_host_key: self.ssh.accept_new_host_key,
            ..Default::default()
        }
    }

    /// Whether a Proxmox API is named (here, in the environment, or in
    /// `topology`).
    pub fn proxmox_wanted(&self, topology: Option<&hacore::Topology>) -> bool {
        self.proxmox.endpoint.is_some()
            || std::env::var_os("PROXMOX_VE_ENDPOINT").is_some()
            || std::env::var_os("PM_API_URL").is_some()
            || topology.is_some_and(|t| t.proxmox.is_some())
    }

    /// A Proxmox client: these settings over the environment over the
    /// topology's `proxmox` section. Its warnings (an insecure choice) are
    /// returned for the frontend to show.
    pub fn proxmox_client(
        &self,
        topology: Option<&hacore::Topology>,
    ) -> Result<(proxmox::Client, Vec<String>), Error> {
        use proxmox::{Settings, Token};
        let p = &self.proxmox;
        let mut flags = Settings {
            endpoint: p.endpoint.clone(),
            ca_file: p.ca_file.clone(),
            fingerprint: p.fingerprint.clone(),
            insecure: p.insecure,
            ..Settings::default()
        };
        if p.insecure {
            flags
                .warnings
                .push("the Proxmox certificate is NOT verified (insecure skip TLS verify)".into());
        }
        if let Some(var) = &p.token_env {
            let text = std::env::var(var).map_err(|_| Error::Setting {
                what: format!("the Proxmox token variable {var}"),
                why: "it is not set".into(),
            })?;
            flags.token = Some(Token::parse(&text, var).map_err(proxmox_setting)?);
        }
        let mut settings = flags.or(Settings::from_env().map_err(proxmox_setting)?);
        if let Some(t) = topology.and_then(|t| t.proxmox.as_ref()) {
            settings = settings.or(Settings {
                endpoint: Some(t.endpoint.clone()),
                ca_file: t.ca_file.clone(),
                fingerprint: t.fingerprint.clone(),
                ..Settings::default()
            });
        }
        let cfg = settings.build().map_err(proxmox_setting)?;
        let warnings = cfg.warnings.clone();
        let client = proxmox::Client::new(&cfg).map_err(|e| Error::Setting {
            what: "the Proxmox client".into(),
            why: e.to_string(),
        })?;
        Ok((client, warnings))
    }
}

fn proxmox_setting(e: impl std::fmt::Display) -> Error {
    Error::Setting {
        what: "Proxmox".into(),
        why: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caller_wins_over_the_environment_which_fills_the_rest() {
        let env = |k: &str| match k {
            "KUBECONFIG" => Some("/env/kubeconfig".to_string()),
            "HACLI_ETCD_ENDPOINTS" => Some("https://127.0.0.1:2379, https://127.0.0.2:2379".into()),
            "HACLI_LOCK" => Some("ops/lock".into()),
            "ETCDCTL_CACERT" => Some(String::new()),
            _ => None,
        };
        let r = Reach {
            kubeconfig: Some("/flag/kubeconfig".into()),
            ..Reach::default()
        }
        .with_env(env)
        .unwrap();
        assert_eq!(r.kubeconfig, Some("/flag/kubeconfig".into()));
        assert_eq!(
            r.etcd_endpoints,
            ["https://127.0.0.1:2379", "https://127.0.0.2:2379"]
        );
        assert_eq!(r.lock_lease, "ops/lock");
        assert_eq!(r.etcd_tls.ca, None, "an empty variable is unset");
    }

    #[test]
    fn prometheus_the_flag_over_the_environment_over_the_topology() {
        let env = |k: &str| (k == "HACLI_PROMETHEUS").then(|| "http://127.0.0.1:9091".to_string());
        let t = hacore::Topology::from_yaml(
            "t.yaml",
            "cluster: t\ncontrolPlaneEndpoint: { address: 127.0.0.1 }\nprometheus: { url: 'https://127.0.0.1:9090', caFile: /ca.pem }\nnodes:\n  - { name: m1, role: control-plane, address: 127.0.0.1 }\n",
        )
        .unwrap()
        .0;
        let source = |r: Reach| r.observer_config(None).unwrap().prometheus_source(&t);
        let topo = source(Reach::default()).unwrap();
        assert_eq!(topo.url, "https://127.0.0.1:9090");
        assert_eq!(topo.ca_file, Some("/ca.pem".into()));
        let env_r = Reach::default().with_env(env).unwrap();
        assert_eq!(source(env_r).unwrap().url, "http://127.0.0.1:9091");
        let flag = Reach {
            prometheus: Some("http://127.0.0.1:9092".into()),
            ..Reach::default()
        }
        .with_env(env)
        .unwrap();
        assert_eq!(source(flag).unwrap().url, "http://127.0.0.1:9092");
    }

    #[test]
    fn a_malformed_runtime_api_in_the_environment_names_the_variable() {
        let e = Reach::default()
            .with_env(|k| (k == "HACLI_LB_RUNTIME_API").then(|| "ftp:x".to_string()))
            .unwrap_err();
        assert!(e.to_string().contains("HACLI_LB_RUNTIME_API"), "{e}");
    }

    #[test]
    fn a_malformed_lock_lease_is_a_setting_error_naming_it() {
        let r = Reach {
            lock_lease: "no-slash".into(),
            ..Reach::default()
        };
        let e = r.observer_config(None).unwrap_err();
        assert!(e.to_string().contains("lock lease"), "{e}");
    }
}
