#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keyward_fuzz_targets::ip_allowlist::run(data));
