//! A disruption SIGKILLed at its most fragile moment, then resumed: `hacli
//! disrupt run m2 --backend live --drain true -- sleep 8` on the migrated
//! three-master lab is killed while its command runs, that is with m2's
//! backend drained in HAProxy, m2 cordoned and drained, and the disruption
//! lock held. The state is read there from the real systems; `--resume`
//! from the journal then ends with m2 schedulable, its backend UP and the
//! lock free.

use crate::common;

use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testlab::cluster::ClusterLab;

const IDENTITY: &str = "fragile-test";

fn lock_holder(lab: &ClusterLab) -> Option<String> {
    lab.store()
        .get(
            testlab::ApiServer::resource("leases"),
            "kube-system",
            "hacli-disruption-lock",
        )
        .ok()
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
        .filter(|h| !h.is_empty())
}

fn status(lb: IpAddr, server: &str) -> Option<String> {
    common::pool_status(lb)
        .into_iter()
        .find(|(s, _)| s == server)
        .map(|(_, st)| st)
}

fn disrupt(m: &common::Migrated, journal: &Path, resume: bool) -> Command {
    let tls = m.lab.etcd_tls();
    let mut c = common::hacli_isolated();
    c.args(["disrupt", "run", "m2", "--backend", "live"])
        .args(["--drain", "true", "--idle-bound", "2s", "-p", "drain"])
        .args(["--identity", IDENTITY])
        .arg("--journal")
        .arg(journal)
        .arg("--topology")
        .arg(&m.topology)
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
        .args(["--deadline", "10s", "--member-timeout", "5s"]);
    if resume {
        c.arg("--resume");
    }
    c.args(["--", "sleep", "8"]);
    c
}

/// Run on the migrated lab `m` (three healthy masters; left so).
pub fn run(m: &common::Migrated) {
    let lb: IpAddr = m.lab.addr("lb").into();
    let journal = m.dir.join("fragile-m2.jsonl");
    assert_eq!(status(lb, "m2").as_deref(), Some("UP"), "before");
    assert_eq!(lock_holder(&m.lab), None, "the lock is free before");

    let mut child = disrupt(m, &journal, false)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(120);
    while !common::journal_has(&journal, "started", "run/m2/run") {
        if let Some(st) = child.try_wait().unwrap() {
            let o = child.wait_with_output().unwrap();
            panic!(
                "hacli disrupt ended ({st}) before its command ran:\n{}",
                common::text(&o)
            );
        }
        assert!(Instant::now() < until, "the command never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let _ = Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status();
    let o = child.wait_with_output().unwrap();
    {
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(o.status.signal(), Some(9), "{}", common::text(&o));
    }

    // The most fragile moment, as the real systems show it.
    let node = m.lab.node("m2").expect("Node m2");
    assert_eq!(node["spec"]["unschedulable"], true, "cordoned: {node}");
    assert!(
        common::journal_has(&journal, "done", "run/m2/drain"),
        "drained before the command"
    );
    // Drained: what is left on m2 is what an eviction leaves (static
    // pods' mirrors, DaemonSet pods).
    let pods = m
        .lab
        .store()
        .list(
            testlab::ApiServer::resource("pods"),
            None,
            None,
            Some("spec.nodeName=m2"),
        )
        .expect("the pods on m2");
    for p in pods["items"].as_array().into_iter().flatten() {
        let mirror = p["metadata"]["annotations"]
            .get("kubernetes.io/config.mirror")
            .is_some();
        let daemon = p["metadata"]["ownerReferences"]
            .as_array()
            .is_some_and(|o| o.iter().any(|r| r["kind"] == "DaemonSet"));
        assert!(mirror || daemon, "a pod left on drained m2: {p}");
    }
    let st = status(lb, "m2");
    assert!(
        matches!(st.as_deref(), Some("DRAIN") | Some("MAINT")),
        "m2's backend is drained in HAProxy: {st:?} ({:?})",
        common::pool_status(lb)
    );
    assert_eq!(
        lock_holder(&m.lab).as_deref(),
        Some(IDENTITY),
        "the lock is held"
    );
    println!("killed at run/m2/run: m2 cordoned, backend {st:?}, lock held by {IDENTITY}");

    // Resumed from the journal: done, everything put back.
    let t = Instant::now();
    let o = disrupt(m, &journal, true).output().unwrap();
    let all = common::text(&o);
    println!(
        "hacli disrupt --resume ({:.1} s):\n{all}",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(o.status.code(), Some(0), "{all}");
    assert!(all.contains("m2: done; lock released"), "{all}");
    let node = m.lab.node("m2").expect("Node m2");
    assert_ne!(node["spec"]["unschedulable"], true, "schedulable: {node}");
    assert_eq!(
        status(lb, "m2").as_deref(),
        Some("UP"),
        "{:?}",
        common::pool_status(lb)
    );
    assert_eq!(lock_holder(&m.lab), None, "the lock is free");
    // The resumed run did not cordon or drain again: what was done stays done.
    let text = std::fs::read_to_string(&journal).unwrap();
    let started = |step: &str| {
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["event"] == "started" && v["step"] == step)
            .count()
    };
    assert_eq!(started("run/m2/cordon"), 1, "{text}");
    assert_eq!(started("run/m2/backend-drain"), 1, "{text}");
}
