//! Document signing and verification (`/v1/documents/...`) and the internal CA
//! (`/v1/ca/...`). Signing goes through `SigningPath::submit` (see `documents::sign`).

use super::one_of::{DocumentFormats, Hashes, OneOf, RsaSchemes};
use base64::Engine as _;
use poem::web::Data;
use poem::{IntoResponse, Response, handler};
use poem_openapi::param::Header;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use serde_json::json;

use super::error::{ApiError, ApiResult};
use super::signing::PolicyView;
use super::{ApiTags, BearerAuth};
use crate::app::AppState;
use crate::audit::{Actor, AuditEvent};
use crate::auth::Role;
use crate::documents::sign::{DocumentSignRequest, Format, decode_input};
use crate::documents::verify::Signed;
use crate::documents::{self, DocumentError};
use crate::keys::RsaScheme;
use crate::request_id::current as current_request_id;

/// Document signing and verification.
pub struct DocumentsApi;

/// The internal certificate authority.
pub struct CaApi;

/// Sign a document or its hash.
#[derive(Debug, Clone, Object, serde::Serialize)]
pub struct DocumentSignBody {
    /// A key of purpose `document`.
    pub key_id: String,
    /// The document's hash: standard base64 (with `hash_algorithm`), or `sha256:<hex>`.
    pub document_hash: Option<String>,
    /// `sha256` (default), `sha384` or `sha512`.
    pub hash_algorithm: Option<OneOf<Hashes>>,
    /// The document itself, standard base64, up to `documents.max_document_bytes`.
    pub document: Option<String>,
    /// A name for the document, shown to policies and kept in the audit log.
    pub document_name: Option<String>,
    /// `cms` (default: detached CMS SignedData, DER) or `raw` (a bare signature over the hash).
    pub format: Option<OneOf<DocumentFormats>>,
    /// RSA keys: `pkcs1v15` (default) or `pss`.
    pub scheme: Option<OneOf<RsaSchemes>>,
}

/// A document signature.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct DocumentSignResult {
    /// Base64: a DER CMS ContentInfo (`cms`) or the bare signature (`raw`; ECDSA as DER).
    pub signature: String,
    /// `cms` or `raw`.
    pub format: String,
    /// The signing time (for `cms`, the signing-time attribute).
    pub signed_at: String,
    /// e.g. `SHA256withRSA`, `SHA256withRSAandMGF1`, `SHA256withECDSA`, `Ed25519`.
    pub algorithm: String,
    /// Subject of the signer certificate.
    pub signer_subject: Option<String>,
    /// Id of the signer certificate.
    pub certificate_id: Option<String>,
    /// Key id.
    pub key_id: String,
    /// The request id (also in the audit log).
    pub request_id: String,
    /// How the policy stage decided.
    pub policy: PolicyView,
}

impl From<documents::sign::SignedDocument> for DocumentSignResult {
    fn from(signed: documents::sign::SignedDocument) -> Self {
        DocumentSignResult {
            signature: base64::engine::general_purpose::STANDARD.encode(&signed.signature),
            format: signed.format.as_str().to_string(),
            signed_at: signed.signed_at,
            algorithm: signed.algorithm,
            signer_subject: signed.signer_subject,
            certificate_id: signed.certificate_id,
            key_id: signed.key_id,
            request_id: signed.request_id,
            policy: PolicyView::from(&signed.verdict),
        }
    }
}

/// Verify a CMS signature.
#[derive(Debug, Clone, Object)]
pub struct DocumentVerifyBody {
    /// The CMS signature (DER ContentInfo), standard base64.
    pub signature: String,
    /// The document's hash: standard base64 (with `hash_algorithm`), or `sha256:<hex>`.
    pub document_hash: Option<String>,
    /// Hash algorithm of `document_hash`.
    pub hash_algorithm: Option<OneOf<Hashes>>,
    /// The document itself, standard base64.
    pub document: Option<String>,
}

/// The outcome of a verification.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct DocumentVerifyResult {
    /// Signature, document digest and certificate chain are all good.
    pub valid: bool,
    /// The signature verifies under the signer certificate.
    pub signature_valid: bool,
    /// The document matches the signed message digest.
    pub digest_matches: bool,
    /// Signer certificate subject.
    pub signer_subject: Option<String>,
    /// Signer common name.
    pub signer_common_name: Option<String>,
    /// Signer e-mail address.
    pub signer_email: Option<String>,
    /// Signer certificate serial, hex.
    pub signer_serial: Option<String>,
    /// The signing-time attribute.
    pub signing_time: Option<String>,
    /// `good`, `revoked`, `expired` or `untrusted` (against the internal CA and the configured
    /// trust anchors).
    pub chain_status: String,
    /// When the signer certificate was revoked.
    pub revoked_at: Option<String>,
    /// Why it was revoked.
    pub revocation_reason: Option<String>,
    /// Why the signature is not valid (empty when valid).
    pub reasons: Vec<String>,
}

/// Import a CA.
#[derive(Debug, Clone, Object)]
pub struct ImportCaBody {
    /// The CA certificate, PEM.
    pub certificate_pem: String,
    /// Its private key, PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`). Never echoed or stored unsealed.
    pub private_key_pem: String,
}

/// The internal CA.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct CaView {
    /// Subject (RFC 4514).
    pub subject: String,
    /// Serial, hex.
    pub serial: String,
    /// Key algorithm.
    pub algorithm: String,
    /// End of validity.
    pub not_after: String,
    /// The certificate, PEM.
    pub certificate_pem: String,
    /// Where its CRL is published.
    pub crl_url: String,
}

/// The answer of the document sign route.
#[derive(poem_openapi::ApiResponse)]
pub enum DocumentSignResponse {
    /// Signed.
    #[oai(status = 200)]
    Signed(Json<DocumentSignResult>),
    /// A policy requires approval: the request waits; follow `status_url`.
    #[oai(status = 202)]
    Pending(Json<super::signing::PendingResult>),
}

#[OpenApi]
impl DocumentsApi {
    /// Sign a document or its hash with a key of purpose `document` (role: signer). `cms`
    /// gives a detached CAdES-BES SignedData with the certificate chain; `raw` a bare
    /// signature over the hash. The request runs through the key's policies as a `document`
    /// intent and is audited before the signature is returned. Refused with
    /// `CERTIFICATE_REVOKED`, `CERTIFICATE_EXPIRED` or (for `cms`) `NO_CERTIFICATE`.
    #[oai(
        path = "/v1/documents/sign",
        method = "post",
        tag = "ApiTags::Documents"
    )]
    async fn sign(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// Makes retries safe: the same key with the same body returns the same signature.
        #[oai(name = "Idempotency-Key", validator(pattern = r"^[!-~]{1,255}$"))]
        idempotency_key: Header<Option<String>>,
        body: Json<DocumentSignBody>,
    ) -> ApiResult<DocumentSignResponse> {
        let Json(body) = body;
        let idempotency =
            super::idempotency(idempotency_key.0, "document.sign", &body.key_id, &body)?;
        let format = Format::parse(body.format.as_deref().unwrap_or("cms"))?;
        let scheme = body
            .scheme
            .as_deref()
            .map(str::parse::<RsaScheme>)
            .transpose()
            .map_err(ApiError::invalid)?;
        let digest = decode_input(
            body.document_hash.as_deref(),
            body.hash_algorithm.as_deref(),
            body.document.as_deref(),
            state.documents().config().max_document_bytes,
        )?;
        let req = DocumentSignRequest {
            key_id: body.key_id,
            digest,
            document_name: body.document_name,
            format,
            scheme,
        };
        let signed = match documents::sign::sign(
            state.signing(),
            auth.0,
            req,
            idempotency,
            current_request_id(),
        )
        .await?
        {
            documents::sign::DocumentOutcome::Signed(signed) => signed,
            documents::sign::DocumentOutcome::Pending(p) => {
                return Ok(DocumentSignResponse::Pending(Json(p.into())));
            }
        };
        Ok(DocumentSignResponse::Signed(Json(signed.into())))
    }

    /// Verify a detached CMS signature over a document or its hash (any role): the digest, the
    /// signature, and the signer certificate against the internal CA and the configured trust
    /// anchors, with Keyward's revocation records. Audited as `document.verify`.
    #[oai(
        path = "/v1/documents/verify",
        method = "post",
        tag = "ApiTags::Documents"
    )]
    async fn verify(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        body: Json<DocumentVerifyBody>,
    ) -> ApiResult<Json<DocumentVerifyResult>> {
        let principal = auth.require(Role::ALL)?;
        let Json(body) = body;
        let signature = base64::engine::general_purpose::STANDARD
            .decode(body.signature.trim())
            .map_err(|e| {
                ApiError::bad_request(format!("signature is not valid standard base64: {e}"))
            })?;
        let max = state.documents().config().max_document_bytes;
        let signed = match (&body.document, &body.document_hash) {
            (Some(doc), None) => {
                if doc.len() / 4 * 3 > max + 3 {
                    return Err(DocumentError::TooLarge {
                        len: doc.len() / 4 * 3,
                        max,
                    }
                    .into());
                }
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(doc.trim())
                    .map_err(|e| {
                        ApiError::bad_request(format!("document is not valid standard base64: {e}"))
                    })?;
                if bytes.len() > max {
                    return Err(DocumentError::TooLarge {
                        len: bytes.len(),
                        max,
                    }
                    .into());
                }
                Signed::Document(bytes)
            }
            _ => {
                let d = decode_input(
                    body.document_hash.as_deref(),
                    body.hash_algorithm.as_deref(),
                    body.document.as_deref(),
                    max,
                )?;
                Signed::Digest(d.hash, d.digest)
            }
        };
        let result =
            documents::verify::verify(state.signing(), state.documents(), &signature, &signed)
                .await?;
        let event = AuditEvent {
            action: "document.verify",
            outcome: if result.valid { "ok" } else { "invalid" },
            actor: Actor {
                issuer: principal.issuer.clone(),
                subject: principal.subject.clone(),
            },
            key_id: None,
            request_id: Some(current_request_id()),
            details: json!({
                "valid": result.valid,
                "chain_status": result.chain_status.as_str(),
                "signer_subject": result.signer_subject,
                "signer_serial": result.signer_serial,
                "signature_sha256": hex::encode(crate::keys::HashAlg::Sha256.digest(&signature)),
                "reasons": result.reasons,
            }),
        };
        state.signing().audit().append(Vec::new(), event).await?;
        Ok(Json(DocumentVerifyResult {
            valid: result.valid,
            signature_valid: result.signature_valid,
            digest_matches: result.digest_matches,
            signer_subject: result.signer_subject,
            signer_common_name: result.signer_common_name,
            signer_email: result.signer_email,
            signer_serial: result.signer_serial,
            signing_time: result.signing_time,
            chain_status: result.chain_status.as_str().to_string(),
            revoked_at: result.revoked_at,
            revocation_reason: result.revocation_reason,
            reasons: result.reasons,
        }))
    }
}

fn ca_view(state: &AppState) -> ApiResult<CaView> {
    let docs = state.documents();
    let ca = docs.ca();
    let tbs = ca.certificate.tbs_certificate();
    Ok(CaView {
        subject: tbs.subject().to_string(),
        serial: documents::serial_hex(&ca.certificate),
        algorithm: ca.algorithm.to_string(),
        not_after: documents::time_string(&tbs.validity().not_after),
        certificate_pem: ca.pem()?,
        crl_url: docs.crl_url(),
    })
}

#[OpenApi]
impl CaApi {
    /// The internal CA's facts (any role).
    #[oai(path = "/v1/ca", method = "get", tag = "ApiTags::Certificates")]
    async fn info(&self, state: Data<&AppState>, auth: BearerAuth) -> ApiResult<Json<CaView>> {
        auth.require(Role::ALL)?;
        Ok(Json(ca_view(&state)?))
    }

    /// Replace the internal CA with an existing CA certificate and its PKCS#8 key (role:
    /// admin). Audited as `ca.import`. Certificates issued by the previous CA stay recorded.
    #[oai(path = "/v1/ca/import", method = "post", tag = "ApiTags::Certificates")]
    async fn import(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        body: Json<ImportCaBody>,
    ) -> ApiResult<Json<CaView>> {
        let principal = auth.require(&[Role::Admin])?;
        let Json(body) = body;
        state
            .documents()
            .import_ca(
                state.signing().store(),
                state.signing().audit(),
                principal,
                &body.certificate_pem,
                body.private_key_pem,
            )
            .await?;
        Ok(Json(ca_view(&state)?))
    }
}

// The CA certificate and the CRL are public, like a JWKS: relying parties and X.509 tools
// fetch them without a token (the CRL distribution point of every issued certificate names
// `/v1/ca/crl`). They are plain routes outside the OpenAPI service, whose operations all
// require the bearer scheme; `GET /v1/ca` shows the same facts in the spec.

/// `GET /v1/ca/certificate`: the internal CA certificate, PEM.
#[handler]
pub async fn ca_certificate(state: Data<&AppState>) -> poem::Result<Response> {
    let pem = state.documents().ca().pem().map_err(ApiError::from)?;
    Ok(pem
        .with_content_type("application/x-pem-file")
        .into_response())
}

/// `GET /v1/ca/crl`: the internal CA's current CRL, DER.
#[handler]
pub async fn ca_crl(state: Data<&AppState>) -> poem::Result<Response> {
    let crl = documents::crl::current(state.signing(), state.documents())
        .await
        .map_err(ApiError::from)?;
    Ok(crl
        .with_content_type("application/pkix-crl")
        .into_response())
}
