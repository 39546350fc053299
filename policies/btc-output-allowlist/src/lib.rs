//! An output allowlist with a fee cap for Bitcoin keys:
//!
//! ```json
//! {"addresses": ["bcrt1q..."], "max_fee_sat": 10000, "max_fee_rate_sat_per_vb": 50}
//! ```
//!
//! Every output of a PSBT must pay to a listed address, or be change back to the wallet;
//! outputs without an address (e.g. `OP_RETURN`) are denied unless `allow_data_outputs` is
//! true. The fee must not exceed `max_fee_sat`, and the fee rate must not exceed
//! `max_fee_rate_sat_per_vb` (each cap optional). Other intents (messages of other chains)
//! are denied: bind this policy to Bitcoin keys.

use keyward_policy::{Decision, Intent, SignRequest};
use serde::Deserialize;

/// Settings of `btc-output-allowlist`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Addresses outputs may pay to (change back to the wallet is always allowed).
    #[serde(default)]
    pub addresses: Vec<String>,
    /// The largest fee, in satoshis.
    #[serde(default)]
    pub max_fee_sat: Option<u64>,
    /// The largest fee rate, in sat/vB.
    #[serde(default)]
    pub max_fee_rate_sat_per_vb: Option<u64>,
    /// Allow outputs without an address (`OP_RETURN` data).
    #[serde(default)]
    pub allow_data_outputs: bool,
}

/// Denies unknown outputs and fees above the caps; allows the rest.
pub fn evaluate(req: &SignRequest, settings: &Settings) -> Decision {
    let Intent::BitcoinPsbt(psbt) = &req.intent else {
        return Decision::deny("btc-output-allowlist judges Bitcoin PSBTs only");
    };
    for (i, out) in psbt.outputs.iter().enumerate() {
        if out.change {
            continue;
        }
        match &out.address {
            Some(a) if settings.addresses.iter().any(|l| l == a) => {}
            Some(a) => {
                return Decision::deny(format!(
                    "output {i} pays {a}, which is not in the allowlist"
                ));
            }
            None if settings.allow_data_outputs => {}
            None => {
                return Decision::deny(format!(
                    "output {i} has no address (data outputs are not allowed)"
                ));
            }
        }
    }
    if let Some(max) = settings.max_fee_sat
        && psbt.fee_sat > max
    {
        return Decision::deny(format!(
            "the fee {} sat is above the cap of {max} sat",
            psbt.fee_sat
        ));
    }
    if let Some(max) = settings.max_fee_rate_sat_per_vb
        && psbt.fee_rate_sat_per_kvb > max.saturating_mul(1000)
    {
        return Decision::deny(format!(
            "the fee rate {}.{:03} sat/vB is above the cap of {max} sat/vB",
            psbt.fee_rate_sat_per_kvb / 1000,
            psbt.fee_rate_sat_per_kvb % 1000
        ));
    }
    Decision::Allow
}

keyward_policy::export_policy!(evaluate);

#[cfg(test)]
mod tests {
    use super::*;
    use keyward_policy::testing::request;
    use keyward_policy::{BitcoinInput, BitcoinOutput, BitcoinPsbtIntent};

    const FRIEND: &str = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";

    fn psbt(outputs: Vec<(Option<&str>, u64, bool)>, fee: u64) -> SignRequest {
        let mut req = request().build();
        req.intent = Intent::BitcoinPsbt(BitcoinPsbtIntent {
            network: "regtest".into(),
            txid: "00".repeat(32),
            inputs: vec![BitcoinInput {
                outpoint: format!("{}:0", "11".repeat(32)),
                amount_sat: 100_000,
                address: None,
                ours: true,
                sighash: Some("ALL".into()),
            }],
            outputs: outputs
                .into_iter()
                .map(|(a, v, change)| BitcoinOutput {
                    address: a.map(str::to_string),
                    script_hex: String::new(),
                    amount_sat: v,
                    change,
                })
                .collect(),
            fee_sat: fee,
            vsize: 141,
            fee_rate_sat_per_kvb: fee * 1000 / 141,
        });
        req
    }

    fn settings() -> Settings {
        serde_json::from_value(serde_json::json!({
            "addresses": [FRIEND], "max_fee_sat": 5000, "max_fee_rate_sat_per_vb": 20
        }))
        .unwrap()
    }

    #[test]
    fn listed_outputs_and_change_pass() {
        let req = psbt(
            vec![
                (Some(FRIEND), 50_000, false),
                (Some("bcrt1qchange"), 48_000, true),
            ],
            2000,
        );
        assert_eq!(evaluate(&req, &settings()), Decision::Allow);
    }

    #[test]
    fn unknown_outputs_data_outputs_and_high_fees_are_denied() {
        let req = psbt(vec![(Some("bcrt1qstranger"), 50_000, false)], 1000);
        assert!(
            matches!(evaluate(&req, &settings()), Decision::Deny { reason } if reason.contains("bcrt1qstranger"))
        );
        let req = psbt(vec![(None, 0, false)], 1000);
        assert!(matches!(evaluate(&req, &settings()), Decision::Deny { .. }));
        let req = psbt(vec![(Some(FRIEND), 40_000, false)], 6000);
        assert!(
            matches!(evaluate(&req, &settings()), Decision::Deny { reason } if reason.contains("fee"))
        );
        // 4000 sat over 141 vB is 28.4 sat/vB: within the fee cap, above the rate cap.
        let req = psbt(vec![(Some(FRIEND), 40_000, false)], 4000);
        assert!(
            matches!(evaluate(&req, &settings()), Decision::Deny { reason } if reason.contains("rate"))
        );
        assert!(matches!(
            evaluate(&request().build(), &settings()),
            Decision::Deny { .. }
        ));
    }
}
