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

#[test]
fn each_captured_haproxy_answer_is_accepted() {
    let data = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data"));
    let seeds = [
        "lab-show-stat-healthy.csv",
        "lab-show-stat-maint-drain-down.csv",
        "pfsense-names-show-stat.csv",
        "pfsense-names-show-stat-going-down.csv",
        "pfsense-names-show-stat-going-up.csv",
    ];
    let bad: Vec<&str> = seeds
        .iter()
        .copied()
        .filter(|f| {
            let bytes = std::fs::read(data.join(f)).unwrap_or_else(|e| panic!("seed {f}: {e}"));
            !pfsense::fuzzing::show_stat(&bytes)
        })
        .collect();
    assert!(bad.is_empty(), "captured answers not accepted: {bad:?}");
}
