//! One module per fuzz target, each with `seeds()` and `check(data)`; the cargo-fuzz binaries
//! in `fuzz/fuzz_targets` and the smoke test call them.

pub mod bitcoin_psbt;
pub mod certificate_chain;
pub mod cms_verify;
pub mod csc_request;
pub mod csr_subject;
pub mod ethereum_transaction;
pub mod ethereum_typed_data;
pub mod jwt;
pub mod policy_output;
pub mod rpc_ethereum;
pub mod solana_offchain_message;
pub mod solana_transaction;

/// A fuzz target.
#[derive(Clone, Copy)]
pub struct Target {
    /// Its name (the cargo-fuzz binary's).
    pub name: &'static str,
    /// Its seed inputs.
    pub seeds: fn() -> Vec<Vec<u8>>,
    /// The check of one input (panics on a finding).
    pub check: fn(&[u8]),
}

/// Calls `$then!(name, ...)` with every target's name: the one list of targets, for [`ALL`]
/// and the smoke test's one test per target.
#[macro_export]
macro_rules! with_targets {
    ($then:ident) => {
        $then!(
            bitcoin_psbt,
            certificate_chain,
            cms_verify,
            csc_request,
            csr_subject,
            ethereum_transaction,
            ethereum_typed_data,
            jwt,
            policy_output,
            rpc_ethereum,
            solana_offchain_message,
            solana_transaction,
        );
    };
}

macro_rules! targets {
    ($($name:ident),* $(,)?) => {
        /// Every target.
        pub const ALL: &[Target] = &[$(Target {
            name: stringify!($name),
            seeds: $name::seeds,
            check: $name::check,
        }),*];
    };
}

with_targets!(targets);

/// The target called `name`.
pub fn by_name(name: &str) -> Option<Target> {
    ALL.iter().copied().find(|t| t.name == name)
}
