//! Skips that are seen. A test that cannot run here (no network
//! namespaces, a program not installed) calls [`skip`] and returns:
//!
//! - under `HACLI_REQUIRE_LABS=1` (scripts/test.sh sets it when `CI=true`,
//!   so `.ci/run` sets it) [`skip`] panics naming what was missing: on a
//!   machine that must run everything a skip is a failure;
//! - otherwise it prints `skipped: TEST: WHY` and appends that line to
//!   `target/skipped-tests.txt` (or `$HACLI_SKIPPED_TESTS`), which
//!   scripts/test.sh empties first and prints, with the count, at the end:
//!   `cargo test` hides the output of passing tests, the list does not.

use std::io::Write;
use std::path::PathBuf;

/// The switch: `1` turns every skip into a failure.
pub const REQUIRE_LABS: &str = "HACLI_REQUIRE_LABS";
/// Where skips are listed (default: `skipped-tests.txt` in the `target`
/// directory the test binary runs from).
pub const SKIPPED_TESTS: &str = "HACLI_SKIPPED_TESTS";

/// Whether every test must run (`HACLI_REQUIRE_LABS=1`).
pub fn required() -> bool {
    std::env::var(REQUIRE_LABS).is_ok_and(|v| v == "1")
}

/// The file skips are appended to: `$HACLI_SKIPPED_TESTS`, else
/// `skipped-tests.txt` in the nearest `target` directory above the running
/// executable (test binaries run from `target/debug/deps`).
pub fn log_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(SKIPPED_TESTS).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    exe.ancestors()
        .find(|d| d.file_name().is_some_and(|n| n == "target"))
        .map(|t| t.join("skipped-tests.txt"))
}

/// `test` cannot run here because of `why` (what is missing, and how to
/// get it). Panics under `HACLI_REQUIRE_LABS=1`; otherwise says so on
/// stdout and stderr and lists it (see the module's doc). The caller
/// returns after it.
#[track_caller]
pub fn skip(test: &str, why: &str) {
    if required() {
        panic!("{test}: would be skipped, but {REQUIRE_LABS}=1 requires it to run: {why}");
    }
    let line = format!("skipped: {test}: {why}");
    println!("{line}");
    eprintln!("{line}");
    if let Some(path) = log_path() {
        // One write of one line: lines of parallel tests do not interleave.
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
        if let Err(e) = written {
            eprintln!("(could not list the skip in {}: {e})", path.display());
        }
    }
}

/// A part of `test` that this machine cannot run (the rest of the test
/// ran and asserted): listed like a skip, but not a failure under
/// `HACLI_REQUIRE_LABS=1`, for parts that need what a test must not
/// create on the machine it runs on (a non-root login account, say).
pub fn part(test: &str, why: &str) {
    let line = format!("skipped (part): {test}: {why}");
    println!("{line}");
    eprintln!("{line}");
    if let Some(path) = log_path() {
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
        if let Err(e) = written {
            eprintln!("(could not list the skip in {}: {e})", path.display());
        }
    }
}
