//! The runtime-API client against the lab's real HAProxy (crates/testlab):
//! pool `k8s-apiserver`, servers m1-m3 with HTTPS `/readyz` checks.
//! Without etcd or haproxy installed every test prints SKIPPED and why.

use std::io::Write as _;
use std::time::Duration;

use hacore::state::BackendStatus;
use hacore::topology::RuntimeApi;
use pfsense::haproxy::{AdminState, Error, POLL, RuntimeClient, ServerStatus, Want};
use testlab::Lab;
use tokio::time::Instant;

fn client(lab: &Lab) -> RuntimeClient {
    RuntimeClient::new(lab.lb_runtime_api().parse().unwrap())
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

fn statuses(lb: &hacore::state::LbState) -> Vec<(String, BackendStatus)> {
    lb.backends
        .iter()
        .map(|b| (b.server.clone(), b.status))
        .collect()
}

#[tokio::test]
async fn the_healthy_pool_over_the_unix_socket_and_tcp() {
    let Some(lab) = Lab::start_or_skip("the_healthy_pool_over_the_unix_socket_and_tcp") else {
        return;
    };
    for api in [
        RuntimeApi::Unix(lab.lb_socket().to_path_buf()),
        RuntimeApi::Tcp(lab.lb_tcp()),
    ] {
        let lb = RuntimeClient::new(api.clone())
            .pool_state(lab.lb_pool(), soon())
            .await
            .unwrap_or_else(|e| panic!("{api}: {e}"));
        assert_eq!(lb.backends.len(), 3, "{lb:?}");
        for (b, (name, ip)) in lb.backends.iter().zip(&lab.masters) {
            assert_eq!(&b.server, name);
            assert_eq!(b.status, BackendStatus::Up);
            assert_eq!(b.address.map(|a| a.ip()), Some(*ip));
            assert_eq!(b.address.map(|a| a.port()), Some(lab.api_port()));
            assert!(b.sessions.is_some());
        }
    }
}

#[tokio::test]
async fn maint_drain_ready_round_trip() {
    let Some(lab) = Lab::start_or_skip("maint_drain_ready_round_trip") else {
        return;
    };
    let lb = client(&lab);
    let pool = lab.lb_pool();
    lb.set_server_state(pool, "m1", AdminState::Maint, soon())
        .await
        .unwrap();
    lb.set_server_state(pool, "m2", AdminState::Drain, soon())
        .await
        .unwrap();
    let state = lb.pool_state(pool, soon()).await.unwrap();
    use BackendStatus::*;
    assert_eq!(
        statuses(&state),
        [
            ("m1".into(), Maint),
            ("m2".into(), Drain),
            ("m3".into(), Up)
        ]
    );
    for s in ["m1", "m2"] {
        let seen = lb.ready(pool, s, soon()).await.unwrap();
        assert_eq!(seen.status, Some(ServerStatus::Up), "{seen:?}");
    }
    let state = lb.pool_state(pool, soon()).await.unwrap();
    assert!(state.backends.iter().all(|b| b.status == Up), "{state:?}");
}

#[tokio::test]
async fn a_failing_readyz_goes_down_and_comes_back() {
    let Some(lab) = Lab::start_or_skip("a_failing_readyz_goes_down_and_comes_back") else {
        return;
    };
    let lb = client(&lab);
    let pool = lab.lb_pool();
    let m2 = lab.masters[1].1;
    // Straight through the stand-in, so that only HAProxy's checks notice.
    lab.store().set_ready(m2, false);
    let started = std::time::Instant::now();
    let seen = lb
        .wait_server(
            pool,
            "m2",
            Want::Status(ServerStatus::Down),
            POLL,
            Instant::now() + Duration::from_secs(10),
        )
        .await
        .unwrap();
    // inter 200ms, fall 2: about half a second.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(seen.check_status.as_deref(), Some("L7STS"), "{seen:?}");
    lab.store().set_ready(m2, true);
    lb.wait_server(pool, "m2", Want::Status(ServerStatus::Up), POLL, soon())
        .await
        .unwrap();
}

#[tokio::test]
async fn drain_waits_for_the_last_session() {
    let Some(lab) = Lab::start_or_skip("drain_waits_for_the_last_session") else {
        return;
    };
    let lb = client(&lab);
    let pool = lab.lb_pool();
    // Round robin: three connections through the VIP, one per master.
    let vip = lab.api_url().trim_start_matches("https://").to_string();
    let mut conns: Vec<std::net::TcpStream> = (0..3)
        .map(|_| std::net::TcpStream::connect(&vip).unwrap())
        .collect();
    for c in &mut conns {
        c.write_all(b"\x16").unwrap();
    }
    lb.wait_server(pool, "m1", Want::Status(ServerStatus::Up), POLL, soon())
        .await
        .unwrap();
    let busy = lb.server(pool, "m1", soon()).await.unwrap();
    assert_eq!(busy.sessions, Some(1), "{busy:?}");

    let until = Instant::now() + Duration::from_millis(600);
    let err = lb.drain(pool, "m1", until).await.unwrap_err();
    assert!(matches!(err, Error::WaitDeadline { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("k8s-apiserver/m1") && text.contains("DRAIN, 1 session(s)"),
        "{text}"
    );
    // New connections avoid the draining server.
    let state = lb.pool_state(pool, soon()).await.unwrap();
    assert_eq!(state.backends[0].status, BackendStatus::Drain);

    drop(conns);
    let idle = lb.drain(pool, "m1", soon()).await.unwrap();
    assert_eq!(idle.sessions, Some(0));
    lb.ready(pool, "m1", soon()).await.unwrap();
}

#[tokio::test]
async fn a_paused_haproxy_is_an_error_within_the_deadline() {
    let Some(mut lab) = Lab::start_or_skip("a_paused_haproxy_is_an_error_within_the_deadline")
    else {
        return;
    };
    lab.pause_lb();
    for api in [
        RuntimeApi::Unix(lab.lb_socket().to_path_buf()),
        RuntimeApi::Tcp(lab.lb_tcp()),
    ] {
        let deadline = Duration::from_millis(500);
        let started = Instant::now();
        let err = RuntimeClient::new(api.clone())
            .pool_state(lab.lb_pool(), started + deadline)
            .await
            .unwrap_err();
        let took = started.elapsed();
        assert!(took < deadline + Duration::from_millis(250), "{took:?}");
        assert!(matches!(err, Error::Deadline { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains(&api.to_string())
                && text.contains("show stat")
                && text.contains("no answer before the deadline"),
            "{text}"
        );
    }
    lab.resume_lb();
    client(&lab)
        .pool_state(lab.lb_pool(), soon())
        .await
        .unwrap();
}

#[tokio::test]
async fn unknown_pools_servers_and_sockets_are_named() {
    let Some(lab) = Lab::start_or_skip("unknown_pools_servers_and_sockets_are_named") else {
        return;
    };
    let lb = client(&lab);
    let err = lb.pool_state("apiservers", soon()).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("no backend `apiservers`") && text.contains("backends: k8s-apiserver"),
        "{text}"
    );
    let err = lb
        .set_server_state(lab.lb_pool(), "m9", AdminState::Maint, soon())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("no server `m9`") && text.contains("m1, m2, m3"),
        "{text}"
    );
    let err = lb
        .set_server_state(lab.lb_pool(), "m1 state ready;", AdminState::Maint, soon())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BadInput { .. }), "{err}");

    // HAProxy's own refusal comes back as it said it.
    let err = lb
        .command("set server k8s-apiserver/m9 state maint", soon())
        .await;
    assert_eq!(err.unwrap().trim(), "No such server.");

    let missing = lab.dir().join("no-such.sock");
    let err = RuntimeClient::new(RuntimeApi::Unix(missing.clone()))
        .pool_state(lab.lb_pool(), soon())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Connect { .. }), "{text}");
    assert!(
        text.contains(&format!("unix:{}", missing.display())) && text.contains("show stat"),
        "{text}"
    );
}
