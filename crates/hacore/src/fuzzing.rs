//! Fuzzing entry points: one function per parser of outside input, shared by
//! the `cargo fuzz` targets in `fuzz/` and by the corpus replay test
//! (`tests/fuzz_corpus.rs`), so both run exactly the same code.
//!
//! Each takes raw bytes, feeds them to the parser the way hacli does (files
//! are read as UTF-8; anything else is refused before parsing), uses what was
//! accepted the way hacli would (verdicts, status, plans), and checks cheap
//! properties: an accepted document serialises and parses again to the same
//! value. It returns whether the input was accepted. It panics only on a bug.
//! Not a stable API.

use std::sync::OnceLock;

use jiff::Timestamp;

use crate::action::Action;
use crate::exec;
use crate::gate::{Policy, Request, evaluate};
use crate::plan::{self, Plan};
use crate::state::ClusterState;
use crate::status::status;
use crate::topology::Topology;

/// The fixed context the state and policy targets are evaluated against.
struct Fixtures {
    lab3: Topology,
    lab1: Topology,
    healthy: ClusterState,
}

fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| {
        let topo = |name, text| Topology::from_yaml(name, text).expect("fixture topology").0;
        let lab3 = topo(
            "lab3.yaml",
            include_str!("../tests/data/topology/lab3.yaml"),
        );
        let lab1 = topo(
            "lab1.yaml",
            include_str!("../tests/data/topology/lab1.yaml"),
        );
        let healthy = ClusterState::from_yaml(
            "lab3-healthy.yaml",
            include_str!("../tests/data/state/lab3-healthy.yaml"),
            &lab3,
        )
        .expect("fixture state")
        .0;
        Fixtures {
            lab3,
            lab1,
            healthy,
        }
    })
}

/// Every action on every node and hypervisor host of `topology`, as hacli
/// `check` would evaluate it, plus `status`. Errors (an unknown target) are
/// fine; panics are not.
fn exercise(topology: &Topology, state: &ClusterState, policy: Option<&Policy>, now: Timestamp) {
    let targets = topology
        .nodes
        .iter()
        .map(|n| n.name.as_str())
        .chain(topology.hypervisors.iter().map(|h| h.name.as_str()));
    for target in targets.take(16) {
        for action in Action::ALL {
            let builtin;
            let policy = match policy {
                Some(p) => p,
                None => {
                    builtin = Policy::for_action(action);
                    &builtin
                }
            };
            let request = Request {
                action,
                target,
                requester: Some("fuzz"),
            };
            if let Ok(v) = evaluate(topology, state, policy, &request, now) {
                let _ = (v.allowed(), serde_json::to_string(&v));
            }
        }
    }
    let _ = status(topology, state, now);
}

fn utf8(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// A topology file (`Topology::from_yaml`); if accepted: verdicts on an empty
/// state, a migration plan from the one-master fixture to it, and a JSON
/// round trip.
pub fn topology(data: &[u8]) -> bool {
    let Some(text) = utf8(data) else { return false };
    let Ok((topology, _warnings)) = Topology::from_yaml("fuzz.yaml", text) else {
        return false;
    };
    let now: Timestamp = "2026-03-04T02:00:00Z".parse().expect("a timestamp");
    exercise(&topology, &ClusterState::empty(now), None, now);
    if let Ok(plan) = plan::plan(&fixtures().lab1, &topology, None, &plan::Options::default()) {
        let _ = (plan.to_text(), plan.digest());
    }
    let json = serde_json::to_string(&topology).expect("a topology serialises");
    let (back, _) = Topology::from_yaml("fuzz.json", &json)
        .unwrap_or_else(|e| panic!("an accepted topology does not parse again: {e}\n{json}"));
    assert_eq!(back, topology, "a topology changes through JSON:\n{json}");
    true
}

/// A state file (`ClusterState::from_yaml`, checked against the three-master
/// fixture topology); if accepted: verdicts for every action and target of
/// both fixture topologies, now and a day later, and a JSON round trip.
pub fn state(data: &[u8]) -> bool {
    let Some(text) = utf8(data) else { return false };
    let f = fixtures();
    let Ok((state, _warnings)) = ClusterState::from_yaml("fuzz.yaml", text, &f.lab3) else {
        return false;
    };
    for topology in [&f.lab3, &f.lab1] {
        exercise(topology, &state, None, state.observed_at);
    }
    if let Ok(later) = state
        .observed_at
        .checked_add(jiff::SignedDuration::from_hours(25))
    {
        exercise(&f.lab3, &state, None, later);
    }
    let json = serde_json::to_string(&state).expect("a state serialises");
    let (back, _) = ClusterState::from_yaml("fuzz.json", &json, &f.lab3)
        .unwrap_or_else(|e| panic!("an accepted state does not parse again: {e}\n{json}"));
    assert_eq!(back, state, "a state changes through JSON:\n{json}");
    true
}

/// A policy file (`Policy::from_yaml`); if accepted: every action and target
/// of the three-master fixture under it, and a JSON round trip of the
/// resolved policy.
pub fn policy(data: &[u8]) -> bool {
    let Some(text) = utf8(data) else { return false };
    let Ok(policy) = Policy::from_yaml("fuzz.yaml", text) else {
        return false;
    };
    let f = fixtures();
    exercise(&f.lab3, &f.healthy, Some(&policy), f.healthy.observed_at);
    // Resolved, it stands alone (as `hacli policy show` prints it): without
    // `extends`, whose rules it already holds (less any it disabled).
    let resolved = Policy {
        extends: None,
        ..policy
    };
    let json = serde_json::to_string(&resolved).expect("a policy serialises");
    let back = Policy::from_yaml("fuzz.json", &json)
        .unwrap_or_else(|e| panic!("an accepted policy does not parse again: {e}\n{json}"));
    assert_eq!(back, resolved, "a policy changes through JSON:\n{json}");
    true
}

/// A plan file, read as `hacli apply` and `hacli simulate` read it
/// (`serde_json::from_str::<Plan>`); if accepted: its renderings, its
/// duration, and a JSON round trip with the same digest.
pub fn plan(data: &[u8]) -> bool {
    let Some(text) = utf8(data) else { return false };
    let Ok(plan) = serde_json::from_str::<Plan>(text) else {
        return false;
    };
    let _ = (plan.to_text(), plan.to_markdown(), plan.expected_duration());
    let nodes: Vec<String> = plan.to.nodes.iter().map(|n| n.name.clone()).collect();
    let _ = plan.topology_with(&nodes);
    let json = serde_json::to_string(&plan).expect("a plan serialises");
    let back: Plan = serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("an accepted plan does not parse again: {e}\n{json}"));
    assert_eq!(back, plan, "a plan changes through JSON:\n{json}");
    assert_eq!(back.digest(), plan.digest());
    true
}

/// A journal file (`exec::parse_journal`, what `haops::journal::FileJournal::open` reads);
/// if accepted: replayed as `hacli apply --resume` does, and each record
/// round-trips through its JSON line.
pub fn journal(data: &[u8]) -> bool {
    let Some(text) = utf8(data) else { return false };
    let Ok(records) = exec::parse_journal("fuzz.jsonl", text) else {
        return false;
    };
    let _ = exec::replay(&records);
    for r in &records {
        let line = serde_json::to_string(r).expect("a record serialises");
        let back: exec::Record = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("a journal record does not parse again: {e}\n{line}"));
        assert_eq!(&back, r, "a record changes through JSON:\n{line}");
    }
    true
}

/// A journal file as a crash may leave it (`exec::intact`, what
/// `haops::journal::FileJournal::open` cuts before appending): whatever the bytes, after
/// the cut two appended records read back, after the records the file
/// held; nothing `parse_journal` accepted from the file is lost. Accepted
/// when the kept part parses.
pub fn journal_torn(data: &[u8]) -> bool {
    let intact = exec::intact(data);
    assert!(intact.keep <= data.len(), "the cut is past the end");
    let mut kept = data[..intact.keep].to_vec();
    if intact.newline {
        kept.push(b'\n');
    }
    let Ok(text) = std::str::from_utf8(&kept) else {
        return false;
    };
    let Ok(before) = exec::parse_journal("fuzz.jsonl", text) else {
        return false;
    };
    if let Some(whole) = utf8(data).and_then(|t| exec::parse_journal("fuzz.jsonl", t).ok()) {
        assert_eq!(before, whole, "the cut lost records the file held");
    }
    assert_eq!(
        exec::intact(&kept),
        exec::Intact {
            keep: kept.len(),
            newline: false
        },
        "a cut journal is cut again"
    );
    let at = Timestamp::UNIX_EPOCH;
    let appended = [
        exec::Record::Started {
            step: "fuzz/step".into(),
            at,
        },
        exec::Record::Done {
            step: "fuzz/step".into(),
            at,
            skipped: false,
        },
    ];
    for r in &appended {
        kept.extend_from_slice(serde_json::to_string(r).expect("serialises").as_bytes());
        kept.push(b'\n');
    }
    let text = std::str::from_utf8(&kept).expect("UTF-8 plus JSON is UTF-8");
    let after = exec::parse_journal("fuzz.jsonl", text)
        .unwrap_or_else(|e| panic!("appending after the cut made the journal unreadable: {e}"));
    assert_eq!(after.len(), before.len() + 2, "records lost or glued");
    assert_eq!(&after[..before.len()], &before[..]);
    assert_eq!(&after[before.len()..], &appended[..]);
    true
}

/// Replay a target's committed inputs on the stable toolchain: every file
/// of `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` under the
/// workspace root `root`, through `body` (one of the functions above, or
/// another crate's). Panics naming each input that panicked, or when the
/// corpus is empty; returns (inputs replayed, inputs accepted).
pub fn replay(root: &std::path::Path, target: &str, body: fn(&[u8]) -> bool) -> (usize, usize) {
    let mut files = Vec::new();
    for dir in ["corpus", "regressions"] {
        let dir = root.join("fuzz").join(dir).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            let path = e
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .path();
            if path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    assert!(
        !files.is_empty(),
        "no inputs in {}/fuzz/corpus/{target}: the corpus is committed with the repository",
        root.display()
    );
    let (mut accepted, mut panicked) = (0, Vec::new());
    for path in &files {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        match std::panic::catch_unwind(|| body(&data)) {
            Ok(true) => accepted += 1,
            Ok(false) => {}
            Err(_) => panicked.push(path.display().to_string()),
        }
    }
    assert!(
        panicked.is_empty(),
        "{target}: {} input(s) panicked: {}",
        panicked.len(),
        panicked.join(", ")
    );
    (files.len(), accepted)
}
