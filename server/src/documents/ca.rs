//! The internal certificate authority: made on first start with the configured subject, or
//! imported (certificate plus PKCS#8 key). Its key is sealed like a software slot but kept in
//! its own table, so no key id and no sign route can ever reach it; it signs only
//! certificates and CRLs.

use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use der::{Decode, Encode};
use serde_json::json;
use spki::{SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef};
use x509_cert::Certificate;
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder, CertificateBuilder};
use x509_cert::certificate::TbsCertificate;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, KeyUsage, KeyUsages, SubjectKeyIdentifier,
};
use x509_cert::ext::{Extension, ToExtension};
use x509_cert::name::Name;
use x509_cert::time::Validity;

use super::algorithms::{KeySigner, RawSignature, key_algorithm};
use super::{DocumentError, Documents, Result, server_actor};
use crate::audit::{AuditError, AuditEvent, AuditLog};
use crate::auth::Principal;
use crate::config::DocumentsConfig;
use crate::keys::{Algorithm, KeyBackend, RsaScheme, SigningKey, SoftwareBackend};
use crate::store::{CaRow, StateChange, Store, StoreError};

/// The id the CA key is sealed under (bound into the sealed blob's AAD).
const CA_KEY_ID: &str = "internal-ca";

/// The internal CA, loaded.
pub struct Ca {
    /// Its certificate.
    pub certificate: Certificate,
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// The CA key's algorithm.
    pub algorithm: Algorithm,
    key: Arc<dyn SigningKey>,
    spki: Vec<u8>,
}

impl Ca {
    /// A signer for certificates and CRLs.
    pub fn signer(&self) -> KeySigner {
        KeySigner::new(
            self.key.clone(),
            self.spki.clone(),
            KeySigner::default_hash(self.algorithm),
            RsaScheme::Pkcs1v15,
        )
    }

    /// The CA's subject.
    pub fn subject(&self) -> &Name {
        self.certificate.tbs_certificate().subject()
    }

    /// The CA's public key.
    pub fn spki(&self) -> &SubjectPublicKeyInfoOwned {
        self.certificate.tbs_certificate().subject_public_key_info()
    }

    /// The certificate as PEM.
    pub fn pem(&self) -> Result<String> {
        super::cert_pem(&self.certificate)
    }

    fn from_parts(der: Vec<u8>, algorithm: Algorithm, key: Arc<dyn SigningKey>) -> Result<Self> {
        let certificate = Certificate::from_der(&der)?;
        let spki = certificate
            .tbs_certificate()
            .subject_public_key_info()
            .to_der()?;
        Ok(Ca {
            certificate,
            der,
            algorithm,
            key,
            spki,
        })
    }
}

/// The profile of a self-signed CA certificate.
struct CaProfile {
    subject: Name,
}

impl BuilderProfile for CaProfile {
    fn get_issuer(&self, subject: &Name) -> Name {
        subject.clone()
    }

    fn get_subject(&self) -> Name {
        self.subject.clone()
    }

    fn build_extensions(
        &self,
        spk: SubjectPublicKeyInfoRef<'_>,
        _issuer_spk: SubjectPublicKeyInfoRef<'_>,
        tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        let subject = tbs.subject();
        let mut extensions = Vec::new();
        let ski = SubjectKeyIdentifier::try_from(spk)?;
        extensions.push(
            BasicConstraints {
                ca: true,
                path_len_constraint: Some(0),
            }
            .to_extension(subject, &extensions)?,
        );
        extensions.push(
            KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign)
                .to_extension(subject, &extensions)?,
        );
        extensions.push(
            AuthorityKeyIdentifier {
                key_identifier: Some(ski.0.clone()),
                ..Default::default()
            }
            .to_extension(subject, &extensions)?,
        );
        extensions.push(ski.to_extension(subject, &extensions)?);
        Ok(extensions)
    }
}

/// Loads the CA, or makes one (audited as `ca.create`) when this database has none.
pub(super) async fn load_or_create(
    config: &DocumentsConfig,
    store: &Store,
    audit: &AuditLog,
    software: &SoftwareBackend,
    public_url: &str,
) -> Result<Ca> {
    if let Some(row) = store.certificate_authority().await? {
        return stored(row, software);
    }
    let slot = software.clone();
    let algorithm = config.ca_algorithm;
    let made = tokio::task::spawn_blocking(move || slot.generate(CA_KEY_ID, algorithm))
        .await
        .map_err(|e| DocumentError::Encoding(format!("CA key generation task failed: {e}")))??;
    let subject = Name::from_str(&config.ca_subject)
        .map_err(|e| DocumentError::Invalid(format!("documents.ca_subject: {e}")))?;
    let spki = made.public_key.spki_der().to_vec();
    let signer = KeySigner::new(
        made.key.clone(),
        spki.clone(),
        KeySigner::default_hash(algorithm),
        RsaScheme::Pkcs1v15,
    );
    let builder = CertificateBuilder::new(
        CaProfile { subject },
        super::random_serial()?,
        Validity::from_now(Duration::from_secs(
            u64::from(config.ca_validity_days) * 86_400,
        ))?,
        SubjectPublicKeyInfoOwned::from_der(&spki)?,
    )?;
    let certificate = builder.build::<_, RawSignature>(&signer)?;
    let der = certificate.to_der()?;
    let ca = Ca::from_parts(der.clone(), algorithm, made.key)?;
    let crl = super::crl::build(&ca, &[], 1)?;
    let (now, _) = crate::clock::now();
    let row = CaRow {
        algorithm: algorithm.to_string(),
        certificate: der,
        material: made.material,
        source: "generated".into(),
        crl: Some(crl),
        crl_number: 1,
        created_at: now.clone(),
        updated_at: now,
    };
    let event = AuditEvent {
        action: "ca.create",
        outcome: "ok",
        actor: server_actor(),
        key_id: None,
        request_id: None,
        details: json!({
            "subject": ca.subject().to_string(),
            "serial": super::serial_hex(&ca.certificate),
            "algorithm": algorithm.as_str(),
            "crl_url": format!("{public_url}/v1/ca/crl"),
        }),
    };
    let created = audit
        .append(
            vec![StateChange::CreateCertificateAuthority(Box::new(row))],
            event,
        )
        .await;
    match created {
        Ok(_) => Ok(ca),
        // Another node starting at the same time stored its CA first: use that one.
        Err(AuditError::Rejected(StoreError::Conflict(_))) => {
            let row = store.certificate_authority().await?.ok_or_else(|| {
                DocumentError::Store(StoreError::Corrupt("the internal CA vanished".into()))
            })?;
            stored(row, software)
        }
        Err(e) => Err(e.into()),
    }
}

/// The stored CA, its key opened from the software slot.
fn stored(row: CaRow, software: &SoftwareBackend) -> Result<Ca> {
    let algorithm: Algorithm = row
        .algorithm
        .parse()
        .map_err(|e: String| DocumentError::Store(StoreError::Corrupt(format!("CA: {e}"))))?;
    let key = software.load(CA_KEY_ID, algorithm, &row.material)?;
    Ca::from_parts(row.certificate, algorithm, key)
}

impl Documents {
    /// Replaces the internal CA with an existing CA certificate and its PKCS#8 key (audited as
    /// `ca.import`). The certificate must be a CA certificate for that key.
    pub async fn import_ca(
        &self,
        store: &Store,
        audit: &AuditLog,
        principal: &Principal,
        certificate_pem: &str,
        private_key_pem: String,
    ) -> Result<Arc<Ca>> {
        let certs = super::parse_pem_chain("certificate_pem", certificate_pem.as_bytes())?;
        let certificate = certs[0].clone();
        let is_ca = certificate
            .tbs_certificate()
            .get_extension::<BasicConstraints>()
            .ok()
            .flatten()
            .is_some_and(|(_, bc)| bc.ca);
        if !is_ca {
            return Err(DocumentError::Invalid(
                "the certificate is not a CA certificate (basicConstraints cA is not set)".into(),
            ));
        }
        let cert_spki = certificate.tbs_certificate().subject_public_key_info();
        let expected = key_algorithm(cert_spki).ok_or_else(|| {
            DocumentError::Invalid(
                "the CA certificate's key is of an unsupported algorithm; use P-256, RSA or Ed25519"
                    .into(),
            )
        })?;
        let software = self.software.clone();
        let (algorithm, made) = tokio::task::spawn_blocking(move || {
            let pem = zeroize::Zeroizing::new(private_key_pem);
            software.import_pkcs8_pem(CA_KEY_ID, &pem, Some(expected))
        })
        .await
        .map_err(|e| DocumentError::Encoding(format!("CA key import task failed: {e}")))??;
        if made.public_key.spki_der() != cert_spki.to_der()?.as_slice() {
            return Err(DocumentError::KeyMismatch(
                "the private key does not belong to the CA certificate".into(),
            ));
        }
        let der = certificate.to_der()?;
        let ca = Ca::from_parts(der.clone(), algorithm, made.key)?;
        let _guard = self.crl_lock.lock().await;
        let issuer = ca.subject().to_string();
        let revoked: Vec<_> = store
            .revoked_internal_certificates()
            .await?
            .into_iter()
            .filter(|r| r.issuer == issuer)
            .collect();
        let crl = super::crl::build(&ca, &revoked, 1)?;
        let (now, _) = crate::clock::now();
        let row = CaRow {
            algorithm: algorithm.to_string(),
            certificate: der,
            material: made.material,
            source: "imported".into(),
            crl: Some(crl),
            crl_number: 1,
            created_at: now.clone(),
            updated_at: now,
        };
        let event = AuditEvent {
            action: "ca.import",
            outcome: "ok",
            actor: crate::audit::Actor {
                issuer: principal.issuer.clone(),
                subject: principal.subject.clone(),
            },
            key_id: None,
            request_id: Some(crate::request_id::current()),
            details: json!({
                "subject": issuer,
                "serial": super::serial_hex(&ca.certificate),
                "algorithm": algorithm.as_str(),
            }),
        };
        audit
            .append(
                vec![StateChange::PutCertificateAuthority(Box::new(row))],
                event,
            )
            .await?;
        self.set_ca(ca);
        Ok(self.ca())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Kek;

    /// Two nodes starting together on one empty database both find no CA and make one: the
    /// first stored wins, the other takes it, and one `ca.create` is recorded.
    #[tokio::test]
    async fn nodes_making_the_ca_at_once_end_with_the_one_stored() {
        let (_dir, store) = crate::store::scratch::store().await;
        let table: toml::Table =
            toml::from_str("[storage]\ndata_dir = \"d\"\n[auth]\ndev_issuer = true\n").unwrap();
        let kek = ("KEYWARD_KEK".to_string(), "ab".repeat(32));
        let config = crate::config::Config::from_table(
            table,
            std::iter::once(kek),
            std::path::Path::new("/"),
        )
        .unwrap();
        let software = SoftwareBackend::new(Kek::from_bytes([0xab; 32]));
        // One writer serializes the two (as one database serializes the nodes' writers).
        let one = AuditLog::start(store.clone()).await.unwrap();
        let two = one.clone();
        let docs = &config.documents;
        let (a, b) = tokio::join!(
            load_or_create(docs, &store, &one, &software, "http://one"),
            load_or_create(docs, &store, &two, &software, "http://two"),
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.pem().unwrap(), b.pem().unwrap());
        let stored = store.certificate_authority().await.unwrap().unwrap();
        assert_eq!(a.certificate.to_der().unwrap(), stored.certificate);
        let made = store
            .scalar_for_tests("SELECT COUNT(*) FROM audit_log WHERE action = 'ca.create'")
            .await
            .unwrap();
        assert_eq!(made, 1);
    }
}
