//! Speed targets are benchmark figures, not test failures: a test that
//! measures one prints it against its target with [`figure`], and keeps
//! only a bound that a real regression breaks (a loaded 2-core machine
//! must not fail it). `scripts/bench-targets.sh` runs those tests and
//! prints every figure against its target (`--check`: exit 1 if one is
//! missed).

/// Print `target: NAME: FIGURE (target TARGET): met|MISSED` on stdout,
/// where the benchmark script reads it. Returns `met`.
pub fn figure(name: &str, figure: &str, target: &str, met: bool) -> bool {
    println!(
        "target: {name}: {figure} (target {target}): {}",
        if met { "met" } else { "MISSED" }
    );
    met
}
