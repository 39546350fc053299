//! End-to-end: Keyward as a relying party of a real OpenID provider.
//!
//! The provider is the certified `oidc-provider` package (tests/js/oidc-provider.mjs) on
//! loopback, with the client-credentials grant and JWT access tokens. Keyward is configured
//! with the provider's issuer URL only: it discovers the JWKS, caches it, refetches on
//! rotation, and refuses every forged or malformed token before the signing pipeline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use keyward_e2e::{AUDIENCE, Idp, Keyward, assert_error, b64, client, js_dir, write_config};
use serde_json::{Value, json};
use sha2::Digest as _;

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A compact JWS with exactly this header and these claims, signed with `key` under `alg`.
fn forge(
    header: &Value,
    claims: &Value,
    key: &jsonwebtoken::EncodingKey,
    alg: jsonwebtoken::Algorithm,
) -> String {
    let signing_input = format!(
        "{}.{}",
        b64url(&serde_json::to_vec(header).unwrap()),
        b64url(&serde_json::to_vec(claims).unwrap())
    );
    let sig = jsonwebtoken::crypto::sign(signing_input.as_bytes(), key, alg).unwrap();
    format!("{signing_input}.{sig}")
}

/// Forges tokens with the provider's own RSA key.
struct Forger {
    issuer: String,
    keys: Value,
    rsa: jsonwebtoken::EncodingKey,
}

impl Forger {
    async fn new(idp: &Idp) -> Self {
        let keys = idp.keys().await;
        let rsa = jsonwebtoken::EncodingKey::from_rsa_pem(
            keys["rsa"]["private_pem"].as_str().unwrap().as_bytes(),
        )
        .unwrap();
        Forger {
            issuer: idp.issuer.clone(),
            keys,
            rsa,
        }
    }

    fn kid(&self) -> &str {
        self.keys["rsa"]["kid"].as_str().unwrap()
    }

    /// Claims the provider would issue for `sub` with the role `kw-signer`.
    fn claims(&self, sub: &str) -> Value {
        let t = now();
        json!({
            "iss": self.issuer, "sub": sub, "aud": AUDIENCE,
            "iat": t, "nbf": t, "exp": t + 300,
            "realm_access": {"roles": ["kw-signer"]},
        })
    }

    fn rs256(&self, header_extra: Value, claims: &Value) -> String {
        let mut header = json!({"alg": "RS256", "typ": "JWT", "kid": self.kid()});
        for (k, v) in header_extra.as_object().unwrap() {
            header[k] = v.clone();
        }
        forge(&header, claims, &self.rsa, jsonwebtoken::Algorithm::RS256)
    }
}

/// Keyward trusting `idp` with Keycloak-style nested roles and groups.
fn keyward_for(work: &Path, idp: &Idp, auth_toml: &str) -> Keyward {
    let issuer = format!(
        r#"
[[auth.issuers]]
issuer = "{iss}"
audiences = ["{AUDIENCE}"]
algorithms = ["RS256", "ES256"]
roles_claim = "/realm_access/roles"
groups_claim = "/groups"
role_map = {{ "kw-signer" = "signer", "kw-admin" = ["admin"] }}
"#,
        iss = idp.issuer
    );
    let config = write_config(work, &issuer, auth_toml);
    let kek = "cd".repeat(32);
    Keyward::serve(&config, &work.join("data"), &[("KEYWARD_KEK", &kek)])
}

async fn wait_ready(kw: &Keyward) -> Value {
    let mut last = Value::Null;
    for _ in 0..100 {
        let (status, body) = kw.call("GET", "/health/ready", None, None).await;
        if status == 200 {
            return body;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never ready: {last}");
}

async fn create_key(kw: &Keyward, admin: &str, name: &str, signers: Option<Value>) -> String {
    let mut body = json!({"name": name, "algorithm": "ed25519"});
    if let Some(s) = signers {
        body["signers"] = s;
    }
    let (status, key) = kw.call("POST", "/v1/keys", Some(admin), Some(&body)).await;
    assert_eq!(status, 201, "{key}");
    key["id"].as_str().unwrap().to_string()
}

async fn sign(kw: &Keyward, key: &str, token: &str) -> (u16, Value) {
    let body = json!({"digest": b64(&[7u8; 32])});
    kw.call(
        "POST",
        &format!("/v1/keys/{key}/sign"),
        Some(token),
        Some(&body),
    )
    .await
}

async fn audit_count(kw: &Keyward, admin: &str) -> usize {
    let (status, page) = kw
        .call("GET", "/v1/audit?limit=500", Some(admin), None)
        .await;
    assert_eq!(status, 200, "{page}");
    page["items"].as_array().unwrap().len()
}

#[tokio::test(flavor = "multi_thread")]
async fn client_credentials_tokens_sign_and_key_rotation_is_followed() {
    let work = tempfile::tempdir().unwrap();
    let mut idp = Idp::start();
    let kw = keyward_for(
        work.path(),
        &idp,
        "jwks_cache_seconds = 3\njwks_min_cache_seconds = 3\njwks_max_cache_seconds = 3\n\
         jwks_refetch_cooldown_seconds = 1",
    );
    let ready = wait_ready(&kw).await;
    assert_eq!(ready["checks"][format!("issuer:{}", idp.issuer)], "ok");

    let admin = idp.token("admin-app", "keyward:admin").await;
    let key = create_key(&kw, &admin, "rotating", None).await;
    let token_a = idp.token("signer-app", "keyward:sign").await;

    let (status, me) = kw.call("GET", "/v1/whoami", Some(&token_a), None).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["issuer"], idp.issuer);
    assert_eq!(me["subject"], "signer-app");
    assert_eq!(me["roles"], json!(["signer"]));
    assert_eq!(me["groups"], json!(["payments"]));
    assert_eq!(me["email"], "signer@example.test");

    let (status, signed) = sign(&kw, &key, &token_a).await;
    assert_eq!(status, 200, "{signed}");
    assert!(signed["signature"].as_str().is_some());

    // The same token again is served from the verified-token cache (same key set).
    let (status, _) = kw.call("GET", "/v1/whoami", Some(&token_a), None).await;
    assert_eq!(status, 200);

    // Rotation: the new key's token is accepted after exactly one JWKS refetch.
    let before = idp.jwks_fetches().await;
    idp.rotate().await;
    tokio::time::sleep(Duration::from_millis(1200)).await; // past the refetch cooldown
    let token_b = idp.token("signer-app", "keyward:sign").await;
    let (status, signed) = sign(&kw, &key, &token_b).await;
    assert_eq!(status, 200, "{signed}");
    assert_eq!(idp.jwks_fetches().await, before + 1);
    // The removed key is gone from the refetched set: token_a, verified and cached before,
    // is refused at once, because a cached verification serves only the key set it was made
    // with.
    let (status, body) = sign(&kw, &key, &token_a).await;
    assert_error(status, &body, 401, "UNAUTHENTICATED");

    // A second rotation, with no token of the new key presented: the old key's tokens still
    // verify from the cache, and are refused once the cache lifetime ran out.
    let (status, _) = sign(&kw, &key, &token_b).await;
    assert_eq!(status, 200);
    idp.rotate().await;
    let token_c = idp.token("signer-app", "keyward:sign").await;
    let before = idp.jwks_fetches().await;
    tokio::time::sleep(Duration::from_millis(3500)).await; // past the 3 s lifetime
    let (status, body) = sign(&kw, &key, &token_b).await;
    assert_error(status, &body, 401, "UNAUTHENTICATED");
    assert!(idp.jwks_fetches().await > before);
    let (status, signed) = sign(&kw, &key, &token_c).await;
    assert_eq!(status, 200, "{signed}");

    // The provider goes down: cached keys keep working past their lifetime.
    idp.stop();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let (status, signed) = sign(&kw, &key, &token_c).await;
    assert_eq!(status, 200, "{signed}");
    assert!(signed["signature"].as_str().is_some());
}

/// A loopback server that counts the connections it receives (and never answers well).
async fn counting_server() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((_socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    (url, hits)
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_and_malformed_tokens_are_refused_before_the_pipeline() {
    let work = tempfile::tempdir().unwrap();
    let idp = Idp::start();
    let kw = keyward_for(work.path(), &idp, "");
    wait_ready(&kw).await;
    let admin = idp.token("admin-app", "keyward:admin").await;
    let key = create_key(&kw, &admin, "guarded", None).await;
    let f = Forger::new(&idp).await;
    let (jku_url, jku_hits) = counting_server().await;

    // The forging helper is right: a well-formed token of ours signs.
    let good = f.rs256(json!({}), &f.claims("forger"));
    let (status, body) = sign(&kw, &key, &good).await;
    assert_eq!(status, 200, "{body}");
    let audited = audit_count(&kw, &admin).await;

    let iss = f.issuer.clone();
    let with = |k: &str, v: Value| {
        let mut c = f.claims("mallory");
        c[k] = v;
        c
    };
    let without = |k: &str| {
        let mut c = f.claims("mallory");
        c.as_object_mut().unwrap().remove(k);
        c
    };
    let rsa_public = f.keys["rsa"]["public_pem"].as_str().unwrap().to_string();
    let hs_key = jsonwebtoken::EncodingKey::from_secret(rsa_public.as_bytes());
    let none_token = format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","typ":"JWT"}"#),
        b64url(&serde_json::to_vec(&f.claims("mallory")).unwrap())
    );
    let mut big = f.claims("mallory");
    big["padding"] = json!("x".repeat(17 * 1024));

    let cases: Vec<(&str, String)> = vec![
        ("alg none", none_token),
        (
            "HS256 with the RSA public key as secret",
            forge(
                &json!({"alg": "HS256", "typ": "JWT", "kid": f.kid()}),
                &f.claims("mallory"),
                &hs_key,
                jsonwebtoken::Algorithm::HS256,
            ),
        ),
        (
            "RS256 naming the EC key",
            f.rs256(
                json!({"kid": f.keys["ec"]["kid"].clone()}),
                &f.claims("mallory"),
            ),
        ),
        ("missing aud", f.rs256(json!({}), &without("aud"))),
        (
            "foreign aud",
            f.rs256(json!({}), &with("aud", json!("urn:other"))),
        ),
        (
            "aud array without ours",
            f.rs256(json!({}), &with("aud", json!(["urn:a", "urn:b"]))),
        ),
        ("missing exp", f.rs256(json!({}), &without("exp"))),
        ("missing iss", f.rs256(json!({}), &without("iss"))),
        (
            "unknown iss",
            f.rs256(json!({}), &with("iss", json!("http://127.0.0.1:1"))),
        ),
        (
            "iss prefix",
            f.rs256(json!({}), &with("iss", json!(iss[..iss.len() - 1]))),
        ),
        (
            "iss suffix",
            f.rs256(json!({}), &with("iss", json!(iss[1..]))),
        ),
        (
            "iss extended with a slash",
            f.rs256(json!({}), &with("iss", json!(format!("{iss}/")))),
        ),
        (
            "iss extended",
            f.rs256(json!({}), &with("iss", json!(format!("{iss}0")))),
        ),
        (
            "exp as a string",
            f.rs256(json!({}), &with("exp", json!((now() + 300).to_string()))),
        ),
        (
            "nbf as a string",
            f.rs256(json!({}), &with("nbf", json!(now().to_string()))),
        ),
        (
            "exp past beyond the leeway",
            f.rs256(json!({}), &with("exp", json!(now() - 120))),
        ),
        (
            "nbf in the future beyond the leeway",
            f.rs256(json!({}), &with("nbf", json!(now() + 600))),
        ),
        (
            "iat in the future beyond the leeway",
            f.rs256(json!({}), &with("iat", json!(now() + 600))),
        ),
        (
            "jku header to a server of the attacker",
            f.rs256(
                json!({"kid": "attacker-key", "jku": jku_url, "x5u": jku_url}),
                &f.claims("mallory"),
            ),
        ),
        ("17 KiB token", f.rs256(json!({}), &big)),
        ("bad signature", format!("{}AAAA", &good[..good.len() - 4])),
    ];
    for (name, token) in &cases {
        let (status, body) = sign(&kw, &key, token).await;
        assert_eq!(status, 401, "{name}: {body}");
        assert_error(status, &body, 401, "UNAUTHENTICATED");
        let (status, body) = kw.call("GET", "/v1/whoami", Some(token), None).await;
        assert_error(status, &body, 401, "UNAUTHENTICATED");
    }
    // Nothing reached the pipeline: no sign request. The refusals themselves are audited as
    // `auth`/`refused`, at most 5 a minute from one client (docs/security.md), without the token.
    let (status, page) = kw
        .call("GET", "/v1/audit?limit=500", Some(&admin), None)
        .await;
    assert_eq!(status, 200, "{page}");
    let items = page["items"].as_array().unwrap();
    let new: Vec<&Value> = items[..items.len() - audited].iter().collect();
    assert!(!new.is_empty() && new.len() <= 5, "{new:?}");
    for record in &new {
        assert_eq!(record["action"], "auth", "{record}");
        assert_eq!(record["outcome"], "refused", "{record}");
        assert_eq!(
            record["details"]["error_code"], "UNAUTHENTICATED",
            "{record}"
        );
        for (_, token) in &cases {
            assert!(!record.to_string().contains(token.as_str()), "{record}");
        }
    }
    assert_eq!(
        jku_hits.load(Ordering::SeqCst),
        0,
        "the jku URL was fetched"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_unknown_kids_causes_at_most_one_fetch_per_cooldown() {
    let work = tempfile::tempdir().unwrap();
    let idp = Idp::start();
    let cooldown = 5u64;
    let kw = keyward_for(
        work.path(),
        &idp,
        &format!("jwks_refetch_cooldown_seconds = {cooldown}"),
    );
    wait_ready(&kw).await;
    let valid = idp.token("signer-app", "keyward:sign").await;
    let f = Forger::new(&idp).await;
    // Let the cooldown of the initial load pass, so that the flood may cause one fetch.
    tokio::time::sleep(Duration::from_secs(cooldown) + Duration::from_millis(300)).await;
    let before = idp.jwks_fetches().await;

    let started = Instant::now();
    let limit = Arc::new(tokio::sync::Semaphore::new(200));
    let mut tasks = Vec::new();
    for i in 0..1000u32 {
        let kid = hex_digest(&format!("{i}-{:?}", Instant::now()));
        let token = f.rs256(json!({"kid": kid}), &f.claims("flood"));
        let url = format!("{}/v1/whoami", kw.url);
        let permit = limit.clone();
        tasks.push(tokio::spawn(async move {
            let _p = permit.acquire().await.unwrap();
            let resp = client().get(url).bearer_auth(token).send().await.unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap();
            (status, body)
        }));
    }
    // A valid token works during the flood.
    for _ in 0..10 {
        let (status, me) = kw.call("GET", "/v1/whoami", Some(&valid), None).await;
        assert_eq!(status, 200, "{me}");
    }
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_error(status, &body, 401, "UNAUTHENTICATED");
    }
    let elapsed = started.elapsed().as_secs();
    let fetched = idp.jwks_fetches().await - before;
    assert!(fetched >= 1, "an unknown kid after the cooldown refetches");
    assert!(
        fetched <= 1 + elapsed / cooldown,
        "{fetched} JWKS fetches in {elapsed} s with a {cooldown} s cooldown"
    );
    // And after it.
    let (status, me) = kw.call("GET", "/v1/whoami", Some(&valid), None).await;
    assert_eq!(status, 200, "{me}");
}

fn hex_digest(text: &str) -> String {
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn signers_lists_decide_who_signs_and_sees_a_key() {
    let work = tempfile::tempdir().unwrap();
    let idp = Idp::start();
    let kw = keyward_for(work.path(), &idp, "");
    wait_ready(&kw).await;
    let admin = idp.token("admin-app", "keyward:admin").await;
    let payments = idp.token("signer-app", "keyward:sign").await; // group payments
    let sales = idp.token("other-signer", "keyward:sign").await; // group sales

    let k_group = create_key(&kw, &admin, "payments-key", Some(json!(["group:payments"]))).await;
    let k_subject = create_key(
        &kw,
        &admin,
        "subject-key",
        Some(json!(["subject:other-signer"])),
    )
    .await;
    let k_open = create_key(&kw, &admin, "open-key", None).await;

    let (s, b) = sign(&kw, &k_group, &payments).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = sign(&kw, &k_group, &sales).await;
    assert_error(s, &b, 403, "FORBIDDEN");
    let (s, b) = sign(&kw, &k_subject, &payments).await;
    assert_error(s, &b, 403, "FORBIDDEN");
    let (s, b) = sign(&kw, &k_subject, &sales).await;
    assert_eq!(s, 200, "{b}");
    for t in [&payments, &sales] {
        let (s, b) = sign(&kw, &k_open, t).await;
        assert_eq!(s, 200, "{b}");
    }

    // Listing: signers see the keys they may sign with; the admin sees all.
    let names = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["name"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, page) = kw.call("GET", "/v1/keys", Some(&payments), None).await;
    assert_eq!(names(&page), vec!["payments-key", "open-key"]);
    let (_, page) = kw.call("GET", "/v1/keys?limit=1", Some(&sales), None).await;
    assert_eq!(names(&page), vec!["subject-key"]);
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    let (_, page) = kw
        .call(
            "GET",
            &format!("/v1/keys?limit=1&cursor={cursor}"),
            Some(&sales),
            None,
        )
        .await;
    assert_eq!(names(&page), vec!["open-key"]);
    assert!(page.get("next_cursor").is_none_or(Value::is_null), "{page}");
    let (_, page) = kw.call("GET", "/v1/keys", Some(&admin), None).await;
    assert_eq!(names(&page).len(), 3);
    let (s, b) = kw
        .call(
            "GET",
            &format!("/v1/keys/{k_subject}"),
            Some(&payments),
            None,
        )
        .await;
    assert_error(s, &b, 404, "NOT_FOUND");

    // key-admin edits the list; the change is audited and takes effect at once.
    let path = format!("/v1/keys/{k_subject}/signers");
    let body = json!({"signers": ["subject:signer-app", "subject:signer-app"]});
    let (s, b) = kw.call("PUT", &path, Some(&payments), Some(&body)).await;
    assert_error(s, &b, 403, "FORBIDDEN");
    let (s, b) = kw
        .call(
            "PUT",
            &path,
            Some(&admin),
            Some(&json!({"signers": ["team:x"]})),
        )
        .await;
    assert_eq!(s, 422, "{b}");
    let (s, b) = kw.call("PUT", &path, Some(&admin), Some(&body)).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["signers"], json!(["subject:signer-app"]));
    let (s, b) = sign(&kw, &k_subject, &payments).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = sign(&kw, &k_subject, &sales).await;
    assert_error(s, &b, 403, "FORBIDDEN");
    let (_, audit) = kw
        .call("GET", "/v1/audit?limit=500", Some(&admin), None)
        .await;
    let change = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "key.signers")
        .expect("key.signers audit record");
    assert_eq!(change["details"]["before"], json!(["subject:other-signer"]));
    assert_eq!(change["details"]["after"], json!(["subject:signer-app"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_space_separated_scope_claim_maps_to_roles() {
    let work = tempfile::tempdir().unwrap();
    let idp = Idp::start();
    let issuer = format!(
        r#"
[[auth.issuers]]
issuer = "{iss}"
audiences = ["{AUDIENCE}"]
algorithms = ["RS256"]
roles_claim = "/scope"
role_map = {{ "keyward:sign" = "signer", "keyward:admin" = ["key-admin", "auditor"] }}
"#,
        iss = idp.issuer
    );
    let config = write_config(work.path(), &issuer, "");
    let kek = "ef".repeat(32);
    let kw = Keyward::serve(&config, &work.path().join("data"), &[("KEYWARD_KEK", &kek)]);
    wait_ready(&kw).await;

    let both = idp.token("scope-app", "keyward:sign keyward:admin").await;
    let (s, me) = kw.call("GET", "/v1/whoami", Some(&both), None).await;
    assert_eq!(s, 200, "{me}");
    assert_eq!(me["roles"], json!(["auditor", "key-admin", "signer"]));
    let key = create_key(&kw, &both, "scoped", None).await;

    let sign_only = idp.token("scope-app", "keyward:sign").await;
    let (_, me) = kw.call("GET", "/v1/whoami", Some(&sign_only), None).await;
    assert_eq!(me["roles"], json!(["signer"]));
    let (s, b) = sign(&kw, &key, &sign_only).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = kw
        .call(
            "POST",
            "/v1/keys",
            Some(&sign_only),
            Some(&json!({"name": "nope", "algorithm": "ed25519"})),
        )
        .await;
    assert_error(s, &b, 403, "FORBIDDEN");

    // Nested roles of the other clients mean nothing under this mapping.
    let nested = idp.token("signer-app", "keyward:audit").await;
    let (_, me) = kw.call("GET", "/v1/whoami", Some(&nested), None).await;
    assert_eq!(me["roles"], json!([]));
    let (s, b) = sign(&kw, &key, &nested).await;
    assert_error(s, &b, 403, "FORBIDDEN");
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_names_an_issuer_whose_keys_never_loaded() {
    let work = tempfile::tempdir().unwrap();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let idp = Idp::start();
    // The provider answers at 127.0.0.1, but this issuer is spelled `localhost`: its
    // discovery document names another issuer, so its keys must not be used.
    let mismatched = idp.issuer.replace("127.0.0.1", "localhost");
    let issuers = format!(
        r#"
[[auth.issuers]]
issuer = "{dead_url}"
audiences = ["{AUDIENCE}"]
[[auth.issuers]]
issuer = "{mismatched}"
audiences = ["{AUDIENCE}"]
"#
    );
    let config = write_config(
        work.path(),
        &issuers,
        "dev_issuer = true\nfetch_timeout_seconds = 2",
    );
    let kek = "12".repeat(32);
    let kw = Keyward::serve(&config, &work.path().join("data"), &[("KEYWARD_KEK", &kek)]);
    let mut body = Value::Null;
    for _ in 0..50 {
        let (status, b) = kw.call("GET", "/health/ready", None, None).await;
        assert_eq!(status, 503, "{b}");
        body = b;
        let both = [&dead_url, &mismatched].iter().all(|i| {
            body["checks"][format!("issuer:{i}")]
                .as_str()
                .is_some_and(|m| m.contains(':') && m != "ok")
        });
        if both {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(body["status"], "unavailable", "{body}");
    let msg = body["checks"][format!("issuer:{mismatched}")]
        .as_str()
        .unwrap();
    assert!(msg.starts_with("no signing keys loaded yet"), "{body}");
    assert!(msg.contains("names issuer"), "{body}");
    assert!(
        body["checks"][format!("issuer:{dead_url}")]
            .as_str()
            .unwrap()
            .starts_with("no signing keys loaded yet"),
        "{body}"
    );
    // The development issuer still works next to them.
    let token = kw.token("dev-admin", &["admin"]);
    let (s, me) = kw.call("GET", "/v1/whoami", Some(&token), None).await;
    assert_eq!(s, 200, "{me}");
    assert_eq!(me["roles"], json!(["admin"]));
    // A token of the mismatched issuer, signed by the provider's real key, is refused.
    let f = Forger::new(&idp).await;
    let mut claims = f.claims("x");
    claims["iss"] = json!(mismatched);
    let (s, b) = kw
        .call(
            "GET",
            "/v1/whoami",
            Some(&f.rs256(json!({}), &claims)),
            None,
        )
        .await;
    assert_error(s, &b, 401, "UNAUTHENTICATED");
}

/// Runs tests/js/swagger-authorize.mjs: Authorize with `token`, then execute GET /v1/whoami
/// in Swagger UI. Returns the status and body the page shows.
fn swagger_whoami(base: &str, token: &str, shot: &Path) -> (String, String) {
    let out = Command::new("node")
        .args(["swagger-authorize.mjs", base, token, shot.to_str().unwrap()])
        .current_dir(js_dir())
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "swagger-authorize.mjs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("script output");
    (
        v["status"].as_str().unwrap().to_string(),
        v["body"].as_str().unwrap().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn swagger_ui_authorize_button_takes_an_idp_token() {
    let work = tempfile::tempdir().unwrap();
    let idp = Idp::start();
    let kw = keyward_for(work.path(), &idp, "");
    wait_ready(&kw).await;

    let (status, spec) = kw.call("GET", "/openapi.json", None, None).await;
    assert_eq!(status, 200);
    let bearer = spec["components"]["securitySchemes"]
        .as_object()
        .unwrap()
        .values()
        .find(|s| s["scheme"] == "bearer")
        .expect("a bearer scheme")
        .clone();
    assert_eq!(bearer["type"], "http");
    assert_eq!(bearer["bearerFormat"], "JWT");
    assert!(spec["paths"]["/v1/whoami"]["get"]["security"].is_array());
    let resp = client()
        .get(format!("{}/docs", kw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("swagger-ui"));

    // The real page in headless Chromium (Debian's `chromium` package).
    if !Path::new("/usr/bin/chromium").exists() && std::env::var_os("CHROMIUM").is_none() {
        eprintln!("SKIPPED the browser part: install Debian's chromium package to run it");
        return;
    }
    let token = idp.token("signer-app", "keyward:sign").await;
    let (status, body) = swagger_whoami(&kw.url, &token, &work.path().join("ok.png"));
    assert_eq!(status, "200", "{body}");
    let me: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(me["subject"], "signer-app");
    assert_eq!(me["roles"], json!(["signer"]));
    let (status, body) = swagger_whoami(&kw.url, "not-a-token", &work.path().join("bad.png"));
    assert!(status.starts_with("401"), "{status}: {body}");
    assert!(body.contains("UNAUTHENTICATED"), "{body}");
}
