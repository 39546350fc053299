#![no_main]
//! See `keyward_fuzz::targets::bitcoin_psbt`.
libfuzzer_sys::fuzz_target!(
    init: keyward_fuzz::start(keyward_fuzz::targets::bitcoin_psbt::seeds),
    |data: &[u8]| keyward_fuzz::targets::bitcoin_psbt::check(data)
);
