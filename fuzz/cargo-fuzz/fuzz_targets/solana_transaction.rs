#![no_main]
//! See `keyward_fuzz::targets::solana_transaction`.
libfuzzer_sys::fuzz_target!(
    init: keyward_fuzz::start(keyward_fuzz::targets::solana_transaction::seeds),
    |data: &[u8]| keyward_fuzz::targets::solana_transaction::check(data)
);
