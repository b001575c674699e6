#![no_main]
// The body is shared with the stable replay test (crates/pfsense/tests/fuzz_corpus.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pfsense::fuzzing::show_stat(data);
});
