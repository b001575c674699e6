//! The fuzz corpora (`fuzz/corpus/<target>/`, `fuzz/regressions/<target>/`)
//! replayed on the stable toolchain through the same bodies the `cargo fuzz`
//! targets run (`hacore::fuzzing`): no input may panic, and the seeds (real
//! files from the repository) must still be accepted.

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
