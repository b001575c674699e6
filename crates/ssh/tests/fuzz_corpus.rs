//! The `known_hosts` fuzz corpus (`fuzz/corpus/known_hosts/`, and
//! `fuzz/regressions/known_hosts/`) replayed on the stable toolchain through
//! the body the `cargo fuzz` target runs (`ssh::known_hosts::fuzz`): no input
//! may panic, and the named seeds (known_hosts files with `@revoked` and
//! `@cert-authority` markers, hashed and bracketed hosts) must still be read.
//! (The same replay as `hacore::fuzzing::replay`, which this crate does not
//! depend on.)

use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz"));
    let mut files = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for e in entries {
            let path = e.unwrap().path();
            if path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn known_hosts_corpus() {
    let files = inputs("known_hosts");
    assert!(
        !files.is_empty(),
        "no inputs in fuzz/corpus/known_hosts: the corpus is committed with the repository"
    );
    let (mut accepted, mut panicked) = (0, Vec::new());
    for path in &files {
        let data = std::fs::read(path).unwrap();
        match std::panic::catch_unwind(|| ssh::known_hosts::fuzz(&data)) {
            Ok(true) => accepted += 1,
            Ok(false) => {}
            Err(_) => panicked.push(path.display().to_string()),
        }
    }
    assert!(panicked.is_empty(), "panicked: {}", panicked.join(", "));
    eprintln!(
        "known_hosts: {} inputs replayed, {accepted} accepted",
        files.len()
    );
    // Every named seed (a name with a dash, not a libFuzzer hash) is read.
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy();
        if name.contains('-') {
            let data = std::fs::read(path).unwrap();
            assert!(
                ssh::known_hosts::fuzz(&data),
                "seed {name}: no line read as a key"
            );
        }
    }
}
