//! The route tree: the OpenAPI service (every `/v1` operation and health), Swagger UI, the spec,
//! and the routes outside the spec (discovery, the CA certificate and CRL, JSON-RPC, CSC, the
//! approvers' page at `/ui/`), all
//! behind the body limit and the error envelope.

use poem::{EndpointExt, Route};
use poem_openapi::OpenApiService;

use super::error::ErrorEnvelope;
use super::limits::BodyLimit;
use crate::app::AppState;

/// The OpenAPI service (all `/v1` operations and health).
pub fn openapi_service() -> OpenApiService<super::Apis, ()> {
    OpenApiService::new(super::apis(), "Keyward", env!("CARGO_PKG_VERSION")).description(
        "Policy-gated remote signing. Every signature passes through the policies bound \
             to its key and lands in a hash-chained audit log. Authenticate with a bearer JWT \
             (the Authorize button); `keyward dev` prints one.",
    )
}

/// The OpenAPI document as JSON.
pub fn openapi_json() -> String {
    openapi_service().spec()
}

/// The whole route tree.
pub fn routes(state: AppState) -> impl poem::Endpoint<Output = poem::Response> {
    let service = openapi_service();
    let docs = service.swagger_ui();
    let spec = service.spec_endpoint();
    let max_body = state.config().max_body_bytes;
    Route::new()
        .nest("/", service)
        .nest("/docs", docs)
        .at("/openapi.json", poem::get(spec))
        .at(
            "/.well-known/openid-configuration",
            poem::get(super::system::discovery),
        )
        .at("/.well-known/jwks.json", poem::get(super::system::jwks))
        .at(
            "/v1/ca/certificate",
            poem::get(super::documents::ca_certificate),
        )
        .at("/v1/ca/crl", poem::get(super::documents::ca_crl))
        .at("/rpc/ethereum", poem::post(super::rpc_ethereum::rpc))
        .nest("/csc", super::csc::routes())
        .nest("/ui", super::ui::routes())
        .with(BodyLimit(max_body))
        .with(ErrorEnvelope)
        .data(state)
}
