//! Lab masters: the seed's kubeadm cluster as lab hosts ([`crate::host`]),
//! whose control plane grows for real.
//!
//! # What runs where
//!
//! [`ClusterLab::start`] makes hosts `m1` (the seed's only master, at
//! `198.18.N.11`) and workers `w1`, `w2` (`.21`, `.22`) on one lab network,
//! puts the **stand-in programs** on each host's PATH, starts sshd on each
//! (key auth, a client key and a `known_hosts` file for tests), then runs
//! the stand-in `kubeadm init --config /root/kubeadm.yaml` on `m1` and the
//! stand-in `kubeadm join` (worker) on `w1` and `w2`, over the same paths a
//! real cluster has: `/etc/kubernetes/{admin.conf, super-admin.conf,
//! kubelet.conf, controller-manager.conf, scheduler.conf}`,
//! `/etc/kubernetes/manifests/*.yaml`, kubeadm's PKI under
//! `/etc/kubernetes/pki` (cluster CA, apiserver, apiserver-kubelet-client,
//! front-proxy CA and client, `sa.key`/`sa.pub`, `etcd/{ca, server, peer,
//! healthcheck-client}`, apiserver-etcd-client: real certificates made
//! with `openssl`), `/var/lib/etcd`, `/var/lib/kubelet`.
//!
//! The stand-ins are one Python 3 program (`src/cluster/standin.py`,
//! stdlib + PyYAML, Debian `python3-yaml`) installed as
//! `/usr/local/lib/testlab/standin.py` and linked as
//! `/usr/local/bin/{kubeadm, kubelet, kube-apiserver,
//! kube-controller-manager, kube-scheduler, systemctl, crictl, containerd,
//! testlab-boot}`. They are **stand-ins, not the real programs**:
//! - `kubeadm`: `init [--config F]`; `init phase upload-config kubeadm
//!   --config F`; `init phase certs apiserver --config F` (SANs: the node
//!   name, `kubernetes...`, the first service IP, the advertise address,
//!   `controlPlaneEndpoint`'s host and `apiServer.certSANs`; an existing pair
//!   is left alone with kubeadm's line); `certs certificate-key` (a new
//!   64-hex key); `init phase upload-certs --upload-certs [--certificate-key
//!   K | --config F] [--skip-certificate-key-print]` (the key from the
//!   flag, else F's InitConfiguration `certificateKey`, else a new one;
//!   Secret `kube-system/kubeadm-certs`
//!   owned by a bootstrap token that expires 2 h later, as kubeadm does; the
//!   certificates are sealed with the key by a SHA-256 keystream and an
//!   HMAC, where kubeadm uses AES-GCM); `token create [--ttl D]
//!   [--print-join-command [--certificate-key K]]` (a real bootstrap-token
//!   Secret); `join EP --token T --discovery-token-ca-cert-hash sha256:H
//!   [--control-plane --certificate-key K] [--apiserver-advertise-address A]
//!   [--node-name N]`, or `join --config F` with F's JoinConfiguration
//!   (`kubeadm.k8s.io/v1beta3` or `v1beta4`: `discovery.bootstrapToken`'s
//!   `token`, `apiServerEndpoint`, `caCertHashes`,
//!   `unsafeSkipCAVerification`; `controlPlane.certificateKey`,
//!   `controlPlane.localAPIEndpoint.advertiseAddress`;
//!   `nodeRegistration.name`) (discovery through `cluster-info` pinned by the CA
//!   hash, the token checked against its Secret and expiry, the certificates
//!   downloaded and checked against the key, a **real etcd learner** added
//!   with `etcdctl member add --learner`, its manifest with
//!   `initial-cluster-state=existing`, promotion retried every 500 ms for up
//!   to 2 min, the control-plane label and taint); `reset -f` (removes the
//!   local etcd member unless it is the only one, stops the kubelet and the
//!   static pods, empties `/var/lib/etcd`, the manifests, the PKI and
//!   `/var/lib/kubelet`, deletes the kubeconfigs); `version [-o short]`;
//!   `upgrade plan` (cluster and kubeadm versions, the apply line);
//!   `upgrade apply vX.Y.Z [-y] [--force]` (refuses a downgrade or more
//!   than one minor up with kubeadm's `[upgrade/version] FATAL: the
//!   --version argument is invalid due to these errors` block; asks
//!   `[y/N]` on stdin without `-y`; rewrites the image tag of
//!   kube-apiserver, kube-controller-manager, kube-scheduler one at a time,
//!   backing up the old manifest under `/etc/kubernetes/tmp`, each time
//!   waiting until the kubelet runs the new pod, and for the apiserver
//!   until `/readyz` answers (so that apiserver is down for about a second);
//!   then stores `kubernetesVersion` in the kubeadm-config ConfigMap, sets
//!   the host's kubeadm version and prints `[upgrade/successful] SUCCESS!
//!   Your cluster was upgraded to "vX.Y.Z". Enjoy!`); `upgrade node` (the
//!   ConfigMap's version onto this node's manifests, the same way, and
//!   `[upgrade] The control plane instance for this node was successfully
//!   upgraded!`; on a worker `Skipping phase. Not a control plane node.`).
//!   Etcd's image and the kubelet are not upgraded (the kubelet is a
//!   package: [`ClusterLab::set_versions`]). The file [`UPGRADE_FAILS`]
//!   ([`ClusterLab::set_upgrade_fails`]) makes apply/node fail before
//!   changing anything: exit 1, `error execution phase: [upgrade/apply]
//!   FATAL: <its content>` on stderr.
//!   Lines are kubeadm's (DOMAIN.md section 9). As kubeadm, `--config`
//!   mixed with a flag it does not allow beside it (`--token`,
//!   `--certificate-key`...) fails with `can not mix '--config' with
//!   arguments [...]`, and a configuration document of another API version
//!   fails. Every call appends its own `/proc/self/cmdline` to
//!   [`KUBEADM_CMDLINE_LOG`] ([`ClusterLab::kubeadm_cmdlines`]).
//! - `kubelet`: runs the static pods of `/etc/kubernetes/manifests` as
//!   processes. As the real kubelet, every regular file there whose name
//!   does not begin with a dot is a static pod, whatever its extension, and
//!   the directory is watched with inotify, so a file that is there only
//!   for a moment (a temporary file renamed away) is seen too: each name is
//!   recorded in [`STATIC_POD_FILES`] ([`ClusterLab::static_pod_files`]).
//!   The pods run as processes (the container's `command`; restarted when they die or when
//!   the manifest changes, stopped when it goes; they survive a kubelet
//!   restart, as containers do), posts mirror Pods (with kubeadm's
//!   `etcd.advertise-client-urls` annotation, which `join` reads as kubeadm
//!   does), registers its Node and heartbeats `Ready` every second to the
//!   server its `kubelet.conf` names; for 2 s after a (re)start it reports
//!   `NotReady`. `kubelet --version` and `containerd --version` print the
//!   versions of `/etc/testlab/versions.json` ([`ClusterLab::set_versions`]).
//!   `nodeInfo.bootID` is the host's boot id.
//! - `kube-apiserver`: the real flags (`--tls-cert-file`, `--client-ca-file`,
//!   `--etcd-servers`...); a process on its host's `:6443` (so it dies and
//!   comes back with the host) that terminates TLS with that host's
//!   `/etc/kubernetes/pki/apiserver.{crt,key}`, answers `/readyz` and
//!   `/healthz` itself (ok only while the local etcd member answers
//!   `/health`), and forwards everything else to the lab's **single**
//!   in-process [`Store`] (the one source of cluster state; every master
//!   serves it): HTTPS on the lab gateway's address, authenticated with the
//!   lab's token. It does not authenticate or authorise clients (client
//!   certificates are verified against the CA when given). Like the real
//!   apiserver since 1.17 it re-reads its serving pair when the files change
//!   (checked at every new connection; a pair that does not load together is
//!   ignored until it does). ConfigMaps of the namespaces listed in
//!   `/etc/testlab/etcd-namespaces` (a line each)
//!   are kept in the real etcd instead, as the real apiserver keeps every
//!   object (`/registry/configmaps/NS/NAME`, JSON where it writes
//!   protobuf; get, list, create, delete; `resourceVersion` is the key's
//!   `mod_revision`; a write etcd does not commit fails with a 500): what a
//!   recovery of etcd loses is lost there. [`ClusterLab::set_cert_reload`] (the file
//!   `/etc/testlab/apiserver-no-cert-reload`) or
//!   `TESTLAB_APISERVER_CERT_RELOAD=0` turns that off.
//! - `kube-controller-manager`, `kube-scheduler`, `containerd`: processes
//!   that run and do nothing.
//!   A file one of its flags names (`--audit-policy-file`,
//!   `--encryption-provider-config`, `--oidc-ca-file`, the certificates...)
//!   must exist, and `--audit-log-path`'s directory, or it exits at once (a
//!   crash loop under the kubelet, its mirror Pod not Running), as the real
//!   one does.
//! - `crictl ps [-a] [-q] [--name RE] [--state running]`, `crictl stop|rm
//!   ID`: the static pods' processes as containers (stopping one makes the
//!   kubelet start it again: a static pod restart).
//! - `systemctl`: `start|stop|restart|status|is-active|is-enabled|enable
//!   [--now]|disable|daemon-reload` for the units `kubelet` and `containerd`
//!   (pid files in `/run/testlab/units`, logs in `/var/log/testlab`).
//! - `reboot`, `shutdown -r now`, `systemctl reboot` (and `poweroff`,
//!   `halt`, `shutdown -h`, `systemctl poweroff`): write [`POWER_REQUEST`]
//!   and exit 0 at once; the host cannot power-cycle itself, the lab does
//!   (see *Reboots* below).
//! - `testlab-boot`: run at every power on (a host service): starts the
//!   enabled units and runs `/etc/testlab/cloud-init-runcmd.sh` once per
//!   instance (see [`Template::auto_join_worker`]).
//!
//! Lab configuration lives in each host's `/etc/testlab` (`lab.json`: the
//! store's address, CA and token, the promotion delay; `versions.json`).
//! The kubeadm stand-in records there the join tokens and certificate keys
//! it issued (`issued-secrets`: `token ID.SECRET`, `certificate-key HEX`, a
//! line each, the lab's bookkeeping, not kubeadm's), so tests can search
//! hacli's outputs for those values ([`ISSUED_SECRETS`]).
//!
//! # Reboots
//!
//! Every lab host has a boot id of its own, new at every power on, in
//! `/proc/sys/kernel/random/boot_id` (a file bound over the kernel's,
//! which is the machine's; [`Host::boot_id`] from outside).
//!
//! A reboot asked from inside a host (above) is carried out by
//! [`ClusterLab::serve_power_requests`], which the test must keep calling
//! while the program under test runs: [`ClusterLab::serving_power_requests`]
//! runs a closure (e.g. a `hacli disrupt reboot` process) on another thread
//! and serves every 50 ms meanwhile. Serving a request powers the host off
//! at once (a power cut, not an orderly shutdown: every process dies, the
//! SSH session that asked drops if still open, sshd, etcd and the apiserver
//! stop answering), marks its Node's `Ready` condition `Unknown` (the node
//! lifecycle controller, with no grace), and powers it on again after the
//! reboot delay ([`ClusterLab::set_reboot_delay`], default
//! [`REBOOT_DELAY`]): a new boot id, sshd, then `testlab-boot` starts the
//! enabled units, the kubelet reports `NotReady` for 2 s then `Ready` and
//! runs the static pods, etcd rejoins, the apiserver answers `/readyz`.
//! Requests are served for the lab's own hosts, and for the Proxmox
//! stand-in's VMs once [`ClusterLab::serve_proxmox`] is given it (the VM's
//! status stays `running`); [`take_power_request`] is what a holder of
//! other hosts would poll.
//!
//! # Hosts made elsewhere
//!
//! [`ClusterLab::template`] gives a [`Template`] that provisions any lab
//! host the same way (stand-ins, lab configuration, the boot service):
//! pass [`Template::provisioner`] to
//! [`crate::proxmox::ProxmoxLab::attach_hosts_with`] and VMs cloned and
//! started there boot as blank Debian-like nodes ready for `kubeadm join`,
//! or, with [`Template::auto_join_worker`], join as a worker by themselves
//! through cloud-init (the template a backend must refuse).
//!
//! Everything dies with the lab: host processes with their hosts' PID
//! namespaces, the store with the lab's runtime.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::apiserver::{ApiServer, Store};
use crate::host::{Host, HostError, HostLab, HostSpec, ServiceGuard};
use crate::pki::Authority;

/// The stand-in programs (one Python file, dispatching on its name).
pub const STANDIN_PY: &str = include_str!("cluster/standin.py");

/// The names the stand-in is linked as in `/usr/local/bin`.
pub const STANDIN_NAMES: &[&str] = &[
    "kubeadm",
    "kubelet",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "systemctl",
    "crictl",
    "containerd",
    "testlab-boot",
    "reboot",
    "shutdown",
    "poweroff",
    "halt",
];

/// The file (inside a host) where the in-host `reboot`, `systemctl
/// reboot`, `shutdown -r now`, `poweroff`... stand-ins ask the lab to
/// power-cycle or power off the host (JSON `{"action": "reboot"|"poweroff",
/// "t": ...}`); [`ClusterLab::serve_power_requests`] acts on it.
pub const POWER_REQUEST: &str = "/etc/testlab/power-request";
/// The join tokens and certificate keys the kubeadm stand-in issued on a
/// host, a line each (see the module's doc).
pub const ISSUED_SECRETS: &str = "/etc/testlab/issued-secrets";

/// The file (inside a host) that makes `kubeadm upgrade apply|node` fail
/// there with its content as the message ([`ClusterLab::set_upgrade_fails`]).
pub const UPGRADE_FAILS: &str = "/etc/testlab/upgrade-fails";

/// The file (inside a host) that makes `kubeadm upgrade apply|node` there
/// stall on a component's new static pod and roll itself back, as kubeadm
/// does when its static-pod wait times out: `COMPONENT [SECONDS]` (the
/// wait, 3 s by default; kubeadm's is 5 min). Every manifest moved in that
/// run is put back, the kubelet runs the old pods again, kubeadm's version
/// is unchanged, and the command fails with kubeadm's message.
pub const UPGRADE_STALLS: &str = "/etc/testlab/upgrade-stalls";

/// The file (inside a host) where the kubeadm stand-in appends its own
/// `/proc/self/cmdline` at every call, one JSON list of words a line
/// ([`ClusterLab::kubeadm_cmdlines`]): what any local user could read of it.
pub const KUBEADM_CMDLINE_LOG: &str = "/var/log/testlab/kubeadm-cmdline.log";

/// The file (inside a host) where the kubelet stand-in records the name of
/// every file of `/etc/kubernetes/manifests` it took for a static pod, once
/// per name and kubelet run ([`ClusterLab::static_pod_files`]).
pub const STATIC_POD_FILES: &str = "/var/log/testlab/static-pod-files.log";

/// sudo's log file on a host with a sudo user
/// ([`ClusterLab::add_sudo_user`]): `Defaults logfile=` in its sudoers.
pub const SUDO_LOG: &str = "/var/log/testlab/sudo.log";

/// How long a host the lab reboots on its own request stays down by
/// default ([`ClusterLab::set_reboot_delay`]).
pub const REBOOT_DELAY: Duration = Duration::from_secs(1);

/// One power action the lab carried out for a host's own request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PowerEvent {
    /// The host.
    pub host: String,
    /// `reboot` or `poweroff`.
    pub action: String,
    /// When the lab powered it off.
    pub down: Instant,
    /// When it was powered on again and its services started (`None`:
    /// not yet, or a power off).
    pub up: Option<Instant>,
    /// The VM, for a host of the Proxmox stand-in
    /// ([`ClusterLab::serve_proxmox`]).
    pub vmid: Option<u32>,
}

/// The seed's Kubernetes version (kubeadm, kubelet, the manifests).
pub const KUBE_VERSION: &str = "v1.32.0";
/// The containerd version the stand-in reports by default.
pub const CONTAINERD_VERSION: &str = "1.7.24";

/// Last octets of the lab's hosts.
pub const M1: u8 = 11;
/// `m2` (a target master: a Proxmox clone, or [`ClusterLab::add_blank_host`]).
pub const M2: u8 = 12;
/// `m3` (a target master).
pub const M3: u8 = 13;
/// `w1`.
pub const W1: u8 = 21;
/// `w2`.
pub const W2: u8 = 22;
/// The VIP's last octet (on the load-balancer host).
pub const VIP: u8 = 99;
/// The load-balancer host `lb` ([`ClusterLab::add_load_balancer`]).
pub const LB: u8 = 5;
/// The pool (HAProxy backend) [`ClusterLab::add_load_balancer`] may fill.
pub const POOL: &str = "k8s-apiserver";

type Result<T> = std::result::Result<T, String>;

fn e(what: impl std::fmt::Display) -> String {
    what.to_string()
}

/// Versions a host reports (`kubeadm version -o short`, `kubelet
/// --version`, `containerd --version`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versions {
    /// `v1.32.0`.
    pub kubeadm: String,
    /// `v1.32.0`.
    pub kubelet: String,
    /// `1.7.24`.
    pub containerd: String,
}

impl Default for Versions {
    fn default() -> Self {
        Versions {
            kubeadm: KUBE_VERSION.into(),
            kubelet: KUBE_VERSION.into(),
            containerd: CONTAINERD_VERSION.into(),
        }
    }
}

/// One etcd member as the real member list reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdMember {
    /// Member id.
    pub id: u64,
    /// Name (empty for a learner that has not started yet).
    pub name: String,
    /// Peer URLs.
    pub peer_urls: Vec<String>,
    /// Client URLs (empty until started).
    pub client_urls: Vec<String>,
    /// Whether it is a non-voting learner.
    pub is_learner: bool,
}

/// Paths (in the root namespace) of an etcd client pair in kubeadm's
/// layout: the etcd CA and the health-check client of `m1`.
#[derive(Debug, Clone)]
pub struct EtcdTls {
    /// `etcd/ca.crt`.
    pub ca: PathBuf,
    /// `etcd/healthcheck-client.crt`.
    pub cert: PathBuf,
    /// `etcd/healthcheck-client.key`.
    pub key: PathBuf,
}

/// What provisions a lab host as a node of this lab's cluster (cloneable,
/// for [`crate::proxmox::ProxmoxLab::attach_hosts_with`]).
#[derive(Clone)]
pub struct Template {
    lab_json: String,
    store_ca: String,
    versions: Versions,
    /// A shell script cloud-init runs once at first boot, if any.
    runcmd: Option<String>,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Template")
            .field("versions", &self.versions)
            .field("auto_join", &self.runcmd.is_some())
            .finish_non_exhaustive()
    }
}

/// Write `content` to `path` inside `host` (through the host's own
/// filesystem, so that paths outside the private ones work too).
pub fn put(host: &Host, path: &str, content: &str, mode: &str) -> Result<()> {
    let out = host
        .exec_with(
            &[
                "sh",
                "-c",
                "set -e; mkdir -p \"$(dirname \"$1\")\"; cat > \"$1.tmp\"; chmod \"$2\" \"$1.tmp\"; mv \"$1.tmp\" \"$1\"",
                "sh",
                path,
                mode,
            ],
            &[],
            Some(content),
            Duration::from_secs(30),
        )
        .map_err(e)?;
    if !out.status.success() {
        return Err(format!(
            "host {}: writing {path}: {}",
            host.name(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

impl Template {
    /// The same template, its hosts reporting `versions`.
    pub fn with_versions(mut self, versions: Versions) -> Template {
        self.versions = versions;
        self
    }

    /// The same template, whose hosts join the cluster as workers by
    /// themselves at first boot (cloud-init runcmd running the worker
    /// `join_command`, as a badly prepared template VM would).
    pub fn auto_join_worker(mut self, join_command: &str) -> Template {
        self.runcmd = Some(format!("set -e\n{join_command}\n"));
        self
    }

    /// Install the stand-ins and the lab's configuration on `host`, and
    /// register the boot service (started now and at every power on).
    pub fn provision(&self, host: &mut Host) -> Result<()> {
        let src = host.dir().join("standin.py");
        std::fs::write(&src, STANDIN_PY).map_err(|x| format!("{}: {x}", src.display()))?;
        let mut script = String::from(
            "set -e; install -D -m 0755 \"$1\" /usr/local/lib/testlab/standin.py; mkdir -p /usr/local/bin /etc/testlab/enabled /var/log/testlab",
        );
        for n in STANDIN_NAMES {
            script.push_str(&format!(
                "; ln -sf /usr/local/lib/testlab/standin.py /usr/local/bin/{n}"
            ));
        }
        script.push_str("; : > /etc/testlab/enabled/kubelet; : > /etc/testlab/enabled/containerd");
        let src_s = src.to_string_lossy().into_owned();
        let out = host.exec(&["sh", "-c", &script, "sh", &src_s]).map_err(e)?;
        if !out.status.success() {
            return Err(format!(
                "host {}: installing the stand-ins: {}",
                host.name(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        put(host, "/etc/testlab/lab.json", &self.lab_json, "0644")?;
        put(host, "/etc/testlab/store-ca.crt", &self.store_ca, "0644")?;
        put(
            host,
            "/etc/testlab/versions.json",
            &versions_json(&self.versions),
            "0644",
        )?;
        if let Some(cmd) = &self.runcmd {
            put(host, "/etc/testlab/cloud-init-runcmd.sh", cmd, "0600")?;
        }
        host.add_service("testlab-boot", |h| {
            let out = h
                .exec(&["/usr/local/bin/testlab-boot"])
                .map_err(|x| HostError::Invalid(format!("testlab-boot: {x}")))?;
            if !out.status.success() {
                return Err(HostError::Invalid(format!(
                    "testlab-boot on {}: {}",
                    h.name(),
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            Ok(Box::new(()) as ServiceGuard)
        })
        .map_err(e)
    }

    /// [`Template::provision`] as the callback
    /// [`crate::proxmox::ProxmoxLab::attach_hosts_with`] takes.
    pub fn provisioner(&self) -> crate::proxmox::Provision {
        let t = self.clone();
        Arc::new(move |h: &mut Host| t.provision(h))
    }
}

fn versions_json(v: &Versions) -> String {
    json!({"kubeadm": v.kubeadm, "kubelet": v.kubelet, "containerd": v.containerd}).to_string()
}

/// The running lab cluster. Hosts are dropped (powered off) before the
/// store and the network.
pub struct ClusterLab {
    hosts: BTreeMap<String, Host>,
    lb: Option<String>,
    api: ApiServer,
    template: Template,
    /// The lab network.
    pub net: HostLab,
    rt: tokio::runtime::Runtime,
    client_key: PathBuf,
    client_public: String,
    known_hosts: PathBuf,
    dir: PathBuf,
    reboot_delay: Duration,
    /// Power actions served, the pending power-ons among them.
    power: Vec<PowerEvent>,
    proxmox: Option<Arc<crate::proxmox::ProxmoxLab>>,
}

impl std::fmt::Debug for ClusterLab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterLab")
            .field("net", &self.net.number())
            .field("hosts", &self.hosts.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn missing_programs() -> Option<String> {
    let mut missing = Vec::new();
    if crate::etcd::etcd_binary().is_none() {
        missing.push("etcd (Debian etcd-server)");
    }
    for (bin, pkg) in [
        ("/usr/bin/etcdctl", "etcdctl (Debian etcd-client)"),
        ("/usr/bin/openssl", "openssl (Debian openssl)"),
        ("/usr/bin/python3", "python3 (Debian python3)"),
    ] {
        if !Path::new(bin).exists() {
            missing.push(pkg);
        }
    }
    let yaml = std::process::Command::new("/usr/bin/python3")
        .args(["-c", "import yaml"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !yaml {
        missing.push("PyYAML (Debian python3-yaml)");
    }
    (!missing.is_empty()).then(|| format!("missing: {}", missing.join(", ")))
}

impl ClusterLab {
    /// Start the seed's cluster, or [`crate::skip::skip`] (a failure under
    /// `HACLI_REQUIRE_LABS=1`) and return None where lab hosts cannot be
    /// isolated or a program is missing.
    /// Panics when it should start and does not.
    pub fn start_or_skip(test: &str) -> Option<ClusterLab> {
        let net = HostLab::start_for(test);
        if !net.isolated_or_skip(test) {
            return None;
        }
        if let Some(m) = missing_programs() {
            crate::skip::skip(test, &m);
            return None;
        }
        match ClusterLab::start(net) {
            Ok(l) => Some(l),
            Err(x) => panic!("{test}: the cluster lab did not start: {x}"),
        }
    }

    /// Start the seed's cluster on `net` (isolated): `m1` with a
    /// one-member etcd, workers `w1` and `w2`, every Node Ready.
    pub fn start(net: HostLab) -> Result<ClusterLab> {
        if !net.isolated() {
            return Err("the cluster lab needs isolated lab hosts".into());
        }
        // Inside the lab network's directory: removed with it, and swept
        // with it when a test process dies.
        let dir = net.dir().join("cluster");
        std::fs::create_dir_all(&dir).map_err(|x| format!("{}: {x}", dir.display()))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(e)?;
        let gw = IpAddr::V4(net.gateway());
        let ca = Authority::new("hacli testlab API store CA").map_err(e)?;
        let pair = ca
            .issue_server("testlab-store", &["testlab-store"], &[gw])
            .map_err(e)?;
        let token = random_hex(24);
        let api = ApiServer::start(&rt, &[gw], &pair, &token, Store::default()).map_err(e)?;
        let lab_json = json!({
            "store": format!("{gw}:{}", api.port),
            "store_ca": "/etc/testlab/store-ca.crt",
            "store_token": token,
            "promote_delay_ms": 0,
        })
        .to_string();
        let template = Template {
            lab_json,
            store_ca: ca.cert_pem().to_string(),
            versions: Versions::default(),
            runcmd: None,
        };
        let (client_key, public) = crate::sshd::client_key(&dir, "ed25519", None).map_err(e)?;
        let known_hosts = dir.join("known_hosts");
        let mut lab = ClusterLab {
            hosts: BTreeMap::new(),
            lb: None,
            api,
            template,
            net,
            rt,
            client_key,
            client_public: public,
            known_hosts,
            dir,
            reboot_delay: REBOOT_DELAY,
            power: Vec::new(),
            proxmox: None,
        };
        for (name, k) in [("m1", M1), ("w1", W1), ("w2", W2)] {
            lab.add_blank_host(name, k)?;
        }
        lab.init_seed()?;
        let join = lab.worker_join_command()?;
        for w in ["w1", "w2"] {
            lab.run_secret(w, &join, Duration::from_secs(120))?;
        }
        for n in ["m1", "w1", "w2"] {
            lab.wait_node_ready(n, Duration::from_secs(60))?;
        }
        Ok(lab)
    }

    /// A new provisioned host `name` at `198.18.N.<octet>`, with sshd and
    /// the stand-ins, not part of the cluster (as a fresh VM): join it with
    /// `kubeadm join` over SSH.
    pub fn add_blank_host(&mut self, name: &str, octet: u8) -> Result<&mut Host> {
        let g = self.net.gateway().octets();
        let mut h = self
            .net
            .add_host_with(HostSpec {
                name: name.into(),
                addr: Some(Ipv4Addr::new(g[0], g[1], g[2], octet)),
                private_paths: vec!["/etc/testlab".into(), "/var/log/testlab".into()],
            })
            .map_err(e)?;
        h.start_sshd(vec![self.client_public.clone()]).map_err(e)?;
        self.template.provision(&mut h)?;
        self.hosts.insert(name.to_string(), h);
        self.write_known_hosts()?;
        Ok(self.hosts.get_mut(name).expect("just inserted"))
    }

    fn write_known_hosts(&self) -> Result<()> {
        let lines: Vec<String> = self
            .hosts
            .values()
            .filter_map(Host::known_hosts_line)
            .collect();
        std::fs::write(&self.known_hosts, lines.join("\n") + "\n").map_err(e)
    }

    fn init_seed(&mut self) -> Result<()> {
        let m1 = self.host("m1");
        let cfg = format!(
            "apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: {addr}
  bindPort: 6443
nodeRegistration:
  name: m1
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
clusterName: kubernetes
kubernetesVersion: {KUBE_VERSION}
networking:
  dnsDomain: cluster.local
  serviceSubnet: 10.96.0.0/12
  podSubnet: 10.244.0.0/16
",
            addr = m1.addr()
        );
        put(m1, "/root/kubeadm.yaml", &cfg, "0600")?;
        let out = m1
            .exec_with(
                &["kubeadm", "init", "--config", "/root/kubeadm.yaml"],
                &[],
                None,
                Duration::from_secs(180),
            )
            .map_err(e)?;
        if !out.status.success() {
            return Err(format!(
                "m1: kubeadm init (stand-in) failed: {}\n{}\nkubelet log:\n{}",
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim(),
                self.log("m1", "kubelet.log", 20)
            ));
        }
        Ok(())
    }

    /// The last `lines` of `/var/log/testlab/<file>` on host `name`
    /// (`kubelet.log`, `pod-etcd.log`, `pod-kube-apiserver.log`...).
    pub fn log(&self, name: &str, file: &str, lines: usize) -> String {
        let Some(h) = self.hosts.get(name) else {
            return String::new();
        };
        let text =
            std::fs::read_to_string(h.path(format!("/var/log/testlab/{file}"))).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Run a shell line holding a secret (a join command) on host `name`,
    /// fed on stdin so that no error quotes it. Output: stdout; an error
    /// carries stderr (kubeadm's messages, which hold no secret).
    pub fn run_secret(&self, name: &str, line: &str, timeout: Duration) -> Result<String> {
        let h = self.host(name);
        let out = h
            .exec_with(&["sh", "-s"], &[], Some(line), timeout)
            .map_err(|x| format!("host {name}: {}", redact(&x.to_string(), line)))?;
        if !out.status.success() {
            return Err(format!(
                "host {name}: the command fed on stdin failed ({}): {}",
                out.status,
                redact(String::from_utf8_lossy(&out.stderr).trim(), line)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `kubeadm token create --print-join-command` on `m1`: the worker
    /// join line (a secret: do not print it).
    pub fn worker_join_command(&self) -> Result<String> {
        let out = self.kubeadm("m1", &["token", "create", "--print-join-command"])?;
        out.lines()
            .find(|l| l.starts_with("kubeadm join "))
            .map(|l| l.trim().to_string())
            .ok_or_else(|| "kubeadm token create printed no join line".to_string())
    }

    /// Run the stand-in kubeadm on host `name` (argv without secrets):
    /// stdout, or an error with stderr.
    pub fn kubeadm(&self, name: &str, args: &[&str]) -> Result<String> {
        let mut argv = vec!["kubeadm"];
        argv.extend_from_slice(args);
        let out = self
            .host(name)
            .exec_with(&argv, &[], None, Duration::from_secs(180))
            .map_err(e)?;
        if !out.status.success() {
            return Err(format!(
                "host {name}: kubeadm {}: {}",
                args.first().unwrap_or(&""),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Host `name`.
    ///
    /// # Panics
    /// When the lab has no such host.
    pub fn host(&self, name: &str) -> &Host {
        self.hosts
            .get(name)
            .unwrap_or_else(|| panic!("the cluster lab has no host {name}"))
    }

    /// Host `name`, mutable (power it off, on, reboot).
    ///
    /// # Panics
    /// When the lab has no such host.
    pub fn host_mut(&mut self, name: &str) -> &mut Host {
        self.hosts
            .get_mut(name)
            .unwrap_or_else(|| panic!("the cluster lab has no host {name}"))
    }

    /// Every host, by name.
    pub fn hosts(&self) -> &BTreeMap<String, Host> {
        &self.hosts
    }

    /// Take a host out of the lab (e.g. to hand it to a test that drops
    /// it); the lab's other accessors no longer see it.
    pub fn remove_host(&mut self, name: &str) -> Option<Host> {
        self.hosts.remove(name)
    }

    /// The address of host `name`.
    pub fn addr(&self, name: &str) -> Ipv4Addr {
        self.host(name).addr()
    }

    /// The lab network's address with last octet `k` (`198.18.N.k`).
    pub fn lab_addr(&self, k: u8) -> Ipv4Addr {
        let g = self.net.gateway().octets();
        Ipv4Addr::new(g[0], g[1], g[2], k)
    }

    /// `m1`'s `admin.conf`, as a file of the root namespace (it names
    /// `https://<m1>:6443`, which the root namespace reaches).
    pub fn admin_conf(&self) -> PathBuf {
        self.host("m1").path("/etc/kubernetes/admin.conf")
    }

    /// The cluster CA (`m1`'s `/etc/kubernetes/pki/ca.crt`) as a path of
    /// the root namespace.
    pub fn ca_crt(&self) -> PathBuf {
        self.host("m1").path("/etc/kubernetes/pki/ca.crt")
    }

    /// The single store of the cluster's objects.
    pub fn store(&self) -> &Store {
        &self.api.store
    }

    /// The store's address (HTTPS, lab token): what the apiserver
    /// stand-ins forward to.
    pub fn store_addr(&self) -> SocketAddr {
        SocketAddr::new(self.api.addrs[0], self.api.port)
    }

    /// The private key that every host's sshd accepts (user `root`).
    pub fn client_key(&self) -> &Path {
        &self.client_key
    }

    /// A `known_hosts` file naming every host's key (rewritten when a host
    /// is added with [`ClusterLab::add_blank_host`]).
    pub fn known_hosts(&self) -> &Path {
        &self.known_hosts
    }

    /// The lab's scratch directory (removed with the lab).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A template that provisions other hosts as nodes of this lab.
    pub fn template(&self) -> Template {
        self.template.clone()
    }

    /// `m1`'s etcd client pair (root-namespace paths).
    pub fn etcd_tls(&self) -> EtcdTls {
        let m1 = self.host("m1");
        EtcdTls {
            ca: m1.path("/etc/kubernetes/pki/etcd/ca.crt"),
            cert: m1.path("/etc/kubernetes/pki/etcd/healthcheck-client.crt"),
            key: m1.path("/etc/kubernetes/pki/etcd/healthcheck-client.key"),
        }
    }

    /// Client URLs of etcd: every lab host running an etcd static pod,
    /// and the target masters' addresses (`.12`, `.13`, e.g. Proxmox
    /// clones, which are not the lab's hosts) when their `:2379` answers.
    pub fn etcd_endpoints(&self) -> Vec<String> {
        let mut eps: Vec<String> = self
            .hosts
            .values()
            .filter(|h| h.is_on() && h.path("/etc/kubernetes/manifests/etcd.yaml").exists())
            .map(|h| format!("https://{}:2379", h.addr()))
            .collect();
        for k in [M2, M3] {
            let a = self.lab_addr(k);
            let url = format!("https://{a}:2379");
            if !eps.contains(&url)
                && std::net::TcpStream::connect_timeout(
                    &SocketAddr::new(IpAddr::V4(a), 2379),
                    Duration::from_millis(100),
                )
                .is_ok()
            {
                eps.push(url);
            }
        }
        eps
    }

    /// The real etcd member list (`etcdctl member list -w json` from the
    /// root namespace, with `m1`'s health-check client pair).
    pub fn etcd_members(&self) -> Result<Vec<EtcdMember>> {
        let eps = self.etcd_endpoints();
        if eps.is_empty() {
            return Err("no host runs etcd".into());
        }
        let t = self.etcd_tls();
        let out = std::process::Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", eps.join(",")))
            .arg(format!("--cacert={}", t.ca.display()))
            .arg(format!("--cert={}", t.cert.display()))
            .arg(format!("--key={}", t.key.display()))
            .args([
                "--dial-timeout=3s",
                "--command-timeout=5s",
                "member",
                "list",
                "-w",
                "json",
            ])
            .output()
            .map_err(|x| format!("etcdctl: {x}"))?;
        if !out.status.success() {
            return Err(format!(
                "etcdctl member list at {}: {}",
                eps.join(","),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let v: Value = serde_json::from_slice(&out.stdout).map_err(e)?;
        let strs = |m: &Value, k: &str| -> Vec<String> {
            m.get(k)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        Ok(v.get("members")
            .and_then(Value::as_array)
            .map(|ms| {
                ms.iter()
                    .map(|m| EtcdMember {
                        id: m.get("ID").and_then(Value::as_u64).unwrap_or(0),
                        name: m
                            .get("name")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                        peer_urls: strs(m, "peerURLs"),
                        client_urls: strs(m, "clientURLs"),
                        is_learner: m.get("isLearner").and_then(Value::as_bool).unwrap_or(false),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The Node object `name`, from the store.
    pub fn node(&self, name: &str) -> Option<Value> {
        self.store()
            .get(ApiServer::resource("nodes"), "", name)
            .ok()
    }

    /// Whether Node `name` is Ready.
    pub fn node_ready(&self, name: &str) -> bool {
        self.node(name).is_some_and(|n| {
            n.pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c.get("type").and_then(Value::as_str) == Some("Ready")
                            && c.get("status").and_then(Value::as_str) == Some("True")
                    })
                })
        })
    }

    /// Wait until Node `name` is Ready.
    pub fn wait_node_ready(&self, name: &str, timeout: Duration) -> Result<()> {
        let until = Instant::now() + timeout;
        while !self.node_ready(name) {
            if Instant::now() > until {
                return Err(format!(
                    "Node {name} was not Ready within {timeout:?}; its kubelet log:\n{}",
                    self.log(name, "kubelet.log", 15)
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// Add the login user `user` on host `name` (shell `/bin/sh`, the
    /// lab's client key, as root's), allowed to run anything as root with
    /// `sudo -n` (NOPASSWD), with sudo's log in [`SUDO_LOG`]
    /// (`Defaults logfile=`, one line per command: `loglinelen=0`, so that
    /// no value is split over two lines): the host's own `/etc/sudoers`,
    /// otherwise Debian's. The host's name goes into its `/etc/hosts` (as
    /// Debian's installer puts it), or sudo would ask DNS for it, which the
    /// lab network does not answer. Needs the Debian `sudo` package.
    pub fn add_sudo_user(&self, name: &str, user: &str) -> Result<()> {
        if !Path::new("/usr/bin/sudo").exists() {
            return Err("sudo is not installed (Debian sudo; scripts/test.sh installs it)".into());
        }
        let h = self.host(name);
        let out = h
            .exec(&[
                "sh",
                "-c",
                "set -e; id -u \"$1\" >/dev/null 2>&1 || useradd -m -s /bin/sh \"$1\"; usermod -p '*' \"$1\"; h=$(hostname); grep -qw -- \"$h\" /etc/hosts || printf '127.0.1.1\\t%s\\n' \"$h\" >> /etc/hosts",
                "sh",
                user,
            ])
            .map_err(e)?;
        if !out.status.success() {
            return Err(format!(
                "host {name}: adding user {user}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        self.set_sudo(name, user, true)
    }

    /// Allow `user` on host `name` to run anything as root with `sudo -n`
    /// (`allowed`), or nothing (then `sudo -n` answers `a password is
    /// required`): its `/etc/sudoers`, sudo logging to [`SUDO_LOG`].
    pub fn set_sudo(&self, name: &str, user: &str, allowed: bool) -> Result<()> {
        let mut sudoers = format!(
            "# testlab: Debian's defaults, and a log file the test reads.\nDefaults\tenv_reset\nDefaults\tmail_badpass\nDefaults\tsecure_path=\"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"\nDefaults\tuse_pty\nDefaults\tlogfile={SUDO_LOG}\nDefaults\tloglinelen=0\nroot\tALL=(ALL:ALL) ALL\n"
        );
        if allowed {
            sudoers.push_str(&format!("{user}\tALL=(ALL:ALL) NOPASSWD: ALL\n"));
        }
        put(self.host(name), "/etc/sudoers", &sudoers, "0440")
    }

    /// sudo's log on host `name` ([`SUDO_LOG`]; empty when there is none).
    pub fn sudo_log(&self, name: &str) -> String {
        std::fs::read_to_string(self.host(name).path(SUDO_LOG)).unwrap_or_default()
    }

    /// Every command line the kubeadm stand-in ran with on host `name`,
    /// as its `/proc/self/cmdline` showed it ([`KUBEADM_CMDLINE_LOG`]).
    pub fn kubeadm_cmdlines(&self, name: &str) -> Result<Vec<Vec<String>>> {
        let p = self.host(name).path(KUBEADM_CMDLINE_LOG);
        let text = match std::fs::read_to_string(&p) {
            Ok(t) => t,
            Err(x) if x.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(x) => return Err(format!("{}: {x}", p.display())),
        };
        text.lines()
            .enumerate()
            .map(|(i, l)| {
                serde_json::from_str(l).map_err(|x| format!("{}:{}: {x}", p.display(), i + 1))
            })
            .collect()
    }

    /// The names of every file the kubelet stand-in of host `name` took
    /// for a static pod in `/etc/kubernetes/manifests`, sorted, once each
    /// ([`STATIC_POD_FILES`]).
    pub fn static_pod_files(&self, name: &str) -> Vec<String> {
        let text =
            std::fs::read_to_string(self.host(name).path(STATIC_POD_FILES)).unwrap_or_default();
        let set: std::collections::BTreeSet<String> = text.lines().map(str::to_string).collect();
        set.into_iter().collect()
    }

    /// The versions host `name` reports now (its
    /// `/etc/testlab/versions.json`); None when it cannot be read.
    pub fn versions(&self, name: &str) -> Option<Versions> {
        let text =
            std::fs::read_to_string(self.host(name).path("/etc/testlab/versions.json")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        let field = |k: &str| v.get(k)?.as_str().map(str::to_string);
        Some(Versions {
            kubeadm: field("kubeadm")?,
            kubelet: field("kubelet")?,
            containerd: field("containerd")?,
        })
    }

    /// Set the versions host `name` reports (for the version-mismatch
    /// test), as if other binaries were installed: the programs print them
    /// at once; the Node reports the new kubelet version once the kubelet
    /// is restarted (`systemctl restart kubelet`), as after an upgrade.
    pub fn set_versions(&self, name: &str, v: &Versions) -> Result<()> {
        put(
            self.host(name),
            "/etc/testlab/versions.json",
            &versions_json(v),
            "0644",
        )
    }

    /// Let the apiserver stand-in on host `name` re-read its serving
    /// certificate when it changes (the default), or not (a fallback test:
    /// then only a restart of its static pod serves a new pair).
    pub fn set_cert_reload(&self, name: &str, enabled: bool) -> Result<()> {
        let h = self.host(name);
        let p = h.path("/etc/testlab/apiserver-no-cert-reload");
        if enabled {
            match std::fs::remove_file(&p) {
                Ok(()) => Ok(()),
                Err(x) if x.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(x) => Err(format!("{}: {x}", p.display())),
            }
        } else {
            std::fs::write(&p, "").map_err(|x| format!("{}: {x}", p.display()))
        }
    }

    /// Make the apiserver stand-in on host `name` fail `/readyz` and
    /// `/healthz` (`[-]etcd failed`) while `ready` is false, whatever its
    /// etcd says (the file `/etc/testlab/apiserver-not-ready`; on a host
    /// that is not the lab's, e.g. a Proxmox clone, create it over SSH).
    pub fn set_apiserver_ready(&self, name: &str, ready: bool) -> Result<()> {
        let h = self.host(name);
        let out = h
            .exec(&[
                "sh",
                "-c",
                if ready {
                    "rm -f /etc/testlab/apiserver-not-ready"
                } else {
                    ": > /etc/testlab/apiserver-not-ready"
                },
            ])
            .map_err(e)?;
        if !out.status.success() {
            return Err(format!(
                "host {name}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(())
    }

    /// Wait `ms` milliseconds after adding an etcd learner before the
    /// stand-in kubeadm starts promoting it (every host, from now on), so
    /// tests see the learner for longer.
    pub fn set_promote_delay(&mut self, ms: u64) -> Result<()> {
        let mut v: Value = serde_json::from_str(&self.template.lab_json).map_err(e)?;
        v["promote_delay_ms"] = json!(ms);
        self.template.lab_json = v.to_string();
        for h in self.hosts.values().filter(|h| h.is_on()) {
            put(h, "/etc/testlab/lab.json", &self.template.lab_json, "0644")?;
        }
        Ok(())
    }

    /// Add the load-balancer host `lb` (`198.18.N.5`): the VIP
    /// (`198.18.N.99/32`, re-added at every boot) on its `eth0`, a real
    /// HAProxy in master-worker mode (a host service, so it comes back
    /// with the host) with [`crate::lblab::LINUX_HAPROXY_CFG`] in
    /// `/etc/haproxy/haproxy.cfg` (its runtime API on `:9999`, reload with
    /// `kill -USR2 $(cat /etc/haproxy/haproxy.pid)`), and sshd. With
    /// `pool` non-empty, the configuration also has frontend `k8s-api` on
    /// `VIP:6443` and backend [`POOL`] with those masters' `:6443`,
    /// checked with HTTPS `GET /readyz` every 200 ms (fall 2, rise 1); with
    /// it empty, the load-balancer backend under test adds them.
    pub fn add_load_balancer(&mut self, pool: &[&str]) -> Result<&mut Host> {
        let g = self.net.gateway().octets();
        let vip = self.lab_addr(VIP);
        let mut cfg = crate::lblab::LINUX_HAPROXY_CFG.to_string();
        if !pool.is_empty() {
            cfg.push_str(&format!(
                "\nfrontend k8s-api\n    bind {vip}:6443\n    default_backend {POOL}\n\nbackend {POOL}\n    option httpchk GET /readyz\n    http-check expect status 200\n"
            ));
            for m in pool {
                cfg.push_str(&format!(
                    "    server {m} {}:6443 check check-ssl verify none inter 200ms fall 2 rise 1\n",
                    self.addr(m)
                ));
            }
        }
        let mut h = self
            .net
            .add_host_with(HostSpec {
                name: "lb".into(),
                addr: Some(Ipv4Addr::new(g[0], g[1], g[2], LB)),
                private_paths: vec!["/etc/haproxy".into()],
            })
            .map_err(e)?;
        std::fs::write(h.path("/etc/haproxy/haproxy.cfg"), cfg).map_err(e)?;
        let cidr = format!("{vip}/32");
        h.add_service("vip", move |h| {
            h.add_address(&cidr)?;
            Ok(Box::new(()) as ServiceGuard)
        })
        .map_err(e)?;
        h.add_process_service(
            "haproxy",
            &[
                "haproxy",
                "-W",
                "-db",
                "-f",
                "/etc/haproxy/haproxy.cfg",
                "-p",
                "/etc/haproxy/haproxy.pid",
            ],
            &[],
        )
        .map_err(e)?;
        h.wait_port(9999, Duration::from_secs(10)).map_err(e)?;
        h.start_sshd(vec![self.client_public.clone()]).map_err(e)?;
        self.hosts.insert("lb".into(), h);
        self.lb = Some("lb".into());
        self.write_known_hosts()?;
        Ok(self.hosts.get_mut("lb").expect("just inserted"))
    }

    /// The client key's public half (an `authorized_keys` line).
    pub fn client_public(&self) -> &str {
        &self.client_public
    }

    /// The VIP (`198.18.N.99`).
    pub fn vip(&self) -> Ipv4Addr {
        self.lab_addr(VIP)
    }

    /// A topology (hacore's YAML) for migrating this lab's seed to three
    /// masters: `m1` (the seed), `m2`, `m3` (to be cloned: vmids 112, 113
    /// on hypervisor `pve`, at `198.18.N.12`, `.13`), workers `w1`, `w2`,
    /// the endpoint `VIP:6443` (`k8s-api.testlab.lan`), etcd's endpoints
    /// and `m1`'s etcd PKI directory as root-namespace paths. With the
    /// load-balancer host ([`ClusterLab::add_load_balancer`]), its
    /// `loadBalancer` (kind `haproxy`, managed over SSH with the lab's
    /// client key and `known_hosts`, runtime API `tcp:lb:9999`). `extra` is
    /// appended as is (top-level keys, e.g. a `proxmox:` section).
    pub fn topology_yaml(&self, extra: &str) -> String {
        let a = |k: u8| self.lab_addr(k);
        let etcd_eps: Vec<String> = [M1, M2, M3]
            .iter()
            .map(|k| format!("https://{}:2379", a(*k)))
            .collect();
        let lb = match &self.lb {
            Some(name) => format!(
                "loadBalancer:
  kind: haproxy
  frontend: {vip}:6443
  pool: {POOL}
  healthCheck: {{ type: https, path: /readyz, interval: 200ms, fall: 2, rise: 1 }}
  runtimeApi: tcp:{lb}:9999
  manage: {{ transport: ssh, host: {lb}, user: root, identityFile: {key}, knownHosts: {kh}, configPath: /etc/haproxy/haproxy.cfg, reloadCommand: \"kill -USR2 $(cat /etc/haproxy/haproxy.pid)\" }}
",
                vip = a(VIP),
                lb = self.addr(name),
                key = self.client_key.display(),
                kh = self.known_hosts.display(),
            ),
            None => String::new(),
        };
        format!(
            "cluster: testlab
controlPlaneEndpoint:
  address: {vip}
  port: 6443
  dnsName: k8s-api.testlab.lan
network:
  cidr: {subnet}
  gateway: {gw}
etcd:
  mode: stacked
  learnerJoins: true
  endpoints: [{eps}]
  pki: {pki}
{lb}hypervisors:
  - {{ name: pve, memoryGiB: 256, cpus: 64 }}
nodes:
  - {{ name: m1, role: control-plane, address: {m1}, hypervisor: pve, vmid: 111, cpus: 2, memoryGiB: 4, diskGiB: 32 }}
  - {{ name: m2, role: control-plane, address: {m2}, hypervisor: pve, vmid: 112, cpus: 2, memoryGiB: 4, diskGiB: 32 }}
  - {{ name: m3, role: control-plane, address: {m3}, hypervisor: pve, vmid: 113, cpus: 2, memoryGiB: 4, diskGiB: 32 }}
  - {{ name: w1, role: worker, address: {w1}, hypervisor: pve, vmid: 121, cpus: 2, memoryGiB: 4, diskGiB: 32 }}
  - {{ name: w2, role: worker, address: {w2}, hypervisor: pve, vmid: 122, cpus: 2, memoryGiB: 4, diskGiB: 32 }}
{extra}",
            vip = a(VIP),
            subnet = self.net.subnet(),
            gw = self.net.gateway(),
            eps = etcd_eps.join(", "),
            pki = self.host("m1").path("/etc/kubernetes/pki/etcd").display(),
            m1 = a(M1),
            m2 = a(M2),
            m3 = a(M3),
            w1 = a(W1),
            w2 = a(W2),
        )
    }

    /// How long a host that asked for a reboot stays down (default
    /// [`REBOOT_DELAY`]).
    pub fn set_reboot_delay(&mut self, delay: Duration) {
        self.reboot_delay = delay;
    }

    /// Make `kubeadm upgrade apply|node` on host `name` fail (exit 1, the
    /// line `error execution phase: [upgrade/apply] FATAL: <message>` on
    /// stderr, nothing changed) while `message` is `Some`: the file
    /// [`UPGRADE_FAILS`] (on a host that is not the lab's, create it over
    /// SSH).
    pub fn set_upgrade_fails(&self, name: &str, message: Option<&str>) -> Result<()> {
        match message {
            Some(m) => put(self.host(name), UPGRADE_FAILS, &format!("{m}\n"), "0644"),
            None => {
                let out = self
                    .host(name)
                    .exec(&["rm", "-f", UPGRADE_FAILS])
                    .map_err(e)?;
                if !out.status.success() {
                    return Err(format!(
                        "host {name}: rm {UPGRADE_FAILS}: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    ));
                }
                Ok(())
            }
        }
    }

    /// The power actions served so far ([`ClusterLab::serve_power_requests`]).
    pub fn power_events(&self) -> &[PowerEvent] {
        &self.power
    }

    /// One round of the lab's "hypervisor": for every host that asked
    /// through [`POWER_REQUEST`] (the in-host `reboot`, `systemctl reboot`,
    /// `shutdown -r now`, `poweroff`), power it off (every process dies,
    /// sshd included, so the SSH session that asked drops), mark its Node's
    /// `Ready` condition `Unknown` (`NodeStatusUnknown`, as the node
    /// lifecycle controller does once the kubelet stops posting, here with
    /// no grace), and for a reboot power it on again once the reboot delay
    /// has passed (a new boot id; the boot service starts the enabled units,
    /// the kubelet the static pods). Hosts powered off by the test are left
    /// alone. Returns the names of the hosts it powered off or on.
    pub fn serve_power_requests(&mut self) -> Result<Vec<String>> {
        let mut acted = Vec::new();
        let names: Vec<String> = self.hosts.keys().cloned().collect();
        for name in names {
            let h = &self.hosts[&name];
            if !h.is_on() {
                continue;
            }
            let Some(action) = take_power_request(h) else {
                continue;
            };
            self.host_mut(&name)
                .power_off()
                .map_err(|x| format!("host {name}: power off: {x}"))?;
            self.node_unknown(&name);
            self.power.push(PowerEvent {
                host: name.clone(),
                action,
                down: Instant::now(),
                up: None,
                vmid: None,
            });
            acted.push(name);
        }
        if let Some(px) = self.proxmox.clone() {
            for (vmid, name, action) in px.take_power_requests() {
                self.node_unknown(&name);
                self.power.push(PowerEvent {
                    host: name.clone(),
                    action,
                    down: Instant::now(),
                    up: None,
                    vmid: Some(vmid),
                });
                acted.push(name);
            }
        }
        let due: Vec<usize> = self
            .power
            .iter()
            .enumerate()
            .filter(|(_, p)| {
                p.action == "reboot" && p.up.is_none() && p.down.elapsed() >= self.reboot_delay
            })
            .map(|(i, _)| i)
            .collect();
        for i in due {
            let name = self.power[i].host.clone();
            let r = match (self.power[i].vmid, &self.proxmox) {
                (Some(vmid), Some(px)) => px.power_on_host(vmid),
                _ => match self.hosts.get_mut(&name) {
                    Some(h) => h
                        .power_on()
                        .map_err(|x| format!("host {name}: power on: {x}")),
                    None => Ok(()),
                },
            };
            // Counted as served even when the boot failed (no retry loop).
            self.power[i].up = Some(Instant::now());
            r?;
            acted.push(name);
        }
        Ok(acted)
    }

    /// Serve also the power requests of the Proxmox stand-in's VMs (lab
    /// hosts it holds, e.g. masters cloned there): they are powered off,
    /// their Node marked, and powered on again, as the lab's own.
    pub fn serve_proxmox(&mut self, pve: Arc<crate::proxmox::ProxmoxLab>) {
        self.proxmox = Some(pve);
    }

    /// Run `f` on another thread while this thread serves the hosts' power
    /// requests ([`ClusterLab::serve_power_requests`], every 50 ms), until
    /// `f` returns, then serve what is left and finish pending reboots
    /// (waiting up to the reboot delay and 5 s): e.g. a `hacli disrupt
    /// reboot` process (run by `f`) that reboots a host over SSH and waits
    /// for it to come back. Errors of a round are printed on stderr.
    pub fn serving_power_requests<T: Send>(&mut self, f: impl FnOnce() -> T + Send) -> T {
        let r = std::thread::scope(|s| {
            let job = s.spawn(f);
            while !job.is_finished() {
                if let Err(x) = self.serve_power_requests() {
                    eprintln!("testlab: serving power requests: {x}");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            job.join()
        });
        // Requests made last (e.g. `ssh host reboot` returned at once),
        // then the reboots still waiting to power on.
        let until = Instant::now() + self.reboot_delay + Duration::from_secs(5);
        loop {
            if let Err(x) = self.serve_power_requests() {
                eprintln!("testlab: serving power requests: {x}");
            }
            let pending = self
                .power
                .iter()
                .any(|p| p.action == "reboot" && p.up.is_none());
            if !pending || Instant::now() >= until {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        r.unwrap_or_else(|p| std::panic::resume_unwind(p))
    }

    /// Mark Node `name`'s `Ready` condition `Unknown` in the store (what the
    /// node lifecycle controller does when a kubelet stops posting).
    fn node_unknown(&self, name: &str) {
        let Some(mut n) = self.node(name) else {
            return;
        };
        let t = chrono_now();
        if let Some(cs) = n
            .pointer_mut("/status/conditions")
            .and_then(Value::as_array_mut)
        {
            for c in cs.iter_mut() {
                if c.get("type").and_then(Value::as_str) == Some("Ready") {
                    c["status"] = json!("Unknown");
                    c["reason"] = json!("NodeStatusUnknown");
                    c["message"] = json!("Kubelet stopped posting node status.");
                    c["lastTransitionTime"] = json!(t);
                }
            }
        }
        if let Err(x) = self.store().put(n) {
            eprintln!("testlab: marking Node {name} Unknown: {x}");
        }
    }

    /// Run `f` on the lab's runtime (e.g. a `kube` client).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }
}

impl Drop for ClusterLab {
    fn drop(&mut self) {
        // Hosts first (their processes die with them), then the store.
        self.hosts.clear();
    }
}

/// Take host `h`'s pending [`POWER_REQUEST`], if any: `reboot` or
/// `poweroff` (the request file is removed). For holders of lab hosts
/// other than [`ClusterLab`] (which serves its own).
pub fn take_power_request(h: &Host) -> Option<String> {
    let req = request_file(h);
    let text = std::fs::read_to_string(&req).ok()?;
    let _ = std::fs::remove_file(&req);
    Some(
        serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("action").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| "reboot".into()),
    )
}

/// Where the root side reads a host's [`POWER_REQUEST`]: its private
/// `/etc/testlab`, else the host's overlay upper layer.
fn request_file(h: &Host) -> PathBuf {
    h.try_path(POWER_REQUEST).unwrap_or_else(|_| {
        h.dir()
            .join("upper")
            .join(POWER_REQUEST.trim_start_matches('/'))
    })
}

/// Now, as RFC 3339 (UTC, seconds).
fn chrono_now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn random_hex(bytes: usize) -> String {
    use ring::rand::SecureRandom as _;
    let mut b = vec![0u8; bytes];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .expect("system randomness");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `text` with every word of `secret_line` that looks like a token, a key
/// or a hash replaced by `<redacted>`.
fn redact(text: &str, secret_line: &str) -> String {
    let mut t = text.to_string();
    for w in secret_line.split_whitespace() {
        if w.len() >= 16 && !w.starts_with("--") {
            t = t.replace(w, "<redacted>");
        }
    }
    t
}
