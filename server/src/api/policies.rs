//! Policies: `/v1/policies...` (upload, list, get, delete, dry-run evaluate) and a key's
//! bindings, `/v1/keys/{id}/policies`. Uploads need the role `policy-admin`, bindings
//! `key-admin`; every change is audited by the policy lifecycle layer.

use base64::Engine as _;
use keyward_policy::{PolicyInput, SignRequest};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::Value;

use super::error::{ApiError, ApiResult};
use super::{ApiTags, BearerAuth, page_limit};
use crate::app::AppState;
use crate::auth::Role;
use crate::lifecycle::policies::{self as lifecycle, NewBinding, Upload};
use crate::policy::{PolicyLimits, RequestedLimits};
use crate::store::{PolicyRow, cursor};

/// Policy upload, listing and evaluation.
pub struct PoliciesApi;

/// Sandbox limits of a policy.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct LimitsView {
    /// Fuel (roughly, WebAssembly instructions) per evaluation.
    pub fuel: u64,
    /// Wall-clock deadline per evaluation, milliseconds.
    pub timeout_ms: u64,
    /// Memory cap, bytes.
    pub memory_bytes: u64,
}

/// Limits asked for at upload; each at most the server's maximum. Omitted: server default.
#[derive(Debug, Clone, Object, Default)]
pub struct LimitsRequest {
    /// Fuel per evaluation.
    pub fuel: Option<u64>,
    /// Deadline, milliseconds.
    pub timeout_ms: Option<u64>,
    /// Memory cap, bytes.
    pub memory_bytes: Option<u64>,
}

/// A stored policy.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct PolicyInfo {
    /// Policy id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Version (unique per name).
    pub version: String,
    /// Description.
    pub description: String,
    /// SHA-256 of the module, hex.
    pub digest: String,
    /// Module size, bytes.
    pub size: i64,
    /// The limits it runs under.
    pub limits: LimitsView,
    /// Whether the module checks its settings when bound (`keyward_validate_settings`).
    pub validates_settings: bool,
    /// Upload time.
    pub created_at: String,
    /// Who uploaded it (`issuer|subject`).
    pub created_by: String,
    /// The trusted signer that signed the module; absent when the server needed no signature
    /// at upload, and for built-in policies.
    pub signed_by: Option<SignerView>,
}

/// A module's signer and signature.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct SignerView {
    /// The signer's Ed25519 public key, standard base64 of its SubjectPublicKeyInfo DER.
    pub public_key: String,
    /// The name `policy.trusted_signers` gave the key, when the module was uploaded.
    pub name: Option<String>,
    /// The signature over `"keyward policy module v1\0" || SHA-256(module)`, standard base64.
    pub signature: String,
}

impl PolicyInfo {
    fn from_row(row: &PolicyRow) -> ApiResult<Self> {
        let limits: PolicyLimits = serde_json::from_str(&row.limits)
            .map_err(|e| ApiError::internal("stored policy limits", e))?;
        Ok(PolicyInfo {
            id: row.id.clone(),
            name: row.name.clone(),
            version: row.version.clone(),
            description: row.description.clone(),
            digest: row.digest.clone(),
            size: row.size,
            limits: LimitsView {
                fuel: limits.fuel,
                timeout_ms: limits.timeout_ms,
                memory_bytes: limits.memory_bytes,
            },
            validates_settings: row.validates_settings,
            created_at: row.created_at.clone(),
            created_by: row.created_by.clone(),
            signed_by: row.signature.as_ref().map(|s| SignerView {
                public_key: s.signer_key.clone(),
                name: s.signer_name.clone(),
                signature: s.signature.clone(),
            }),
        })
    }
}

/// Upload a policy module.
#[derive(Debug, Clone, Object)]
pub struct UploadPolicyRequest {
    /// Name: 1 to 100 characters of A-Z, a-z, 0-9, '.', '_', '-' and '+'.
    #[oai(validator(pattern = r"^[A-Za-z0-9._+-]{1,100}$"))]
    pub name: String,
    /// Version, unique per name, e.g. `1.0.0`: 1 to 64 characters of A-Z, a-z, 0-9, '.', '_',
    /// '-' and '+'.
    #[oai(validator(pattern = r"^[A-Za-z0-9._+-]{1,64}$"))]
    pub version: String,
    /// What the policy does.
    pub description: Option<String>,
    /// The `.wasm` module (built for wasm32-unknown-unknown), standard base64.
    pub module: String,
    /// Limits to run under (default: the server's).
    pub limits: Option<LimitsRequest>,
    /// A trusted signer's detached Ed25519 signature over the module, standard base64 of
    /// 64 bytes, as `keyward policy sign` writes it. Needed when the server has
    /// `policy.trusted_signers`; ignored (and not recorded) otherwise.
    pub signature: Option<String>,
}

/// A page of policies.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct PolicyPage {
    /// Policies, ordered by id.
    pub items: Vec<PolicyInfo>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// One entry of a key's policy list.
#[derive(Debug, Clone, Object)]
pub struct BindingRequest {
    /// The policy.
    pub policy_id: String,
    /// Settings passed to the policy on every evaluation (checked by the policy now).
    pub settings: Option<Value>,
}

/// A key's ordered policy list.
#[derive(Debug, Clone, Object)]
pub struct SetKeyPoliciesRequest {
    /// Policies in evaluation order (empty: the server's default decision applies).
    pub policies: Vec<BindingRequest>,
}

/// A policy bound to a key.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct BindingView {
    /// Policy id.
    pub policy_id: String,
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Module SHA-256, hex.
    pub digest: String,
    /// Settings.
    pub settings: Value,
}

/// A key's policies, in evaluation order.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct KeyPolicies {
    /// Key id.
    pub key_id: String,
    /// The bound policies.
    pub policies: Vec<BindingView>,
}

/// Evaluate a policy on an input, without signing.
#[derive(Debug, Clone, Object)]
pub struct EvaluateRequest {
    /// A sign request as policies see it (see `policy-sdk/schema/input.schema.json`).
    pub request: Value,
    /// Settings to evaluate with.
    pub settings: Option<Value>,
}

/// What a policy decided.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct EvaluateResult {
    /// The decision document, e.g. `{"decision":"deny","reason":"..."}`.
    pub decision: Value,
    /// When the evaluation failed: what happened (the decision is then a deny whose reason
    /// is a code such as `policy_out_of_fuel`).
    #[oai(skip_serializing_if_is_none)]
    pub failure: Option<String>,
    /// Fuel consumed.
    pub fuel: u64,
    /// Wall time, microseconds.
    pub micros: u64,
    /// Lines the policy logged.
    pub logs: Vec<String>,
    /// Module SHA-256, hex.
    pub digest: String,
}

/// A created policy.
#[derive(ApiResponse)]
pub enum PolicyCreated {
    /// Created.
    #[oai(status = 201)]
    Created(Json<PolicyInfo>),
}

/// A deleted policy.
#[derive(ApiResponse)]
pub enum PolicyDeleted {
    /// Deleted.
    #[oai(status = 204)]
    Deleted,
}

fn binding_views(key_id: &str, bound: &[crate::policy::BoundPolicy]) -> KeyPolicies {
    KeyPolicies {
        key_id: key_id.to_string(),
        policies: bound
            .iter()
            .map(|b| BindingView {
                policy_id: b.policy.id.clone(),
                name: b.policy.name.clone(),
                version: b.policy.version.clone(),
                digest: b.policy.compiled.digest.clone(),
                settings: b.settings.clone(),
            })
            .collect(),
    }
}

#[OpenApi]
impl PoliciesApi {
    /// Upload a policy module (roles: policy-admin, admin). The module is checked (size,
    /// WebAssembly, ABI v1 exports, imports only from `keyward:host/v1`,
    /// `keyward_abi_version() == 1`) and compiled before it is stored. Under
    /// `policy.trusted_signers` it also needs `signature`: 403 `POLICY_SIGNATURE_REQUIRED`
    /// without one, 403 `POLICY_SIGNATURE_INVALID` when no trusted key verifies it.
    #[oai(path = "/v1/policies", method = "post", tag = "ApiTags::Policies")]
    async fn upload(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        body: Json<UploadPolicyRequest>,
    ) -> ApiResult<PolicyCreated> {
        let principal = auth.require(&[Role::PolicyAdmin])?;
        let Json(body) = body;
        let max = state.signing().policy().engine().limits().max_module_bytes;
        // Refuse oversized modules before decoding them.
        if body.module.len() / 4 * 3 > max + 3 {
            return Err(crate::policy::PolicyError::TooLarge {
                size: body.module.len() / 4 * 3,
                max,
            }
            .into());
        }
        let module = base64::engine::general_purpose::STANDARD
            .decode(body.module.trim())
            .map_err(|_| ApiError::bad_request("module must be standard base64"))?;
        let limits = body.limits.unwrap_or_default();
        let row = lifecycle::upload(
            state.signing(),
            principal,
            Upload {
                name: body.name,
                version: body.version,
                description: body.description.unwrap_or_default(),
                module,
                limits: RequestedLimits {
                    fuel: limits.fuel,
                    timeout_ms: limits.timeout_ms,
                    memory_bytes: limits.memory_bytes,
                },
                signature: body.signature,
            },
        )
        .await?;
        Ok(PolicyCreated::Created(Json(PolicyInfo::from_row(&row)?)))
    }

    /// List policies, ordered by id (any role).
    #[oai(path = "/v1/policies", method = "get", tag = "ApiTags::Policies")]
    async fn list(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// Page size, 1 to 500 (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))]
        limit: Query<Option<u32>>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
    ) -> ApiResult<Json<PolicyPage>> {
        auth.require(Role::ALL)?;
        let limit = page_limit(limit.0)?;
        let after = super::page_cursor(cursor.0.as_deref())?;
        let rows = state
            .signing()
            .store()
            .policies_page(after.as_deref(), limit + 1)
            .await?;
        let more = rows.len() > limit as usize;
        let items = rows
            .iter()
            .take(limit as usize)
            .map(PolicyInfo::from_row)
            .collect::<ApiResult<Vec<_>>>()?;
        let next_cursor = if more {
            items.last().map(|p| cursor::encode(&p.id))
        } else {
            None
        };
        Ok(Json(PolicyPage { items, next_cursor }))
    }

    /// Get a policy (any role).
    #[oai(path = "/v1/policies/:id", method = "get", tag = "ApiTags::Policies")]
    async fn get(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<String>,
    ) -> ApiResult<Json<PolicyInfo>> {
        auth.require(Role::ALL)?;
        let row = state
            .signing()
            .store()
            .policy(&id.0)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no policy with id {:?}", id.0)))?;
        Ok(Json(PolicyInfo::from_row(&row)?))
    }

    /// Delete a policy (roles: policy-admin, admin). Refused with 409 while it is bound.
    #[oai(
        path = "/v1/policies/:id",
        method = "delete",
        tag = "ApiTags::Policies"
    )]
    async fn delete(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<String>,
    ) -> ApiResult<PolicyDeleted> {
        let principal = auth.require(&[Role::PolicyAdmin])?;
        lifecycle::delete(state.signing(), principal, &id.0).await?;
        Ok(PolicyDeleted::Deleted)
    }

    /// Evaluate a policy on a given request, without signing (roles: policy-admin, admin).
    #[oai(
        path = "/v1/policies/:id/evaluate",
        method = "post",
        tag = "ApiTags::Policies"
    )]
    async fn evaluate(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<String>,
        body: Json<EvaluateRequest>,
    ) -> ApiResult<Json<EvaluateResult>> {
        auth.require(&[Role::PolicyAdmin])?;
        let Json(body) = body;
        let request: SignRequest = serde_json::from_value(body.request)
            .map_err(|e| ApiError::invalid(format!("request is not a policy sign request: {e}")))?;
        let input = PolicyInput {
            abi: keyward_policy::ABI_VERSION,
            request,
            settings: body.settings.unwrap_or(Value::Null),
        };
        let (policy, eval) = lifecycle::evaluate(state.signing(), &id.0, input).await?;
        Ok(Json(EvaluateResult {
            decision: serde_json::to_value(&eval.decision).unwrap_or(Value::Null),
            failure: eval.failure.map(|f| f.detail()),
            fuel: eval.fuel,
            micros: eval.micros,
            logs: eval.logs,
            digest: policy.compiled.digest.clone(),
        }))
    }

    /// Replace a key's ordered policy list (roles: key-admin, admin). Each policy checks its
    /// settings first; the list takes effect for the next sign request. Under
    /// `policy.trusted_signers` each uploaded module's recorded signature must verify with a
    /// key configured now (403 `POLICY_SIGNATURE_REQUIRED` / `POLICY_SIGNATURE_INVALID`).
    #[oai(
        path = "/v1/keys/:id/policies",
        method = "put",
        tag = "ApiTags::Policies"
    )]
    async fn set_key_policies(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<String>,
        body: Json<SetKeyPoliciesRequest>,
    ) -> ApiResult<Json<KeyPolicies>> {
        let principal = auth.require(&[Role::KeyAdmin])?;
        let list = body
            .0
            .policies
            .into_iter()
            .map(|b| NewBinding {
                policy_id: b.policy_id,
                settings: b.settings.unwrap_or(Value::Null),
            })
            .collect();
        let bound = lifecycle::bind(state.signing(), principal, &id.0, list).await?;
        let bound: Vec<_> = bound
            .into_iter()
            .map(|(row, policy)| crate::policy::BoundPolicy {
                policy,
                settings: serde_json::from_str(&row.settings).unwrap_or(Value::Null),
            })
            .collect();
        Ok(Json(binding_views(&id.0, &bound)))
    }

    /// A key's policies in evaluation order (any role).
    #[oai(
        path = "/v1/keys/:id/policies",
        method = "get",
        tag = "ApiTags::Policies"
    )]
    async fn key_policies(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<String>,
    ) -> ApiResult<Json<KeyPolicies>> {
        let principal = auth.require(Role::ALL)?;
        super::keys::visible_key(&state, principal, &id.0).await?;
        let bound = lifecycle::bound(state.signing(), &id.0).await?;
        Ok(Json(binding_views(&id.0, &bound)))
    }
}
