//! What each step runs, as a person reviewing the plan reads it: the
//! command on the node (`ssh NODE kubeadm ...`), the etcd call, the
//! Proxmox API request, the load balancer's change. Secrets never appear:
//! the bootstrap token is `$TOKEN`, the certificate key `<redacted>` (the
//! backend hands both to `kubeadm` in a 0600 file on stdin, never on a
//! command line).

use crate::backend::{CpOp, HvOp, LbOp, Op};
use crate::topology::{LbKind, Topology};

/// The file `kubeadm` reads its configuration from on the node (written
/// 0600 by the backend, removed after).
const KUBEADM_CONFIG: &str = "/etc/kubernetes/tmp/hacli-kubeadm.yaml";

/// etcdctl's TLS flags on a master (kubeadm's paths).
const ETCDCTL: &str = "etcdctl --cacert=/etc/kubernetes/pki/etcd/ca.crt --cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt --key=/etc/kubernetes/pki/etcd/healthcheck-client.key";

/// What `op` runs, in the plan whose target topology is `to`.
pub fn describe(op: &Op, to: &Topology) -> String {
    match op {
        Op::Hypervisor(h) => hypervisor(h),
        Op::LoadBalancer(l) => load_balancer(l, to),
        Op::ControlPlane(c) => migration(c, to).unwrap_or_else(|| disruption(c)),
    }
}

fn hypervisor(op: &HvOp) -> String {
    match op {
        HvOp::SnapshotVm { host, vmid, name } => {
            format!("Proxmox API: POST /nodes/{host}/qemu/{vmid}/snapshot snapname={name}")
        }
        HvOp::CloneVm {
            host,
            template,
            vmid,
            name,
            cpus,
            memory_gib,
            disk_gib,
            address,
            gateway,
            storage,
            ..
        } => {
            let storage = storage
                .as_ref()
                .map(|s| format!(" storage={s}"))
                .unwrap_or_default();
            let gw = gateway.map(|g| format!(",gw={g}")).unwrap_or_default();
            format!(
                "Proxmox API: POST /nodes/{host}/qemu/{template}/clone newid={vmid} name={name} full=1{storage}; \
                 POST /nodes/{host}/qemu/{vmid}/config cores={cpus} memory={} ipconfig0=ip={address}{gw} (cloud-init; the hacli mark in the description); \
                 PUT /nodes/{host}/qemu/{vmid}/resize size={disk_gib}G",
                u64::from(*memory_gib) * 1024
            )
        }
        HvOp::StartVm { host, vmid } => {
            format!("Proxmox API: POST /nodes/{host}/qemu/{vmid}/status/start")
        }
        HvOp::DeleteVm { host, vmid, name } => format!(
            "Proxmox API: only if VM {vmid} carries the hacli mark and is named {name}: POST /nodes/{host}/qemu/{vmid}/status/stop; DELETE /nodes/{host}/qemu/{vmid}?purge=1"
        ),
        HvOp::HaAntiAffinity { rule, vmids } => {
            let ids: Vec<String> = vmids.iter().map(|v| format!("vm:{v}")).collect();
            format!(
                "Proxmox API: POST /cluster/ha/resources sid=vm:ID for each of {}; POST /cluster/ha/rules rule={rule} type=resource-affinity affinity=negative resources={}",
                ids.join(", "),
                ids.join(",")
            )
        }
    }
}

fn load_balancer(op: &LbOp, to: &Topology) -> String {
    let who = match to.load_balancer.kind {
        LbKind::PfsenseHaproxy => "pfSense HAProxy package (config.xml, then apply)",
        LbKind::Haproxy => "HAProxy (haproxy.cfg, checked with haproxy -c, then reload)",
        LbKind::None => "load balancer",
    };
    let runtime = "HAProxy runtime API";
    match op {
        LbOp::CreateVip {
            address,
            prefix,
            interface,
            description,
        } => format!(
            "{who}: add IP alias virtual IP {address}/{prefix} on {interface} (\"{description}\")"
        ),
        LbOp::DeleteVip { address } => format!("{who}: remove the virtual IP {address}"),
        LbOp::CreateDnsRecord { name, address } => {
            format!("{who}: DNS host override {name} -> {address}")
        }
        LbOp::DeleteDnsRecord { name } => format!("{who}: remove DNS host override {name}"),
        LbOp::CreatePool {
            pool,
            check,
            path,
            servers,
            ..
        } => {
            let s: Vec<String> = servers.iter().map(|(n, a)| format!("{n} {a}")).collect();
            let check = serde_json::to_value(check)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let path = path.as_deref().unwrap_or("");
            format!(
                "{who}: backend {pool} (check {check} {path}) with servers {}",
                s.join(", ")
            )
        }
        LbOp::CreateFrontend { frontend, pool } => {
            format!("{who}: frontend bind {frontend} (tcp), default_backend {pool}")
        }
        LbOp::AddServer {
            pool,
            server,
            address,
        } => format!("{who}: backend {pool}: add server {server} {address} check"),
        LbOp::RemoveServer { pool, server } => {
            format!("{who}: backend {pool}: remove server {server}")
        }
        LbOp::DeleteFrontend { frontend } => format!("{who}: delete frontend {frontend}"),
        LbOp::DeletePool { pool } => format!("{who}: delete backend {pool}"),
        LbOp::VerifyServersUp { pool, servers } => {
            format!("{runtime}: show stat: {pool}/{} UP", servers.join(", "))
        }
        LbOp::SetServerState {
            pool,
            server,
            state,
        } => format!("{runtime}: set server {pool}/{server} state {state}"),
        LbOp::WaitServerIdle {
            pool,
            server,
            bound,
        } => format!("{runtime}: show stat until {pool}/{server} has 0 sessions (at most {bound})"),
    }
}

/// The migration's control-plane steps; None for a disruption's.
fn migration(op: &CpOp, to: &Topology) -> Option<String> {
    let ep = &to.control_plane_endpoint;
    let endpoint = ep.socket();
    Some(match op {
        CpOp::AddressesFree { addresses } => {
            let a: Vec<String> = addresses.iter().map(ToString::to_string).collect();
            format!(
                "ssh MASTER ping -c1 -W1 ADDR; ip neigh show ADDR (none may answer): {}",
                a.join(", ")
            )
        }
        CpOp::EtcdSnapshot { node } => format!(
            "etcd on {node}: {ETCDCTL} --endpoints=https://{node}:2379 snapshot save SNAPSHOT_DIR/{node}-TIME.db (written 0600, then etcdutl snapshot status)"
        ),
        CpOp::SetControlPlaneEndpoint { endpoint, sans } => format!(
            "kubectl -n kube-system get cm kubeadm-config (kept as hacli-kubeadm-config-backup); set controlPlaneEndpoint: {endpoint}, apiServer.certSANs += {}; ssh FIRST-MASTER kubeadm init phase upload-config kubeadm --config {KUBEADM_CONFIG}",
            sans.join(",")
        ),
        CpOp::RestoreClusterConfiguration => {
            "kubectl -n kube-system: ConfigMap kubeadm-config back from hacli-kubeadm-config-backup"
                .into()
        }
        CpOp::RenewApiserverCert { node, sans } => format!(
            "ssh {node}: keep /etc/kubernetes/pki/apiserver.{{crt,key}} in /etc/kubernetes/hacli-backup; kubeadm init phase certs apiserver --config {KUBEADM_CONFIG} (SANs {}); openssl x509 -noout -ext subjectAltName; wait for the apiserver to present it (else restart its static pod)",
            sans.join(",")
        ),
        CpOp::RestoreApiserverCert { node } => format!(
            "ssh {node}: put /etc/kubernetes/pki/apiserver.{{crt,key}} back from /etc/kubernetes/hacli-backup"
        ),
        CpOp::UploadCerts => format!(
            "ssh FIRST-MASTER kubeadm init phase upload-certs --upload-certs --config {KUBEADM_CONFIG} (certificate key <redacted>, kept in memory)"
        ),
        CpOp::JoinControlPlane { node, address } => format!(
            "ssh {node} kubeadm join {endpoint} --control-plane --apiserver-advertise-address {address} --token $TOKEN --discovery-token-ca-cert-hash sha256:CA_HASH --certificate-key <redacted> (given as --config on stdin){}",
            if to.etcd.learner_joins {
                "; kubeadm adds etcd as a learner (etcdctl member add --learner) and promotes it once caught up"
            } else {
                ""
            }
        ),
        CpOp::MemberPromoted { node } => format!("etcd: member list: {node} is a voter, caught up"),
        CpOp::EnsureControlPlaneTaint { node } => {
            format!("kubectl taint node {node} node-role.kubernetes.io/control-plane:NoSchedule")
        }
        CpOp::ResetNode { node } => format!(
            "kubectl drain {node}; ssh {node} kubeadm reset -f; {ETCDCTL} member remove ID-OF-{node}; kubectl delete node {node}"
        ),
        CpOp::SetKubeletServer { node, server } => format!(
            "ssh {node}: /etc/kubernetes/kubelet.conf server: {server} (original kept); systemctl restart kubelet"
        ),
        CpOp::SetAdminConf { node, server } => format!(
            "ssh {node}: /etc/kubernetes/admin.conf and super-admin.conf server: {server} (originals kept)"
        ),
        CpOp::SetKubeProxyServer { server } => format!(
            "kubectl -n kube-system edit cm kube-proxy (kubeconfig.conf server: {server}); kubectl -n kube-system delete pod -l k8s-app=kube-proxy"
        ),
        CpOp::SetClusterInfoServer { server } => {
            format!("kubectl -n kube-public edit cm cluster-info (kubeconfig server: {server})")
        }
        CpOp::ExternalKubeconfig {
            location, server, ..
        } => {
            format!("by hand: in {location}, set server: {server}; then confirm")
        }
        _ => return checks(op, ep.port),
    })
}

/// The migration's checks (and its drill); None for a disruption's steps.
fn checks(op: &CpOp, port: u16) -> Option<String> {
    Some(match op {
        CpOp::VerifyNodes { nodes } => format!(
            "kubectl get nodes {}: Ready, control-plane",
            nodes.join(" ")
        ),
        CpOp::VerifyEtcd { members } => {
            format!("{ETCDCTL} endpoint health, through {}", members.join(", "))
        }
        CpOp::VerifySans { nodes, sans } => format!(
            "openssl s_client -connect MASTER:{port} on {}: subjectAltName has {}",
            nodes.join(", "),
            sans.join(", ")
        ),
        CpOp::VerifyKubeconfigs { nodes, server } => format!(
            "kubelet.conf on {}, admin.conf, cm kube-proxy and cm cluster-info name {server}",
            nodes.join(", ")
        ),
        CpOp::CheckVersions { node, like } => format!(
            "ssh {node} and ssh {like}: kubeadm version -o short; kubelet --version; containerd --version (the same)"
        ),
        CpOp::SyncApiserverExtras { from, node } => format!(
            "ssh {from}: read /etc/kubernetes/manifests/kube-apiserver.yaml; ssh {node}: copy its extra flags and the files they name (original kept)"
        ),
        CpOp::ProbeApiserver { address, port, .. } => format!(
            "curl --cacert CLUSTER_CA https://{}/readyz",
            std::net::SocketAddr::new(*address, *port)
        ),
        CpOp::ProbeVip {
            name,
            address,
            port,
        } => {
            let by_addr = format!(
                "curl --cacert CLUSTER_CA https://{}/readyz",
                std::net::SocketAddr::new(*address, *port)
            );
            match name {
                Some(n) => format!(
                    "curl --cacert CLUSTER_CA --resolve {n}:{port}:{address} https://{n}:{port}/readyz; {by_addr} (both the name and the address must be SANs)"
                ),
                None => by_addr,
            }
        }
        CpOp::VerifyStaticPods { node } => format!(
            "kubectl -n kube-system get pods etcd-{node} kube-apiserver-{node} kube-controller-manager-{node} kube-scheduler-{node}: Running"
        ),
        CpOp::VerifyNotJoined { node } => format!(
            "kubectl get node {node} (must not exist); ssh {node} test ! -e /etc/kubernetes/kubelet.conf"
        ),
        CpOp::PinnedWorkloads { node } => format!(
            "kubectl get jobs,cronjobs -A: those pinned to {node} by hostname, re-pinned by hand; then confirm"
        ),
        CpOp::DrillPlannedReboot { node } => format!(
            "hacli drill --planned {node}: traffic through the VIP while {node} is drained from the pool, rebooted and put back; 0 failed requests"
        ),
        _ => return None,
    })
}

fn disruption(op: &CpOp) -> String {
    match op {
        CpOp::MoveLeader { from } => {
            format!("{ETCDCTL} move-leader BEST-VOTER-ID (only if {from} leads)")
        }
        CpOp::Cordon { node } => format!("kubectl cordon {node}"),
        CpOp::Uncordon { node } => format!("kubectl uncordon {node}"),
        CpOp::Drain { node } => {
            format!("kubectl drain {node} --ignore-daemonsets (Eviction API, PDBs honoured)")
        }
        CpOp::Reboot { node } => format!("ssh {node} systemctl reboot; wait for a new boot id"),
        CpOp::Upgrade {
            node,
            version,
            first,
        } => {
            if *first {
                format!("ssh {node} kubeadm upgrade apply {version} -y")
            } else {
                format!("ssh {node} kubeadm upgrade node")
            }
        }
        CpOp::RunCommand { node, command } => {
            let words: Vec<String> = command.iter().map(|w| quote(w)).collect();
            format!("ssh {node} {}", words.join(" "))
        }
        CpOp::WaitHealthy { node } => format!(
            "wait: kubectl get node {node} Ready; its etcd member healthy and caught up; its /readyz"
        ),
        CpOp::RemoveMember { node } => format!("{ETCDCTL} member remove ID-OF-{node}"),
        CpOp::DeleteNode { node } => format!("kubectl delete node {node}"),
        other => other_op(other),
    }
}

/// An operation neither list names (kept total; never reached by a plan
/// the planner wrote).
fn other_op(op: &CpOp) -> String {
    Op::ControlPlane(op.clone()).to_string()
}

/// A word as a POSIX shell reads it back.
fn quote(w: &str) -> String {
    let plain = !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c));
    if plain {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}
