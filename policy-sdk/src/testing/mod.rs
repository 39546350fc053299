//! Native test helpers: build the requests a policy will see, without a server.
//!
//! [`request()`] starts a [`SignRequest`] with sensible defaults; the intent builders make
//! every intent the server produces, with realistic values, in the shape the server sends it:
//!
//! | intent kind | builders |
//! |---|---|
//! | `raw` | [`raw_digest`], [`raw_message`] (and [`RequestBuilder::message_len`]) |
//! | `document` | [`document`] |
//! | `ethereum_transaction` | [`ethereum_transaction`] (EIP-1559), [`ethereum_eip2930_transaction`], [`ethereum_legacy_transaction`], [`erc20_transfer`], [`erc20_approve`], [`erc20_transfer_from`] |
//! | `ethereum_message` | [`ethereum_message`] |
//! | `ethereum_typed_data` | [`ethereum_typed_data`], [`eip712_domain`], [`erc20_permit`] |
//! | `bitcoin_psbt` | [`bitcoin_psbt`], [`bitcoin_input`], [`bitcoin_output`], [`op_return_output`] |
//! | `solana_transaction` | [`solana_transfer`], [`spl_token_transfer`] |
//! | `solana_message` | [`solana_message`] |
//!
//! Every builder returns the intent's plain struct, so a test changes any field it wants, and
//! [`RequestBuilder::intent`] takes any of them. The builders do no cryptography: the hashes
//! the host computes (`hash`, `digest`, `txid`, `unsigned`, blockhashes) are fixed placeholders
//! of the right form. Everything else (fees, sizes, call data, formats, which optional fields
//! are present) is what the server would send for the same values; the server's test suite
//! checks each builder against the server's own intent.
//!
//! ```
//! use keyward_policy::testing::{erc20_transfer, request};
//!
//! let req = request().roles(&["signer", "treasury"]).message_len(2048).build();
//! assert_eq!(req.principal.roles, ["signer", "treasury"]);
//!
//! // An ERC-20 transfer of 250 DAI on Ethereum mainnet, from an `ethereum` key.
//! let dai = "0x6b175474e89094c44da98b954eedeac495271d0f";
//! let to = "0x3f5ce5fbfe3e9af3971dd833d26ba9b5c936f0be";
//! let req = request()
//!     .intent(erc20_transfer(1, dai, to, "250000000000000000000"))
//!     .build();
//! assert_eq!(req.key.purpose, "ethereum");
//! assert_eq!(req.context.spend.as_ref().map(|s| s.chain_id), Some(1));
//! ```

mod bitcoin;
mod ethereum;
mod solana;

pub use bitcoin::*;
pub use ethereum::*;
pub use solana::*;

use crate::{
    Context, DocumentIntent, Intent, KeyInfo, PolicyInput, Principal, RawIntent, SignRequest,
    SpendContext, SpendTotals,
};

/// Monday 2026-01-05 12:00:00 UTC, the default request time.
pub const DEFAULT_UNIX_TIME: i64 = 1_767_614_400;

/// Starts a request with sensible defaults: subject `alice` with role `signer`, an Ed25519
/// key `test-key` of purpose `raw`, a SHA-256 digest intent, at [`DEFAULT_UNIX_TIME`].
pub fn request() -> RequestBuilder {
    RequestBuilder {
        req: SignRequest {
            request_id: "req-test".into(),
            principal: Principal {
                issuer: "https://issuer.test".into(),
                subject: "alice".into(),
                roles: vec!["signer".into()],
                ..Default::default()
            },
            key: KeyInfo {
                id: "key-test".into(),
                name: "test-key".into(),
                algorithm: "ed25519".into(),
                purpose: "raw".into(),
                backend: "software".into(),
                labels: Default::default(),
            },
            intent: Intent::Raw(raw_digest("sha256", &"00".repeat(32))),
            time: rfc3339(DEFAULT_UNIX_TIME),
            unix_time: DEFAULT_UNIX_TIME,
            context: Context::default(),
        },
    }
}

/// A raw intent for a digest the caller hashed itself: `hash` is `sha256`, `sha384` or
/// `sha512`, `digest_hex` the digest in lower-case hex (as `POST /v1/keys/{id}/sign` with
/// `digest` gives it).
pub fn raw_digest(hash: &str, digest_hex: &str) -> RawIntent {
    RawIntent {
        prehashed: true,
        hash: hash.into(),
        digest: digest_hex.to_lowercase(),
        message_len: None,
    }
}

/// A raw intent for a message of `len` bytes that the server hashes with SHA-256 (as
/// `POST /v1/keys/{id}/sign` with `message` gives it; for Ed25519 keys too). The digest is
/// a placeholder.
pub fn raw_message(len: u64) -> RawIntent {
    RawIntent {
        prehashed: false,
        hash: "sha256".into(),
        digest: PLACEHOLDER_HASH.into(),
        message_len: Some(len),
    }
}

/// A document intent for the document whose hash is `hash_hex` (SHA-256, SHA-384 or SHA-512
/// by its length), in `format` `cms` or `raw`, signed under the certificate
/// `CN=Test Signer,O=Example` (as `POST /v1/documents/sign` gives it for a certified
/// document key). `cms` also has the signing time (the default request time). Set
/// `document_name` and `document_len` when the caller sends them.
pub fn document(format: &str, hash_hex: &str) -> DocumentIntent {
    let hash_algorithm = match hash_hex.len() {
        96 => "sha384",
        128 => "sha512",
        _ => "sha256",
    };
    DocumentIntent {
        hash: hash_hex.to_lowercase(),
        hash_algorithm: hash_algorithm.into(),
        format: format.into(),
        document_name: None,
        document_len: None,
        certificate_subject: Some("CN=Test Signer,O=Example".into()),
        certificate_serial: Some("4b1d5e6f7a8b9c0d1e2f3a4b5c6d7e8f".into()),
        signing_time: (format == "cms").then(|| rfc3339(DEFAULT_UNIX_TIME)),
    }
}

/// The placeholder the builders put where the host computes a 32-byte hash.
pub const PLACEHOLDER_HASH: &str =
    "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Builds a [`SignRequest`] step by step.
#[derive(Debug, Clone)]
pub struct RequestBuilder {
    req: SignRequest,
}

impl RequestBuilder {
    /// Sets the caller's subject.
    pub fn subject(mut self, subject: &str) -> Self {
        self.req.principal.subject = subject.into();
        self
    }

    /// Sets the caller's roles.
    pub fn roles(mut self, roles: &[&str]) -> Self {
        self.req.principal.roles = roles.iter().map(|r| r.to_string()).collect();
        self
    }

    /// Sets the key's name.
    pub fn key_name(mut self, name: &str) -> Self {
        self.req.key.name = name.into();
        self
    }

    /// Sets the key's algorithm.
    pub fn algorithm(mut self, algorithm: &str) -> Self {
        self.req.key.algorithm = algorithm.into();
        self
    }

    /// Adds a key label.
    pub fn label(mut self, name: &str, value: &str) -> Self {
        self.req.key.labels.insert(name.into(), value.into());
        self
    }

    /// Makes the intent a raw message of `len` bytes (instead of a digest).
    pub fn message_len(mut self, len: u64) -> Self {
        if let Intent::Raw(raw) = &mut self.req.intent {
            raw.prehashed = false;
            raw.message_len = Some(len);
            self
        } else {
            self.intent(raw_message(len))
        }
    }

    /// Sets the intent (any intent struct, or an [`Intent`]), and makes the key fit it as the
    /// server requires: the key's `purpose` becomes the one the intent needs, and for chain
    /// intents the `algorithm` too (`secp256k1` for Ethereum and Bitcoin, `ed25519` for
    /// Solana). For an Ethereum transaction the host context gets an empty `spend` for its
    /// chain id unless one was set.
    pub fn intent(mut self, intent: impl Into<Intent>) -> Self {
        let intent = intent.into();
        let (purpose, algorithm) = match &intent {
            Intent::Raw(_) => ("raw", None),
            Intent::Document(_) => ("document", None),
            Intent::EthereumTransaction(_)
            | Intent::EthereumMessage(_)
            | Intent::EthereumTypedData(_) => ("ethereum", Some("secp256k1")),
            Intent::BitcoinPsbt(_) => ("bitcoin", Some("secp256k1")),
            Intent::SolanaTransaction(_) | Intent::SolanaMessage(_) => ("solana", Some("ed25519")),
        };
        self.req.key.purpose = purpose.into();
        if let Some(algorithm) = algorithm {
            self.req.key.algorithm = algorithm.into();
        }
        match &intent {
            Intent::EthereumTransaction(tx) => {
                let spend = self.req.context.spend.get_or_insert_with(|| SpendContext {
                    chain_id: tx.chain_id,
                    last_hour: no_spend(),
                    last_day: no_spend(),
                });
                spend.chain_id = tx.chain_id;
            }
            _ => self.req.context.spend = None,
        }
        self.req.intent = intent;
        self
    }

    /// Sets the caller's token issuer.
    pub fn issuer(mut self, issuer: &str) -> Self {
        self.req.principal.issuer = issuer.into();
        self
    }

    /// Sets the key's id.
    pub fn key_id(mut self, id: &str) -> Self {
        self.req.key.id = id.into();
        self
    }

    /// Sets the request id.
    pub fn request_id(mut self, id: &str) -> Self {
        self.req.request_id = id.into();
        self
    }

    /// Sets the request time (seconds since the Unix epoch, UTC).
    pub fn at_unix(mut self, unix_time: i64) -> Self {
        self.req.unix_time = unix_time;
        self.req.time = rfc3339(unix_time);
        self
    }

    /// Sets the signatures made by this key in the last hour (and at least as many in the
    /// last day).
    pub fn key_signatures_last_hour(mut self, n: u64) -> Self {
        self.req.context.key_signatures_last_hour = n;
        self.req.context.key_signatures_last_day = self.req.context.key_signatures_last_day.max(n);
        self
    }

    /// Sets the whole host context.
    pub fn context(mut self, context: Context) -> Self {
        self.req.context = context;
        self
    }

    /// The request.
    pub fn build(self) -> SignRequest {
        self.req
    }
}

fn no_spend() -> SpendTotals {
    SpendTotals {
        native: "0".into(),
        tokens: Default::default(),
    }
}

/// The ABI v1 input document for `request` with `settings`, as the host sends it.
pub fn input(request: &SignRequest, settings: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&PolicyInput {
        abi: crate::ABI_VERSION,
        request: request.clone(),
        settings,
    })
    .unwrap_or_default()
}

/// Lines this thread's policy code passed to [`crate::log`] since the last call.
#[cfg(not(target_arch = "wasm32"))]
pub fn take_logs() -> Vec<String> {
    crate::host::take_native_logs()
}

/// Formats seconds since the Unix epoch as RFC 3339 UTC (`2026-01-05T12:00:00Z`).
pub fn rfc3339(unix_time: i64) -> String {
    let days = unix_time.div_euclid(86_400);
    let secs = unix_time.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(DEFAULT_UNIX_TIME), "2026-01-05T12:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn every_intent_kind_has_a_builder_and_fits_its_key() {
        let to = "0x3f5ce5fbfe3e9af3971dd833d26ba9b5c936f0be";
        let domain = eip712_domain("Ether Mail", "1", 1, to);
        let intents: Vec<(Intent, &str, &str)> = vec![
            (
                raw_digest("sha256", &"ab".repeat(32)).into(),
                "raw",
                "ed25519",
            ),
            (raw_message(5).into(), "raw", "ed25519"),
            (
                document("cms", &"cd".repeat(32)).into(),
                "document",
                "ed25519",
            ),
            (
                ethereum_transaction(1, to, "1").into(),
                "ethereum",
                "secp256k1",
            ),
            (
                ethereum_eip2930_transaction(1, to, "1", &[to]).into(),
                "ethereum",
                "secp256k1",
            ),
            (
                ethereum_legacy_transaction(1, to, "1").into(),
                "ethereum",
                "secp256k1",
            ),
            (ethereum_message(b"hi").into(), "ethereum", "secp256k1"),
            (
                ethereum_typed_data(domain, "Mail", serde_json::json!({})).into(),
                "ethereum",
                "secp256k1",
            ),
            (
                bitcoin_psbt(
                    "bitcoin",
                    vec![bitcoin_input(10, BITCOIN_ACCOUNT, true)],
                    vec![],
                )
                .into(),
                "bitcoin",
                "secp256k1",
            ),
            (
                solana_transfer(SOLANA_ACCOUNT, SYSTEM_PROGRAM, 1).into(),
                "solana",
                "ed25519",
            ),
            (solana_message("hi").into(), "solana", "ed25519"),
        ];
        for (intent, purpose, algorithm) in intents {
            let kind = intent.kind();
            let req = request().intent(intent).build();
            let json = serde_json::to_value(&req).unwrap();
            assert_eq!(json["intent"]["kind"], kind);
            assert_eq!(
                (req.key.purpose.as_str(), req.key.algorithm.as_str()),
                (purpose, algorithm)
            );
            assert_eq!(
                req.context.spend.is_some(),
                kind == "ethereum_transaction",
                "{kind}"
            );
            // What a policy receives parses back to the same request.
            let back: PolicyInput =
                serde_json::from_slice(&input(&req, serde_json::Value::Null)).unwrap();
            assert_eq!(back.request, req);
        }
        let doc = document("raw", &"ef".repeat(48));
        assert_eq!(
            (doc.hash_algorithm.as_str(), doc.signing_time),
            ("sha384", None)
        );
    }

    #[test]
    fn logs_are_kept_for_tests() {
        crate::log("hello");
        assert_eq!(take_logs(), ["hello"]);
        assert!(take_logs().is_empty());
    }
}
