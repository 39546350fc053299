//! The stable, machine-readable codes of every refusal and failure Keyward reports: in the
//! uniform error body (`code`), in audit records of refused and failed requests, and in the
//! `data.code` of JSON-RPC errors. A code never changes its meaning; clients match on it.
//! HTTP statuses and the CSC and JSON-RPC error numbers are chosen by the server shell
//! (`api::error`), which maps each code in one place.

macro_rules! error_codes {
    ($($(#[doc = $doc:literal])+ $variant:ident => $name:literal,)+) => {
        /// A stable error code.
        #[non_exhaustive]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ErrorCode {
            $($(#[doc = $doc])+ $variant,)+
        }

        impl ErrorCode {
            /// Every code.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)+];

            /// The code as it appears on the wire, e.g. `POLICY_DENIED`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $name,)+
                }
            }
        }
    };
}

error_codes! {
    /// The request does not parse (bad JSON, bad base64 or hex, a missing field).
    BadRequest => "BAD_REQUEST",
    /// The request parses but does not make sense (a wrong digest length, both of two
    /// exclusive fields, a value out of range).
    InvalidRequest => "INVALID_REQUEST",
    /// No bearer token, or one that does not verify.
    Unauthenticated => "UNAUTHENTICATED",
    /// The caller lacks the role, is not among the key's signers, or was removed from them.
    Forbidden => "FORBIDDEN",
    /// No such resource (or one the caller may not learn exists).
    NotFound => "NOT_FOUND",
    /// The route does not answer this method.
    MethodNotAllowed => "METHOD_NOT_ALLOWED",
    /// The body is larger than the server accepts.
    PayloadTooLarge => "PAYLOAD_TOO_LARGE",
    /// The body's media type is not one the route reads.
    UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
    /// The change conflicts with the current state (a name taken, a concurrent change).
    Conflict => "CONFLICT",
    /// A bug or corrupt state; the server log has the details.
    Internal => "INTERNAL",
    /// The key is disabled and signs nothing.
    KeyDisabled => "KEY_DISABLED",
    /// The key's purpose does not allow this kind of signing.
    WrongKeyPurpose => "WRONG_KEY_PURPOSE",
    /// A policy, or the default decision, denied the request.
    PolicyDenied => "POLICY_DENIED",
    /// The request waits for approvers (JSON-RPC, which has no 202).
    PendingApproval => "PENDING_APPROVAL",
    /// The idempotency key was used before with another request.
    IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
    /// The approval request is not in a state that allows this (already decided, expired).
    RequestStateConflict => "REQUEST_STATE_CONFLICT",
    /// The key backend is unavailable; nothing was signed.
    BackendUnavailable => "BACKEND_UNAVAILABLE",
    /// A sealed key did not open (wrong KEK or tampered material).
    KeyUnsealFailed => "KEY_UNSEAL_FAILED",
    /// The algorithm is not supported for this operation.
    UnsupportedAlgorithm => "UNSUPPORTED_ALGORITHM",
    /// The database is unavailable; nothing was changed.
    DatabaseUnavailable => "DATABASE_UNAVAILABLE",
    /// The audit log could not record the operation, so its result is withheld.
    AuditUnavailable => "AUDIT_UNAVAILABLE",
    /// The policy module is larger than the server accepts.
    PolicyTooLarge => "POLICY_TOO_LARGE",
    /// The upload is not a policy module the engine accepts.
    InvalidPolicyModule => "INVALID_POLICY_MODULE",
    /// The policy is bound to keys and cannot be deleted.
    PolicyInUse => "POLICY_IN_USE",
    /// The server accepts only signed policy modules and this one came (or was stored)
    /// without a signature.
    PolicySignatureRequired => "POLICY_SIGNATURE_REQUIRED",
    /// The module's signature does not verify with any trusted signer's key.
    PolicySignatureInvalid => "POLICY_SIGNATURE_INVALID",
    /// The policy engine is unavailable.
    PolicyEngineUnavailable => "POLICY_ENGINE_UNAVAILABLE",
    /// The PSBT does not decode.
    InvalidPsbt => "INVALID_PSBT",
    /// No input of the PSBT belongs to the account.
    NoInputsToSign => "NO_INPUTS_TO_SIGN",
    /// An input of the PSBT does not carry the output it spends.
    MissingUtxo => "MISSING_UTXO",
    /// The Solana transaction or message does not decode.
    InvalidSolanaMessage => "INVALID_SOLANA_MESSAGE",
    /// The Solana fee payer is not the account.
    FeePayerNotOurs => "FEE_PAYER_NOT_OURS",
    /// The document is larger than the server accepts.
    DocumentTooLarge => "DOCUMENT_TOO_LARGE",
    /// The certificate's public key is not the key's.
    CertificateKeyMismatch => "CERTIFICATE_KEY_MISMATCH",
    /// The certificate chain does not verify.
    InvalidChain => "INVALID_CHAIN",
    /// The key has no certificate to sign documents with.
    NoCertificate => "NO_CERTIFICATE",
    /// The key's certificate is revoked.
    CertificateRevoked => "CERTIFICATE_REVOKED",
    /// The key's certificate has expired.
    CertificateExpired => "CERTIFICATE_EXPIRED",
    /// The certificate is already revoked.
    AlreadyRevoked => "ALREADY_REVOKED",
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_upper_snake_case() {
        let mut seen = std::collections::BTreeSet::new();
        for code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "{s} twice");
            assert!(
                !s.is_empty()
                    && s.chars().all(|c| c.is_ascii_uppercase() || c == '_')
                    && !s.starts_with('_')
                    && !s.ends_with('_'),
                "{s}"
            );
            assert_eq!(code.to_string(), s);
        }
    }
}
