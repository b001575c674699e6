//! The sentinel DaemonSet's cost to the cluster (issue 27): N `hacli
//! sentinel` processes (one per node) against the lab's API stand-in (its
//! request counter, by verb, path, selector and consistency) and its real
//! 3-member etcd (its own gRPC counters, scraped from /metrics), 1% of the
//! nodes with a reboot pending (at least one). For each N: the requests and
//! bytes per second at the API and at etcd, the API reads a real apiserver
//! would send on to etcd (the consistent ones), and the fleet's memory (sum
//! of RSS and of PSS), after ("now": idle nodes ask nothing, pending ones
//! read their own slice from the watch cache) and before (the hidden
//! `--observe-every-cycle`: every node observes the whole cluster with
//! consistent reads every cycle).
//!
//! Loopback only. Not a timed test: it prints figures.
//!
//! `cargo bench -p hacli --bench fleet` (scripts/bench-fleet.sh), with
//! HACLI_FLEET_SIZES (default 30,100,300), HACLI_FLEET_PERIOD (seconds,
//! default 30; the processes start spread over one period), HACLI_FLEET_WINDOW
//! (seconds measured, default 30),
//! HACLI_FLEET_PODS (pods per node besides calico-node, default 10).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use testlab::Lab;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// What one run measured.
#[derive(Debug, Default)]
struct Figures {
    api_requests: f64,
    api_bytes: f64,
    /// Consistent reads at the API: what a real apiserver sends to etcd.
    api_consistent: f64,
    etcd_requests: f64,
    etcd_bytes: f64,
    rss_mib: f64,
    pss_mib: f64,
    /// Sentinel cycles finished per second, fleet-wide.
    cycles: f64,
    /// Of those, cycles that ended in an error (per second), and the first
    /// error seen.
    errors: f64,
    first_error: Option<String>,
    /// The API's busiest requests: (verb path [selector], per second).
    top: Vec<(String, f64)>,
}

/// etcd's gRPC counters summed over the members: (requests handled, bytes
/// received + sent), read with curl and the lab's client certificate.
fn etcd_counters(lab: &Lab) -> (f64, f64) {
    let pki = &lab.etcd_pki;
    let (mut reqs, mut bytes) = (0.0, 0.0);
    for url in lab.etcd_endpoints() {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "5", "--cacert"])
            .arg(pki.join("ca.crt"))
            .arg("--cert")
            .arg(pki.join("healthcheck-client.crt"))
            .arg("--key")
            .arg(pki.join("healthcheck-client.key"))
            .arg(format!("{url}/metrics"))
            .output()
            .expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout);
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((name, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let v: f64 = value.parse().unwrap_or(0.0);
            if name.starts_with("grpc_server_handled_total") {
                reqs += v;
            } else if name.starts_with("etcd_network_client_grpc_received_bytes_total")
                || name.starts_with("etcd_network_client_grpc_sent_bytes_total")
            {
                bytes += v;
            }
        }
    }
    (reqs, bytes)
}

fn proc_kib(pid: u32, file: &str, key: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0.0)
}

struct Fleet(Vec<Child>);

impl Drop for Fleet {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
        }
        for c in &mut self.0 {
            let _ = c.wait();
        }
    }
}

/// Nodes w1..wN in the stand-in (Ready, calico-node running, `pods` other
/// pods each) and a topology listing them.
fn seed(lab: &Lab, n: usize, pods: usize) -> std::path::PathBuf {
    let mut topology = std::fs::read_to_string(&lab.topology).unwrap();
    for i in 2..=n {
        let name = format!("w{i}");
        // Never contacted: workers are not probed.
        let ip = IpAddr::V4(Ipv4Addr::new(127, 99, (i / 250) as u8, (i % 250 + 1) as u8));
        lab.set_node(&name, ip, false, true).unwrap();
        lab.set_daemon_pod("calico-node", &name, true).unwrap();
        topology.push_str(&format!(
            "  - {{ name: {name}, role: worker, address: {ip} }}\n"
        ));
    }
    let all: Vec<String> = lab
        .masters
        .iter()
        .map(|m| m.0.clone())
        .chain((1..=n).map(|i| format!("w{i}")))
        .collect();
    for node in &all {
        for j in 0..pods {
            lab.store()
                .put(json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": format!("app-{node}-{j}"), "namespace": "default",
                                 "labels": {"app": format!("app-{j}")}},
                    "spec": {"nodeName": node, "containers": [{"name": "app", "image": "registry.example.invalid/app:1.0"}]},
                    "status": {"phase": "Running"}
                }))
                .unwrap();
        }
    }
    let path = lab.dir().join(format!("topology-{n}.yaml"));
    std::fs::write(&path, topology).unwrap();
    path
}

fn run(lab: &Lab, topology: &std::path::Path, n: usize, before: bool) -> Figures {
    let period = env("HACLI_FLEET_PERIOD", 30u64);
    let window = Duration::from_secs(env("HACLI_FLEET_WINDOW", 30u64));
    let pending = n.div_ceil(100);
    let dir = lab.dir().join(format!("fleet-{n}-{before}"));
    std::fs::create_dir_all(&dir).unwrap();
    // The lock free for every run.
    let _ = lab.store().remove(
        testlab::ApiServer::resource("leases"),
        "kube-system",
        "hacli-disruption-lock",
    );
    let mut fleet = Fleet(Vec::new());
    for i in 1..=n {
        let node = format!("w{i}");
        let required = dir.join(format!("{node}.reboot-required"));
        // Spread over the fleet: w1, w101, w201, ...
        if (i - 1) % 100 == 0 && (i - 1) / 100 < pending {
            std::fs::write(&required, "").unwrap();
        }
        let mut c = Command::new(env!("CARGO_BIN_EXE_hacli"));
        c.args(["sentinel", "--node", &node, "--period"])
            .arg(format!("{period}s"))
            .arg("--topology")
            .arg(topology)
            .arg("--kubeconfig")
            .arg(&lab.kubeconfig)
            .arg("--reboot-required")
            .arg(&required)
            .arg("--sentinel")
            .arg(dir.join(format!("{node}.gated")))
            .args(["--deadline", "10s", "--member-timeout", "8s"])
            .env_remove("KUBECONFIG")
            .env_remove("HACLI_LB_RUNTIME_API")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join(format!("{node}.log"))).unwrap())
            .stderr(Stdio::null());
        if before {
            c.arg("--observe-every-cycle");
        }
        fleet.0.push(c.spawn().expect("hacli runs"));
        // Started over one period, as a DaemonSet's pods come up: no
        // thundering herd.
        std::thread::sleep(Duration::from_secs(period) / n as u32);
    }
    // Every process through its first cycle (start-up costs aside): each
    // logs one line per cycle.
    let logs: Vec<std::path::PathBuf> = (1..=n).map(|i| dir.join(format!("w{i}.log"))).collect();
    let lines = || -> Vec<usize> {
        logs.iter()
            .map(|p| {
                std::fs::read_to_string(p)
                    .map(|t| t.lines().count())
                    .unwrap_or(0)
            })
            .collect()
    };
    // Error lines logged after the first `skip` lines of each log.
    let errors = |skip: &[usize]| -> (usize, Option<String>) {
        let mut n = 0;
        let mut first = None;
        for (p, s) in logs.iter().zip(skip) {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            for l in text.lines().skip(*s).filter(|l| l.contains(": error: ")) {
                n += 1;
                first.get_or_insert_with(|| l.to_string());
            }
        }
        (n, first)
    };
    let ready_by = Instant::now() + Duration::from_secs(300);
    while lines().contains(&0) && Instant::now() < ready_by {
        std::thread::sleep(Duration::from_millis(500));
    }
    let first = lines();
    let not_started = first.iter().filter(|&&l| l == 0).count();
    if not_started > 0 {
        println!("  ({not_started} of {n} sentinels finished no cycle within 300 s)");
    }
    lab.store().reset_request_counts();
    let (r0, b0) = etcd_counters(lab);
    let started = Instant::now();
    std::thread::sleep(window);
    let secs = started.elapsed().as_secs_f64();
    let counts = lab.store().request_counts();
    let (r1, b1) = etcd_counters(lab);
    let (errs, first_error) = errors(&first);
    let cycles: usize = lines()
        .iter()
        .zip(&first)
        .map(|(now, then)| now.saturating_sub(*then))
        .sum();
    let (mut rss, mut pss) = (0.0, 0.0);
    for c in &fleet.0 {
        rss += proc_kib(c.id(), "status", "VmRSS:");
        pss += proc_kib(c.id(), "smaps_rollup", "Pss:");
    }
    let mut f = Figures {
        etcd_requests: (r1 - r0) / secs,
        etcd_bytes: (b1 - b0) / secs,
        rss_mib: rss / 1024.0,
        pss_mib: pss / 1024.0,
        cycles: cycles as f64 / secs,
        errors: errs as f64 / secs,
        first_error,
        ..Default::default()
    };
    let mut by: BTreeMap<String, f64> = BTreeMap::new();
    // HAProxy's own health checks (no credentials) are not the fleet's.
    for (k, c) in counts.iter().filter(|(k, _)| k.authenticated) {
        f.api_requests += c.requests as f64 / secs;
        f.api_bytes += c.bytes as f64 / secs;
        if !k.cached && (k.verb == "get" || k.verb == "list") {
            f.api_consistent += c.requests as f64 / secs;
        }
        let sel = if k.selector.is_empty() {
            String::new()
        } else {
            format!(" [{}]", k.selector)
        };
        let path = k
            .path
            .split('/')
            .map(|s| {
                if s.starts_with('w') && s[1..].chars().all(|c| c.is_ascii_digit()) {
                    "NODE"
                } else {
                    s
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        let sel = sel
            .split("spec.nodeName=")
            .next()
            .map(|s| {
                if sel.contains("spec.nodeName=") {
                    format!("{s}spec.nodeName=NODE]")
                } else {
                    s.to_string()
                }
            })
            .unwrap_or_default();
        *by.entry(format!(
            "{} {path}{sel}{}",
            k.verb,
            if k.cached { " (cache)" } else { "" }
        ))
        .or_default() += c.requests as f64 / secs;
    }
    let mut top: Vec<(String, f64)> = by.into_iter().collect();
    top.sort_by(|a, b| b.1.total_cmp(&a.1));
    top.truncate(6);
    f.top = top;
    drop(fleet);
    f
}

fn main() {
    // `cargo bench` passes --bench; nothing else is taken.
    let Some(lab) = Lab::start_or_skip("fleet") else {
        return;
    };
    let sizes: Vec<usize> = std::env::var("HACLI_FLEET_SIZES")
        .unwrap_or_else(|_| "30,100,300".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let pods = env("HACLI_FLEET_PODS", 10usize);
    println!(
        "fleet: period {}s, window {}s, {pods} pods per node besides calico-node, 1% of nodes pending (at least 1)",
        env("HACLI_FLEET_PERIOD", 30u64),
        env("HACLI_FLEET_WINDOW", 30u64)
    );
    let mut seeded = 1;
    let mut topology = lab.topology.clone();
    for &n in &sizes {
        if n > seeded {
            topology = seed(&lab, n, pods);
            seeded = n;
        }
        for before in [false, true] {
            let f = run(&lab, &topology, n, before);
            println!(
                "N={n:>4} {:<6}: {:>6.1} cycles/s; API {:>7.1} req/s {:>9.0} B/s (consistent reads, to etcd on a real apiserver: {:>6.1}/s); etcd {:>6.1} req/s {:>7.0} B/s; fleet RSS {:>6.0} MiB, PSS {:>5.0} MiB",
                if before { "before" } else { "now" },
                f.cycles,
                f.api_requests,
                f.api_bytes,
                f.api_consistent,
                f.etcd_requests,
                f.etcd_bytes,
                f.rss_mib,
                f.pss_mib
            );
            let per = |x: f64| if f.cycles > 0.0 { x / f.cycles } else { 0.0 };
            println!(
                "          per cycle: API {:.2} requests, {:.0} bytes; etcd {:.2} requests; cycles ending in an error: {:.2}/s{}",
                per(f.api_requests),
                per(f.api_bytes),
                per(f.etcd_requests),
                f.errors,
                f.first_error
                    .as_deref()
                    .map(|e| format!(" (first: {})", &e[..e.len().min(300)]))
                    .unwrap_or_default()
            );
            for (what, rate) in &f.top {
                println!("          {rate:>8.2}/s {what}");
            }
        }
    }
}
