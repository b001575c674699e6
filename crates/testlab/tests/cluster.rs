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
    let t0 = Instant::now();
    let Some(lab) = ClusterLab::start_or_skip("seed_starts_with_one_voter_and_ready_nodes") else {
        return;
    };
    println!("the seed's cluster started in {:?}", t0.elapsed());
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
    let running = || -> Vec<String> {
        let pods = lab
            .store()
            .list(
                testlab::ApiServer::resource("pods"),
                Some("kube-system"),
                None,
                Some("spec.nodeName=m1"),
            )
            .unwrap();
        pods["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p.pointer("/status/phase").and_then(|v| v.as_str()) == Some("Running"))
            .filter_map(|p| p.pointer("/metadata/name").and_then(|v| v.as_str()))
            .map(str::to_string)
            .collect()
    };
    let until = Instant::now() + Duration::from_secs(20);
    while running().len() < 4 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    let running = running();
    for c in [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ] {
        assert!(
            running.contains(&format!("{c}-m1")),
            "{running:?}; m1's kubelet log:\n{}",
            lab.log("m1", "kubelet.log", 40)
        );
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
        Err(e) => testlab::skip::skip(
            "kubectl get nodes on the cluster lab",
            &format!("kubectl not run ({e}): install kubernetes-client"),
        ),
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

    // Restarting the kubelet: NotReady for a moment, then Ready again.
    let out = ssh(&lab, "w1", "systemctl restart kubelet\n");
    assert!(out.status.success(), "{out:?}");
    wait(10, "w1 NotReady after the kubelet restart", || {
        !lab.node_ready("w1")
    });
    wait(20, "w1 Ready again", || lab.node_ready("w1"));
    // Per-host versions, as the version checks see them.
    lab.set_versions(
        "w2",
        &testlab::cluster::Versions {
            kubeadm: "v1.31.4".into(),
            kubelet: "v1.31.4".into(),
            containerd: "1.6.20".into(),
        },
    )
    .unwrap();
    let out = ssh(
        &lab,
        "w2",
        "kubeadm version -o short; kubelet --version; containerd --version; systemctl restart kubelet",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(
            "v1.31.4\nKubernetes v1.31.4\ncontainerd github.com/containerd/containerd v1.6.20 "
        ),
        "{text}"
    );
    // The running kubelet reports its version once restarted (as after an
    // upgrade of the binary).
    wait(10, "w2's Node reporting kubelet v1.31.4", || {
        lab.node("w2").is_some_and(|n| {
            n.pointer("/status/nodeInfo/kubeletVersion")
                .and_then(|v| v.as_str())
                == Some("v1.31.4")
        })
    });
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

    lab.add_blank_host("m2", testlab::cluster::M2).unwrap();
    let m2 = lab.addr("m2");
    // A wrong certificate key: refused, nothing joined.
    let wrong = format!(
        "{} --apiserver-advertise-address {m2}\n",
        join.replace(&key, &"0".repeat(64))
    );
    let out = ssh(&lab, "m2", &wrong);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("error decoding secret data with provided key"),
        "{stderr}"
    );
    assert_eq!(lab.etcd_members().unwrap().len(), 1);
    let peer = format!("https://{m2}:2380");
    let line = format!("{join} --apiserver-advertise-address {m2}\n");
    let (key_path, kh) = (
        lab.client_key().to_path_buf(),
        lab.known_hosts().to_path_buf(),
    );
    let m2s = m2.to_string();
    let t0 = Instant::now();
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
    println!("control-plane join over SSH took {:?}", t0.elapsed());
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

    // The lab's switch: m2's apiserver fails /readyz, then answers again.
    let readyz = || {
        Command::new("curl")
            .args(["-s", "--max-time", "2", "--cacert"])
            .arg(lab.ca_crt())
            .arg(format!("https://{m2}:6443/readyz"))
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    lab.set_apiserver_ready("m2", false).unwrap();
    assert!(readyz().contains("[-]etcd failed"), "{}", readyz());
    lab.set_apiserver_ready("m2", true).unwrap();
    wait(5, "m2's /readyz ok again", || readyz() == "ok");

    // reset -f removes the member and the files.
    let out = ssh(&lab, "m2", "kubeadm reset -f\n");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.contains("[reset] Deleting contents of directories"),
        "{text}"
    );
    let ms = lab.etcd_members().unwrap();
    assert_eq!(ms.len(), 1, "{ms:?}\nreset said:\n{text}");
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

/// The subjectAltName the server at `addr:6443` presents in a handshake.
fn presented_sans(addr: &str) -> String {
    let hs = Command::new("openssl")
        .args(["s_client", "-connect", &format!("{addr}:6443")])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .unwrap();
    let mut c = Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        c.stdin.take().unwrap().write_all(&hs.stdout).unwrap();
    }
    String::from_utf8_lossy(&c.wait_with_output().unwrap().stdout).into_owned()
}

fn apiserver_pid(lab: &ClusterLab, host: &str) -> u64 {
    let out = lab
        .host(host)
        .exec(&["cat", "/run/testlab/pods/kube-apiserver.json"])
        .unwrap();
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .ok()
        .and_then(|v| v["pid"].as_u64())
        .unwrap_or(0)
}

#[test]
fn certs_apiserver_keeps_a_pair_issues_sans_and_the_apiserver_reloads_it() {
    let test = "certs_apiserver_keeps_a_pair_issues_sans_and_the_apiserver_reloads_it";
    let Some(lab) = ClusterLab::start_or_skip(test) else {
        return;
    };
    let m1 = lab.addr("m1").to_string();
    let vip = lab.lab_addr(testlab::cluster::VIP).to_string();
    retrofit_endpoint(&lab, &vip);
    let crt = lab.host("m1").path("/etc/kubernetes/pki/apiserver.crt");
    let before = std::fs::read(&crt).unwrap();
    let sans_before = presented_sans(&m1);
    assert!(
        sans_before.contains(&format!("IP Address:{m1}")),
        "{sans_before}"
    );
    assert!(
        !sans_before.contains(&format!("IP Address:{vip}")),
        "{sans_before}"
    );
    let phase = [
        "kubeadm",
        "init",
        "phase",
        "certs",
        "apiserver",
        "--config",
        "/root/cp.yaml",
    ];
    // An existing pair is left alone, even with the wrong SANs.
    let out = exec(&lab, "m1", &phase);
    assert!(
        out.contains("[certs] Using existing apiserver certificate and key on disk"),
        "{out}"
    );
    assert_eq!(std::fs::read(&crt).unwrap(), before);
    // Moved aside, a new pair carries the SANs.
    let pid = apiserver_pid(&lab, "m1");
    assert!(pid > 0);
    exec(
        &lab,
        "m1",
        &[
            "sh",
            "-c",
            "mv /etc/kubernetes/pki/apiserver.crt /root/apiserver.crt.old && mv /etc/kubernetes/pki/apiserver.key /root/apiserver.key.old",
        ],
    );
    let out = exec(&lab, "m1", &phase);
    assert!(
        out.contains(r#"[certs] Generating "apiserver" certificate and key"#),
        "{out}"
    );
    let sans = exec(
        &lab,
        "m1",
        &[
            "openssl",
            "x509",
            "-noout",
            "-ext",
            "subjectAltName",
            "-in",
            "/etc/kubernetes/pki/apiserver.crt",
        ],
    );
    for want in [
        format!("IP Address:{vip}"),
        format!("IP Address:{m1}"),
        "DNS:k8s-api.testlab.lan".to_string(),
        "DNS:kubernetes.default.svc.cluster.local".to_string(),
        "IP Address:10.96.0.1".to_string(),
        "DNS:m1".to_string(),
    ] {
        assert!(sans.contains(&want), "{want} not in {sans}");
    }
    // The running apiserver serves the new pair without a restart.
    let t0 = Instant::now();
    wait(10, "the new certificate in a handshake", || {
        presented_sans(&m1).contains(&format!("IP Address:{vip}"))
    });
    println!("new certificate served after {:?}", t0.elapsed());
    assert_eq!(
        apiserver_pid(&lab, "m1"),
        pid,
        "the apiserver was restarted"
    );

    // With the reload off, a new pair is not served until a restart.
    lab.set_cert_reload("m1", false).unwrap();
    exec(
        &lab,
        "m1",
        &[
            "sh",
            "-c",
            "sed -i 's/k8s-api.testlab.lan/k8s-api-2.testlab.lan/' /root/cp.yaml && rm /etc/kubernetes/pki/apiserver.crt /etc/kubernetes/pki/apiserver.key",
        ],
    );
    let out = exec(&lab, "m1", &phase);
    assert!(out.contains("Generating"), "{out}");
    std::thread::sleep(Duration::from_secs(2));
    for _ in 0..3 {
        let now = presented_sans(&m1);
        assert!(
            now.contains("DNS:k8s-api.testlab.lan"),
            "reloaded although disabled: {now}"
        );
    }
    // The fallback: restart the static pod (the manifest out and back in).
    exec(
        &lab,
        "m1",
        &[
            "mv",
            "/etc/kubernetes/manifests/kube-apiserver.yaml",
            "/etc/kubernetes/kube-apiserver.yaml",
        ],
    );
    wait(15, "the apiserver stopped", || {
        !lab.host("m1").answers(6443, Duration::from_millis(200))
    });
    exec(
        &lab,
        "m1",
        &[
            "mv",
            "/etc/kubernetes/kube-apiserver.yaml",
            "/etc/kubernetes/manifests/kube-apiserver.yaml",
        ],
    );
    wait(
        20,
        "the restarted apiserver serving the newest pair",
        || presented_sans(&m1).contains("DNS:k8s-api-2.testlab.lan"),
    );
    assert_ne!(apiserver_pid(&lab, "m1"), pid);

    // crictl stops the apiserver's container; the kubelet starts it again.
    let id = exec(
        &lab,
        "m1",
        &["crictl", "ps", "--name", "kube-apiserver", "-q"],
    );
    let id = id.trim();
    assert_eq!(id.len(), 64, "{id}");
    let pid = apiserver_pid(&lab, "m1");
    exec(&lab, "m1", &["crictl", "stop", id]);
    wait(15, "the apiserver started again after crictl stop", || {
        let p = apiserver_pid(&lab, "m1");
        p != 0 && p != pid && lab.host("m1").answers(6443, Duration::from_millis(200))
    });
    // A hand-added flag naming a missing file: a crash loop until it is
    // there.
    exec(
        &lab,
        "m1",
        &[
            "sed",
            "-i",
            "s|- --tls-private-key-file=/etc/kubernetes/pki/apiserver.key|- --tls-private-key-file=/etc/kubernetes/pki/apiserver.key\\n    - --audit-policy-file=/etc/kubernetes/audit-policy.yaml|",
            "/etc/kubernetes/manifests/kube-apiserver.yaml",
        ],
    );
    let manifest = std::fs::read_to_string(
        lab.host("m1")
            .path("/etc/kubernetes/manifests/kube-apiserver.yaml"),
    )
    .unwrap();
    assert!(manifest.contains("--audit-policy-file"), "{manifest}");
    std::thread::sleep(Duration::from_secs(3));
    assert!(!lab.host("m1").answers(6443, Duration::from_millis(300)));
    assert!(
        lab.log("m1", "pod-kube-apiserver.log", 5)
            .contains("audit-policy.yaml: no such file")
    );
    testlab::cluster::put(
        lab.host("m1"),
        "/etc/kubernetes/audit-policy.yaml",
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n",
        "0600",
    )
    .unwrap();
    wait(
        15,
        "the apiserver up once the audit policy is there",
        || lab.host("m1").answers(6443, Duration::from_millis(200)),
    );
}

#[test]
fn load_balancer_serves_the_vip_and_the_topology_is_valid() {
    let test = "load_balancer_serves_the_vip_and_the_topology_is_valid";
    let Some(mut lab) = ClusterLab::start_or_skip(test) else {
        return;
    };
    lab.add_load_balancer(&["m1"]).unwrap();
    let (m1, vip) = (lab.addr("m1"), lab.vip());
    // Through the real HAProxy on the VIP, to m1's apiserver (verified
    // with the cluster CA under m1's name: its certificate has no VIP yet).
    wait(15, "the VIP forwarding to m1's /readyz", || {
        Command::new("curl")
            .args(["-sf", "--max-time", "2", "--cacert"])
            .arg(lab.ca_crt())
            .arg("--connect-to")
            .arg(format!("{m1}:6443:{vip}:6443"))
            .arg(format!("https://{m1}:6443/readyz"))
            .output()
            .is_ok_and(|o| o.stdout == b"ok")
    });
    let out = ssh(&lab, "lb", "ip -4 -o addr show eth0\n");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("{vip}/32")), "{text}");
    let yaml = lab.topology_yaml("");
    let (t, report) = hacore::topology::Topology::from_yaml("lab.yaml", &yaml)
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    assert!(report.errors.is_empty());
    assert_eq!(t.control_plane_nodes().count(), 3);
    assert_eq!(t.control_plane_endpoint.address, std::net::IpAddr::V4(vip));
    assert!(t.has_load_balancer());

    // m1 powered off and on again (the drill's failure): its kubelet
    // starts etcd and the apiserver from the manifests again.
    let t0 = Instant::now();
    lab.host_mut("m1").reboot().unwrap();
    wait(60, "the VIP serving m1's /readyz after the reboot", || {
        Command::new("curl")
            .args(["-sf", "--max-time", "2", "--cacert"])
            .arg(lab.ca_crt())
            .arg("--connect-to")
            .arg(format!("{m1}:6443:{vip}:6443"))
            .arg(format!("https://{m1}:6443/readyz"))
            .output()
            .is_ok_and(|o| o.stdout == b"ok")
    });
    println!("m1 ready behind the VIP {:?} after power on", t0.elapsed());
    assert_eq!(lab.etcd_members().unwrap().len(), 1);
    lab.wait_node_ready("m1", Duration::from_secs(20)).unwrap();
}

#[test]
fn a_template_that_joins_as_a_worker_by_itself_registers_a_worker_node() {
    use hacore::backend::{HvOp, Hypervisor};
    use proxmox::{Client, ProxmoxHypervisor, Settings, Token};
    use std::sync::Arc;
    use testlab::proxmox::{Inventory, ProxmoxLab, PveOptions};
    let test = "a_template_that_joins_as_a_worker_by_itself_registers_a_worker_node";
    let Some(lab) = ClusterLab::start_or_skip(test) else {
        return;
    };
    let pve = Arc::new(
        ProxmoxLab::start_with(
            Inventory::realistic(),
            PveOptions {
                task_time: Duration::from_millis(100),
                ..PveOptions::default()
            },
        )
        .unwrap(),
    );
    let join = lab.worker_join_command().unwrap();
    let template = lab
        .template()
        .with_versions(testlab::cluster::Versions {
            kubeadm: "v1.31.4".into(),
            ..Default::default()
        })
        .auto_join_worker(&join);
    pve.attach_hosts_with(lab.net.clone(), template.provisioner());
    let cfg = Settings {
        endpoint: Some(pve.endpoint()),
        token: Some(Token::parse(&pve.api_token(), "test").unwrap()),
        fingerprint: Some(pve.fingerprint_hex()),
        ..Settings::default()
    }
    .build()
    .unwrap();
    let mut hv = ProxmoxHypervisor::new(Client::new(&cfg).unwrap()).unwrap();
    hv.deadline = Duration::from_secs(60);
    let addr = lab.lab_addr(testlab::cluster::M3);
    let gw = lab.net.gateway();
    hv.apply(&HvOp::CloneVm {
        host: "pve".into(),
        template: 9000,
        vmid: 113,
        name: "m3".into(),
        cpus: 2,
        memory_gib: 4,
        disk_gib: 32,
        address: format!("{addr}/24"),
        gateway: Some(gw.into()),
        ciuser: Some("root".into()),
        sshkeys: vec![
            std::fs::read_to_string(lab.client_key().with_extension("pub"))
                .unwrap()
                .trim()
                .to_string(),
        ],
        nameservers: vec![gw.into()],
        storage: None,
    })
    .unwrap();
    hv.apply(&HvOp::StartVm {
        host: "pve".into(),
        vmid: 113,
    })
    .unwrap();
    // cloud-init's runcmd joins it as a worker: a Node with no
    // control-plane label or taint.
    wait(
        60,
        "Node m3 registered by the template's cloud-init",
        || lab.node_ready("m3"),
    );
    let node = lab.node("m3").unwrap();
    assert!(node.pointer("/spec/taints").is_none(), "{node}");
    assert!(
        node.pointer("/metadata/labels/node-role.kubernetes.io~1control-plane")
            .is_none()
    );
    // The clone carries the stand-ins and the template's versions.
    let kh = lab.dir().join("known_hosts-pve");
    std::fs::write(&kh, pve.known_hosts_line(113).unwrap() + "\n").unwrap();
    let out = ssh_to(
        lab.client_key(),
        &kh,
        &addr.to_string(),
        "kubeadm version -o short; systemctl is-active kubelet; test -f /etc/kubernetes/kubelet.conf && echo joined",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text, "v1.31.4\nactive\njoined\n", "{out:?}");
}

#[allow(dead_code)]
fn unused(lab: &ClusterLab) {
    let _ = exec(lab, "m1", &["true"]);
    wait(1, "nothing", || true);
}
