//! `hacli gate`, `observe` and `sentinel` against the lab: real etcd with
//! TLS and the Kubernetes API stand-in (crates/testlab). Without etcd
//! installed every test prints SKIPPED and why.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::json;
use testlab::Lab;

/// Tests that do not probe the deadline itself get generous timeouts, so a
/// loaded CI machine (ten labs at once) cannot turn a slow but healthy member
/// into an unhealthy one.
const GENEROUS: [&str; 4] = ["--deadline", "6s", "--member-timeout", "4s"];

fn hacli(lab: &Lab, kubeconfig: &Path, args: &[&str]) -> Output {
    let mut args = args.to_vec();
    if !args.contains(&"--deadline") {
        args.extend(GENEROUS);
    }
    Command::new(env!("CARGO_BIN_EXE_hacli"))
        .args(args)
        .arg("--topology")
        .arg(&lab.topology)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--etcd-endpoints")
        .arg(lab.etcd_endpoints().join(","))
        .arg("--etcd-pki")
        .arg(&lab.etcd_pki)
        .env_remove("KUBECONFIG")
        .env_remove("HACLI_IDENTITY")
        .output()
        .expect("hacli runs")
}

/// The `reboot` policy minus the load-balancer rule: the lab runs no
/// HAProxy, and the kubeadm observer does not read one (an unobserved load
/// balancer makes the rule, rightly, answer unknown).
fn reboot_policy(lab: &Lab) -> String {
    let p = lab.dir().join("reboot-no-lb.yaml");
    std::fs::write(
        &p,
        "name: reboot-no-lb\nextends: reboot\ndisable: [load-balancer]\n",
    )
    .unwrap();
    p.display().to_string()
}

fn gate(lab: &Lab, args: &[&str]) -> (i32, String) {
    let policy = reboot_policy(lab);
    let mut all = vec!["gate"];
    all.extend(args);
    if args[0] == "reboot" {
        all.extend(["--policy", policy.as_str()]);
    }
    let out = hacli(lab, &lab.kubeconfig, &all);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// (leader, the two other masters).
fn roles(lab: &Lab) -> (String, Vec<String>) {
    let leader = lab
        .wait_leader(Duration::from_secs(10))
        .expect("etcd has a leader");
    let others = lab
        .masters
        .iter()
        .map(|m| m.0.clone())
        .filter(|m| *m != leader)
        .collect();
    (leader, others)
}

#[test]
fn healthy_cluster_allows_a_follower_and_denies_the_leader() {
    let Some(lab) = Lab::start_or_skip("healthy_cluster_allows_a_follower_and_denies_the_leader")
    else {
        return;
    };
    let (leader, others) = roles(&lab);
    let (code, out) = gate(&lab, &["reboot", &others[0]]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ALLOW"), "{out}");

    let (code, out) = gate(&lab, &["reboot", &leader, "-o", "json"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("move leadership first"), "{out}");
}

#[test]
fn one_member_stopped_denies_losing_another_within_the_deadline() {
    let Some(mut lab) =
        Lab::start_or_skip("one_member_stopped_denies_losing_another_within_the_deadline")
    else {
        return;
    };
    let (_, others) = roles(&lab);
    lab.stop_member(&others[0]);
    let started = Instant::now();
    let (code, out) = gate(&lab, &["reboot", &others[1], "--deadline", "2s"]);
    let took = started.elapsed();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("etcd-quorum"), "{out}");
    // A hang guard, not a timing target (benchmarks measure latency).
    assert!(took < Duration::from_secs(10), "took {took:?}");
    // The stopped member itself may go down again: nothing more is lost.
    let (code, out) = gate(&lab, &["reboot", &others[0]]);
    assert_ne!(code, 3, "{out}");
}

#[test]
fn a_paused_member_does_not_hang_the_gate() {
    let Some(mut lab) = Lab::start_or_skip("a_paused_member_does_not_hang_the_gate") else {
        return;
    };
    let (_, others) = roles(&lab);
    lab.pause_member(&others[0]);
    let started = Instant::now();
    let (code, out) = gate(
        &lab,
        &["reboot", &others[1], "--deadline", "2s", "-o", "json"],
    );
    let took = started.elapsed();
    lab.resume_member(&others[0]);
    assert_eq!(code, 1, "an unresponsive member counts as unhealthy: {out}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn kill_switch_denies() {
    let Some(lab) = Lab::start_or_skip("kill_switch_denies") else {
        return;
    };
    let (code, out) = gate(&lab, &["drain", "w1"]);
    assert_eq!(code, 0, "{out}");
    lab.store()
        .create(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "hacli-kill-switch", "namespace": "kube-system"},
            "data": {"reason": "incident"}}))
        .unwrap();
    let (code, out) = gate(&lab, &["drain", "w1"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("kill-switch"), "{out}");
}

#[test]
fn api_unreachable_is_unknown_exit_3() {
    let Some(lab) = Lab::start_or_skip("api_unreachable_is_unknown_exit_3") else {
        return;
    };
    let (_, others) = roles(&lab);
    let text = std::fs::read_to_string(&lab.kubeconfig).unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let text = text.replace(
        &format!("server: {}", lab.api_url()),
        &format!("server: https://127.0.0.1:{port}"),
    );
    let kc = lab.dir().join("unreachable.conf");
    std::fs::write(&kc, text).unwrap();
    let policy = reboot_policy(&lab);
    let out = hacli(
        &lab,
        &kc,
        &["gate", "reboot", &others[0], "--policy", &policy],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("UNKNOWN"), "{text}");
}

#[test]
fn twenty_concurrent_locking_gates_allow_exactly_one() {
    let Some(lab) = Lab::start_or_skip("twenty_concurrent_locking_gates_allow_exactly_one") else {
        return;
    };
    let (_, others) = roles(&lab);
    let policy = reboot_policy(&lab);
    let children: Vec<_> = (0..20)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_hacli"))
                .args([
                    "gate",
                    "reboot",
                    &others[i % 2],
                    "--policy",
                    &policy,
                    "--lock",
                    "--identity",
                ])
                .arg(format!("gate-{i}"))
                .arg("--topology")
                .arg(&lab.topology)
                .arg("--kubeconfig")
                .arg(&lab.kubeconfig)
                .arg("--etcd-endpoints")
                .arg(lab.etcd_endpoints().join(","))
                .arg("--etcd-pki")
                .arg(&lab.etcd_pki)
                .args(GENEROUS)
                .env_remove("KUBECONFIG")
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<(i32, String)> = children
        .into_iter()
        .map(|c| {
            let o = c.wait_with_output().unwrap();
            (
                o.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&o.stdout).into_owned(),
            )
        })
        .collect();
    let allowed: Vec<_> = outs.iter().filter(|(c, _)| *c == 0).collect();
    assert_eq!(allowed.len(), 1, "{outs:#?}");
    let lease = lab
        .store()
        .get(
            testlab::ApiServer::resource("leases"),
            "kube-system",
            "hacli-disruption-lock",
        )
        .unwrap();
    let holder = lease["spec"]["holderIdentity"]
        .as_str()
        .unwrap()
        .to_string();
    for (code, out) in &outs {
        if *code != 0 {
            assert_eq!(*code, 1, "{out}");
            assert!(out.contains(&format!("held by {holder}")), "{out}");
        }
    }
}

#[test]
fn a_dead_holders_lock_expires_after_its_ttl() {
    let Some(lab) = Lab::start_or_skip("a_dead_holders_lock_expires_after_its_ttl") else {
        return;
    };
    let (_, others) = roles(&lab);
    let (code, out) = gate(
        &lab,
        &[
            "reboot",
            &others[0],
            "--lock",
            "--lock-ttl",
            "2s",
            "--identity",
            "dead-gate",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let (code, out) = gate(
        &lab,
        &["reboot", &others[1], "--lock", "--identity", "second"],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("held by dead-gate"), "{out}");
    std::thread::sleep(Duration::from_millis(2500));
    let (code, out) = gate(
        &lab,
        &["reboot", &others[1], "--lock", "--identity", "second"],
    );
    assert_eq!(code, 0, "the dead holder's lease expired: {out}");

    // Done: the pipeline releases it by hand.
    let lock = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_hacli"))
            .arg("lock")
            .args(args)
            .arg("--kubeconfig")
            .arg(&lab.kubeconfig)
            .env_remove("HACLI_IDENTITY")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = lock(&["show"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("held by second"), "{out}");
    let (code, out) = lock(&["release", "--identity", "someone-else"]);
    assert_eq!(code, Some(1), "{out}");
    let (code, out) = lock(&["release", "--identity", "second"]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = lock(&["show"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("free"), "{out}");
}

#[test]
fn observe_writes_a_state_that_check_reads() {
    let Some(lab) = Lab::start_or_skip("observe_writes_a_state_that_check_reads") else {
        return;
    };
    let (leader, others) = roles(&lab);
    let file = lab.dir().join("state.json");
    let out = hacli(
        &lab,
        &lab.kubeconfig,
        &["observe", "--out", file.to_str().unwrap()],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let members = state["etcd"]["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    assert!(members.iter().all(|m| m["healthy"] == true), "{state:#}");
    let leaders: Vec<_> = members.iter().filter(|m| m["leader"] == true).collect();
    assert_eq!(leaders.len(), 1);
    assert_eq!(leaders[0]["name"], leader.as_str());
    assert_eq!(state["nodes"].as_array().unwrap().len(), 4);

    let check = Command::new(env!("CARGO_BIN_EXE_hacli"))
        .args([
            "check",
            "reboot",
            &others[0],
            "--policy",
            &reboot_policy(&lab),
            "--topology",
        ])
        .arg(&lab.topology)
        .arg("--state")
        .arg(&file)
        .output()
        .unwrap();
    let table = hacli(&lab, &lab.kubeconfig, &["observe", "--status"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert_eq!(table.status.code(), Some(0), "{text}");
    assert!(text.contains(&leader), "{text}");
    assert!(text.contains("m3") && text.contains("w1"), "{text}");

    assert_eq!(
        check.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
}

#[test]
fn sentinel_gates_the_reboot_and_releases_the_lock_once_ready() {
    let Some(lab) =
        Lab::start_or_skip("sentinel_gates_the_reboot_and_releases_the_lock_once_ready")
    else {
        return;
    };
    let (_, others) = roles(&lab);
    let node = others[0].as_str();
    let policy = reboot_policy(&lab);
    let required = lab.dir().join("reboot-required");
    let sentinel = lab.dir().join("reboot-required.gated");
    let run = || {
        let out = hacli(
            &lab,
            &lab.kubeconfig,
            &[
                "sentinel",
                "--node",
                node,
                "--cycles",
                "1",
                "--policy",
                &policy,
                "--reboot-required",
                required.to_str().unwrap(),
                "--sentinel",
                sentinel.to_str().unwrap(),
            ],
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let holder = || {
        lab.store()
            .get(
                testlab::ApiServer::resource("leases"),
                "kube-system",
                "hacli-disruption-lock",
            )
            .ok()
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
    };

    let log = run();
    assert!(log.contains("no reboot required"), "{log}");
    assert!(!sentinel.exists());

    std::fs::write(&required, "").unwrap();
    let log = run();
    assert_eq!(log.lines().count(), 1, "one line per cycle: {log}");
    assert!(sentinel.exists(), "{log}");
    assert_eq!(
        holder().as_deref(),
        Some(format!("hacli-sentinel@{node}").as_str())
    );

    // Rebooted: the file is gone and the node is Ready.
    std::fs::remove_file(&required).unwrap();
    let log = run();
    assert!(log.contains("lock released"), "{log}");
    assert!(!sentinel.exists());
    assert_eq!(holder(), None);
}

/// The shipped DaemonSet's arguments are ones `hacli sentinel` accepts: run
/// with them, it gets as far as reading the (absent) topology file.
#[test]
fn the_daemonset_manifest_passes_arguments_hacli_accepts() {
    let text = include_str!("../../../examples/deploy/sentinel-daemonset.yaml");
    let ds = text.split("\n---\n").last().unwrap();
    let ds: serde_json::Value = hacore::source::parse("sentinel-daemonset.yaml", ds).unwrap();
    let args: Vec<String> = ds["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let out = Command::new(env!("CARGO_BIN_EXE_hacli"))
        .args(&args)
        .env("NODE_NAME", "m1")
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("/etc/hacli/topology/topology.yaml"), "{err}");
}
