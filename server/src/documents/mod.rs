//! Document signing: X.509 certificates for keys of purpose `document`, the internal CA and
//! its CRL, detached CMS SignedData (CAdES-BES) and its verification.
//!
//! Parts:
//! - `algorithms`: signature and digest AlgorithmIdentifiers, the adapter that lets the
//!   RustCrypto X.509 builders sign with a `SigningKey`, and signature checks against an SPKI.
//! - `ca`: the internal CA (made on first start or imported), kept in its own table.
//! - `issue`: the document-signing certificate profile and issuance from the internal CA.
//! - `csr`: PKCS#10 requests for an external CA.
//! - `import`: externally issued chains, checked against the key they are imported for.
//! - `crl`: revocation and the CA's CRL.
//! - `cms`: the signed attributes and the SignedData around a signature from the pipeline.
//! - `sign`: `POST /v1/documents/sign` as a pipeline call (document intent, CMS or raw).
//! - `verify`: CMS verification and chain status.
//!
//! This module never signs a document by itself: document signatures go through
//! `SigningPath::submit` like every other signature. The CA key signs only certificates and CRLs,
//! and is never reachable through a key id. A key's own key signs only its CSR here.

pub mod algorithms;
pub mod ca;
pub mod cms;
pub mod crl;
pub mod csr;
pub mod import;
pub mod issue;
pub mod sign;
pub mod verify;

use std::sync::{Arc, RwLock};

use der::Encode;
use time::OffsetDateTime;
use x509_cert::Certificate;
use x509_cert::time::Time;

use crate::audit::{Actor, AuditError};
use crate::config::DocumentsConfig;
use crate::keys::{KeyError, SoftwareBackend};
use crate::pipeline::PipelineError;
use crate::store::{Store, StoreError};

pub use ca::Ca;

/// Errors of document signing and certificate management.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    /// Something named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Input that does not decode (base64, PEM, DER).
    #[error("{0}")]
    Malformed(String),
    /// Well-formed input that does not make sense.
    #[error("{0}")]
    Invalid(String),
    /// A document over `documents.max_document_bytes`.
    #[error(
        "the document is {len} bytes, more than the {max} bytes this server accepts (documents.max_document_bytes)"
    )]
    TooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The key is not a document key.
    #[error(
        "key {key_id} has purpose {purpose}; certificates and document signatures need a key of purpose document"
    )]
    NotDocumentKey {
        /// Key id.
        key_id: String,
        /// Its purpose.
        purpose: String,
    },
    /// The key is disabled.
    #[error("key {0} is disabled")]
    KeyDisabled(String),
    /// An imported certificate does not certify the key.
    #[error("{0}")]
    KeyMismatch(String),
    /// An imported chain does not link up.
    #[error("{0}")]
    BadChain(String),
    /// The key has no usable certificate for a `cms` signature.
    #[error(
        "key {0} has no certificate; issue one (POST /v1/keys/{0}/certificate) or import one first"
    )]
    NoCertificate(String),
    /// The signer certificate is revoked.
    #[error("certificate {id} was revoked at {at} ({reason}); nothing was signed")]
    CertificateRevoked {
        /// Certificate id.
        id: String,
        /// When.
        at: String,
        /// Why.
        reason: String,
    },
    /// The signer certificate is expired or not yet valid.
    #[error(
        "certificate {id} is not valid now (valid from {not_before} to {not_after}); nothing was signed"
    )]
    CertificateExpired {
        /// Certificate id.
        id: String,
        /// Start of validity.
        not_before: String,
        /// End of validity.
        not_after: String,
    },
    /// The certificate is already revoked.
    #[error("certificate {0} is already revoked")]
    AlreadyRevoked(String),
    /// The key's algorithm cannot do what was asked.
    #[error("{0}")]
    Unsupported(String),
    /// Encoding failed (a bug, or input the encoder refuses).
    #[error("encoding failed: {0}")]
    Encoding(String),
    /// The key layer failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The audit log failed.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The signing pipeline refused or failed.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
}

impl From<der::Error> for DocumentError {
    fn from(e: der::Error) -> Self {
        DocumentError::Encoding(e.to_string())
    }
}

impl From<x509_cert::builder::Error> for DocumentError {
    fn from(e: x509_cert::builder::Error) -> Self {
        DocumentError::Encoding(e.to_string())
    }
}

/// Result alias of this module.
pub type Result<T, E = DocumentError> = std::result::Result<T, E>;

/// The document-signing service: the internal CA, trust anchors and limits.
pub struct Documents {
    config: DocumentsConfig,
    software: SoftwareBackend,
    ca: RwLock<Arc<Ca>>,
    anchors: Vec<Certificate>,
    /// Serialises CRL regeneration so that no revocation is missed by a concurrent one.
    crl_lock: tokio::sync::Mutex<()>,
    public_url: String,
}

impl Documents {
    /// Loads the internal CA, creating it (audited) on first start, and reads trust anchors.
    pub async fn start(
        config: DocumentsConfig,
        store: &Store,
        audit: &crate::audit::AuditLog,
        software: SoftwareBackend,
        public_url: &str,
    ) -> Result<Self> {
        let public_url = public_url.trim_end_matches('/').to_string();
        let ca = ca::load_or_create(&config, store, audit, &software, &public_url).await?;
        let anchors = match &config.trust_anchors_file {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    DocumentError::Invalid(format!(
                        "cannot read documents.trust_anchors_file {}: {e}",
                        path.display()
                    ))
                })?;
                Certificate::load_pem_chain(&pem).map_err(|e| {
                    DocumentError::Malformed(format!(
                        "documents.trust_anchors_file {} is not a PEM list of certificates: {e}",
                        path.display()
                    ))
                })?
            }
            None => Vec::new(),
        };
        Ok(Documents {
            config,
            software,
            ca: RwLock::new(Arc::new(ca)),
            anchors,
            crl_lock: tokio::sync::Mutex::new(()),
            public_url,
        })
    }

    /// The settings.
    pub fn config(&self) -> &DocumentsConfig {
        &self.config
    }

    /// The internal CA in force.
    pub fn ca(&self) -> Arc<Ca> {
        match self.ca.read() {
            Ok(ca) => ca.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set_ca(&self, ca: Ca) {
        match self.ca.write() {
            Ok(mut slot) => *slot = Arc::new(ca),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(ca),
        }
    }

    /// Configured trust anchors besides the internal CA.
    pub fn anchors(&self) -> &[Certificate] {
        &self.anchors
    }

    /// Where relying parties fetch the CRL.
    pub fn crl_url(&self) -> String {
        format!("{}/v1/ca/crl", self.public_url)
    }
}

/// The server itself as an audit actor (CA set-up at start).
pub(crate) fn server_actor() -> Actor {
    Actor {
        issuer: "keyward".into(),
        subject: "server".into(),
    }
}

/// An X.509 time as an `OffsetDateTime`.
pub fn to_datetime(t: &Time) -> OffsetDateTime {
    OffsetDateTime::from(t.to_system_time())
}

/// An X.509 time in the stored format.
pub fn time_string(t: &Time) -> String {
    crate::clock::format(to_datetime(t))
}

/// A certificate's serial number as lower-case hex.
pub fn serial_hex(cert: &Certificate) -> String {
    hex::encode(cert.tbs_certificate().serial_number().as_bytes())
}

/// DER of a certificate.
pub fn cert_der(cert: &Certificate) -> Result<Vec<u8>> {
    Ok(cert.to_der()?)
}

/// PEM of a certificate.
pub fn cert_pem(cert: &Certificate) -> Result<String> {
    use der::EncodePem;
    Ok(cert.to_pem(der::pem::LineEnding::LF)?)
}

/// A fresh positive 16-byte serial number.
pub fn random_serial() -> Result<x509_cert::serial_number::SerialNumber> {
    let mut bytes = [0u8; 16];
    crate::keys::fill_random_bytes(&mut bytes);
    bytes[0] = (bytes[0] & 0x7f) | 0x10;
    Ok(x509_cert::serial_number::SerialNumber::new(&bytes)?)
}

/// Decodes a PEM chain of certificates, naming what went wrong.
pub fn parse_pem_chain(what: &str, pem: &[u8]) -> Result<Vec<Certificate>> {
    let certs = Certificate::load_pem_chain(pem).map_err(|e| {
        DocumentError::Malformed(format!(
            "{what} is not a PEM list of certificates (-----BEGIN CERTIFICATE-----): {e}"
        ))
    })?;
    if certs.is_empty() {
        return Err(DocumentError::Malformed(format!(
            "{what} holds no certificate"
        )));
    }
    Ok(certs)
}
