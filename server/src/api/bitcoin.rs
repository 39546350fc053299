//! Bitcoin signing with an account key: `POST /v1/keys/{id}/bitcoin/sign-psbt`.
//!
//! The route decodes the PSBT for the account (`chains::bitcoin::psbt`), hands the intent and
//! the sighashes of the account's inputs to `SigningPath::submit` as one request (one policy
//! decision, one audit record, one signature per input), then puts the signatures into the
//! PSBT. It never signs by itself.

use std::str::FromStr;

use bitcoin::Address;
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
use crate::chains::bitcoin::{BitcoinAccount, PURPOSE, PsbtPlan, account};
use crate::error_code::ErrorCode;
use crate::intent::SignIntent;
use crate::intent::raw::decode_b64;
use crate::keys::{Algorithm, SignOptions};
use crate::pipeline::{PipelineError, SignCall};
use crate::request_id::current as current_request_id;

/// Bitcoin signing.
pub struct BitcoinApi;

/// Sign a PSBT.
#[derive(Debug, Clone, Object, serde::Serialize)]
pub struct SignPsbtBody {
    /// The PSBT (BIP-174), standard base64. Every input must carry the output it spends
    /// (`witness_utxo`, or `non_witness_utxo`).
    pub psbt: String,
    /// `true` (default): turn the inputs Keyward signs into final witnesses; `false`: add the
    /// signatures as partial signatures (`partial_sigs` / `tap_key_sig`) for another finalizer.
    pub finalize: Option<bool>,
    /// `true`: run the key's policies and return their decision, without signing.
    pub dry_run: Option<bool>,
}

/// A signed PSBT.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct SignedPsbtView {
    /// The PSBT with the account's signatures, base64.
    pub psbt: String,
    /// The transaction id.
    pub txid: String,
    /// The inputs signed (indexes).
    pub signed_inputs: Vec<u32>,
    /// Whether every input is finalized (then `transaction` is set).
    pub complete: bool,
    /// The network transaction, hex, ready to broadcast, when `complete`.
    #[oai(skip_serializing_if_is_none)]
    pub transaction: Option<String>,
    /// Fee in satoshis.
    pub fee_sat: u64,
    /// The account's address.
    pub address: String,
    /// Key id.
    pub key_id: String,
    /// Request id (also in the audit log).
    pub request_id: String,
    /// When it was recorded.
    pub signed_at: String,
    /// How the policy stage decided.
    pub policy: PolicyView,
}

/// A signed PSBT, or the decision of a dry run.
#[derive(Debug, Clone, Union)]
#[oai(one_of)]
pub enum PsbtOutcome {
    /// The signed PSBT.
    Signed(SignedPsbtView),
    /// The decision trace of a dry run.
    DryRun(DryRunResult),
}

/// The answer of the PSBT route.
#[derive(ApiResponse)]
pub enum PsbtResponse {
    /// Signed (or, with `dry_run`, the decision trace).
    #[oai(status = 200)]
    Signed(Json<PsbtOutcome>),
    /// A policy requires approval: the request waits; follow `status_url`. Once it is signed,
    /// send the same request with the same `Idempotency-Key` to get the signed PSBT.
    #[oai(status = 202)]
    Pending(Json<PendingResult>),
}

/// The scripts of the other Bitcoin accounts of the key's wallet: outputs to them are change.
async fn wallet_scripts(state: &AppState, key_id: &str) -> ApiResult<Vec<bitcoin::ScriptBuf>> {
    let Some(account) = state.signing().store().account_of_key(key_id).await? else {
        return Ok(Vec::new());
    };
    Ok(state
        .signing()
        .store()
        .wallet_accounts(&account.wallet_id)
        .await?
        .iter()
        .filter(|a| a.chain == crate::chains::bitcoin::NAME)
        .filter_map(|a| Address::from_str(&a.address).ok())
        .map(|a| a.assume_checked().script_pubkey())
        .collect())
}

#[OpenApi]
impl BitcoinApi {
    /// Sign a PSBT with a Bitcoin account key (role signer). Keyward signs the inputs that
    /// spend the account's address (P2WPKH: BIP-143 `SIGHASH_ALL`; P2TR key path: BIP-341
    /// `SIGHASH_DEFAULT`), after the key's policies judged the decoded transaction (network,
    /// inputs, outputs with change, fee and fee rate). Returns the PSBT, finalized by default.
    #[oai(
        path = "/v1/keys/:id/bitcoin/sign-psbt",
        method = "post",
        tag = "ApiTags::Bitcoin"
    )]
    async fn sign_psbt(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<String>,
        /// Makes retries safe: the same key with the same body returns the same response.
        #[oai(name = "Idempotency-Key", validator(pattern = r"^[!-~]{1,255}$"))]
        idempotency_key: Header<Option<String>>,
        body: Json<SignPsbtBody>,
    ) -> ApiResult<PsbtResponse> {
        let Json(body) = body;
        let dry_run = body.dry_run.unwrap_or(false);
        let idem = sign_route::idempotency(
            idempotency_key.0,
            dry_run,
            "bitcoin.sign_psbt",
            &id.0,
            &body,
        )?;
        let key = account_key(&state, &auth, &id.0, PURPOSE, "bitcoin.sign_psbt").await?;
        let not_account = || {
            ApiError::invalid(format!(
                "key {} is not a Bitcoin wallet account; derive one with POST /v1/wallets/{{id}}/accounts",
                id.0
            ))
        };
        let row = state
            .signing()
            .store()
            .account_of_key(&id.0)
            .await?
            .filter(|a| a.chain == crate::chains::bitcoin::NAME)
            .ok_or_else(not_account)?;
        let settings: crate::chains::AccountSettings = serde_json::from_str(&row.settings)
            .map_err(|e| ApiError::internal("stored account settings", e))?;
        let (kind, network) = account::from_settings(&settings)?;
        let sec1 = key
            .meta
            .public_key
            .secp256k1_sec1(true)
            .map_err(PipelineError::from)?;
        let account = BitcoinAccount::new(&sec1, kind, network)?;
        let psbt_bytes = decode_b64("psbt", &body.psbt)?;
        let plan = PsbtPlan::new(&psbt_bytes, &account, &wallet_scripts(&state, &id.0).await?)?;
        let (intent, to_sign) = (plan.intent.clone(), plan.to_sign());
        let call = SignCall {
            principal: auth.0.clone(),
            key_id: id.0.clone(),
            operation: "bitcoin.sign_psbt",
            build: Box::new(move |algorithm| {
                if algorithm != Algorithm::Secp256k1 {
                    return Err(PipelineError::Invalid(format!(
                        "Bitcoin accounts are secp256k1 keys; this key is {algorithm}"
                    )));
                }
                Ok((
                    SignIntent {
                        purpose: PURPOSE,
                        intent: Intent::BitcoinPsbt(intent),
                        to_sign,
                    },
                    SignOptions::default(),
                ))
            }),
            idempotency: idem,
            request_id: current_request_id(),
        };
        let receipt = match sign_route::run(state.signing(), call, dry_run).await? {
            Routed::Signed(receipt) => receipt,
            Routed::Pending(p) => return Ok(PsbtResponse::Pending(Json(p.into()))),
            Routed::DryRun(d) => return Ok(PsbtResponse::Signed(Json(PsbtOutcome::DryRun(d)))),
        };
        let fee_sat = plan.intent.fee_sat;
        let txid = plan.intent.txid.clone();
        let signed = plan.complete(
            &receipt_signatures(&receipt)?,
            body.finalize.unwrap_or(true),
        )?;
        use base64::Engine as _;
        Ok(PsbtResponse::Signed(Json(PsbtOutcome::Signed(
            SignedPsbtView {
                psbt: base64::engine::general_purpose::STANDARD.encode(&signed.psbt),
                txid,
                signed_inputs: signed.signed_inputs.iter().map(|&i| i as u32).collect(),
                complete: signed.complete,
                transaction: signed.tx_hex,
                fee_sat,
                address: account.address().to_string(),
                key_id: receipt.key_id.clone(),
                request_id: receipt.request_id.clone(),
                signed_at: receipt.signed_at.clone(),
                policy: PolicyView::from(&receipt.verdict),
            },
        ))))
    }
}

impl From<crate::chains::bitcoin::BitcoinError> for ApiError {
    fn from(e: crate::chains::bitcoin::BitcoinError) -> Self {
        use crate::chains::bitcoin::BitcoinError as B;
        let invalid = |code, m| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, m);
        match e {
            B::Malformed(m) => ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidPsbt, m),
            B::Invalid(m) => ApiError::invalid(m),
            B::NoInputsOurs(m) => invalid(ErrorCode::NoInputsToSign, m),
            B::MissingUtxo(m) => invalid(ErrorCode::MissingUtxo, m),
        }
    }
}
