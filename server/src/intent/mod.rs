//! Sign intents: what a caller asks to have signed, decoded into the typed form policies see,
//! together with the exact bytes that will cross into the key backend.
//!
//! Parsers here only decode and check input; they never sign. Parts: `raw` (digests and
//! messages for keys of purpose `raw`).

pub mod raw;

use keyward_policy::Intent;

use crate::keys::{Purpose, ToSign};

/// Errors decoding a sign request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntentError {
    /// The input is not well-formed (bad base64, bad hex).
    #[error("{0}")]
    Malformed(String),
    /// The input is well-formed but does not make sense (wrong digest length, both fields).
    #[error("{0}")]
    Invalid(String),
}

/// A decoded request: what policies see and what the backend will sign.
#[derive(Debug, Clone)]
pub struct SignIntent {
    /// The purpose a key needs to sign this.
    pub purpose: Purpose,
    /// The decoded intent for policies.
    pub intent: Intent,
    /// What crosses into the backend.
    pub to_sign: ToSign,
}
