//! Rollback on the real lab: `hacli apply --backend live` migrates the
//! lab's seed (as in `common`), and two of its phases fail on the way:
//!
//! 1. m3's VM starts but its sshd never answers (the Proxmox stand-in
//!    makes its lab host without sshd): the provisioning phase of m3 fails
//!    once `--boot-wait` has passed, and rolls back: the VM is stopped and
//!    deleted in the Proxmox stand-in.
//! 2. m3 joins (an etcd learner, promoted), then its apiserver never passes
//!    the load balancer's health checks (the load-balancer host drops its
//!    packets to m3:6443, an nft rule inside the lab's network namespace):
//!    the join phase of m3 fails at `load-balancer-up` and rolls back: m3
//!    leaves the pool, is reset (`kubeadm reset -f`), its etcd member is
//!    removed by id and its Node deleted; its VM stays.
//!
//! 3. Before the cut-over, every master's apiserver certificate is
//!    re-issued (by the cluster CA) without the API's DNS name: the VIP's
//!    smoke test (`/readyz` through the VIP by name and by address,
//!    verified with the cluster CA) fails, and the cut-over phase is
//!    rolled back before any client was moved; the certificates are put
//!    back and the run resumed.
//!
//! After each rollback the real systems are as they were before the failed
//! phase (read with `hacli apply` SIGKILLed at the phase boundary, then
//! resumed): etcd's member list, HAProxy's `show stat`, the cluster
//! healthy, and `hacli gate` gives the same verdicts (reboot m1, w1, w2;
//! asked about the cluster as it is, without the nodes not yet joined, with
//! the built-in reboot policy less its soak and calico rules: some allowed,
//! some denied). While the join fails, the gate's view is printed too. Then
//! the cause is
//! fixed and the run resumed from its journal: it completes, with the
//! usual end state of `common::migrate_with` (three voters, three servers
//! UP, every kubeconfig on the VIP) and three clones in all (m3's first VM
//! was deleted).

mod common;

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{At, MigrateOptions, Stage, Then};
use testlab::cluster::{M1, M2, M3};

/// The nft table the test adds on the load-balancer host.
const TABLE: &str = "hacli_rollback_test";

/// `hacli gate ACTION NODE`: (request and decision, exit code, every
/// (rule, severity)).
type Verdict = (String, i32, Vec<(String, String)>);

/// What a rollback must leave as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    /// etcd's members: (peer URL, learner).
    members: BTreeSet<(String, bool)>,
    /// `show stat`: (server, status).
    pool: BTreeSet<(String, String)>,
    verdicts: Vec<Verdict>,
}

fn members(st: &Stage<'_>) -> BTreeSet<(String, bool)> {
    st.lab
        .etcd_members()
        .expect("etcd's member list")
        .into_iter()
        .map(|m| {
            (
                m.peer_urls.first().cloned().unwrap_or_default(),
                m.is_learner,
            )
        })
        .collect()
}

/// The cluster as it is at a point of the migration: the target topology
/// without the nodes that have not joined yet (`absent`), written next to
/// it; and the gate's policy: the built-in reboot policy without its soak
/// (the migration itself is a recent change) and calico (the lab runs no
/// CNI) rules.
fn gate_files(st: &Stage<'_>, absent: &[&str]) -> (std::path::PathBuf, std::path::PathBuf) {
    let text = std::fs::read_to_string(st.topology).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !absent.iter().any(|n| l.contains(&format!("{{ name: {n},"))))
        .collect();
    let topology = st
        .dir
        .join(format!("gate-without-{}.yaml", absent.join("-")));
    common::write(&topology, &(kept.join("\n") + "\n"));
    let policy = st.dir.join("gate-policy.yaml");
    common::write(
        &policy,
        "name: rollback-check\ndescription: the built-in reboot policy, no soak, no calico\nextends: reboot\ndisable: [soak, daemonsets]\n",
    );
    (topology, policy)
}

fn gate(st: &Stage<'_>, absent: &[&str], action: &str, node: &str) -> Verdict {
    let (topology, policy) = gate_files(st, absent);
    let tls = st.lab.etcd_tls();
    // Every member's client URL, so the gate sees each member's health.
    let endpoints: Vec<String> = st
        .lab
        .etcd_members()
        .expect("etcd's member list")
        .into_iter()
        .flat_map(|m| m.client_urls)
        .collect();
    let out = Command::new(env!("CARGO_BIN_EXE_hacli"))
        .args(["gate", action, node, "-o", "json"])
        .arg("--topology")
        .arg(&topology)
        .arg("--policy")
        .arg(&policy)
        .arg("--kubeconfig")
        .arg(st.lab.admin_conf())
        .arg("--etcd-endpoints")
        .arg(endpoints.join(","))
        .arg("--etcd-cacert")
        .arg(&tls.ca)
        .arg("--etcd-cert")
        .arg(&tls.cert)
        .arg("--etcd-key")
        .arg(&tls.key)
        .args(["--deadline", "6s", "--member-timeout", "4s"])
        .env_remove("KUBECONFIG")
        .env_remove("HACLI_IDENTITY")
        .env_remove("HACLI_LB_RUNTIME_API")
        .output()
        .expect("hacli gate runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "hacli gate {action} {node}: {e}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let mut findings: Vec<(String, String)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap_or("?").to_string(),
                f["severity"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect();
    findings.sort();
    (
        format!("{action} {node} -> {}", v["decision"]),
        out.status.code().unwrap_or(-1),
        findings,
    )
}

/// The pool, once every server's status has settled (not going up or
/// down), within 30 s.
fn settled_pool(st: &Stage<'_>) -> BTreeSet<(String, String)> {
    let lb: IpAddr = st.lab.addr("lb").into();
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let pool = common::pool_status(lb);
        let settled = pool.iter().all(|(_, s)| s == "UP" || s == "DOWN");
        if settled || Instant::now() > until {
            return pool.into_iter().collect();
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The state, the gate asked about the cluster without the nodes that
/// have not joined (`absent`).
fn seen(st: &Stage<'_>, absent: &[&str]) -> Seen {
    let verdicts = [("reboot", "m1"), ("reboot", "w1"), ("reboot", "w2")]
        .iter()
        .map(|(a, n)| gate(st, absent, a, n))
        .collect();
    Seen {
        members: members(st),
        pool: settled_pool(st),
        verdicts,
    }
}

/// The gate's verdicts before a phase: at least one allow and one deny
/// (else an unchanged verdict would show little).
fn mixed(s: &Seen) {
    let codes: BTreeSet<i32> = s.verdicts.iter().map(|v| v.1).collect();
    assert!(
        codes.contains(&0) && codes.contains(&1),
        "the gate allows something and denies something: {:?}",
        s.verdicts
    );
}

/// The cluster is healthy: every etcd member answers `endpoint health`,
/// every member votes, every pool server is UP.
fn healthy(st: &Stage<'_>, s: &Seen) {
    let tls = st.lab.etcd_tls();
    let out = Command::new("etcdctl")
        .arg(format!("--endpoints=https://{}:2379", st.lab.lab_addr(M1)))
        .arg("--cacert")
        .arg(&tls.ca)
        .arg("--cert")
        .arg(&tls.cert)
        .arg("--key")
        .arg(&tls.key)
        .args(["--command-timeout=5s", "endpoint", "health", "--cluster"])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "etcd endpoint health --cluster: {text}"
    );
    let healthy = text.lines().filter(|l| l.contains("is healthy")).count();
    assert_eq!(healthy, s.members.len(), "every member healthy: {text}");
    assert!(
        s.members.iter().all(|(_, learner)| !learner),
        "{:?}",
        s.members
    );
    assert!(!s.pool.is_empty());
    assert!(s.pool.iter().all(|(_, st)| st == "UP"), "{:?}", s.pool);
}

fn compare(what: &str, before: &Seen, after: &Seen) {
    assert_eq!(
        before.members, after.members,
        "{what}: etcd's members as before the phase"
    );
    assert_eq!(
        before.pool, after.pool,
        "{what}: the pool as before the phase"
    );
    assert_eq!(
        before.verdicts, after.verdicts,
        "{what}: hacli gate's verdicts as before the phase"
    );
    println!(
        "{what}: as before the phase:\n  members {:?}\n  pool {:?}",
        after.members, after.pool
    );
    for (req, code, findings) in &after.verdicts {
        println!("  gate {req} (exit {code}): {findings:?}");
    }
}

#[test]
fn failed_phases_roll_back_on_the_real_lab_and_the_resumed_run_completes() {
    if !std::path::Path::new("/usr/sbin/nft").exists() {
        testlab::skip::skip(
            "failed_phases_roll_back_on_the_real_lab_and_the_resumed_run_completes",
            "/usr/sbin/nft is missing (Debian nftables): the test drops the load balancer's packets to m3 with it",
        );
        return;
    }
    let _one = common::one_lab();
    let before: RefCell<Vec<Seen>> = RefCell::default();
    let rollbacks: RefCell<Vec<(String, Duration)>> = RefCell::default();
    let started = RefCell::new(Instant::now());
    let m = common::migrate_with(
        "failed_phases_roll_back_on_the_real_lab_and_the_resumed_run_completes",
        MigrateOptions {
            triggers: vec![
                // Before m3's provisioning: note the state, then make m3's
                // VM one whose sshd never answers.
                (
                    At::journal("done", "provision/m2/versions"),
                    Then::Kill(Some(Box::new(|st: &Stage<'_>| {
                        let s = seen(st, &["m2", "m3"]);
                        healthy(st, &s);
                        mixed(&s);
                        before.borrow_mut().push(s);
                        st.pve.set_sshd(113, false);
                        *started.borrow_mut() = Instant::now();
                    }))),
                ),
                // Before m3's join: note the state, then drop the load
                // balancer's packets to m3's apiserver.
                (
                    At::journal("done", "join/m2/load-balancer-up"),
                    Then::Kill(Some(Box::new(|st: &Stage<'_>| {
                        let s = seen(st, &["m3"]);
                        healthy(st, &s);
                        mixed(&s);
                        before.borrow_mut().push(s);
                        let m3 = st.lab.lab_addr(M3);
                        st.lab
                            .host("lb")
                            .exec_ok(&[
                                "sh",
                                "-c",
                                &format!(
                                    "nft add table ip {TABLE} && nft 'add chain ip {TABLE} out {{ type filter hook output priority 0; }}' && nft add rule ip {TABLE} out ip daddr {m3} tcp dport 6443 drop"
                                ),
                            ])
                            .expect("the nft rule on the load-balancer host");
                        *started.borrow_mut() = Instant::now();
                    }))),
                ),
                // m3 joined, its pool server never comes UP: the gate now
                // (m3 a member, in the pool, DOWN), for the record.
                (
                    At::journal("started", "join/m3/load-balancer-up"),
                    Then::Pause(Box::new(|st: &Stage<'_>| {
                        let pool = common::pool_status(st.lab.addr("lb").into());
                        println!(
                            "during the failed join: pool {pool:?}, members {:?}",
                            members(st)
                        );
                        for (a, n) in [("reboot", "m1"), ("reboot", "w1"), ("reboot", "w2")] {
                            let (req, code, findings) = gate(st, &[], a, n);
                            let blocking: Vec<_> =
                                findings.iter().filter(|f| f.1 != "pass").collect();
                            println!("  gate {req} (exit {code}): {blocking:?}");
                        }
                    })),
                ),
                // Every master joined and UP: their certificates lose the
                // API's DNS name before the cut-over.
                (
                    At::journal("done", "join/m3/load-balancer-up"),
                    Then::Kill(Some(Box::new(|st: &Stage<'_>| {
                        without_dns_san(st);
                        *started.borrow_mut() = Instant::now();
                    }))),
                ),
            ],
            on_rolled_back: Some(Box::new(|st: &Stage<'_>, v: &serde_json::Value| {
                let n = rollbacks.borrow().len();
                let phase = v["phase"].as_str().unwrap_or("?").to_string();
                let took = started.borrow().elapsed();
                rollbacks.borrow_mut().push((phase.clone(), took));
                if n == 2 {
                    vip_smoke_test_failed(st, v);
                    return;
                }
                let after = seen(st, if n == 0 { &["m2", "m3"] } else { &["m3"] });
                healthy(st, &after);
                let journal = std::fs::read_to_string(st.journal).unwrap();
                match n {
                    0 => {
                        assert_eq!(phase, "provision/m3", "{v}");
                        assert_eq!(v["step"], "provision/m3/not-joined", "{v}");
                        let error = v["error"].as_str().unwrap_or_default();
                        assert!(error.contains("sshd did not answer"), "{error}");
                        assert!(
                            common::journal_has(st.journal, "rolled-back", "provision/m3/clone"),
                            "{journal}"
                        );
                        // The VM is gone from Proxmox, and with it the host.
                        assert!(st.pve.vm(113).is_none(), "VM 113: {:?}", st.pve.vm(113));
                        assert_eq!(st.pve.host_is_on(113), None);
                        assert!(st.pve.vm(112).is_some(), "m2's VM stays");
                        assert!(
                            st.pve.count("DELETE", "/qemu/{vmid}") >= 1,
                            "a DELETE of the VM: {:?}",
                            st.pve
                                .calls()
                                .iter()
                                .map(|c| format!("{} {}", c.method, c.template))
                                .collect::<Vec<_>>()
                        );
                        compare("provision/m3 rolled back", &before.borrow()[0], &after);
                        // Fixed: m3's next VM answers.
                        st.pve.set_sshd(113, true);
                    }
                    1 => {
                        assert_eq!(phase, "join/m3", "{v}");
                        assert_eq!(v["step"], "join/m3/load-balancer-up", "{v}");
                        for step in ["join/m3/load-balancer", "join/m3/join"] {
                            assert!(
                                common::journal_has(st.journal, "rolled-back", step),
                                "{step}: {journal}"
                            );
                        }
                        // The member m3 had is gone; the VM stays.
                        let peer = format!("https://{}:2380", st.lab.lab_addr(M3));
                        assert!(
                            !after.members.iter().any(|(p, _)| *p == peer),
                            "{:?}",
                            after.members
                        );
                        assert!(
                            !after.pool.iter().any(|(s, _)| s == "m3"),
                            "{:?}",
                            after.pool
                        );
                        assert_eq!(st.pve.host_is_on(113), Some(true), "m3's VM stays");
                        // Its Node is deleted from the API.
                        assert!(
                            st.lab.node("m3").is_none(),
                            "m3's Node is still there: {:?}",
                            st.lab.node("m3")
                        );
                        // And m3 was `kubeadm reset -f`: no static pod
                        // manifest, no PKI, no kubeconfig left (read on the
                        // host over SSH, host key checked).
                        let left = common::ssh(
                            st.lab.client_key(),
                            st.known_hosts,
                            st.lab.lab_addr(M3).into(),
                            "ls -A /etc/kubernetes/manifests /etc/kubernetes/pki /var/lib/etcd; ls /etc/kubernetes/*.conf 2>/dev/null; true",
                        );
                        let left: Vec<&str> = left
                            .lines()
                            .filter(|l| !l.is_empty() && !l.ends_with(':'))
                            .collect();
                        assert!(left.is_empty(), "m3 was not reset: {left:?}");
                        compare("join/m3 rolled back", &before.borrow()[1], &after);
                        st.lab
                            .host("lb")
                            .exec_ok(&["nft", "delete", "table", "ip", TABLE])
                            .expect("the nft rule removed");
                    }
                    _ => panic!("a third rollback: {v}"),
                }
            })),
            clones: 3,
            apply_args: vec!["--boot-wait".into(), "15s".into()],
            ..MigrateOptions::default()
        },
    );
    let Some(m) = m else { return };
    let rollbacks = rollbacks.into_inner();
    assert_eq!(
        rollbacks
            .iter()
            .map(|(p, _)| p.as_str())
            .collect::<Vec<_>>(),
        ["provision/m3", "join/m3", "cutover"]
    );
    for (phase, took) in &rollbacks {
        println!(
            "{phase}: failed and rolled back {:.1} s after the failure was set up",
            took.as_secs_f64()
        );
    }
    // The journal: each failed phase failed once, was rolled back, then done.
    let journal = std::fs::read_to_string(&m.journal).unwrap();
    for step in [
        "provision/m3/not-joined",
        "join/m3/load-balancer-up",
        "cutover/vip-smoke-test",
    ] {
        assert!(common::journal_has(&m.journal, "failed", step), "{journal}");
        assert!(common::journal_has(&m.journal, "done", step), "{journal}");
    }
}

/// The masters' own addresses, by name.
fn masters(st: &Stage<'_>) -> [(&'static str, IpAddr); 3] {
    [("m1", M1), ("m2", M2), ("m3", M3)].map(|(n, k)| (n, IpAddr::from(st.lab.lab_addr(k))))
}

/// Re-issue every master's apiserver certificate with the cluster CA and
/// the same key, with the VIP's and the master's addresses but without
/// the API's DNS name; the original is kept in /root.
fn without_dns_san(st: &Stage<'_>) {
    let vip = st.lab.vip();
    for (n, addr) in masters(st) {
        let cmd = format!(
            "set -e; cd /etc/kubernetes/pki; cp -p apiserver.crt /root/hacli-test-apiserver.crt; \
             printf 'subjectAltName=IP:{vip},IP:{addr},DNS:kubernetes,DNS:{n}\\n' > /tmp/san.ext; \
             openssl req -new -key apiserver.key -subj /CN=kube-apiserver -out /tmp/a.csr; \
             openssl x509 -req -in /tmp/a.csr -CA ca.crt -CAkey ca.key -set_serial 4242 -days 1 -extfile /tmp/san.ext -out /tmp/a.crt; \
             cat /tmp/a.crt > apiserver.crt; openssl x509 -in apiserver.crt -noout -ext subjectAltName"
        );
        let sans = common::ssh(st.lab.client_key(), st.known_hosts, addr, &cmd);
        assert!(!sans.contains("k8s-api.testlab.lan"), "{n}: {sans}");
        println!(
            "{n}: apiserver certificate re-issued without the DNS name: {}",
            sans.trim()
        );
    }
}

/// The third rollback: the VIP's smoke test failed on the name, nothing
/// was cut over; the certificates are put back.
fn vip_smoke_test_failed(st: &Stage<'_>, v: &serde_json::Value) {
    assert_eq!(v["phase"], "cutover", "{v}");
    assert_eq!(v["step"], "cutover/vip-smoke-test", "{v}");
    let error = v["error"].as_str().unwrap_or_default();
    assert!(error.contains("k8s-api.testlab.lan"), "{error}");
    let journal = std::fs::read_to_string(st.journal).unwrap();
    assert!(
        !journal
            .lines()
            .any(|l| l.contains("\"step\":\"cutover/kubelet/")),
        "a client was moved before the VIP passed its smoke test: {journal}"
    );
    // No client was moved: m1's kubelet still talks to m1.
    let m1 = st.lab.lab_addr(M1);
    let kubelet = common::ssh(
        st.lab.client_key(),
        st.known_hosts,
        m1.into(),
        "grep server: /etc/kubernetes/kubelet.conf",
    );
    assert!(kubelet.contains(&format!("https://{m1}:6443")), "{kubelet}");
    for (n, addr) in masters(st) {
        common::ssh(
            st.lab.client_key(),
            st.known_hosts,
            addr,
            "cat /root/hacli-test-apiserver.crt > /etc/kubernetes/pki/apiserver.crt && rm /root/hacli-test-apiserver.crt",
        );
        println!("{n}: apiserver certificate put back");
    }
}
