#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| streamgate::fuzzing::ts_demux(data));
