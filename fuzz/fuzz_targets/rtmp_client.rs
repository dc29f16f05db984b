#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| streamgate::fuzzing::rtmp_client(data));
