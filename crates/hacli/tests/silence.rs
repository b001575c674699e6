//! Silences during a disruption (issue 27 point 2), against a real
//! Alertmanager on loopback (Debian `prometheus-alertmanager`; SKIPPED
//! without it): `hacli disrupt` with the simulated backend creates one
//! silence for the node from the policy's `silence:` section, created by
//! the lock identity, and expires it when the run ends, also when it fails;
//! a matcher that would mute an alert the `alerts` rule gates on is refused
//! by name; an unreachable Alertmanager stops the run before anything is
//! disrupted; a silence that is not ours is never expired.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use testlab::alertmanager::Alertmanager;

fn alertmanager(test: &str) -> Option<Alertmanager> {
    match Alertmanager::start() {
        Ok(a) => Some(a),
        Err(e) if testlab::alertmanager::alertmanager_binary().is_none() => {
            println!("SKIPPED: {test}: {e}");
            None
        }
        Err(e) => panic!("{test}: alertmanager did not start: {e}"),
    }
}

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

/// The `drain` policy, its alerts rule gating on critical alerts, with a
/// silence for the warnings a reboot causes.
const POLICY: &str = r#"
name: drain-silenced
extends: drain
rules:
  alerts: { minSeverity: critical }
silence:
  comment: planned reboot
  matchers:
    - { name: alertname, value: "KubeNodeNotReady|KubeNodeUnreachable", isRegex: true }
    - { name: severity, value: warning }
    - { name: node, value: "{node}" }
"#;

fn disrupt(dir: &Path, policy: &str, url: &str, extra: &[&str]) -> (i32, String) {
    let topology = dir.join("topology.yaml");
    std::fs::write(&topology, TOPOLOGY).unwrap();
    let p = dir.join("policy.yaml");
    std::fs::write(&p, policy).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hacli"))
        .args(["disrupt", "reboot", "m2"])
        .arg("--topology")
        .arg(&topology)
        .args(["--backend", "simulated", "--identity", "tester@ci"])
        .arg("--policy")
        .arg(&p)
        .arg("--journal")
        .arg(dir.join("m2.jsonl"))
        .arg("--sim-state")
        .arg(dir.join("sim.json"))
        .args(["--alertmanager-url", url, "--alertmanager-timeout", "3s"])
        .args(["--lock-ttl", "20m"])
        .args(extra)
        .env_remove("HACLI_IDENTITY")
        .env_remove("HACLI_ALERTMANAGER_URL")
        .output()
        .expect("hacli runs");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "exit {:?}\nstdout:\n{}\nstderr:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn ours(am: &Alertmanager) -> Vec<serde_json::Value> {
    am.silences()
        .into_iter()
        .filter(|s| s["createdBy"] == "tester@ci")
        .collect()
}

#[test]
fn a_disruption_silences_its_node_until_it_ends_and_expires_the_silence_also_on_failure() {
    let test =
        "a_disruption_silences_its_node_until_it_ends_and_expires_the_silence_also_on_failure";
    let Some(am) = alertmanager(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = disrupt(dir.path(), POLICY, &am.url(), &[]);
    assert_eq!(code, 0, "{out}");
    let s = ours(&am);
    assert_eq!(s.len(), 1, "{s:#?}\n{out}");
    let id = s[0]["id"].as_str().unwrap();
    assert!(out.contains(&format!("silence {id} for m2 until")), "{out}");
    assert!(
        out.contains(&format!("silence {id} for m2 expired")),
        "{out}"
    );
    assert_eq!(s[0]["status"]["state"], "expired", "{s:#?}");
    let comment = s[0]["comment"].as_str().unwrap();
    assert!(
        comment.starts_with("planned reboot [hacli disrupt m2]"),
        "{comment}"
    );
    let matchers = &s[0]["matchers"];
    assert_eq!(matchers[2]["name"], "node");
    assert_eq!(matchers[2]["value"], "m2");
    assert_eq!(matchers[0]["isRegex"], true);
    // It was to end at the run's deadline (the 20-minute lock) had the run
    // not expired it: created about 20 minutes before that.
    let starts: jiff::Timestamp = s[0]["startsAt"].as_str().unwrap().parse().unwrap();
    let updated: jiff::Timestamp = s[0]["updatedAt"].as_str().unwrap().parse().unwrap();
    assert!(updated >= starts);

    // The run fails (the reboot): the silence is expired all the same.
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = disrupt(dir.path(), POLICY, &am.url(), &["--sim-fail", "reboot/m2"]);
    assert_eq!(code, 1, "{out}");
    let s = ours(&am);
    assert_eq!(s.len(), 2, "{s:#?}\n{out}");
    assert!(
        s.iter().all(|s| s["status"]["state"] == "expired"),
        "{s:#?}\n{out}"
    );
}

#[test]
fn a_silence_matcher_for_a_gated_alert_is_refused_and_an_unreachable_alertmanager_stops_the_run() {
    let dir = tempfile::tempdir().unwrap();
    // KubeNodeNotReady at any severity: the alerts rule gates on it when
    // critical. Refused, naming the matcher; nothing is asked of anyone.
    let gated = POLICY.replace("    - { name: severity, value: warning }\n", "");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let (code, out) = disrupt(dir.path(), &gated, &url, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("silence.matchers[0]"), "{out}");
    assert!(
        out.contains("KubeNodeNotReady, KubeNodeUnreachable"),
        "{out}"
    );
    assert!(out.contains("gates on"), "{out}");

    // Alertmanager does not answer: the run stops before the disruption.
    let (code, out) = disrupt(dir.path(), POLICY, &url, &[]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("nothing was disrupted"), "{out}");
    assert!(out.contains(&url), "{out}");
    let sim = std::fs::read_to_string(dir.path().join("sim.json")).unwrap_or_default();
    assert!(!sim.contains("\"m2\":1"), "m2 was rebooted: {sim}");
}

#[test]
fn a_silence_that_is_not_ours_is_never_expired() {
    let Some(am) = alertmanager("a_silence_that_is_not_ours_is_never_expired") else {
        return;
    };
    let ends = (jiff::Timestamp::now() + jiff::SignedDuration::from_mins(10)).to_string();
    let body = serde_json::json!({
        "matchers": [{"name": "node", "value": "m2", "isRegex": false, "isEqual": true}],
        "startsAt": jiff::Timestamp::now().to_string(),
        "endsAt": ends,
        "createdBy": "someone-else",
        "comment": "maintenance [hacli disrupt m2]",
    });
    let (status, text) = am
        .request("POST", "/api/v2/silences", Some(&body.to_string()))
        .unwrap();
    assert_eq!(status, 200, "{text}");
    let id: serde_json::Value = serde_json::from_str(&text).unwrap();
    let id = id["silenceID"].as_str().unwrap().to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = kubeadm::silence::Alertmanager::new(&am.url(), Duration::from_secs(3)).unwrap();
    let e = rt
        .block_on(client.expire(&id, "tester@ci"))
        .expect_err("not ours");
    let e = e.to_string();
    assert!(e.contains("not ours") && e.contains("someone-else"), "{e}");
    let s = am.silences();
    let s = s.iter().find(|s| s["id"] == id.as_str()).unwrap();
    assert_eq!(s["status"]["state"], "active", "{s}");
    // Ours: expired, then "already" the second time (idempotent).
    let ours = rt
        .block_on(client.create(
            &[hacore::silence::Matcher {
                name: "node".into(),
                value: "m3".into(),
                is_regex: false,
                is_equal: true,
            }],
            jiff::Timestamp::now() + jiff::SignedDuration::from_mins(10),
            "tester@ci",
            "[hacli test m3]",
        ))
        .unwrap();
    assert_eq!(
        rt.block_on(client.expire(&ours, "tester@ci")).unwrap(),
        kubeadm::silence::Expired::Now
    );
    assert_eq!(
        rt.block_on(client.expire(&ours, "tester@ci")).unwrap(),
        kubeadm::silence::Expired::Already
    );
}
