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

fn backend(
    lab: &Lab,
    topo: &Path,
    tweak: impl FnOnce(&mut ControlPlaneOptions),
) -> (KubeadmControlPlane, Notices) {
    let (t, _) = hacore::Topology::load(topo).expect("the test topology is valid");
    let notices: Notices = Arc::default();
    let n = notices.clone();
    let mut opts = ControlPlaneOptions {
        kubeconfig: Some(lab.kubeconfig.clone()),
        timeout: Duration::from_secs(10),
        join_timeout: Duration::from_secs(30),
        check_wait: Duration::from_secs(2),
        drain_timeout: Duration::from_secs(3),
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
    assert!(
        !cp.is_done(op).unwrap(),
        "{op:?} done before it was applied"
    );
    cp.apply(op).unwrap_or_else(|e| panic!("{op:?}: {e}"));
    assert!(cp.is_done(op).unwrap(), "{op:?} not done after apply");
    cp.apply(op).unwrap_or_else(|e| panic!("{op:?} again: {e}"));
    assert!(
        cp.is_done(op).unwrap(),
        "{op:?} not done after a second apply"
    );
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
    let proxy = CpOp::SetKubeProxyServer {
        server: vip.clone(),
    };
    let info = CpOp::SetClusterInfoServer {
        server: vip.clone(),
    };
    once(&mut cp, &proxy);
    once(&mut cp, &info);
    assert_eq!(
        cm_text(&lab, "kube-system", "kube-proxy", "kubeconfig.conf"),
        proxy_before.replace(&direct, &vip)
    );
    let ds = lab
        .store()
        .get(
            ApiServer::resource("daemonsets"),
            "kube-system",
            "kube-proxy",
        )
        .unwrap();
    assert!(
        ds["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
            .is_string(),
        "kube-proxy pods restarted: {ds}"
    );
    cp.apply(&CpOp::SetKubeProxyServer {
        server: direct.clone(),
    })
    .unwrap();
    cp.apply(&CpOp::SetClusterInfoServer {
        server: direct.clone(),
    })
    .unwrap();
    assert_eq!(
        cm_text(&lab, "kube-system", "kube-proxy", "kubeconfig.conf"),
        proxy_before
    );
    assert_eq!(
        cm_text(&lab, "kube-public", "cluster-info", "kubeconfig"),
        info_before
    );

    // Checks.
    let masters: Vec<String> = lab.masters.iter().map(|m| m.0.clone()).collect();
    assert!(
        cp.is_done(&CpOp::VerifyNodes {
            nodes: masters.clone()
        })
        .unwrap()
    );
    assert!(
        !cp.is_done(&CpOp::VerifyNodes {
            nodes: vec!["w1".into()]
        })
        .unwrap(),
        "a worker is not a master"
    );
    assert!(
        cp.is_done(&CpOp::VerifyEtcd {
            members: masters.clone()
        })
        .unwrap()
    );
    assert!(
        cp.is_done(&CpOp::MemberPromoted { node: m1.0.clone() })
            .unwrap()
    );
    assert!(!cp.is_done(&CpOp::UploadCerts).unwrap(), "no key in memory");
    assert!(
        cp.is_done(&CpOp::AddressesFree { addresses: vec![] })
            .unwrap()
    );

    // A learner on w1's address (as a join starts): listed, not promoted.
    let w1 = lab.workers[0].clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tls =
        kubeadm::EtcdTlsOverrides::default().resolve(&hacore::Topology::load(&topo).unwrap().0);
    let learner_id = rt.block_on(async {
        let opts = etcd_client::ConnectOptions::new().with_tls(
            etcd_client::TlsOptions::new()
                .ca_certificate(etcd_client::Certificate::from_pem(
                    std::fs::read(&tls.ca).unwrap(),
                ))
                .identity(etcd_client::Identity::from_pem(
                    std::fs::read(&tls.cert).unwrap(),
                    std::fs::read(&tls.key).unwrap(),
                )),
        );
        let mut c = etcd_client::Client::connect(lab.etcd_endpoints(), Some(opts))
            .await
            .unwrap();
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
    let m = cp
        .block_on(cp.member_of(&w1.0))
        .unwrap()
        .expect("the learner is w1's");
    assert_eq!(m.id, learner_id);
    assert!(m.is_learner && m.name.is_empty());
    assert!(
        !cp.is_done(&CpOp::MemberPromoted { node: w1.0.clone() })
            .unwrap()
    );
    assert!(
        cp.is_done(&CpOp::VerifyEtcd {
            members: masters.clone()
        })
        .unwrap(),
        "a learner does not make the voters unhealthy"
    );

    // Undo the "join": member removed by id, Node deleted; w1 has no sshd
    // here, so `kubeadm reset` is skipped (said so).
    // First the drain, through the Eviction API: a PodDisruptionBudget
    // allowing nothing blocks it, and the blocked pod is named.
    lab.store()
        .create(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "pg-1", "namespace": "default", "labels": {"app": "pg"}},
            "spec": {"nodeName": w1.0, "containers": [{"name": "pg", "image": "postgres"}]},
            "status": {"phase": "Running"}}))
        .unwrap();
    let pdb = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "pg", "namespace": "default"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "pg"}}},
        "status": {"disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1}});
    lab.store().put(pdb.clone()).unwrap();
    let reset = CpOp::ResetNode { node: w1.0.clone() };
    let e = cp.apply(&reset).unwrap_err().to_string();
    assert!(
        e.contains("default/pg-1") && e.contains("PodDisruptionBudget"),
        "{e}"
    );
    assert!(!cp.is_done(&reset).unwrap());
    let pods = ApiServer::resource("pods");
    assert!(
        lab.store().get(pods, "default", "pg-1").is_ok(),
        "a blocked pod stays"
    );
    let mut pdb = pdb;
    pdb["status"]["disruptionsAllowed"] = json!(1);
    lab.store().put(pdb).unwrap();
    once(&mut cp, &reset);
    assert!(lab.store().get(pods, "default", "pg-1").is_err(), "evicted");
    let pdb = lab
        .store()
        .get(ApiServer::resource("poddisruptionbudgets"), "default", "pg")
        .unwrap();
    assert_eq!(
        pdb["status"]["disruptionsAllowed"], 0,
        "the eviction used the budget"
    );
    assert!(
        lab.store()
            .get(pods, "kube-system", &format!("calico-node-{}", w1.0))
            .is_ok(),
        "DaemonSet pods are left alone"
    );
    assert!(cp.block_on(cp.member_of(&w1.0)).unwrap().is_none());
    assert!(lab.store().get(nodes, "", &w1.0).is_err());
    assert_eq!(cp.block_on(cp.members()).unwrap().len(), 3);
    assert!(
        notices
            .lock()
            .unwrap()
            .iter()
            .any(|n| n.contains("skipping `kubeadm reset -f`")),
        "{:?}",
        notices.lock().unwrap()
    );

    // A snapshot from m1's member, 0600.
    let snap = CpOp::EtcdSnapshot { node: m1.0.clone() };
    once(&mut cp, &snap);
    let file = lab
        .dir()
        .join("snapshots")
        .join(format!("cplab-{}-etcd.db", m1.0));
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
    assert!(
        cp.is_done(&CpOp::RestoreClusterConfiguration).unwrap(),
        "nothing kept, nothing to restore"
    );
}

// ---------------------------------------------------------------------
// Against lab masters (testlab::cluster::ClusterLab): the seed's one-master
// cluster as lab hosts with the kubeadm stand-in and a real etcd.

mod masters {
    use super::*;
    use hacore::backend::{Backends, Clock, Op};
    use hacore::exec::{self, Journal, MemJournal, Options, Outcome, Record};
    use hacore::plan::{Phase, Plan, Step};
    use hacore::units::Dur;
    use testlab::cluster::{ClusterLab, M2, M3, VIP, Versions};

    struct Wall;
    impl Clock for Wall {
        fn now(&self) -> jiff::Timestamp {
            jiff::Timestamp::now()
        }
    }

    /// On m1, `kubeadm`'s stdout is also appended to /root/spy.log, so the
    /// test knows the token and key it must not find anywhere else.
    fn spy_on_kubeadm(lab: &ClusterLab) {
        let script = "set -e; mkdir -p /usr/local/lib/testlab/spy; ln -sf /usr/local/lib/testlab/standin.py /usr/local/lib/testlab/spy/kubeadm; rm -f /usr/local/bin/kubeadm; printf '%s\\n' '#!/bin/sh' 'out=$(/usr/local/lib/testlab/spy/kubeadm \"$@\"); rc=$?' 'printf \"%s\\n\" \"$out\" >> /root/spy.log' 'printf \"%s\\n\" \"$out\"' 'exit $rc' > /usr/local/bin/kubeadm; chmod 755 /usr/local/bin/kubeadm";
        let out = lab.host("m1").exec(&["sh", "-c", script]).unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Every certificate key and token secret kubeadm printed on m1 (a
    /// key alone on its line: `kubeadm certs certificate-key`, or after
    /// upload-certs' mark).
    fn spied_secrets(lab: &ClusterLab) -> Vec<String> {
        let out = lab.host("m1").exec(&["cat", "/root/spy.log"]).unwrap();
        let log = String::from_utf8_lossy(&out.stdout).into_owned();
        let lines: Vec<&str> = log.lines().collect();
        let mut secrets = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            if l.contains("[upload-certs] Using certificate key:") {
                let key = lines[i + 1].trim();
                assert_eq!(key.len(), 64, "{key:?}");
                secrets.push(key.to_string());
            } else if l.len() == 64 && l.bytes().all(|b| b.is_ascii_hexdigit()) {
                secrets.push(l.to_string());
            }
            if l.starts_with("kubeadm join ") {
                let words: Vec<&str> = l.split_whitespace().collect();
                let token = words[words.iter().position(|w| *w == "--token").unwrap() + 1];
                assert_eq!(token.len(), 23);
                // The part after the dot is the secret; the id is public.
                secrets.push(token.split('.').nth(1).unwrap().to_string());
            }
        }
        secrets.sort();
        secrets.dedup();
        assert!(
            secrets.len() >= 4,
            "three keys and a token: {}",
            secrets.len()
        );
        secrets
    }

    /// The non-root user hacli logs in as on every lab host of the join
    /// test (`ssh.user`), running its commands with `sudo -n`.
    const SSH_USER: &str = "hacli";

    /// The words of every recorded command line of the kubeadm stand-in
    /// on `host`, and sudo's log there, hold none of `secrets`.
    fn no_secret_in_cmdlines_or_sudo_log(lab: &ClusterLab, host: &str, secrets: &[String]) {
        let cmdlines = lab.kubeadm_cmdlines(host).unwrap();
        for words in &cmdlines {
            let line = words.join(" ");
            for secret in secrets {
                assert!(
                    !line.contains(secret.as_str()),
                    "{host}: a secret on kubeadm's command line: {line}"
                );
            }
        }
        let sudo = lab.sudo_log(host);
        for secret in secrets {
            assert!(
                !sudo.contains(secret.as_str()),
                "{host}: a secret in sudo's log: {sudo}"
            );
        }
    }

    fn step(id: &str, op: CpOp, rollback: Option<CpOp>) -> Step {
        Step {
            id: id.into(),
            title: id.into(),
            op: Op::ControlPlane(op),
            preconditions: Vec::new(),
            rollback: rollback.map(Op::ControlPlane),
            expected_duration: Dur::secs(60),
            outage: None,
            notes: Vec::new(),
            command: None,
            rollback_command: None,
        }
    }

    #[test]
    fn a_full_join_on_lab_masters() {
        let Some(mut lab) = ClusterLab::start_or_skip("a_full_join_on_lab_masters") else {
            return;
        };
        let vip: IpAddr = lab.lab_addr(VIP).into();
        let lb = format!(
            "loadBalancer:\n  kind: haproxy\n  frontend: \"{vip}:6443\"\n  pool: k8s-apiserver\n"
        );
        // hacli logs in as a user that is not root and runs its commands
        // with sudo, whose log the secrets must not reach either.
        for h in ["m1", "w1"] {
            lab.add_sudo_user(h, SSH_USER).unwrap();
        }
        let yaml = format!(
            "{}ssh:\n  user: {SSH_USER}\n  identityFile: {}\n  knownHosts: {}\n",
            lab.topology_yaml(&lb),
            lab.client_key().display(),
            lab.known_hosts().display()
        );
        let topo = lab.dir().join("topology.yaml");
        std::fs::write(&topo, yaml).unwrap();
        let (t, _) = hacore::Topology::load(&topo).unwrap();
        let notices: Notices = Arc::default();
        let n2 = notices.clone();
        let tls = lab.etcd_tls();
        let opts = ControlPlaneOptions {
            kubeconfig: Some(lab.admin_conf()),
            etcd_tls: kubeadm::EtcdTlsOverrides {
                ca: Some(tls.ca.clone()),
                cert: Some(tls.cert.clone()),
                key: Some(tls.key.clone()),
                pki: None,
            },
            timeout: Duration::from_secs(20),
            join_timeout: Duration::from_secs(180),
            check_wait: Duration::from_secs(20),
            cert_reload_bound: Duration::from_secs(20),
            snapshot_dir: lab.dir().join("snapshots"),
            notice: ssh::Warn::new(move |m| {
                println!("NOTICE: {m}");
                n2.lock().unwrap().push(m.to_string());
            }),
            ..Default::default()
        };
        let mut cp = KubeadmControlPlane::from_topology(&t, &opts).unwrap();
        // Everything the backend says, to grep for secrets at the end.
        let mut said: Vec<String> = Vec::new();

        // The VIP: an address of m1 for now (its apiserver listens on all).
        lab.host("m1").add_address(&format!("{vip}/24")).unwrap();
        lab.add_blank_host("m2", M2).unwrap();
        lab.add_sudo_user("m2", SSH_USER).unwrap();
        let m2_addr: IpAddr = lab.addr("m2").into();
        spy_on_kubeadm(&lab);

        // Point 2: a fresh VM that has not joined, with the same versions.
        assert!(
            cp.is_done(&CpOp::VerifyNotJoined { node: "m2".into() })
                .unwrap()
        );
        let versions = CpOp::CheckVersions {
            node: "m2".into(),
            like: "m1".into(),
        };
        assert!(cp.is_done(&versions).unwrap());
        lab.set_versions(
            "m2",
            &Versions {
                kubelet: "v1.31.4".into(),
                ..Versions::default()
            },
        )
        .unwrap();
        let e = cp.is_done(&versions).unwrap_err().to_string();
        said.push(e.clone());
        assert!(e.contains("kubelet 1.31.4 on m2, 1.32.0 on m1"), "{e}");
        lab.set_versions("m2", &Versions::default()).unwrap();

        // Phase 0: the endpoint, then m1's certificate with the VIP.
        let sans = vec![vip.to_string()];
        let ep = CpOp::SetControlPlaneEndpoint {
            endpoint: format!("{vip}:6443"),
            sans: sans.clone(),
        };
        once(&mut cp, &ep);
        let crt = lab.host("m1").path("/etc/kubernetes/pki/apiserver.crt");
        let key = lab.host("m1").path("/etc/kubernetes/pki/apiserver.key");
        let (old_crt, old_key) = (std::fs::read(&crt).unwrap(), std::fs::read(&key).unwrap());
        let old_served = cp.block_on(cp.served_fingerprint("m1")).unwrap();
        let renew = CpOp::RenewApiserverCert {
            node: "m1".into(),
            sans: sans.clone(),
        };
        once(&mut cp, &renew);
        assert_ne!(std::fs::read(&crt).unwrap(), old_crt);
        assert_ne!(
            cp.block_on(cp.served_fingerprint("m1")).unwrap(),
            old_served,
            "the new pair is served without a restart"
        );
        assert!(
            !notices
                .lock()
                .unwrap()
                .iter()
                .any(|n| n.contains("restarting its static pod")),
            "the stand-in reloads: no fallback restart"
        );
        assert!(
            cp.is_done(&CpOp::VerifySans {
                nodes: vec!["m1".into()],
                sans: sans.clone()
            })
            .unwrap()
        );
        // Rollback: the old pair back, served again.
        once(&mut cp, &CpOp::RestoreApiserverCert { node: "m1".into() });
        assert_eq!(std::fs::read(&crt).unwrap(), old_crt);
        assert_eq!(std::fs::read(&key).unwrap(), old_key);
        assert_eq!(
            cp.block_on(cp.served_fingerprint("m1")).unwrap(),
            old_served
        );
        // Again, with an apiserver that does not reload its pair: after
        // the bound, its static pod is restarted (said so) and serves it.
        lab.set_cert_reload("m1", false).unwrap();
        cp.apply(&renew).unwrap();
        lab.set_cert_reload("m1", true).unwrap();
        assert!(
            notices
                .lock()
                .unwrap()
                .iter()
                .any(|n| n.contains("restarting its static pod")),
            "{:?}",
            notices.lock().unwrap()
        );
        assert!(cp.is_done(&renew).unwrap());
        // The endpoint's rollback, then again.
        once(&mut cp, &CpOp::RestoreClusterConfiguration);
        let (_, cc) = cp.block_on(cp.cluster_configuration()).unwrap();
        assert!(
            cc.get("controlPlaneEndpoint")
                .is_none_or(|e| e != &json!(format!("{vip}:6443"))),
            "{cc}"
        );
        cp.apply(&ep).unwrap();

        // The join, through the executor and a journal, watched in the real
        // member list: a learner first, then a voter.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::<bool>::new()));
        let watcher = {
            let (stop, seen) = (stop.clone(), seen.clone());
            let eps = [format!("https://{}:2379", lab.addr("m1"))];
            let tls = lab.etcd_tls();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let out = std::process::Command::new("etcdctl")
                        .env("ETCDCTL_API", "3")
                        .arg(format!("--endpoints={}", eps.join(",")))
                        .arg(format!("--cacert={}", tls.ca.display()))
                        .arg(format!("--cert={}", tls.cert.display()))
                        .arg(format!("--key={}", tls.key.display()))
                        .args(["member", "list", "-w", "json"])
                        .output();
                    if let Ok(o) = out {
                        let v: serde_json::Value =
                            serde_json::from_slice(&o.stdout).unwrap_or_default();
                        for m in v["members"].as_array().into_iter().flatten() {
                            let peer = m["peerURLs"].to_string();
                            if peer.contains(&format!("{m2_addr}:")) {
                                let learner = m["isLearner"].as_bool().unwrap_or(false);
                                let mut s = seen.lock().unwrap();
                                if s.last() != Some(&learner) {
                                    s.push(learner);
                                }
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        lab.set_promote_delay(3000).unwrap();
        let plan = Plan {
            cluster: "testlab".into(),
            from: t.clone(),
            to: t.clone(),
            learner_joins: true,
            phases: vec![Phase {
                id: "join-m2".into(),
                title: "join m2".into(),
                steps: vec![
                    step("upload-certs", CpOp::UploadCerts, None),
                    step(
                        "join",
                        CpOp::JoinControlPlane {
                            node: "m2".into(),
                            address: m2_addr,
                        },
                        Some(CpOp::ResetNode { node: "m2".into() }),
                    ),
                    step("promoted", CpOp::MemberPromoted { node: "m2".into() }, None),
                    step(
                        "taint",
                        CpOp::EnsureControlPlaneTaint { node: "m2".into() },
                        None,
                    ),
                    step(
                        "extras",
                        CpOp::SyncApiserverExtras {
                            from: "m1".into(),
                            node: "m2".into(),
                        },
                        None,
                    ),
                    step(
                        "static-pods",
                        CpOp::VerifyStaticPods { node: "m2".into() },
                        None,
                    ),
                    step(
                        "probe",
                        CpOp::ProbeApiserver {
                            node: "m2".into(),
                            address: m2_addr,
                            port: 6443,
                        },
                        None,
                    ),
                    step(
                        "nodes",
                        CpOp::VerifyNodes {
                            nodes: vec!["m1".into(), "m2".into()],
                        },
                        None,
                    ),
                    step(
                        "etcd",
                        CpOp::VerifyEtcd {
                            members: vec!["m1".into(), "m2".into()],
                        },
                        None,
                    ),
                    step(
                        "sans",
                        CpOp::VerifySans {
                            nodes: vec!["m1".into(), "m2".into()],
                            sans: sans.clone(),
                        },
                        None,
                    ),
                ],
                rollback: None,
            }],
            warnings: Vec::new(),
            recovery: None,
        };
        // The certificates uploaded, then a crash: the journal says a key
        // was issued and the step is done, the new process has no key. The
        // resumed join uploads again instead of using an old key.
        once(&mut cp, &CpOp::UploadCerts);
        assert!(cp.key_issued().is_some());
        cp.forget_key();
        let mut journal = MemJournal::default();
        let now = jiff::Timestamp::now();
        for r in [
            Record::Begin {
                plan: plan.digest(),
                at: now,
            },
            Record::Started {
                step: "upload-certs".into(),
                at: now,
            },
            Record::CertificateKey { at: now },
            Record::Done {
                step: "upload-certs".into(),
                at: now,
                skipped: false,
            },
        ] {
            journal.append(r).unwrap();
        }
        let sim = hacore::in_memory::InMemoryCluster::new(&t, &t, jiff::Timestamp::now()).shared();
        let (mut hv, mut lbk, mut ob) = (
            hacore::in_memory::InMemoryHandle(sim.clone()),
            hacore::in_memory::InMemoryHandle(sim.clone()),
            hacore::in_memory::InMemoryHandle(sim.clone()),
        );
        let mut events = Vec::new();
        let outcome = {
            let mut b = Backends {
                hypervisor: &mut hv,
                load_balancer: &mut lbk,
                control_plane: &mut cp,
                observer: &mut ob,
                clock: &Wall,
            };
            exec::run(&plan, &mut b, &mut journal, &Options::default(), &mut |e| {
                events.push(format!("{e:?}"))
            })
            .unwrap()
        };
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        watcher.join().unwrap();
        for e in &events {
            println!("event: {e}");
        }
        said.extend(events.iter().cloned());
        assert_eq!(outcome, Outcome::Completed, "{events:#?}");
        assert!(
            notices
                .lock()
                .unwrap()
                .iter()
                .any(|n| n.contains("uploading the certificates again")),
            "{:?}",
            notices.lock().unwrap()
        );
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            [true, false],
            "m2 as seen in the real member list: learner, then voter"
        );
        let members = lab.etcd_members().unwrap();
        assert_eq!(
            members.iter().filter(|m| !m.is_learner).count(),
            2,
            "{members:?}"
        );

        // Secrets: the key and token kubeadm printed are nowhere in what
        // the backend said, the journal, the notices or its Debug.
        let secrets = spied_secrets(&lab);
        // The journal's lines as the file journal writes them.
        let journal_text: String = journal
            .records
            .iter()
            .map(|r| serde_json::to_string(r).unwrap() + "\n")
            .collect();
        assert!(
            journal_text.contains("certificate-key"),
            "the journal records that a key was issued: {journal_text}"
        );
        said.push(journal_text);
        said.extend(notices.lock().unwrap().iter().cloned());
        said.push(format!("{cp:?}"));
        for s in &said {
            for secret in &secrets {
                assert!(!s.contains(secret.as_str()), "a secret leaked: {s}");
            }
        }
        // Issue 21 point 2: neither the token nor a key was on any command
        // line of kubeadm (its own /proc/self/cmdline, recorded at every
        // call) or in sudo's log, on the master that uploaded and the one
        // that joined; they went in configuration files.
        for h in ["m1", "m2"] {
            no_secret_in_cmdlines_or_sudo_log(&lab, h, &secrets);
        }
        let m2_calls = lab.kubeadm_cmdlines("m2").unwrap();
        assert!(
            m2_calls
                .iter()
                .any(|w| w.contains(&"join".to_string()) && w.contains(&"--config".to_string())),
            "m2 joined with kubeadm join --config: {m2_calls:?}"
        );
        let m1_calls = lab.kubeadm_cmdlines("m1").unwrap();
        assert!(
            m1_calls
                .iter()
                .any(|w| w.contains(&"certificate-key".to_string()))
                && m1_calls
                    .iter()
                    .any(|w| w.contains(&"upload-certs".to_string())
                        && w.contains(&"--config".to_string())),
            "m1 generated the key and uploaded through a config: {m1_calls:?}"
        );
        for h in ["m1", "m2"] {
            let sudo = lab.sudo_log(h);
            assert!(
                sudo.contains("USER=root ; COMMAND=") && sudo.contains("kubeadm"),
                "{h}: hacli's commands ran through sudo, logged: {sudo}"
            );
        }

        // A fresh backend (a crash): no key in memory, so not done.
        assert!(cp.is_done(&CpOp::UploadCerts).unwrap());
        cp.forget_key();
        assert!(!cp.is_done(&CpOp::UploadCerts).unwrap());

        // kubelet.conf to the VIP and back: the old file byte for byte,
        // its owner and mode kept (point 9).
        let kubelet = lab.host("w1").path("/etc/kubernetes/kubelet.conf");
        lab.host("w1")
            .exec_ok(&["chown", "65534:4", "/etc/kubernetes/kubelet.conf"])
            .unwrap();
        lab.host("w1")
            .exec_ok(&["chmod", "0640", "/etc/kubernetes/kubelet.conf"])
            .unwrap();
        let owner_mode = |p: &Path| {
            use std::os::unix::fs::MetadataExt as _;
            let m = std::fs::metadata(p).unwrap();
            (m.uid(), m.gid(), m.mode() & 0o7777)
        };
        let before = std::fs::read(&kubelet).unwrap();
        let m1_url = format!("https://{}:6443", lab.addr("m1"));
        let vip_url = format!("https://{vip}:6443");
        once(
            &mut cp,
            &CpOp::SetKubeletServer {
                node: "w1".into(),
                server: vip_url.clone(),
            },
        );
        assert!(String::from_utf8_lossy(&std::fs::read(&kubelet).unwrap()).contains(&vip_url));
        assert_eq!(owner_mode(&kubelet), (65534, 4, 0o640), "edited in place");
        cp.apply(&CpOp::SetKubeletServer {
            node: "w1".into(),
            server: m1_url.clone(),
        })
        .unwrap();
        assert_eq!(std::fs::read(&kubelet).unwrap(), before);
        assert_eq!(owner_mode(&kubelet), (65534, 4, 0o640));

        // Point 11: a reboot that sudo refuses is reported at once, naming
        // sudo, not after the wait for a reboot that never comes.
        lab.set_sudo("w1", SSH_USER, false).unwrap();
        let boot = lab.host("w1").boot_id();
        let t0 = std::time::Instant::now();
        let e = cp
            .apply(&CpOp::Reboot { node: "w1".into() })
            .unwrap_err()
            .to_string();
        let took = t0.elapsed();
        lab.set_sudo("w1", SSH_USER, true).unwrap();
        assert!(
            e.contains("did not ask for a reboot") && e.contains("sudo"),
            "{e}"
        );
        assert!(
            took < opts.join_timeout / 2,
            "reported after {took:?}, as if it waited for the reboot ({:?})",
            opts.join_timeout
        );
        assert_eq!(lab.host("w1").boot_id(), boot, "w1 was not rebooted");
        // m2 joined through the endpoint: its admin.conf names the VIP.
        assert!(
            cp.is_done(&CpOp::SetAdminConf {
                node: "m2".into(),
                server: vip_url.clone()
            })
            .unwrap()
        );
        once(
            &mut cp,
            &CpOp::SetAdminConf {
                node: "m2".into(),
                server: m1_url.clone(),
            },
        );
        cp.apply(&CpOp::SetAdminConf {
            node: "m2".into(),
            server: vip_url.clone(),
        })
        .unwrap();

        // A missing audit policy is copied with its flag; the apiserver on
        // m2 is restarted by its kubelet and answers again.
        let policy = "/etc/kubernetes/audit/policy.yaml";
        let m1 = lab.host("m1");
        // m1 as its admin set it up: the policy and the log directory.
        m1.exec_ok(&[
            "mkdir",
            "-p",
            "/etc/kubernetes/audit",
            "/var/log/kubernetes/audit",
        ])
        .unwrap();
        std::fs::write(
            m1.path(policy),
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n",
        )
        .unwrap();
        let manifest = m1.path("/etc/kubernetes/manifests/kube-apiserver.yaml");
        let text = std::fs::read_to_string(&manifest).unwrap();
        let text = text.replacen(
            "- --advertise-address",
            &format!("- --audit-policy-file={policy}\n    - --audit-log-path=/var/log/kubernetes/audit/audit.log\n    - --advertise-address"),
            1,
        );
        assert!(text.contains("--audit-policy-file"), "{text}");
        std::fs::write(&manifest, text).unwrap();
        let extras = CpOp::SyncApiserverExtras {
            from: "m1".into(),
            node: "m2".into(),
        };
        let m2_manifest = lab
            .host("m2")
            .path("/etc/kubernetes/manifests/kube-apiserver.yaml");
        let manifest_meta = owner_mode(&m2_manifest);
        once(&mut cp, &extras);
        assert_eq!(
            std::fs::read(lab.host("m2").path(policy)).unwrap(),
            std::fs::read(m1.path(policy)).unwrap()
        );
        // Point 9: the new manifest was staged outside the manifests
        // directory: the kubelet (which takes every file there for a static
        // pod, and watches it) saw no other file; its owner and mode kept.
        assert_eq!(owner_mode(&m2_manifest), manifest_meta);
        let static_pods = [
            "etcd.yaml",
            "kube-apiserver.yaml",
            "kube-controller-manager.yaml",
            "kube-scheduler.yaml",
        ];
        for h in ["m1", "m2"] {
            let seen = lab.static_pod_files(h);
            assert!(
                seen.iter().all(|f| static_pods.contains(&f.as_str())) && seen.len() == 4,
                "{h}: the kubelet took these files for static pods: {seen:?}"
            );
        }
        assert!(
            std::fs::read_to_string(
                lab.host("m2")
                    .path("/etc/kubernetes/manifests/kube-apiserver.yaml")
            )
            .unwrap()
            .contains("--audit-policy-file")
        );
        assert!(
            cp.is_done(&CpOp::ProbeApiserver {
                node: "m2".into(),
                address: m2_addr,
                port: 6443
            })
            .unwrap()
        );

        // A new apiserver that does not answer /readyz directly blocks; a
        // template that joined as a worker by itself is refused.
        lab.add_blank_host("m3", M3).unwrap();
        lab.add_sudo_user("m3", SSH_USER).unwrap();
        let m3_addr: IpAddr = lab.addr("m3").into();
        let e = cp
            .is_done(&CpOp::ProbeApiserver {
                node: "m3".into(),
                address: m3_addr,
                port: 6443,
            })
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not answer /readyz"), "{e}");
        let join = lab.worker_join_command().unwrap();
        lab.run_secret("m3", &join, Duration::from_secs(120))
            .unwrap();
        let e = cp
            .is_done(&CpOp::VerifyNotJoined { node: "m3".into() })
            .unwrap_err()
            .to_string();
        assert!(e.contains("joined the cluster by itself"), "{e}");

        // The rollback of the join: member removed by id, Node gone.
        once(&mut cp, &CpOp::ResetNode { node: "m2".into() });
        let members = lab.etcd_members().unwrap();
        assert_eq!(members.len(), 1, "{members:?}");
        assert!(lab.node("m2").is_none());
    }
}
