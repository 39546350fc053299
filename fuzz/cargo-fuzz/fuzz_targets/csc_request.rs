#![no_main]
//! See `keyward_fuzz::targets::csc_request`.
libfuzzer_sys::fuzz_target!(
    init: keyward_fuzz::start(keyward_fuzz::targets::csc_request::seeds),
    |data: &[u8]| keyward_fuzz::targets::csc_request::check(data)
);
