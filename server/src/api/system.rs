//! Health endpoints, and the development issuer's discovery document and JWKS.

use poem::web::{Data, Json as PoemJson};
use poem::{IntoResponse, Response, handler, http::StatusCode};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::ApiTags;
use super::error::ApiError;
use crate::app::AppState;
use crate::error_code::ErrorCode;

/// Health endpoints.
pub struct SystemApi;

/// Health report.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Health {
    /// `ok` or `unavailable`.
    pub status: String,
    /// Each check by name: `ok` or what failed.
    pub checks: std::collections::BTreeMap<String, String>,
}

/// Readiness answer.
#[derive(ApiResponse)]
pub enum ReadyResponse {
    /// Ready to serve.
    #[oai(status = 200)]
    Ready(Json<Health>),
    /// Not ready; see `checks`.
    #[oai(status = 503)]
    NotReady(Json<Health>),
}

#[OpenApi]
impl SystemApi {
    /// Liveness: the process answers.
    #[oai(path = "/health/live", method = "get", tag = "ApiTags::System")]
    async fn live(&self) -> Json<Health> {
        Json(Health {
            status: "ok".into(),
            checks: Default::default(),
        })
    }

    /// Readiness: the database answers, every key backend can sign, and every issuer whose
    /// keys are fetched has had its keys loaded at least once.
    #[oai(path = "/health/ready", method = "get", tag = "ApiTags::System")]
    async fn ready(&self, state: Data<&AppState>) -> ReadyResponse {
        let mut checks = std::collections::BTreeMap::new();
        let db = match state.signing().store().ping().await {
            Ok(()) => "ok".to_string(),
            Err(e) => e.to_string(),
        };
        checks.insert("database".to_string(), db);
        // Remote issuers whose keys were never loaded get one more try (within their
        // cooldown) and are reported until they load.
        state.auth().load_missing_keys().await;
        for issuer in state.auth().remote_status() {
            let status = if issuer.loaded {
                "ok".to_string()
            } else {
                format!(
                    "no signing keys loaded yet{}",
                    issuer
                        .last_error
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                )
            };
            checks.insert(format!("issuer:{}", issuer.issuer), status);
        }
        for backend in state.signing().keys().backends() {
            // A backend check may be a blocking HSM round trip: keep it off the runtime.
            let probe = backend.clone();
            let status = match tokio::task::spawn_blocking(move || probe.check_ready()).await {
                Ok(Ok(())) => "ok".to_string(),
                Ok(Err(e)) => e.to_string(),
                Err(e) => format!("readiness check failed: {e}"),
            };
            checks.insert(format!("backend:{}", backend.name()), status);
        }
        let ok = checks.values().all(|v| v == "ok");
        let health = Health {
            status: if ok { "ok" } else { "unavailable" }.into(),
            checks,
        };
        if ok {
            ReadyResponse::Ready(Json(health))
        } else {
            ReadyResponse::NotReady(Json(health))
        }
    }
}

fn dev_issuer_missing() -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        "this server does not run the development issuer",
    )
    .to_response()
}

/// `/.well-known/openid-configuration` of the development issuer.
#[handler]
pub async fn discovery(state: Data<&AppState>) -> Response {
    match state.dev_issuer() {
        Some(issuer) => PoemJson(issuer.discovery()).into_response(),
        None => dev_issuer_missing(),
    }
}

/// `/.well-known/jwks.json` of the development issuer.
#[handler]
pub async fn jwks(state: Data<&AppState>) -> Response {
    match state.dev_issuer() {
        Some(issuer) => PoemJson(issuer.jwks()).into_response(),
        None => dev_issuer_missing(),
    }
}
