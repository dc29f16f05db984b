#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| streamgate::fuzzing::srt_streamid(data));
