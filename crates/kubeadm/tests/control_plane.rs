//! The control-plane backend (`kubeadm::control_plane`) against the lab:
//! the API and etcd operations against `testlab::Lab` (real 3-member TLS
//! etcd, the API stand-in), the SSH operations against lab hosts (their
//! own network namespace, sshd, files) with `kubeadm` and `systemctl`
//! stand-ins that record what they were asked.
//!
//! Each operation: `is_done` false before, true after; applied twice it
//! changes nothing more; its rollback brings back what was there.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hacore::backend::{ControlPlane, CpOp};
use kubeadm::control_plane::{ControlPlaneOptions, KubeadmControlPlane};
use serde_json::json;
use testlab::Lab;
use testlab::apiserver::ApiServer;
use testlab::host::{Host, HostLab};

/// A topology for the lab's cluster with `nodes` (name, role, address) and
/// optional `ssh:` settings.
fn topology(lab: &Lab, nodes: &[(String, &str, IpAddr)], ssh: Option<(&Path, &Path)>) -> PathBuf {
    let mut t = format!(
        "cluster: cplab\ncontrolPlaneEndpoint: {{ address: {}, port: {} }}\netcd:\n  endpoints: [{}]\n  pki: {}\nloadBalancer: {{ kind: haproxy, frontend: \"{}:{}\", pool: k8s-apiserver }}\nnodes:\n",
        lab.endpoint,
        lab.api_port(),
        lab.etcd_endpoints().join(", "),
        lab.etcd_pki.display(),
        lab.endpoint,
        lab.api_port(),
    );
    for (name, role, addr) in nodes {
        t.push_str(&format!(
            "  - {{ name: {name}, role: {role}, address: {addr} }}\n"
        ));
    }
    if let Some((key, known)) = ssh {
        t.push_str(&format!(
            "ssh:\n  user: root\n  identityFile: {}\n  knownHosts: {}\n",
            key.display(),
            known.display()
        ));
    }
    let path = lab.dir().join(format!(
        "cp-topology-{}.yaml",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::write(&path, t).unwrap();
    path
}

fn lab_nodes(lab: &Lab) -> Vec<(String, &'static str, IpAddr)> {
    lab.masters
        .iter()
        .map(|(n, a)| (n.clone(), "control-plane", *a))
        .chain(lab.workers.iter().map(|(n, a)| (n.clone(), "worker", *a)))
        .collect()
}

type Notices = Arc<Mutex<Vec<String>>>;

fn backend(lab: &Lab, topo: &Path, tweak: impl FnOnce(&mut ControlPlaneOptions)) -> (KubeadmControlPlane, Notices) {
    let (t, _) = hacore::Topology::load(topo).expect("the test topology is valid");
    let notices: Notices = Arc::default();
    let n = notices.clone();
    let mut opts = ControlPlaneOptions {
        kubeconfig: Some(lab.kubeconfig.clone()),
        timeout: Duration::from_secs(10),
        join_timeout: Duration::from_secs(30),
        check_wait: Duration::from_secs(2),
        cert_reload_bound: Duration::from_secs(5),
        snapshot_dir: lab.dir().join("snapshots"),
        notice: ssh::Warn::new(move |m| {
            eprintln!("NOTICE: {m}");
            n.lock().unwrap().push(m.to_string());
        }),
        ..Default::default()
    };
    tweak(&mut opts);
    (
        KubeadmControlPlane::from_topology(&t, &opts).expect("backend"),
        notices,
    )
}

/// is_done false, apply, is_done true, apply again (Ok), is_done true.
fn once(cp: &mut KubeadmControlPlane, op: &CpOp) {
    assert!(!cp.is_done(op).unwrap(), "{op:?} done before it was applied");
    cp.apply(op).unwrap_or_else(|e| panic!("{op:?}: {e}"));
    assert!(cp.is_done(op).unwrap(), "{op:?} not done after apply");
    cp.apply(op).unwrap_or_else(|e| panic!("{op:?} again: {e}"));
    assert!(cp.is_done(op).unwrap(), "{op:?} not done after a second apply");
}

fn kubeconfig_text(server: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: TEFCLUNB\n    server: {server}\n  name: kubernetes\ncontexts:\n- context:\n    cluster: kubernetes\n    user: default\n  name: default\ncurrent-context: default\nusers: []\n"
    )
}

fn seed_kube_proxy_and_cluster_info(lab: &Lab, server: &str) {
    let s = lab.store();
    s.put(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "kube-proxy", "namespace": "kube-system"},
        "data": {"config.conf": "mode: iptables\n", "kubeconfig.conf": kubeconfig_text(server)}}))
        .unwrap();
    s.put(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cluster-info", "namespace": "kube-public"},
        "data": {"kubeconfig": kubeconfig_text(server)}}))
        .unwrap();
    s.put(json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "kube-proxy", "namespace": "kube-system"},
        "spec": {"selector": {"matchLabels": {"k8s-app": "kube-proxy"}},
            "template": {"metadata": {"labels": {"k8s-app": "kube-proxy"}},
                "spec": {"containers": [{"name": "kube-proxy", "image": "registry.k8s.io/kube-proxy:v1.32.0"}]}}}}))
        .unwrap();
}

fn cm_text(lab: &Lab, ns: &str, name: &str, key: &str) -> String {
    let cm = lab
        .store()
        .get(ApiServer::resource("configmaps"), ns, name)
        .unwrap();
    cm["data"][key].as_str().unwrap().to_string()
}

#[test]
fn api_and_etcd_operations_against_the_lab() {
    let Some(lab) = Lab::start_or_skip("api_and_etcd_operations_against_the_lab") else {
        return;
    };
    let topo = topology(&lab, &lab_nodes(&lab), None);
    let (mut cp, notices) = backend(&lab, &topo, |_| {});
    let (m1, m3) = (lab.masters[0].clone(), lab.masters[2].clone());
    let direct = format!("https://{}:{}", m1.1, lab.api_port());
    let vip = format!("https://{}:{}", lab.endpoint, lab.api_port());

    // The control-plane taint: m3 lost it.
    let nodes = ApiServer::resource("nodes");
    let mut n = lab.store().get(nodes, "", &m3.0).unwrap();
    n["spec"]["taints"] = json!([]);
    lab.store().put(n).unwrap();
    let taint = CpOp::EnsureControlPlaneTaint { node: m3.0.clone() };
    once(&mut cp, &taint);
    let n = lab.store().get(nodes, "", &m3.0).unwrap();
    assert_eq!(
        n["spec"]["taints"],
        json!([{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]),
        "exactly one taint after two applies"
    );

    // kube-proxy and cluster-info: to the VIP, then back (the rollback).
    seed_kube_proxy_and_cluster_info(&lab, &direct);
    let proxy_before = cm_text(&lab, "kube-system", "kube-proxy", "kubeconfig.conf");
    let info_before = cm_text(&lab, "kube-public", "cluster-info", "kubeconfig");
    let proxy = CpOp::SetKubeProxyServer { server: vip.clone() };
    let info = CpOp::SetClusterInfoServer { server: vip.clone() };
    once(&mut cp, &proxy);
    once(&mut cp, &info);
    assert_eq!(
        cm_text(&lab, "kube-system", "kube-proxy", "kubeconfig.conf"),
        proxy_before.replace(&direct, &vip)
    );
    let ds = lab
        .store()
        .get(ApiServer::resource("daemonsets"), "kube-system", "kube-proxy")
        .unwrap();
    assert!(
        ds["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"].is_string(),
        "kube-proxy pods restarted: {ds}"
    );
    cp.apply(&CpOp::SetKubeProxyServer { server: direct.clone() }).unwrap();
    cp.apply(&CpOp::SetClusterInfoServer { server: direct.clone() }).unwrap();
    assert_eq!(cm_text(&lab, "kube-system", "kube-proxy", "kubeconfig.conf"), proxy_before);
    assert_eq!(cm_text(&lab, "kube-public", "cluster-info", "kubeconfig"), info_before);

    // Checks.
    let masters: Vec<String> = lab.masters.iter().map(|m| m.0.clone()).collect();
    assert!(cp.is_done(&CpOp::VerifyNodes { nodes: masters.clone() }).unwrap());
    assert!(
        !cp.is_done(&CpOp::VerifyNodes { nodes: vec!["w1".into()] }).unwrap(),
        "a worker is not a master"
    );
    assert!(cp.is_done(&CpOp::VerifyEtcd { members: masters.clone() }).unwrap());
    assert!(cp.is_done(&CpOp::MemberPromoted { node: m1.0.clone() }).unwrap());
    assert!(!cp.is_done(&CpOp::UploadCerts).unwrap(), "no key in memory");
    assert!(
        cp.is_done(&CpOp::AddressesFree { addresses: vec![] }).unwrap()
    );

    // A learner on w1's address (as a join starts): listed, not promoted.
    let w1 = lab.workers[0].clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tls = kubeadm::EtcdTlsOverrides::default().resolve(&hacore::Topology::load(&topo).unwrap().0);
    let learner_id = rt.block_on(async {
        let opts = etcd_client::ConnectOptions::new().with_tls(
            etcd_client::TlsOptions::new()
                .ca_certificate(etcd_client::Certificate::from_pem(std::fs::read(&tls.ca).unwrap()))
                .identity(etcd_client::Identity::from_pem(
                    std::fs::read(&tls.cert).unwrap(),
                    std::fs::read(&tls.key).unwrap(),
                )),
        );
        let mut c = etcd_client::Client::connect(lab.etcd_endpoints(), Some(opts)).await.unwrap();
        // etcd refuses reconfiguration until its members have been
        // connected for a while ("unhealthy cluster"): retry.
        let t0 = std::time::Instant::now();
        loop {
            match c
                .member_add(
                    [format!("https://{}:2380", w1.1)],
                    Some(etcd_client::MemberAddOptions::new().with_is_learner()),
                )
                .await
            {
                Ok(r) => break r.member().unwrap().id(),
                Err(e) if t0.elapsed() < Duration::from_secs(30) => {
                    eprintln!("member add: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => panic!("member add: {e}"),
            }
        }
    });
    let m = cp.block_on(cp.member_of(&w1.0)).unwrap().expect("the learner is w1's");
    assert_eq!(m.id, learner_id);
    assert!(m.is_learner && m.name.is_empty());
    assert!(!cp.is_done(&CpOp::MemberPromoted { node: w1.0.clone() }).unwrap());
    assert!(
        cp.is_done(&CpOp::VerifyEtcd { members: masters.clone() }).unwrap(),
        "a learner does not make the voters unhealthy"
    );

    // Undo the "join": member removed by id, Node deleted; w1 has no sshd
    // here, so `kubeadm reset` is skipped (said so).
    let reset = CpOp::ResetNode { node: w1.0.clone() };
    once(&mut cp, &reset);
    assert!(cp.block_on(cp.member_of(&w1.0)).unwrap().is_none());
    assert!(lab.store().get(nodes, "", &w1.0).is_err());
    assert_eq!(cp.block_on(cp.members()).unwrap().len(), 3);
    assert!(
        notices.lock().unwrap().iter().any(|n| n.contains("skipping `kubeadm reset -f`")),
        "{:?}",
        notices.lock().unwrap()
    );

    // A snapshot from m1's member, 0600.
    let snap = CpOp::EtcdSnapshot { node: m1.0.clone() };
    once(&mut cp, &snap);
    let file = lab.dir().join("snapshots").join(format!("cplab-{}-etcd.db", m1.0));
    let meta = std::fs::metadata(&file).unwrap();
    assert!(meta.len() > 4096, "{} bytes", meta.len());
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    // kubeadm-config: the endpoint is read from the ClusterConfiguration.
    lab.store()
        .put(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "kubeadm-config", "namespace": "kube-system"},
            "data": {"ClusterConfiguration": "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nkubernetesVersion: v1.32.0\n"}}))
        .unwrap();
    let ep = CpOp::SetControlPlaneEndpoint {
        endpoint: format!("{}:{}", lab.endpoint, lab.api_port()),
        sans: vec![lab.endpoint.to_string()],
    };
    assert!(!cp.is_done(&ep).unwrap());
    assert!(cp.is_done(&CpOp::RestoreClusterConfiguration).unwrap(), "nothing kept, nothing to restore");
}
