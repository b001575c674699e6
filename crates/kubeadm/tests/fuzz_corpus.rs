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

#[test]
fn each_alarm_text_etcd_writes_is_read_as_an_alarm() {
    // `AlarmMember` in protobuf text form, as etcd puts it in a member's
    // status `errors`, for each alarm etcd raises.
    for (text, member, alarm) in [
        ("memberID:8211 alarm:NOSPACE ", 8211, "NOSPACE"),
        (
            "memberID:13803658152347727308 alarm:CORRUPT ",
            13803658152347727308,
            "CORRUPT",
        ),
        ("alarm:NOSPACE ", 0, "NOSPACE"),
    ] {
        assert!(kubeadm::etcd_alarm::fuzz(text.as_bytes()), "{text:?}");
        assert_eq!(
            kubeadm::etcd_alarm::status_alarm(text),
            Some((member, alarm.to_string())),
            "{text:?}"
        );
    }
    // Not alarms: no alarm, and another error.
    for text in ["memberID:8211 alarm:NONE ", "etcdserver: no leader"] {
        assert!(!kubeadm::etcd_alarm::fuzz(text.as_bytes()), "{text:?}");
    }
}
