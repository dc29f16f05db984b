#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| streamgate::fuzzing::rtp_av1(data));
