//! The `hacli` binary end to end: exit codes, output formats, bad input.

use std::path::PathBuf;
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn hacli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hacli"))
        .args(args)
        .current_dir(root())
        .env_remove("HACLI_TOPOLOGY")
        .env_remove("HACLI_STATE")
        .output()
        .expect("run hacli")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const HA: &str = "examples/topology/ha.yaml";

/// When the bundled example states were observed: `check` judges a state as
/// of now unless `--at` says otherwise, and these are months old.
const EXAMPLES_AT: &str = "2026-05-21T12:00:00Z";

/// `check` on a bundled example state, as of the time it was observed
/// (unless `extra` gives `--at`).
fn check(action: &str, target: &str, state: &str, extra: &[&str]) -> Output {
    let state = format!("examples/state/{state}.yaml");
    let mut args = vec!["check", action, target, "--topology", HA, "--state", &state];
    if !extra.contains(&"--at") {
        args.extend(["--at", EXAMPLES_AT]);
    }
    args.extend_from_slice(extra);
    hacli(&args)
}

#[test]
fn exit_codes_follow_the_decision() {
    let cases = [
        ("reboot", "k8s-master-2", "ha-healthy", 0),
        ("reboot", "k8s-master", "ha-healthy", 1),
        ("reboot", "k8s-master", "ha-master-notready", 1),
        ("reboot", "k8s-master-2", "ha-mid-join", 1),
        ("upgrade", "k8s-master-2", "ha-kill-switch", 1),
        ("upgrade", "k8s-node1", "ha-alert-firing", 1),
        ("reboot", "k8s-node1", "ha-soak-open", 1),
        ("reboot", "k8s-master-2", "ha-etcd-unreachable", 3),
        // The kill switch stops reboots too (issue 22), not only upgrades.
        ("reboot", "k8s-master-2", "ha-kill-switch", 1),
        ("drain", "k8s-node1", "ha-kill-switch", 1),
        ("reboot", "k8s-node1", "ha-alert-firing", 1),
    ];
    for (action, target, state, code) in cases {
        let out = check(action, target, state, &[]);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{action} {target} on {state}:\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
}

#[test]
fn json_verdict_is_stable_and_complete() {
    let out = check("reboot", "k8s-master", "ha-healthy", &["--output", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["action"], "reboot");
    assert_eq!(v["target"], "k8s-master");
    assert_eq!(v["policy"], "reboot");
    assert_eq!(v["observedAt"], "2026-05-21T12:00:00Z");
    let findings = v["findings"].as_array().unwrap();
    let leader = findings
        .iter()
        .find(|f| f["rule"] == "etcd-leader")
        .unwrap();
    assert_eq!(leader["severity"], "deny");
    assert!(
        leader["remediation"]
            .as_str()
            .unwrap()
            .contains("move-leader")
    );
    // Every finding carries rule, severity and message.
    for f in findings {
        assert!(
            f["rule"].is_string() && f["severity"].is_string() && f["message"].is_string(),
            "{f}"
        );
    }
}

#[test]
fn text_verdict_leads_with_the_decision() {
    let out = check("reboot", "k8s-master", "ha-healthy", &[]);
    let s = text(&out.stdout);
    assert!(s.starts_with("DENY: reboot k8s-master"), "{s}");
    assert!(s.contains("DENY etcd-leader"), "{s}");
    assert!(
        s.contains("-> etcdctl move-leader 91bc3c398fb3c146 (to k8s-master-2)"),
        "{s}"
    );
}

#[test]
fn at_moves_the_clock() {
    // Soak window open at observation time, closed a day later (the state is
    // then stale, so the verdict is unknown, not allow).
    let out = check(
        "reboot",
        "k8s-node1",
        "ha-soak-open",
        &["--at", "2026-05-22T12:00:00Z"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("?? "), "{}", text(&out.stdout));
    let out = check(
        "reboot",
        "k8s-node1",
        "ha-soak-open",
        &["--at", "yesterday"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--at `yesterday`"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn policy_files_and_builtins() {
    let out = check(
        "reboot",
        "k8s-master-2",
        "ha-healthy",
        &["--policy", "examples/policy/kured-gate.yaml"],
    );
    // 12:00 UTC is outside the 01:00-05:00 London window.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("reboot-window"),
        "{}",
        text(&out.stdout)
    );
    let out = check(
        "reboot",
        "k8s-master-2",
        "ha-healthy",
        &["--policy", "drain"],
    );
    assert_eq!(out.status.code(), Some(0));
    let out = check(
        "reboot",
        "k8s-master-2",
        "ha-healthy",
        &["--policy", "nope"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("unknown policy `nope`"),
        "{}",
        text(&out.stderr)
    );
    let out = hacli(&["policy", "show", "reboot", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let p: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(p["rules"]["soak"]["window"], "24h");
    assert_eq!(p["rules"]["daemonsets"]["names"][0], "calico-node");
}

#[test]
fn policy_show_text_reads_back_as_a_policy_file() {
    let list = hacli(&["policy", "list"]);
    let names: Vec<String> = text(&list.stdout)
        .lines()
        .filter(|l| !l.starts_with(' '))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    assert!(names.len() >= 5, "{names:?}");
    let dir = tempfile::tempdir().unwrap();
    for name in names {
        let out = hacli(&["policy", "show", &name]);
        assert_eq!(out.status.code(), Some(0), "{name}");
        let file = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&file, &out.stdout).unwrap();
        let again = hacli(&["policy", "show", file.to_str().unwrap(), "-o", "json"]);
        assert_eq!(
            again.status.code(),
            Some(0),
            "{name}: {}",
            text(&again.stderr)
        );
        let orig = hacli(&["policy", "show", &name, "-o", "json"]);
        assert_eq!(again.stdout, orig.stdout, "{name} read back differs");
    }
}

#[test]
fn unknown_target_and_action_are_usage_errors() {
    let out = check("reboot", "k8s-master-9", "ha-healthy", &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("unknown target `k8s-master-9`") && err.contains("k8s-master-2"),
        "{err}"
    );
    let out = check("explode", "k8s-master", "ha-healthy", &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unknown action `explode`"));
}

/// `hacli sentinel --remediate` is opt-in and checked before the first
/// cycle: without --spare, --journal or --memory it is a usage error naming
/// them; a spare that does not parse is named (exit 2), nothing reached.
#[test]
fn sentinel_remediate_names_what_it_needs_before_any_cycle() {
    let topo = root().join("examples/topology/ha.yaml");
    let topo = topo.to_str().unwrap();
    let base = [
        "sentinel",
        "--node",
        "k8s-master",
        "-t",
        topo,
        "--remediate",
    ];
    let out = hacli(&base);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    for flag in ["--spare", "--journal", "--memory"] {
        assert!(err.contains(flag), "{flag} in {err}");
    }
    let dir = tempfile::tempdir().unwrap();
    let spare = dir.path().join("spare.yaml");
    std::fs::write(&spare, "name: [m9\n").unwrap();
    let mut args = base.to_vec();
    let (spare, journal, memory) = (
        spare.to_str().unwrap().to_string(),
        dir.path().join("j").to_str().unwrap().to_string(),
        dir.path().join("m.json").to_str().unwrap().to_string(),
    );
    args.extend([
        "--spare",
        &spare,
        "--journal",
        &journal,
        "--memory",
        &memory,
    ]);
    let out = hacli(&args);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("--spare") && err.contains("spare.yaml"),
        "{err}"
    );
    assert!(!err.contains("REMEDIATION ON"), "{err}");
    assert!(!std::path::Path::new(&memory).exists());
}

/// Each bad file: exit 2, the message names file:line:column, no panic.
#[test]
fn bad_topologies_name_file_line_and_column() {
    let cases = [
        ("malformed", "malformed.yaml:5:5", "unclosed bracket"),
        (
            "unknown-field",
            "unknown-field.yaml:7:5",
            "unknown field `adress`",
        ),
        ("wrong-type", "wrong-type.yaml:2:51", "u16"),
        ("bad-address", "bad-address.yaml:4:47", "invalid IP address"),
        (
            "duplicates",
            "duplicates.yaml:8:7",
            "duplicate node name `m1` (first at nodes[0])",
        ),
        (
            "duplicates",
            "duplicates.yaml:9:31",
            "address 10.0.0.12 is already used by node `m2`",
        ),
        (
            "vip-is-node",
            "vip-is-node.yaml:2:25",
            "the VIP 10.0.0.11 is node `m1`'s address",
        ),
        (
            "vip-is-node",
            "vip-is-node.yaml:8:38",
            "outside the node network",
        ),
        ("bad-cidr", "bad-cidr.yaml:3:18", "is not a CIDR"),
        (
            "etcd-endpoint",
            "etcd-endpoint.yaml:4:",
            "`10.0.0.12:2379`: expected https://HOST:PORT",
        ),
        (
            "runtime-api",
            "runtime-api.yaml:7:",
            "expected tcp:ADDRESS:PORT",
        ),
    ];
    for (file, at, says) in cases {
        let path = format!("crates/hacli/tests/data/bad/{file}.yaml");
        let out = hacli(&["topology", "validate", &path]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{file}: {err}");
        assert!(!err.contains("panicked"), "{file}: {err}");
        assert!(err.contains(at), "{file}: expected {at} in:\n{err}");
        assert!(err.contains(says), "{file}: expected {says:?} in:\n{err}");
        // The same file given to `check` is a configuration error too.
        let out = hacli(&[
            "check",
            "reboot",
            "m1",
            "-t",
            &path,
            "-s",
            "examples/state/ha-healthy.yaml",
        ]);
        assert_eq!(out.status.code(), Some(2), "{file}");
    }
}

#[test]
fn bad_state_names_its_line() {
    let out = hacli(&[
        "check",
        "reboot",
        "k8s-master",
        "-t",
        HA,
        "-s",
        "crates/hacli/tests/data/bad-state.yaml",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("bad-state.yaml:4:"), "{err}");
    let out = hacli(&[
        "check",
        "reboot",
        "k8s-master",
        "-t",
        HA,
        "-s",
        "does/not/exist.yaml",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("does/not/exist.yaml: cannot read"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn warnings_do_not_fail_validation_unless_strict() {
    let path = "crates/hacli/tests/data/warnings.yaml";
    let out = hacli(&["topology", "validate", path, "-o", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let msgs: Vec<String> = v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["message"].as_str().unwrap().to_string())
        .collect();
    assert!(
        msgs.iter().any(|m| m.contains("even etcd size")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter().any(|m| m.contains("run on hypervisor `pve`")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter().any(|m| m.contains("/readyz turns false")),
        "{msgs:?}"
    );
    let hc = v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["path"] == "loadBalancer.healthCheck.path")
        .unwrap();
    assert_eq!(
        (
            hc["position"]["line"].as_u64(),
            hc["position"]["column"].as_u64()
        ),
        (Some(7), Some(31))
    );
    let out = hacli(&["topology", "validate", path, "--strict"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn status_reports_quorum_and_disruptions() {
    let out = hacli(&[
        "status",
        "-t",
        HA,
        "-s",
        "examples/state/ha-master-notready.yaml",
        "--at",
        EXAMPLES_AT,
        "-o",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let etcd = &v["etcd"]["ok"];
    assert_eq!(etcd["voters"], 3);
    assert_eq!(etcd["healthy"], 2);
    assert_eq!(etcd["quorum"], 2);
    assert_eq!(etcd["toleranceNow"], 0);
    assert_eq!(etcd["leader"], "k8s-master");
    let d = v["disruptions"].as_array().unwrap();
    let m2 = d.iter().find(|d| d["node"] == "k8s-master-2").unwrap();
    assert_eq!(m2["decision"], "deny");
    let text_out = hacli(&[
        "status",
        "-t",
        HA,
        "-s",
        "examples/state/ha-healthy.yaml",
        "--at",
        EXAMPLES_AT,
    ]);
    let s = text(&text_out.stdout);
    assert!(
        s.contains("etcd: 3 voters, 0 learners, 3 healthy, quorum 2, can lose 1 more"),
        "{s}"
    );
    assert!(s.contains("k8s-master-2           allow"), "{s}");
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hacli-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn plan_simulate_apply_end_to_end() {
    let dir = tmp("migration");
    let plan = dir.join("plan.json");
    let out = hacli(&[
        "plan",
        "--from",
        "examples/topology/single-master.yaml",
        "--to",
        HA,
        "--template",
        "9000",
        "-o",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    std::fs::write(&plan, &out.stdout).unwrap();
    let md = hacli(&[
        "plan",
        "--from",
        "examples/topology/single-master.yaml",
        "--to",
        HA,
        "--template",
        "9000",
        "-o",
        "markdown",
    ]);
    assert!(
        text(&md.stdout).contains("- [ ] **join/k8s-master-2/join**"),
        "{}",
        text(&md.stdout)
    );

    let p = plan.to_str().unwrap();
    let sim = hacli(&["simulate", p, "--failures", "2"]);
    assert_eq!(sim.status.code(), Some(0), "{}", text(&sim.stderr));
    let s = text(&sim.stdout);
    assert!(
        s.contains("RISK WINDOW join/k8s-master-2/taint .. join/k8s-master-3/promoted"),
        "{s}"
    );
    assert!(
        s.contains("conditional outage (declared in the plan, only if a fallback is taken): endpoint/apiserver-cert/k8s-master")
            && !s.contains("planned outage"),
        "{s}"
    );

    let journal = dir.join("journal.jsonl");
    let j = journal.to_str().unwrap();
    let dry = hacli(&[
        "apply",
        p,
        "--journal",
        j,
        "--backend",
        "simulated",
        "--dry-run",
    ]);
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry.stderr));
    assert!(
        text(&dry.stdout).starts_with("dry run: "),
        "{}",
        text(&dry.stdout)
    );
    let first = hacli(&["apply", p, "--journal", j, "--backend", "simulated"]);
    assert_eq!(
        first.status.code(),
        Some(4),
        "stops for the manual step: {}",
        text(&first.stdout)
    );
    // The whole command to continue, on stderr.
    let to_continue = format!(
        "apply {p} --journal {j} --backend simulated --resume --confirm cutover/external/woodpecker"
    );
    assert!(
        text(&first.stderr).contains(&to_continue),
        "{}",
        text(&first.stderr)
    );
    let again = hacli(&["apply", p, "--journal", j, "--backend", "simulated"]);
    assert_eq!(
        again.status.code(),
        Some(2),
        "a used journal needs --resume"
    );
    assert!(
        text(&again.stderr).contains("pass --resume"),
        "{}",
        text(&again.stderr)
    );
    let done = hacli(&[
        "apply",
        p,
        "--journal",
        j,
        "--backend",
        "simulated",
        "--resume",
        "--confirm",
        "cutover/external/woodpecker",
        "--confirm",
        "cutover/external/dev-vm",
        "--confirm",
        "verify/pinned-workloads/k8s-master",
    ]);
    assert_eq!(
        done.status.code(),
        Some(0),
        "{}{}",
        text(&done.stdout),
        text(&done.stderr)
    );
    assert!(
        text(&done.stdout).contains("completed"),
        "{}",
        text(&done.stdout)
    );
    let lines = std::fs::read_to_string(&journal).unwrap();
    assert!(
        lines.lines().last().unwrap().contains("\"finished\""),
        "{lines}"
    );
    // The journal shows earlier steps were not redone on resume.
    assert_eq!(
        lines
            .matches("\"step\":\"provision/k8s-master-2/clone\"")
            .count(),
        2,
        "started + done once: {lines}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn plan_refusals_exit_1_with_reasons_and_a_missing_template_2() {
    let out = hacli(&[
        "plan",
        "--from",
        "examples/topology/single-master.yaml",
        "--to",
        HA,
    ]);
    // Missing input, not a safety refusal: exit 2 naming the flag.
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--template VMID is required"),
        "{}",
        text(&out.stderr)
    );
    let out = hacli(&[
        "plan",
        "--from",
        "examples/topology/single-master.yaml",
        "--to",
        "crates/hacli/tests/data/warnings.yaml",
        "--template",
        "9000",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let s = text(&out.stdout);
    assert!(s.contains("the target has 2 control-plane nodes"), "{s}");
    assert!(
        s.contains("master `k8s-master` is missing from the target"),
        "{s}"
    );
}

#[test]
fn a_closed_stdout_ends_quietly() {
    for args in [
        &["policy", "list"][..],
        &[
            "plan",
            "--from",
            "examples/topology/single-master.yaml",
            "--to",
            HA,
            "--template",
            "9000",
            "-o",
            "json",
        ][..],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hacli"))
            .args(args)
            .current_dir(root())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = text(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
    }
}

/// Stricter state files: each error names the file, line, column and field
/// once, with no second location and no cause printed twice.
#[test]
fn state_file_errors_name_file_line_column_and_field_once() {
    let cases = [
        (
            "yes-no",
            "yes-no.yaml:4:",
            "nodes[0].ready",
            "invalid type: string \"yes\", expected `true` or `false`",
        ),
        (
            "hex-prefix",
            "hex-prefix.yaml:5:",
            "etcd.members[0].id",
            "a member id is a decimal number, as `etcdctl member list -w json` prints it, or a string of up to 16 hexadecimal digits",
        ),
        (
            "big-id",
            "big-id.yaml:5:",
            "etcd.members[0].id",
            "member id is out of range: a member id is at most 18446744073709551615 (64 bits)",
        ),
        (
            "dup-name",
            "dup-name.yaml:6:",
            "etcd.members[1].name",
            "member name `k8s-master` is used by two members, ids 8e9e05c52164694d (etcd.members[0]) and 91bc3c398fb3c146",
        ),
    ];
    for (file, at, field, says) in cases {
        let path = format!("crates/hacli/tests/data/strict/{file}.yaml");
        let out = hacli(&["check", "reboot", "k8s-master", "-t", HA, "-s", &path]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{file}: {err}");
        assert!(err.contains(at), "{file}: expected {at} in:\n{err}");
        assert_eq!(
            err.matches(field).count(),
            1,
            "{file}: {field} once in:\n{err}"
        );
        assert!(err.contains(says), "{file}: expected {says:?} in:\n{err}");
        assert!(
            !err.contains(" at line "),
            "{file}: a second location in:\n{err}"
        );
        assert!(!err.contains("floating"), "{file}: {err}");
    }
    // An unreadable file: its cause once.
    let out = hacli(&[
        "check",
        "reboot",
        "k8s-master",
        "-t",
        HA,
        "-s",
        "does/not/exist.yaml",
    ]);
    let err = text(&out.stderr);
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}

#[test]
fn a_saved_state_is_judged_as_of_now_and_a_stale_one_is_unknown_naming_its_age() {
    // No --at: the verdict's time is now, and the example state is months old.
    let state = "examples/state/ha-healthy.yaml";
    let out = hacli(&["check", "reboot", "k8s-master-2", "-t", HA, "-s", state]);
    let s = text(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{s}");
    assert!(s.starts_with("UNKNOWN: reboot k8s-master-2"), "{s}");
    let fresh = s
        .lines()
        .find(|l| l.contains("state-fresh"))
        .unwrap_or_else(|| panic!("{s}"));
    assert!(
        fresh.contains("the state is ")
            && fresh.contains(" old (observed at 2026-05-21T12:00:00Z, verdict at ")
            && fresh.contains("the policy accepts at most 5m"),
        "{fresh}"
    );
    let json = hacli(&[
        "check",
        "reboot",
        "k8s-master-2",
        "-t",
        HA,
        "-s",
        state,
        "-o",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["decision"], "unknown");
    assert_ne!(v["at"], v["observedAt"]);
    // Replaying it as of its observation is an explicit choice.
    let out = check("reboot", "k8s-master-2", "ha-healthy", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    // status too: a stale state lets nothing go down.
    let out = hacli(&["status", "-t", HA, "-s", state, "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let d = v["disruptions"].as_array().unwrap();
    assert!(!d.is_empty());
    assert!(d.iter().all(|d| d["decision"] != "allow"), "{d:?}");
}

#[test]
fn a_state_of_another_cluster_is_refused_as_bad_input() {
    // The three masters' state against the single master's topology: both
    // are `homelab`, but two members and two masters match nothing.
    let out = hacli(&[
        "check",
        "reboot",
        "k8s-master",
        "-t",
        "examples/topology/single-master.yaml",
        "-s",
        "examples/state/ha-healthy.yaml",
        "--at",
        EXAMPLES_AT,
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}{err}", text(&out.stdout));
    assert!(
        err.contains("etcd member `k8s-master-2` (id 91bc3c398fb3c146), peer https://10.0.20.105:2380, matches no node of the topology of cluster `homelab`"),
        "{err}"
    );
    assert!(err.contains("`k8s-master-3`"), "{err}");
    assert!(!err.contains("member remove"), "{err}");
    assert!(text(&out.stdout).is_empty(), "{}", text(&out.stdout));
    // A state that names another cluster.
    let dir = tmp("other-cluster");
    let other = dir.join("office.yaml");
    std::fs::write(
        &other,
        std::fs::read_to_string(root().join("examples/state/ha-healthy.yaml"))
            .unwrap()
            .replace("cluster: homelab", "cluster: office"),
    )
    .unwrap();
    let out = hacli(&[
        "check",
        "reboot",
        "k8s-master-2",
        "-t",
        HA,
        "-s",
        other.to_str().unwrap(),
        "--at",
        EXAMPLES_AT,
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("office.yaml:4:1: error: cluster: the state was observed on cluster `office`, but the topology is of cluster `homelab`"),
        "{err}"
    );
}

/// `gate` with nothing listening anywhere: the Kubernetes API, etcd, each
/// apiserver and the load balancer's runtime API on closed loopback ports.
#[test]
fn a_gate_that_reaches_nothing_is_unknown_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let closed = || {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (api, etcd, lb) = (closed(), closed(), closed());
    let ips: Vec<std::net::IpAddr> = ["127.0.0.11", "127.0.0.12", "127.0.0.13"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let pki = testlab::pki::Pki::generate(dir.path(), &ips, &ips).unwrap();
    let topology = dir.path().join("nowhere.yaml");
    std::fs::write(
        &topology,
        format!(
            "cluster: nowhere
controlPlaneEndpoint: {{ address: 127.0.0.10, port: {api} }}
etcd:
  mode: stacked
  endpoints: [https://127.0.0.11:{etcd}, https://127.0.0.12:{etcd}, https://127.0.0.13:{etcd}]
  pki: {}
loadBalancer: {{ kind: haproxy, frontend: \"127.0.0.10:{api}\", pool: api, runtimeApi: \"tcp:127.0.0.1:{lb}\", healthCheck: {{ type: https, path: /readyz }} }}
nodes:
  - {{ name: m1, role: control-plane, address: 127.0.0.11 }}
  - {{ name: m2, role: control-plane, address: 127.0.0.12 }}
  - {{ name: m3, role: control-plane, address: 127.0.0.13 }}
  - {{ name: w1, role: worker, address: 127.0.0.21 }}
",
            pki.etcd_dir.display()
        ),
    )
    .unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1
kind: Config
clusters: [{{ name: c, cluster: {{ server: \"https://127.0.0.10:{api}\", certificate-authority: {} }} }}]
users: [{{ name: u, user: {{ token: not-a-secret }} }}]
contexts: [{{ name: c, context: {{ cluster: c, user: u }} }}]
current-context: c
",
            pki.dir.join("ca.crt").display()
        ),
    )
    .unwrap();
    for (action, target) in [("reboot", "m2"), ("drain", "w1"), ("upgrade", "m1")] {
        let out = Command::new(env!("CARGO_BIN_EXE_hacli"))
            .args(["gate", action, target, "--deadline", "2s", "-o", "json"])
            .arg("--topology")
            .arg(&topology)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .env_remove("KUBECONFIG")
            .env_remove("HACLI_LB_RUNTIME_API")
            .env_remove("HACLI_PROMETHEUS_URL")
            .output()
            .unwrap();
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(
            out.status.code(),
            Some(3),
            "{action} {target}:\n{stdout}{stderr}"
        );
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(v["decision"], "unknown", "{stdout}");
        let findings = v["findings"].as_array().unwrap();
        assert!(
            findings.iter().all(|f| f["severity"] != "deny"),
            "{action} {target}: {stdout}"
        );
        if action != "drain" {
            let api = findings
                .iter()
                .find(|f| f["rule"] == "apiserver-ready")
                .unwrap();
            assert_eq!(api["severity"], "unknown", "{stdout}");
            assert!(
                api["message"]
                    .as_str()
                    .unwrap()
                    .contains("no apiserver answered /readyz"),
                "{stdout}"
            );
        }
    }
}

/// A host sits at the address planned for a new master, its firewall
/// (nft) dropping every packet it receives or sends: no TCP connection
/// from here tells it apart from an empty address. `hacli plan
/// --probe-addresses` asks the address's own network, from the current
/// master over SSH: the host answers ARP below its firewall, so the plan is
/// refused naming the address; the free addresses (the other new master,
/// the VIP) are probed free. An address on no node's subnet cannot be
/// decided: exit 3, never free.
#[test]
fn a_planned_address_held_by_a_host_that_drops_every_packet_is_refused() {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
    use std::time::Duration;
    use testlab::host::HostLab;

    let test = "a_planned_address_held_by_a_host_that_drops_every_packet_is_refused";
    let lab = HostLab::start_for(test);
    if !lab.isolated_or_skip(test) {
        return;
    }
    if !std::path::Path::new("/usr/sbin/nft").exists() {
        println!("SKIPPED: {test}: nft is missing (install nftables)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (key, public) =
        testlab::sshd::client_key(&dir.path().join("client"), "ed25519", None).unwrap();
    let mut m1 = lab.add_host("m1").unwrap();
    m1.start_sshd(vec![public]).unwrap();
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, m1.known_hosts_line().unwrap() + "\n").unwrap();
    let silent = lab.add_host("silent").unwrap();
    let out = silent
        .exec_with(
            &["nft", "-f", "-"],
            &[],
            Some(
                "table inet drop_everything {\n  chain input { type filter hook input priority 0; policy drop; }\n  chain output { type filter hook output priority 0; policy drop; }\n}\n",
            ),
            Duration::from_secs(10),
        )
        .unwrap();
    assert!(out.status.success(), "nft: {out:?}");
    // From here, the host is silence: a connection neither succeeds nor is
    // refused (the old TCP probe read that as free).
    let e = TcpStream::connect_timeout(&SocketAddr::new(silent.ip(), 22), Duration::from_secs(1))
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");

    let net = lab.gateway().octets();
    let free = |last: u8| IpAddr::V4(Ipv4Addr::new(net[0], net[1], net[2], last));
    let (m3, vip) = (free(240), free(241));
    let node = |name: &str, role: &str, addr: IpAddr, vmid: u32| {
        format!(
            "  - {{ name: {name}, role: {role}, address: {addr}, hypervisor: pve, vmid: {vmid}, cpus: 2, memoryGiB: 4, diskGiB: 20 }}\n"
        )
    };
    let head = |endpoint: IpAddr, lb: &str| {
        format!(
            "cluster: probe\ncontrolPlaneEndpoint: {{ address: {endpoint}, port: 6443 }}\n{lb}hypervisors:\n  - {{ name: pve, memoryGiB: 64, cpus: 16 }}\nssh:\n  user: root\n  identityFile: {}\n  knownHosts: {}\nnodes:\n",
            key.display(),
            known_hosts.display()
        )
    };
    let from = dir.path().join("from.yaml");
    std::fs::write(
        &from,
        head(m1.ip(), "loadBalancer: { kind: none }\n")
            + &node("m1", "control-plane", m1.ip(), 100),
    )
    .unwrap();
    let lb = format!(
        "loadBalancer:\n  kind: haproxy\n  frontend: \"{vip}:6443\"\n  pool: k8s-apiserver\n  healthCheck: {{ type: https, path: /readyz }}\n"
    );
    let to_with = |m3: IpAddr| {
        let to = dir.path().join(format!("to-{m3}.yaml"));
        std::fs::write(
            &to,
            head(vip, &lb)
                + &node("m1", "control-plane", m1.ip(), 100)
                + &node("m2", "control-plane", silent.ip(), 101)
                + &node("m3", "control-plane", m3, 102),
        )
        .unwrap();
        to
    };
    let plan = |to: &std::path::Path, probe: bool| {
        let mut args = vec![
            "plan",
            "--from",
            from.to_str().unwrap(),
            "--to",
            to.to_str().unwrap(),
            "--template",
            "9000",
        ];
        if probe {
            args.push("--probe-addresses");
        }
        let out = hacli(&args);
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    let to = to_with(m3);
    // Without asking the network the plan is made: nothing says the
    // address is taken.
    let (code, out, err) = plan(&to, false);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let (code, out, err) = plan(&to, true);
    assert_eq!(code, Some(1), "{out}\n{err}");
    let silent_ip = silent.ip();
    assert!(
        out.contains("REFUSED")
            && out.contains(&format!(
                "node `m2` address {silent_ip} already answers on the network"
            )),
        "{out}\n{err}"
    );
    assert!(
        !out.contains(&m3.to_string()) && !out.contains(&format!("{vip} already")),
        "only the held address is refused: {out}"
    );
    assert!(
        err.contains(&format!(
            "address {silent_ip} (node `m2`): in use: answers as "
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("address {m3} (node `m3`): free")),
        "{err}"
    );
    assert!(
        err.contains(&format!("address {vip} (the VIP): free")),
        "{err}"
    );

    // m3 on a network none of the nodes is on: unknown, exit 3 (its route
    // goes through the gateway; nothing is sent to it).
    let elsewhere: IpAddr = if net[1] == 19 && net[2] == 255 {
        "198.18.255.240".parse().unwrap()
    } else {
        "198.19.255.240".parse().unwrap()
    };
    let (code, out, err) = plan(&to_with(elsewhere), true);
    assert_eq!(code, Some(3), "{out}\n{err}");
    assert!(
        err.contains(&format!("address {elsewhere}"))
            && err.contains("unknown")
            && err.contains("gateway"),
        "{err}"
    );
}

#[test]
fn a_cluster_that_cannot_be_reached_or_read_is_unknown_exit_3_for_lock_and_gate() {
    // A Kubernetes API on a port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = format!("https://{}", closed.local_addr().unwrap());
    drop(closed);
    let dir = tmp("unreachable-exit-3");
    let kc = dir.join("kubeconfig");
    std::fs::write(
        &kc,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: \"{server}\"}}}}]\nusers: [{{name: u, user: {{token: t}}}}]\ncontexts: [{{name: c, context: {{cluster: c, user: u}}}}]\ncurrent-context: c\n"
        ),
    )
    .unwrap();
    let kc = kc.to_str().unwrap();
    // The lease cannot be read: unknown, naming it, not a usage error.
    for args in [
        vec!["lock", "show", "--kubeconfig", kc],
        vec!["lock", "take", "--identity", "me", "--kubeconfig", kc],
    ] {
        let out = hacli(&args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {err}");
        assert!(err.contains("hacli-disruption-lock"), "{args:?}: {err}");
    }
    // A kubeconfig that cannot be read: the cluster cannot be observed,
    // unknown (it was exit 2 when every error was a usage error).
    let missing = dir.join("missing.conf");
    let out = hacli(&[
        "gate",
        "reboot",
        "k8s-master-2",
        "-t",
        HA,
        "--kubeconfig",
        missing.to_str().unwrap(),
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("missing.conf"), "{err}");
    // A bad setting stays a usage error.
    let out = hacli(&[
        "gate",
        "reboot",
        "k8s-master-2",
        "-t",
        HA,
        "--kubeconfig",
        kc,
        "--lb-runtime-api",
        "haproxy.sock",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

// ---- one spelling per concept, documents, conflicts, exit 4 ----

/// Every command and subcommand, as `hacli ... --help` takes them.
const COMMANDS: &[&[&str]] = &[
    &["check"],
    &["status"],
    &["topology", "validate"],
    &["policy", "show"],
    &["gate"],
    &["observe"],
    &["sentinel"],
    &["lock", "show"],
    &["lock", "take"],
    &["lock", "release"],
    &["plan"],
    &["simulate"],
    &["apply"],
    &["lb", "show"],
    &["lb", "add-server"],
    &["lb", "drain"],
    &["drill"],
    &["hypervisor", "show"],
    &["disrupt"],
    &["roll"],
    &["remove-master"],
    &["replace-master"],
    &["remediate"],
    &["snapshot"],
    &["recover"],
    &["reconcile-config"],
];

#[test]
fn one_spelling_per_concept_in_every_help() {
    for cmd in COMMANDS {
        let mut args = cmd.to_vec();
        args.push("--help");
        let out = hacli(&args);
        assert_eq!(out.status.code(), Some(0), "{cmd:?}");
        let help = text(&out.stdout);
        for old in ["--ssh-known-hosts", "--ssh-key", "--timeout ", "--json"] {
            assert!(!help.contains(old), "{cmd:?} shows {old}:\n{help}");
        }
        // `--identity` is the lock holder, never a file.
        assert!(
            !help.contains("--identity <PATH>") && !help.contains("--identity <FILE>"),
            "{cmd:?}:\n{help}"
        );
        if help.contains("--kubeconfig") {
            assert!(help.contains("--context <NAME>"), "{cmd:?}:\n{help}");
        }
        if help.contains("--output") {
            assert!(help.contains("yaml"), "{cmd:?}:\n{help}");
        }
    }
    let lb = text(&hacli(&["lb", "show", "--help"]).stdout);
    for new in ["--ssh-identity", "--known-hosts", "--deadline"] {
        assert!(lb.contains(new), "{lb}");
    }
    let snap = text(&hacli(&["snapshot", "--help"]).stdout);
    assert!(
        snap.contains("--ssh-identity") && snap.contains("--known-hosts"),
        "{snap}"
    );
    let rec = text(&hacli(&["recover", "--help"]).stdout);
    assert!(
        rec.contains("--known-hosts") && rec.contains("--ssh-identity"),
        "{rec}"
    );
}

#[test]
fn old_spellings_still_work_and_say_the_new_one() {
    // Each parses (a missing file is the error, exit 2, named) and names
    // the spelling to use on stderr; nothing is contacted.
    let cases: &[(&[&str], &[&str])] = &[
        (
            &[
                "lb",
                "show",
                "-t",
                "/nonexistent/t.yaml",
                "--identity",
                "k",
                "--timeout",
                "1s",
            ],
            &[
                "/nonexistent/t.yaml",
                "--identity is deprecated: use --ssh-identity",
                "--timeout is deprecated: use --deadline",
            ],
        ),
        (
            &[
                "recover",
                "-t",
                "/nonexistent/t.yaml",
                "--journal",
                "/nonexistent/j",
                "--ssh-known-hosts",
                "k",
            ],
            &[
                "/nonexistent/t.yaml",
                "--ssh-known-hosts is deprecated: use --known-hosts",
            ],
        ),
        (
            &[
                "snapshot",
                "-t",
                "/nonexistent/t.yaml",
                "--ssh-key",
                "k",
                "--timeout",
                "1m",
                "--etcdutl",
                "/nonexistent/etcdutl",
            ],
            &[
                "/nonexistent/etcdutl",
                "--ssh-key is deprecated: use --ssh-identity",
                "--timeout is deprecated: use --transfer-deadline",
            ],
        ),
    ];
    for (args, said) in cases {
        let out = hacli(args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(!err.contains("unexpected argument"), "{args:?}: {err}");
        for s in *said {
            assert!(err.contains(s), "{args:?}: {err}");
        }
    }
}

/// Every key of a document, recursively, with its path.
fn keys(v: &serde_json::Value, path: &str, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                out.push(format!("{path}.{k}"));
                keys(x, &format!("{path}.{k}"), out);
            }
        }
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                keys(x, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// The documents of the offline commands, as `-o json` and `-o yaml`.
fn documents() -> Vec<(Vec<&'static str>, &'static str)> {
    let state = "examples/state/ha-healthy.yaml";
    let single = "examples/topology/single-master.yaml";
    vec![
        (
            vec![
                "check",
                "reboot",
                "k8s-master-2",
                "-t",
                HA,
                "-s",
                state,
                "--at",
                EXAMPLES_AT,
            ],
            "Verdict",
        ),
        (
            vec!["status", "-t", HA, "-s", state, "--at", EXAMPLES_AT],
            "ClusterStatus",
        ),
        (vec!["topology", "validate", HA], "TopologyValidation"),
        (vec!["policy", "show", "reboot"], "Policy"),
        (vec!["policy", "list"], "PolicyList"),
        (
            vec!["plan", "--from", single, "--to", HA, "--template", "9000"],
            "Plan",
        ),
    ]
}

#[test]
fn documents_carry_api_version_and_kind_in_json_and_yaml() {
    for (args, kind) in documents() {
        let mut json_args = args.clone();
        json_args.extend(["-o", "json"]);
        let out = hacli(&json_args);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", text(&out.stdout)));
        assert_eq!(json["apiVersion"], "hacli/v1", "{args:?}");
        assert_eq!(json["kind"], kind, "{args:?}");
        // camelCase: no field name of ours has an underscore.
        let mut all = Vec::new();
        keys(&json, "", &mut all);
        let snake: Vec<&String> = all
            .iter()
            .filter(|k| k.rsplit('.').next().unwrap_or_default().contains('_'))
            .collect();
        assert!(snake.is_empty(), "{args:?}: snake_case fields {snake:?}");

        let mut yaml_args = args.clone();
        yaml_args.extend(["-o", "yaml"]);
        let out = hacli(&yaml_args);
        let yaml = text(&out.stdout);
        let parsed: serde_json::Value = serde_saphyr::from_str(&yaml)
            .unwrap_or_else(|e| panic!("{args:?}: not YAML: {e}\n{yaml}"));
        assert!(
            yaml.starts_with("apiVersion: hacli/v1\n"),
            "{args:?}: {yaml}"
        );
        assert_eq!(parsed, json, "{args:?}: YAML and JSON say the same");
    }
}

#[test]
fn a_plan_file_with_api_version_and_kind_is_read_back() {
    let dir = tmp("plan-doc");
    let out = hacli(&[
        "plan",
        "--from",
        "examples/topology/single-master.yaml",
        "--to",
        HA,
        "--template",
        "9000",
        "-o",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let plan = dir.join("plan.json");
    std::fs::write(&plan, &out.stdout).unwrap();
    let sim = hacli(&["simulate", plan.to_str().unwrap(), "-o", "yaml"]);
    assert_eq!(sim.status.code(), Some(0), "{}", text(&sim.stderr));
    assert!(
        text(&sim.stdout).contains("kind: SimulationReport"),
        "{}",
        text(&sim.stdout)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn contradicting_flags_are_refused_naming_both() {
    let dir = tmp("conflicts");
    let out = hacli(&[
        "plan",
        "--from",
        "examples/topology/single-master.yaml",
        "--to",
        HA,
        "--template",
        "9000",
        "-o",
        "json",
    ]);
    let plan = dir.join("plan.json");
    std::fs::write(&plan, &out.stdout).unwrap();
    let (p, j) = (plan.to_str().unwrap(), dir.join("j.jsonl"));
    let j = j.to_str().unwrap();
    let cases: &[(&[&str], &[&str])] = &[
        (
            &[
                "apply",
                p,
                "--journal",
                j,
                "--backend",
                "live",
                "--lb",
                "live",
            ],
            &["--lb live", "--backend live"],
        ),
        (
            &[
                "apply",
                p,
                "--journal",
                j,
                "--backend",
                "simulated",
                "--dry-run",
                "--confirm",
                "x",
            ],
            &["--confirm", "--dry-run"],
        ),
        (
            &[
                "recover",
                "-t",
                HA,
                "--journal",
                j,
                "--dry-run",
                "--confirm",
            ],
            &["--confirm", "--dry-run"],
        ),
        (
            &[
                "remove-master",
                "k8s-master-2",
                "-t",
                HA,
                "--dry-run",
                "--resume",
            ],
            &["--dry-run", "--resume"],
        ),
    ];
    for (args, named) in cases {
        let out = hacli(args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        for n in *named {
            assert!(err.contains(n), "{args:?} names {n}: {err}");
        }
    }
    assert!(!std::path::Path::new(j).exists(), "nothing journalled");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `-o wide` adds columns to the tables `status` prints (each node's
/// address and VM id from the topology, each etcd member's node), as
/// kubectl's does; the plain table keeps its columns; a command without a
/// table refuses `wide` as bad input.
#[test]
fn status_o_wide_adds_addresses_vm_ids_and_member_nodes() {
    let state = "examples/state/ha-healthy.yaml";
    let args = |o: &'static str| {
        vec![
            "status",
            "-t",
            HA,
            "-s",
            state,
            "--at",
            EXAMPLES_AT,
            "-o",
            o,
        ]
    };
    let plain = hacli(&args("text"));
    assert_eq!(plain.status.code(), Some(0), "{}", text(&plain.stderr));
    let wide = hacli(&args("wide"));
    assert_eq!(wide.status.code(), Some(0), "{}", text(&wide.stderr));
    let (plain, wide) = (text(&plain.stdout), text(&wide.stdout));
    // examples/topology/ha.yaml: k8s-master-2 at 10.0.20.105, VM 205 (read, never contacted).
    let address = "10.0.20.105";
    let row = |t: &str| {
        t.lines()
            .find(|l| l.trim_start().starts_with("k8s-master-2 ") && l.contains("control-plane"))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no node row for k8s-master-2 in:\n{t}"))
    };
    assert!(
        row(&wide).contains(address) && row(&wide).contains(" 205 "),
        "{}",
        row(&wide)
    );
    assert!(!row(&plain).contains(address), "{}", row(&plain));
    assert!(
        wide.contains("address") && wide.contains("vmid") && wide.contains("taints"),
        "{wide}"
    );
    assert!(wide.contains("lag    node"), "{wide}");
    assert!(
        !plain.contains("taints") && !plain.contains("lag    node"),
        "{plain}"
    );
    let refused = hacli(&[
        "check",
        "reboot",
        "k8s-master-2",
        "-t",
        HA,
        "-s",
        state,
        "-o",
        "wide",
    ]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused.stderr));
}
