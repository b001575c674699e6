//! `hacli apply --measure`: the example migration (single master -> three
//! behind a VIP) applied on the simulated backend while steady reads go to
//! an apiserver stand-in on the source master's address (127.0.20.100)
//! until the cut-over, and on the VIP's (127.0.20.99) from then on. The
//! report puts every step of the run in order, says where its traffic
//! went, carries the plan's declared outage, and counts no failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn hacli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hacli"))
        .args(args)
        .env_remove("HACLI_TOPOLOGY")
        .env_remove("KUBECONFIG")
        .output()
        .expect("run hacli")
}

#[test]
fn apply_measure_follows_the_steps_and_the_cut_over() {
    let dir = tempfile::tempdir().unwrap();
    // The stand-in on the master's and the VIP's loopback addresses.
    let ips: Vec<std::net::IpAddr> = vec![[127, 0, 20, 100].into(), [127, 0, 20, 99].into()];
    let ca = testlab::pki::Authority::new("measure CA").unwrap();
    let pair = ca
        .issue_server("kube-apiserver", &["kubernetes"], &ips)
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let api = testlab::apiserver::ApiServer::start(
        &rt,
        &ips,
        &pair,
        "tok",
        testlab::apiserver::Store::default(),
    )
    .unwrap();
    api.store
        .create(serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}}))
        .unwrap();
    let port = api.port.to_string();
    // The example topologies, moved to loopback and the stand-in's port.
    let rewrite = |name: &str| {
        let t = std::fs::read_to_string(root().join("examples/topology").join(name))
            .unwrap()
            .replace("10.0.20.", "127.0.20.")
            .replace("6443", &port);
        let p = dir.path().join(name);
        std::fs::write(&p, t).unwrap();
        p
    };
    let (from, to) = (rewrite("single-master.yaml"), rewrite("ha.yaml"));
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();
    let kc = dir.path().join("kubeconfig");
    std::fs::write(
        &kc,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{ server: \"https://127.0.20.100:{port}\", certificate-authority: {} }}\nusers:\n- name: u\n  user: {{ token: tok }}\ncontexts:\n- name: c\n  context: {{ cluster: c, user: u }}\ncurrent-context: c\n",
            ca_file.display()
        ),
    )
    .unwrap();
    let o = hacli(&[
        "plan",
        "--from",
        from.to_str().unwrap(),
        "--to",
        to.to_str().unwrap(),
        "--template",
        "9000",
        "-o",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let plan = dir.path().join("plan.json");
    std::fs::write(&plan, &o.stdout).unwrap();
    let plan_v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let journal = dir.path().join("journal.jsonl");
    let report = dir.path().join("measure.json");
    let o = hacli(&[
        "apply",
        plan.to_str().unwrap(),
        "--journal",
        journal.to_str().unwrap(),
        "--backend",
        "simulated",
        "--confirm",
        "cutover/external/woodpecker",
        "--confirm",
        "cutover/external/dev-vm",
        "--confirm",
        "verify/pinned-workloads/k8s-master",
        "--measure",
        "--measure-kubeconfig",
        kc.to_str().unwrap(),
        "--measure-rate",
        "100",
        "--measure-json",
        report.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = text(&o);
    println!("{out}");
    assert!(out.contains("availability: "), "{out}");
    assert!(!out.contains("MORE than the plan declared"), "{out}");

    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["schema"], "hacli.measure/v1");
    assert_eq!(r["direct"], format!("https://127.0.20.100:{port}"));
    assert_eq!(r["vip"], format!("https://127.0.20.99:{port}"));
    assert_eq!(r["total"]["failed"], 0, "{}", r["total"]);
    // The README's "38 reads at 100/s, 0 failed": something was sent.
    assert!(
        r["total"]["sent"].as_u64().is_some_and(|n| n > 0),
        "nothing was sent: {}",
        r["total"]
    );
    let steps = r["steps"].as_array().unwrap();
    // Every step of the plan ran, in order.
    let planned: Vec<String> = plan_v["phases"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["steps"].as_array().unwrap().iter())
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    let measured: Vec<String> = steps
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(measured, planned);
    // Direct until the cut-over, through the VIP from its first step on.
    let first_cut = measured
        .iter()
        .position(|id| id.starts_with("cutover"))
        .unwrap();
    for (i, s) in steps.iter().enumerate() {
        let want = if i < first_cut { "direct" } else { "vip" };
        assert_eq!(s["via"], want, "{s}");
        assert_eq!(s["withinDeclared"], true, "{s}");
    }
    // The retrofit's restart is a declared outage, carried over.
    assert!(
        steps
            .iter()
            .any(|s| s["declaredMs"].as_f64().is_some_and(|d| d > 0.0)),
        "no declared outage among the steps"
    );
}
