//! Embedding hacore and kubeadm in a Rust tool, as another project would
//! (examples/Cargo.toml names both by path): observe the live cluster,
//! decide whether ACTION on NODE is safe now, print why, exit like hacli
//! (0 allow, 1 deny, 2 bad input, 3 unknown).
//!
//! cargo run -p examples --example observe_gate -- TOPOLOGY ACTION NODE [KUBECONFIG]
//!
//! etcd is reached as kubeadm set it up (each master on :2379, the
//! health-check client pair under /etc/kubernetes/pki/etcd) unless the
//! topology says otherwise; the kubeconfig defaults to KUBECONFIG,
//! ~/.kube/config or the in-cluster service account.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use hacore::{Action, Decision, Policy, Request, Topology, evaluate};
use kubeadm::{Observer, ObserverConfig};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [topology, action, node, rest @ ..] = args.as_slice() else {
        eprintln!("usage: observe_gate TOPOLOGY ACTION NODE [KUBECONFIG]");
        return ExitCode::from(2);
    };
    let (topology, _warnings) = match Topology::load(topology.as_ref()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let action: Action = match action.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let config = ObserverConfig {
        kubeconfig: rest.first().map(PathBuf::from),
        deadline: Duration::from_secs(3),
        ..Default::default()
    };
    // Observe: every probe under one deadline; a failed probe is recorded
    // in the state and makes the rules that need it "unknown".
    let observer = match Observer::new(topology.clone(), config).await {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let state = observer.observe().await;
    for (probe, error) in &state.probe_errors {
        eprintln!("probe {probe} failed: {error}");
    }
    // Decide: pure, from the topology, the state and the clock.
    let policy = Policy::for_action(action);
    let request = Request {
        action,
        target: node,
        requester: Some("observe_gate"),
    };
    let verdict = match evaluate(&topology, &state, &policy, &request, jiff::Timestamp::now()) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // Print.
    println!("{action} {node}: {}", verdict.decision);
    for f in verdict.blocking() {
        println!("  {}: {}", f.rule, f.message);
    }
    ExitCode::from(match verdict.decision {
        Decision::Allow => 0,
        Decision::Deny => 1,
        Decision::Unknown => 3,
    })
}
