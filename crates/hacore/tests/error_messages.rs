//! The errors a newcomer meets first say what is wrong and what to do
//! (issue 28): each test writes the mistake and reads the message.

use hacore::{Policy, Topology};

#[test]
fn a_policy_path_that_does_not_exist_says_so() {
    let e = Policy::named_or_file("./policies/nightly.yaml")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("policy file `./policies/nightly.yaml` does not exist"),
        "{e}"
    );
    // A bare word is still a built-in's name, misspelt.
    let e = Policy::named_or_file("rebot").unwrap_err().to_string();
    assert!(e.contains("unknown policy `rebot`"), "{e}");
}

#[test]
fn a_missing_name_does_not_hide_a_typo_in_extends() {
    let e = Policy::from_yaml("p.yaml", "description: nights\nextends: rebot\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("name: missing"), "{e}");
    assert!(
        e.contains("p.yaml:2:1: error: extends: unknown built-in policy `rebot`"),
        "{e}"
    );
    assert!(
        !e.contains("enables no rule"),
        "the unknown base explains the empty policy once: {e}"
    );
}

#[test]
fn a_topology_value_that_swallowed_the_next_line_is_shown_with_the_fix() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/topology/single-master.yaml"),
    )
    .unwrap();
    // The line after `cluster:` indented: it becomes part of the name.
    let swallowed = text.replacen("cluster: homelab\n", "cluster: homelab\n  network\n", 1);
    assert_ne!(swallowed, text);
    let (topology, report) = Topology::from_yaml("t.yaml", &swallowed).unwrap();
    assert_eq!(topology.cluster, "homelab network");
    let w = report
        .warnings
        .iter()
        .map(ToString::to_string)
        .find(|w| w.contains("the value read is \"homelab network\""))
        .unwrap_or_else(|| panic!("no warning: {:?}", report.warnings));
    assert!(w.starts_with("t.yaml:"), "{w}");
    assert!(w.contains("indent"), "{w}");

    // A port indented too far under the endpoint: an error naming both.
    let bad = text.replacen("  port: 6443\n", "    port: 6443\n", 1);
    assert_ne!(bad, text);
    let e = Topology::from_yaml("t.yaml", &bad).unwrap_err().to_string();
    assert!(e.contains("controlPlaneEndpoint.address"), "{e}");
    assert!(e.contains("the value read is \"10.0.20.100 port\""), "{e}");
}
