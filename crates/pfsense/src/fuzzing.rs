//! Fuzzing entry point for `show stat` parsing, shared by the `cargo fuzz`
//! target in `fuzz/` and the corpus replay test (`tests/fuzz_corpus.rs`),
//! so both run exactly the same code. Not a stable API.

use crate::{ServerStatus, Stats};

/// HAProxy's `show stat` answer (`Stats::parse`); if accepted: every pool
/// it names read as hacore's load-balancer state, and each server's status
/// parsed again from its text. Returns whether the text was accepted;
/// panics only on a bug.
pub fn show_stat(data: &[u8]) -> bool {
    // The runtime client reads the answer as UTF-8, lossily.
    let text = String::from_utf8_lossy(data);
    let Ok(stats) = Stats::parse(&text) else {
        return false;
    };
    let pools: std::collections::BTreeSet<&String> = stats
        .backends
        .iter()
        .chain(stats.servers.iter().map(|s| &s.backend))
        .collect();
    // A few pools are enough: each lookup scans every row.
    for pool in pools.into_iter().take(8) {
        let _ = stats.lb_state(pool);
        // pfSense's names: `pool_ipvANY` is also found as `pool`.
        if let Some((bare, _)) = pool.rsplit_once("_ipv") {
            let _ = stats.lb_state(bare);
        }
    }
    for s in &stats.servers {
        assert_eq!(
            ServerStatus::parse(&s.status_text),
            s.status,
            "{:?}",
            s.status_text
        );
        if let Ok(b) = s.to_backend() {
            assert_eq!(b.server, s.server);
        }
    }
    true
}
