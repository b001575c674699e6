//! `hacli roll upgrade --backend live` on the migrated three-master lab
//! (issue 14): a rolling upgrade whose second master's `kubeadm upgrade
//! node` times out on the new apiserver and rolls itself back (the kubeadm
//! stand-in does what kubeadm does: the old manifests put back) stops
//! there, says kubeadm rolled the upgrade back, restores that master (backend ready and UP, Node
//! schedulable), releases the lock, exits non-zero naming the step, and
//! touches neither the third master nor the workers; with the failure
//! removed, `--resume` finishes the roll (m1 is not upgraded again).

use crate::common;

use std::net::IpAddr;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use testlab::cluster::{KUBE_VERSION, M1, M2, UPGRADE_STALLS, W1, W2};

/// The next patch release: `kubeadm upgrade apply` (the stand-in, like
/// kubeadm) accepts the next patch or minor.
pub const TO: &str = "v1.32.1";

/// Run on the migrated lab `m`, whose topology is now `topology` and whose
/// third master is `third` (name, lab address octet).
pub fn run(m: &common::Migrated, topology: &Path, third: (&str, u8)) {
    let t0 = Instant::now();
    let nodes = [("m1", M1), ("m2", M2), third, ("w1", W1), ("w2", W2)];
    let lb: IpAddr = m.lab.addr("lb").into();
    let on = |k: u8, cmd: &str| {
        common::ssh(
            m.lab.client_key(),
            &m.known_hosts,
            m.lab.lab_addr(k).into(),
            cmd,
        )
    };
    // What each node runs: the kubeadm version the stand-in records
    // (`kubeadm upgrade apply|node` set it) and, on a master, the
    // apiserver manifest's image tag.
    let version = |k: u8| -> String {
        let v: serde_json::Value =
            serde_json::from_str(&on(k, "cat /etc/testlab/versions.json")).unwrap();
        v["kubeadm"].as_str().unwrap().to_string()
    };
    let apiserver_tag = |k: u8| -> String {
        let text = on(k, "cat /etc/kubernetes/manifests/kube-apiserver.yaml");
        let img = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("image:"))
            .unwrap_or_else(|| panic!("no image in {text}"))
            .trim()
            .trim_matches(|c| c == '"' || c == '\'');
        img.rsplit_once(':').unwrap().1.to_string()
    };
    let cluster_version = || -> String {
        let cm = m
            .lab
            .store()
            .get(
                testlab::ApiServer::resource("configmaps"),
                "kube-system",
                "kubeadm-config",
            )
            .unwrap();
        let cc = cm["data"]["ClusterConfiguration"].as_str().unwrap();
        cc.lines()
            .find_map(|l| l.trim().strip_prefix("kubernetesVersion:"))
            .unwrap()
            .trim()
            .trim_matches('"')
            .to_string()
    };
    let holder = || -> Option<String> {
        m.lab
            .store()
            .get(
                testlab::ApiServer::resource("leases"),
                "kube-system",
                "hacli-disruption-lock",
            )
            .ok()
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
    };
    let unschedulable = |n: &str| -> bool {
        m.lab.node(n).unwrap()["spec"]["unschedulable"]
            .as_bool()
            .unwrap_or(false)
    };
    for (n, k) in nodes {
        assert_eq!(version(k), KUBE_VERSION, "{n} before the roll");
    }
    assert_eq!(cluster_version(), KUBE_VERSION);

    // The lab has no Prometheus (the upgrade policy's `alerts` rule would
    // be unknown), m2 and m3 joined a minute ago (its 600 s `soak` would
    // deny), and the masters share this machine's disk (`master-disk`
    // judges the machine, not the lab: upgrade_rules.rs tests it), and
    // nothing writes to the lab's etcd (`etcd-latency` has no fsync to
    // judge: upgrade_rules.rs writes and tests it): the built-in upgrade
    // policy without those four.
    let policy = m.dir.join("lab-upgrade.yaml");
    common::write(
        &policy,
        "name: lab-upgrade\nextends: upgrade\ndisable: [alerts, soak, master-disk, etcd-latency]\n",
    );
    let journal_dir = m.dir.join("roll");
    let tls = m.lab.etcd_tls();
    let roll = |extra: &[&str]| -> (Output, Duration) {
        let mut cmd = common::hacli_isolated();
        cmd.args(["roll", "upgrade", "--to", TO, "--backend", "live"])
            .args(["--soak", "3s", "--idle-bound", "10s"])
            .args(["--deadline", "6s", "--member-timeout", "4s"])
            .arg("--journal-dir")
            .arg(&journal_dir)
            .arg("--topology")
            .arg(topology)
            .arg("--policy")
            .arg(&policy)
            .arg("--kubeconfig")
            .arg(m.lab.admin_conf())
            .arg("--etcd-cacert")
            .arg(&tls.ca)
            .arg("--etcd-cert")
            .arg(&tls.cert)
            .arg("--etcd-key")
            .arg(&tls.key)
            .arg("--ssh-identity")
            .arg(m.lab.client_key())
            .arg("--known-hosts")
            .arg(&m.known_hosts)
            .args(["--identity", "roll-test"])
            .args(extra);
        let t = Instant::now();
        let out = cmd.output().expect("hacli runs");
        (out, t.elapsed())
    };

    // The second master's new apiserver never comes up: `kubeadm upgrade
    // node` times out (2 s here, 5 min for kubeadm) and puts the old
    // manifests back.
    let manifests = "sha256sum /etc/kubernetes/manifests/*.yaml";
    let m2_before = on(M2, manifests);
    on(
        M2,
        &format!("mkdir -p /etc/testlab && echo 'kube-apiserver 2' > {UPGRADE_STALLS}"),
    );
    let (out, took) = roll(&[]);
    let log = common::text(&out);
    println!("roll with the failure on m2 ({took:.1?}):\n{log}");
    assert_eq!(out.status.code(), Some(1), "{log}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("m1: done; lock released"), "{log}");
    assert!(
        stdout.contains("FAILED at step upgrade/m2/upgrade"),
        "{log}"
    );
    assert!(
        stdout.contains("STOPPED at m2 at step upgrade/m2/upgrade"),
        "{log}"
    );
    assert!(
        stdout.contains(&format!("not started: {}, w1, w2", third.0)),
        "{log}"
    );
    assert!(
        stdout.contains("kubeadm rolled the upgrade back: m2's static-pod manifests are back to the ones before `kubeadm upgrade node` (the same hashes; the apiserver runs ")
            && stdout.contains("couldn't upgrade control plane. kubeadm has tried to recover everything into the earlier state"),
        "kubeadm's own rollback is recognised: {log}"
    );
    assert_eq!(
        on(M2, manifests),
        m2_before,
        "m2's manifests are the old ones"
    );

    // m1 ran `kubeadm upgrade apply`: its manifests, its kubeadm and the
    // cluster's configuration say the new version.
    assert_eq!(version(M1), TO);
    assert_eq!(apiserver_tag(M1), TO);
    assert_eq!(cluster_version(), TO);
    // m2 restored: not upgraded, its backend ready and UP, schedulable.
    assert_eq!(version(M2), KUBE_VERSION);
    assert_eq!(apiserver_tag(M2), KUBE_VERSION);
    let until = Instant::now() + Duration::from_secs(30);
    let pool = loop {
        let pool = common::pool_status(lb);
        if pool.iter().all(|(_, s)| s.starts_with("UP")) || Instant::now() > until {
            break pool;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        pool.iter().any(|(n, s)| n == "m2" && s == "UP"),
        "m2's backend is UP (not DRAIN): {pool:?}"
    );
    assert_eq!(pool.len(), 3, "{pool:?}");
    assert!(
        pool.iter().all(|(_, s)| s.starts_with("UP")),
        "every backend UP: {pool:?}"
    );
    let state = common::runtime_api(lb, "show servers state");
    // srv_admin_state 0: ready (1 would be maint, 8 drain).
    let m2_line = state
        .lines()
        .find(|l| l.split_whitespace().nth(3) == Some("m2"))
        .unwrap_or_else(|| panic!("m2 in show servers state: {state}"));
    let fields: Vec<&str> = m2_line.split_whitespace().collect();
    assert_eq!(fields[6], "0", "m2's admin state is ready: {m2_line}");
    for (n, _) in nodes {
        assert!(!unschedulable(n), "{n} is schedulable");
    }
    assert_eq!(holder(), None, "the disruption lock is released");
    // m3 and the workers were not touched: same version, no journal.
    for (n, k) in [third, ("w1", W1), ("w2", W2)] {
        assert_eq!(version(k), KUBE_VERSION, "{n}");
        assert!(
            !journal_dir.join(format!("{n}.jsonl")).exists(),
            "{n} has no journal"
        );
    }
    assert_eq!(apiserver_tag(third.1), KUBE_VERSION);
    assert!(common::journal_has(
        &journal_dir.join("m2.jsonl"),
        "rolled-back",
        "upgrade/m2/upgrade"
    ));

    // A roll started again without --resume is refused (exit 2): the
    // journals say one is under way.
    let (out, _) = roll(&[]);
    assert_eq!(out.status.code(), Some(2), "{}", common::text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--resume"),
        "{}",
        common::text(&out)
    );

    // Fixed: the roll resumes and completes; JSON output.
    on(M2, &format!("rm -f {UPGRADE_STALLS}"));
    let (out, took) = roll(&["--resume", "-o", "json"]);
    let log = common::text(&out);
    println!("resumed roll ({took:.1?}):\n{log}");
    assert_eq!(out.status.code(), Some(0), "{log}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(v["notStarted"], serde_json::json!([]), "{log}");
    let done: Vec<&str> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["result"] == "ran" && r["outcome"]["outcome"] == "completed")
        .map(|r| r["node"].as_str().unwrap())
        .collect();
    assert_eq!(done, ["m1", "m2", third.0, "w1", "w2"], "{log}");
    for (n, k) in nodes {
        assert_eq!(version(k), TO, "{n} after the roll");
    }
    for k in [M1, M2, third.1] {
        assert_eq!(apiserver_tag(k), TO);
    }
    // m1 ran `kubeadm upgrade apply` once: its journal finished in the
    // first run and the resumed run did not start it again.
    let m1_journal = std::fs::read_to_string(journal_dir.join("m1.jsonl")).unwrap();
    let applies = m1_journal
        .lines()
        .filter(|l| l.contains(r#""event":"started""#) && l.contains("upgrade/m1/upgrade"))
        .count();
    assert_eq!(applies, 1, "{m1_journal}");
    let pool = common::pool_status(lb);
    assert!(
        pool.iter().all(|(_, s)| s.starts_with("UP")),
        "every backend UP after the roll: {pool:?}"
    );
    for (n, _) in nodes {
        assert!(!unschedulable(n), "{n} is schedulable after the roll");
    }
    assert_eq!(holder(), None, "the disruption lock is released");
    println!("live roll: {:.1?} in all", t0.elapsed());
}
