#![no_main]
//! See `keyward_fuzz::targets::ethereum_transaction`.
libfuzzer_sys::fuzz_target!(
    init: keyward_fuzz::start(keyward_fuzz::targets::ethereum_transaction::seeds),
    |data: &[u8]| keyward_fuzz::targets::ethereum_transaction::check(data)
);
