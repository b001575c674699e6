//! `hacli` as a Woodpecker plugin: the binary run with a `PLUGIN_*` and
//! `CI_*` environment as Woodpecker sets it (lists comma-joined, maps as
//! JSON, secrets as their contents), and nothing else. Offline `check`,
//! `plan` and `simulate` on the bundled examples; `gate` and `release`
//! against the lab (crates/testlab; SKIPPED without etcd or haproxy).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use testlab::Lab;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// What Woodpecker sets beside the settings.
fn ci_env(workspace: &Path) -> Vec<(String, String)> {
    [
        ("CI", "woodpecker"),
        ("CI_REPO", "homelab/infra"),
        ("CI_REPO_OWNER", "homelab"),
        ("CI_REPO_NAME", "infra"),
        ("CI_COMMIT_SHA", "0123456789abcdef0123456789abcdef01234567"),
        ("CI_COMMIT_BRANCH", "main"),
        ("CI_PIPELINE_NUMBER", "42"),
        ("CI_PIPELINE_EVENT", "push"),
        ("CI_WORKFLOW_NAME", "upgrade"),
        ("CI_STEP_NAME", "gate"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .chain([("CI_WORKSPACE".to_string(), workspace.display().to_string())])
    .collect()
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The JSON result: from the first line that opens an object to the end.
    fn json(&self) -> Value {
        let at = self
            .stdout
            .find("\n{\n")
            .map(|i| i + 1)
            .unwrap_or_else(|| panic!("no JSON in: {}", self.stdout));
        serde_json::from_str(&self.stdout[at..]).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }
}

/// Run the image's entrypoint as Woodpecker does: `hacli` with no
/// arguments, a clean environment of `PLUGIN_*` and `CI_*` variables.
fn plugin_in(workspace: &Path, args: &[&str], settings: &[(&str, &str)]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_hacli"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", workspace)
        .envs(ci_env(workspace))
        .envs(settings.iter().map(|(k, v)| (format!("PLUGIN_{k}"), *v)))
        .current_dir(workspace)
        .output()
        .expect("hacli runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn plugin(settings: &[(&str, &str)]) -> Run {
    plugin_in(&repo(), &[], settings)
}

const HA: &str = "examples/topology/ha.yaml";

/// When the bundled example states were observed: `check` judges a state as
/// of now unless `at` says otherwise.
const EXAMPLES_AT: &str = "2026-05-21T12:00:00Z";

fn check(node: &str, state: &str) -> Run {
    plugin(&[
        ("COMMAND", "check"),
        ("ACTION", "reboot"),
        ("NODE", node),
        ("TOPOLOGY", HA),
        ("STATE", state),
        ("AT", EXAMPLES_AT),
    ])
}

#[test]
fn offline_check_judges_as_of_now_unless_at_says_otherwise() {
    let r = plugin(&[
        ("COMMAND", "check"),
        ("ACTION", "reboot"),
        ("NODE", "k8s-master-2"),
        ("TOPOLOGY", HA),
        ("STATE", "examples/state/ha-healthy.yaml"),
    ]);
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    assert_eq!(r.json()["decision"], "unknown");
    assert!(
        r.stdout.contains("the state is ")
            && r.stdout.contains(" old (observed at 2026-05-21T12:00:00Z"),
        "{}",
        r.stdout
    );
}

#[test]
fn offline_check_exits_0_allow_1_deny_3_unknown() {
    let r = check("k8s-master-2", "examples/state/ha-healthy.yaml");
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .starts_with("ALLOW: reboot k8s-master-2 (policy reboot"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("check(s) passed"), "{}", r.stdout);
    assert_eq!(r.json()["decision"], "allow");
    // The summary is short: the passing rules are only counted.
    assert!(!r.stdout.contains("ok   etcd-quorum"), "{}", r.stdout);
    // The command it stands for, on stderr.
    assert!(
        r.stderr
            .contains("hacli plugin (pipeline homelab/infra#42): hacli check reboot k8s-master-2"),
        "{}",
        r.stderr
    );

    let r = check("k8s-master", "examples/state/ha-healthy.yaml");
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.starts_with("DENY: reboot k8s-master"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("DENY etcd-leader"), "{}", r.stdout);
    assert_eq!(r.json()["decision"], "deny");

    let r = check("k8s-master-2", "examples/state/ha-etcd-unreachable.yaml");
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    assert_eq!(r.json()["decision"], "unknown");

    let r = check("k8s-master-2", "examples/state/absent.yaml");
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("PLUGIN_STATE (settings.state)")
            && r.stderr.contains("examples/state/absent.yaml"),
        "{}",
        r.stderr
    );
    assert!(r.stdout.is_empty(), "{}", r.stdout);
}

#[test]
fn the_plugin_subcommand_is_the_same_as_no_arguments() {
    let settings = [
        ("COMMAND", "check"),
        ("ACTION", "drain"),
        ("NODE", "k8s-node2"),
        ("TOPOLOGY", HA),
        ("STATE", "examples/state/ha-healthy.yaml"),
        ("AT", EXAMPLES_AT),
    ];
    let a = plugin_in(&repo(), &[], &settings);
    let b = plugin_in(&repo(), &["plugin"], &settings);
    assert_eq!(a.code, 1, "{}", a.stderr);
    assert_eq!((a.code, &a.stdout), (b.code, &b.stdout));
    assert!(a.stdout.contains("DENY pdb"), "{}", a.stdout);
}

/// A topology, state and policy written inline: YAML as a block string,
/// and a map under `settings:` (which Woodpecker hands over as JSON).
#[test]
fn inline_documents_as_yaml_and_as_json_and_the_output_file() {
    let ws = tempfile::tempdir().unwrap();
    let yaml = std::fs::read_to_string(repo().join(HA)).unwrap();
    let state = std::fs::read_to_string(repo().join("examples/state/ha-healthy.yaml")).unwrap();
    let as_json = |text: &str| -> String {
        let v: Value = hacore::source::parse("x.yaml", text).unwrap();
        serde_json::to_string(&v).unwrap()
    };
    for topology in [yaml.clone(), as_json(&yaml)] {
        let r = plugin_in(
            ws.path(),
            &[],
            &[
                ("COMMAND", "check"),
                ("ACTION", "reboot"),
                ("NODE", "k8s-master-2"),
                ("TOPOLOGY", &topology),
                ("STATE", &as_json(&state)),
                ("AT", EXAMPLES_AT),
                ("OUTPUT", "verdict.json"),
            ],
        );
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
        let written: Value =
            serde_json::from_str(&std::fs::read_to_string(ws.path().join("verdict.json")).unwrap())
                .unwrap();
        assert_eq!(written, r.json());
    }

    // An inline policy: the kured gate's night-time window denies at noon.
    let policy = std::fs::read_to_string(repo().join("examples/policy/kured-gate.yaml")).unwrap();
    let r = plugin_in(
        ws.path(),
        &[],
        &[
            ("COMMAND", "check"),
            ("ACTION", "reboot"),
            ("NODE", "k8s-master-2"),
            ("TOPOLOGY", &yaml),
            ("STATE", &state),
            ("POLICY", &policy),
            ("AT", EXAMPLES_AT),
        ],
    );
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("reboot-window"), "{}", r.stdout);

    // A built-in policy by name, and `at`.
    let r = plugin(&[
        ("COMMAND", "check"),
        ("ACTION", "reboot"),
        ("NODE", "k8s-master-2"),
        ("TOPOLOGY", HA),
        ("STATE", "examples/state/ha-healthy.yaml"),
        ("POLICY", "reboot"),
        ("AT", "2026-05-23T12:00:00Z"),
    ]);
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("state-fresh"), "{}", r.stdout);
}

#[test]
fn plan_then_simulate_through_the_workspace() {
    let ws = tempfile::tempdir().unwrap();
    for f in ["single-master.yaml", "ha.yaml"] {
        std::fs::copy(repo().join("examples/topology").join(f), ws.path().join(f)).unwrap();
    }
    let r = plugin_in(
        ws.path(),
        &[],
        &[
            ("COMMAND", "plan"),
            ("FROM", "single-master.yaml"),
            ("TO", "ha.yaml"),
            ("TEMPLATE", "9000"),
            ("OUTPUT", "plan.json"),
        ],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.json()["phases"].as_array().is_some_and(|s| !s.is_empty()));
    let r = plugin_in(
        ws.path(),
        &[],
        &[
            ("COMMAND", "simulate"),
            ("PLAN", "plan.json"),
            ("FAILURES", "1"),
        ],
    );
    assert!(r.code == 0 || r.code == 1, "{}{}", r.stdout, r.stderr);
    let report = r.json();
    assert_eq!(
        r.code == 0,
        report["critical"].as_array().unwrap().is_empty(),
        "{report}"
    );
}

/// Every missing or bad setting: exit 2, and the error names it both ways
/// (the variable and the `settings:` key).
#[test]
fn missing_and_bad_settings_are_named() {
    let base: Vec<(&str, &str)> = vec![
        ("COMMAND", "check"),
        ("ACTION", "reboot"),
        ("NODE", "k8s-master-2"),
        ("TOPOLOGY", HA),
        ("STATE", "examples/state/ha-healthy.yaml"),
    ];
    let without = |key: &str| -> Vec<(&str, &str)> {
        base.iter().copied().filter(|(k, _)| *k != key).collect()
    };
    for key in ["COMMAND", "ACTION", "NODE", "TOPOLOGY", "STATE"] {
        let r = plugin(&without(key));
        assert_eq!(r.code, 2, "{key}: {}{}", r.stdout, r.stderr);
        let named = format!("PLUGIN_{key} (settings.{}) is missing", key.to_lowercase());
        assert!(r.stderr.contains(&named), "{key}: {}", r.stderr);
    }
    let with = |extra: &[(&'static str, &'static str)]| -> Vec<(&str, &str)> {
        let mut v: Vec<(&str, &str)> = base
            .iter()
            .copied()
            .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
            .collect();
        v.extend_from_slice(extra);
        v
    };
    let gate = |extra: &[(&'static str, &'static str)]| -> Vec<(&str, &str)> {
        let mut v = with(&[("COMMAND", "gate")]);
        v.retain(|(k, _)| *k != "STATE");
        v.extend_from_slice(extra);
        v
    };
    /// (settings, the setting named, why).
    type Case<'a> = (Vec<(&'a str, &'a str)>, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (
            with(&[("COMMAND", "deploy")]),
            "PLUGIN_COMMAND (settings.command)",
            "`deploy` is not a command",
        ),
        (
            with(&[("ACTION", "explode")]),
            "PLUGIN_ACTION (settings.action)",
            "explode",
        ),
        (
            with(&[("TOPOLOGY", "nowhere.yaml")]),
            "PLUGIN_TOPOLOGY (settings.topology)",
            "not a file in the workspace",
        ),
        (
            with(&[("POLICY", "lenient")]),
            "PLUGIN_POLICY (settings.policy)",
            "lenient",
        ),
        (
            with(&[("AT", "tomorrow")]),
            "PLUGIN_AT (settings.at)",
            "RFC 3339",
        ),
        (
            with(&[("NODE_NAME", "k8s-master-2")]),
            "PLUGIN_NODE_NAME (settings.node_name)",
            "unknown setting",
        ),
        (
            with(&[("NODES", "k8s-master-2")]),
            "PLUGIN_NODES (settings.nodes)",
            "not used by command check",
        ),
        (
            with(&[("KUBECONFIG", "apiVersion: v1\nclusters: []\n")]),
            "PLUGIN_KUBECONFIG (settings.kubeconfig)",
            "not used by command check",
        ),
        (
            gate(&[("DEADLINE", "soon")]),
            "PLUGIN_DEADLINE (settings.deadline)",
            "invalid duration `soon`",
        ),
        (
            gate(&[("LOCK_TTL", "-5m")]),
            "PLUGIN_LOCK_TTL (settings.lock_ttl)",
            "negative",
        ),
        (
            gate(&[("LOCK", "yes")]),
            "PLUGIN_LOCK (settings.lock)",
            "not true or false",
        ),
        (
            gate(&[("APISERVER_PORT", "99999")]),
            "PLUGIN_APISERVER_PORT (settings.apiserver_port)",
            "not a port",
        ),
        (
            gate(&[("LB_RUNTIME_API", "ftp:x")]),
            "PLUGIN_LB_RUNTIME_API (settings.lb_runtime_api)",
            "",
        ),
        (
            gate(&[("ETCD_ENDPOINTS", "https://127.0.0.1:2379,,")]),
            "PLUGIN_ETCD_ENDPOINTS (settings.etcd_endpoints)",
            "empty",
        ),
        (
            gate(&[("DAEMONSETS", "[\"calico-node\", 3]")]),
            "PLUGIN_DAEMONSETS (settings.daemonsets)",
            "JSON list of strings",
        ),
        (
            gate(&[("KUBECONFIG", HA)]),
            "PLUGIN_KUBECONFIG (settings.kubeconfig)",
            "use from_secret",
        ),
        (
            gate(&[("ETCD_KEY", "hunter2-not-a-key")]),
            "PLUGIN_ETCD_KEY (settings.etcd_key)",
            "expected PEM contents",
        ),
        (
            vec![("COMMAND", "simulate")],
            "PLUGIN_PLAN (settings.plan) is missing",
            "",
        ),
        (
            vec![("COMMAND", "simulate"), ("PLAN", HA), ("FAILURES", "all")],
            "PLUGIN_FAILURES (settings.failures)",
            "not a number",
        ),
        (
            vec![("COMMAND", "plan"), ("FROM", HA)],
            "PLUGIN_TO (settings.to) is missing",
            "",
        ),
        (
            vec![
                ("COMMAND", "plan"),
                ("FROM", HA),
                ("TO", HA),
                ("TEMPLATE", "golden"),
            ],
            "PLUGIN_TEMPLATE (settings.template)",
            "not a VM id",
        ),
    ];
    for (settings, named, why) in cases {
        let r = plugin(&settings);
        assert_eq!(r.code, 2, "{settings:?}: {}{}", r.stdout, r.stderr);
        assert!(r.stderr.contains(named), "{settings:?}: {}", r.stderr);
        assert!(r.stderr.contains(why), "{settings:?}: {}", r.stderr);
        // A secret's value never appears.
        assert!(!r.stderr.contains("hunter2"), "{}", r.stderr);
    }
}

/// Lists comma-joined or as JSON; secrets written to a private directory
/// that is gone at exit and never shown; the CI identity by default.
#[test]
fn dry_run_shows_the_mapped_command_without_secrets() {
    let ws = repo();
    let kubeconfig = "apiVersion: v1\nkind: Config\nclusters: []\nusers:\n- name: ci\n  user: {token: s3cr3t-t0ken}\n";
    let key = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleQ==\n-----END PRIVATE KEY-----\n";
    for (daemonsets, want) in [
        (
            "calico-node,kube-proxy",
            "--daemonsets calico-node,kube-proxy",
        ),
        (
            r#"["calico-node","kube-proxy"]"#,
            "--daemonsets calico-node,kube-proxy",
        ),
    ] {
        let r = plugin_in(
            &ws,
            &["plugin", "--dry-run"],
            &[
                ("COMMAND", "gate"),
                ("ACTION", "upgrade"),
                ("NODE", "k8s-master-2"),
                ("TOPOLOGY", HA),
                ("POLICY", "upgrade"),
                ("KUBECONFIG", kubeconfig),
                ("ETCD_CA", key),
                ("ETCD_CERT", key),
                ("ETCD_KEY", key),
                (
                    "ETCD_ENDPOINTS",
                    "https://127.0.0.1:2379,https://127.0.0.2:2379",
                ),
                ("DAEMONSETS", daemonsets),
                ("PROMETHEUS_URL", "http://user:pr0m-pass@127.0.0.1:9090/"),
                ("DEADLINE", "3s"),
                ("MEMBER_TIMEOUT", "1500ms"),
                ("LOCK", "true"),
                ("LOCK_TTL", "45m"),
                ("LOCK_LEASE", "kube-system/upgrades"),
                ("KILL_SWITCH", "kube-system/stop"),
                ("APISERVER_PORT", "6443"),
                ("LB_RUNTIME_API", "tcp:127.0.0.1:9999"),
            ],
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        let line = r.stdout.trim();
        assert!(
            line.starts_with("hacli gate upgrade k8s-master-2 --topology "),
            "{line}"
        );
        for want in [
            want,
            "--etcd-endpoints https://127.0.0.1:2379,https://127.0.0.2:2379",
            "--deadline 3s",
            "--member-timeout 1500ms",
            "--lock --lock-ttl 45m",
            "--lock-lease kube-system/upgrades",
            "--kill-switch kube-system/stop",
            "--apiserver-port 6443",
            "--lb-runtime-api tcp:127.0.0.1:9999",
            "--prometheus-url <settings.prometheus_url>",
            "--identity woodpecker:homelab/infra#42",
        ] {
            assert!(line.contains(want), "{want}: {line}");
        }
        for secret in ["s3cr3t", "pr0m-pass", "c2VjcmV0"] {
            assert!(
                !r.stdout.contains(secret) && !r.stderr.contains(secret),
                "{secret}: {r:?}",
                r = (&r.stdout, &r.stderr)
            );
        }
        // The secrets' files were private and are gone.
        let words: Vec<&str> = line.split(' ').collect();
        let kc = words[words.iter().position(|w| *w == "--kubeconfig").unwrap() + 1];
        assert!(kc.contains("hacli-plugin-"), "{kc}");
        assert!(!Path::new(kc).exists(), "{kc} left behind");
    }
}

#[test]
fn list_settings_matches_the_docs_table() {
    let out = Command::new(env!("CARGO_BIN_EXE_hacli"))
        .args(["plugin", "--list-settings"])
        .output()
        .unwrap();
    let known: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').next().unwrap().to_string())
        .collect();
    assert!(known.len() > 20, "{known:?}");
    let docs = std::fs::read_to_string(repo().join("plugin/docs.md")).unwrap();
    // Front matter as the plugin index reads it.
    let front = docs
        .strip_prefix("---\n")
        .and_then(|d| d.split_once("\n---\n"))
        .map(|(f, _)| f)
        .expect("docs.md starts with front matter");
    let front: Value = hacore::source::parse("docs.md", front).unwrap();
    for key in [
        "name",
        "description",
        "authors",
        "tags",
        "containerImage",
        "url",
    ] {
        assert!(!front[key].is_null(), "front matter lacks {key}: {front}");
    }
    assert!(front["tags"].as_array().is_some_and(|t| !t.is_empty()));
    // The settings table: every row is a known setting, and every known
    // setting has a row.
    let documented: Vec<String> = docs
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(k, _)| k.to_string()))
        .collect();
    assert_eq!(
        documented.iter().collect::<std::collections::BTreeSet<_>>(),
        known.iter().collect::<std::collections::BTreeSet<_>>(),
        "docs.md's settings table and `hacli plugin --list-settings` differ"
    );
}

/// A `settings:` value as Woodpecker hands it over.
fn setting_env(v: &Value, secrets: &BTreeMap<&str, String>) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => items
            .iter()
            .map(|i| setting_env(i, secrets))
            .collect::<Vec<_>>()
            .join(","),
        Value::Object(m) if m.contains_key("from_secret") => {
            let name = m["from_secret"].as_str().unwrap();
            secrets
                .get(name)
                .unwrap_or_else(|| panic!("no test value for secret {name}"))
                .clone()
        }
        other => serde_json::to_string(other).unwrap(),
    }
}

/// The `.woodpecker.yml` example parses, its hacli steps use only settings
/// the plugin knows, and those settings (as Woodpecker would pass them,
/// secrets as contents) check out in a dry run.
#[test]
fn the_woodpecker_example_uses_settings_the_plugin_knows() {
    let path = repo().join("plugin/example.woodpecker.yml");
    let text = std::fs::read_to_string(&path).unwrap();
    let pipeline: Value = hacore::source::parse("example.woodpecker.yml", &text).unwrap();
    let steps = pipeline["steps"].as_array().expect("a list of steps");
    let ws = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(ws.path().join("cluster")).unwrap();
    std::fs::copy(repo().join(HA), ws.path().join("cluster/topology.yaml")).unwrap();
    let pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_string();
    let secrets: BTreeMap<&str, String> = [
        (
            "kubeconfig",
            "apiVersion: v1\nkind: Config\nclusters: []\n".to_string(),
        ),
        ("etcd_ca", pem.clone()),
        ("etcd_cert", pem.clone()),
        ("etcd_key", pem.replace("CERTIFICATE", "PRIVATE KEY")),
    ]
    .into_iter()
    .collect();
    let mut plugin_steps = Vec::new();
    for step in steps {
        let image = step["image"].as_str().unwrap_or_default();
        if !image.contains("hacli") {
            continue;
        }
        assert!(
            step.get("commands").is_none(),
            "a plugin step has no commands: {step}"
        );
        let settings = step["settings"].as_object().expect("settings");
        let env: Vec<(String, String)> = settings
            .iter()
            .map(|(k, v)| {
                (
                    k.to_uppercase().replace(['-', '.'], "_"),
                    setting_env(v, &secrets),
                )
            })
            .collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let r = plugin_in(ws.path(), &["plugin", "--dry-run"], &env);
        assert_eq!(r.code, 0, "step {}: {}", step["name"], r.stderr);
        plugin_steps.push(r.stdout.trim().to_string());
    }
    assert!(
        plugin_steps
            .iter()
            .any(|c| c.starts_with("hacli gate upgrade ") && c.contains("--lock")),
        "{plugin_steps:?}"
    );
    assert!(
        plugin_steps
            .iter()
            .any(|c| c.starts_with("hacli lock release ")),
        "{plugin_steps:?}"
    );
    // The upgrade itself runs after the gate.
    let names: Vec<&str> = steps.iter().filter_map(|s| s["name"].as_str()).collect();
    let gate = names.iter().position(|n| n.contains("gate")).unwrap();
    let upgrade = names
        .iter()
        .position(|n| n.contains("upgrade") && !n.contains("gate"))
        .unwrap();
    assert!(gate < upgrade, "{names:?}");
}

fn lab_settings(lab: &Lab) -> Vec<(String, String)> {
    let read = |p: PathBuf| std::fs::read_to_string(p).unwrap();
    vec![
        ("TOPOLOGY".into(), read(lab.topology.clone())),
        ("KUBECONFIG".into(), read(lab.kubeconfig.clone())),
        ("ETCD_CA".into(), read(lab.etcd_pki.join("ca.crt"))),
        (
            "ETCD_CERT".into(),
            read(lab.etcd_pki.join("healthcheck-client.crt")),
        ),
        (
            "ETCD_KEY".into(),
            read(lab.etcd_pki.join("healthcheck-client.key")),
        ),
        ("ETCD_ENDPOINTS".into(), lab.etcd_endpoints().join(",")),
        ("DEADLINE".into(), "6s".into()),
        ("MEMBER_TIMEOUT".into(), "4s".into()),
    ]
}

fn lab_plugin(lab: &Lab, base: &[(String, String)], extra: &[(&str, &str)]) -> Run {
    let mut env: Vec<(&str, &str)> = base.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
    env.extend_from_slice(extra);
    plugin_in(lab.dir(), &[], &env)
}

#[test]
fn live_gate_locks_for_the_pipeline_and_release_frees_it() {
    let Some(lab) = Lab::start_or_skip("live_gate_locks_for_the_pipeline_and_release_frees_it")
    else {
        return;
    };
    let base = lab_settings(&lab);
    let key = std::fs::read_to_string(lab.etcd_pki.join("healthcheck-client.key")).unwrap();
    let key_body = key.lines().nth(1).unwrap().to_string();
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
    // A follower (asked again should leadership move under load meanwhile).
    let mut attempt = 0;
    let (leader, follower, r) = loop {
        attempt += 1;
        let leader = lab
            .wait_leader(std::time::Duration::from_secs(10))
            .expect("etcd has a leader");
        let follower = lab
            .masters
            .iter()
            .map(|m| m.0.clone())
            .find(|m| *m != leader)
            .unwrap();
        let r = lab_plugin(
            &lab,
            &base,
            &[
                ("COMMAND", "gate"),
                ("ACTION", "reboot"),
                ("NODE", &follower),
                ("LOCK", "true"),
            ],
        );
        if r.code == 0 || attempt == 3 || lab.etcd_leader().as_deref() == Some(leader.as_str()) {
            break (leader, follower, r);
        }
        eprintln!("leadership moved during the gate; again: {}", r.stdout);
    };
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(r.json()["decision"], "allow");
    assert!(r.stdout.contains("ALLOW: reboot"), "{}", r.stdout);
    assert_eq!(holder().as_deref(), Some("woodpecker:homelab/infra#42"));
    assert!(!r.stdout.contains(&key_body) && !r.stderr.contains(&key_body));

    // The leader: deny (exit 1).
    let r = lab_plugin(
        &lab,
        &base,
        &[("COMMAND", "gate"), ("ACTION", "reboot"), ("NODE", &leader)],
    );
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("etcd-leader"), "{}", r.stdout);

    // A later step of the same pipeline releases the lock.
    let release: Vec<(String, String)> = base
        .iter()
        .filter(|(k, _)| k == "KUBECONFIG")
        .cloned()
        .collect();
    let r = lab_plugin(&lab, &release, &[("COMMAND", "release")]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(holder(), None);

    // The API unreachable (a closed loopback port): unknown, exit 3.
    let kubeconfig = std::fs::read_to_string(&lab.kubeconfig).unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let unreachable = kubeconfig.replace(
        &format!("server: {}", lab.api_url()),
        &format!("server: https://127.0.0.1:{port}"),
    );
    assert_ne!(unreachable, kubeconfig);
    let r = lab_plugin(
        &lab,
        &base,
        &[
            ("COMMAND", "gate"),
            ("ACTION", "reboot"),
            ("NODE", &follower),
            ("KUBECONFIG", &unreachable),
            ("DEADLINE", "2s"),
        ],
    );
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    assert_eq!(r.json()["decision"], "unknown");
}

/// The nightly pipeline example: a cron pipeline whose hacli steps (a
/// gate, then `roll upgrade` with the version from its settings) map to
/// command lines hacli accepts; the roll step, run with the example's
/// settings on the simulated backend, stops at a failing master, and
/// retried (its journals in the workspace) resumes and finishes.
#[test]
fn the_nightly_upgrade_example_rolls_and_resumes_on_retry() {
    let path = repo().join("plugin/nightly-upgrade.woodpecker.yml");
    let text = std::fs::read_to_string(&path).unwrap();
    let pipeline: Value = hacore::source::parse("nightly-upgrade.woodpecker.yml", &text).unwrap();
    assert_eq!(pipeline["when"][0]["event"], "cron", "{pipeline}");
    let steps = pipeline["steps"].as_array().expect("a list of steps");
    let ws = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(ws.path().join("cluster")).unwrap();
    std::fs::copy(repo().join(HA), ws.path().join("cluster/topology.yaml")).unwrap();
    let pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_string();
    let secrets: BTreeMap<&str, String> = [
        (
            "kubeconfig",
            "apiVersion: v1\nkind: Config\nclusters: []\n".to_string(),
        ),
        ("etcd_ca", pem.clone()),
        ("etcd_cert", pem.clone()),
        ("etcd_key", pem.replace("CERTIFICATE", "PRIVATE KEY")),
        (
            "ssh_identity",
            "-----BEGIN OPENSSH PRIVATE KEY-----\nS3CR3TKEY\n-----END OPENSSH PRIVATE KEY-----\n"
                .to_string(),
        ),
        (
            "known_hosts",
            "k8s-master ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKnownHostKey\n".to_string(),
        ),
    ]
    .into_iter()
    .collect();
    let env_of = |step: &Value| -> Vec<(String, String)> {
        step["settings"]
            .as_object()
            .expect("settings")
            .iter()
            .map(|(k, v)| (k.to_uppercase(), setting_env(v, &secrets)))
            .collect()
    };
    let mut shown = Vec::new();
    let mut roll = None;
    for step in steps {
        if !step["image"].as_str().unwrap_or_default().contains("hacli") {
            continue;
        }
        let env = env_of(step);
        let refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let r = plugin_in(ws.path(), &["plugin", "--dry-run"], &refs);
        assert_eq!(r.code, 0, "step {}: {}", step["name"], r.stderr);
        assert!(!r.stdout.contains("S3CR3T") && !r.stderr.contains("S3CR3T"));
        shown.push(r.stdout.trim().to_string());
        if step["settings"]["command"] == "roll" {
            roll = Some(env.clone());
        }
    }
    assert!(
        shown[0].starts_with("hacli gate upgrade k8s-master "),
        "{shown:?}"
    );
    assert!(
        shown[1].starts_with("hacli roll upgrade ")
            && shown[1].contains(" --to v1.33.2")
            && shown[1].contains(" --soak 10m")
            && shown[1].contains("/.hacli/journal")
            && shown[1].contains(" --ssh-identity ")
            && !shown[1].contains("--resume"),
        "{shown:?}"
    );
    // The report step runs whatever the roll's outcome.
    let report = steps.last().unwrap();
    assert_eq!(report["when"][0]["status"][1], "failure", "{report}");

    // The roll step as the example has it, on the simulated backend.
    let mut env = roll.expect("a roll step");
    env.push(("BACKEND".into(), "simulated".into()));
    env.push(("POLICY".into(), "drain".into()));
    let run = |extra: &[(&str, &str)]| {
        let mut all: Vec<(&str, &str)> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        all.extend_from_slice(extra);
        plugin_in(ws.path(), &[], &all)
    };
    let first = run(&[("SIM_FAIL", "upgrade/k8s-master-2")]);
    assert_eq!(first.code, 1, "{}\n{}", first.stdout, first.stderr);
    assert!(
        first.stdout.contains("STOPPED at k8s-master-2"),
        "{}",
        first.stdout
    );
    // Woodpecker retries the step: the journals are there, so it resumes.
    let retry = run(&[]);
    assert_eq!(retry.code, 0, "{}\n{}", retry.stdout, retry.stderr);
    assert!(retry.stderr.contains(" --resume"), "{}", retry.stderr);
    assert!(
        retry
            .stdout
            .contains("roll complete: k8s-master, k8s-master-2, k8s-master-3"),
        "{}",
        retry.stdout
    );
    let sim: Value = serde_json::from_str(
        &std::fs::read_to_string(ws.path().join(".hacli/journal/sim.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(sim["upgraded_to"]["k8s-master-2"], "v1.33.2", "{sim}");
    assert_eq!(sim["lock_holder"], Value::Null, "{sim}");
}

/// `disrupt` and `roll`: a bad setting is named; `disrupt` stands for
/// `hacli disrupt` with its journal in the workspace, and runs it.
#[test]
fn disrupt_and_roll_settings_are_checked_and_disrupt_runs() {
    let ws = tempfile::tempdir().unwrap();
    std::fs::copy(repo().join(HA), ws.path().join("topology.yaml")).unwrap();
    let base = [("TOPOLOGY", "topology.yaml"), ("BACKEND", "simulated")];
    let run = |args: &[&str], extra: &[(&str, &str)]| {
        let mut s: Vec<(&str, &str)> = base.to_vec();
        s.extend_from_slice(extra);
        plugin_in(ws.path(), args, &s)
    };
    for (extra, named, why) in [
        (
            vec![("COMMAND", "roll"), ("ACTION", "drain")],
            "PLUGIN_ACTION (settings.action)",
            "reboot or upgrade",
        ),
        (
            vec![("COMMAND", "roll"), ("ACTION", "upgrade")],
            "PLUGIN_VERSION (settings.version)",
            "missing",
        ),
        (
            vec![
                ("COMMAND", "roll"),
                ("ACTION", "upgrade"),
                ("VERSION", "1.33"),
            ],
            "PLUGIN_VERSION (settings.version)",
            "1.33",
        ),
        (
            vec![("COMMAND", "disrupt"), ("ACTION", "reboot")],
            "PLUGIN_NODE (settings.node)",
            "missing",
        ),
        (
            vec![
                ("COMMAND", "disrupt"),
                ("ACTION", "reboot"),
                ("NODE", "k8s-master-2"),
                ("BACKEND", "staging"),
            ],
            "PLUGIN_BACKEND (settings.backend)",
            "live or simulated",
        ),
    ] {
        let r = run(&[], &extra);
        assert_eq!(r.code, 2, "{extra:?}: {}{}", r.stdout, r.stderr);
        assert!(r.stderr.contains(named), "{extra:?}: {}", r.stderr);
        assert!(r.stderr.contains(why), "{extra:?}: {}", r.stderr);
    }
    let settings = [
        ("COMMAND", "disrupt"),
        ("ACTION", "reboot"),
        ("NODE", "k8s-node1"),
        ("POLICY", "drain"),
    ];
    let dry = run(&["plugin", "--dry-run"], &settings);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    let journal = ws.path().join(".hacli/journal/k8s-node1.jsonl");
    assert!(
        dry.stdout.starts_with(&format!(
            "hacli disrupt reboot k8s-node1 --journal {}",
            journal.display()
        )) && dry.stdout.contains("--backend simulated"),
        "{}",
        dry.stdout
    );
    let r = run(&[], &settings);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(journal.is_file(), "{}", r.stderr);
    // Retried: the journal is there, so the run resumes and finds it done.
    let again = run(&[], &settings);
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);
    assert!(again.stderr.contains(" --resume"), "{}", again.stderr);
}
