#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| streamgate::fuzzing::hls_request(data));
