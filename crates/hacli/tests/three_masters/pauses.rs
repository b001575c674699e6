//! Pauses on the migrated three-master lab (issue 21, items 3 and 4): the
//! world changes while a run is stopped or slow, and the run notices.
//!
//! 1. `hacli disrupt reboot m1` is SIGKILLed once it has asked m1 to reboot
//!    (the lab holds the reboot back), then m2 goes down: the resumed run
//!    asks the gate again and is refused, naming the rule, without asking
//!    for the reboot again. With m2 back and m1's reboot done, the resumed
//!    run sees m1's new boot id and finishes: m1 rebooted once.
//! 2. A ~20 s `hacli disrupt run m3 -- sleep 16` with a 3 s lock TTL: a
//!    prober tries to take the lock as another identity every 200 ms and
//!    never gets it; the Lease never expires during the run.
//! 3. The API made unreachable (an nft rule on m1, which the kubeconfig
//!    names) during a `sleep`: the lock is not renewed, the run stops at
//!    the next step boundary and restores m3 (uncordoned, backend ready).

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use testlab::cluster::{ClusterLab, M1, M2, POWER_REQUEST, VIP};
use testlab::host::Host;

const LEASE: &str = "hacli-disruption-lock";

/// What a hacli process needs to reach the lab, as this test's files (m1's
/// own are away while it reboots); the kubeconfig names m1's apiserver.
struct Reach {
    topology: PathBuf,
    kubeconfig: PathBuf,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    ssh_key: PathBuf,
    known_hosts: PathBuf,
    policy: PathBuf,
}

impl Reach {
    fn new(m: &common::Migrated) -> Reach {
        let dir = m.dir.join("pauses");
        std::fs::create_dir_all(&dir).unwrap();
        let copy = |from: &Path, name: &str| {
            let to = dir.join(name);
            std::fs::copy(from, &to).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
            to
        };
        let tls = m.lab.etcd_tls();
        let policy = dir.join("lab-reboot-policy.yaml");
        common::write(
            &policy,
            "name: lab-reboot\ndescription: reboot, without the 24h soak and calico-node (a lab just migrated)\nextends: reboot\ndisable: [soak, daemonsets]\n",
        );
        // Straight to m1's apiserver (the migrated admin.conf names the
        // VIP, whose pool has a dead m2 until HAProxy's checks see it).
        let (m1, vip) = (m.lab.lab_addr(M1), m.lab.lab_addr(VIP));
        let admin = std::fs::read_to_string(m.lab.admin_conf()).unwrap();
        let direct = admin.replace(
            &format!("https://{vip}:6443"),
            &format!("https://{m1}:6443"),
        );
        assert!(direct.contains(&format!("https://{m1}:6443")), "{admin}");
        let kubeconfig = dir.join("admin-m1.conf");
        common::write(&kubeconfig, &direct);
        Reach {
            topology: m.topology.clone(),
            kubeconfig,
            ca: copy(&tls.ca, "etcd-ca.crt"),
            cert: copy(&tls.cert, "etcd-client.crt"),
            key: copy(&tls.key, "etcd-client.key"),
            ssh_key: m.lab.client_key().to_path_buf(),
            known_hosts: m.known_hosts.clone(),
            policy,
        }
    }

    fn hacli(&self, args: &[&str]) -> Command {
        let mut c = common::hacli_isolated();
        c.args(args)
            .arg("--topology")
            .arg(&self.topology)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--etcd-cacert")
            .arg(&self.ca)
            .arg("--etcd-cert")
            .arg(&self.cert)
            .arg("--etcd-key")
            .arg(&self.key)
            .arg("--policy")
            .arg(&self.policy)
            .args(["--deadline", "5s", "--member-timeout", "3s"]);
        c
    }

    /// `hacli disrupt ARGS --backend live` with SSH and a journal; a
    /// command (`run`) after `--`, last.
    fn disrupt(&self, args: &[&str], journal: &Path) -> Command {
        let (args, command) = match args.iter().position(|a| *a == "--") {
            Some(i) => (&args[..i], &args[i..]),
            None => (args, &[][..]),
        };
        let mut c = self.hacli(&[&["disrupt"], args].concat());
        c.args(["--backend", "live", "--idle-bound", "2s"])
            .arg("--journal")
            .arg(journal)
            .arg("--ssh-identity")
            .arg(&self.ssh_key)
            .arg("--known-hosts")
            .arg(&self.known_hosts)
            .args(command);
        c
    }

    /// Wait until the etcd member at `addr` answers healthy, at most `within`.
    fn wait_member_healthy(&self, addr: std::net::Ipv4Addr, within: Duration) {
        let until = Instant::now() + within;
        loop {
            let o = Command::new("etcdctl")
                .arg("--endpoints")
                .arg(format!("https://{addr}:2379"))
                .arg("--cacert")
                .arg(&self.ca)
                .arg("--cert")
                .arg(&self.cert)
                .arg("--key")
                .arg(&self.key)
                .args(["--command-timeout=2s", "endpoint", "health"])
                .output()
                .unwrap();
            if o.status.success() {
                return;
            }
            assert!(
                Instant::now() < until,
                "etcd on {addr} is not healthy again: {}",
                common::text(&o)
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// Wait until the gate allows rebooting `node` (the cluster healthy
    /// again), at most `within`.
    fn wait_allowed(&self, node: &str, within: Duration) {
        let until = Instant::now() + within;
        loop {
            // Allowed but for `etcd-leader`: disrupt moves leadership itself.
            let o = self
                .hacli(&["gate", "reboot", node, "-o", "json"])
                .output()
                .unwrap();
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
            let blocking: Vec<&serde_json::Value> = v["findings"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|f| f["severity"] == "deny" || f["severity"] == "unknown")
                .filter(|f| f["rule"] != "etcd-leader")
                .collect();
            if v["findings"].is_array() && blocking.is_empty() {
                return;
            }
            assert!(
                Instant::now() < until,
                "the cluster is not healthy again: {}",
                common::text(&o)
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

/// Where the root side reads a host's power request (as the lab does).
fn power_request(h: &Host) -> PathBuf {
    h.try_path(POWER_REQUEST).unwrap_or_else(|_| {
        h.dir()
            .join("upper")
            .join(POWER_REQUEST.trim_start_matches('/'))
    })
}

fn journal_has_event(journal: &Path, event: &str) -> bool {
    std::fs::read_to_string(journal).is_ok_and(|t| {
        t.lines().any(|l| {
            serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| v["event"] == event)
        })
    })
}

fn lease(lab: &ClusterLab) -> Option<serde_json::Value> {
    lab.store()
        .get(testlab::ApiServer::resource("leases"), "kube-system", LEASE)
        .ok()
}

/// Run on the migrated lab `m` (three masters m1, m2, m3, healthy); leaves
/// them healthy.
pub fn run(m: &mut common::Migrated) {
    m.lab.serve_proxmox(m.pve.clone());
    let r = Reach::new(m);
    killed_reboot_resumed_after_m2_went_down(m, &r);
    a_3s_lock_is_held_through_a_20s_run(m, &r);
    the_api_unreachable_mid_run_stops_it_and_restores(m, &r);
}

fn killed_reboot_resumed_after_m2_went_down(m: &mut common::Migrated, r: &Reach) {
    let t = Instant::now();
    let journal = m.dir.join("pauses").join("reboot-m1.jsonl");
    let boots = m.lab.host("m1").boots();
    let boot_id = m.lab.host("m1").boot_id();
    let served = m.lab.power_events().len();
    let request = power_request(m.lab.host("m1"));
    let args = ["reboot", "m1", "--identity", "pauses-reboot-m1"];
    let child = r
        .disrupt(&args, &journal)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The lab serves no power request meanwhile: the reboot is asked and
    // held back. Killed once it is asked (boot id recorded before).
    let until = Instant::now() + Duration::from_secs(120);
    while !(request.exists() && journal_has_event(&journal, "boot-id")) {
        assert!(
            Instant::now() < until,
            "the reboot of m1 was never asked: {}",
            std::fs::read_to_string(&journal).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let asked = std::fs::read_to_string(&request).unwrap();
    let _ = Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().unwrap();
    println!("hacli disrupt reboot m1 (killed):\n{}", common::text(&out));
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(9)
    );

    // m2 (VM 112, a clone) goes down while the run is stopped: powered
    // off from inside, the Proxmox stand-in carries it out (and only
    // that: m1's reboot stays held back).
    let m2 = m.lab.lab_addr(M2);
    common::ssh(m.lab.client_key(), &m.known_hosts, m2.into(), "poweroff");
    let until = Instant::now() + Duration::from_secs(30);
    while m.pve.host_is_on(112) != Some(false) {
        m.pve.take_power_requests();
        assert!(Instant::now() < until, "m2 did not power off");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = r
        .disrupt(&[&args[..], &["--resume"]].concat(), &journal)
        .output()
        .unwrap();
    let all = common::text(&out);
    println!("hacli disrupt reboot m1 --resume with m2 down:\n{all}");
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("BLOCKED before reboot/m1/reboot"), "{all}");
    assert!(
        // Deny, or unknown if m2's member does not answer in time.
        all.contains("etcd-quorum ("),
        "the rule is named: {all}"
    );
    assert_eq!(
        std::fs::read_to_string(&request).ok().as_deref(),
        Some(asked.as_str()),
        "the reboot was asked again"
    );
    assert_eq!(m.lab.host("m1").boot_id(), boot_id, "m1 rebooted anyway");

    // m2 back; the lab carries out the reboot asked before the kill; the
    // resumed run sees m1's new boot id and does not ask again.
    m.pve.power_on_host(112).unwrap();
    r.wait_member_healthy(m2, Duration::from_secs(90));
    m.lab
        .wait_node_ready("m2", Duration::from_secs(60))
        .unwrap();
    let until = Instant::now() + Duration::from_secs(60);
    while !m.lab.power_events()[served..]
        .iter()
        .any(|p| p.host == "m1" && p.up.is_some())
    {
        m.lab.serve_power_requests().unwrap();
        assert!(Instant::now() < until, "the lab did not reboot m1");
        std::thread::sleep(Duration::from_millis(50));
    }
    m.lab
        .wait_node_ready("m1", Duration::from_secs(60))
        .unwrap();
    let out = m.lab.serving_power_requests(|| {
        r.disrupt(&[&args[..], &["--resume"]].concat(), &journal)
            .output()
            .unwrap()
    });
    let all = common::text(&out);
    println!("hacli disrupt reboot m1 --resume, m2 back:\n{all}");
    assert_eq!(out.status.code(), Some(0), "{all}");
    // The reboot step is done without acting: m1's boot id changed.
    let log = std::fs::read_to_string(&journal).unwrap();
    assert!(
        log.lines().any(|l| {
            serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| {
                v["event"] == "done" && v["step"] == "reboot/m1/reboot" && v["skipped"] == true
            })
        }),
        "{log}"
    );
    let reboots: Vec<_> = m.lab.power_events()[served..]
        .iter()
        .filter(|p| p.host == "m1")
        .collect();
    assert_eq!(reboots.len(), 1, "m1 rebooted once: {reboots:?}");
    assert_eq!(m.lab.host("m1").boots(), boots + 1);
    assert!(!request.exists(), "a second reboot was asked");
    println!(
        "killed reboot, m2 down, resume refused, then finished: {:.1} s",
        t.elapsed().as_secs_f64()
    );
}

fn a_3s_lock_is_held_through_a_20s_run(m: &mut common::Migrated, r: &Reach) {
    r.wait_allowed("m3", Duration::from_secs(90));
    let journal = m.dir.join("pauses").join("held-m3.jsonl");
    let identity = "pauses-held-m3";
    let t = Instant::now();
    let child = r
        .disrupt(
            &[
                "run",
                "m3",
                "--drain",
                "false",
                "--lock-ttl",
                "3s",
                "--identity",
                identity,
                "--",
                "sleep",
                "16",
            ],
            &journal,
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The prober: another identity trying to take the lock every 200 ms
    // while the run holds it (from its first record to its last), and the
    // Lease as stored, never expired.
    let done = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new((
        0u32,
        Vec::<String>::new(),
        Vec::<String>::new(),
    )));
    let prober = {
        let (done, seen, journal) = (done.clone(), seen.clone(), journal.clone());
        let kubeconfig = r.kubeconfig.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let client = rt
                .block_on(kubeadm::kube_client(Some(&kubeconfig)))
                .unwrap();
            let lock = kubeadm::DisruptionLock::new(
                client,
                kubeadm::ObjectRef::parse("lease", &format!("kube-system/{LEASE}")).unwrap(),
            );
            while !journal_has_event(&journal, "begin") {
                if done.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            while !done.load(Ordering::Relaxed) && !journal_has_event(&journal, "finished") {
                let got = rt.block_on(lock.acquire(
                    "prober",
                    Duration::from_secs(3),
                    jiff::Timestamp::now(),
                ));
                let mut s = seen.lock().unwrap();
                s.0 += 1;
                match got {
                    Ok(kubeadm::Acquire::HeldBy { holder, .. }) if holder == identity => {}
                    Ok(kubeadm::Acquire::HeldBy { holder, .. }) => {
                        s.1.push(format!("held by {holder}"))
                    }
                    Ok(kubeadm::Acquire::Acquired) => {
                        s.1.push(format!("the prober took it at {:?}", t.elapsed()));
                        let _ = rt.block_on(lock.release("prober"));
                    }
                    Err(e) => s.2.push(e.chain()),
                }
                drop(s);
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let mut renewals = std::collections::BTreeSet::new();
    let mut expired = Vec::new();
    while !journal_has_event(&journal, "finished") && t.elapsed() < Duration::from_secs(120) {
        if journal_has_event(&journal, "begin")
            && let Some(l) = lease(&m.lab)
            && l["spec"]["holderIdentity"] == identity
        {
            let renewed: jiff::Timestamp = l["spec"]["renewTime"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or_default();
            let ttl = l["spec"]["leaseDurationSeconds"].as_i64().unwrap_or(0);
            let now = jiff::Timestamp::now();
            if renewed + jiff::SignedDuration::from_secs(ttl) <= now {
                expired.push(format!("renewed {renewed}, ttl {ttl} s, at {now}"));
            }
            renewals.insert(renewed);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    done.store(true, Ordering::Relaxed);
    prober.join().unwrap();
    let took = t.elapsed();
    let all = common::text(&out);
    println!("hacli disrupt run m3 --lock-ttl 3s -- sleep 16:\n{all}");
    assert_eq!(out.status.code(), Some(0), "{all}");
    let (probes, taken, errors) = seen.lock().unwrap().clone();
    println!(
        "3 s lock over a {:.1} s run: {probes} takeover attempts refused, {} renewals seen, probe errors: {errors:?}",
        took.as_secs_f64(),
        renewals.len()
    );
    assert!(
        taken.is_empty(),
        "another identity took the lock: {taken:?}"
    );
    assert!(expired.is_empty(), "the Lease expired mid-run: {expired:?}");
    assert!(probes >= 20, "the prober tried only {probes} times");
    assert!(
        renewals.len() >= 5,
        "renewed {} times in {took:?}",
        renewals.len()
    );
    assert!(all.contains("lock released"), "{all}");
}

fn the_api_unreachable_mid_run_stops_it_and_restores(m: &mut common::Migrated, r: &Reach) {
    let journal = m.dir.join("pauses").join("api-down-m3.jsonl");
    let child = r
        .disrupt(
            &[
                "run",
                "m3",
                "--drain",
                "false",
                "--lock-ttl",
                "3s",
                "--identity",
                "pauses-api-down",
                "--",
                "sleep",
                "8",
            ],
            &journal,
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(90);
    while !common::journal_has(&journal, "started", "run/m3/run") {
        assert!(Instant::now() < until, "the command never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The apiserver the kubeconfig names stops answering for 5 s.
    let m1 = m.lab.host("m1");
    let nft = |cmd: &str| {
        let o = m1.exec(&["sh", "-c", cmd]).unwrap();
        assert!(o.status.success(), "{cmd}: {o:?}");
    };
    nft(
        "nft add table inet hacli_pauses && nft 'add chain inet hacli_pauses in { type filter hook input priority 0; }' && nft add rule inet hacli_pauses in tcp dport 6443 drop",
    );
    std::thread::sleep(Duration::from_secs(5));
    nft("nft delete table inet hacli_pauses");
    let out = child.wait_with_output().unwrap();
    let all = common::text(&out);
    println!("hacli disrupt run m3, the API unreachable mid-run:\n{all}");
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("FAILED at step run/m3/wait-healthy: stopped before acting"),
        "{all}"
    );
    assert!(all.contains("not renewed for"), "{all}");
    assert!(all.contains("restored"), "{all}");
    assert!(
        !common::journal_has(&journal, "started", "run/m3/wait-healthy"),
        "acted after losing the lock"
    );
    assert!(common::journal_has(
        &journal,
        "rolled-back",
        "run/m3/cordon"
    ));
    let node = m.lab.node("m3").unwrap();
    assert_ne!(node["spec"]["unschedulable"], true, "m3 left cordoned");
    r.wait_allowed("m1", Duration::from_secs(60));
}
