//! Verification of detached CMS signatures: the message digest against the caller's document,
//! the signature over the signed attributes, and the signer certificate's chain against the
//! internal CA and the configured trust anchors, with revocation from Keyward's own records.

use std::time::SystemTime;

use cms::cert::CertificateChoices;
use cms::signed_data::{SignedData, SignerIdentifier, SignerInfo};
use der::asn1::OctetString;
use der::{Decode, Encode};
use x509_cert::Certificate;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::SubjectKeyIdentifier;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::time::Time;

use super::algorithms::{hash_of_digest_oid, oid, verify_certificate, verify_signature};
use super::{DocumentError, Documents, Result};
use crate::keys::HashAlg;
use crate::pipeline::SigningPath;
use crate::store::CertStatus;

/// What the caller says was signed.
#[derive(Debug, Clone)]
pub enum Signed {
    /// The document itself.
    Document(Vec<u8>),
    /// Its digest.
    Digest(HashAlg, Vec<u8>),
}

/// Where the signer certificate's chain stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainStatus {
    /// Chains to a trusted root, in validity, not revoked.
    Good,
    /// Revoked (see `revoked_at` and `revocation_reason`).
    Revoked,
    /// Outside its validity period now.
    Expired,
    /// Does not chain to the internal CA or a configured trust anchor.
    Untrusted,
}

impl ChainStatus {
    /// Name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ChainStatus::Good => "good",
            ChainStatus::Revoked => "revoked",
            ChainStatus::Expired => "expired",
            ChainStatus::Untrusted => "untrusted",
        }
    }
}

/// The outcome of a verification.
#[derive(Debug, Clone)]
pub struct Verification {
    /// Signature, digest and chain are all good.
    pub valid: bool,
    /// The signature over the signed attributes verifies under the signer certificate.
    pub signature_valid: bool,
    /// The message digest matches the document.
    pub digest_matches: bool,
    /// Signer subject (RFC 4514).
    pub signer_subject: Option<String>,
    /// Signer common name.
    pub signer_common_name: Option<String>,
    /// Signer e-mail address.
    pub signer_email: Option<String>,
    /// Signer certificate serial (hex).
    pub signer_serial: Option<String>,
    /// The signing-time attribute.
    pub signing_time: Option<String>,
    /// Chain status.
    pub chain_status: ChainStatus,
    /// When the certificate was revoked.
    pub revoked_at: Option<String>,
    /// Why.
    pub revocation_reason: Option<String>,
    /// Why the signature is not valid (empty when valid).
    pub reasons: Vec<String>,
}

fn find_attr(info: &SignerInfo, wanted: spki::ObjectIdentifier) -> Option<&der::Any> {
    info.signed_attrs
        .as_ref()?
        .iter()
        .find(|a| a.oid == wanted)
        .and_then(|a| a.values.iter().next())
}

fn embedded(sd: &SignedData) -> Vec<Certificate> {
    sd.certificates
        .as_ref()
        .map(|set| {
            set.0
                .iter()
                .filter_map(|c| match c {
                    CertificateChoices::Certificate(c) => Some(c.clone()),
                    CertificateChoices::Other(_) => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

fn matches_sid(cert: &Certificate, sid: &SignerIdentifier) -> bool {
    let tbs = cert.tbs_certificate();
    match sid {
        SignerIdentifier::IssuerAndSerialNumber(isn) => {
            tbs.issuer() == &isn.issuer && tbs.serial_number() == &isn.serial_number
        }
        SignerIdentifier::SubjectKeyIdentifier(ski) => tbs
            .get_extension::<SubjectKeyIdentifier>()
            .ok()
            .flatten()
            .is_some_and(|(_, s)| &s == ski),
    }
}

fn email_of(cert: &Certificate) -> Option<String> {
    let tbs = cert.tbs_certificate();
    if let Ok(Some((_, SubjectAltName(names)))) = tbs.get_extension::<SubjectAltName>() {
        for name in names {
            if let GeneralName::Rfc822Name(email) = name {
                return Some(email.to_string());
            }
        }
    }
    tbs.subject()
        .email_address()
        .ok()
        .flatten()
        .map(|e| e.to_string())
}

fn in_validity(cert: &Certificate, at: SystemTime) -> bool {
    let v = cert.tbs_certificate().validity();
    v.not_before.to_system_time() <= at && at <= v.not_after.to_system_time()
}

/// Whether `leaf` chains to one of `anchors` through `pool`, each link's signature checked.
fn chains_to(leaf: &Certificate, pool: &[Certificate], anchors: &[Certificate]) -> bool {
    let mut current = leaf.clone();
    for _ in 0..8 {
        let issuer = current.tbs_certificate().issuer().clone();
        for anchor in anchors {
            if anchor.tbs_certificate().subject() == &issuer
                && verify_certificate(&current, anchor.tbs_certificate().subject_public_key_info())
                    == Ok(true)
            {
                return true;
            }
        }
        let next = pool.iter().find(|c| {
            c.tbs_certificate().subject() == &issuer
                && c != &&current
                && verify_certificate(&current, c.tbs_certificate().subject_public_key_info())
                    == Ok(true)
        });
        match next {
            Some(c) => current = c.clone(),
            None => return false,
        }
    }
    false
}

/// Verifies the CMS `signature` (DER) over what the caller says was signed.
pub async fn verify(
    path: &SigningPath,
    docs: &Documents,
    signature: &[u8],
    signed: &Signed,
) -> Result<Verification> {
    let sd = super::cms::parse(signature)?;
    let info = sd
        .signer_infos
        .0
        .iter()
        .next()
        .ok_or_else(|| DocumentError::Invalid("the SignedData has no signer".into()))?;
    let mut reasons = Vec::new();
    let (hash, digest_matches) = digest_check(info, signed)?;
    if !digest_matches {
        reasons.push("the document does not match the signed message digest".to_string());
    }
    let signing_time = find_attr(info, oid::SIGNING_TIME)
        .and_then(|any| any.decode_as::<Time>().ok())
        .map(|t| super::time_string(&t));

    let certs = embedded(&sd);
    let Some(signer) = signer_certificate(path, &certs, info).await? else {
        reasons.push("the signer certificate is neither in the signature nor known here".into());
        return Ok(Verification {
            valid: false,
            signature_valid: false,
            digest_matches,
            signer_subject: None,
            signer_common_name: None,
            signer_email: None,
            signer_serial: None,
            signing_time,
            chain_status: ChainStatus::Untrusted,
            revoked_at: None,
            revocation_reason: None,
            reasons,
        });
    };
    let signature_valid = signature_check(info, hash, &signer, &mut reasons)?;
    let serial = super::serial_hex(&signer);
    let (chain_status, revoked_at, revocation_reason) =
        chain_check(path, docs, &signer, &serial, &certs, &mut reasons).await?;
    let tbs = signer.tbs_certificate();
    let signer_common_name = tbs
        .subject()
        .common_name()
        .ok()
        .flatten()
        .map(|cn| cn.value().into_owned());
    Ok(Verification {
        valid: signature_valid && digest_matches && chain_status == ChainStatus::Good,
        signature_valid,
        digest_matches,
        signer_subject: Some(tbs.subject().to_string()),
        signer_common_name,
        signer_email: email_of(&signer),
        signer_serial: Some(serial),
        signing_time,
        chain_status,
        revoked_at,
        revocation_reason,
        reasons,
    })
}

/// The signer's digest algorithm, and whether the signed message digest is that of what the
/// caller says was signed (a hash sent must be of the signer's algorithm).
fn digest_check(info: &SignerInfo, signed: &Signed) -> Result<(HashAlg, bool)> {
    let hash = hash_of_digest_oid(&info.digest_alg.oid).ok_or_else(|| {
        DocumentError::Invalid(format!(
            "unsupported digest algorithm {} in the signature",
            info.digest_alg.oid
        ))
    })?;
    let document_digest = match signed {
        Signed::Document(doc) => hash.digest(doc),
        Signed::Digest(given, digest) => {
            if *given != hash {
                return Err(DocumentError::Invalid(format!(
                    "the signature uses {hash}, but the hash sent is {given}; send a {hash} hash or the document"
                )));
            }
            digest.clone()
        }
    };
    let matches = match find_attr(info, oid::MESSAGE_DIGEST) {
        Some(any) => any
            .decode_as::<OctetString>()
            .is_ok_and(|d| d.as_bytes() == document_digest.as_slice()),
        None => false,
    };
    Ok((hash, matches))
}

/// The signer's certificate: embedded in the signature, or one Keyward knows by issuer and
/// serial number.
async fn signer_certificate(
    path: &SigningPath,
    certs: &[Certificate],
    info: &SignerInfo,
) -> Result<Option<Certificate>> {
    if let Some(found) = certs.iter().find(|c| matches_sid(c, &info.sid)) {
        return Ok(Some(found.clone()));
    }
    let SignerIdentifier::IssuerAndSerialNumber(isn) = &info.sid else {
        return Ok(None);
    };
    let serial = hex::encode(isn.serial_number.as_bytes());
    Ok(path
        .store()
        .certificate_by_serial(&isn.issuer.to_string(), &serial)
        .await?
        .and_then(|row| Certificate::from_der(&row.certificate).ok()))
}

/// Whether the signature over the signed attributes verifies under `signer`; why not goes to
/// `reasons`.
fn signature_check(
    info: &SignerInfo,
    hash: HashAlg,
    signer: &Certificate,
    reasons: &mut Vec<String>,
) -> Result<bool> {
    let valid = match &info.signed_attrs {
        Some(attrs) => {
            let content = attrs.to_der()?;
            match verify_signature(
                signer.tbs_certificate().subject_public_key_info(),
                &info.signature_algorithm,
                Some(hash),
                &content,
                info.signature.as_bytes(),
            ) {
                Ok(ok) => ok,
                Err(why) => {
                    reasons.push(format!("the signature cannot be checked: {why}"));
                    false
                }
            }
        }
        None => {
            reasons.push("the signature has no signed attributes".into());
            false
        }
    };
    if !valid
        && reasons
            .iter()
            .all(|r| !r.starts_with("the signature cannot"))
    {
        reasons.push("the signature does not verify under the signer certificate".into());
    }
    Ok(valid)
}

/// The signer certificate's status: revoked (Keyward's records, with when and why), expired,
/// untrusted, else good; why not good goes to `reasons`.
async fn chain_check(
    path: &SigningPath,
    docs: &Documents,
    signer: &Certificate,
    serial: &str,
    certs: &[Certificate],
    reasons: &mut Vec<String>,
) -> Result<(ChainStatus, Option<String>, Option<String>)> {
    let tbs = signer.tbs_certificate();
    let row = path
        .store()
        .certificate_by_serial(&tbs.issuer().to_string(), serial)
        .await?;
    let ca = docs.ca();
    let mut anchors = vec![ca.certificate.clone()];
    anchors.extend(docs.anchors().iter().cloned());
    if let Some(row) = row.filter(|r| r.status == CertStatus::Revoked) {
        reasons.push(format!(
            "the signer certificate was revoked at {} ({})",
            row.revoked_at.clone().unwrap_or_default(),
            row.revocation_reason.clone().unwrap_or_default()
        ));
        return Ok((ChainStatus::Revoked, row.revoked_at, row.revocation_reason));
    }
    let status = if !in_validity(signer, SystemTime::now()) {
        reasons.push(format!(
            "the signer certificate is valid from {} to {}, not now",
            super::time_string(&tbs.validity().not_before),
            super::time_string(&tbs.validity().not_after)
        ));
        ChainStatus::Expired
    } else if !chains_to(signer, certs, &anchors) {
        reasons.push(
            "the signer certificate does not chain to the internal CA or a configured trust anchor"
                .into(),
        );
        ChainStatus::Untrusted
    } else {
        ChainStatus::Good
    };
    Ok((status, None, None))
}
