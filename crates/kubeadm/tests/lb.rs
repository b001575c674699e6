//! `observe_load_balancer` against the lab's real HAProxy (crates/testlab).

use std::time::Duration;

use hacore::state::BackendStatus;
use hacore::topology::RuntimeApi;
use kubeadm::observe_load_balancer;
use testlab::Lab;
use tokio::time::Instant;

#[tokio::test]
async fn the_pool_is_read_from_the_runtime_api_the_topology_names() {
    let Some(mut lab) =
        Lab::start_or_skip("the_pool_is_read_from_the_runtime_api_the_topology_names")
    else {
        return;
    };
    let (topology, _) = hacore::Topology::load(&lab.topology).unwrap();
    let soon = || Instant::now() + Duration::from_secs(5);
    let lb = observe_load_balancer(&topology, None, soon())
        .await
        .unwrap()
        .unwrap();
    let names: Vec<_> = lb.backends.iter().map(|b| b.server.as_str()).collect();
    assert_eq!(names, ["m1", "m2", "m3"]);
    assert!(lb.backends.iter().all(|b| b.status == BackendStatus::Up));

    lab.set_apiserver_ready("m3", false).unwrap();
    let lb = observe_load_balancer(&topology, None, soon())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lb.backends[2].status, BackendStatus::Down);

    // The override (the flag) is used instead of the topology's socket.
    let tcp = RuntimeApi::Tcp(lab.lb_tcp());
    assert!(matches!(
        observe_load_balancer(&topology, Some(&tcp), soon()).await,
        Some(Ok(_))
    ));

    // A silent HAProxy: an error naming the endpoint, by the deadline.
    lab.pause_lb();
    let started = Instant::now();
    let err = observe_load_balancer(&topology, None, started + Duration::from_millis(400))
        .await
        .unwrap()
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(700));
    assert!(
        err.contains(&lab.lb_runtime_api()) && err.contains("no answer before the deadline"),
        "{err}"
    );
    lab.resume_lb();
}
