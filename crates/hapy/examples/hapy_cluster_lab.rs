//! Starts the cluster lab (crates/testlab::cluster: network-namespace hosts
//! with sshd, the kubeadm stand-in, a real etcd; the seed: master m1,
//! workers w1 and w2) for hapy's live disruption tests, prints how to
//! reach it as one JSON line on stdout, carries out the reboots its hosts
//! ask for (the lab's "hypervisor") until stdin closes, then prints the
//! power actions it served as a last JSON line and stops. Where the lab
//! cannot start (no isolation, a program missing) it prints
//! `{"skip": "<why>"}` (and lists the skip, as the Rust tests do).
//!
//! cargo run -p hapy --example hapy_cluster_lab

use std::io::{Read, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;
use testlab::cluster::{ClusterLab, M1, VIP};

const NAME: &str = "hapy_cluster_lab";

fn main() -> ExitCode {
    let Some(mut lab) = ClusterLab::start_or_skip(NAME) else {
        println!(
            "{}",
            json!({ "skip": "the cluster lab cannot start here (target/skipped-tests.txt says why)" })
        );
        return ExitCode::SUCCESS;
    };
    let lb = format!(
        "loadBalancer:\n  kind: haproxy\n  frontend: \"{}:6443\"\n  pool: k8s-apiserver\n",
        lab.lab_addr(VIP)
    );
    // The seed as it is: one master (m2 and m3 are not there yet).
    let yaml: String = lab
        .topology_yaml(&lb)
        .lines()
        .filter(|l| !l.contains("name: m2,") && !l.contains("name: m3,"))
        .map(|l| format!("{l}\n"))
        .collect();
    let yaml = format!(
        "{yaml}ssh:\n  user: root\n  identityFile: {}\n  knownHosts: {}\n",
        lab.client_key().display(),
        lab.known_hosts().display()
    );
    let topology = lab.dir().join("topology-seed.yaml");
    if let Err(e) = std::fs::write(&topology, yaml) {
        eprintln!("{NAME}: {}: {e}", topology.display());
        return ExitCode::FAILURE;
    }
    let tls = lab.etcd_tls();
    let info = json!({
        "topology": topology,
        "kubeconfig": lab.admin_conf(),
        "etcd": [format!("https://{}:2379", lab.lab_addr(M1))],
        "etcd_pki": tls.ca.parent(),
        "workers": ["w1", "w2"],
        "dir": lab.dir(),
    });
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{info}").and_then(|()| out.flush()).is_err() {
        return ExitCode::FAILURE;
    }
    drop(out);
    // Serve power requests until the test session closes our stdin.
    let closed = Arc::new(AtomicBool::new(false));
    let flag = closed.clone();
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        flag.store(true, Ordering::SeqCst);
    });
    while !closed.load(Ordering::SeqCst) {
        if let Err(e) = lab.serve_power_requests() {
            eprintln!("{NAME}: serving power requests: {e}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let power: Vec<_> = lab
        .power_events()
        .iter()
        .map(|p| json!({ "host": p.host, "action": p.action, "up": p.up.is_some() }))
        .collect();
    println!("{}", json!({ "power": power }));
    ExitCode::SUCCESS
}
