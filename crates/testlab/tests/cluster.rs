//! Lab masters (`testlab::cluster`): the seed's cluster as lab hosts, a real
//! etcd that grows through the stand-in `kubeadm join`, the apiserver
//! stand-in's certificate reload. Needs root (isolated lab hosts), etcd,
//! etcdctl, openssl, python3 with PyYAML and OpenSSH; skips, saying so,
//! otherwise.

use std::process::Command;
use std::time::{Duration, Instant};

use testlab::cluster::ClusterLab;

fn ssh(lab: &ClusterLab, host: &str, stdin: &str) -> std::process::Output {
    ssh_to(
        lab.client_key(),
        lab.known_hosts(),
        &lab.addr(host).to_string(),
        stdin,
    )
}

/// `ssh root@addr sh -s` with `stdin` as the script (secrets stay off argv).
fn ssh_to(
    key: &std::path::Path,
    known_hosts: &std::path::Path,
    addr: &str,
    stdin: &str,
) -> std::process::Output {
    let mut c = Command::new("ssh");
    c.args(["-i"])
        .arg(key)
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=5",
        ])
        .arg(format!("root@{addr}"))
        .arg("sh -s")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().expect("ssh");
    {
        use std::io::Write as _;
        let mut i = child.stdin.take().unwrap();
        i.write_all(stdin.as_bytes()).unwrap();
    }
    child.wait_with_output().expect("ssh output")
}

fn exec(lab: &ClusterLab, host: &str, argv: &[&str]) -> String {
    let out = lab.host(host).exec(argv).unwrap();
    assert!(
        out.status.success(),
        "{host}: {argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn seed_starts_with_one_voter_and_ready_nodes() {
    let Some(lab) = ClusterLab::start_or_skip("seed_starts_with_one_voter_and_ready_nodes") else {
        return;
    };
    let members = lab.etcd_members().unwrap();
    assert_eq!(members.len(), 1, "{members:?}");
    assert_eq!(members[0].name, "m1");
    assert!(!members[0].is_learner);
    assert_eq!(
        members[0].peer_urls,
        vec![format!("https://{}:2380", lab.addr("m1"))]
    );
    for n in ["m1", "w1", "w2"] {
        assert!(lab.node_ready(n), "Node {n} is not Ready");
    }
    let m1 = lab.node("m1").unwrap();
    assert!(
        m1.pointer("/metadata/labels/node-role.kubernetes.io~1control-plane")
            .is_some(),
        "{m1}"
    );
    let taints = m1.pointer("/spec/taints").unwrap().to_string();
    assert!(
        taints.contains("node-role.kubernetes.io/control-plane") && taints.contains("NoSchedule"),
        "{taints}"
    );
    let w1 = lab.node("w1").unwrap();
    assert!(w1.pointer("/spec/taints").is_none(), "{w1}");
    // kubeadm's files.
    let m1h = lab.host("m1");
    for f in [
        "admin.conf",
        "super-admin.conf",
        "kubelet.conf",
        "controller-manager.conf",
        "scheduler.conf",
        "manifests/etcd.yaml",
        "manifests/kube-apiserver.yaml",
        "manifests/kube-controller-manager.yaml",
        "manifests/kube-scheduler.yaml",
        "pki/ca.crt",
        "pki/ca.key",
        "pki/apiserver.crt",
        "pki/apiserver-kubelet-client.crt",
        "pki/front-proxy-ca.crt",
        "pki/front-proxy-client.crt",
        "pki/sa.key",
        "pki/sa.pub",
        "pki/etcd/ca.crt",
        "pki/etcd/server.crt",
        "pki/etcd/peer.crt",
        "pki/etcd/healthcheck-client.crt",
        "pki/apiserver-etcd-client.crt",
    ] {
        assert!(
            m1h.path(format!("/etc/kubernetes/{f}")).exists(),
            "m1 lacks /etc/kubernetes/{f}"
        );
    }
    assert!(m1h.path("/var/lib/etcd/member").is_dir());
    let admin = std::fs::read_to_string(lab.admin_conf()).unwrap();
    assert!(
        admin.contains(&format!("server: https://{}:6443", lab.addr("m1"))),
        "{admin}"
    );
    let kubelet_w1 =
        std::fs::read_to_string(lab.host("w1").path("/etc/kubernetes/kubelet.conf")).unwrap();
    assert!(kubelet_w1.contains(&format!("server: https://{}:6443", lab.addr("m1"))));
    // The ConfigMaps kubeadm writes.
    let cm = |ns: &str, n: &str| {
        lab.store()
            .get(testlab::ApiServer::resource("configmaps"), ns, n)
            .unwrap_or_else(|e| panic!("ConfigMap {ns}/{n}: {e}"))
    };
    let kc = cm("kube-system", "kubeadm-config");
    let ccfg = kc
        .pointer("/data/ClusterConfiguration")
        .unwrap()
        .as_str()
        .unwrap();
    assert!(ccfg.contains("kind: ClusterConfiguration"), "{ccfg}");
    assert!(!ccfg.contains("controlPlaneEndpoint"), "{ccfg}");
    assert!(
        cm("kube-system", "kube-proxy")
            .pointer("/data/kubeconfig.conf")
            .is_some()
    );
    assert!(
        cm("kube-public", "cluster-info")
            .pointer("/data/kubeconfig")
            .is_some()
    );
    // The four static pods run, as mirror Pods say.
    let pods = lab
        .store()
        .list(
            testlab::ApiServer::resource("pods"),
            Some("kube-system"),
            None,
            Some("spec.nodeName=m1"),
        )
        .unwrap();
    let running: Vec<&str> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p.pointer("/status/phase").and_then(|v| v.as_str()) == Some("Running"))
        .filter_map(|p| p.pointer("/metadata/name").and_then(|v| v.as_str()))
        .collect();
    for c in [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ] {
        assert!(running.contains(&format!("{c}-m1").as_str()), "{running:?}");
    }
    // The apiserver on m1 answers /readyz with the cluster CA.
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", "--cacert"])
        .arg(lab.ca_crt())
        .arg(format!("https://{}:6443/readyz", lab.addr("m1")))
        .output();
    if let Ok(out) = out {
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ok", "{out:?}");
    }
    // kubectl with admin.conf, if installed.
    match Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(lab.admin_conf())
        .args(["get", "nodes", "--request-timeout=10s"])
        .output()
    {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "kubectl: {out:?}");
            for n in ["m1", "w1", "w2"] {
                assert!(text.contains(n), "{text}");
            }
            assert!(text.contains("Ready"), "{text}");
            assert!(text.contains("control-plane"), "{text}");
        }
        Err(e) => println!("kubectl not run ({e}): part skipped"),
    }
    // Versions the backend compares, over SSH.
    let out = ssh(
        &lab,
        "w2",
        "kubeadm version -o short; kubelet --version; containerd --version; systemctl is-active kubelet",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.contains("v1.32.0\nKubernetes v1.32.0\ncontainerd"),
        "{text}"
    );
    assert!(text.ends_with("active\n"), "{text}");
}

/// Wait for `cond` up to `secs`, polling every 50 ms.
fn wait(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < until, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Phase 0 by hand on m1, against the stand-in: the stable endpoint (m1's
/// own address here, no load balancer in this lab) and extra SANs.
fn retrofit_endpoint(lab: &ClusterLab, extra_san: &str) {
    let m1 = lab.addr("m1");
    let cfg = format!(
        "apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
clusterName: kubernetes
kubernetesVersion: v1.32.0
controlPlaneEndpoint: {m1}:6443
apiServer:
  certSANs: [{extra_san}, k8s-api.testlab.lan]
networking:
  dnsDomain: cluster.local
  serviceSubnet: 10.96.0.0/12
  podSubnet: 10.244.0.0/16
"
    );
    testlab::cluster::put(lab.host("m1"), "/root/cp.yaml", &cfg, "0600").unwrap();
    let out = exec(
        lab,
        "m1",
        &[
            "kubeadm",
            "init",
            "phase",
            "upload-config",
            "kubeadm",
            "--config",
            "/root/cp.yaml",
        ],
    );
    assert!(
        out.contains(r#"[upload-config] Storing the configuration used in ConfigMap "kubeadm-config" in the "kube-system" Namespace"#),
        "{out}"
    );
}

fn upload_certs(lab: &ClusterLab) -> String {
    let out = exec(
        lab,
        "m1",
        &["kubeadm", "init", "phase", "upload-certs", "--upload-certs"],
    );
    let lines: Vec<&str> = out.lines().collect();
    let i = lines
        .iter()
        .position(|l| *l == "[upload-certs] Using certificate key:")
        .unwrap_or_else(|| panic!("no key line in {out}"));
    let key = lines[i + 1].to_string();
    assert_eq!(key.len(), 64);
    assert!(key.chars().all(|c| c.is_ascii_hexdigit()));
    key
}

fn secret(lab: &ClusterLab, name: &str) -> Option<serde_json::Value> {
    lab.store()
        .get(testlab::ApiServer::resource("secrets"), "kube-system", name)
        .ok()
}

#[test]
fn control_plane_join_adds_a_learner_then_a_voter_and_reset_removes_it() {
    let test = "control_plane_join_adds_a_learner_then_a_voter_and_reset_removes_it";
    let Some(mut lab) = ClusterLab::start_or_skip(test) else {
        return;
    };
    retrofit_endpoint(&lab, &lab.lab_addr(testlab::cluster::VIP).to_string());
    let key = upload_certs(&lab);
    // The Secret expires 2 h from now with its owner token.
    let certs = secret(&lab, "kubeadm-certs").expect("Secret kubeadm-certs");
    let owner = certs
        .pointer("/metadata/ownerReferences/0/name")
        .and_then(|v| v.as_str())
        .expect("owner token")
        .to_string();
    let exp = secret(&lab, &owner).unwrap()["data"]["expiration"]
        .as_str()
        .map(|b| {
            use base64::Engine as _;
            String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b).unwrap()).unwrap()
        })
        .unwrap();
    let exp: jiff::Timestamp = exp.parse().unwrap();
    let left = exp.duration_since(jiff::Timestamp::now()).as_secs();
    assert!((7100..=7200).contains(&left), "expires in {left} s");

    let join = lab
        .kubeadm(
            "m1",
            &[
                "token",
                "create",
                "--print-join-command",
                "--certificate-key",
                &key,
            ],
        )
        .unwrap();
    let join = join.trim().to_string();
    let re = regex::Regex::new(
        r"^kubeadm join [0-9.]+:6443 --token [a-z0-9]{6}\.[a-z0-9]{16} --discovery-token-ca-cert-hash sha256:[0-9a-f]{64} --control-plane --certificate-key [0-9a-f]{64}$",
    )
    .unwrap();
    assert!(re.is_match(&join), "the join line has kubeadm's shape");
    let token = join.split_whitespace().nth(4).unwrap().to_string();

    lab.set_promote_delay(1500).unwrap();
    lab.add_blank_host("m2", testlab::cluster::M2).unwrap();
    let m2 = lab.addr("m2");
    let peer = format!("https://{m2}:2380");
    let line = format!("{join} --apiserver-advertise-address {m2}\n");
    let (key_path, kh) = (
        lab.client_key().to_path_buf(),
        lab.known_hosts().to_path_buf(),
    );
    let m2s = m2.to_string();
    let joined = std::thread::scope(|s| {
        let h = s.spawn(|| ssh_to(&key_path, &kh, &m2s, &line));
        let (mut learner, mut voter) = (false, false);
        while !h.is_finished() {
            if let Ok(ms) = lab.etcd_members() {
                if let Some(m) = ms.iter().find(|m| m.peer_urls.contains(&peer)) {
                    if m.is_learner {
                        learner = true;
                    } else if learner {
                        voter = true;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        (h.join().unwrap(), learner, voter)
    });
    let (out, saw_learner, saw_voter_during) = joined;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "join failed: {stderr}\n{stdout}");
    assert!(saw_learner, "the member list never showed m2 as a learner");
    for l in [
        "[etcd] Announced new etcd member joining to the existing etcd cluster",
        "[etcd] Waiting for the new etcd member to join the cluster. This can take up to 40s",
        "[mark-control-plane] Marking the node m2 as control-plane by adding the taints [node-role.kubernetes.io/control-plane:NoSchedule]",
        "This node has joined the cluster and a new control plane instance was created:",
    ] {
        assert!(stdout.contains(l), "missing {l:?} in:\n{stdout}");
    }
    // Neither secret in what the join printed.
    for s in [&token, &key] {
        assert!(!stdout.contains(s.as_str()) && !stderr.contains(s.as_str()));
    }
    let ms = lab.etcd_members().unwrap();
    assert_eq!(ms.len(), 2, "{ms:?}");
    assert!(ms.iter().all(|m| !m.is_learner), "{ms:?}");
    println!("voter seen during the join: {saw_voter_during}");
    lab.wait_node_ready("m2", Duration::from_secs(30)).unwrap();
    let node = lab.node("m2").unwrap().to_string();
    assert!(
        node.contains("node-role.kubernetes.io/control-plane"),
        "{node}"
    );
    assert!(node.contains("NoSchedule"), "{node}");
    let m2h = lab.host("m2");
    let kubelet = std::fs::read_to_string(m2h.path("/etc/kubernetes/kubelet.conf")).unwrap();
    assert!(
        kubelet.contains(&format!("server: https://{}:6443", lab.addr("m1"))),
        "{kubelet}"
    );
    for f in [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ] {
        assert!(
            m2h.path(format!("/etc/kubernetes/manifests/{f}.yaml"))
                .exists()
        );
    }
    let etcd_manifest =
        std::fs::read_to_string(m2h.path("/etc/kubernetes/manifests/etcd.yaml")).unwrap();
    assert!(etcd_manifest.contains("--initial-cluster-state=existing"));
    // m2's own apiserver answers /readyz with the cluster CA, directly.
    wait(30, "m2's apiserver /readyz", || {
        Command::new("curl")
            .args(["-sf", "--max-time", "2", "--cacert"])
            .arg(lab.ca_crt())
            .arg(format!("https://{m2}:6443/readyz"))
            .output()
            .is_ok_and(|o| o.stdout == b"ok")
    });

    // reset -f removes the member and the files.
    let out = ssh(&lab, "m2", "kubeadm reset -f\n");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.contains("[reset] Deleting contents of directories"),
        "{text}"
    );
    let ms = lab.etcd_members().unwrap();
    assert_eq!(ms.len(), 1, "{ms:?}");
    assert_eq!(ms[0].name, "m1");
    let m2h = lab.host("m2");
    assert_eq!(
        std::fs::read_dir(m2h.path("/var/lib/etcd"))
            .unwrap()
            .count(),
        0
    );
    assert!(!m2h.path("/etc/kubernetes/kubelet.conf").exists());
    assert!(!m2h.path("/etc/kubernetes/admin.conf").exists());
    assert!(!m2h.path("/etc/kubernetes/manifests/etcd.yaml").exists());
    wait(10, "m2's etcd and apiserver stopped", || {
        !lab.host("m2").answers(2379, Duration::from_millis(200))
            && !lab.host("m2").answers(6443, Duration::from_millis(200))
    });

    // A late join: the owner token expired, so the Secret is gone.
    let mut tok = secret(&lab, &owner).unwrap();
    {
        use base64::Engine as _;
        tok["data"]["expiration"] = serde_json::json!(
            base64::engine::general_purpose::STANDARD.encode("2020-01-01T00:00:00Z")
        );
    }
    lab.store().put(tok).unwrap();
    let out = ssh(&lab, "m2", &line);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(r#"Secret "kubeadm-certs" was not found"#),
        "{stderr}"
    );
    assert!(!stderr.contains(&key) && !stderr.contains(&token));
    assert_eq!(lab.etcd_members().unwrap().len(), 1);
}

#[allow(dead_code)]
fn unused(lab: &ClusterLab) {
    let _ = exec(lab, "m1", &["true"]);
    wait(1, "nothing", || true);
}
