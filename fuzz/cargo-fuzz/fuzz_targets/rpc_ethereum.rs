#![no_main]
//! See `keyward_fuzz::targets::rpc_ethereum`.
libfuzzer_sys::fuzz_target!(
    init: keyward_fuzz::start(keyward_fuzz::targets::rpc_ethereum::seeds),
    |data: &[u8]| keyward_fuzz::targets::rpc_ethereum::check(data)
);
