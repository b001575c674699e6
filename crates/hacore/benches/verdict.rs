//! Verdict evaluation cost: the bundled example cluster, and a generated
//! 5-master / 5,000-node cluster. Targets: < 20 µs and < 5 ms per verdict.
//!
//! `cargo bench -p hacore --bench verdict`

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use hacore::gate::{Request, evaluate};
use hacore::state::{
    ApiserverState, BackendStatus, EtcdMember, EtcdState, LbBackend, LbState, LockState, MemberId,
    NodeState,
};
use hacore::topology::{
    Endpoint, EtcdConfig, HealthCheck, Hypervisor, LbKind, LoadBalancer, Node, Role,
};
use hacore::{Action, ClusterState, Policy, Topology};

fn example() -> (Topology, ClusterState) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let (t, _) = Topology::load(&root.join("topology/ha.yaml")).unwrap();
    let (s, _) = ClusterState::load(&root.join("state/ha-healthy.yaml"), &t).unwrap();
    (t, s)
}

/// `masters` control-plane nodes and `total - masters` workers over 10 hosts.
pub fn generated(masters: usize, total: usize) -> (Topology, ClusterState) {
    let addr = |i: usize| {
        IpAddr::V4(Ipv4Addr::new(
            10,
            (i >> 16) as u8 + 1,
            (i >> 8) as u8,
            i as u8,
        ))
    };
    let now: jiff::Timestamp = "2026-05-21T12:00:00Z".parse().unwrap();
    let old: jiff::Timestamp = "2026-05-01T00:00:00Z".parse().unwrap();
    let nodes: Vec<Node> = (0..total)
        .map(|i| Node {
            name: if i < masters {
                format!("master-{i}")
            } else {
                format!("worker-{i}")
            },
            role: if i < masters {
                Role::ControlPlane
            } else {
                Role::Worker
            },
            address: addr(i + 1),
            hypervisor: Some(format!("pve{}", i % 10)),
            vmid: None,
            cpus: Some(4),
            memory_gib: Some(8),
            disk_gib: None,
        })
        .collect();
    let vip = IpAddr::V4(Ipv4Addr::new(10, 200, 0, 1));
    let topology = Topology {
        cluster: "big".into(),
        control_plane_endpoint: Endpoint {
            address: vip,
            port: 6443,
            dns_name: None,
        },
        network: None,
        etcd: EtcdConfig::default(),
        load_balancer: LoadBalancer {
            kind: LbKind::Haproxy,
            frontend: Some(std::net::SocketAddr::new(vip, 6443)),
            pool: Some("api".into()),
            health_check: HealthCheck::default(),
            runtime_api: None,
            manage: None,
        },
        hypervisors: (0..10)
            .map(|h| Hypervisor {
                name: format!("pve{h}"),
                memory_gib: 8192,
                cpus: 512,
                other_committed_memory_gib: 0,
                other_committed_cpus: 0,
            })
            .collect(),
        nodes,
        external_kubeconfigs: Vec::new(),
        ssh: None,
        proxmox: None,
        prometheus: None,
    };
    let mut state = ClusterState::empty(now);
    state.nodes = Some(
        topology
            .nodes
            .iter()
            .map(|n| NodeState::ready(n.name.clone(), old))
            .collect(),
    );
    state.etcd = Some(EtcdState {
        members: (0..masters)
            .map(|i| EtcdMember {
                id: MemberId(0x1000 + i as u64),
                name: format!("master-{i}"),
                peer_urls: vec![format!("https://{}:2380", addr(i + 1))],
                client_urls: vec![format!("https://{}:2379", addr(i + 1))],
                is_learner: false,
                healthy: Some(true),
                leader: i == 0,
                raft_index: Some(1_000_000),
                alarms: Vec::new(),
            })
            .collect(),
    });
    state.load_balancer = Some(LbState {
        backends: (0..masters)
            .map(|i| LbBackend {
                server: format!("master-{i}"),
                address: None,
                status: BackendStatus::Up,
                sessions: Some(10),
            })
            .collect(),
    });
    state.apiservers = Some(ApiserverState {
        per_node: (0..masters)
            .map(|i| (format!("master-{i}"), true))
            .collect(),
        via_endpoint: Some(true),
    });
    state.alerts = Some(Vec::new());
    state.kill_switch = Some(false);
    state.lock = Some(LockState {
        holder: None,
        renewed_at: None,
        ttl: None,
    });
    (topology, state)
}

fn bench(c: &mut Criterion) {
    let (t, s) = example();
    let reboot = Policy::for_action(Action::Reboot);
    let upgrade = Policy::for_action(Action::Upgrade);
    let req = Request {
        action: Action::Reboot,
        target: "k8s-master-2",
        requester: None,
    };
    assert!(
        evaluate(&t, &s, &reboot, &req, s.observed_at)
            .unwrap()
            .allowed()
    );
    c.bench_function("verdict/example/reboot k8s-master-2", |b| {
        b.iter(|| evaluate(black_box(&t), black_box(&s), &reboot, &req, s.observed_at).unwrap())
    });
    let ureq = Request {
        action: Action::Upgrade,
        target: "k8s-master-2",
        requester: None,
    };
    c.bench_function("verdict/example/upgrade k8s-master-2", |b| {
        b.iter(|| evaluate(black_box(&t), black_box(&s), &upgrade, &ureq, s.observed_at).unwrap())
    });

    c.bench_function("policy/builtin upgrade", |b| {
        b.iter(|| Policy::for_action(black_box(Action::Upgrade)))
    });

    let (bt, bs) = generated(5, 5000);
    let breq = Request {
        action: Action::Reboot,
        target: "master-3",
        requester: None,
    };
    assert!(
        evaluate(&bt, &bs, &reboot, &breq, bs.observed_at)
            .unwrap()
            .allowed()
    );
    c.bench_function("verdict/5-masters-5000-nodes/reboot master-3", |b| {
        b.iter(|| {
            evaluate(
                black_box(&bt),
                black_box(&bs),
                &reboot,
                &breq,
                bs.observed_at,
            )
            .unwrap()
        })
    });
    let wreq = Request {
        action: Action::Reboot,
        target: "worker-4321",
        requester: None,
    };
    c.bench_function("verdict/5-masters-5000-nodes/reboot worker-4321", |b| {
        b.iter(|| {
            evaluate(
                black_box(&bt),
                black_box(&bs),
                &reboot,
                &wreq,
                bs.observed_at,
            )
            .unwrap()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
