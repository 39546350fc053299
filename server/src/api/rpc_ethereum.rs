//! The Ethereum JSON-RPC signer at `POST /rpc/ethereum` (same bearer token as the REST API):
//! `eth_accounts`, `eth_sign`, `personal_sign`, `eth_signTransaction` and
//! `eth_signTypedData_v4`, so that code expecting a remote Ethereum signer can use Keyward.
//! Every signature goes through `chains::ethereum::signer` and so the pipeline.
//!
//! Errors are JSON-RPC 2.0 errors: -32700 parse error, -32600 invalid request, -32601 unknown
//! method, -32602 invalid params (bad input, unknown account), 4100 unauthorized (missing
//! role, key not allowed, wrong purpose, chain id not allowed), 4001 denied by policy,
//! -32010 pending approval, -32603 internal (backend or audit failure). `error.data` carries
//! Keyward's error `code`, the `request_id` and, for denials and pending requests, the reason.

use poem::http::StatusCode;
use poem::web::{Data, Json as PoemJson};
use poem::{Body, IntoResponse, Request, Response, handler};
use serde_json::{Value, json};

use super::error::ApiError;
use super::ethereum_signer::{self as signer, EthOutcome};
use crate::app::AppState;
use crate::auth::{Principal, Role};
use crate::chains::ethereum::hex_bytes;
use crate::chains::ethereum::signed::EthRequest;
use crate::chains::ethereum::tx::{TxFields, parse_address};
use crate::error_code::ErrorCode;
use crate::keys::KeyMeta;
use crate::request_id::current as current_request_id;
use crate::store::KeyStatus;

/// At most this many calls in one batch.
const MAX_BATCH: usize = 32;

struct RpcError {
    code: i64,
    message: String,
    data: Option<Value>,
}

impl RpcError {
    fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }

    fn params(message: impl Into<String>) -> Self {
        RpcError::new(-32602, message)
    }

    fn to_json(&self, id: &Value) -> Value {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(d) = &self.data {
            error["data"] = d.clone();
        }
        json!({"jsonrpc": "2.0", "id": id, "error": error})
    }
}

impl From<ApiError> for RpcError {
    fn from(e: ApiError) -> Self {
        let code = match (e.status.as_u16(), e.code) {
            (_, ErrorCode::PolicyDenied) => 4001,
            (400 | 404 | 413 | 422, _) => -32602,
            (401 | 403, _) | (409, ErrorCode::KeyDisabled) => 4100,
            _ => -32603,
        };
        let mut data = json!({"code": e.code, "request_id": current_request_id()});
        if let Some(d) = e.details {
            data["details"] = d;
        }
        RpcError {
            code,
            message: e.message,
            data: Some(data),
        }
    }
}

/// `POST /rpc/ethereum`.
#[handler]
pub async fn rpc(req: &Request, state: Data<&AppState>, body: Body) -> Response {
    let principal = match authenticate(req, &state).await {
        Ok(p) => p,
        Err(e) => {
            return (
                StatusCode::UNAUTHORIZED,
                PoemJson(RpcError::from(e).to_json(&Value::Null)),
            )
                .into_response();
        }
    };
    let bytes = match body.into_vec().await {
        Ok(b) => b,
        Err(_) => {
            return PoemJson(
                RpcError::new(-32700, "the body could not be read").to_json(&Value::Null),
            )
            .into_response();
        }
    };
    let Ok(value) = serde_json::from_slice::<Value>(&bytes) else {
        return PoemJson(
            RpcError::new(-32700, "parse error: the body is not JSON").to_json(&Value::Null),
        )
        .into_response();
    };
    match value {
        Value::Array(calls) => {
            if calls.is_empty() || calls.len() > MAX_BATCH {
                return PoemJson(
                    RpcError::new(-32600, format!("a batch holds 1 to {MAX_BATCH} calls"))
                        .to_json(&Value::Null),
                )
                .into_response();
            }
            // Each call of a batch is a request of its own (id, policy decision, result,
            // audit record); the HTTP request's id names the batch only.
            let mut out = Vec::with_capacity(calls.len());
            for call in calls {
                let id = crate::request_id::fresh();
                if let Some(answer) =
                    crate::request_id::scope(id, one(&state, &principal, call)).await
                {
                    out.push(answer);
                }
            }
            PoemJson(Value::Array(out)).into_response()
        }
        call => match one(&state, &principal, call).await {
            Some(answer) => PoemJson(answer).into_response(),
            None => StatusCode::NO_CONTENT.into_response(),
        },
    }
}

async fn authenticate(req: &Request, state: &AppState) -> Result<Principal, ApiError> {
    let header = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let token = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthenticated,
                "send Authorization: Bearer <token>",
            )
        })?;
    match state.auth().verify(token.trim()).await {
        Ok(p) => Ok(p),
        Err(e) => {
            super::record_unauthenticated(state, req, &e).await;
            Err(e.into())
        }
    }
}

/// Answers one call; `None` for a notification (no `id`).
async fn one(state: &AppState, principal: &Principal, call: Value) -> Option<Value> {
    let id = call.get("id").cloned();
    let method = call
        .get("method")
        .and_then(Value::as_str)
        .map(str::to_string);
    let valid = call.get("jsonrpc").and_then(Value::as_str) == Some("2.0") && method.is_some();
    let reply_id = id.clone().unwrap_or(Value::Null);
    if !valid {
        return Some(
            RpcError::new(
                -32600,
                "invalid request: jsonrpc must be \"2.0\" and method a string",
            )
            .to_json(&reply_id),
        );
    }
    let params = match call.get("params") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => {
            return Some(RpcError::params("params must be an array").to_json(&reply_id));
        }
    };
    let result = dispatch(
        state,
        principal,
        method.as_deref().unwrap_or_default(),
        params,
    )
    .await;
    id.as_ref()?;
    Some(match result {
        Ok(v) => json!({"jsonrpc": "2.0", "id": reply_id, "result": v}),
        Err(e) => e.to_json(&reply_id),
    })
}

fn param<'a>(params: &'a [Value], i: usize, what: &str) -> Result<&'a Value, RpcError> {
    params
        .get(i)
        .ok_or_else(|| RpcError::params(format!("missing parameter {i}: {what}")))
}

fn param_str<'a>(params: &'a [Value], i: usize, what: &str) -> Result<&'a str, RpcError> {
    param(params, i, what)?
        .as_str()
        .ok_or_else(|| RpcError::params(format!("parameter {i} ({what}) must be a string")))
}

/// The message bytes of `personal_sign`/`eth_sign`: 0x hex, or else UTF-8 text.
fn message_bytes(text: &str) -> Vec<u8> {
    if let Some(h) = text.strip_prefix("0x")
        && let Ok(b) = hex::decode(h)
    {
        return b;
    }
    text.as_bytes().to_vec()
}

async fn dispatch(
    state: &AppState,
    principal: &Principal,
    method: &str,
    params: Vec<Value>,
) -> Result<Value, RpcError> {
    let (address, request) = match method {
        "eth_accounts" => {
            let mut addresses: Vec<String> = Vec::new();
            for (address, _) in accounts(state, principal).await? {
                if !addresses.contains(&address) {
                    addresses.push(address);
                }
            }
            return Ok(json!(addresses));
        }
        "eth_sign" => {
            let address = param_str(&params, 0, "address")?.to_string();
            let data = param_str(&params, 1, "data")?;
            let bytes = hex_bytes("data", data).map_err(|e| RpcError::from(ApiError::from(e)))?;
            (address, EthRequest::Message(bytes))
        }
        "personal_sign" => {
            let data = param_str(&params, 0, "message")?;
            let address = param_str(&params, 1, "address")?.to_string();
            (address, EthRequest::Message(message_bytes(data)))
        }
        "eth_signTransaction" => {
            let tx = param(&params, 0, "transaction")?;
            let address = tx
                .get("from")
                .and_then(Value::as_str)
                .ok_or_else(|| RpcError::params("the transaction needs a from address"))?
                .to_string();
            (address, EthRequest::Transaction(Box::new(tx_fields(tx)?)))
        }
        "eth_signTypedData_v4" | "eth_signTypedData" => {
            let address = param_str(&params, 0, "address")?.to_string();
            let typed = param(&params, 1, "typed data")?.clone();
            (address, EthRequest::TypedData(typed))
        }
        other => {
            return Err(RpcError::new(
                -32601,
                format!(
                    "method {other} is not served here; Keyward signs with eth_accounts, eth_sign, personal_sign, eth_signTransaction and eth_signTypedData_v4"
                ),
            ));
        }
    };
    let key_id = key_of(state, principal, &address).await?;
    let is_tx = matches!(request, EthRequest::Transaction(_));
    let outcome = signer::sign(
        state.signing(),
        principal.clone(),
        key_id,
        request,
        None,
        current_request_id(),
        false,
    )
    .await
    .map_err(|e| RpcError::from(ApiError::from(e)))?;
    match outcome {
        Ok(EthOutcome::Signed(s)) => {
            if is_tx {
                let raw = s
                    .assembled
                    .transaction
                    .as_ref()
                    .map(|(r, _)| r.clone())
                    .unwrap_or_default();
                Ok(json!(format!("0x{}", hex::encode(raw))))
            } else {
                Ok(json!(format!(
                    "0x{}",
                    hex::encode(s.assembled.signature_bytes())
                )))
            }
        }
        Ok(EthOutcome::Pending(p)) => Err(RpcError {
            code: -32010,
            message: format!("pending approval: {}", p.reason),
            data: Some(json!({
                "code": ErrorCode::PendingApproval,
                "request_id": p.request_id,
                "status_url": format!("/v1/requests/{}", p.request_id),
                "reason": p.reason,
                "approvals_required": p.approvals,
                "expires_at": p.expires_at,
            })),
        }),
        Err(_) => Err(RpcError::new(-32603, "unexpected dry run")),
    }
}

/// The Ethereum accounts the caller may sign with (active keys whose signers admit it), as
/// (address, key id), oldest first.
async fn accounts(
    state: &AppState,
    principal: &Principal,
) -> Result<Vec<(String, String)>, RpcError> {
    if !principal.has_role(Role::Signer) {
        return Ok(Vec::new());
    }
    let store_error = |e| RpcError::from(ApiError::from(e));
    let rows = state
        .signing()
        .store()
        .accounts_of_chain("ethereum", 1000)
        .await
        .map_err(store_error)?;
    let mut out = Vec::new();
    for account in rows {
        let Some(key) = state
            .signing()
            .store()
            .key(&account.key_id)
            .await
            .map_err(store_error)?
        else {
            continue;
        };
        let Ok(meta) = KeyMeta::from_row(&key) else {
            continue;
        };
        if meta.status == KeyStatus::Active
            && crate::auth::signers::admits(&meta.signers, principal)
        {
            out.push((account.address, account.key_id));
        }
    }
    Ok(out)
}

/// The key of the caller's account with `address` (unknown accounts are invalid params).
async fn key_of(
    state: &AppState,
    principal: &Principal,
    address: &str,
) -> Result<String, RpcError> {
    let wanted = parse_address("address", address)
        .map_err(|e| RpcError::from(ApiError::from(e)))?
        .to_checksum(None);
    accounts(state, principal)
        .await?
        .into_iter()
        .find(|(a, _)| *a == wanted)
        .map(|(_, key)| key)
        .ok_or_else(|| {
            RpcError::params(format!(
                "no Ethereum account {wanted} that you may sign with"
            ))
        })
}

/// Reads an `eth_signTransaction` object (0x quantities, camelCase names).
fn tx_fields(tx: &Value) -> Result<TxFields, RpcError> {
    let text = |name: &str| -> Result<Option<String>, RpcError> {
        match tx.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(RpcError::params(format!(
                "{name} must be a string or a number"
            ))),
        }
    };
    let access_list = match tx.get("accessList") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|i| {
                    let address = i
                        .get("address")
                        .and_then(Value::as_str)
                        .ok_or_else(|| RpcError::params("accessList entries need an address"))?;
                    let keys = i
                        .get("storageKeys")
                        .and_then(Value::as_array)
                        .map(|k| {
                            k.iter()
                                .filter_map(Value::as_str)
                                .map(str::to_string)
                                .collect()
                        })
                        .unwrap_or_default();
                    Ok((address.to_string(), keys))
                })
                .collect::<Result<Vec<_>, RpcError>>()?,
        ),
        Some(_) => return Err(RpcError::params("accessList must be an array")),
    };
    Ok(TxFields {
        tx_type: text("type")?,
        chain_id: text("chainId")?,
        nonce: text("nonce")?,
        to: text("to")?,
        value: text("value")?,
        gas: match text("gas")? {
            Some(g) => Some(g),
            None => text("gasLimit")?,
        },
        gas_price: text("gasPrice")?,
        max_fee_per_gas: text("maxFeePerGas")?,
        max_priority_fee_per_gas: text("maxPriorityFeePerGas")?,
        data: match text("data")? {
            Some(d) => Some(d),
            None => text("input")?,
        },
        access_list,
    })
}
