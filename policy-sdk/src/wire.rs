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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub struct Context {
    /// Signatures made by this key in the last hour (counted by the minute: the current minute
    /// and the 60 before it, so a limit is never under-counted).
    #[serde(default)]
    pub key_signatures_last_hour: u64,
    /// Signatures made by this key in the last 24 hours (counted by the hour: the current hour
    /// and the 24 before it).
    #[serde(default)]
    pub key_signatures_last_day: u64,
    /// Signatures made for this principal (issuer and subject), with any key, in the last hour.
    #[serde(default)]
    pub principal_signatures_last_hour: u64,
    /// Signatures made for this principal, with any key, in the last 24 hours.
    #[serde(default)]
    pub principal_signatures_last_day: u64,
    /// Ethereum transactions only: the value this key signed on the request's chain id in
    /// the last hour and day, before this request (absent for other intents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spend: Option<SpendContext>,
}

/// Value a key signed recently, for spend limits. Amounts are decimal strings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub struct SpendContext {
    /// The chain id these totals are for.
    pub chain_id: u64,
    /// The last hour (counted by the minute, the current minute and the 60 before it).
    pub last_hour: SpendTotals,
    /// The last 24 hours (counted by the hour, the current hour and the 24 before it).
    pub last_day: SpendTotals,
}

/// Native value and ERC-20 amounts signed in a window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub struct SpendTotals {
    /// Native value in wei (decimal).
    pub native: String,
    /// ERC-20 `transfer`/`transferFrom` amounts by token address (lower-case `0x` hex).
    #[serde(default)]
    pub tokens: BTreeMap<String, String>,
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
    /// An Ethereum transaction (legacy/EIP-155, EIP-2930 or EIP-1559), decoded.
    EthereumTransaction(EthereumTransactionIntent),
    /// An EIP-191 `personal_sign` message.
    EthereumMessage(EthereumMessageIntent),
    /// EIP-712 typed structured data (`eth_signTypedData_v4`).
    EthereumTypedData(EthereumTypedDataIntent),
    /// A Bitcoin PSBT, decoded (inputs, outputs, fee).
    BitcoinPsbt(crate::BitcoinPsbtIntent),
    /// A Solana transaction, decoded (fee payer, programs, transfers).
    SolanaTransaction(crate::SolanaTransactionIntent),
    /// A Solana off-chain message.
    SolanaMessage(crate::SolanaMessageIntent),
}

macro_rules! intent_from {
    ($($variant:ident($ty:ty)),* $(,)?) => {
        $(
            impl From<$ty> for Intent {
                fn from(intent: $ty) -> Self {
                    Intent::$variant(intent)
                }
            }
        )*
    };
}

intent_from!(
    Raw(RawIntent),
    Document(DocumentIntent),
    EthereumTransaction(EthereumTransactionIntent),
    EthereumMessage(EthereumMessageIntent),
    EthereumTypedData(EthereumTypedDataIntent),
    BitcoinPsbt(crate::BitcoinPsbtIntent),
    SolanaTransaction(crate::SolanaTransactionIntent),
    SolanaMessage(crate::SolanaMessageIntent),
);

impl Intent {
    /// The intent's `kind` as on the wire, e.g. `ethereum_transaction`.
    pub fn kind(&self) -> &'static str {
        match self {
            Intent::Raw(_) => "raw",
            Intent::Document(_) => "document",
            Intent::EthereumTransaction(_) => "ethereum_transaction",
            Intent::EthereumMessage(_) => "ethereum_message",
            Intent::EthereumTypedData(_) => "ethereum_typed_data",
            Intent::BitcoinPsbt(_) => "bitcoin_psbt",
            Intent::SolanaTransaction(_) => "solana_transaction",
            Intent::SolanaMessage(_) => "solana_message",
        }
    }
}

/// An Ethereum transaction as decoded by the host. Addresses are lower-case `0x` hex (compare
/// them case-insensitively); values and fees are in wei as decimal strings (they may exceed
/// 64 bits: parse them as 256-bit integers, or compare with [`wei_cmp`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub struct EthereumTransactionIntent {
    /// `legacy` (EIP-155), `eip2930` or `eip1559`.
    pub tx_type: String,
    /// The chain id (always present: Keyward refuses transactions without one).
    pub chain_id: u64,
    /// The sender: the key's address.
    pub from: String,
    /// The recipient or called contract; absent for a contract creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The account nonce.
    pub nonce: u64,
    /// Native value sent, in wei (decimal).
    pub value: String,
    /// The gas limit.
    pub gas_limit: u64,
    /// Legacy and EIP-2930: the gas price in wei (decimal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gas_price: Option<String>,
    /// EIP-1559: the maximum fee per gas in wei (decimal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_fee_per_gas: Option<String>,
    /// EIP-1559: the maximum priority fee per gas in wei (decimal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_priority_fee_per_gas: Option<String>,
    /// The call data, `0x` hex.
    pub data: String,
    /// The first four bytes of `data` (the function selector), `0x` hex, when there are four.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Addresses in the access list (EIP-2930 and EIP-1559).
    #[serde(default)]
    pub access_list: Vec<String>,
    /// An ERC-20 `transfer`, `approve` or `transferFrom` call, decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erc20: Option<Erc20Call>,
    /// The whole unsigned transaction, `0x` hex (its Keccak-256 is what the key signs).
    #[serde(default)]
    pub unsigned: String,
}

/// An ERC-20 call found in a transaction's data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub struct Erc20Call {
    /// `transfer`, `approve` or `transferFrom`.
    pub function: String,
    /// The token contract (the transaction's `to`).
    pub token: String,
    /// `transferFrom` only: the owner tokens are taken from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The recipient (`transfer`, `transferFrom`) or the spender (`approve`).
    pub to: String,
    /// The amount in the token's smallest unit (decimal).
    pub amount: String,
}

/// An EIP-191 version `0x45` message (`personal_sign`, `eth_sign`): the key signs
/// Keccak-256 of `"\x19Ethereum Signed Message:\n" + len + message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub struct EthereumMessageIntent {
    /// The signer: the key's address.
    pub from: String,
    /// The message bytes, `0x` hex.
    pub message: String,
    /// The message as text, when it is valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Length of the message in bytes.
    pub length: u64,
    /// The EIP-191 hash that is signed, `0x` hex.
    pub hash: String,
}

/// EIP-712 typed data: the domain, the primary type and the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub struct EthereumTypedDataIntent {
    /// The signer: the key's address.
    pub from: String,
    /// The EIP-712 domain.
    pub domain: Eip712Domain,
    /// The primary type, e.g. `Permit`.
    pub primary_type: String,
    /// The message, as the caller sent it (checked against its types).
    pub message: serde_json::Value,
    /// The EIP-712 signing hash, `0x` hex.
    pub hash: String,
}

/// The EIP-712 domain fields that were given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub struct Eip712Domain {
    /// `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `chainId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_id: Option<u64>,
    /// `verifyingContract`, lower-case `0x` hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verifying_contract: Option<String>,
    /// `salt`, `0x` hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
}

/// Compares two non-negative decimal integers of any size (such as wei amounts) without
/// parsing them into a fixed-width type. Leading zeros are ignored. Returns `None` when either
/// is not a decimal integer.
pub fn wei_cmp(a: &str, b: &str) -> Option<std::cmp::Ordering> {
    let norm = |s: &str| -> Option<String> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let t = s.trim_start_matches('0');
        Some(if t.is_empty() { "0".into() } else { t.into() })
    };
    let (a, b) = (norm(a)?, norm(b)?);
    Some(a.len().cmp(&b.len()).then_with(|| a.cmp(&b)))
}

/// Adds two non-negative decimal integers of any size; `None` when either is not one.
pub fn wei_add(a: &str, b: &str) -> Option<String> {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.is_empty() || b.is_empty() || !a.iter().chain(b).all(u8::is_ascii_digit) {
        return None;
    }
    let mut out = Vec::with_capacity(a.len().max(b.len()) + 1);
    let (mut i, mut j, mut carry) = (a.len(), b.len(), 0u8);
    while i > 0 || j > 0 || carry > 0 {
        let mut d = carry;
        if i > 0 {
            i -= 1;
            d += a[i] - b'0';
        }
        if j > 0 {
            j -= 1;
            d += b[j] - b'0';
        }
        out.push(b'0' + d % 10);
        carry = d / 10;
    }
    out.reverse();
    let s = String::from_utf8(out).ok()?;
    let t = s.trim_start_matches('0');
    Some(if t.is_empty() { "0".into() } else { t.into() })
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

    /// Why a deny or a require-approval was decided; `None` for an allow.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Decision::Allow => None,
            Decision::Deny { reason } | Decision::RequireApproval { reason, .. } => Some(reason),
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
    fn wei_arithmetic_handles_big_numbers() {
        use std::cmp::Ordering;
        assert_eq!(wei_cmp("10", "9"), Some(Ordering::Greater));
        assert_eq!(wei_cmp("007", "7"), Some(Ordering::Equal));
        assert_eq!(
            wei_cmp(
                "100000000000000000000000000000",
                "99999999999999999999999999999"
            ),
            Some(Ordering::Greater)
        );
        assert_eq!(wei_cmp("1e3", "1"), None);
        assert_eq!(wei_add("999", "1").as_deref(), Some("1000"));
        assert_eq!(
            wei_add("18446744073709551615", "18446744073709551615").as_deref(),
            Some("36893488147419103230")
        );
        assert_eq!(wei_add("0", "0").as_deref(), Some("0"));
        assert_eq!(wei_add("-1", "0"), None);
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
