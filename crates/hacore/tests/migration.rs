//! The migration: plan, simulation, and execution with crash-resume, on the
//! bundled home-lab example, through the in-memory `InMemoryCluster` double.

use std::collections::BTreeSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use hacore::exec::{self, Event, MemJournal, Options, Outcome, Record};
use hacore::in_memory::{Crash, InMemoryCluster, with_backends};
use hacore::plan::{self, Plan};
use hacore::simulate::simulate;
use hacore::{ClusterState, Topology};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn topologies() -> (Topology, Topology) {
    let (from, _) = Topology::load(&examples().join("topology/single-master.yaml")).unwrap();
    let (to, _) = Topology::load(&examples().join("topology/ha.yaml")).unwrap();
    (from, to)
}

fn opts() -> plan::Options {
    plan::Options {
        template: Some(9000),
    }
}

fn example_plan() -> Plan {
    let (from, to) = topologies();
    plan::plan(&from, &to, None, &opts()).expect("the example plan is safe")
}

fn now() -> jiff::Timestamp {
    "2026-05-21T22:00:00Z".parse().unwrap()
}

fn confirm_all(plan: &Plan) -> Options {
    Options {
        dry_run: false,
        confirm: plan
            .steps()
            .filter(|(_, s)| s.op.is_manual())
            .map(|(_, s)| s.id.clone())
            .collect(),
    }
}

#[test]
fn example_plan_snapshot() {
    let plan = example_plan();
    expect_test::expect_file!["snapshots/example-plan.txt"].assert_eq(&plan.to_text());
    expect_test::expect_file!["snapshots/example-plan.md"].assert_eq(&plan.to_markdown());
}

#[test]
fn example_plan_follows_the_kubeadm_order() {
    let plan = example_plan();
    let ids: Vec<&str> = plan.steps().map(|(_, s)| s.id.as_str()).collect();
    let pos = |id: &str| {
        ids.iter()
            .position(|s| *s == id)
            .unwrap_or_else(|| panic!("no step {id} in {ids:?}"))
    };
    let order = [
        "preflight/addresses-free",
        "preflight/etcd-snapshot",
        "preflight/vm-snapshot/k8s-master",
        "endpoint/cluster-configuration",
        "endpoint/apiserver-cert/k8s-master",
        "load-balancer/pool",
        "load-balancer/frontend",
        "load-balancer/verify",
        "provision/k8s-master-2/clone",
        "provision/k8s-master-2/start",
        "provision/k8s-master-2/not-joined",
        "provision/k8s-master-2/versions",
        "provision/k8s-master-3/clone",
        "join-material/upload-certs",
        "join/k8s-master-2/join",
        "join/k8s-master-2/promoted",
        "join/k8s-master-2/taint",
        "join/k8s-master-2/apiserver-extras",
        "join/k8s-master-2/static-pods",
        "join/k8s-master-2/apiserver-probe",
        "join/k8s-master-2/load-balancer",
        "join/k8s-master-3/join",
        "join/k8s-master-3/apiserver-probe",
        "join/k8s-master-3/load-balancer",
        "cutover/kubelet/k8s-master",
        "cutover/kubelet/k8s-node4",
        "cutover/kube-proxy",
        "cutover/cluster-info",
        "cutover/external/woodpecker",
        "verify/nodes",
        "verify/etcd",
        "verify/kubeconfigs",
        "verify/pinned-workloads/k8s-master",
    ];
    for w in order.windows(2) {
        assert!(pos(w[0]) < pos(w[1]), "{} must come before {}", w[0], w[1]);
    }
    // No step declares an outage: the single master's apiserver reloads its
    // new certificate; its restart is only the retrofit's fallback.
    let outages = |f: fn(&hacore::plan::Outage) -> bool| -> Vec<&str> {
        plan.steps()
            .filter(|(_, s)| s.outage.as_ref().is_some_and(f))
            .map(|(_, s)| s.id.as_str())
            .collect()
    };
    assert!(outages(hacore::plan::Outage::is_declared).is_empty());
    assert_eq!(
        outages(hacore::plan::Outage::is_conditional),
        ["endpoint/apiserver-cert/k8s-master"]
    );
    // Every step that changes something can be undone, or is a snapshot/check/key upload.
    for (_, s) in plan.steps() {
        let irreversible = s.op.is_check()
            || s.op.is_manual()
            || s.id.starts_with("preflight/")
            || s.id.ends_with("upload-certs")
            || s.id.ends_with("/start")
            || s.id.ends_with("/taint")
            // Undone with the join it follows (kubeadm reset -f).
            || s.id.ends_with("/apiserver-extras");
        assert!(
            irreversible || s.rollback.is_some(),
            "{} has no rollback",
            s.id
        );
    }
    // Joins are gated by the join policy on the node itself.
    let (_, join) = plan
        .steps()
        .find(|(_, s)| s.id == "join/k8s-master-3/join")
        .unwrap();
    assert_eq!(join.preconditions[0].policy, "join");
    assert!(
        join.preconditions[0]
            .nodes
            .contains(&"k8s-master-2".to_string())
    );
    // The plan round-trips through JSON (what `hacli plan -o json` writes and `hacli apply` reads).
    let json = serde_json::to_string(&plan).unwrap();
    let back: Plan = serde_json::from_str(&json).unwrap();
    assert_eq!(back, plan);
    assert_eq!(back.digest(), plan.digest());
}

fn refusal(to_edit: impl FnOnce(&mut Topology), state: Option<ClusterState>) -> Vec<String> {
    let (from, mut to) = topologies();
    to_edit(&mut to);
    match plan::plan(&from, &to, state.as_ref(), &opts()) {
        Ok(_) => panic!("expected a refusal"),
        Err(r) => r.reasons,
    }
}

#[test]
fn refuses_the_real_home_lab_over_commitment() {
    // The real case: one Proxmox host at 98% RAM commitment, two more 32 GB masters.
    let mut state = ClusterState::empty(now());
    state.hypervisors = Some(vec![hacore::state::HostState {
        name: "pve".into(),
        memory_gib: 128,
        committed_memory_gib: 125,
        cpus: 32,
        committed_cpus: 60,
        vmids: vec![200, 201, 202, 203, 204],
    }]);
    let reasons = refusal(|_| {}, Some(state.clone()));
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(
        reasons[0].contains("hypervisor `pve`: 125 of 128 GiB already committed (97%)"),
        "{}",
        reasons[0]
    );
    assert!(reasons[0].contains("need 64 GiB more"), "{}", reasons[0]);
    assert!(reasons[0].contains("no useful size fits"), "{}", reasons[0]);
    // With room for small masters, it says which size fits (the master's working set is ~4.6 GB).
    state.hypervisors.as_mut().unwrap()[0].committed_memory_gib = 112;
    let reasons = refusal(|_| {}, Some(state.clone()));
    assert!(
        reasons[0].contains("2 new master(s) of at most 8 GiB each would fit"),
        "{}",
        reasons[0]
    );
    // And with 8 GiB masters the same host is accepted.
    let (from, mut to) = topologies();
    for n in to
        .nodes
        .iter_mut()
        .filter(|n| n.name.starts_with("k8s-master-"))
    {
        n.memory_gib = Some(8);
    }
    assert!(plan::plan(&from, &to, Some(&state), &opts()).is_ok());
}

#[test]
fn refuses_taken_vmids_and_addresses_and_even_sizes() {
    let mut state = ClusterState::empty(now());
    state.hypervisors = Some(vec![hacore::state::HostState {
        name: "pve".into(),
        memory_gib: 256,
        committed_memory_gib: 100,
        cpus: 64,
        committed_cpus: 40,
        vmids: vec![200, 201, 202, 203, 204, 205],
    }]);
    state.addresses_in_use = Some(vec!["10.0.20.99".parse().unwrap()]);
    let reasons = refusal(|_| {}, Some(state));
    assert!(
        reasons.iter().any(
            |r| r.contains("VM id 205 for `k8s-master-2` is already taken on hypervisor `pve`")
        ),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("the VIP address 10.0.20.99 already answers")),
        "{reasons:?}"
    );

    let reasons = refusal(
        |t| {
            t.nodes
                .iter_mut()
                .find(|n| n.name == "k8s-master-3")
                .unwrap()
                .vmid = Some(201)
        },
        None,
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("VM id 201 for `k8s-master-3` is already VM `k8s-node1`")),
        "{reasons:?}"
    );

    let reasons = refusal(
        |t| t.control_plane_endpoint.address = "10.0.20.104".parse().unwrap(),
        None,
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("the VIP 10.0.20.104 is node `k8s-node4`'s address")),
        "{reasons:?}"
    );

    let reasons = refusal(|t| t.nodes.retain(|n| n.name != "k8s-master-3"), None);
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("the target has 2 control-plane nodes")),
        "{reasons:?}"
    );
}

#[test]
fn simulation_finds_the_two_voter_window() {
    let plan = example_plan();
    let report = simulate(&plan, 1);
    assert!(report.critical.is_empty(), "{:?}", report.critical);
    assert!(
        report.planned_outages.is_empty(),
        "{:?}",
        report.planned_outages
    );
    assert_eq!(
        report.conditional_outages,
        ["endpoint/apiserver-cert/k8s-master"]
    );
    let w = report
        .windows
        .iter()
        .find(|w| w.example.cause.contains("exactly 2 voters"))
        .unwrap_or_else(|| panic!("no 2-voter window in {}", report.to_text()));
    // Opens once k8s-master-2 is a voter, closes when k8s-master-3 is promoted.
    assert_eq!(w.from_step, "join/k8s-master-2/taint");
    assert_eq!(w.to_step, "join/k8s-master-3/promoted");
    assert_eq!(w.closed_by.as_deref(), Some("join/k8s-master-3/taint"));
    // Before the plan, losing the one master is already fatal; after it, one node is survivable.
    assert_eq!(report.before.min_breaking, Some(1));
    let single_node = |r: &hacore::simulate::StepRisk| {
        r.examples
            .iter()
            .any(|e| e.failures == ["node k8s-master-2"])
    };
    assert!(!single_node(&report.after), "{:?}", report.after);
    // The only single failures the finished cluster cannot survive are the shared host.
    assert!(
        report
            .after
            .examples
            .iter()
            .all(|e| e.failures == ["hypervisor pve"]),
        "{:?}",
        report.after.examples
    );
    // The single master's certificate is reloaded, not restarted: the API
    // stays up (only losing that master breaks it, as before the plan).
    let renew = report
        .steps
        .iter()
        .find(|s| s.step == "endpoint/apiserver-cert/k8s-master")
        .unwrap();
    assert_eq!(renew.min_breaking, Some(1), "{renew:?}");
    // A plan written before the reload (its outage unconditional) is still
    // simulated with the restart, as it says.
    let mut old = plan.clone();
    for p in &mut old.phases {
        for s in &mut p.steps {
            if let Some(o) = s.outage.as_mut() {
                o.only_if = None;
            }
        }
    }
    let report = simulate(&old, 1);
    assert_eq!(
        report.planned_outages,
        ["endpoint/apiserver-cert/k8s-master"]
    );
}

#[test]
fn a_plan_without_learner_mode_is_flagged() {
    let (from, mut to) = topologies();
    to.etcd.learner_joins = false;
    let plan = plan::plan(&from, &to, None, &opts()).unwrap();
    assert!(
        plan.warnings
            .iter()
            .any(|w| w.contains("without etcd learner mode"))
    );
    let report = simulate(&plan, 1);
    assert!(
        report
            .critical
            .contains(&"join/k8s-master-2/join".to_string()),
        "{}",
        report.to_text()
    );
    let (_, join) = plan
        .steps()
        .find(|(_, s)| s.id == "join/k8s-master-2/join")
        .unwrap();
    let risk = report.steps.iter().find(|s| s.step == join.id).unwrap();
    assert!(
        risk.examples[0].cause.contains("not started yet"),
        "{:?}",
        risk.examples
    );
}

fn run_to_end(
    plan: &Plan,
    sim: &std::rc::Rc<std::cell::RefCell<InMemoryCluster>>,
    journal: &mut dyn exec::Journal,
) -> Outcome {
    with_backends(sim, |b| {
        exec::run(plan, b, journal, &confirm_all(plan), &mut |_| {})
    })
    .unwrap()
}

fn fresh_sim(plan: &Plan) -> std::rc::Rc<std::cell::RefCell<InMemoryCluster>> {
    InMemoryCluster::new(&plan.from, &plan.to, now()).shared()
}

#[test]
fn uninterrupted_run_reaches_the_target() {
    let plan = example_plan();
    let sim = fresh_sim(&plan);
    let mut journal = MemJournal::default();
    let mut events = Vec::new();
    let out = with_backends(&sim, |b| {
        exec::run(&plan, b, &mut journal, &confirm_all(&plan), &mut |e| {
            events.push(e)
        })
    })
    .unwrap();
    assert_eq!(out, Outcome::Completed);
    let s = sim.borrow();
    assert_eq!(s.etcd.len(), 3);
    assert!(s.etcd.values().all(|learner| !learner));
    assert_eq!(s.pool.as_ref().unwrap().len(), 3);
    assert_eq!(s.kube_proxy, "https://10.0.20.99:6443");
    assert!(
        s.kubelet_server
            .values()
            .all(|v| v == "https://10.0.20.99:6443")
    );
    assert!(s.vms.contains_key(&205) && s.vms.contains_key(&206));
    assert!(matches!(
        journal.records.last(),
        Some(Record::Finished { .. })
    ));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Done { id } if id == "verify/kubeconfigs"))
    );
    // Without confirmations the run stops at the first manual step.
    let sim2 = fresh_sim(&plan);
    let mut j2 = MemJournal::default();
    let out = with_backends(&sim2, |b| {
        exec::run(&plan, b, &mut j2, &Options::default(), &mut |_| {})
    })
    .unwrap();
    assert!(
        matches!(out, Outcome::AwaitingConfirmation { ref step, .. } if step == "cutover/external/woodpecker"),
        "{out:?}"
    );
}

/// Keep the injected crashes' panic messages out of the output; every other
/// panic (a failing assertion in a parallel test) is still printed.
fn quiet_injected_crashes() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .unwrap_or("");
            if !msg.starts_with("injected crash") {
                default(info);
            }
        }));
    });
}

#[test]
fn crash_at_every_point_then_resume_equals_an_uninterrupted_run() {
    let plan = example_plan();
    let reference = fresh_sim(&plan);
    let mut j = MemJournal::default();
    assert_eq!(run_to_end(&plan, &reference, &mut j), Outcome::Completed);
    let reference = reference.borrow().clone();
    let total_applies = reference.applies;
    assert!(total_applies > 20, "{total_applies}");
    let once =
        |effects: &[String], prefix: &str| effects.iter().filter(|e| e.starts_with(prefix)).count();

    quiet_injected_crashes();
    let mut failures = Vec::new();
    for at in 1..=total_applies {
        for after_effect in [false, true] {
            // The journal outlives the crash, as a file does (the file's
            // own torn writes: haops's tests/journal.rs).
            let mut journal = MemJournal::default();
            let sim = fresh_sim(&plan);
            sim.borrow_mut().crash = Some(Crash {
                at_apply: at,
                after_effect,
            });
            let crashed = catch_unwind(AssertUnwindSafe(|| run_to_end(&plan, &sim, &mut journal)));
            if crashed.is_ok() {
                failures.push(format!("apply #{at}: no crash happened"));
                continue;
            }
            sim.borrow_mut().crash = None;
            let out = run_to_end(&plan, &sim, &mut journal);
            let s = sim.borrow();
            if out != Outcome::Completed {
                failures.push(format!(
                    "apply #{at} (after effect: {after_effect}): resume ended {out:?}"
                ));
            } else if s.model() != reference.model() {
                failures.push(format!(
                    "apply #{at} (after effect: {after_effect}): final state differs"
                ));
            } else {
                let effects: BTreeSet<&String> = s.effects.iter().collect();
                let want: BTreeSet<&String> = reference.effects.iter().collect();
                if effects != want {
                    failures.push(format!(
                        "apply #{at}: side effects differ: {:?}",
                        effects.symmetric_difference(&want).collect::<Vec<_>>()
                    ));
                }
                for prefix in [
                    "clone 205",
                    "clone 206",
                    "join k8s-master-2",
                    "join k8s-master-3",
                    "add server k8s-master-2",
                    "create pool",
                ] {
                    if once(&s.effects, prefix) != 1 {
                        failures.push(format!("apply #{at} (after effect: {after_effect}): `{prefix}` happened {} times", once(&s.effects, prefix)));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_failed_step_rolls_back_its_phase_and_resume_finishes() {
    let plan = example_plan();
    let sim = fresh_sim(&plan);
    sim.borrow_mut()
        .fail
        .insert("add-server".into(), "pfSense: config locked".into());
    let mut journal = MemJournal::default();
    let out = run_to_end(&plan, &sim, &mut journal);
    match &out {
        Outcome::RolledBack { phase, step, error } => {
            assert_eq!(phase, "join/k8s-master-2");
            assert_eq!(step, "join/k8s-master-2/load-balancer");
            assert!(error.contains("config locked"), "{error}");
        }
        other => panic!("expected a rollback, got {other:?}"),
    }
    {
        let s = sim.borrow();
        assert!(!s.etcd.contains_key("k8s-master-2"), "the join was undone");
        assert!(!s.joined.contains("k8s-master-2"));
        assert!(s.effects.contains(&"reset k8s-master-2".to_string()));
        // Earlier phases stay: the VM is still there, the LB still serves k8s-master.
        assert!(s.vms.contains_key(&205));
        assert!(s.frontend.is_some());
    }
    let rolled: Vec<&str> = journal
        .records
        .iter()
        .filter_map(|r| match r {
            Record::RolledBack { step, .. } => Some(step.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        rolled,
        [
            "join/k8s-master-2/load-balancer",
            "join/k8s-master-2/apiserver-probe",
            "join/k8s-master-2/static-pods",
            "join/k8s-master-2/apiserver-extras",
            "join/k8s-master-2/taint",
            "join/k8s-master-2/promoted",
            "join/k8s-master-2/join"
        ]
    );
    // Fix the cause and resume: the phase is redone and the plan completes.
    sim.borrow_mut().fail.clear();
    assert_eq!(run_to_end(&plan, &sim, &mut journal), Outcome::Completed);
    assert_eq!(sim.borrow().etcd.len(), 3);
}

#[test]
fn a_slow_plan_re_uploads_the_certificate_key() {
    let plan = example_plan();
    let sim = fresh_sim(&plan);
    sim.borrow_mut().join_duration = jiff::SignedDuration::from_mins(100);
    let mut journal = MemJournal::default();
    assert_eq!(run_to_end(&plan, &sim, &mut journal), Outcome::Completed);
    let uploads = sim
        .borrow()
        .effects
        .iter()
        .filter(|e| *e == "upload-certs")
        .count();
    assert_eq!(uploads, 2, "the second join needs a fresh key");
    assert_eq!(
        journal
            .records
            .iter()
            .filter(|r| matches!(r, Record::CertificateKey { .. }))
            .count(),
        2
    );
}

#[test]
fn the_planner_re_uploads_for_long_join_sequences() {
    let (from, mut to) = topologies();
    to.hypervisors[0].memory_gib = 4096;
    to.hypervisors[0].cpus = 1024;
    let template = to
        .nodes
        .iter()
        .find(|n| n.name == "k8s-master-2")
        .unwrap()
        .clone();
    for i in 4..=15u32 {
        let mut n = template.clone();
        n.name = format!("k8s-master-{i}");
        n.address = format!("10.0.20.{}", 110 + i).parse().unwrap();
        n.vmid = Some(300 + i);
        to.nodes.push(n);
    }
    let plan = plan::plan(&from, &to, None, &opts()).unwrap();
    let uploads: Vec<String> = plan
        .steps()
        .filter(|(_, s)| s.id.ends_with("upload-certs"))
        .map(|(_, s)| s.id.clone())
        .collect();
    assert_eq!(
        uploads,
        [
            "join-material/upload-certs",
            "join/k8s-master-12/upload-certs"
        ]
    );
}

#[test]
fn dry_run_changes_nothing_and_gates_block() {
    let plan = example_plan();
    let sim = fresh_sim(&plan);
    let mut journal = MemJournal::default();
    let mut opts = confirm_all(&plan);
    opts.dry_run = true;
    let out = with_backends(&sim, |b| {
        exec::run(&plan, b, &mut journal, &opts, &mut |_| {})
    })
    .unwrap();
    let Outcome::DryRun { would_apply } = out else {
        panic!("{out:?}")
    };
    assert!(would_apply.contains(&"provision/k8s-master-2/clone".to_string()));
    assert!(sim.borrow().effects.is_empty());
    assert!(journal.records.is_empty());

    sim.borrow_mut().kill_switch = true;
    let out = run_to_end(&plan, &sim, &mut journal);
    match out {
        Outcome::Blocked { step, reasons } => {
            assert_eq!(step, "preflight/etcd-snapshot");
            assert!(
                reasons.iter().any(|r| r.starts_with("kill-switch")),
                "{reasons:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        sim.borrow().effects.is_empty(),
        "nothing after the blocked gate: {:?}",
        sim.borrow().effects
    );
}

#[test]
fn a_journal_is_only_resumed_with_its_own_plan() {
    let plan = example_plan();
    let (from, mut to) = topologies();
    to.nodes
        .iter_mut()
        .find(|n| n.name == "k8s-master-3")
        .unwrap()
        .memory_gib = Some(16);
    let other = plan::plan(&from, &to, None, &opts()).unwrap();
    let sim = fresh_sim(&plan);
    let mut journal = MemJournal::default();
    sim.borrow_mut().crash = Some(Crash {
        at_apply: 3,
        after_effect: false,
    });
    quiet_injected_crashes();
    let _ = catch_unwind(AssertUnwindSafe(|| run_to_end(&plan, &sim, &mut journal)));
    let err = with_backends(&sim, |b| {
        exec::run(&other, b, &mut journal, &Options::default(), &mut |_| {})
    })
    .unwrap_err();
    assert!(err.to_string().contains("belongs to plan"), "{err}");
}

/// Where the checks of a new master sit: right after its VM starts, nothing
/// touches it before `VerifyNotJoined`; its versions are checked before any
/// join; after its join, the apiserver's extras are copied and its static
/// pods and direct `/readyz` checked before the pool gets it.
#[test]
fn a_new_master_is_checked_before_it_serves() {
    use hacore::backend::{CpOp, HvOp, LbOp, Op};
    let (from, to) = topologies();
    let mut plans = vec![example_plan()];
    let mut voters = to.clone();
    voters.etcd.learner_joins = false;
    plans.push(plan::plan(&from, &voters, None, &opts()).unwrap());
    for plan in &plans {
        let steps: Vec<&hacore::plan::Step> = plan.steps().map(|(_, s)| s).collect();
        let first_join = steps
            .iter()
            .position(|s| matches!(s.op, Op::ControlPlane(CpOp::JoinControlPlane { .. })))
            .unwrap();
        for new in ["k8s-master-2", "k8s-master-3"] {
            let at = |want: &dyn Fn(&Op) -> bool| {
                let found: Vec<usize> = (0..steps.len()).filter(|i| want(&steps[*i].op)).collect();
                assert_eq!(found.len(), 1, "{new}: {found:?}");
                found[0]
            };
            let start = at(
                &|o| matches!(o, Op::Hypervisor(HvOp::StartVm { vmid, .. }) if Some(*vmid) == to.node(new).unwrap().vmid),
            );
            let not_joined = at(
                &|o| matches!(o, Op::ControlPlane(CpOp::VerifyNotJoined { node }) if node == new),
            );
            let versions = at(
                &|o| matches!(o, Op::ControlPlane(CpOp::CheckVersions { node, like }) if node == new && like == "k8s-master"),
            );
            let join = at(
                &|o| matches!(o, Op::ControlPlane(CpOp::JoinControlPlane { node, .. }) if node == new),
            );
            let extras = at(
                &|o| matches!(o, Op::ControlPlane(CpOp::SyncApiserverExtras { from, node }) if node == new && from == "k8s-master"),
            );
            let pods = at(
                &|o| matches!(o, Op::ControlPlane(CpOp::VerifyStaticPods { node }) if node == new),
            );
            let probe = at(
                &|o| matches!(o, Op::ControlPlane(CpOp::ProbeApiserver { node, .. }) if node == new),
            );
            let add = at(
                &|o| matches!(o, Op::LoadBalancer(LbOp::AddServer { server, .. }) if server == new),
            );
            assert_eq!(
                not_joined,
                start + 1,
                "{new}: nothing before VerifyNotJoined"
            );
            assert!(versions > not_joined && versions < first_join, "{new}");
            assert!(
                join < extras && extras < pods && pods < probe && probe < add,
                "{new}"
            );
            // The probe asks the same address the pool will send clients to.
            let (
                Op::ControlPlane(CpOp::ProbeApiserver { address, port, .. }),
                Op::LoadBalancer(LbOp::AddServer {
                    address: server, ..
                }),
            ) = (&steps[probe].op, &steps[add].op)
            else {
                unreachable!()
            };
            assert_eq!(std::net::SocketAddr::new(*address, *port), *server);
            // The probe is in the same phase as the addition, so its failure rolls the join back.
            let phase_of = |i: usize| plan.steps().nth(i).unwrap().0.id.clone();
            assert_eq!(phase_of(probe), phase_of(add));
            assert_eq!(phase_of(not_joined), format!("provision/{new}"));
        }
        for s in &steps {
            assert_eq!(
                matches!(s.op, Op::ControlPlane(CpOp::PinnedWorkloads { .. })),
                s.id == "verify/pinned-workloads/k8s-master",
                "{}",
                s.id
            );
        }
        assert!(
            steps
                .iter()
                .any(|s| s.id == "verify/pinned-workloads/k8s-master" && s.op.is_manual())
        );
    }
}

fn rolled_back_at(out: &Outcome) -> (&str, &str, &str) {
    match out {
        Outcome::RolledBack { phase, step, error } => (phase, step, error),
        other => panic!("expected a rollback, got {other:?}"),
    }
}

#[test]
fn a_version_mismatch_is_refused_and_the_vm_deleted() {
    let plan = example_plan();
    let sim = fresh_sim(&plan);
    sim.borrow_mut().template_versions.kubelet = "v1.30.5".into();
    let mut journal = MemJournal::default();
    let out = run_to_end(&plan, &sim, &mut journal);
    let (phase, step, error) = rolled_back_at(&out);
    assert_eq!(phase, "provision/k8s-master-2");
    assert_eq!(step, "provision/k8s-master-2/versions");
    assert!(error.contains("check-versions"), "{error}");
    {
        let s = sim.borrow();
        assert!(!s.vms.contains_key(&205), "the VM was deleted");
        assert_eq!(s.etcd.len(), 1, "nothing joined");
        assert!(!s.effects.iter().any(|e| e.starts_with("join ")));
    }
    // A template with the right versions: the resumed run completes.
    sim.borrow_mut().template_versions = hacore::in_memory::SimVersions::default();
    assert_eq!(run_to_end(&plan, &sim, &mut journal), Outcome::Completed);
    assert_eq!(sim.borrow().etcd.len(), 3);
}

/// A VM with the planned id and name was there before the run (made by
/// hand, not by this tool): the clone finds it "in place" and records no
/// `started`. When a later step of the phase fails, the rollback must not
/// stop or delete that VM: only what this tool did is undone.
#[test]
fn a_vm_that_was_there_before_the_run_is_left_by_the_rollback() {
    let plan = example_plan();
    let sim = fresh_sim(&plan);
    sim.borrow_mut().vms.insert(
        205,
        hacore::in_memory::SimVm {
            host: "pve".into(),
            name: "k8s-master-2".into(),
            running: true,
            snapshots: Vec::new(),
            auto_joins: false,
        },
    );
    sim.borrow_mut().template_versions.kubelet = "v1.30.5".into();
    let mut journal = MemJournal::default();
    let out = run_to_end(&plan, &sim, &mut journal);
    let (phase, step, _) = rolled_back_at(&out);
    assert_eq!(phase, "provision/k8s-master-2");
    assert_eq!(step, "provision/k8s-master-2/versions");
    let s = sim.borrow();
    let vm = s
        .vms
        .get(&205)
        .expect("the VM that was there before is still there");
    assert!(vm.running, "and still running");
    assert!(
        !s.effects
            .iter()
            .any(|e| e.contains("205") && (e.starts_with("delete") || e.starts_with("stop"))),
        "{:?}",
        s.effects
    );
}

#[test]
fn a_template_that_joins_by_itself_is_refused() {
    let plan = example_plan();
    let sim = fresh_sim(&plan);
    sim.borrow_mut().template_auto_joins = true;
    let mut journal = MemJournal::default();
    let out = run_to_end(&plan, &sim, &mut journal);
    let (phase, step, _) = rolled_back_at(&out);
    assert_eq!(phase, "provision/k8s-master-2");
    assert_eq!(step, "provision/k8s-master-2/not-joined");
    {
        let s = sim.borrow();
        assert!(!s.vms.contains_key(&205), "the VM was deleted");
        assert!(!s.etcd.contains_key("k8s-master-2"));
        assert_eq!(s.pool.as_ref().unwrap().len(), 1, "the pool is as it was");
        // The Node it registered outlives the VM: the step's note says to delete it.
        assert!(s.joined.contains("k8s-master-2"));
    }
    let (_, check) = plan
        .steps()
        .find(|(_, s)| s.id == "provision/k8s-master-2/not-joined")
        .unwrap();
    assert!(check.notes[0].contains("kubectl delete node k8s-master-2"));
    // The template fixed, the Node deleted: the resumed run completes.
    {
        let mut s = sim.borrow_mut();
        s.template_auto_joins = false;
        s.joined.remove("k8s-master-2");
    }
    assert_eq!(run_to_end(&plan, &sim, &mut journal), Outcome::Completed);
    assert!(sim.borrow().etcd.values().all(|learner| !learner));
}

#[test]
fn the_apiservers_extras_are_copied_to_every_new_master() {
    let plan = example_plan();
    let sim = fresh_sim(&plan);
    let extras: std::collections::BTreeMap<String, String> = [
        ("--audit-policy-file", "/etc/kubernetes/audit-policy.yaml"),
        ("--audit-log-path", "/var/log/kubernetes/audit/audit.log"),
        ("file:/etc/kubernetes/audit-policy.yaml", "sha256:1f2e"),
        ("--oidc-issuer-url", "https://dex.example.lan"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    sim.borrow_mut()
        .apiserver_extras
        .insert("k8s-master".into(), extras.clone());
    let mut journal = MemJournal::default();
    assert_eq!(run_to_end(&plan, &sim, &mut journal), Outcome::Completed);
    let s = sim.borrow();
    for n in ["k8s-master-2", "k8s-master-3"] {
        assert_eq!(s.apiserver_extras[n], extras, "{n}");
        assert!(
            s.effects
                .contains(&format!("apiserver extras k8s-master -> {n}")),
            "{:?}",
            s.effects
        );
    }
}

#[test]
fn an_apiserver_that_does_not_answer_directly_never_joins_the_pool() {
    let plan = example_plan();
    let sim = fresh_sim(&plan);
    sim.borrow_mut()
        .apiserver_unready
        .insert("k8s-master-2".into());
    let mut journal = MemJournal::default();
    let out = run_to_end(&plan, &sim, &mut journal);
    let (phase, step, error) = rolled_back_at(&out);
    assert_eq!(phase, "join/k8s-master-2");
    assert_eq!(step, "join/k8s-master-2/apiserver-probe");
    assert!(error.contains("probe-apiserver"), "{error}");
    let s = sim.borrow();
    assert!(!s.effects.iter().any(|e| e == "add server k8s-master-2"));
    assert!(!s.pool.as_ref().unwrap().contains_key("k8s-master-2"));
    assert!(!s.etcd.contains_key("k8s-master-2"), "the join was undone");
}

#[test]
fn a_missing_static_pod_stops_the_join() {
    let plan = example_plan();
    let sim = fresh_sim(&plan);
    sim.borrow_mut().join_static_pods.remove("kube-scheduler");
    let mut journal = MemJournal::default();
    let out = run_to_end(&plan, &sim, &mut journal);
    let (_, step, _) = rolled_back_at(&out);
    assert_eq!(step, "join/k8s-master-2/static-pods");
    assert!(!sim.borrow().etcd.contains_key("k8s-master-2"));
}

#[test]
fn the_retrofit_reloads_the_certificate_and_restarts_only_as_a_fallback() {
    let plan = example_plan();
    // The apiserver reloads the pair from disk: no restart.
    let sim = fresh_sim(&plan);
    let mut journal = MemJournal::default();
    assert_eq!(run_to_end(&plan, &sim, &mut journal), Outcome::Completed);
    {
        let s = sim.borrow();
        assert!(
            s.apiserver_restarts.is_empty(),
            "{:?}",
            s.apiserver_restarts
        );
        assert!(
            s.effects
                .contains(&"renew apiserver cert on k8s-master, reloaded".to_string()),
            "{:?}",
            s.effects
        );
        assert!(s.apiserver_sans["k8s-master"].contains(&"10.0.20.99".to_string()));
    }
    // With the reload disabled, the step waits out the bound and restarts
    // the apiserver once: the fallback the plan declares as conditional.
    let sim = fresh_sim(&plan);
    sim.borrow_mut().apiserver_reloads_cert = false;
    let mut journal = MemJournal::default();
    assert_eq!(run_to_end(&plan, &sim, &mut journal), Outcome::Completed);
    let s = sim.borrow();
    assert_eq!(s.apiserver_restarts.get("k8s-master"), Some(&1));
    assert!(
        s.effects.iter().any(|e| e
            == "renew apiserver cert on k8s-master, not reloaded within 1m: apiserver restarted"),
        "{:?}",
        s.effects
    );
    assert!(s.apiserver_sans["k8s-master"].contains(&"10.0.20.99".to_string()));
    let (_, renew) = plan
        .steps()
        .find(|(_, s)| s.id == "endpoint/apiserver-cert/k8s-master")
        .unwrap();
    let outage = renew.outage.as_ref().unwrap();
    assert!(outage.is_conditional() && !outage.is_declared());
    assert!(
        outage
            .only_if
            .as_deref()
            .unwrap()
            .contains("fallback restart")
    );
}

#[test]
fn outages_stay_compatible_with_plans_written_before_the_condition() {
    // An outage as plans wrote it before `only_if` existed reads back as
    // unconditional, and writes back with its camelCase name (a journal
    // begun with the old names still resumes: `legacy_digest`).
    let old = r#"{"up_to":"1m","what":"the whole API"}"#;
    let o: hacore::plan::Outage = serde_json::from_str(old).unwrap();
    assert_eq!(o.only_if, None);
    assert!(o.is_declared());
    assert_eq!(
        serde_json::to_string(&o).unwrap(),
        r#"{"upTo":"1m","what":"the whole API"}"#
    );
    // A plan without a conditional outage has no `only_if` key at all.
    let mut plan = example_plan();
    for p in &mut plan.phases {
        for s in &mut p.steps {
            if let Some(o) = s.outage.as_mut() {
                o.only_if = None;
            }
        }
    }
    assert!(!serde_json::to_string(&plan).unwrap().contains("onlyIf"));
    let json = serde_json::to_string(&example_plan()).unwrap();
    assert!(json.contains("\"onlyIf\":\"the fallback restart is taken"));
}

#[test]
fn a_journal_begun_with_the_old_field_names_still_resumes() {
    // Before camelCase everywhere, an outage's `upTo`/`onlyIf` and a
    // clone's `memoryGiB`/`diskGiB` were `up_to`, `only_if`, `memory_gib`,
    // `disk_gib` (the topologies' `memoryGiB` always was): the legacy text
    // is the plan with exactly those keys renamed, so its digest is what a
    // journal begun then recorded.
    let plan = example_plan();
    let new: serde_json::Value = serde_json::to_value(&plan).unwrap();
    let legacy: serde_json::Value = serde_json::from_str(&plan.legacy_json()).unwrap();
    let mut expected = new.clone();
    let mut renamed = 0;
    for phase in expected["phases"].as_array_mut().unwrap() {
        for step in phase["steps"].as_array_mut().unwrap() {
            let step = step.as_object_mut().unwrap();
            if let Some(o) = step.get_mut("outage").and_then(|o| o.as_object_mut()) {
                for (now, was) in [("upTo", "up_to"), ("onlyIf", "only_if")] {
                    if let Some(v) = o.remove(now) {
                        o.insert(was.into(), v);
                        renamed += 1;
                    }
                }
            }
            for key in ["op", "rollback"] {
                // `{"system": "hypervisor", "do": {"op": "clone-vm", ...}}`
                let op = step.get_mut(key).and_then(|o| o.get_mut("do"));
                let Some(op) = op.and_then(|o| o.as_object_mut()) else {
                    continue;
                };
                if op.get("op").and_then(|o| o.as_str()) == Some("clone-vm") {
                    for (now, was) in [("memoryGiB", "memory_gib"), ("diskGiB", "disk_gib")] {
                        let v = op.remove(now).unwrap();
                        op.insert(was.into(), v);
                        renamed += 1;
                    }
                }
            }
        }
    }
    assert!(renamed >= 3, "the example has outages and clones");
    assert_eq!(legacy, expected);
    // The old names read back as the same plan.
    let back: hacore::plan::Plan = serde_json::from_str(&plan.legacy_json()).unwrap();
    assert_eq!(back, plan);
    assert_ne!(plan.legacy_digest(), plan.digest());
    // A journal begun with it resumes.
    let sim = fresh_sim(&plan);
    let mut journal = MemJournal::default();
    journal.records.push(Record::Begin {
        plan: plan.legacy_digest(),
        at: now(),
    });
    assert_eq!(run_to_end(&plan, &sim, &mut journal), Outcome::Completed);
}

#[test]
fn every_phase_says_what_its_rollback_does() {
    let plan = example_plan();
    let md = plan.to_markdown();
    for p in &plan.phases {
        let r = p
            .rollback
            .as_deref()
            .unwrap_or_else(|| panic!("phase {} has no rollback", p.id));
        let undoes = p.steps.iter().any(|s| s.rollback.is_some());
        assert_eq!(!r.starts_with("nothing to undo"), undoes, "{}: {r}", p.id);
        assert!(
            md.contains(&format!("## {}\n\n_Rollback:_ {r}\n", p.title)),
            "{}",
            p.id
        );
    }
}

#[test]
fn the_worst_case_restores_the_preflight_snapshot_onto_the_master_by_hand() {
    let plan = example_plan();
    let r = plan.recovery.as_ref().expect("a recovery procedure");
    let ids: Vec<&str> = r.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "recovery/stop-other-masters",
            "recovery/copy-snapshot",
            "recovery/stop-control-plane",
            "recovery/restore",
            "recovery/start-etcd",
            "recovery/start-apiserver"
        ]
    );
    let restore = &r.steps[3];
    assert!(restore.commands.contains(&"etcdutl snapshot restore /root/pre-ha-migration-etcd.db --name k8s-master --initial-cluster k8s-master=https://10.0.20.100:2380 --initial-advertise-peer-urls https://10.0.20.100:2380 --data-dir /var/lib/etcd".to_string()), "{:?}", restore.commands);
    assert!(
        r.steps
            .iter()
            .all(|s| !s.commands.is_empty() && !s.confirm.is_empty())
    );
    // The etcd manifest leaves the kubelet's directory before the restore and comes back after it.
    let step_with = |needle: &str| {
        r.steps
            .iter()
            .position(|s| s.commands.iter().any(|c| c.contains(needle)))
            .unwrap_or_else(|| panic!("no command with {needle}"))
    };
    assert!(
        step_with(
            "mv /etc/kubernetes/manifests/kube-apiserver.yaml /etc/kubernetes/manifests/etcd.yaml"
        ) < 3
    );
    assert_eq!(
        step_with("mv /etc/kubernetes/manifests.stopped/etcd.yaml"),
        4
    );
    // Rendered for the person to tick off, and kept in the JSON.
    let md = plan.to_markdown();
    assert!(
        md.contains("## Worst case: restore the preflight etcd snapshot onto k8s-master, alone")
    );
    assert!(md.contains("- [ ] **recovery/restore**"));
    let json = serde_json::to_value(&plan).unwrap();
    assert_eq!(json["recovery"]["steps"][3]["id"], "recovery/restore");
    // A plan written before these fields reads back without them.
    let mut old = json.clone();
    old.as_object_mut().unwrap().remove("recovery");
    for p in old["phases"].as_array_mut().unwrap() {
        p.as_object_mut().unwrap().remove("rollback");
    }
    let back: Plan = serde_json::from_value(old.clone()).unwrap();
    assert!(back.recovery.is_none() && back.phases.iter().all(|p| p.rollback.is_none()));
    assert_eq!(serde_json::to_value(&back).unwrap(), old);
}

/// Each step of the plan a person reviews says what runs, not an internal
/// operation: the kubeadm command, the etcd call, the Proxmox API request,
/// the load balancer's change; secrets are placeholders. Every policy a
/// step cites is a built-in one `hacli policy list` lists.
#[test]
fn every_step_says_what_it_runs_and_no_secret() {
    let plan = example_plan();
    for (_, s) in plan.steps() {
        let c = s
            .command
            .as_deref()
            .unwrap_or_else(|| panic!("{}: no command", s.id));
        assert!(
            !c.is_empty() && !c.starts_with("control-plane:"),
            "{}: {c}",
            s.id
        );
        assert_eq!(
            s.rollback.is_some(),
            s.rollback_command.is_some(),
            "{}",
            s.id
        );
        for g in &s.preconditions {
            assert!(
                hacore::gate::BUILTINS.contains(&g.policy.as_str()),
                "{} cites policy {}, which `hacli policy list` does not list",
                s.id,
                g.policy
            );
        }
    }
    let md = plan.to_markdown();
    let text = plan.to_text();
    for want in [
        "kubeadm init phase upload-config kubeadm --config",
        "kubeadm join 10.0.20.99:6443 --control-plane",
        "--token $TOKEN",
        "--certificate-key <redacted>",
        "etcdctl member add --learner",
        "snapshot save",
        "POST /nodes/pve/qemu/9000/clone newid=205",
        "kubeadm init phase upload-certs --upload-certs",
        "pfSense HAProxy package",
        "--resolve k8s-api.viktorbarzin.lan:6443:",
    ] {
        assert!(md.contains(want), "the markdown lacks `{want}`:\n{md}");
    }
    assert!(text.contains("do: ssh k8s-master-2 kubeadm join"), "{text}");
    // The JSON carries it too, and a plan written before (no command)
    // still renders one, with the same digest as before.
    let json = serde_json::to_value(&plan).unwrap();
    assert!(json["phases"][0]["steps"][0]["command"].is_string());
    let mut old = plan.clone();
    for p in &mut old.phases {
        for s in &mut p.steps {
            s.command = None;
            s.rollback_command = None;
        }
    }
    assert!(!serde_json::to_string(&old).unwrap().contains("\"command\""));
    assert_eq!(old.to_markdown(), md);
}

/// The VIP is proven before any client uses it: an apiserver certificate
/// without the API's DNS name fails the smoke test, the cut-over phase is
/// rolled back before anything moved, and once fixed the run finishes.
#[test]
fn a_vip_whose_certificate_lacks_its_name_stops_the_run_before_the_cut_over() {
    use hacore::backend::{CpOp, Op};
    let plan = example_plan();
    let ids: Vec<&str> = plan.steps().map(|(_, s)| s.id.as_str()).collect();
    let probe = ids
        .iter()
        .position(|i| *i == "cutover/vip-smoke-test")
        .unwrap();
    assert!(
        ids.iter()
            .position(|i| i.starts_with("cutover/kubelet/"))
            .is_some_and(|k| probe < k),
        "{ids:?}"
    );
    // The certificates are issued without the name.
    let name = plan.to.control_plane_endpoint.dns_name.clone().unwrap();
    let mut broken = plan.clone();
    for p in &mut broken.phases {
        for s in &mut p.steps {
            if let Op::ControlPlane(
                CpOp::SetControlPlaneEndpoint { sans, .. } | CpOp::RenewApiserverCert { sans, .. },
            ) = &mut s.op
            {
                sans.retain(|x| *x != name);
            }
        }
    }
    let sim = fresh_sim(&broken);
    let old_server = sim.borrow().kube_proxy.clone();
    let mut journal = MemJournal::default();
    match run_to_end(&broken, &sim, &mut journal) {
        Outcome::RolledBack { phase, step, .. } => {
            assert_eq!(phase, "cutover");
            assert_eq!(step, "cutover/vip-smoke-test");
        }
        other => panic!("expected the cut-over rolled back, got {other:?}"),
    }
    let s = sim.borrow();
    assert_eq!(s.kube_proxy, old_server, "no client was moved");
    for n in &broken.from.nodes {
        assert_eq!(
            s.kubelet_server.get(&n.name),
            Some(&old_server),
            "{}",
            n.name
        );
    }
}

/// `--verify-drill`: the plan ends with a planned reboot of the first
/// master; the rehearsal reboots it.
#[test]
fn the_verify_drill_is_the_last_step() {
    let plan = plan::with_drill(example_plan());
    let (phase, last) = plan.steps().last().unwrap();
    assert_eq!(phase.id, "drill");
    assert_eq!(last.id, "drill/planned-reboot/k8s-master");
    assert!(last.op.takes_down());
    assert!(
        last.command
            .as_deref()
            .unwrap()
            .contains("hacli drill --planned k8s-master"),
        "{last:?}"
    );
    // Idempotent, and the HA phase goes before it.
    let again = plan::with_drill(plan.clone());
    assert_eq!(again, plan);
    let with_ha = plan::placement::with_ha(plan.clone(), "hacli-masters");
    assert_eq!(with_ha.phases.last().unwrap().id, "drill");
    let sim = fresh_sim(&plan);
    let mut journal = MemJournal::default();
    assert_eq!(run_to_end(&plan, &sim, &mut journal), Outcome::Completed);
    assert!(sim.borrow().acted.contains("k8s-master"));
}
