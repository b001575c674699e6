//! `hacli apply --backend live` migrates the lab's seed cluster (one
//! master with a one-member etcd, two workers, all lab hosts; the kubeadm
//! stand-in) to three masters behind the VIP of a real HAProxy, cloning the
//! new masters through the Proxmox stand-in: the plan comes from `hacli
//! plan`, the run goes through the executor and its journal, and the end
//! state is read from the real systems (etcd's member list, HAProxy's
//! `show stat`, the files and certificates on each host). The run and its
//! checks are in `common`; the uninterrupted run is the first thing
//! tests/three_masters.rs does (its scenarios start from its end state),
//! so this file holds the run killed and resumed.

mod common;

use common::{At, MigrateOptions, Stage, Then};

/// The same migration, `hacli apply` SIGKILLed at chosen points (a phase
/// boundary, between a clone and its start, between the clone of m3's VM
/// and its configuration, between the join that adds a learner and the
/// check of its promotion, in the middle of renewing the apiserver
/// certificate, of writing the pool, of a kubelet cut-over) and resumed
/// from its journal each time: it ends in the same state, with no second
/// VM, etcd member or pool server.
#[test]
fn a_migration_killed_at_chosen_points_and_resumed_ends_the_same() {
    let _one = common::one_lab();
    let kill = |event: &str, step: &str| (At::journal(event, step), Then::Kill(None));
    // m3's clone: a clone task of 3 s, so that the kill lands after the
    // stand-in answered the clone POST and before the config PUT.
    let m3_planned: std::cell::RefCell<Option<(String, String, String)>> = Default::default();
    let not_configured = |st: &Stage<'_>| {
        let vm = st.pve.vm(113).expect("VM 113 exists: the clone was asked");
        assert!(
            !vm.contains_key("ipconfig0"),
            "killed before the configuration, yet VM 113 has an address: {vm:?}"
        );
        assert_eq!(st.pve.count("POST", "/clone"), 2, "m2's clone and m3's");
        println!("VM 113 cloned, not configured: {vm:?}");
    };
    let planned = |st: &Stage<'_>| {
        let to = std::fs::read_to_string(st.topology).unwrap();
        let line = to
            .lines()
            .find(|l| l.contains("name: m3"))
            .expect("m3 in the target topology")
            .to_string();
        let field = |k: &str| {
            line.split(&format!("{k}: "))
                .nth(1)
                .and_then(|r| r.split([',', ' ', '}']).next())
                .unwrap_or_default()
                .to_string()
        };
        *m3_planned.borrow_mut() = Some((field("cpus"), field("memoryGiB"), field("address")));
    };
    let m = common::migrate_with(
        "a_migration_killed_at_chosen_points_and_resumed_ends_the_same",
        MigrateOptions {
            before_run: Some(Box::new(|st: &Stage<'_>| {
                st.pve
                    .set_task_time(Some("qmclone"), std::time::Duration::from_secs(3));
                planned(st);
            })),
            triggers: vec![
                kill("done", "preflight/vm-snapshot/m1"),
                kill("started", "endpoint/apiserver-cert/m1"),
                kill("started", "load-balancer/pool"),
                kill("done", "provision/m2/clone"),
                (
                    At::Pve("POST".into(), "/clone".into(), 2),
                    Then::Kill(Some(Box::new(not_configured))),
                ),
                kill("done", "join/m2/join"),
                kill("started", "cutover/kubelet/w1"),
                kill("done", "cutover/cluster-info"),
            ],
            ..MigrateOptions::default()
        },
    );
    let Some(m) = m else { return };
    // One clone of m3 (migrate_with counted two in all), configured as planned.
    let (cpus, memory_gib, address) = m3_planned.borrow().clone().unwrap();
    let vm = m.pve.vm(113).unwrap();
    assert_eq!(vm.get("cores"), Some(&cpus), "{vm:?}");
    let mem: u64 = memory_gib.parse().unwrap();
    assert_eq!(vm.get("memory"), Some(&(mem * 1024).to_string()), "{vm:?}");
    assert!(
        vm.get("ipconfig0")
            .is_some_and(|c| c.starts_with(&format!("ip={address}/"))),
        "{vm:?}"
    );
    println!("VM 113 after the resumed run: {vm:?}");
}
