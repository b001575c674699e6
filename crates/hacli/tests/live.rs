//! `hacli gate`, `observe` and `sentinel` against the lab: real etcd with
//! TLS, the Kubernetes API stand-in on the masters and a real HAProxy on
//! the endpoint, observed through its runtime API (crates/testlab). The
//! `reboot` policy is the built-in one, load-balancer rule included.
//! Without etcd or haproxy installed every test prints SKIPPED and why.

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
    hacli_env(lab, kubeconfig, args, &[])
}

fn hacli_env(lab: &Lab, kubeconfig: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
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
        .env_remove("HACLI_LB_RUNTIME_API")
        .envs(env.iter().copied())
        .output()
        .expect("hacli runs")
}

fn gate(lab: &Lab, args: &[&str]) -> (i32, String) {
    let mut all = vec!["gate"];
    all.extend(args);
    let out = hacli(lab, &lab.kubeconfig, &all);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// (severity, message) of every finding of `rule` in a JSON verdict.
fn findings(json: &str, rule: &str) -> Vec<(String, String)> {
    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == rule)
        .map(|f| {
            (
                f["severity"].as_str().unwrap().to_string(),
                f["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
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

    // The built-in reboot policy, load balancer observed: the other two
    // backends are UP, and the target's own still takes traffic (drain it).
    let (code, out) = gate(&lab, &["reboot", &others[0], "-o", "json"]);
    assert_eq!(code, 0, "{out}");
    let lb = findings(&out, "load-balancer");
    assert!(
        lb.iter()
            .any(|(sev, msg)| sev == "pass" && msg.contains("2 other backends UP")),
        "{lb:?}"
    );
    assert!(
        lb.iter()
            .any(|(sev, msg)| sev == "warn" && msg.contains(&others[0])),
        "{lb:?}"
    );
    assert!(
        lb.iter().all(|(sev, _)| sev == "pass" || sev == "warn"),
        "{lb:?}"
    );

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
fn an_etcd_alarm_denies_until_disarmed() {
    let Some(lab) = Lab::start_or_skip("an_etcd_alarm_denies_until_disarmed") else {
        return;
    };
    let (_, others) = roles(&lab);
    // NOSPACE on the other follower: etcd then refuses writes cluster-wide,
    // and no master may be taken down until it is resolved.
    lab.raise_nospace_alarm(&others[1]).unwrap();
    let (code, out) = gate(&lab, &["reboot", &others[0], "-o", "json"]);
    assert_eq!(code, 1, "{out}");
    let alarms = findings(&out, "etcd-alarms");
    assert_eq!(
        alarms,
        [(
            "deny".to_string(),
            format!("etcd alarm active: NOSPACE on {}", others[1])
        )],
        "{out}"
    );
    lab.disarm_alarms().unwrap();
    let (code, out) = gate(&lab, &["reboot", &others[0], "-o", "json"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        findings(&out, "etcd-alarms"),
        [("pass".to_string(), "no etcd alarm is active".to_string())]
    );
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
    let out = hacli(&lab, &kc, &["gate", "reboot", &others[0]]);
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
    // This test is about the lock. Twenty gates at once on a 2-core
    // machine slow the lab's apiservers past HAProxy's 200 ms health
    // checks, and a backend seen DOWN at that instant denies every gate
    // (rightly): the built-in reboot policy without the load-balancer rule.
    let policy = lab.dir().join("reboot-without-lb.yaml");
    std::fs::write(
        &policy,
        "name: reboot-without-lb\nextends: reboot\ndisable: [load-balancer]\n",
    )
    .unwrap();
    let children: Vec<_> = (0..20)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_hacli"))
                .args(["gate", "reboot", &others[i % 2], "--lock", "--identity"])
                .arg(format!("gate-{i}"))
                .arg("--policy")
                .arg(&policy)
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
    // A gate that missed its deadline on the loaded machine is unknown
    // (exit 3): never allowed, so the lock's claim holds. That none is
    // unknown is a benchmark figure (scripts/bench-targets.sh).
    let unknown = outs.iter().filter(|(c, _)| *c == 3).count();
    testlab::targets::figure(
        "20 concurrent locking gates: unknown (deadline missed)",
        &unknown.to_string(),
        "0",
        unknown == 0,
    );
    assert!(allowed.len() <= 1, "more than one allowed: {outs:#?}");
    assert!(unknown < outs.len(), "every gate was unknown: {outs:#?}");
    if unknown == 0 {
        assert_eq!(allowed.len(), 1, "{outs:#?}");
    }
    if allowed.is_empty() {
        return;
    }
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
        if *code == 1 {
            assert!(out.contains(&format!("held by {holder}")), "{out}");
        } else {
            assert!(*code == 0 || *code == 3, "exit {code}: {out}");
        }
    }
}

#[test]
fn a_dead_holders_lock_expires_after_its_ttl() {
    let Some(lab) = Lab::start_or_skip("a_dead_holders_lock_expires_after_its_ttl") else {
        return;
    };
    let (_, others) = roles(&lab);
    // The lease outlives the next gate's whole run: 8 s against the
    // gates' 6 s deadline. (A 2 s lease outliving a gate run is a
    // benchmark figure: how long a gate run takes, printed below.)
    let (code, out) = gate(
        &lab,
        &[
            "reboot",
            &others[0],
            "--lock",
            "--lock-ttl",
            "8s",
            "--identity",
            "dead-gate",
        ],
    );
    let acquired = std::time::Instant::now();
    assert_eq!(code, 0, "{out}");
    let (code, out) = gate(
        &lab,
        &["reboot", &others[1], "--lock", "--identity", "second"],
    );
    let run = acquired.elapsed();
    testlab::targets::figure(
        "a locking gate's whole run, denied by a held lease",
        &format!("{:.2} s", run.as_secs_f64()),
        "< 2 s (a 2 s lease outlives it)",
        run < Duration::from_secs(2),
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("held by dead-gate"), "{out}");
    std::thread::sleep(Duration::from_millis(8500).saturating_sub(acquired.elapsed()));
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
    let backends = state["loadBalancer"]["backends"].as_array().unwrap();
    let names: Vec<_> = backends
        .iter()
        .map(|b| b["server"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["m1", "m2", "m3"], "{state:#}");
    assert!(backends.iter().all(|b| b["status"] == "UP"), "{state:#}");

    let check = Command::new(env!("CARGO_BIN_EXE_hacli"))
        .args(["check", "reboot", &others[0], "--topology"])
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
    let lb_line = text
        .lines()
        .find(|l| l.starts_with("load balancer: "))
        .unwrap_or_else(|| panic!("{text}"));
    // Sessions vary: the observation's own API reads go through the VIP.
    for m in ["m1 UP (", "m2 UP (", "m3 UP ("] {
        assert!(lb_line.contains(m), "{lb_line}");
    }

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

#[test]
fn the_other_backends_in_maint_deny_by_load_balancer() {
    let Some(mut lab) = Lab::start_or_skip("the_other_backends_in_maint_deny_by_load_balancer")
    else {
        return;
    };
    let (_, others) = roles(&lab);
    let target = others[0].as_str();
    let rest: Vec<&str> = ["m1", "m2", "m3"]
        .into_iter()
        .filter(|m| *m != target)
        .collect();
    for m in &rest {
        let answer = lab
            .lb_command(&format!("set server {}/{m} state maint", lab.lb_pool()))
            .unwrap();
        assert_eq!(answer.trim(), "", "{answer}");
    }
    lab.wait_lb(&rest, "MAINT", Duration::from_secs(5)).unwrap();
    let (code, out) = gate(&lab, &["reboot", target, "-o", "json"]);
    assert_eq!(code, 1, "{out}");
    let lb = findings(&out, "load-balancer");
    assert!(
        lb.iter()
            .any(|(sev, msg)| sev == "deny" && msg.contains("0 other backends UP")),
        "{lb:?}"
    );

    // Back in service: allowed again.
    for m in &rest {
        lab.lb_command(&format!("set server {}/{m} state ready", lab.lb_pool()))
            .unwrap();
    }
    lab.wait_lb(&rest, "UP", Duration::from_secs(5)).unwrap();
    let (code, out) = gate(&lab, &["reboot", target]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_paused_haproxy_never_allows_and_answers_within_the_deadline() {
    let Some(mut lab) =
        Lab::start_or_skip("a_paused_haproxy_never_allows_and_answers_within_the_deadline")
    else {
        return;
    };
    let (_, others) = roles(&lab);
    lab.pause_lb();
    let started = Instant::now();
    let (code, out) = gate(
        &lab,
        &["reboot", &others[0], "--deadline", "2s", "-o", "json"],
    );
    let took = started.elapsed();
    lab.resume_lb();
    // The VIP is HAProxy too: the API reads through it are unknown, and the
    // endpoint's /readyz is not answered (apiserver-ready: deny or unknown,
    // so exit 1 or 3, never 0). The load balancer itself is unknown, naming
    // the socket and the deadline.
    assert!(code == 1 || code == 3, "{out}");
    let lb = findings(&out, "load-balancer");
    assert!(
        lb.iter().any(|(sev, msg)| sev == "unknown"
            && msg.contains(&lab.lb_runtime_api())
            && msg.contains("no answer before the deadline")),
        "{lb:?}"
    );
    assert!(
        findings(&out, "apiserver-ready")
            .iter()
            .any(|(sev, _)| sev == "deny" || sev == "unknown"),
        "{out}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

/// A runtime API that accepts connections and never answers, as a hung
/// HAProxy's does: the listener is never accepted from.
fn silent_socket(lab: &Lab) -> (std::os::unix::net::UnixListener, String) {
    let path = lab.dir().join("silent.sock");
    let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
    (l, format!("unix:{}", path.display()))
}

#[test]
fn the_lb_runtime_api_flag_overrides_the_topology() {
    let Some(lab) = Lab::start_or_skip("the_lb_runtime_api_flag_overrides_the_topology") else {
        return;
    };
    let (_, others) = roles(&lab);
    let target = others[0].as_str();

    // Only the load balancer is silent: unknown (exit 3) by the deadline.
    let (_silent, silent) = silent_socket(&lab);
    let started = Instant::now();
    let (code, out) = gate(
        &lab,
        &[
            "reboot",
            target,
            "--lb-runtime-api",
            &silent,
            "--deadline",
            "1s",
            "--member-timeout",
            "1s",
            "-o",
            "json",
        ],
    );
    let took = started.elapsed();
    assert_eq!(code, 3, "{out}");
    let lb = findings(&out, "load-balancer");
    assert!(
        lb.iter().any(|(sev, msg)| sev == "unknown"
            && msg.contains(&silent)
            && msg.contains("no answer before the deadline")),
        "{lb:?}"
    );
    assert!(took < Duration::from_secs(4), "took {took:?}");

    // The environment variable, to the TCP listener, on a topology that
    // names no runtime API at all.
    let text = std::fs::read_to_string(&lab.topology).unwrap();
    let bare: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("runtimeApi:"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(bare, text);
    let bare_path = lab.dir().join("topology-no-runtime-api.yaml");
    std::fs::write(&bare_path, bare).unwrap();
    let run = |env: &[(&str, &str)]| {
        let out = Command::new(env!("CARGO_BIN_EXE_hacli"))
            .args(["gate", "reboot", target, "-o", "json"])
            .arg("--topology")
            .arg(&bare_path)
            .arg("--kubeconfig")
            .arg(&lab.kubeconfig)
            .args(GENEROUS)
            .env_remove("KUBECONFIG")
            .env_remove("HACLI_LB_RUNTIME_API")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = run(&[]);
    assert_eq!(code, 3, "{out}");
    let lb = findings(&out, "load-balancer");
    assert!(
        lb.iter().any(|(sev, msg)| sev == "unknown"
            && msg.contains("no runtime API configured")
            && msg.contains("--lb-runtime-api")),
        "{lb:?}"
    );
    let tcp = format!("tcp:{}", lab.lb_tcp());
    let (code, out) = run(&[("HACLI_LB_RUNTIME_API", tcp.as_str())]);
    assert_eq!(code, 0, "{out}");

    // A bad value is a usage error naming it.
    let out = hacli_env(
        &lab,
        &lab.kubeconfig,
        &["gate", "reboot", target],
        &[("HACLI_LB_RUNTIME_API", "haproxy.sock")],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("haproxy.sock") && err.contains("unix:"),
        "{err}"
    );
}
