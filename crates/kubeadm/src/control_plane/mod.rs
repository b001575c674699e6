//! The control-plane backend: hacore's [`ControlPlane`] trait over a live
//! kubeadm cluster.
//!
//! Each [`CpOp`] runs where it belongs:
//! - over SSH on the node ([`ssh_ops`]): `kubeadm`, `systemctl`, `openssl`,
//!   file edits (a backup of the original first, then a temporary file and
//!   an atomic rename);
//! - through the Kubernetes API ([`api_ops`]): the `kubeadm-config`,
//!   `kube-proxy` and `cluster-info` ConfigMaps, taints, Nodes;
//! - through etcd ([`etcd_ops`], `etcd-client` with the observer's TLS
//!   files): member list, promote, remove by id, snapshot.
//!
//! Every `is_done` decides on a fresh read; every remote call has a
//! deadline. Checks (`Verify*`, `MemberPromoted`, ...) wait up to
//! [`ControlPlaneOptions::check_wait`] for their condition, since the
//! executor only asks `is_done` for them.
//!
//! The join material (certificate key, bootstrap token) lives in memory
//! only, in [`secret::Secret`]s whose `Debug` and `Display` redact. It
//! reaches `kubeadm` only in a configuration file (a JoinConfiguration, an
//! InitConfiguration with `certificateKey`) sent on the command's stdin
//! into a 0600 file that is removed afterwards, never in its arguments
//! (which any local user reads in `/proc` and sudo logs); the commands
//! mark the values [`ssh::Cmd::secret`], so errors show `***`. After a
//! crash the key is gone: a join then uploads the certificates again
//! instead of reusing an old key.
//!
//! ```no_run
//! # fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use hacore::backend::{ControlPlane, CpOp};
//! use kubeadm::control_plane::{ControlPlaneOptions, KubeadmControlPlane};
//! let (topology, _) = hacore::Topology::load("topology.yaml".as_ref())?;
//! let mut cp = KubeadmControlPlane::from_topology(&topology, &ControlPlaneOptions::default())?;
//! let op = CpOp::EnsureControlPlaneTaint { node: "k8s-master-2".into() };
//! if !cp.is_done(&op)? {
//!     cp.apply(&op)?;
//! }
//! # Ok(()) }
//! ```

pub mod api_ops;
pub mod disrupt;
pub mod etcd_ops;
pub mod join_checks;
pub mod secret;
pub mod ssh_ops;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{Certificate, Identity, TlsOptions};
use hacore::Topology;
use hacore::backend::{BackendError, ControlPlane, CpOp, Op};
use hacore::units::Dur;
use tokio::time::Instant;

use crate::EtcdTlsOverrides;
use secret::CertificateKey;

/// What went wrong. Messages name the node, file, endpoint or object and
/// what to do; no token or key ever reaches one.
#[derive(Debug, thiserror::Error)]
pub enum CpError {
    /// The topology, options or environment do not say how to reach it.
    #[error("{0}")]
    Config(String),
    /// SSH failed (connect, host key, authentication, the command).
    #[error(transparent)]
    Ssh(Box<ssh::SshError>),
    /// The Kubernetes API refused or failed a request.
    #[error("Kubernetes API: {what}: {message}")]
    Kube {
        /// What was being done.
        what: String,
        /// What it said.
        message: String,
    },
    /// etcd refused or failed a request.
    #[error("etcd: {what}: {message}")]
    Etcd {
        /// What was being done, naming the endpoint.
        what: String,
        /// What it said.
        message: String,
    },
    /// The operation would harm what it must not, or is not possible now.
    #[error("{0}")]
    Refused(String),
    /// An answer could not be understood.
    #[error("{what}: {detail}")]
    Protocol {
        /// Where.
        what: String,
        /// What was wrong.
        detail: String,
    },
    /// No answer (or not the expected state) by the deadline.
    #[error("{what}: not within {deadline:?}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// The deadline.
        deadline: Duration,
    },
    /// `kubeadm upgrade` failed and put the node back as it was (its own
    /// rollback: the old static-pod manifests, the old version running).
    #[error("kubeadm rolled the upgrade back: {0}")]
    RolledBack(String),
}

impl CpError {
    pub(crate) fn ssh(e: ssh::SshError) -> CpError {
        CpError::Ssh(Box::new(e))
    }

    pub(crate) fn kube(what: impl Into<String>, e: kube::Error) -> CpError {
        CpError::Kube {
            what: what.into(),
            message: crate::redact_urls_in(&crate::observe::describe(&e)).into_owned(),
        }
    }

    pub(crate) fn etcd(what: impl Into<String>, e: etcd_client::Error) -> CpError {
        CpError::Etcd {
            what: what.into(),
            message: crate::observe::describe(&e),
        }
    }

    fn into_backend(self, what: &str) -> BackendError {
        match self {
            CpError::Timeout { deadline, .. } => BackendError::Timeout {
                what: format!("{what}: {self}"),
                deadline: Dur(jiff::SignedDuration::try_from(deadline).unwrap_or_default()),
            },
            other => BackendError::Failed {
                what: what.to_string(),
                message: other.to_string(),
            },
        }
    }
}

/// How the backend reaches the cluster and how long it waits.
#[derive(Clone)]
pub struct ControlPlaneOptions {
    /// kubeconfig file; None: kube's standard inference.
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig's context to use; None: its current context.
    pub kube_context: Option<String>,
    /// etcd client URLs; empty: the topology's `etcd.endpoints`, else every
    /// control-plane node's address on :2379.
    pub etcd_endpoints: Vec<String>,
    /// etcd client TLS files, over the topology's.
    pub etcd_tls: EtcdTlsOverrides,
    /// Deadline of one remote call (an API request, an etcd request, a
    /// short command over SSH).
    pub timeout: Duration,
    /// Deadline of a `kubeadm join` or `kubeadm reset`.
    pub join_timeout: Duration,
    /// How long a check waits for its condition before it answers false.
    pub check_wait: Duration,
    /// How long a VM just started may take until its sshd answers
    /// (cloud-init's first boot) before the checks that need it fail.
    pub boot_wait: Duration,
    /// How long a drain retries evictions a PodDisruptionBudget refuses
    /// before it gives up, naming the pods.
    pub drain_timeout: Duration,
    /// How long a renewed apiserver certificate may take to be served
    /// (the apiserver reloads it from disk) before the static pod is
    /// restarted as a fallback.
    pub cert_reload_bound: Duration,
    /// The apiserver port on each master; None: the endpoint's port.
    pub apiserver_port: Option<u16>,
    /// The master that `upload-config`, `upload-certs` and `token create`
    /// run on; None: the first control-plane node of the topology that is
    /// a registered, Ready master.
    pub primary: Option<String>,
    /// Where etcd snapshots are written (mode 0600: they hold every Secret).
    pub snapshot_dir: PathBuf,
    /// A snapshot younger than this counts as taken.
    pub snapshot_max_age: Duration,
    /// Record an unknown SSH host key (said loudly) instead of refusing.
    pub accept_new_host_key: bool,
    /// Override of the topology's `ssh.knownHosts`.
    pub known_hosts: Option<PathBuf>,
    /// Override of the topology's `ssh.identityFile`.
    pub identity_file: Option<PathBuf>,
    /// Where the backend says what a person must know (a fallback restart,
    /// a key re-uploaded after a crash): stderr by default.
    pub notice: ssh::Warn,
}

impl std::fmt::Debug for ControlPlaneOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let endpoints: Vec<String> = self
            .etcd_endpoints
            .iter()
            .map(|u| crate::redact_url(u).into_owned())
            .collect();
        f.debug_struct("ControlPlaneOptions")
            .field("kubeconfig", &self.kubeconfig)
            .field("kube_context", &self.kube_context)
            .field("etcd_endpoints", &endpoints)
            .field("etcd_tls", &self.etcd_tls)
            .field("timeout", &self.timeout)
            .field("join_timeout", &self.join_timeout)
            .field("check_wait", &self.check_wait)
            .field("boot_wait", &self.boot_wait)
            .field("cert_reload_bound", &self.cert_reload_bound)
            .field("primary", &self.primary)
            .field("snapshot_dir", &self.snapshot_dir)
            .finish_non_exhaustive()
    }
}

impl Default for ControlPlaneOptions {
    fn default() -> Self {
        ControlPlaneOptions {
            kubeconfig: None,
            kube_context: None,
            etcd_endpoints: Vec::new(),
            etcd_tls: EtcdTlsOverrides::default(),
            timeout: Duration::from_secs(30),
            join_timeout: Duration::from_secs(600),
            check_wait: Duration::from_secs(120),
            boot_wait: Duration::from_secs(300),
            drain_timeout: Duration::from_secs(300),
            cert_reload_bound: Duration::from_secs(90),
            apiserver_port: None,
            primary: None,
            snapshot_dir: PathBuf::from("etcd-snapshots"),
            snapshot_max_age: Duration::from_secs(6 * 3600),
            accept_new_host_key: false,
            known_hosts: None,
            identity_file: None,
            notice: ssh::Warn::new(|m| eprintln!("NOTICE: {m}")),
        }
    }
}

/// How long a certificate key is good for (kubeadm deletes the
/// `kubeadm-certs` Secret after 2 hours), less a margin for the join.
pub const KEY_LIFETIME: Duration = Duration::from_secs(2 * 3600 - 15 * 60);

/// The live control-plane backend.
pub struct KubeadmControlPlane {
    rt: tokio::runtime::Runtime,
    topology: Topology,
    opts: ControlPlaneOptions,
    kube: kube::Client,
    /// The cluster CA (DER), from the kubeconfig, to probe apiservers.
    cluster_ca: Vec<Vec<u8>>,
    etcd_tls: TlsOptions,
    etcd_endpoints: Vec<String>,
    ssh_base: ssh::Config,
    sessions: Mutex<BTreeMap<String, ssh::Session>>,
    /// The current certificate key: memory only.
    key: Arc<Mutex<Option<CertificateKey>>>,
    /// What the disruption operations remember between calls.
    disrupt_memory: Mutex<disrupt::Memory>,
}

impl std::fmt::Debug for KubeadmControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = self
            .key
            .lock()
            .ok()
            .and_then(|k| k.as_ref().map(|k| k.issued));
        f.debug_struct("KubeadmControlPlane")
            .field("cluster", &self.topology.cluster)
            .field("opts", &self.opts)
            .field("key_issued", &key)
            .finish_non_exhaustive()
    }
}

fn home_path(p: &std::path::Path) -> PathBuf {
    match (p.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => p.to_path_buf(),
    }
}

/// The SSH settings for every node, from the topology's `ssh:` section and
/// the options (the host is filled in per node).
pub(crate) fn ssh_base(topology: &Topology, opts: &ControlPlaneOptions) -> ssh::Config {
    let s = topology.ssh.clone().unwrap_or_default();
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let known_hosts = opts
        .known_hosts
        .clone()
        .or(s.known_hosts)
        .map(|p| home_path(&p))
        .unwrap_or_else(|| home.join(".ssh/known_hosts"));
    let keys = match opts.identity_file.clone().or(s.identity_file) {
        Some(k) => vec![home_path(&k)],
        None => ["id_ed25519", "id_ecdsa", "id_rsa"]
            .iter()
            .map(|n| home.join(".ssh").join(n))
            .filter(|p| p.exists())
            .collect(),
    };
    let user = s.user.unwrap_or_else(|| "root".into());
    ssh::Config::new("node", "127.0.0.1", user)
        .port(s.port.unwrap_or(22))
        .keys(keys)
        .agent(std::env::var_os("SSH_AUTH_SOCK").is_some())
        .passphrase_env("HACLI_SSH_PASSPHRASE")
        .known_hosts(known_hosts)
        .host_key_policy(if opts.accept_new_host_key {
            ssh::HostKeyPolicy::AcceptNew
        } else {
            ssh::HostKeyPolicy::Strict
        })
        .sudo(s.sudo.unwrap_or(true))
        .connect_timeout(opts.timeout.min(Duration::from_secs(15)))
}

fn read_tls_file(path: &std::path::Path) -> Result<Vec<u8>, CpError> {
    std::fs::read(path).map_err(|e| {
        CpError::Config(format!(
            "cannot read etcd TLS file {}: {e} (set --etcd-pki, or --etcd-cacert/--etcd-cert/--etcd-key)",
            path.display()
        ))
    })
}

impl KubeadmControlPlane {
    /// The backend for the cluster `topology` describes: its nodes (reached
    /// over SSH at their addresses, with the topology's `ssh:` settings),
    /// the kubeconfig (kube's inference unless given) and the etcd client
    /// certificates the observer uses. Nothing is contacted yet.
    pub fn from_topology(
        topology: &Topology,
        opts: &ControlPlaneOptions,
    ) -> Result<KubeadmControlPlane, CpError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CpError::Config(format!("cannot start the async runtime: {e}")))?;
        let (kube, cluster_ca) = rt.block_on(async {
            let config =
                crate::kube_config_in(opts.kubeconfig.as_deref(), opts.kube_context.as_deref())
                    .await
                    .map_err(|e| CpError::Config(e.chain()))?;
            let ca = config.root_cert.clone().unwrap_or_default();
            let client = crate::client_for(config).map_err(|e| {
                CpError::Config(format!(
                    "Kubernetes client: {}",
                    crate::observe::describe(&e)
                ))
            })?;
            Ok::<_, CpError>((client, ca))
        })?;
        let tls = opts.etcd_tls.resolve(topology);
        let etcd_tls = TlsOptions::new()
            .ca_certificate(Certificate::from_pem(read_tls_file(&tls.ca)?))
            .identity(Identity::from_pem(
                read_tls_file(&tls.cert)?,
                read_tls_file(&tls.key)?,
            ));
        let observer_like = crate::ObserverConfig {
            etcd_endpoints: opts.etcd_endpoints.clone(),
            ..Default::default()
        };
        let etcd_endpoints = observer_like.etcd_endpoints(topology);
        if let Some(p) = &opts.primary
            && topology.node(p).is_none_or(|n| !n.is_control_plane())
        {
            return Err(CpError::Config(format!(
                "primary master `{p}` is not a control-plane node of the topology"
            )));
        }
        Ok(KubeadmControlPlane {
            rt,
            topology: topology.clone(),
            opts: opts.clone(),
            kube,
            cluster_ca,
            etcd_tls,
            etcd_endpoints,
            ssh_base: ssh_base(topology, opts),
            sessions: Mutex::new(BTreeMap::new()),
            key: Arc::new(Mutex::new(None)),
            disrupt_memory: Mutex::new(disrupt::Memory::default()),
        })
    }

    /// The topology.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The options.
    pub fn options(&self) -> &ControlPlaneOptions {
        &self.opts
    }

    /// The Kubernetes client.
    pub fn client(&self) -> &kube::Client {
        &self.kube
    }

    /// Run a future on the backend's runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// When the certificate key held in memory was issued (the key itself
    /// is never handed out).
    pub fn key_issued(&self) -> Option<jiff::Timestamp> {
        self.key
            .lock()
            .ok()
            .and_then(|k| k.as_ref().map(|k| k.issued))
    }

    /// Forget the certificate key (as a crash does).
    pub fn forget_key(&self) {
        if let Ok(mut k) = self.key.lock() {
            *k = None;
        }
    }

    fn until(&self) -> Instant {
        Instant::now() + self.opts.timeout
    }

    pub(crate) fn node_address(&self, node: &str) -> Result<IpAddr, CpError> {
        self.topology
            .node(node)
            .map(|n| n.address)
            .ok_or_else(|| CpError::Config(format!("node `{node}` is not in the topology")))
    }

    pub(crate) fn apiserver_port(&self) -> u16 {
        self.opts
            .apiserver_port
            .unwrap_or(self.topology.control_plane_endpoint.port)
    }

    pub(crate) fn notice(&self, msg: &str) {
        self.opts.notice.say(msg);
    }

    async fn is_done_async(&self, op: &CpOp) -> Result<bool, CpError> {
        match op {
            CpOp::AddressesFree { addresses } => self.addresses_free(addresses).await,
            CpOp::EtcdSnapshot { node } => self.snapshot_is_done(node),
            CpOp::SetControlPlaneEndpoint { endpoint, sans } => {
                self.endpoint_is_set(endpoint, sans).await
            }
            CpOp::RestoreClusterConfiguration => self.cluster_configuration_restored().await,
            CpOp::RenewApiserverCert { node, sans } => self.cert_is_renewed(node, sans).await,
            CpOp::RestoreApiserverCert { node } => self.cert_is_restored(node).await,
            CpOp::UploadCerts => self.key_is_fresh().await,
            CpOp::JoinControlPlane { node, address } => self.is_joined(node, *address).await,
            CpOp::MemberPromoted { node } => self.wait_check(|| self.member_is_voter(node)).await,
            CpOp::EnsureControlPlaneTaint { node } => self.has_control_plane_taint(node).await,
            CpOp::ResetNode { node } => self.is_reset(node).await,
            CpOp::SetKubeletServer { node, server } => {
                self.kubeconfig_server_is(node, ssh_ops::KUBELET_CONF, server)
                    .await
            }
            CpOp::SetAdminConf { node, server } => self.admin_conf_is(node, server).await,
            CpOp::SetKubeProxyServer { server } => self.kube_proxy_server_is(server).await,
            CpOp::SetClusterInfoServer { server } => self.cluster_info_server_is(server).await,
            CpOp::ExternalKubeconfig { .. } => Ok(false),
            CpOp::VerifyNodes { nodes } => self.wait_check(|| self.nodes_ready(nodes)).await,
            CpOp::VerifyEtcd { members } => self.wait_check(|| self.members_healthy(members)).await,
            CpOp::VerifySans { nodes, sans } => {
                self.wait_check(|| self.sans_on_all(nodes, sans)).await
            }
            CpOp::VerifyKubeconfigs { nodes, server } => {
                self.wait_check(|| self.kubeconfigs_name(nodes, server))
                    .await
            }
            CpOp::CheckVersions { node, like } => self.check_versions(node, like).await,
            CpOp::SyncApiserverExtras { from, node } => self.extras_synced(from, node).await,
            CpOp::ProbeApiserver {
                node,
                address,
                port,
            } => self.probe_apiserver(node, *address, *port).await,
            CpOp::ProbeVip {
                name,
                address,
                port,
            } => self.probe_vip(name.as_deref(), *address, *port).await,
            // Run by the drill (`haops::drill`) around this backend: never
            // done by itself, so a resumed run drills again.
            CpOp::DrillPlannedReboot { .. } => Ok(false),
            CpOp::VerifyStaticPods { node } => {
                self.wait_check(|| async { Ok(self.static_pods_missing(node).await?.is_empty()) })
                    .await
            }
            CpOp::VerifyNotJoined { node } => self.verify_not_joined(node).await,
            CpOp::PinnedWorkloads { node } => Ok(self.pinned_workloads(node).await?.is_empty()),
            // Disruptions (issue 14): control_plane/disrupt.rs.
            CpOp::MoveLeader { .. }
            | CpOp::Cordon { .. }
            | CpOp::Uncordon { .. }
            | CpOp::Drain { .. }
            | CpOp::Reboot { .. }
            | CpOp::Upgrade { .. }
            | CpOp::RunCommand { .. }
            | CpOp::WaitHealthy { .. }
            | CpOp::RemoveMember { .. }
            | CpOp::DeleteNode { .. } => self.disrupt_is_done(op).await,
        }
    }

    async fn apply_async(&self, op: &CpOp) -> Result<(), CpError> {
        match op {
            CpOp::EtcdSnapshot { node } => self.take_snapshot(node).await,
            CpOp::SetControlPlaneEndpoint { endpoint, sans } => {
                self.set_endpoint(endpoint, sans).await
            }
            CpOp::RestoreClusterConfiguration => self.restore_cluster_configuration().await,
            CpOp::RenewApiserverCert { node, sans } => self.renew_cert(node, sans).await,
            CpOp::RestoreApiserverCert { node } => self.restore_cert(node).await,
            CpOp::UploadCerts => self.upload_certs().await.map(|_| ()),
            CpOp::JoinControlPlane { node, address } => self.join(node, *address).await,
            CpOp::EnsureControlPlaneTaint { node } => self.add_control_plane_taint(node).await,
            CpOp::ResetNode { node } => self.reset(node).await,
            CpOp::SetKubeletServer { node, server } => self.set_kubelet_server(node, server).await,
            CpOp::SetAdminConf { node, server } => self.set_admin_conf(node, server).await,
            CpOp::SetKubeProxyServer { server } => self.set_kube_proxy_server(server).await,
            CpOp::SetClusterInfoServer { server } => self.set_cluster_info_server(server).await,
            CpOp::ExternalKubeconfig {
                name,
                location,
                server,
            } => Err(CpError::Refused(format!(
                "kubeconfig `{name}` at {location} is outside hacli's reach: a person points it at {server} and confirms the step"
            ))),
            CpOp::SyncApiserverExtras { from, node } => self.sync_extras(from, node).await,
            CpOp::PinnedWorkloads { node } => {
                let pinned = self.pinned_workloads(node).await?;
                if pinned.is_empty() {
                    Ok(())
                } else {
                    Err(CpError::Refused(format!(
                        "pinned to {node} by hostname: {}: re-pin them to another master, then confirm the step",
                        pinned.join(", ")
                    )))
                }
            }
            // Disruptions (issue 14): control_plane/disrupt.rs.
            CpOp::MoveLeader { .. }
            | CpOp::Cordon { .. }
            | CpOp::Uncordon { .. }
            | CpOp::Drain { .. }
            | CpOp::Reboot { .. }
            | CpOp::Upgrade { .. }
            | CpOp::RunCommand { .. }
            | CpOp::WaitHealthy { .. }
            | CpOp::RemoveMember { .. }
            | CpOp::DeleteNode { .. } => self.disrupt_apply(op).await,
            CpOp::DrillPlannedReboot { node } => Err(CpError::Refused(format!(
                "the planned reboot drill of {node} is run by `hacli apply` (traffic through the VIP), not by the control-plane backend alone"
            ))),
            // Checks: the executor verifies them with `is_done`; applying
            // one waits for it.
            CpOp::CheckVersions { .. }
            | CpOp::ProbeApiserver { .. }
            | CpOp::ProbeVip { .. }
            | CpOp::VerifyStaticPods { .. }
            | CpOp::VerifyNotJoined { .. }
            | CpOp::AddressesFree { .. }
            | CpOp::MemberPromoted { .. }
            | CpOp::VerifyNodes { .. }
            | CpOp::VerifyEtcd { .. }
            | CpOp::VerifySans { .. }
            | CpOp::VerifyKubeconfigs { .. } => {
                if self.is_done_async(op).await? {
                    Ok(())
                } else {
                    Err(CpError::Refused(format!(
                        "check `{}` does not hold",
                        Op::ControlPlane(op.clone())
                    )))
                }
            }
        }
    }

    /// Poll `check` until it holds or [`ControlPlaneOptions::check_wait`]
    /// passes (then false). Errors end the wait at once only when they are
    /// not transient (configuration, refusal).
    pub(crate) async fn wait_check<'a, F, Fut>(&'a self, check: F) -> Result<bool, CpError>
    where
        F: Fn() -> Fut + 'a,
        Fut: std::future::Future<Output = Result<bool, CpError>> + 'a,
    {
        let until = Instant::now() + self.opts.check_wait;
        loop {
            match check().await {
                Ok(true) => return Ok(true),
                Err(e @ (CpError::Config(_) | CpError::Refused(_))) => return Err(e),
                Ok(false) | Err(_) if Instant::now() + Duration::from_millis(500) < until => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Ok(false) => return Ok(false),
                Err(e) => return Err(e),
            }
        }
    }
}

fn what(op: &CpOp) -> String {
    Op::ControlPlane(op.clone()).to_string()
}

impl ControlPlane for KubeadmControlPlane {
    fn is_done(&mut self, op: &CpOp) -> Result<bool, BackendError> {
        self.rt
            .block_on(self.is_done_async(op))
            .map_err(|e| e.into_backend(&what(op)))
    }

    fn apply(&mut self, op: &CpOp) -> Result<(), BackendError> {
        self.rt
            .block_on(self.apply_async(op))
            .map_err(|e| e.into_backend(&what(op)))
    }

    fn boot_id(&mut self, node: &str) -> Result<Option<String>, BackendError> {
        self.rt
            .block_on(self.node_boot_id(node))
            .map(Some)
            .map_err(|e| e.into_backend(&format!("read {node}'s boot id")))
    }

    fn await_reboot(&mut self, node: &str, before: &str) -> Result<(), BackendError> {
        self.rt
            .block_on(self.await_reboot_of(node, before))
            .map_err(|e| e.into_backend(&format!("wait for {node}'s reboot")))
    }
}
