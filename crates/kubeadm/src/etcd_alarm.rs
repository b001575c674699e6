//! etcd's alarm text: what a member's status `errors` say about alarms.
//!
//! Pure and free of dependencies (no `crate::` paths): the fuzz target in
//! `fuzz/` includes this file by path, so it fuzzes exactly this code
//! without building the live backend. Not a stable API.

/// One alarm from a member's status `errors`: etcd writes each as its
/// `AlarmMember` in protobuf text form, `memberID:8211 alarm:NOSPACE `.
/// Other errors (`etcdserver: no leader`) are not alarms. An alarm whose
/// member cannot be read is kept with member 0, which counts for every
/// member: never dropped.
pub fn status_alarm(e: &str) -> Option<(u64, String)> {
    // `key:` at the start or after a space; its value runs to the next
    // space (Go's text encoders may put spaces after the colon).
    let field = |key: &str| {
        e.match_indices(key)
            .find(|(i, _)| e[..*i].chars().last().is_none_or(char::is_whitespace))
            .map(|(i, _)| {
                let rest = e[i + key.len()..].trim_start();
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                rest[..end].trim_matches('"').to_string()
            })
    };
    let alarm = field("alarm:")?;
    if alarm == "NONE" {
        return None;
    }
    let alarm = if alarm.is_empty() {
        e.trim().to_string()
    } else {
        alarm
    };
    let member = field("memberID:").and_then(|m| m.parse().ok()).unwrap_or(0);
    Some((member, alarm))
}

/// Fuzzing entry point, shared by the `cargo fuzz` target and the corpus
/// replay test (`tests/fuzz_corpus.rs`): one status error string, as etcd
/// sends it (protobuf strings are UTF-8; tonic refuses anything else).
/// Returns whether it was read as an alarm; panics only on a bug.
pub fn fuzz(data: &[u8]) -> bool {
    let Ok(e) = std::str::from_utf8(data) else {
        return false;
    };
    match status_alarm(e) {
        None => false,
        Some((_, alarm)) => {
            assert!(!alarm.is_empty() && alarm != "NONE", "{e:?} -> {alarm:?}");
            true
        }
    }
}
