#![no_main]
// The body is shared with the stable replay test (crates/hacore/tests/fuzz_corpus.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hacore::fuzzing::journal_torn(data);
});
