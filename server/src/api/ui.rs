//! `/ui/`: the approvers' page (static files carried in the binary), its configuration, and
//! the development issuer's login form and token endpoint for it. Every answer carries a
//! strict Content-Security-Policy: scripts and styles only from this origin, no inline
//! script, no framing, and connections only to this origin and the sign-in provider's.

use std::collections::HashMap;

use poem::http::{StatusCode, header};
use poem::web::{Data, Form, Query, Redirect};
use poem::{Endpoint, EndpointExt, IntoResponse, Response, Route, handler};
use serde_json::json;

use crate::app::AppState;
use crate::auth::Role;
use crate::auth::dev_login::{self, AuthorizeRequest, LoginError, UI_CLIENT_ID};

const INDEX: &str = include_str!("../../ui/index.html");
const APP_JS: &str = include_str!("../../ui/app.js");
const DECODE_JS: &str = include_str!("../../ui/decode.js");
const APP_CSS: &str = include_str!("../../ui/app.css");

/// How long a token from the development login lives.
const DEV_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

/// The origin (`scheme://host[:port]`) of an http(s) URL.
fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split(['/', '?', '#']).next()?;
    (!host.is_empty()).then(|| format!("{scheme}://{host}"))
}

fn csp(state: &AppState) -> String {
    let mut connect = "'self'".to_string();
    if let Some(sign_in) = &state.config().ui.sign_in
        && let Some(o) = origin(&sign_in.issuer)
    {
        connect.push(' ');
        connect.push_str(&o);
    }
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src {connect}; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
}

/// The routes under `/ui`.
pub fn routes() -> impl Endpoint<Output = Response> {
    Route::new()
        .at("/", poem::get(index))
        .at("/app.js", poem::get(app_js))
        .at("/decode.js", poem::get(decode_js))
        .at("/app.css", poem::get(app_css))
        .at("/config.json", poem::get(config))
        .at("/dev/authorize", poem::get(authorize_form).post(authorize))
        .at("/dev/token", poem::post(token))
        .around(|ep, req| async move {
            let state = req.data::<AppState>().cloned();
            let enabled = state.as_ref().is_some_and(|s| s.config().ui.enabled);
            if !enabled {
                return Ok(StatusCode::NOT_FOUND.into_response());
            }
            let mut resp = ep.call(req).await?.into_response();
            if let Some(state) = state {
                let h = resp.headers_mut();
                if let Ok(v) = csp(&state).parse() {
                    h.insert(header::CONTENT_SECURITY_POLICY, v);
                }
                h.insert(header::X_FRAME_OPTIONS, "DENY".parse().expect("header"));
                h.insert(
                    header::X_CONTENT_TYPE_OPTIONS,
                    "nosniff".parse().expect("header"),
                );
                h.insert(
                    header::REFERRER_POLICY,
                    "no-referrer".parse().expect("header"),
                );
                h.insert(header::CACHE_CONTROL, "no-store".parse().expect("header"));
            }
            Ok(resp)
        })
}

/// `/ui` without the slash.
#[handler]
pub async fn bare() -> Redirect {
    Redirect::see_other("/ui/")
}

fn file(content_type: &'static str, body: &'static str) -> Response {
    Response::builder().content_type(content_type).body(body)
}

#[handler]
async fn index() -> Response {
    file("text/html; charset=utf-8", INDEX)
}

#[handler]
async fn app_js() -> Response {
    file("text/javascript; charset=utf-8", APP_JS)
}

#[handler]
async fn decode_js() -> Response {
    file("text/javascript; charset=utf-8", DECODE_JS)
}

#[handler]
async fn app_css() -> Response {
    file("text/css; charset=utf-8", APP_CSS)
}

/// How the page signs in: the configured provider, else the development issuer, else none.
#[handler]
async fn config(state: Data<&AppState>) -> Response {
    let sign_in = match (&state.config().ui.sign_in, state.dev_issuer()) {
        (Some(s), _) => json!({
            "issuer": s.issuer,
            "client_id": s.client_id,
            "redirect_uri": s.redirect_uri,
            "scope": s.scope,
            "authorize_params": s.authorize_params,
        }),
        (None, Some(dev)) => json!({
            "issuer": dev.issuer(),
            "client_id": UI_CLIENT_ID,
            "redirect_uri": format!("{}/ui/", dev.issuer()),
            "scope": "openid",
            "authorize_params": {},
            "authorization_endpoint": format!("{}/ui/dev/authorize", dev.issuer()),
            "token_endpoint": format!("{}/ui/dev/token", dev.issuer()),
            "development": true,
        }),
        (None, None) => serde_json::Value::Null,
    };
    poem::web::Json(json!({ "sign_in": sign_in })).into_response()
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn login_error(e: &LoginError) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sign-in refused \
         - Keyward</title><link rel=\"icon\" href=\"data:,\"><link rel=\"stylesheet\" href=\"/ui/app.css\"></head><body><main \
         class=\"login\"><h1>Sign-in refused</h1><p role=\"alert\">{}</p></main></body></html>",
        escape(&e.to_string())
    );
    Response::builder()
        .status(StatusCode::BAD_REQUEST)
        .content_type("text/html; charset=utf-8")
        .body(body)
}

fn no_dev_issuer() -> Response {
    super::error::ApiError::not_found(
        "the development issuer is off (auth.dev_issuer); the page signs in with [ui] issuer",
    )
    .to_response()
}

fn authorize_request(p: &HashMap<String, String>) -> AuthorizeRequest {
    let get = |k: &str| p.get(k).cloned().unwrap_or_default();
    AuthorizeRequest {
        client_id: get("client_id"),
        redirect_uri: get("redirect_uri"),
        state: get("state"),
        code_challenge: get("code_challenge"),
    }
}

fn checked(
    state: &AppState,
    p: &HashMap<String, String>,
) -> Result<AuthorizeRequest, Option<LoginError>> {
    let dev = state.dev_issuer().ok_or(None)?;
    let req = authorize_request(p);
    let get = |k: &str| p.get(k).map(String::as_str).unwrap_or_default();
    dev_login::check_request(
        dev.issuer(),
        &req,
        get("response_type"),
        get("code_challenge_method"),
    )
    .map_err(Some)?;
    Ok(req)
}

/// The development login form: a subject and roles, for the page to sign in with.
#[handler]
async fn authorize_form(
    state: Data<&AppState>,
    Query(p): Query<HashMap<String, String>>,
) -> Response {
    let req = match checked(&state, &p) {
        Ok(r) => r,
        Err(None) => return no_dev_issuer(),
        Err(Some(e)) => return login_error(&e),
    };
    let hidden = [
        ("response_type", "code"),
        ("client_id", req.client_id.as_str()),
        ("redirect_uri", req.redirect_uri.as_str()),
        ("state", req.state.as_str()),
        ("code_challenge", req.code_challenge.as_str()),
        ("code_challenge_method", "S256"),
    ]
    .iter()
    .map(|(k, v)| {
        format!(
            "<input type=\"hidden\" name=\"{k}\" value=\"{}\">",
            escape(v)
        )
    })
    .collect::<String>();
    let roles = Role::ALL
        .iter()
        .map(|r| {
            let name = r.as_str();
            format!(
                "<label class=\"check\"><input type=\"checkbox\" name=\"role\" \
                 value=\"{name}\"> {name}</label>"
            )
        })
        .collect::<String>();
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Development sign-in - Keyward</title>\
         <link rel=\"icon\" href=\"data:,\"><link rel=\"stylesheet\" href=\"/ui/app.css\"></head><body><main class=\"login\">\
         <h1>Development sign-in</h1>\
         <p>The development issuer of <code>keyward dev</code> signs you in as anyone. Never \
         use it in production.</p>\
         <form method=\"post\" action=\"/ui/dev/authorize\">{hidden}\
         <label for=\"subject\">Subject</label>\
         <input id=\"subject\" name=\"subject\" required maxlength=\"128\" \
         autocomplete=\"username\">\
         <fieldset><legend>Keyward roles</legend>{roles}</fieldset>\
         <label for=\"other_roles\">Other roles (space-separated, e.g. treasury)</label>\
         <input id=\"other_roles\" name=\"other_roles\">\
         <button type=\"submit\">Sign in</button></form></main></body></html>"
    );
    Response::builder()
        .content_type("text/html; charset=utf-8")
        .body(body)
}

/// The login form's answer: a one-time code, sent back to the page.
#[handler]
async fn authorize(state: Data<&AppState>, body: String) -> Response {
    let mut p = HashMap::new();
    let mut roles = Vec::new();
    for (k, v) in form_urlencoded::parse(body.as_bytes()) {
        match k.as_ref() {
            "role" => roles.push(v.into_owned()),
            "other_roles" => roles.extend(v.split_whitespace().map(str::to_string)),
            _ => {
                p.insert(k.into_owned(), v.into_owned());
            }
        }
    }
    let req = match checked(&state, &p) {
        Ok(r) => r,
        Err(None) => return no_dev_issuer(),
        Err(Some(e)) => return login_error(&e),
    };
    let dev = state.dev_issuer().expect("checked");
    let subject = p.get("subject").cloned().unwrap_or_default();
    let (redirect, st) = (req.redirect_uri.clone(), req.state.clone());
    match dev.logins().issue(req, subject, roles) {
        Ok(code) => {
            let query = form_urlencoded::Serializer::new(String::new())
                .append_pair("code", &code)
                .append_pair("state", &st)
                .finish();
            Redirect::see_other(format!("{redirect}?{query}")).into_response()
        }
        Err(e) => login_error(&e),
    }
}

fn token_error(e: &LoginError) -> Response {
    let mut resp = poem::web::Json(json!({
        "error": e.code(),
        "error_description": e.to_string(),
    }))
    .into_response();
    resp.set_status(StatusCode::BAD_REQUEST);
    resp
}

/// The token endpoint: a code and its PKCE verifier for a development token.
#[handler]
async fn token(state: Data<&AppState>, Form(p): Form<HashMap<String, String>>) -> Response {
    let Some(dev) = state.dev_issuer() else {
        return no_dev_issuer();
    };
    let get = |k: &str| p.get(k).map(String::as_str).unwrap_or_default();
    if get("grant_type") != "authorization_code" {
        return token_error(&LoginError::InvalidRequest(
            "grant_type must be authorization_code".into(),
        ));
    }
    let (subject, roles) = match dev.logins().redeem(
        get("code"),
        get("client_id"),
        get("redirect_uri"),
        get("code_verifier"),
    ) {
        Ok(who) => who,
        Err(e) => return token_error(&e),
    };
    match dev.mint_named(&subject, &roles, DEV_TOKEN_TTL) {
        Ok(token) => poem::web::Json(json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": DEV_TOKEN_TTL.as_secs(),
        }))
        .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "the development issuer could not mint a token");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn origins_of_issuer_urls() {
        assert_eq!(
            super::origin("https://idp.example.com/realms/x").as_deref(),
            Some("https://idp.example.com")
        );
        assert_eq!(
            super::origin("http://127.0.0.1:9000").as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(super::origin("nope"), None);
    }

    #[test]
    fn escaping() {
        assert_eq!(
            super::escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
