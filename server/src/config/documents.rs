//! `[documents]`: the internal CA and document size limits.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{ConfigError, invalid};

/// `[documents]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentsSection {
    /// Subject of the internal CA made on first start (RFC 4514).
    #[serde(default = "default_ca_subject")]
    pub ca_subject: String,
    /// Algorithm of the internal CA key made on first start.
    #[serde(default = "default_ca_algorithm")]
    pub ca_algorithm: String,
    /// Validity of the internal CA certificate made on first start, days.
    #[serde(default = "default_ca_validity_days")]
    pub ca_validity_days: u32,
    /// Largest document accepted by `/v1/documents/sign` and `/verify`, bytes (decoded).
    #[serde(default = "default_max_document_bytes")]
    pub max_document_bytes: usize,
    /// A PEM file of further trusted root certificates for `/v1/documents/verify`.
    #[serde(default)]
    pub trust_anchors_file: Option<PathBuf>,
}

impl Default for DocumentsSection {
    fn default() -> Self {
        DocumentsSection {
            ca_subject: default_ca_subject(),
            ca_algorithm: default_ca_algorithm(),
            ca_validity_days: default_ca_validity_days(),
            max_document_bytes: default_max_document_bytes(),
            trust_anchors_file: None,
        }
    }
}

fn default_ca_subject() -> String {
    "CN=Keyward Document CA,O=Keyward".into()
}

fn default_ca_algorithm() -> String {
    "p256".into()
}

fn default_ca_validity_days() -> u32 {
    3650
}

fn default_max_document_bytes() -> usize {
    512 * 1024
}

/// Validated `[documents]` settings.
#[derive(Debug, Clone)]
pub struct DocumentsConfig {
    /// Subject of the internal CA made on first start (RFC 4514, checked).
    pub ca_subject: String,
    /// Algorithm of the internal CA key.
    pub ca_algorithm: crate::keys::Algorithm,
    /// Validity of a new internal CA certificate, days.
    pub ca_validity_days: u32,
    /// Largest document, bytes.
    pub max_document_bytes: usize,
    /// Further trusted roots (PEM file).
    pub trust_anchors_file: Option<PathBuf>,
}

pub(super) fn validate_documents(
    section: &DocumentsSection,
    resolve: &dyn Fn(&Path) -> PathBuf,
) -> Result<DocumentsConfig, ConfigError> {
    use std::str::FromStr as _;
    x509_cert::name::Name::from_str(&section.ca_subject).map_err(|e| {
        invalid(
            "documents.ca_subject",
            &section.ca_subject,
            format!("not an RFC 4514 name such as CN=Example CA,O=Example ({e})"),
        )
    })?;
    let ca_algorithm: crate::keys::Algorithm = section
        .ca_algorithm
        .parse()
        .map_err(|e: String| invalid("documents.ca_algorithm", &section.ca_algorithm, e))?;
    if ca_algorithm == crate::keys::Algorithm::Secp256k1 {
        return Err(invalid(
            "documents.ca_algorithm",
            &section.ca_algorithm,
            "X.509 tools do not accept secp256k1 CAs; use p256, rsa-2048, rsa-3072 or rsa-4096",
        ));
    }
    if section.ca_validity_days == 0 {
        return Err(invalid(
            "documents.ca_validity_days",
            0,
            "must be at least 1",
        ));
    }
    if section.max_document_bytes == 0 {
        return Err(invalid(
            "documents.max_document_bytes",
            0,
            "must be at least 1",
        ));
    }
    Ok(DocumentsConfig {
        ca_subject: section.ca_subject.clone(),
        ca_algorithm,
        ca_validity_days: section.ca_validity_days,
        max_document_bytes: section.max_document_bytes,
        trust_anchors_file: section.trust_anchors_file.as_deref().map(resolve),
    })
}
