//! Who the caller is (`/v1/whoami`) and who may sign with a key (`/v1/keys/{id}/signers`).

use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use super::error::{ApiError, ApiResult};
use super::keys::KeyView;
use super::{ApiTags, BearerAuth};
use crate::app::AppState;
use crate::auth::Role;
use crate::lifecycle::keys as admin;

/// Identity and per-key access control.
pub struct IdentityApi;

/// The authenticated caller, as Keyward sees them.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct WhoAmI {
    /// Token issuer (`iss`).
    pub issuer: String,
    /// Subject (`sub`).
    pub subject: String,
    /// Keyward roles, after the issuer's `role_map`.
    pub roles: Vec<String>,
    /// Groups from the issuer's `groups_claim`.
    pub groups: Vec<String>,
    /// `email` claim.
    #[oai(skip_serializing_if_is_none)]
    pub email: Option<String>,
    /// `name` claim.
    #[oai(skip_serializing_if_is_none)]
    pub name: Option<String>,
    /// `acr` claim.
    #[oai(skip_serializing_if_is_none)]
    pub acr: Option<String>,
    /// `amr` claim.
    pub amr: Vec<String>,
}

/// A key's new signers list.
#[derive(Debug, Clone, Object)]
pub struct SignersBody {
    /// Entries `subject:<sub>`, `role:<role>` or `group:<name>`, at most 100. An empty list
    /// admits every caller with the role `signer`.
    #[oai(validator(
        max_items = 100,
        max_length = 256,
        pattern = r"^((subject|group):\S(.*\S)?|role:(admin|key-admin|policy-admin|signer|approver|auditor))$"
    ))]
    pub signers: Vec<String>,
}

#[OpenApi]
impl IdentityApi {
    /// The caller's identity: subject, issuer, roles, groups and the claims handed to
    /// policies (any authenticated caller, with or without a role).
    #[oai(path = "/v1/whoami", method = "get", tag = "ApiTags::Identity")]
    async fn whoami(&self, auth: BearerAuth) -> ApiResult<Json<WhoAmI>> {
        let p = &auth.0;
        Ok(Json(WhoAmI {
            issuer: p.issuer.clone(),
            subject: p.subject.clone(),
            roles: p.roles.iter().map(|r| r.as_str().to_string()).collect(),
            groups: p.groups.clone(),
            email: p.email.clone(),
            name: p.name.clone(),
            acr: p.acr.clone(),
            amr: p.amr.clone(),
        }))
    }

    /// Replace who may sign with a key (roles: key-admin, admin). Audited as `key.signers`
    /// with the list before and after.
    #[oai(path = "/v1/keys/:id/signers", method = "put", tag = "ApiTags::Keys")]
    async fn set_signers(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<String>,
        body: Json<SignersBody>,
    ) -> ApiResult<Json<KeyView>> {
        let principal = auth.require(&[Role::KeyAdmin])?;
        let signers = crate::auth::signers::normalize(&body.signers).map_err(ApiError::invalid)?;
        let meta = admin::set_signers(state.signing(), principal, &id.0, signers).await?;
        Ok(Json(KeyView::from_meta(&meta)?))
    }
}
