//! Certificates for document keys issued by the internal CA, with the document-signing
//! profile: digitalSignature and nonRepudiation (critical), extended key usage
//! emailProtection and id-kp-documentSigning, subject and authority key identifiers, the
//! CRL distribution point of the internal CA, and the e-mail address as an rfc822Name.

use std::time::Duration;

use der::asn1::{Ia5String, PrintableStringRef, SetOfVec, Utf8StringRef};
use der::{Any, Decode, Encode};
use serde_json::json;
use spki::{SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef};
use x509_cert::Certificate;
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder, CertificateBuilder};
use x509_cert::certificate::TbsCertificate;
use x509_cert::ext::pkix::crl::dp::DistributionPoint;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, CrlDistributionPoints, ExtendedKeyUsage, KeyUsage,
    KeyUsages, SubjectAltName, SubjectKeyIdentifier,
};
use x509_cert::ext::{Extension, ToExtension};
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::time::Validity;

use super::algorithms::{RawSignature, oid};
use super::{DocumentError, Documents, Result};
use crate::audit::{Actor, AuditEvent};
use crate::auth::Principal;
use crate::keys::{Algorithm, KeyMeta, Purpose};
use crate::pipeline::SigningPath;
use crate::store::{CertStatus, CertificateRow, KeyStatus, StateChange};

/// The subject of a certificate or CSR.
#[derive(Debug, Clone, Default)]
pub struct SubjectSpec {
    /// Common name (required).
    pub common_name: String,
    /// E-mail address (rfc822Name in the subject alternative name).
    pub email: Option<String>,
    /// Organization.
    pub organization: Option<String>,
    /// Organizational unit.
    pub organizational_unit: Option<String>,
    /// Two-letter country code.
    pub country: Option<String>,
}

const CN: spki::ObjectIdentifier = spki::ObjectIdentifier::new_unwrap("2.5.4.3");
const C: spki::ObjectIdentifier = spki::ObjectIdentifier::new_unwrap("2.5.4.6");
const O: spki::ObjectIdentifier = spki::ObjectIdentifier::new_unwrap("2.5.4.10");
const OU: spki::ObjectIdentifier = spki::ObjectIdentifier::new_unwrap("2.5.4.11");

impl SubjectSpec {
    /// Checks the fields and builds the X.509 name (C, O, OU, CN).
    pub fn to_name(&self) -> Result<Name> {
        let field = |name: &str, value: &str, max: usize| -> Result<()> {
            if value.trim().is_empty() || value.len() > max {
                return Err(DocumentError::Invalid(format!(
                    "subject {name} must be 1 to {max} characters"
                )));
            }
            Ok(())
        };
        field("common_name", &self.common_name, 64)?;
        let mut rdns = RdnSequence::default();
        let mut push = |oid, value: Any| -> Result<()> {
            let mut set = SetOfVec::new();
            set.insert(AttributeTypeAndValue { oid, value })?;
            let rdn = RelativeDistinguishedName::try_from(set.into_vec())?;
            rdns.push(rdn);
            Ok(())
        };
        if let Some(c) = &self.country {
            if c.len() != 2 || !c.chars().all(|ch| ch.is_ascii_uppercase()) {
                return Err(DocumentError::Invalid(format!(
                    "subject country {c:?} must be a two-letter upper-case code such as DE"
                )));
            }
            push(C, Any::encode_from(&PrintableStringRef::new(c)?)?)?;
        }
        if let Some(o) = &self.organization {
            field("organization", o, 64)?;
            push(O, Any::encode_from(&Utf8StringRef::new(o)?)?)?;
        }
        if let Some(ou) = &self.organizational_unit {
            field("organizational_unit", ou, 64)?;
            push(OU, Any::encode_from(&Utf8StringRef::new(ou)?)?)?;
        }
        push(
            CN,
            Any::encode_from(&Utf8StringRef::new(&self.common_name)?)?,
        )?;
        if let Some(email) = &self.email {
            check_email(email)?;
        }
        Ok(Name::from_der(&rdns.to_der()?)?)
    }
}

fn check_email(email: &str) -> Result<()> {
    let ok = email.len() <= 254
        && email.is_ascii()
        && email
            .split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && d.contains('.'))
        && !email.chars().any(|c| c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(DocumentError::Invalid(format!(
            "subject email {email:?} is not an e-mail address"
        )))
    }
}

/// The end-entity document-signing profile.
struct DocumentProfile {
    subject: Name,
    issuer: Name,
    email: Option<String>,
    crl_url: String,
}

impl BuilderProfile for DocumentProfile {
    fn get_issuer(&self, _subject: &Name) -> Name {
        self.issuer.clone()
    }

    fn get_subject(&self) -> Name {
        self.subject.clone()
    }

    // Each extension is encoded against the ones already pushed (duplicate checks), so the
    // vector grows one push at a time.
    #[allow(clippy::vec_init_then_push)]
    fn build_extensions(
        &self,
        spk: SubjectPublicKeyInfoRef<'_>,
        issuer_spk: SubjectPublicKeyInfoRef<'_>,
        tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        let subject = tbs.subject();
        let mut ext = Vec::new();
        ext.push(
            BasicConstraints {
                ca: false,
                path_len_constraint: None,
            }
            .to_extension(subject, &ext)?,
        );
        ext.push(
            KeyUsage(KeyUsages::DigitalSignature | KeyUsages::NonRepudiation)
                .to_extension(subject, &ext)?,
        );
        ext.push(
            ExtendedKeyUsage(vec![oid::KP_EMAIL_PROTECTION, oid::KP_DOCUMENT_SIGNING])
                .to_extension(subject, &ext)?,
        );
        ext.push(SubjectKeyIdentifier::try_from(spk)?.to_extension(subject, &ext)?);
        let issuer_ski = SubjectKeyIdentifier::try_from(issuer_spk)?;
        ext.push(
            AuthorityKeyIdentifier {
                key_identifier: Some(issuer_ski.0),
                ..Default::default()
            }
            .to_extension(subject, &ext)?,
        );
        ext.push(
            CrlDistributionPoints(vec![DistributionPoint {
                distribution_point: Some(DistributionPointName::FullName(vec![
                    GeneralName::UniformResourceIdentifier(Ia5String::new(&self.crl_url)?),
                ])),
                reasons: None,
                crl_issuer: None,
            }])
            .to_extension(subject, &ext)?,
        );
        if let Some(email) = &self.email {
            ext.push(
                SubjectAltName(vec![GeneralName::Rfc822Name(Ia5String::new(email)?)])
                    .to_extension(subject, &ext)?,
            );
        }
        Ok(ext)
    }
}

/// Loads a key that may hold a document certificate, or says why not.
pub async fn document_key(path: &SigningPath, key_id: &str) -> Result<KeyMeta> {
    let row = path
        .store()
        .key(key_id)
        .await?
        .ok_or_else(|| DocumentError::NotFound(format!("no key with id {key_id:?}")))?;
    let meta = KeyMeta::from_row(&row)?;
    if meta.purpose != Purpose::Document {
        return Err(DocumentError::NotDocumentKey {
            key_id: meta.id,
            purpose: meta.purpose.to_string(),
        });
    }
    if meta.status != KeyStatus::Active {
        return Err(DocumentError::KeyDisabled(meta.id));
    }
    if meta.algorithm == Algorithm::Secp256k1 {
        return Err(DocumentError::Unsupported(
            "secp256k1 keys cannot hold X.509 document certificates; use p256, RSA or ed25519"
                .into(),
        ));
    }
    Ok(meta)
}

/// A certificate row for `cert` certifying `key_id`.
pub fn row_for(
    cert: &Certificate,
    key_id: &str,
    source: &str,
    owner: String,
    chain_pem: Vec<u8>,
    created_by: String,
) -> Result<CertificateRow> {
    let tbs = cert.tbs_certificate();
    let (now, _) = crate::clock::now();
    Ok(CertificateRow {
        id: format!("crt_{}", uuid::Uuid::now_v7().simple()),
        key_id: key_id.to_string(),
        serial: super::serial_hex(cert),
        subject: tbs.subject().to_string(),
        issuer: tbs.issuer().to_string(),
        not_before: super::time_string(&tbs.validity().not_before),
        not_after: super::time_string(&tbs.validity().not_after),
        source: source.to_string(),
        status: CertStatus::Active,
        revoked_at: None,
        revocation_reason: None,
        owner,
        certificate: cert.to_der()?,
        chain: chain_pem,
        created_at: now,
        created_by,
    })
}

/// Issues a document-signing certificate for `key_id` from the internal CA (audited as
/// `certificate.issue`).
pub async fn issue(
    path: &SigningPath,
    docs: &Documents,
    principal: &Principal,
    key_id: &str,
    subject: &SubjectSpec,
    validity_days: u32,
    owner: Option<String>,
) -> Result<CertificateRow> {
    if validity_days == 0 || validity_days > 3650 {
        return Err(DocumentError::Invalid(
            "validity_days must be between 1 and 3650".into(),
        ));
    }
    let meta = document_key(path, key_id).await?;
    let name = subject.to_name()?;
    let ca = docs.ca();
    let ca_not_after = ca.certificate.tbs_certificate().validity().not_after;
    let mut validity = Validity::from_now(Duration::from_secs(u64::from(validity_days) * 86_400))?;
    if validity.not_after.to_system_time() > ca_not_after.to_system_time() {
        validity.not_after = ca_not_after;
    }
    let profile = DocumentProfile {
        subject: name,
        issuer: ca.subject().clone(),
        email: subject.email.clone(),
        crl_url: docs.crl_url(),
    };
    let spki = SubjectPublicKeyInfoOwned::from_der(meta.public_key.spki_der())?;
    let builder = CertificateBuilder::new(profile, super::random_serial()?, validity, spki)?;
    let signer = ca.signer();
    let cert = tokio::task::spawn_blocking(move || builder.build::<_, RawSignature>(&signer))
        .await
        .map_err(|e| DocumentError::Encoding(format!("certificate signing task failed: {e}")))??;
    let chain = ca.pem()?.into_bytes();
    let row = row_for(
        &cert,
        key_id,
        "internal",
        owner.unwrap_or_else(|| meta.created_by.clone()),
        chain,
        principal.display_id(),
    )?;
    let event = AuditEvent {
        action: "certificate.issue",
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
            "not_after": row.not_after,
            "certificate_sha256": hex::encode(crate::keys::HashAlg::Sha256.digest(&row.certificate)),
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
