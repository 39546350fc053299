//! Native test helpers: build the requests a policy will see, without a server.
//!
//! ```
//! use keyward_policy::testing::request;
//!
//! let req = request().roles(&["signer", "treasury"]).message_len(2048).build();
//! assert_eq!(req.principal.roles, ["signer", "treasury"]);
//! ```

use crate::{Context, Intent, KeyInfo, PolicyInput, Principal, RawIntent, SignRequest};

/// Monday 2026-01-05 12:00:00 UTC, the default request time.
pub const DEFAULT_UNIX_TIME: i64 = 1_767_614_400;

/// Starts a request with sensible defaults: subject `alice` with role `signer`, an Ed25519
/// key `test-key` of purpose `raw`, a SHA-256 digest intent, at [`DEFAULT_UNIX_TIME`].
pub fn request() -> RequestBuilder {
    RequestBuilder {
        req: SignRequest {
            request_id: "req-test".into(),
            principal: Principal {
                issuer: "https://issuer.test".into(),
                subject: "alice".into(),
                roles: vec!["signer".into()],
                ..Default::default()
            },
            key: KeyInfo {
                id: "key-test".into(),
                name: "test-key".into(),
                algorithm: "ed25519".into(),
                purpose: "raw".into(),
                backend: "software".into(),
                labels: Default::default(),
            },
            intent: Intent::Raw(RawIntent {
                prehashed: true,
                hash: "sha256".into(),
                digest: "00".repeat(32),
                message_len: None,
            }),
            time: rfc3339(DEFAULT_UNIX_TIME),
            unix_time: DEFAULT_UNIX_TIME,
            context: Context::default(),
        },
    }
}

/// An EIP-1559 transaction intent sending `value` wei to `to` on `chain_id`, from
/// `0x9858effd232b4033e47d90003d41ec34ecaeda94`, for tests of Ethereum policies.
pub fn ethereum_transaction(
    chain_id: u64,
    to: &str,
    value: &str,
) -> crate::EthereumTransactionIntent {
    crate::EthereumTransactionIntent {
        tx_type: "eip1559".into(),
        chain_id,
        from: "0x9858effd232b4033e47d90003d41ec34ecaeda94".into(),
        to: Some(to.to_lowercase()),
        nonce: 0,
        value: value.into(),
        gas_limit: 21_000,
        gas_price: None,
        max_fee_per_gas: Some("2000000000".into()),
        max_priority_fee_per_gas: Some("1000000000".into()),
        data: "0x".into(),
        selector: None,
        access_list: Vec::new(),
        erc20: None,
        unsigned: String::new(),
    }
}

/// An ERC-20 `transfer` of `amount` of `token` to `to` on `chain_id`, for tests.
pub fn erc20_transfer(
    chain_id: u64,
    token: &str,
    to: &str,
    amount: &str,
) -> crate::EthereumTransactionIntent {
    let mut tx = ethereum_transaction(chain_id, token, "0");
    tx.selector = Some("0xa9059cbb".into());
    tx.erc20 = Some(crate::Erc20Call {
        function: "transfer".into(),
        token: token.to_lowercase(),
        owner: None,
        to: to.to_lowercase(),
        amount: amount.into(),
    });
    tx
}

/// Builds a [`SignRequest`] step by step.
#[derive(Debug, Clone)]
pub struct RequestBuilder {
    req: SignRequest,
}

impl RequestBuilder {
    /// Sets the caller's subject.
    pub fn subject(mut self, subject: &str) -> Self {
        self.req.principal.subject = subject.into();
        self
    }

    /// Sets the caller's roles.
    pub fn roles(mut self, roles: &[&str]) -> Self {
        self.req.principal.roles = roles.iter().map(|r| r.to_string()).collect();
        self
    }

    /// Sets the key's name.
    pub fn key_name(mut self, name: &str) -> Self {
        self.req.key.name = name.into();
        self
    }

    /// Sets the key's algorithm.
    pub fn algorithm(mut self, algorithm: &str) -> Self {
        self.req.key.algorithm = algorithm.into();
        self
    }

    /// Adds a key label.
    pub fn label(mut self, name: &str, value: &str) -> Self {
        self.req.key.labels.insert(name.into(), value.into());
        self
    }

    /// Makes the intent a raw message of `len` bytes (instead of a digest).
    pub fn message_len(mut self, len: u64) -> Self {
        match &mut self.req.intent {
            Intent::Raw(raw) => {
                raw.prehashed = false;
                raw.message_len = Some(len);
            }
            other => {
                *other = Intent::Raw(RawIntent {
                    prehashed: false,
                    hash: "sha256".into(),
                    digest: "00".repeat(32),
                    message_len: Some(len),
                });
            }
        }
        self
    }

    /// Sets the intent.
    pub fn intent(mut self, intent: Intent) -> Self {
        self.req.intent = intent;
        self
    }

    /// Sets the request time (seconds since the Unix epoch, UTC).
    pub fn at_unix(mut self, unix_time: i64) -> Self {
        self.req.unix_time = unix_time;
        self.req.time = rfc3339(unix_time);
        self
    }

    /// Sets the signatures made by this key in the last hour (and at least as many in the
    /// last day).
    pub fn key_signatures_last_hour(mut self, n: u64) -> Self {
        self.req.context.key_signatures_last_hour = n;
        self.req.context.key_signatures_last_day = self.req.context.key_signatures_last_day.max(n);
        self
    }

    /// Sets the whole host context.
    pub fn context(mut self, context: Context) -> Self {
        self.req.context = context;
        self
    }

    /// The request.
    pub fn build(self) -> SignRequest {
        self.req
    }
}

/// The ABI v1 input document for `request` with `settings`, as the host sends it.
pub fn input(request: &SignRequest, settings: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&PolicyInput {
        abi: crate::ABI_VERSION,
        request: request.clone(),
        settings,
    })
    .unwrap_or_default()
}

/// Lines this thread's policy code passed to [`crate::log`] since the last call.
#[cfg(not(target_arch = "wasm32"))]
pub fn take_logs() -> Vec<String> {
    crate::host::take_native_logs()
}

/// Formats seconds since the Unix epoch as RFC 3339 UTC (`2026-01-05T12:00:00Z`).
pub fn rfc3339(unix_time: i64) -> String {
    let days = unix_time.div_euclid(86_400);
    let secs = unix_time.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(DEFAULT_UNIX_TIME), "2026-01-05T12:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn logs_are_kept_for_tests() {
        crate::log("hello");
        assert_eq!(take_logs(), ["hello"]);
        assert!(take_logs().is_empty());
    }
}
