//! SLIP-0010 key derivation for Ed25519: HMAC-SHA512 from the seed with the key
//! `ed25519 seed`, hardened children only (Ed25519 has no public derivation).
//!
//! Written here because the BIP-32 crates do secp256k1 only; it is 30 lines and checked
//! against the SLIP-0010 test vectors below.

use hmac::{KeyInit, Mac};
use zeroize::Zeroizing;

use super::SolanaError;

type HmacSha512 = hmac::Hmac<sha2::Sha512>;

const HARDENED: u32 = 0x8000_0000;

/// The default path of Solana account `index` (as Phantom and the Solana CLI derive it).
pub fn default_path(index: u32) -> String {
    format!("m/44'/501'/{index}'/0'")
}

/// Parses a path like `m/44'/501'/0'/0'`; every step must be hardened (`'` or `h`).
pub fn parse_path(path: &str) -> Result<Vec<u32>, SolanaError> {
    let bad =
        |why: &str| SolanaError::Invalid(format!("derivation path {path:?} is invalid: {why}"));
    let mut steps = path.trim().split('/');
    if steps.next() != Some("m") {
        return Err(bad("it must start with m/"));
    }
    let steps: Vec<&str> = steps.collect();
    if steps.len() > 10 {
        return Err(bad("at most 10 steps are allowed"));
    }
    steps
        .into_iter()
        .map(|step| {
            let n = step
                .strip_suffix('\'')
                .or_else(|| step.strip_suffix('h'))
                .ok_or_else(|| bad("Ed25519 (SLIP-0010) derivation has hardened steps only"))?;
            let n: u32 = n.parse().map_err(|_| bad("a step is not a number"))?;
            if n >= HARDENED {
                return Err(bad("a step is too large"));
            }
            Ok(n | HARDENED)
        })
        .collect()
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> Zeroizing<[u8; 64]> {
    // HMAC accepts keys of any length.
    let mut mac = HmacSha512::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    for p in parts {
        mac.update(p);
    }
    let mut out = Zeroizing::new([0u8; 64]);
    out.copy_from_slice(&mac.finalize().into_bytes());
    out
}

/// Derives the Ed25519 secret key (32-byte seed) and chain code at `path` from a BIP-39 seed.
pub fn derive(seed: &[u8], path: &[u32]) -> (Zeroizing<[u8; 32]>, [u8; 32]) {
    let mut i = hmac(b"ed25519 seed", &[seed]);
    for &index in path {
        let index = index | HARDENED;
        i = hmac(&i[32..], &[&[0u8], &i[..32], &index.to_be_bytes()]);
    }
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&i[..32]);
    let mut chain = [0u8; 32];
    chain.copy_from_slice(&i[32..]);
    (key, chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(secret: &[u8; 32]) -> String {
        hex::encode(
            ed25519_dalek::SigningKey::from_bytes(secret)
                .verifying_key()
                .to_bytes(),
        )
    }

    // SLIP-0010 test vector 1 for ed25519.
    #[test]
    fn slip10_vector_1() {
        let seed = hex::decode("000102030405060708090a0b0c0d0e0f").unwrap();
        for (path, chain, secret, pk) in [
            (
                "m",
                "90046a93de5380a72b5e45010748567d5ea02bbf6522f979e05c0d8d8ca9fffb",
                "2b4be7f19ee27bbf30c667b642d5f4aa69fd169872f8fc3059c08ebae2eb19e7",
                "a4b2856bfec510abab89753fac1ac0e1112364e7d250545963f135f2a33188ed",
            ),
            (
                "m/0'",
                "8b59aa11380b624e81507a27fedda59fea6d0b779a778918a2fd3590e16e9c69",
                "68e0fe46dfb67e368c75379acec591dad19df3cde26e63b93a8e704f1dade7a3",
                "8c8a13df77a28f3445213a0f432fde644acaa215fc72dcdf300d5efaa85d350c",
            ),
            (
                "m/0'/1'",
                "a320425f77d1b5c2505a6b1b27382b37368ee640e3557c315416801243552f14",
                "b1d0bad404bf35da785a64ca1ac54b2617211d2777696fbffaf208f746ae84f2",
                "1932a5270f335bed617d5b935c80aedb1a35bd9fc1e31acafd5372c30f5c1187",
            ),
            (
                "m/0'/1'/2'",
                "2e69929e00b5ab250f49c3fb1c12f252de4fed2c1db88387094a0f8c4c9ccd6c",
                "92a5b23c0b8a99e37d07df3fb9966917f5d06e02ddbd909c7e184371463e9fc9",
                "ae98736566d30ed0e9d2f4486a64bc95740d89c7db33f52121f8ea8f76ff0fc1",
            ),
            (
                "m/0'/1'/2'/2'",
                "8f6d87f93d750e0efccda017d662a1b31a266e4a6f5993b15f5c1f07f74dd5cc",
                "30d1dc7e5fc04c31219ab25a27ae00b50f6fd66622f6e9c913253d6511d1e662",
                "8abae2d66361c879b900d204ad2cc4984fa2aa344dd7ddc46007329ac76c429c",
            ),
            (
                "m/0'/1'/2'/2'/1000000000'",
                "68789923a0cac2cd5a29172a475fe9e0fb14cd6adb5ad98a3fa70333e7afa230",
                "8f94d394a8e8fd6b1bc2f3f49f5c47e385281d5c17e65324b0f62483e37e8793",
                "3c24da049451555d51a7014a37337aa4e12d41e485abccfa46b47dfb2af54b7a",
            ),
        ] {
            let (key, cc) = derive(&seed, &parse_path(path).unwrap());
            assert_eq!(hex::encode(cc), chain, "{path}");
            assert_eq!(hex::encode(*key), secret, "{path}");
            assert_eq!(public(&key), pk, "{path}");
        }
    }

    // SLIP-0010 test vector 2 for ed25519 (first and last steps).
    #[test]
    fn slip10_vector_2() {
        let seed = hex::decode(
            "fffcf9f6f3f0edeae7e4e1dedbd8d5d2cfccc9c6c3c0bdbab7b4b1aeaba8a5a29f9c999693908d8a8784817e7b7875726f6c696663605d5a5754514e4b484542",
        )
        .unwrap();
        let (key, cc) = derive(&seed, &[]);
        assert_eq!(
            hex::encode(cc),
            "ef70a74db9c3a5af931b5fe73ed8e1a53464133654fd55e7a66f8570b8e33c3b"
        );
        assert_eq!(
            hex::encode(*key),
            "171cb88b1b3c1db25add599712e36245d75bc65a1a5c9e18d76f9f2b1eab4012"
        );
        let (key, _) = derive(
            &seed,
            &parse_path("m/0'/2147483647'/1'/2147483646'/2'").unwrap(),
        );
        assert_eq!(
            hex::encode(*key),
            "551d333177df541ad876a60ea71f00447931c0a9da16f227c11ea080d7391b8d"
        );
        assert_eq!(
            public(&key),
            "47150c75db263559a70d5778bf36abbab30fb061ad69f69ece61a72b0cfa4fc0"
        );
    }

    #[test]
    fn paths_must_be_hardened() {
        assert_eq!(default_path(2), "m/44'/501'/2'/0'");
        assert_eq!(
            parse_path("m/44h/501h/0h/0h").unwrap(),
            parse_path(&default_path(0)).unwrap()
        );
        assert!(parse_path("m/44'/501'/0/0").is_err());
        assert!(parse_path("44'/501'").is_err());
        assert!(parse_path("m/2147483648'").is_err());
    }
}
