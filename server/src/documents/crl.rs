//! Revocation and the internal CA's CRL.
//!
//! A revocation and the CRL that lists it are written in the same audited transaction, so the
//! published CRL never lags a recorded revocation. CRLs are regenerated under one lock.

use std::time::{Duration, SystemTime};

use der::Encode;
use der::asn1::Uint;
use serde_json::json;
use x509_cert::builder::{Builder, CrlBuilder};
use x509_cert::crl::RevokedCert;
use x509_cert::ext::ToExtension;
use x509_cert::ext::pkix::{CrlNumber, CrlReason};
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::Time;

use super::algorithms::RawSignature;
use super::{Ca, DocumentError, Documents, Result};
use crate::audit::{Actor, AuditEvent};
use crate::auth::Principal;
use crate::pipeline::SigningPath;
use crate::store::{CertStatus, CertificateRow, StateChange};

/// How long a CRL is valid (`nextUpdate`).
const CRL_VALIDITY: Duration = Duration::from_secs(7 * 86_400);
/// A stored CRL closer than this to its `nextUpdate` is regenerated when fetched.
const CRL_REFRESH: Duration = Duration::from_secs(86_400);

/// Revocation reasons (RFC 5280) as the API names them.
pub const REASONS: &[(&str, CrlReason)] = &[
    ("unspecified", CrlReason::Unspecified),
    ("key_compromise", CrlReason::KeyCompromise),
    ("ca_compromise", CrlReason::CaCompromise),
    ("affiliation_changed", CrlReason::AffiliationChanged),
    ("superseded", CrlReason::Superseded),
    ("cessation_of_operation", CrlReason::CessationOfOperation),
    ("privilege_withdrawn", CrlReason::PrivilegeWithdrawn),
];

/// Parses a reason name.
pub fn parse_reason(name: &str) -> Result<CrlReason> {
    REASONS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, r)| *r)
        .ok_or_else(|| {
            let names: Vec<&str> = REASONS.iter().map(|(n, _)| *n).collect();
            DocumentError::Invalid(format!(
                "unknown revocation reason {name:?}; expected one of: {}",
                names.join(", ")
            ))
        })
}

fn system_time(stored: &str) -> Result<SystemTime> {
    let t = time::OffsetDateTime::parse(stored, &time::format_description::well_known::Rfc3339)
        .map_err(|e| DocumentError::Encoding(format!("stored time {stored:?}: {e}")))?;
    Ok(t.into())
}

/// Builds and signs a CRL of `ca` listing `revoked`.
pub fn build(ca: &Ca, revoked: &[CertificateRow], number: i64) -> Result<Vec<u8>> {
    let mut entries: Vec<RevokedCert> = Vec::new();
    for row in revoked {
        let serial = hex::decode(&row.serial)
            .map_err(|e| DocumentError::Encoding(format!("stored serial {}: {e}", row.serial)))?;
        let at = row.revoked_at.as_deref().unwrap_or(&row.created_at);
        let reason = parse_reason(row.revocation_reason.as_deref().unwrap_or("unspecified"))?;
        let ext = reason.to_extension(ca.subject(), &[])?;
        entries.push(RevokedCert {
            serial_number: SerialNumber::new(&serial)?,
            revocation_date: Time::try_from(system_time(at)?)?,
            crl_entry_extensions: Some(vec![ext]),
        });
    }
    let now = SystemTime::now();
    let number = Uint::new(&number.to_be_bytes())?;
    let builder =
        CrlBuilder::new_with_this_update(&ca.certificate, CrlNumber(number), Time::try_from(now)?)?
            .with_next_update(Some(Time::try_from(now + CRL_VALIDITY)?))
            .with_certificates(entries.into_iter());
    let crl = builder.build::<_, RawSignature>(&ca.signer())?;
    Ok(crl.to_der()?)
}

/// Revokes a certificate (roles checked by the caller) and, for one the internal CA issued,
/// publishes a new CRL in the same audited transaction.
pub async fn revoke(
    path: &SigningPath,
    docs: &Documents,
    principal: &Principal,
    id: &str,
    reason: &str,
) -> Result<CertificateRow> {
    parse_reason(reason)?;
    let _guard = docs.crl_lock.lock().await;
    let row = path
        .store()
        .certificate(id)
        .await?
        .ok_or_else(|| DocumentError::NotFound(format!("no certificate with id {id:?}")))?;
    if row.status == CertStatus::Revoked {
        return Err(DocumentError::AlreadyRevoked(id.to_string()));
    }
    let (now, _) = crate::clock::now();
    let mut changes = vec![StateChange::RevokeCertificate {
        id: id.to_string(),
        at: now.clone(),
        reason: reason.to_string(),
    }];
    let ca = docs.ca();
    let issuer = ca.subject().to_string();
    let mut crl_number = None;
    if row.source == "internal" && row.issuer == issuer {
        let mut revoked: Vec<CertificateRow> = path
            .store()
            .revoked_internal_certificates()
            .await?
            .into_iter()
            .filter(|r| r.issuer == issuer)
            .collect();
        let mut this = row.clone();
        this.status = CertStatus::Revoked;
        this.revoked_at = Some(now.clone());
        this.revocation_reason = Some(reason.to_string());
        revoked.push(this);
        let number = path
            .store()
            .certificate_authority()
            .await?
            .map(|r| r.crl_number)
            .unwrap_or(0)
            + 1;
        let crl = build(&ca, &revoked, number)?;
        changes.push(StateChange::SetCrl {
            crl,
            number,
            at: now.clone(),
        });
        crl_number = Some(number);
    }
    let event = AuditEvent {
        action: "certificate.revoke",
        outcome: "ok",
        actor: Actor {
            issuer: principal.issuer.clone(),
            subject: principal.subject.clone(),
        },
        key_id: Some(row.key_id.clone()),
        request_id: Some(crate::request_id::current()),
        details: json!({
            "certificate_id": id,
            "serial": row.serial,
            "subject": row.subject,
            "reason": reason,
            "crl_number": crl_number,
        }),
    };
    path.audit().append(changes, event).await?;
    path.store()
        .certificate(id)
        .await?
        .ok_or_else(|| DocumentError::NotFound(format!("no certificate with id {id:?}")))
}

/// The CA's current CRL (DER), regenerated first when it is close to its `nextUpdate`.
pub async fn current(path: &SigningPath, docs: &Documents) -> Result<Vec<u8>> {
    let ca_row = path
        .store()
        .certificate_authority()
        .await?
        .ok_or_else(|| DocumentError::NotFound("the internal CA is not set up".into()))?;
    if let Some(crl) = &ca_row.crl
        && !stale(crl)
    {
        return Ok(crl.clone());
    }
    let _guard = docs.crl_lock.lock().await;
    let ca = docs.ca();
    let issuer = ca.subject().to_string();
    let revoked: Vec<CertificateRow> = path
        .store()
        .revoked_internal_certificates()
        .await?
        .into_iter()
        .filter(|r| r.issuer == issuer)
        .collect();
    let number = ca_row.crl_number + 1;
    let crl = build(&ca, &revoked, number)?;
    let (now, _) = crate::clock::now();
    let event = AuditEvent {
        action: "ca.crl",
        outcome: "ok",
        actor: super::server_actor(),
        key_id: None,
        request_id: Some(crate::request_id::current()),
        details: json!({"crl_number": number, "revoked": revoked.len()}),
    };
    path.audit()
        .append(
            vec![StateChange::SetCrl {
                crl: crl.clone(),
                number,
                at: now,
            }],
            event,
        )
        .await?;
    Ok(crl)
}

fn stale(crl: &[u8]) -> bool {
    use der::Decode;
    let Ok(list) =
        x509_cert::crl::CertificateList::<x509_cert::certificate::Rfc5280>::from_der(crl)
    else {
        return true;
    };
    match list.tbs_cert_list.next_update {
        Some(next) => next.to_system_time() < SystemTime::now() + CRL_REFRESH,
        None => false,
    }
}
