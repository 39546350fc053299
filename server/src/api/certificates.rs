//! Certificates of document keys: `/v1/keys/{id}/certificate...`, `/v1/keys/{id}/csr`,
//! `/v1/certificates...`.

use super::one_of::{CertificateStatuses, OneOf, RevocationReasons};
use base64::Engine as _;
use der::{Decode, Encode};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::error::{ApiError, ApiResult};
use super::{ApiTags, BearerAuth, page_limit};
use crate::app::AppState;
use crate::auth::Role;
use crate::documents::issue::SubjectSpec;
use crate::documents::{self, DocumentError};
use crate::store::{CertStatus, CertificateFilter, CertificateRow, cursor};

/// Certificate management.
pub struct CertificatesApi;

/// The subject of a certificate or CSR.
#[derive(Debug, Clone, Object)]
pub struct SubjectBody {
    /// Common name (CN), 1 to 64 characters.
    pub common_name: String,
    /// E-mail address, put in the subject alternative name (rfc822Name).
    pub email: Option<String>,
    /// Organization (O).
    pub organization: Option<String>,
    /// Organizational unit (OU).
    pub organizational_unit: Option<String>,
    /// Country (C), two upper-case letters.
    pub country: Option<String>,
}

impl From<SubjectBody> for SubjectSpec {
    fn from(b: SubjectBody) -> Self {
        SubjectSpec {
            common_name: b.common_name,
            email: b.email,
            organization: b.organization,
            organizational_unit: b.organizational_unit,
            country: b.country,
        }
    }
}

/// Issue a certificate from the internal CA.
#[derive(Debug, Clone, Object)]
pub struct IssueCertificateBody {
    /// The subject.
    pub subject: SubjectBody,
    /// Validity in days, 1 to 3650 (default 365; never beyond the CA's own validity).
    #[oai(validator(minimum(value = "1"), maximum(value = "3650")))]
    pub validity_days: Option<u32>,
    /// Who the certificate belongs to (default: the key's creator).
    pub owner: Option<String>,
}

/// Ask for a CSR.
#[derive(Debug, Clone, Object)]
pub struct CsrBody {
    /// The subject.
    pub subject: SubjectBody,
}

/// A PKCS#10 request.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct CsrView {
    /// PEM `CERTIFICATE REQUEST`, signed by the key.
    pub csr_pem: String,
}

/// Import an externally issued chain.
#[derive(Debug, Clone, Object)]
pub struct ImportChainBody {
    /// PEM certificates, the key's certificate first, then its issuers.
    pub chain_pem: String,
    /// Who the certificate belongs to (default: the key's creator).
    pub owner: Option<String>,
}

/// Revoke a certificate.
#[derive(Debug, Clone, Object)]
pub struct RevokeBody {
    /// `unspecified`, `key_compromise`, `ca_compromise`, `affiliation_changed`, `superseded`,
    /// `cessation_of_operation` or `privilege_withdrawn`.
    pub reason: OneOf<RevocationReasons>,
}

/// A certificate as shown by the API.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct CertificateView {
    /// Id.
    pub id: String,
    /// The key it certifies.
    pub key_id: String,
    /// Serial number, hex.
    pub serial: String,
    /// Subject (RFC 4514).
    pub subject: String,
    /// Issuer (RFC 4514).
    pub issuer: String,
    /// Start of validity.
    pub not_before: String,
    /// End of validity.
    pub not_after: String,
    /// `internal` (issued by Keyward's CA) or `imported`.
    pub source: String,
    /// `active` or `revoked`.
    pub status: String,
    /// When it was revoked.
    pub revoked_at: Option<String>,
    /// Why it was revoked.
    pub revocation_reason: Option<String>,
    /// Who it belongs to.
    pub owner: String,
    /// The certificate, PEM.
    pub certificate_pem: String,
    /// When it was recorded.
    pub created_at: String,
    /// Who recorded it.
    pub created_by: String,
}

impl CertificateView {
    fn from_row(row: &CertificateRow) -> ApiResult<Self> {
        let cert = x509_cert::Certificate::from_der(&row.certificate)
            .map_err(|e| ApiError::internal("stored certificate", e))?;
        Ok(CertificateView {
            id: row.id.clone(),
            key_id: row.key_id.clone(),
            serial: row.serial.clone(),
            subject: row.subject.clone(),
            issuer: row.issuer.clone(),
            not_before: row.not_before.clone(),
            not_after: row.not_after.clone(),
            source: row.source.clone(),
            status: row.status.as_str().to_string(),
            revoked_at: row.revoked_at.clone(),
            revocation_reason: row.revocation_reason.clone(),
            owner: row.owner.clone(),
            certificate_pem: documents::cert_pem(&cert)?,
            created_at: row.created_at.clone(),
            created_by: row.created_by.clone(),
        })
    }
}

/// A page of certificates.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct CertificatePage {
    /// Certificates, ordered by id.
    pub items: Vec<CertificateView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A key's signer certificate and its chain.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct KeyCertificates {
    /// Key id.
    pub key_id: String,
    /// The certificate the key signs under (its newest).
    pub certificate: CertificateView,
    /// The signer certificate, base64 DER.
    pub signer_certificate: String,
    /// The CA chain above it, base64 DER, issuer first.
    pub chain: Vec<String>,
}

/// A recorded certificate.
#[derive(ApiResponse)]
pub enum CertificateCreated {
    /// Recorded.
    #[oai(status = 201)]
    Created(Json<CertificateView>),
}

#[OpenApi]
impl CertificatesApi {
    /// Issue a document-signing certificate for a key of purpose `document` from the internal
    /// CA (roles: key-admin, admin): digitalSignature and nonRepudiation, extended key usage
    /// emailProtection and documentSigning, key identifiers and the CA's CRL distribution point.
    #[oai(
        path = "/v1/keys/:id/certificate",
        method = "post",
        tag = "ApiTags::Certificates"
    )]
    async fn issue(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<String>,
        body: Json<IssueCertificateBody>,
    ) -> ApiResult<CertificateCreated> {
        let principal = auth.require(&[Role::KeyAdmin])?;
        let Json(body) = body;
        let row = documents::issue::issue(
            state.signing(),
            state.documents(),
            principal,
            &id.0,
            &body.subject.into(),
            body.validity_days.unwrap_or(365),
            body.owner,
        )
        .await?;
        Ok(CertificateCreated::Created(Json(
            CertificateView::from_row(&row)?,
        )))
    }

    /// Make a PKCS#10 certificate request for an external CA, signed by the key (roles:
    /// key-admin, admin). Audited as `certificate.csr`.
    #[oai(
        path = "/v1/keys/:id/csr",
        method = "post",
        tag = "ApiTags::Certificates"
    )]
    async fn csr(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<String>,
        body: Json<CsrBody>,
    ) -> ApiResult<Json<CsrView>> {
        let principal = auth.require(&[Role::KeyAdmin])?;
        let pem =
            documents::csr::make(state.signing(), principal, &id.0, &body.0.subject.into()).await?;
        Ok(Json(CsrView { csr_pem: pem }))
    }

    /// Import an externally issued certificate chain for a key (roles: key-admin, admin). The
    /// first certificate must be for this key (422 `CERTIFICATE_KEY_MISMATCH` otherwise) and
    /// each must be signed by the next.
    #[oai(
        path = "/v1/keys/:id/certificate/import",
        method = "post",
        tag = "ApiTags::Certificates"
    )]
    async fn import(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<String>,
        body: Json<ImportChainBody>,
    ) -> ApiResult<CertificateCreated> {
        let principal = auth.require(&[Role::KeyAdmin])?;
        let Json(body) = body;
        let row = documents::import::import(
            state.signing(),
            principal,
            &id.0,
            &body.chain_pem,
            body.owner,
        )
        .await?;
        Ok(CertificateCreated::Created(Json(
            CertificateView::from_row(&row)?,
        )))
    }

    /// A key's signer certificate and CA chain, base64 DER (any role).
    #[oai(
        path = "/v1/keys/:id/certificates",
        method = "get",
        tag = "ApiTags::Certificates"
    )]
    async fn key_certificates(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<String>,
    ) -> ApiResult<Json<KeyCertificates>> {
        let principal = auth.require(Role::ALL)?;
        super::keys::visible_key(&state, principal, &id.0).await?;
        let row = state
            .signing()
            .store()
            .certificates_of_key(&id.0)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::from(DocumentError::NoCertificate(id.0.clone())))?;
        let b64 = |der: &[u8]| base64::engine::general_purpose::STANDARD.encode(der);
        let mut chain = Vec::new();
        if !row.chain.is_empty() {
            for cert in x509_cert::Certificate::load_pem_chain(&row.chain)
                .map_err(|e| ApiError::internal("stored chain", e))?
            {
                chain.push(b64(&cert
                    .to_der()
                    .map_err(|e| ApiError::internal("chain", e))?));
            }
        }
        Ok(Json(KeyCertificates {
            key_id: id.0.clone(),
            signer_certificate: b64(&row.certificate),
            certificate: CertificateView::from_row(&row)?,
            chain,
        }))
    }

    /// List certificates, ordered by id, filtered by key, owner and status (any role).
    #[allow(clippy::too_many_arguments)]
    #[oai(
        path = "/v1/certificates",
        method = "get",
        tag = "ApiTags::Certificates"
    )]
    async fn list(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// Only this key's certificates.
        key_id: Query<Option<String>>,
        /// Only this owner's certificates.
        owner: Query<Option<String>>,
        /// `active` or `revoked`.
        status: Query<Option<OneOf<CertificateStatuses>>>,
        /// Page size, 1 to 500 (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))]
        limit: Query<Option<u32>>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
    ) -> ApiResult<Json<CertificatePage>> {
        let principal = auth.require(Role::ALL)?;
        let limit = page_limit(limit.0)?;
        if let Some(key_id) = &key_id.0 {
            super::keys::visible_key(&state, principal, key_id).await?;
        }
        let status = match status.0.as_deref() {
            Some(s) => Some(CertStatus::parse(s).ok_or_else(|| {
                ApiError::invalid(format!("status {s:?} is not active or revoked"))
            })?),
            None => None,
        };
        let after = super::page_cursor(cursor.0.as_deref())?;
        let filter = CertificateFilter {
            key_id: key_id.0,
            owner: owner.0,
            status,
        };
        let rows = state
            .signing()
            .store()
            .certificates_page(&filter, after.as_deref(), limit + 1)
            .await?;
        let more = rows.len() > limit as usize;
        let mut items = Vec::new();
        // Certificates of keys the caller may not see are left out (the page may then hold
        // fewer items; `next_cursor` still continues after the last row read).
        let mut visible: std::collections::HashMap<String, bool> = Default::default();
        let mut last = None;
        for row in rows.iter().take(limit as usize) {
            last = Some(row.id.clone());
            let seen = match visible.get(&row.key_id) {
                Some(v) => *v,
                None => {
                    let v = super::keys::visible_key(&state, principal, &row.key_id)
                        .await
                        .is_ok();
                    visible.insert(row.key_id.clone(), v);
                    v
                }
            };
            if seen {
                items.push(CertificateView::from_row(row)?);
            }
        }
        let next_cursor = if more {
            last.map(|id| cursor::encode(&id))
        } else {
            None
        };
        Ok(Json(CertificatePage { items, next_cursor }))
    }

    /// Get a certificate (any role).
    #[oai(
        path = "/v1/certificates/:id",
        method = "get",
        tag = "ApiTags::Certificates"
    )]
    async fn get(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<String>,
    ) -> ApiResult<Json<CertificateView>> {
        let principal = auth.require(Role::ALL)?;
        let not_found = || ApiError::not_found(format!("no certificate with id {:?}", id.0));
        let row = state
            .signing()
            .store()
            .certificate(&id.0)
            .await?
            .ok_or_else(not_found)?;
        if super::keys::visible_key(&state, principal, &row.key_id)
            .await
            .is_err()
        {
            return Err(not_found());
        }
        Ok(Json(CertificateView::from_row(&row)?))
    }

    /// Revoke a certificate (roles: key-admin, admin). Signing with it is refused from then
    /// on; for a certificate of the internal CA a new CRL is published at once.
    #[oai(
        path = "/v1/certificates/:id/revoke",
        method = "post",
        tag = "ApiTags::Certificates"
    )]
    async fn revoke(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<String>,
        body: Json<RevokeBody>,
    ) -> ApiResult<Json<CertificateView>> {
        let principal = auth.require(&[Role::KeyAdmin])?;
        let row = documents::crl::revoke(
            state.signing(),
            state.documents(),
            principal,
            &id.0,
            &body.0.reason,
        )
        .await?;
        Ok(Json(CertificateView::from_row(&row)?))
    }
}
