//! Externally issued certificate chains for document keys.
//!
//! The leaf must certify exactly the key it is imported for (same SubjectPublicKeyInfo), must
//! allow digital signatures, and each certificate must be signed by the next one in the chain.
//! Nothing is recorded otherwise.

use der::{Encode, EncodePem};
use serde_json::json;
use x509_cert::ext::pkix::{KeyUsage, KeyUsages};

use super::algorithms::verify_certificate;
use super::issue::{document_key, row_for};
use super::{DocumentError, Result};
use crate::audit::{Actor, AuditEvent};
use crate::auth::Principal;
use crate::pipeline::SigningPath;
use crate::store::{CertificateRow, StateChange};

/// Imports `chain_pem` (leaf first) for `key_id` (audited as `certificate.import`).
pub async fn import(
    path: &SigningPath,
    principal: &Principal,
    key_id: &str,
    chain_pem: &str,
    owner: Option<String>,
) -> Result<CertificateRow> {
    let meta = document_key(path, key_id).await?;
    let certs = super::parse_pem_chain("chain_pem", chain_pem.as_bytes())?;
    let leaf = &certs[0];
    let leaf_spki = leaf.tbs_certificate().subject_public_key_info().to_der()?;
    if leaf_spki != meta.public_key.spki_der() {
        return Err(DocumentError::KeyMismatch(format!(
            "the first certificate of the chain ({}) is not for key {key_id}: its public key differs",
            leaf.tbs_certificate().subject()
        )));
    }
    if let Ok(Some((_, KeyUsage(usages)))) = leaf.tbs_certificate().get_extension::<KeyUsage>()
        && !usages.contains(KeyUsages::DigitalSignature)
        && !usages.contains(KeyUsages::NonRepudiation)
    {
        return Err(DocumentError::Invalid(
            "the certificate's key usage allows neither digitalSignature nor nonRepudiation".into(),
        ));
    }
    for pair in certs.windows(2) {
        let (child, parent) = (&pair[0], &pair[1]);
        let parent_tbs = parent.tbs_certificate();
        if child.tbs_certificate().issuer() != parent_tbs.subject() {
            return Err(DocumentError::BadChain(format!(
                "the chain is out of order: {} was issued by {}, but the next certificate is {}",
                child.tbs_certificate().subject(),
                child.tbs_certificate().issuer(),
                parent_tbs.subject()
            )));
        }
        match verify_certificate(child, parent_tbs.subject_public_key_info()) {
            Ok(true) => {}
            Ok(false) => {
                return Err(DocumentError::BadChain(format!(
                    "the signature on {} does not verify under {}",
                    child.tbs_certificate().subject(),
                    parent_tbs.subject()
                )));
            }
            Err(why) => {
                return Err(DocumentError::BadChain(format!(
                    "cannot check the signature on {}: {why}",
                    child.tbs_certificate().subject()
                )));
            }
        }
    }
    let mut chain = String::new();
    for cert in &certs[1..] {
        chain.push_str(&cert.to_pem(der::pem::LineEnding::LF)?);
    }
    let row = row_for(
        leaf,
        key_id,
        "imported",
        owner.unwrap_or_else(|| meta.created_by.clone()),
        chain.into_bytes(),
        principal.display_id(),
    )?;
    let event = AuditEvent {
        action: "certificate.import",
        outcome: "ok",
        actor: Actor {
            issuer: principal.issuer.clone(),
            subject: principal.subject.clone(),
        },
        key_id: Some(key_id.to_string()),
        request_id: Some(crate::request_id::current()),
        details: json!({
            "certificate_id": row.id,
            "serial": row.serial,
            "subject": row.subject,
            "issuer": row.issuer,
            "chain_length": certs.len(),
        }),
    };
    path.audit()
        .append(
            vec![StateChange::InsertCertificate(Box::new(row.clone()))],
            event,
        )
        .await?;
    Ok(row)
}
