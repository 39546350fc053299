//! Solana signing with an account key: `POST /v1/keys/{id}/solana/sign-transaction` and
//! `/solana/sign-message`.
//!
//! The routes decode the transaction (`chains::solana::transaction`) or wrap the text as an
//! off-chain message (`chains::solana::offchain`), hand the intent and the exact message bytes
//! to `SigningPath::submit`, and return the signature (and the signed transaction). They never
//! sign by themselves.

use keyward_policy::Intent;
use poem::http::StatusCode;
use poem::web::Data;
use poem_openapi::param::{Header, Path};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi, Union};

use super::error::{ApiError, ApiResult};
use super::sign_route::{self, Routed, account_key, receipt_signatures};
use super::signing::{DryRunResult, PendingResult, PolicyView};
use super::{ApiTags, BearerAuth};
use crate::app::AppState;
use crate::chains::solana::transaction::SolanaPlan;
use crate::chains::solana::{self, offchain};
use crate::error_code::ErrorCode;
use crate::intent::raw::decode_b64;
use crate::intent::{IntentError, SignIntent};
use crate::keys::{Algorithm, SignOptions, ToSign};
use crate::pipeline::{self, PipelineError, SignCall, SignReceipt};
use crate::request_id::current as current_request_id;

/// Solana signing.
pub struct SolanaApi;

/// Sign a transaction: `transaction` (signatures and message) or `message` (the message
/// alone), standard base64 of the wire format.
#[derive(Debug, Clone, Object, serde::Serialize)]
pub struct SignSolanaTransactionBody {
    /// A serialized transaction (legacy or v0), with its signature slots.
    pub transaction: Option<String>,
    /// A serialized message (legacy or v0).
    pub message: Option<String>,
    /// `true`: run the key's policies and return their decision, without signing.
    pub dry_run: Option<bool>,
}

/// Sign an off-chain message: `message` (UTF-8 text) or `message_base64` (its bytes, UTF-8).
#[derive(Debug, Clone, Object, serde::Serialize)]
pub struct SignSolanaMessageBody {
    /// The message as text.
    pub message: Option<String>,
    /// The message bytes, standard base64 (they must be UTF-8).
    pub message_base64: Option<String>,
    /// `true`: run the key's policies and return their decision, without signing.
    pub dry_run: Option<bool>,
}

/// A Solana signature.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct SolanaSignatureView {
    /// The Ed25519 signature, base58 (as Solana shows signatures and transaction ids).
    pub signature: String,
    /// The same signature, standard base64.
    pub signature_base64: String,
    /// The account's address (base58 public key).
    pub address: String,
    /// Transactions: the signed transaction, base64, ready to send.
    #[oai(skip_serializing_if_is_none)]
    pub transaction: Option<String>,
    /// Off-chain messages: the bytes that were signed (signing domain, header, message), base64.
    #[oai(skip_serializing_if_is_none)]
    pub signed_message: Option<String>,
    /// Key id.
    pub key_id: String,
    /// Request id (also in the audit log).
    pub request_id: String,
    /// When it was recorded.
    pub signed_at: String,
    /// How the policy stage decided.
    pub policy: PolicyView,
}

/// A Solana signature, or the decision of a dry run.
#[derive(Debug, Clone, Union)]
#[oai(one_of)]
pub enum SolanaOutcome {
    /// The signature.
    Signed(SolanaSignatureView),
    /// The decision trace of a dry run.
    DryRun(DryRunResult),
}

/// The answer of a Solana sign route.
#[derive(ApiResponse)]
pub enum SolanaResponse {
    /// Signed (or, with `dry_run`, the decision trace).
    #[oai(status = 200)]
    Signed(Json<SolanaOutcome>),
    /// A policy requires approval: the request waits; follow `status_url`. Once it is signed,
    /// send the same request with the same `Idempotency-Key` to get the signature.
    #[oai(status = 202)]
    Pending(Json<PendingResult>),
}

/// Runs one Solana request (its intent, and the message bytes the key signs) through the
/// pipeline: `Ok` with the receipt, or `Err` with the answer to give instead (pending
/// approval, or the decision of a dry run).
async fn run(
    state: &AppState,
    auth: &BearerAuth,
    key_id: &str,
    operation: &'static str,
    (intent, message): (Intent, Vec<u8>),
    idempotency: Option<pipeline::Idempotency>,
    dry_run: bool,
) -> ApiResult<Result<SignReceipt, SolanaResponse>> {
    let call = SignCall {
        principal: auth.0.clone(),
        key_id: key_id.to_string(),
        operation,
        build: Box::new(move |algorithm| {
            if algorithm != Algorithm::Ed25519 {
                return Err(PipelineError::Invalid(format!(
                    "Solana accounts are Ed25519 keys; this key is {algorithm}"
                )));
            }
            Ok((
                SignIntent {
                    purpose: solana::PURPOSE,
                    intent,
                    to_sign: ToSign::Message(message),
                },
                SignOptions::default(),
            ))
        }),
        idempotency,
        request_id: current_request_id(),
    };
    Ok(
        match sign_route::run(state.signing(), call, dry_run).await? {
            Routed::Signed(receipt) => Ok(receipt),
            Routed::Pending(p) => Err(SolanaResponse::Pending(Json(p.into()))),
            Routed::DryRun(d) => Err(SolanaResponse::Signed(Json(SolanaOutcome::DryRun(d)))),
        },
    )
}

fn view(
    receipt: &SignReceipt,
    signature: &[u8],
    address: String,
    transaction: Option<Vec<u8>>,
    signed_message: Option<Vec<u8>>,
) -> SolanaResponse {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    SolanaResponse::Signed(Json(SolanaOutcome::Signed(SolanaSignatureView {
        signature: bs58::encode(signature).into_string(),
        signature_base64: b64(signature),
        address,
        transaction: transaction.as_deref().map(b64),
        signed_message: signed_message.as_deref().map(b64),
        key_id: receipt.key_id.clone(),
        request_id: receipt.request_id.clone(),
        signed_at: receipt.signed_at.clone(),
        policy: PolicyView::from(&receipt.verdict),
    })))
}

/// The idempotency of a Solana sign request (`operation`, its `Idempotency-Key` header and its
/// body) and the account's Ed25519 public key, the caller's access to the key checked first.
async fn account(
    state: &AppState,
    auth: &BearerAuth,
    key_id: &str,
    (operation, header, body): (&'static str, Option<String>, &impl serde::Serialize),
    dry_run: bool,
) -> ApiResult<(Option<pipeline::Idempotency>, [u8; 32])> {
    let idem = sign_route::idempotency(header, dry_run, operation, key_id, body)?;
    let key = account_key(state, auth, key_id, solana::PURPOSE, "solana.sign").await?;
    let public = key
        .meta
        .public_key
        .ed25519_bytes()
        .map_err(PipelineError::from)?;
    Ok((idem, public))
}

fn one_signature(receipt: &SignReceipt) -> ApiResult<Vec<u8>> {
    receipt_signatures(receipt)?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::internal("receipt", "no signature"))
}

#[OpenApi]
impl SolanaApi {
    /// Sign a Solana transaction with a Solana account key (role signer). The account must be
    /// the fee payer. Policies see the fee payer, the recent blockhash, the program ids, and
    /// the decoded System transfers and SPL Token transfers. Returns the signature and the
    /// signed transaction.
    #[oai(
        path = "/v1/keys/:id/solana/sign-transaction",
        method = "post",
        tag = "ApiTags::Solana"
    )]
    async fn sign_transaction(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<String>,
        /// Makes retries safe: the same key with the same body returns the same response.
        #[oai(name = "Idempotency-Key", validator(pattern = r"^[!-~]{1,255}$"))]
        idempotency_key: Header<Option<String>>,
        body: Json<SignSolanaTransactionBody>,
    ) -> ApiResult<SolanaResponse> {
        let Json(body) = body;
        let dry_run = body.dry_run.unwrap_or(false);
        let (idem, public) = account(
            &state,
            &auth,
            &id.0,
            ("solana.sign_transaction", idempotency_key.0, &body),
            dry_run,
        )
        .await?;
        let plan = match (&body.transaction, &body.message) {
            (Some(t), None) => {
                SolanaPlan::from_transaction(&decode_b64("transaction", t)?, &public)?
            }
            (None, Some(m)) => SolanaPlan::from_message(&decode_b64("message", m)?, &public)?,
            (Some(_), Some(_)) => {
                return Err(
                    IntentError::Invalid("send transaction or message, not both".into()).into(),
                );
            }
            (None, None) => {
                return Err(
                    IntentError::Invalid("send transaction or message (base64)".into()).into(),
                );
            }
        };
        let intent = Intent::SolanaTransaction(plan.intent.clone());
        let receipt = match run(
            &state,
            &auth,
            &id.0,
            "solana.sign_transaction",
            (intent, plan.message.clone()),
            idem,
            dry_run,
        )
        .await?
        {
            Ok(receipt) => receipt,
            Err(answer) => return Ok(answer),
        };
        let signature = one_signature(&receipt)?;
        let transaction = plan.signed_transaction(&signature)?;
        Ok(view(
            &receipt,
            &signature,
            solana::address(&public),
            Some(transaction),
            None,
        ))
    }

    /// Sign an off-chain message with a Solana account key (role signer). The signed bytes
    /// start with the off-chain signing domain `\xffsolana offchain`, so the signature can
    /// never authorise a transaction.
    #[oai(
        path = "/v1/keys/:id/solana/sign-message",
        method = "post",
        tag = "ApiTags::Solana"
    )]
    async fn sign_message(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<String>,
        /// Makes retries safe: the same key with the same body returns the same response.
        #[oai(name = "Idempotency-Key", validator(pattern = r"^[!-~]{1,255}$"))]
        idempotency_key: Header<Option<String>>,
        body: Json<SignSolanaMessageBody>,
    ) -> ApiResult<SolanaResponse> {
        let Json(body) = body;
        let dry_run = body.dry_run.unwrap_or(false);
        let (idem, public) = account(
            &state,
            &auth,
            &id.0,
            ("solana.sign_message", idempotency_key.0, &body),
            dry_run,
        )
        .await?;
        let text = match (&body.message, &body.message_base64) {
            (Some(t), None) => t.as_bytes().to_vec(),
            (None, Some(b)) => decode_b64("message_base64", b)?,
            _ => {
                return Err(IntentError::Invalid(
                    "send message (text) or message_base64, one of them".into(),
                )
                .into());
            }
        };
        let (intent, bytes) = offchain::prepare(&text)?;
        let receipt = match run(
            &state,
            &auth,
            &id.0,
            "solana.sign_message",
            (Intent::SolanaMessage(intent), bytes.clone()),
            idem,
            dry_run,
        )
        .await?
        {
            Ok(receipt) => receipt,
            Err(answer) => return Ok(answer),
        };
        let signature = one_signature(&receipt)?;
        Ok(view(
            &receipt,
            &signature,
            solana::address(&public),
            None,
            Some(bytes),
        ))
    }
}

impl From<crate::chains::solana::SolanaError> for ApiError {
    fn from(e: crate::chains::solana::SolanaError) -> Self {
        use crate::chains::solana::SolanaError as S;
        match e {
            S::Malformed(m) => {
                ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidSolanaMessage, m)
            }
            S::Invalid(m) => ApiError::invalid(m),
            S::FeePayerNotOurs(m) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::FeePayerNotOurs,
                m,
            ),
        }
    }
}
