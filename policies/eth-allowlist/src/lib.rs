//! Allowlists for Ethereum keys: chain ids, recipients, and EIP-712 domains. Every list is
//! optional; a list that is set must contain what the request names:
//!
//! ```json
//! {"chain_ids": [1, 10],
//!  "recipients": ["0x3535353535353535353535353535353535353535"],
//!  "eip712_domains": [{"verifying_contract": "0x6b175474e89094c44da98b954eedeac495271d0f", "chain_id": 1}]}
//! ```
//!
//! The recipient of a transaction is its `to`, or, for an ERC-20 `transfer`/`transferFrom`/
//! `approve`, the token recipient or spender (the token contract itself is then checked
//! against `recipients` too only when `check_token_contracts` is true). A contract creation
//! has no recipient and is denied while `recipients` is set. Typed data must name a listed
//! domain (verifying contract and, when the entry gives one, chain id). Messages pass.

use keyward_policy::{Decision, Intent, SignRequest};
use serde::Deserialize;

/// One allowed EIP-712 domain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainRule {
    /// The domain's `verifyingContract` (any case).
    pub verifying_contract: String,
    /// The domain's `chainId`; any when absent.
    #[serde(default)]
    pub chain_id: Option<u64>,
}

/// Settings of `eth-allowlist`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Chain ids transactions (and typed data naming a chain) may use.
    #[serde(default)]
    pub chain_ids: Option<Vec<u64>>,
    /// Addresses value and tokens may go to (any case).
    #[serde(default)]
    pub recipients: Option<Vec<String>>,
    /// Also require ERC-20 token contracts to be in `recipients` (default false).
    #[serde(default)]
    pub check_token_contracts: bool,
    /// EIP-712 domains typed data may be signed for.
    #[serde(default)]
    pub eip712_domains: Option<Vec<DomainRule>>,
}

fn listed(list: &[String], address: &str) -> bool {
    list.iter().any(|a| a.eq_ignore_ascii_case(address))
}

/// Denies what is not listed; allows the rest.
pub fn evaluate(req: &SignRequest, settings: &Settings) -> Decision {
    match &req.intent {
        Intent::EthereumTransaction(tx) => {
            if let Some(chains) = &settings.chain_ids
                && !chains.contains(&tx.chain_id)
            {
                return Decision::deny(format!("chain id {} is not allowed", tx.chain_id));
            }
            if let Some(recipients) = &settings.recipients {
                let Some(to) = &tx.to else {
                    return Decision::deny("contract creation is not allowed: no recipient");
                };
                match &tx.erc20 {
                    Some(call) => {
                        if !listed(recipients, &call.to) {
                            return Decision::deny(format!(
                                "token recipient {} is not in the allowlist",
                                call.to
                            ));
                        }
                        if settings.check_token_contracts && !listed(recipients, to) {
                            return Decision::deny(format!(
                                "token contract {to} is not in the allowlist"
                            ));
                        }
                    }
                    None => {
                        if !listed(recipients, to) {
                            return Decision::deny(format!(
                                "recipient {to} is not in the allowlist"
                            ));
                        }
                    }
                }
            }
            Decision::Allow
        }
        Intent::EthereumTypedData(td) => {
            if let (Some(chains), Some(chain)) = (&settings.chain_ids, td.domain.chain_id)
                && !chains.contains(&chain)
            {
                return Decision::deny(format!("typed data for chain id {chain} is not allowed"));
            }
            if let Some(domains) = &settings.eip712_domains {
                let Some(contract) = &td.domain.verifying_contract else {
                    return Decision::deny("typed data without a verifyingContract is not allowed");
                };
                let ok = domains.iter().any(|d| {
                    d.verifying_contract.eq_ignore_ascii_case(contract)
                        && d.chain_id.is_none_or(|c| Some(c) == td.domain.chain_id)
                });
                if !ok {
                    return Decision::deny(format!(
                        "EIP-712 domain {contract} on chain {} is not in the allowlist",
                        td.domain
                            .chain_id
                            .map(|c| c.to_string())
                            .unwrap_or_else(|| "(none)".into())
                    ));
                }
            }
            Decision::Allow
        }
        _ => Decision::Allow,
    }
}

/// Addresses are 0x followed by 40 hex digits.
pub fn validate(settings: &Settings) -> Result<(), String> {
    let check = |a: &str| {
        if a.len() == 42 && a.starts_with("0x") && a[2..].bytes().all(|c| c.is_ascii_hexdigit()) {
            Ok(())
        } else {
            Err(format!("{a:?} is not a 0x address"))
        }
    };
    for a in settings.recipients.iter().flatten() {
        check(a)?;
    }
    for d in settings.eip712_domains.iter().flatten() {
        check(&d.verifying_contract)?;
    }
    Ok(())
}

keyward_policy::export_policy!(evaluate, validate = validate);

#[cfg(test)]
mod tests {
    use super::*;
    use keyward_policy::testing::{erc20_transfer, ethereum_transaction, request};
    use keyward_policy::{Eip712Domain, EthereumTypedDataIntent};

    const BOB: &str = "0x3535353535353535353535353535353535353535";
    const EVE: &str = "0x4545454545454545454545454545454545454545";
    const DAI: &str = "0x6B175474E89094C44Da98b954EedeAC495271d0F";

    fn settings() -> Settings {
        Settings {
            chain_ids: Some(vec![1]),
            recipients: Some(vec![BOB.into()]),
            check_token_contracts: false,
            eip712_domains: Some(vec![DomainRule {
                verifying_contract: DAI.into(),
                chain_id: Some(1),
            }]),
        }
    }

    fn tx(t: keyward_policy::EthereumTransactionIntent) -> SignRequest {
        request().intent(Intent::EthereumTransaction(t)).build()
    }

    fn permit(contract: &str, chain: u64) -> SignRequest {
        request()
            .intent(Intent::EthereumTypedData(EthereumTypedDataIntent {
                from: BOB.into(),
                domain: Eip712Domain {
                    name: Some("Dai".into()),
                    version: Some("1".into()),
                    chain_id: Some(chain),
                    verifying_contract: Some(contract.to_lowercase()),
                    salt: None,
                },
                primary_type: "Permit".into(),
                message: serde_json::json!({}),
                hash: "0x00".into(),
            }))
            .build()
    }

    #[test]
    fn recipients_and_chains() {
        assert_eq!(
            evaluate(&tx(ethereum_transaction(1, BOB, "1")), &settings()),
            Decision::Allow
        );
        let d = evaluate(&tx(ethereum_transaction(1, EVE, "1")), &settings());
        assert!(matches!(&d, Decision::Deny { reason } if reason.contains("not in the allowlist")));
        let d = evaluate(&tx(ethereum_transaction(5, BOB, "1")), &settings());
        assert!(matches!(&d, Decision::Deny { reason } if reason.contains("chain id 5")));
        assert_eq!(
            evaluate(&tx(erc20_transfer(1, DAI, BOB, "1")), &settings()),
            Decision::Allow
        );
        assert_eq!(
            evaluate(&tx(erc20_transfer(1, DAI, EVE, "1")), &settings()).name(),
            "deny"
        );
        let strict = Settings {
            check_token_contracts: true,
            ..settings()
        };
        assert_eq!(
            evaluate(&tx(erc20_transfer(1, DAI, BOB, "1")), &strict).name(),
            "deny"
        );
        let mut create = ethereum_transaction(1, BOB, "0");
        create.to = None;
        assert_eq!(evaluate(&tx(create), &settings()).name(), "deny");
    }

    #[test]
    fn eip712_domains() {
        assert_eq!(evaluate(&permit(DAI, 1), &settings()), Decision::Allow);
        let d = evaluate(&permit(EVE, 1), &settings());
        assert!(matches!(&d, Decision::Deny { reason } if reason.contains("EIP-712 domain")));
        assert_eq!(evaluate(&permit(DAI, 5), &settings()).name(), "deny");
        assert_eq!(evaluate(&request().build(), &settings()), Decision::Allow);
        assert!(validate(&settings()).is_ok());
        assert!(
            validate(&Settings {
                recipients: Some(vec!["bob".into()]),
                ..settings()
            })
            .is_err()
        );
    }
}
