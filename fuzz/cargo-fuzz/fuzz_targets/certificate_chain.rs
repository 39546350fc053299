#![no_main]
//! See `keyward_fuzz::targets::certificate_chain`.
libfuzzer_sys::fuzz_target!(
    init: keyward_fuzz::start(keyward_fuzz::targets::certificate_chain::seeds),
    |data: &[u8]| keyward_fuzz::targets::certificate_chain::check(data)
);
