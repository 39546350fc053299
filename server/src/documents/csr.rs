//! PKCS#10 certificate requests for an external CA, signed by the document key itself.
//!
//! Signing a CSR is an administrative act (proof of possession for a CA), not a document
//! signature: it is audited as `certificate.csr` and bound to the subject asked for.

use der::EncodePem;
use der::asn1::Ia5String;
use serde_json::json;
use x509_cert::builder::Builder;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::request::RequestBuilder;

use super::algorithms::{KeySigner, RawSignature};
use super::issue::{SubjectSpec, document_key};
use super::{DocumentError, Result};
use crate::audit::{Actor, AuditEvent};
use crate::auth::Principal;
use crate::keys::RsaScheme;
use crate::pipeline::SigningPath;

/// Makes a CSR (PEM) for `key_id` with `subject`.
pub async fn make(
    path: &SigningPath,
    principal: &Principal,
    key_id: &str,
    subject: &SubjectSpec,
) -> Result<String> {
    let meta = document_key(path, key_id).await?;
    let name = subject.to_name()?;
    let key = path
        .keys()
        .resolve(key_id)
        .await
        .map_err(|e| match e {
            crate::keys::ResolveError::Store(e) => DocumentError::Store(e),
            crate::keys::ResolveError::Key(e) => DocumentError::Key(e),
        })?
        .ok_or_else(|| DocumentError::NotFound(format!("no key with id {key_id:?}")))?;
    let signing_key = key
        .signer
        .clone()
        .ok_or_else(|| DocumentError::KeyDisabled(key_id.to_string()))?;
    let mut builder = RequestBuilder::new(name.clone())?;
    if let Some(email) = &subject.email {
        builder
            .add_extension(&SubjectAltName(vec![GeneralName::Rfc822Name(
                Ia5String::new(email)?,
            )]))
            .map_err(DocumentError::from)?;
    }
    let signer = KeySigner::new(
        signing_key,
        meta.public_key.spki_der().to_vec(),
        KeySigner::default_hash(meta.algorithm),
        RsaScheme::Pkcs1v15,
    );
    let csr = tokio::task::spawn_blocking(move || builder.build::<_, RawSignature>(&signer))
        .await
        .map_err(|e| DocumentError::Encoding(format!("CSR signing task failed: {e}")))??;
    let pem = csr.to_pem(der::pem::LineEnding::LF)?;
    let event = AuditEvent {
        action: "certificate.csr",
        outcome: "ok",
        actor: Actor {
            issuer: principal.issuer.clone(),
            subject: principal.subject.clone(),
        },
        key_id: Some(key_id.to_string()),
        request_id: Some(crate::request_id::current()),
        details: json!({"subject": name.to_string(), "email": subject.email}),
    };
    path.audit().append(Vec::new(), event).await?;
    Ok(pem)
}
