//! Names of algorithms, hashes, schemes and purposes, as they appear in the API.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

use super::SignInputKind;

macro_rules! named_enum {
    ($(#[$m:meta])* $name:ident, $what:literal, { $($(#[$vm:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $variant),+ }

        impl $name {
            /// Every value, in API order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The name used in the API and the database.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        "unknown {} {other:?}; expected one of: {}",
                        $what,
                        [$($text),+].join(", ")
                    )),
                }
            }
        }
    };
}

named_enum!(
    /// A signature algorithm (and key type).
    Algorithm, "algorithm", {
        /// Ed25519 (PureEdDSA, RFC 8032).
        Ed25519 => "ed25519",
        /// ECDSA on secp256k1, low-S, RFC 6979 nonces.
        Secp256k1 => "secp256k1",
        /// ECDSA on NIST P-256, RFC 6979 nonces.
        P256 => "p256",
        /// RSA with a 2048-bit modulus.
        Rsa2048 => "rsa-2048",
        /// RSA with a 3072-bit modulus.
        Rsa3072 => "rsa-3072",
        /// RSA with a 4096-bit modulus.
        Rsa4096 => "rsa-4096",
    }
);

named_enum!(
    /// A hash algorithm for digests.
    HashAlg, "hash", {
        /// SHA-256.
        Sha256 => "sha256",
        /// SHA-384.
        Sha384 => "sha384",
        /// SHA-512.
        Sha512 => "sha512",
    }
);

named_enum!(
    /// RSA signature padding.
    RsaScheme, "scheme", {
        /// RSASSA-PKCS1-v1_5.
        Pkcs1v15 => "pkcs1v15",
        /// RSASSA-PSS with MGF1 of the same hash and a salt as long as the hash.
        Pss => "pss",
    }
);

named_enum!(
    /// ECDSA signature encoding.
    EcdsaFormat, "format", {
        /// ASN.1 DER `SEQUENCE { r, s }`.
        Der => "der",
        /// Fixed-size `r || s`.
        Raw => "raw",
    }
);

/// What a key may sign. A key made for one purpose never signs for another.
///
/// Besides raw digests and documents, a key may belong to one blockchain: its purpose is the
/// chain's name as registered in `chains::ALL` (the keys layer knows no chain; it only keeps
/// the name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// Raw digests and messages.
    Raw,
    /// Documents (CMS).
    Document,
    /// Transactions and messages of one blockchain.
    Chain(ChainName),
}

/// The name of a blockchain as a key purpose: 1 to 16 lowercase ASCII letters and digits.
/// Kept inline so that a `Purpose` stays `Copy`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChainName {
    bytes: [u8; ChainName::MAX],
    len: u8,
}

impl ChainName {
    /// The longest name.
    pub const MAX: usize = 16;

    /// The name `name`; `None` unless it has 1 to 16 lowercase ASCII letters and digits (and
    /// is not `raw` or `document`). Usable in constants.
    pub const fn new(name: &str) -> Option<ChainName> {
        let b = name.as_bytes();
        if b.is_empty() || b.len() > ChainName::MAX {
            return None;
        }
        let mut bytes = [0u8; ChainName::MAX];
        let mut i = 0;
        while i < b.len() {
            if !(b[i].is_ascii_lowercase() || b[i].is_ascii_digit()) {
                return None;
            }
            bytes[i] = b[i];
            i += 1;
        }
        let chain = ChainName {
            bytes,
            len: b.len() as u8,
        };
        if chain.same(b"raw") || chain.same(b"document") {
            return None;
        }
        Some(chain)
    }

    const fn same(&self, other: &[u8]) -> bool {
        if self.len as usize != other.len() {
            return false;
        }
        let mut i = 0;
        while i < other.len() {
            if self.bytes[i] != other[i] {
                return false;
            }
            i += 1;
        }
        true
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        // Only ASCII bytes are ever stored.
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or_default()
    }
}

impl fmt::Debug for ChainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl Purpose {
    /// The purpose of the keys of chain `name`. For constants: a name that is not valid
    /// (see `ChainName::new`) stops the build.
    pub const fn chain(name: &str) -> Purpose {
        match ChainName::new(name) {
            Some(c) => Purpose::Chain(c),
            None => panic!("not a valid chain name"),
        }
    }

    /// The name used in the API and the database.
    pub fn as_str(&self) -> &str {
        match self {
            Purpose::Raw => "raw",
            Purpose::Document => "document",
            Purpose::Chain(c) => c.as_str(),
        }
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Reads a stored or given name. Any well-formed chain name parses: whether that chain is
/// registered is for the layer that knows the chains to say (`chains::parse_purpose`).
impl FromStr for Purpose {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "raw" => Ok(Purpose::Raw),
            "document" => Ok(Purpose::Document),
            other => ChainName::new(other).map(Purpose::Chain).ok_or_else(|| {
                format!(
                    "unknown purpose {other:?}; expected raw, document or a chain name \
                     (1 to 16 lowercase letters and digits)"
                )
            }),
        }
    }
}

// The enums are declared by `named_enum!`, which cannot carry `#[default]`.
#[allow(clippy::derivable_impls)]
impl Default for RsaScheme {
    fn default() -> Self {
        RsaScheme::Pkcs1v15
    }
}

#[allow(clippy::derivable_impls)]
impl Default for EcdsaFormat {
    fn default() -> Self {
        EcdsaFormat::Der
    }
}

impl Algorithm {
    /// Whether keys of this algorithm sign digests or messages.
    pub fn input_kind(self) -> SignInputKind {
        match self {
            Algorithm::Ed25519 => SignInputKind::Message,
            _ => SignInputKind::Digest,
        }
    }

    /// RSA modulus size in bits, for RSA algorithms.
    pub fn rsa_bits(self) -> Option<usize> {
        match self {
            Algorithm::Rsa2048 => Some(2048),
            Algorithm::Rsa3072 => Some(3072),
            Algorithm::Rsa4096 => Some(4096),
            _ => None,
        }
    }

    /// Whether this is an RSA algorithm.
    pub fn is_rsa(self) -> bool {
        self.rsa_bits().is_some()
    }

    /// Whether this is an ECDSA algorithm.
    pub fn is_ecdsa(self) -> bool {
        matches!(self, Algorithm::Secp256k1 | Algorithm::P256)
    }
}

impl HashAlg {
    /// Digest length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            HashAlg::Sha256 => 32,
            HashAlg::Sha384 => 48,
            HashAlg::Sha512 => 64,
        }
    }

    /// Hashes `data`.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            HashAlg::Sha256 => sha2::Sha256::digest(data).to_vec(),
            HashAlg::Sha384 => sha2::Sha384::digest(data).to_vec(),
            HashAlg::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_choices() {
        for alg in Algorithm::ALL {
            assert_eq!(alg.as_str().parse::<Algorithm>().unwrap(), *alg);
        }
        let err = "rsa-1024".parse::<Algorithm>().unwrap_err();
        assert!(err.contains("rsa-1024") && err.contains("ed25519"), "{err}");
    }

    #[test]
    fn purposes_round_trip_and_chain_names_are_checked() {
        for p in [Purpose::Raw, Purpose::Document, Purpose::chain("ethereum")] {
            assert_eq!(p.as_str().parse::<Purpose>().unwrap(), p);
        }
        assert_eq!(Purpose::chain("abc1").as_str(), "abc1");
        for bad in [
            "",
            "Ethereum",
            "eth-2",
            "a".repeat(17).as_str(),
            "raw",
            "document",
        ] {
            assert!(ChainName::new(bad).is_none(), "{bad:?}");
        }
        assert!("Raw".parse::<Purpose>().is_err());
        assert_ne!(Purpose::chain("bitcoin"), Purpose::chain("solana"));
    }

    #[test]
    fn digest_lengths_match_the_hash() {
        for h in HashAlg::ALL {
            assert_eq!(h.digest(b"abc").len(), h.output_len());
        }
    }
}
