//! Property tests over generated clusters: the invariants the gate promises.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use hacore::gate::{Request, RuleSet, evaluate};
use hacore::state::{
    ApiserverState, BackendStatus, EtcdMember, EtcdState, LbBackend, LbState, LockState, MemberId,
    NodeState, Probe,
};
use hacore::topology::Endpoint;
use hacore::topology::{EtcdConfig, HealthCheck, Hypervisor, LbKind, LoadBalancer, Node, Role};
use hacore::{Action, ClusterState, Decision, Policy, Severity, Topology};
use jiff::Timestamp;
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct MasterSpec {
    host: u8,
    /// etcd: None = no member, Some((learner, health)) where health 0 down, 1 up, 2 unknown.
    member: Option<(bool, u8)>,
    ready: Option<bool>,
    backend: u8,
    api_ready: Option<bool>,
}

#[derive(Debug, Clone)]
struct Spec {
    masters: Vec<MasterSpec>,
    workers: Vec<(u8, Option<bool>)>,
    leader: usize,
    with_lb: bool,
    kill_switch: bool,
    recent_ready: bool,
    lock_other: bool,
}

fn master() -> impl Strategy<Value = MasterSpec> {
    (
        0u8..3,
        prop_oneof![
            1 => Just(None),
            6 => (prop::bool::weighted(0.15), prop_oneof![1 => Just(0u8), 6 => Just(1u8), 1 => Just(2u8)]).prop_map(Some),
        ],
        prop_oneof![6 => Just(Some(true)), 1 => Just(Some(false)), 1 => Just(None)],
        prop_oneof![5 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)],
        prop_oneof![6 => Just(Some(true)), 1 => Just(Some(false)), 1 => Just(None)],
    )
        .prop_map(|(host, member, ready, backend, api_ready)| MasterSpec { host, member, ready, backend, api_ready })
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        prop::collection::vec(master(), 1..=7),
        prop::collection::vec(
            (
                0u8..3,
                prop_oneof![8 => Just(Some(true)), 1 => Just(Some(false))],
            ),
            0..4,
        ),
        0usize..7,
        any::<bool>(),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.1),
    )
        .prop_map(
            |(masters, workers, leader, with_lb, kill_switch, recent_ready, lock_other)| Spec {
                masters,
                workers,
                leader,
                with_lb,
                kill_switch,
                recent_ready,
                lock_other,
            },
        )
}

const NOW: &str = "2026-03-04T02:00:00Z";

fn build(spec: &Spec) -> (Topology, ClusterState) {
    let addr = |i: u8| IpAddr::V4(Ipv4Addr::new(10, 9, 0, i));
    let mut nodes = Vec::new();
    for (i, m) in spec.masters.iter().enumerate() {
        nodes.push(Node {
            name: format!("m{i}"),
            role: Role::ControlPlane,
            address: addr(11 + i as u8),
            hypervisor: Some(format!("h{}", m.host)),
            vmid: None,
            cpus: None,
            memory_gib: None,
            disk_gib: None,
        });
    }
    for (i, w) in spec.workers.iter().enumerate() {
        nodes.push(Node {
            name: format!("w{i}"),
            role: Role::Worker,
            address: addr(31 + i as u8),
            hypervisor: Some(format!("h{}", w.0)),
            vmid: None,
            cpus: None,
            memory_gib: None,
            disk_gib: None,
        });
    }
    let endpoint = if spec.with_lb { addr(10) } else { addr(11) };
    let topology = Topology {
        cluster: "prop".into(),
        control_plane_endpoint: Endpoint {
            address: endpoint,
            port: 6443,
            dns_name: None,
        },
        network: None,
        etcd: EtcdConfig::default(),
        load_balancer: if spec.with_lb {
            LoadBalancer {
                kind: LbKind::Haproxy,
                frontend: Some(std::net::SocketAddr::new(endpoint, 6443)),
                pool: Some("api".into()),
                health_check: HealthCheck::default(),
                runtime_api: None,
                manage: None,
            }
        } else {
            LoadBalancer::default()
        },
        hypervisors: (0..3)
            .map(|h| Hypervisor {
                name: format!("h{h}"),
                memory_gib: 64,
                cpus: 16,
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
    let now: Timestamp = NOW.parse().unwrap();
    let old: Timestamp = "2026-03-01T00:00:00Z".parse().unwrap();
    let mut state = ClusterState::empty(now);
    let mut node_states = Vec::new();
    let mut members = Vec::new();
    let mut backends = Vec::new();
    let mut per_node = BTreeMap::new();
    let voter_idx: Vec<usize> = spec
        .masters
        .iter()
        .enumerate()
        .filter(|(_, m)| matches!(m.member, Some((false, 1))))
        .map(|(i, _)| i)
        .collect();
    let leader = if voter_idx.is_empty() {
        None
    } else {
        Some(voter_idx[spec.leader % voter_idx.len()])
    };
    for (i, m) in spec.masters.iter().enumerate() {
        let name = format!("m{i}");
        node_states.push(NodeState {
            name: name.clone(),
            ready: m.ready,
            ready_since: Some(if spec.recent_ready && i == 0 {
                now - jiff::SignedDuration::from_secs(60)
            } else {
                old
            }),
            cordoned: false,
            taints: Vec::new(),
            reboot_required: None,
            daemon_set_pods_not_running: Some(Vec::new()),
            pdb_blocked_pods: Some(Vec::new()),
        });
        if let Some((learner, health)) = m.member {
            members.push(EtcdMember {
                id: MemberId(1000 + i as u64),
                name: name.clone(),
                peer_urls: vec![format!("https://10.9.0.{}:2380", 11 + i)],
                client_urls: vec![format!("https://10.9.0.{}:2379", 11 + i)],
                is_learner: learner,
                healthy: match health {
                    0 => Some(false),
                    1 => Some(true),
                    _ => None,
                },
                leader: leader == Some(i),
                raft_index: Some(100),
                alarms: Vec::new(),
            });
        }
        backends.push(LbBackend {
            server: name.clone(),
            address: None,
            status: match m.backend {
                0 => BackendStatus::Up,
                1 => BackendStatus::Down,
                _ => BackendStatus::Drain,
            },
            sessions: None,
        });
        if let Some(r) = m.api_ready {
            per_node.insert(name, r);
        }
    }
    for (i, w) in spec.workers.iter().enumerate() {
        node_states.push(NodeState {
            name: format!("w{i}"),
            ready: w.1,
            ready_since: Some(old),
            cordoned: false,
            taints: Vec::new(),
            reboot_required: None,
            daemon_set_pods_not_running: Some(Vec::new()),
            pdb_blocked_pods: Some(Vec::new()),
        });
    }
    state.nodes = Some(node_states);
    state.etcd = Some(EtcdState { members });
    state.load_balancer = Some(LbState { backends });
    state.apiservers = Some(ApiserverState {
        per_node,
        via_endpoint: Some(true),
    });
    state.alerts = Some(Vec::new());
    state.kill_switch = Some(spec.kill_switch);
    state.lock = Some(LockState {
        holder: spec.lock_other.then(|| "someone-else".to_string()),
        renewed_at: Some(now),
        ttl: Some(hacore::units::Dur::secs(300)),
    });
    (topology, state)
}

/// Every rule enabled with its defaults.
fn all_rules() -> Policy {
    let mut yaml = String::from("name: all\nrules:\n");
    for id in RuleSet::ALL_IDS {
        yaml.push_str(&format!("  {id}:\n"));
    }
    Policy::from_yaml("all", &yaml).unwrap()
}

fn targets(t: &Topology) -> Vec<String> {
    t.nodes
        .iter()
        .map(|n| n.name.clone())
        .chain(t.hypervisors.iter().map(|h| h.name.clone()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// An allowed disruption never leaves fewer healthy voters than quorum.
    #[test]
    fn allowed_never_breaks_quorum(spec in spec()) {
        let (topology, state) = build(&spec);
        let etcd = state.etcd.as_ref().unwrap();
        for action in [Action::Reboot, Action::Upgrade, Action::Shutdown, Action::RemoveMember] {
            let policy = Policy::for_action(action);
            for target in targets(&topology) {
                let req = Request { action, target: &target, requester: None };
                let v = evaluate(&topology, &state, &policy, &req, state.observed_at).unwrap();
                if v.decision != Decision::Allow {
                    continue;
                }
                let gone = |name: &str| v.affected.iter().any(|a| a == name);
                let voters: Vec<&EtcdMember> = etcd.members.iter().filter(|m| !m.is_learner).collect();
                let voters_after = if action == Action::RemoveMember {
                    voters.iter().filter(|m| !gone(&m.name)).count()
                } else {
                    voters.len()
                };
                let healthy_after = voters
                    .iter()
                    .filter(|m| m.healthy == Some(true) && !gone(&m.name))
                    .count();
                prop_assert!(voters_after > 0, "{action} {target} allowed with no voter left");
                prop_assert!(
                    healthy_after >= hacore::quorum::quorum(voters_after),
                    "{action} {target} allowed: {healthy_after} healthy of {voters_after} voters"
                );
            }
        }
    }

    /// A failed probe that a rule needs makes the verdict unknown (or deny
    /// through another rule), never allow, and that rule reports unknown.
    #[test]
    fn failed_probe_is_never_allow(spec in spec(), probe_i in 0usize..Probe::ALL.len(), t in 0usize..16, a in 0usize..6) {
        let (topology, mut state) = build(&spec);
        let probe = Probe::ALL[probe_i];
        state.probe_errors.insert(probe, "injected failure".into());
        let action = Action::ALL[a];
        let all = targets(&topology);
        let target = &all[t % all.len()];
        let policy = all_rules();
        let req = Request { action, target, requester: None };
        let v = evaluate(&topology, &state, &policy, &req, state.observed_at).unwrap();
        let touches_cp = v.affected.iter().any(|n| topology.node(n).is_some_and(|n| n.is_control_plane()));
        let needing: Vec<&str> = match probe {
            Probe::Nodes => vec!["nodes-ready", "node-drift", "soak", "daemonsets"],
            Probe::KillSwitch => vec!["kill-switch"],
            Probe::Alerts => vec!["alerts"],
            Probe::Lock => vec!["lock"],
            Probe::DaemonSets => vec!["daemonsets"],
            Probe::Pdbs if action.evicts_pods() => vec!["pdb"],
            Probe::Etcd if action != Action::Drain => vec!["etcd-quorum", "etcd-learner", "etcd-alarms", "etcd-odd-size"],
            Probe::EtcdAlarms if action != Action::Drain => vec!["etcd-alarms"],
            Probe::Apiservers if action.stops_control_plane() && touches_cp => vec!["apiserver-ready"],
            Probe::LoadBalancer if topology.has_load_balancer() && action.stops_control_plane() && touches_cp => vec!["load-balancer"],
            _ => vec![],
        };
        if !needing.is_empty() {
            prop_assert_ne!(v.decision, Decision::Allow, "{} failed but {} {} allowed", probe, action, target);
            for rule in needing {
                prop_assert!(
                    v.findings.iter().any(|f| f.rule == rule && f.severity == Severity::Unknown),
                    "{probe} failed but rule {rule} did not report unknown for {action} {target}: {:?}",
                    v.findings.iter().filter(|f| f.rule == rule).collect::<Vec<_>>()
                );
            }
        }
    }

    /// Adding rules to a policy never turns deny (or unknown) into allow.
    #[test]
    fn more_rules_never_relax(spec in spec(), mask in any::<u32>(), extra in any::<u32>(), t in 0usize..16, a in 0usize..6) {
        let (topology, state) = build(&spec);
        let action = Action::ALL[a];
        let all = targets(&topology);
        let target = &all[t % all.len()];
        let mut small = all_rules();
        let mut big = all_rules();
        for (i, id) in RuleSet::ALL_IDS.iter().enumerate() {
            let in_small = mask & (1 << i) != 0;
            let in_big = in_small || extra & (1 << i) != 0;
            if !in_small { small.rules.disable(id); }
            if !in_big { big.rules.disable(id); }
        }
        let req = Request { action, target, requester: None };
        let vs = evaluate(&topology, &state, &small, &req, state.observed_at).unwrap();
        let vb = evaluate(&topology, &state, &big, &req, state.observed_at).unwrap();
        match vs.decision {
            Decision::Deny => prop_assert_eq!(vb.decision, Decision::Deny),
            Decision::Unknown => prop_assert_ne!(vb.decision, Decision::Allow),
            Decision::Allow => {}
        }
    }
}

/// One failure added to an observed state.
#[derive(Debug, Clone)]
enum Failure {
    /// A probe fails (its section, present or not, is not trusted).
    Probe(usize),
    /// A node (by index among the observed nodes) turns NotReady.
    NotReady(usize),
    /// An etcd member (by index) turns unhealthy.
    Unhealthy(usize),
    /// A critical alert fires.
    Alert,
    /// Someone sets the kill switch.
    KillSwitch,
}

fn failure() -> impl Strategy<Value = Failure> {
    prop_oneof![
        (0usize..Probe::ALL.len()).prop_map(Failure::Probe),
        (0usize..16).prop_map(Failure::NotReady),
        (0usize..16).prop_map(Failure::Unhealthy),
        Just(Failure::Alert),
        Just(Failure::KillSwitch),
    ]
}

fn inject(state: &mut ClusterState, f: &Failure) {
    match f {
        Failure::Probe(i) => {
            state
                .probe_errors
                .insert(Probe::ALL[*i], "injected failure".into());
        }
        Failure::NotReady(i) => {
            if let Some(nodes) = state.nodes.as_mut()
                && !nodes.is_empty()
            {
                let n = i % nodes.len();
                nodes[n].ready = Some(false);
            }
        }
        Failure::Unhealthy(i) => {
            if let Some(etcd) = state.etcd.as_mut()
                && !etcd.members.is_empty()
            {
                let n = i % etcd.members.len();
                etcd.members[n].healthy = Some(false);
            }
        }
        Failure::Alert => {
            state
                .alerts
                .get_or_insert_with(Vec::new)
                .push(hacore::state::Alert {
                    name: "KubeAPIErrorBudgetBurn".into(),
                    severity: "critical".into(),
                });
        }
        Failure::KillSwitch => state.kill_switch = Some(true),
    }
}

/// A policy: a built-in one, or every rule with some dropped.
fn some_policy(pick: usize, mask: u32) -> Policy {
    let names: Vec<&str> = hacore::gate::BUILTINS.to_vec();
    match names.get(pick) {
        Some(n) => Policy::builtin(n).unwrap(),
        None => {
            let mut p = all_rules();
            for (i, id) in RuleSet::ALL_IDS.iter().enumerate() {
                if mask & (1 << i) != 0 {
                    p.rules.disable(id);
                }
            }
            p
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Adding failures to a state (a probe error, a NotReady node, an
    /// unhealthy member, a firing alert, the kill switch) never turns deny
    /// or unknown into allow, under any built-in policy or any subset of
    /// the rules (issue 22).
    #[test]
    fn adding_a_failure_never_turns_deny_or_unknown_into_allow(
        spec in spec(),
        failures in prop::collection::vec(failure(), 1..4),
        pick in 0usize..10,
        mask in any::<u32>(),
        t in 0usize..16,
        a in 0usize..6,
    ) {
        let (topology, state) = build(&spec);
        let policy = some_policy(pick, mask);
        let action = Action::ALL[a];
        let all = targets(&topology);
        let target = &all[t % all.len()];
        let req = Request { action, target, requester: None };
        let before = evaluate(&topology, &state, &policy, &req, state.observed_at).unwrap();
        let mut worse = state.clone();
        for f in &failures {
            inject(&mut worse, f);
        }
        let after = evaluate(&topology, &worse, &policy, &req, worse.observed_at).unwrap();
        if before.decision != Decision::Allow {
            prop_assert_ne!(
                after.decision,
                Decision::Allow,
                "{} {} under `{}` was {} and became allow after {:?}: {:?}",
                action, target, policy.name, before.decision, failures,
                after.findings.iter().map(|f| (&f.rule, f.severity)).collect::<Vec<_>>()
            );
        }
        // And the kill switch (read without a probe error) stops every
        // built-in policy.
        if pick < 7
            && failures.iter().any(|f| matches!(f, Failure::KillSwitch))
            && !worse.probe_errors.contains_key(&Probe::KillSwitch)
        {
            prop_assert_eq!(after.decision, Decision::Deny);
        }
    }
}
