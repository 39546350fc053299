#![no_main]
//! See `keyward_fuzz::targets::cms_verify`.
libfuzzer_sys::fuzz_target!(
    init: keyward_fuzz::start(keyward_fuzz::targets::cms_verify::seeds),
    |data: &[u8]| keyward_fuzz::targets::cms_verify::check(data)
);
