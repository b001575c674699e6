//! Planned disruptions run on the simulated cluster: a killed run resumed,
//! the lock lost mid-run, a rollback that fails, the upgrade's first
//! master (`hacore::disrupt::run` over `hacore::in_memory`; moved out of
//! the module so that `disrupt` does not import `simulated`).

use hacore::Topology;
use hacore::action::Action;
use hacore::backend::{BackendError, CpOp, Op, ServerState};
use hacore::disrupt::*;
use hacore::exec::{self, ExecError, Outcome};
use hacore::gate::Policy;
use hacore::plan::Plan;
use jiff::Timestamp;

/// A small cluster: three masters and a worker behind HAProxy.
fn topo() -> Topology {
    Topology::from_yaml(
        "t.yaml",
        r#"
cluster: lab
controlPlaneEndpoint: { address: 10.0.0.10 }
loadBalancer: { kind: haproxy, pool: k8s-apiserver, frontend: "10.0.0.10:6443" }
nodes:
  - { name: m1, role: control-plane, address: 10.0.0.11 }
  - { name: m2, role: control-plane, address: 10.0.0.12 }
  - { name: m3, role: control-plane, address: 10.0.0.13 }
  - { name: w1, role: worker, address: 10.0.0.21 }
"#,
    )
    .unwrap()
    .0
}
use hacore::exec::{MemJournal, Record};
use hacore::in_memory::{Crash, InMemoryCluster, InMemoryHandle, with_backends};

fn reboot_gate() -> Gate {
    Gate {
        policy: Policy::for_action(Action::Reboot),
        action: Action::Reboot,
        identity: "me".into(),
    }
}

fn sim_now() -> Timestamp {
    "2026-05-21T12:00:00Z".parse().unwrap()
}

/// One run of `p` for `m1` on `sim` with `lock`, the journal kept.
fn run_m1(
    p: &Plan,
    sim: &std::rc::Rc<std::cell::RefCell<InMemoryCluster>>,
    lock: &mut dyn Lock,
    journal: &mut MemJournal,
) -> Result<Report, ExecError> {
    with_backends(sim, |b| {
        run(
            p,
            "m1",
            &reboot_gate(),
            b,
            lock,
            journal,
            &exec::Options::default(),
            &mut |_| {},
        )
    })
}

/// The apply (1-based) at which a whole run of `p` reboots `m1`.
fn reboot_apply(p: &Plan, t: &Topology) -> usize {
    let sim = InMemoryCluster::new(t, t, sim_now()).shared();
    let mut lock = InMemoryHandle(sim.clone());
    let r = run_m1(p, &sim, &mut lock, &mut MemJournal::default()).unwrap();
    assert!(r.ok(), "{}", r.summary());
    let effects = &sim.borrow().effects;
    1 + effects.iter().position(|e| e == "reboot m1").unwrap()
}

#[test]
fn a_second_master_goes_down_while_a_killed_reboot_waits_the_resumed_run_is_refused() {
    let t = topo();
    let p = plan(&t, &DisruptAction::Reboot, "m1", &DisruptOptions::default()).unwrap();
    let at = reboot_apply(&p, &t);
    let sim = InMemoryCluster::new(&t, &t, sim_now()).shared();
    let mut lock = InMemoryHandle(sim.clone());
    let mut journal = MemJournal::default();
    // Killed right as it asks for the reboot: the boot id is recorded,
    // the reboot has not happened.
    sim.borrow_mut().crash = Some(Crash {
        at_apply: at,
        after_effect: false,
    });
    let killed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_m1(&p, &sim, &mut lock, &mut journal)
    }));
    assert!(killed.is_err(), "the run was not killed");
    assert!(journal.records.iter().any(|r| matches!(
        r,
        Record::BootId { step, boot_id, .. } if step == "reboot/m1/reboot" && boot_id == "m1-boot-0"
    )));
    sim.borrow_mut().crash = None;
    // Meanwhile m2 goes down: the resumed run asks the gate again.
    sim.borrow_mut().down.insert("m2".into());
    let r = run_m1(&p, &sim, &mut lock, &mut journal).unwrap();
    let Report::Ran {
        outcome: Outcome::Blocked { step, reasons },
        ..
    } = &r
    else {
        panic!("not refused: {}", r.summary());
    };
    assert_eq!(step, "reboot/m1/reboot");
    assert!(
        reasons.iter().any(|x| x.starts_with("etcd-quorum (deny)")),
        "{reasons:?}"
    );
    assert_eq!(sim.borrow().reboots.get("m1"), None, "rebooted anyway");
    assert!(
        sim.borrow().cordoned.contains("m1"),
        "a refusal rolls nothing back"
    );
}

#[test]
fn a_reboot_that_happened_before_the_kill_is_never_asked_again() {
    let t = topo();
    let p = plan(&t, &DisruptAction::Reboot, "m1", &DisruptOptions::default()).unwrap();
    let at = reboot_apply(&p, &t);
    let sim = InMemoryCluster::new(&t, &t, sim_now()).shared();
    let mut lock = InMemoryHandle(sim.clone());
    let mut journal = MemJournal::default();
    sim.borrow_mut().crash = Some(Crash {
        at_apply: at,
        after_effect: true,
    });
    let killed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_m1(&p, &sim, &mut lock, &mut journal)
    }));
    assert!(killed.is_err(), "the run was not killed");
    sim.borrow_mut().crash = None;
    // The node's boot id changed: the reboot is done, whatever the
    // backend's memory (a new process has none).
    sim.borrow_mut().acted.clear();
    let r = run_m1(&p, &sim, &mut lock, &mut journal).unwrap();
    assert!(r.ok(), "{}", r.summary());
    assert_eq!(sim.borrow().reboots.get("m1"), Some(&1), "rebooted twice");
    // A reboot asked and never come is not asked again either: the
    // run stops and restores the node.
    let sim = InMemoryCluster::new(&t, &t, sim_now()).shared();
    let mut lock = InMemoryHandle(sim.clone());
    let mut journal = MemJournal::default();
    sim.borrow_mut().crash = Some(Crash {
        at_apply: at,
        after_effect: false,
    });
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_m1(&p, &sim, &mut lock, &mut journal)
    }));
    sim.borrow_mut().crash = None;
    let r = run_m1(&p, &sim, &mut lock, &mut journal).unwrap();
    assert!(r.summary().contains("not asking again"), "{}", r.summary());
    assert_eq!(sim.borrow().reboots.get("m1"), None);
    assert!(!sim.borrow().cordoned.contains("m1"), "restored");
}

/// The simulated lock, taken over by `intruder` at the `after`-th
/// check of the run.
struct TakenOver {
    inner: InMemoryHandle,
    checks: usize,
    after: usize,
}

impl Lock for TakenOver {
    fn acquire(&mut self, identity: &str) -> Result<LockAnswer, BackendError> {
        self.inner.acquire(identity)
    }
    fn release(&mut self, identity: &str) -> Result<(), BackendError> {
        self.inner.release(identity)
    }
    fn held(&mut self, identity: &str) -> Result<(), String> {
        self.checks += 1;
        if self.checks == self.after {
            self.inner.0.borrow_mut().lock_holder = Some("intruder".into());
        }
        self.inner.held(identity)
    }
    fn keep(&mut self, identity: &str, reason: &str) -> Result<(), BackendError> {
        self.inner.keep(identity, reason)
    }
}

#[test]
fn another_holder_takes_the_lock_mid_run_the_run_stops_and_restores() {
    let t = topo();
    let p = plan(&t, &DisruptAction::Reboot, "m1", &DisruptOptions::default()).unwrap();
    let sim = InMemoryCluster::new(&t, &t, sim_now()).shared();
    // Taken over during the leadership move: checked before the cordon
    // (the 4th step).
    let mut lock = TakenOver {
        inner: InMemoryHandle(sim.clone()),
        checks: 0,
        after: 4,
    };
    let r = run_m1(&p, &sim, &mut lock, &mut MemJournal::default()).unwrap();
    let Report::Ran {
        outcome: Outcome::RolledBack { step, error, .. },
        ..
    } = &r
    else {
        panic!("not stopped: {}", r.summary());
    };
    assert!(
        error.contains("stopped before acting") && error.contains("held by intruder"),
        "{error}"
    );
    assert_eq!(step, "reboot/m1/cordon");
    let s = sim.borrow();
    assert_eq!(s.reboots.get("m1"), None, "acted without the lock");
    assert!(!s.cordoned.contains("m1"), "not restored");
    assert_eq!(
        s.server_state
            .get("m1")
            .copied()
            .unwrap_or(ServerState::Ready),
        ServerState::Ready
    );
    assert_eq!(
        s.lock_holder.as_deref(),
        Some("intruder"),
        "not ours to free"
    );
}

#[test]
fn a_rollback_that_fails_keeps_the_lock_with_the_reason() {
    let t = topo();
    let p = plan(&t, &DisruptAction::Reboot, "m1", &DisruptOptions::default()).unwrap();
    let sim = InMemoryCluster::new(&t, &t, sim_now()).shared();
    for f in ["reboot/m1", "uncordon/m1"] {
        sim.borrow_mut()
            .fail
            .insert(f.into(), format!("injected ({f})"));
    }
    let mut lock = InMemoryHandle(sim.clone());
    let e = run_m1(&p, &sim, &mut lock, &mut MemJournal::default()).unwrap_err();
    let e = e.to_string();
    assert!(e.contains("stays held by me"), "{e}");
    let s = sim.borrow();
    assert_eq!(s.lock_holder.as_deref(), Some("me"));
    let kept = s.lock_kept.as_deref().unwrap_or_default();
    assert!(kept.contains("rolling back step"), "{kept}");
    drop(s);
    // The next disruption is denied, naming the holder.
    let q = plan(&t, &DisruptAction::Reboot, "m2", &DisruptOptions::default()).unwrap();
    sim.borrow_mut().fail.clear();
    let r = with_backends(&sim, |b| {
        run(
            &q,
            "m2",
            &Gate {
                identity: "next".into(),
                ..reboot_gate()
            },
            b,
            &mut lock,
            &mut MemJournal::default(),
            &exec::Options::default(),
            &mut |_| {},
        )
    })
    .unwrap();
    let Report::Denied { reasons, .. } = &r else {
        panic!("not denied: {}", r.summary());
    };
    assert!(
        reasons
            .iter()
            .any(|x| x.starts_with("lock (deny)") && x.contains("me")),
        "{reasons:?}"
    );
}

#[test]
fn upgrade_applies_on_the_first_master_only_and_checks_the_version() {
    let t = topo();
    let up = |n: &str| {
        let p = plan(
            &t,
            &DisruptAction::Upgrade {
                version: "v1.33.2".into(),
            },
            n,
            &DisruptOptions::default(),
        )
        .unwrap();
        p.steps()
            .find_map(|(_, s)| match &s.op {
                Op::ControlPlane(CpOp::Upgrade { first, .. }) => Some(*first),
                _ => None,
            })
            .unwrap()
    };
    assert!(up("m1"));
    assert!(!up("m2"));
    assert!(!up("w1"));
    let e = plan(
        &t,
        &DisruptAction::Upgrade {
            version: "1.33".into(),
        },
        "m1",
        &DisruptOptions::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("not a Kubernetes version"), "{e}");
    assert!(plan(&t, &DisruptAction::Reboot, "m9", &DisruptOptions::default()).is_err());
    assert_eq!(roll_order(&t, &[]).unwrap(), ["m1", "m2", "m3", "w1"]);
    assert_eq!(
        roll_order(&t, &["w1".into(), "m3".into()]).unwrap(),
        ["m3", "w1"]
    );
}

/// Records every observation and every new window, observing through the
/// simulated cluster.
struct Windows {
    sim: InMemoryHandle,
    log: Vec<&'static str>,
}

impl hacore::backend::Observer for Windows {
    fn observe(&mut self, topology: &Topology) -> hacore::state::ClusterState {
        self.log.push("observe");
        self.sim.observe(topology)
    }

    fn start_new_window(&mut self) {
        self.log.push("new window");
    }
}

/// A roll asks its observer for a new window after each node, so the next
/// node's gate judges change over a window of its own: etcd's leader moved
/// off the node before (by the roll itself) is not counted as churn.
#[test]
fn a_roll_starts_a_new_observation_window_before_each_next_node() {
    let t = topo();
    let sim = InMemoryCluster::new(&t, &t, sim_now()).shared();
    let (mut hv, mut lb, mut cp) = (
        InMemoryHandle(sim.clone()),
        InMemoryHandle(sim.clone()),
        InMemoryHandle(sim.clone()),
    );
    let clock = InMemoryHandle(sim.clone());
    let mut observer = Windows {
        sim: InMemoryHandle(sim.clone()),
        log: Vec::new(),
    };
    let mut lock = InMemoryHandle(sim.clone());
    let order = roll_order(&t, &["m1".into(), "m2".into()]).unwrap();
    let report = {
        let mut b = hacore::backend::Backends {
            hypervisor: &mut hv,
            load_balancer: &mut lb,
            control_plane: &mut cp,
            observer: &mut observer,
            clock: &clock,
        };
        let mut journal = |_: &str| -> Result<Box<dyn exec::Journal>, ExecError> {
            Ok(Box::new(MemJournal::default()))
        };
        let mut wait = |_: hacore::units::Dur| {};
        roll(
            &t,
            &DisruptAction::Reboot,
            &order,
            &DisruptOptions::default(),
            hacore::units::Dur::default(),
            &reboot_gate(),
            &mut b,
            &mut lock,
            &mut RollIo {
                journal: &mut journal,
                wait: &mut wait,
            },
            &exec::Options::default(),
            &mut |_| {},
        )
        .unwrap()
        .unwrap()
    };
    assert_eq!(report.nodes.len(), 2, "{report:?}");
    assert!(report.nodes.iter().all(|r| r.ok()), "{report:?}");
    let first_window = observer
        .log
        .iter()
        .position(|e| *e == "new window")
        .expect("a new window after m1");
    assert!(
        observer.log[..first_window].contains(&"observe")
            && observer.log[first_window..].contains(&"observe"),
        "m1 observed before the new window, m2 after it: {:?}",
        observer.log
    );
}
