//! Does changing the load balancer drop API connections?
//!
//! For each transport (pfSense PHP over SSH, pfSense REST, plain HAProxy
//! over SSH), against the lab (`testlab::lblab`): a pool with two
//! apiserver stand-ins behind the VIP, then constant TLS load through the
//! VIP (a new connection, a full TLS handshake and `GET /readyz` each, at
//! RATE per second for SECONDS), while hacli adds a third server, removes
//! it, and then, as a bootstrap script that resets the pool to its
//! declared state does, deletes the frontend and the pool and recreates
//! them with one more server. Prints, per change, the requests that
//! started during it (and the second after), how many failed, and the
//! longest gap without a successful answer.
//!
//! `cargo bench -p pfsense --bench lb_reload` (RATE=200 SECONDS=20 by
//! default; `-- --rate N --seconds S` to change them).

use std::net::SocketAddr;
use std::time::Duration;

use hacore::backend::LbOp;
use hacore::topology::{CheckKind, Topology};
use pfsense::lb::{LbBackend, LbOptions, rest::Credentials};
use testlab::lblab::{LbLab, Via};
use testlab::load::{Load, Report};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pool_op(lab: &LbLab, n: usize) -> LbOp {
    LbOp::CreatePool {
        pool: "k8s-apiserver".into(),
        check: CheckKind::Https,
        path: Some("/readyz".into()),
        interval: "2s".parse().unwrap(),
        fall: 3,
        rise: 2,
        servers: lab.masters[..n].to_vec(),
    }
}

fn run(via: Via, rate: u32, seconds: u64) {
    let Some(lab) = LbLab::start_or_skip("lb_reload") else {
        return;
    };
    let (t, _) = Topology::load(&lab.topology(via)).expect("topology");
    let lb = LbBackend::from_topology(
        &t,
        &LbOptions {
            timeout: Duration::from_secs(60),
            rest_credentials: Some(Credentials::ApiKey(lab.pfsense.api_key().into())),
            ..LbOptions::default()
        },
    )
    .expect("backend");
    let pool = "k8s-apiserver".to_string();
    let frontend = SocketAddr::new(lab.vip, 6443);
    let vip = LbOp::CreateVip {
        address: lab.vip,
        prefix: 24,
        interface: "lan".into(),
        description: "bench".into(),
    };
    for op in [
        vip,
        pool_op(&lab, 2),
        LbOp::CreateFrontend {
            frontend,
            pool: pool.clone(),
        },
    ] {
        lb.apply_op(&op).expect("setup");
    }
    let up = |n: usize| LbOp::VerifyServersUp {
        pool: pool.clone(),
        servers: lab.masters[..n].iter().map(|m| m.0.clone()).collect(),
    };
    lb.apply_op(&up(2)).expect("two servers UP");

    let rt = lab.handle();
    let load = Load::start(
        &rt,
        frontend,
        "kubernetes",
        &lab.ca_pem,
        "/readyz",
        rate,
        Duration::from_secs(3),
    )
    .expect("load");
    let mut windows: Vec<(&str, Duration, Duration)> = Vec::new();
    let step = Duration::from_secs(seconds) / 4;
    let mut change = |name: &'static str, ops: Vec<LbOp>| {
        std::thread::sleep(step.saturating_sub(Duration::from_millis(0)));
        let from = load.elapsed();
        for op in &ops {
            lb.apply_op(op).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        windows.push((name, from, load.elapsed()));
    };
    let (m3, a3) = lab.masters[2].clone();
    change(
        "add a server",
        vec![LbOp::AddServer {
            pool: pool.clone(),
            server: m3.clone(),
            address: a3,
        }],
    );
    change(
        "remove a server",
        vec![LbOp::RemoveServer {
            pool: pool.clone(),
            server: m3,
        }],
    );
    change(
        "reset to declared (delete, recreate +1)",
        vec![
            LbOp::DeleteFrontend { frontend },
            LbOp::DeletePool { pool: pool.clone() },
            pool_op(&lab, 3),
            LbOp::CreateFrontend {
                frontend,
                pool: pool.clone(),
            },
            up(3),
        ],
    );
    std::thread::sleep(step);
    let report: Report = load.stop(&rt);
    let total = report.attempts.last().map_or(Duration::ZERO, |a| a.at);
    println!(
        "{via:?}: {} requests in {:.1}s ({:.0}/s), {} failed, longest gap {:?}",
        report.sent(),
        total.as_secs_f64(),
        report.sent() as f64 / total.as_secs_f64().max(0.001),
        report.failed(),
        report.longest_gap()
    );
    for (name, from, to) in windows {
        let w = report.between(from, to + Duration::from_secs(1));
        println!(
            "  {name:<42} took {:>6.0} ms: {:>5} requests, {:>4} failed, longest gap {:>5.0} ms {:?}",
            (to - from).as_secs_f64() * 1000.0,
            w.sent(),
            w.failed(),
            w.longest_gap().as_secs_f64() * 1000.0,
            w.errors()
        );
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rate = arg("--rate", 200) as u32;
    let seconds = arg("--seconds", 20);
    for via in [Via::PfsenseSsh, Via::PfsenseRest, Via::Haproxy] {
        run(via, rate, seconds);
    }
}
