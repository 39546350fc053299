//! Spend limits for Ethereum keys, per transaction and over the rolling 24 hours the host
//! reports in `context.spend` (native value in wei, and ERC-20 amounts per token):
//!
//! ```json
//! {"max_value_per_tx": "1000000000000000000", "max_value_per_day": "5000000000000000000",
//!  "tokens": {"0x6b175474e89094c44da98b954eedeac495271d0f":
//!             {"max_per_tx": "1000000000000000000000", "max_per_day": "5000000000000000000000"}}}
//! ```
//!
//! Amounts are decimal strings (they exceed 64 bits). ERC-20 `transfer` and `transferFrom`
//! count against the token's limits, and an `approve` above the token's per-transaction
//! limit is denied too. Other intents (messages, typed data, other purposes) are allowed:
//! bind other policies for them.

use std::collections::BTreeMap;

use keyward_policy::{Decision, Intent, SignRequest, wei_add, wei_cmp};
use serde::Deserialize;
use std::cmp::Ordering;

/// Limits of one token.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenLimit {
    /// Largest amount in one transaction.
    #[serde(default)]
    pub max_per_tx: Option<String>,
    /// Largest total over the last 24 hours, this transaction included.
    #[serde(default)]
    pub max_per_day: Option<String>,
}

/// Settings of `eth-spend-limit`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Largest native value (wei) in one transaction.
    #[serde(default)]
    pub max_value_per_tx: Option<String>,
    /// Largest native value (wei) over the last 24 hours, this transaction included.
    #[serde(default)]
    pub max_value_per_day: Option<String>,
    /// Limits per ERC-20 token, by contract address (any case).
    #[serde(default)]
    pub tokens: BTreeMap<String, TokenLimit>,
    /// Deny ERC-20 calls on tokens that have no entry in `tokens` (default false).
    #[serde(default)]
    pub deny_unlisted_tokens: bool,
}

fn above(amount: &str, limit: &Option<String>) -> Option<String> {
    let limit = limit.as_ref()?;
    match wei_cmp(amount, limit) {
        Some(Ordering::Greater) | None => Some(limit.clone()),
        _ => None,
    }
}

/// Denies a transaction above a limit; allows everything else.
pub fn evaluate(req: &SignRequest, settings: &Settings) -> Decision {
    let Intent::EthereumTransaction(tx) = &req.intent else {
        return Decision::Allow;
    };
    let Some(spend) = &req.context.spend else {
        return Decision::deny("the host gave no spend context for this transaction");
    };
    if let Some(limit) = above(&tx.value, &settings.max_value_per_tx) {
        return Decision::deny(format!(
            "value {} wei is above the per-transaction limit of {limit} wei",
            tx.value
        ));
    }
    if settings.max_value_per_day.is_some() {
        let total = wei_add(&spend.last_day.native, &tx.value).unwrap_or_default();
        if let Some(limit) = above(&total, &settings.max_value_per_day) {
            return Decision::deny(format!(
                "value {} wei would bring the last 24 hours to {total} wei, above the limit of {limit} wei",
                tx.value
            ));
        }
    }
    if let Some(call) = &tx.erc20 {
        let limits = settings
            .tokens
            .iter()
            .find(|(token, _)| token.eq_ignore_ascii_case(&call.token))
            .map(|(_, l)| l);
        let Some(limits) = limits else {
            return if settings.deny_unlisted_tokens {
                Decision::deny(format!(
                    "token {} is not in this key's token limits",
                    call.token
                ))
            } else {
                Decision::Allow
            };
        };
        if let Some(limit) = above(&call.amount, &limits.max_per_tx) {
            return Decision::deny(format!(
                "{} of {} of token {} is above the per-transaction limit of {limit}",
                call.function, call.amount, call.token
            ));
        }
        if call.function != "approve" && limits.max_per_day.is_some() {
            let spent = spend
                .last_day
                .tokens
                .iter()
                .find(|(t, _)| t.eq_ignore_ascii_case(&call.token))
                .map(|(_, a)| a.as_str())
                .unwrap_or("0");
            let total = wei_add(spent, &call.amount).unwrap_or_default();
            if let Some(limit) = above(&total, &limits.max_per_day) {
                return Decision::deny(format!(
                    "{} of token {} would bring the last 24 hours to {total}, above the limit of {limit}",
                    call.amount, call.token
                ));
            }
        }
    }
    Decision::Allow
}

/// Every limit is a decimal integer.
pub fn validate(settings: &Settings) -> Result<(), String> {
    let check = |name: &str, v: &Option<String>| match v {
        Some(v) if wei_cmp(v, "0").is_none() => Err(format!(
            "{name} must be a decimal integer string, got {v:?}"
        )),
        _ => Ok(()),
    };
    check("max_value_per_tx", &settings.max_value_per_tx)?;
    check("max_value_per_day", &settings.max_value_per_day)?;
    for (token, l) in &settings.tokens {
        if token.len() != 42 || !token.starts_with("0x") {
            return Err(format!("token {token:?} is not a 0x address"));
        }
        check("max_per_tx", &l.max_per_tx)?;
        check("max_per_day", &l.max_per_day)?;
    }
    Ok(())
}

keyward_policy::export_policy!(evaluate, validate = validate);

#[cfg(test)]
mod tests {
    use super::*;
    use keyward_policy::testing::{erc20_transfer, ethereum_transaction, request};
    use keyward_policy::{Context, SpendContext, SpendTotals};

    const DAI: &str = "0x6b175474e89094c44da98b954eedeac495271d0f";
    const BOB: &str = "0x3535353535353535353535353535353535353535";

    fn settings() -> Settings {
        let mut tokens = BTreeMap::new();
        tokens.insert(
            DAI.to_uppercase().replace("0X", "0x"),
            TokenLimit {
                max_per_tx: Some("100".into()),
                max_per_day: Some("150".into()),
            },
        );
        Settings {
            max_value_per_tx: Some("1000".into()),
            max_value_per_day: Some("1500".into()),
            tokens,
            deny_unlisted_tokens: true,
        }
    }

    fn spent(native: &str, dai: &str) -> Context {
        let mut totals = SpendTotals {
            native: native.into(),
            tokens: BTreeMap::new(),
        };
        totals.tokens.insert(DAI.into(), dai.into());
        Context {
            spend: Some(SpendContext {
                chain_id: 1,
                last_hour: totals.clone(),
                last_day: totals,
            }),
            ..Default::default()
        }
    }

    fn tx(value: &str, ctx: Context) -> SignRequest {
        request()
            .intent(Intent::EthereumTransaction(ethereum_transaction(
                1, BOB, value,
            )))
            .context(ctx)
            .build()
    }

    #[test]
    fn native_limits_per_tx_and_per_day() {
        assert_eq!(
            evaluate(&tx("1000", spent("0", "0")), &settings()),
            Decision::Allow
        );
        let d = evaluate(&tx("1001", spent("0", "0")), &settings());
        assert!(
            matches!(&d, Decision::Deny { reason } if reason.contains("per-transaction")),
            "{d:?}"
        );
        assert_eq!(
            evaluate(&tx("500", spent("1000", "0")), &settings()),
            Decision::Allow
        );
        let d = evaluate(&tx("501", spent("1000", "0")), &settings());
        assert!(
            matches!(&d, Decision::Deny { reason } if reason.contains("last 24 hours to 1501")),
            "{d:?}"
        );
        // No spend context: deny rather than guess.
        let d = evaluate(&tx("1", Context::default()), &settings());
        assert_eq!(d.name(), "deny");
    }

    #[test]
    fn token_limits() {
        let req = |amount: &str, ctx| {
            request()
                .intent(Intent::EthereumTransaction(erc20_transfer(
                    1, DAI, BOB, amount,
                )))
                .context(ctx)
                .build()
        };
        assert_eq!(
            evaluate(&req("100", spent("0", "50")), &settings()),
            Decision::Allow
        );
        assert_eq!(
            evaluate(&req("101", spent("0", "0")), &settings()).name(),
            "deny"
        );
        let d = evaluate(&req("60", spent("0", "100")), &settings());
        assert!(
            matches!(&d, Decision::Deny { reason } if reason.contains("160")),
            "{d:?}"
        );
        let other = request()
            .intent(Intent::EthereumTransaction(erc20_transfer(
                1, BOB, BOB, "1",
            )))
            .context(spent("0", "0"))
            .build();
        assert_eq!(evaluate(&other, &settings()).name(), "deny");
        assert_eq!(
            evaluate(
                &other,
                &Settings {
                    deny_unlisted_tokens: false,
                    ..settings()
                }
            ),
            Decision::Allow
        );
    }

    #[test]
    fn other_intents_pass_and_settings_are_checked() {
        assert_eq!(evaluate(&request().build(), &settings()), Decision::Allow);
        assert!(validate(&settings()).is_ok());
        let bad = Settings {
            max_value_per_tx: Some("1e18".into()),
            ..Default::default()
        };
        assert!(validate(&bad).is_err());
    }
}
