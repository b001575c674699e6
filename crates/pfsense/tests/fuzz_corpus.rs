//! The `show_stat` fuzz corpus (`fuzz/corpus/show_stat/`, and
//! `fuzz/regressions/show_stat/`) replayed on the stable toolchain through
//! the body the `cargo fuzz` target runs: no input may panic, and the seeds
//! (captured HAProxy answers) must still be accepted.

#[test]
fn show_stat_corpus() {
    let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let (inputs, accepted) =
        hacore::fuzzing::replay(root, "show_stat", pfsense::fuzzing::show_stat);
    eprintln!("show_stat: {inputs} inputs replayed, {accepted} accepted");
    assert!(accepted > 0, "none of {inputs} inputs was accepted");
}
