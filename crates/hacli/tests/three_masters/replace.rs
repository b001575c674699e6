//! `hacli remove-master` and `hacli replace-master` with `--backend live`
//! on the migrated three-master lab (tests/common): removing one master of
//! three is refused and changes nothing; replacing m3 by m4 (a new Proxmox
//! clone) ends with three voters, three servers UP, m3's Node and VM gone,
//! its run killed at the point of no return and resumed with --resume;
//! all read from the real systems (etcd's member list, HAProxy's
//! `show stat`, the apiserver's store, the Proxmox stand-in).

use crate::common;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use testlab::cluster::{ISSUED_SECRETS, M1, M2, M3};

/// The voters' names in etcd's real member list (panics on a learner).
fn voters(m: &common::Migrated) -> BTreeSet<String> {
    let members = m.lab.etcd_members().expect("etcd's member list");
    assert!(members.iter().all(|x| !x.is_learner), "{members:?}");
    members.iter().map(|x| x.name.clone()).collect()
}

fn up_servers(lb: IpAddr) -> (BTreeSet<String>, Vec<(String, String)>) {
    let pool = common::pool_status(lb);
    let up = pool
        .iter()
        .filter(|(_, s)| s.starts_with("UP"))
        .map(|(n, _)| n.clone())
        .collect();
    (up, pool)
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// `hacli ARGS` with the live flags of the migrated lab.
fn hacli_live(m: &common::Migrated, args: &[&str], journal: &Path) -> Command {
    let tls = m.lab.etcd_tls();
    let mut cmd = common::hacli_isolated();
    cmd.args(args)
        .arg("--topology")
        .arg(&m.topology)
        .arg("--journal")
        .arg(journal)
        .args(["--backend", "live", "--accept-new-host-key"])
        // One observation waits longer than the 2 s default: the
        // apiserver stand-ins answer slowly on a loaded 2-core machine.
        .args(["--deadline", "5s", "--member-timeout", "2s"])
        .arg("--kubeconfig")
        .arg(m.lab.admin_conf())
        .arg("--etcd-cacert")
        .arg(&tls.ca)
        .arg("--etcd-cert")
        .arg(&tls.cert)
        .arg("--etcd-key")
        .arg(&tls.key)
        .arg("--known-hosts")
        .arg(&m.known_hosts)
        .env("PROXMOX_VE_API_TOKEN", m.pve.api_token());
    cmd
}

fn texts(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Run on the migrated lab `m`.
/// Returns the topology after the replacement (m4 instead of m3).
pub fn run(m: &common::Migrated) -> PathBuf {
    let lb: IpAddr = m.lab.addr("lb").into();
    assert_eq!(voters(m), set(&["m1", "m2", "m3"]));

    // (a) Removing one master of three leaves two voters: refused, with
    // the reason, and nothing changes.
    let journal = m.dir.join("remove-m3.jsonl");
    let t = Instant::now();
    let out = hacli_live(m, &["remove-master", "m3"], &journal)
        .output()
        .unwrap();
    let refused_in = t.elapsed();
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("REFUSED"), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("leaves 2 etcd voters") && stdout.contains("even number"),
        "the reason names the even voter count: {stdout}"
    );
    assert!(
        !journal.exists(),
        "a refused removal runs no step (no journal)"
    );
    assert_eq!(voters(m), set(&["m1", "m2", "m3"]), "etcd unchanged");
    let (up, pool) = up_servers(lb);
    assert_eq!(up, set(&["m1", "m2", "m3"]), "pool unchanged: {pool:?}");
    assert_eq!(pool.len(), 3, "{pool:?}");
    assert!(m.lab.node("m3").is_some(), "Node m3 is still there");
    assert_eq!(m.pve.host_is_on(113), Some(true), "VM 113 still runs");

    // (b) Replace m3 by m4: VM 114, the next free lab address.
    let m4: IpAddr = m.lab.lab_addr(14).into();
    assert!(
        TcpStream::connect_timeout(&SocketAddr::new(m4, 22), Duration::from_millis(500)).is_err(),
        "{m4} is free before the replacement"
    );
    assert!(m.pve.vm(114).is_none(), "VM 114 does not exist yet");
    let a3 = m.lab.lab_addr(M3).to_string();
    let a4 = m4.to_string();
    let current = std::fs::read_to_string(&m.topology).unwrap();
    let mut target = current.clone();
    for (from, to) in [
        ("name: m3,".to_string(), "name: m4,".to_string()),
        (format!("address: {a3},"), format!("address: {a4},")),
        ("vmid: 113,".to_string(), "vmid: 114,".to_string()),
        (format!("https://{a3}:2379"), format!("https://{a4}:2379")),
    ] {
        assert_eq!(current.matches(&from).count(), 1, "{from} in {current}");
        target = target.replace(&from, &to);
    }
    let target_file = m.dir.join("replace-target.yaml");
    common::write(&target_file, &target);

    // The run is SIGKILLed just after it starts removing m3's etcd member
    // (the point of no return), then resumed with --resume: the default
    // lock identity names the journal, so the resumed run takes the lock
    // the killed one still holds.
    let journal = m.dir.join("replace-m3.jsonl");
    let replace = || {
        let mut cmd = hacli_live(m, &["replace-master", "m3", "m4"], &journal);
        cmd.arg("--target")
            .arg(&target_file)
            .args(["--template", &common::TEMPLATE.to_string()]);
        cmd
    };
    let t = Instant::now();
    let child = replace()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let killer = {
        let (journal, pid, done) = (journal.clone(), child.id(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if common::journal_has(&journal, "started", "remove/m3/member") {
                    std::thread::sleep(Duration::from_millis(300));
                    let _ = Command::new("kill")
                        .args(["-KILL", &pid.to_string()])
                        .status();
                    return true;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            false
        })
    };
    let out = child.wait_with_output().unwrap();
    done.store(true, Ordering::Relaxed);
    let killed = killer.join().unwrap();
    let (stdout, stderr) = texts(&out);
    println!("hacli replace-master m3 m4 (killed):\n{stdout}\n{stderr}");
    assert!(
        killed && out.status.signal() == Some(9),
        "killed at remove/m3/member: {:?}\n{stdout}\n{stderr}",
        out.status
    );
    let out = replace().arg("--resume").output().unwrap();
    let replaced_in = t.elapsed();
    let (stdout, stderr2) = texts(&out);
    println!("hacli replace-master m3 m4 --resume:\n{stdout}\n{stderr2}");
    let (up, pool) = up_servers(lb);
    assert!(
        out.status.success(),
        "replace-master --resume did not complete: {stdout}\n{stderr2}\nshow stat: {pool:?}"
    );
    assert!(stdout.contains("m3: done; lock released"), "{stdout}");
    assert!(
        !stderr2.contains("done join/m4/join") && !stderr2.contains("done provision/m4/clone"),
        "the resumed run does not redo the join: {stderr2}"
    );
    assert_eq!(
        m.pve.count("POST", "/clone"),
        3,
        "one clone for m4 (two for the migration)"
    );
    let stderr = format!("{stderr}{stderr2}");
    let resumed_stdout = stdout;

    // The end state, from the real systems.
    assert_eq!(voters(m), set(&["m1", "m2", "m4"]), "three voters");
    assert_eq!(up, set(&["m1", "m2", "m4"]), "three servers UP: {pool:?}");
    assert_eq!(pool.len(), 3, "m3's server is gone: {pool:?}");
    assert!(m.lab.node("m3").is_none(), "Node m3 is deleted");
    assert!(m.lab.node("m4").is_some(), "Node m4 is registered");
    assert!(m.pve.vm(113).is_none(), "VM 113 is gone");
    assert_eq!(m.pve.host_is_on(114), Some(true), "VM 114 runs");
    let ipconfig = m.pve.vm(114).and_then(|c| c.get("ipconfig0").cloned());
    assert!(
        ipconfig
            .as_deref()
            .is_some_and(|c| c.starts_with(&format!("ip={a4}/"))),
        "VM 114's cloud-init address: {ipconfig:?}"
    );
    // The removal's order, as the journal records it.
    let text = std::fs::read_to_string(&journal).unwrap();
    let done: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "done")
        .filter_map(|v| v["step"].as_str().map(str::to_string))
        .collect();
    let pos = |id: &str| {
        done.iter()
            .position(|s| s == id)
            .unwrap_or_else(|| panic!("{id} done: {done:?}"))
    };
    assert!(pos("join/m4/promoted") < pos("remove/m3/drain"), "{done:?}");
    assert!(pos("remove/m3/drain") < pos("remove/m3/member"), "{done:?}");
    assert!(pos("remove/m3/member") < pos("remove/m3/reset"), "{done:?}");
    assert!(pos("remove/m3/reset") < pos("remove/m3/vm"), "{done:?}");
    // No join token or certificate key (as the kubeadm stand-in issued
    // them on the masters that stay), nor the Proxmox token, by value.
    let mut found = common::secrets::Secrets::new();
    for (n, k) in [("m1", M1), ("m2", M2)] {
        let record = common::ssh(
            m.lab.client_key(),
            &m.known_hosts,
            m.lab.lab_addr(k).into(),
            &format!("cat {ISSUED_SECRETS} 2>/dev/null; true"),
        );
        common::secrets::add_issued(&mut found, n, &record);
    }
    assert!(
        found.names().iter().any(|n| n.contains("certificate key")),
        "no certificate key was issued for m4's join: {:?}",
        found.names()
    );
    found.add("Proxmox token secret", m.pve.token_secret());
    found.assert_absent("replace-master's journal", &text);
    found.assert_absent("replace-master's stderr", &stderr);
    found.assert_absent("replace-master's stdout", &resumed_stdout);

    println!(
        "durations: remove-master refused in {:.2} s, replace-master m3 -> m4 {:.1} s (killed at remove/m3/member and resumed)",
        refused_in.as_secs_f64(),
        replaced_in.as_secs_f64()
    );
    target_file
}
