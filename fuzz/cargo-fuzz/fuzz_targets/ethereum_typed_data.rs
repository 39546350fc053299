#![no_main]
//! See `keyward_fuzz::targets::ethereum_typed_data`.
libfuzzer_sys::fuzz_target!(
    init: keyward_fuzz::start(keyward_fuzz::targets::ethereum_typed_data::seeds),
    |data: &[u8]| keyward_fuzz::targets::ethereum_typed_data::check(data)
);
