//! Key management: `/v1/keys...` (create, import, list, show, disable). Signing with a key
//! is in `signing`.

use super::one_of::{Algorithms, OneOf, Purposes};
use std::collections::BTreeMap;

use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::error::{ApiError, ApiResult};
use super::{ApiTags, BearerAuth, PublicKeyView, page_limit};
use crate::app::AppState;
use crate::auth::Role;
use crate::keys::{Algorithm, KeyMeta, Purpose};
use crate::lifecycle::keys::{self as admin, NewKey};
use crate::store::cursor;

/// Key management.
pub struct KeysApi;

/// A key as shown by the API.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct KeyView {
    /// Key id.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// `ed25519`, `secp256k1`, `p256`, `rsa-2048`, `rsa-3072` or `rsa-4096`.
    pub algorithm: String,
    /// What the key may sign: `raw` or `document`.
    pub purpose: String,
    /// Where the private key lives: `software` or a PKCS#11 backend's name.
    pub backend: String,
    /// `active` or `disabled`.
    pub status: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// The public key.
    pub public_key: PublicKeyView,
    /// Creation time.
    pub created_at: String,
    /// Who created it (`issuer|subject`).
    pub created_by: String,
    /// Last change.
    pub updated_at: String,
    /// Who may sign with it: `subject:<sub>`, `role:<role>` or `group:<name>` entries; empty
    /// admits every caller with the role `signer`.
    pub signers: Vec<String>,
}

impl KeyView {
    /// The API view of a key.
    pub fn from_meta(meta: &KeyMeta) -> ApiResult<Self> {
        Ok(KeyView {
            id: meta.id.clone(),
            name: meta.name.clone(),
            algorithm: meta.algorithm.to_string(),
            purpose: meta.purpose.to_string(),
            backend: meta.backend.clone(),
            status: meta.status.as_str().to_string(),
            labels: meta.labels.clone(),
            public_key: PublicKeyView {
                pem: meta.public_key.to_pem(),
                jwk: meta
                    .public_key
                    .to_jwk()
                    .map_err(|e| ApiError::internal("public key", e))?,
            },
            created_at: meta.created_at.clone(),
            created_by: meta.created_by.clone(),
            updated_at: meta.updated_at.clone(),
            signers: meta.signers.clone(),
        })
    }
}

/// Create a key.
#[derive(Debug, Clone, Object)]
pub struct CreateKeyRequest {
    /// Unique name: 1 to 100 characters of A-Z, a-z, 0-9, '.', '_' and '-'.
    #[oai(validator(pattern = r"^[A-Za-z0-9._-]{1,100}$"))]
    pub name: String,
    /// `ed25519`, `secp256k1`, `p256`, `rsa-2048`, `rsa-3072` or `rsa-4096`.
    pub algorithm: OneOf<Algorithms>,
    /// What the key may sign (default `raw`).
    pub purpose: Option<OneOf<Purposes>>,
    /// Free-form labels.
    pub labels: Option<BTreeMap<String, String>>,
    /// Who may sign with it: `subject:<sub>`, `role:<role>`, `group:<name>` (default: every
    /// caller with the role `signer`).
    #[oai(validator(
        max_items = 100,
        max_length = 256,
        pattern = r"^((subject|group):\S(.*\S)?|role:(admin|key-admin|policy-admin|signer|approver|auditor))$"
    ))]
    pub signers: Option<Vec<String>>,
    /// Where to generate it: `software` (default) or the name of a `[[keys.pkcs11]]` backend.
    pub backend: Option<String>,
}

/// Import a private key.
#[derive(Debug, Clone, Object)]
pub struct ImportKeyRequest {
    /// Unique name: 1 to 100 characters of A-Z, a-z, 0-9, '.', '_' and '-'.
    #[oai(validator(pattern = r"^[A-Za-z0-9._-]{1,100}$"))]
    pub name: String,
    /// PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`). Never echoed or stored unsealed.
    pub private_key_pem: String,
    /// If given, the key must be of this algorithm.
    pub algorithm: Option<OneOf<Algorithms>>,
    /// What the key may sign (default `raw`).
    pub purpose: Option<OneOf<Purposes>>,
    /// Free-form labels.
    pub labels: Option<BTreeMap<String, String>>,
    /// Who may sign with it: `subject:<sub>`, `role:<role>`, `group:<name>` (default: every
    /// caller with the role `signer`).
    #[oai(validator(
        max_items = 100,
        max_length = 256,
        pattern = r"^((subject|group):\S(.*\S)?|role:(admin|key-admin|policy-admin|signer|approver|auditor))$"
    ))]
    pub signers: Option<Vec<String>>,
}

/// A page of keys.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct KeyPage {
    /// Keys, ordered by id.
    pub items: Vec<KeyView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A created key.
#[derive(ApiResponse)]
pub enum Created {
    /// Created.
    #[oai(status = 201)]
    Created(Json<KeyView>),
}

pub(crate) fn parse_new_key(
    name: &str,
    purpose: Option<&str>,
    labels: Option<BTreeMap<String, String>>,
    signers: Option<Vec<String>>,
) -> ApiResult<NewKey> {
    let signers =
        crate::auth::signers::normalize(&signers.unwrap_or_default()).map_err(ApiError::invalid)?;
    admin::check_name(name).map_err(ApiError::invalid)?;
    let purpose: Purpose = match purpose {
        Some(p) => crate::chains::parse_purpose(p).map_err(ApiError::invalid)?,
        None => Purpose::Raw,
    };
    if !admin::SUPPORTED_PURPOSES.contains(&purpose) {
        let names: Vec<&str> = admin::SUPPORTED_PURPOSES
            .iter()
            .map(|p| p.as_str())
            .collect();
        return Err(ApiError::invalid(format!(
            "purpose {purpose} is not available on this server; available: {}",
            names.join(", ")
        )));
    }
    let labels = labels.unwrap_or_default();
    admin::check_labels(&labels).map_err(ApiError::invalid)?;
    Ok(NewKey {
        name: name.to_string(),
        purpose,
        labels,
        signers,
    })
}

#[OpenApi]
impl KeysApi {
    /// Create a key (roles: key-admin, admin). The private key is generated in the backend
    /// and never leaves it.
    #[oai(path = "/v1/keys", method = "post", tag = "ApiTags::Keys")]
    async fn create(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        body: Json<CreateKeyRequest>,
    ) -> ApiResult<Created> {
        let principal = auth.require(&[Role::KeyAdmin])?;
        let algorithm: Algorithm = body.algorithm.parse().map_err(ApiError::invalid)?;
        let new = parse_new_key(
            &body.name,
            body.purpose.as_deref(),
            body.labels.clone(),
            body.signers.clone(),
        )?;
        let backend = body.backend.as_deref().unwrap_or("software");
        if state.signing().keys().backend(backend).is_err() {
            return Err(ApiError::invalid(format!(
                "no key backend named {backend:?} is configured on this server"
            )));
        }
        let meta = admin::create_key(state.signing(), principal, new, algorithm, backend).await?;
        Ok(Created::Created(Json(KeyView::from_meta(&meta)?)))
    }

    /// Import a PKCS#8 private key into a software slot (roles: key-admin, admin). The key is
    /// sealed at once; the response never contains it.
    #[oai(path = "/v1/keys/import", method = "post", tag = "ApiTags::Keys")]
    async fn import(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        body: Json<ImportKeyRequest>,
    ) -> ApiResult<Created> {
        let principal = auth.require(&[Role::KeyAdmin])?;
        let Json(body) = body;
        let expected: Option<Algorithm> = body
            .algorithm
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(ApiError::invalid)?;
        let new = parse_new_key(
            &body.name,
            body.purpose.as_deref(),
            body.labels,
            body.signers,
        )?;
        let meta = admin::import_key(
            state.signing(),
            state.software(),
            principal,
            new,
            body.private_key_pem,
            expected,
        )
        .await?;
        Ok(Created::Created(Json(KeyView::from_meta(&meta)?)))
    }

    /// List keys, ordered by id. Admins, key-admins, policy-admins and auditors see every
    /// key; other callers see the keys whose signers admit them.
    #[oai(path = "/v1/keys", method = "get", tag = "ApiTags::Keys")]
    async fn list(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// Page size, 1 to 500 (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))]
        limit: Query<Option<u32>>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
    ) -> ApiResult<Json<KeyPage>> {
        let principal = auth.require(Role::ALL)?;
        let limit = page_limit(limit.0)?;
        let mut after = super::page_cursor(cursor.0.as_deref())?;
        // Keys the caller may not see are skipped; read on until the page is full.
        let mut items = Vec::new();
        let mut more = false;
        'pages: loop {
            let rows = state
                .signing()
                .store()
                .keys_page(after.as_deref(), limit + 1)
                .await?;
            let exhausted = rows.len() <= limit as usize;
            for row in rows.iter().take(limit as usize) {
                after = Some(row.id.clone());
                let meta = KeyMeta::from_row(row)?;
                if !crate::auth::signers::may_see(&meta.signers, principal) {
                    continue;
                }
                if items.len() == limit as usize {
                    more = true;
                    break 'pages;
                }
                items.push(KeyView::from_meta(&meta)?);
            }
            if exhausted {
                break;
            }
        }
        let next_cursor = if more {
            items.last().map(|k| cursor::encode(&k.id))
        } else {
            None
        };
        Ok(Json(KeyPage { items, next_cursor }))
    }

    /// Get a key with its public key as PEM and JWK (any role; a key the caller may not see
    /// is answered 404, as in the listing).
    #[oai(path = "/v1/keys/:id", method = "get", tag = "ApiTags::Keys")]
    async fn get(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<String>,
    ) -> ApiResult<Json<KeyView>> {
        let principal = auth.require(Role::ALL)?;
        let meta = visible_key(&state, principal, &id.0).await?;
        Ok(Json(KeyView::from_meta(&meta)?))
    }

    /// Disable a key for good (roles: key-admin, admin). It keeps its history and public key
    /// but never signs again.
    #[oai(path = "/v1/keys/:id/disable", method = "post", tag = "ApiTags::Keys")]
    async fn disable(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<String>,
    ) -> ApiResult<Json<KeyView>> {
        let principal = auth.require(&[Role::KeyAdmin])?;
        let meta = admin::disable_key(state.signing(), principal, &id.0).await?;
        Ok(Json(KeyView::from_meta(&meta)?))
    }
}

/// The key `id` if `principal` may see it (`auth::signers::may_see`); 404 otherwise, the same
/// answer as for a key that does not exist. Every route that reveals anything about a key
/// (its facts, policies, certificates, or a verification with it) goes through this.
pub(super) async fn visible_key(
    state: &AppState,
    principal: &crate::auth::Principal,
    id: &str,
) -> ApiResult<KeyMeta> {
    let not_found = || ApiError::not_found(format!("no key with id {id:?}"));
    let row = state
        .signing()
        .store()
        .key(id)
        .await?
        .ok_or_else(not_found)?;
    let meta = KeyMeta::from_row(&row)?;
    if !crate::auth::signers::may_see(&meta.signers, principal) {
        return Err(not_found());
    }
    Ok(meta)
}
