//! HD wallets: a BIP-39 seed sealed under the KEK like a software key, and accounts derived
//! from it. An account is an ordinary key (purpose of its chain) in the keys table, so ACLs,
//! policies, approvals and the audit log apply unchanged; its private key is derived once, at
//! account creation, and sealed as a software slot, so signing takes the usual path.
//!
//! Never stores or logs the mnemonic or the passphrase: only the sealed seed is kept, and the
//! phrase is handed back once, at creation, when the caller asks for it.

use std::collections::BTreeMap;

use coins_bip32::path::DerivationPath;
use serde_json::json;
use zeroize::Zeroizing;

use crate::audit::{Actor, AuditEvent};
use crate::auth::Principal;
use crate::chains::hd::{self, HdError, Phrase};
use crate::chains::{self, AccountOptions, AccountSettings, Chain, ChainError};
use crate::keys::{GeneratedKey, KeyError, KeyMeta, SoftwareBackend};
use crate::lifecycle::keys::{self as admin, KeyAdminError, KeyExtras, NewKey};
use crate::pipeline::SigningPath;
use crate::store::wallets::{AccountRow, WalletRow};
use crate::store::{StateChange, StoreError};

/// The kind of sealed secret a wallet's seed is (bound into the envelope's associated data).
const SEED_KIND: &str = "bip39-seed";

/// Errors of wallet and account management.
#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    /// No such wallet.
    #[error("no wallet with id {0:?}")]
    NotFound(String),
    /// The request does not make sense.
    #[error("{0}")]
    Invalid(String),
    /// Mnemonic or derivation error.
    #[error(transparent)]
    Hd(#[from] HdError),
    /// Recording failed (a conflict, the audit log, the key backend).
    #[error(transparent)]
    Recording(#[from] KeyAdminError),
}

impl From<KeyError> for WalletError {
    fn from(e: KeyError) -> Self {
        WalletError::Recording(e.into())
    }
}

impl From<ChainError> for WalletError {
    fn from(e: ChainError) -> Self {
        WalletError::Invalid(e.to_string())
    }
}

impl From<StoreError> for WalletError {
    fn from(e: StoreError) -> Self {
        WalletError::Recording(e.into())
    }
}

/// A wallet to create: a new mnemonic, or an imported one.
pub struct NewWallet {
    /// Unique name.
    pub name: String,
    /// Words of a new mnemonic (ignored on import).
    pub words: usize,
    /// An existing mnemonic to import.
    pub mnemonic: Option<Zeroizing<String>>,
    /// The BIP-39 passphrase (empty: none).
    pub passphrase: Zeroizing<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

/// A created wallet; `mnemonic` is set only when the caller asked to see it.
pub struct CreatedWallet {
    /// The stored row.
    pub row: WalletRow,
    /// The phrase, once.
    pub mnemonic: Option<Zeroizing<String>>,
}

fn actor(p: &Principal) -> Actor {
    Actor {
        issuer: p.issuer.clone(),
        subject: p.subject.clone(),
    }
}

/// Creates (or imports) a wallet: derives the seed, seals it, and records the wallet in the
/// same transaction as its audit record.
pub async fn create_wallet(
    path: &SigningPath,
    software: &SoftwareBackend,
    principal: &Principal,
    new: NewWallet,
    reveal_mnemonic: bool,
) -> Result<CreatedWallet, WalletError> {
    admin::check_name(&new.name)
        .map_err(|e| WalletError::Invalid(e.replace("key name", "wallet name")))?;
    admin::check_labels(&new.labels).map_err(WalletError::Invalid)?;
    if new.mnemonic.is_some() && reveal_mnemonic {
        return Err(WalletError::Invalid(
            "reveal_mnemonic applies to generated wallets only; an imported mnemonic is never echoed".into(),
        ));
    }
    let id = format!("wal_{}", uuid::Uuid::now_v7().simple());
    let software = software.clone();
    let seal_id = id.clone();
    let imported = new.mnemonic.is_some();
    let (words, passphrase) = (new.words, new.passphrase);
    let mnemonic = new.mnemonic;
    let has_passphrase = !passphrase.is_empty();
    // PBKDF2 with 2048 rounds and sealing run off the async runtime.
    let (sealed, fingerprint, words, phrase) = tokio::task::spawn_blocking(move || {
        let phrase = match mnemonic {
            Some(m) => Phrase::parse(&m)?,
            None => Phrase::generate(words)?,
        };
        let seed = phrase.to_seed(&passphrase)?;
        let fingerprint = hd::master_fingerprint(seed.as_ref())?;
        let sealed = software
            .seal_secret(&seal_id, SEED_KIND, seed.as_ref())
            .map_err(WalletError::from)?;
        let shown = reveal_mnemonic.then(|| phrase.to_phrase());
        Ok::<_, WalletError>((sealed, fingerprint, phrase.words(), shown))
    })
    .await
    .map_err(|e| KeyError::Unavailable(format!("wallet task failed: {e}")))??;
    let (now, _) = crate::clock::now();
    let origin = if imported { "imported" } else { "generated" };
    let row = WalletRow {
        id: id.clone(),
        name: new.name.clone(),
        words: words as i64,
        passphrase: has_passphrase,
        origin: origin.into(),
        fingerprint: fingerprint.clone(),
        seed: sealed,
        labels: serde_json::to_string(&new.labels).unwrap_or_else(|_| "{}".into()),
        created_at: now,
        created_by: principal.display_id(),
    };
    let event = AuditEvent {
        action: if imported {
            "wallet.import"
        } else {
            "wallet.create"
        },
        outcome: "ok",
        actor: actor(principal),
        key_id: None,
        request_id: Some(crate::request_id::current()),
        details: json!({
            "wallet_id": id,
            "name": new.name,
            "words": words,
            "passphrase": has_passphrase,
            "fingerprint": fingerprint,
            "mnemonic_revealed": phrase.is_some(),
            "labels": new.labels,
        }),
    };
    path.audit()
        .append(
            vec![StateChange::InsertWallet(Box::new(row.clone()))],
            event,
        )
        .await
        .map_err(KeyAdminError::from)?;
    Ok(CreatedWallet {
        row,
        mnemonic: phrase,
    })
}

/// An account to derive.
pub struct NewAccount {
    /// The chain.
    pub chain: &'static dyn Chain,
    /// Account index in the chain's default path (default 0); give this or `path`.
    pub index: Option<u32>,
    /// A full derivation path.
    pub path: Option<String>,
    /// Key name (default: from the wallet's name, the chain and the path).
    pub name: Option<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Who may sign (normalized entries).
    pub signers: Vec<String>,
    /// Chain ids the key may sign for (a chain that reads the option `chain_ids`); empty
    /// admits any.
    pub chain_ids: Vec<u64>,
    /// The chain's own options (see `Chain::account_options`).
    pub options: AccountOptions,
}

/// Refuses an option of another chain: names the chain it belongs to and all its options.
fn check_options(chain: &dyn Chain, given: &[&str]) -> Result<(), WalletError> {
    for name in given {
        if chain.account_options().contains(name) {
            continue;
        }
        let message = match chains::ALL
            .iter()
            .find(|c| c.account_options().contains(name))
        {
            Some(owner) => format!(
                "{} apply to {} accounts only",
                owner.account_options().join(" and "),
                owner.name()
            ),
            None => format!("{name} is not an option of {} accounts", chain.name()),
        };
        return Err(WalletError::Invalid(message));
    }
    Ok(())
}

/// The account's settings and derivation path, from its options and its index or path.
fn plan(new: &NewAccount) -> Result<(AccountSettings, DerivationPath), WalletError> {
    let mut given: Vec<&str> = new.options.keys().copied().collect();
    if !new.chain_ids.is_empty() {
        given.push("chain_ids");
    }
    check_options(new.chain, &given)?;
    let settings = new.chain.account_settings(&new.options)?;
    let path = match (new.index, new.path.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(WalletError::Invalid("give index or path, not both".into()));
        }
        (_, Some(p)) => hd::parse_path(p)?,
        (index, None) => {
            let index = index.unwrap_or(0);
            if index >= 0x8000_0000 {
                return Err(WalletError::Invalid("index must be below 2^31".into()));
            }
            hd::parse_path(&new.chain.account_path(&settings, index)?)?
        }
    };
    new.chain.check_path(&path)?;
    Ok((settings, path))
}

/// Derives an account from a wallet and records it as a key, in one audited transaction.
pub async fn create_account(
    path: &SigningPath,
    software: &SoftwareBackend,
    principal: &Principal,
    wallet_id: &str,
    new: NewAccount,
) -> Result<(KeyMeta, AccountRow), WalletError> {
    let chain = new.chain;
    let (settings, hd_path) = plan(&new)?;
    let wallet = path
        .store()
        .wallet(wallet_id)
        .await?
        .ok_or_else(|| WalletError::NotFound(wallet_id.to_string()))?;
    let path_text = hd::format_path(&hd_path);
    let name = match new.name {
        Some(n) => n,
        None => format!(
            "{}.{}.{}",
            wallet.name,
            chain.name(),
            path_text
                .trim_start_matches("m/")
                .replace('\'', "h")
                .replace('/', ".")
        ),
    };
    admin::check_name(&name).map_err(WalletError::Invalid)?;
    admin::check_labels(&new.labels).map_err(WalletError::Invalid)?;
    let key_id = admin::new_key_id();
    let made = derive(software, &wallet, chain, &key_id, hd_path).await?;
    let address = chain.address(&made.public_key, &settings)?;
    let (now, _) = crate::clock::now();
    let account = AccountRow {
        key_id: key_id.clone(),
        wallet_id: wallet.id.clone(),
        chain: chain.name().into(),
        path: path_text.clone(),
        address: address.clone(),
        chain_ids: serde_json::to_string(&new.chain_ids).unwrap_or_else(|_| "[]".into()),
        settings: serde_json::to_string(&settings).unwrap_or_else(|_| "{}".into()),
        created_at: now,
    };
    let mut details = json!({
        "wallet_id": wallet.id,
        "chain": chain.name(),
        "path": path_text,
        "address": address,
        "chain_ids": new.chain_ids,
    });
    if !settings.is_empty() {
        details[chain.name()] = serde_json::Value::Object(settings);
    }
    let extras = KeyExtras {
        changes: vec![StateChange::InsertWalletAccount(Box::new(account.clone()))],
        details,
    };
    let key = NewKey {
        name,
        purpose: chain.purpose(),
        labels: new.labels,
        signers: new.signers,
    };
    let meta = admin::record_new_key_with(
        path,
        principal,
        key_id,
        key,
        chain.algorithm(),
        "software",
        made,
        "wallet.account.create",
        extras,
    )
    .await?;
    Ok((meta, account))
}

/// Opens the wallet's seed, derives the account key at `hd_path` and seals it as a software
/// slot, off the async runtime.
async fn derive(
    software: &SoftwareBackend,
    wallet: &WalletRow,
    chain: &'static dyn Chain,
    key_id: &str,
    hd_path: DerivationPath,
) -> Result<GeneratedKey, WalletError> {
    let software = software.clone();
    let (wid, kid, seed_blob) = (wallet.id.clone(), key_id.to_string(), wallet.seed.clone());
    tokio::task::spawn_blocking(move || {
        let seed = software.open_secret(&wid, SEED_KIND, &seed_blob)?;
        let scalar = chain.derive_key(&seed, &hd_path)?;
        Ok::<_, WalletError>(software.import_raw(&kid, chain.algorithm(), scalar.as_ref())?)
    })
    .await
    .map_err(|e| KeyError::Unavailable(format!("derivation task failed: {e}")))?
}

/// The chain ids a key may sign for: empty when the key is not restricted (or is not a
/// wallet account).
pub async fn allowed_chain_ids(path: &SigningPath, key_id: &str) -> Result<Vec<u64>, StoreError> {
    match path.store().account_of_key(key_id).await? {
        Some(a) => serde_json::from_str(&a.chain_ids)
            .map_err(|e| StoreError::Corrupt(format!("account {key_id} chain ids: {e}"))),
        None => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chains::{bitcoin::Bitcoin, ethereum::Ethereum, solana::Solana};

    fn account(chain: &'static dyn Chain, options: &[(&'static str, &str)]) -> NewAccount {
        NewAccount {
            chain,
            index: None,
            path: None,
            name: None,
            labels: BTreeMap::new(),
            signers: Vec::new(),
            chain_ids: Vec::new(),
            options: options.iter().map(|(k, v)| (*k, (*v).into())).collect(),
        }
    }

    fn invalid(new: &NewAccount) -> String {
        match plan(new) {
            Err(WalletError::Invalid(m)) => m,
            Err(other) => panic!("expected Invalid, got {other:?}"),
            Ok(_) => panic!("expected an error"),
        }
    }

    #[test]
    fn bitcoin_settings_choose_the_default_path_and_default_to_mainnet_p2wpkh() {
        let (settings, path) = plan(&account(&Bitcoin, &[])).unwrap();
        assert_eq!(settings["network"], "bitcoin");
        assert_eq!(settings["address_type"], "p2wpkh");
        assert_eq!(hd::format_path(&path), "m/84'/0'/0'/0/0");
        let mut new = account(
            &Bitcoin,
            &[("network", "regtest"), ("address_type", "p2tr")],
        );
        new.index = Some(3);
        let (settings, path) = plan(&new).unwrap();
        assert_eq!(settings["network"], "regtest");
        assert_eq!(hd::format_path(&path), "m/86'/1'/0'/0/3");
        assert!(invalid(&account(&Bitcoin, &[("network", "dogecoin")])).contains("dogecoin"));
    }

    #[test]
    fn options_of_another_chain_are_refused_naming_their_chain() {
        assert_eq!(
            invalid(&account(&Ethereum, &[("network", "regtest")])),
            "network and address_type apply to bitcoin accounts only"
        );
        let mut new = account(&Bitcoin, &[]);
        new.chain_ids = vec![1];
        assert_eq!(invalid(&new), "chain_ids apply to ethereum accounts only");
        let mut new = account(&Ethereum, &[]);
        new.chain_ids = vec![1];
        assert!(plan(&new).unwrap().0.is_empty());
    }

    #[test]
    fn paths_are_checked_by_the_chain_before_anything_is_looked_up() {
        let mut new = account(&Solana, &[]);
        assert_eq!(hd::format_path(&plan(&new).unwrap().1), "m/44'/501'/0'/0'");
        new.path = Some("m/44'/501'/0'/0".into());
        assert!(invalid(&new).contains("hardened steps only"));
        new.index = Some(1);
        assert_eq!(invalid(&new), "give index or path, not both");
        let mut new = account(&Ethereum, &[]);
        new.index = Some(0x8000_0000);
        assert_eq!(invalid(&new), "index must be below 2^31");
    }
}
