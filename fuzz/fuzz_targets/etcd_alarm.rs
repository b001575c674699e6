#![no_main]
// The parser is included by path so the fuzz build does not compile the
// whole live backend (kube, etcd-client); the body is shared with the
// stable replay test (crates/kubeadm/tests/fuzz_corpus.rs).
#[path = "../../crates/kubeadm/src/etcd_alarm.rs"]
mod etcd_alarm;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    etcd_alarm::fuzz(data);
});
