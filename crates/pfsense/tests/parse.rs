//! The `show stat` parser on real HAProxy 2.6 answers (tests/data/README.md).

use hacore::state::{BackendStatus, LbBackend};
use pfsense::haproxy::{PoolError, ServerStatus, Stats};

fn data(name: &str) -> Stats {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    Stats::parse(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn row(server: &str, status: BackendStatus, addr: &str, sessions: u64) -> LbBackend {
    LbBackend {
        server: server.into(),
        address: Some(addr.parse().unwrap()),
        status,
        sessions: Some(sessions),
    }
}

#[test]
fn the_labs_healthy_pool() {
    let s = data("lab-show-stat-healthy.csv");
    assert_eq!(s.backends, ["k8s-apiserver"]);
    let lb = s.lb_state("k8s-apiserver").unwrap();
    use BackendStatus::*;
    assert_eq!(
        lb.backends,
        [
            row("m1", Up, "127.29.1.11:39221", 1),
            row("m2", Up, "127.29.1.12:39221", 1),
            row("m3", Up, "127.29.1.13:39221", 1),
        ]
    );
    let m1 = &s.pool("k8s-apiserver").unwrap()[0];
    assert_eq!(m1.check_status.as_deref(), Some("L7OK"));
}

#[test]
fn maint_drain_and_a_failing_readyz() {
    let s = data("lab-show-stat-maint-drain-down.csv");
    let lb = s.lb_state("k8s-apiserver").unwrap();
    let got: Vec<_> = lb
        .backends
        .iter()
        .map(|b| (b.server.as_str(), b.status, b.sessions))
        .collect();
    use BackendStatus::*;
    assert_eq!(
        got,
        [
            ("m1", Maint, Some(1)),
            ("m2", Drain, Some(1)),
            ("m3", Down, Some(1))
        ]
    );
    let m3 = &s.pool("k8s-apiserver").unwrap()[2];
    assert_eq!(m3.check_status.as_deref(), Some("L7STS"));
}

#[test]
fn pfsense_runtime_names_resolve_from_the_pool_name() {
    let s = data("pfsense-names-show-stat-going-down.csv");
    assert_eq!(s.backends, ["k8s-apiserver_ipvANY", "other_ipv4"]);
    assert_eq!(s.resolve("k8s-apiserver"), Ok("k8s-apiserver_ipvANY"));
    assert_eq!(
        s.resolve("k8s-apiserver_ipvANY"),
        Ok("k8s-apiserver_ipvANY")
    );
    assert_eq!(s.resolve("other"), Ok("other_ipv4"));
    // The frontend is not a pool.
    assert_eq!(
        s.resolve("k8s-apiserver_10.0.20.100_6443"),
        Err(PoolError::Missing)
    );
    assert_eq!(s.resolve("k8s"), Err(PoolError::Missing));
    let rows = s.pool("k8s-apiserver").unwrap();
    let statuses: Vec<_> = rows.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [
            Some(ServerStatus::Up),
            Some(ServerStatus::GoingDown { health: 1, fall: 3 }),
            Some(ServerStatus::Maint),
            Some(ServerStatus::NoCheck),
        ]
    );
    assert_eq!(rows[1].status_text, "UP 1/3");
    assert_eq!(rows[1].check_status.as_deref(), Some("L4CON"));
    // UP 1/3 is still routed, but not counted on: DOWN for the rules.
    assert_eq!(rows[1].to_backend().unwrap().status, BackendStatus::Down);
}

#[test]
fn coming_back_up_is_down_until_up() {
    let s = data("pfsense-names-show-stat-going-up.csv");
    let m2 = s.pool("k8s-apiserver").unwrap()[1].clone();
    assert_eq!(
        m2.status,
        Some(ServerStatus::GoingUp { health: 1, rise: 2 })
    );
    assert_eq!(m2.to_backend().unwrap().status, BackendStatus::Down);
}

#[test]
fn a_server_without_checks_makes_the_pool_an_error_not_a_guess() {
    let s = data("pfsense-names-show-stat.csv");
    match s.lb_state("k8s-apiserver") {
        Err(PoolError::Server { server, reason }) => {
            assert_eq!(server, "k8s-master-4");
            assert!(
                reason.contains("no check") && reason.contains("/readyz"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn two_suffixed_backends_are_ambiguous() {
    let text = "# pxname,svname,scur,status\np_ipv4,a,0,UP\np_ipv4,BACKEND,0,UP\np_ipv6,a,0,UP\np_ipv6,BACKEND,0,UP\n";
    let s = Stats::parse(text).unwrap();
    assert_eq!(
        s.resolve("p"),
        Err(PoolError::Ambiguous(vec!["p_ipv4".into(), "p_ipv6".into()]))
    );
}

#[test]
fn an_unknown_status_is_an_error_naming_it() {
    let text = "# pxname,svname,scur,status\np,a,0,HALF-UP\np,BACKEND,0,UP\n";
    let s = Stats::parse(text).unwrap();
    match s.lb_state("p") {
        Err(PoolError::Server { server, reason }) => {
            assert_eq!(server, "a");
            assert!(reason.contains("HALF-UP"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_error_answer_is_not_csv() {
    let path = format!(
        "{}/tests/data/answer-no-such-server.txt",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(path).unwrap();
    let e = Stats::parse(&text).unwrap_err();
    assert!(e.contains("`No such server.`"), "{e}");
}
