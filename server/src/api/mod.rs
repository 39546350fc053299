//! The HTTP API: one module per OpenAPI tag. Handlers parse input, check roles for
//! administrative operations, and call the layer below; signing goes through
//! `SigningPath::submit` only. Errors become HTTP in `error` alone.

mod allow;
pub mod audit;
pub mod bitcoin;
pub mod certificates;
pub mod csc;
mod csc_error;
pub mod documents;
pub mod error;
pub mod ethereum;
pub mod ethereum_signer;
pub mod hsm;
pub mod identity;
pub mod keys;
pub mod limits;
pub mod one_of;
pub mod policies;
pub mod policy_replay;
pub mod requests;
pub mod routes;
pub mod rpc_ethereum;
pub mod sign_route;
pub mod signing;
pub mod solana;
pub mod system;
pub mod ui;
mod validation;
pub mod wallets;

use poem::Request;
use poem_openapi::auth::Bearer;
use poem_openapi::{Object, SecurityScheme, Tags};

use crate::app::AppState;
use crate::auth::{Principal, Role};
use crate::error_code::ErrorCode;
use error::ApiError;

/// The OpenAPI tags.
#[derive(Tags)]
pub enum ApiTags {
    /// Create, import, list and disable keys.
    Keys,
    /// Sign and verify with keys.
    Signing,
    /// Requests waiting for approvers: approve, reject, cancel, follow.
    Approvals,
    /// Certificates of document keys and the internal CA.
    Certificates,
    /// Sign and verify documents (CMS).
    Documents,
    /// Read the hash-chained audit log.
    Audit,
    /// Upload WebAssembly policies and bind them to keys.
    Policies,
    /// Health.
    System,
    /// Who the caller is.
    Identity,
    /// PKCS#11 HSM backends: slots and token objects.
    Hsm,
    /// HD wallets (BIP-39 seeds) and the accounts derived from them.
    Wallets,
    /// Ethereum signing: transactions, EIP-191 messages, EIP-712 typed data.
    Ethereum,
    /// Bitcoin signing: PSBTs (P2WPKH, P2TR key path).
    Bitcoin,
    /// Solana signing: transactions and off-chain messages.
    Solana,
}

/// Bearer JWT from a configured issuer.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_bearer")]
pub struct BearerAuth(pub Principal);

async fn check_bearer(req: &Request, bearer: Bearer) -> poem::Result<Principal> {
    let state = req
        .data::<AppState>()
        .ok_or_else(|| ApiError::internal("server state missing", "no AppState"))?;
    match state.auth().verify(&bearer.token).await {
        Ok(p) => Ok(p),
        Err(e) => {
            record_unauthenticated(state, req, &e).await;
            Err(ApiError::from(e).into())
        }
    }
}

/// Records a refused token (401) in the audit log, rate-limited per client address and reason
/// (see `audit::refusals`); the token itself is never recorded.
pub(crate) async fn record_unauthenticated(
    state: &AppState,
    req: &Request,
    error: &crate::auth::AuthError,
) {
    if matches!(error, crate::auth::AuthError::Config(_)) {
        return;
    }
    let peer = req
        .remote_addr()
        .as_socket_addr()
        .map_or_else(|| "unknown".to_string(), |a| a.ip().to_string());
    let event = crate::audit::AuditEvent {
        action: "auth",
        outcome: "refused",
        actor: crate::audit::Actor {
            issuer: String::new(),
            subject: String::new(),
        },
        key_id: None,
        request_id: Some(crate::request_id::current()),
        details: serde_json::json!({
            "error_code": ErrorCode::Unauthenticated,
            "error": error.to_string(),
            "path": req.uri().path(),
            "client": peer,
        }),
    };
    state
        .signing()
        .audit()
        .record_refusal(&peer, ErrorCode::Unauthenticated, event)
        .await;
}

impl BearerAuth {
    /// The caller, if they hold any of `roles`; 403 otherwise.
    pub fn require(&self, roles: &[Role]) -> Result<&Principal, ApiError> {
        if self.0.has_any_role(roles) {
            Ok(&self.0)
        } else {
            let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            Err(ApiError::forbidden(format!(
                "this operation needs one of the roles: {}",
                names.join(", ")
            )))
        }
    }
}

/// Declares the combined API type and its constructor from one list.
macro_rules! combined_api {
    ($($module:ident :: $api:ident),+ $(,)?) => {
        /// The combined API.
        pub type Apis = ($($module::$api,)+);

        /// All API implementations.
        pub fn apis() -> Apis {
            ($($module::$api,)+)
        }
    };
}

combined_api!(
    keys::KeysApi,
    signing::SigningApi,
    requests::RequestsApi,
    audit::AuditApi,
    system::SystemApi,
    certificates::CertificatesApi,
    documents::DocumentsApi,
    documents::CaApi,
    identity::IdentityApi,
    hsm::HsmApi,
    policies::PoliciesApi,
    policy_replay::PolicyReplayApi,
    wallets::WalletsApi,
    ethereum::EthereumApi,
    bitcoin::BitcoinApi,
    solana::SolanaApi,
);

/// Default and maximum page sizes.
pub const DEFAULT_PAGE: u32 = 50;
/// Largest page a caller may ask for.
pub const MAX_PAGE: u32 = 500;

/// Checks a `limit` query parameter.
pub fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(0) => Err(ApiError::invalid("limit must be at least 1")),
        Some(n) if n > MAX_PAGE => Err(ApiError::invalid(format!(
            "limit must be at most {MAX_PAGE}"
        ))),
        Some(n) => Ok(n),
    }
}

/// Checks an `Idempotency-Key` header and binds it to the operation, key and body: `None`
/// without a header; 422 for a key that is not 1 to 255 printable ASCII characters.
pub(crate) fn idempotency(
    header: Option<String>,
    operation: &str,
    key_id: &str,
    body: &impl serde::Serialize,
) -> Result<Option<crate::pipeline::Idempotency>, ApiError> {
    header
        .map(|key| {
            if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| (0x21..0x7f).contains(&b))
            {
                return Err(ApiError::invalid(
                    "Idempotency-Key must be 1 to 255 printable ASCII characters without spaces",
                ));
            }
            Ok(crate::pipeline::Idempotency::new(
                key, operation, key_id, body,
            ))
        })
        .transpose()
}

/// Decodes a `cursor` query parameter (the `next_cursor` of a previous page).
pub fn page_cursor(cursor: Option<&str>) -> Result<Option<String>, ApiError> {
    cursor
        .map(|c| {
            crate::store::cursor::decode(c).ok_or_else(|| ApiError::invalid("cursor is not valid"))
        })
        .transpose()
}

/// A public key in the API.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct PublicKeyView {
    /// PEM `PUBLIC KEY` (SubjectPublicKeyInfo).
    pub pem: String,
    /// JSON Web Key.
    pub jwk: serde_json::Value,
}
