//! What every fuzz target shares: one in-process Keyward with the `keyward dev` configuration
//! (SQLite on a temporary data directory, software keys, the development issuer, `allow-all`
//! bound to new keys), reached through its real route tree, so that a target sends its input
//! to the same handler, pipeline and signer a caller reaches over HTTP.
//!
//! A target checks two kinds of invariants on each input:
//! - its parser's own (decode → encode round trips, a hash that does not depend on how the
//!   input was spelled), on the pure functions the routes call;
//! - the route's: never a server error, a refusal is the uniform error body with no signature
//!   in it, an input the parser refuses is refused by the route, and a signature the route
//!   does give verifies, checked independently, over what the parser says was signed.
//!
//! Signing writes a durable audit record, so the targets ask for dry runs (the whole path up
//! to the policies' decision) and sign for real for one input in [`REAL_SIGNATURE_ONE_IN`],
//! which keeps the audit log small over a run of hours.
//!
//! Seeds: when `FUZZ_SEED_DIR` names a directory (not a `KEYWARD_*` name: those are
//! configuration overrides, and the configuration refuses names it does not know), [`write_seeds`] writes a target's
//! seed inputs there at start-up (libFuzzer loads its corpus directories after that), made
//! from the same vectors and requests as the tests: valid transactions, typed data, PSBTs and
//! messages for this instance's accounts, a CMS signature and a certificate chain made by
//! this instance.

pub mod ethereum;
pub mod smoke;
pub mod targets;

use std::cell::Cell;
use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine as _;
use keyward_server::api::routes;
use keyward_server::app::AppState;
use keyward_server::auth::Role;
use poem::endpoint::BoxEndpoint;
use poem::http::{Method, StatusCode};
use poem::{Endpoint, EndpointExt};
use serde_json::{Value, json};
use sha2::Digest as _;
use tokio::runtime::Runtime;

/// One input in this many that decodes is signed for real (the others are dry runs).
pub const REAL_SIGNATURE_ONE_IN: u64 = 32;

/// The mnemonic of the tests' wallets (BIP-39's `abandon ... about`).
pub const ABANDON: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";

/// A wallet account of the harness.
#[derive(Debug, Clone)]
pub struct Account {
    /// Its key id.
    pub key: String,
    /// Its address as the server gives it.
    pub address: String,
    /// Its public key (compressed SEC1 for secp256k1, 32 bytes for Ed25519).
    pub public_key: Vec<u8>,
}

/// The in-process server and what the harness made on it.
pub struct Harness {
    runtime: Runtime,
    state: AppState,
    endpoint: BoxEndpoint<'static>,
    token: String,
    /// Ethereum account 0 of `abandon ... about`.
    pub ethereum: Account,
    /// A regtest P2WPKH account.
    pub bitcoin_wpkh: Account,
    /// A regtest P2TR account.
    pub bitcoin_tr: Account,
    /// A Solana account.
    pub solana: Account,
    /// A P-256 document key with a certificate from the internal CA (also a CSC credential).
    pub document_key: String,
    /// Its certificate and the CA's, PEM, leaf first.
    pub chain_pem: String,
    /// A CMS signature (DER) of [`SIGNED_DOCUMENT`] by `document_key`.
    pub cms: Vec<u8>,
    _dir: tempfile::TempDir,
}

/// The document the harness's CMS signature is over.
pub const SIGNED_DOCUMENT: &[u8] = b"Keyward fuzz harness: the document of the seed signature.\n";

/// An answer of the server.
#[derive(Debug)]
pub struct Answer {
    /// Its status.
    pub status: StatusCode,
    /// Its body as JSON (`Value::String` of the text when it is not JSON).
    pub body: Value,
}

/// Fields that carry a signature or signed material in some answer: none may appear in a
/// refusal.
const SIGNED_FIELDS: &[&str] = &[
    "signature",
    "signatures",
    "raw_transaction",
    "signed_message",
    "transaction",
    "psbt",
    "result",
    "SAD",
    "certificate_pem",
    "csr_pem",
];

impl Answer {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }

    /// Panics on a server error, and on a refusal that is not the uniform error body or that
    /// carries signed material.
    pub fn check(&self, what: &str) {
        assert!(
            !self.status.is_server_error(),
            "{what}: server error {}: {}",
            self.status,
            self.body
        );
        if self.is_success() {
            return;
        }
        let code = self.body.get("code").and_then(Value::as_str);
        assert!(
            code.is_some_and(|c| !c.is_empty()),
            "{what}: a refusal without a code: {} {}",
            self.status,
            self.body
        );
        let message = self.body.get("message").and_then(Value::as_str);
        assert!(
            message.is_some_and(|m| !m.is_empty()),
            "{what}: a refusal without a message: {}",
            self.body
        );
        self.check_unsigned(what);
    }

    /// Panics when the answer carries signed material.
    pub fn check_unsigned(&self, what: &str) {
        for field in SIGNED_FIELDS {
            assert!(
                self.body.get(*field).is_none_or(Value::is_null),
                "{what}: {} carries {field}: {}",
                self.status,
                self.body
            );
        }
    }

    /// A string field of the body; panics when it is missing.
    pub fn text(&self, field: &str) -> &str {
        self.body
            .get(field)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no string {field} in {}", self.body))
    }
}

static HARNESS: OnceLock<Harness> = OnceLock::new();
thread_local! {
    // Per thread: `cargo test` runs the smoke tests as threads of one process, and a target's
    // checks run on the thread that calls it.
    static SIGN_EVERY_INPUT: Cell<bool> = const { Cell::new(false) };
    static VERIFIED: Cell<usize> = const { Cell::new(0) };
}

/// Makes every input that decodes a real signature, on this thread (for the tests that prove
/// the targets reach their signature checks).
pub fn sign_every_input(on: bool) {
    SIGN_EVERY_INPUT.with(|c| c.set(on));
}

/// How many signatures the targets have checked independently on this thread so far.
pub fn verified_signatures() -> usize {
    VERIFIED.with(Cell::get)
}

/// Counts a signature a target checked independently.
pub fn count_verified() {
    VERIFIED.with(|c| c.set(c.get() + 1));
}

/// Whether `data` is signed for real rather than as a dry run.
pub fn real_signature(data: &[u8]) -> bool {
    SIGN_EVERY_INPUT.with(Cell::get) || one_in(data, REAL_SIGNATURE_ONE_IN)
}

/// The harness, started on first use.
pub fn harness() -> &'static Harness {
    HARNESS.get_or_init(Harness::start)
}

/// Whether `data` is among the one in `n` inputs picked (by hash, so a run is repeatable).
pub fn one_in(data: &[u8], n: u64) -> bool {
    let digest = sha2::Sha256::digest(data);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first) % n == 0
}

/// Standard base64.
pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes standard base64; panics on bad input (for the server's own answers).
pub fn unb64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap_or_else(|e| panic!("the server answered bad base64 {text:?}: {e}"))
}

/// Seeds from JSON values (their compact encoding).
pub fn json_seeds(values: &[Value]) -> Vec<Vec<u8>> {
    values
        .iter()
        .map(|v| serde_json::to_vec(v).expect("a JSON value encodes"))
        .collect()
}

/// What a cargo-fuzz binary does before its first input: starts the harness and writes the
/// target's seeds.
pub fn start(seeds: fn() -> Vec<Vec<u8>>) {
    harness();
    write_seeds(seeds());
}

/// Writes `seeds` into `$FUZZ_SEED_DIR` when it is set.
pub fn write_seeds(seeds: impl IntoIterator<Item = Vec<u8>>) {
    let Some(dir) = std::env::var_os("FUZZ_SEED_DIR") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for seed in seeds {
        let name = hex::encode(&sha2::Sha256::digest(&seed)[..12]);
        let path = dir.join(format!("seed-{name}"));
        std::fs::write(&path, &seed).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

impl Harness {
    fn start() -> Harness {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let dir = tempfile::Builder::new()
            .prefix("keyward-fuzz-")
            .tempdir()
            .expect("temporary data directory");
        let (config, _) = keyward_server::commands::dev_config(
            dir.path(),
            "127.0.0.1:0".parse().expect("address"),
        )
        .expect("the keyward dev configuration");
        let state = runtime
            .block_on(AppState::build(config, "http://keyward.test"))
            .expect("the server starts");
        let endpoint = routes::routes(state.clone()).boxed();
        let token = state
            .dev_issuer()
            .expect("the development issuer")
            .mint("fuzz", Role::ALL, Duration::from_secs(30 * 24 * 3600))
            .expect("a token");
        let mut harness = Harness {
            runtime,
            state,
            endpoint,
            token,
            ethereum: Account::empty(),
            bitcoin_wpkh: Account::empty(),
            bitcoin_tr: Account::empty(),
            solana: Account::empty(),
            document_key: String::new(),
            chain_pem: String::new(),
            cms: Vec::new(),
            _dir: dir,
        };
        harness.provision();
        harness
    }

    /// The wallet accounts, the document key with its certificate, and a CMS signature.
    fn provision(&mut self) {
        let wallet =
            self.expect_created("/v1/wallets", json!({"name": "fuzz", "mnemonic": ABANDON}));
        let wallet = wallet.body["wallet"]["id"]
            .as_str()
            .expect("wallet id")
            .to_string();
        let accounts = format!("/v1/wallets/{wallet}/accounts");
        let account = |body: Value| {
            let made = self.expect_created(&accounts, body);
            let a = &made.body["account"];
            let public_key = a["public_key"].as_str().expect("public key");
            Account {
                key: a["key_id"].as_str().expect("key id").to_string(),
                address: a["address"].as_str().expect("address").to_string(),
                public_key: hex::decode(public_key.trim_start_matches("0x"))
                    .expect("hex public key"),
            }
        };
        let ethereum = account(json!({"chain": "ethereum", "index": 0}));
        let bitcoin_wpkh =
            account(json!({"chain": "bitcoin", "network": "regtest", "address_type": "p2wpkh"}));
        let bitcoin_tr =
            account(json!({"chain": "bitcoin", "network": "regtest", "address_type": "p2tr"}));
        let solana = account(json!({"chain": "solana", "index": 0}));
        self.ethereum = ethereum;
        self.bitcoin_wpkh = bitcoin_wpkh;
        self.bitcoin_tr = bitcoin_tr;
        self.solana = solana;

        let key = self.expect_created(
            "/v1/keys",
            json!({"name": "fuzz-document", "algorithm": "p256", "purpose": "document"}),
        );
        let key = key.text("id").to_string();
        let cert = self.expect_created(
            &format!("/v1/keys/{key}/certificate"),
            json!({"subject": {"common_name": "Fuzz Signer", "email": "fuzz@example.com",
                               "organization": "Example GmbH", "country": "DE"},
                   "validity_days": 3650}),
        );
        let ca = self.call(Method::GET, "/v1/ca/certificate", b"");
        let ca = match &ca.body {
            Value::String(pem) => pem.clone(),
            other => panic!("the CA certificate is not PEM text: {other}"),
        };
        self.chain_pem = format!("{}{}", cert.text("certificate_pem"), ca);
        let signed = self.post(
            "/v1/documents/sign",
            &json!({"key_id": key, "document": b64(SIGNED_DOCUMENT), "format": "cms"}),
        );
        assert_eq!(signed.status, StatusCode::OK, "{}", signed.body);
        self.cms = unb64(signed.text("signature"));
        self.document_key = key;
    }

    fn expect_created(&self, path: &str, body: Value) -> Answer {
        let answer = self.post(path, &body);
        assert_eq!(
            answer.status,
            StatusCode::CREATED,
            "{path}: {}",
            answer.body
        );
        answer
    }

    /// The server's state (its signing path, documents, authenticator).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Runs `future` on the harness's runtime.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// The harness's caller, as the authenticator reads its token.
    pub fn principal(&self) -> keyward_server::auth::Principal {
        self.block_on(self.state.auth().verify(&self.token))
            .expect("the harness's token verifies")
    }

    /// The document key's SubjectPublicKeyInfo (DER), from its certificate.
    pub fn document_spki(&self) -> Vec<u8> {
        use der::Encode;
        let chain = x509_cert::Certificate::load_pem_chain(self.chain_pem.as_bytes())
            .expect("the harness's certificates");
        chain[0]
            .tbs_certificate()
            .subject_public_key_info()
            .to_der()
            .expect("encodes")
    }

    /// The harness's token (every role).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// POSTs `body` (JSON) to `path` with the harness's token.
    pub fn post(&self, path: &str, body: &Value) -> Answer {
        let bytes = serde_json::to_vec(body).expect("JSON");
        self.call(Method::POST, path, &bytes)
    }

    /// Sends `body` (as JSON, whatever its bytes) to `path` with the harness's token.
    pub fn call(&self, method: Method, path: &str, body: &[u8]) -> Answer {
        let request = poem::Request::builder()
            .method(method)
            .uri(
                format!("http://keyward.test{path}")
                    .parse()
                    .unwrap_or_else(|e| panic!("{path}: {e}")),
            )
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .body(body.to_vec());
        self.block_on(async {
            let response = self.endpoint.get_response(request).await;
            let status = response.status();
            let bytes = response
                .into_body()
                .into_bytes()
                .await
                .expect("the answer's body");
            let body = serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
            Answer { status, body }
        })
    }

    /// Sends a sign request to `path`: a dry run, or for one input in
    /// [`REAL_SIGNATURE_ONE_IN`] a real signature. Gives the answer and whether it was real.
    pub fn sign(&self, path: &str, mut body: Value, data: &[u8]) -> (Answer, bool) {
        let real = real_signature(data);
        if !real {
            body["dry_run"] = Value::Bool(true);
        }
        let answer = self.post(path, &body);
        answer.check(path);
        if answer.is_success() && !real {
            answer.check_unsigned(&format!("{path} (dry run)"));
        }
        (answer, real)
    }
}

impl Account {
    fn empty() -> Account {
        Account {
            key: String::new(),
            address: String::new(),
            public_key: Vec::new(),
        }
    }
}
