//! examples/deploy is a kustomize base: `kubectl kustomize` renders it with
//! its inputs (the image, the topology ConfigMap), and an overlay replaces
//! both. SKIPPED without kubectl (Debian kubernetes-client).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn base() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/deploy")
}

/// `kubectl kustomize DIR`, as one JSON value per document.
fn kustomize(dir: &Path) -> Option<Vec<Value>> {
    let out = match Command::new("kubectl").arg("kustomize").arg(dir).output() {
        Ok(o) => o,
        Err(e) => {
            testlab::skip::skip(
                "kubectl kustomize",
                &format!("kubectl cannot run ({e}); install kubernetes-client"),
            );
            return None;
        }
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    Some(
        text.split("\n---\n")
            .map(|doc| hacore::source::parse("kustomize output", doc).unwrap())
            .collect(),
    )
}

fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind}: {docs:#?}");
    found[0]
}

/// The DaemonSet's container, its topology ConfigMap's name and that
/// ConfigMap's topology.yaml.
fn rendered(docs: &[Value]) -> (Value, String, String) {
    let ds = find(docs, "DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    let container = pod["containers"][0].clone();
    let cm_name = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "topology")
        .and_then(|v| v["configMap"]["name"].as_str())
        .unwrap()
        .to_string();
    let cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == cm_name.as_str())
        .unwrap_or_else(|| {
            panic!("the DaemonSet names ConfigMap {cm_name}, which is not rendered")
        });
    let topology = cm["data"]["topology.yaml"].as_str().unwrap().to_string();
    (container, cm_name, topology)
}

#[test]
fn the_base_renders_with_its_image_topology_and_scrape_annotations() {
    let Some(docs) = kustomize(&base()) else {
        return;
    };
    for d in &docs {
        if d["kind"] != "ClusterRole" && d["kind"] != "ClusterRoleBinding" {
            assert_eq!(d["metadata"]["namespace"], "kube-system", "{d}");
        }
    }
    let (container, cm_name, topology) = rendered(&docs);
    assert_eq!(container["image"], "registry.example.invalid/hacli:0.1.0");
    // The generated name carries a content hash: a new topology rolls the pods.
    assert!(cm_name.starts_with("hacli-topology-"), "{cm_name}");
    hacore::Topology::from_yaml("topology.yaml", &topology).expect("the bundled topology is valid");

    // Scraped: the annotations name the port the sentinel listens on.
    let ds = find(&docs, "DaemonSet");
    let ann = &ds["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(ann["prometheus.io/scrape"], "true");
    assert_eq!(ann["prometheus.io/path"], "/metrics");
    let port = ann["prometheus.io/port"].as_str().unwrap();
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        args.contains(&format!("--metrics-addr=0.0.0.0:{port}").as_str()),
        "{args:?}"
    );
    assert_eq!(container["ports"][0]["containerPort"].to_string(), port);
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");

    // Its arguments are ones hacli accepts: it gets as far as reading the
    // (absent here) topology file.
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
fn an_overlay_sets_the_image_and_the_topology() {
    let dir = tempfile::tempdir().unwrap();
    let topology = std::fs::read_to_string(base().join("../topology/single-master.yaml")).unwrap();
    std::fs::write(dir.path().join("topology.yaml"), &topology).unwrap();
    let base = base().canonicalize().unwrap();
    // kustomize takes a relative path to a base: up to / and down again.
    let overlay = dir.path().canonicalize().unwrap();
    let up = "../".repeat(overlay.components().count() - 1);
    let relative = format!("{up}{}", base.strip_prefix("/").unwrap().display());
    std::fs::write(
        dir.path().join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\n\
             kind: Kustomization\n\
             resources:\n  - {}\n\
             images:\n  - name: registry.example.invalid/hacli\n    newName: registry.home.lan/infra/hacli\n    newTag: 0.2.0\n\
             configMapGenerator:\n  - name: hacli-topology\n    behavior: replace\n    files:\n      - topology.yaml\n",
            relative
        ),
    )
    .unwrap();
    let Some(docs) = kustomize(dir.path()) else {
        return;
    };
    let Some(base_docs) = kustomize(&base) else {
        return;
    };
    let (container, cm_name, rendered_topology) = rendered(&docs);
    assert_eq!(container["image"], "registry.home.lan/infra/hacli:0.2.0");
    assert_eq!(rendered_topology, topology);
    let (_, base_cm, _) = rendered(&base_docs);
    assert_ne!(cm_name, base_cm, "a new topology gets a new ConfigMap name");
    assert_eq!(
        docs.iter().filter(|d| d["kind"] == "ConfigMap").count(),
        1,
        "the overlay's topology replaces the base's"
    );
}

/// `promtool` with `args` in examples/deploy; None (SKIPPED) without it.
fn promtool(args: &[&str]) -> Option<(bool, String)> {
    match Command::new("promtool")
        .args(args)
        .current_dir(base())
        .output()
    {
        Ok(o) => Some((
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )),
        Err(e) => {
            println!("SKIPPED: promtool cannot run ({e}); install Debian's prometheus package");
            None
        }
    }
}

#[test]
fn the_alert_rules_pass_promtool_and_the_prometheusrule_carries_the_same_groups() {
    let read = |f: &str| -> Value {
        let text = std::fs::read_to_string(base().join(f)).unwrap();
        hacore::source::parse(f, &text).unwrap()
    };
    let plain = read("sentinel-rules.yaml");
    let crd = read("sentinel-prometheusrule.yaml");
    assert_eq!(crd["kind"], "PrometheusRule");
    assert_eq!(
        crd["spec"]["groups"], plain["groups"],
        "sentinel-prometheusrule.yaml and sentinel-rules.yaml differ"
    );
    let alerts: Vec<&str> = plain["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["alert"].as_str().unwrap())
        .collect();
    assert_eq!(
        alerts,
        [
            "HacliRebootPendingTooLong",
            "HacliGateUnknown",
            "HacliSentinelNoCycle",
            "HacliLockHeldTooLong"
        ]
    );
    if let Some(docs) = kustomize(&base()) {
        let rendered = find(&docs, "PrometheusRule");
        assert_eq!(rendered["spec"]["groups"], plain["groups"]);
        assert_eq!(rendered["metadata"]["namespace"], "kube-system");
    }
    let Some((ok, out)) = promtool(&["check", "rules", "sentinel-rules.yaml"]) else {
        return;
    };
    assert!(ok, "promtool check rules: {out}");
    assert!(out.contains("SUCCESS: 4 rules found"), "{out}");
    let (ok, out) = promtool(&["test", "rules", "sentinel-rules.test.yaml"]).unwrap();
    assert!(ok, "promtool test rules: {out}");
    assert!(out.contains("SUCCESS"), "{out}");
}

/// The DaemonSet named `name`, and its first container.
fn daemonset<'a>(docs: &'a [Value], name: &str) -> (&'a Value, &'a Value) {
    let ds = docs
        .iter()
        .find(|d| d["kind"] == "DaemonSet" && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no DaemonSet {name} rendered"));
    (ds, &ds["spec"]["template"]["spec"]["containers"][0])
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// The value of `--flag=VALUE` in `args`.
fn flag(args: &[String], name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    args.iter()
        .find_map(|a| a.strip_prefix(&prefix).map(str::to_string))
}

#[test]
fn the_kured_recipe_points_kured_at_the_sentinels_file_and_gives_the_sentinel_its_policy() {
    let Some(docs) = kustomize(&base().join("../kured")) else {
        return;
    };
    let (ds, sentinel) = daemonset(&docs, "hacli-sentinel");
    let (kured_ds, kured) = daemonset(&docs, "kured");
    let sentinel_args = strings(&sentinel["args"]);
    let kured_cmd = strings(&kured["command"]);

    // kured reboots on the file the sentinel creates (the sentinel sees the
    // host's /var/run under /host; kured looks into the host's namespaces).
    let gated = flag(&sentinel_args, "--sentinel").expect("the sentinel's --sentinel");
    let watched = flag(&kured_cmd, "--reboot-sentinel").expect("kured's --reboot-sentinel");
    assert_eq!(
        gated,
        format!("/host{watched}"),
        "{sentinel_args:?} / {kured_cmd:?}"
    );
    assert_eq!(kured_ds["spec"]["template"]["spec"]["hostPID"], true);

    // The policy comes from the generated ConfigMap, mounted where --policy points.
    let policy_path = flag(&sentinel_args, "--policy").expect("--policy");
    let mount = sentinel["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| policy_path.starts_with(m["mountPath"].as_str().unwrap()))
        .unwrap_or_else(|| panic!("{policy_path} is on no mount: {sentinel}"));
    let volume = ds["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    let cm_name = volume["configMap"]["name"].as_str().unwrap();
    let cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == cm_name)
        .unwrap_or_else(|| panic!("ConfigMap {cm_name} is not rendered"));
    let file = policy_path.rsplit('/').next().unwrap();
    let text = cm["data"][file]
        .as_str()
        .unwrap_or_else(|| panic!("{cm_name} has no {file}"));
    let policy = hacore::Policy::from_yaml(file, text).expect("the recipe's policy is valid");
    assert!(
        policy.rules.reboot_window.is_some(),
        "the recipe's policy keeps reboots in a window"
    );

    // Both ask the same Prometheus: kured blocks on alerts, the sentinel's
    // `alerts` rule sees them.
    let env_url = sentinel["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "HACLI_PROMETHEUS_URL")
        .and_then(|e| e["value"].as_str())
        .expect("HACLI_PROMETHEUS_URL");
    assert_eq!(
        flag(&kured_cmd, "--prometheus-url").as_deref(),
        Some(env_url)
    );

    // The recipe's topology (a placeholder to replace) is a valid one.
    let (topo_cm, topology) = {
        let topo_vol = ds["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "topology")
            .unwrap();
        let name = topo_vol["configMap"]["name"].as_str().unwrap().to_string();
        let cm = docs
            .iter()
            .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == name.as_str())
            .unwrap();
        (
            name,
            cm["data"]["topology.yaml"].as_str().unwrap().to_string(),
        )
    };
    assert!(topo_cm.starts_with("hacli-topology-"), "{topo_cm}");
    hacore::Topology::from_yaml("topology.yaml", &topology).expect("a valid topology");
}

#[test]
fn the_remediation_recipe_runs_remediate_confirm_with_its_spare_and_keeps_its_memory() {
    let Some(docs) = kustomize(&base().join("../remediate")) else {
        return;
    };
    let cj = docs
        .iter()
        .find(|d| d["kind"] == "CronJob" && d["metadata"]["name"] == "hacli-remediate")
        .expect("the CronJob hacli-remediate");
    assert_eq!(cj["spec"]["concurrencyPolicy"], "Forbid");
    let pod = &cj["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let args = strings(&container["args"]);
    assert_eq!(args[0], "remediate");
    assert!(args.iter().any(|a| a == "--confirm"), "{args:?}");
    // The files its flags name are on its volumes: the spare from the
    // generated ConfigMap, the memory and journal on the claim.
    let volume_of = |path: &str| -> Value {
        let mount = container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| path.starts_with(m["mountPath"].as_str().unwrap()))
            .unwrap_or_else(|| panic!("{path} is on no mount"));
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == mount["name"])
            .unwrap()
            .clone()
    };
    for f in ["--memory", "--journal"] {
        let v = volume_of(&flag(&args, f).unwrap());
        assert_eq!(
            v["persistentVolumeClaim"]["claimName"], "hacli-remediate",
            "{f} outlives a master: {v}"
        );
    }
    let spare_path = flag(&args, "--spare").unwrap();
    let cm_name = volume_of(&spare_path)["configMap"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(cm_name.starts_with("hacli-spare-"), "{cm_name}");
    let cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == cm_name.as_str())
        .unwrap();
    let spare: hacore::topology::Node =
        hacore::source::parse("spare.yaml", cm["data"]["spare.yaml"].as_str().unwrap())
            .expect("the spare is one node");
    // The spare fits the base's topology in any master's place.
    let (_, _, topology) = rendered(&docs);
    let (topology, _) = hacore::Topology::from_yaml("topology.yaml", &topology).unwrap();
    for m in topology.control_plane_nodes() {
        hacore::remediation::with_spare(&topology, &m.name, &spare)
            .unwrap_or_else(|e| panic!("{}: {e}", m.name));
    }
    // Its arguments are ones hacli accepts: it gets as far as reading the
    // (absent here) topology file.
    let out = Command::new(env!("CARGO_BIN_EXE_hacli"))
        .args(&args)
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("/etc/hacli/topology/topology.yaml"), "{err}");
}
