//! `hacli apply --backend live` migrates the lab's seed cluster (one
//! master with a one-member etcd, two workers, all lab hosts; the kubeadm
//! stand-in) to three masters behind the VIP of a real HAProxy, cloning the
//! new masters through the Proxmox stand-in: the plan comes from `hacli
//! plan`, the run goes through the executor and its journal, and the end
//! state is read from the real systems (etcd's member list, HAProxy's
//! `show stat`, the files and certificates on each host). The run and its
//! checks are in `common` (the other live tests start from its end state).

mod common;

use common::migrate;

#[test]
fn apply_backend_live_migrates_the_seed_to_three_masters_behind_the_vip() {
    let _one = common::one_lab();
    migrate(
        "apply_backend_live_migrates_the_seed_to_three_masters_behind_the_vip",
        &[],
    );
}

/// The same migration, `hacli apply` SIGKILLed at chosen points (a phase
/// boundary, between a clone and its start, between the join that adds a
/// learner and the check of its promotion, in the middle of renewing the
/// apiserver certificate, of writing the pool, of a kubelet cut-over) and
/// resumed from its journal each time: it ends in the same state, with no
/// second VM, etcd member or pool server.
#[test]
fn a_migration_killed_at_chosen_points_and_resumed_ends_the_same() {
    let _one = common::one_lab();
    migrate(
        "a_migration_killed_at_chosen_points_and_resumed_ends_the_same",
        &[
            ("done", "preflight/vm-snapshot/m1"),
            ("started", "endpoint/apiserver-cert/m1"),
            ("started", "load-balancer/pool"),
            ("done", "provision/m2/clone"),
            ("done", "join/m2/join"),
            ("started", "cutover/kubelet/w1"),
            ("done", "cutover/cluster-info"),
        ],
    );
}
