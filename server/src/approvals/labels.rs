//! Names for the addresses a request would pay or call, taken from the settings of the
//! policies bound to its key, so that an approver reads "on the allowlist of eth-allowlist"
//! beside an address instead of 40 hex digits alone. Only addresses in the request are
//! named; the settings themselves are not shown.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

fn is_address(s: &str) -> bool {
    s.len() == 42 && s.starts_with("0x") && s[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

fn addresses(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::String(s) if is_address(s) => {
            out.insert(s.to_ascii_lowercase());
        }
        Value::Array(items) => items.iter().for_each(|x| addresses(x, out)),
        Value::Object(map) => map.values().for_each(|x| addresses(x, out)),
        _ => {}
    }
}

fn walk(v: &Value, policy: &str, listed: bool, out: &mut BTreeMap<String, String>) {
    match v {
        Value::String(s) if listed && is_address(s) => {
            out.entry(s.to_ascii_lowercase())
                .or_insert_with(|| format!("on the allowlist of {policy}"));
        }
        Value::Array(items) => items.iter().for_each(|x| walk(x, policy, listed, out)),
        Value::Object(map) => {
            let name = map
                .get("label")
                .or_else(|| map.get("name"))
                .and_then(Value::as_str);
            if let (Some(Value::String(a)), Some(name)) = (map.get("address"), name)
                && is_address(a)
            {
                out.insert(a.to_ascii_lowercase(), name.chars().take(100).collect());
            }
            for (k, x) in map {
                let k = k.to_ascii_lowercase();
                walk(
                    x,
                    policy,
                    k.contains("recipient") || k.contains("allow"),
                    out,
                );
            }
        }
        _ => {}
    }
}

/// Labels (lower-case address → label) for the addresses in `intent`, from `bound`: each
/// policy's name and settings, in binding order. A labelled object (`address` with `label`
/// or `name`) names its address; an address listed under a setting whose name says
/// `recipient` or `allow` is on that policy's allowlist.
pub fn address_labels(intent: &Value, bound: &[(&str, &Value)]) -> BTreeMap<String, String> {
    let mut wanted = BTreeSet::new();
    addresses(intent, &mut wanted);
    let mut found = BTreeMap::new();
    for (policy, settings) in bound {
        walk(settings, policy, false, &mut found);
    }
    found.retain(|a, _| wanted.contains(a));
    found
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn allowlisted_and_labelled_addresses_in_the_request_are_named() {
        let to = "0x3535353535353535353535353535353535353535";
        let token = "0xA0b86991c6218b36c1d19d4a2e9eb0ce3606eB48";
        let intent = json!({"kind": "ethereum_transaction", "to": token,
                            "erc20": {"to": to, "token": token}, "from": "0x00000000000000000000000000000000000000aa"});
        let allow =
            json!({"recipients": [to.to_uppercase().replace("0X", "0x")], "chain_ids": [1]});
        let named = json!({"tokens": [{"address": token, "label": "USDC"}],
                           "allowed": ["0x1111111111111111111111111111111111111111"]});
        let labels =
            super::address_labels(&intent, &[("eth-allowlist", &allow), ("tokens", &named)]);
        assert_eq!(
            labels.into_iter().collect::<Vec<_>>(),
            [
                (
                    to.to_string(),
                    "on the allowlist of eth-allowlist".to_string()
                ),
                (token.to_ascii_lowercase(), "USDC".to_string()),
            ]
        );
        assert!(super::address_labels(&json!({"kind": "raw"}), &[("p", &allow)]).is_empty());
    }
}
