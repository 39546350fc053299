//! `credentials/list` and `credentials/info`: which credentials a caller has, and what they
//! are. A credential is a key of purpose `document` with a certificate; a caller sees only
//! the ones they may sign with (the role `signer` and the key's `signers` list), so another
//! user's credentials never appear, and asking for one by id is answered like an unknown id.

use der::{Decode, Encode};
use x509_cert::Certificate;

use super::algorithms::{key_algorithms, key_curve, key_len};
use super::{CscError, Result};
use crate::auth::{Principal, Role};
use crate::config::CscConfig;
use crate::keys::{KeyMeta, Purpose};
use crate::pipeline::SigningPath;
use crate::store::{CertStatus, CertificateRow, KeyStatus};

/// The refusal for an id that is unknown, not a credential, or not the caller's.
pub fn unknown_credential() -> CscError {
    CscError::InvalidRequest("Invalid parameter credentialID".into())
}

/// A credential the caller may use.
#[derive(Debug, Clone)]
pub struct Credential {
    /// The key.
    pub meta: KeyMeta,
    /// Its newest certificate.
    pub certificate: CertificateRow,
}

fn usable_by(meta: &KeyMeta, principal: &Principal) -> bool {
    meta.purpose == Purpose::Document
        && principal.has_role(Role::Signer)
        && crate::auth::signers::admits(&meta.signers, principal)
}

/// The credential `id`, if the caller may sign with it; `invalid_request` otherwise.
pub async fn resolve(path: &SigningPath, principal: &Principal, id: &str) -> Result<Credential> {
    let row = path.store().key(id).await?.ok_or_else(unknown_credential)?;
    let meta = KeyMeta::from_row(&row)?;
    if !usable_by(&meta, principal) {
        return Err(unknown_credential());
    }
    let certificate = path
        .store()
        .certificates_of_key(id)
        .await?
        .into_iter()
        .next()
        .ok_or_else(unknown_credential)?;
    Ok(Credential { meta, certificate })
}

/// The ids of the caller's credentials, by key id.
pub async fn list(path: &SigningPath, principal: &Principal) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    if !principal.has_role(Role::Signer) {
        return Ok(ids);
    }
    let mut after: Option<String> = None;
    loop {
        let page = path.store().keys_page(after.as_deref(), 500).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        for row in &page {
            let meta = KeyMeta::from_row(row)?;
            if usable_by(&meta, principal)
                && !path.store().certificates_of_key(&meta.id).await?.is_empty()
            {
                ids.push(meta.id);
            }
        }
    }
    Ok(ids)
}

/// Which certificates `credentials/info` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificatesWanted {
    /// None.
    None,
    /// The end-entity certificate.
    Single,
    /// The end-entity certificate and the chain above it.
    Chain,
}

impl CertificatesWanted {
    /// Parses `none`, `single` (the default) or `chain`.
    pub fn parse(text: Option<&str>) -> Result<Self> {
        match text.unwrap_or("single") {
            "none" => Ok(CertificatesWanted::None),
            "single" => Ok(CertificatesWanted::Single),
            "chain" => Ok(CertificatesWanted::Chain),
            other => Err(CscError::InvalidRequest(format!(
                "Invalid parameter certificates: {other:?}; expected none, single or chain"
            ))),
        }
    }
}

/// Facts from the end-entity certificate (`certInfo`).
#[derive(Debug, Clone)]
pub struct CertFacts {
    /// Issuer DN.
    pub issuer_dn: String,
    /// Subject DN.
    pub subject_dn: String,
    /// Serial, hex.
    pub serial: String,
    /// Start of validity, `YYYYMMDDHHMMSSZ`.
    pub valid_from: String,
    /// End of validity, `YYYYMMDDHHMMSSZ`.
    pub valid_to: String,
}

/// What `credentials/info` says about a credential.
#[derive(Debug, Clone)]
pub struct CredentialInfo {
    /// Credential id.
    pub id: String,
    /// A description (the key's name).
    pub description: String,
    /// `enabled` or `disabled`.
    pub key_status: &'static str,
    /// Signature algorithm OIDs.
    pub algo: Vec<String>,
    /// Key size in bits.
    pub len: u32,
    /// Curve OID.
    pub curve: Option<String>,
    /// `valid`, `expired` or `revoked`.
    pub cert_status: &'static str,
    /// DER certificates, end entity first.
    pub certificates: Vec<Vec<u8>>,
    /// Certificate facts.
    pub facts: CertFacts,
    /// Signatures one authorization may cover.
    pub multisign: u32,
}

fn generalized(t: &x509_cert::time::Time) -> String {
    let dt = crate::documents::to_datetime(t);
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}Z",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    )
}

/// `credentials/info` for a credential the caller may use.
pub async fn info(
    path: &SigningPath,
    limits: &CscConfig,
    principal: &Principal,
    id: &str,
    wanted: CertificatesWanted,
) -> Result<CredentialInfo> {
    let Credential { meta, certificate } = resolve(path, principal, id).await?;
    let cert = Certificate::from_der(&certificate.certificate)
        .map_err(|e| CscError::Internal(format!("stored certificate of {id}: {e}")))?;
    let tbs = cert.tbs_certificate();
    let validity = tbs.validity();
    let now = std::time::SystemTime::now();
    let cert_status = if certificate.status == CertStatus::Revoked {
        "revoked"
    } else if now < validity.not_before.to_system_time()
        || now > validity.not_after.to_system_time()
    {
        "expired"
    } else {
        "valid"
    };
    let mut certificates = Vec::new();
    if wanted != CertificatesWanted::None {
        certificates.push(certificate.certificate.clone());
    }
    if wanted == CertificatesWanted::Chain && !certificate.chain.is_empty() {
        let chain = Certificate::load_pem_chain(&certificate.chain)
            .map_err(|e| CscError::Internal(format!("stored chain of {id}: {e}")))?;
        for c in chain {
            let der = c
                .to_der()
                .map_err(|e| CscError::Internal(format!("chain of {id}: {e}")))?;
            if !certificates.contains(&der) {
                certificates.push(der);
            }
        }
    }
    Ok(CredentialInfo {
        id: meta.id.clone(),
        description: meta.name.clone(),
        key_status: match meta.status {
            KeyStatus::Active => "enabled",
            KeyStatus::Disabled => "disabled",
        },
        algo: key_algorithms(meta.algorithm),
        len: key_len(meta.algorithm),
        curve: key_curve(meta.algorithm),
        cert_status,
        certificates,
        facts: CertFacts {
            issuer_dn: tbs.issuer().to_string(),
            subject_dn: tbs.subject().to_string(),
            serial: certificate.serial.clone(),
            valid_from: generalized(&validity.not_before),
            valid_to: generalized(&validity.not_after),
        },
        multisign: limits.max_signatures,
    })
}
