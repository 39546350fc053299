//! HD wallets and their accounts: `/v1/wallets...` (key administrators).
//!
//! A mnemonic is returned once, in the creation response, and only when asked for with
//! `reveal_mnemonic: true`; no other response, log line or audit record contains it.

use std::collections::BTreeMap;

use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use zeroize::Zeroizing;

use super::error::{ApiError, ApiResult};
use super::keys::KeyView;
use super::{ApiTags, BearerAuth, page_limit};
use crate::app::AppState;
use crate::auth::Role;
use crate::chains::{AccountOptions, Chain};
use crate::keys::KeyMeta;
use crate::store::cursor;
use crate::store::wallets::{AccountRow, WalletRow};
use crate::wallets::{self, NewAccount, NewWallet};

/// HD wallets.
pub struct WalletsApi;

/// Create a wallet, or import one from its mnemonic.
#[derive(Object)]
pub struct CreateWalletRequest {
    /// Unique name: 1 to 100 characters of A-Z, a-z, 0-9, '.', '_' and '-'.
    #[oai(validator(pattern = r"^[A-Za-z0-9._-]{1,100}$"))]
    pub name: String,
    /// Words of a new mnemonic: 12 (default), 15, 18, 21 or 24.
    #[oai(validator(minimum(value = "12"), maximum(value = "24"), multiple_of = "3"))]
    pub words: Option<u32>,
    /// Import this BIP-39 English mnemonic instead of generating one. Never echoed or stored;
    /// only the sealed seed is kept.
    pub mnemonic: Option<String>,
    /// Optional BIP-39 passphrase ("25th word"). Not stored: the seed depends on it.
    pub passphrase: Option<String>,
    /// Return the new mnemonic in this response, once (default false). Write it down: it is
    /// never shown again.
    pub reveal_mnemonic: Option<bool>,
    /// Free-form labels.
    pub labels: Option<BTreeMap<String, String>>,
}

/// A wallet.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct WalletView {
    /// Wallet id.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Words of its mnemonic.
    pub words: u32,
    /// Whether a BIP-39 passphrase was used.
    pub passphrase: bool,
    /// `generated` or `imported`.
    pub origin: String,
    /// BIP-32 master key fingerprint, hex.
    pub fingerprint: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Creation time.
    pub created_at: String,
    /// Who created it (`issuer|subject`).
    pub created_by: String,
}

impl WalletView {
    fn from_row(row: &WalletRow) -> Self {
        WalletView {
            id: row.id.clone(),
            name: row.name.clone(),
            words: row.words as u32,
            passphrase: row.passphrase,
            origin: row.origin.clone(),
            fingerprint: row.fingerprint.clone(),
            labels: serde_json::from_str(&row.labels).unwrap_or_default(),
            created_at: row.created_at.clone(),
            created_by: row.created_by.clone(),
        }
    }
}

/// A created wallet.
#[derive(Object)]
#[oai(skip_serializing_if_is_none)]
pub struct CreatedWalletView {
    /// The wallet.
    pub wallet: WalletView,
    /// The mnemonic, only when `reveal_mnemonic` was true. Shown this once.
    #[oai(skip_serializing_if_is_none)]
    pub mnemonic: Option<String>,
}

/// A wallet with its accounts.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct WalletDetail {
    /// The wallet.
    pub wallet: WalletView,
    /// Its accounts, oldest first.
    pub accounts: Vec<AccountView>,
}

/// A page of wallets.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct WalletPage {
    /// Wallets, ordered by id.
    pub items: Vec<WalletView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Chains accounts are derived for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum ChainName {
    /// Ethereum and EVM chains.
    Ethereum,
    /// Bitcoin: BIP-84 P2WPKH (default) or BIP-86 P2TR.
    Bitcoin,
    /// Solana: SLIP-0010 Ed25519.
    Solana,
}

impl ChainName {
    /// The registered chain of this name (the API name is the registry's name).
    fn chain(self) -> ApiResult<&'static dyn Chain> {
        use poem_openapi::types::ToJSON;
        let name = self.to_json();
        name.as_ref()
            .and_then(|n| n.as_str())
            .and_then(crate::chains::named)
            .ok_or_else(|| {
                ApiError::internal("chain registry", format!("{name:?} is not registered"))
            })
    }
}

/// Derive an account.
#[derive(Debug, Clone, Object)]
pub struct CreateAccountRequest {
    /// The chain.
    pub chain: ChainName,
    /// Account index in the chain's default path (`m/44'/60'/0'/0/{index}` for Ethereum);
    /// default 0. Give `index` or `path`, not both.
    pub index: Option<u32>,
    /// A full BIP-32 derivation path, e.g. `m/44'/60'/1'/0/0`.
    pub path: Option<String>,
    /// Key name (default `<wallet>.<chain>.<path>`): 1 to 100 characters of A-Z, a-z, 0-9,
    /// '.', '_' and '-'.
    #[oai(validator(pattern = r"^[A-Za-z0-9._-]{1,100}$"))]
    pub name: Option<String>,
    /// Labels of the key.
    pub labels: Option<BTreeMap<String, String>>,
    /// Who may sign with it: `subject:<sub>`, `role:<role>`, `group:<name>` (default: every
    /// caller with the role `signer`).
    #[oai(validator(
        max_items = 100,
        max_length = 256,
        pattern = r"^((subject|group):\S(.*\S)?|role:(admin|key-admin|policy-admin|signer|approver|auditor))$"
    ))]
    pub signers: Option<Vec<String>>,
    /// Ethereum: the chain ids this key may sign for (default: any).
    pub chain_ids: Option<Vec<u64>>,
    /// Bitcoin: `bitcoin` (mainnet, default), `testnet`, `testnet4`, `signet` or `regtest`.
    pub network: Option<String>,
    /// Bitcoin: `p2wpkh` (BIP-84, default) or `p2tr` (BIP-86 taproot key path).
    pub address_type: Option<String>,
}

/// An account: a key derived from a wallet.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct AccountView {
    /// The key's id (sign with `/v1/keys/{key_id}/...`).
    pub key_id: String,
    /// The wallet.
    pub wallet_id: String,
    /// The chain.
    pub chain: String,
    /// Derivation path.
    pub path: String,
    /// The address (EIP-55 checksummed for Ethereum).
    pub address: String,
    /// The public key, 0x-hex: compressed SEC1 (secp256k1), or the 32 bytes of an Ed25519 key.
    pub public_key: String,
    /// Chain ids the key may sign for; empty admits any.
    pub chain_ids: Vec<u64>,
    /// Creation time.
    pub created_at: String,
}

impl AccountView {
    fn new(row: &AccountRow, meta: &KeyMeta) -> ApiResult<Self> {
        let point = match meta.algorithm {
            crate::keys::Algorithm::Ed25519 => meta.public_key.ed25519_bytes().map(|b| b.to_vec()),
            _ => meta.public_key.secp256k1_sec1(true),
        }
        .map_err(|e| ApiError::internal("account public key", e))?;
        Ok(AccountView {
            key_id: row.key_id.clone(),
            wallet_id: row.wallet_id.clone(),
            chain: row.chain.clone(),
            path: row.path.clone(),
            address: row.address.clone(),
            public_key: format!("0x{}", hex::encode(point)),
            chain_ids: serde_json::from_str(&row.chain_ids).unwrap_or_default(),
            created_at: row.created_at.clone(),
        })
    }
}

/// A created account with its key.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct CreatedAccount {
    /// The account.
    pub account: AccountView,
    /// The key it is.
    pub key: KeyView,
}

/// A created wallet.
#[derive(ApiResponse)]
pub enum WalletCreated {
    /// Created.
    #[oai(status = 201)]
    Created(Json<CreatedWalletView>),
}

/// A created account.
#[derive(ApiResponse)]
pub enum AccountCreated {
    /// Created.
    #[oai(status = 201)]
    Created(Json<CreatedAccount>),
}

const READERS: &[Role] = &[Role::KeyAdmin, Role::Auditor];

#[OpenApi]
impl WalletsApi {
    /// Create an HD wallet (roles: key-admin, admin): a new BIP-39 mnemonic, or an imported
    /// one. The seed is sealed like a software key; the mnemonic is returned only here, and
    /// only with `reveal_mnemonic: true`.
    #[oai(path = "/v1/wallets", method = "post", tag = "ApiTags::Wallets")]
    async fn create(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        body: Json<CreateWalletRequest>,
    ) -> ApiResult<WalletCreated> {
        let principal = auth.require(&[Role::KeyAdmin])?;
        let Json(body) = body;
        let words = body.words.unwrap_or(12) as usize;
        let new = NewWallet {
            name: body.name,
            words,
            mnemonic: body.mnemonic.map(Zeroizing::new),
            passphrase: Zeroizing::new(body.passphrase.unwrap_or_default()),
            labels: body.labels.unwrap_or_default(),
        };
        let created = wallets::create_wallet(
            state.signing(),
            state.software(),
            principal,
            new,
            body.reveal_mnemonic.unwrap_or(false),
        )
        .await?;
        Ok(WalletCreated::Created(Json(CreatedWalletView {
            wallet: WalletView::from_row(&created.row),
            mnemonic: created.mnemonic.map(|m| m.to_string()),
        })))
    }

    /// List wallets, ordered by id (roles: key-admin, auditor, admin).
    #[oai(path = "/v1/wallets", method = "get", tag = "ApiTags::Wallets")]
    async fn list(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// Page size, 1 to 500 (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))]
        limit: Query<Option<u32>>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
    ) -> ApiResult<Json<WalletPage>> {
        auth.require(READERS)?;
        let limit = page_limit(limit.0)?;
        let after = super::page_cursor(cursor.0.as_deref())?;
        let rows = state
            .signing()
            .store()
            .wallets_page(after.as_deref(), limit + 1)
            .await?;
        let more = rows.len() > limit as usize;
        let items: Vec<WalletView> = rows
            .iter()
            .take(limit as usize)
            .map(WalletView::from_row)
            .collect();
        let next_cursor = if more {
            items.last().map(|w| cursor::encode(&w.id))
        } else {
            None
        };
        Ok(Json(WalletPage { items, next_cursor }))
    }

    /// Get a wallet and its accounts (roles: key-admin, auditor, admin).
    #[oai(path = "/v1/wallets/:id", method = "get", tag = "ApiTags::Wallets")]
    async fn get(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<String>,
    ) -> ApiResult<Json<WalletDetail>> {
        auth.require(READERS)?;
        let row = state
            .signing()
            .store()
            .wallet(&id.0)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no wallet with id {:?}", id.0)))?;
        let mut accounts = Vec::new();
        for account in state.signing().store().wallet_accounts(&row.id).await? {
            let key = state
                .signing()
                .store()
                .key(&account.key_id)
                .await?
                .ok_or_else(|| ApiError::internal("account key", "missing key row"))?;
            accounts.push(AccountView::new(&account, &KeyMeta::from_row(&key)?)?);
        }
        Ok(Json(WalletDetail {
            wallet: WalletView::from_row(&row),
            accounts,
        }))
    }

    /// Derive an account from a wallet (roles: key-admin, admin). The account is a key of the
    /// chain's purpose (`ethereum`, `bitcoin`, `solana`), so signers, policies, approvals and
    /// audit apply as for any key.
    #[oai(
        path = "/v1/wallets/:id/accounts",
        method = "post",
        tag = "ApiTags::Wallets"
    )]
    async fn create_account(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<String>,
        body: Json<CreateAccountRequest>,
    ) -> ApiResult<AccountCreated> {
        let principal = auth.require(&[Role::KeyAdmin])?;
        let Json(body) = body;
        let signers = crate::auth::signers::normalize(&body.signers.unwrap_or_default())
            .map_err(ApiError::invalid)?;
        let mut options = AccountOptions::new();
        for (name, value) in [
            ("network", body.network),
            ("address_type", body.address_type),
        ] {
            if let Some(v) = value {
                options.insert(name, v.into());
            }
        }
        let new = NewAccount {
            chain: body.chain.chain()?,
            index: body.index,
            path: body.path,
            name: body.name,
            labels: body.labels.unwrap_or_default(),
            signers,
            chain_ids: body.chain_ids.unwrap_or_default(),
            options,
        };
        let (meta, account) =
            wallets::create_account(state.signing(), state.software(), principal, &id.0, new)
                .await?;
        Ok(AccountCreated::Created(Json(CreatedAccount {
            account: AccountView::new(&account, &meta)?,
            key: KeyView::from_meta(&meta)?,
        })))
    }
}

#[cfg(test)]
mod tests {
    use poem_openapi::types::{ParseFromJSON, ToJSON};

    #[test]
    fn every_api_chain_name_is_registered() {
        for name in [ChainName::Ethereum, ChainName::Bitcoin, ChainName::Solana] {
            let chain = name.chain().unwrap();
            assert_eq!(name.to_json(), Some(chain.name().into()));
        }
    }

    use super::*;

    #[test]
    fn every_registered_chain_can_have_accounts_and_every_api_name_is_registered() {
        for chain in crate::chains::ALL {
            let name = ChainName::parse_from_json(Some(chain.name().into()))
                .unwrap_or_else(|_| panic!("{} is missing from ChainName", chain.name()));
            assert_eq!(name.chain().unwrap().name(), chain.name());
            assert_eq!(name.to_json(), Some(chain.name().into()));
        }
    }
}
