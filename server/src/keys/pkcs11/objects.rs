//! Token objects: key pair generation templates, adoption of existing keys by label or id,
//! reading public keys back as SPKI, and listing what a token holds.
//!
//! Generated private keys are token objects, private, sensitive, never extractable and
//! sign-only. Adoption refuses a private key the token would let out (not sensitive, or
//! extractable). Never reads a private key's value: only public attributes and flags.

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use serde::{Deserialize, Serialize};

use super::pool::PooledSession;
use crate::keys::{Algorithm, KeyError, PublicKey, Result};

/// DER OIDs in `CKA_EC_PARAMS`.
const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_SECP256K1: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a];
const OID_ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
/// `PrintableString "edwards25519"`, the curve name form some tokens use.
const NAME_ED25519: &[u8] = b"\x13\x0cedwards25519";

/// Where a key lives on the token; stored as JSON in the keys table's `material`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenKeyRef {
    /// `CKA_LABEL`.
    pub label: String,
    /// `CKA_ID`, hex (may be empty for adopted keys found by label).
    pub id: String,
    /// The public key, DER SPKI base64, so that loading needs no token round trip.
    pub public_key: String,
}

impl TokenKeyRef {
    /// The id bytes.
    pub fn id_bytes(&self) -> Result<Vec<u8>> {
        hex::decode(&self.id)
            .map_err(|e| KeyError::InvalidKeyMaterial(format!("stored CKA_ID is not hex: {e}")))
    }
}

/// Generates a key pair for `algorithm` labelled `label` with a random 16-byte `CKA_ID`.
pub fn generate(
    session: &mut PooledSession<'_>,
    label: &str,
    algorithm: Algorithm,
) -> Result<(Vec<u8>, PublicKey)> {
    let mut id = vec![0u8; 16];
    crate::keys::fill_random_bytes(&mut id);
    let common = |v: &mut Vec<Attribute>| {
        v.push(Attribute::Token(true));
        v.push(Attribute::Label(label.as_bytes().to_vec()));
        v.push(Attribute::Id(id.clone()));
    };
    let mut public = vec![
        Attribute::Verify(true),
        Attribute::Encrypt(false),
        Attribute::Wrap(false),
        Attribute::Derive(false),
    ];
    common(&mut public);
    let mut private = vec![
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Decrypt(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
    ];
    common(&mut private);
    let mechanism = match algorithm {
        Algorithm::P256 | Algorithm::Secp256k1 => {
            let oid = if algorithm == Algorithm::P256 {
                OID_P256
            } else {
                OID_SECP256K1
            };
            public.push(Attribute::EcParams(oid.to_vec()));
            Mechanism::EccKeyPairGen
        }
        Algorithm::Ed25519 => {
            public.push(Attribute::EcParams(OID_ED25519.to_vec()));
            Mechanism::EccEdwardsKeyPairGen
        }
        alg => {
            let bits = alg.rsa_bits().unwrap_or(2048) as u64;
            public.push(Attribute::ModulusBits(bits.into()));
            public.push(Attribute::PublicExponent(vec![0x01, 0x00, 0x01]));
            Mechanism::RsaPkcsKeyPairGen
        }
    };
    let (public_handle, _private) = session
        .generate_key_pair(&mechanism, &public, &private)
        .map_err(|e| session.fault(&format!("generating a {algorithm} key pair"), e))?;
    let key = read_public_key(session, public_handle, algorithm).map_err(|e| match e {
        ReadError::Token(e) => session.fault("reading the new public key", e),
        ReadError::Key(e) => e,
    })?;
    Ok((id, key))
}

/// Errors reading attributes: from the token, or about what it returned.
pub enum ReadError {
    /// The token call failed.
    Token(cryptoki::error::Error),
    /// The values are not a usable key.
    Key(KeyError),
}

impl From<cryptoki::error::Error> for ReadError {
    fn from(e: cryptoki::error::Error) -> Self {
        ReadError::Token(e)
    }
}

impl From<KeyError> for ReadError {
    fn from(e: KeyError) -> Self {
        ReadError::Key(e)
    }
}

fn bytes_attr(attrs: &[Attribute], ty: AttributeType) -> Option<Vec<u8>> {
    attrs.iter().find_map(|a| match (a, ty) {
        (Attribute::Modulus(v), AttributeType::Modulus)
        | (Attribute::PublicExponent(v), AttributeType::PublicExponent)
        | (Attribute::EcParams(v), AttributeType::EcParams)
        | (Attribute::EcPoint(v), AttributeType::EcPoint)
        | (Attribute::Label(v), AttributeType::Label)
        | (Attribute::Id(v), AttributeType::Id) => Some(v.clone()),
        _ => None,
    })
}

fn bool_attr(attrs: &[Attribute], ty: AttributeType) -> Option<bool> {
    attrs.iter().find_map(|a| match (a, ty) {
        (Attribute::Sign(v), AttributeType::Sign)
        | (Attribute::Sensitive(v), AttributeType::Sensitive)
        | (Attribute::Extractable(v), AttributeType::Extractable)
        | (Attribute::Private(v), AttributeType::Private)
        | (Attribute::Token(v), AttributeType::Token) => Some(*v),
        _ => None,
    })
}

fn key_type(attrs: &[Attribute]) -> Option<KeyType> {
    attrs.iter().find_map(|a| match a {
        Attribute::KeyType(k) => Some(*k),
        _ => None,
    })
}

/// The algorithm named by a key type and, for EC keys, `CKA_EC_PARAMS`.
fn algorithm_of(kt: KeyType, ec_params: Option<&[u8]>, modulus_len: usize) -> Result<Algorithm> {
    let unsupported = |what: String| {
        KeyError::InvalidKeyMaterial(format!(
            "{what}; Keyward uses RSA 2048/3072/4096, P-256, secp256k1 and Ed25519 keys"
        ))
    };
    if kt == KeyType::RSA {
        return match modulus_len * 8 {
            2048 => Ok(Algorithm::Rsa2048),
            3072 => Ok(Algorithm::Rsa3072),
            4096 => Ok(Algorithm::Rsa4096),
            bits => Err(unsupported(format!("the key is {bits}-bit RSA"))),
        };
    }
    let params = ec_params.unwrap_or_default();
    if kt == KeyType::EC {
        return match params {
            OID_P256 => Ok(Algorithm::P256),
            OID_SECP256K1 => Ok(Algorithm::Secp256k1),
            other => Err(unsupported(format!(
                "the key is on the curve with parameters {}",
                hex::encode(other)
            ))),
        };
    }
    if kt == KeyType::EC_EDWARDS {
        return match params {
            OID_ED25519 | NAME_ED25519 => Ok(Algorithm::Ed25519),
            other => Err(unsupported(format!(
                "the Edwards key has parameters {}",
                hex::encode(other)
            ))),
        };
    }
    Err(unsupported(format!("the key type is {kt}")))
}

/// `CKA_EC_POINT` is a DER OCTET STRING holding the point; some tokens give the bare point.
fn unwrap_ec_point(point: &[u8], bare_len: usize) -> Result<&[u8]> {
    if point.len() == bare_len {
        return Ok(point);
    }
    if bare_len < 128 && point.len() == bare_len + 2 && point[0] == 0x04 {
        return Ok(&point[2..]);
    }
    Err(KeyError::InvalidKeyMaterial(format!(
        "CKA_EC_POINT of {} bytes is not a {bare_len}-byte point",
        point.len()
    )))
}

/// Reads the public key of `handle` (a public key object, or an RSA private key, which
/// carries its modulus and public exponent) as a `PublicKey`.
pub fn read_public_key(
    session: &Session,
    handle: ObjectHandle,
    algorithm: Algorithm,
) -> std::result::Result<PublicKey, ReadError> {
    let bad = |e: &dyn std::fmt::Display| {
        KeyError::InvalidKeyMaterial(format!("the token's {algorithm} public key: {e}"))
    };
    if let Some(bits) = algorithm.rsa_bits() {
        let attrs = session.get_attributes(
            handle,
            &[AttributeType::Modulus, AttributeType::PublicExponent],
        )?;
        let (Some(n), Some(e)) = (
            bytes_attr(&attrs, AttributeType::Modulus),
            bytes_attr(&attrs, AttributeType::PublicExponent),
        ) else {
            return Err(bad(&"modulus or exponent missing").into());
        };
        if n.len() * 8 != bits {
            return Err(bad(&format!("{}-bit modulus", n.len() * 8)).into());
        }
        use rsa::pkcs1::der::Encode as _;
        use rsa::pkcs1::{DecodeRsaPublicKey, UintRef};
        let pkcs1 = rsa::pkcs1::RsaPublicKey {
            modulus: UintRef::new(&n).map_err(|e| bad(&e))?,
            public_exponent: UintRef::new(&e).map_err(|e| bad(&e))?,
        }
        .to_der()
        .map_err(|e| bad(&e))?;
        let key = rsa::PublicKey::from_pkcs1_der(&pkcs1).map_err(|e| bad(&e))?;
        return Ok(PublicKey::encode(algorithm, &key)?);
    }
    let attrs = session.get_attributes(handle, &[AttributeType::EcPoint])?;
    let Some(point) = bytes_attr(&attrs, AttributeType::EcPoint) else {
        return Err(bad(&"CKA_EC_POINT missing").into());
    };
    Ok(match algorithm {
        Algorithm::Ed25519 => {
            let raw: [u8; 32] = unwrap_ec_point(&point, 32)?
                .try_into()
                .map_err(|_| bad(&"not 32 bytes"))?;
            let key = ed25519_dalek::VerifyingKey::from_bytes(&raw).map_err(|e| bad(&e))?;
            PublicKey::encode(algorithm, &key)?
        }
        Algorithm::Secp256k1 => {
            let key = k256::ecdsa::VerifyingKey::from_sec1_bytes(unwrap_ec_point(&point, 65)?)
                .map_err(|e| bad(&e))?;
            PublicKey::encode(algorithm, &key)?
        }
        _ => {
            let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(unwrap_ec_point(&point, 65)?)
                .map_err(|e| bad(&e))?;
            PublicKey::encode(algorithm, &key)?
        }
    })
}

/// Which existing key to adopt.
#[derive(Debug, Clone)]
pub enum KeySelector {
    /// By `CKA_LABEL`.
    Label(String),
    /// By `CKA_ID`.
    Id(Vec<u8>),
}

/// An existing token key found for adoption.
#[derive(Debug)]
pub struct FoundKey {
    /// Its algorithm.
    pub algorithm: Algorithm,
    /// Its `CKA_LABEL`.
    pub label: String,
    /// Its `CKA_ID`.
    pub id: Vec<u8>,
    /// Its public key.
    pub public_key: PublicKey,
}

/// Finds exactly one private key by label or id and reads its public half from the token.
pub fn find_for_adoption(
    session: &mut PooledSession<'_>,
    selector: &KeySelector,
) -> Result<FoundKey> {
    match find_inner(session, selector) {
        Ok(found) => Ok(found),
        Err(ReadError::Token(e)) => Err(session.fault("finding the key to adopt", e)),
        Err(ReadError::Key(e)) => Err(e),
    }
}

fn find_inner(
    session: &PooledSession<'_>,
    selector: &KeySelector,
) -> std::result::Result<FoundKey, ReadError> {
    let (by, shown) = match selector {
        KeySelector::Label(l) => (
            Attribute::Label(l.as_bytes().to_vec()),
            format!("label {l:?}"),
        ),
        KeySelector::Id(id) => (Attribute::Id(id.clone()), format!("id {}", hex::encode(id))),
    };
    let private =
        session.find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY), by.clone()])?;
    let handle = match private.as_slice() {
        [h] => *h,
        [] => {
            return Err(KeyError::InvalidInput(format!(
                "the token holds no private key with {shown}"
            ))
            .into());
        }
        many => {
            return Err(KeyError::InvalidInput(format!(
                "{} private keys on the token have {shown}; adopt by id instead",
                many.len()
            ))
            .into());
        }
    };
    let attrs = session.get_attributes(
        handle,
        &[
            AttributeType::KeyType,
            AttributeType::Label,
            AttributeType::Id,
            AttributeType::Sign,
            AttributeType::Sensitive,
            AttributeType::Extractable,
            AttributeType::EcParams,
            AttributeType::Modulus,
        ],
    )?;
    let refuse = |why: &str| -> ReadError {
        KeyError::InvalidInput(format!("the key with {shown} cannot be adopted: {why}")).into()
    };
    if bool_attr(&attrs, AttributeType::Sign) != Some(true) {
        return Err(refuse("it is not allowed to sign (CKA_SIGN is false)"));
    }
    if bool_attr(&attrs, AttributeType::Sensitive) != Some(true) {
        return Err(refuse("it is not sensitive, so the token would reveal it"));
    }
    if bool_attr(&attrs, AttributeType::Extractable) != Some(false) {
        return Err(refuse("it is extractable, so it could leave the token"));
    }
    let Some(kt) = key_type(&attrs) else {
        return Err(refuse("the token does not say its key type"));
    };
    let label = bytes_attr(&attrs, AttributeType::Label).unwrap_or_default();
    let label = String::from_utf8_lossy(&label).into_owned();
    let id = bytes_attr(&attrs, AttributeType::Id).unwrap_or_default();
    // The public object: same id (or same label when the id is empty).
    let link = if id.is_empty() {
        Attribute::Label(label.as_bytes().to_vec())
    } else {
        Attribute::Id(id.clone())
    };
    let public = session.find_objects(&[Attribute::Class(ObjectClass::PUBLIC_KEY), link])?;
    let (ec_params, modulus_len) = match public.first() {
        Some(p) => {
            let pa =
                session.get_attributes(*p, &[AttributeType::EcParams, AttributeType::Modulus])?;
            (
                bytes_attr(&pa, AttributeType::EcParams),
                bytes_attr(&pa, AttributeType::Modulus).map_or(0, |m| m.len()),
            )
        }
        None => (
            bytes_attr(&attrs, AttributeType::EcParams),
            bytes_attr(&attrs, AttributeType::Modulus).map_or(0, |m| m.len()),
        ),
    };
    let algorithm = algorithm_of(kt, ec_params.as_deref(), modulus_len)?;
    let public_key = match (public.first(), algorithm.is_rsa()) {
        (Some(p), _) => read_public_key(session, *p, algorithm)?,
        (None, true) => read_public_key(session, handle, algorithm)?,
        (None, false) => {
            return Err(refuse("the token holds no public key object for it"));
        }
    };
    Ok(FoundKey {
        algorithm,
        label,
        id,
        public_key,
    })
}

/// A key object on the token, as listed for administrators (no secret attribute is read).
#[derive(Debug, Clone, Serialize)]
pub struct TokenObject {
    /// `private_key` or `public_key`.
    pub class: String,
    /// `RSA`, `EC`, `EC_EDWARDS`...
    pub key_type: String,
    /// `CKA_LABEL`.
    pub label: String,
    /// `CKA_ID`, hex.
    pub id: String,
    /// The Keyward algorithm, when the key is one Keyward can use.
    pub algorithm: Option<String>,
    /// `CKA_SIGN` (private keys).
    pub sign: Option<bool>,
    /// `CKA_SENSITIVE` (private keys).
    pub sensitive: Option<bool>,
    /// `CKA_EXTRACTABLE` (private keys).
    pub extractable: Option<bool>,
}

/// Lists the key objects the logged-in user can see.
pub fn list_objects(
    session: &Session,
) -> std::result::Result<Vec<TokenObject>, cryptoki::error::Error> {
    let mut out = Vec::new();
    for (class, name) in [
        (ObjectClass::PRIVATE_KEY, "private_key"),
        (ObjectClass::PUBLIC_KEY, "public_key"),
    ] {
        for handle in session.find_objects(&[Attribute::Class(class)])? {
            let attrs = session.get_attributes(
                handle,
                &[
                    AttributeType::KeyType,
                    AttributeType::Label,
                    AttributeType::Id,
                    AttributeType::Sign,
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::EcParams,
                    AttributeType::Modulus,
                ],
            )?;
            let kt = key_type(&attrs);
            let algorithm = kt.and_then(|kt| {
                algorithm_of(
                    kt,
                    bytes_attr(&attrs, AttributeType::EcParams).as_deref(),
                    bytes_attr(&attrs, AttributeType::Modulus).map_or(0, |m| m.len()),
                )
                .ok()
                .map(|a| a.to_string())
            });
            let private = class == ObjectClass::PRIVATE_KEY;
            let flag = |ty| if private { bool_attr(&attrs, ty) } else { None };
            out.push(TokenObject {
                class: name.into(),
                key_type: kt.map(|k| k.to_string()).unwrap_or_default(),
                label: String::from_utf8_lossy(
                    &bytes_attr(&attrs, AttributeType::Label).unwrap_or_default(),
                )
                .into_owned(),
                id: hex::encode(bytes_attr(&attrs, AttributeType::Id).unwrap_or_default()),
                algorithm,
                sign: flag(AttributeType::Sign),
                sensitive: flag(AttributeType::Sensitive),
                extractable: flag(AttributeType::Extractable),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ec_points_unwrap_from_der_or_bare() {
        let bare = [7u8; 32];
        let mut der = vec![0x04, 32];
        der.extend_from_slice(&bare);
        assert_eq!(unwrap_ec_point(&der, 32).unwrap(), &bare);
        assert_eq!(unwrap_ec_point(&bare, 32).unwrap(), &bare);
        assert!(unwrap_ec_point(&der[..20], 32).is_err());
    }

    #[test]
    fn curves_are_named_by_their_parameters() {
        assert_eq!(
            algorithm_of(KeyType::EC, Some(OID_P256), 0).unwrap(),
            Algorithm::P256
        );
        assert_eq!(
            algorithm_of(KeyType::EC, Some(OID_SECP256K1), 0).unwrap(),
            Algorithm::Secp256k1
        );
        assert_eq!(
            algorithm_of(KeyType::EC_EDWARDS, Some(NAME_ED25519), 0).unwrap(),
            Algorithm::Ed25519
        );
        assert_eq!(
            algorithm_of(KeyType::RSA, None, 384).unwrap(),
            Algorithm::Rsa3072
        );
        assert!(algorithm_of(KeyType::RSA, None, 128).is_err());
    }
}
