//! `POST /v1/documents/sign` as a pipeline call.
//!
//! The route decodes the document or its hash, picks the key's signer certificate (refusing a
//! revoked or expired one, and `cms` without one), builds the `document` intent and, for
//! `cms`, the DER signed attributes whose digest the key signs, and calls `SigningPath::submit`.
//! The SignedData is assembled only around the signature the pipeline returned. An
//! idempotent replay rebuilds the identical SignedData from the intent recorded with the
//! original request (same hash, signing time and certificate).

use base64::Engine as _;
use der::Decode;
use keyward_policy::{DocumentIntent, Intent};
use x509_cert::Certificate;

use super::algorithms::{signature_name, to_sign};
use super::cms::{assemble, check_hash_for_key, signed_attributes};
use super::{DocumentError, Result};
use crate::auth::Principal;
use crate::intent::SignIntent;
use crate::keys::{Algorithm, HashAlg, Purpose, RsaScheme, SignOptions, ToSign};
use crate::pipeline::SigningPath;
use crate::pipeline::{self, Idempotency, PipelineError, SignCall};
use crate::policy::Verdict;
use crate::store::{CertStatus, CertificateRow};

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Detached CMS SignedData, DER.
    Cms,
    /// A bare signature over the hash.
    Raw,
}

impl Format {
    /// Parses `cms` or `raw`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "cms" => Ok(Format::Cms),
            "raw" => Ok(Format::Raw),
            other => Err(DocumentError::Invalid(format!(
                "unknown format {other:?}; expected cms or raw"
            ))),
        }
    }

    /// The name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Cms => "cms",
            Format::Raw => "raw",
        }
    }
}

/// What was sent: a document or its hash, decoded and checked.
#[derive(Debug, Clone)]
pub struct DocumentDigest {
    /// The hash.
    pub hash: HashAlg,
    /// The digest.
    pub digest: Vec<u8>,
    /// The document's length, when the document itself was sent.
    pub document_len: Option<u64>,
}

fn b64(field: &str, value: &str) -> Result<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|e| DocumentError::Malformed(format!("{field} is not valid standard base64: {e}")))
}

fn parse_hash(name: &str) -> Result<HashAlg> {
    name.parse::<HashAlg>()
        .map_err(|e| DocumentError::Invalid(format!("hash_algorithm: {e}")))
}

/// Decodes `document_hash` (base64, or `<alg>:<hex>`) with `hash_algorithm`, or `document`
/// (base64, at most `max` bytes decoded).
pub fn decode_input(
    document_hash: Option<&str>,
    hash_algorithm: Option<&str>,
    document: Option<&str>,
    max: usize,
) -> Result<DocumentDigest> {
    let named = hash_algorithm.map(parse_hash).transpose()?;
    match (document_hash, document) {
        (Some(h), None) => {
            let h = h.trim();
            let (hash, digest) = match h.split_once(':') {
                Some((alg, hex_digest)) => {
                    let hash = parse_hash(alg)?;
                    if named.is_some_and(|n| n != hash) {
                        return Err(DocumentError::Invalid(format!(
                            "document_hash says {hash} but hash_algorithm says {}",
                            named.map(|n| n.as_str()).unwrap_or_default()
                        )));
                    }
                    let digest = hex::decode(hex_digest).map_err(|e| {
                        DocumentError::Malformed(format!("document_hash hex does not decode: {e}"))
                    })?;
                    (hash, digest)
                }
                None => (named.unwrap_or(HashAlg::Sha256), b64("document_hash", h)?),
            };
            if digest.len() != hash.output_len() {
                return Err(DocumentError::Invalid(format!(
                    "document_hash is {} bytes, but a {hash} hash is {} bytes",
                    digest.len(),
                    hash.output_len()
                )));
            }
            Ok(DocumentDigest {
                hash,
                digest,
                document_len: None,
            })
        }
        (None, Some(doc)) => {
            // Base64 grows by 4/3: refuse clearly oversized input before decoding it.
            if doc.len() / 4 * 3 > max + 3 {
                return Err(DocumentError::TooLarge {
                    len: doc.len() / 4 * 3,
                    max,
                });
            }
            let bytes = b64("document", doc)?;
            if bytes.len() > max {
                return Err(DocumentError::TooLarge {
                    len: bytes.len(),
                    max,
                });
            }
            let hash = named.unwrap_or(HashAlg::Sha256);
            Ok(DocumentDigest {
                hash,
                digest: hash.digest(&bytes),
                document_len: Some(bytes.len() as u64),
            })
        }
        (Some(_), Some(_)) => Err(DocumentError::Invalid(
            "send either document_hash or document, not both".into(),
        )),
        (None, None) => Err(DocumentError::Invalid(
            "send document_hash (with hash_algorithm) or document".into(),
        )),
    }
}

/// A document signing request, decoded.
#[derive(Debug, Clone)]
pub struct DocumentSignRequest {
    /// The key.
    pub key_id: String,
    /// What is signed.
    pub digest: DocumentDigest,
    /// A name for the document (policies and audit).
    pub document_name: Option<String>,
    /// Output format.
    pub format: Format,
    /// RSA scheme, when given.
    pub scheme: Option<RsaScheme>,
}

/// A signature that came back from the pipeline, in the asked format.
#[derive(Debug, Clone)]
pub struct SignedDocument {
    /// CMS DER or raw signature bytes.
    pub signature: Vec<u8>,
    /// The format.
    pub format: Format,
    /// The signing time (the signed attribute for CMS).
    pub signed_at: String,
    /// e.g. `SHA256withRSA`.
    pub algorithm: String,
    /// Subject of the signer certificate.
    pub signer_subject: Option<String>,
    /// Id of the signer certificate.
    pub certificate_id: Option<String>,
    /// Key id.
    pub key_id: String,
    /// Request id (of the original request, on a replay).
    pub request_id: String,
    /// The policy verdict.
    pub verdict: Verdict,
}

/// The certificate a key signs under now: its newest one, refused when revoked or expired.
pub async fn signer_certificate(
    path: &SigningPath,
    key_id: &str,
) -> Result<Option<(CertificateRow, Certificate)>> {
    let rows = path.store().certificates_of_key(key_id).await?;
    let Some(row) = rows.into_iter().next() else {
        return Ok(None);
    };
    if row.status == CertStatus::Revoked {
        return Err(DocumentError::CertificateRevoked {
            id: row.id.clone(),
            at: row.revoked_at.clone().unwrap_or_default(),
            reason: row.revocation_reason.clone().unwrap_or_default(),
        });
    }
    let cert = Certificate::from_der(&row.certificate)?;
    let validity = cert.tbs_certificate().validity();
    let now = std::time::SystemTime::now();
    if now < validity.not_before.to_system_time() || now > validity.not_after.to_system_time() {
        return Err(DocumentError::CertificateExpired {
            id: row.id.clone(),
            not_before: row.not_before.clone(),
            not_after: row.not_after.clone(),
        });
    }
    Ok(Some((row, cert)))
}

fn chain_of(row: &CertificateRow) -> Result<Vec<Certificate>> {
    if row.chain.is_empty() {
        return Ok(Vec::new());
    }
    Certificate::load_pem_chain(&row.chain)
        .map_err(|e| DocumentError::Encoding(format!("stored chain of {}: {e}", row.id)))
}

/// How a document sign request ended.
#[derive(Debug)]
pub enum DocumentOutcome {
    /// Signed now.
    Signed(SignedDocument),
    /// A policy requires approval; the request waits (once signed, `GET /v1/requests/{id}`
    /// carries the document signature built by [`finish`]).
    Pending(pipeline::PendingReceipt),
}

/// Signs a document through the pipeline.
pub async fn sign(
    path: &SigningPath,
    principal: Principal,
    req: DocumentSignRequest,
    idempotency: Option<Idempotency>,
    request_id: String,
) -> Result<DocumentOutcome> {
    if let Some(name) = &req.document_name
        && (name.is_empty() || name.len() > 256)
    {
        return Err(DocumentError::Invalid(
            "document_name must be 1 to 256 characters".into(),
        ));
    }
    path.check_access(
        &principal,
        &req.key_id,
        Purpose::Document,
        "document.sign",
        &request_id,
    )
    .await?;
    let cert = signer_certificate(path, &req.key_id).await?;
    if req.format == Format::Cms && cert.is_none() {
        return Err(DocumentError::NoCertificate(req.key_id.clone()));
    }
    let signing_unix = time::OffsetDateTime::now_utc().unix_timestamp();
    let signing_time = crate::clock::format(
        time::OffsetDateTime::from_unix_timestamp(signing_unix)
            .map_err(|e| DocumentError::Encoding(e.to_string()))?,
    );
    let intent = DocumentIntent {
        hash: hex::encode(&req.digest.digest),
        hash_algorithm: req.digest.hash.to_string(),
        format: req.format.as_str().to_string(),
        document_name: req.document_name.clone(),
        document_len: req.digest.document_len,
        certificate_subject: cert.as_ref().map(|(r, _)| r.subject.clone()),
        certificate_serial: cert.as_ref().map(|(r, _)| r.serial.clone()),
        signing_time: (req.format == Format::Cms).then(|| signing_time.clone()),
    };
    let to_sign_bytes = match (&cert, req.format) {
        (Some((_, c)), Format::Cms) => {
            Some(signed_attributes(req.digest.hash, &req.digest.digest, signing_unix, c)?.der)
        }
        _ => None,
    };
    let (hash, digest, format, scheme) = (
        req.digest.hash,
        req.digest.digest.clone(),
        req.format,
        req.scheme,
    );
    let wire_intent = intent.clone();
    let call = SignCall {
        principal,
        key_id: req.key_id.clone(),
        operation: "document.sign",
        build: Box::new(move |algorithm: Algorithm| {
            let scheme = match scheme {
                Some(RsaScheme::Pss) if !algorithm.is_rsa() => {
                    return Err(PipelineError::Invalid(format!(
                        "scheme applies to RSA keys; this key is {algorithm}"
                    )));
                }
                Some(s) => s,
                None => RsaScheme::Pkcs1v15,
            };
            let to_sign = match (format, to_sign_bytes) {
                (Format::Cms, Some(attrs)) => {
                    check_hash_for_key(algorithm, hash)
                        .map_err(|e| PipelineError::Invalid(e.to_string()))?;
                    to_sign(algorithm, hash, &attrs)
                }
                _ if algorithm == Algorithm::Ed25519 => ToSign::Message(digest),
                _ => ToSign::Digest { hash, digest },
            };
            Ok((
                SignIntent {
                    purpose: Purpose::Document,
                    intent: Intent::Document(wire_intent),
                    to_sign,
                },
                SignOptions {
                    scheme,
                    format: crate::keys::EcdsaFormat::Der,
                },
            ))
        }),
        idempotency,
        request_id: request_id.clone(),
    };
    let receipt = match path.submit(call).await? {
        pipeline::Submitted::Signed(receipt) => receipt,
        pipeline::Submitted::Pending(pending) => return Ok(DocumentOutcome::Pending(pending)),
    };
    // On a replay, rebuild from what the original request recorded.
    let used = if receipt.request_id == request_id {
        intent
    } else {
        let stored = path
            .store()
            .sign_request(&receipt.request_id)
            .await?
            .ok_or_else(|| {
                DocumentError::Encoding(format!("request {} vanished", receipt.request_id))
            })?;
        match serde_json::from_str::<Intent>(&stored.intent) {
            Ok(Intent::Document(d)) => d,
            _ => {
                return Err(DocumentError::Encoding(format!(
                    "request {} is not a document request",
                    receipt.request_id
                )));
            }
        }
    };
    let signed = finish(path, &receipt, &used, req.scheme.unwrap_or_default()).await?;
    Ok(DocumentOutcome::Signed(signed))
}

/// Builds the document signature around the pipeline's `receipt` for the document intent it
/// signed: for `cms`, the SignedData with the certificate and signing time the intent
/// recorded (so a replay, or a request signed after approval, gives the same bytes a direct
/// signature would have); for `raw`, the bare signature.
pub async fn finish(
    path: &SigningPath,
    receipt: &pipeline::SignReceipt,
    used: &DocumentIntent,
    scheme: RsaScheme,
) -> Result<SignedDocument> {
    let signature = base64::engine::general_purpose::STANDARD
        .decode(&receipt.signature)
        .map_err(|e| DocumentError::Encoding(format!("receipt signature: {e}")))?;
    let algorithm: Algorithm = receipt
        .algorithm
        .parse()
        .map_err(|e: String| DocumentError::Encoding(e))?;
    let used_hash = parse_hash(&used.hash_algorithm)?;
    let used_cert = match &used.certificate_serial {
        Some(serial) => path
            .store()
            .certificates_of_key(&receipt.key_id)
            .await?
            .into_iter()
            .find(|r| &r.serial == serial),
        None => None,
    };
    let name = signature_name(algorithm, used_hash, scheme);
    let (signature, signed_at) = match (Format::parse(&used.format)?, &used_cert) {
        (Format::Cms, Some(row)) => {
            let cert = Certificate::from_der(&row.certificate)?;
            let when = used.signing_time.clone().unwrap_or_default();
            let unix =
                time::OffsetDateTime::parse(&when, &time::format_description::well_known::Rfc3339)
                    .map_err(|e| DocumentError::Encoding(format!("signing time {when:?}: {e}")))?
                    .unix_timestamp();
            let digest = hex::decode(&used.hash)
                .map_err(|e| DocumentError::Encoding(format!("recorded hash: {e}")))?;
            let attrs = signed_attributes(used_hash, &digest, unix, &cert)?;
            let cms = assemble(
                algorithm,
                used_hash,
                scheme,
                &attrs,
                &signature,
                &cert,
                &chain_of(row)?,
            )?;
            (cms, when)
        }
        (Format::Cms, None) => {
            return Err(DocumentError::Encoding(
                "the signer certificate of this request is gone".into(),
            ));
        }
        (Format::Raw, _) => (signature, receipt.signed_at.clone()),
    };
    Ok(SignedDocument {
        signature,
        format: Format::parse(&used.format)?,
        signed_at,
        algorithm: name,
        signer_subject: used.certificate_subject.clone(),
        certificate_id: used_cert.map(|r| r.id),
        key_id: receipt.key_id.clone(),
        request_id: receipt.request_id.clone(),
        verdict: receipt.verdict.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_decoded_in_both_spellings_and_checked() {
        let digest = HashAlg::Sha256.digest(b"doc");
        let b64 = base64::engine::general_purpose::STANDARD.encode(&digest);
        let a = decode_input(Some(&b64), None, None, 10).unwrap();
        let hex_form = format!("sha256:{}", hex::encode(&digest));
        let b = decode_input(Some(&hex_form), Some("sha256"), None, 10).unwrap();
        assert_eq!((a.hash, &a.digest), (HashAlg::Sha256, &digest));
        assert_eq!(b.digest, digest);
        // Wrong length, unknown hash, contradicting names, both or neither field.
        assert!(matches!(
            decode_input(Some(&b64), Some("sha512"), None, 10),
            Err(DocumentError::Invalid(m)) if m.contains("64 bytes")
        ));
        assert!(matches!(
            decode_input(Some(&b64), Some("md5"), None, 10),
            Err(DocumentError::Invalid(_))
        ));
        assert!(decode_input(Some(&hex_form), Some("sha384"), None, 10).is_err());
        assert!(decode_input(Some(&b64), None, Some("AA=="), 10).is_err());
        assert!(decode_input(None, None, None, 10).is_err());
        assert!(matches!(
            decode_input(Some("sha256:zz"), None, None, 10),
            Err(DocumentError::Malformed(_))
        ));
    }

    #[test]
    fn documents_are_hashed_and_limited() {
        let doc = base64::engine::general_purpose::STANDARD.encode(b"0123456789");
        let d = decode_input(None, Some("sha384"), Some(&doc), 10).unwrap();
        assert_eq!(d.digest, HashAlg::Sha384.digest(b"0123456789"));
        assert_eq!(d.document_len, Some(10));
        assert!(matches!(
            decode_input(None, None, Some(&doc), 9),
            Err(DocumentError::TooLarge { len: 10, max: 9 })
        ));
    }
}
