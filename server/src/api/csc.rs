//! The Cloud Signature Consortium API: `POST /csc/v2/...` (CSC API 2.0) and `POST /csc/v1/...`
//! (the v1.0.4.0 request and response shapes), for standard CSC clients.
//!
//! These are plain poem routes, not OpenAPI operations: their field names and error bodies
//! follow the CSC specification (`{"error","error_description"}` with CSC status codes), which
//! `api::error`'s middleware produces for every error under `/csc/`. Handlers only decode and
//! encode; the logic is in `crate::csc`, and signatures come from the pipeline alone.

use base64::Engine as _;
use poem::http::header::AUTHORIZATION;
use poem::web::{Data, Json};
use poem::{Request, Route, handler, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::auth::{AuthError, Principal};
use crate::csc::credentials::{self, CertificatesWanted, CredentialInfo};
use crate::csc::sad::{self, AuthorizeRequest, SignHashRequest};
use crate::csc::{CscError, Result, algorithms};

/// The CSC routes, to be nested at `/csc`.
pub fn routes() -> Route {
    Route::new()
        .at("/v1/info", post(v1_info))
        .at("/v1/credentials/list", post(v1_list))
        .at("/v1/credentials/info", post(v1_credential_info))
        .at("/v1/credentials/authorize", post(v1_authorize))
        .at("/v1/credentials/authorizeCheck", post(authorize_check))
        .at("/v1/signatures/signHash", post(v1_sign_hash))
        .at("/v2/info", post(v2_info))
        .at("/v2/credentials/list", post(v2_list))
        .at("/v2/credentials/info", post(v2_credential_info))
        .at("/v2/credentials/authorize", post(v2_authorize))
        .at("/v2/credentials/authorizeCheck", post(authorize_check))
        .at("/v2/signatures/signHash", post(v2_sign_hash))
}

/// The caller of a CSC method: the same OIDC bearer token as the rest of the API.
async fn caller(state: &AppState, req: &Request) -> Result<Principal> {
    let token = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| CscError::InvalidToken(AuthError::Missing.to_string()))?;
    state.auth().verify(token).await.map_err(|e| match e {
        AuthError::Config(_) => {
            tracing::error!(error = %e, "token verification is misconfigured");
            CscError::Internal("token verification is misconfigured".into())
        }
        other => CscError::InvalidToken(other.to_string()),
    })
}

/// Decodes a JSON body (an empty body is `{}`), naming the bad field.
fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    serde_json::from_slice(bytes)
        .map_err(|e| CscError::InvalidRequest(format!("the request body is not valid: {e}")))
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn oauth2_issuer(state: &AppState) -> String {
    match state.dev_issuer() {
        Some(dev) => dev.issuer().to_string(),
        None => state
            .auth()
            .issuer_names()
            .first()
            .map(|s| s.to_string())
            .unwrap_or_default(),
    }
}

const DESCRIPTION: &str = "Keyward: policy-gated remote signing. Every signature passes the \
    policies bound to its key and lands in a hash-chained audit log.";

// ---- info ----

#[handler]
async fn v1_info(state: Data<&AppState>) -> Json<Value> {
    let issuer = oauth2_issuer(&state);
    Json(json!({
        "specs": "1.0.4.0",
        "name": "Keyward",
        "logo": format!("{}/docs", state.public_url()),
        "region": "",
        "lang": "en-US",
        "description": DESCRIPTION,
        "authType": ["oauth2code"],
        "oauth2": issuer,
        "methods": ["credentials/list", "credentials/info", "credentials/authorize",
                    "credentials/authorizeCheck", "signatures/signHash"],
    }))
}

#[handler]
async fn v2_info(state: Data<&AppState>) -> Json<Value> {
    let issuer = oauth2_issuer(&state);
    let mut algos: Vec<String> = Vec::new();
    for alg in [
        crate::keys::Algorithm::Rsa2048,
        crate::keys::Algorithm::P256,
        crate::keys::Algorithm::Ed25519,
    ] {
        for o in algorithms::key_algorithms(alg) {
            if !algos.contains(&o) {
                algos.push(o);
            }
        }
    }
    Json(json!({
        "specs": "2.0.0.2",
        "name": "Keyward",
        "logo": format!("{}/docs", state.public_url()),
        "region": "",
        "lang": "en-US",
        "description": DESCRIPTION,
        "authType": ["oauth2code"],
        "oauth2": issuer,
        "oauth2Issuer": issuer,
        "asynchronousOperationMode": false,
        "methods": ["credentials/list", "credentials/info", "credentials/authorize",
                    "credentials/authorizeCheck", "signatures/signHash"],
        "signAlgorithms": {"algos": algos},
    }))
}

// ---- credentials/list ----

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListBody {
    #[serde(rename = "userID")]
    user_id: Option<String>,
    #[serde(default)]
    credential_info: bool,
    certificates: Option<String>,
    #[serde(default)]
    cert_info: bool,
}

fn check_user(principal: &Principal, user_id: Option<&str>) -> Result<()> {
    match user_id {
        Some(u) if u != principal.subject => Err(CscError::InvalidRequest(
            "userID must be omitted or be the caller's own subject".into(),
        )),
        _ => Ok(()),
    }
}

#[handler]
async fn v1_list(state: Data<&AppState>, req: &Request, bytes: Vec<u8>) -> Result<Json<Value>> {
    let principal = caller(&state, req).await?;
    let b: ListBody = parse_body(&bytes)?;
    check_user(&principal, b.user_id.as_deref())?;
    let ids = credentials::list(state.signing(), &principal).await?;
    Ok(Json(json!({ "credentialIDs": ids })))
}

#[handler]
async fn v2_list(state: Data<&AppState>, req: &Request, bytes: Vec<u8>) -> Result<Json<Value>> {
    let principal = caller(&state, req).await?;
    let b: ListBody = parse_body(&bytes)?;
    check_user(&principal, b.user_id.as_deref())?;
    let ids = credentials::list(state.signing(), &principal).await?;
    let mut out = json!({ "credentialIDs": ids, "onlyValid": false });
    if b.credential_info {
        let wanted = CertificatesWanted::parse(b.certificates.as_deref())?;
        let mut infos = Vec::new();
        for id in &ids {
            let info =
                credentials::info(state.signing(), &state.config().csc, &principal, id, wanted)
                    .await?;
            let mut v = v2_info_json(&info, b.cert_info);
            v["credentialID"] = json!(id);
            infos.push(v);
        }
        out["credentialInfos"] = json!(infos);
    }
    Ok(Json(out))
}

// ---- credentials/info ----

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InfoBody {
    #[serde(rename = "credentialID")]
    credential_id: String,
    certificates: Option<String>,
    #[serde(default)]
    cert_info: bool,
}

fn key_json(info: &CredentialInfo) -> Value {
    let mut key = json!({"status": info.key_status, "algo": info.algo, "len": info.len});
    if let Some(curve) = &info.curve {
        key["curve"] = json!(curve);
    }
    key
}

fn cert_json(info: &CredentialInfo, cert_info: bool) -> Value {
    let mut cert = json!({"status": info.cert_status});
    if !info.certificates.is_empty() {
        let certs: Vec<String> = info.certificates.iter().map(|c| b64(c)).collect();
        cert["certificates"] = json!(certs);
    }
    if cert_info {
        cert["issuerDN"] = json!(info.facts.issuer_dn);
        cert["serialNumber"] = json!(info.facts.serial);
        cert["subjectDN"] = json!(info.facts.subject_dn);
        cert["validFrom"] = json!(info.facts.valid_from);
        cert["validTo"] = json!(info.facts.valid_to);
    }
    cert
}

fn v2_info_json(info: &CredentialInfo, cert_info: bool) -> Value {
    json!({
        "description": info.description,
        "key": key_json(info),
        "cert": cert_json(info, cert_info),
        "auth": {"mode": "implicit"},
        "SCAL": "2",
        "multisign": info.multisign,
        "lang": "en-US",
    })
}

#[handler]
async fn v1_credential_info(
    state: Data<&AppState>,
    req: &Request,
    bytes: Vec<u8>,
) -> Result<Json<Value>> {
    let principal = caller(&state, req).await?;
    let b: InfoBody = parse_body(&bytes)?;
    let wanted = CertificatesWanted::parse(b.certificates.as_deref())?;
    let info = credentials::info(
        state.signing(),
        &state.config().csc,
        &principal,
        &b.credential_id,
        wanted,
    )
    .await?;
    Ok(Json(json!({
        "description": info.description,
        "key": key_json(&info),
        "cert": cert_json(&info, b.cert_info),
        "authMode": "implicit",
        "SCAL": "2",
        "multisign": info.multisign,
        "lang": "en-US",
    })))
}

#[handler]
async fn v2_credential_info(
    state: Data<&AppState>,
    req: &Request,
    bytes: Vec<u8>,
) -> Result<Json<Value>> {
    let principal = caller(&state, req).await?;
    let b: InfoBody = parse_body(&bytes)?;
    let wanted = CertificatesWanted::parse(b.certificates.as_deref())?;
    let info = credentials::info(
        state.signing(),
        &state.config().csc,
        &principal,
        &b.credential_id,
        wanted,
    )
    .await?;
    Ok(Json(v2_info_json(&info, b.cert_info)))
}

// ---- credentials/authorize ----

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct V1AuthorizeBody {
    #[serde(rename = "credentialID")]
    credential_id: String,
    num_signatures: u32,
    #[serde(default)]
    hash: Vec<String>,
    description: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct V2AuthorizeBody {
    #[serde(rename = "credentialID")]
    credential_id: String,
    num_signatures: u32,
    #[serde(default)]
    hashes: Vec<String>,
    #[serde(rename = "hashAlgorithmOID")]
    hash_algorithm_oid: Option<String>,
    description: Option<String>,
}

fn sad_json(issued: sad::IssuedSad) -> Json<Value> {
    Json(json!({"SAD": issued.sad, "expiresIn": issued.expires_in}))
}

#[handler]
async fn v1_authorize(
    state: Data<&AppState>,
    req: &Request,
    bytes: Vec<u8>,
) -> Result<Json<Value>> {
    let principal = caller(&state, req).await?;
    let b: V1AuthorizeBody = parse_body(&bytes)?;
    let request = AuthorizeRequest {
        credential_id: b.credential_id,
        num_signatures: b.num_signatures,
        hashes: b.hash,
        hash_algorithm: None,
        description: b.description,
    };
    Ok(sad_json(
        sad::authorize(state.signing(), &state.config().csc, &principal, request).await?,
    ))
}

#[handler]
async fn v2_authorize(
    state: Data<&AppState>,
    req: &Request,
    bytes: Vec<u8>,
) -> Result<Json<Value>> {
    let principal = caller(&state, req).await?;
    let b: V2AuthorizeBody = parse_body(&bytes)?;
    let hash_algorithm = b
        .hash_algorithm_oid
        .as_deref()
        .map(algorithms::hash_of_oid)
        .transpose()?;
    let request = AuthorizeRequest {
        credential_id: b.credential_id,
        num_signatures: b.num_signatures,
        hashes: b.hashes,
        hash_algorithm,
        description: b.description,
    };
    Ok(sad_json(
        sad::authorize(state.signing(), &state.config().csc, &principal, request).await?,
    ))
}

#[derive(Deserialize)]
struct CheckBody {
    #[serde(rename = "credentialID")]
    credential_id: String,
}

#[handler]
async fn authorize_check(
    state: Data<&AppState>,
    req: &Request,
    bytes: Vec<u8>,
) -> Result<Json<Value>> {
    let principal = caller(&state, req).await?;
    let b: CheckBody = parse_body(&bytes)?;
    Ok(sad_json(
        sad::check(
            state.signing(),
            &state.config().csc,
            &principal,
            &b.credential_id,
        )
        .await?,
    ))
}

// ---- signatures/signHash ----

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct V1SignHashBody {
    #[serde(rename = "credentialID")]
    credential_id: String,
    #[serde(rename = "SAD")]
    sad: String,
    hash: Vec<String>,
    hash_algo: Option<String>,
    sign_algo: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct V2SignHashBody {
    #[serde(rename = "credentialID")]
    credential_id: String,
    #[serde(rename = "SAD")]
    sad: String,
    hashes: Vec<String>,
    #[serde(rename = "hashAlgorithmOID")]
    hash_algorithm_oid: Option<String>,
    sign_algo: String,
    operation_mode: Option<String>,
}

fn signatures_json(signatures: Vec<Vec<u8>>) -> Json<Value> {
    let list: Vec<String> = signatures.iter().map(|s| b64(s)).collect();
    Json(json!({ "signatures": list }))
}

#[handler]
async fn v1_sign_hash(
    state: Data<&AppState>,
    req: &Request,
    bytes: Vec<u8>,
) -> Result<Json<Value>> {
    let principal = caller(&state, req).await?;
    let b: V1SignHashBody = parse_body(&bytes)?;
    let request = SignHashRequest {
        credential_id: b.credential_id,
        sad: b.sad,
        hashes: b.hash,
        hash_algorithm_oid: b.hash_algo,
        sign_algo: b.sign_algo,
    };
    Ok(signatures_json(
        sad::sign_hash(state.signing(), &principal, request).await?,
    ))
}

#[handler]
async fn v2_sign_hash(
    state: Data<&AppState>,
    req: &Request,
    bytes: Vec<u8>,
) -> Result<Json<Value>> {
    let principal = caller(&state, req).await?;
    let b: V2SignHashBody = parse_body(&bytes)?;
    if b.operation_mode.as_deref().is_some_and(|m| m != "S") {
        return Err(CscError::InvalidRequest(
            "only the synchronous operationMode \"S\" is supported".into(),
        ));
    }
    let request = SignHashRequest {
        credential_id: b.credential_id,
        sad: b.sad,
        hashes: b.hashes,
        hash_algorithm_oid: b.hash_algorithm_oid,
        sign_algo: b.sign_algo,
    };
    Ok(signatures_json(
        sad::sign_hash(state.signing(), &principal, request).await?,
    ))
}
