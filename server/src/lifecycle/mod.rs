//! Administration of what signs and what decides: the lifecycle of keys (create, import,
//! adopt, set signers, disable) in `keys`, and of policies (upload, delete, bind, dry-run
//! evaluation, the built-in policies) in `policies`. Each change is applied in the same
//! transaction as its audit record, through the signing path's audit writer.

pub mod keys;
pub mod policies;
