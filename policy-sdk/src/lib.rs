//! # keyward-policy-sdk
//!
//! The wire types shared by the Keyward server (the policy host) and the policies it runs
//! (the guests). The server imports these exact types, so host and guest can never disagree
//! about the shape of a request or a decision.
//!
//! Within ABI v1 fields are only ever added: a policy must ignore fields it does not know,
//! and every field added later has a default so that older inputs still parse.
#![deny(missing_docs)]

mod wire;

pub use wire::*;

/// The policy ABI version this SDK speaks.
pub const ABI_VERSION: u32 = 1;
