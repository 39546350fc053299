//! Signing and verification with a key: `POST /v1/keys/{id}/sign` and `/verify`, and the
//! answer shapes every sign route shares (a signature, a pending request, a dry-run trace, the
//! policy decision). Never signs by itself: the sign route calls the pipeline.

use super::one_of::{EcdsaFormats, Hashes, OneOf, RsaSchemes};
use poem::web::Data;
use poem_openapi::param::{Header, Path};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi, Union};

use super::error::{ApiError, ApiResult};
use super::{ApiTags, BearerAuth};
use crate::app::AppState;
use crate::auth::Role;
use crate::intent::IntentError;
use crate::intent::raw::{RawPayload, decode_b64};
use crate::keys::{Algorithm, EcdsaFormat, RsaScheme, SignOptions};
use crate::pipeline::{PendingReceipt, PipelineError, SignCall, SignReceipt};
use crate::policy::Verdict;
use crate::request_id::current as current_request_id;

/// Signing and verification.
pub struct SigningApi;

/// A request waiting for approvers.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct PendingResult {
    /// Request id.
    pub request_id: String,
    /// `pending_approval`.
    pub status: String,
    /// Where to follow it (`GET`, with `?wait=SECONDS` to long-poll).
    pub status_url: String,
    /// Key id.
    pub key_id: String,
    /// Why approval is needed.
    pub reason: String,
    /// Distinct approvals needed.
    pub approvals_required: u32,
    /// Roles an approver may hold.
    pub approver_roles: Vec<String>,
    /// When it expires.
    pub expires_at: String,
    /// How the policy stage decided.
    pub policy: PolicyView,
}

impl From<PendingReceipt> for PendingResult {
    fn from(p: PendingReceipt) -> Self {
        PendingResult {
            status: "pending_approval".into(),
            status_url: format!("/v1/requests/{}", p.request_id),
            policy: PolicyView::from(&p.verdict),
            request_id: p.request_id,
            key_id: p.key_id,
            reason: p.reason,
            approvals_required: p.approvals,
            approver_roles: p.approver_roles,
            expires_at: p.expires_at,
        }
    }
}

/// The answer of a sign route: a signature, or a request waiting for approvers.
#[derive(ApiResponse)]
pub enum SignResponse {
    /// Signed (or, with `dry_run`, the decision trace).
    #[oai(status = 200)]
    Signed(Json<SignOutcome>),
    /// A policy requires approval: the request waits; follow `status_url`.
    #[oai(status = 202)]
    Pending(Json<PendingResult>),
}

/// Sign with a key: a `digest` or a `message`.
#[derive(Debug, Clone, Object, serde::Serialize)]
pub struct SignBody {
    /// Base64 digest; its length must match `hash`.
    pub digest: Option<String>,
    /// Base64 message; hashed with `hash` by the server (Ed25519 signs it as is).
    pub message: Option<String>,
    /// `sha256` (default), `sha384` or `sha512`.
    pub hash: Option<OneOf<Hashes>>,
    /// RSA only: `pkcs1v15` (default) or `pss`.
    pub scheme: Option<OneOf<RsaSchemes>>,
    /// ECDSA only: `der` (default) or `raw` (r||s).
    pub format: Option<OneOf<EcdsaFormats>>,
    /// `true`: run the key's policies and return their decision trace, without signing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
}

/// Verify a signature.
#[derive(Debug, Clone, Object)]
pub struct VerifyBody {
    /// Base64 digest (or send `message`).
    pub digest: Option<String>,
    /// Base64 message.
    pub message: Option<String>,
    /// `sha256` (default), `sha384` or `sha512`.
    pub hash: Option<OneOf<Hashes>>,
    /// Base64 signature.
    pub signature: String,
    /// RSA only: `pkcs1v15` (default) or `pss`.
    pub scheme: Option<OneOf<RsaSchemes>>,
    /// ECDSA only: `der` (default) or `raw`.
    pub format: Option<OneOf<EcdsaFormats>>,
}

/// The outcome of a verification.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct VerifyResult {
    /// Whether the signature verifies under the key.
    pub valid: bool,
    /// Key id.
    pub key_id: String,
    /// Key algorithm.
    pub algorithm: String,
}

/// One policy's part in a decision.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct TraceView {
    /// Policy name.
    pub policy: String,
    /// Module SHA-256, hex.
    pub digest: String,
    /// Its decision.
    pub decision: String,
    /// Its reason.
    #[oai(skip_serializing_if_is_none)]
    pub reason: Option<String>,
    /// Fuel used.
    pub fuel: u64,
    /// Microseconds.
    pub micros: u64,
    /// Dry runs only: the lines the policy logged (a signature's answer never has them).
    #[oai(skip_serializing_if_is_empty)]
    pub logs: Vec<String>,
}

/// How the policy stage decided.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct PolicyView {
    /// `allow`, `deny` or `require_approval`.
    pub decision: String,
    /// `default` (no policy bound) or `policies`.
    pub source: String,
    /// Each policy evaluated.
    pub trace: Vec<TraceView>,
}

impl From<&Verdict> for PolicyView {
    fn from(v: &Verdict) -> Self {
        PolicyView {
            decision: v.decision.name().to_string(),
            source: serde_json::to_value(v.source)
                .ok()
                .and_then(|s| s.as_str().map(str::to_string))
                .unwrap_or_default(),
            trace: v
                .trace
                .iter()
                .map(|t| TraceView {
                    policy: t.policy.clone(),
                    digest: t.digest.clone(),
                    decision: t.decision.clone(),
                    reason: t.reason.clone(),
                    fuel: t.fuel,
                    micros: t.micros,
                    logs: Vec::new(),
                })
                .collect(),
        }
    }
}

impl PolicyView {
    /// The view of a dry run's verdict: with what each policy logged.
    pub fn with_logs(v: &Verdict) -> Self {
        let mut view = PolicyView::from(v);
        for (t, entry) in view.trace.iter_mut().zip(&v.trace) {
            t.logs = entry.logs.clone();
        }
        view
    }
}

/// A signature.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct SignResult {
    /// Base64 signature (DER or r||s for ECDSA, as asked).
    pub signature: String,
    /// Key algorithm.
    pub algorithm: String,
    /// Key id.
    pub key_id: String,
    /// Request id (also in the audit log).
    pub request_id: String,
    /// secp256k1 only: the recovery id (0 or 1).
    #[oai(skip_serializing_if_is_none)]
    pub recovery_id: Option<u8>,
    /// When the signature was recorded.
    pub signed_at: String,
    /// How the policy stage decided.
    pub policy: PolicyView,
}

impl From<SignReceipt> for SignResult {
    fn from(r: SignReceipt) -> Self {
        SignResult {
            policy: PolicyView::from(&r.verdict),
            signature: r.signature,
            algorithm: r.algorithm,
            key_id: r.key_id,
            request_id: r.request_id,
            recovery_id: r.recovery_id,
            signed_at: r.signed_at,
        }
    }
}

/// The answer to a dry run: what the policies decided. Nothing was signed.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct DryRunResult {
    /// Always `true`.
    pub dry_run: bool,
    /// Key id.
    pub key_id: String,
    /// Request id (the dry run is in the audit log as `sign.dry_run`).
    pub request_id: String,
    /// How the policy stage decided.
    pub policy: PolicyView,
}

/// A signature, or the decision of a dry run.
#[derive(Debug, Clone, Union)]
#[oai(one_of)]
pub enum SignOutcome {
    /// The signature.
    Signed(SignResult),
    /// The decision trace of a dry run.
    DryRun(DryRunResult),
}

impl From<IntentError> for ApiError {
    fn from(e: IntentError) -> Self {
        match e {
            IntentError::Malformed(m) => ApiError::bad_request(m),
            IntentError::Invalid(m) => ApiError::invalid(m),
        }
    }
}

/// Parses `scheme` and `format`, which only apply to RSA and ECDSA keys respectively.
fn parse_options(
    algorithm: Algorithm,
    scheme: Option<&str>,
    format: Option<&str>,
) -> Result<SignOptions, PipelineError> {
    let scheme = match scheme {
        None => RsaScheme::default(),
        Some(_) if !algorithm.is_rsa() => {
            return Err(PipelineError::Invalid(format!(
                "scheme applies to RSA keys; this key is {algorithm}"
            )));
        }
        Some(s) => s.parse().map_err(PipelineError::Invalid)?,
    };
    let format = match format {
        None => EcdsaFormat::default(),
        Some(_) if !algorithm.is_ecdsa() => {
            return Err(PipelineError::Invalid(format!(
                "format applies to ECDSA keys; this key is {algorithm}"
            )));
        }
        Some(f) => f.parse().map_err(PipelineError::Invalid)?,
    };
    Ok(SignOptions { scheme, format })
}

#[OpenApi]
impl SigningApi {
    /// Sign a digest or a message (role: signer). The request runs through the key's
    /// policies and is recorded in the audit log before the signature is returned. Send an
    /// `Idempotency-Key` to make retries safe. With `dry_run: true`, returns the policies'
    /// decision trace without signing.
    #[oai(path = "/v1/keys/:id/sign", method = "post", tag = "ApiTags::Signing")]
    async fn sign(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<String>,
        /// Makes retries safe: the same key with the same body returns the same response.
        #[oai(name = "Idempotency-Key", validator(pattern = r"^[!-~]{1,255}$"))]
        idempotency_key: Header<Option<String>>,
        body: Json<SignBody>,
    ) -> ApiResult<SignResponse> {
        let Json(body) = body;
        let dry_run = body.dry_run.unwrap_or(false);
        let idempotency =
            super::sign_route::idempotency(idempotency_key.0, dry_run, "raw.sign", &id.0, &body)?;
        let payload = RawPayload::decode(
            body.digest.as_deref(),
            body.message.as_deref(),
            body.hash.as_deref(),
        )?;
        let (scheme, format) = (body.scheme, body.format);
        let call = SignCall {
            principal: auth.0,
            key_id: id.0,
            operation: "raw.sign",
            build: Box::new(move |algorithm| {
                let options = parse_options(algorithm, scheme.as_deref(), format.as_deref())?;
                Ok((payload.into_intent(algorithm), options))
            }),
            idempotency,
            request_id: current_request_id(),
        };
        use super::sign_route::Routed;
        Ok(
            match super::sign_route::run(state.signing(), call, dry_run).await? {
                Routed::Signed(r) => SignResponse::Signed(Json(SignOutcome::Signed(r.into()))),
                Routed::Pending(p) => SignResponse::Pending(Json(p.into())),
                Routed::DryRun(d) => SignResponse::Signed(Json(SignOutcome::DryRun(d))),
            },
        )
    }

    /// Verify a signature with a key's public key (any role).
    #[oai(
        path = "/v1/keys/:id/verify",
        method = "post",
        tag = "ApiTags::Signing"
    )]
    async fn verify(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<String>,
        body: Json<VerifyBody>,
    ) -> ApiResult<Json<VerifyResult>> {
        let principal = auth.require(Role::ALL)?;
        let meta = super::keys::visible_key(&state, principal, &id.0).await?;
        let options = parse_options(
            meta.algorithm,
            body.scheme.as_deref(),
            body.format.as_deref(),
        )?;
        let payload = RawPayload::decode(
            body.digest.as_deref(),
            body.message.as_deref(),
            body.hash.as_deref(),
        )?;
        let signature = decode_b64("signature", &body.signature)?;
        let input = payload.to_sign(meta.algorithm);
        let valid = meta
            .public_key
            .verify(&input, &signature, options.scheme, options.format)?;
        Ok(Json(VerifyResult {
            valid,
            key_id: meta.id,
            algorithm: meta.algorithm.to_string(),
        }))
    }
}
