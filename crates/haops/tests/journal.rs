//! The journal file against crashes: a record torn by a crash is cut
//! before the next is appended, and a run whose journal ends in half a
//! record resumes to the migration's target (the executor over the
//! simulated cluster, `hacore::exec` + `hacore::in_memory`, with
//! `haops::journal::FileJournal`; moved from hacore's tests/migration.rs
//! when the file left the pure core).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use hacore::Topology;
use hacore::exec::{self, MemJournal, Options, Outcome, Record};
use hacore::in_memory::{Crash, InMemoryCluster, with_backends};
use hacore::plan::{self, Plan};
use haops::journal::FileJournal;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn example_plan() -> Plan {
    let (from, _) = Topology::load(&examples().join("topology/single-master.yaml")).unwrap();
    let (to, _) = Topology::load(&examples().join("topology/ha.yaml")).unwrap();
    plan::plan(
        &from,
        &to,
        None,
        &plan::Options {
            template: Some(9000),
        },
    )
    .expect("the example plan is safe")
}

fn now() -> jiff::Timestamp {
    "2026-05-21T22:00:00Z".parse().unwrap()
}

fn confirm_all(plan: &Plan) -> Options {
    Options {
        dry_run: false,
        confirm: plan
            .steps()
            .filter(|(_, s)| s.op.is_manual())
            .map(|(_, s)| s.id.clone())
            .collect(),
    }
}

fn run_to_end(
    plan: &Plan,
    sim: &std::rc::Rc<std::cell::RefCell<InMemoryCluster>>,
    journal: &mut dyn exec::Journal,
) -> Outcome {
    with_backends(sim, |b| {
        exec::run(plan, b, journal, &confirm_all(plan), &mut |_| {})
    })
    .unwrap()
}

fn fresh_sim(plan: &Plan) -> std::rc::Rc<std::cell::RefCell<InMemoryCluster>> {
    InMemoryCluster::new(&plan.from, &plan.to, now()).shared()
}

/// Keep the injected crashes' panic messages out of the output.
fn quiet_injected_crashes() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .unwrap_or("");
            if !msg.starts_with("injected crash") {
                default(info);
            }
        }));
    });
}

fn temp_journal(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("haops-journal-{}-{name}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

/// Append `bytes` to the file as a write torn by a crash leaves them.
fn tear(path: &Path, bytes: &[u8]) {
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, bytes))
        .unwrap();
}

#[test]
fn a_record_torn_by_a_crash_is_cut_before_the_next_is_appended() {
    let path = temp_journal("torn");
    {
        let mut j = FileJournal::open(&path).unwrap();
        exec::Journal::append(
            &mut j,
            Record::Begin {
                plan: "x".into(),
                at: now(),
            },
        )
        .unwrap();
    }
    tear(&path, b"{\"event\":\"sta");
    let step = |s: &str| Record::Started {
        step: s.into(),
        at: now(),
    };
    {
        let mut j = FileJournal::open(&path).unwrap();
        assert_eq!(exec::Journal::records(&j).len(), 1);
        exec::Journal::append(&mut j, step("a")).unwrap();
        exec::Journal::append(&mut j, step("b")).unwrap();
    }
    let j = FileJournal::open(&path).unwrap();
    assert_eq!(exec::Journal::records(&j)[1..], [step("a"), step("b")]);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(
        !text.contains("\"sta{"),
        "a record glued onto the torn one:\n{text}"
    );
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_run_whose_journal_ends_in_half_a_record_resumes_to_the_target() {
    let plan = example_plan();
    let reference = fresh_sim(&plan);
    assert_eq!(
        run_to_end(&plan, &reference, &mut MemJournal::default()),
        Outcome::Completed
    );
    let path = temp_journal("half-a-record");
    let sim = fresh_sim(&plan);
    quiet_injected_crashes();
    // Crash twice, each time leaving half a record (or zeros where the
    // data never reached the disk) after the last whole one.
    for (at, torn) in [
        (5, &b"{\"event\":\"done\",\"step\":\"prov"[..]),
        (12, &b"\0\0\0\0\0\0\0\0\n"[..]),
    ] {
        sim.borrow_mut().crash = Some(Crash {
            at_apply: at,
            after_effect: true,
        });
        let crashed = catch_unwind(AssertUnwindSafe(|| {
            let mut journal = FileJournal::open(&path).unwrap();
            run_to_end(&plan, &sim, &mut journal)
        }));
        assert!(crashed.is_err(), "no crash at apply #{at}");
        tear(&path, torn);
    }
    sim.borrow_mut().crash = None;
    let mut journal = FileJournal::open(&path).unwrap();
    assert_eq!(run_to_end(&plan, &sim, &mut journal), Outcome::Completed);
    assert_eq!(sim.borrow().model(), reference.borrow().model());
    // Every line of the file is a record: it can be resumed again.
    let text = std::fs::read_to_string(&path).unwrap();
    exec::parse_journal("j", &text).unwrap();
    assert_eq!(
        exec::parse_journal("j", &text).unwrap().len(),
        text.lines().filter(|l| !l.trim().is_empty()).count()
    );
    let again = FileJournal::open(&path).unwrap();
    assert!(matches!(
        exec::Journal::records(&again).last(),
        Some(Record::Finished { .. })
    ));
    let _ = std::fs::remove_file(&path);
}
