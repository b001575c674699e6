//! The local lab for hacli's integration tests and benchmarks, on loopback
//! only: a real 3-member etcd cluster with TLS (certificates generated at run
//! time in kubeadm's layout) whose members can be stopped, paused (SIGSTOP),
//! resumed and restarted, a Kubernetes API stand-in that `kubectl` and
//! `kube` clients accept on every master's address, and a real HAProxy on
//! the endpoint (the VIP) balancing over them with HTTPS `/readyz` checks,
//! its runtime API on a Unix socket and on TCP. Each lab gets its own `127.X.Y.0/24` so labs in
//! parallel tests never collide; everything is torn down on drop, and the
//! etcd members also die with the thread that started the lab (so use a lab
//! on the thread that created it). [`host`] adds lab hosts: separate
//! machines in network, mount and PID namespaces on `198.18.0.0/15`.
//!
//! ```no_run
//! let Some(mut lab) = testlab::Lab::start_or_skip("my_test") else { return };
//! let leader = lab.etcd_leader().unwrap();
//! lab.stop_member(&leader);
//! ```
#![warn(missing_docs)]

pub mod alertmanager;
pub mod apiserver;
pub mod cluster;
pub mod etcd;
pub mod etcd_load;
pub mod haproxy;
pub mod host;
pub mod lblab;
pub mod load;
pub mod pfsense;
pub mod pki;
pub mod prometheus;
pub mod proxmox;
pub mod skip;
pub mod sshd;
pub mod targets;

use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

pub use apiserver::{ApiError, ApiServer, Counted, RequestKey, Store};
pub use etcd::{EtcdCluster, MemberRun, MemberSpec};
pub use haproxy::{Haproxy, HaproxySpec};

/// Why the lab could not start.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The etcd binary is not installed.
    #[error("`etcd` is not on PATH: install the Debian package etcd-server (scripts/test.sh does)")]
    EtcdMissing,
    /// The haproxy binary is not installed.
    #[error("`haproxy` is not on PATH: install the Debian package haproxy (scripts/test.sh does)")]
    HaproxyMissing,
    /// HAProxy did not start, or its servers did not come UP.
    #[error("haproxy: {0}")]
    Haproxy(String),
    /// A file or process operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Binding a listener failed.
    #[error("cannot listen on {0}: {1}")]
    Bind(String, #[source] std::io::Error),
    /// Certificate generation failed.
    #[error("certificates: {0}")]
    Pki(String),
    /// etcd did not become healthy.
    #[error("etcd members {members} did not become healthy; last log lines:\n{log_tail}")]
    EtcdNotHealthy {
        /// Members still unhealthy.
        members: String,
        /// Tail of their logs.
        log_tail: String,
    },
    /// An etcd API call the lab made failed.
    #[error("etcd: {0}")]
    Etcd(String),
    /// The API stand-in refused a seed object.
    #[error("seeding the API stand-in: {0}")]
    Seed(ApiError),
}

impl LabError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        LabError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The running lab.
pub struct Lab {
    // Field order matters for drop: processes and servers before the dir.
    haproxy: Haproxy,
    etcd: EtcdCluster,
    api: ApiServer,
    rt: Option<tokio::runtime::Runtime>,
    /// `127.X.Y.1`: the control-plane endpoint (the "VIP").
    pub endpoint: IpAddr,
    /// The masters: (node name, address).
    pub masters: Vec<(String, IpAddr)>,
    /// The workers: (node name, address).
    pub workers: Vec<(String, IpAddr)>,
    /// kubeconfig for `kubectl` and `kube` (server = the endpoint, that is
    /// through HAProxy).
    pub kubeconfig: PathBuf,
    /// A topology file for this lab (hacore format).
    pub topology: PathBuf,
    /// `pki/etcd` in kubeadm's layout.
    pub etcd_pki: PathBuf,
    /// `pki` (Kubernetes CA, apiserver pair).
    pub pki: PathBuf,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lab")
            .field("endpoint", &self.endpoint)
            .field("masters", &self.masters)
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

static LABS: AtomicU32 = AtomicU32::new(0);

/// A command that runs `bin` and dies with the thread that started it, even
/// when the lab's process is killed before its Drop runs: `setpriv
/// --pdeathsig KILL` (util-linux, always on Debian) execs `bin`, so the
/// child's pid stays the server's (pause and resume hit it).
fn dies_with_parent(bin: &Path) -> std::process::Command {
    let setpriv = Path::new("/usr/bin/setpriv");
    if setpriv.is_file() {
        let mut c = std::process::Command::new(setpriv);
        c.args(["--pdeathsig", "KILL"]).arg(bin);
        c
    } else {
        std::process::Command::new(bin)
    }
}

fn free_port(ip: IpAddr) -> Result<u16, LabError> {
    let l = std::net::TcpListener::bind(SocketAddr::new(ip, 0))
        .map_err(|e| LabError::Bind(ip.to_string(), e))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| LabError::Bind(ip.to_string(), e))
}

fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_ok();
    assert!(ok, "cannot read /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// When a Ready condition turned true in the seed: two days ago, so the
/// 24 h soak of the `reboot` policy has passed.
fn two_days_ago() -> String {
    (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(48))
        .round(jiff::Unit::Second)
        .unwrap_or_default()
        .to_string()
}

impl Lab {
    /// Start the lab, or [`skip::skip`] (a failure under
    /// `HACLI_REQUIRE_LABS=1`) and return None when etcd or haproxy is not
    /// installed. Any other failure panics: a lab that should run but
    /// cannot is a failure, not a skip.
    pub fn start_or_skip(test: &str) -> Option<Lab> {
        match Lab::start() {
            Ok(lab) => Some(lab),
            Err(e @ (LabError::EtcdMissing | LabError::HaproxyMissing)) => {
                skip::skip(test, &e.to_string());
                None
            }
            Err(e) => panic!("{test}: the lab did not start: {e}"),
        }
    }

    /// Start a 3-master, 1-worker lab with a healthy cluster seeded.
    pub fn start() -> Result<Lab, LabError> {
        if etcd::etcd_binary().is_none() {
            return Err(LabError::EtcdMissing);
        }
        if haproxy::haproxy_binary().is_none() {
            return Err(LabError::HaproxyMissing);
        }
        let n = LABS.fetch_add(1, Ordering::SeqCst);
        let x = 20 + (std::process::id() % 200) as u8;
        let y = 1 + (n % 250) as u8;
        let ip = |z: u8| IpAddr::V4(Ipv4Addr::new(127, x, y, z));
        let endpoint = ip(1);
        let masters: Vec<(String, IpAddr)> =
            (1..=3).map(|i| (format!("m{i}"), ip(10 + i))).collect();
        let workers = vec![("w1".to_string(), ip(21))];

        let dir = tempfile::Builder::new()
            .prefix("hacli-lab-")
            .tempdir()
            .map_err(|e| LabError::io(Path::new("/tmp"), e))?;
        let master_ips: Vec<IpAddr> = masters.iter().map(|m| m.1).collect();
        let mut api_ips = vec![endpoint];
        api_ips.extend(&master_ips);
        let pki = pki::Pki::generate(dir.path(), &master_ips, &api_ips)?;

        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("testlab")
            .enable_all()
            .build()
            .map_err(|e| LabError::io(Path::new("tokio runtime"), e))?;

        let mut specs = Vec::new();
        for (name, ip) in &masters {
            specs.push(MemberSpec {
                name: name.clone(),
                ip: *ip,
                client_port: free_port(*ip)?,
                peer_port: free_port(*ip)?,
            });
        }
        let etcd = EtcdCluster::start(
            specs,
            dir.path(),
            &pki.etcd_dir,
            &rt,
            Duration::from_secs(30),
        )?;

        let token = random_hex(24);
        // The stand-in serves on the masters; HAProxy owns the endpoint on
        // the same port (the certificate names the endpoint too, as
        // kubeadm's does with the controlPlaneEndpoint).
        let api = ApiServer::start(&rt, &master_ips, &pki.apiserver, &token, Store::default())?;
        let frontend = SocketAddr::new(endpoint, api.port);
        if !haproxy::bindable(frontend) {
            return Err(LabError::Bind(
                frontend.to_string(),
                std::io::Error::from(std::io::ErrorKind::AddrInUse),
            ));
        }
        let lb = HaproxySpec {
            frontend,
            servers: masters
                .iter()
                .map(|(n, ip)| (n.clone(), SocketAddr::new(*ip, api.port)))
                .collect(),
            ca_file: pki.dir.join("ca.crt"),
            runtime_tcp: SocketAddr::new(endpoint, free_port(endpoint)?),
        };
        let haproxy = Haproxy::start(&lb, dir.path(), Duration::from_secs(30))?;

        let kubeconfig = dir.path().join("admin.conf");
        let ca_path = pki.dir.join("ca.crt");
        let kc = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster:\n    server: https://{}\n    certificate-authority: {}\ncontexts:\n- name: lab\n  context:\n    cluster: lab\n    user: admin\n    namespace: default\ncurrent-context: lab\nusers:\n- name: admin\n  user:\n    token: {token}\n",
            SocketAddr::new(endpoint, api.port),
            ca_path.display()
        );
        std::fs::write(&kubeconfig, kc).map_err(|e| LabError::io(&kubeconfig, e))?;

        let topology = dir.path().join("topology.yaml");
        let mut t = format!(
            "# Written by testlab: masters with stacked etcd on loopback behind a\n# real HAProxy on the endpoint (the VIP), observed through its runtime API.\ncluster: lab\ncontrolPlaneEndpoint: {{ address: {endpoint}, port: {port} }}\netcd:\n  mode: stacked\n  learnerJoins: true\n  endpoints: [{endpoints}]\n  pki: {pki}\nloadBalancer:\n  kind: haproxy\n  frontend: \"{endpoint}:{port}\"\n  pool: {pool}\n  healthCheck: {{ type: https, path: /readyz, interval: 200ms, fall: 2, rise: 1 }}\n  runtimeApi: unix:{socket}\nnodes:\n",
            port = api.port,
            pool = haproxy::POOL,
            socket = haproxy.socket().display(),
            endpoints = etcd.client_urls().join(", "),
            pki = pki.etcd_dir.display(),
        );
        for (name, ip) in &masters {
            t.push_str(&format!(
                "  - {{ name: {name}, role: control-plane, address: {ip} }}\n"
            ));
        }
        for (name, ip) in &workers {
            t.push_str(&format!(
                "  - {{ name: {name}, role: worker, address: {ip} }}\n"
            ));
        }
        std::fs::write(&topology, t).map_err(|e| LabError::io(&topology, e))?;

        let lab = Lab {
            haproxy,
            etcd,
            api,
            rt: Some(rt),
            endpoint,
            masters,
            workers,
            kubeconfig,
            topology,
            etcd_pki: pki.etcd_dir.clone(),
            pki: pki.dir.clone(),
            dir,
        };
        lab.seed()?;
        Ok(lab)
    }

    fn seed(&self) -> Result<(), LabError> {
        let s = &self.api.store;
        let put = |v: Value| s.put(v).map(|_| ()).map_err(LabError::Seed);
        for ns in ["default", "kube-system", "kube-public"] {
            put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))?;
        }
        put(json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "calico-node", "namespace": "kube-system", "labels": {"k8s-app": "calico-node"}},
            "spec": {
                "selector": {"matchLabels": {"k8s-app": "calico-node"}},
                "template": {"metadata": {"labels": {"k8s-app": "calico-node"}},
                             "spec": {"containers": [{"name": "calico-node", "image": "calico/node:v3.29.0"}]}}
            }
        }))?;
        let all: Vec<(String, IpAddr, bool)> = self
            .masters
            .iter()
            .map(|(n, ip)| (n.clone(), *ip, true))
            .chain(self.workers.iter().map(|(n, ip)| (n.clone(), *ip, false)))
            .collect();
        for (name, ip, master) in &all {
            self.set_node(name, *ip, *master, true)?;
            self.set_daemon_pod("calico-node", name, true)?;
        }
        Ok(())
    }

    /// Create or replace node `name` with its Ready condition.
    pub fn set_node(
        &self,
        name: &str,
        ip: IpAddr,
        master: bool,
        ready: bool,
    ) -> Result<(), LabError> {
        let mut labels = json!({"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"});
        let mut taints = json!([]);
        if master {
            labels["node-role.kubernetes.io/control-plane"] = json!("");
            taints =
                json!([{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]);
        }
        let since = two_days_ago();
        self.api
            .store
            .put(json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": labels},
                "spec": {"taints": taints},
                "status": {
                    "addresses": [{"type": "InternalIP", "address": ip.to_string()}, {"type": "Hostname", "address": name}],
                    "conditions": [{
                        "type": "Ready", "status": if ready { "True" } else { "False" },
                        "reason": if ready { "KubeletReady" } else { "KubeletNotReady" },
                        "lastHeartbeatTime": since, "lastTransitionTime": since,
                    }],
                    "nodeInfo": {"kubeletVersion": "v1.32.0", "architecture": "amd64", "bootID": "", "containerRuntimeVersion": "containerd://1.7", "kernelVersion": "6.1", "kubeProxyVersion": "v1.32.0", "machineID": "", "operatingSystem": "linux", "osImage": "Debian GNU/Linux 12", "systemUUID": ""}
                }
            }))
            .map(|_| ())
            .map_err(LabError::Seed)
    }

    /// Create or replace the pod of DaemonSet `ds` (kube-system) on `node`.
    pub fn set_daemon_pod(&self, ds: &str, node: &str, running: bool) -> Result<(), LabError> {
        self.api
            .store
            .put(json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {
                    "name": format!("{ds}-{node}"), "namespace": "kube-system",
                    "labels": {"k8s-app": ds},
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": ds, "uid": "00000000-0000-4000-8000-00000000d5d5", "controller": true}]
                },
                "spec": {"nodeName": node, "containers": [{"name": ds, "image": "calico/node:v3.29.0"}]},
                "status": {"phase": if running { "Running" } else { "Pending" }}
            }))
            .map(|_| ())
            .map_err(LabError::Seed)
    }

    /// The API stand-in's store: seed or change objects directly.
    pub fn store(&self) -> &Store {
        &self.api.store
    }

    /// The API stand-in's port (the same on the endpoint and every master).
    pub fn api_port(&self) -> u16 {
        self.api.port
    }

    /// `https://endpoint:port`.
    pub fn api_url(&self) -> String {
        format!("https://{}", SocketAddr::new(self.endpoint, self.api.port))
    }

    /// The etcd members' client URLs, in master order.
    pub fn etcd_endpoints(&self) -> Vec<String> {
        self.etcd.client_urls()
    }

    /// The etcd members' facts.
    pub fn etcd_members(&self) -> Vec<MemberSpec> {
        self.etcd.specs()
    }

    fn rt(&self) -> &tokio::runtime::Runtime {
        self.rt.as_ref().expect("runtime lives until drop")
    }

    fn member(&self, name: &str) -> usize {
        self.etcd
            .index(name)
            .unwrap_or_else(|| panic!("the lab has no etcd member `{name}`"))
    }

    /// The process id of etcd member `name` (for `strace -p`), while it
    /// runs.
    pub fn etcd_pid(&self, name: &str) -> Option<u32> {
        self.etcd.pid(self.member(name))
    }

    /// The member that says it is the raft leader now.
    pub fn etcd_leader(&self) -> Option<String> {
        let specs = self.etcd.specs();
        (0..specs.len())
            .find(|&i| {
                self.etcd
                    .member_is_leader(self.rt(), i, Duration::from_millis(500))
            })
            .map(|i| specs[i].name.clone())
    }

    /// Stop member `name`.
    pub fn stop_member(&mut self, name: &str) {
        let i = self.member(name);
        self.etcd.stop(i);
    }

    /// SIGSTOP member `name`.
    pub fn pause_member(&mut self, name: &str) {
        let i = self.member(name);
        self.etcd.pause(i);
    }

    /// SIGCONT member `name`.
    pub fn resume_member(&mut self, name: &str) {
        let i = self.member(name);
        self.etcd.resume(i);
    }

    /// Restart member `name` and wait until the cluster is healthy again.
    pub fn restart_member(&mut self, name: &str) -> Result<(), LabError> {
        let i = self.member(name);
        self.etcd.restart(i)?;
        let rt = self.rt.take().expect("runtime");
        let r = self.etcd.wait_healthy(&rt, Duration::from_secs(30));
        self.rt = Some(rt);
        r
    }

    /// What member `name` is doing.
    pub fn member_state(&mut self, name: &str) -> MemberRun {
        let i = self.member(name);
        self.etcd.run_state(i)
    }

    /// Raise etcd's `NOSPACE` alarm for member `name` through the Alarm
    /// API: the raft proposal a member makes itself when its database
    /// reaches its quota. The cluster then refuses writes until disarmed.
    pub fn raise_nospace_alarm(&self, name: &str) -> Result<(), LabError> {
        let i = self.member(name);
        self.etcd.raise_nospace_alarm(self.rt(), i)
    }

    /// Disarm every etcd alarm (`etcdctl alarm disarm`).
    pub fn disarm_alarms(&self) -> Result<(), LabError> {
        self.etcd.disarm_alarms(self.rt())
    }

    /// Wait until some member is leader (after a stop or restart).
    pub fn wait_leader(&self, timeout: Duration) -> Option<String> {
        let until = std::time::Instant::now() + timeout;
        loop {
            if let Some(l) = self.etcd_leader() {
                return Some(l);
            }
            if std::time::Instant::now() > until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The lab's directory (logs, pki, kubeconfig).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The HAProxy backend pool holding one server per master (named after
    /// the node).
    pub fn lb_pool(&self) -> &'static str {
        haproxy::POOL
    }

    /// HAProxy's runtime API on its Unix socket (`level admin`), as the
    /// lab's topology names it.
    pub fn lb_socket(&self) -> &Path {
        self.haproxy.socket()
    }

    /// HAProxy's runtime API on TCP, on the endpoint (`level admin`).
    pub fn lb_tcp(&self) -> SocketAddr {
        self.haproxy.tcp()
    }

    /// The runtime API as the topology's `loadBalancer.runtimeApi` writes
    /// it: `unix:/path/haproxy.sock`.
    pub fn lb_runtime_api(&self) -> String {
        format!("unix:{}", self.haproxy.socket().display())
    }

    /// Send one runtime-API command (e.g. `set server k8s-apiserver/m1
    /// state maint`); HAProxy's answer.
    pub fn lb_command(&self, command: &str) -> Result<String, LabError> {
        self.haproxy.command(command)
    }

    /// (server, status) of the pool's servers, as `show stat` prints them.
    pub fn lb_statuses(&self) -> Result<Vec<(String, String)>, LabError> {
        self.haproxy.statuses()
    }

    /// Wait until each of `servers` has `show stat` status `status` (`UP`,
    /// `DOWN`, `MAINT`, `DRAIN`), up to `timeout`.
    pub fn wait_lb(
        &mut self,
        servers: &[&str],
        status: &str,
        timeout: Duration,
    ) -> Result<(), LabError> {
        self.haproxy.wait_status(servers, status, timeout)
    }

    /// SIGSTOP HAProxy: the VIP and its runtime API accept connections and
    /// never answer.
    pub fn pause_lb(&mut self) {
        self.haproxy.pause();
    }

    /// SIGCONT HAProxy.
    pub fn resume_lb(&mut self) {
        self.haproxy.resume();
    }

    /// Make master `name`'s `/readyz` fail (or pass again) and wait, up to
    /// 10 s, until HAProxy's checks mark its server DOWN (or UP), so that
    /// what follows sees the load balancer agree. A server in MAINT or
    /// DRAIN does not reach UP: use [`Lab::lb_command`] for those.
    pub fn set_apiserver_ready(&mut self, name: &str, ready: bool) -> Result<(), LabError> {
        let ip = self
            .masters
            .iter()
            .find(|m| m.0 == name)
            .unwrap_or_else(|| panic!("the lab has no master `{name}`"))
            .1;
        self.api.store.set_ready(ip, ready);
        let want = if ready { "UP" } else { "DOWN" };
        self.haproxy
            .wait_status(&[name], want, Duration::from_secs(10))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
        // EtcdCluster's own Drop kills the members; the TempDir goes last.
    }
}
