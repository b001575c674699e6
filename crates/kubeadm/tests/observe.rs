//! The observer and the lock against the lab (real etcd with TLS, the API
//! stand-in), through the library API.

use std::time::Duration;

use hacore::state::Probe;
use kubeadm::{Acquire, DisruptionLock, Observer, ObserverConfig};
use serde_json::json;
use testlab::Lab;

async fn observer(lab: &Lab, tweak: impl FnOnce(&mut ObserverConfig)) -> Observer {
    let (topology, _) = hacore::Topology::load(&lab.topology).unwrap();
    let mut cfg = ObserverConfig {
        kubeconfig: Some(lab.kubeconfig.clone()),
        // etcd endpoints and certificates come from the lab's topology file
        // (`etcd.endpoints`, `etcd.pki`).
        daemonsets: vec!["calico-node".into()],
        // Generous: a loaded machine must not make a healthy member look
        // unhealthy. Deadline behaviour is tested where it is the point.
        deadline: Duration::from_secs(6),
        member_timeout: Duration::from_secs(4),
        ..Default::default()
    };
    tweak(&mut cfg);
    Observer::new(topology, cfg).await.unwrap()
}

#[tokio::test]
async fn observes_nodes_pods_pdbs_apiservers_and_etcd() {
    let Some(mut lab) = Lab::start_or_skip("observes_nodes_pods_pdbs_apiservers_and_etcd") else {
        return;
    };
    let store = lab.store().clone();
    // calico-node not running on m1; a PDB allowing nothing over a pod on w1.
    lab.set_daemon_pod("calico-node", "m1", false).unwrap();
    store
        .create(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "pg-1", "namespace": "db", "labels": {"app": "pg"}},
            "spec": {"nodeName": "w1", "containers": [{"name": "pg", "image": "postgres"}]},
            "status": {"phase": "Running"}}))
        .unwrap();
    store
        .create(json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "pg", "namespace": "db"},
            "spec": {"minAvailable": 1, "selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["pg"]}]}},
            "status": {"disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1}}))
        .unwrap();
    // m2's /readyz fails; HAProxy's checks take it out of the pool, so the
    // endpoint (the VIP) still answers.
    lab.set_apiserver_ready("m2", false).unwrap();

    let obs = observer(&lab, |_| {}).await;
    let s = obs.observe().await;
    assert!(s.probe_errors.is_empty(), "{:?}", s.probe_errors);
    let m1 = s.node("m1").unwrap();
    assert_eq!(m1.ready, Some(true));
    assert!(m1.ready_since.is_some());
    assert_eq!(
        m1.taints,
        ["node-role.kubernetes.io/control-plane:NoSchedule"]
    );
    assert_eq!(
        m1.daemon_set_pods_not_running.as_deref(),
        Some(&["calico-node".to_string()][..])
    );
    assert_eq!(
        s.node("w1").unwrap().pdb_blocked_pods.as_deref(),
        Some(&["db/pg-1".to_string()][..])
    );
    assert_eq!(
        s.node("m3").unwrap().pdb_blocked_pods.as_deref(),
        Some(&[][..])
    );
    let api = s.apiservers.as_ref().unwrap();
    assert_eq!(api.per_node.get("m1"), Some(&true));
    assert_eq!(api.per_node.get("m2"), Some(&false));
    assert_eq!(api.via_endpoint, Some(true));
    assert_eq!(s.kill_switch, Some(false));
    assert_eq!(s.lock.as_ref().unwrap().holder, None);
    let etcd = s.etcd.as_ref().unwrap();
    assert_eq!(etcd.members.len(), 3);
    assert!(
        etcd.members
            .iter()
            .all(|m| m.healthy == Some(true) && m.raft_index.is_some())
    );
    let leader = lab.etcd_leader().unwrap();
    let leaders: Vec<_> = etcd
        .members
        .iter()
        .filter(|m| m.leader)
        .map(|m| m.name.clone())
        .collect();
    assert_eq!(leaders, std::slice::from_ref(&leader));

    // A sentinel's reads for w1 see the same, with no cluster-wide pod
    // list: the DaemonSet's pods by its selector, w1's pods by field, its
    // PDBs attributed to w1 only; advisory reads from the watch cache, the
    // consistent ones without.
    for consistent in [false, true] {
        store.reset_request_counts();
        let s = obs
            .observe_reads(kubeadm::Reads::Node {
                name: "w1",
                consistent,
            })
            .await;
        assert!(s.probe_errors.is_empty(), "{:?}", s.probe_errors);
        assert_eq!(
            s.node("m1").unwrap().daemon_set_pods_not_running.as_deref(),
            Some(&["calico-node".to_string()][..])
        );
        assert_eq!(
            s.node("w1").unwrap().daemon_set_pods_not_running.as_deref(),
            Some(&[][..])
        );
        assert_eq!(
            s.node("w1").unwrap().pdb_blocked_pods.as_deref(),
            Some(&["db/pg-1".to_string()][..])
        );
        assert_eq!(s.node("m3").unwrap().pdb_blocked_pods, None);
        let counts = store.request_counts();
        let reads: Vec<_> = counts
            .keys()
            .filter(|k| k.authenticated && (k.verb == "list" || k.verb == "get"))
            .collect();
        assert!(reads.iter().all(|k| k.cached != consistent), "{reads:#?}");
        let pods: Vec<_> = reads.iter().filter(|k| k.path.ends_with("/pods")).collect();
        assert_eq!(pods.len(), 2, "{pods:#?}");
        assert!(pods.iter().all(|k| !k.selector.is_empty()), "{pods:#?}");
    }

    // One member stopped: still listed, unhealthy; the probe itself works.
    let other = lab
        .masters
        .iter()
        .map(|m| m.0.clone())
        .find(|m| *m != leader)
        .unwrap();
    lab.stop_member(&other);
    let s = obs.observe().await;
    assert!(
        !s.probe_errors.contains_key(&Probe::Etcd),
        "{:?}",
        s.probe_errors
    );
    let m = s
        .etcd
        .as_ref()
        .unwrap()
        .members
        .iter()
        .find(|m| m.name == other)
        .unwrap()
        .clone();
    assert_eq!(m.healthy, Some(false));
}

#[tokio::test]
async fn etcd_alarms_are_read_from_every_members_status() {
    let Some(lab) = Lab::start_or_skip("etcd_alarms_are_read_from_every_members_status") else {
        return;
    };
    let obs = observer(&lab, |_| {}).await;
    let alarms = |s: &hacore::ClusterState| -> Vec<(String, Vec<String>)> {
        s.etcd
            .as_ref()
            .unwrap()
            .members
            .iter()
            .map(|m| (m.name.clone(), m.alarms.clone()))
            .collect()
    };
    let s = obs.observe().await;
    assert!(s.probe_errors.is_empty(), "{:?}", s.probe_errors);
    assert!(
        alarms(&s).iter().all(|(_, a)| a.is_empty()),
        "{:?}",
        alarms(&s)
    );

    lab.raise_nospace_alarm("m2").unwrap();
    let s = obs.observe().await;
    assert!(s.probe_errors.is_empty(), "{:?}", s.probe_errors);
    let mut got = alarms(&s);
    got.sort();
    assert_eq!(
        got,
        [
            ("m1".to_string(), vec![]),
            ("m2".to_string(), vec!["NOSPACE".to_string()]),
            ("m3".to_string(), vec![]),
        ]
    );

    lab.disarm_alarms().unwrap();
    let s = obs.observe().await;
    assert!(
        alarms(&s).iter().all(|(_, a)| a.is_empty()),
        "{:?}",
        alarms(&s)
    );
}

#[tokio::test]
async fn with_the_first_member_down_the_member_list_comes_from_another() {
    let Some(mut lab) =
        Lab::start_or_skip("with_the_first_member_down_the_member_list_comes_from_another")
    else {
        return;
    };
    // m1 is the first endpoint, the one asked for the member list.
    lab.stop_member("m1");
    lab.wait_leader(Duration::from_secs(10))
        .expect("m2 and m3 elect a leader");
    let obs = observer(&lab, |c| c.member_timeout = Duration::from_secs(1)).await;
    let (s, timings) = obs.observe_timed().await;
    assert!(
        !s.probe_errors.contains_key(&Probe::Etcd),
        "{:?}",
        s.probe_errors
    );
    let mut members: Vec<(String, Option<bool>)> = s
        .etcd
        .as_ref()
        .unwrap()
        .members
        .iter()
        .map(|m| (m.name.clone(), m.healthy))
        .collect();
    members.sort();
    assert_eq!(
        members,
        [
            ("m1".to_string(), Some(false)),
            ("m2".to_string(), Some(true)),
            ("m3".to_string(), Some(true)),
        ]
    );
    assert!(
        timings
            .0
            .iter()
            .any(|(what, _)| what == "etcd member list (again)"),
        "{timings}"
    );
}

#[tokio::test]
async fn every_probe_fails_closed_when_nothing_answers() {
    let Some(mut lab) = Lab::start_or_skip("every_probe_fails_closed_when_nothing_answers") else {
        return;
    };
    for (name, _) in lab.masters.clone() {
        lab.stop_member(&name);
    }
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let text = std::fs::read_to_string(&lab.kubeconfig)
        .unwrap()
        .replace(&lab.api_url(), &format!("https://127.0.0.1:{port}"));
    let kc = lab.dir().join("dead.conf");
    std::fs::write(&kc, text).unwrap();
    let obs = observer(&lab, |c| {
        c.kubeconfig = Some(kc.clone());
        c.deadline = Duration::from_millis(800);
        c.prometheus_url = Some(format!("http://127.0.0.1:{port}"));
    })
    .await;
    let s = obs.observe().await;
    for p in [
        Probe::Nodes,
        Probe::Etcd,
        Probe::KillSwitch,
        Probe::Lock,
        Probe::DaemonSets,
        Probe::Pdbs,
        Probe::Alerts,
    ] {
        assert!(
            s.probe_errors.contains_key(&p),
            "{p} should have failed: {:?}",
            s.probe_errors
        );
    }
    assert!(s.nodes.is_none() && s.etcd.is_none() && s.lock.is_none());
    // Errors name the cause in one line, not a debug dump.
    let etcd = &s.probe_errors[&Probe::Etcd];
    assert!(etcd.contains("Connection refused"), "{etcd}");
    assert!(
        !etcd.contains("Os {") && !etcd.contains("tonic::"),
        "{etcd}"
    );
    let nodes = &s.probe_errors[&Probe::Nodes];
    assert!(nodes.contains("Connection refused"), "{nodes}");
}

/// The client speaks HTTP/2 when the server offers it (the stand-in does, as
/// the real apiserver and HAProxy in TCP mode pass ALPN through), so the
/// observer's reads share one connection.
#[tokio::test]
async fn the_kubernetes_client_negotiates_http2_through_the_endpoint() {
    let Some(lab) =
        Lab::start_or_skip("the_kubernetes_client_negotiates_http2_through_the_endpoint")
    else {
        return;
    };
    let config = kubeadm::kube_config(Some(&lab.kubeconfig)).await.unwrap();
    let client = kubeadm::client_for(config).unwrap();
    let req = http::Request::get("/readyz")
        .body(kube::client::Body::empty())
        .unwrap();
    let resp = client.send(req).await.unwrap();
    assert_eq!(resp.status(), http::StatusCode::OK);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    // And the typed API works over it.
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client);
    assert_eq!(
        nodes.list(&Default::default()).await.unwrap().items.len(),
        4
    );
}

/// Sessions HAProxy's frontend (the VIP) has taken so far.
fn vip_sessions(lab: &Lab) -> u64 {
    let csv = lab.lb_command("show stat").unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap()
        .trim_start_matches("# ")
        .split(',')
        .collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (sv, stot) = (col("svname"), col("stot"));
    lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .find(|f| f.get(sv) == Some(&"FRONTEND"))
        .map(|f| f[stot].parse().unwrap())
        .expect("a FRONTEND row")
}

#[tokio::test]
async fn the_kubernetes_reads_share_one_connection_opened_once() {
    let Some(lab) = Lab::start_or_skip("the_kubernetes_reads_share_one_connection_opened_once")
    else {
        return;
    };
    let obs = observer(&lab, |_| {}).await;
    let before = vip_sessions(&lab);
    let (s, timings) = obs.observe_timed().await;
    assert!(s.probe_errors.is_empty(), "{:?}", s.probe_errors);
    // Six requests (five reads and /readyz) through the VIP, which is the
    // kubeconfig's server: over HTTP/2 they share one connection. The other
    // five are sent as soon as it is up, while the node list is in flight;
    // none may race to open a connection of its own.
    assert_eq!(vip_sessions(&lab) - before, 1, "{timings}");
    assert_eq!(s.apiservers.as_ref().unwrap().via_endpoint, Some(true));
    // A later observation (the sentinel's next cycle) reuses it.
    let s = obs.observe().await;
    assert!(s.probe_errors.is_empty(), "{:?}", s.probe_errors);
    assert_eq!(vip_sessions(&lab) - before, 1);
}

#[tokio::test]
async fn prometheus_firing_alerts_are_observed() {
    let Some(lab) = Lab::start_or_skip("prometheus_firing_alerts_are_observed") else {
        return;
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/api/v1/alerts",
        axum::routing::get(|| async {
            axum::Json(json!({"status": "success", "data": {"alerts": [
                {"labels": {"alertname": "KubeAPIDown", "severity": "critical"}, "state": "firing"},
                {"labels": {"alertname": "Watchdog", "severity": "none"}, "state": "firing"},
                {"labels": {"alertname": "DiskFilling", "severity": "warning"}, "state": "pending"}
            ]}}))
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let obs = observer(&lab, |c| c.prometheus_url = Some(url.clone())).await;
    let s = obs.observe().await;
    let names: Vec<_> = s
        .alerts
        .unwrap()
        .into_iter()
        .map(|a| (a.name, a.severity))
        .collect();
    assert_eq!(
        names,
        [
            ("KubeAPIDown".to_string(), "critical".to_string()),
            ("Watchdog".into(), "none".into())
        ]
    );
}

#[tokio::test]
async fn the_lease_lock_is_exclusive_renewable_releasable_and_expires() {
    let Some(lab) =
        Lab::start_or_skip("the_lease_lock_is_exclusive_renewable_releasable_and_expires")
    else {
        return;
    };
    let client = kubeadm::kube_client(Some(&lab.kubeconfig)).await.unwrap();
    let lease = ObserverConfig::default().lock;
    let lock = DisruptionLock::new(client, lease);
    let now = jiff::Timestamp::now();
    let ttl = Duration::from_secs(60);

    // Ten racing takers on a fresh lock: exactly one wins.
    let results = futures::future::join_all((0..10).map(|i| {
        let lock = lock.clone();
        async move { lock.acquire(&format!("gate-{i}"), ttl, now).await.unwrap() }
    }))
    .await;
    let winners = results.iter().filter(|r| **r == Acquire::Acquired).count();
    assert_eq!(winners, 1, "{results:?}");
    let holder = lock.holder(now).await.unwrap().unwrap();

    // The holder renews; others are told who holds it.
    assert_eq!(
        lock.acquire(&holder, ttl, now).await.unwrap(),
        Acquire::Acquired
    );
    match lock.acquire("other", ttl, now).await.unwrap() {
        Acquire::HeldBy { holder: h, until } => {
            assert_eq!(h, holder);
            assert!(until.is_some());
        }
        a => panic!("{a:?}"),
    }
    // Only the holder can release.
    assert!(!lock.release("other").await.unwrap());
    assert!(lock.release(&holder).await.unwrap());
    assert_eq!(lock.holder(now).await.unwrap(), None);

    // A holder that stops renewing loses it after its TTL.
    assert_eq!(
        lock.acquire("crashed", Duration::from_secs(30), now)
            .await
            .unwrap(),
        Acquire::Acquired
    );
    let later = now + jiff::SignedDuration::from_secs(29);
    assert!(matches!(
        lock.acquire("next", ttl, later).await.unwrap(),
        Acquire::HeldBy { .. }
    ));
    let expired = now + jiff::SignedDuration::from_secs(31);
    assert_eq!(
        lock.acquire("next", ttl, expired).await.unwrap(),
        Acquire::Acquired
    );
    assert_eq!(lock.holder(expired).await.unwrap().as_deref(), Some("next"));
}
