//! Hierarchical deterministic keys: BIP-39 mnemonics and seeds, BIP-32 derivation on
//! secp256k1 (used by Ethereum and Bitcoin accounts), with the crates `coins-bip39` and
//! `coins-bip32`.
//!
//! Every secret (entropy, seed, phrase, derived scalar) is returned in a zeroizing buffer;
//! nothing here logs or formats one.

use coins_bip32::path::DerivationPath;
use coins_bip32::xkeys::XPriv;
use coins_bip39::{English, Mnemonic};
use zeroize::Zeroizing;

/// Errors of mnemonic handling and derivation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HdError {
    /// The mnemonic is not a valid English BIP-39 phrase.
    #[error("the mnemonic is not a valid BIP-39 English phrase: {0}")]
    Mnemonic(String),
    /// Unsupported word count.
    #[error("a mnemonic has 12, 15, 18, 21 or 24 words, not {0}")]
    WordCount(usize),
    /// The derivation path does not parse.
    #[error("derivation path {path:?} is invalid: {reason}")]
    Path {
        /// The path as given.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Derivation failed (an invalid child, astronomically unlikely).
    #[error("derivation failed: {0}")]
    Derive(String),
}

/// A BIP-39 mnemonic phrase, zeroized on drop. Never printed.
pub struct Phrase(Mnemonic<English>);

impl std::fmt::Debug for Phrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Phrase([redacted])")
    }
}

impl Phrase {
    /// A new random phrase of `words` words (12 or 24 are the usual choices).
    pub fn generate(words: usize) -> Result<Self, HdError> {
        let bytes = match words {
            12 => 16,
            15 => 20,
            18 => 24,
            21 => 28,
            24 => 32,
            n => return Err(HdError::WordCount(n)),
        };
        let mut entropy = Zeroizing::new([0u8; 32]);
        crate::keys::fill_random_bytes(&mut entropy[..bytes]);
        Self::from_entropy(&entropy[..bytes])
    }

    /// The phrase for `entropy` (16 to 32 bytes, a multiple of 4).
    pub fn from_entropy(entropy: &[u8]) -> Result<Self, HdError> {
        let entropy = coins_bip39::Entropy::from_slice(entropy)
            .map_err(|e| HdError::Mnemonic(e.to_string()))?;
        Ok(Phrase(Mnemonic::new_from_entropy(entropy)))
    }

    /// Parses a phrase (words separated by white space, any case), checking the checksum.
    pub fn parse(text: &str) -> Result<Self, HdError> {
        let normalized = Zeroizing::new(
            text.split_whitespace()
                .map(str::to_lowercase)
                .collect::<Vec<_>>()
                .join(" "),
        );
        let words = normalized.split(' ').count();
        if ![12, 15, 18, 21, 24].contains(&words) {
            return Err(HdError::WordCount(words));
        }
        Mnemonic::<English>::new_from_phrase(&normalized)
            .map(Phrase)
            .map_err(|e| HdError::Mnemonic(e.to_string()))
    }

    /// The number of words.
    pub fn words(&self) -> usize {
        self.0.word_count().words()
    }

    /// The phrase, space-separated.
    pub fn to_phrase(&self) -> Zeroizing<String> {
        self.0.to_phrase()
    }

    /// The 64-byte BIP-39 seed for `passphrase` (empty when none).
    pub fn to_seed(&self, passphrase: &str) -> Result<Zeroizing<[u8; 64]>, HdError> {
        let pass = (!passphrase.is_empty()).then_some(passphrase);
        self.0
            .to_seed(pass)
            .map_err(|e| HdError::Mnemonic(e.to_string()))
    }
}

/// Parses a BIP-32 path such as `m/44'/60'/0'/0/0` (`'` or `h` marks a hardened step).
pub fn parse_path(path: &str) -> Result<DerivationPath, HdError> {
    let bad = |reason: &str| HdError::Path {
        path: path.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = path.trim();
    if !trimmed.starts_with("m/") && trimmed != "m" {
        return Err(bad("it must start with m/"));
    }
    let steps = trimmed.split('/').skip(1).count();
    if steps > 10 {
        return Err(bad("at most 10 steps are allowed"));
    }
    trimmed
        .replace('h', "'")
        .parse::<DerivationPath>()
        .map_err(|e| bad(&e.to_string()))
}

/// Formats a path with `'` for hardened steps.
pub fn format_path(path: &DerivationPath) -> String {
    path.derivation_string()
}

/// The master fingerprint (first 4 bytes of HASH160 of the master public key), hex: a public
/// name for a seed.
pub fn master_fingerprint(seed: &[u8]) -> Result<String, HdError> {
    let root = XPriv::root_from_seed(seed, None).map_err(|e| HdError::Derive(e.to_string()))?;
    Ok(hex::encode(root.fingerprint().0))
}

/// Derives the secp256k1 private scalar at `path` from a BIP-39 seed (BIP-32). Chain-agnostic:
/// Ethereum and Bitcoin accounts both use it.
pub fn derive_secp256k1(
    seed: &[u8],
    path: &DerivationPath,
) -> Result<Zeroizing<[u8; 32]>, HdError> {
    let root = XPriv::root_from_seed(seed, None).map_err(|e| HdError::Derive(e.to_string()))?;
    let child = root
        .derive_path(path.clone())
        .map_err(|e| HdError::Derive(e.to_string()))?;
    let key: &k256::ecdsa::SigningKey = child.as_ref();
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&key.to_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// BIP-39 reference vectors (English, passphrase "TREZOR"): entropy, phrase, seed.
    const BIP39: &[(&str, &str, &str)] = &[
        (
            "00000000000000000000000000000000",
            "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about",
            "c55257c360c07c72029aebc1b53c05ed0362ada38ead3e3e9efa3708e53495531f09a6987599d18264c1e1c92f2cf141630c7a3c4ab7c81b2f001698e7463b04",
        ),
        (
            "7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f",
            "legal winner thank year wave sausage worth useful legal winner thank yellow",
            "2e8905819b8723fe2c1d161860e5ee1830318dbf49a83bd451cfb8440c28bd6fa457fe1296106559a3c80937a1c1069be3a3a5bd381ee6260e8d9739fce1f607",
        ),
        (
            "80808080808080808080808080808080",
            "letter advice cage absurd amount doctor acoustic avoid letter advice cage above",
            "d71de856f81a8acc65e6fc851a38d4d7ec216fd0796d0a6827a3ad6ed5511a30fa280f12eb2e47ed2ac03b5c462a0358d18d69fe4f985ec81778c1b370b652a8",
        ),
        (
            "ffffffffffffffffffffffffffffffff",
            "zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo wrong",
            "ac27495480225222079d7be181583751e86f571027b0497b5b5d11218e0a8a13332572917f0f8e5a589620c6f15b11c61dee327651a14c34e18231052e48c069",
        ),
        (
            "0000000000000000000000000000000000000000000000000000000000000000",
            "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon art",
            "bda85446c68413707090a52022edd26a1c9462295029f2e60cd7c4f2bbd3097170af7a4d73245cafa9c3cca8d561a7c3de6f5d4a10be8ed2a5e608d68f92fcc8",
        ),
        (
            "9e885d952ad362caeb4efe34a8e91bd2",
            "ozone drill grab fiber curtain grace pudding thank cruise elder eight picnic",
            "274ddc525802f7c828d8ef7ddbcdc5304e87ac3535913611fbbfa986d0c9e5476c91689f9c8a54fd55bd38606aa6a8595ad213d4c9c9f9aca3fb217069a41028",
        ),
        (
            "f585c11aec520db57dd353c69554b21a89b20fb0650966fa0a9d6f74fd989d8f",
            "void come effort suffer camp survey warrior heavy shoot primary clutch crush open amazing screen patrol group space point ten exist slush involve unfold",
            "01f5bced59dec48e362f2c45b5de68b9fd6c92c6634f44d6d40aab69056506f0e35524a518034ddc1192e1dacd32c1ed3eaa3c3b131c88ed8e7e54c49a5d0998",
        ),
    ];

    #[test]
    fn bip39_vectors_entropy_phrase_seed() {
        for (entropy, phrase, seed) in BIP39 {
            let p = Phrase::from_entropy(&hex::decode(entropy).unwrap()).unwrap();
            assert_eq!(p.to_phrase().as_str(), *phrase);
            let parsed = Phrase::parse(&phrase.to_uppercase()).unwrap();
            assert_eq!(hex::encode(&parsed.to_seed("TREZOR").unwrap()[..]), *seed);
        }
    }

    #[test]
    fn bad_phrases_are_refused() {
        let last_word_wrong = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon";
        assert!(matches!(
            Phrase::parse(last_word_wrong),
            Err(HdError::Mnemonic(_))
        ));
        assert!(matches!(
            Phrase::parse("abandon about"),
            Err(HdError::WordCount(2))
        ));
        assert!(Phrase::generate(13).is_err());
        let a = Phrase::generate(24).unwrap();
        assert_eq!(a.words(), 24);
        assert_ne!(
            a.to_phrase().as_str(),
            Phrase::generate(24).unwrap().to_phrase().as_str()
        );
        assert_eq!(format!("{a:?}"), "Phrase([redacted])");
    }

    fn xprv_at(seed: &str, path: &str) -> String {
        let root = XPriv::root_from_seed(
            &hex::decode(seed).unwrap(),
            Some(coins_bip32::primitives::Hint::Legacy),
        )
        .unwrap();
        let child = root.derive_path(parse_path(path).unwrap()).unwrap();
        child.to_base58().to_string()
    }

    /// BIP-32 test vectors 1 to 3: the extended private key at each path.
    #[test]
    fn bip32_vectors_1_to_3() {
        let v1 = "000102030405060708090a0b0c0d0e0f";
        for (path, xprv) in [
            (
                "m",
                "xprv9s21ZrQH143K3QTDL4LXw2F7HEK3wJUD2nW2nRk4stbPy6cq3jPPqjiChkVvvNKmPGJxWUtg6LnF5kejMRNNU3TGtRBeJgk33yuGBxrMPHi",
            ),
            (
                "m/0'",
                "xprv9uHRZZhk6KAJC1avXpDAp4MDc3sQKNxDiPvvkX8Br5ngLNv1TxvUxt4cV1rGL5hj6KCesnDYUhd7oWgT11eZG7XnxHrnYeSvkzY7d2bhkJ7",
            ),
            (
                "m/0'/1",
                "xprv9wTYmMFdV23N2TdNG573QoEsfRrWKQgWeibmLntzniatZvR9BmLnvSxqu53Kw1UmYPxLgboyZQaXwTCg8MSY3H2EU4pWcQDnRnrVA1xe8fs",
            ),
            (
                "m/0'/1/2'",
                "xprv9z4pot5VBttmtdRTWfWQmoH1taj2axGVzFqSb8C9xaxKymcFzXBDptWmT7FwuEzG3ryjH4ktypQSAewRiNMjANTtpgP4mLTj34bhnZX7UiM",
            ),
            (
                "m/0'/1/2'/2",
                "xprvA2JDeKCSNNZky6uBCviVfJSKyQ1mDYahRjijr5idH2WwLsEd4Hsb2Tyh8RfQMuPh7f7RtyzTtdrbdqqsunu5Mm3wDvUAKRHSC34sJ7in334",
            ),
            (
                "m/0'/1/2'/2/1000000000",
                "xprvA41z7zogVVwxVSgdKUHDy1SKmdb533PjDz7J6N6mV6uS3ze1ai8FHa8kmHScGpWmj4WggLyQjgPie1rFSruoUihUZREPSL39UNdE3BBDu76",
            ),
        ] {
            assert_eq!(xprv_at(v1, path), xprv, "vector 1 {path}");
        }
        let v2 = "fffcf9f6f3f0edeae7e4e1dedbd8d5d2cfccc9c6c3c0bdbab7b4b1aeaba8a5a29f9c999693908d8a8784817e7b7875726f6c696663605d5a5754514e4b484542";
        for (path, xprv) in [
            (
                "m",
                "xprv9s21ZrQH143K31xYSDQpPDxsXRTUcvj2iNHm5NUtrGiGG5e2DtALGdso3pGz6ssrdK4PFmM8NSpSBHNqPqm55Qn3LqFtT2emdEXVYsCzC2U",
            ),
            (
                "m/0",
                "xprv9vHkqa6EV4sPZHYqZznhT2NPtPCjKuDKGY38FBWLvgaDx45zo9WQRUT3dKYnjwih2yJD9mkrocEZXo1ex8G81dwSM1fwqWpWkeS3v86pgKt",
            ),
            (
                "m/0/2147483647'",
                "xprv9wSp6B7kry3Vj9m1zSnLvN3xH8RdsPP1Mh7fAaR7aRLcQMKTR2vidYEeEg2mUCTAwCd6vnxVrcjfy2kRgVsFawNzmjuHc2YmYRmagcEPdU9",
            ),
            (
                "m/0/2147483647'/1/2147483646'/2",
                "xprvA2nrNbFZABcdryreWet9Ea4LvTJcGsqrMzxHx98MMrotbir7yrKCEXw7nadnHM8Dq38EGfSh6dqA9QWTyefMLEcBYJUuekgW4BYPJcr9E7j",
            ),
        ] {
            assert_eq!(xprv_at(v2, path), xprv, "vector 2 {path}");
        }
        let v3 = "4b381541583be4423346c643850da4b320e46a87ae3d2a4e6da11eba819cd4acba45d239319ac14f863b8d5ab5a0d0c64d2e8a1e7d1457df2e5a3c51c73235be";
        for (path, xprv) in [
            (
                "m",
                "xprv9s21ZrQH143K25QhxbucbDDuQ4naNntJRi4KUfWT7xo4EKsHt2QJDu7KXp1A3u7Bi1j8ph3EGsZ9Xvz9dGuVrtHHs7pXeTzjuxBrCmmhgC6",
            ),
            (
                "m/0'",
                "xprv9uPDJpEQgRQfDcW7BkF7eTya6RPxXeJCqCJGHuCJ4GiRVLzkTXBAJMu2qaMWPrS7AANYqdq6vcBcBUdJCVVFceUvJFjaPdGZ2y9WACViL4L",
            ),
        ] {
            assert_eq!(xprv_at(v3, path), xprv, "vector 3 {path}");
        }
    }

    #[test]
    fn paths_parse_with_either_hardened_mark() {
        assert_eq!(
            format_path(&parse_path("m/44h/60h/0h/0/7").unwrap()),
            "m/44'/60'/0'/0/7"
        );
        assert!(parse_path("44'/60'").is_err());
        assert!(parse_path("m/x").is_err());
        assert!(parse_path("m/1/2/3/4/5/6/7/8/9/10/11").is_err());
    }
}
