//! Life after the migration (issue 14), on one migrated lab: the end state
//! of `hacli apply --backend live` (tests/common, with all of its checks),
//! then, in order, each scenario in its own module:
//!
//! 1. [`drills`]: a planned reboot of each master in turn through the VIP
//!    (the etcd leader included, a second `hacli disrupt` denied while one
//!    runs) and an unplanned drill (a Proxmox hard stop);
//! 2. [`roll`]: a rolling upgrade with a failure injected on the second
//!    master, stopped and restored there, then resumed to the end;
//! 3. [`replace`]: removing one master of three refused, then m3 replaced
//!    by a new clone m4, the run killed and resumed.
//!
//! One migration serves the three (each takes about 100 s on this
//! machine); each scenario leaves three healthy masters behind.
//! `cargo test -p hacli --test three_masters -- --nocapture` prints the
//! figures; the drills' JSON reports and HTML pages are kept in
//! `$CARGO_TARGET_TMPDIR/three_masters/`.

mod common;
#[path = "three_masters/drills.rs"]
mod drills;
#[path = "three_masters/replace.rs"]
mod replace;

#[test]
fn after_the_migration_drills_a_rolling_upgrade_and_a_replacement() {
    let _one = common::one_lab();
    let Some(mut m) = common::migrate(
        "after_the_migration_drills_a_rolling_upgrade_and_a_replacement",
        &[],
    ) else {
        return;
    };
    println!("== drills: planned reboots of each master, an unplanned power-off");
    drills::run(&mut m);
    println!("== replace: remove-master refused, replace-master m3 -> m4");
    replace::run(&m);
}
