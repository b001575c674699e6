//! The declared cluster: control-plane endpoint, nodes, stacked etcd, the
//! apiserver load balancer and the hypervisor hosts the VMs run on.
//!
//! A topology is what the operator says the cluster is (or should become). It
//! is loaded from YAML, validated, and never changed by observation: what the
//! cluster actually looks like right now lives in [`crate::state`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::source::{self, Diagnostic, Level};
use crate::units::Dur;

/// The declared cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Topology {
    /// Cluster name (free text, shown in reports).
    pub cluster: String,
    /// Where clients reach the apiserver: the VIP, or a single master's address.
    pub control_plane_endpoint: Endpoint,
    /// The node network, used to check addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    /// How etcd runs.
    #[serde(default)]
    pub etcd: EtcdConfig,
    /// The apiserver load balancer in front of the masters.
    #[serde(default)]
    pub load_balancer: LoadBalancer,
    /// Hypervisor hosts: each one is a failure domain.
    #[serde(default)]
    pub hypervisors: Vec<Hypervisor>,
    /// The Proxmox VE API the hypervisors answer on: plans read the real
    /// inventory from it (`--proxmox` and `PROXMOX_VE_ENDPOINT` override).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxmox: Option<ProxmoxApi>,
    /// A Prometheus that scrapes etcd and node-exporter on the masters:
    /// `etcd-latency` and `master-disk` read their figures from it
    /// (`--prometheus` and `HACLI_PROMETHEUS` override).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusApi>,
    /// Every node of the cluster.
    pub nodes: Vec<Node>,
    /// Kubeconfigs outside the cluster that name the control-plane endpoint
    /// (CI, users, automation); a cut-over to a VIP must update each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_kubeconfigs: Vec<ExternalKubeconfig>,
    /// How `hacli` logs in to the nodes over SSH (kubeadm, systemctl,
    /// openssl, file edits), at each node's `address`. Without it the
    /// control-plane backend uses `root`, port 22, `~/.ssh/known_hosts`
    /// and the default keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<NodeSsh>,
}

/// SSH settings for every node (the control-plane backend connects to each
/// node's `address`). Like `loadBalancer.manage`, a key is named by its
/// path only; a passphrase comes from `HACLI_SSH_PASSPHRASE`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSsh {
    /// The user, `root` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The port, 22 by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The private key file; ssh-agent and `~/.ssh/id_*` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_file: Option<PathBuf>,
    /// The known_hosts file, `~/.ssh/known_hosts` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_hosts: Option<PathBuf>,
    /// Run commands under `sudo -n` when the user is not root (default
    /// true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sudo: Option<bool>,
}

impl NodeSsh {
    fn resolve_paths(&mut self, dir: &Path) {
        for p in [&mut self.identity_file, &mut self.known_hosts]
            .into_iter()
            .flatten()
        {
            if p.is_relative() && !p.starts_with("~") {
                *p = dir.join(&*p);
            }
        }
    }
}

/// The control-plane endpoint (`controlPlaneEndpoint` in kubeadm terms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Endpoint {
    /// IP address clients connect to.
    pub address: IpAddr,
    /// Port, 6443 by default.
    #[serde(default = "default_api_port")]
    pub port: u16,
    /// DNS name for the endpoint, also put in the apiserver certificate SANs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_name: Option<String>,
}

fn default_api_port() -> u16 {
    6443
}

impl Endpoint {
    /// `address:port`.
    pub fn socket(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.port)
    }
}

/// The node network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Network {
    /// The subnet every node address and the VIP must be in, e.g. `10.0.20.0/24`.
    #[serde(deserialize_with = "cidr")]
    pub cidr: IpNet,
    /// Default gateway for provisioned VMs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
}

fn cidr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<IpNet, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "`{s}` is not a CIDR (address/prefix, such as 10.0.20.0/24)"
        ))
    })
}

/// etcd settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EtcdConfig {
    /// Only `stacked` (kubeadm-managed, one member per master) is supported.
    #[serde(default)]
    pub mode: EtcdMode,
    /// Whether new members join as non-voting learners first (kubeadm's
    /// `EtcdLearnerMode`: default from 1.29, always on from 1.32).
    #[serde(default = "yes")]
    pub learner_joins: bool,
    /// etcd client URLs to probe, such as `https://10.0.20.11:2379`; empty:
    /// each control-plane node's address on :2379 (kubeadm's layout).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
    /// Directory holding the etcd CA and a client pair in kubeadm's layout
    /// (`ca.crt`, `healthcheck-client.crt`, `healthcheck-client.key`);
    /// `/etc/kubernetes/pki/etcd` when not given. A relative path is taken
    /// from the topology file's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pki: Option<PathBuf>,
    /// The etcd CA bundle, instead of `pki`'s `ca.crt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// The etcd client certificate, instead of `pki`'s `healthcheck-client.crt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// The etcd client key, instead of `pki`'s `healthcheck-client.key`.
    /// Only its path is here; the key itself is never read into a message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
}

fn yes() -> bool {
    true
}

impl Default for EtcdConfig {
    fn default() -> Self {
        EtcdConfig {
            mode: EtcdMode::Stacked,
            learner_joins: true,
            endpoints: Vec::new(),
            pki: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
        }
    }
}

impl EtcdConfig {
    /// Take relative certificate paths from `dir` (the topology file's).
    fn resolve_paths(&mut self, dir: &Path) {
        for p in [
            &mut self.pki,
            &mut self.ca_file,
            &mut self.cert_file,
            &mut self.key_file,
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        }
    }
}

/// How etcd is deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EtcdMode {
    /// One etcd member per control-plane node, managed by kubeadm.
    #[default]
    Stacked,
}

/// The apiserver load balancer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadBalancer {
    /// What kind of load balancer it is.
    #[serde(default)]
    pub kind: LbKind,
    /// The frontend (VIP:port); must equal the control-plane endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frontend: Option<SocketAddr>,
    /// Name of the backend pool holding one server per master.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// How the load balancer checks each apiserver.
    #[serde(default)]
    pub health_check: HealthCheck,
    /// Where HAProxy's runtime API (its stats socket) answers, so the pool
    /// can be observed live: `unix:/run/haproxy/admin.sock` or
    /// `tcp:10.0.20.1:9999`. Without it the load balancer is not observed
    /// and rules that need it answer unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_api: Option<RuntimeApi>,
    /// How `hacli` changes the load balancer's configuration (its pools,
    /// frontends, the VIP and the API name's DNS record). Without it the
    /// load balancer is only observed, and plan steps that change it can
    /// only be rehearsed with `--backend simulated`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manage: Option<LbManage>,
}

/// How the load-balancer backend reaches the load balancer's configuration.
///
/// Credentials are never part of a topology: an SSH key is named by its
/// path, and the pfSense REST API's key or user and password come from the
/// environment (`PFSENSE_API_KEY`, or `PFSENSE_USERNAME` and
/// `PFSENSE_PASSWORD`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LbManage {
    /// `ssh`: PHP over SSH on pfSense (`kind: pfsense-haproxy`), or the
    /// `haproxy.cfg` of a Linux host (`kind: haproxy`); `rest`: pfSense's
    /// REST API v2 (the pfrest package).
    pub transport: LbTransport,
    /// SSH: the host to log in to (address or name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// SSH: the port, 22 by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// SSH: the user, `root` by default (pfSense's `admin` is root too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// SSH: the private key file; ssh-agent and `~/.ssh/id_*` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_file: Option<PathBuf>,
    /// SSH: the known_hosts file, `~/.ssh/known_hosts` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_hosts: Option<PathBuf>,
    /// REST: the base URL of the pfSense web interface, such as
    /// `https://10.0.20.1` (`PFSENSE_URL` otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// REST: the CA bundle that signed the web interface's certificate
    /// (the system roots otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// REST: allow a plain `http://` URL (the credentials then cross the
    /// network in clear); refused unless set.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_plain_http: bool,
    /// pfSense: the interface the VIP is an IP alias on, `lan` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vip_interface: Option<String>,
    /// `kind: haproxy`: the configuration file holding hacli's marked
    /// section, `/etc/haproxy/haproxy.cfg` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_path: Option<PathBuf>,
    /// `kind: haproxy`: the command that reloads HAProxy after a validated
    /// change, `systemctl reload haproxy` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reload_command: Option<String>,
}

/// How the load-balancer backend talks to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LbTransport {
    /// SSH (PHP on pfSense; the configuration file on a Linux host).
    Ssh,
    /// pfSense's REST API v2.
    Rest,
}

impl LbManage {
    /// The pfSense interface the VIP goes on.
    pub fn vip_interface(&self) -> &str {
        self.vip_interface.as_deref().unwrap_or("lan")
    }

    fn resolve_paths(&mut self, dir: &Path) {
        for p in [
            &mut self.identity_file,
            &mut self.known_hosts,
            &mut self.ca_file,
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() && !p.starts_with("~") {
                *p = dir.join(&*p);
            }
        }
    }
}

/// Where an HAProxy runtime API listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum RuntimeApi {
    /// A Unix socket (`stats socket /path level admin`).
    Unix(PathBuf),
    /// A TCP listener (`stats socket ipv4@ADDR:PORT level admin`).
    Tcp(SocketAddr),
}

impl std::str::FromStr for RuntimeApi {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.starts_with('/') {
                return Ok(RuntimeApi::Unix(PathBuf::from(path)));
            }
            return Err(format!(
                "`{s}`: a Unix socket path must be absolute, such as unix:/run/haproxy/admin.sock"
            ));
        }
        if let Some(addr) = s.strip_prefix("tcp:") {
            return addr.parse().map(RuntimeApi::Tcp).map_err(|_| {
                format!("`{s}`: expected tcp:ADDRESS:PORT, such as tcp:10.0.20.1:9999")
            });
        }
        Err(format!(
            "`{s}`: expected unix:/path/to/socket or tcp:ADDRESS:PORT"
        ))
    }
}

impl TryFrom<String> for RuntimeApi {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<RuntimeApi> for String {
    fn from(r: RuntimeApi) -> String {
        r.to_string()
    }
}

impl std::fmt::Display for RuntimeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RuntimeApi::Unix(p) => write!(f, "unix:{}", p.display()),
            RuntimeApi::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

impl Default for LoadBalancer {
    fn default() -> Self {
        LoadBalancer {
            kind: LbKind::None,
            frontend: None,
            pool: None,
            health_check: HealthCheck::default(),
            runtime_api: None,
            manage: None,
        }
    }
}

/// Load balancer kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LbKind {
    /// HAProxy package on pfSense.
    PfsenseHaproxy,
    /// Plain HAProxy.
    Haproxy,
    /// No load balancer: clients talk to one master directly.
    #[default]
    None,
}

/// Backend health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthCheck {
    /// Check type.
    #[serde(rename = "type", default)]
    pub kind: CheckKind,
    /// HTTP path for `http`/`https` checks; `/readyz` is the right one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Time between checks (HAProxy `inter`), 2s by default.
    #[serde(default = "default_inter")]
    pub interval: Dur,
    /// Failed checks before a server is marked down (HAProxy `fall`).
    #[serde(default = "default_fall")]
    pub fall: u32,
    /// Passed checks before a server is marked up (HAProxy `rise`).
    #[serde(default = "default_rise")]
    pub rise: u32,
    /// How long the load balancer waits for a TCP connect to a master,
    /// for client connections and for the checks' connects (HAProxy
    /// `timeout connect`); [`DEFAULT_CONNECT_TIMEOUT`] when not set. A
    /// powered-off master answers nothing, so this is what a connection
    /// sent to it costs before it is retried on a live one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<Dur>,
}

/// HAProxy's `timeout connect` for the apiserver pool when the topology
/// sets none: a master on the LAN accepts a TCP connect in well under
/// 10 ms when it is alive (the kernel answers the SYN, whatever the
/// apiserver's load), so 1 s is a hundred times that, lets a connection
/// sent to a dead master fail and be retried on a live one inside a
/// client's 2 s request budget, and keeps a check of a dead master short.
pub const DEFAULT_CONNECT_TIMEOUT: Dur = Dur::secs(1);

fn default_inter() -> Dur {
    Dur::secs(2)
}
fn default_fall() -> u32 {
    3
}
fn default_rise() -> u32 {
    2
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            kind: CheckKind::Https,
            path: Some("/readyz".into()),
            interval: default_inter(),
            fall: default_fall(),
            rise: default_rise(),
            connect_timeout: None,
        }
    }
}

/// Health check types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// HTTPS request (the apiserver only speaks TLS).
    #[default]
    Https,
    /// Plain HTTP request.
    Http,
    /// TCP connect only.
    Tcp,
    /// No check.
    None,
}

/// Where the Proxmox VE API answers, and how to trust it. The API token
/// is never part of a topology: it comes from `PROXMOX_VE_API_TOKEN` (or
/// Telmate's `PM_API_TOKEN_ID` and `PM_API_TOKEN_SECRET`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxmoxApi {
    /// `https://HOST:8006`.
    pub endpoint: String,
    /// The API certificate's SHA-256 fingerprint (`pvenode cert info`), for
    /// a self-signed certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// A CA bundle (PEM) that signed the API certificate; relative to the
    /// topology file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// A Prometheus to read etcd's and node-exporter's series from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrometheusApi {
    /// Its base URL, `http(s)://HOST:9090` (a path prefix kept).
    pub url: String,
    /// A CA bundle (PEM) that signed its certificate, trusted instead of
    /// the system's roots; relative to the topology file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// A hypervisor host: a failure domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Hypervisor {
    /// Host name (the Proxmox node name).
    pub name: String,
    /// Physical memory, GiB.
    #[serde(rename = "memoryGiB")]
    pub memory_gib: u32,
    /// Physical CPU threads.
    pub cpus: u32,
    /// Memory committed to VMs that are not part of this topology, GiB.
    #[serde(rename = "otherCommittedMemoryGiB", default)]
    pub other_committed_memory_gib: u32,
    /// vCPUs given to VMs that are not part of this topology.
    #[serde(default)]
    pub other_committed_cpus: u32,
}

/// A cluster node (a VM on a hypervisor host, or bare metal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Node {
    /// Kubernetes node name.
    pub name: String,
    /// Control plane or worker.
    pub role: Role,
    /// Node IP address.
    pub address: IpAddr,
    /// Hypervisor host the VM runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hypervisor: Option<String>,
    /// Proxmox VM id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmid: Option<u32>,
    /// vCPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
    /// Memory, GiB.
    #[serde(rename = "memoryGiB", default, skip_serializing_if = "Option::is_none")]
    pub memory_gib: Option<u32>,
    /// Disk, GiB.
    #[serde(rename = "diskGiB", default, skip_serializing_if = "Option::is_none")]
    pub disk_gib: Option<u32>,
}

impl Node {
    /// Whether this node is a master.
    pub fn is_control_plane(&self) -> bool {
        self.role == Role::ControlPlane
    }
}

/// Node role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Runs apiserver, controller-manager, scheduler and a stacked etcd member.
    ControlPlane,
    /// Runs workloads only.
    Worker,
}

/// A kubeconfig outside the cluster that must follow the endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExternalKubeconfig {
    /// Who uses it (e.g. `woodpecker`, `dev-vm`).
    pub name: String,
    /// Where it lives (a path, a secret, a Terraform resource).
    pub location: String,
}

/// The result of validating a topology: errors reject it, warnings do not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Problems that make the topology unusable.
    pub errors: Vec<Diagnostic>,
    /// Problems worth knowing about.
    pub warnings: Vec<Diagnostic>,
}

impl Report {
    fn push(&mut self, d: Diagnostic) {
        match d.level {
            Level::Error => self.errors.push(d),
            Level::Warning => self.warnings.push(d),
        }
    }

    /// Attach file and line/column to every diagnostic.
    pub fn locate_in(&mut self, file: &str, text: &str) {
        for d in self.errors.iter_mut().chain(self.warnings.iter_mut()) {
            d.locate_in(file, text);
        }
        for list in [&mut self.errors, &mut self.warnings] {
            list.sort_by_key(|d| d.position.map(|p| (p.line, p.column)));
        }
    }
}

/// Whether `s` is a valid Kubernetes node name (an RFC 1123 DNS subdomain).
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Whether `url` is `http(s)://HOST:PORT`: Ok(true) for https, Ok(false)
/// for http.
fn check_etcd_url(url: &str) -> Result<bool, String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err("expected https://HOST:PORT, such as https://10.0.20.11:2379".into());
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains('/') {
        return Err("an etcd client URL has no path".into());
    }
    let Some((host, port)) = authority.rsplit_once(':') else {
        return Err("the port is missing (etcd clients use 2379)".into());
    };
    if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err("expected https://HOST:PORT, such as https://10.0.20.11:2379".into());
    }
    Ok(tls)
}

/// Whether `s` is an IP address or a DNS name (any case), safe on a
/// command line.
fn is_host(s: &str) -> bool {
    s.parse::<IpAddr>().is_ok() || is_dns_subdomain(&s.to_ascii_lowercase())
}

/// Whether `s` is a portable user name.
fn is_user_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Whether `s` is safe as an HAProxy backend/server name or a host name.
fn is_simple_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl Topology {
    /// Load and validate a topology file. Errors name file, line and column;
    /// warnings are returned beside the topology.
    pub fn load(path: &Path) -> Result<(Topology, Report), Error> {
        let (mut topology, text): (Topology, String) = source::read(path)?;
        if let Some(dir) = path.parent() {
            topology.etcd.resolve_paths(dir);
            if let Some(m) = topology.load_balancer.manage.as_mut() {
                m.resolve_paths(dir);
            }
            if let Some(s) = topology.ssh.as_mut() {
                s.resolve_paths(dir);
            }
            if let Some(ca) = topology.proxmox.as_mut().and_then(|p| p.ca_file.as_mut())
                && ca.is_relative()
            {
                *ca = dir.join(&*ca);
            }
            if let Some(ca) = topology
                .prometheus
                .as_mut()
                .and_then(|p| p.ca_file.as_mut())
                && ca.is_relative()
            {
                *ca = dir.join(&*ca);
            }
        }
        topology.finish(&path.display().to_string(), &text)
    }

    /// Parse and validate a topology from a YAML or JSON string; `name` stands
    /// for the file in messages.
    pub fn from_yaml(name: &str, text: &str) -> Result<(Topology, Report), Error> {
        let topology: Topology = source::parse(name, text)?;
        topology.finish(name, text)
    }

    fn finish(self, file: &str, text: &str) -> Result<(Topology, Report), Error> {
        let mut report = self.validate();
        for f in source::folded_scalars(text) {
            report.warnings.push(f.warning(""));
        }
        report.locate_in(file, text);
        if report.errors.is_empty() {
            Ok((self, report))
        } else {
            Err(Error::Invalid {
                file: file.to_string(),
                errors: report.errors,
            })
        }
    }

    /// Check the topology for errors and risky choices.
    pub fn validate(&self) -> Report {
        let mut r = Report::default();
        if self.cluster.trim().is_empty() {
            r.push(Diagnostic::error("cluster", "cluster name is empty"));
        }
        let host_names = self.validate_hypervisors(&mut r);
        self.validate_nodes(&mut r, &host_names);
        let masters: Vec<&Node> = self.control_plane_nodes().collect();
        self.validate_masters(&mut r, &masters);
        self.validate_etcd_endpoints(&mut r, &masters);
        self.validate_endpoint(&mut r);
        match self.load_balancer.kind {
            LbKind::None => self.validate_direct_endpoint(&mut r, &masters),
            LbKind::PfsenseHaproxy | LbKind::Haproxy => self.validate_load_balancer(&mut r),
        }
        if let Some(m) = &self.load_balancer.manage {
            self.validate_manage(m, &mut r);
        }
        self.validate_network(&mut r);
        self.validate_capacity(&mut r);
        self.validate_access(&mut r);
        r
    }

    /// Hypervisor hosts: names, once each, with memory and CPUs. Returns
    /// their names, with where each is declared.
    fn validate_hypervisors(&self, r: &mut Report) -> BTreeMap<&str, usize> {
        let mut host_names = BTreeMap::new();
        for (i, h) in self.hypervisors.iter().enumerate() {
            let p = format!("hypervisors[{i}]");
            if !is_simple_name(&h.name) {
                r.push(Diagnostic::error(
                    format!("{p}.name"),
                    format!(
                        "`{}` is not a valid host name (letters, digits, `-`, `_`, `.`)",
                        h.name
                    ),
                ));
            }
            if let Some(first) = host_names.insert(h.name.as_str(), i) {
                r.push(Diagnostic::error(
                    format!("{p}.name"),
                    format!(
                        "duplicate hypervisor `{}` (first at hypervisors[{first}])",
                        h.name
                    ),
                ));
            }
            if h.memory_gib == 0 || h.cpus == 0 {
                r.push(Diagnostic::error(
                    p,
                    "memoryGiB and cpus must be greater than 0",
                ));
            }
        }

        host_names
    }

    /// Nodes: names, addresses and VM ids once each, on a known host, in
    /// the node network.
    fn validate_nodes(&self, r: &mut Report, host_names: &BTreeMap<&str, usize>) {
        let mut names = BTreeMap::new();
        let mut addrs: BTreeMap<IpAddr, usize> = BTreeMap::new();
        let mut vmids = BTreeMap::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let p = format!("nodes[{i}]");
            if !is_dns_subdomain(&n.name) {
                r.push(Diagnostic::error(
                    format!("{p}.name"),
                    format!(
                        "`{}` is not a valid Kubernetes node name (lower-case letters, digits, `-`, `.`)",
                        n.name
                    ),
                ));
            }
            if let Some(first) = names.insert(n.name.as_str(), i) {
                r.push(Diagnostic::error(
                    format!("{p}.name"),
                    format!("duplicate node name `{}` (first at nodes[{first}])", n.name),
                ));
            }
            if let Some(first) = addrs.insert(n.address, i) {
                r.push(Diagnostic::error(
                    format!("{p}.address"),
                    format!(
                        "address {} is already used by node `{}` (nodes[{first}])",
                        n.address, self.nodes[first].name
                    ),
                ));
            }
            if n.address.is_unspecified() || n.address.is_multicast() {
                r.push(Diagnostic::error(
                    format!("{p}.address"),
                    format!("{} is not a usable node address", n.address),
                ));
            }
            if let Some(vmid) = n.vmid {
                if vmid < 100 {
                    r.push(Diagnostic::error(
                        format!("{p}.vmid"),
                        format!("Proxmox VM ids start at 100, got {vmid}"),
                    ));
                }
                if let Some(first) = vmids.insert(vmid, i) {
                    r.push(Diagnostic::error(
                        format!("{p}.vmid"),
                        format!(
                            "VM id {vmid} is already used by node `{}` (nodes[{first}])",
                            self.nodes[first].name
                        ),
                    ));
                }
            }
            if let Some(h) = &n.hypervisor
                && !host_names.contains_key(h.as_str())
            {
                r.push(Diagnostic::error(
                    format!("{p}.hypervisor"),
                    format!(
                        "unknown hypervisor `{h}`; declare it under `hypervisors` (known: {})",
                        join(host_names.keys())
                    ),
                ));
            }
            if let Some(net) = &self.network
                && !net.cidr.contains(&n.address)
            {
                r.push(Diagnostic::error(
                    format!("{p}.address"),
                    format!("{} is outside the node network {}", n.address, net.cidr),
                ));
            }
        }
    }

    /// The masters: some, an odd number, not all on one host.
    fn validate_masters(&self, r: &mut Report, masters: &[&Node]) {
        if masters.is_empty() {
            r.push(Diagnostic::error(
                "nodes",
                "no node has role `control-plane`",
            ));
        } else if masters.len() % 2 == 0 {
            r.push(Diagnostic::warning(
                "nodes",
                format!(
                    "{} control-plane nodes: an even etcd size tolerates no more failures than {} and adds a member that must stay up; use an odd number",
                    masters.len(),
                    masters.len() - 1
                ),
            ));
        }
        if masters.len() > 1 {
            let hosts: BTreeSet<Option<&str>> =
                masters.iter().map(|m| m.hypervisor.as_deref()).collect();
            if hosts.len() == 1
                && let Some(Some(h)) = hosts.first()
            {
                r.push(Diagnostic::warning(
                    "nodes",
                    format!(
                        "all {} control-plane nodes run on hypervisor `{h}`: losing that host loses etcd quorum; spread them over hosts",
                        masters.len()
                    ),
                ));
            }
        }
    }

    /// etcd endpoints: TLS URLs of the masters.
    fn validate_etcd_endpoints(&self, r: &mut Report, masters: &[&Node]) {
        for (i, url) in self.etcd.endpoints.iter().enumerate() {
            let p = format!("etcd.endpoints[{i}]");
            match check_etcd_url(url) {
                Err(why) => r.push(Diagnostic::error(p, format!("`{url}`: {why}"))),
                Ok(false) => r.push(Diagnostic::warning(
                    p,
                    format!("`{url}` is plain HTTP; kubeadm's etcd serves clients only over TLS"),
                )),
                Ok(true) => {
                    let host = url_host(url).and_then(|h| h.parse::<IpAddr>().ok());
                    if let Some(ip) = host
                        && !masters.iter().any(|m| m.address == ip)
                    {
                        r.push(Diagnostic::warning(
                            p,
                            format!("{ip} is no control-plane node's address; stacked etcd members run on the masters"),
                        ));
                    }
                }
            }
        }
    }

    /// The control-plane endpoint's port and DNS name.
    fn validate_endpoint(&self, r: &mut Report) {
        let ep = &self.control_plane_endpoint;
        if ep.port == 0 {
            r.push(Diagnostic::error(
                "controlPlaneEndpoint.port",
                "port must not be 0",
            ));
        }
        if let Some(dns) = &ep.dns_name
            && !is_dns_subdomain(dns)
        {
            r.push(Diagnostic::error(
                "controlPlaneEndpoint.dnsName",
                format!("`{dns}` is not a valid DNS name"),
            ));
        }
    }

    /// Without a load balancer: the endpoint is a master.
    fn validate_direct_endpoint(&self, r: &mut Report, masters: &[&Node]) {
        let vip = self.control_plane_endpoint.address;
        match self.nodes.iter().find(|n| n.address == vip) {
            Some(n) if n.is_control_plane() => {}
            Some(n) => r.push(Diagnostic::error(
                "controlPlaneEndpoint.address",
                format!("{vip} is worker node `{}`; without a load balancer the endpoint must be a control-plane node", n.name),
            )),
            None => r.push(Diagnostic::error(
                "controlPlaneEndpoint.address",
                format!("{vip} is no node of the cluster and no load balancer is declared; declare `loadBalancer` for a VIP"),
            )),
        }
        if masters.len() > 1 {
            r.push(Diagnostic::warning(
                "loadBalancer",
                format!(
                    "{} control-plane nodes but no load balancer: clients still depend on one master",
                    masters.len()
                ),
            ));
        }
    }

    /// With a load balancer: a VIP of its own, its frontend, its pool.
    fn validate_load_balancer(&self, r: &mut Report) {
        let vip = self.control_plane_endpoint.address;
        let ep = &self.control_plane_endpoint;
        let lb = &self.load_balancer;
        if let Some(n) = self.nodes.iter().find(|n| n.address == vip) {
            r.push(Diagnostic::error(
                "controlPlaneEndpoint.address",
                format!(
                    "the VIP {vip} is node `{}`'s address; the VIP must be an address of its own",
                    n.name
                ),
            ));
        }
        match lb.frontend {
            None => r.push(Diagnostic::error(
                "loadBalancer.frontend",
                "a load balancer needs `frontend: VIP:PORT`",
            )),
            Some(f) if f != ep.socket() => r.push(Diagnostic::error(
                "loadBalancer.frontend",
                format!(
                    "frontend {f} differs from controlPlaneEndpoint {}; clients would bypass the load balancer",
                    ep.socket()
                ),
            )),
            Some(_) => {}
        }
        match &lb.pool {
            None => r.push(Diagnostic::error(
                "loadBalancer.pool",
                "a load balancer needs the name of its backend `pool`",
            )),
            Some(p) if !is_simple_name(p) => r.push(Diagnostic::error(
                "loadBalancer.pool",
                format!("`{p}` is not a valid pool name (letters, digits, `-`, `_`, `.`)"),
            )),
            Some(_) => {}
        }
        if let Some(net) = &self.network
            && !net.cidr.contains(&vip)
        {
            r.push(Diagnostic::error(
                "controlPlaneEndpoint.address",
                format!("the VIP {vip} is outside the node network {}", net.cidr),
            ));
        }
        self.validate_health_check(r);
    }

    /// The Proxmox endpoint and the network's gateway.
    fn validate_network(&self, r: &mut Report) {
        let vip = self.control_plane_endpoint.address;
        if let Some(p) = &self.proxmox
            && !p.endpoint.starts_with("https://")
        {
            r.push(Diagnostic::error(
                "proxmox.endpoint",
                format!("`{}` is not an https:// URL, such as https://10.0.20.2:8006 (the Proxmox API speaks HTTPS only)", p.endpoint),
            ));
        }
        if let Some(p) = &self.prometheus
            && !(p.url.starts_with("https://") || p.url.starts_with("http://"))
        {
            r.push(Diagnostic::error(
                "prometheus.url",
                format!(
                    "`{}` is not an http(s):// URL, such as https://prometheus.example:9090",
                    p.url
                ),
            ));
        }
        if let Some(net) = &self.network
            && let Some(gw) = net.gateway
        {
            if !net.cidr.contains(&gw) {
                r.push(Diagnostic::error(
                    "network.gateway",
                    format!("gateway {gw} is outside {}", net.cidr),
                ));
            }
            if gw == vip {
                r.push(Diagnostic::error(
                    "controlPlaneEndpoint.address",
                    format!("the endpoint {vip} is the network gateway"),
                ));
            }
        }
    }

    /// Capacity: warn when the declared VMs over-commit a host.
    fn validate_capacity(&self, r: &mut Report) {
        for (i, h) in self.hypervisors.iter().enumerate() {
            let (mem, cpu) = self.committed_on(&h.name);
            let mem = mem + h.other_committed_memory_gib;
            if mem > h.memory_gib {
                r.push(Diagnostic::warning(
                    format!("hypervisors[{i}]"),
                    format!(
                        "`{}` has {} GiB of memory but {mem} GiB is committed to VMs",
                        h.name, h.memory_gib
                    ),
                ));
            }
            let cpu = cpu + h.other_committed_cpus;
            if cpu > h.cpus * 4 {
                r.push(Diagnostic::warning(
                    format!("hypervisors[{i}]"),
                    format!(
                        "`{}` has {} CPU threads but {cpu} vCPUs are committed (over 4:1)",
                        h.name, h.cpus
                    ),
                ));
            }
        }
    }

    /// How hacli reaches the hosts and other clusters.
    fn validate_access(&self, r: &mut Report) {
        if let Some(s) = &self.ssh {
            if let Some(u) = &s.user
                && !is_user_name(u)
            {
                r.push(Diagnostic::error(
                    "ssh.user",
                    format!("`{u}` is not a user name (1 to 32 letters, digits, `.`, `_`, `-`, not first)"),
                ));
            }
            if s.port == Some(0) {
                r.push(Diagnostic::error("ssh.port", "a port is 1 to 65535"));
            }
        }

        for (i, k) in self.external_kubeconfigs.iter().enumerate() {
            if k.name.trim().is_empty() || k.location.trim().is_empty() {
                r.push(Diagnostic::error(
                    format!("externalKubeconfigs[{i}]"),
                    "name and location must not be empty",
                ));
            }
        }
    }

    fn validate_manage(&self, m: &LbManage, r: &mut Report) {
        let kind = self.load_balancer.kind;
        if kind == LbKind::None {
            r.push(Diagnostic::error(
                "loadBalancer.manage",
                "`manage` needs a load balancer: set `kind: pfsense-haproxy` or `kind: haproxy`",
            ));
            return;
        }
        match m.transport {
            LbTransport::Ssh => match m.host.as_deref() {
                None => r.push(Diagnostic::error(
                    "loadBalancer.manage.host",
                    "`transport: ssh` needs the `host` to log in to",
                )),
                Some(h) if !is_host(h) => r.push(Diagnostic::error(
                    "loadBalancer.manage.host",
                    format!("`{h}` is neither an IP address nor a DNS name"),
                )),
                Some(_) => {}
            },
            LbTransport::Rest => {
                if kind == LbKind::Haproxy {
                    r.push(Diagnostic::error(
                        "loadBalancer.manage.transport",
                        "`transport: rest` is pfSense's REST API: plain HAProxy (`kind: haproxy`) is managed over `ssh`",
                    ));
                }
                if let Some(u) = &m.url
                    && !(u.starts_with("https://") || u.starts_with("http://"))
                {
                    r.push(Diagnostic::error(
                        "loadBalancer.manage.url",
                        format!("`{u}` is not an http(s):// URL, such as https://10.0.20.1"),
                    ));
                }
                if let Some(u) = &m.url
                    && u.starts_with("http://")
                    && !m.allow_plain_http
                {
                    r.push(Diagnostic::error(
                        "loadBalancer.manage.url",
                        format!(
                            "`{u}` is plain HTTP: the API key or password would cross the network in clear; use https:// (with caFile), or set loadBalancer.manage.allowPlainHttp: true"
                        ),
                    ));
                }
            }
        }
        if let Some(u) = &m.user
            && !is_simple_name(u)
        {
            r.push(Diagnostic::error(
                "loadBalancer.manage.user",
                format!("`{u}` is not a valid user name"),
            ));
        }
        if let Some(i) = &m.vip_interface
            && !is_simple_name(i)
        {
            r.push(Diagnostic::error(
                "loadBalancer.manage.vipInterface",
                format!("`{i}` is not a pfSense interface name such as lan or opt1"),
            ));
        }
    }

    fn validate_health_check(&self, r: &mut Report) {
        let hc = &self.load_balancer.health_check;
        let p = "loadBalancer.healthCheck";
        match hc.kind {
            CheckKind::None => r.push(Diagnostic::warning(
                format!("{p}.type"),
                "no health check: a dead apiserver keeps receiving connections; use HTTPS GET /readyz",
            )),
            CheckKind::Tcp => r.push(Diagnostic::warning(
                format!("{p}.type"),
                "a TCP check passes while the apiserver is shutting down or not ready; use HTTPS GET /readyz",
            )),
            CheckKind::Http => r.push(Diagnostic::warning(
                format!("{p}.type"),
                "the apiserver serves only TLS on 6443: a plain HTTP check always fails; use HTTPS",
            )),
            CheckKind::Https => {}
        }
        if matches!(hc.kind, CheckKind::Http | CheckKind::Https) {
            match hc.path.as_deref() {
                None => r.push(Diagnostic::error(
                    format!("{p}.path"),
                    "an HTTP(S) check needs a `path`, normally /readyz",
                )),
                Some(path) if !path.starts_with('/') => r.push(Diagnostic::error(
                    format!("{p}.path"),
                    format!("path `{}` must start with `/`", path.escape_debug()),
                )),
                // The path is written into haproxy.cfg (`option httpchk GET
                // PATH`): a space, a control character, a quote, a
                // backslash or `#` there ends the word or the line, and what
                // follows would be read as HAProxy configuration.
                Some(path) if path.chars().any(unsafe_in_config) => {
                    let c = path.chars().find(|c| unsafe_in_config(*c)).unwrap_or(' ');
                    r.push(Diagnostic::error(
                        format!("{p}.path"),
                        format!(
                            "path `{}` holds {c:?}: a health-check path is one URL path without spaces, control characters, quotes, backslashes or `#` (it is written into the HAProxy configuration)",
                            path.escape_debug(),
                        ),
                    ))
                }
                Some("/healthz") | Some("/livez") => r.push(Diagnostic::warning(
                    format!("{p}.path"),
                    "/healthz and /livez stay OK during graceful shutdown; /readyz turns false at SIGTERM so the LB stops sending first",
                )),
                Some(_) => {}
            }
        }
        if hc.interval.0.is_zero() {
            r.push(Diagnostic::error(
                format!("{p}.interval"),
                "interval must be greater than 0",
            ));
        }
        if hc.fall == 0 || hc.rise == 0 {
            r.push(Diagnostic::error(p, "fall and rise must be at least 1"));
        }
        if let Some(ct) = hc.connect_timeout {
            if ct.0.as_millis() < 1 {
                r.push(Diagnostic::error(
                    format!("{p}.connectTimeout"),
                    "connectTimeout must be at least 1ms (HAProxy counts in milliseconds)",
                ));
            } else if ct.0.as_secs() > 5 {
                r.push(Diagnostic::warning(
                    format!("{p}.connectTimeout"),
                    format!("a connection sent to a powered-off master waits {ct} before HAProxy retries it on a live one; on a LAN 1s is plenty"),
                ));
            }
        }
    }

    /// The control-plane nodes, in declaration order.
    pub fn control_plane_nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.is_control_plane())
    }

    /// A node by name.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// A hypervisor host by name.
    pub fn hypervisor(&self, name: &str) -> Option<&Hypervisor> {
        self.hypervisors.iter().find(|h| h.name == name)
    }

    /// Memory (GiB) and vCPUs committed to this topology's VMs on a host.
    pub fn committed_on(&self, host: &str) -> (u32, u32) {
        self.nodes
            .iter()
            .filter(|n| n.hypervisor.as_deref() == Some(host))
            .fold((0, 0), |(m, c), n| {
                (m + n.memory_gib.unwrap_or(0), c + n.cpus.unwrap_or(0))
            })
    }

    /// Whether clients reach the apiserver through a load balancer.
    pub fn has_load_balancer(&self) -> bool {
        self.load_balancer.kind != LbKind::None
    }
}

/// A character that HAProxy's configuration parser reads as more than a
/// character of a word (a separator, a line end, a quote, an escape, a
/// comment).
fn unsafe_in_config(c: char) -> bool {
    c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '\\' | '#')
}

fn join<'a>(it: impl Iterator<Item = &'a &'a str>) -> String {
    let v: Vec<&str> = it.copied().collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// The host of `scheme://host:port/...`, without brackets for IPv6.
pub fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split('/').next()?;
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next();
    }
    Some(
        authority
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(authority),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "cluster: t\ncontrolPlaneEndpoint: { address: 10.0.0.1 }\nnodes:\n  - { name: m1, role: control-plane, address: 10.0.0.1 }\n";

    fn with_etcd(etcd: &str) -> Result<(Topology, Report), Error> {
        Topology::from_yaml("t.yaml", &format!("{BASE}etcd: {etcd}\n"))
    }

    #[test]
    fn a_prometheus_url_must_be_http_and_names_its_field() {
        let ok = format!("{BASE}prometheus: {{ url: 'https://prom:9090/sub', caFile: ca.pem }}\n");
        let (t, _) = Topology::from_yaml("t.yaml", &ok).unwrap();
        let p = t.prometheus.unwrap();
        assert_eq!(
            (p.url.as_str(), p.ca_file),
            ("https://prom:9090/sub", Some("ca.pem".into()))
        );
        let bad = format!("{BASE}prometheus: {{ url: 'prom:9090' }}\n");
        let err = Topology::from_yaml("t.yaml", &bad).unwrap_err().to_string();
        assert!(
            err.contains("prometheus.url") && err.contains("prom:9090"),
            "{err}"
        );
        let unknown = format!("{BASE}prometheus: {{ url: 'http://p:9090', token: x }}\n");
        assert!(Topology::from_yaml("t.yaml", &unknown).is_err());
    }

    #[test]
    fn etcd_endpoints_are_checked_and_located() {
        let (_, report) = with_etcd("{ endpoints: [https://10.0.0.1:2379] }").unwrap();
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);

        let (_, report) = with_etcd("{ endpoints: [https://10.0.0.7:2379] }").unwrap();
        let w = format!("{:?}", report.warnings);
        assert!(
            w.contains("10.0.0.7 is no control-plane node's address"),
            "{w}"
        );

        let (_, report) = with_etcd("{ endpoints: [http://10.0.0.1:2379] }").unwrap();
        assert!(format!("{:?}", report.warnings).contains("plain HTTP"));

        for bad in [
            "10.0.0.1:2379",
            "https://10.0.0.1",
            "https://10.0.0.1:0",
            "https://10.0.0.1:2379/v3",
        ] {
            let err = with_etcd(&format!("{{ endpoints: [\"{bad}\"] }}"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("t.yaml:5:") && err.contains("etcd.endpoints[0]"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn connect_timeout_is_optional_and_checked() {
        let lb = |hc: &str| {
            Topology::from_yaml(
                "t.yaml",
                &format!(
                    "cluster: t\ncontrolPlaneEndpoint: {{ address: 10.0.0.100 }}\nloadBalancer: {{ kind: haproxy, frontend: \"10.0.0.100:6443\", pool: api, healthCheck: {hc} }}\nnodes:\n  - {{ name: m1, role: control-plane, address: 10.0.0.1 }}\n"
                ),
            )
        };
        // Old topologies stay valid, and write no connectTimeout back.
        let (t, _) = lb("{ type: https, path: /readyz }").unwrap();
        assert_eq!(t.load_balancer.health_check.connect_timeout, None);
        assert!(
            !serde_json::to_string(&t)
                .unwrap()
                .contains("connectTimeout")
        );
        let (t, report) = lb("{ type: https, path: /readyz, connectTimeout: 1500ms }").unwrap();
        assert_eq!(
            t.load_balancer.health_check.connect_timeout,
            Some("1500ms".parse().unwrap())
        );
        assert!(
            !format!("{:?}", report.warnings).contains("connectTimeout"),
            "{:?}",
            report.warnings
        );
        let (_, report) = lb("{ type: https, path: /readyz, connectTimeout: 30s }").unwrap();
        assert!(
            format!("{:?}", report.warnings).contains("connectTimeout"),
            "{:?}",
            report.warnings
        );
        let err = lb("{ type: https, path: /readyz, connectTimeout: 0s }")
            .unwrap_err()
            .to_string();
        assert!(err.contains("connectTimeout"), "{err}");
    }

    #[test]
    fn a_health_check_path_that_would_inject_haproxy_directives_is_refused() {
        let lb = |hc: &str| {
            Topology::from_yaml(
                "t.yaml",
                &format!(
                    "cluster: t\ncontrolPlaneEndpoint: {{ address: 10.0.0.100 }}\nloadBalancer: {{ kind: haproxy, frontend: \"10.0.0.100:6443\", pool: api, healthCheck: {hc} }}\nnodes:\n  - {{ name: m1, role: control-plane, address: 10.0.0.1 }}\n"
                ),
            )
        };
        assert!(lb("{ type: https, path: \"/readyz?verbose=1&x=%20\" }").is_ok());
        for bad in [
            "/readyz\\n    http-request deny",
            "/readyz\\r\\nserver evil 203.0.113.9:6443",
            "/readyz HTTP/1.1\\\\r\\\\nHost: x",
            "/readyz\\thttp-check expect status 500",
            "/readyz\\u0000",
            "/readyz#",
            "/ready'z",
        ] {
            let err = lb(&format!("{{ type: https, path: \"{bad}\" }}"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("t.yaml:3:") && err.contains("loadBalancer.healthCheck.path"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn a_plain_http_pfsense_api_url_is_refused_unless_allowed() {
        let lb = |manage: &str| {
            Topology::from_yaml(
                "t.yaml",
                &format!(
                    "cluster: t\ncontrolPlaneEndpoint: {{ address: 10.0.0.100 }}\nloadBalancer: {{ kind: pfsense-haproxy, frontend: \"10.0.0.100:6443\", pool: api, manage: {manage} }}\nnodes:\n  - {{ name: m1, role: control-plane, address: 10.0.0.1 }}\n"
                ),
            )
        };
        assert!(lb("{ transport: rest, url: \"https://10.0.0.254\" }").is_ok());
        let err = lb("{ transport: rest, url: \"http://10.0.0.254\" }")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("loadBalancer.manage.url")
                && err.contains("plain HTTP")
                && err.contains("allowPlainHttp"),
            "{err}"
        );
        let (t, _) =
            lb("{ transport: rest, url: \"http://10.0.0.254\", allowPlainHttp: true }").unwrap();
        assert!(t.load_balancer.manage.unwrap().allow_plain_http);
    }

    #[test]
    fn runtime_api_round_trips_and_rejects_what_it_cannot_reach() {
        for ok in [
            "unix:/run/haproxy/admin.sock",
            "tcp:10.0.0.1:9999",
            "tcp:[::1]:9999",
        ] {
            let r: RuntimeApi = ok.parse().unwrap();
            assert_eq!(r.to_string(), ok);
        }
        for bad in [
            "unix:relative.sock",
            "tcp:10.0.0.1",
            "10.0.0.1:9999",
            "http://x",
        ] {
            assert!(bad.parse::<RuntimeApi>().is_err(), "{bad}");
        }
    }

    #[test]
    fn relative_certificate_paths_are_taken_from_the_file() {
        let dir = std::env::temp_dir().join(format!("hacore-topology-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("t.yaml");
        std::fs::write(
            &file,
            format!("{BASE}etcd: {{ pki: pki/etcd, keyFile: /abs/client.key }}\n"),
        )
        .unwrap();
        let (t, _) = Topology::load(&file).unwrap();
        assert_eq!(t.etcd.pki.as_deref(), Some(dir.join("pki/etcd").as_path()));
        assert_eq!(
            t.etcd.key_file.as_deref(),
            Some(Path::new("/abs/client.key"))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn node_ssh_settings_are_validated() {
        let ok = format!("{BASE}ssh: {{ user: kube-admin, port: 2222, identityFile: keys/id }}\n");
        let (t, _) = Topology::from_yaml("t.yaml", &ok).unwrap();
        let s = t.ssh.unwrap();
        assert_eq!(s.user.as_deref(), Some("kube-admin"));
        assert_eq!(s.port, Some(2222));
        let bad = format!("{BASE}ssh: {{ user: \"-x; rm\", port: 0 }}\n");
        let Err(Error::Invalid { errors, .. }) = Topology::from_yaml("t.yaml", &bad) else {
            panic!("a bad ssh section must be refused");
        };
        let fields: Vec<&str> = errors.iter().map(|d| d.path.as_str()).collect();
        assert!(
            fields.contains(&"ssh.user") && fields.contains(&"ssh.port"),
            "{fields:?}"
        );
    }
}
