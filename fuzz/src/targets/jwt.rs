//! Bearer tokens: the JWT verifier of one issuer (EdDSA, a fixed JWKS) with the settings a
//! deployment has (`iss`, `aud`, required claims, leeway, a roles claim).
//!
//! Two kinds of input (the first byte): a whole token string, which must never verify (no
//! input can carry a signature of the harness's key); or a header and a claims set (JSON,
//! split at the first 0xff byte) that the harness signs with the issuer's key, so the claim
//! checks behind the signature are reached. Invariants: a token verifies only when its
//! header is EdDSA and its claims hold the issuer, an accepted audience, a string subject and
//! numeric, current times; never a panic.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::harness;
use base64::Engine as _;
use ed25519_dalek::SigningKey;
use jsonwebtoken::jwk::JwkSet;
use keyward_server::auth::{IssuerSettings, IssuerVerifier};
use serde_json::{Value, json};
use std::sync::OnceLock;

const ISSUER: &str = "https://idp.fuzz.test";
const AUDIENCE: &str = "keyward";
const LEEWAY: u64 = 30;

struct Issuer {
    signing: ed25519_dalek::SigningKey,
    verifier: IssuerVerifier,
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn issuer() -> &'static Issuer {
    static ISSUER_KEYS: OnceLock<Issuer> = OnceLock::new();
    ISSUER_KEYS.get_or_init(|| {
        let signing = SigningKey::from_bytes(&[0x5a; 32]);
        let jwks: JwkSet = serde_json::from_value(json!({"keys": [{
            "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": "fuzz",
            "x": b64url(signing.verifying_key().as_bytes()),
        }]}))
        .expect("a JWKS");
        let settings = IssuerSettings {
            issuer: ISSUER.into(),
            audiences: vec![AUDIENCE.into()],
            algorithms: vec![jsonwebtoken::Algorithm::EdDSA],
            roles_claim: "/roles".into(),
            groups_claim: Some("/groups".into()),
            role_map: Default::default(),
            leeway_seconds: LEEWAY,
        };
        let verifier = IssuerVerifier::new(settings, &jwks).expect("a verifier");
        Issuer { signing, verifier }
    })
}

fn sign(header: &[u8], claims: &[u8]) -> String {
    use ed25519_dalek::Signer as _;
    let input = format!("{}.{}", b64url(header), b64url(claims));
    let signature = issuer().signing.sign(input.as_bytes());
    format!("{input}.{}", b64url(&signature.to_bytes()))
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Seed inputs.
pub fn seeds() -> Vec<Vec<u8>> {
    let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": "fuzz"});
    // Times far in the future: a seed stays valid for the fuzzer to mutate.
    let claims = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "exp": 4_000_000_000u64,
                        "iat": 1_700_000_000u64, "nbf": 1_700_000_000u64,
                        "roles": ["signer", "approver"], "groups": "treasury ops"});
    let many = json!({"iss": ISSUER, "aud": ["other", AUDIENCE], "sub": "svc", "exp": 4_000_000_000.5,
                      "roles": "admin", "email": "svc@example.com", "name": "Service"});
    let mut seeds = Vec::new();
    for c in [&claims, &many] {
        let mut seed = vec![1u8];
        seed.extend(serde_json::to_vec(&header).expect("JSON"));
        seed.push(0xff);
        seed.extend(serde_json::to_vec(c).expect("JSON"));
        seeds.push(seed);
    }
    let mut token = vec![0u8];
    token.extend(
        sign(
            &serde_json::to_vec(&header).expect("JSON"),
            &serde_json::to_vec(&claims).expect("JSON"),
        )
        .into_bytes(),
    );
    seeds.push(token);
    seeds
}

fn assert_claims_admit(header: &[u8], claims: &[u8]) {
    let header: Value = serde_json::from_slice(header).expect("an accepted header is JSON");
    assert_eq!(
        header["alg"], "EdDSA",
        "accepted another algorithm: {header}"
    );
    let claims: Value = serde_json::from_slice(claims).expect("accepted claims are JSON");
    assert_eq!(claims["iss"], ISSUER, "accepted another issuer: {claims}");
    let aud_ok = match &claims["aud"] {
        Value::String(a) => a == AUDIENCE,
        Value::Array(list) => list.iter().any(|a| a == AUDIENCE),
        _ => false,
    };
    assert!(aud_ok, "accepted another audience: {claims}");
    assert!(
        claims["sub"].is_string(),
        "accepted a subject that is not a string: {claims}"
    );
    let now = now();
    let leeway = LEEWAY as f64;
    let exp = claims["exp"]
        .as_f64()
        .expect("accepted without a numeric exp");
    assert!(
        exp + leeway >= now - 5.0,
        "accepted an expired token: {claims}"
    );
    for (name, _) in [("nbf", ()), ("iat", ())] {
        match &claims[name] {
            Value::Null => {}
            v => {
                let t = v
                    .as_f64()
                    .unwrap_or_else(|| panic!("accepted a non-numeric {name}: {claims}"));
                assert!(
                    t - leeway <= now + 5.0,
                    "accepted a future {name}: {claims}"
                );
            }
        }
    }
}

/// Checks one input.
pub fn check(data: &[u8]) {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let h = harness();
    if kind & 1 == 0 {
        let Ok(token) = std::str::from_utf8(rest) else {
            return;
        };
        let verified = h.block_on(issuer().verifier.verify(token));
        if verified.is_ok() {
            // Only a token the harness signed itself can verify: the seed.
            let parts: Vec<&str> = token.split('.').collect();
            assert_eq!(
                parts.len(),
                3,
                "verified a token that is not three parts: {token:?}"
            );
            let decode = |p: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p);
            let (Ok(header), Ok(claims)) = (decode(parts[0]), decode(parts[1])) else {
                panic!("verified a token whose parts are not base64url: {token:?}");
            };
            assert_eq!(
                sign(&header, &claims),
                token,
                "verified a token the issuer did not sign"
            );
            assert_claims_admit(&header, &claims);
        }
        // The server's own authenticator (the development issuer's key) must refuse every
        // token but the one it minted for the harness.
        let server = h.block_on(h.state().auth().verify(token));
        assert!(
            server.is_err() || token == h.token(),
            "the server accepted {token:?}"
        );
        return;
    }
    let split = rest.iter().position(|&b| b == 0xff).unwrap_or(rest.len());
    let (header, claims) = (&rest[..split], rest.get(split + 1..).unwrap_or(&[]));
    let token = sign(header, claims);
    if h.block_on(issuer().verifier.verify(&token)).is_ok() {
        assert_claims_admit(header, claims);
    }
}
