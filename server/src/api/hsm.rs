//! HSM (PKCS#11) operations: adopting an existing token key, and the admin listings of a
//! backend's slots and key objects. Every token call runs on a blocking thread.

use super::one_of::{OneOf, Purposes};
use std::collections::BTreeMap;

use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use super::error::{ApiError, ApiResult};
use super::keys::{Created, KeyView, parse_new_key};
use super::{ApiTags, BearerAuth};
use crate::app::AppState;
use crate::auth::Role;
use crate::keys::KeyError;
use crate::keys::pkcs11::{KeySelector, Pkcs11Backend};
use crate::lifecycle::keys as admin;

/// HSM operations.
pub struct HsmApi;

/// Adopt an existing private key from a PKCS#11 token.
#[derive(Debug, Clone, Object)]
pub struct AdoptKeyRequest {
    /// Unique Keyward name for the key: 1 to 100 characters of A-Z, a-z, 0-9, '.', '_' and
    /// '-'.
    #[oai(validator(pattern = r"^[A-Za-z0-9._-]{1,100}$"))]
    pub name: String,
    /// The PKCS#11 backend (a `[[keys.pkcs11]]` name).
    pub backend: String,
    /// The key's `CKA_LABEL` on the token (give this or `token_id`).
    pub token_label: Option<String>,
    /// The key's `CKA_ID` on the token, hex (give this or `token_label`).
    pub token_id: Option<String>,
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

/// A slot of a PKCS#11 module.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct SlotInfoView {
    /// Slot id given by the module (tokens are found by label, not by this number).
    pub slot_id: u64,
    /// Slot description.
    pub description: String,
    /// Whether a token is present.
    pub token_present: bool,
    /// Token label.
    pub token_label: Option<String>,
    /// Token manufacturer.
    pub manufacturer: Option<String>,
    /// Token model.
    pub model: Option<String>,
    /// Token serial number.
    pub serial_number: Option<String>,
    /// Whether the backend uses this token.
    pub configured: bool,
}

/// A key object on the token (no secret attribute is ever read).
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct TokenObjectView {
    /// `private_key` or `public_key`.
    pub class: String,
    /// PKCS#11 key type.
    pub key_type: String,
    /// `CKA_LABEL`.
    pub label: String,
    /// `CKA_ID`, hex.
    pub id: String,
    /// The Keyward algorithm, when Keyward can use the key.
    pub algorithm: Option<String>,
    /// `CKA_SIGN` (private keys).
    pub sign: Option<bool>,
    /// `CKA_SENSITIVE` (private keys).
    pub sensitive: Option<bool>,
    /// `CKA_EXTRACTABLE` (private keys).
    pub extractable: Option<bool>,
}

fn backend(state: &AppState, name: &str) -> ApiResult<std::sync::Arc<Pkcs11Backend>> {
    state
        .hsm(name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("no PKCS#11 backend named {name:?}")))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, KeyError> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| KeyError::Unavailable(format!("PKCS#11 task failed: {e}")))?
        .map_err(ApiError::from)
}

#[OpenApi]
impl HsmApi {
    /// Adopt an existing key from a PKCS#11 token by label or id (roles: key-admin, admin).
    /// The key must be sensitive, non-extractable and allowed to sign; its public key is
    /// read from the token.
    #[oai(path = "/v1/keys/adopt", method = "post", tag = "ApiTags::Keys")]
    async fn adopt(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        body: Json<AdoptKeyRequest>,
    ) -> ApiResult<Created> {
        let principal = auth.require(&[Role::KeyAdmin])?;
        let Json(body) = body;
        let new = parse_new_key(
            &body.name,
            body.purpose.as_deref(),
            body.labels,
            body.signers,
        )?;
        let selector = match (body.token_label, body.token_id) {
            (Some(label), None) if !label.is_empty() => KeySelector::Label(label),
            (None, Some(id)) => KeySelector::Id(
                hex::decode(id.trim())
                    .ok()
                    .filter(|b| !b.is_empty())
                    .ok_or_else(|| ApiError::invalid("token_id must be non-empty hex"))?,
            ),
            _ => {
                return Err(ApiError::invalid(
                    "give exactly one of token_label and token_id",
                ));
            }
        };
        let hsm = backend(&state, &body.backend)?;
        let name = hsm.config().name.clone();
        let adopted = blocking(move || hsm.adopt(&selector)).await?;
        let meta = admin::adopt_key(state.signing(), principal, new, &name, adopted).await?;
        Ok(Created::Created(Json(KeyView::from_meta(&meta)?)))
    }

    /// The slots and tokens of a PKCS#11 backend's module (role: admin).
    #[oai(
        path = "/v1/hsm/backends/:name/slots",
        method = "get",
        tag = "ApiTags::Hsm"
    )]
    async fn slots(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        name: Path<String>,
    ) -> ApiResult<Json<Vec<SlotInfoView>>> {
        auth.require(&[Role::Admin])?;
        let hsm = backend(&state, &name.0)?;
        let slots = blocking(move || hsm.slots()).await?;
        Ok(Json(
            slots
                .into_iter()
                .map(|s| SlotInfoView {
                    slot_id: s.slot_id,
                    description: s.description,
                    token_present: s.token_present,
                    token_label: s.token_label,
                    manufacturer: s.manufacturer,
                    model: s.model,
                    serial_number: s.serial_number,
                    configured: s.configured,
                })
                .collect(),
        ))
    }

    /// The key objects on a PKCS#11 backend's token (role: admin). Shows labels, ids and
    /// flags; never key values.
    #[oai(
        path = "/v1/hsm/backends/:name/objects",
        method = "get",
        tag = "ApiTags::Hsm"
    )]
    async fn objects(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        name: Path<String>,
    ) -> ApiResult<Json<Vec<TokenObjectView>>> {
        auth.require(&[Role::Admin])?;
        let hsm = backend(&state, &name.0)?;
        let objects = blocking(move || hsm.objects()).await?;
        Ok(Json(
            objects
                .into_iter()
                .map(|o| TokenObjectView {
                    class: o.class,
                    key_type: o.key_type,
                    label: o.label,
                    id: o.id,
                    algorithm: o.algorithm,
                    sign: o.sign,
                    sensitive: o.sensitive,
                    extractable: o.extractable,
                })
                .collect(),
        ))
    }
}
