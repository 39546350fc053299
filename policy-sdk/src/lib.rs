//! # keyward-policy-sdk
//!
//! Write Keyward signing policies in Rust. A policy is one function from a sign request and
//! the settings it was bound with to a [`Decision`]:
//!
//! ```
//! use keyward_policy::{Decision, SignRequest};
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! pub struct Settings {
//!     max_per_hour: u64,
//! }
//!
//! pub fn evaluate(req: &SignRequest, settings: &Settings) -> Decision {
//!     if req.context.key_signatures_last_hour >= settings.max_per_hour {
//!         Decision::deny("hourly limit reached")
//!     } else {
//!         Decision::Allow
//!     }
//! }
//!
//! keyward_policy::export_policy!(evaluate);
//! ```
//!
//! [`export_policy!`] emits the ABI v1 exports when the crate is built for `wasm32` and
//! nothing natively, so the same function is unit-tested with plain `cargo test` (see
//! [`testing`] for request builders). `ABI.md` next to this crate is the language-neutral
//! contract; `schema/` holds the JSON Schemas of the input and the output.
//!
//! The crate also holds the wire types the server itself uses, so host and guest can never
//! disagree about the shape of a request or a decision. Within ABI v1 fields are only ever
//! added: a policy must ignore fields it does not know, and every field added later has a
//! default so that older inputs still parse.
#![deny(missing_docs)]

mod bitcoin;
mod export;
mod host;
mod solana;
pub mod testing;
mod wire;

pub use bitcoin::*;
pub use export::{NoSettings, SettingsCheck};
pub use host::log;
pub use solana::*;
pub use wire::*;

/// The policy ABI version this SDK speaks.
pub const ABI_VERSION: u32 = 1;

/// The module policies import host functions from.
pub const HOST_MODULE: &str = "keyward:host/v1";

#[doc(hidden)]
pub mod __private {
    #[cfg(target_arch = "wasm32")]
    pub use crate::export::guest::{alloc, dealloc, leak, take};
    pub use crate::export::{check_settings_json, evaluate_json, no_validation};
}
