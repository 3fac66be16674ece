//! See retl::fuzzing::field_paths: the same function the test suite's short run calls.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| retl::fuzzing::field_paths(data));
