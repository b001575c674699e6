//! Starts the local lab (crates/testlab: a real 3-member TLS etcd, the
//! Kubernetes API stand-in and HAProxy in front of it, on loopback) for hapy's live pytest tests, prints
//! how to reach it as one JSON line on stdout, and stops it when stdin
//! closes. Without etcd or haproxy installed it prints `{"skip": "<why>"}`.
//!
//! cargo run -p hapy --example hapy_lab

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::json;
use testlab::{Lab, LabError};

fn main() -> ExitCode {
    let lab = match Lab::start() {
        Ok(lab) => lab,
        Err(e @ (LabError::EtcdMissing | LabError::HaproxyMissing)) => {
            println!("{}", json!({ "skip": e.to_string() }));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("lab: the lab did not start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let leader = lab.wait_leader(Duration::from_secs(15));
    let names =
        |v: &[(String, std::net::IpAddr)]| v.iter().map(|m| m.0.clone()).collect::<Vec<_>>();
    let info = json!({
        "kubeconfig": lab.kubeconfig,
        "topology": lab.topology,
        "etcd_pki": lab.etcd_pki,
        "etcd": lab.etcd_endpoints(),
        "masters": names(&lab.masters),
        "workers": names(&lab.workers),
        "leader": leader,
        "dir": lab.dir(),
        "lb_runtime_api": lab.lb_runtime_api(),
        "lb_tcp": format!("tcp:{}", lab.lb_tcp()),
    });
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{info}").and_then(|()| out.flush()).is_err() {
        return ExitCode::FAILURE;
    }
    drop(out);
    // Run until the test session closes our stdin; dropping the lab stops
    // etcd and the API stand-in and removes its directory. Meanwhile, a
    // line `notready NAME` or `ready NAME` sets a Node's Ready condition in
    // the API stand-in, answered by one JSON line (`{"ok": true}` or
    // `{"error": ...}`).
    for line in std::io::stdin().lines().map_while(Result::ok) {
        let answer = match line.split_whitespace().collect::<Vec<_>>()[..] {
            [how @ ("ready" | "notready"), name] => set_ready(&lab, name, how == "ready"),
            _ => Err(format!(
                "not understood: `{line}` (ready NAME, notready NAME)"
            )),
        };
        let answer = match answer {
            Ok(()) => json!({ "ok": true }),
            Err(e) => json!({ "error": e }),
        };
        let mut out = std::io::stdout().lock();
        if writeln!(out, "{answer}")
            .and_then(|()| out.flush())
            .is_err()
        {
            break;
        }
    }
    drop(lab);
    ExitCode::SUCCESS
}

/// Node `name` (a master or a worker of the lab) Ready or NotReady.
fn set_ready(lab: &Lab, name: &str, ready: bool) -> Result<(), String> {
    let (master, ip) = match lab.masters.iter().find(|m| m.0 == name) {
        Some(m) => (true, m.1),
        None => match lab.workers.iter().find(|w| w.0 == name) {
            Some(w) => (false, w.1),
            None => return Err(format!("no node `{name}` in the lab")),
        },
    };
    lab.set_node(name, ip, master, ready)
        .map_err(|e| e.to_string())
}
