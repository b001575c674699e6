//! Live benchmarks against the lab (real TLS etcd, a real HAProxy on the VIP,
//! the API stand-in behind it).
//!
//! 1. Gate latency: `hacli gate reboot FOLLOWER` (a fresh process each time,
//!    as a pipeline runs it) against the way pipelines do it today, a shell
//!    script running `kubectl get nodes`, `etcdctl endpoint health --cluster`
//!    and `etcdctl endpoint status --cluster`; same lab, same run. Healthy,
//!    then with one member paused (SIGSTOP). Targets: p50 < 50 ms healthy,
//!    under the 2 s deadline paused, >= 10x faster than the script.
//! 2. `hacli sentinel` over 1,000 cycles (period 0): peak RSS (VmHWM) and RSS
//!    growth from cycle 100 to cycle 1,000. Targets: < 20 MiB, < 1 MiB.
//!
//! `cargo bench -p hacli --bench live` (HACLI_BENCH_RUNS=N, default 30;
//! HACLI_BENCH_CYCLES=N, default 1000).

use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testlab::Lab;

fn runs() -> usize {
    std::env::var("HACLI_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30)
}

/// Runs per block of one tool before switching to the other.
const BLOCK: usize = 5;

fn cycles() -> usize {
    std::env::var("HACLI_BENCH_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000)
}

/// The built-in `reboot` policy: every rule, the load balancer's included
/// (the lab's HAProxy is observed through its runtime API).
const POLICY: &str = "reboot";

fn hacli_args(lab: &Lab, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hacli"));
    c.args(args)
        .arg("--topology")
        .arg(&lab.topology)
        .arg("--kubeconfig")
        .arg(&lab.kubeconfig)
        // etcd endpoints and certificates come from the lab's topology
        // (etcd.endpoints, etcd.pki), as a user would declare them.
        .env_remove("KUBECONFIG");
    c
}

fn gate_once(lab: &Lab, policy: &str, target: &str) -> (Duration, i32) {
    let started = Instant::now();
    let out = hacli_args(
        lab,
        &[
            "gate",
            "reboot",
            target,
            "--policy",
            policy,
            "--deadline",
            "2s",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .status()
    .unwrap();
    (started.elapsed(), out.code().unwrap_or(-1))
}

fn script(lab: &Lab) -> String {
    let pki = lab.etcd_pki.display();
    let eps = lab.etcd_endpoints().join(",");
    format!(
        "set -e\nkubectl --kubeconfig {kc} get nodes >/dev/null\n\
         export ETCDCTL_API=3\n\
         flags='--endpoints={eps} --cacert={pki}/ca.crt --cert={pki}/healthcheck-client.crt --key={pki}/healthcheck-client.key'\n\
         etcdctl $flags endpoint health --cluster >/dev/null 2>&1 || true\n\
         etcdctl $flags endpoint status --cluster >/dev/null 2>&1 || true\n",
        kc = lab.kubeconfig.display()
    )
}

fn script_once(script: &str) -> Duration {
    let started = Instant::now();
    let st = Command::new("bash")
        .args(["-c", script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "the shell equivalent failed");
    started.elapsed()
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn latency(lab: &Lab, label: &str, target: &str) {
    let policy = POLICY;
    let script = script(lab);
    let n = runs();
    gate_once(lab, policy, target); // warm the page cache
    let mut gate = Vec::new();
    let mut codes = std::collections::BTreeMap::new();
    let mut shell = Vec::new();
    // Alternating blocks of BLOCK runs of each (as a pipeline or the
    // sentinel runs one tool again and again), so drift hits both alike and
    // neither runs right after the other's burst of server-side work.
    let mut done = 0;
    while done < n {
        let k = BLOCK.min(n - done);
        for _ in 0..k {
            let (d, code) = gate_once(lab, policy, target);
            gate.push(d);
            *codes.entry(code).or_insert(0) += 1;
        }
        for _ in 0..k {
            shell.push(script_once(&script));
        }
        done += k;
    }
    let (g50, g95, s50, s95) = (
        pct(&mut gate, 0.5),
        pct(&mut gate, 0.95),
        pct(&mut shell, 0.5),
        pct(&mut shell, 0.95),
    );
    println!(
        "gate latency [{label}] n={n}: hacli gate p50 {:.1} ms p95 {:.1} ms (exit codes {codes:?}); \
         shell (kubectl + etcdctl x2) p50 {:.1} ms p95 {:.1} ms; ratio p50 {:.1}x",
        ms(g50),
        ms(g95),
        ms(s50),
        ms(s95),
        s50.as_secs_f64() / g50.as_secs_f64()
    );
}

fn rss_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn sentinel_rss(lab: &Lab, node: &str) {
    let n = cycles();
    let policy = POLICY;
    let required = lab.dir().join("reboot-required");
    std::fs::write(&required, "").unwrap();
    let mut child = hacli_args(
        lab,
        &[
            "sentinel", "--node", node, "--policy", policy, "--period", "0s",
        ],
    )
    .arg("--cycles")
    .arg(n.to_string())
    .arg("--reboot-required")
    .arg(&required)
    .arg("--sentinel")
    .arg(lab.dir().join("reboot-required.gated"))
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let pid = child.id();
    let out = std::io::BufReader::new(child.stdout.take().unwrap());
    let started = Instant::now();
    let (mut at_100, mut last, mut lines, mut peak) = (0, 0, 0usize, 0);
    let mut first_line = String::new();
    for line in out.lines() {
        let line = line.unwrap();
        lines += 1;
        if lines == 1 {
            first_line = line.clone();
        }
        let rss = rss_kib(pid, "VmRSS:").unwrap_or(last);
        // Sampled every cycle: after its last line the process may be gone
        // before it could be read once more.
        peak = peak.max(rss_kib(pid, "VmHWM:").unwrap_or(0));
        if lines == 100 {
            at_100 = rss;
        }
        last = rss;
        if lines == n {
            break;
        }
    }
    let peak = peak.max(rss_kib(pid, "VmHWM:").unwrap_or(0));
    let status = child.wait().unwrap();
    let took = started.elapsed();
    assert!(status.success(), "sentinel exited {status}");
    assert_eq!(lines, n, "one line per cycle");
    println!(
        "sentinel {n} cycles in {:.1} s ({:.1} ms/cycle): peak RSS {:.1} MiB, RSS at cycle 100 {:.1} MiB, at cycle {n} {:.1} MiB, growth {:+.2} MiB\n  first line: {first_line}",
        took.as_secs_f64(),
        ms(took) / n as f64,
        peak as f64 / 1024.0,
        at_100 as f64 / 1024.0,
        last as f64 / 1024.0,
        (last as f64 - at_100 as f64) / 1024.0
    );
}

fn main() {
    // `cargo test --benches` runs bench targets with --bench absent: stay quick.
    if !std::env::args().any(|a| a == "--bench") {
        println!("live benchmarks: run with `cargo bench -p hacli --bench live`");
        return;
    }
    let have = |c: &str| Command::new(c).arg("--version").output().is_ok();
    if !have("kubectl") || !have("etcdctl") {
        println!(
            "SKIPPED: live benchmarks: kubectl and etcdctl are needed for the shell comparison"
        );
        return;
    }
    let Some(mut lab) = Lab::start_or_skip("live benchmarks") else {
        return;
    };
    let leader = lab.wait_leader(Duration::from_secs(10)).unwrap();
    let followers: Vec<String> = lab
        .masters
        .iter()
        .map(|m| m.0.clone())
        .filter(|m| *m != leader)
        .collect();
    latency(&lab, "healthy", &followers[0]);
    // Where one healthy gate's time goes, probe by probe.
    let t = hacli_args(
        &lab,
        &[
            "gate",
            "reboot",
            &followers[0],
            "--policy",
            POLICY,
            "--timings",
        ],
    )
    .stdout(Stdio::null())
    .output()
    .unwrap();
    print!("one healthy gate, {}", String::from_utf8_lossy(&t.stderr));
    sentinel_rss(&lab, &followers[0]);
    lab.pause_member(&followers[1]);
    latency(&lab, &format!("{} paused", followers[1]), &followers[0]);
    lab.resume_member(&followers[1]);
}
