//! The gate fails closed everywhere (issue 22): the kill switch stops every
//! built-in policy, a stale state is unknown, an alert source that was asked
//! and did not answer is unknown, a state of another cluster is refused, and
//! failed probes never allow, all failed is unknown.

use std::path::PathBuf;

use hacore::gate::{BUILTINS, Request, evaluate};
use hacore::state::Probe;
use hacore::{Action, ClusterState, Decision, Policy, Severity, Topology, Verdict};
use jiff::Timestamp;

/// Every built-in policy there is (`BUILTINS`, which lists the
/// migration's `preflight` too).
fn every_builtin() -> Vec<Policy> {
    let names: Vec<&str> = BUILTINS.to_vec();
    names
        .iter()
        .map(|n| Policy::builtin(n).unwrap_or_else(|| panic!("built-in {n}")))
        .collect()
}

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn topology(name: &str) -> Topology {
    Topology::load(&examples().join(format!("topology/{name}.yaml")))
        .unwrap()
        .0
}

fn state_text(name: &str) -> String {
    std::fs::read_to_string(examples().join(format!("state/{name}.yaml"))).unwrap()
}

fn state(name: &str, t: &Topology) -> ClusterState {
    ClusterState::from_yaml(&format!("{name}.yaml"), &state_text(name), t)
        .unwrap()
        .0
}

/// The time the bundled example states were observed.
fn observed() -> Timestamp {
    "2026-05-21T12:00:00Z".parse().unwrap()
}

/// Where a built-in policy is meant to be used: its topology, a healthy
/// state of it, and a moment at which it may allow something. Every policy
/// is for the three-master example at the example's time, except
/// `single-master`: the one-master example at 02:00 (in its window), with a
/// verified snapshot an hour old.
fn setting(policy: &Policy) -> (Topology, ClusterState, Timestamp) {
    if policy.name != "single-master" {
        let t = topology("ha");
        let s = state("ha-healthy", &t);
        return (t, s, observed());
    }
    let t = topology("single-master");
    let at: Timestamp = "2026-05-21T02:00:00Z".parse().unwrap();
    let text = state_text("single-master").replace(
        "observedAt: 2026-05-21T12:00:00Z",
        "observedAt: 2026-05-21T02:00:00Z\netcdBackup: { place: /b, newest: { path: /b/s.db, takenAt: \"2026-05-21T01:00:00Z\", revision: 7, verified: true } }",
    );
    let s = ClusterState::from_yaml("single-master.yaml", &text, &t)
        .unwrap()
        .0;
    (t, s, at)
}

fn verdict_at(
    t: &Topology,
    s: &ClusterState,
    policy: &Policy,
    action: Action,
    target: &str,
    at: Timestamp,
) -> Verdict {
    let req = Request {
        action,
        target,
        requester: None,
    };
    evaluate(t, s, policy, &req, at).unwrap()
}

fn verdict(
    t: &Topology,
    s: &ClusterState,
    policy: &Policy,
    action: Action,
    target: &str,
) -> Verdict {
    let req = Request {
        action,
        target,
        requester: None,
    };
    evaluate(t, s, policy, &req, observed()).unwrap()
}

fn severity(v: &Verdict, rule: &str) -> Option<Severity> {
    v.findings
        .iter()
        .find(|f| f.rule == rule)
        .map(|f| f.severity)
}

fn says(v: &Verdict, rule: &str) -> String {
    v.findings
        .iter()
        .filter(|f| f.rule == rule)
        .map(|f| format!("{} {}", f.message, f.remediation.as_deref().unwrap_or("")))
        .collect()
}

#[test]
fn every_builtin_policy_that_allows_a_disruption_includes_the_kill_switch() {
    for policy in every_builtin() {
        let (t, healthy, at) = setting(&policy);
        // Does the policy allow anything at all on the healthy cluster?
        let allows_something = Action::ALL.iter().any(|&a| {
            t.nodes
                .iter()
                .any(|n| verdict_at(&t, &healthy, &policy, a, &n.name, at).allowed())
        });
        assert!(
            allows_something,
            "{}: allows nothing on a healthy cluster, so this test proves nothing",
            policy.name
        );
        assert!(
            policy.rules.kill_switch.is_some(),
            "built-in policy `{}` allows disruptions but has no kill-switch rule: {:?}",
            policy.name,
            policy.rules.ids()
        );
        // And a policy file that extends it keeps it, whatever it overrides.
        let derived = Policy::from_yaml(
            "derived.yaml",
            &format!(
                "name: mine\nextends: {}\nrules:\n  soak: {{ window: 1h }}\n  alerts: {{ minSeverity: warning }}\n",
                policy.name
            ),
        )
        .unwrap();
        assert!(
            derived.rules.kill_switch.is_some(),
            "a policy extending `{}` lost the kill switch",
            policy.name
        );
    }
}

#[test]
fn the_kill_switch_stops_every_action_under_every_builtin_policy() {
    let t = topology("ha");
    let healthy = state("ha-healthy", &t);
    let halted = state("ha-kill-switch", &t);
    let mut allowed_before = 0;
    for policy in every_builtin() {
        for action in Action::ALL {
            for n in &t.nodes {
                let v = verdict(&t, &halted, &policy, action, &n.name);
                assert_eq!(
                    v.decision,
                    Decision::Deny,
                    "{action} {} under `{}` with the kill switch set",
                    n.name,
                    policy.name
                );
                assert_eq!(severity(&v, "kill-switch"), Some(Severity::Deny));
                assert!(says(&v, "kill-switch").contains("all disruptions are halted"));
                allowed_before +=
                    usize::from(verdict(&t, &healthy, &policy, action, &n.name).allowed());
            }
        }
    }
    // The reboot the issue found allowed is among those it now stops.
    assert!(allowed_before > 0);
    let reboot = Policy::for_action(Action::Reboot);
    assert!(verdict(&t, &healthy, &reboot, Action::Reboot, "k8s-master-2").allowed());
}

#[test]
fn a_reboot_is_unknown_when_the_prometheus_it_asked_does_not_answer() {
    let t = topology("ha");
    let mut s = state("ha-healthy", &t);
    s.alerts = None;
    s.probe_errors.insert(
        Probe::Alerts,
        "GET http://prometheus:9090/api/v1/alerts: connection refused".into(),
    );
    for action in [Action::Reboot, Action::Upgrade] {
        let v = verdict(&t, &s, &Policy::for_action(action), action, "k8s-master-2");
        assert_eq!(v.decision, Decision::Unknown, "{action}: {:?}", v.findings);
        assert_eq!(severity(&v, "alerts"), Some(Severity::Unknown));
        assert!(says(&v, "alerts").contains("connection refused"));
    }
    // Even with its section present, a failed probe is not trusted.
    s.alerts = Some(Vec::new());
    let v = verdict(
        &t,
        &s,
        &Policy::for_action(Action::Reboot),
        Action::Reboot,
        "k8s-master-2",
    );
    assert_eq!(v.decision, Decision::Unknown);
}

#[test]
fn a_reboot_without_any_prometheus_warns_that_alerts_were_not_checked() {
    let t = topology("ha");
    let mut s = state("ha-healthy", &t);
    s.alerts = None;
    let reboot = verdict(
        &t,
        &s,
        &Policy::for_action(Action::Reboot),
        Action::Reboot,
        "k8s-master-2",
    );
    assert_eq!(reboot.decision, Decision::Allow, "{:?}", reboot.findings);
    assert_eq!(severity(&reboot, "alerts"), Some(Severity::Warn));
    assert!(says(&reboot, "alerts").contains("no Prometheus configured"));
    // The upgrade preflight requires alerts: not observed is unknown.
    let upgrade = verdict(
        &t,
        &s,
        &Policy::for_action(Action::Upgrade),
        Action::Upgrade,
        "k8s-master-2",
    );
    assert_eq!(upgrade.decision, Decision::Unknown);
    assert_eq!(severity(&upgrade, "alerts"), Some(Severity::Unknown));
    // A policy that names the rule asks for Prometheus: not observed is unknown.
    let kured = Policy::load(&examples().join("policy/kured-gate.yaml")).unwrap();
    assert!(kured.rules.alerts.as_ref().unwrap().required);
}

#[test]
fn a_firing_critical_alert_denies_a_reboot() {
    let t = topology("ha");
    let s = state("ha-alert-firing", &t);
    let v = verdict(
        &t,
        &s,
        &Policy::for_action(Action::Reboot),
        Action::Reboot,
        "k8s-master-2",
    );
    assert_eq!(v.decision, Decision::Deny);
    assert_eq!(severity(&v, "alerts"), Some(Severity::Deny));
}

#[test]
fn a_state_older_than_max_age_is_unknown_naming_its_age() {
    let t = topology("ha");
    let s = state("ha-healthy", &t);
    let later: Timestamp = "2026-12-07T01:30:00Z".parse().unwrap();
    for policy in every_builtin() {
        let req = Request {
            action: Action::Drain,
            target: "k8s-node1",
            requester: None,
        };
        let v = evaluate(&t, &s, &policy, &req, later).unwrap();
        assert_ne!(v.decision, Decision::Allow, "{}", policy.name);
        assert_eq!(severity(&v, "state-fresh"), Some(Severity::Unknown));
        let said = says(&v, "state-fresh");
        assert!(
            said.contains("the state is 199d 13h 30m old (observed at 2026-05-21T12:00:00Z"),
            "{said}"
        );
        assert!(said.contains("the policy accepts at most 5m"), "{said}");
        assert!(said.contains("hacli observe"), "{said}");
    }
    // Five minutes is fresh; a second more is not.
    let req = Request {
        action: Action::Reboot,
        target: "k8s-master-2",
        requester: None,
    };
    let reboot = Policy::for_action(Action::Reboot);
    let at = |s: &str| -> Timestamp { s.parse().unwrap() };
    let v = evaluate(&t, &s, &reboot, &req, at("2026-05-21T12:05:00Z")).unwrap();
    assert!(v.allowed());
    let v = evaluate(&t, &s, &reboot, &req, at("2026-05-21T12:05:01Z")).unwrap();
    assert_eq!(v.decision, Decision::Unknown);
    assert!(says(&v, "state-fresh").contains("the state is 5m 1s old"));
}

/// Errors of loading `state` against `topology`, as the CLI prints them.
fn refused(topology: &Topology, name: &str, text: &str) -> String {
    ClusterState::from_yaml(name, text, topology)
        .map(|_| ())
        .expect_err("the state was accepted")
        .to_string()
}

fn no_destructive_advice(e: &str) {
    for destructive in [
        "member remove",
        "kubeadm reset",
        "kubectl delete",
        "delete node",
    ] {
        assert!(!e.contains(destructive), "proposes `{destructive}`: {e}");
    }
}

#[test]
fn the_three_master_state_against_the_single_master_topology_is_refused() {
    let single = topology("single-master");
    // The names match (both `homelab`): the members give it away.
    let e = refused(&single, "ha-healthy.yaml", &state_text("ha-healthy"));
    for says in [
        "etcd member `k8s-master-2` (id 91bc3c398fb3c146), peer https://10.0.20.105:2380, matches no node of the topology of cluster `homelab`",
        "etcd member `k8s-master-3` (id fd422379fda50e48), peer https://10.0.20.106:2380, matches no node",
        "node `k8s-master-2` carries the control-plane taint, but the topology has no such node",
        "check which cluster the state was observed on",
    ] {
        assert!(e.contains(says), "expected {says:?} in:\n{e}");
    }
    assert!(e.starts_with("ha-healthy.yaml:"), "{e}");
    no_destructive_advice(&e);
}

#[test]
fn a_state_of_another_cluster_is_refused_naming_both() {
    let t = topology("ha");
    let text = state_text("ha-healthy").replace("cluster: homelab", "cluster: office");
    let e = refused(&t, "office.yaml", &text);
    assert!(
        e.contains("office.yaml:4:1: error: cluster: the state was observed on cluster `office`, but the topology is of cluster `homelab`"),
        "{e}"
    );
    no_destructive_advice(&e);
}

#[test]
fn a_state_whose_nodes_are_all_unknown_is_refused() {
    let t = topology("ha");
    let text = "cluster: homelab\nobservedAt: 2026-05-21T12:00:00Z\nnodes:\n  - { name: web-1, ready: true }\n  - { name: web-2, ready: true }\n";
    let e = refused(&t, "s.yaml", text);
    assert!(
        e.contains(
            "no observed node is in the topology of cluster `homelab` (observed: web-1 and web-2)"
        ),
        "{e}"
    );
    // A worker the topology does not list, beside known nodes, is drift (a
    // warning and the node-drift rule), not another cluster.
    let text = format!(
        "{}  - {{ name: k8s-node9, ready: true }}\n",
        state_text("ha-healthy").split("etcd:").next().unwrap()
    );
    let (_, warnings) = ClusterState::from_yaml("drift.yaml", &text, &t).unwrap();
    assert!(
        warnings.iter().any(|w| w
            .message
            .contains("node `k8s-node9` is not in the topology")),
        "{warnings:?}"
    );
}

#[test]
fn a_member_named_after_a_node_at_another_address_is_refused() {
    let t = topology("ha");
    let text = state_text("ha-healthy").replace(
        "name: k8s-master-3, peerURLs: [\"https://10.0.20.106:2380\"]",
        "name: k8s-master-3, peerURLs: [\"https://10.9.9.106:2380\"]",
    );
    let e = refused(&t, "s.yaml", &text);
    assert!(
        e.contains("etcd member `k8s-master-3` (id fd422379fda50e48) is named after node `k8s-master-3`, which the topology puts at 10.0.20.106, but its peer URL is https://10.9.9.106:2380"),
        "{e}"
    );
    no_destructive_advice(&e);
}

#[test]
fn a_state_without_cluster_is_accepted_with_a_warning_and_still_checked() {
    let t = topology("ha");
    let text = state_text("ha-healthy").replace("cluster: homelab\n", "");
    let (s, warnings) = ClusterState::from_yaml("old.yaml", &text, &t).unwrap();
    assert_eq!(s.cluster, None);
    assert!(
        warnings
            .iter()
            .any(|w| w.message.contains("the state names no cluster")
                && w.message.contains("taken to be of cluster `homelab`")),
        "{warnings:?}"
    );
    // Its members are still checked: an old file of the three masters is
    // refused against the single master's topology.
    let e = refused(&topology("single-master"), "old.yaml", &text);
    assert!(e.contains("matches no node"), "{e}");
}

#[test]
fn rule_advice_on_members_matching_no_node_proposes_nothing_destructive() {
    // States built in code (not loaded) reach the rules unchecked: their
    // advice on data that contradicts the topology is to check first.
    let t = topology("ha");
    let mut s = state("ha-healthy", &t);
    let members = &mut s.etcd.as_mut().unwrap().members;
    members[2].name = "ghost".into();
    members[2].peer_urls = vec!["https://10.9.9.9:2380".into()];
    members[1].healthy = Some(false);
    let mut advised = 0;
    for action in Action::ALL {
        for n in &t.nodes {
            let v = verdict(&t, &s, &Policy::for_action(action), action, &n.name);
            for f in &v.findings {
                let all = format!("{} {}", f.message, f.remediation.as_deref().unwrap_or(""));
                no_destructive_advice(&all);
                advised += usize::from(all.contains("matches no node"));
            }
        }
    }
    // The rules did meet the member, and said so.
    assert!(advised > 0);
}

/// The probes a built-in policy reads for ACTION on TARGET: failing any of
/// them must not allow.
fn read_by(policy: &Policy, action: Action, targets_master: bool) -> Vec<Probe> {
    let r = &policy.rules;
    let mut v = Vec::new();
    let mut add = |on: bool, p: Probe| {
        if on && !v.contains(&p) {
            v.push(p);
        }
    };
    add(r.nodes_ready.is_some() || r.soak.is_some(), Probe::Nodes);
    add(r.daemonsets.is_some(), Probe::DaemonSets);
    add(r.pdb.is_some() && action.evicts_pods(), Probe::Pdbs);
    add(r.kill_switch.is_some(), Probe::KillSwitch);
    add(r.lock.is_some(), Probe::Lock);
    add(r.alerts.is_some(), Probe::Alerts);
    let etcd = r.etcd_quorum.is_some() && action != Action::Drain;
    add(etcd, Probe::Etcd);
    add(
        r.etcd_alarms.is_some() && action != Action::Drain,
        Probe::EtcdAlarms,
    );
    let stops = action.stops_control_plane() && targets_master;
    add(r.apiserver_ready.is_some() && stops, Probe::Apiservers);
    add(r.load_balancer.is_some() && stops, Probe::LoadBalancer);
    v
}

#[test]
fn every_combination_of_failed_probes_never_allows_and_all_failed_is_unknown() {
    let t = topology("ha");
    let healthy = state("ha-healthy", &t);
    let all = Probe::ALL.len();
    let mut checked = 0usize;
    for policy in every_builtin() {
        for action in Action::ALL {
            // A master that is not the leader, and a worker.
            for target in ["k8s-master-2", "k8s-node1"] {
                let base = verdict(&t, &healthy, &policy, action, target);
                if !base.allowed() {
                    continue;
                }
                let read = read_by(&policy, action, target.starts_with("k8s-master"));
                for mask in 1u32..(1 << all) {
                    let failed: Vec<Probe> = (0..all)
                        .filter(|i| mask & (1 << i) != 0)
                        .map(|i| Probe::ALL[i])
                        .collect();
                    let mut s = healthy.clone();
                    for p in &failed {
                        s.probe_errors.insert(*p, "injected: no answer".into());
                    }
                    let v = verdict(&t, &s, &policy, action, target);
                    if failed.iter().any(|p| read.contains(p)) {
                        assert_ne!(
                            v.decision,
                            Decision::Allow,
                            "{action} {target} under `{}` allowed with {failed:?} failed",
                            policy.name
                        );
                    }
                    if failed.len() == all {
                        assert_eq!(
                            v.decision,
                            Decision::Unknown,
                            "{action} {target} under `{}` with every probe failed: {:?}",
                            policy.name,
                            v.blocking().collect::<Vec<_>>()
                        );
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 20_000, "{checked}");
}

/// What the live observer writes when nothing answers: every Kubernetes
/// read and etcd failed, and each apiserver's /readyz gave no `ready`.
fn unreachable(t: &Topology, at: Timestamp) -> ClusterState {
    let mut s = ClusterState::empty(at);
    for p in [
        Probe::Nodes,
        Probe::Etcd,
        Probe::KillSwitch,
        Probe::Lock,
        Probe::DaemonSets,
        Probe::Pdbs,
        Probe::LoadBalancer,
    ] {
        s.probe_errors
            .insert(p, format!("{p}: no answer before the deadline"));
    }
    s.apiservers = Some(hacore::state::ApiserverState {
        per_node: t
            .control_plane_nodes()
            .map(|n| (n.name.clone(), false))
            .collect(),
        via_endpoint: Some(false),
    });
    s
}

#[test]
fn a_live_observation_that_reached_nothing_is_unknown_not_deny() {
    let t = topology("ha");
    let mut s = unreachable(&t, observed());
    let reboot = Policy::for_action(Action::Reboot);
    // As observed, the apiservers' "false" reads as "not ready": deny.
    let before = verdict(&t, &s, &reboot, Action::Reboot, "k8s-master-2");
    assert_eq!(before.decision, Decision::Deny);
    assert!(s.nothing_answered());
    s.finish_observation(&t);
    assert_eq!(s.cluster.as_deref(), Some("homelab"));
    assert!(
        s.probe_errors[&Probe::Apiservers].contains("no apiserver answered /readyz"),
        "{:?}",
        s.probe_errors
    );
    for policy in every_builtin() {
        // Each policy where it is meant to be used, at a moment it may allow.
        let (t, _, at) = setting(&policy);
        let mut s = unreachable(&t, at);
        s.finish_observation(&t);
        for action in Action::ALL {
            for n in &t.nodes {
                let v = verdict_at(&t, &s, &policy, action, &n.name, at);
                assert_eq!(
                    v.decision,
                    Decision::Unknown,
                    "{action} {} under `{}`: {:?}",
                    n.name,
                    policy.name,
                    v.blocking().collect::<Vec<_>>()
                );
            }
        }
    }
    // One apiserver that answers ready means the cluster was reached: its
    // other apiservers' "not ready" stands.
    let mut reached = ClusterState::empty(observed());
    reached.probe_errors = s.probe_errors.clone();
    reached.probe_errors.remove(&Probe::Apiservers);
    let mut api = s.apiservers.clone().unwrap();
    api.per_node.insert("k8s-master".into(), true);
    reached.apiservers = Some(api);
    assert!(!reached.nothing_answered());
    reached.finish_observation(&t);
    assert!(!reached.probe_errors.contains_key(&Probe::Apiservers));
}

#[test]
fn a_live_observation_of_another_cluster_is_refused_too() {
    // What `hacli gate` and `hapy.gate` check after observing: a kubeconfig
    // or etcd endpoints that reach the three masters, with the single
    // master's topology.
    let ha = topology("ha");
    let mut observed = state("ha-healthy", &ha);
    let single = topology("single-master");
    observed.finish_observation(&single);
    let e = observed
        .check_topology(&single, "the observed state")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("the observed state: "), "{e}");
    assert!(
        e.contains("etcd member `k8s-master-2` (id 91bc3c398fb3c146), peer https://10.0.20.105:2380, matches no node"),
        "{e}"
    );
    no_destructive_advice(&e);
    // The cluster it was observed on matches its own topology.
    let mut own = state("ha-healthy", &ha);
    own.finish_observation(&ha);
    own.check_topology(&ha, "the observed state").unwrap();
}
