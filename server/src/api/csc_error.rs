//! The CSC error table: each `CscError` as the CSC API answers it, the `error` code
//! (`invalid_request`, `access_denied`, ...) with its HTTP status, and poem's own errors under
//! `/csc/` in the same shape.

use poem::Response;
use poem::http::StatusCode;

use crate::auth::AuthError;
use crate::csc::CscError;

/// The CSC `error` code of an error.
fn code(e: &CscError) -> &'static str {
    match e {
        CscError::InvalidRequest(_) => "invalid_request",
        CscError::InvalidToken(_) => "invalid_token",
        CscError::AccessDenied(_) => "access_denied",
        CscError::AuthorizationPending(_) => "authorization_pending",
        CscError::Unavailable(_) => "temporarily_unavailable",
        CscError::Internal(_) => "server_error",
    }
}

/// The HTTP status of a CSC error (CSC API: 400 for request errors, 401 for the token, 403
/// when access is denied).
fn csc_status(e: &CscError) -> StatusCode {
    match e {
        CscError::InvalidRequest(_) | CscError::AuthorizationPending(_) => StatusCode::BAD_REQUEST,
        CscError::InvalidToken(_) => StatusCode::UNAUTHORIZED,
        CscError::AccessDenied(_) => StatusCode::FORBIDDEN,
        CscError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        CscError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The CSC error body.
fn csc_body(status: StatusCode, error: &str, description: &str) -> Response {
    let body = serde_json::json!({"error": error, "error_description": description});
    Response::builder()
        .status(status)
        .content_type("application/json; charset=utf-8")
        .body(body.to_string())
}

impl poem::error::ResponseError for CscError {
    fn status(&self) -> StatusCode {
        csc_status(self)
    }

    fn as_response(&self) -> Response {
        csc_body(csc_status(self), code(self), &self.to_string())
    }
}

/// An error raised by poem itself (unknown method, body too large) under `/csc/`, in the CSC
/// shape with its own status.
pub(super) fn from_poem(err: &poem::Error) -> Response {
    let status = err.status();
    let (error, description) = match status {
        StatusCode::UNAUTHORIZED => ("invalid_token", AuthError::Missing.to_string()),
        StatusCode::NOT_FOUND => (
            "invalid_request",
            "no such CSC method; this server implements info, credentials/list, \
             credentials/info, credentials/authorize, credentials/authorizeCheck and \
             signatures/signHash under /csc/v1 and /csc/v2"
                .to_string(),
        ),
        StatusCode::METHOD_NOT_ALLOWED => (
            "invalid_request",
            "CSC methods are called with POST".to_string(),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "invalid_request",
            "the request body is larger than the server accepts (server.max_body_bytes)".into(),
        ),
        s if s.is_server_error() => {
            tracing::error!(error = %err, "unhandled server error");
            ("server_error", "internal error; see the server log".into())
        }
        _ => ("invalid_request", err.to_string()),
    };
    csc_body(status, error, &description)
}
