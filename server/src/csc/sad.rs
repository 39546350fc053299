//! Signature activation: `credentials/authorize`, `credentials/authorizeCheck` and
//! `signatures/signHash`.
//!
//! A SAD is 32 random bytes (base64url), handed out once and stored only as its SHA-256. It is
//! bound to the caller (issuer and subject), the credential, the number of signatures and,
//! since every credential here is SCAL 2, the exact hashes and their hash algorithm; it
//! expires after `csc.sad_ttl_seconds`. `signHash` checks every binding before it consumes the
//! SAD, and consumes it with a conditional update in the audit writer's transaction (status
//! `issued`, this SAD, not expired) before anything is signed, so a SAD signs at most once
//! even under concurrent calls. Another caller's SAD is answered like an unknown one.
//!
//! Approvals: when a policy asks for approval of a hash, `SigningPath::authorize` stores an
//! approval request (operation `csc.authorize`) with the exact bytes to sign. Approving it
//! does not sign anything: it only lets `credentials/authorizeCheck` issue the SAD once all
//! the authorization's requests are approved. `signHash` with that SAD then signs each such
//! hash with `SigningPath::sign_authorized`, from the stored bytes, once (the request moves
//! `approved` -> `signed`). A hash the policies allowed outright is signed with
//! `SigningPath::submit`, so the policies run again at signing time.

use base64::Engine as _;
use keyward_policy::{DocumentIntent, Intent};
use serde_json::json;
use sha2::Digest as _;

use super::algorithms::hash_of_len;
use super::credentials::{Credential, resolve, unknown_credential};
use super::{CscError, Result};
use crate::approvals::ApprovalError;
use crate::audit::{Actor, AuditEvent};
use crate::auth::Principal;
use crate::config::CscConfig;
use crate::intent::SignIntent;
use crate::keys::{Algorithm, EcdsaFormat, HashAlg, Purpose, RsaScheme, SignOptions, ToSign};
use crate::pipeline::SigningPath;
use crate::pipeline::{Authorization, PipelineError, SignCall, Submitted};
use crate::store::approvals::ApprovalStatus;
use crate::store::csc::{BoundHash, CscAuthorizationRow, CscAuthorizationStatus};
use crate::store::{CertificateRow, StateChange};

/// The operation name of authorization requests (see `pipeline::AUTHORIZATION_OPERATIONS`).
pub const AUTHORIZE_OPERATION: &str = "csc.authorize";
/// The operation name of signatures made by `signHash` for allowed hashes.
pub const SIGN_HASH_OPERATION: &str = "csc.signHash";

/// `credentials/authorize`, decoded.
#[derive(Debug, Clone)]
pub struct AuthorizeRequest {
    /// Credential id.
    pub credential_id: String,
    /// Signatures to authorize.
    pub num_signatures: u32,
    /// The hashes to be signed, standard base64.
    pub hashes: Vec<String>,
    /// The hash algorithm, when the client named it (v2 `hashAlgorithmOID`).
    pub hash_algorithm: Option<HashAlg>,
    /// The client's description, shown to policies as the document name.
    pub description: Option<String>,
}

/// A SAD as handed to the client.
#[derive(Debug, Clone)]
pub struct IssuedSad {
    /// The SAD.
    pub sad: String,
    /// Seconds until it expires.
    pub expires_in: u64,
}

/// `signatures/signHash`, decoded.
#[derive(Debug, Clone)]
pub struct SignHashRequest {
    /// Credential id.
    pub credential_id: String,
    /// The SAD.
    pub sad: String,
    /// The hashes, standard base64.
    pub hashes: Vec<String>,
    /// `hashAlgo` / `hashAlgorithmOID`.
    pub hash_algorithm_oid: Option<String>,
    /// `signAlgo`.
    pub sign_algo: String,
}

fn actor(p: &Principal) -> Actor {
    Actor {
        issuer: p.issuer.clone(),
        subject: p.subject.clone(),
    }
}

pub(super) fn decode_hashes(
    field: &str,
    hashes: &[String],
    hash: Option<HashAlg>,
) -> Result<(HashAlg, Vec<Vec<u8>>)> {
    let mut out: Vec<Vec<u8>> = Vec::with_capacity(hashes.len());
    for (i, h) in hashes.iter().enumerate() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(h.trim())
            .map_err(|e| {
                CscError::InvalidRequest(format!("{field}[{i}] is not valid base64: {e}"))
            })?;
        if out.contains(&bytes) {
            return Err(CscError::InvalidRequest(format!(
                "{field}[{i}] repeats an earlier hash"
            )));
        }
        out.push(bytes);
    }
    let first_len = out.first().map(Vec::len).unwrap_or_default();
    let hash = match hash {
        Some(h) => h,
        None => hash_of_len(first_len).ok_or_else(|| {
            CscError::InvalidRequest(format!(
                "{field}[0] is {first_len} bytes, not a SHA-256, SHA-384 or SHA-512 hash"
            ))
        })?,
    };
    for (i, h) in out.iter().enumerate() {
        if h.len() != hash.output_len() {
            return Err(CscError::InvalidRequest(format!(
                "{field}[{i}] is {} bytes, but a {hash} hash is {} bytes",
                h.len(),
                hash.output_len()
            )));
        }
    }
    Ok((hash, out))
}

/// A pipeline call that signs `digest` with the credential as a `document` intent.
#[allow(clippy::too_many_arguments)]
fn document_call(
    principal: Principal,
    credential: &Credential,
    certificate: &CertificateRow,
    operation: &'static str,
    hash: HashAlg,
    digest: Vec<u8>,
    scheme: RsaScheme,
    description: Option<String>,
) -> SignCall {
    let intent = DocumentIntent {
        hash: hex::encode(&digest),
        hash_algorithm: hash.to_string(),
        format: "raw".into(),
        document_name: description,
        document_len: None,
        certificate_subject: Some(certificate.subject.clone()),
        certificate_serial: Some(certificate.serial.clone()),
        signing_time: None,
    };
    SignCall {
        principal,
        key_id: credential.meta.id.clone(),
        operation,
        build: Box::new(move |algorithm: Algorithm| {
            if scheme == RsaScheme::Pss && !algorithm.is_rsa() {
                return Err(PipelineError::Invalid(format!(
                    "RSASSA-PSS applies to RSA keys; this key is {algorithm}"
                )));
            }
            let to_sign = if algorithm == Algorithm::Ed25519 {
                ToSign::Message(digest)
            } else {
                ToSign::Digest { hash, digest }
            };
            Ok((
                SignIntent {
                    purpose: Purpose::Document,
                    intent: Intent::Document(intent),
                    to_sign,
                },
                SignOptions {
                    scheme,
                    format: EcdsaFormat::Der,
                },
            ))
        }),
        idempotency: None,
        request_id: uuid::Uuid::now_v7().simple().to_string(),
    }
}

/// The certificate the credential signs under now (revoked or expired: `access_denied`).
async fn current_certificate(
    path: &SigningPath,
    credential: &Credential,
) -> Result<CertificateRow> {
    let (row, _) = crate::documents::sign::signer_certificate(path, &credential.meta.id)
        .await?
        .ok_or_else(unknown_credential)?;
    Ok(row)
}

fn new_sad() -> (String, Vec<u8>) {
    let mut bytes = [0u8; 32];
    crate::keys::fill_random_bytes(&mut bytes);
    let sad = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let hash = sha2::Sha256::digest(sad.as_bytes()).to_vec();
    (sad, hash)
}

fn pending_error(ids: &[String]) -> CscError {
    CscError::AuthorizationPending(format!(
        "a policy requires approval before this credential may sign; approval request(s) {} \
         wait for approvers (GET /v1/requests/{{id}}). Poll credentials/authorizeCheck with \
         this credentialID: it returns the SAD once every request is approved",
        ids.join(", ")
    ))
}

/// Refuses an authorization whose counts, hashes or description do not fit.
fn check_authorize_request(req: &AuthorizeRequest, max: u32) -> Result<()> {
    if req.num_signatures == 0 || req.num_signatures > max {
        return Err(CscError::InvalidRequest(format!(
            "numSignatures must be 1 to {max} (the credential's multisign)"
        )));
    }
    if req.hashes.is_empty() {
        return Err(CscError::InvalidRequest(
            "this credential is SCAL 2: list the hashes to be signed (hash in v1, hashes in v2)"
                .into(),
        ));
    }
    if req.hashes.len() != req.num_signatures as usize {
        return Err(CscError::InvalidRequest(format!(
            "numSignatures is {} but {} hashes were sent; they must match",
            req.num_signatures,
            req.hashes.len()
        )));
    }
    if let Some(d) = &req.description
        && (d.is_empty() || d.chars().count() > 256)
    {
        return Err(CscError::InvalidRequest(
            "description must be 1 to 256 characters".into(),
        ));
    }
    Ok(())
}

/// The policy stage, one document intent per hash (nothing is signed here): each hash bound to
/// the approval request it waits for, if any. When one hash is refused the authorization as a
/// whole is, and the approval requests already made for earlier hashes are withdrawn.
async fn judge_hashes(
    path: &SigningPath,
    principal: &Principal,
    (credential, certificate): (&Credential, &CertificateRow),
    hash: HashAlg,
    digests: Vec<Vec<u8>>,
    description: Option<&str>,
) -> Result<Vec<BoundHash>> {
    let mut bound = Vec::with_capacity(digests.len());
    for digest in digests {
        let call = document_call(
            principal.clone(),
            credential,
            certificate,
            AUTHORIZE_OPERATION,
            hash,
            digest.clone(),
            RsaScheme::Pkcs1v15,
            description.map(str::to_string),
        );
        let approval = match path.authorize(call).await {
            Ok(Authorization::Allowed(_)) => None,
            Ok(Authorization::Pending(p)) => Some(p.request_id),
            Err(e) => {
                // The authorization as a whole is refused: withdraw the approval requests
                // already made for its earlier hashes, so nobody is asked to approve them.
                for id in bound
                    .iter()
                    .filter_map(|b: &BoundHash| b.approval.as_deref())
                {
                    if let Err(err) = crate::approvals::cancel(path, principal, id).await {
                        tracing::warn!(request = id, error = %err, "withdrawing an approval request failed");
                    }
                }
                return Err(e.into());
            }
        };
        bound.push(BoundHash {
            hash: hex::encode(&digest),
            approval,
        });
    }
    Ok(bound)
}

/// `credentials/authorize`: runs the policies on each hash and issues a SAD, or leaves the
/// authorization pending until approvers complete it.
pub async fn authorize(
    path: &SigningPath,
    limits: &CscConfig,
    principal: &Principal,
    req: AuthorizeRequest,
) -> Result<IssuedSad> {
    let credential = resolve(path, principal, &req.credential_id).await?;
    let certificate = current_certificate(path, &credential).await?;
    check_authorize_request(&req, limits.max_signatures)?;
    let (hash, digests) = decode_hashes("hash", &req.hashes, req.hash_algorithm)?;

    let bound = judge_hashes(
        path,
        principal,
        (&credential, &certificate),
        hash,
        digests,
        req.description.as_deref(),
    )
    .await?;
    let pending: Vec<String> = bound.iter().filter_map(|b| b.approval.clone()).collect();
    let (now, unix) = crate::clock::now();
    let ttl = limits.sad_ttl_seconds;
    let (sad, sad_hash) = new_sad();
    let issued = pending.is_empty();
    let row = CscAuthorizationRow {
        id: format!("csa_{}", uuid::Uuid::now_v7().simple()),
        issuer: principal.issuer.clone(),
        subject: principal.subject.clone(),
        credential_id: credential.meta.id.clone(),
        num_signatures: i64::from(req.num_signatures),
        hash_algorithm: hash.to_string(),
        hashes: bound,
        status: if issued {
            CscAuthorizationStatus::Issued
        } else {
            CscAuthorizationStatus::Pending
        },
        sad_hash: issued.then(|| sad_hash.clone()),
        expires_unix: issued.then(|| unix.saturating_add(i64::try_from(ttl).unwrap_or(3600))),
        description: req.description.clone(),
        created_at: now.clone(),
        updated_at: now,
    };
    let event = AuditEvent {
        action: "csc.authorize",
        outcome: if issued { "issued" } else { "pending_approval" },
        actor: actor(principal),
        key_id: Some(credential.meta.id.clone()),
        request_id: Some(row.id.clone()),
        details: json!({
            "authorization": row.id,
            "num_signatures": req.num_signatures,
            "hash_algorithm": hash.as_str(),
            "hashes": row.hashes,
            "expires_unix": row.expires_unix,
        }),
    };
    path.audit()
        .append(
            vec![StateChange::InsertCscAuthorization(Box::new(row))],
            event,
        )
        .await?;
    if !issued {
        return Err(pending_error(&pending));
    }
    Ok(IssuedSad {
        sad,
        expires_in: ttl,
    })
}

fn approval_error(e: ApprovalError) -> CscError {
    match e {
        ApprovalError::NotFound(id) => CscError::Internal(format!(
            "approval request {id} of this authorization is gone"
        )),
        ApprovalError::Forbidden(m) | ApprovalError::Conflict(m) => CscError::AccessDenied(m),
        ApprovalError::Pipeline(p) => p.into(),
    }
}

/// `credentials/authorizeCheck`: issues the SAD of the caller's pending authorization of this
/// credential once every approval request of it is approved.
pub async fn check(
    path: &SigningPath,
    limits: &CscConfig,
    principal: &Principal,
    credential_id: &str,
) -> Result<IssuedSad> {
    let credential = resolve(path, principal, credential_id).await?;
    let row = path
        .store()
        .csc_pending_authorization(&principal.issuer, &principal.subject, &credential.meta.id)
        .await?
        .ok_or_else(|| {
            CscError::InvalidRequest(
                "no authorization of this credential waits for approval; call credentials/authorize"
                    .into(),
            )
        })?;
    let mut waiting = Vec::new();
    for id in row.hashes.iter().filter_map(|b| b.approval.as_deref()) {
        let request = crate::approvals::get(path, principal, id)
            .await
            .map_err(approval_error)?;
        match request.status {
            ApprovalStatus::Approved => {}
            ApprovalStatus::PendingApproval => waiting.push(id.to_string()),
            other => {
                return Err(CscError::AccessDenied(format!(
                    "approval request {id} is {}; this authorization cannot be completed, \
                     call credentials/authorize again",
                    other.as_str()
                )));
            }
        }
    }
    if !waiting.is_empty() {
        return Err(pending_error(&waiting));
    }
    let (now, unix) = crate::clock::now();
    let ttl = limits.sad_ttl_seconds;
    let expires_unix = unix.saturating_add(i64::try_from(ttl).unwrap_or(3600));
    let (sad, sad_hash) = new_sad();
    let event = AuditEvent {
        action: "csc.authorize",
        outcome: "issued",
        actor: actor(principal),
        key_id: Some(credential.meta.id.clone()),
        request_id: Some(row.id.clone()),
        details: json!({"authorization": row.id, "expires_unix": expires_unix, "approved": true}),
    };
    let change = StateChange::IssueCscSad {
        id: row.id.clone(),
        sad_hash,
        expires_unix,
        at: now,
    };
    path.audit().append(vec![change], event).await?;
    Ok(IssuedSad {
        sad,
        expires_in: ttl,
    })
}

pub(super) fn invalid_sad() -> CscError {
    CscError::InvalidRequest("Invalid parameter SAD".into())
}

/// `signatures/signHash`: checks the SAD's bindings, consumes it, and signs each hash
/// through the pipeline. Returns the raw signatures (ECDSA as DER), in the order sent.
pub async fn sign_hash(
    path: &SigningPath,
    principal: &Principal,
    req: SignHashRequest,
) -> Result<Vec<Vec<u8>>> {
    let credential = resolve(path, principal, &req.credential_id).await?;
    if req.sad.trim().is_empty() {
        return Err(CscError::InvalidRequest(
            "Missing string parameter SAD".into(),
        ));
    }
    if req.hashes.is_empty() {
        return Err(CscError::InvalidRequest(
            "Missing array parameter hash".into(),
        ));
    }
    let (algo, hash, digests) = super::sign_checks::requested_hashes(&credential, &req)?;
    // The SAD and its bindings.
    let (row, sad_hash) =
        super::sign_checks::usable_sad(path, principal, &credential, &req.sad, hash, digests.len())
            .await?;
    let plan = super::sign_checks::bound_plan(&row, digests, algo.scheme, &credential)?;
    let certificate = current_certificate(path, &credential).await?;

    // Consume the SAD before anything is signed: at most one signHash gets past this.
    let (now, unix) = crate::clock::now();
    let event = AuditEvent {
        action: "csc.sad_use",
        outcome: "ok",
        actor: actor(principal),
        key_id: Some(credential.meta.id.clone()),
        request_id: Some(row.id.clone()),
        details: json!({"authorization": row.id, "hashes": plan.len()}),
    };
    let change = StateChange::ConsumeCscSad {
        id: row.id.clone(),
        sad_hash,
        now_unix: unix,
        at: now,
    };
    path.audit().append(vec![change], event).await?;

    let mut signatures = Vec::with_capacity(plan.len());
    for (digest, approval) in plan {
        let receipt = match approval {
            Some(id) => path.sign_authorized(principal, &id).await?,
            None => {
                let call = document_call(
                    principal.clone(),
                    &credential,
                    &certificate,
                    SIGN_HASH_OPERATION,
                    hash,
                    digest,
                    algo.scheme,
                    row.description.clone(),
                );
                match path.submit(call).await? {
                    Submitted::Signed(receipt) => receipt,
                    Submitted::Pending(p) => {
                        return Err(CscError::AccessDenied(format!(
                            "the credential's policies now require approval for this hash \
                             (request {}); call credentials/authorize again",
                            p.request_id
                        )));
                    }
                }
            }
        };
        let signature = base64::engine::general_purpose::STANDARD
            .decode(&receipt.signature)
            .map_err(|e| CscError::Internal(format!("receipt signature: {e}")))?;
        signatures.push(signature);
    }
    Ok(signatures)
}
