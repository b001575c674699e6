//! Planned disruptions (issue 14).
//!
//! - `--move-leader` for `hacli sentinel` and `hacli gate` against the lab
//!   (crates/testlab: real 3-member etcd with TLS, the API stand-in, real
//!   HAProxy): without etcd or haproxy installed those tests print SKIPPED
//!   and why.
//! - `hacli disrupt` and `hacli roll` with the simulated backend.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use testlab::Lab;

const GENEROUS: [&str; 4] = ["--deadline", "6s", "--member-timeout", "4s"];

fn hacli(lab: &Lab, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hacli"))
        .args(args)
        .args(GENEROUS)
        .arg("--topology")
        .arg(&lab.topology)
        .arg("--kubeconfig")
        .arg(&lab.kubeconfig)
        .arg("--etcd-endpoints")
        .arg(lab.etcd_endpoints().join(","))
        .arg("--etcd-pki")
        .arg(&lab.etcd_pki)
        .env_remove("KUBECONFIG")
        .env_remove("HACLI_IDENTITY")
        .env_remove("HACLI_LB_RUNTIME_API")
        .env_remove("HACLI_MOVE_LEADER")
        .output()
        .expect("hacli runs")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn leader(lab: &Lab) -> String {
    lab.wait_leader(Duration::from_secs(10))
        .expect("etcd has a leader")
}

fn holder(lab: &Lab) -> Option<String> {
    lab.store()
        .get(
            testlab::ApiServer::resource("leases"),
            "kube-system",
            "hacli-disruption-lock",
        )
        .ok()
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
}

fn sentinel_cycle(lab: &Lab, node: &str, required: &Path, sentinel: &Path, flag: bool) -> Output {
    let mut args = vec![
        "sentinel",
        "--node",
        node,
        "--cycles",
        "1",
        "--reboot-required",
        required.to_str().unwrap(),
        "--sentinel",
        sentinel.to_str().unwrap(),
    ];
    if flag {
        args.push("--move-leader");
    }
    hacli(lab, &args)
}

#[test]
fn sentinel_move_leader_opens_the_leaders_gate_and_without_it_stays_closed() {
    let Some(lab) = Lab::start_or_skip(
        "sentinel_move_leader_opens_the_leaders_gate_and_without_it_stays_closed",
    ) else {
        return;
    };
    let old = leader(&lab);
    let required = lab.dir().join("reboot-required");
    let sentinel = lab.dir().join("reboot-required.gated");
    std::fs::write(&required, "").unwrap();

    // Without the flag: closed, as before, and leadership stays.
    let out = sentinel_cycle(&lab, &old, &required, &sentinel, false);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!sentinel.exists(), "{}", text(&out));
    assert!(text(&out).contains("etcd-leader"), "{}", text(&out));
    assert_eq!(leader(&lab), old);

    // With it: leadership moves to another member, logged on stderr, and
    // the gate opens in the same cycle (or, at the latest, the next).
    let out = sentinel_cycle(&lab, &old, &required, &sentinel, true);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let all = text(&out);
    assert!(
        all.contains(&format!("etcd leadership moved from {old} to")),
        "{all}"
    );
    assert!(all.contains("took the disruption lock"), "{all}");
    let new = leader(&lab);
    assert_ne!(new, old, "{all}");
    if !sentinel.exists() {
        let again = sentinel_cycle(&lab, &old, &required, &sentinel, true);
        assert!(sentinel.exists(), "{all}\nnext cycle:\n{}", text(&again));
    }
    assert_eq!(
        holder(&lab).as_deref(),
        Some(format!("hacli-sentinel@{old}").as_str()),
        "{all}"
    );
}

#[test]
fn gate_move_leader_moves_only_when_etcd_leader_alone_denies() {
    let Some(lab) = Lab::start_or_skip("gate_move_leader_moves_only_when_etcd_leader_alone_denies")
    else {
        return;
    };
    let old = leader(&lab);
    // Another rule denies too (a worker NotReady): nothing moves.
    let (w, ip) = lab.workers[0].clone();
    lab.set_node(&w, ip, false, false).unwrap();
    let out = hacli(&lab, &["gate", "reboot", &old, "--move-leader"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(!text(&out).contains("moved"), "{}", text(&out));
    assert_eq!(leader(&lab), old);
    assert_eq!(holder(&lab), None);

    // Only etcd-leader denies: leadership moves, the gate allows, and the
    // lock taken for the move is released (no --lock).
    lab.set_node(&w, ip, false, true).unwrap();
    let out = hacli(&lab, &["gate", "reboot", &old]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let out = hacli(&lab, &["gate", "reboot", &old, "--move-leader"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("etcd leadership moved from {old} to")),
        "{}",
        text(&out)
    );
    assert_ne!(leader(&lab), old);
    assert_eq!(holder(&lab), None, "{}", text(&out));
}

// ---- hacli disrupt / roll, simulated backend ----

const TOPOLOGY: &str = r#"
cluster: lab
controlPlaneEndpoint: { address: 198.18.20.100, port: 6443 }
loadBalancer: { kind: haproxy, pool: k8s-apiserver, frontend: "198.18.20.100:6443" }
nodes:
  - { name: m1, role: control-plane, address: 198.18.20.11 }
  - { name: m2, role: control-plane, address: 198.18.20.12 }
  - { name: m3, role: control-plane, address: 198.18.20.13 }
  - { name: w1, role: worker, address: 198.18.20.21 }
"#;

fn sim(dir: &Path, args: &[&str]) -> (i32, String, serde_json::Value) {
    let topology = dir.join("topology.yaml");
    if !topology.exists() {
        std::fs::write(&topology, TOPOLOGY).unwrap();
    }
    // The shared flags go right after the subcommand, before any `--`.
    let out = Command::new(env!("CARGO_BIN_EXE_hacli"))
        .arg(args[0])
        .arg("--topology")
        .arg(&topology)
        .args([
            "--backend",
            "simulated",
            "--identity",
            "tester",
            "-p",
            "drain",
        ])
        .args(&args[1..])
        .env_remove("HACLI_IDENTITY")
        .output()
        .expect("hacli runs");
    let state = std::fs::read_to_string(dir.join("sim.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    (out.status.code().unwrap_or(-1), text(&out), state)
}

#[test]
fn disrupt_reboots_the_leader_after_moving_leadership_and_releases_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let journal = d.join("m1.jsonl");
    let state = d.join("sim.json");
    let args = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = vec![
            "disrupt".into(),
            "reboot".into(),
            "m1".into(),
            "--journal".into(),
            journal.display().to_string(),
            "--sim-state".into(),
            state.display().to_string(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let a = args(&[]);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let (code, out, s) = sim(d, &a);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("m1: done; lock released"), "{out}");
    assert_eq!(
        s["leader_moves"],
        serde_json::json!([["m1", "m2"]]),
        "{out}"
    );
    assert_eq!(s["reboots"]["m1"], 1);
    assert_eq!(s["lock_holder"], serde_json::Value::Null);
    assert_eq!(s["cordoned"], serde_json::json!([]));
    assert_eq!(s["server_state"]["m1"], "ready");

    // Someone else holds the lock: denied, naming the holder, nothing done.
    let mut held = s.clone();
    held["lock_holder"] = "kured@m3".into();
    std::fs::write(&state, serde_json::to_string(&held).unwrap()).unwrap();
    let j2 = d.join("m2.jsonl");
    let (code, out, s) = sim(
        d,
        &[
            "disrupt",
            "reboot",
            "m2",
            "--journal",
            j2.to_str().unwrap(),
            "--sim-state",
            state.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("held by kured@m3"), "{out}");
    assert_eq!(s["reboots"].get("m2"), None, "{out}");
}

#[test]
fn disrupt_failure_restores_the_backend_and_the_node_and_names_the_step() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let journal = d.join("j.jsonl");
    let state = d.join("sim.json");
    let (code, out, s) = sim(
        d,
        &[
            "disrupt",
            "run",
            "m2",
            "--journal",
            journal.to_str().unwrap(),
            "--sim-state",
            state.to_str().unwrap(),
            "--sim-fail",
            "run-command/m2",
            "--",
            "apt-get",
            "-y",
            "upgrade",
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAILED at step run/m2/run"), "{out}");
    assert_eq!(s["server_state"]["m2"], "ready", "{out}");
    assert_eq!(s["cordoned"], serde_json::json!([]), "{out}");
    assert_eq!(s["lock_holder"], serde_json::Value::Null, "{out}");
    let log = std::fs::read_to_string(&journal).unwrap();
    assert!(log.contains(r#""event":"rolled-back""#), "{log}");
}

#[test]
fn rolling_upgrade_stops_at_the_failing_second_master_restores_it_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let jd = d.join("roll");
    let state = d.join("sim.json");
    let base = [
        "roll",
        "upgrade",
        "--to",
        "v1.33.2",
        "--soak",
        "10m",
        "--journal-dir",
        jd.to_str().unwrap(),
        "--sim-state",
        state.to_str().unwrap(),
    ];
    let mut args = base.to_vec();
    args.extend(["--sim-fail", "upgrade/m2"]);
    let (code, out, s) = sim(d, &args);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("m1: done"), "{out}");
    assert!(out.contains("FAILED at step upgrade/m2/upgrade"), "{out}");
    assert!(
        out.contains("STOPPED at m2 at step upgrade/m2/upgrade"),
        "{out}"
    );
    assert!(out.contains("not started: m3, w1"), "{out}");
    assert_eq!(
        s["upgraded_to"],
        serde_json::json!({"m1": "v1.33.2"}),
        "{out}"
    );
    assert_eq!(s["server_state"]["m2"], "ready", "{out}");
    assert_eq!(s["cordoned"], serde_json::json!([]), "{out}");
    assert_eq!(s["lock_holder"], serde_json::Value::Null);

    // Fixed: the roll resumes where it stopped, m1 is not upgraded again.
    let mut args = base.to_vec();
    args.push("--resume");
    let (code, out, s) = sim(d, &args);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("roll complete: m1, m2, m3, w1"), "{out}");
    assert_eq!(
        s["upgraded_to"],
        serde_json::json!({"m1": "v1.33.2", "m2": "v1.33.2", "m3": "v1.33.2", "w1": "v1.33.2"})
    );
    let effects: Vec<String> = s["effects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect();
    let applies: Vec<&String> = effects
        .iter()
        .filter(|e| e.contains("upgrade apply"))
        .collect();
    assert_eq!(
        applies,
        ["kubeadm upgrade apply v1.33.2 on m1"],
        "{effects:?}"
    );
}

/// The cluster's only master without the `single-master` policy: a
/// policy refusal (exit 1), not bad input; a node that does not exist is
/// bad input (exit 2).
#[test]
fn disrupting_the_only_master_is_refused_by_policy_and_an_unknown_node_is_usage() {
    let dir = tempfile::tempdir().unwrap();
    let topo = dir.path().join("single.yaml");
    std::fs::write(&topo, masters(&[("m1", 1)])).unwrap();
    let journal = dir.path().join("j.jsonl");
    let args = |node: &'static str| {
        vec![
            "disrupt".to_string(),
            "reboot".into(),
            node.into(),
            "-t".into(),
            topo.display().to_string(),
            "--journal".into(),
            journal.display().to_string(),
            "--backend".into(),
            "simulated".into(),
        ]
    };
    let run = |a: Vec<String>| run_hacli(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let (code, out) = run(args("m1"));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("the cluster's only master"), "{out}");
    assert!(out.contains("single-master"), "{out}");
    let (code, out) = run(args("m9"));
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("`m9` is not a node of the topology"), "{out}");
}

// ---- hacli remove-master / replace-master, simulated backend ----

const PVE: &str = r#"
cluster: lab
controlPlaneEndpoint: { address: 198.18.20.100, port: 6443 }
loadBalancer: { kind: haproxy, pool: k8s-apiserver, frontend: "198.18.20.100:6443" }
hypervisors:
  - { name: pve1, memoryGiB: 128, cpus: 32 }
nodes:
"#;

fn masters(names: &[(&str, u8)]) -> String {
    let mut t = PVE.to_string();
    for (n, i) in names {
        t.push_str(&format!(
            "  - {{ name: {n}, role: control-plane, address: 198.18.20.1{i}, hypervisor: pve1, vmid: 10{i}, cpus: 2, memoryGiB: 4, diskGiB: 32 }}\n"
        ));
    }
    t
}

fn run_hacli(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hacli"))
        .args(args)
        .env_remove("HACLI_IDENTITY")
        .output()
        .expect("hacli runs");
    (out.status.code().unwrap_or(-1), text(&out))
}

#[test]
fn remove_master_refuses_one_of_three_and_replace_master_ends_with_three_voters() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let current = d.join("current.yaml");
    let target = d.join("target.yaml");
    std::fs::write(&current, masters(&[("m1", 1), ("m2", 2), ("m3", 3)])).unwrap();
    std::fs::write(&target, masters(&[("m2", 2), ("m3", 3), ("m4", 4)])).unwrap();
    let t = current.to_str().unwrap();

    let (code, out) = run_hacli(&["remove-master", "m2", "-t", t, "--dry-run"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("leaves 2 etcd voters"), "{out}");

    // NEW is cloned: no --template is missing input (exit 2 naming the
    // flag), not a plan that "cannot be made safe".
    let tgt = target.to_str().unwrap();
    let (code, out) = run_hacli(&[
        "replace-master",
        "m1",
        "m4",
        "-t",
        t,
        "--target",
        tgt,
        "--dry-run",
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("--template VMID is required"), "{out}");
    assert!(!out.contains("REFUSED"), "{out}");

    let (code, out) = run_hacli(&[
        "replace-master",
        "m1",
        "m4",
        "-t",
        t,
        "--target",
        target.to_str().unwrap(),
        "--template",
        "9000",
        "--dry-run",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("join/m4/join"), "{out}");
    assert!(out.contains("remove/m1/member"), "{out}");

    let journal = d.join("replace.jsonl");
    let state = d.join("sim.json");
    let (code, out) = run_hacli(&[
        "replace-master",
        "m1",
        "m4",
        "-t",
        t,
        "--target",
        target.to_str().unwrap(),
        "--template",
        "9000",
        "--journal",
        journal.to_str().unwrap(),
        "--backend",
        "simulated",
        "--sim-state",
        state.to_str().unwrap(),
        "--identity",
        "tester",
    ]);
    assert_eq!(code, 0, "{out}");
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(
        s["etcd"],
        serde_json::json!({"m2": false, "m3": false, "m4": false}),
        "three voters: {out}"
    );
    let pool: Vec<&String> = s["pool"].as_object().unwrap().keys().collect();
    assert_eq!(pool, ["m2", "m3", "m4"], "three backends");
    assert!(
        s["vms"].get("101").is_none(),
        "the old VM is gone: {}",
        s["vms"]
    );
    assert_eq!(s["lock_holder"], serde_json::Value::Null);
}

/// Issue 26: `replace-master OLD NEW --dead` asks nothing of OLD (no drain,
/// no reset, each skipped step says why), removes its member first only
/// when quorum holds, and ends with three voters; two dead of three are
/// refused before anything.
#[test]
fn replace_master_dead_removes_the_dead_master_without_its_help_and_refuses_lost_quorum() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let current = d.join("current.yaml");
    let target = d.join("target.yaml");
    std::fs::write(&current, masters(&[("m1", 1), ("m2", 2), ("m3", 3)])).unwrap();
    std::fs::write(&target, masters(&[("m2", 2), ("m3", 3), ("m4", 4)])).unwrap();
    let observed = |dead: &[&str]| {
        let mut y = String::from("observedAt: 2026-03-04T02:00:00Z\nnodes:\n");
        for i in 1..=3 {
            y.push_str(&format!(
                "  - {{ name: m{i}, ready: {}, readySince: 2026-03-01T00:00:00Z, daemonSetPodsNotRunning: [], pdbBlockedPods: [] }}\n",
                !dead.contains(&format!("m{i}").as_str())
            ));
        }
        y.push_str("etcd:\n  members:\n");
        for i in 1..=3 {
            y.push_str(&format!(
                "    - {{ id: 100{i}, name: m{i}, peerURLs: [\"https://198.18.20.1{i}:2380\"], clientURLs: [\"https://198.18.20.1{i}:2379\"], healthy: {}, leader: {} }}\n",
                !dead.contains(&format!("m{i}").as_str()),
                i == 2
            ));
        }
        let p = d.join(format!("state-{}.yaml", dead.join("-")));
        std::fs::write(&p, y).unwrap();
        p
    };
    let one = observed(&["m1"]);
    let base = |state: &std::path::Path| -> Vec<String> {
        [
            "replace-master",
            "m1",
            "m4",
            "-t",
            current.to_str().unwrap(),
            "--target",
            target.to_str().unwrap(),
            "--template",
            "9000",
            "--dead",
            "--dead-state",
            state.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let mut args = base(&one);
    args.push("--dry-run".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out) = run_hacli(&args);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("remove/m1/member"), "{out}");
    assert!(
        !out.contains("remove/m1/drain") && !out.contains("remove/m1/reset"),
        "{out}"
    );
    assert!(
        out.contains(
            "skipped for the dead master m1: reset: kubeadm reset runs on the node itself"
        ),
        "{out}"
    );

    let journal = d.join("dead.jsonl");
    let sim = d.join("sim.json");
    let mut args = base(&one);
    args.extend(
        [
            "--journal",
            journal.to_str().unwrap(),
            "--backend",
            "simulated",
            "--sim-state",
            sim.to_str().unwrap(),
            "--identity",
            "tester",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out) = run_hacli(&args);
    assert_eq!(code, 0, "{out}");
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&sim).unwrap()).unwrap();
    assert_eq!(
        s["etcd"],
        serde_json::json!({"m2": false, "m3": false, "m4": false}),
        "three voters: {out}"
    );
    let pool: Vec<&String> = s["pool"].as_object().unwrap().keys().collect();
    assert_eq!(pool, ["m2", "m3", "m4"]);
    assert!(s["vms"].get("101").is_none(), "the dead VM is gone");

    let two = observed(&["m1", "m3"]);
    let mut args = base(&two);
    args.push("--dry-run".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out) = run_hacli(&args);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("quorum is already lost"), "{out}");
    assert!(!out.contains("remove/m1/member"), "{out}");
}

/// Issue 26: `hacli remediate` decides from the observation and its memory
/// (one run per observation): a master down is waited on until its bound,
/// then to be replaced; two down of three are refused (quorum); every
/// decision is printed with its reason and written as a metric.
#[test]
fn remediate_waits_for_the_bound_then_replaces_one_and_refuses_two_down_of_three() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let topo = d.join("t.yaml");
    std::fs::write(&topo, masters(&[("m1", 1), ("m2", 2), ("m3", 3)])).unwrap();
    let observed = |dead: &[&str]| {
        let mut y = String::from("observedAt: 2026-03-04T02:00:00Z\nnodes:\n");
        for i in 1..=3 {
            let up = !dead.contains(&format!("m{i}").as_str());
            y.push_str(&format!(
                "  - {{ name: m{i}, ready: {up}, readySince: 2026-03-01T00:00:00Z }}\n"
            ));
        }
        y.push_str("etcd:\n  members:\n");
        for i in 1..=3 {
            let up = !dead.contains(&format!("m{i}").as_str());
            y.push_str(&format!("    - {{ id: 100{i}, name: m{i}, peerURLs: [\"https://198.18.20.1{i}:2380\"], healthy: {up} }}\n"));
        }
        let p = d.join(format!("state-{}.yaml", dead.join("-")));
        std::fs::write(&p, y).unwrap();
        p
    };
    let memory = d.join("memory.json");
    let metrics = d.join("remediate.prom");
    let run = |state: &std::path::Path, bound: &str| {
        run_hacli(&[
            "remediate",
            "-t",
            topo.to_str().unwrap(),
            "--state",
            state.to_str().unwrap(),
            "--memory",
            memory.to_str().unwrap(),
            "--metrics",
            metrics.to_str().unwrap(),
            "--unhealthy-for",
            bound,
        ])
    };
    let one = observed(&["m1"]);
    let (code, out) = run(&one, "1h");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("wait m1: its Node is NotReady and its etcd member (id 3e9) is unhealthy, for 0s; replaced after 1h"), "{out}");
    // Later (a shorter bound stands for the time passed): to be replaced.
    let (code, out) = run(&one, "1ms");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("replace m1: its Node is NotReady"), "{out}");
    assert!(
        out.contains("etcd keeps quorum: 2 of 3 voters healthy now"),
        "{out}"
    );
    assert!(out.contains("run: hacli replace-master m1 NEW"), "{out}");
    let prom = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        prom.contains("hacli_remediation_decision{decision=\"replace\",node=\"m1\""),
        "{prom}"
    );

    std::fs::remove_file(&memory).unwrap();
    let two = observed(&["m1", "m3"]);
    run(&two, "1ms");
    let (code, out) = run(&two, "1ms");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("refused m1:") && out.contains("quorum is already lost"),
        "{out}"
    );
    let prom = std::fs::read_to_string(&metrics).unwrap();
    assert!(prom.contains("decision=\"refused\""), "{prom}");
}

// ---- hacli disrupt --backend live on lab masters (testlab::cluster) ----

#[test]
fn live_disrupt_runs_a_command_on_a_worker_over_ssh_and_puts_it_back() {
    use testlab::cluster::{ClusterLab, M1, VIP};
    let Some(mut lab) = ClusterLab::start_or_skip(
        "live_disrupt_runs_a_command_on_a_worker_over_ssh_and_puts_it_back",
    ) else {
        return;
    };
    let vip = lab.lab_addr(VIP);
    let lb = format!(
        "loadBalancer:\n  kind: haproxy\n  frontend: \"{vip}:6443\"\n  pool: k8s-apiserver\n"
    );
    // The seed as it is: one master (m2 and m3 are not there yet).
    let yaml: String = lab
        .topology_yaml(&lb)
        .lines()
        .filter(|l| !l.contains("name: m2,") && !l.contains("name: m3,"))
        .map(|l| format!("{l}\n"))
        .collect();
    let yaml = format!(
        "{yaml}ssh:\n  user: root\n  identityFile: {}\n  knownHosts: {}\n",
        lab.client_key().display(),
        lab.known_hosts().display()
    );
    let topo = lab.dir().join("topology-seed.yaml");
    std::fs::write(&topo, yaml).unwrap();
    let tls = lab.etcd_tls();
    let journal = lab.dir().join("disrupt-w1.jsonl");
    let etcd = format!("https://{}:2379", lab.lab_addr(M1));
    let out = Command::new(env!("CARGO_BIN_EXE_hacli"))
        .args(["disrupt", "run", "w1", "--backend", "live", "-p", "drain"])
        .args([
            "--identity",
            "live-test",
            "--deadline",
            "10s",
            "--member-timeout",
            "5s",
        ])
        .arg("--topology")
        .arg(&topo)
        .arg("--journal")
        .arg(&journal)
        .arg("--kubeconfig")
        .arg(lab.admin_conf())
        .args(["--etcd-endpoints", &etcd])
        .arg("--etcd-cacert")
        .arg(&tls.ca)
        .arg("--etcd-cert")
        .arg(&tls.cert)
        .arg("--etcd-key")
        .arg(&tls.key)
        .args(["--", "touch", "/root/disrupted"])
        .env_remove("KUBECONFIG")
        .env_remove("HACLI_IDENTITY")
        .env_remove("HACLI_LB_RUNTIME_API")
        .output()
        .expect("hacli runs");
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("w1: done; lock released"), "{all}");
    assert!(all.contains("took the disruption lock"), "{all}");
    let touched = lab
        .host("w1")
        .exec(&["test", "-e", "/root/disrupted"])
        .unwrap();
    assert!(touched.status.success(), "the command ran on w1: {all}");
    let node = lab.node("w1").unwrap();
    assert_ne!(node["spec"]["unschedulable"], true, "uncordoned: {node}");
    let log = std::fs::read_to_string(&journal).unwrap();
    assert!(log.contains(r#""event":"finished""#), "{log}");
    the_live_disruption_example_reboots_w1_and_puts_it_back(&mut lab, &topo);
}

/// examples/rust/live_disruption.rs (a planned reboot through haops, as a
/// Rust tool embeds it), in the lab the test above started: w1 is
/// rebooted (a new boot id, the lab power-cycled it on its request) and
/// put back (uncordoned, the lock free, the journal finished).
fn the_live_disruption_example_reboots_w1_and_puts_it_back(
    lab: &mut testlab::cluster::ClusterLab,
    topology: &Path,
) {
    let tls = lab.etcd_tls();
    let reach = haops::Reach {
        kubeconfig: Some(lab.admin_conf()),
        etcd_endpoints: vec![format!(
            "https://{}:2379",
            lab.lab_addr(testlab::cluster::M1)
        )],
        etcd_tls: kubeadm::EtcdTlsOverrides {
            pki: None,
            ca: Some(tls.ca.clone()),
            cert: Some(tls.cert.clone()),
            key: Some(tls.key.clone()),
        },
        deadline: std::time::Duration::from_secs(10),
        member_timeout: std::time::Duration::from_secs(5),
        ..haops::Reach::default()
    };
    let journal = lab.dir().join("live-disruption-w1.jsonl");
    let boot = lab.host("w1").boot_id();
    // The `drain` policy, as the command above: the lab's nodes are fresh
    // (the `reboot` policy's 24 h soak) and run no CNI DaemonSet.
    let args: Vec<String> = [topology, journal.as_path()]
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let args = [&args[0], "w1", &args[1], "drain"].map(str::to_string);
    let started = std::time::Instant::now();
    let report = lab
        .serving_power_requests(|| example::run(&args, reach).map_err(|e| e.to_string()))
        .unwrap();
    let log = std::fs::read_to_string(&journal).unwrap();
    println!(
        "the example's reboot of w1 took {:.1?}; its journal:\n{log}",
        started.elapsed()
    );
    assert_eq!(report.summary(), "w1: done; lock released", "{log}");
    assert_ne!(lab.host("w1").boot_id(), boot, "w1 was rebooted: {log}");
    assert!(
        lab.power_events()
            .iter()
            .any(|p| p.host == "w1" && p.action == "reboot"),
        "the reboot was asked of the lab"
    );
    let node = lab.node("w1").unwrap();
    assert_ne!(node["spec"]["unschedulable"], true, "uncordoned: {node}");
    assert!(log.contains(r#""event":"finished""#), "{log}");
    let lease = lab
        .store()
        .get(
            testlab::ApiServer::resource("leases"),
            "kube-system",
            "hacli-disruption-lock",
        )
        .unwrap();
    assert!(
        lease["spec"]["holderIdentity"].is_null(),
        "the lock is free: {lease}"
    );
}

#[allow(dead_code)]
#[path = "../../../examples/rust/live_disruption.rs"]
mod example;

#[test]
fn live_disrupt_is_denied_while_another_holds_the_lock_naming_the_holder() {
    let Some(lab) =
        Lab::start_or_skip("live_disrupt_is_denied_while_another_holds_the_lock_naming_the_holder")
    else {
        return;
    };
    let old = leader(&lab);
    let followers: Vec<String> = lab
        .masters
        .iter()
        .map(|m| m.0.clone())
        .filter(|m| *m != old)
        .collect();
    // Someone else's disruption holds the lock.
    let out = hacli(
        &lab,
        &[
            "gate",
            "reboot",
            &followers[0],
            "--lock",
            "--identity",
            "kured@elsewhere",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let journal = lab.dir().join("j.jsonl");
    let out = hacli(
        &lab,
        &[
            "disrupt",
            "reboot",
            &followers[1],
            "--backend",
            "live",
            "--identity",
            "second",
            "--journal",
            journal.to_str().unwrap(),
        ],
    );
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("DENIED"), "{all}");
    assert!(all.contains("held by kured@elsewhere"), "{all}");
    assert_eq!(holder(&lab).as_deref(), Some("kured@elsewhere"));
    assert_eq!(leader(&lab), old, "nothing moved");
}
