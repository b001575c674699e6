//! The lab with three masters, the end state of a migration, shared by the
//! live tests: `hacli apply --backend live` migrates the lab's seed cluster (one
//! master with a one-member etcd, two workers, all lab hosts; the kubeadm
//! stand-in) to three masters behind the VIP of a real HAProxy, cloning the
//! new masters through the Proxmox stand-in: the plan comes from `hacli
//! plan`, the run goes through the executor and its journal, and the end
//! state is read from the real systems (etcd's member list, HAProxy's
//! `show stat`, the files and certificates on each host).

#![allow(dead_code)] // each test file uses its own part of this module

pub mod secrets;

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use testlab::cluster::{ClusterLab, M1, M2, M3, W1, W2};
use testlab::proxmox::{Inventory, ProxmoxLab, PveNode, PveOptions, PveVm};

pub const TEMPLATE: u32 = 9000;

/// One lab at a time, across test threads and test processes (a file lock
/// in the temporary directory): two clusters of lab hosts on a 2-core
/// machine make every health check slow. Hold the guard for the test.
pub fn one_lab() -> nix::fcntl::Flock<File> {
    let path = std::env::temp_dir().join("hacli-cluster-lab.lock");
    let f = File::create(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .unwrap_or_else(|(_, e)| panic!("locking {}: {e}", path.display()))
}

/// The lab after the migration: three masters (m1, and m2/m3 cloned
/// through the Proxmox stand-in as VMs 112 and 113), two workers, the
/// VIP on the load-balancer host `lb` with three servers UP.
pub struct Migrated {
    pub lab: ClusterLab,
    pub pve: Arc<ProxmoxLab>,
    /// The lab's directory (removed with the lab).
    pub dir: PathBuf,
    /// The three-master topology (the migration's target): `proxmox:`,
    /// `ssh:` and the managed load balancer included.
    pub topology: PathBuf,
    /// known_hosts with every host, the clones included.
    pub known_hosts: PathBuf,
    /// The migration's journal.
    pub journal: PathBuf,
    /// hacli's stderr of the whole migration.
    pub log: String,
}

pub fn hacli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hacli"))
}

/// hacli with none of the caller's own settings in its environment (a
/// kubeconfig, topology, identity, etcd, load balancer or Proxmox of the
/// person running the tests): the lab's are given as flags.
pub fn hacli_isolated() -> Command {
    let mut c = hacli();
    for v in [
        "KUBECONFIG",
        "HACLI_IDENTITY",
        "HACLI_TOPOLOGY",
        "HACLI_LB_RUNTIME_API",
        "HACLI_ETCD_ENDPOINTS",
        "HACLI_ETCD_PKI",
        "PROXMOX_VE_ENDPOINT",
        "PROXMOX_VE_INSECURE",
    ] {
        c.env_remove(v);
    }
    c
}

/// A finished process's exit code, stdout and stderr, for assertion messages.
pub fn text(o: &std::process::Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The Proxmox cluster the lab's VMs live on: host `pve`, the seed's VMs
/// and a cloud-init template whose key is the lab's client key.
pub fn inventory(client_public: &str) -> Inventory {
    let mut vms = vec![
        PveVm::new(111, "m1", "pve", true, 4, 2),
        PveVm::new(121, "w1", "pve", true, 4, 2),
        PveVm::new(122, "w2", "pve", true, 4, 2),
    ];
    let mut template = PveVm::new(TEMPLATE, "debian-12-k8s", "pve", false, 2, 2);
    template.template = true;
    template.disk_gib = 8;
    template
        .config
        .insert("sshkeys".into(), percent_encode(client_public.trim()));
    template.config.insert("ciuser".into(), "root".into());
    vms.push(template);
    Inventory {
        nodes: vec![PveNode {
            name: "pve".into(),
            memory: 256 * (1 << 30),
            cpus: 64,
        }],
        vms,
    }
}

/// Proxmox stores `sshkeys` URL-encoded.
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn runtime_api(addr: IpAddr, command: &str) -> String {
    let mut s = TcpStream::connect((addr, 9999)).expect("HAProxy's runtime API answers");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(format!("{command}\n").as_bytes()).unwrap();
    let mut out = String::new();
    for line in BufReader::new(s).lines() {
        match line {
            Ok(l) => {
                out.push_str(&l);
                out.push('\n');
            }
            Err(_) => break,
        }
    }
    out
}

/// The pool's servers and their status, from `show stat`.
pub fn pool_status(lb: IpAddr) -> Vec<(String, String)> {
    let stat = runtime_api(lb, "show stat");
    parse_pool_stat(&stat).unwrap_or_else(|| panic!("not `show stat`'s CSV: {stat}"))
}

/// The apiserver pool's servers and their status in HAProxy's `show stat`
/// CSV; None when it has no such header.
pub fn parse_pool_stat(stat: &str) -> Option<Vec<(String, String)>> {
    let mut lines = stat.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .trim_start_matches("# ")
        .split(',')
        .collect();
    let col = |n: &str| header.iter().position(|h| *h == n);
    let (px, sv, st) = (col("pxname")?, col("svname")?, col("status")?);
    Some(
        lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|f| f.len() > st && f[px].starts_with("k8s-apiserver"))
            .filter(|f| f[sv] != "BACKEND" && f[sv] != "FRONTEND")
            .map(|f| (f[sv].to_string(), f[st].to_string()))
            .collect(),
    )
}

/// Run `cmd` on the host at `addr` over SSH (the Proxmox clones are not the
/// cluster lab's own hosts), host keys checked.
pub fn ssh(key: &Path, known_hosts: &Path, addr: IpAddr, cmd: &str) -> String {
    let out = Command::new("ssh")
        .arg("-i")
        .arg(key)
        .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args(["-o", "ConnectTimeout=5"])
        .arg(format!("root@{addr}"))
        .arg(cmd)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ssh {addr} {cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Whether the journal has a record of `event` for `step`.
pub fn journal_has(journal: &Path, event: &str, step: &str) -> bool {
    std::fs::read_to_string(journal).is_ok_and(|t| {
        t.lines().any(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .is_ok_and(|v| v["event"] == event && v["step"] == step)
        })
    })
}

/// When a trigger fires during a `hacli apply` run.
#[derive(Debug, Clone)]
pub enum At {
    /// The journal has a record of `event` for `step` (for `started`, 300
    /// ms later, to land inside the step's effect).
    Journal(String, String),
    /// The Proxmox stand-in has answered at least `count` calls of
    /// `method` whose path template ends in `suffix` (its `count`).
    Pve(String, String, usize),
}

impl At {
    pub fn journal(event: &str, step: &str) -> At {
        At::Journal(event.into(), step.into())
    }
    fn fired(&self, journal: &Path, pve: &ProxmoxLab) -> bool {
        match self {
            At::Journal(event, step) => journal_has(journal, event, step),
            At::Pve(method, suffix, count) => pve.count(method, suffix) >= *count,
        }
    }
    fn describe(&self) -> String {
        match self {
            At::Journal(event, step) => format!("{event} {step}"),
            At::Pve(method, suffix, count) => {
                format!("the Proxmox stand-in answered {method} …{suffix} {count} times")
            }
        }
    }
}

/// What the lab looks like to a hook.
pub struct Stage<'a> {
    pub lab: &'a ClusterLab,
    pub pve: &'a ProxmoxLab,
    pub dir: &'a Path,
    /// The three-master topology (the migration's target).
    pub topology: &'a Path,
    pub known_hosts: &'a Path,
    pub journal: &'a Path,
}

pub type Hook<'a> = Box<dyn FnMut(&Stage<'_>) + 'a>;

/// Called with a rolled-back run's outcome (JSON).
pub type OnRolledBack<'a> = Box<dyn FnMut(&Stage<'_>, &serde_json::Value) + 'a>;

/// What a trigger does to the running `hacli apply`.
pub enum Then<'a> {
    /// SIGKILL it (then the hook, if any, sees the lab with the process
    /// dead), and resume from the journal.
    Kill(Option<Hook<'a>>),
    /// SIGSTOP it, run the hook, SIGCONT it: the lab as it is at that
    /// point of the run, frozen.
    Pause(Hook<'a>),
}

/// How [`migrate_with`] runs the migration.
pub struct MigrateOptions<'a> {
    /// Triggers, in order: each fires once, in the run going when it
    /// fires; every one must have fired by the end.
    pub triggers: Vec<(At, Then<'a>)>,
    /// Called once, before the first `hacli apply`.
    pub before_run: Option<Hook<'a>>,
    /// A run that ends with its phase rolled back: called with the
    /// outcome (JSON), then the run is resumed. Without it, a rollback
    /// fails the test.
    pub on_rolled_back: Option<OnRolledBack<'a>>,
    /// Clone calls the Proxmox stand-in must have answered by the end.
    pub clones: usize,
    /// More arguments for every `hacli apply`.
    pub apply_args: Vec<String>,
}

impl Default for MigrateOptions<'_> {
    fn default() -> Self {
        MigrateOptions {
            triggers: Vec::new(),
            before_run: None,
            on_rolled_back: None,
            clones: 2,
            apply_args: Vec::new(),
        }
    }
}

/// The migration, `hacli apply` SIGKILLed when the journal shows each
/// `(event, step)` of `crash_at` in turn, and resumed each time.
pub fn migrate(test: &str, crash_at: &[(&str, &str)]) -> Option<Migrated> {
    migrate_with(
        test,
        MigrateOptions {
            triggers: crash_at
                .iter()
                .map(|(event, step)| (At::journal(event, step), Then::Kill(None)))
                .collect(),
            ..MigrateOptions::default()
        },
    )
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").args([sig, &pid.to_string()]).status();
}

pub fn migrate_with(test: &str, mut opts: MigrateOptions<'_>) -> Option<Migrated> {
    let mut lab = ClusterLab::start_or_skip(test)?;
    let dir = lab.dir().to_path_buf();
    lab.add_load_balancer(&[])
        .expect("the load-balancer host starts");
    let lb_addr: IpAddr = lab.addr("lb").into();
    let vip: IpAddr = lab.vip().into();
    // The VIP does not exist before the migration: the plan creates it.
    lab.host("lb")
        .exec_ok(&[
            "sh",
            "-c",
            &format!("ip -o addr show | awk '/ {vip}\\//{{print $2}}' | while read d; do ip addr del {vip}/32 dev $d; done; ! ip -o addr show | grep -q ' {vip}/'"),
        ])
        .expect("the VIP is taken off the load-balancer host");

    // Proxmox: its clones of the template become lab hosts provisioned
    // like the lab's nodes (stand-ins, lab configuration).
    let client_public = lab.client_public().to_string();
    let pve = Arc::new(
        ProxmoxLab::start_with(
            inventory(&client_public),
            PveOptions {
                task_time: Duration::from_millis(100),
                ..PveOptions::default()
            },
        )
        .expect("the Proxmox stand-in starts"),
    );
    pve.attach_hosts_with(lab.net.clone(), lab.template().provisioner());

    // known_hosts: the lab's hosts; the clones' keys are new and recorded
    // with --accept-new-host-key (said loudly).
    let known_hosts = dir.join("known_hosts.migrate");
    std::fs::copy(lab.known_hosts(), &known_hosts).unwrap();
    let a = |k: u8| lab.lab_addr(k);
    let from = dir.join("from.yaml");
    write(
        &from,
        &format!(
            "cluster: testlab
controlPlaneEndpoint: {{ address: {m1}, port: 6443 }}
network: {{ cidr: {subnet} }}
etcd: {{ mode: stacked }}
hypervisors:
  - {{ name: pve, memoryGiB: 256, cpus: 64 }}
nodes:
  - {{ name: m1, role: control-plane, address: {m1}, hypervisor: pve, vmid: 111, cpus: 2, memoryGiB: 4, diskGiB: 32 }}
  - {{ name: w1, role: worker, address: {w1}, hypervisor: pve, vmid: 121, cpus: 2, memoryGiB: 4, diskGiB: 32 }}
  - {{ name: w2, role: worker, address: {w2}, hypervisor: pve, vmid: 122, cpus: 2, memoryGiB: 4, diskGiB: 32 }}
",
            m1 = a(M1),
            w1 = a(W1),
            w2 = a(W2),
            subnet = lab.net.subnet(),
        ),
    );
    let to = dir.join("to.yaml");
    let extra = format!(
        "proxmox: {{ endpoint: \"{}\", fingerprint: \"{}\" }}\nssh: {{ user: root, identityFile: {}, knownHosts: {} }}\n",
        pve.endpoint(),
        pve.fingerprint_hex(),
        lab.client_key().display(),
        known_hosts.display()
    );
    // Health checks every 2 s: the apiserver stand-ins (Python, a read
    // from etcd per /readyz) answer slower than the lab's 200 ms default on
    // a loaded 2-core machine, and a check that times out flaps the server.
    let to_text = lab.topology_yaml(&extra).replace(
        "interval: 200ms, fall: 2, rise: 1",
        "interval: 2s, fall: 3, rise: 2",
    );
    assert!(to_text.contains("interval: 2s"), "{to_text}");
    write(&to, &to_text);

    let plan = dir.join("plan.json");
    let out = hacli()
        .args(["plan", "--from"])
        .arg(&from)
        .arg("--to")
        .arg(&to)
        .args(["--template", &TEMPLATE.to_string(), "-o", "json"])
        .env("PROXMOX_VE_API_TOKEN", pve.api_token())
        .env_remove("PROXMOX_VE_ENDPOINT")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "hacli plan: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    write(&plan, &String::from_utf8_lossy(&out.stdout));

    // Watch etcd's real member list while the run goes: every new member
    // must be seen as a learner before it is a voter.
    let stop = Arc::new(AtomicBool::new(false));
    let seen_learner: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let watcher = {
        let (stop, seen) = (stop.clone(), seen_learner.clone());
        let tls = lab.etcd_tls();
        let endpoint = format!("https://{}:2379", a(M1));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let out = Command::new("etcdctl")
                    .args(["--endpoints", &endpoint, "--cacert"])
                    .arg(&tls.ca)
                    .arg("--cert")
                    .arg(&tls.cert)
                    .arg("--key")
                    .arg(&tls.key)
                    .args(["--command-timeout=2s", "member", "list", "-w", "json"])
                    .output();
                if let Ok(o) = out
                    && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&o.stdout)
                {
                    for m in v["members"].as_array().into_iter().flatten() {
                        if m["isLearner"].as_bool() == Some(true) {
                            // A learner that has not started has no name yet:
                            // its peer URL says who it is.
                            let who = m["peerURLs"][0].as_str().unwrap_or("?").to_string();
                            seen.lock().unwrap().insert(who);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    // Run; manual steps (pinned workloads, external kubeconfigs) are
    // confirmed as a person would, then the run resumes.
    let journal = dir.join("journal.jsonl");
    let tls = lab.etcd_tls();
    let mut confirm: Vec<String> = Vec::new();
    let mut reports: Vec<std::path::PathBuf> = Vec::new();
    let mut crashes: Vec<String> = Vec::new();
    let mut fired = 0usize;
    let mut rolled_back = 0usize;
    let mut log = String::new();
    // Every run's stdout, searched for secrets at the end.
    let mut stdouts = String::new();
    let stage = Stage {
        lab: &lab,
        pve: &pve,
        dir: &dir,
        topology: &to,
        known_hosts: &known_hosts,
        journal: &journal,
    };
    if let Some(h) = opts.before_run.as_mut() {
        h(&stage);
    }
    let outcome = loop {
        let mut cmd = hacli();
        cmd.args(["apply"])
            .arg(&plan)
            .arg("--journal")
            .arg(&journal)
            .args(["--backend", "live", "--accept-new-host-key", "-o", "json"])
            .arg("--kubeconfig")
            .arg(lab.admin_conf())
            .arg("--etcd-cacert")
            .arg(&tls.ca)
            .arg("--etcd-cert")
            .arg(&tls.cert)
            .arg("--etcd-key")
            .arg(&tls.key)
            .arg("--snapshot-dir")
            .arg(dir.join("snapshots"))
            .env("PROXMOX_VE_API_TOKEN", pve.api_token())
            .env_remove("KUBECONFIG")
            .env_remove("PROXMOX_VE_ENDPOINT");
        // Availability while migrating: steady reads, to m1 before the
        // cut-over and through the VIP after it, one report per run.
        let report = dir.join(format!("measure-{}.json", reports.len()));
        cmd.args([
            "--measure",
            "--measure-rate",
            "5",
            "--measure-path",
            "/api/v1/nodes",
        ])
        .arg("--measure-kubeconfig")
        .arg(lab.admin_conf())
        .arg("--measure-json")
        .arg(&report);
        reports.push(report);
        if journal.exists() {
            cmd.arg("--resume");
        }
        for c in &confirm {
            cmd.args(["--confirm", c]);
        }
        cmd.args(&opts.apply_args);
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let read = |mut r: Box<dyn std::io::Read + Send>| {
            std::thread::spawn(move || {
                let mut b = Vec::new();
                let _ = r.read_to_end(&mut b);
                b
            })
        };
        let out_reader = read(Box::new(child.stdout.take().unwrap()));
        let err_reader = read(Box::new(child.stderr.take().unwrap()));
        // Watch for the next trigger while it runs.
        let mut killed_at = None;
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if let Some((at, then)) = opts.triggers.get_mut(fired)
                && at.fired(&journal, &pve)
            {
                if matches!(at, At::Journal(e, _) if e == "started") {
                    std::thread::sleep(Duration::from_millis(300));
                }
                fired += 1;
                match then {
                    Then::Kill(hook) => {
                        signal(pid, "-KILL");
                        let st = child.wait().unwrap();
                        killed_at = Some(at.describe());
                        if let Some(h) = hook.as_mut() {
                            h(&stage);
                        }
                        break st;
                    }
                    Then::Pause(hook) => {
                        signal(pid, "-STOP");
                        println!("paused hacli apply at: {}", at.describe());
                        hook(&stage);
                        signal(pid, "-CONT");
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let out = std::process::Output {
            status,
            stdout: out_reader.join().unwrap(),
            stderr: err_reader.join().unwrap(),
        };
        stdouts.push_str(&String::from_utf8_lossy(&out.stdout));
        {
            use std::os::unix::process::ExitStatusExt as _;
            if let (Some(at), Some(9)) = (killed_at, out.status.signal()) {
                println!("killed hacli apply at: {at}");
                log.push_str(&String::from_utf8_lossy(&out.stderr));
                crashes.push(at);
                continue;
            }
        }
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        log.push_str(&stderr);
        let v: serde_json::Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("apply's JSON: {e}\n{stdout}\n{stderr}"));
        match v["outcome"].as_str().or(v.as_str()) {
            Some("awaiting-confirmation") => {
                let step = v["step"].as_str().unwrap().to_string();
                assert!(!confirm.contains(&step), "{step} asked twice:\n{stderr}");
                println!("confirming the manual step {step}");
                confirm.push(step);
            }
            Some("rolled-back") if opts.on_rolled_back.is_some() => {
                rolled_back += 1;
                println!(
                    "phase {} rolled back at {}: {}",
                    v["phase"], v["step"], v["error"]
                );
                if let Some(h) = opts.on_rolled_back.as_mut() {
                    h(&stage, &v);
                }
            }
            _ => break (v, stdout, stderr, out.status),
        }
    };
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    let (v, stdout, stderr, status) = outcome;
    println!("{log}");
    assert!(
        status.success(),
        "apply did not complete: {stdout}\n{stderr}\nhaproxy.cfg:\n{}\nshow stat:\n{}",
        lab.host("lb")
            .exec_ok(&["cat", "/etc/haproxy/haproxy.cfg"])
            .unwrap_or_default(),
        runtime_api(lb_addr, "show stat"),
    );
    assert_eq!(v["outcome"], "completed", "{stdout}");

    // The availability report, per step with any failure or gap, and in total.
    let (mut sent, mut failed, mut gap) = (0u64, 0u64, 0f64);
    println!("availability while migrating (reads at 5/s):");
    for r in &reports {
        // A killed run wrote no report.
        let Ok(text) = std::fs::read_to_string(r) else {
            continue;
        };
        let m: serde_json::Value = serde_json::from_str(&text).unwrap();
        sent += m["total"]["sent"].as_u64().unwrap();
        failed += m["total"]["failed"].as_u64().unwrap();
        gap = gap.max(m["longestGapMs"].as_f64().unwrap());
        println!("  errors: {}", m["total"]["errors"]);
        for st in m["steps"].as_array().unwrap() {
            if st["stats"]["sent"] == 0 {
                continue;
            }
            let f = st["stats"]["failed"].as_u64().unwrap();
            let declared = st["declaredMs"].as_f64();
            println!(
                "  {:<40} via {:<6} sent {:>4} failed {:>3} longest gap {:>6.0} ms declared {}",
                st["id"].as_str().unwrap(),
                st["via"].as_str().unwrap_or("?"),
                st["stats"]["sent"],
                f,
                st["longestGapMs"].as_f64().unwrap_or(0.0),
                declared.map_or("none".to_string(), |d| format!("{d:.0} ms"))
            );
        }
    }
    println!("  total: {sent} reads, {failed} failed, longest gap {gap:.0} ms");
    assert!(sent > 0, "the measure sent no read");
    if opts.triggers.is_empty() {
        // The README's figure for the uninterrupted migration: 0 failed.
        assert!(sent > 100, "the measure sent {sent} reads");
        assert_eq!(
            failed, 0,
            "{failed} of {sent} reads failed while migrating (the README states 0 failed)"
        );
    } else {
        // Killed runs, rollbacks that take a master out of the pool: the
        // README states no figure for these; the reads must reach the API.
        assert!(
            failed < sent / 2,
            "most reads failed ({failed} of {sent}): the measure does not reach the API"
        );
    }

    // Three voters, the two new ones seen as learners first.
    let members = lab.etcd_members().unwrap();
    let names: BTreeSet<String> = members.iter().map(|m| m.name.clone()).collect();
    assert_eq!(
        names,
        ["m1", "m2", "m3"].map(String::from).into(),
        "{members:?}"
    );
    assert_eq!(members.len(), 3, "{members:?}");
    assert!(members.iter().all(|m| !m.is_learner), "{members:?}");
    assert_eq!(
        fired,
        opts.triggers.len(),
        "every trigger fired (the crashes: {crashes:?})"
    );
    let learners = seen_learner.lock().unwrap().clone();
    for k in [M2, M3] {
        let peer = format!("https://{}:2380", a(k));
        assert!(
            learners.contains(&peer),
            "{peer} was never seen as a learner: {learners:?}"
        );
    }

    // HAProxy: three servers UP.
    let pool = pool_status(lb_addr);
    let up: BTreeSet<String> = pool
        .iter()
        .filter(|(_, s)| s.starts_with("UP"))
        .map(|(n, _)| n.clone())
        .collect();
    assert_eq!(up.len(), 3, "{pool:?}");
    assert_eq!(pool.len(), 3, "no second pool server: {pool:?}");

    // Every kubelet.conf names the VIP; every apiserver certificate carries
    // the SANs, as openssl on each host reads it.
    let server = format!("https://{vip}:6443");
    let on = |n: &str, cmd: &str| {
        let k = match n {
            "m1" => M1,
            "m2" => M2,
            "m3" => M3,
            "w1" => W1,
            _ => W2,
        };
        ssh(lab.client_key(), &known_hosts, a(k).into(), cmd)
    };
    for n in ["m1", "m2", "m3", "w1", "w2"] {
        let text = on(n, "cat /etc/kubernetes/kubelet.conf");
        assert!(
            text.contains(&format!("server: {server}")),
            "{n}'s kubelet.conf: {text}"
        );
    }
    for n in ["m1", "m2", "m3"] {
        let sans = on(
            n,
            "openssl x509 -in /etc/kubernetes/pki/apiserver.crt -noout -ext subjectAltName",
        );
        assert!(sans.contains(&format!("IP Address:{vip}")), "{n}: {sans}");
        assert!(sans.contains("DNS:k8s-api.testlab.lan"), "{n}: {sans}");
    }

    // Before the first client was moved, the VIP passed its smoke test:
    // /readyz through it by its DNS name and by its address, verified
    // with the cluster CA.
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&journal)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let at = |event: &str, step: &str| {
        lines
            .iter()
            .rposition(|v| v["event"] == event && v["step"] == step)
            .unwrap_or_else(|| panic!("no `{event}` of {step} in the journal"))
    };
    assert!(
        at("done", "cutover/vip-smoke-test") < at("started", "cutover/kubelet/m1"),
        "the VIP's smoke test passed before the first cut-over"
    );

    // The VMs the Proxmox stand-in holds: the two clones, running.
    for vmid in [112u32, 113] {
        assert_eq!(pve.host_is_on(vmid), Some(true), "VM {vmid}");
    }
    assert_eq!(
        pve.count("POST", "/clone"),
        opts.clones,
        "one clone per new master (and per VM a rollback deleted), never a second"
    );
    if opts.on_rolled_back.is_some() {
        println!("phases rolled back and resumed: {rolled_back}");
    }
    // No secret in the journal, the output or a file hacli wrote, searched
    // for by value: the join tokens and certificate keys the kubeadm
    // stand-in issued on the masters, the Proxmox token, the admin
    // kubeconfig's client key.
    let mut found = secrets::Secrets::new();
    for n in ["m1", "m2", "m3"] {
        let record = on(
            n,
            &format!("cat {} 2>/dev/null; true", testlab::cluster::ISSUED_SECRETS),
        );
        secrets::add_issued(&mut found, n, &record);
    }
    let names = found.names().join(", ");
    assert!(
        names.contains("join token") && names.contains("certificate key"),
        "the migration issued no join token or no certificate key: {names}"
    );
    found.add("Proxmox token secret", pve.token_secret());
    let admin = std::fs::read_to_string(lab.admin_conf()).unwrap();
    for l in admin.lines() {
        if let Some(v) = l.trim().strip_prefix("client-key-data:") {
            found.add("admin.conf's client key", v.trim());
        }
    }
    let journal_text = std::fs::read_to_string(&journal).unwrap();
    found.assert_absent("the journal", &journal_text);
    found.assert_absent("hacli apply's stderr", &log);
    found.assert_absent("hacli apply's stdout", &stdouts);
    found.assert_absent(
        "hacli plan's output",
        &std::fs::read_to_string(&plan).unwrap(),
    );
    let files = found.assert_absent_in_files(&dir, |_| true);
    println!(
        "no secret ({} values: {names}, ...) in the journal, the outputs or {files} files",
        found.len()
    );
    Some(Migrated {
        lab,
        pve,
        dir,
        topology: to,
        known_hosts,
        journal,
        log,
    })
}
