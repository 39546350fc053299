#![no_main]
//! See `keyward_fuzz::targets::solana_offchain_message`.
libfuzzer_sys::fuzz_target!(
    init: keyward_fuzz::start(keyward_fuzz::targets::solana_offchain_message::seeds),
    |data: &[u8]| keyward_fuzz::targets::solana_offchain_message::check(data)
);
