//! The fuzz corpora (`fuzz/corpus/<target>/`, `fuzz/regressions/<target>/`)
//! replayed on the stable toolchain through the same bodies the `cargo fuzz`
//! targets run (`hacore::fuzzing`): no input may panic, and the seeds (real
//! files from the repository, each named below, and documents hacli
//! writes: the built-in policies, an example plan) must each be accepted.

use std::path::Path;

use hacore::fuzzing;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn replay(target: &str, body: fn(&[u8]) -> bool) {
    let (inputs, accepted) = fuzzing::replay(root(), target, body);
    eprintln!("{target}: {inputs} inputs replayed, {accepted} accepted");
    assert!(
        accepted > 0,
        "{target}: none of {inputs} inputs was accepted"
    );
}

#[test]
fn topology_corpus() {
    replay("topology", fuzzing::topology);
}

#[test]
fn state_corpus() {
    replay("state", fuzzing::state);
}

#[test]
fn policy_corpus() {
    replay("policy", fuzzing::policy);
}

#[test]
fn plan_corpus() {
    replay("plan", fuzzing::plan);
}

#[test]
fn journal_corpus() {
    replay("journal", fuzzing::journal);
}

#[test]
fn journal_torn_corpus() {
    replay("journal_torn", fuzzing::journal_torn);
}

/// Each named seed, a file under the workspace root, through `body`: the
/// ones not accepted, named.
fn refused(body: fn(&[u8]) -> bool, files: &[&str]) -> Vec<String> {
    files
        .iter()
        .filter(|f| {
            let data = std::fs::read(root().join(f)).unwrap_or_else(|e| panic!("seed {f}: {e}"));
            !body(&data)
        })
        .map(|f| f.to_string())
        .collect()
}

#[test]
fn each_topology_seed_is_accepted() {
    let seeds = [
        "examples/topology/ha.yaml",
        "examples/topology/single-master.yaml",
        "examples/deploy/topology.yaml",
        "crates/hacore/tests/data/topology/lab1.yaml",
        "crates/hacore/tests/data/topology/lab3.yaml",
        "crates/hacore/tests/data/topology/lab5.yaml",
    ];
    let bad = refused(fuzzing::topology, &seeds);
    assert!(bad.is_empty(), "topology seeds not accepted: {bad:?}");
}

#[test]
fn each_state_and_policy_seed_is_accepted() {
    // States are read against the three-master fixture (lab3).
    let bad = refused(
        fuzzing::state,
        &["crates/hacore/tests/data/state/lab3-healthy.yaml"],
    );
    assert!(bad.is_empty(), "state seeds not accepted: {bad:?}");
    let bad = refused(fuzzing::policy, &["examples/policy/kured-gate.yaml"]);
    assert!(bad.is_empty(), "policy seeds not accepted: {bad:?}");
    // The built-in policies, as `hacli policy show -o json` prints them.
    for action in hacore::Action::ALL {
        let p = hacore::gate::Policy::for_action(action);
        let json = serde_json::to_string(&p).unwrap();
        assert!(
            fuzzing::policy(json.as_bytes()),
            "the built-in policy for {action:?} is not accepted: {json}"
        );
    }
}

#[test]
fn an_example_plan_is_accepted() {
    let load = |f: &str| {
        let text = std::fs::read_to_string(root().join(f)).unwrap();
        hacore::Topology::from_yaml(f, &text).unwrap().0
    };
    let from = load("examples/topology/single-master.yaml");
    let to = load("examples/topology/ha.yaml");
    let opts = hacore::plan::Options {
        template: Some(9000),
    };
    let plan = hacore::plan::plan(&from, &to, None, &opts).expect("the examples' migration plan");
    let json = serde_json::to_string_pretty(&plan).unwrap();
    assert!(
        fuzzing::plan(json.as_bytes()),
        "the plan of single-master.yaml -> ha.yaml is not accepted"
    );
}
