//! The `etcd_alarm` fuzz corpus (`fuzz/corpus/etcd_alarm/`, and
//! `fuzz/regressions/etcd_alarm/`) replayed on the stable toolchain through
//! the body the `cargo fuzz` target runs: no input may panic, and the seeds
//! (alarm texts as etcd writes them) must still be read as alarms.

#[test]
fn etcd_alarm_corpus() {
    let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let (inputs, accepted) = hacore::fuzzing::replay(root, "etcd_alarm", kubeadm::etcd_alarm::fuzz);
    eprintln!("etcd_alarm: {inputs} inputs replayed, {accepted} accepted");
    assert!(accepted > 0, "none of {inputs} inputs was accepted");
}
