#![no_main]
// OpenSSH known_hosts (markers, hashed and bracketed hosts); the body is
// shared with the stable replay test (crates/ssh/tests/fuzz_corpus.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ssh::known_hosts::fuzz(data);
});
