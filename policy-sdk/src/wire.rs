//! The JSON documents exchanged between the host and a policy.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[cfg(feature = "schema")]
use schemars::JsonSchema;

/// The whole document a policy receives: `{"abi":1,"request":{...},"settings":{...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub struct PolicyInput {
    /// ABI version of this document; always 1 for ABI v1.
    pub abi: u32,
    /// What is being asked, by whom, with which key.
    pub request: SignRequest,
    /// The settings the policy was bound with (`null` when none were given).
    #[serde(default)]
    pub settings: serde_json::Value,
}

/// One signing request as a policy sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub struct SignRequest {
    /// The server's id for this request (also in the audit log).
    pub request_id: String,
    /// The authenticated caller.
    pub principal: Principal,
    /// The key asked to sign.
    pub key: KeyInfo,
    /// What would be signed, decoded.
    pub intent: Intent,
    /// Server time of the request, RFC 3339 in UTC.
    pub time: String,
    /// Server time of the request, seconds since the Unix epoch.
    pub unix_time: i64,
    /// Facts the host computed for this request (recent signature counts).
    #[serde(default)]
    pub context: Context,
}

/// Facts the host computes for each request, so that policies need no state of their own.
/// Counts are of signatures actually made (status `signed`), before this request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub struct Context {
    /// Signatures made by this key in the last hour.
    #[serde(default)]
    pub key_signatures_last_hour: u64,
    /// Signatures made by this key in the last 24 hours.
    #[serde(default)]
    pub key_signatures_last_day: u64,
    /// Signatures made for this principal (issuer and subject), with any key, in the last hour.
    #[serde(default)]
    pub principal_signatures_last_hour: u64,
    /// Signatures made for this principal, with any key, in the last 24 hours.
    #[serde(default)]
    pub principal_signatures_last_day: u64,
}

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub struct Principal {
    /// The token issuer (`iss`).
    pub issuer: String,
    /// The subject (`sub`).
    pub subject: String,
    /// Keyward roles held by the caller (`admin`, `signer`, ...), after the issuer's role map.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Group names from the issuer's groups claim, as the identity provider names them.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The `email` claim, when the token has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The `name` claim, when the token has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The `acr` claim (authentication context class), when the token has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    /// The `amr` claim (authentication methods, e.g. `pwd`, `otp`, `hwk`).
    #[serde(default)]
    pub amr: Vec<String>,
}

/// Public facts about the key asked to sign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub struct KeyInfo {
    /// Key id.
    pub id: String,
    /// Key name, unique on the server.
    pub name: String,
    /// Algorithm, e.g. `ed25519`, `secp256k1`, `p256`, `rsa-2048`.
    pub algorithm: String,
    /// What the key may sign: `raw`, `document`, `ethereum`, `bitcoin` or `solana`.
    pub purpose: String,
    /// Where the private key lives, e.g. `software`.
    pub backend: String,
    /// Free-form labels set by key administrators.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// What would be signed, decoded by the host. Tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Intent {
    /// A raw digest or message for a key of purpose `raw`.
    Raw(RawIntent),
    /// A document signature (CMS or raw) for a key of purpose `document`.
    Document(DocumentIntent),
    /// A Bitcoin PSBT, decoded (inputs, outputs, fee).
    BitcoinPsbt(crate::BitcoinPsbtIntent),
    /// A Solana transaction, decoded (fee payer, programs, transfers).
    SolanaTransaction(crate::SolanaTransactionIntent),
    /// A Solana off-chain message.
    SolanaMessage(crate::SolanaMessageIntent),
}

/// A raw signature over a digest or a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub struct RawIntent {
    /// `true` when the caller sent a digest, `false` when it sent the message itself.
    pub prehashed: bool,
    /// Hash algorithm of `digest`: `sha256`, `sha384` or `sha512`.
    pub hash: String,
    /// Hex digest of what is signed (for Ed25519 messages: SHA-256 of the message, for reference).
    pub digest: String,
    /// Length in bytes of the message, when the caller sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_len: Option<u64>,
}

/// A document signature: the hash of the document, and the certificate it is signed under.
///
/// For the `cms` format the key signs the DER of the CMS signed attributes (content type,
/// message digest = `hash`, signing time, ESS signing-certificate-v2), not `hash` itself;
/// policies decide on the document hash and the certificate named here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub struct DocumentIntent {
    /// Hex hash of the document.
    pub hash: String,
    /// Hash algorithm of `hash`: `sha256`, `sha384` or `sha512`.
    pub hash_algorithm: String,
    /// `cms` (detached CMS SignedData) or `raw` (a bare signature over the hash).
    pub format: String,
    /// A name for the document given by the caller, for policies and the audit log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document_name: Option<String>,
    /// Length in bytes of the document, when the caller sent the document itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document_len: Option<u64>,
    /// Subject of the signer certificate (RFC 4514 string); absent for `raw` without a certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_subject: Option<String>,
    /// Serial number of the signer certificate, lower-case hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_serial: Option<String>,
    /// The signing time put in the signed attributes (`cms` only), RFC 3339 in UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_time: Option<String>,
}

/// A policy's answer. Tagged by `decision`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Let the request through.
    Allow,
    /// Refuse the request.
    Deny {
        /// Why, shown to the caller and kept in the audit log.
        reason: String,
    },
    /// Hold the request until enough approvers agree.
    RequireApproval {
        /// Why approval is needed.
        reason: String,
        /// How many distinct approvers must agree.
        approvals: u32,
        /// Roles an approver may hold (any one of them suffices).
        approver_roles: Vec<String>,
        /// How long the request may wait, in seconds.
        ttl_seconds: u64,
    },
}

impl Decision {
    /// A deny with the given reason.
    pub fn deny(reason: impl Into<String>) -> Self {
        Decision::Deny {
            reason: reason.into(),
        }
    }

    /// The decision's name as on the wire: `allow`, `deny` or `require_approval`.
    pub fn name(&self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny { .. } => "deny",
            Decision::RequireApproval { .. } => "require_approval",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_have_the_documented_wire_shape() {
        let allow: Decision = serde_json::from_str(r#"{"decision":"allow"}"#).unwrap();
        assert_eq!(allow, Decision::Allow);
        let deny: Decision =
            serde_json::from_str(r#"{"decision":"deny","reason":"too big"}"#).unwrap();
        assert_eq!(deny, Decision::deny("too big"));
        let pending: Decision = serde_json::from_str(
            r#"{"decision":"require_approval","reason":"r","approvals":2,"approver_roles":["treasury"],"ttl_seconds":3600}"#,
        )
        .unwrap();
        assert_eq!(pending.name(), "require_approval");
        assert!(serde_json::from_str::<Decision>(r#"{"decision":"maybe"}"#).is_err());
    }

    #[test]
    fn intents_are_tagged_by_kind() {
        let intent = Intent::Raw(RawIntent {
            prehashed: true,
            hash: "sha256".into(),
            digest: "00".into(),
            message_len: None,
        });
        let json = serde_json::to_value(&intent).unwrap();
        assert_eq!(json["kind"], "raw");
        assert!(json.get("message_len").is_none());
    }
}
