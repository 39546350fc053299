//! Detached CMS SignedData (RFC 5652) in the CAdES-BES shape: signed attributes content-type,
//! message-digest, signing-time and ESS signing-certificate-v2, the signer's certificate chain
//! included, no encapsulated content.
//!
//! The signed attributes are DER-encoded here before the pipeline runs, and what the key signs
//! is their digest (their DER itself for Ed25519). The SignedData is assembled only around a
//! signature that came back from `SigningPath::submit`; nothing here signs.

use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use der::asn1::{OctetString, SetOfVec};
use der::{Any, Decode, Encode, Sequence};
use spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;
use x509_cert::attr::{Attribute, Attributes};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::Time;

use super::algorithms::{digest_algorithm, oid, signature_algorithm};
use super::{DocumentError, Result};
use crate::keys::{Algorithm, HashAlg, RsaScheme};

/// `SigningCertificateV2` (RFC 5035 section 3). The `cms` crate has no type for this ESS
/// attribute, so it is declared here with the `der` derive macros (no hand-written DER).
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct SigningCertificateV2 {
    /// The signer's certificate first.
    pub certs: Vec<EssCertIdV2>,
}

/// `ESSCertIDv2`: the hash of a certificate and its issuer and serial.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct EssCertIdV2 {
    /// The hash algorithm; absent means SHA-256 (the DEFAULT, which DER omits).
    #[asn1(optional = "true")]
    pub hash_algorithm: Option<AlgorithmIdentifierOwned>,
    /// Hash of the whole certificate DER.
    pub cert_hash: OctetString,
    /// Issuer and serial of the certificate.
    #[asn1(optional = "true")]
    pub issuer_serial: Option<IssuerSerial>,
}

/// `IssuerSerial` (RFC 5035).
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct IssuerSerial {
    /// The issuer as a directory name.
    pub issuer: Vec<GeneralName>,
    /// The serial number.
    pub serial_number: SerialNumber,
}

/// The DER-encoded signed attributes of one signature.
#[derive(Debug, Clone)]
pub struct SignedAttrs {
    /// The attributes.
    pub attrs: Attributes,
    /// Their DER (a SET OF Attribute): what the signature covers.
    pub der: Vec<u8>,
}

fn attribute(oid: spki::ObjectIdentifier, value: Any) -> Result<Attribute> {
    let mut values = SetOfVec::new();
    values.insert(value)?;
    Ok(Attribute { oid, values })
}

/// Builds the four signed attributes for a document with digest `digest` (made with `hash`),
/// signed at `signing_time` (Unix seconds) under `cert`.
pub fn signed_attributes(
    hash: HashAlg,
    digest: &[u8],
    signing_time: i64,
    cert: &Certificate,
) -> Result<SignedAttrs> {
    if digest.len() != hash.output_len() {
        return Err(DocumentError::Invalid(format!(
            "a {hash} digest is {} bytes, got {}",
            hash.output_len(),
            digest.len()
        )));
    }
    let when = std::time::UNIX_EPOCH
        + std::time::Duration::from_secs(u64::try_from(signing_time).unwrap_or(0));
    let cert_der = cert.to_der()?;
    let ess = SigningCertificateV2 {
        certs: vec![EssCertIdV2 {
            hash_algorithm: None,
            cert_hash: OctetString::new(HashAlg::Sha256.digest(&cert_der))?,
            issuer_serial: Some(IssuerSerial {
                issuer: vec![GeneralName::DirectoryName(
                    cert.tbs_certificate().issuer().clone(),
                )],
                serial_number: cert.tbs_certificate().serial_number().clone(),
            }),
        }],
    };
    let mut attrs = SetOfVec::new();
    attrs.insert(attribute(oid::CONTENT_TYPE, Any::encode_from(&oid::DATA)?)?)?;
    attrs.insert(attribute(
        oid::MESSAGE_DIGEST,
        Any::encode_from(&OctetString::new(digest)?)?,
    )?)?;
    attrs.insert(attribute(
        oid::SIGNING_TIME,
        Any::encode_from(&Time::try_from(when)?)?,
    )?)?;
    attrs.insert(attribute(
        oid::SIGNING_CERTIFICATE_V2,
        Any::encode_from(&ess)?,
    )?)?;
    let der = attrs.to_der()?;
    Ok(SignedAttrs { attrs, der })
}

/// The hash a key of `algorithm` signs the signed attributes with, for a document hashed with
/// `hash`: the same hash, except that Ed25519 needs SHA-512 throughout (RFC 8419).
pub fn check_hash_for_key(algorithm: Algorithm, hash: HashAlg) -> Result<()> {
    if algorithm == Algorithm::Ed25519 && hash != HashAlg::Sha512 {
        return Err(DocumentError::Invalid(
            "CMS signatures with Ed25519 keys need hash_algorithm sha512 (RFC 8419)".into(),
        ));
    }
    Ok(())
}

/// Assembles the detached SignedData (a DER `ContentInfo`) around `signature`.
pub fn assemble(
    algorithm: Algorithm,
    hash: HashAlg,
    scheme: RsaScheme,
    attrs: &SignedAttrs,
    signature: &[u8],
    cert: &Certificate,
    chain: &[Certificate],
) -> Result<Vec<u8>> {
    let sid = SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
        issuer: cert.tbs_certificate().issuer().clone(),
        serial_number: cert.tbs_certificate().serial_number().clone(),
    });
    let signer_info = SignerInfo {
        version: CmsVersion::V1,
        sid,
        digest_alg: digest_algorithm(hash),
        signed_attrs: Some(attrs.attrs.clone()),
        signature_algorithm: signature_algorithm(algorithm, hash, scheme)?,
        signature: OctetString::new(signature)?,
        unsigned_attrs: None,
    };
    let mut certs = vec![CertificateChoices::Certificate(cert.clone())];
    certs.extend(chain.iter().cloned().map(CertificateChoices::Certificate));
    let mut digest_algorithms = SetOfVec::new();
    digest_algorithms.insert(digest_algorithm(hash))?;
    let signed_data = SignedData {
        version: CmsVersion::V1,
        digest_algorithms,
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: oid::DATA,
            econtent: None,
        },
        certificates: Some(CertificateSet::try_from(certs)?),
        crls: None,
        signer_infos: SignerInfos::try_from(vec![signer_info])?,
    };
    let info = ContentInfo {
        content_type: oid::SIGNED_DATA,
        content: Any::encode_from(&signed_data)?,
    };
    Ok(info.to_der()?)
}

/// Decodes a DER `ContentInfo` holding a SignedData.
pub fn parse(der: &[u8]) -> Result<SignedData> {
    let info = ContentInfo::from_der(der).map_err(|e| {
        DocumentError::Malformed(format!("the signature is not a DER CMS ContentInfo: {e}"))
    })?;
    if info.content_type != oid::SIGNED_DATA {
        return Err(DocumentError::Invalid(format!(
            "the CMS content is {}, not SignedData",
            info.content_type
        )));
    }
    info.content
        .decode_as::<SignedData>()
        .map_err(|e| DocumentError::Malformed(format!("the SignedData does not decode: {e}")))
}

#[cfg(test)]
mod tests {
    use std::str::FromStr as _;
    use std::time::Duration;

    use x509_cert::builder::{Builder, CertificateBuilder, profile::cabf::Root};
    use x509_cert::name::Name;
    use x509_cert::time::Validity;

    use super::*;
    use crate::documents::algorithms::{KeySigner, RawSignature, verify_signature};
    use crate::keys::{Kek, KeyBackend, SoftwareBackend};

    #[test]
    fn signed_attributes_and_signed_data_round_trip() {
        let backend = SoftwareBackend::new(Kek::generate());
        let key = backend.generate("k", Algorithm::P256).unwrap();
        let spki = key.public_key.spki_der().to_vec();
        let signer = KeySigner::new(
            key.key.clone(),
            spki.clone(),
            HashAlg::Sha256,
            RsaScheme::Pkcs1v15,
        );
        let profile = Root::new(false, Name::from_str("CN=Test,O=Keyward,C=DE").unwrap()).unwrap();
        let cert = CertificateBuilder::new(
            profile,
            crate::documents::random_serial().unwrap(),
            Validity::from_now(Duration::from_secs(3600)).unwrap(),
            spki::SubjectPublicKeyInfoOwned::from_der(&spki).unwrap(),
        )
        .unwrap()
        .build::<_, RawSignature>(&signer)
        .unwrap();

        let digest = HashAlg::Sha256.digest(b"document");
        let attrs = signed_attributes(HashAlg::Sha256, &digest, 1_767_225_600, &cert).unwrap();
        assert_eq!(attrs.attrs.len(), 4);
        // Deterministic: the same inputs give the same DER (what idempotent replay relies on).
        let again = signed_attributes(HashAlg::Sha256, &digest, 1_767_225_600, &cert).unwrap();
        assert_eq!(attrs.der, again.der);
        let ess = attrs
            .attrs
            .iter()
            .find(|a| a.oid == oid::SIGNING_CERTIFICATE_V2)
            .unwrap();
        let ess: SigningCertificateV2 = ess.values.iter().next().unwrap().decode_as().unwrap();
        assert_eq!(
            ess.certs[0].cert_hash.as_bytes(),
            HashAlg::Sha256.digest(&cert.to_der().unwrap()).as_slice()
        );
        assert!(signed_attributes(HashAlg::Sha256, &digest[..31], 0, &cert).is_err());

        use signature::Signer as _;
        let sig: RawSignature = signer.try_sign(&attrs.der).unwrap();
        let der = assemble(
            Algorithm::P256,
            HashAlg::Sha256,
            RsaScheme::Pkcs1v15,
            &attrs,
            &sig.0,
            &cert,
            &[],
        )
        .unwrap();
        let sd = parse(&der).unwrap();
        assert!(sd.encap_content_info.econtent.is_none());
        let info = sd.signer_infos.0.iter().next().unwrap();
        let content = info.signed_attrs.as_ref().unwrap().to_der().unwrap();
        assert_eq!(content, attrs.der);
        let spki = cert.tbs_certificate().subject_public_key_info();
        assert_eq!(
            verify_signature(
                spki,
                &info.signature_algorithm,
                None,
                &content,
                info.signature.as_bytes()
            ),
            Ok(true)
        );
        assert_eq!(
            verify_signature(
                spki,
                &info.signature_algorithm,
                None,
                b"other",
                info.signature.as_bytes()
            ),
            Ok(false)
        );
        assert!(matches!(
            parse(b"\x30\x00"),
            Err(DocumentError::Malformed(_))
        ));
    }
}
