//! A Proxmox VE API stand-in: HTTPS on loopback with a lab certificate
//! (its CA file and SHA-256 fingerprint are exposed), every endpoint of
//! `data/pve-api-schema.json`, every request checked against the schema as
//! Proxmox checks it (400 `Parameter verification failed.` with an `errors`
//! map), answers shaped as the schema's `returns`, other errors with their
//! text in the reason phrase and in `message`, API-token authentication.
//!
//! State: nodes with physical memory and CPUs; VMs with id, name, node,
//! status, config (cores, memory, disks, cloud-init keys), template flag,
//! lock and snapshots; tasks with UPIDs that take [`PveOptions::task_time`].
//! A clone exists at once with `lock: clone` until its task ends; a VM is
//! not deleted while it runs; a task can be made to fail on demand
//! ([`ProxmoxLab::set_next_exit`]).
//!
//! ```no_run
//! let lab = testlab::proxmox::ProxmoxLab::start(testlab::proxmox::Inventory::realistic()).unwrap();
//! println!("{} {}", lab.endpoint(), lab.fingerprint_hex());
//! ```

mod ha;
pub mod schema;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};

use crate::LabError;
use schema::{RouteError, check_params, schema};

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;

/// A node of the cluster.
#[derive(Debug, Clone)]
pub struct PveNode {
    /// Node name.
    pub name: String,
    /// Physical memory, bytes.
    pub memory: u64,
    /// Logical CPUs.
    pub cpus: u32,
}

/// A VM to seed.
#[derive(Debug, Clone)]
pub struct PveVm {
    /// VM id.
    pub vmid: u32,
    /// Name.
    pub name: String,
    /// Node.
    pub node: String,
    /// Running.
    pub running: bool,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// Cores (one socket).
    pub cores: u32,
    /// A template.
    pub template: bool,
    /// Boot disk (`scsi0`), GiB.
    pub disk_gib: u64,
    /// Further config keys (e.g. `ipconfig0`, `agent`).
    pub config: BTreeMap<String, String>,
}

impl PveVm {
    /// A VM with a 32 GiB scsi0 disk, a cloud-init drive and one NIC.
    pub fn new(
        vmid: u32,
        name: &str,
        node: &str,
        running: bool,
        memory_gib: u64,
        cores: u32,
    ) -> PveVm {
        PveVm {
            vmid,
            name: name.to_string(),
            node: node.to_string(),
            running,
            memory_mib: memory_gib * 1024,
            cores,
            template: false,
            disk_gib: 32,
            config: BTreeMap::new(),
        }
    }
}

/// Nodes and VMs to seed the stand-in with.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    /// Nodes.
    pub nodes: Vec<PveNode>,
    /// VMs.
    pub vms: Vec<PveVm>,
}

impl Inventory {
    /// A home lab like the one in `examples/topology/ha.yaml`, as it really
    /// is: host `pve` (256 GiB, 64 CPUs) almost fully committed (200 GiB in
    /// running VMs, 24 GiB more in a stopped one); VM 205, which the HA
    /// topology wants for `k8s-master-2`, already taken by `old-gitlab`
    /// (stopped, not in the topology); template 9000
    /// `debian-12-cloudinit`; a second host `pve2` (64 GiB, 16 CPUs).
    pub fn realistic() -> Inventory {
        let mut vms = vec![
            PveVm::new(200, "k8s-master", "pve", true, 32, 8),
            PveVm::new(201, "k8s-node1", "pve", true, 16, 8),
            PveVm::new(202, "k8s-node2", "pve", true, 16, 8),
            PveVm::new(203, "k8s-node3", "pve", true, 16, 8),
            PveVm::new(204, "k8s-node4", "pve", true, 16, 8),
            PveVm::new(205, "old-gitlab", "pve", false, 24, 4),
            PveVm::new(210, "truenas", "pve", true, 64, 8),
            PveVm::new(211, "home-assistant", "pve", true, 8, 2),
            PveVm::new(212, "plex", "pve", true, 32, 8),
            PveVm::new(300, "pbs", "pve2", true, 8, 2),
        ];
        let mut template = PveVm::new(9000, "debian-12-cloudinit", "pve", false, 2, 2);
        template.template = true;
        template.disk_gib = 8;
        vms.push(template);
        Inventory {
            nodes: vec![
                PveNode {
                    name: "pve".into(),
                    memory: 256 * GIB,
                    cpus: 64,
                },
                PveNode {
                    name: "pve2".into(),
                    memory: 64 * GIB,
                    cpus: 16,
                },
            ],
            vms,
        }
    }
}

/// How the stand-in behaves.
#[derive(Debug, Clone)]
pub struct PveOptions {
    /// Token id (`user@realm!tokenid`).
    pub token_id: String,
    /// Token secret.
    pub token_secret: String,
    /// How long a task runs.
    pub task_time: Duration,
    /// How long a new task is not yet visible (its status answers 400).
    pub task_invisible: Duration,
}

impl Default for PveOptions {
    fn default() -> Self {
        PveOptions {
            token_id: "root@pam!hacli".into(),
            token_secret: "6c9ed5f0-1c3e-4a8b-9d51-2f7f0e3a4b1c".into(),
            task_time: Duration::from_millis(300),
            task_invisible: Duration::ZERO,
        }
    }
}

/// One call the stand-in answered.
#[derive(Debug, Clone)]
pub struct Call {
    /// HTTP method.
    pub method: String,
    /// The schema path it matched (or the raw path).
    pub template: String,
    /// HTTP status.
    pub status: u16,
    /// `data` of a 2xx answer.
    pub data: Value,
}

#[derive(Debug, Clone)]
struct Vm {
    node: String,
    running: bool,
    lock: Option<String>,
    config: BTreeMap<String, String>,
    snapshots: Vec<(String, i64)>,
    started: Option<Instant>,
}

impl Vm {
    fn name(&self) -> Option<&str> {
        self.config.get("name").map(String::as_str)
    }
    fn template(&self) -> bool {
        self.config.get("template").is_some_and(|t| t == "1")
    }
    fn memory_mib(&self) -> u64 {
        self.config
            .get("memory")
            .and_then(|m| {
                m.trim_start_matches("current=")
                    .split(',')
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap_or(512)
    }
    fn cpus(&self) -> u64 {
        let c: u64 = self
            .config
            .get("cores")
            .and_then(|c| c.parse().ok())
            .unwrap_or(1);
        let s: u64 = self
            .config
            .get("sockets")
            .and_then(|c| c.parse().ok())
            .unwrap_or(1);
        c * s
    }
    fn maxdisk(&self) -> u64 {
        ["scsi0", "virtio0", "sata0", "ide0"]
            .iter()
            .find_map(|d| disk_bytes(self.config.get(*d)?))
            .unwrap_or(0)
    }
    fn status(&self) -> &'static str {
        if self.running { "running" } else { "stopped" }
    }
}

/// `scsi0`, `virtio1`, `sata2`, `ide3`... (not `scsihw`).
fn is_disk_key(k: &str) -> bool {
    let base = k.trim_end_matches(|c: char| c.is_ascii_digit());
    base.len() < k.len() && matches!(base, "scsi" | "virtio" | "sata" | "ide")
}

fn disk_bytes(entry: &str) -> Option<u64> {
    let size = entry.split(',').find_map(|kv| kv.strip_prefix("size="))?;
    parse_size(size)
}

fn parse_size(size: &str) -> Option<u64> {
    let at = size
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(size.len());
    let n: f64 = size[..at].parse().ok()?;
    let m = match &size[at..] {
        "" => 1,
        "K" => 1 << 10,
        "M" => MIB,
        "G" => GIB,
        "T" => GIB << 10,
        _ => return None,
    };
    Some((n * m as f64) as u64)
}

fn fmt_size(bytes: u64) -> String {
    if bytes % GIB == 0 {
        format!("{}G", bytes / GIB)
    } else {
        format!("{}M", bytes.div_ceil(MIB))
    }
}

#[derive(Debug, Clone)]
enum Effect {
    None,
    Unlock(u32),
    Running(u32, bool),
    /// A reboot: the VM stays running, its lab host is power-cycled.
    Reboot(u32),
    Remove(u32),
    Snapshot(u32, String),
    DeleteSnapshot(u32, String),
}

#[derive(Debug, Clone)]
struct Task {
    upid: String,
    node: String,
    kind: String,
    id: String,
    user: String,
    pid: u32,
    pstart: u64,
    starttime: i64,
    created: Instant,
    ends: Instant,
    exit: String,
    ok: Effect,
    fail: Effect,
    done: bool,
}

#[derive(Debug)]
struct State {
    nodes: Vec<PveNode>,
    vms: BTreeMap<u32, Vm>,
    tasks: HashMap<String, Task>,
    next_exit: HashMap<String, String>,
    task_time: Duration,
    task_times: HashMap<String, Duration>,
    task_invisible: Duration,
    next_pid: u32,
    calls: Vec<Call>,
    hosts: Option<Hosts>,
    /// VMs whose lab host starts without its sshd ([`ProxmoxLab::set_sshd`]).
    no_sshd: std::collections::HashSet<u32>,
    /// HA resources and rules (`/cluster/ha/*`, in `proxmox/ha.rs`).
    ha: ha::Ha,
}

type ApiResult = Result<Value, (u16, String, BTreeMap<String, String>)>;

fn fail(code: u16, msg: impl Into<String>) -> (u16, String, BTreeMap<String, String>) {
    (code, msg.into(), BTreeMap::new())
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl State {
    fn advance(&mut self) {
        let now = Instant::now();
        let mut effects = Vec::new();
        for t in self.tasks.values_mut() {
            if !t.done && t.ends <= now {
                t.done = true;
                let good = t.exit == "OK" || t.exit.starts_with("WARNINGS:");
                let e = if good { t.ok.clone() } else { t.fail.clone() };
                effects.push((t.upid.clone(), e));
            }
        }
        for (upid, e) in effects {
            if let Err(why) = self.host_effect(&e) {
                // The VM did not come up as a lab host: its task fails with why.
                if let Some(t) = self.tasks.get_mut(&upid) {
                    t.exit = why;
                }
                continue;
            }
            match e {
                Effect::None => {}
                Effect::Unlock(id) => {
                    if let Some(vm) = self.vms.get_mut(&id) {
                        vm.lock = None;
                    }
                }
                Effect::Running(id, r) => {
                    if let Some(vm) = self.vms.get_mut(&id) {
                        vm.running = r;
                        vm.lock = None;
                        vm.started = r.then(Instant::now);
                    }
                }
                Effect::Reboot(id) => {
                    if let Some(vm) = self.vms.get_mut(&id) {
                        vm.running = true;
                        vm.lock = None;
                        vm.started = Some(Instant::now());
                    }
                }
                Effect::Remove(id) => {
                    self.vms.remove(&id);
                }
                Effect::Snapshot(id, name) => {
                    if let Some(vm) = self.vms.get_mut(&id) {
                        vm.snapshots.push((name, now_unix()));
                        vm.lock = None;
                    }
                }
                Effect::DeleteSnapshot(id, name) => {
                    if let Some(vm) = self.vms.get_mut(&id) {
                        vm.snapshots.retain(|(n, _)| *n != name);
                        vm.lock = None;
                    }
                }
            }
        }
    }

    /// With lab hosts attached: a started VM is a lab host named after the
    /// VM at its `ipconfig0` address, its sshd accepting the cloud-init
    /// `sshkeys`; a stopped VM's host is powered off; a deleted VM's host
    /// is removed.
    fn host_effect(&mut self, e: &Effect) -> Result<(), String> {
        let Some(hosts) = self.hosts.as_mut() else {
            return Ok(());
        };
        let blocking = |f: &mut dyn FnMut() -> Result<(), String>| {
            let multi = tokio::runtime::Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
            if multi {
                tokio::task::block_in_place(f)
            } else {
                f()
            }
        };
        match e {
            Effect::Running(id, true) => {
                if let Some(h) = hosts.by_vmid.get_mut(id) {
                    return blocking(&mut || {
                        h.power_on()
                            .map_err(|e| format!("start failed: lab host: {e}"))
                    });
                }
                let vm = self.vms.get(id).ok_or("start failed: no such VM")?;
                let name = vm.name().unwrap_or("vm").to_string();
                let ip = vm
                    .config
                    .get("ipconfig0")
                    .and_then(|c| c.split(',').find_map(|kv| kv.strip_prefix("ip=")))
                    .and_then(|cidr| cidr.split('/').next()?.parse::<Ipv4Addr>().ok())
                    .ok_or_else(|| {
                        format!(
                            "start failed: VM {id} has no static ipconfig0 address for its lab host"
                        )
                    })?;
                let keys: Vec<String> = vm
                    .config
                    .get("sshkeys")
                    .map(|k| {
                        percent_encoding::percent_decode_str(k)
                            .decode_utf8_lossy()
                            .to_string()
                    })
                    .unwrap_or_default()
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect();
                let sshd = !self.no_sshd.contains(id);
                let mut made = None;
                blocking(&mut || {
                    let mut host = hosts
                        .lab
                        .add_host_with(crate::host::HostSpec {
                            name: name.clone(),
                            addr: Some(ip),
                            ..Default::default()
                        })
                        .map_err(|e| format!("start failed: lab host {name} at {ip}: {e}"))?;
                    if !keys.is_empty() && sshd {
                        host.start_sshd(keys.clone())
                            .map_err(|e| format!("start failed: sshd on lab host {name}: {e}"))?;
                    }
                    if let Some(p) = &hosts.provision {
                        p(&mut host).map_err(|e| {
                            format!("start failed: provisioning lab host {name}: {e}")
                        })?;
                    }
                    made = Some(host);
                    Ok(())
                })?;
                if let Some(h) = made {
                    hosts.by_vmid.insert(*id, h);
                }
                Ok(())
            }
            Effect::Running(id, false) => match hosts.by_vmid.get_mut(id) {
                Some(h) => blocking(&mut || {
                    h.power_off()
                        .map_err(|e| format!("stop failed: lab host: {e}"))
                }),
                None => Ok(()),
            },
            Effect::Reboot(id) => match hosts.by_vmid.get_mut(id) {
                Some(h) => blocking(&mut || {
                    h.reboot()
                        .map_err(|e| format!("reboot failed: lab host: {e}"))
                }),
                None => Ok(()),
            },
            Effect::Remove(id) => {
                hosts.by_vmid.remove(id);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn task(
        &mut self,
        node: &str,
        kind: &str,
        id: &str,
        user: &str,
        ok: Effect,
        fail: Effect,
    ) -> Value {
        self.next_pid += 1;
        let pid = 0x1000 + self.next_pid;
        let pstart = 0x2000_0000 + self.next_pid as u64 * 7;
        let starttime = now_unix();
        let upid =
            format!("UPID:{node}:{pid:08X}:{pstart:08X}:{starttime:08X}:{kind}:{id}:{user}:");
        let exit = self.next_exit.remove(kind).unwrap_or_else(|| "OK".into());
        let dur = self.task_times.get(kind).copied().unwrap_or(self.task_time);
        let created = Instant::now();
        self.tasks.insert(
            upid.clone(),
            Task {
                upid: upid.clone(),
                node: node.to_string(),
                kind: kind.to_string(),
                id: id.to_string(),
                user: user.to_string(),
                pid,
                pstart,
                starttime,
                created,
                ends: created + dur,
                exit,
                ok,
                fail,
                done: false,
            },
        );
        Value::String(upid)
    }

    fn node(&self, node: &str) -> Result<&PveNode, (u16, String, BTreeMap<String, String>)> {
        self.nodes.iter().find(|n| n.name == node).ok_or_else(|| {
            fail(
                595,
                format!("hostname lookup '{node}' failed - failed to get address info for: {node}: Name or service not known"),
            )
        })
    }

    fn vm(&self, node: &str, vmid: u32) -> Result<&Vm, (u16, String, BTreeMap<String, String>)> {
        self.node(node)?;
        match self.vms.get(&vmid) {
            Some(vm) if vm.node == node => Ok(vm),
            _ => Err(fail(
                500,
                format!("Configuration file 'nodes/{node}/qemu-server/{vmid}.conf' does not exist"),
            )),
        }
    }

    fn unlocked(
        &self,
        node: &str,
        vmid: u32,
    ) -> Result<&Vm, (u16, String, BTreeMap<String, String>)> {
        let vm = self.vm(node, vmid)?;
        if let Some(l) = &vm.lock {
            return Err(fail(500, format!("VM is locked ({l})")));
        }
        Ok(vm)
    }

    fn digest(vm: &Vm) -> String {
        let text: String = vm
            .config
            .iter()
            .map(|(k, v)| format!("{k}: {v}\n"))
            .collect();
        let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, text.as_bytes());
        d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// VMs that run as lab hosts.
struct Hosts {
    lab: crate::host::HostLab,
    by_vmid: HashMap<u32, crate::host::Host>,
    provision: Option<Provision>,
}

impl std::fmt::Debug for Hosts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hosts")
            .field("lab", &self.lab)
            .field("by_vmid", &self.by_vmid)
            .field("provision", &self.provision.is_some())
            .finish()
    }
}

/// What makes a started VM's new lab host what its template holds (e.g.
/// [`crate::cluster::Template::provisioner`]): called once, after its sshd
/// started.
pub type Provision =
    std::sync::Arc<dyn Fn(&mut crate::host::Host) -> Result<(), String> + Send + Sync>;

struct Shared {
    state: Mutex<State>,
    token_id: String,
    token_secret: String,
}

/// The running stand-in. Dropping it stops it.
pub struct ProxmoxLab {
    addr: SocketAddr,
    shared: Arc<Shared>,
    ca_path: PathBuf,
    fingerprint: [u8; 32],
    _dir: tempfile::TempDir,
    rt: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for ProxmoxLab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxmoxLab")
            .field("addr", &self.addr)
            .field("ca_path", &self.ca_path)
            .finish_non_exhaustive()
    }
}

impl Drop for ProxmoxLab {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl ProxmoxLab {
    /// Serve `inventory` on 127.0.0.1 (a free port) with default options.
    pub fn start(inventory: Inventory) -> Result<ProxmoxLab, LabError> {
        ProxmoxLab::start_with(inventory, PveOptions::default())
    }

    /// Serve `inventory` on 127.0.0.1 (a free port).
    pub fn start_with(inventory: Inventory, opts: PveOptions) -> Result<ProxmoxLab, LabError> {
        let dir = tempfile::tempdir().map_err(|e| LabError::io(&std::env::temp_dir(), e))?;
        let ca = crate::pki::ca("Proxmox Virtual Environment")?;
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let pair = crate::pki::leaf(
            &ca,
            "pve.lab",
            &["localhost", "pve"],
            &[lo],
            &[rcgen::ExtendedKeyUsagePurpose::ServerAuth],
        )?;
        let ca_path = dir.path().join("pve-root-ca.pem");
        std::fs::write(&ca_path, &ca.pem.cert).map_err(|e| LabError::io(&ca_path, e))?;
        let certs = CertificateDer::pem_slice_iter(pair.cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| LabError::Pki(format!("pve-ssl.pem: {e}")))?;
        let fp = ring::digest::digest(&ring::digest::SHA256, certs[0].as_ref());
        let mut fingerprint = [0u8; 32];
        fingerprint.copy_from_slice(fp.as_ref());
        // pveproxy speaks HTTP/1.1 only.
        let acceptor = crate::pki::acceptor(&pair, &[b"http/1.1"], "pve-ssl")?;

        let mut vms = BTreeMap::new();
        for v in inventory.vms {
            let mut config: BTreeMap<String, String> = BTreeMap::new();
            config.insert("name".into(), v.name.clone());
            config.insert("memory".into(), v.memory_mib.to_string());
            config.insert("cores".into(), v.cores.to_string());
            config.insert("sockets".into(), "1".into());
            config.insert("ostype".into(), "l26".into());
            config.insert("scsihw".into(), "virtio-scsi-single".into());
            config.insert("boot".into(), "order=scsi0".into());
            let base = if v.template { "base" } else { "vm" };
            config.insert(
                "scsi0".into(),
                format!(
                    "local-lvm:{base}-{}-disk-0,iothread=1,size={}G",
                    v.vmid, v.disk_gib
                ),
            );
            config.insert(
                "ide2".into(),
                format!("local-lvm:vm-{}-cloudinit,media=cdrom", v.vmid),
            );
            config.insert(
                "net0".into(),
                format!(
                    "virtio=BC:24:11:{:02X}:{:02X}:01,bridge=vmbr0",
                    v.vmid / 256 % 256,
                    v.vmid % 256
                ),
            );
            if v.template {
                config.insert("template".into(), "1".into());
            }
            config.extend(v.config);
            vms.insert(
                v.vmid,
                Vm {
                    node: v.node,
                    running: v.running,
                    lock: None,
                    config,
                    snapshots: Vec::new(),
                    started: v.running.then(Instant::now),
                },
            );
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                nodes: inventory.nodes,
                vms,
                tasks: HashMap::new(),
                next_exit: HashMap::new(),
                task_time: opts.task_time,
                task_times: HashMap::new(),
                task_invisible: opts.task_invisible,
                next_pid: 0,
                calls: Vec::new(),
                hosts: None,
                no_sshd: Default::default(),
                ha: ha::Ha::default(),
            }),
            token_id: opts.token_id,
            token_secret: opts.token_secret,
        });

        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("pve-stand-in")
            .enable_all()
            .build()
            .map_err(|e| LabError::Pki(format!("runtime: {e}")))?;
        let std_listener = std::net::TcpListener::bind(SocketAddr::new(lo, 0))
            .map_err(|e| LabError::Bind("127.0.0.1:0".into(), e))?;
        let addr = std_listener
            .local_addr()
            .map_err(|e| LabError::Bind("127.0.0.1:0".into(), e))?;
        std_listener
            .set_nonblocking(true)
            .map_err(|e| LabError::Bind(addr.to_string(), e))?;
        let app = Router::new().fallback(handle).with_state(shared.clone());
        {
            let _guard = rt.enter();
            let listener = tokio::net::TcpListener::from_std(std_listener)
                .map_err(|e| LabError::Bind(addr.to_string(), e))?;
            rt.spawn(async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let _ = tcp.set_nodelay(true);
                    let acceptor = acceptor.clone();
                    let app = app.clone();
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let svc = hyper_util::service::TowerToHyperService::new(app);
                        let _ = hyper_util::server::conn::auto::Builder::new(
                            hyper_util::rt::TokioExecutor::new(),
                        )
                        .http1_only()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                        .await;
                    });
                }
            });
        }
        Ok(ProxmoxLab {
            addr,
            shared,
            ca_path,
            fingerprint,
            _dir: dir,
            rt: Some(rt),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `https://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The CA certificate (PEM file) that signed the server's certificate.
    pub fn ca_path(&self) -> &std::path::Path {
        &self.ca_path
    }

    /// SHA-256 of the server's certificate (DER).
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// The fingerprint as `pvenode cert info` prints it (`AA:BB:...`).
    pub fn fingerprint_hex(&self) -> String {
        self.fingerprint
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    /// Token id (`user@realm!tokenid`).
    pub fn token_id(&self) -> &str {
        &self.shared.token_id
    }

    /// Token secret.
    pub fn token_secret(&self) -> &str {
        &self.shared.token_secret
    }

    /// The token in bpg's form (`PROXMOX_VE_API_TOKEN`).
    pub fn api_token(&self) -> String {
        format!("{}={}", self.shared.token_id, self.shared.token_secret)
    }

    /// How long tasks of `kind` (`qmclone`, `qmstart`...) run; `None`: all kinds.
    pub fn set_task_time(&self, kind: Option<&str>, d: Duration) {
        let mut s = self.state();
        match kind {
            Some(k) => {
                s.task_times.insert(k.to_string(), d);
            }
            None => s.task_time = d,
        }
    }

    /// The next task of `kind` ends with `exitstatus` (e.g. a failure text,
    /// or `WARNINGS: 2`).
    pub fn set_next_exit(&self, kind: &str, exitstatus: &str) {
        self.state()
            .next_exit
            .insert(kind.to_string(), exitstatus.to_string());
    }

    /// Lock a VM (as a backup or a clone would), or unlock it (`None`).
    pub fn set_lock(&self, vmid: u32, lock: Option<&str>) {
        if let Some(vm) = self.state().vms.get_mut(&vmid) {
            vm.lock = lock.map(str::to_string);
        }
    }

    /// A VM's config as `GET .../config` shows it, with `status` and `lock`
    /// added; `None` if there is no such VM.
    pub fn vm(&self, vmid: u32) -> Option<BTreeMap<String, String>> {
        let mut s = self.state();
        s.advance();
        s.vms.get(&vmid).map(|vm| {
            let mut c = vm.config.clone();
            c.insert("status".into(), vm.status().into());
            c.insert("node".into(), vm.node.clone());
            if let Some(l) = &vm.lock {
                c.insert("lock".into(), l.clone());
            }
            c
        })
    }

    /// From now on, a VM that starts becomes a host of `lab`: named after
    /// the VM, at its `ipconfig0` address (inside the lab's subnet), its sshd
    /// accepting the cloud-init `sshkeys`. Stopping the VM powers the host
    /// off; deleting it removes the host.
    pub fn attach_hosts(&self, lab: crate::host::HostLab) {
        self.state().hosts = Some(Hosts {
            lab,
            by_vmid: HashMap::new(),
            provision: None,
        });
    }

    /// [`ProxmoxLab::attach_hosts`], each new host then provisioned by
    /// `provision` (the template's contents: programs, configuration,
    /// services).
    pub fn attach_hosts_with(&self, lab: crate::host::HostLab, provision: Provision) {
        self.state().hosts = Some(Hosts {
            lab,
            by_vmid: HashMap::new(),
            provision: Some(provision),
        });
    }

    /// Provision the hosts of VMs started from now on with `provision`
    /// (a template image rebuilt, e.g. with the cluster's versions after an
    /// upgrade); hosts already made keep what they have. Does nothing
    /// before [`ProxmoxLab::attach_hosts_with`].
    pub fn set_provision(&self, provision: Provision) {
        if let Some(h) = self.state().hosts.as_mut() {
            h.provision = Some(provision);
        }
    }

    /// Whether the lab host of VM `vmid`, made when the VM first starts,
    /// runs its sshd (the default) or never does: a VM whose cloud-init or
    /// network is broken (nothing answers on port 22; its template's
    /// provisioning still runs). Takes effect for hosts made from now on.
    pub fn set_sshd(&self, vmid: u32, answers: bool) {
        let mut s = self.state();
        if answers {
            s.no_sshd.remove(&vmid);
        } else {
            s.no_sshd.insert(vmid);
        }
    }

    /// The `known_hosts` line of a started VM's lab host.
    pub fn known_hosts_line(&self, vmid: u32) -> Option<String> {
        self.state()
            .hosts
            .as_ref()?
            .by_vmid
            .get(&vmid)?
            .known_hosts_line()
    }

    /// The started VMs' lab hosts that asked, from inside, to be rebooted
    /// or powered off ([`crate::cluster::POWER_REQUEST`]: the stand-in
    /// `reboot`, `systemctl reboot`...): each is powered off now; returns
    /// (vmid, host name, `reboot`|`poweroff`). Power reboots on again with
    /// [`ProxmoxLab::power_on_host`] ([`crate::cluster::ClusterLab`] does
    /// both). The VM's status is left as it is (a reboot keeps it running;
    /// after a power off from inside it still reads running).
    pub fn take_power_requests(&self) -> Vec<(u32, String, String)> {
        let mut s = self.state();
        let Some(h) = s.hosts.as_mut() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (id, host) in h.by_vmid.iter_mut() {
            if !host.is_on() {
                continue;
            }
            if let Some(a) = crate::cluster::take_power_request(host) {
                if let Err(e) = host.power_off() {
                    eprintln!("testlab proxmox: VM {id}: power off: {e}");
                }
                out.push((*id, host.name().to_string(), a));
            }
        }
        out
    }

    /// Power the VM's lab host on (after [`ProxmoxLab::take_power_requests`]).
    pub fn power_on_host(&self, vmid: u32) -> Result<(), String> {
        let mut s = self.state();
        match s.hosts.as_mut().and_then(|h| h.by_vmid.get_mut(&vmid)) {
            Some(host) => host
                .power_on()
                .map_err(|e| format!("VM {vmid}: power on: {e}")),
            None => Err(format!("VM {vmid}: no lab host")),
        }
    }

    /// Whether the VM's lab host is powered on (`None`: no lab host).
    pub fn host_is_on(&self, vmid: u32) -> Option<bool> {
        Some(self.state().hosts.as_ref()?.by_vmid.get(&vmid)?.is_on())
    }

    /// Every call answered so far.
    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// How many calls matched `method` and a template ending in `suffix`.
    pub fn count(&self, method: &str, suffix: &str) -> usize {
        self.state()
            .calls
            .iter()
            .filter(|c| c.method == method && c.template.ends_with(suffix))
            .count()
    }

    /// When the last task ended (its end time; `None`: no task or one still running).
    pub fn last_task_end(&self) -> Option<Instant> {
        let s = self.state();
        let t = s.tasks.values().max_by_key(|t| t.created)?;
        (t.ends <= Instant::now()).then_some(t.ends)
    }
}

fn reply(code: u16, msg: &str, errors: &BTreeMap<String, String>) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut body = json!({"data": null, "message": format!("{}\n", msg.trim_end())});
    if !errors.is_empty() {
        body["errors"] = json!(errors);
    }
    let mut resp = (
        status,
        [("content-type", "application/json;charset=UTF-8")],
        body.to_string(),
    )
        .into_response();
    let reason: String = msg
        .trim_end()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if let Ok(r) = hyper::ext::ReasonPhrase::try_from(reason.into_bytes()) {
        resp.extensions_mut().insert(r);
    }
    resp
}

fn parse_params(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    if let Some(q) = uri.query() {
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            out.insert(k.to_string(), v.to_string());
        }
    }
    if (method == Method::POST || method == Method::PUT) && !body.is_empty() {
        let ct = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if ct.starts_with("application/json") {
            let v: Value =
                serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))?;
            for (k, v) in v.as_object().into_iter().flatten() {
                let text = match v {
                    Value::String(s) => s.clone(),
                    Value::Bool(b) => {
                        if *b {
                            "1".into()
                        } else {
                            "0".into()
                        }
                    }
                    other => other.to_string(),
                };
                out.insert(k.clone(), text);
            }
        } else {
            for (k, v) in form_urlencoded::parse(body) {
                out.insert(k.to_string(), v.to_string());
            }
        }
    } else if !body.is_empty() {
        return Err(format!("Unexpected content for method '{method}'"));
    }
    Ok(out)
}

async fn handle(
    AxState(shared): AxState<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(path) = uri.path().strip_prefix("/api2/json") else {
        return reply(501, "Unknown format", &BTreeMap::new());
    };
    let path = if path.is_empty() { "/" } else { path };
    // Authentication first, as pveproxy does.
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("PVEAPIToken="));
    let Some(auth) = auth else {
        return reply(401, "No ticket", &BTreeMap::new());
    };
    let Some((id, secret)) = auth.split_once('=') else {
        return reply(401, "no tokenid specified", &BTreeMap::new());
    };
    if id != shared.token_id {
        let (user, tok) = id.split_once('!').unwrap_or((id, ""));
        return reply(
            401,
            &format!("no such token '{tok}' for user '{user}'"),
            &BTreeMap::new(),
        );
    }
    if secret != shared.token_secret {
        return reply(401, "invalid token value!", &BTreeMap::new());
    }
    let m = method.as_str().to_string();
    let (template, def, path_params) = match schema().route(&m, path) {
        Ok((r, d, p)) => (r.template.clone(), d, p),
        Err(RouteError::NotFound | RouteError::Method) => {
            return reply(
                501,
                &format!("Method '{m} {path}' not implemented"),
                &BTreeMap::new(),
            );
        }
    };
    let mut params = match parse_params(&method, &uri, &headers, &body) {
        Ok(p) => p,
        Err(e) => return reply(501, &e, &BTreeMap::new()),
    };
    params.extend(path_params);
    let result = match check_params(def, &params) {
        Err(errors) => Err((400, "Parameter verification failed.".to_string(), errors)),
        Ok(()) => {
            let mut s = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            s.advance();
            dispatch(&mut s, &m, &template, &params, &shared.token_id)
        }
    };
    let mut s = shared.state.lock().unwrap_or_else(|e| e.into_inner());
    match result {
        Ok(data) => {
            s.calls.push(Call {
                method: m,
                template,
                status: 200,
                data: data.clone(),
            });
            (
                StatusCode::OK,
                [("content-type", "application/json;charset=UTF-8")],
                json!({ "data": data }).to_string(),
            )
                .into_response()
        }
        Err((code, msg, errors)) => {
            s.calls.push(Call {
                method: m,
                template,
                status: code,
                data: Value::Null,
            });
            reply(code, &msg, &errors)
        }
    }
}

fn vmid_of(p: &BTreeMap<String, String>, key: &str) -> u32 {
    p.get(key).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn truthy(v: Option<&String>) -> bool {
    v.is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
}

fn vm_entry(vmid: u32, vm: &Vm) -> Value {
    let mut e = json!({
        "vmid": vmid,
        "status": vm.status(),
        "maxmem": vm.memory_mib() * MIB,
        "mem": if vm.running { vm.memory_mib() * MIB / 3 } else { 0 },
        "cpus": vm.cpus(),
        "maxdisk": vm.maxdisk(),
        "cpu": if vm.running { 0.02 } else { 0.0 },
        "uptime": vm.started.map(|s| s.elapsed().as_secs()).unwrap_or(0),
        "netin": 0, "netout": 0, "diskread": 0, "diskwrite": 0,
    });
    if let Some(n) = vm.name() {
        e["name"] = json!(n);
    }
    if vm.template() {
        e["template"] = json!(1);
    }
    // Proxmox lists a VM's tags (`;`-separated) wherever it lists the VM.
    if let Some(t) = vm.config.get("tags").filter(|t| !t.is_empty()) {
        e["tags"] = json!(t);
    }
    if let Some(l) = &vm.lock {
        e["lock"] = json!(l);
    }
    if vm.running {
        e["pid"] = json!(4000 + vmid);
        e["qmpstatus"] = json!("running");
    }
    e
}

/// The Proxmox API's answer to one request, by resource: each handler
/// answers its own paths, and a path or method none knows is 501 as Proxmox
/// says it.
fn dispatch(
    s: &mut State,
    method: &str,
    template: &str,
    p: &BTreeMap<String, String>,
    user: &str,
) -> ApiResult {
    if template.starts_with("/cluster/ha/") {
        return ha::dispatch(s, method, template, p);
    }
    let r = Req {
        method,
        template,
        p,
        user,
    };
    let vm = "/nodes/{node}/qemu/{vmid}";
    let handler: fn(&mut State, &Req<'_>) -> ApiResult = match template {
        "/version" | "/cluster/nextid" | "/cluster/resources" => cluster,
        "/nodes" | "/nodes/{node}/status" => nodes,
        "/nodes/{node}/qemu" => vms,
        "/nodes/{node}/tasks/{upid}/status" => tasks,
        t if t == vm => self::vm,
        t => match t.strip_prefix(vm).unwrap_or("") {
            "/agent/network-get-interfaces" => agent,
            "/clone" => clone,
            "/cloudinit" => cloudinit,
            "/config" => config,
            "/resize" => resize,
            rest if rest.starts_with("/snapshot") => snapshots,
            rest if rest.starts_with("/status/") => power,
            _ => return Err(not_implemented(&r)),
        },
    };
    handler(s, &r)
}

/// One request as the handlers see it: method, path template, parameters
/// (path, query and body), and the calling token's user.
struct Req<'a> {
    method: &'a str,
    template: &'a str,
    p: &'a BTreeMap<String, String>,
    user: &'a str,
}

/// What Proxmox answers for a method or path it does not implement.
fn not_implemented(r: &Req<'_>) -> (u16, String, BTreeMap<String, String>) {
    fail(
        501,
        format!("Method '{} {}' not implemented", r.method, r.template),
    )
}

/// `/version` and `/cluster/*`: the version, the next free id, the resources.
fn cluster(s: &mut State, r: &Req<'_>) -> ApiResult {
    let Req { p, .. } = *r;
    match (r.method, r.template) {
        ("GET", "/version") => {
            Ok(json!({"version": "9.0.11", "release": "9.0", "repoid": "3bf5476b8a4699e2"}))
        }
        ("GET", "/cluster/nextid") => {
            if let Some(want) = p.get("vmid") {
                let want: u32 = want.parse().unwrap_or(0);
                if s.vms.contains_key(&want) {
                    let mut errors = BTreeMap::new();
                    errors.insert("vmid".to_string(), format!("VM {want} already exists"));
                    return Err((400, "Parameter verification failed.".into(), errors));
                }
                return Ok(json!(want));
            }
            let free = (100u32..).find(|id| !s.vms.contains_key(id)).unwrap_or(100);
            Ok(json!(free))
        }
        ("GET", "/cluster/resources") => {
            let ty = p.get("type").map(String::as_str);
            let mut out = Vec::new();
            if matches!(ty, None | Some("node")) {
                for n in &s.nodes {
                    out.push(json!({"id": format!("node/{}", n.name), "type": "node", "node": n.name,
                        "status": "online", "maxmem": n.memory, "maxcpu": n.cpus, "mem": n.memory / 4,
                        "cpu": 0.05, "uptime": 864000, "level": "", "maxdisk": 100 * GIB, "disk": 10 * GIB}));
                }
            }
            if matches!(ty, None | Some("vm")) {
                for (id, vm) in &s.vms {
                    let mut e = vm_entry(*id, vm);
                    let m = e.as_object_mut().expect("object");
                    m.remove("cpus");
                    m.remove("pid");
                    m.remove("qmpstatus");
                    m.insert("maxcpu".into(), json!(vm.cpus()));
                    m.insert("disk".into(), json!(0));
                    m.insert("id".into(), json!(format!("qemu/{id}")));
                    m.insert("type".into(), json!("qemu"));
                    m.insert("node".into(), json!(vm.node));
                    out.push(e);
                }
            }
            Ok(Value::Array(out))
        }
        _ => Err(not_implemented(r)),
    }
}

/// `/nodes` and a node's status (`POST` is the host's power).
fn nodes(s: &mut State, r: &Req<'_>) -> ApiResult {
    let Req { p, .. } = *r;
    let node = p.get("node").cloned().unwrap_or_default();
    match (r.method, r.template) {
        ("GET", "/nodes") => Ok(Value::Array(
            s.nodes
                .iter()
                .map(|n| {
                    json!({"node": n.name, "status": "online", "maxmem": n.memory, "maxcpu": n.cpus,
                        "mem": s.vms.values().filter(|v| v.node == n.name && v.running).map(|v| v.memory_mib() * MIB).sum::<u64>(),
                        "cpu": 0.05, "uptime": 864000, "level": "",
                        "ssl_fingerprint": "00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF"})
                })
                .collect(),
        )),
        ("GET", "/nodes/{node}/status") => {
            let n = s.node(&node)?;
            let used: u64 = s
                .vms
                .values()
                .filter(|v| v.node == n.name && v.running)
                .map(|v| v.memory_mib() * MIB)
                .sum::<u64>()
                .min(n.memory);
            Ok(json!({
                "memory": {"total": n.memory, "used": used, "free": n.memory - used, "available": n.memory - used},
                "cpuinfo": {"cpus": n.cpus, "cores": n.cpus / 2, "sockets": 1, "model": "AMD EPYC 7302P 16-Core Processor"},
                "cpu": 0.05, "wait": 0.0, "idle": 0,
                "loadavg": ["0.52", "0.61", "0.70"],
                "uptime": 864000,
                "kversion": "Linux 6.14.8-2-pve #1 SMP PREEMPT_DYNAMIC PMX 6.14.8-2 (2025-07-22T10:04Z)",
                "pveversion": "pve-manager/9.0.11/3bf5476b8a4699e2",
                "current-kernel": {"sysname": "Linux", "release": "6.14.8-2-pve", "version": "#1 SMP PREEMPT_DYNAMIC PMX 6.14.8-2 (2025-07-22T10:04Z)", "machine": "x86_64"},
                "boot-info": {"mode": "efi", "secureboot": false},
                "rootfs": {"total": 100 * GIB, "used": 10 * GIB, "free": 90 * GIB, "avail": 85 * GIB},
                "swap": {"total": 8 * GIB, "used": 0, "free": 8 * GIB},
                "ksm": {"shared": 0},
            }))
        }
        ("POST", "/nodes/{node}/status") => {
            s.node(&node)?;
            Ok(Value::Null)
        }
        _ => Err(not_implemented(r)),
    }
}

/// A node's VMs: list, create.
fn vms(s: &mut State, r: &Req<'_>) -> ApiResult {
    let Req { p, user, .. } = *r;
    let node = p.get("node").cloned().unwrap_or_default();
    let vmid = vmid_of(p, "vmid");
    match (r.method, r.template) {
        ("GET", "/nodes/{node}/qemu") => {
            s.node(&node)?;
            Ok(Value::Array(
                s.vms
                    .iter()
                    .filter(|(_, v)| v.node == node)
                    .map(|(id, v)| vm_entry(*id, v))
                    .collect(),
            ))
        }
        ("POST", "/nodes/{node}/qemu") => {
            s.node(&node)?;
            if s.vms.contains_key(&vmid) {
                return Err(fail(
                    500,
                    format!(
                        "unable to create VM {vmid} - VM {vmid} already exists on node '{}'",
                        s.vms[&vmid].node
                    ),
                ));
            }
            let mut config = BTreeMap::new();
            for (k, v) in p {
                if !matches!(
                    k.as_str(),
                    "node"
                        | "vmid"
                        | "start"
                        | "pool"
                        | "archive"
                        | "force"
                        | "unique"
                        | "storage"
                        | "live-restore"
                        | "bwlimit"
                ) {
                    config.insert(k.clone(), v.clone());
                }
            }
            s.vms.insert(
                vmid,
                Vm {
                    node: node.clone(),
                    running: false,
                    lock: Some("create".into()),
                    config,
                    snapshots: Vec::new(),
                    started: None,
                },
            );
            Ok(s.task(
                &node,
                "qmcreate",
                &vmid.to_string(),
                user,
                Effect::Unlock(vmid),
                Effect::Remove(vmid),
            ))
        }
        _ => Err(not_implemented(r)),
    }
}

/// One VM: read, destroy.
fn vm(s: &mut State, r: &Req<'_>) -> ApiResult {
    let Req { p, user, .. } = *r;
    let node = p.get("node").cloned().unwrap_or_default();
    let vmid = vmid_of(p, "vmid");
    match (r.method, r.template) {
        ("GET", "/nodes/{node}/qemu/{vmid}") => {
            s.vm(&node, vmid)?;
            Ok(json!(
                [
                    "config",
                    "pending",
                    "status",
                    "unlink",
                    "vncproxy",
                    "termproxy",
                    "migrate",
                    "resize",
                    "move",
                    "rrd",
                    "rrddata",
                    "monitor",
                    "agent",
                    "snapshot",
                    "spiceproxy",
                    "sendkey",
                    "firewall",
                    "mtunnel",
                    "remote_migrate",
                    "cloudinit"
                ]
                .iter()
                .map(|d| json!({"subdir": d}))
                .collect::<Vec<_>>()
            ))
        }
        ("DELETE", "/nodes/{node}/qemu/{vmid}") => {
            let vm = s.vm(&node, vmid)?;
            if let Some(l) = &vm.lock
                && !truthy(p.get("skiplock"))
            {
                return Err(fail(500, format!("VM is locked ({l})")));
            }
            if vm.running {
                return Err(fail(500, format!("VM {vmid} is running - destroy failed")));
            }
            if s.ha.manages(vmid) {
                if !truthy(p.get("purge")) {
                    return Err(fail(
                        500,
                        format!(
                            "unable to remove VM {vmid} - used in HA resources and purge parameter not set."
                        ),
                    ));
                }
                s.ha.purge(vmid);
            }
            s.vms.get_mut(&vmid).expect("vm").lock = Some("destroyed".into());
            Ok(s.task(
                &node,
                "qmdestroy",
                &vmid.to_string(),
                user,
                Effect::Remove(vmid),
                Effect::Unlock(vmid),
            ))
        }
        _ => Err(not_implemented(r)),
    }
}

/// The guest agent's view of a VM.
fn agent(s: &mut State, r: &Req<'_>) -> ApiResult {
    let Req { p, .. } = *r;
    let node = p.get("node").cloned().unwrap_or_default();
    let vmid = vmid_of(p, "vmid");
    match (r.method, r.template) {
        ("GET", "/nodes/{node}/qemu/{vmid}/agent/network-get-interfaces") => {
            let vm = s.vm(&node, vmid)?;
            if !vm.running {
                return Err(fail(500, format!("VM {vmid} is not running")));
            }
            if !vm
                .config
                .get("agent")
                .is_some_and(|a| a.starts_with('1') || a.contains("enabled=1"))
            {
                return Err(fail(500, "No QEMU guest agent configured"));
            }
            let mut ifs = vec![
                json!({"name": "lo", "hardware-address": "00:00:00:00:00:00",
                "ip-addresses": [{"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8}]}),
            ];
            if let Some(ip) = vm
                .config
                .get("ipconfig0")
                .and_then(|c| c.split(',').find_map(|kv| kv.strip_prefix("ip=")))
                && let Some((a, pre)) = ip.split_once('/')
            {
                ifs.push(json!({"name": "eth0", "hardware-address": "bc:24:11:00:00:01",
                    "ip-addresses": [{"ip-address": a, "ip-address-type": "ipv4", "prefix": pre.parse::<u32>().unwrap_or(24)}]}));
            }
            Ok(json!({"result": ifs}))
        }
        _ => Err(not_implemented(r)),
    }
}

/// A VM cloned (a full or linked copy, on this node or another).
fn clone(s: &mut State, r: &Req<'_>) -> ApiResult {
    let Req { p, user, .. } = *r;
    let node = p.get("node").cloned().unwrap_or_default();
    let vmid = vmid_of(p, "vmid");
    match (r.method, r.template) {
        ("POST", "/nodes/{node}/qemu/{vmid}/clone") => {
            let src = s.vm(&node, vmid)?.clone();
            if let Some(l) = &src.lock {
                return Err(fail(500, format!("VM is locked ({l})")));
            }
            let newid = vmid_of(p, "newid");
            if s.vms.contains_key(&newid) {
                return Err(fail(
                    500,
                    format!("unable to create VM {newid}: config file already exists"),
                ));
            }
            let full = match p.get("full") {
                Some(_) => truthy(p.get("full")),
                None => !src.template(),
            };
            if !full && !src.template() {
                return Err(fail(
                    500,
                    "parameter 'full' - linked clone feature is only available for templates",
                ));
            }
            if p.contains_key("storage") && !full {
                return Err(fail(
                    500,
                    "parameter 'storage' - option is only allowed with full clone",
                ));
            }
            let target = p.get("target").cloned().unwrap_or_else(|| node.clone());
            s.node(&target)?;
            let mut config = src.config.clone();
            config.remove("template");
            let name = p
                .get("name")
                .cloned()
                .unwrap_or_else(|| format!("Copy-of-VM-{}", src.name().unwrap_or("")));
            config.insert("name".into(), name);
            let storage = p.get("storage").cloned();
            for (k, v) in config.iter_mut() {
                if is_disk_key(k) && !v.contains("media=cdrom") {
                    let rest = v
                        .split_once(',')
                        .map(|(_, r)| r.to_string())
                        .unwrap_or_default();
                    let store = storage
                        .clone()
                        .unwrap_or_else(|| v.split(':').next().unwrap_or("local-lvm").to_string());
                    *v = format!("{store}:vm-{newid}-disk-0,{rest}");
                } else if k.starts_with("ide") && v.contains("cloudinit") {
                    *v = format!("local-lvm:vm-{newid}-cloudinit,media=cdrom");
                }
            }
            s.vms.insert(
                newid,
                Vm {
                    node: target,
                    running: false,
                    lock: Some("clone".into()),
                    config,
                    snapshots: Vec::new(),
                    started: None,
                },
            );
            Ok(s.task(
                &node,
                "qmclone",
                &vmid.to_string(),
                user,
                Effect::Unlock(newid),
                Effect::Remove(newid),
            ))
        }
        _ => Err(not_implemented(r)),
    }
}

/// A VM's cloud-init drive.
fn cloudinit(s: &mut State, r: &Req<'_>) -> ApiResult {
    let Req { p, .. } = *r;
    let node = p.get("node").cloned().unwrap_or_default();
    let vmid = vmid_of(p, "vmid");
    match (r.method, r.template) {
        ("GET", "/nodes/{node}/qemu/{vmid}/cloudinit") => {
            let vm = s.vm(&node, vmid)?;
            Ok(Value::Array(
                [
                    "cipassword",
                    "ciupgrade",
                    "ciuser",
                    "ipconfig0",
                    "nameserver",
                    "searchdomain",
                    "sshkeys",
                ]
                .iter()
                .filter_map(|k| vm.config.get(*k).map(|v| json!({"key": k, "value": v})))
                .collect(),
            ))
        }
        ("PUT", "/nodes/{node}/qemu/{vmid}/cloudinit") => {
            let vm = s.unlocked(&node, vmid)?;
            if !vm.config.values().any(|v| v.contains("cloudinit")) {
                return Err(fail(500, format!("VM {vmid} has no cloud-init drive")));
            }
            Ok(Value::Null)
        }
        _ => Err(not_implemented(r)),
    }
}

/// A VM's configuration: read, change (`PUT` at once, `POST` as a task).
fn config(s: &mut State, r: &Req<'_>) -> ApiResult {
    let Req {
        method, p, user, ..
    } = *r;
    let node = p.get("node").cloned().unwrap_or_default();
    let vmid = vmid_of(p, "vmid");
    match (r.method, r.template) {
        ("GET", "/nodes/{node}/qemu/{vmid}/config") => {
            let vm = s.vm(&node, vmid)?;
            let mut out = serde_json::Map::new();
            for (k, v) in &vm.config {
                out.insert(k.clone(), config_value(k, v));
            }
            if let Some(l) = &vm.lock {
                out.insert("lock".into(), json!(l));
            }
            out.insert("digest".into(), json!(State::digest(vm)));
            Ok(Value::Object(out))
        }
        ("PUT" | "POST", "/nodes/{node}/qemu/{vmid}/config") => {
            let vm = if truthy(p.get("skiplock")) {
                s.vm(&node, vmid)?
            } else {
                s.unlocked(&node, vmid)?
            };
            if let Some(d) = p.get("digest")
                && *d != State::digest(vm)
            {
                return Err(fail(
                    500,
                    "detected modified configuration - file changed by other user? Try again.",
                ));
            }
            if vm.template() && p.keys().any(|k| is_disk_key(k)) {
                return Err(fail(500, "unable to modify disks of a template"));
            }
            set_config(s.vms.get_mut(&vmid).expect("vm"), p);
            if method == "PUT" {
                Ok(Value::Null)
            } else {
                Ok(s.task(
                    &node,
                    "qmconfig",
                    &vmid.to_string(),
                    user,
                    Effect::None,
                    Effect::None,
                ))
            }
        }
        _ => Err(not_implemented(r)),
    }
}

/// A config value as Proxmox returns it: text for the keys it types as
/// strings, numbers for the rest, the description as its lines.
fn config_value(k: &str, v: &str) -> Value {
    let text_typed = matches!(
        k,
        "memory"
            | "name"
            | "ostype"
            | "scsihw"
            | "boot"
            | "ciuser"
            | "sshkeys"
            | "nameserver"
            | "searchdomain"
            | "cpu"
            | "agent"
            | "tags"
            | "description"
            | "smbios1"
            | "vmgenid"
            | "meta"
            | "cicustom"
            | "citype"
    ) || k.starts_with("scsi")
        || k.starts_with("ide")
        || k.starts_with("net")
        || k.starts_with("ipconfig")
        || k.starts_with("virtio")
        || k.starts_with("sata")
        || k.starts_with("unused");
    if k == "description" {
        // Kept as `#` comment lines in the VM's config file; read
        // back as each line with its newline, as qemu-server does.
        json!(v.split('\n').map(|l| format!("{l}\n")).collect::<String>())
    } else if text_typed {
        json!(v)
    } else if let Ok(n) = v.parse::<i64>() {
        json!(n)
    } else {
        json!(v)
    }
}

/// A config change applied: every parameter but the request's own, tags
/// and description as qemu-server stores them, then the deletions.
fn set_config(vm: &mut Vm, p: &BTreeMap<String, String>) {
    for (k, v) in p {
        if matches!(
            k.as_str(),
            "node"
                | "vmid"
                | "digest"
                | "skiplock"
                | "delete"
                | "revert"
                | "background_delay"
                | "force"
        ) {
            continue;
        }
        if k == "tags" {
            // qemu-server keeps each tag once, sorted, `;`-separated.
            let tags: std::collections::BTreeSet<&str> =
                v.split([';', ',', ' ']).filter(|t| !t.is_empty()).collect();
            vm.config
                .insert(k.clone(), tags.into_iter().collect::<Vec<_>>().join(";"));
            continue;
        }
        if k == "description" {
            // Stored as comment lines: trailing newlines do not survive.
            vm.config
                .insert(k.clone(), v.trim_end_matches('\n').to_string());
            continue;
        }
        vm.config.insert(k.clone(), v.clone());
    }
    if let Some(del) = p.get("delete") {
        for k in del.split([',', ';', ' ']).filter(|k| !k.is_empty()) {
            vm.config.remove(k);
        }
    }
}

/// A VM's disk grown.
fn resize(s: &mut State, r: &Req<'_>) -> ApiResult {
    let Req { p, user, .. } = *r;
    let node = p.get("node").cloned().unwrap_or_default();
    let vmid = vmid_of(p, "vmid");
    match (r.method, r.template) {
        ("PUT", "/nodes/{node}/qemu/{vmid}/resize") => {
            let vm = if truthy(p.get("skiplock")) {
                s.vm(&node, vmid)?
            } else {
                s.unlocked(&node, vmid)?
            };
            let disk = p.get("disk").cloned().unwrap_or_default();
            let Some(entry) = vm.config.get(&disk).cloned() else {
                return Err(fail(500, format!("disk '{disk}' does not exist")));
            };
            if entry.contains("media=cdrom") {
                return Err(fail(500, "you can't resize a cdrom"));
            }
            if let Some(d) = p.get("digest")
                && *d != State::digest(vm)
            {
                return Err(fail(
                    500,
                    "detected modified configuration - file changed by other user? Try again.",
                ));
            }
            let cur = disk_bytes(&entry).unwrap_or(0);
            let size = p.get("size").cloned().unwrap_or_default();
            let new = match size.strip_prefix('+') {
                Some(add) => cur + parse_size(add).unwrap_or(0),
                None => parse_size(&size).unwrap_or(0),
            };
            if new < cur {
                return Err(fail(500, "shrinking disks is not supported"));
            }
            let updated = if entry.contains("size=") {
                entry
                    .split(',')
                    .map(|kv| {
                        if kv.starts_with("size=") {
                            format!("size={}", fmt_size(new))
                        } else {
                            kv.to_string()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            } else {
                format!("{entry},size={}", fmt_size(new))
            };
            s.vms
                .get_mut(&vmid)
                .expect("vm")
                .config
                .insert(disk, updated);
            Ok(s.task(
                &node,
                "qmresize",
                &vmid.to_string(),
                user,
                Effect::None,
                Effect::None,
            ))
        }
        _ => Err(not_implemented(r)),
    }
}

/// A VM's snapshots.
fn snapshots(s: &mut State, r: &Req<'_>) -> ApiResult {
    let Req { p, user, .. } = *r;
    let node = p.get("node").cloned().unwrap_or_default();
    let vmid = vmid_of(p, "vmid");
    match (r.method, r.template) {
        ("GET", "/nodes/{node}/qemu/{vmid}/snapshot") => {
            let vm = s.vm(&node, vmid)?;
            let mut out: Vec<Value> = Vec::new();
            let mut parent: Option<String> = None;
            for (n, t) in &vm.snapshots {
                let mut e = json!({"name": n, "snaptime": t, "vmstate": 0});
                if let Some(pn) = &parent {
                    e["parent"] = json!(pn);
                }
                out.push(e);
                parent = Some(n.clone());
            }
            let mut cur = json!({"name": "current"});
            if let Some(pn) = parent {
                cur["parent"] = json!(pn);
            }
            out.push(cur);
            Ok(Value::Array(out))
        }
        ("POST", "/nodes/{node}/qemu/{vmid}/snapshot") => {
            let vm = s.unlocked(&node, vmid)?;
            let name = p.get("snapname").cloned().unwrap_or_default();
            if vm.snapshots.iter().any(|(n, _)| *n == name) {
                return Err(fail(500, format!("snapshot name '{name}' already used")));
            }
            if vm.template() {
                return Err(fail(500, "you can't take a snapshot if it's a template"));
            }
            s.vms.get_mut(&vmid).expect("vm").lock = Some("snapshot".into());
            Ok(s.task(
                &node,
                "qmsnapshot",
                &vmid.to_string(),
                user,
                Effect::Snapshot(vmid, name),
                Effect::Unlock(vmid),
            ))
        }
        ("GET", "/nodes/{node}/qemu/{vmid}/snapshot/{snapname}") => {
            let vm = s.vm(&node, vmid)?;
            let name = p.get("snapname").cloned().unwrap_or_default();
            if !vm.snapshots.iter().any(|(n, _)| *n == name) {
                return Err(fail(500, format!("snapshot '{name}' does not exist")));
            }
            Ok(json!([{}, {}]))
        }
        ("DELETE", "/nodes/{node}/qemu/{vmid}/snapshot/{snapname}") => {
            let vm = s.unlocked(&node, vmid)?;
            let name = p.get("snapname").cloned().unwrap_or_default();
            if !vm.snapshots.iter().any(|(n, _)| *n == name) {
                return Err(fail(500, format!("snapshot '{name}' does not exist")));
            }
            s.vms.get_mut(&vmid).expect("vm").lock = Some("snapshot-delete".into());
            Ok(s.task(
                &node,
                "qmdelsnapshot",
                &vmid.to_string(),
                user,
                Effect::DeleteSnapshot(vmid, name),
                Effect::Unlock(vmid),
            ))
        }
        _ => Err(not_implemented(r)),
    }
}

/// A VM's power: its status, start, stop, shutdown and reboot.
fn power(s: &mut State, r: &Req<'_>) -> ApiResult {
    let Req {
        template, p, user, ..
    } = *r;
    let node = p.get("node").cloned().unwrap_or_default();
    let vmid = vmid_of(p, "vmid");
    match (r.method, r.template) {
        ("GET", "/nodes/{node}/qemu/{vmid}/status/current") => {
            let vm = s.vm(&node, vmid)?;
            let mut e = vm_entry(vmid, vm);
            e["ha"] = json!({"managed": 0});
            if vm.config.get("agent").is_some_and(|a| a.starts_with('1')) {
                e["agent"] = json!(1);
            }
            Ok(e)
        }
        ("POST", "/nodes/{node}/qemu/{vmid}/status/start") => {
            let vm = if truthy(p.get("skiplock")) {
                s.vm(&node, vmid)?
            } else {
                s.unlocked(&node, vmid)?
            };
            if vm.template() {
                return Err(fail(500, "you can't start a vm if it's a template"));
            }
            if vm.running {
                return Err(fail(500, format!("VM {vmid} already running")));
            }
            Ok(s.task(
                &node,
                "qmstart",
                &vmid.to_string(),
                user,
                Effect::Running(vmid, true),
                Effect::None,
            ))
        }
        ("POST", "/nodes/{node}/qemu/{vmid}/status/stop") => {
            if !truthy(p.get("skiplock")) {
                s.unlocked(&node, vmid)?;
            } else {
                s.vm(&node, vmid)?;
            }
            Ok(s.task(
                &node,
                "qmstop",
                &vmid.to_string(),
                user,
                Effect::Running(vmid, false),
                Effect::None,
            ))
        }
        (
            "POST",
            "/nodes/{node}/qemu/{vmid}/status/shutdown" | "/nodes/{node}/qemu/{vmid}/status/reboot",
        ) => {
            let vm = s.unlocked(&node, vmid)?;
            if !vm.running {
                return Err(fail(500, format!("VM {vmid} not running")));
            }
            if template.ends_with("shutdown") {
                Ok(s.task(
                    &node,
                    "qmshutdown",
                    &vmid.to_string(),
                    user,
                    Effect::Running(vmid, false),
                    Effect::None,
                ))
            } else {
                Ok(s.task(
                    &node,
                    "qmreboot",
                    &vmid.to_string(),
                    user,
                    Effect::Reboot(vmid),
                    Effect::None,
                ))
            }
        }
        _ => Err(not_implemented(r)),
    }
}

/// A task's status (its UPID).
fn tasks(s: &mut State, r: &Req<'_>) -> ApiResult {
    let Req { p, .. } = *r;
    let node = p.get("node").cloned().unwrap_or_default();
    match (r.method, r.template) {
        ("GET", "/nodes/{node}/tasks/{upid}/status") => {
            s.node(&node)?;
            let upid = p.get("upid").cloned().unwrap_or_default();
            let Some(t) = s.tasks.get(&upid) else {
                // Proxmox answers an unknown (or not yet visible) task with 400.
                let mut errors = BTreeMap::new();
                errors.insert("upid".into(), "unable to parse worker upid".into());
                return Err((400, "Parameter verification failed.".into(), errors));
            };
            if t.created.elapsed() < s.task_invisible {
                let mut errors = BTreeMap::new();
                errors.insert("upid".into(), "no such task".into());
                return Err((400, "Parameter verification failed.".into(), errors));
            }
            let mut out = json!({"upid": t.upid, "node": t.node, "pid": t.pid, "pstart": t.pstart,
                "starttime": t.starttime, "type": t.kind, "id": t.id, "user": t.user,
                "status": if t.done { "stopped" } else { "running" }});
            if t.done {
                out["exitstatus"] = json!(t.exit);
            }
            Ok(out)
        }
        _ => Err(not_implemented(r)),
    }
}
