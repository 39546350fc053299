//! Spend accounting for Ethereum keys: the native value and ERC-20 amounts a key signed, kept
//! in the usage counters (`store::usage`) per chain id, and read back into the policy host
//! context. The counters are added in the same audited transaction as the signed request
//! (see `pipeline`), so a total can never disagree with the audit log.

use std::collections::BTreeMap;

use keyward_policy::{Intent, SpendContext, SpendTotals};
use ruint::aliases::U256;

use crate::store::usage::{UsageDelta, UsageWindow, key_scope};
use crate::store::{Store, StoreError};

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

/// The spend an Ethereum transaction intent's key has recorded for its chain, by metric, to
/// which what is in flight can be added before it becomes the policy's `SpendContext`.
#[derive(Debug, Clone)]
pub struct Recorded {
    chain_id: u64,
    usage: BTreeMap<String, UsageWindow>,
    head: i64,
}

impl Recorded {
    /// The metric prefix of this chain (`ethereum:<chain id>:`).
    pub fn prefix(&self) -> String {
        prefix(self.chain_id)
    }

    /// The audit head of the snapshot the totals were read from (see `store::pending`).
    pub fn head(&self) -> i64 {
        self.head
    }

    /// Adds usage (e.g. reserved by requests in flight) to the recorded totals.
    pub fn add(&mut self, more: &BTreeMap<String, UsageWindow>) {
        for (metric, w) in more {
            let t = self.usage.entry(metric.clone()).or_default();
            t.count_hour = t.count_hour.saturating_add(w.count_hour);
            t.count_day = t.count_day.saturating_add(w.count_day);
            t.amount_hour = t.amount_hour.saturating_add(w.amount_hour);
            t.amount_day = t.amount_day.saturating_add(w.amount_day);
        }
    }

    /// The policy host context's spend part.
    pub fn into_context(self) -> SpendContext {
        let p = self.prefix();
        let mut hour = SpendTotals {
            native: "0".into(),
            tokens: BTreeMap::new(),
        };
        let mut day = hour.clone();
        for (metric, w) in self.usage {
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
        SpendContext {
            chain_id: self.chain_id,
            last_hour: hour,
            last_day: day,
        }
    }
}

/// The recorded spend of an Ethereum transaction intent's key on its chain (`None` for other
/// intents).
pub async fn recorded(
    store: &Store,
    key_id: &str,
    intent: &Intent,
    now: i64,
) -> Result<Option<Recorded>, StoreError> {
    let Intent::EthereumTransaction(tx) = intent else {
        return Ok(None);
    };
    let read = store
        .usage_snapshot(&key_scope(key_id), &prefix(tx.chain_id), now)
        .await?;
    Ok(Some(Recorded {
        chain_id: tx.chain_id,
        usage: read.value,
        head: read.head,
    }))
}
