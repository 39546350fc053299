//! Ethereum signing with an account key: `/v1/keys/{id}/ethereum/...`. Each route decodes its
//! input and goes through `chains::ethereum::signer`, which signs only via the pipeline.

use poem::web::Data;
use poem_openapi::param::{Header, Path};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi, Union};

use super::error::{ApiError, ApiResult};
use super::ethereum_signer::{self as signer, EthError, EthOutcome, EthSigned};
use super::signing::{DryRunResult, PendingResult, PolicyView};
use super::{ApiTags, BearerAuth};
use crate::app::AppState;
use crate::chains::ethereum::hex_bytes;
use crate::chains::ethereum::signed::EthRequest;
use crate::chains::ethereum::tx::TxFields;
use crate::intent::IntentError;
use crate::pipeline::Idempotency;
use crate::request_id::current as current_request_id;

/// Ethereum signing.
pub struct EthereumApi;

/// An access list entry.
#[derive(Debug, Clone, Object, serde::Serialize)]
#[oai(skip_serializing_if_is_none)]
pub struct AccessListEntry {
    /// Address.
    pub address: String,
    /// Storage keys, 32-byte 0x hex.
    #[oai(default)]
    pub storage_keys: Vec<String>,
}

/// A transaction as fields. Quantities are 0x hex or decimal strings.
#[derive(Debug, Clone, Object, serde::Serialize)]
#[oai(skip_serializing_if_is_none)]
pub struct TransactionFields {
    /// `legacy` (`0x0`), `eip2930` (`0x1`) or `eip1559` (`0x2`); inferred when absent
    /// (EIP-1559 fee fields: eip1559; an access list: eip2930; else legacy).
    #[oai(rename = "type")]
    pub tx_type: Option<String>,
    /// The chain id (required).
    pub chain_id: Option<String>,
    /// Nonce (default 0).
    pub nonce: Option<String>,
    /// Recipient; absent for a contract creation.
    pub to: Option<String>,
    /// Value in wei (default 0).
    pub value: Option<String>,
    /// Gas limit.
    pub gas: Option<String>,
    /// Gas price (legacy, eip2930).
    pub gas_price: Option<String>,
    /// Max fee per gas (eip1559).
    pub max_fee_per_gas: Option<String>,
    /// Max priority fee per gas (eip1559).
    pub max_priority_fee_per_gas: Option<String>,
    /// Call data, 0x hex.
    pub data: Option<String>,
    /// Access list (eip2930, eip1559).
    pub access_list: Option<Vec<AccessListEntry>>,
}

impl From<TransactionFields> for TxFields {
    fn from(t: TransactionFields) -> Self {
        TxFields {
            tx_type: t.tx_type,
            chain_id: t.chain_id,
            nonce: t.nonce,
            to: t.to,
            value: t.value,
            gas: t.gas,
            gas_price: t.gas_price,
            max_fee_per_gas: t.max_fee_per_gas,
            max_priority_fee_per_gas: t.max_priority_fee_per_gas,
            data: t.data,
            access_list: t
                .access_list
                .map(|l| l.into_iter().map(|e| (e.address, e.storage_keys)).collect()),
        }
    }
}

/// Sign a transaction: `transaction` (fields) or `unsigned` (its unsigned encoding, hex).
#[derive(Debug, Clone, Object, serde::Serialize)]
pub struct SignTransactionBody {
    /// The transaction as fields.
    pub transaction: Option<TransactionFields>,
    /// The unsigned transaction, 0x hex: RLP `[nonce, gasPrice, gas, to, value, data,
    /// chainId, 0, 0]` for legacy, or `0x01`/`0x02` followed by the RLP of the fields.
    pub unsigned: Option<String>,
    /// `true`: run the key's policies and return their decision, without signing.
    pub dry_run: Option<bool>,
}

/// Sign an EIP-191 message: `message` (UTF-8 text) or `message_hex` (bytes).
#[derive(Debug, Clone, Object, serde::Serialize)]
pub struct SignMessageBody {
    /// The message as UTF-8 text.
    pub message: Option<String>,
    /// The message bytes, 0x hex.
    pub message_hex: Option<String>,
    /// `true`: run the key's policies and return their decision, without signing.
    pub dry_run: Option<bool>,
}

/// Sign EIP-712 typed data.
#[derive(Debug, Clone, Object, serde::Serialize)]
pub struct SignTypedDataBody {
    /// The `eth_signTypedData_v4` object: `types` (with `EIP712Domain`), `primaryType`,
    /// `domain` and `message`.
    pub typed_data: serde_json::Value,
    /// `true`: run the key's policies and return their decision, without signing.
    pub dry_run: Option<bool>,
}

/// An Ethereum signature.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct EthSignatureView {
    /// `r || s || v`, 65 bytes, 0x hex (for transactions, `v` is the y parity; the signed
    /// transaction carries the standard's `v`).
    pub signature: String,
    /// r, 0x hex.
    pub r: String,
    /// s (low-S), 0x hex.
    pub s: String,
    /// The standard's v: 27/28 for messages and typed data, `chainId * 2 + 35 + parity` for
    /// legacy transactions, the parity (0/1) for typed transactions.
    pub v: u64,
    /// The y parity (recovery id).
    pub y_parity: u8,
    /// The signer's address (EIP-55).
    pub from: String,
    /// The hash that was signed, 0x hex.
    pub hash: String,
    /// Transactions: the signed transaction, ready to broadcast, 0x hex.
    #[oai(skip_serializing_if_is_none)]
    pub raw_transaction: Option<String>,
    /// Transactions: the transaction hash, 0x hex.
    #[oai(skip_serializing_if_is_none)]
    pub transaction_hash: Option<String>,
    /// Key id.
    pub key_id: String,
    /// Request id (also in the audit log).
    pub request_id: String,
    /// When it was recorded.
    pub signed_at: String,
    /// How the policy stage decided.
    pub policy: PolicyView,
}

impl From<EthSigned> for EthSignatureView {
    fn from(signed: EthSigned) -> Self {
        let EthSigned {
            assembled: s,
            receipt,
        } = signed;
        let mut sig = s.signature_bytes();
        if s.transaction.is_some() {
            sig[64] = u8::from(s.signature.y_parity);
        }
        EthSignatureView {
            signature: format!("0x{}", hex::encode(&sig)),
            r: format!("0x{}", hex::encode(s.signature.r)),
            s: format!("0x{}", hex::encode(s.signature.s)),
            v: s.v,
            y_parity: u8::from(s.signature.y_parity),
            from: s.from.to_checksum(None),
            hash: format!("0x{}", hex::encode(s.hash)),
            raw_transaction: s
                .transaction
                .as_ref()
                .map(|(raw, _)| format!("0x{}", hex::encode(raw))),
            transaction_hash: s
                .transaction
                .as_ref()
                .map(|(_, h)| format!("0x{}", hex::encode(h))),
            policy: PolicyView::from(&receipt.verdict),
            key_id: receipt.key_id,
            request_id: receipt.request_id,
            signed_at: receipt.signed_at,
        }
    }
}

/// An Ethereum signature, or the decision of a dry run.
#[derive(Debug, Clone, Union)]
#[oai(one_of)]
pub enum EthSignOutcome {
    /// The signature.
    Signed(EthSignatureView),
    /// The decision trace of a dry run.
    DryRun(DryRunResult),
}

/// The answer of an Ethereum sign route.
#[derive(ApiResponse)]
pub enum EthSignResponse {
    /// Signed (or, with `dry_run`, the decision trace).
    #[oai(status = 200)]
    Signed(Json<EthSignOutcome>),
    /// A policy requires approval: the request waits; follow `status_url`. Once approved,
    /// the request's `ethereum` field holds what this route would have returned.
    #[oai(status = 202)]
    Pending(Json<PendingResult>),
}

impl From<EthError> for ApiError {
    fn from(e: EthError) -> Self {
        match e {
            EthError::Intent(e) => e.into(),
            EthError::Pipeline(e) => e.into(),
        }
    }
}

async fn run(
    state: &AppState,
    auth: BearerAuth,
    key_id: String,
    request: EthRequest,
    idempotency: Option<Idempotency>,
    dry_run: bool,
) -> ApiResult<EthSignResponse> {
    let outcome = signer::sign(
        state.signing(),
        auth.0,
        key_id,
        request,
        if dry_run { None } else { idempotency },
        current_request_id(),
        dry_run,
    )
    .await?;
    Ok(match outcome {
        Ok(EthOutcome::Signed(s)) => {
            EthSignResponse::Signed(Json(EthSignOutcome::Signed((*s).into())))
        }
        Ok(EthOutcome::Pending(p)) => EthSignResponse::Pending(Json((*p).into())),
        Err(dry_run) => EthSignResponse::Signed(Json(EthSignOutcome::DryRun(dry_run))),
    })
}

#[OpenApi]
impl EthereumApi {
    /// Sign an Ethereum transaction (legacy/EIP-155, EIP-2930, EIP-1559) with an account key
    /// (role signer). A chain id is required, and must be among the key's chain ids when it
    /// has a list. Returns the signed raw transaction, its hash and `from`.
    #[oai(
        path = "/v1/keys/:id/ethereum/sign-transaction",
        method = "post",
        tag = "ApiTags::Ethereum"
    )]
    async fn sign_transaction(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<String>,
        /// Makes retries safe: the same key with the same body returns the same response.
        #[oai(name = "Idempotency-Key", validator(pattern = r"^[!-~]{1,255}$"))]
        idempotency_key: Header<Option<String>>,
        body: Json<SignTransactionBody>,
    ) -> ApiResult<EthSignResponse> {
        let Json(body) = body;
        let idem =
            super::idempotency(idempotency_key.0, "ethereum.sign_transaction", &id.0, &body)?;
        let request = match (body.transaction, body.unsigned) {
            (Some(t), None) => EthRequest::Transaction(Box::new(t.into())),
            (None, Some(u)) => EthRequest::UnsignedTransaction(hex_bytes("unsigned", &u)?),
            (Some(_), Some(_)) => {
                return Err(
                    IntentError::Invalid("send transaction or unsigned, not both".into()).into(),
                );
            }
            (None, None) => {
                return Err(IntentError::Invalid(
                    "send transaction (fields) or unsigned (hex)".into(),
                )
                .into());
            }
        };
        run(
            &state,
            auth,
            id.0,
            request,
            idem,
            body.dry_run.unwrap_or(false),
        )
        .await
    }

    /// Sign an EIP-191 `personal_sign` message with an account key (role signer). Returns
    /// the 65-byte signature with v = 27 or 28.
    #[oai(
        path = "/v1/keys/:id/ethereum/sign-message",
        method = "post",
        tag = "ApiTags::Ethereum"
    )]
    async fn sign_message(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<String>,
        /// Makes retries safe: the same key with the same body returns the same response.
        #[oai(name = "Idempotency-Key", validator(pattern = r"^[!-~]{1,255}$"))]
        idempotency_key: Header<Option<String>>,
        body: Json<SignMessageBody>,
    ) -> ApiResult<EthSignResponse> {
        let Json(body) = body;
        let idem = super::idempotency(idempotency_key.0, "ethereum.sign_message", &id.0, &body)?;
        let message = match (&body.message, &body.message_hex) {
            (Some(text), None) => text.as_bytes().to_vec(),
            (None, Some(h)) => hex_bytes("message_hex", h)?,
            _ => {
                return Err(IntentError::Invalid(
                    "send exactly one of message (text) and message_hex".into(),
                )
                .into());
            }
        };
        run(
            &state,
            auth,
            id.0,
            EthRequest::Message(message),
            idem,
            body.dry_run.unwrap_or(false),
        )
        .await
    }

    /// Sign EIP-712 typed data (`eth_signTypedData_v4`) with an account key (role signer).
    /// Nested structs and arrays are supported; an undefined type or a value that does not
    /// fit its type is refused.
    #[oai(
        path = "/v1/keys/:id/ethereum/sign-typed-data",
        method = "post",
        tag = "ApiTags::Ethereum"
    )]
    async fn sign_typed_data(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<String>,
        /// Makes retries safe: the same key with the same body returns the same response.
        #[oai(name = "Idempotency-Key", validator(pattern = r"^[!-~]{1,255}$"))]
        idempotency_key: Header<Option<String>>,
        body: Json<SignTypedDataBody>,
    ) -> ApiResult<EthSignResponse> {
        let Json(body) = body;
        let idem = super::idempotency(idempotency_key.0, "ethereum.sign_typed_data", &id.0, &body)?;
        run(
            &state,
            auth,
            id.0,
            EthRequest::TypedData(body.typed_data),
            idem,
            body.dry_run.unwrap_or(false),
        )
        .await
    }
}
