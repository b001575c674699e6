//! A cluster with one master (issue 28): its outage is refused unless the
//! policy states and accepts it, and then the plan says so.

use hacore::Topology;
use hacore::disrupt::{DisruptAction, DisruptOptions, accepts_outage, plan};
use hacore::gate::Policy;

fn single() -> Topology {
    Topology::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/topology/single-master.yaml"),
    )
    .unwrap()
    .0
}

#[test]
fn the_only_masters_reboot_is_refused_unless_the_outage_is_accepted() {
    let t = single();
    let refused = plan(
        &t,
        &DisruptAction::Reboot,
        "k8s-master",
        &DisruptOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        refused.contains("k8s-master is the cluster's only master"),
        "{refused}"
    );
    assert!(refused.contains("--policy single-master"), "{refused}");

    let policy = Policy::builtin("single-master").unwrap();
    assert!(accepts_outage(&policy));
    assert!(!accepts_outage(&Policy::builtin("reboot").unwrap()));
    let opts = DisruptOptions {
        accept_outage: accepts_outage(&policy),
        ..Default::default()
    };
    let p = plan(&t, &DisruptAction::Reboot, "k8s-master", &opts).unwrap();
    assert!(
        p.warnings
            .iter()
            .any(|w| w.starts_with("OUTAGE ACCEPTED: k8s-master is the only master")),
        "{:?}",
        p.warnings
    );
    // A worker needs no acceptance and states no outage.
    let w = plan(
        &t,
        &DisruptAction::Reboot,
        "k8s-node1",
        &DisruptOptions::default(),
    )
    .unwrap();
    assert!(w.warnings.is_empty(), "{:?}", w.warnings);
}
