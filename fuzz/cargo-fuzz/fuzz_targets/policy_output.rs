#![no_main]
//! See `keyward_fuzz::targets::policy_output`.
libfuzzer_sys::fuzz_target!(
    init: keyward_fuzz::start(keyward_fuzz::targets::policy_output::seeds),
    |data: &[u8]| keyward_fuzz::targets::policy_output::check(data)
);
