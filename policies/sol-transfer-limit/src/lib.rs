//! A per-transaction transfer limit for Solana keys:
//!
//! ```json
//! {"max_lamports": 1000000000, "programs": ["11111111111111111111111111111111"],
//!  "tokens": {"<mint>": 5000000}}
//! ```
//!
//! The lamports a transaction moves with the System program (transfers and account
//! creations, added up) must not exceed `max_lamports`. SPL Token `transferChecked` amounts
//! are added up per mint and must not exceed that mint's entry in `tokens`; a token transfer
//! whose mint is not listed (or unknown, as with a plain `transfer`) is denied while `tokens`
//! is set. When `programs` is set, every program a transaction calls must be listed.
//! Off-chain messages pass. Other intents are denied: bind this policy to Solana keys.

use std::collections::BTreeMap;

use keyward_policy::{Decision, Intent, SignRequest};
use serde::Deserialize;

/// Settings of `sol-transfer-limit`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The most lamports one transaction may move.
    pub max_lamports: u64,
    /// Per mint: the most base units one transaction may transfer.
    #[serde(default)]
    pub tokens: Option<BTreeMap<String, u64>>,
    /// The programs transactions may call.
    #[serde(default)]
    pub programs: Option<Vec<String>>,
}

/// Denies transactions above the limits; allows the rest.
pub fn evaluate(req: &SignRequest, settings: &Settings) -> Decision {
    let tx = match &req.intent {
        Intent::SolanaTransaction(tx) => tx,
        Intent::SolanaMessage(_) => return Decision::Allow,
        _ => return Decision::deny("sol-transfer-limit judges Solana requests only"),
    };
    if let Some(programs) = &settings.programs
        && let Some(p) = tx.program_ids.iter().find(|p| !programs.contains(p))
    {
        return Decision::deny(format!("program {p} is not allowed"));
    }
    let lamports = tx
        .system_transfers
        .iter()
        .fold(0u64, |sum, t| sum.saturating_add(t.lamports));
    if lamports > settings.max_lamports {
        return Decision::deny(format!(
            "the transaction moves {lamports} lamports, above the limit of {}",
            settings.max_lamports
        ));
    }
    if let Some(tokens) = &settings.tokens {
        let mut per_mint: BTreeMap<&str, u64> = BTreeMap::new();
        for t in &tx.token_transfers {
            let Some(mint) = &t.mint else {
                return Decision::deny(
                    "a token transfer without its mint (use transferChecked) cannot be judged",
                );
            };
            let sum = per_mint.entry(mint).or_default();
            *sum = sum.saturating_add(t.amount);
        }
        for (mint, amount) in per_mint {
            match tokens.get(mint) {
                None => return Decision::deny(format!("token {mint} is not allowed")),
                Some(max) if amount > *max => {
                    return Decision::deny(format!(
                        "the transaction transfers {amount} of token {mint}, above the limit of {max}"
                    ));
                }
                Some(_) => {}
            }
        }
    }
    Decision::Allow
}

keyward_policy::export_policy!(evaluate);

#[cfg(test)]
mod tests {
    use super::*;
    use keyward_policy::testing::request;
    use keyward_policy::{SolanaSystemTransfer, SolanaTokenTransfer, SolanaTransactionIntent};

    const MINT: &str = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v";

    fn tx(lamports: &[u64], tokens: &[(Option<&str>, u64)]) -> SignRequest {
        let mut req = request().build();
        req.intent = Intent::SolanaTransaction(SolanaTransactionIntent {
            version: "legacy".into(),
            fee_payer: "payer".into(),
            recent_blockhash: "hash".into(),
            signers: vec!["payer".into()],
            program_ids: vec!["11111111111111111111111111111111".into()],
            instruction_count: 1,
            lookup_accounts: 0,
            system_transfers: lamports
                .iter()
                .map(|&l| SolanaSystemTransfer {
                    instruction: "transfer".into(),
                    from: "payer".into(),
                    to: "friend".into(),
                    lamports: l,
                })
                .collect(),
            token_transfers: tokens
                .iter()
                .map(|(mint, amount)| SolanaTokenTransfer {
                    program: "spl-token".into(),
                    instruction: "transfer_checked".into(),
                    source: "a".into(),
                    destination: "b".into(),
                    authority: "payer".into(),
                    mint: mint.map(str::to_string),
                    amount: *amount,
                    decimals: Some(6),
                })
                .collect(),
        });
        req
    }

    fn settings(json: serde_json::Value) -> Settings {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn transfers_within_the_limit_pass() {
        let s = settings(serde_json::json!({"max_lamports": 1000, "tokens": {MINT: 50}}));
        assert_eq!(
            evaluate(&tx(&[400, 600], &[(Some(MINT), 50)]), &s),
            Decision::Allow
        );
    }

    #[test]
    fn larger_transfers_unknown_tokens_and_programs_are_denied() {
        let s = settings(serde_json::json!({"max_lamports": 1000, "tokens": {MINT: 50}}));
        assert!(
            matches!(evaluate(&tx(&[600, 600], &[]), &s), Decision::Deny { reason } if reason.contains("1200"))
        );
        assert!(matches!(
            evaluate(&tx(&[], &[(Some(MINT), 30), (Some(MINT), 30)]), &s),
            Decision::Deny { .. }
        ));
        assert!(matches!(
            evaluate(&tx(&[], &[(Some("other"), 1)]), &s),
            Decision::Deny { .. }
        ));
        assert!(matches!(
            evaluate(&tx(&[], &[(None, 1)]), &s),
            Decision::Deny { .. }
        ));
        let s = settings(
            serde_json::json!({"max_lamports": 1000, "programs": ["Vote111111111111111111111111111111111111111"]}),
        );
        assert!(
            matches!(evaluate(&tx(&[1], &[]), &s), Decision::Deny { reason } if reason.contains("program"))
        );
        assert!(matches!(
            evaluate(&request().build(), &s),
            Decision::Deny { .. }
        ));
    }
}
