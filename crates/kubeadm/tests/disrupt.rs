//! The live disruption operations against the lab (real etcd with TLS, the
//! API stand-in, real HAProxy), through the library API. Without etcd or
//! haproxy installed every test prints SKIPPED and why.

use std::time::Duration;

use kubeadm::control_plane::disrupt;
use kubeadm::etcd_leader::{LeaderMove, move_leader_away};
use kubeadm::{Observer, ObserverConfig};
use testlab::Lab;

const T: Duration = Duration::from_secs(10);

async fn observer(lab: &Lab) -> Observer {
    let (topology, _) = hacore::Topology::load(&lab.topology).unwrap();
    let cfg = ObserverConfig {
        kubeconfig: Some(lab.kubeconfig.clone()),
        deadline: Duration::from_secs(6),
        member_timeout: Duration::from_secs(4),
        ..Default::default()
    };
    Observer::new(topology, cfg).await.unwrap()
}

#[tokio::test]
async fn leadership_moves_off_the_leader_to_a_caught_up_voter_and_not_off_a_follower() {
    let Some(lab) = Lab::start_or_skip(
        "leadership_moves_off_the_leader_to_a_caught_up_voter_and_not_off_a_follower",
    ) else {
        return;
    };
    let obs = observer(&lab).await;
    let old = lab.wait_leader(T).unwrap();
    let follower = lab.masters.iter().find(|m| m.0 != old).unwrap().0.clone();
    assert_eq!(
        move_leader_away(&obs, &follower, T).await.unwrap(),
        LeaderMove::NotLeader {
            leader: Some(old.clone())
        }
    );
    assert!(disrupt::leads(&obs, &old).await.unwrap());
    let moved = move_leader_away(&obs, &old, T).await.unwrap();
    let LeaderMove::Moved { from, to, took } = &moved else {
        panic!("{moved:?}");
    };
    assert_eq!(from, &old);
    assert_ne!(to, &old);
    assert_eq!(lab.wait_leader(T).as_ref(), Some(to));
    assert!(!disrupt::leads(&obs, &old).await.unwrap());
    eprintln!("leadership moved {from} -> {to} in {} ms", took.as_millis());
}

#[tokio::test]
async fn cordon_wait_healthy_remove_member_and_delete_node() {
    let Some(mut lab) = Lab::start_or_skip("cordon_wait_healthy_remove_member_and_delete_node")
    else {
        return;
    };
    let obs = observer(&lab).await;
    let client = obs.client().clone();
    let leader = lab.wait_leader(T).unwrap();
    let followers: Vec<String> = lab
        .masters
        .iter()
        .map(|m| m.0.clone())
        .filter(|m| *m != leader)
        .collect();
    let m = followers[0].as_str();

    // Cordon and uncordon.
    assert!(!disrupt::is_cordoned(&client, m, T).await.unwrap());
    disrupt::set_cordoned(&client, m, true, T).await.unwrap();
    assert!(disrupt::is_cordoned(&client, m, T).await.unwrap());
    disrupt::set_cordoned(&client, m, false, T).await.unwrap();
    assert!(!disrupt::is_cordoned(&client, m, T).await.unwrap());
    // Only DaemonSet pods run on it: nothing to evict, the drain is done.
    assert!(
        disrupt::evictable_pods(&client, m, T)
            .await
            .unwrap()
            .is_empty()
    );
    disrupt::drain(&client, m, T).await.unwrap();

    // Healthy; then its apiserver fails /readyz and the wait says so.
    disrupt::wait_healthy(&obs, m, T).await.unwrap();
    lab.set_apiserver_ready(m, false).unwrap();
    let e = disrupt::wait_healthy(&obs, m, Duration::from_secs(2))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not answer /readyz"), "{e}");
    lab.set_apiserver_ready(m, true).unwrap();

    // The leader's member is never removed; a follower's is, by id, once.
    let e = disrupt::remove_member(&obs, &leader, T)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("move leadership first"), "{e}");
    // With the other follower stopped, the two voters left would have one
    // healthy member: below their quorum, refused.
    lab.stop_member(&followers[1]);
    let e = disrupt::remove_member(&obs, m, T)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("below their quorum of 2"), "{e}");
    lab.restart_member(&followers[1]).unwrap();
    assert!(disrupt::has_member(&obs, m).await.unwrap());
    disrupt::remove_member(&obs, m, T).await.unwrap();
    assert!(!disrupt::has_member(&obs, m).await.unwrap());
    // Idempotent: a resumed step finds it done.
    disrupt::remove_member(&obs, m, T).await.unwrap();

    // The Node goes.
    assert!(disrupt::node_exists(&client, "w1", T).await.unwrap());
    disrupt::delete_node(&client, "w1", T).await.unwrap();
    assert!(!disrupt::node_exists(&client, "w1", T).await.unwrap());
    disrupt::delete_node(&client, "w1", T).await.unwrap();
}

#[test]
fn the_runtime_api_drains_waits_idle_and_readies_a_backend() {
    use hacore::backend::{LbOp, LoadBalancer, ServerState};
    use pfsense::lb::runtime::RuntimeLb;
    let Some(mut lab) =
        Lab::start_or_skip("the_runtime_api_drains_waits_idle_and_readies_a_backend")
    else {
        return;
    };
    let (topology, _) = hacore::Topology::load(&lab.topology).unwrap();
    let api = lab.lb_runtime_api().parse().unwrap();
    let mut lb = RuntimeLb::new(api, topology.load_balancer.health_check.clone(), T).unwrap();
    let pool = lab.lb_pool().to_string();
    let state = |s| LbOp::SetServerState {
        pool: pool.clone(),
        server: "m2".into(),
        state: s,
    };
    assert!(lb.is_done(&state(ServerState::Ready)).unwrap());
    assert!(!lb.is_done(&state(ServerState::Drain)).unwrap());
    lb.apply(&state(ServerState::Drain)).unwrap();
    assert!(lb.is_done(&state(ServerState::Drain)).unwrap());
    lab.wait_lb(&["m2"], "DRAIN", T).unwrap();
    let idle = LbOp::WaitServerIdle {
        pool: pool.clone(),
        server: "m2".into(),
        bound: hacore::units::Dur::secs(2),
    };
    lb.apply(&idle).unwrap();
    assert!(lb.is_done(&idle).unwrap());
    let up = LbOp::VerifyServersUp {
        pool: pool.clone(),
        servers: vec!["m2".into()],
    };
    assert!(!lb.is_done(&up).unwrap(), "a draining server is not UP");
    lb.apply(&state(ServerState::Ready)).unwrap();
    assert!(lb.is_done(&state(ServerState::Ready)).unwrap());
    assert!(lb.is_done(&up).unwrap(), "ready waits until UP");
    // Maint, and what it is not.
    lb.apply(&state(ServerState::Maint)).unwrap();
    assert!(lb.is_done(&state(ServerState::Maint)).unwrap());
    assert!(!lb.is_done(&state(ServerState::Drain)).unwrap());
    lb.apply(&state(ServerState::Ready)).unwrap();
    // Configuration changes are not this backend's.
    assert!(matches!(
        lb.apply(&LbOp::RemoveServer {
            pool,
            server: "m2".into()
        }),
        Err(hacore::backend::BackendError::Unsupported(_))
    ));
}
