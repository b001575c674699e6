//! `hacli sentinel --metrics-addr`: the lab's sentinel scraped after a
//! denying cycle and after an allowing one, the text parsed as Prometheus
//! exposition format; `/healthz`; `--log-format json`. SKIPPED without etcd
//! or haproxy (crates/testlab).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use prometheus_parse::{Scrape, Value};
use serde_json::json;
use testlab::Lab;

/// A running sentinel: its metrics address and its log lines.
struct Sentinel {
    child: Child,
    addr: SocketAddr,
    lines: mpsc::Receiver<String>,
    /// The stderr lines before the metrics address.
    banner: Vec<String>,
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sentinel {
    fn start(lab: &Lab, node: &str, extra: &[&str]) -> Sentinel {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hacli"))
            .args(["sentinel", "--node", node, "--period", "1s"])
            .args(["--metrics-addr", "127.0.0.1:0", "--log-format", "json"])
            .arg("--reboot-required")
            .arg(lab.dir().join("reboot-required"))
            .arg("--sentinel")
            .arg(lab.dir().join("reboot-required.gated"))
            .arg("--topology")
            .arg(&lab.topology)
            .arg("--kubeconfig")
            .arg(&lab.kubeconfig)
            .arg("--etcd-endpoints")
            .arg(lab.etcd_endpoints().join(","))
            .arg("--etcd-pki")
            .arg(&lab.etcd_pki)
            .args(["--deadline", "6s", "--member-timeout", "4s"])
            .args(extra)
            .env_remove("KUBECONFIG")
            .env_remove("HACLI_LB_RUNTIME_API")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("hacli runs");
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        let mut banner = Vec::new();
        loop {
            line.clear();
            err.read_line(&mut line).unwrap();
            if line.is_empty() || line.starts_with("metrics on http://") {
                break;
            }
            banner.push(line.trim_end().to_string());
        }
        let addr = line
            .strip_prefix("metrics on http://")
            .and_then(|l| l.split_once("/metrics"))
            .map(|(a, _)| a.parse().unwrap())
            .unwrap_or_else(|| panic!("no metrics address in: {line} after {banner:?}"));
        std::thread::spawn(move || for _ in err.lines() {});
        let (tx, lines) = mpsc::channel();
        let out = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for l in out.lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Sentinel {
            child,
            addr,
            lines,
            banner,
        }
    }

    /// The next cycle's JSON log line whose remediation decision has
    /// this class.
    fn wait_remediation(&self, class: &str) -> serde_json::Value {
        let until = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            let Ok(line) = self.lines.recv_timeout(left) else {
                break;
            };
            let v: serde_json::Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: not JSON: {line}"));
            if v["remediation"]["class"] == class {
                return v;
            }
            seen.push(line);
        }
        panic!("no remediation decision of class {class} within 60s: {seen:#?}");
    }

    /// The next cycle's JSON log line whose decision is `decision`.
    fn wait_for(&self, decision: &str) -> serde_json::Value {
        let until = Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            let Ok(line) = self.lines.recv_timeout(left) else {
                break;
            };
            let v: serde_json::Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: not JSON: {line}"));
            if v["decision"] == decision {
                return v;
            }
            seen.push(line);
        }
        panic!("no cycle decided {decision} within 30s: {seen:#?}");
    }

    fn get(&self, path: &str) -> (u16, String) {
        get(self.addr, path)
    }

    fn scrape(&self) -> Metrics {
        let (status, body) = self.get("/metrics");
        assert_eq!(status, 200, "{body}");
        let scrape = Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
            .unwrap_or_else(|e| panic!("{e}: {body}"));
        Metrics { scrape, body }
    }
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n").unwrap();
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
}

struct Metrics {
    scrape: Scrape,
    body: String,
}

impl Metrics {
    /// The value of `name` with these labels (every sample must match one
    /// at most once).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<f64> = self
            .scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                Value::Gauge(v) | Value::Counter(v) | Value::Untyped(v) => v,
                _ => panic!("{name}: not a scalar"),
            })
            .collect();
        assert_eq!(
            found.len(),
            1,
            "{name} {labels:?}: {found:?} in\n{}",
            self.body
        );
        found[0]
    }

    fn verdict(&self) -> (f64, f64, f64) {
        let d = |d| self.value("hacli_sentinel_verdict", &[("decision", d)]);
        (d("allow"), d("deny"), d("unknown"))
    }

    fn rule(&self, rule: &str, result: &str) -> f64 {
        self.value(
            "hacli_sentinel_rule_result",
            &[("rule", rule), ("result", result)],
        )
    }
}

#[test]
fn metrics_follow_a_denying_then_an_allowing_cycle() {
    let Some(lab) = Lab::start_or_skip("metrics_follow_a_denying_then_an_allowing_cycle") else {
        return;
    };
    let leader = lab
        .wait_leader(Duration::from_secs(10))
        .expect("etcd has a leader");
    let followers: Vec<String> = lab
        .masters
        .iter()
        .map(|m| m.0.clone())
        .filter(|m| *m != leader)
        .collect();
    let node = followers[0].clone();
    std::fs::write(lab.dir().join("reboot-required"), "").unwrap();
    // Another pipeline holds the disruption lock (to reboot the other
    // follower), taken through hacli itself.
    let hacli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_hacli"))
            .args(args)
            .arg("--kubeconfig")
            .arg(&lab.kubeconfig)
            .env_remove("HACLI_IDENTITY")
            .env_remove("KUBECONFIG")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
    };
    hacli(&[
        "gate",
        "reboot",
        &followers[1],
        "--lock",
        "--identity",
        "other-pipeline",
        "--topology",
        lab.topology.to_str().unwrap(),
        "--etcd-endpoints",
        &lab.etcd_endpoints().join(","),
        "--etcd-pki",
        lab.etcd_pki.to_str().unwrap(),
        "--deadline",
        "6s",
        "--member-timeout",
        "4s",
    ]);
    let sentinel = Sentinel::start(&lab, &node, &[]);

    // Denied: the lock is held by the other pipeline.
    let log = sentinel.wait_for("deny");
    assert_eq!(log["node"], node.as_str());
    assert_eq!(log["rebootRequired"], true);
    assert_eq!(log["blocking"], json!(["lock"]), "{log}");
    let m = sentinel.scrape();
    assert_eq!(m.verdict(), (0.0, 1.0, 0.0));
    assert_eq!(m.rule("lock", "deny"), 1.0);
    assert_eq!(m.rule("lock", "pass"), 0.0);
    // Passes, or warns that a follower's reboot leaves exactly quorum.
    assert_eq!(
        m.rule("etcd-quorum", "pass") + m.rule("etcd-quorum", "warn"),
        1.0
    );
    assert_eq!(m.rule("etcd-quorum", "deny"), 0.0);
    assert_eq!(m.value("hacli_sentinel_reboot_required", &[]), 1.0);
    assert_eq!(m.value("hacli_sentinel_lock_held", &[]), 0.0);
    assert_eq!(m.value("hacli_sentinel_gated_file_exists", &[]), 0.0);
    let cycles = m.value("hacli_sentinel_cycles_total", &[]);
    assert!(cycles >= 1.0, "{}", m.body);
    let took = m.value("hacli_sentinel_cycle_duration_seconds", &[]);
    assert!(took > 0.0 && took < 10.0, "{took}");
    assert!(
        !m.body.contains("hacli_sentinel_probe_errors_total{"),
        "{}",
        m.body
    );
    let (status, body) = sentinel.get("/healthz");
    assert_eq!(status, 200, "{body}");

    // The other pipeline is done: allowed, lock taken, gated file created.
    hacli(&["lock", "release", "--identity", "other-pipeline"]);
    let log = sentinel.wait_for("allow");
    assert_eq!(log["lockHeld"], true, "{log}");
    assert_eq!(log["gatedFile"], true, "{log}");
    let m = sentinel.scrape();
    assert_eq!(m.verdict(), (1.0, 0.0, 0.0));
    assert_eq!(m.rule("lock", "pass"), 1.0);
    assert_eq!(m.rule("lock", "deny"), 0.0);
    assert_eq!(m.value("hacli_sentinel_lock_held", &[]), 1.0);
    assert_eq!(m.value("hacli_sentinel_gated_file_exists", &[]), 1.0);
    assert!(lab.dir().join("reboot-required.gated").exists());
    assert!(m.value("hacli_sentinel_cycles_total", &[]) > cycles);
    assert_eq!(m.value("hacli_sentinel_cycle_errors_total", &[]), 0.0);
    drop(sentinel);

    // A probe that fails (Prometheus on a closed loopback port) is
    // counted by probe. The built-in reboot policy checks alerts when it is
    // given Prometheus (issue 22): one that does not answer makes the
    // verdict unknown, the gated file goes, and our lock is left to lapse.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}/", closed.local_addr().unwrap().port());
    drop(closed);
    let sentinel = Sentinel::start(&lab, &node, &["--prometheus-url", &url]);
    let log = sentinel.wait_for("unknown");
    assert_eq!(log["probeErrors"], json!(["alerts"]), "{log}");
    assert_eq!(log["gatedFile"], false, "{log}");
    let _ = sentinel.wait_for("unknown");
    let m = sentinel.scrape();
    assert!(
        m.value("hacli_sentinel_probe_errors_total", &[("probe", "alerts")]) >= 2.0,
        "{}",
        m.body
    );
    assert_eq!(m.verdict(), (0.0, 0.0, 1.0));
    assert_eq!(m.rule("alerts", "unknown"), 1.0);
    assert_eq!(m.value("hacli_sentinel_gated_file_exists", &[]), 0.0);
    assert!(!lab.dir().join("reboot-required.gated").exists());
    assert_eq!(m.value("hacli_sentinel_lock_held", &[]), 1.0);
    let (status, _) = sentinel.get("/healthz");
    assert_eq!(status, 200);
}

/// A loopback listener that counts the connections made to it (and
/// answers none).
struct Counter {
    addr: SocketAddr,
    count: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Counter {
    fn start() -> Counter {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let c = count.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                drop(s);
            }
        });
        Counter { addr, count }
    }
    fn connections(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The sentinel's requests at the API stand-in (HAProxy's health checks,
/// which carry no credentials, left out).
fn sentinel_requests(lab: &Lab) -> Vec<(testlab::RequestKey, testlab::Counted)> {
    lab.store()
        .request_counts()
        .into_iter()
        .filter(|(k, _)| k.authenticated)
        .collect()
}

fn run_cycles(lab: &Lab, node: &str, cycles: &str, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hacli"))
        .args(["sentinel", "--node", node, "--period", "100ms"])
        .args(["--cycles", cycles, "--log-format", "json"])
        .arg("--reboot-required")
        .arg(lab.dir().join("reboot-required"))
        .arg("--sentinel")
        .arg(lab.dir().join("reboot-required.gated"))
        .arg("--topology")
        .arg(&lab.topology)
        .arg("--kubeconfig")
        .arg(&lab.kubeconfig)
        .arg("--etcd-pki")
        .arg(&lab.etcd_pki)
        .args(["--deadline", "6s", "--member-timeout", "4s"])
        .args(extra)
        .env_remove("KUBECONFIG")
        .env_remove("HACLI_LB_RUNTIME_API")
        .output()
        .expect("hacli runs")
}

#[test]
fn an_idle_cycle_asks_the_cluster_nothing_and_a_pending_one_a_bounded_number_of_small_reads() {
    let Some(lab) = Lab::start_or_skip(
        "an_idle_cycle_asks_the_cluster_nothing_and_a_pending_one_a_bounded_number_of_small_reads",
    ) else {
        return;
    };
    // Pods the worker's sentinel has no business reading: a cluster-wide
    // pod list would carry every one of them.
    for i in 0..40 {
        lab.store()
            .put(json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("web-{i}"), "namespace": "default", "labels": {"app": "web"}},
                "spec": {"nodeName": "m1", "containers": [{"name": "web", "image": "nginx:1.27"}]},
                "status": {"phase": "Running"}
            }))
            .unwrap();
    }
    let _ = std::fs::remove_file(lab.dir().join("reboot-required"));
    // etcd, the load balancer and Prometheus all point at a listener that
    // counts connections: an idle cycle must make none.
    let counter = Counter::start();
    let there = format!("https://{}", counter.addr);
    let tcp = format!("tcp:{}", counter.addr);
    let prom = format!("http://{}", counter.addr);
    lab.store().reset_request_counts();
    let out = run_cycles(
        &lab,
        "w1",
        "4",
        &[
            "--etcd-endpoints",
            &there,
            "--lb-runtime-api",
            &tcp,
            "--prometheus-url",
            &prom,
        ],
    );
    let log = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(log.lines().count(), 4, "{log}");
    for line in log.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["evaluated"], false, "{line}");
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .ends_with("not evaluated: no reboot pending"),
            "{line}"
        );
    }
    assert_eq!(
        counter.connections(),
        0,
        "idle cycles reached etcd, the load balancer or Prometheus"
    );
    // Four cycles, one request: the lock read once at the start (a sentinel
    // restarted after its node's reboot may hold it).
    let asked = sentinel_requests(&lab);
    assert_eq!(asked.len(), 1, "{asked:#?}");
    let (k, c) = &asked[0];
    assert_eq!(c.requests, 1, "{asked:#?}");
    assert_eq!(k.verb, "get");
    assert_eq!(
        k.path,
        "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/hacli-disruption-lock"
    );

    // Pending: one cycle, allowed, lock taken.
    std::fs::write(lab.dir().join("reboot-required"), "").unwrap();
    lab.store().reset_request_counts();
    let endpoints = lab.etcd_endpoints().join(",");
    let out = run_cycles(&lab, "w1", "1", &["--etcd-endpoints", &endpoints]);
    let log = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: serde_json::Value = serde_json::from_str(log.trim()).unwrap();
    assert_eq!(v["decision"], "allow", "{log}");
    assert_eq!(v["lockHeld"], true, "{log}");
    let asked = sentinel_requests(&lab);
    let total: u64 = asked.iter().map(|(_, c)| c.requests).sum();
    let bytes: u64 = asked.iter().map(|(_, c)| c.bytes).sum();
    eprintln!("a pending cycle: {total} requests, {bytes} bytes: {asked:#?}");
    // Two observations (advisory, then consistent before the lock) of at
    // most 11 reads each (nodes, daemonsets, the DaemonSet's pods, the
    // node's pods, PDBs, kill-switch, lock, /readyz on three masters and
    // the endpoint), then the lock (read, create).
    assert!(total <= 2 * 11 + 2, "{total} requests: {asked:#?}");
    let pod_lists: Vec<&(testlab::RequestKey, testlab::Counted)> = asked
        .iter()
        .filter(|(k, _)| k.verb == "list" && k.path.ends_with("/pods"))
        .collect();
    assert!(!pod_lists.is_empty(), "{asked:#?}");
    for (k, _) in &pod_lists {
        assert!(
            k.selector == ";spec.nodeName=w1" || k.selector == "k8s-app=calico-node;",
            "a pod list without the node's or the DaemonSet's selector: {k:?}"
        );
    }
    // No pod of the 40 web pods was read: each pod list is small.
    for (k, c) in &pod_lists {
        assert!(c.bytes / c.requests < 6_000, "{k:?}: {c:?}");
    }
    // Every list and get was read once from the watch cache and once
    // consistently (the lock's own read-modify-write aside).
    for what in ["/api/v1/nodes", "/apis/policy/v1/poddisruptionbudgets"] {
        let n = |cached: bool| {
            asked
                .iter()
                .filter(|(k, _)| k.path == what && k.cached == cached)
                .map(|(_, c)| c.requests)
                .sum::<u64>()
        };
        assert_eq!((n(true), n(false)), (1, 1), "{what}: {asked:#?}");
    }
    let lock = lab
        .store()
        .get(
            testlab::ApiServer::resource("leases"),
            "kube-system",
            "hacli-disruption-lock",
        )
        .unwrap();
    assert_eq!(lock["spec"]["holderIdentity"], "hacli-sentinel@w1");
}

/// `hacli sentinel --remediate` on the lab: m2's Node NotReady (its etcd
/// member still healthy). Waited on for its bound, then to be replaced:
/// under the lock the dead-master plan refuses (its member answers), so
/// the attempt fails without touching anything; with a budget of one, the
/// next decision is a refusal. Each decision is in the cycle's line and on
/// `/metrics`; the Node, the lock and the journal are as they were.
#[test]
fn sentinel_remediation_fails_once_then_stops_at_its_budget_touching_nothing() {
    let Some(lab) = Lab::start_or_skip(
        "sentinel_remediation_fails_once_then_stops_at_its_budget_touching_nothing",
    ) else {
        return;
    };
    let (target, ip) = lab.masters[1].clone();
    lab.set_node(&target, ip, true, false).unwrap();
    let d = lab.dir();
    let std::net::IpAddr::V4(v4) = ip else {
        panic!("the lab is IPv4")
    };
    let [a, b, c, _] = v4.octets();
    let spare = d.join("spare.yaml");
    std::fs::write(
        &spare,
        format!("{{ name: m9, role: control-plane, address: {a}.{b}.{c}.19 }}\n"),
    )
    .unwrap();
    let (journal, memory) = (d.join("remediate.jsonl"), d.join("remediate-memory.json"));
    let started = Instant::now();
    let sentinel = Sentinel::start(
        &lab,
        "w1",
        &[
            "--remediate",
            "--spare",
            spare.to_str().unwrap(),
            "--journal",
            journal.to_str().unwrap(),
            "--memory",
            memory.to_str().unwrap(),
            "--unhealthy-for",
            "1s",
            "--max-retries",
            "1",
            "--min-healthy-period",
            "0s",
        ],
    );
    assert!(
        sentinel
            .banner
            .iter()
            .any(|l| l.starts_with("REMEDIATION ON:") && l.contains("spare m9")),
        "{:?}",
        sentinel.banner
    );
    let v = sentinel.wait_remediation("within-bound");
    assert_eq!(v["remediation"]["decision"], "wait", "{v}");
    assert_eq!(v["remediation"]["node"], target.as_str(), "{v}");
    let v = sentinel.wait_remediation("failed");
    let reason = v["remediation"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("answers again: its etcd member") && reason.contains("is healthy"),
        "{v}"
    );
    let v = sentinel.wait_remediation("retry-budget");
    assert_eq!(v["remediation"]["decision"], "refused", "{v}");
    let m = sentinel.scrape();
    let took = started.elapsed();
    drop(sentinel);
    let refused = |class| {
        m.value(
            "hacli_remediation_decisions_total",
            &[("decision", "refused"), ("reason_class", class)],
        )
    };
    assert_eq!(refused("failed"), 1.0);
    assert!(refused("retry-budget") >= 1.0);
    assert_eq!(
        m.value("hacli_remediation_attempts_total", &[("result", "failed")]),
        1.0
    );
    assert_eq!(m.value("hacli_remediation_budget_remaining", &[]), 0.0);
    assert_eq!(m.value("hacli_remediation_retry_budget", &[]), 1.0);
    assert!(
        !m.body.contains(
            "hacli_remediation_decisions_total{decision=\"replace\",reason_class=\"replaced\""
        ),
        "{}",
        m.body
    );
    // Nothing touched: the one attempt remembered, no journal, the lock
    // released, the Node still there.
    let mem: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&memory).unwrap()).unwrap();
    assert_eq!(mem["attempts"].as_array().unwrap().len(), 1, "{mem}");
    assert_eq!(mem["attempts"][0]["succeeded"], false, "{mem}");
    let journals: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("remediate.jsonl"))
        .collect();
    assert!(journals.is_empty(), "{journals:?}");
    let lock = lab
        .store()
        .get(
            testlab::ApiServer::resource("leases"),
            "kube-system",
            "hacli-disruption-lock",
        )
        .ok();
    let holder = lock
        .as_ref()
        .and_then(|l| l["spec"]["holderIdentity"].as_str());
    assert_ne!(holder, Some("hacli-sentinel-remediate@w1"), "{lock:?}");
    assert!(
        lab.store()
            .get(testlab::ApiServer::resource("nodes"), "", &target)
            .is_ok(),
        "the Node {target} is still there"
    );
    eprintln!(
        "sentinel remediation: three decisions in {:.1}s",
        took.as_secs_f64()
    );
}
