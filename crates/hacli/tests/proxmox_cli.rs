//! `hacli hypervisor show` and `hacli plan --proxmox` against the lab's
//! Proxmox API stand-in holding the realistic home-lab inventory.

use std::path::Path;
use std::process::Command;

use testlab::proxmox::{Inventory, ProxmoxLab};

fn hacli(lab: &ProxmoxLab, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hacli"))
        .args(args)
        .args([
            "--proxmox",
            &lab.endpoint(),
            "--proxmox-fingerprint",
            &lab.fingerprint_hex(),
        ])
        .env("PROXMOX_VE_API_TOKEN", lab.api_token())
        .env_remove("PM_API_URL")
        .env_remove("PROXMOX_VE_ENDPOINT")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/topology")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn hypervisor_show_prints_each_host_and_its_vms() {
    let lab = ProxmoxLab::start(Inventory::realistic()).unwrap();
    let (code, out, err) = hacli(&lab, &["hypervisor", "show"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("pve (online): memory 256 GiB, committed 200 GiB running + 24 GiB stopped = 87%; CPUs 64, vCPUs 58 running + 4 stopped"), "{out}");
    assert!(out.contains("old-gitlab"), "{out}");
    assert!(out.contains("debian-12-cloudinit"), "{out}");
    assert!(
        !err.contains(lab.token_secret()),
        "the secret leaked: {err}"
    );
}

#[test]
fn plan_from_the_inventory_refuses_with_reasons_and_sizes() {
    let lab = ProxmoxLab::start(Inventory::realistic()).unwrap();
    let from = example("single-master.yaml");
    let to = example("ha.yaml");
    let (code, out, err) = hacli(
        &lab,
        &["plan", "--from", &from, "--to", &to, "--template", "9000"],
    );
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("REFUSED"), "{out}");
    assert!(
        out.contains(
            "already taken by VM `old-gitlab` (stopped, on pve), a VM the topology does not list"
        ),
        "{out}"
    );
    assert!(
        out.contains("2 master(s) of at most 16 GiB each fit"),
        "{out}"
    );
    assert!(
        err.contains("placement: pve: k8s-master, k8s-master-2, k8s-master-3"),
        "{err}"
    );
    let (code, out, _) = hacli(
        &lab,
        &["plan", "--from", &from, "--to", &to, "--template", "212"],
    );
    assert_eq!(code, 1);
    assert!(
        out.contains("VM 212 `plex` on pve is not a template"),
        "{out}"
    );

    // A wrong token: exit 3, the 401 named, the secret not shown.
    let out = Command::new(env!("CARGO_BIN_EXE_hacli"))
        .args([
            "hypervisor",
            "show",
            "--proxmox",
            &lab.endpoint(),
            "--proxmox-ca",
        ])
        .arg(lab.ca_path())
        .env(
            "PROXMOX_VE_API_TOKEN",
            format!("{}=not-the-secret", lab.token_id()),
        )
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("HTTP 401 invalid token value!"), "{err}");
    assert!(!err.contains("not-the-secret"), "{err}");
}

#[test]
fn the_topology_can_name_the_proxmox_api() {
    let lab = ProxmoxLab::start(Inventory::realistic()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The HA example with a `proxmox:` section pointing at the stand-in (its
    // CA file relative to the topology), and no --proxmox flag.
    std::fs::copy(lab.ca_path(), dir.path().join("pve-ca.pem")).unwrap();
    let ha = std::fs::read_to_string(example("ha.yaml")).unwrap();
    let to = dir.path().join("ha.yaml");
    std::fs::write(
        &to,
        format!(
            "{ha}\nproxmox:\n  endpoint: {}\n  caFile: pve-ca.pem\n",
            lab.endpoint()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_hacli"))
            .args(args)
            .env("PROXMOX_VE_API_TOKEN", lab.api_token())
            .env_remove("PM_API_URL")
            .env_remove("PROXMOX_VE_ENDPOINT")
            .output()
            .unwrap()
    };
    let out = run(&[
        "plan",
        "--from",
        &example("single-master.yaml"),
        "--to",
        to.to_str().unwrap(),
        "--template",
        "9000",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("already taken by VM `old-gitlab`"), "{text}");
    let out = run(&["hypervisor", "show", "-t", to.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("old-gitlab"));
    // A bad endpoint in the topology is an error naming the field.
    std::fs::write(
        &to,
        format!("{ha}\nproxmox:\n  endpoint: http://pve:8006\n"),
    )
    .unwrap();
    let out = run(&["hypervisor", "show", "-t", to.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("proxmox.endpoint"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Issue 21: a plan made without the Proxmox inventory, whose VM id for a new
/// master belongs to another VM (home-assistant, running, not in the
/// topology), applied with `--backend live`: refused before its first step,
/// naming the VM; nothing cloned, stopped or deleted; the VM runs on with its
/// config unchanged. (Without this check the clone was refused and then its
/// rollback stopped and purged the other VM.)
#[test]
fn a_planned_vm_id_that_belongs_to_another_vm_is_refused_before_the_first_step() {
    let lab = ProxmoxLab::start(Inventory::realistic()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The examples on the lab's network (198.18.20.0/24, nothing answers
    // there), k8s-master-2 planned as VM 211 and both new masters small
    // enough for the host: the only thing wrong is the VM id.
    let lab_net = |name: &str| {
        std::fs::read_to_string(example(name))
            .unwrap()
            .replace("10.0.20.", "198.18.20.")
    };
    let from = dir.path().join("from.yaml");
    let to = dir.path().join("to.yaml");
    std::fs::write(&from, lab_net("single-master.yaml")).unwrap();
    std::fs::write(
        &to,
        lab_net("ha.yaml")
            .replace(
                "vmid: 205, cpus: 8, memoryGiB: 32",
                "vmid: 211, cpus: 2, memoryGiB: 4",
            )
            .replace(
                "vmid: 206, cpus: 8, memoryGiB: 32",
                "vmid: 206, cpus: 2, memoryGiB: 4",
            ),
    )
    .unwrap();
    let plan = dir.path().join("plan.json");
    let out = Command::new(env!("CARGO_BIN_EXE_hacli"))
        .args(["plan", "--from", from.to_str().unwrap(), "--to"])
        .arg(&to)
        .args(["--template", "9000", "-o", "json"])
        .env_remove("PM_API_URL")
        .env_remove("PROXMOX_VE_ENDPOINT")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "the plan without the inventory does not see VM 211: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&plan, &out.stdout).unwrap();
    let plan_text = String::from_utf8_lossy(&out.stdout);
    assert!(
        plan_text.contains("\"op\": \"delete-vm\""),
        "the clone's rollback deletes by id"
    );

    let before = lab.vm(211).unwrap();
    assert_eq!(before["status"], "running");
    let journal = dir.path().join("run.jsonl");
    let (code, out, err) = hacli(
        &lab,
        &[
            "apply",
            plan.to_str().unwrap(),
            "--journal",
            journal.to_str().unwrap(),
            "--backend",
            "live",
        ],
    );
    assert_eq!(code, 1, "refused: {out}\n{err}");
    assert!(out.contains("BLOCKED before preflight/"), "{out}");
    assert!(
        out.contains(
            "VM id 211 planned for k8s-master-2 is taken: VM 211 is home-assistant (running), not created by hacli (on pve)"
        ),
        "{out}"
    );
    assert!(!out.contains("VM id 206"), "VM 206 is free: {out}");
    // Nothing was done: no clone, no stop, no delete, no step journaled.
    assert_eq!(lab.count("POST", "/clone"), 0);
    assert_eq!(lab.count("POST", "/status/stop"), 0);
    assert_eq!(lab.count("DELETE", "/qemu/{vmid}"), 0);
    assert_eq!(
        lab.vm(211).unwrap(),
        before,
        "home-assistant runs on, its config unchanged"
    );
    let journaled = std::fs::read_to_string(&journal).unwrap_or_default();
    assert!(!journaled.contains("\"started\""), "{journaled}");
}

#[test]
fn a_pinned_proxmox_certificate_and_an_insecure_variable_is_an_error_naming_both() {
    let lab = ProxmoxLab::start(Inventory::realistic()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(lab.ca_path(), dir.path().join("pve-ca.pem")).unwrap();
    let ha = std::fs::read_to_string(example("ha.yaml")).unwrap();
    let topo = dir.path().join("ha.yaml");
    let run = |extra: &[&str], var: &str| {
        Command::new(env!("CARGO_BIN_EXE_hacli"))
            .args(["hypervisor", "show", "-t", topo.to_str().unwrap()])
            .args(extra)
            .env("PROXMOX_VE_API_TOKEN", lab.api_token())
            .env_remove("PM_API_URL")
            .env_remove("PROXMOX_VE_ENDPOINT")
            .env_remove("PROXMOX_VE_INSECURE")
            .env_remove("PM_TLS_INSECURE")
            .env(var, "true")
            .output()
            .unwrap()
    };
    // The topology pins the CA file, then the fingerprint; the environment
    // of a Terraform user asks to skip verification.
    for (pin, named) in [
        ("caFile: pve-ca.pem".to_string(), "the CA file".to_string()),
        (
            format!("fingerprint: \"{}\"", lab.fingerprint_hex()),
            format!("the certificate fingerprint {}", lab.fingerprint_hex()),
        ),
    ] {
        std::fs::write(
            &topo,
            format!("{ha}\nproxmox:\n  endpoint: {}\n  {pin}\n", lab.endpoint()),
        )
        .unwrap();
        for var in ["PM_TLS_INSECURE", "PROXMOX_VE_INSECURE"] {
            let out = run(&[], var);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{var} with {pin}: {err}");
            assert!(
                err.contains(&named) && err.contains(var) && err.contains("never weakened"),
                "{var} with {pin}: {err}"
            );
        }
    }
    assert_eq!(lab.calls().len(), 0, "nothing was asked of the API");
    // Without a pin, the variable alone still verifies nothing less: it
    // asks for the flag; the flag skips verification, loudly.
    std::fs::write(
        &topo,
        format!("{ha}\nproxmox:\n  endpoint: {}\n", lab.endpoint()),
    )
    .unwrap();
    let out = run(&[], "PM_TLS_INSECURE");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("PM_TLS_INSECURE") && err.contains("--proxmox-insecure-skip-tls-verify"),
        "{err}"
    );
    let out = run(&["--proxmox-insecure-skip-tls-verify"], "PM_TLS_INSECURE");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("NOT verified"), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("old-gitlab"));
}

/// Issue 26: `hypervisor show` prints where each master runs as the
/// inventory reports it (and where the topology says otherwise), two
/// masters sharing a host, and the HA resources and rules.
#[test]
fn hypervisor_show_prints_the_masters_placement_and_the_ha_rules() {
    let lab = ProxmoxLab::start(Inventory::realistic()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let topo = dir.path().join("t.yaml");
    // k8s-master (VM 200) is declared on pve2 but runs on pve, as plex (212) does.
    std::fs::write(
        &topo,
        "cluster: home\ncontrolPlaneEndpoint: { address: 198.18.20.10 }\nloadBalancer: { kind: haproxy, pool: k8s-apiserver, frontend: \"198.18.20.10:6443\" }\nhypervisors:\n  - { name: pve, memoryGiB: 256, cpus: 64 }\n  - { name: pve2, memoryGiB: 64, cpus: 16 }\nnodes:\n  - { name: k8s-master, role: control-plane, address: 198.18.20.11, hypervisor: pve2, vmid: 200 }\n  - { name: plex, role: control-plane, address: 198.18.20.12, hypervisor: pve, vmid: 212 }\n  - { name: pbs, role: control-plane, address: 198.18.20.13, hypervisor: pve2, vmid: 300 }\n",
    )
    .unwrap();
    let client = proxmox::Client::new(
        &proxmox::Settings {
            endpoint: Some(lab.endpoint()),
            token: Some(proxmox::Token::parse(&lab.api_token(), "test").unwrap()),
            fingerprint: Some(lab.fingerprint_hex()),
            ..Default::default()
        }
        .build()
        .unwrap(),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(proxmox::ha::keep_apart(
        &client,
        "k8s-masters",
        &[200, 212, 300],
        "home",
    ))
    .unwrap();
    let (code, out, err) = hacli(&lab, &["hypervisor", "show", "-t", topo.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    for line in [
        "  k8s-master (VM 200, running) on pve (the topology says pve2)",
        "  plex (VM 212, running) on pve\n",
        "  pbs (VM 300, running) on pve2\n",
        "  WARNING: k8s-master and plex share host pve: its failure takes 2 masters down",
        "  vm:212 `plex` on pve (started)",
        "  k8s-masters: negative resource affinity of vm:200, vm:212, vm:300 (hacli: the masters of cluster home, kept on different hosts)",
        "    NOT MET: k8s-master and plex share host pve",
    ] {
        assert!(out.contains(line), "{line:?} in:\n{out}");
    }
    // The same in the document (and so in hapy.hypervisor()).
    let (code, out, err) = hacli(
        &lab,
        &[
            "hypervisor",
            "show",
            "-t",
            topo.to_str().unwrap(),
            "-o",
            "json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["kind"], "HypervisorInventory", "{doc}");
    assert_eq!(
        doc["placement"][0],
        serde_json::json!({"name": "k8s-master", "vmid": 200, "host": "pve", "status": "running", "declaredHost": "pve2"}),
        "{doc}"
    );
    assert_eq!(
        doc["sharedHosts"],
        serde_json::json!([{"host": "pve", "masters": ["k8s-master", "plex"]}]),
        "{doc}"
    );
    let rule = &doc["ha"]["rules"][0];
    assert_eq!(rule["rule"], "k8s-masters", "{doc}");
    assert_eq!(rule["type"], "resource-affinity", "{doc}");
    assert_eq!(rule["affinity"], "negative", "{doc}");
    assert_eq!(
        rule["notMet"],
        serde_json::json!([{"host": "pve", "vms": ["k8s-master", "plex"]}]),
        "{doc}"
    );
    let plex = doc["ha"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["sid"] == "vm:212")
        .unwrap_or_else(|| panic!("vm:212 in {doc}"));
    assert_eq!(
        (&plex["vm"], &plex["host"]),
        (&serde_json::json!("plex"), &serde_json::json!("pve"))
    );
    assert!(doc.get("haError").is_none(), "{doc}");
}
