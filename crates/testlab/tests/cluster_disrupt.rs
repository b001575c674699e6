//! What the disruption tests (issue 14) need from the lab masters: a
//! reboot asked from inside a host over SSH power-cycles it (a new boot id,
//! the Node, etcd member and apiserver back), and the stand-in `kubeadm
//! upgrade apply|node` (versions, the kubeadm-config ConfigMap, static pods
//! restarted, an injected failure). Needs root (isolated lab hosts), etcd,
//! etcdctl, openssl, python3 with PyYAML, OpenSSH and curl; skips, saying
//! so, otherwise.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use testlab::cluster::ClusterLab;

/// `ssh root@addr sh -s` with `stdin` as the script.
fn ssh_to(key: &Path, known_hosts: &Path, addr: &str, stdin: &str) -> Output {
    let mut c = Command::new("ssh");
    c.arg("-i")
        .arg(key)
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=2",
            "-o",
            "ServerAliveInterval=1",
            "-o",
            "ServerAliveCountMax=3",
        ])
        .arg(format!("root@{addr}"))
        .arg("sh -s")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("ssh");
    {
        use std::io::Write as _;
        let mut i = child.stdin.take().unwrap();
        i.write_all(stdin.as_bytes()).unwrap();
    }
    child.wait_with_output().expect("ssh output")
}

fn ssh(lab: &ClusterLab, host: &str, stdin: &str) -> Output {
    ssh_to(
        lab.client_key(),
        lab.known_hosts(),
        &lab.addr(host).to_string(),
        stdin,
    )
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn wait(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < until, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn readyz(lab: &ClusterLab, host: &str) -> bool {
    readyz_at(&lab.ca_crt(), &lab.addr(host).to_string())
}

fn readyz_at(ca: &Path, addr: &str) -> bool {
    Command::new("curl")
        .args(["-sf", "--max-time", "2", "--cacert"])
        .arg(ca)
        .arg(format!("https://{addr}:6443/readyz"))
        .output()
        .is_ok_and(|o| o.stdout == b"ok")
}

/// `etcdctl endpoint health` of host's member, with m1's client pair.
fn etcd_healthy(lab: &ClusterLab, host: &str) -> bool {
    let t = lab.etcd_tls();
    Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints=https://{}:2379", lab.addr(host)))
        .arg(format!("--cacert={}", t.ca.display()))
        .arg(format!("--cert={}", t.cert.display()))
        .arg(format!("--key={}", t.key.display()))
        .args([
            "--dial-timeout=1s",
            "--command-timeout=2s",
            "endpoint",
            "health",
        ])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Phase 0 on m1 (the endpoint: m1's address), then a control-plane join
/// of a new host m2 over SSH: a cluster with two voters.
fn join_m2(lab: &mut ClusterLab) {
    let m1 = lab.addr("m1");
    let cfg = format!(
        "apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
clusterName: kubernetes
kubernetesVersion: v1.32.0
controlPlaneEndpoint: {m1}:6443
networking:
  dnsDomain: cluster.local
  serviceSubnet: 10.96.0.0/12
  podSubnet: 10.244.0.0/16
"
    );
    testlab::cluster::put(lab.host("m1"), "/root/cp.yaml", &cfg, "0600").unwrap();
    lab.kubeadm(
        "m1",
        &[
            "init",
            "phase",
            "upload-config",
            "kubeadm",
            "--config",
            "/root/cp.yaml",
        ],
    )
    .unwrap();
    let out = lab
        .kubeadm("m1", &["init", "phase", "upload-certs", "--upload-certs"])
        .unwrap();
    let key = out
        .lines()
        .skip_while(|l| *l != "[upload-certs] Using certificate key:")
        .nth(1)
        .expect("a certificate key")
        .to_string();
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
    lab.add_blank_host("m2", testlab::cluster::M2).unwrap();
    let m2 = lab.addr("m2");
    let t0 = Instant::now();
    let out = ssh(
        lab,
        "m2",
        &format!("{} --apiserver-advertise-address {m2}\n", join.trim()),
    );
    assert!(out.status.success(), "join: {}", text(&out.stderr));
    lab.wait_node_ready("m2", Duration::from_secs(60)).unwrap();
    wait(60, "two voters", || {
        lab.etcd_members()
            .is_ok_and(|ms| ms.len() == 2 && ms.iter().all(|m| !m.is_learner))
    });
    println!("m2 joined as a master in {:?}", t0.elapsed());
}

fn ready_status(lab: &ClusterLab, node: &str) -> String {
    lab.node(node)
        .and_then(|n| {
            n.pointer("/status/conditions")?
                .as_array()?
                .iter()
                .find(|c| c["type"] == "Ready")
                .and_then(|c| c["status"].as_str().map(str::to_string))
        })
        .unwrap_or_default()
}

/// What a backend does: ask for the reboot over SSH, then wait for SSH and
/// a new boot id. (The reply of `systemctl reboot`, whether SSH was seen
/// down, the new boot id, when.)
fn reboot_and_wait(
    key: &Path,
    kh: &Path,
    addr: &str,
    before: &str,
    t0: Instant,
) -> (Output, bool, String, Duration) {
    let asked = ssh_to(key, kh, addr, "systemctl reboot\n");
    let mut saw_down = false;
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let o = ssh_to(key, kh, addr, "cat /proc/sys/kernel/random/boot_id\n");
        if !o.status.success() {
            saw_down = true;
        } else {
            let id = text(&o.stdout).trim().to_string();
            if id != before {
                return (asked, saw_down, id, t0.elapsed());
            }
        }
        assert!(
            Instant::now() < until,
            "{addr} did not come back within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn reboot_over_ssh_power_cycles_a_joined_master() {
    let test = "reboot_over_ssh_power_cycles_a_joined_master";
    let Some(mut lab) = ClusterLab::start_or_skip(test) else {
        return;
    };
    join_m2(&mut lab);
    lab.set_reboot_delay(Duration::from_millis(1500));

    // The boot id seen over SSH is the host's, per boot.
    let out = ssh(&lab, "m2", "cat /proc/sys/kernel/random/boot_id\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let before = text(&out.stdout).trim().to_string();
    assert_eq!(Some(before.clone()), lab.host("m2").boot_id());
    let machine = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    assert_ne!(before, machine.trim(), "not the machine's boot id");
    let boots = lab.host("m2").boots();
    let m1_boot = lab.host("m1").boot_id();

    let (key, kh, addr) = (
        lab.client_key().to_path_buf(),
        lab.known_hosts().to_path_buf(),
        lab.addr("m2").to_string(),
    );
    let store = lab.store().clone();
    let t0 = Instant::now();
    // What a backend does: ask for the reboot, then wait for SSH and a new
    // boot id. The lab serves the request meanwhile.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let unknown = std::sync::atomic::AtomicBool::new(false);
    let (asked, saw_down, after, t_back) = lab.serving_power_requests(|| {
        use std::sync::atomic::Ordering::Relaxed;
        std::thread::scope(|s| {
            // The Node's Ready condition, watched all along.
            s.spawn(|| {
                while !stop.load(Relaxed) {
                    let n = store
                        .get(testlab::ApiServer::resource("nodes"), "", "m2")
                        .ok();
                    if n.is_some_and(|n| n.to_string().contains("NodeStatusUnknown")) {
                        unknown.store(true, Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
            let r = reboot_and_wait(&key, &kh, &addr, &before, t0);
            stop.store(true, Relaxed);
            r
        })
    });
    let saw_unknown = unknown.into_inner();
    assert!(
        asked.status.success() || asked.status.code() == Some(255),
        "systemctl reboot: {asked:?}"
    );
    assert!(saw_down, "m2's sshd kept answering during the reboot");
    assert!(saw_unknown, "m2's Node never went Unknown");
    assert_eq!(Some(after.clone()), lab.host("m2").boot_id());
    assert_eq!(lab.host("m2").boots(), boots + 1);
    assert_eq!(lab.host("m1").boot_id(), m1_boot, "m1 was left alone");
    let ev = lab.power_events();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(
        (ev[0].host.as_str(), ev[0].action.as_str()),
        ("m2", "reboot")
    );
    let down_for = ev[0].up.unwrap() - ev[0].down;
    assert!(down_for >= Duration::from_millis(1500), "{down_for:?}");

    // Everything comes back: the units, the Node, the etcd member, /readyz.
    let out = ssh(&lab, "m2", "systemctl is-active kubelet containerd\n");
    assert_eq!(text(&out.stdout), "active\nactive\n", "{out:?}");
    lab.wait_node_ready("m2", Duration::from_secs(60)).unwrap();
    let t_ready = t0.elapsed();
    let node = lab.node("m2").unwrap();
    assert_eq!(node["status"]["nodeInfo"]["bootID"], after.as_str());
    wait(60, "m2's etcd member healthy", || etcd_healthy(&lab, "m2"));
    let t_etcd = t0.elapsed();
    wait(60, "m2's /readyz", || readyz(&lab, "m2"));
    let t_readyz = t0.elapsed();
    assert_eq!(ready_status(&lab, "m2"), "True");
    let ms = lab.etcd_members().unwrap();
    assert_eq!(ms.len(), 2, "{ms:?}");
    println!(
        "reboot of m2 (delay 1.5 s): new boot id over SSH after {t_back:?}, Node Ready after {t_ready:?}, etcd healthy after {t_etcd:?}, /readyz after {t_readyz:?}"
    );

    // `reboot` and `shutdown -r now` do the same; `poweroff` leaves it off.
    for cmd in ["reboot", "shutdown -r now"] {
        let id = lab.host("m2").boot_id();
        let (key, kh, addr) = (key.clone(), kh.clone(), addr.clone());
        let cmdline = format!("{cmd}\n");
        lab.serving_power_requests(move || ssh_to(&key, &kh, &addr, &cmdline));
        assert_ne!(lab.host("m2").boot_id(), id, "{cmd}: no new boot");
        assert!(lab.host("m2").is_on(), "{cmd}");
    }
    let (k2, kh2, a2) = (key.clone(), kh.clone(), addr.clone());
    lab.serving_power_requests(move || {
        ssh_to(&k2, &kh2, &a2, "poweroff\n");
        std::thread::sleep(Duration::from_millis(500));
    });
    assert!(!lab.host("m2").is_on(), "poweroff left m2 on");
    assert_eq!(lab.power_events().len(), 4);
}

fn image_of(lab: &ClusterLab, host: &str, pod: &str) -> String {
    let raw = std::fs::read_to_string(
        lab.host(host)
            .path(format!("/etc/kubernetes/manifests/{pod}.yaml")),
    )
    .unwrap();
    let v: serde_json::Value = serde_yaml_ng_or_json(&raw);
    v["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The manifest's `image:` line, without a YAML parser.
fn serde_yaml_ng_or_json(raw: &str) -> serde_json::Value {
    let img = raw
        .lines()
        .find_map(|l| l.trim().trim_start_matches("- ").strip_prefix("image: "))
        .unwrap_or_default()
        .trim()
        .to_string();
    serde_json::json!({"spec": {"containers": [{"image": img}]}})
}

fn pod_pid(lab: &ClusterLab, host: &str, pod: &str) -> u64 {
    let out = lab
        .host(host)
        .exec(&["cat", &format!("/run/testlab/pods/{pod}.json")])
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["pid"].as_u64().unwrap_or(0)
}

fn cluster_version(lab: &ClusterLab) -> String {
    let cm = lab
        .store()
        .get(
            testlab::ApiServer::resource("configmaps"),
            "kube-system",
            "kubeadm-config",
        )
        .unwrap();
    let cc = cm["data"]["ClusterConfiguration"].as_str().unwrap();
    cc.lines()
        .find_map(|l| l.strip_prefix("kubernetesVersion: "))
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[test]
fn kubeadm_upgrade_apply_then_node_and_an_injected_failure() {
    let test = "kubeadm_upgrade_apply_then_node_and_an_injected_failure";
    let Some(mut lab) = ClusterLab::start_or_skip(test) else {
        return;
    };
    join_m2(&mut lab);

    // plan: the cluster's version, and what kubeadm could apply.
    let out = ssh(&lab, "m1", "kubeadm upgrade plan\n");
    let plan = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        plan.contains("[upgrade/versions] Cluster version: v1.32.0"),
        "{plan}"
    );

    // Refused: two minors up, and a downgrade; nothing changes.
    for (v, msg) in [
        (
            "v1.34.0",
            "kubeadm can upgrade only 1 minor version at a time",
        ),
        ("v1.31.5", "Downgrades are not supported yet"),
    ] {
        let out = ssh(&lab, "m1", &format!("kubeadm upgrade apply {v} -y\n"));
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{v}: {err}");
        assert!(err.contains(msg), "{v}: {err}");
        assert!(
            err.contains("[upgrade/version] FATAL: the --version argument is invalid"),
            "{err}"
        );
    }
    assert_eq!(cluster_version(&lab), "v1.32.0");

    // apply on m1: manifests rewritten one by one, the pods restarted, the
    // apiserver back, the ConfigMap and kubeadm's version updated.
    let api_pid = pod_pid(&lab, "m1", "kube-apiserver");
    let (key, kh) = (
        lab.client_key().to_path_buf(),
        lab.known_hosts().to_path_buf(),
    );
    let t0 = Instant::now();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (ca, m1a) = (lab.ca_crt(), lab.addr("m1").to_string());
    let (out, m1_down) = std::thread::scope(|s| {
        use std::sync::atomic::Ordering::Relaxed;
        let watch = s.spawn(|| {
            let mut down = false;
            while !stop.load(Relaxed) {
                down |= !readyz_at(&ca, &m1a);
                std::thread::sleep(Duration::from_millis(20));
            }
            down
        });
        let out = ssh_to(&key, &kh, &m1a, "kubeadm upgrade apply v1.33.1 -y\n");
        stop.store(true, Relaxed);
        (out, watch.join().unwrap())
    });
    let t_apply = t0.elapsed();
    assert!(
        m1_down,
        "m1's apiserver never failed /readyz during its upgrade"
    );
    let so = text(&out.stdout);
    assert!(out.status.success(), "{}\n{so}", text(&out.stderr));
    assert!(
        so.contains(
            r#"[upgrade/successful] SUCCESS! Your cluster was upgraded to "v1.33.1". Enjoy!"#
        ),
        "{so}"
    );
    let order: Vec<usize> = [
        "Component \"kube-apiserver\" upgraded successfully!",
        "Component \"kube-controller-manager\" upgraded successfully!",
        "Component \"kube-scheduler\" upgraded successfully!",
    ]
    .iter()
    .map(|l| so.find(l).unwrap_or_else(|| panic!("no {l} in {so}")))
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{so}");
    assert_eq!(cluster_version(&lab), "v1.33.1");
    assert_eq!(
        image_of(&lab, "m1", "kube-apiserver"),
        "registry.k8s.io/kube-apiserver:v1.33.1"
    );
    assert_eq!(
        image_of(&lab, "m1", "kube-scheduler"),
        "registry.k8s.io/kube-scheduler:v1.33.1"
    );
    assert_ne!(
        pod_pid(&lab, "m1", "kube-apiserver"),
        api_pid,
        "not restarted"
    );
    assert!(readyz(&lab, "m1"));
    let out = ssh(&lab, "m1", "kubeadm version -o short\n");
    assert_eq!(text(&out.stdout), "v1.33.1\n");
    // m2 is not upgraded yet.
    assert_eq!(
        image_of(&lab, "m2", "kube-apiserver"),
        "registry.k8s.io/kube-apiserver:v1.32.0"
    );

    // An injected failure on m2: exit 1, the message, nothing changed.
    lab.set_upgrade_fails("m2", Some("the lab broke the upgrade of m2"))
        .unwrap();
    let out = ssh(&lab, "m2", "kubeadm upgrade node\n");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("the lab broke the upgrade of m2"), "{err}");
    assert!(err.starts_with("error execution phase"), "{err}");
    assert_eq!(
        image_of(&lab, "m2", "kube-apiserver"),
        "registry.k8s.io/kube-apiserver:v1.32.0"
    );
    lab.set_upgrade_fails("m2", None).unwrap();

    // A new static pod that never comes up: the stand-in waits (1 s here,
    // kubeadm 5 min), puts the old manifests back as kubeadm does, and
    // fails with kubeadm's message; the old apiserver answers again.
    let sums = "sha256sum /etc/kubernetes/manifests/*.yaml\n";
    let before = text(&ssh(&lab, "m2", sums).stdout);
    ssh(
        &lab,
        "m2",
        &format!(
            "echo 'kube-apiserver 1' > {}\n",
            testlab::cluster::UPGRADE_STALLS
        ),
    );
    let out = ssh(&lab, "m2", "kubeadm upgrade node\n");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("couldn't upgrade control plane. kubeadm has tried to recover everything into the earlier state. Errors faced: timed out waiting for the condition"),
        "{err}"
    );
    assert_eq!(text(&ssh(&lab, "m2", sums).stdout), before);
    assert_eq!(
        image_of(&lab, "m2", "kube-apiserver"),
        "registry.k8s.io/kube-apiserver:v1.32.0"
    );
    assert!(readyz(&lab, "m2"));
    let out = ssh(&lab, "m2", "kubeadm version -o short\n");
    assert_eq!(text(&out.stdout), "v1.32.0\n");
    ssh(
        &lab,
        "m2",
        &format!("rm -f {}\n", testlab::cluster::UPGRADE_STALLS),
    );

    // upgrade node on m2: the ConfigMap's version.
    let api_pid = pod_pid(&lab, "m2", "kube-apiserver");
    let t0 = Instant::now();
    let out = ssh(&lab, "m2", "kubeadm upgrade node\n");
    let t_node = t0.elapsed();
    let so = text(&out.stdout);
    assert!(out.status.success(), "{}\n{so}", text(&out.stderr));
    assert!(
        so.contains(
            "[upgrade] The control plane instance for this node was successfully upgraded!"
        ),
        "{so}"
    );
    assert_eq!(
        image_of(&lab, "m2", "kube-apiserver"),
        "registry.k8s.io/kube-apiserver:v1.33.1"
    );
    assert_ne!(pod_pid(&lab, "m2", "kube-apiserver"), api_pid);
    assert!(readyz(&lab, "m2"));
    let out = ssh(&lab, "m2", "kubeadm version -o short\n");
    assert_eq!(text(&out.stdout), "v1.33.1\n");
    // The mirror pod reports the new image once the kubelet posts it.
    wait(20, "m2's mirror pod with the new image", || {
        lab.store()
            .get(
                testlab::ApiServer::resource("pods"),
                "kube-system",
                "kube-apiserver-m2",
            )
            .is_ok_and(|p| p.to_string().contains("kube-apiserver:v1.33.1"))
    });
    println!("kubeadm upgrade apply on m1 took {t_apply:?}; upgrade node on m2 took {t_node:?}");
}

#[test]
fn reboot_inside_a_proxmox_clone_is_served_too() {
    use hacore::backend::{HvOp, Hypervisor};
    use proxmox::{Client, ProxmoxHypervisor, Settings, Token};
    use std::sync::Arc;
    use testlab::proxmox::{Inventory, ProxmoxLab, PveOptions};
    let test = "reboot_inside_a_proxmox_clone_is_served_too";
    let Some(mut lab) = ClusterLab::start_or_skip(test) else {
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
    pve.attach_hosts_with(lab.net.clone(), lab.template().provisioner());
    lab.serve_proxmox(pve.clone());
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
    let kh = lab.dir().join("known_hosts_m3");
    std::fs::write(&kh, pve.known_hosts_line(113).unwrap() + "\n").unwrap();
    let key = lab.client_key().to_path_buf();
    let a = addr.to_string();
    let before = ssh_to(&key, &kh, &a, "cat /proc/sys/kernel/random/boot_id\n");
    assert!(before.status.success(), "{before:?}");
    let before = text(&before.stdout).trim().to_string();
    let t0 = Instant::now();
    let (asked, saw_down, after, t_back) =
        lab.serving_power_requests(|| reboot_and_wait(&key, &kh, &a, &before, t0));
    assert!(
        asked.status.success() || asked.status.code() == Some(255),
        "{asked:?}"
    );
    assert!(saw_down, "m3's sshd kept answering during the reboot");
    assert_ne!(after, before);
    assert_eq!(pve.host_is_on(113), Some(true));
    let ev = lab.power_events();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0].vmid, Some(113));
    let out = ssh_to(&key, &kh, &a, "systemctl is-active containerd\n");
    assert_eq!(text(&out.stdout), "active\n", "{out:?}");
    println!("reboot of the clone m3: new boot id over SSH after {t_back:?}");

    // A reboot through the Proxmox API power-cycles the host too.
    let mut c = Command::new("curl");
    c.args([
        "-sf",
        "--max-time",
        "10",
        "-X",
        "POST",
        "-H",
        "@-",
        "--cacert",
    ])
    .arg(pve.ca_path())
    .arg(format!(
        "{}/api2/json/nodes/pve/qemu/113/status/reboot",
        pve.endpoint()
    ))
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    {
        use std::io::Write as _;
        let mut i = child.stdin.take().unwrap();
        writeln!(i, "Authorization: PVEAPIToken={}", pve.api_token()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "POST status/reboot: {out:?}");
    let t1 = Instant::now();
    // The task ends after the stand-in's task time; its effect applies at
    // the next call (as a caller polling the task makes).
    let mut third = after.clone();
    while third == after {
        assert!(
            t1.elapsed() < Duration::from_secs(60),
            "no new boot after a Proxmox reboot"
        );
        std::thread::sleep(Duration::from_millis(100));
        let _ = pve.vm(113);
        let o = ssh_to(&key, &kh, &a, "cat /proc/sys/kernel/random/boot_id\n");
        if o.status.success() {
            third = text(&o.stdout).trim().to_string();
        }
    }
    let t_api = t1.elapsed();
    println!(
        "reboot of the clone m3 through the Proxmox API: new boot id over SSH after {t_api:?}"
    );
}
