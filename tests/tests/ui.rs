//! The approvers' page with the real binary, in headless Chromium (tests/js/approver-ui.mjs):
//! people sign in through the page's own sign-in, read an Ethereum transaction, a PSBT and a
//! document request decoded, and vote; the server's state after it is checked here, along
//! with the page's security headers, the development login's refusals and axe-core's report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use keyward_e2e::{
    ABANDON, AUDIENCE, Idp, Keyward, b64, client, example_policy, node_json, workspace_root,
    write_config,
};
use serde_json::{Value, json};

const ETH_TO: &str = "0x3535353535353535353535353535353535353535";
const BTC_TO: &str = "bcrt1qgfpyysjzgfpyysjzgfpyysjzgfpyysjzgfpyysjzgfpyysjzgfpqrgmtn9";

async fn ok(kw: &Keyward, method: &str, path: &str, token: &str, body: Value, want: u16) -> Value {
    let (status, resp) = kw.call(method, path, Some(token), Some(&body)).await;
    assert_eq!(status, want, "{method} {path}: {resp}");
    resp
}

async fn upload(kw: &Keyward, name: &str) -> String {
    let admin = kw.admin().to_string();
    let body = json!({"name": name, "version": "1.0.0", "module": b64(&example_policy(name))});
    ok(kw, "POST", "/v1/policies", &admin, body, 201).await["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn bind(kw: &Keyward, key: &str, policies: Value) {
    let admin = kw.admin().to_string();
    let path = format!("/v1/keys/{key}/policies");
    ok(kw, "PUT", &path, &admin, json!({"policies": policies}), 200).await;
}

/// Three requests by carol waiting for two treasury approvers: an Ethereum transaction, a
/// PSBT and a document. Returns their ids.
async fn three_pending(kw: &Keyward, dir: &std::path::Path) -> (String, String, String) {
    let admin = kw.admin().to_string();
    let gate = upload(kw, "approval-above").await;
    let allowlist = upload(kw, "eth-allowlist").await;
    let settings = json!({"max_message_len": 0, "digests": true, "approvals": 2,
                          "approver_roles": ["treasury"]});
    let carol = kw.token("carol", &["signer", "approver", "treasury"]);
    let wallet = kw.import_wallet("ui", ABANDON).await;

    let eth = kw
        .derive_account(&wallet, json!({"chain": "ethereum", "index": 0}))
        .await;
    let eth_key = eth["key"]["id"].as_str().unwrap();
    bind(
        kw,
        eth_key,
        json!([{"policy_id": allowlist, "settings": {"recipients": [ETH_TO]}},
               {"policy_id": gate, "settings": settings}]),
    )
    .await;
    let tx = json!({"chain_id": "1", "nonce": "4", "max_fee_per_gas": "30000000000",
                    "max_priority_fee_per_gas": "2000000000", "gas": "21000", "to": ETH_TO,
                    "value": "1500000000000000000"});
    let path = format!("/v1/keys/{eth_key}/ethereum/sign-transaction");
    let eth_req = ok(kw, "POST", &path, &carol, json!({"transaction": tx}), 202).await;

    let btc = kw
        .derive_account(
            &wallet,
            json!({"chain": "bitcoin", "network": "regtest", "address_type": "p2wpkh"}),
        )
        .await;
    let btc_key = btc["key"]["id"].as_str().unwrap();
    bind(
        kw,
        btc_key,
        json!([{"policy_id": gate, "settings": settings}]),
    )
    .await;
    let address = btc["account"]["address"].as_str().unwrap();
    let built = node_json(
        "bitcoin-check.mjs",
        "build",
        dir,
        json!({"address": address, "to": BTC_TO, "kind": "p2wpkh"}),
    );
    let path = format!("/v1/keys/{btc_key}/bitcoin/sign-psbt");
    let btc_req = ok(
        kw,
        "POST",
        &path,
        &carol,
        json!({"psbt": built["psbt"]}),
        202,
    )
    .await;

    let doc_key = ok(
        kw,
        "POST",
        "/v1/keys",
        &admin,
        json!({"name": "contracts", "algorithm": "p256", "purpose": "document"}),
        201,
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/v1/keys/{doc_key}/certificate");
    let cert = json!({"subject": {"common_name": "Carol Contracts"}, "validity_days": 30});
    ok(kw, "POST", &path, &admin, cert, 201).await;
    bind(
        kw,
        &doc_key,
        json!([{"policy_id": gate, "settings": settings}]),
    )
    .await;
    let doc = json!({"key_id": doc_key, "document": b64(b"%PDF-1.7 supply contract v3"),
                     "hash_algorithm": "sha256", "document_name": "supply-contract-v3.pdf"});
    let doc_req = ok(kw, "POST", "/v1/documents/sign", &carol, doc, 202).await;
    let id = |v: &Value| v["request_id"].as_str().expect("request id").to_string();
    (id(&eth_req), id(&btc_req), id(&doc_req))
}

/// Runs tests/js/approver-ui.mjs on `input`: what the pages showed, once the run finished
/// with no failure and no error nobody expected.
fn drive_page(scratch: &std::path::Path, input: Value) -> Value {
    let seen = node_json("approver-ui.mjs", "run", scratch, input);
    assert!(
        seen.get("failure").is_none(),
        "{}\n{}",
        seen["failure"],
        seen["failure_page"]
    );
    assert_eq!(seen["errors"], json!([]), "console errors");
    seen
}

/// Asserts that an Ethereum approval request was signed (its raw transaction came back) after
/// the votes of `voters`, in that order.
fn assert_signed_by(signed: &Value, voters: &[&str]) {
    assert_eq!(signed["status"], "signed", "{signed}");
    assert!(
        signed["ethereum"]["raw_transaction"].is_string(),
        "{signed}"
    );
    let subjects: Vec<&str> = signed["votes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, voters, "{signed}");
}

fn contains(text: &Value, needles: &[&str]) {
    let text = text.as_str().expect("page text");
    for n in needles {
        assert!(text.contains(n), "the page does not show {n:?}:\n{text}");
    }
}

#[tokio::test]
async fn approvers_read_decoded_requests_in_a_browser_and_their_votes_decide() {
    let dir = tempfile::tempdir().unwrap();
    let kw = Keyward::dev(dir.path());
    let (eth, btc, doc) = three_pending(&kw, dir.path()).await;
    // Screenshots of each page stay after the run (never committed: target/ is ignored).
    let shots = std::env::var_os("KEYWARD_UI_SHOTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/ui-screenshots"));
    std::fs::create_dir_all(&shots).unwrap();
    let seen = drive_page(
        dir.path(),
        json!({"base": kw.url, "shots": shots, "eth": eth, "btc": btc, "doc": doc, "login": "dev"}),
    );
    assert_eq!(seen["external"], json!([]), "requests to other hosts");

    // What the page showed, against what was sent.
    contains(&seen["pending_text"], &["Send 1.5 ETH", "asked by carol"]);
    contains(
        &seen["eth_text"],
        &[
            "Ethereum transaction",
            "Ethereum Mainnet (chain id 1)",
            &format!("{ETH_TO} (on the allowlist of eth-allowlist)"),
            "1.5 ETH (1,500,000,000,000,000,000 wei)",
            "30 gwei",
            "Worst-case cost",
            "1.50063 ETH",
            "carol",
            "Ethereum transactions need approval",
        ],
    );
    assert_eq!(seen["eth_after_alice"], "pending approval");
    assert_eq!(seen["eth_after_bob"], "signed");
    assert_eq!(seen["eth_alice_sees"], "signed");
    contains(
        &seen["btc_text"],
        &[
            "Bitcoin transaction (regtest)",
            &format!("{BTC_TO}: 0.001 BTC (100,000 sat)"),
            "(change)",
            "0.000135 BTC",
            "0.000015 BTC (1,500 sat)",
            "sat/vB",
        ],
    );
    contains(
        &seen["doc_text"],
        &[
            "Document signature",
            "supply-contract-v3.pdf",
            "Carol Contracts",
            "B-B",
            "sha256:",
        ],
    );
    contains(
        &seen["mine_text"],
        &["My requests", "signed", "pending approval"],
    );
    assert_eq!(seen["carol_eth_status"], "signed");
    assert_eq!(seen["carol_btc_approve_buttons"], 0);
    contains(&seen["carol_btc_text"], &["someone else must approve"]);
    contains(
        &seen["doc_after_reject"],
        &["bob: reject", "wrong contract version"],
    );
    contains(
        &seen["audit_text"],
        &["Audit log", "Chain: each record", "approval.approve"],
    );
    let storage: Value = serde_json::from_str(seen["storage"].as_str().unwrap()).unwrap();
    assert_eq!(storage, json!({"local": {}, "session": {}, "cookie": ""}));
    for (page, violations) in seen["axe"].as_object().unwrap() {
        assert_eq!(violations, &json!([]), "axe on {page}");
    }
    assert!(
        seen["axe"].as_object().unwrap().len() >= 7,
        "{}",
        seen["axe"]
    );
    for url in seen["signed_in_url"].as_object().unwrap().values() {
        assert!(!url.as_str().unwrap().contains("code="), "{url}");
    }

    // The server agrees: signed once after two approvals, the PSBT still waits, the document
    // was rejected; carol may not approve her own PSBT through the API either.
    let admin = kw.admin().to_string();
    let get = |id: &str| format!("/v1/requests/{id}");
    let (_, signed) = kw.call("GET", &get(&eth), Some(&admin), None).await;
    assert_signed_by(&signed, &["alice", "bob"]);
    assert_eq!(signed["votes"][0]["comment"], "checked the recipient");
    let carol = kw.token("carol", &["signer", "approver", "treasury"]);
    let (status, refused) = kw
        .call(
            "POST",
            &format!("{}/approve", get(&btc)),
            Some(&carol),
            Some(&json!({})),
        )
        .await;
    assert_eq!(status, 403, "{refused}");
    let (_, waiting) = kw.call("GET", &get(&btc), Some(&admin), None).await;
    assert_eq!(waiting["status"], "pending_approval");
    assert!(waiting.get("result").is_none(), "{waiting}");
    let (_, rejected) = kw.call("GET", &get(&doc), Some(&admin), None).await;
    assert_eq!(rejected["status"], "rejected", "{rejected}");
    assert!(rejected.get("document").is_none(), "{rejected}");
}

#[tokio::test]
async fn the_page_is_locked_down_and_the_development_login_refuses_what_it_should() {
    let dir = tempfile::tempdir().unwrap();
    let kw = Keyward::dev(dir.path());
    let http = client();
    let resp = http.get(format!("{}/ui/", kw.url)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let csp = resp.headers()["content-security-policy"].to_str().unwrap();
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
        "connect-src 'self'",
    ] {
        assert!(csp.contains(part), "{csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(resp.headers()["x-frame-options"], "DENY");
    let html = resp.text().await.unwrap();
    assert!(!html.contains("<script>"), "no inline script: {html}");
    assert!(
        !html.contains("https://"),
        "nothing from other origins: {html}"
    );

    // The development login: only Keyward's page, only back to this server's /ui/, S256 only.
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let redirect = format!("{}/ui/", kw.url);
    let authorize = |client_id: &str, redirect_uri: &str, method: &str| {
        vec![
            ("response_type", "code".to_string()),
            ("client_id", client_id.to_string()),
            ("redirect_uri", redirect_uri.to_string()),
            ("state", "s-1".to_string()),
            ("code_challenge", challenge.to_string()),
            ("code_challenge_method", method.to_string()),
        ]
    };
    for (params, why) in [
        (
            authorize("other-app", &redirect, "S256"),
            "unauthorized_client",
        ),
        (
            authorize("keyward-ui", "https://evil.example/ui/", "S256"),
            "redirect_uri",
        ),
        (authorize("keyward-ui", &redirect, "plain"), "S256"),
    ] {
        let resp = http
            .get(format!("{}/ui/dev/authorize", kw.url))
            .query(&params)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);
        assert!(resp.text().await.unwrap().contains(why), "{why}");
    }
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut form = authorize("keyward-ui", &redirect, "S256");
    form.push(("subject", "erin".into()));
    form.push(("role", "approver".into()));
    let resp = no_redirects
        .post(format!("{}/ui/dev/authorize", kw.url))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with(&format!("{redirect}?code=")),
        "{location}"
    );
    assert!(location.ends_with("&state=s-1"), "{location}");
    let code = location
        .split("code=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_string();
    let exchange = |verifier: &str| {
        vec![
            ("grant_type", "authorization_code".to_string()),
            ("code", code.clone()),
            ("client_id", "keyward-ui".to_string()),
            ("redirect_uri", redirect.clone()),
            ("code_verifier", verifier.to_string()),
        ]
    };
    // A wrong verifier is refused and spends the code: the right one comes too late.
    let token = |form: Vec<(&'static str, String)>| {
        let http = http.clone();
        let url = format!("{}/ui/dev/token", kw.url);
        async move {
            let resp = http.post(url).form(&form).send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = token(exchange(&"A".repeat(43))).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, body) = token(exchange(verifier)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert!(body.get("access_token").is_none());

    // The right verifier, first time: a token for the subject and roles chosen.
    let resp = no_redirects
        .post(format!("{}/ui/dev/authorize", kw.url))
        .form(&form)
        .send()
        .await
        .unwrap();
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let code2 = location
        .split("code=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let mut ex = exchange(verifier);
    ex[1].1 = code2.to_string();
    let (status, body) = token(ex.clone()).await;
    assert_eq!(status, 200, "{body}");
    let access = body["access_token"].as_str().unwrap();
    let (status, me) = kw.call("GET", "/v1/whoami", Some(access), None).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(
        (me["subject"].as_str(), me["roles"].clone()),
        (Some("erin"), json!(["approver"]))
    );
    let (status, again) = token(ex).await;
    assert_eq!(
        (status, again["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn approvers_sign_in_through_a_real_openid_provider_and_approve() {
    let dir = tempfile::tempdir().unwrap();
    let idp = Idp::start();
    let data = dir.path().join("data");
    let issuer_and_ui = format!(
        r#"
[[auth.issuers]]
issuer = "{iss}"
audiences = ["{AUDIENCE}"]
algorithms = ["RS256"]
roles_claim = "/realm_access/roles"
role_map = {{ "kw-signer" = "signer", "kw-admin" = "admin", "kw-approver" = "approver" }}
[ui]
issuer = "{iss}"
client_id = "keyward-ui"
scope = "openid keyward:sign"
authorize_params = {{ resource = "{AUDIENCE}" }}
"#,
        iss = idp.issuer
    );
    let file = write_config(dir.path(), &issuer_and_ui, "");
    let kek = "ab".repeat(32);
    let kw = Keyward::serve(&file, &data, &[("KEYWARD_KEK", &kek)]);
    idp.register_ui(&format!("{}/ui/", kw.url)).await;

    // The page's configuration names the provider, and its CSP lets it reach the provider.
    let resp = client()
        .get(format!("{}/ui/", kw.url))
        .send()
        .await
        .unwrap();
    let csp = resp.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains(&format!("connect-src 'self' {}", idp.issuer)),
        "{csp}"
    );
    let (_, cfg) = kw.call("GET", "/ui/config.json", None, None).await;
    assert_eq!(cfg["sign_in"]["issuer"], idp.issuer.as_str());
    assert_eq!(cfg["sign_in"]["client_id"], "keyward-ui");

    // A request of the signer-app client that two treasury approvers must approve.
    let admin = idp.token("admin-app", "keyward:admin").await;
    let wallet = json!({"name": "payments", "mnemonic": ABANDON});
    let wallet = ok(&kw, "POST", "/v1/wallets", &admin, wallet, 201).await;
    let path = format!(
        "/v1/wallets/{}/accounts",
        wallet["wallet"]["id"].as_str().unwrap()
    );
    let account = json!({"chain": "ethereum", "index": 0});
    let account = ok(&kw, "POST", &path, &admin, account, 201).await;
    let key = account["key"]["id"].as_str().unwrap().to_string();
    let module = b64(&example_policy("approval-above"));
    let body = json!({"name": "approval-above", "version": "1.0.0", "module": module});
    let gate = ok(&kw, "POST", "/v1/policies", &admin, body, 201).await;
    let settings = json!({"max_message_len": 0, "approvals": 2, "approver_roles": ["treasury"]});
    let bindings = json!({"policies": [{"policy_id": gate["id"], "settings": settings}]});
    ok(
        &kw,
        "PUT",
        &format!("/v1/keys/{key}/policies"),
        &admin,
        bindings,
        200,
    )
    .await;
    let signer = idp.token("signer-app", "keyward:sign").await;
    let tx = json!({"chain_id": "11155111", "nonce": "0", "gas_price": "1000000000", "gas": "21000",
                    "to": ETH_TO, "value": "250000000000000000"});
    let path = format!("/v1/keys/{key}/ethereum/sign-transaction");
    let pending = ok(&kw, "POST", &path, &signer, json!({"transaction": tx}), 202).await;
    let id = pending["request_id"].as_str().unwrap().to_string();

    let seen = drive_page(
        dir.path(),
        json!({"base": kw.url, "shots": dir.path(), "eth": id, "login": "idp"}),
    );
    // The provider's forms link a web font; Keyward's page asks no other host for anything.
    for ext in seen["external"].as_array().unwrap() {
        assert!(!ext["from"].as_str().unwrap().starts_with(&kw.url), "{ext}");
    }
    contains(&seen["who_alice"], &["alice", "approver"]);
    contains(
        &seen["eth_text"],
        &[
            "Sepolia (chain id 11155111)",
            "0.25 ETH (250,000,000,000,000,000 wei)",
            ETH_TO,
        ],
    );
    assert_eq!(seen["eth_after_bob"], "signed");
    assert_eq!(seen["axe"]["request-eth-idp"], json!([]));
    let storage: Value = serde_json::from_str(seen["storage"].as_str().unwrap()).unwrap();
    assert_eq!(storage, json!({"local": {}, "session": {}}));

    let (_, signed) = kw
        .call("GET", &format!("/v1/requests/{id}"), Some(&signer), None)
        .await;
    assert_signed_by(&signed, &["alice", "bob"]);
    for vote in signed["votes"].as_array().unwrap() {
        assert_eq!(vote["issuer"], idp.issuer.as_str(), "{vote}");
    }
}

/// The page's decoder on the SDK's builders of the intents the browser tests do not send
/// (a server test proves each builder has the shape of the server's own intent).
#[test]
fn the_page_decodes_every_kind_of_intent_in_words() {
    use keyward_policy::Intent;
    use keyward_policy::testing as t;
    let dir = tempfile::tempdir().unwrap();
    let permit_domain = t::eip712_domain(
        "USD Coin",
        "2",
        1,
        "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48",
    );
    let intents: Vec<Intent> = vec![
        t::solana_transfer(
            "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM",
            "4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T",
            2_500_000_000,
        )
        .into(),
        t::spl_token_transfer(
            "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM",
            "BQcdHdAQW1hczDbBi9hiegXAR7A98Q9jx3X3iBBBDiq4",
            "6Ym8kGVnCG6iHz1KBDPVsRN4nSyXGiNm3dFzbDFP5WPs",
            "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v",
            12_340_000,
            6,
        )
        .into(),
        t::solana_message("I agree to the terms").into(),
        t::ethereum_message(b"Sign in to example.org").into(),
        t::ethereum_message(&[0xff, 0x00, 0x10]).into(),
        t::ethereum_typed_data(
            permit_domain,
            "Permit",
            json!({"owner": "0x9858effd232b4033e47d90003d41ec34ecaeda94", "value": "1000000"}),
        )
        .into(),
        t::erc20_approve(
            1,
            "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48",
            ETH_TO,
            "115792089237316195423570985008687907853269984665640564039457584007913129639935",
        )
        .into(),
        t::erc20_transfer(
            1,
            "0xdac17f958d2ee523a2206206994597c13d831ec7",
            ETH_TO,
            "2500000",
        )
        .into(),
        t::raw_digest("sha256", &"ab".repeat(32)).into(),
        t::raw_message(14).into(),
    ];
    let seen = node_json(
        "ui-decode-check.mjs",
        "run",
        dir.path(),
        json!({"intents": intents}),
    );
    let text = |i: usize| seen[i].to_string();
    let has = |i: usize, needles: &[&str]| {
        for n in needles {
            assert!(
                text(i).contains(n),
                "intent {i} does not show {n:?}: {}",
                seen[i]
            );
        }
    };
    has(
        0,
        &[
            "Solana transaction",
            "2.5 SOL (2,500,000,000 lamports)",
            "4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T",
            "Fee payer",
        ],
    );
    has(
        1,
        &[
            "12.34 of mint EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v",
            "6Ym8kGVnCG6iHz1KBDPVsRN4nSyXGiNm3dFzbDFP5WPs",
        ],
    );
    has(
        2,
        &["Solana off-chain message", "Text: I agree to the terms"],
    );
    has(3, &["EIP-191", "Text: Sign in to example.org"]);
    has(4, &["Bytes (hex): 0xff0010", "not text"]);
    has(
        5,
        &[
            "Typed data (EIP-712): Permit",
            "Name: USD Coin",
            "Ethereum Mainnet (chain id 1)",
            "\\\"value\\\":\\\"1000000\\\"",
        ],
    );
    has(
        6,
        &[
            "Allow 0x3535353535353535353535353535353535353535 to spend",
            "USDC",
            "Unlimited approval",
        ],
    );
    has(
        7,
        &["Transfer 2.5 USDT to 0x3535353535353535353535353535353535353535"],
    );
    has(8, &["Raw signature", "Blind signature", &"ab".repeat(32)]);
    has(9, &["Message length: 14 bytes"]);
    assert_eq!(
        seen[9]["warnings"],
        json!([]),
        "a message is not a blind digest"
    );
}
