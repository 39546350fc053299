//! The one place errors become HTTP.
//!
//! Every error response, whether raised by a handler, by poem (unknown route, body too
//! large, unparsable JSON) or by a layer below, has the same body:
//! `{"code":"POLICY_DENIED","message":"...","request_id":"..."}` plus optional `details`.
//! Codes are stable and machine-readable. Messages say what the caller did wrong and how
//! to fix it, and never carry secrets or internal paths.
//!
//! The one exception is the CSC API under `/csc/`: CSC clients expect the CSC error body
//! `{"error":"invalid_request","error_description":"..."}` with the CSC status codes. The
//! middleware decides this by path, in one place (`ErrorEnvelopeEndpoint::call`); the CSC
//! error table (codes and statuses) is `csc_error`.

use poem::error::ResponseError as _;
use poem::http::StatusCode;
use poem::{Endpoint, IntoResponse, Middleware, Request, Response};
use poem_openapi::registry::{MetaMediaType, MetaResponse, MetaResponses, Registry};
use poem_openapi::types::ToJSON;
use poem_openapi::{ApiResponse, Object};
use serde_json::Value;

use crate::audit::AuditError;
use crate::auth::AuthError;
use crate::csc::CscError;
use crate::error_code::ErrorCode;
use crate::keys::KeyError;
use crate::lifecycle::keys::KeyAdminError;
use crate::pipeline::PipelineError;
use crate::policy::PolicyError;
use crate::store::StoreError;

use crate::request_id::current as current_request_id;

/// The uniform error body.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `POLICY_DENIED`.
    pub code: String,
    /// What went wrong and how to fix it.
    pub message: String,
    /// The request's id (also in the `X-Request-Id` header and the audit log).
    pub request_id: String,
    /// Extra facts, e.g. the policy decision trace of a denial.
    #[oai(skip_serializing_if_is_none)]
    pub details: Option<Value>,
}

/// An error on its way to becoming an HTTP response.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code.
    pub code: ErrorCode,
    /// Message for the caller.
    pub message: String,
    /// Extra facts.
    pub details: Option<Value>,
}

impl ApiError {
    /// An error with status, code and message.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
        }
    }

    /// Adds details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// 400 `BAD_REQUEST`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
    }

    /// 422 `INVALID_REQUEST`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::InvalidRequest,
            message,
        )
    }

    /// 403 `FORBIDDEN`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, message)
    }

    /// 404 `NOT_FOUND`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
    }

    /// 500 `INTERNAL` (details go to the log, not the caller).
    pub fn internal(context: &str, err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "{context}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            format!(
                "{context}; see the server log for request {}",
                current_request_id()
            ),
        )
    }

    fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code.as_str().to_string(),
            message: self.message.clone(),
            request_id: current_request_id(),
            details: self.details.clone(),
        }
    }

    /// The HTTP response.
    pub fn to_response(&self) -> Response {
        let body = self.body().to_json_string();
        Response::builder()
            .status(self.status)
            .content_type("application/json; charset=utf-8")
            .body(body)
    }

    /// Wraps an error raised by poem itself (routing, extraction, limits).
    fn from_poem(err: &poem::Error) -> Self {
        if err.status() == StatusCode::BAD_REQUEST
            && let Some(message) = super::validation::describe(&err.to_string())
        {
            return Self::invalid(message);
        }
        let status = err.status();
        let code = match status {
            StatusCode::BAD_REQUEST => ErrorCode::BadRequest,
            StatusCode::UNAUTHORIZED => ErrorCode::Unauthenticated,
            StatusCode::FORBIDDEN => ErrorCode::Forbidden,
            StatusCode::NOT_FOUND => ErrorCode::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
            StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
            StatusCode::UNPROCESSABLE_ENTITY => ErrorCode::InvalidRequest,
            s if s.is_server_error() => ErrorCode::Internal,
            _ => ErrorCode::BadRequest,
        };
        let message = match status {
            StatusCode::NOT_FOUND => "no such route; see /docs for the API".to_string(),
            StatusCode::PAYLOAD_TOO_LARGE => {
                "the request body is larger than the server accepts (server.max_body_bytes)".into()
            }
            StatusCode::UNAUTHORIZED => AuthError::Missing.to_string(),
            s if s.is_server_error() => {
                tracing::error!(error = %err, "unhandled server error");
                "internal error; see the server log".into()
            }
            _ => err.to_string(),
        };
        Self::new(status, code, message)
    }
}

impl poem::error::ResponseError for ApiError {
    fn status(&self) -> StatusCode {
        self.status
    }

    fn as_response(&self) -> Response {
        self.to_response()
    }
}

/// Statuses listed in the OpenAPI document for every operation that can fail.
const DOCUMENTED: &[(u16, &str)] = &[
    (400, "Malformed input (bad JSON or base64)."),
    (401, "No bearer token, or the token was refused."),
    (
        403,
        "Missing role, not allowed for this key, denied by policy, or a policy module \
         without a trusted signature.",
    ),
    (404, "No such key or resource."),
    (
        409,
        "Conflict with the current state (name taken, key disabled).",
    ),
    (413, "The body is larger than the server accepts."),
    (415, "The body is not `application/json`."),
    (422, "Well-formed but invalid input."),
    (
        503,
        "A key backend, the database or the audit log is unavailable; nothing was signed.",
    ),
];

impl ApiResponse for ApiError {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: DOCUMENTED
                .iter()
                .map(|(status, description)| MetaResponse {
                    description,
                    status: Some(*status),
                    status_range: None,
                    content: vec![MetaMediaType {
                        content_type: "application/json; charset=utf-8",
                        schema: <ErrorBody as poem_openapi::types::Type>::schema_ref(),
                    }],
                    headers: vec![],
                })
                .collect(),
        }
    }

    fn register(registry: &mut Registry) {
        <ErrorBody as poem_openapi::types::Type>::register(registry);
    }
}

/// Result alias for handlers.
pub type ApiResult<T> = Result<T, ApiError>;

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Config(_) => ApiError::internal("token verification is misconfigured", e),
            _ => ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthenticated,
                e.to_string(),
            ),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, ErrorCode::Conflict, m),
            StoreError::KeyInactive(m) => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::KeyDisabled, m)
            }
            StoreError::SignerRemoved(m) => {
                ApiError::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, m)
            }
            StoreError::PoliciesChanged(m) => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::Conflict, m)
            }
            StoreError::Database(_) => {
                tracing::error!(error = %e, "database error");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::DatabaseUnavailable,
                    "the database is unavailable; nothing was changed",
                )
            }
            other => ApiError::internal("storage error", other),
        }
    }
}

impl From<AuditError> for ApiError {
    fn from(e: AuditError) -> Self {
        match e {
            AuditError::Rejected(inner) => inner.into(),
            AuditError::Unavailable(_) => {
                tracing::error!(error = %e, "audit append failed");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::AuditUnavailable,
                    "the audit log could not record this operation, so its result is withheld",
                )
            }
        }
    }
}

impl From<KeyError> for ApiError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::InvalidInput(m) => ApiError::invalid(m),
            KeyError::InvalidKeyMaterial(m) => ApiError::invalid(m),
            KeyError::Unseal { .. } => {
                tracing::error!(error = %e, "sealed key failed to open");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorCode::KeyUnsealFailed,
                    e.to_string(),
                )
            }
            KeyError::Unavailable(_) | KeyError::UnknownBackend(_) => {
                tracing::error!(error = %e, "key backend error");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::BackendUnavailable,
                    "the key backend is unavailable; nothing was signed",
                )
            }
        }
    }
}

impl From<PipelineError> for ApiError {
    fn from(e: PipelineError) -> Self {
        use PipelineError as P;
        match e {
            P::KeyNotFound(id) => ApiError::not_found(format!("no key with id {id:?}")),
            P::KeyDisabled(id) => ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::KeyDisabled,
                format!("key {id} is disabled and cannot sign"),
            ),
            P::Forbidden(m) => ApiError::forbidden(m),
            P::WrongPurpose {
                key_purpose,
                wanted,
            } => ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::WrongKeyPurpose,
                if wanted == "raw"
                    && crate::chains::ALL
                        .iter()
                        .any(|c| c.purpose().as_str() == key_purpose)
                {
                    format!(
                        "this key's purpose is {key_purpose}: blind signing of raw digests is refused; \
                         use its {key_purpose} signing routes"
                    )
                } else {
                    format!(
                        "this key's purpose is {key_purpose}; it cannot be used for {wanted} signing"
                    )
                },
            ),
            P::Invalid(m) => ApiError::invalid(m),
            P::PolicyDenied { reason, verdict } => ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::PolicyDenied,
                format!("denied by policy: {reason}"),
            )
            .with_details(serde_json::json!({ "policy": verdict })),
            P::BadApprovalRequirement(m) => ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::PolicyDenied,
                format!(
                    "a policy asked for an approval this server cannot hold, so the request is refused: {m}"
                ),
            ),
            P::IdempotencyMismatch => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::IdempotencyKeyReused,
                "this Idempotency-Key was used with a different request; use a new key",
            ),
            P::Key(e) => e.into(),
            P::Audit(e) => e.into(),
            P::Store(e) => e.into(),
        }
    }
}

impl From<KeyAdminError> for ApiError {
    fn from(e: KeyAdminError) -> Self {
        match e {
            KeyAdminError::NotFound(id) => ApiError::not_found(format!("no key with id {id:?}")),
            KeyAdminError::Key(e) => e.into(),
            KeyAdminError::Audit(e) => e.into(),
            KeyAdminError::Store(e) => e.into(),
        }
    }
}

impl From<crate::wallets::WalletError> for ApiError {
    fn from(e: crate::wallets::WalletError) -> Self {
        use crate::wallets::WalletError as W;
        match e {
            W::NotFound(_) => ApiError::not_found(e.to_string()),
            W::Invalid(m) => ApiError::invalid(m),
            W::Hd(e) => e.into(),
            W::Recording(e) => e.into(),
        }
    }
}

impl From<crate::chains::hd::HdError> for ApiError {
    fn from(e: crate::chains::hd::HdError) -> Self {
        ApiError::invalid(e.to_string())
    }
}

impl From<PolicyError> for ApiError {
    fn from(e: PolicyError) -> Self {
        match e {
            PolicyError::TooLarge { .. } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::PolicyTooLarge,
                e.to_string(),
            ),
            PolicyError::InvalidModule(m) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::InvalidPolicyModule,
                m,
            ),
            PolicyError::Invalid(m) => ApiError::invalid(m),
            PolicyError::NotFound(m) => ApiError::not_found(m),
            PolicyError::InUse(m) => ApiError::new(StatusCode::CONFLICT, ErrorCode::PolicyInUse, m),
            PolicyError::Signature { ref refusal, .. } => {
                use crate::policy::signature::SignatureRefusal;
                let (status, code) = match refusal {
                    SignatureRefusal::Required => {
                        (StatusCode::FORBIDDEN, ErrorCode::PolicySignatureRequired)
                    }
                    SignatureRefusal::Untrusted => {
                        (StatusCode::FORBIDDEN, ErrorCode::PolicySignatureInvalid)
                    }
                    SignatureRefusal::Malformed => (StatusCode::BAD_REQUEST, ErrorCode::BadRequest),
                };
                ApiError::new(status, code, e.to_string())
            }
            PolicyError::Engine(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::PolicyEngineUnavailable,
                "the policy engine is unavailable; nothing was changed",
            ),
            PolicyError::Store(e) => e.into(),
            PolicyError::Audit(e) => e.into(),
        }
    }
}

/// Middleware: gives each request an id, and turns every error into the uniform body.
pub struct ErrorEnvelope;

impl<E: Endpoint> Middleware<E> for ErrorEnvelope {
    type Output = ErrorEnvelopeEndpoint<E>;

    fn transform(&self, ep: E) -> Self::Output {
        ErrorEnvelopeEndpoint { inner: ep }
    }
}

/// The endpoint made by `ErrorEnvelope`.
pub struct ErrorEnvelopeEndpoint<E> {
    inner: E,
}

impl<E: Endpoint> Endpoint for ErrorEnvelopeEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let id = crate::request_id::fresh();
        let header = id.clone();
        // The CSC API answers errors in the CSC shape; the web page's own error pages stay
        // HTML; everything else answers in the uniform body.
        let csc = req.uri().path().starts_with("/csc/");
        let page = req.uri().path().starts_with("/ui/");
        // Kept for the `Allow` of a 405 (a cheap clone: the URI shares its bytes).
        let uri = req.uri().clone();
        let mut resp = crate::request_id::scope(id, async {
            match self.inner.call(req).await {
                Ok(out) => {
                    let resp = out.into_response();
                    if resp.status().is_client_error() || resp.status().is_server_error() {
                        let kept = resp.content_type().is_some_and(|ct| {
                            ct.starts_with("application/json")
                                || (page && ct.starts_with("text/html"))
                        });
                        if !kept {
                            let err = poem::Error::from_status(resp.status());
                            if csc {
                                return super::csc_error::from_poem(&err);
                            }
                            return ApiError::from_poem(&err).to_response();
                        }
                    }
                    resp
                }
                Err(err) if csc => match err.downcast_ref::<CscError>() {
                    Some(e) => e.as_response(),
                    None => super::csc_error::from_poem(&err),
                },
                Err(err) => match err.downcast_ref::<ApiError>() {
                    Some(api) => api.to_response(),
                    None => ApiError::from_poem(&err).to_response(),
                },
            }
        })
        .await;
        if let Ok(value) = header.parse() {
            resp.headers_mut().insert("x-request-id", value);
        }
        if resp.status() == StatusCode::METHOD_NOT_ALLOWED
            && !resp.headers().contains_key(poem::http::header::ALLOW)
            && let Some(allow) = super::allow::allowed(uri.path()).and_then(|a| a.parse().ok())
        {
            resp.headers_mut().insert(poem::http::header::ALLOW, allow);
        }
        Ok(resp)
    }
}

impl From<crate::documents::DocumentError> for ApiError {
    fn from(e: crate::documents::DocumentError) -> Self {
        use crate::documents::DocumentError as D;
        let status = |s: u16| StatusCode::from_u16(s).unwrap_or(StatusCode::BAD_REQUEST);
        let message = e.to_string();
        match e {
            D::NotFound(m) => ApiError::not_found(m),
            D::Malformed(m) => ApiError::bad_request(m),
            D::Invalid(m) => ApiError::invalid(m),
            D::TooLarge { .. } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::DocumentTooLarge,
                message,
            ),
            D::NotDocumentKey { .. } => {
                ApiError::new(StatusCode::FORBIDDEN, ErrorCode::WrongKeyPurpose, message)
            }
            D::KeyDisabled(_) => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::KeyDisabled, message)
            }
            D::KeyMismatch(_) => {
                ApiError::new(status(422), ErrorCode::CertificateKeyMismatch, message)
            }
            D::BadChain(_) => ApiError::new(status(422), ErrorCode::InvalidChain, message),
            D::NoCertificate(_) => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::NoCertificate, message)
            }
            D::CertificateRevoked { .. } => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::CertificateRevoked, message)
            }
            D::CertificateExpired { .. } => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::CertificateExpired, message)
            }
            D::AlreadyRevoked(_) => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::AlreadyRevoked, message)
            }
            D::Unsupported(_) => {
                ApiError::new(status(422), ErrorCode::UnsupportedAlgorithm, message)
            }
            D::Encoding(_) => ApiError::internal("document encoding failed", message),
            D::Key(e) => e.into(),
            D::Store(e) => e.into(),
            D::Audit(e) => e.into(),
            D::Pipeline(e) => e.into(),
        }
    }
}
