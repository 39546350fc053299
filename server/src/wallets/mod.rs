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
use crate::chains::bitcoin::{BitcoinAccount, ScriptKind};
use crate::chains::hd::{self, HdError, Phrase};
use crate::keys::{KeyError, KeyMeta, SoftwareBackend};
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
    /// The chain exists in the API but accounts for it are not available yet.
    #[error("{0} accounts are not supported yet")]
    ChainNotSupported(&'static str),
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

impl From<StoreError> for WalletError {
    fn from(e: StoreError) -> Self {
        WalletError::Recording(e.into())
    }
}

/// Chains an account can be derived for. New chains are added here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chain {
    /// Ethereum and EVM chains: secp256k1 at `m/44'/60'/0'/0/{index}`.
    Ethereum,
    /// Bitcoin: secp256k1, BIP-84 P2WPKH at `m/84'/0'/0'/0/{index}` (or BIP-86 P2TR).
    Bitcoin,
    /// Solana: Ed25519 (SLIP-0010) at `m/44'/501'/{index}'/0'`.
    Solana,
}

impl Chain {
    /// The chain's plug-in (name, purpose, algorithm, default path).
    pub fn plugin(self) -> &'static dyn crate::chains::Chain {
        match self {
            Chain::Ethereum => &crate::chains::ethereum::Ethereum,
            Chain::Bitcoin => &crate::chains::bitcoin::Bitcoin,
            Chain::Solana => &crate::chains::solana::Solana,
        }
    }

    /// The name in the API and the database.
    pub fn as_str(self) -> &'static str {
        self.plugin().name()
    }

    /// The default derivation path of account `index`.
    pub fn default_path(self, index: u32) -> String {
        self.plugin().default_path(index)
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
    pub chain: Chain,
    /// The derivation path.
    pub path: DerivationPath,
    /// Key name (default: from the wallet's name, the chain and the path).
    pub name: Option<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Who may sign (normalized entries).
    pub signers: Vec<String>,
    /// Chain ids the key may sign for (Ethereum); empty admits any.
    pub chain_ids: Vec<u64>,
    /// Bitcoin: the script kind and network (default P2WPKH on mainnet).
    pub bitcoin: Option<(ScriptKind, bitcoin::Network)>,
}

/// Derives an account from a wallet and records it as a key, in one audited transaction.
pub async fn create_account(
    path: &SigningPath,
    software: &SoftwareBackend,
    principal: &Principal,
    wallet_id: &str,
    new: NewAccount,
) -> Result<(KeyMeta, AccountRow), WalletError> {
    let (purpose, algorithm) = (new.chain.plugin().purpose(), new.chain.plugin().algorithm());
    if new.chain != Chain::Bitcoin && new.bitcoin.is_some() {
        return Err(WalletError::Invalid(
            "network and address_type apply to bitcoin accounts only".into(),
        ));
    }
    // SLIP-0010 Ed25519 derivation has hardened steps only.
    let ed25519_steps: Option<Vec<u32>> = match new.chain {
        Chain::Solana => Some(
            crate::chains::solana::slip10::parse_path(&hd::format_path(&new.path))
                .map_err(|e| WalletError::Invalid(e.to_string()))?,
        ),
        _ => None,
    };
    if new.chain != Chain::Ethereum && !new.chain_ids.is_empty() {
        return Err(WalletError::Invalid(
            "chain_ids apply to ethereum accounts only".into(),
        ));
    }
    let wallet = path
        .store()
        .wallet(wallet_id)
        .await?
        .ok_or_else(|| WalletError::NotFound(wallet_id.to_string()))?;
    let path_text = hd::format_path(&new.path);
    let name = match new.name {
        Some(n) => n,
        None => format!(
            "{}.{}.{}",
            wallet.name,
            new.chain.as_str(),
            path_text
                .trim_start_matches("m/")
                .replace('\'', "h")
                .replace('/', ".")
        ),
    };
    admin::check_name(&name).map_err(WalletError::Invalid)?;
    admin::check_labels(&new.labels).map_err(WalletError::Invalid)?;
    let key_id = admin::new_key_id();
    let software = software.clone();
    let (wid, kid, hd_path) = (wallet.id.clone(), key_id.clone(), new.path.clone());
    let seed_blob = wallet.seed.clone();
    let made = tokio::task::spawn_blocking(move || {
        let seed = software.open_secret(&wid, SEED_KIND, &seed_blob)?;
        let scalar = match &ed25519_steps {
            Some(steps) => crate::chains::solana::slip10::derive(&seed, steps).0,
            None => hd::derive_secp256k1(&seed, &hd_path)?,
        };
        Ok::<_, WalletError>(software.import_raw(&kid, algorithm, scalar.as_ref())?)
    })
    .await
    .map_err(|e| KeyError::Unavailable(format!("derivation task failed: {e}")))??;
    let bitcoin = new.chain == Chain::Bitcoin;
    let (kind, network) = new
        .bitcoin
        .unwrap_or((ScriptKind::P2wpkh, bitcoin::Network::Bitcoin));
    let address = match new.chain {
        Chain::Ethereum => crate::chains::ethereum::address_of(&made.public_key)?.to_checksum(None),
        Chain::Bitcoin => {
            let sec1 = made.public_key.secp256k1_sec1(true)?;
            BitcoinAccount::new(&sec1, kind, network)
                .map_err(|e| WalletError::Invalid(e.to_string()))?
                .address()
                .to_string()
        }
        Chain::Solana => crate::chains::solana::address(&made.public_key.ed25519_bytes()?),
    };
    let (now, _) = crate::clock::now();
    let account = AccountRow {
        key_id: key_id.clone(),
        wallet_id: wallet.id.clone(),
        chain: new.chain.as_str().into(),
        path: path_text.clone(),
        address: address.clone(),
        chain_ids: serde_json::to_string(&new.chain_ids).unwrap_or_else(|_| "[]".into()),
        created_at: now,
    };
    let mut changes = vec![StateChange::InsertWalletAccount(Box::new(account.clone()))];
    if bitcoin {
        changes.push(StateChange::InsertBitcoinAccount(Box::new(
            crate::store::bitcoin::BitcoinAccountRow {
                key_id: key_id.clone(),
                network: crate::chains::bitcoin::account::network_name(network).into(),
                address_type: kind.as_str().into(),
            },
        )));
    }
    let extras = KeyExtras {
        changes,
        details: json!({
            "wallet_id": wallet.id,
            "chain": new.chain.as_str(),
            "path": path_text,
            "address": address,
            "chain_ids": new.chain_ids,
            "bitcoin": bitcoin.then(|| json!({
                "network": crate::chains::bitcoin::account::network_name(network),
                "address_type": kind.as_str(),
            })),
        }),
    };
    let key = NewKey {
        name,
        purpose,
        labels: new.labels,
        signers: new.signers,
    };
    let meta = admin::record_new_key_with(
        path,
        principal,
        key_id,
        key,
        algorithm,
        "software",
        made,
        "wallet.account.create",
        extras,
    )
    .await?;
    Ok((meta, account))
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
