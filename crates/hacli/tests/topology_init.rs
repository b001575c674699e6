//! `hacli topology init`: from flags (offline), and `--from-cluster`
//! against the Kubernetes API stand-in (crates/testlab, on 127.0.0.1: its
//! Nodes, kube-system/kubeadm-config and etcd pods are what a kubeadm
//! cluster has). What it writes must pass `hacli topology validate`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::json;

fn hacli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hacli"))
        .args(args)
        .env_remove("KUBECONFIG")
        .env_remove("HACLI_TOPOLOGY")
        .output()
        .expect("hacli runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `topology validate` on `file`: exit 0 and its output.
fn validates(file: &Path) -> String {
    let o = hacli(&["topology", "validate", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    text(&o)
}

#[test]
fn three_masters_behind_a_vip_from_flags_validate() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("topology.yaml");
    let args = [
        "topology",
        "init",
        "--name",
        "homelab",
        "--master",
        "k8s-master=10.0.20.100",
        "--master",
        "k8s-master-2=10.0.20.105",
        "--master",
        "k8s-master-3=10.0.20.106",
        "--worker",
        "k8s-node1=10.0.20.101",
        "--vip",
        "10.0.20.99",
        "--dns-name",
        "k8s-api.example.lan",
        "--lb",
        "pfsense",
        "--lb-host",
        "10.0.20.1",
        "--cidr",
        "10.0.20.0/24",
        "--gateway",
        "10.0.20.1",
        "--proxmox-node",
        "pve",
        "--host-memory-gib",
        "256",
        "--host-cpus",
        "64",
        "-O",
        out.to_str().unwrap(),
    ];
    let o = hacli(&args);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let written = std::fs::read_to_string(&out).unwrap();
    for want in [
        "cluster: homelab",
        "address: 10.0.20.99",
        "dnsName: k8s-api.example.lan",
        "kind: pfsense-haproxy",
        "frontend: 10.0.20.99:6443",
        "host: 10.0.20.1",
        "{ name: k8s-master-3, role: control-plane, address: 10.0.20.106, hypervisor: pve }",
        "{ name: k8s-node1, role: worker, address: 10.0.20.101, hypervisor: pve }",
        "# FILL IN: where HAProxy's runtime API answers",
    ] {
        assert!(written.contains(want), "no `{want}` in:\n{written}");
    }
    // All masters on one host: a warning, said when writing and validating.
    assert!(
        text(&o).contains("all 3 control-plane nodes run on hypervisor `pve`"),
        "{}",
        text(&o)
    );
    assert!(validates(&out).contains("valid (1 warning(s))"));
    // Written once; a second run does not replace it without --force.
    let o = hacli(&args);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("the file exists; --force replaces it"),
        "{}",
        text(&o)
    );
}

#[test]
fn one_master_from_flags_validates_and_bad_flags_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let o = hacli(&["topology", "init", "--master", "m1=10.0.20.100"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = dir.path().join("t.yaml");
    std::fs::write(&out, &o.stdout).unwrap();
    validates(&out);
    let written = String::from_utf8_lossy(&o.stdout);
    assert!(
        written.contains("# FILL IN: the Proxmox hosts"),
        "{written}"
    );
    for (args, says) in [
        (
            vec!["--master", "m1=10.0.20.x"],
            "`10.0.20.x` is not an IP address",
        ),
        (vec!["--master", "m1"], "expected NAME=ADDRESS"),
        (
            vec!["--master", "m1=10.0.20.100", "--vip", "10.0.20.99"],
            "--lb haproxy or --lb pfsense",
        ),
        (
            vec![
                "--master",
                "m1=10.0.20.100",
                "--vip",
                "10.0.20.100",
                "--lb",
                "haproxy",
            ],
            "the VIP 10.0.20.100 is node `m1`'s address",
        ),
        (vec!["--name", "x"], "--master"),
    ] {
        let mut all = vec!["topology", "init"];
        all.extend(&args);
        let o = hacli(&all);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(
            text(&o).contains(says),
            "{args:?}: no `{says}` in {}",
            text(&o)
        );
    }
}

fn node(name: &str, ip: &str, master: bool) -> serde_json::Value {
    let mut labels = json!({"kubernetes.io/hostname": name});
    if master {
        labels["node-role.kubernetes.io/control-plane"] = json!("");
    }
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels},
           "status": {"addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}]}})
}

fn etcd_pod(node: &str, ip: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": format!("etcd-{node}"), "namespace": "kube-system",
                        "labels": {"component": "etcd", "tier": "control-plane"},
                        "annotations": {"kubeadm.kubernetes.io/etcd.advertise-client-urls": format!("https://{ip}:2379")}},
           "spec": {"nodeName": node, "containers": [{"name": "etcd", "image": "registry.k8s.io/etcd:3.5.21-0"}]}})
}

/// The stand-in on 127.0.0.1 with a kubeadm cluster's objects; its
/// kubeconfig in `dir`.
fn cluster(
    dir: &Path,
    endpoint: &str,
) -> (
    testlab::apiserver::ApiServer,
    tokio::runtime::Runtime,
    PathBuf,
) {
    let ips: Vec<std::net::IpAddr> = vec![[127, 0, 0, 1].into()];
    let ca = testlab::pki::Authority::new("init CA").unwrap();
    let pair = ca
        .issue_server("kube-apiserver", &["kubernetes"], &ips)
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let api =
        testlab::apiserver::ApiServer::start(&rt, &ips, &pair, "tok", Default::default()).unwrap();
    let cc = format!(
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nclusterName: lab\nkubernetesVersion: v1.33.1\ncontrolPlaneEndpoint: \"{endpoint}\"\n"
    );
    let mut objects = vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kubeadm-config", "namespace": "kube-system"},
               "data": {"ClusterConfiguration": cc}}),
        node("w1", "198.18.0.21", false),
    ];
    for (i, n) in ["m1", "m2", "m3"].iter().enumerate() {
        let ip = format!("198.18.0.1{}", i + 1);
        objects.push(node(n, &ip, true));
        objects.push(etcd_pod(n, &ip));
    }
    for o in objects {
        api.store.create(o).unwrap();
    }
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();
    let kc = dir.join("kubeconfig");
    std::fs::write(
        &kc,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{ server: \"https://127.0.0.1:{}\", certificate-authority: {} }}\nusers:\n- name: u\n  user: {{ token: tok }}\ncontexts:\n- name: c\n  context: {{ cluster: c, user: u }}\ncurrent-context: c\n",
            api.port,
            ca_file.display()
        ),
    )
    .unwrap();
    (api, rt, kc)
}

#[test]
fn from_the_cluster_the_masters_endpoint_and_etcd_members_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let (api, _rt, kc) = cluster(dir.path(), "198.18.0.99:6443");
    let kc = kc.to_str().unwrap();
    // The endpoint is a VIP: which load balancer serves it is asked.
    let o = hacli(&["topology", "init", "--from-cluster", "--kubeconfig", kc]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("198.18.0.99:6443 is a VIP"),
        "{}",
        text(&o)
    );
    // A context the kubeconfig does not have is named; the one it has is used.
    let o = hacli(&[
        "topology",
        "init",
        "--from-cluster",
        "--kubeconfig",
        kc,
        "--lb",
        "haproxy",
        "--context",
        "nope",
    ]);
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("nope"), "{}", text(&o));
    api.store.reset_request_counts();
    let out = dir.path().join("t.yaml");
    let o = hacli(&[
        "topology",
        "init",
        "--from-cluster",
        "--kubeconfig",
        kc,
        "--context",
        "c",
        "--lb",
        "haproxy",
        "-O",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let written = std::fs::read_to_string(&out).unwrap();
    for want in [
        "cluster: lab",
        "# kubeadm-config: kubernetesVersion v1.33.1",
        "address: 198.18.0.99",
        "kind: haproxy",
        "endpoints: [https://198.18.0.11:2379, https://198.18.0.12:2379, https://198.18.0.13:2379]",
        "{ name: m2, role: control-plane, address: 198.18.0.12 }",
        "{ name: w1, role: worker, address: 198.18.0.21 }",
    ] {
        assert!(written.contains(want), "no `{want}` in:\n{written}");
    }
    validates(&out);
    // Read-only: every request the stand-in counted was a read.
    let writes: Vec<String> = api
        .store
        .request_counts()
        .keys()
        .filter(|k| !["get", "list", "GET"].contains(&k.verb.as_str()))
        .map(|k| format!("{k:?}"))
        .collect();
    assert!(writes.is_empty(), "init wrote to the cluster: {writes:?}");
    assert!(!api.store.request_counts().is_empty(), "no request counted");
}
