//! Embedding hacore in a Rust tool: an upgrade-chain preflight that walks the
//! control-plane nodes in order and stops at the first one that may not be
//! upgraded now.
//!
//! cargo run -p examples --example preflight -- TOPOLOGY STATE [AT]
//!
//! The verdict is as of now unless AT (RFC 3339) says otherwise: observe
//! right before (`hacli observe -t TOPOLOGY -O STATE`), since a state older
//! than 5 minutes is unknown. The bundled example state was observed at
//! 2026-05-21T12:00:00Z; replay it as of then:
//!
//! cargo run -p examples --example preflight -- examples/topology/ha.yaml examples/state/ha-healthy.yaml 2026-05-21T12:00:00Z

use std::path::PathBuf;
use std::process::ExitCode;

use hacore::gate::{Request, evaluate};
use hacore::{Action, ClusterState, Decision, Policy, Topology};

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1).map(PathBuf::from);
    let (Some(topology), Some(state)) = (args.next(), args.next()) else {
        eprintln!("usage: preflight TOPOLOGY STATE [AT]");
        return ExitCode::from(2);
    };
    let now = match args
        .next()
        .map(|at| at.to_string_lossy().parse::<jiff::Timestamp>())
    {
        None => jiff::Timestamp::now(),
        Some(Ok(at)) => at,
        Some(Err(e)) => {
            eprintln!("error: AT: expected an RFC 3339 time such as 2026-05-21T12:00:00Z: {e}");
            return ExitCode::from(2);
        }
    };
    let loaded = Topology::load(&topology).and_then(|(t, _)| {
        let (s, _) = ClusterState::load(&state, &t)?;
        Ok((t, s))
    });
    let (topology, state) = match loaded {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let policy = Policy::for_action(Action::Upgrade);
    for node in topology.control_plane_nodes() {
        let request = Request {
            action: Action::Upgrade,
            target: &node.name,
            requester: Some("preflight"),
        };
        let verdict = match evaluate(&topology, &state, &policy, &request, now) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
        println!("{:<14} {}", node.name, verdict.decision);
        for f in verdict.blocking() {
            println!("    {}: {}", f.rule, f.message);
        }
        if verdict.decision == Decision::Allow {
            println!("next: kubeadm upgrade on {}", node.name);
            return ExitCode::SUCCESS;
        }
    }
    println!("no control-plane node may be upgraded now");
    ExitCode::from(1)
}
