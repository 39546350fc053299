#![no_main]
//! See `keyward_fuzz::targets::jwt`.
libfuzzer_sys::fuzz_target!(
    init: keyward_fuzz::start(keyward_fuzz::targets::jwt::seeds),
    |data: &[u8]| keyward_fuzz::targets::jwt::check(data)
);
