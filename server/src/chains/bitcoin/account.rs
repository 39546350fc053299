//! A Bitcoin account: one key, one script kind, one network, hence one address.
//!
//! BIP-84 accounts pay to P2WPKH (bech32, `m/84'/coin'/0'/0/{index}`); BIP-86 accounts pay to
//! a P2TR output whose key is the account key tweaked with no script tree (bech32m,
//! `m/86'/coin'/0'/0/{index}`). `coin` is 0 on mainnet and 1 on the test networks.

use bitcoin::key::{CompressedPublicKey, UntweakedPublicKey};
use bitcoin::secp256k1::Secp256k1;
use bitcoin::taproot::TapTweakHash;
use bitcoin::{Address, Network, ScriptBuf};

use super::BitcoinError;

/// The script an account pays to and spends from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptKind {
    /// BIP-84: native SegWit v0, pay to witness public key hash.
    P2wpkh,
    /// BIP-86: taproot key path, no script tree.
    P2tr,
}

impl ScriptKind {
    /// The API name: `p2wpkh` or `p2tr`.
    pub fn as_str(self) -> &'static str {
        match self {
            ScriptKind::P2wpkh => "p2wpkh",
            ScriptKind::P2tr => "p2tr",
        }
    }

    /// Parses `p2wpkh`/`segwit`/`bip84` or `p2tr`/`taproot`/`bip86`.
    pub fn parse(text: &str) -> Result<Self, BitcoinError> {
        match text {
            "p2wpkh" | "segwit" | "bip84" => Ok(ScriptKind::P2wpkh),
            "p2tr" | "taproot" | "bip86" => Ok(ScriptKind::P2tr),
            other => Err(BitcoinError::Invalid(format!(
                "unknown Bitcoin address type {other:?}; expected p2wpkh (BIP-84) or p2tr (BIP-86)"
            ))),
        }
    }

    /// The BIP-43 purpose of its derivation paths.
    pub fn bip_purpose(self) -> u32 {
        match self {
            ScriptKind::P2wpkh => 84,
            ScriptKind::P2tr => 86,
        }
    }
}

/// The API name of a network: `bitcoin`, `testnet`, `signet` or `regtest`.
pub fn network_name(network: Network) -> &'static str {
    match network {
        Network::Bitcoin => "bitcoin",
        Network::Testnet => "testnet",
        Network::Testnet4 => "testnet4",
        Network::Signet => "signet",
        Network::Regtest => "regtest",
    }
}

/// Parses a network name (`mainnet` is accepted for `bitcoin`).
pub fn parse_network(text: &str) -> Result<Network, BitcoinError> {
    match text {
        "bitcoin" | "mainnet" => Ok(Network::Bitcoin),
        "testnet" => Ok(Network::Testnet),
        "testnet4" => Ok(Network::Testnet4),
        "signet" => Ok(Network::Signet),
        "regtest" => Ok(Network::Regtest),
        other => Err(BitcoinError::Invalid(format!(
            "unknown Bitcoin network {other:?}; expected bitcoin (mainnet), testnet, testnet4, signet or regtest"
        ))),
    }
}

/// The default derivation path of account `index`: BIP-84 or BIP-86, coin type 0 on mainnet
/// and 1 on test networks, account 0, external chain.
pub fn default_path(kind: ScriptKind, network: Network, index: u32) -> String {
    let coin = u32::from(network != Network::Bitcoin);
    format!("m/{}'/{coin}'/0'/0/{index}", kind.bip_purpose())
}

/// The stored settings of an account: its network and script kind.
pub fn settings(kind: ScriptKind, network: Network) -> crate::chains::AccountSettings {
    let mut settings = crate::chains::AccountSettings::new();
    settings.insert("network".into(), network_name(network).into());
    settings.insert("address_type".into(), kind.as_str().into());
    settings
}

/// Reads the settings `settings` made.
pub fn from_settings(
    settings: &crate::chains::AccountSettings,
) -> Result<(ScriptKind, Network), BitcoinError> {
    let text = |name: &str| {
        settings
            .get(name)
            .and_then(|v| v.as_str())
            .ok_or_else(|| BitcoinError::Invalid(format!("the account has no {name} setting")))
    };
    Ok((
        ScriptKind::parse(text("address_type")?)?,
        parse_network(text("network")?)?,
    ))
}

/// A Bitcoin account: its public key, script kind and network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BitcoinAccount {
    /// The account key (compressed SEC1).
    pub public_key: CompressedPublicKey,
    /// P2WPKH or P2TR.
    pub kind: ScriptKind,
    /// The network its addresses are for.
    pub network: Network,
}

impl BitcoinAccount {
    /// An account from a 33- or 65-byte SEC1 secp256k1 public key.
    pub fn new(sec1: &[u8], kind: ScriptKind, network: Network) -> Result<Self, BitcoinError> {
        let key = bitcoin::secp256k1::PublicKey::from_slice(sec1)
            .map_err(|e| BitcoinError::Invalid(format!("not a secp256k1 public key: {e}")))?;
        Ok(BitcoinAccount {
            public_key: CompressedPublicKey(key),
            kind,
            network,
        })
    }

    /// The x-only internal key (BIP-340).
    pub fn internal_key(&self) -> UntweakedPublicKey {
        self.public_key.0.x_only_public_key().0
    }

    /// The script the account's outputs carry.
    pub fn script_pubkey(&self) -> ScriptBuf {
        match self.kind {
            ScriptKind::P2wpkh => ScriptBuf::new_p2wpkh(&self.public_key.wpubkey_hash()),
            ScriptKind::P2tr => {
                ScriptBuf::new_p2tr(&Secp256k1::verification_only(), self.internal_key(), None)
            }
        }
    }

    /// The account's address.
    pub fn address(&self) -> Address {
        match self.kind {
            ScriptKind::P2wpkh => Address::p2wpkh(&self.public_key, self.network),
            ScriptKind::P2tr => Address::p2tr(
                &Secp256k1::verification_only(),
                self.internal_key(),
                None,
                self.network,
            ),
        }
    }

    /// For P2TR: the BIP-341 tweak of a key-path spend with no script tree.
    pub fn taproot_tweak(&self) -> Option<[u8; 32]> {
        match self.kind {
            ScriptKind::P2wpkh => None,
            ScriptKind::P2tr => Some(
                TapTweakHash::from_key_and_tweak(self.internal_key(), None)
                    .to_scalar()
                    .to_be_bytes(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hexb(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    // BIP-84 test vectors, `abandon ... about`, m/84'/0'/0'/0/{0,1} and m/84'/0'/0'/1/0.
    #[test]
    fn bip84_vector_addresses() {
        for (pk, addr) in [
            (
                "0330d54fd0dd420a6e5f8d3624f5f3482cae350f79d5f0753bf5beef9c2d91af3c",
                "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu",
            ),
            (
                "03e775fd51f0dfb8cd865d9ff1cca2a158cf651fe997fdc9fee9c1d3b5e995ea77",
                "bc1qnjg0jd8228aq7egyzacy8cys3knf9xvrerkf9g",
            ),
            (
                "03025324888e429ab8e3dbaf1f7802648b9cd01e9b418485c5fa4c1b9b5700e1a6",
                "bc1q8c6fshw2dlwun7ekn9qwf37cu2rn755upcp6el",
            ),
        ] {
            let account =
                BitcoinAccount::new(&hexb(pk), ScriptKind::P2wpkh, Network::Bitcoin).unwrap();
            assert_eq!(account.address().to_string(), addr);
        }
    }

    // BIP-86 test vectors, `abandon ... about`, m/86'/0'/0'/0/{0,1} and m/86'/0'/0'/1/0:
    // internal keys (x-only; either parity gives the same address) and addresses.
    #[test]
    fn bip86_vector_addresses() {
        for (xonly, addr) in [
            (
                "cc8a4bc64d897bddc5fbc2f670f7a8ba0b386779106cf1223c6fc5d7cd6fc115",
                "bc1p5cyxnuxmeuwuvkwfem96lqzszd02n6xdcjrs20cac6yqjjwudpxqkedrcr",
            ),
            (
                "83dfe85a3151d2517290da461fe2815591ef69f2b18a2ce63f01697a8b313145",
                "bc1p4qhjn9zdvkux4e44uhx8tc55attvtyu358kutcqkudyccelu0was9fqzwh",
            ),
            (
                "399f1b2f4393f29a18c937859c5dd8a77350103157eb880f02e8c08214277cef",
                "bc1p3qkhfews2uk44qtvauqyr2ttdsw7svhkl9nkm9s9c3x4ax5h60wqwruhk7",
            ),
        ] {
            let sec1 = [vec![0x02], hexb(xonly)].concat();
            let account = BitcoinAccount::new(&sec1, ScriptKind::P2tr, Network::Bitcoin).unwrap();
            assert_eq!(account.address().to_string(), addr);
        }
    }

    #[test]
    fn networks_paths_and_hrps() {
        let pk = hexb("0330d54fd0dd420a6e5f8d3624f5f3482cae350f79d5f0753bf5beef9c2d91af3c");
        for (network, prefix) in [
            ("mainnet", "bc1q"),
            ("testnet", "tb1q"),
            ("signet", "tb1q"),
            ("regtest", "bcrt1q"),
        ] {
            let network = parse_network(network).unwrap();
            let account = BitcoinAccount::new(&pk, ScriptKind::P2wpkh, network).unwrap();
            assert!(account.address().to_string().starts_with(prefix));
            let taproot = BitcoinAccount::new(&pk, ScriptKind::P2tr, network).unwrap();
            assert!(
                taproot
                    .address()
                    .to_string()
                    .starts_with(&prefix.replace('q', "p"))
            );
        }
        assert_eq!(
            default_path(ScriptKind::P2wpkh, Network::Bitcoin, 3),
            "m/84'/0'/0'/0/3"
        );
        assert_eq!(
            default_path(ScriptKind::P2tr, Network::Regtest, 0),
            "m/86'/1'/0'/0/0"
        );
        assert!(parse_network("litecoin").is_err());
        assert!(ScriptKind::parse("p2pkh").is_err());
    }

    #[test]
    fn taproot_tweak_matches_the_output_key() {
        let pk = hexb("02cc8a4bc64d897bddc5fbc2f670f7a8ba0b386779106cf1223c6fc5d7cd6fc115");
        let account = BitcoinAccount::new(&pk, ScriptKind::P2tr, Network::Bitcoin).unwrap();
        let public = crate::keys::PublicKey::encode(
            crate::keys::Algorithm::Secp256k1,
            &k256::ecdsa::VerifyingKey::from_sec1_bytes(&pk).unwrap(),
        )
        .unwrap();
        let tweak = account.taproot_tweak().unwrap();
        let output = crate::keys::schnorr_output_key(&public, Some(&tweak)).unwrap();
        // BIP-86: m/86'/0'/0'/0/0 output key.
        assert_eq!(
            hex::encode(output),
            "a60869f0dbcf1dc659c9cecbaf8050135ea9e8cdc487053f1dc6880949dc684c"
        );
        assert_eq!(&account.script_pubkey().as_bytes()[2..], &output);
    }
}
