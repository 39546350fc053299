//! Spend accounting for Ethereum keys: the native value and ERC-20 amounts a key signed, kept
//! in the usage counters (`store::usage`) per chain id, and read back into the policy host
//! context. The counters are added in the same audited transaction as the signed request
//! (see `pipeline`), so a total can never disagree with the audit log.

use std::collections::BTreeMap;

use keyward_policy::{Intent, SpendContext, SpendTotals};
use ruint::aliases::U256;

use crate::store::usage::{UsageDelta, UsageWindow, key_scope};

fn prefix(chain_id: u64) -> String {
    format!("ethereum:{chain_id}:")
}

const NATIVE: &str = "native";
const TOKEN: &str = "token:";

/// The counter additions for a signed intent: native value and ERC-20 `transfer` /
/// `transferFrom` amounts of Ethereum transactions; nothing for other intents.
pub fn usage_deltas(key_id: &str, intent: &Intent, at_unix: i64) -> Vec<UsageDelta> {
    let Intent::EthereumTransaction(tx) = intent else {
        return Vec::new();
    };
    let p = prefix(tx.chain_id);
    let mut out = Vec::new();
    if let Ok(value) = tx.value.parse::<U256>()
        && !value.is_zero()
    {
        out.push(UsageDelta {
            scope: key_scope(key_id),
            metric: format!("{p}{NATIVE}"),
            at_unix,
            count: 1,
            amount: value,
        });
    }
    if let Some(call) = &tx.erc20
        && call.function != "approve"
        && let Ok(amount) = call.amount.parse::<U256>()
        && !amount.is_zero()
    {
        out.push(UsageDelta {
            scope: key_scope(key_id),
            metric: format!("{p}{TOKEN}{}", call.token),
            at_unix,
            count: 1,
            amount,
        });
    }
    out
}

/// The metric prefix of the counters of an Ethereum transaction intent's chain
/// (`ethereum:<chain id>:`); `None` for other intents.
pub fn prefix_of(intent: &Intent) -> Option<String> {
    match intent {
        Intent::EthereumTransaction(tx) => Some(prefix(tx.chain_id)),
        _ => None,
    }
}

/// The policy host context's spend part for an Ethereum transaction intent, from the
/// counters of its key under `prefix_of(intent)`; `None` for other intents.
pub fn context(intent: &Intent, usage: &BTreeMap<String, UsageWindow>) -> Option<SpendContext> {
    let Intent::EthereumTransaction(tx) = intent else {
        return None;
    };
    let p = prefix(tx.chain_id);
    let mut hour = SpendTotals {
        native: "0".into(),
        tokens: BTreeMap::new(),
    };
    let mut day = hour.clone();
    for (metric, w) in usage {
        let Some(name) = metric.strip_prefix(&p) else {
            continue;
        };
        if name == NATIVE {
            hour.native = w.amount_hour.to_string();
            day.native = w.amount_day.to_string();
        } else if let Some(token) = name.strip_prefix(TOKEN) {
            hour.tokens
                .insert(token.to_string(), w.amount_hour.to_string());
            day.tokens
                .insert(token.to_string(), w.amount_day.to_string());
        }
    }
    Some(SpendContext {
        chain_id: tx.chain_id,
        last_hour: hour,
        last_day: day,
    })
}
