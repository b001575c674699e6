//! `hacli remediate` on the migrated lab, last: m4 powered off through the
//! Proxmox API; the decision without `--confirm` (replace m4, the command
//! printed, nothing touched); a remediation whose attempts fail (its
//! spare's VM id taken: refused before acting) stopped at its retry
//! budget; m2 powered off too: refused (quorum), then m2 powered on again;
//! with `--confirm`, m4 replaced by the spare m5 (a new Proxmox clone)
//! under the lock, journalled: three voters, three servers UP, no trace of
//! m4 (Node, etcd member, pool server, VM 114); all read from the real
//! systems (etcd's member list, HAProxy's `show stat`, the apiserver's
//! store, the Proxmox stand-in).

use crate::common;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn voters(m: &common::Migrated) -> BTreeSet<String> {
    let members = m.lab.etcd_members().expect("etcd's member list");
    members
        .iter()
        .filter(|x| !x.is_learner)
        .map(|x| x.name.clone())
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// `hacli remediate` on the live lab with `topology`, remembering in
/// `memory`, replacing after 0 s (the bound is the decision's own test).
fn remediate(m: &common::Migrated, topology: &Path, memory: &Path, extra: &[&str]) -> Command {
    let tls = m.lab.etcd_tls();
    let mut cmd = common::hacli_isolated();
    cmd.args(["remediate", "--accept-new-host-key"])
        .arg("--topology")
        .arg(topology)
        .arg("--memory")
        .arg(memory)
        .arg("--metrics")
        .arg(memory.with_extension("prom"))
        .args(["--unhealthy-for", "0s", "--min-healthy-period", "0s"])
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
        .args(extra)
        .env("PROXMOX_VE_API_TOKEN", m.pve.api_token());
    cmd
}

/// Run it: (exit code, stdout and stderr).
fn run(mut cmd: Command) -> (Option<i32>, String) {
    let o = cmd.output().unwrap();
    (o.status.code(), common::text(&o))
}

/// Run until the decision line starts with `want` (within `within`).
fn until(m: &common::Migrated, topology: &Path, memory: &Path, want: &str, within: u64) -> String {
    let end = Instant::now() + Duration::from_secs(within);
    loop {
        let (_, out) = run(remediate(m, topology, memory, &[]));
        if out.lines().any(|l| l.starts_with(want)) {
            return out;
        }
        assert!(Instant::now() < end, "no `{want}` within {within} s: {out}");
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The spare: `dead`'s line of `topology` as one node, renamed `name` at
/// lab address `k`, VM `vmid`.
fn spare(
    m: &common::Migrated,
    topology: &str,
    dead: &str,
    name: &str,
    k: u8,
    vmid: u32,
) -> PathBuf {
    let line = topology
        .lines()
        .find(|l| l.contains(&format!("name: {dead},")))
        .expect("the dead master's line");
    let node = line.trim().trim_start_matches("- ");
    let old_vmid = node
        .split("vmid: ")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap();
    let old_addr = node
        .split("address: ")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap();
    let node = node
        .replace(&format!("name: {dead},"), &format!("name: {name},"))
        .replace(
            &format!("address: {old_addr},"),
            &format!("address: {},", m.lab.lab_addr(k)),
        )
        .replace(&format!("vmid: {old_vmid},"), &format!("vmid: {vmid},"));
    let p = m.dir.join(format!("dead/spare-{name}-{vmid}.yaml"));
    common::write(&p, &format!("{node}\n"));
    p
}

/// What kube-controller-manager's node lifecycle controller does once a
/// kubelet stops posting (after `node-monitor-grace-period`, 40 s): Node
/// `name`'s Ready condition becomes Unknown. The apiserver stand-in has no
/// such controller, so the test does it for the powered-off master.
fn kubelet_stopped_posting(m: &common::Migrated, name: &str) {
    let mut n = m.lab.node(name).expect("the Node");
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    for c in n["status"]["conditions"]
        .as_array_mut()
        .expect("conditions")
    {
        if c["type"] == "Ready" {
            c["status"] = "Unknown".into();
            c["reason"] = "NodeStatusUnknown".into();
            c["message"] = "Kubelet stopped posting node status.".into();
            c["lastTransitionTime"] = now.clone().into();
        }
    }
    m.lab.store().put(n).expect("the Node's status");
}

/// Run on the migrated lab `m` with `topology` (after `replace`: m1, m2,
/// m4); m4 (VM 114) is the one that dies, m2 (VM 112) the second.
pub fn run_all(m: &common::Migrated, topology: &Path) {
    let lb: IpAddr = m.lab.addr("lb").into();
    let dir = m.dir.join("dead");
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string(topology).unwrap();
    assert_eq!(voters(m), set(&["m1", "m2", "m4"]));
    let t = Instant::now();

    // m4 powered off: to be replaced; without --confirm nothing is touched.
    crate::recovery::pve(m, 114, "stop");
    kubelet_stopped_posting(m, "m4");
    let memory = dir.join("look.json");
    let out = until(m, topology, &memory, "replace m4:", 60);
    let noticed = t.elapsed();
    println!("hacli remediate (m4 off, not confirmed):\n{out}");
    assert!(
        out.contains("etcd keeps quorum: 2 of 3 voters healthy now"),
        "{out}"
    );
    assert!(out.contains("run: hacli replace-master m4 NEW"), "{out}");
    assert!(out.contains("not acting: pass --confirm"), "{out}");
    let prom = std::fs::read_to_string(memory.with_extension("prom")).unwrap();
    assert!(prom.contains("decision=\"replace\",node=\"m4\""), "{prom}");

    // Attempts that fail (the spare's VM id is m2's: refused before
    // anything is touched) stop at the budget of two.
    let bad = spare(m, &text, "m4", "m5", 15, 112);
    let memory = dir.join("budget.json");
    let journal = dir.join("budget.jsonl");
    let confirm = |memory: &Path, spare: &Path, journal: &Path| {
        let mut c = remediate(m, topology, memory, &["--confirm", "--max-retries", "2"]);
        c.arg("--spare").arg(spare).arg("--journal").arg(journal);
        c.args(["--template", &common::TEMPLATE.to_string()]);
        c
    };
    for n in 1..=2 {
        let (code, out) = run(confirm(&memory, &bad, &journal));
        assert_eq!(code, Some(1), "attempt {n}: {out}");
        assert!(
            out.contains("refused m4: the replacement of m4 failed"),
            "{out}"
        );
        assert!(out.contains("VM id is taken: node `m2`"), "{out}");
    }
    let (code, out) = run(confirm(&memory, &bad, &journal));
    println!("hacli remediate --confirm (third, over budget):\n{out}");
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("the retry budget is spent: 2 attempt(s)"),
        "{out}"
    );
    let prom = std::fs::read_to_string(memory.with_extension("prom")).unwrap();
    assert!(prom.contains("hacli_remediation_attempts 2"), "{prom}");
    assert!(voters(m).contains("m4"), "nothing was touched");
    assert!(m.pve.vm(114).is_some() && m.pve.vm(115).is_none());

    // m2 powered off too: refused (quorum), nothing touched; m2 back.
    crate::recovery::pve(m, 112, "stop");
    let memory = dir.join("two.json");
    let out = until(m, topology, &memory, "refused", 60);
    println!("hacli remediate (m2 and m4 off):\n{out}");
    assert!(out.contains("quorum"), "{out}");
    crate::recovery::pve(m, 112, "start");
    let memory = dir.join("act.json");
    until(m, topology, &memory, "replace m4:", 120);
    let refused_in = t.elapsed();

    // With --confirm: m4 replaced by m5 (VM 115, the next lab address).
    // The template image rebuilt with the versions the cluster runs now
    // (roll and upgrade_rules upgraded it): the replacement refuses a spare
    // whose kubeadm, kubelet or containerd differ from the masters'.
    let now = m.lab.versions("m1").expect("m1's versions");
    m.pve
        .set_provision(m.lab.template().with_versions(now).provisioner());
    let good = spare(m, &text, "m4", "m5", 15, 115);
    let journal = dir.join("act.jsonl");
    let t2 = Instant::now();
    let (code, out) = run(confirm(&memory, &good, &journal));
    let replaced_in = t2.elapsed();
    println!("hacli remediate --confirm:\n{out}");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("replace m4: m4 replaced"), "{out}");
    let attempt = PathBuf::from(format!("{}.m4.1", journal.display()));
    assert!(
        common::journal_has(&attempt, "done", "join/m5/promoted"),
        "{out}"
    );

    // The end state, from the real systems.
    assert_eq!(voters(m), set(&["m1", "m2", "m5"]), "three voters");
    let pool = common::pool_status(lb);
    let up: BTreeSet<String> = pool
        .iter()
        .filter(|(_, s)| s.starts_with("UP"))
        .map(|(n, _)| n.clone())
        .collect();
    assert_eq!(up, set(&["m1", "m2", "m5"]), "three servers UP: {pool:?}");
    assert_eq!(pool.len(), 3, "m4's server is gone: {pool:?}");
    assert!(m.lab.node("m4").is_none(), "Node m4 is deleted");
    assert!(m.lab.node("m5").is_some(), "Node m5 is registered");
    assert!(
        m.pve.vm(114).is_none(),
        "VM 114 (ours, made by replace) is gone"
    );
    assert_eq!(m.pve.host_is_on(115), Some(true), "VM 115 runs");
    // The topology from now on: healthy.
    let after = PathBuf::from(format!("{}.yaml", attempt.display()));
    let (code, out) = run(remediate(m, &after, &dir.join("after.json"), &[]));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("healthy: every master is Ready"), "{out}");
    println!(
        "durations: m4 off noticed in {:.1} s; budget and two-down refusals (m2 back) by {:.1} s; remediate --confirm m4 -> m5 {:.1} s",
        noticed.as_secs_f64(),
        refused_in.as_secs_f64(),
        replaced_in.as_secs_f64()
    );
}
