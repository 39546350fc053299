#![no_main]
//! See `keyward_fuzz::targets::csr_subject`.
libfuzzer_sys::fuzz_target!(
    init: keyward_fuzz::start(keyward_fuzz::targets::csr_subject::seeds),
    |data: &[u8]| keyward_fuzz::targets::csr_subject::check(data)
);
