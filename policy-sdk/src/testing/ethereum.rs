//! Builders for the Ethereum intents: transactions of the three types the server tells apart,
//! ERC-20 calls with their call data, EIP-191 messages and EIP-712 typed data.

use super::{PLACEHOLDER_HASH, hex};
use crate::{
    Eip712Domain, Erc20Call, EthereumMessageIntent, EthereumTransactionIntent,
    EthereumTypedDataIntent,
};

/// The address of account 0 of the well-known test mnemonic `abandon ... about`
/// (`m/44'/60'/0'/0/0`), lower-case: the `from` of every Ethereum builder.
pub const ETHEREUM_FROM: &str = "0x9858effd232b4033e47d90003d41ec34ecaeda94";

/// An EIP-1559 transaction sending `value` wei to `to` on `chain_id` from [`ETHEREUM_FROM`]:
/// nonce 0, 21000 gas, a 2 gwei fee cap and a 1 gwei tip, no call data.
pub fn ethereum_transaction(chain_id: u64, to: &str, value: &str) -> EthereumTransactionIntent {
    EthereumTransactionIntent {
        tx_type: "eip1559".into(),
        chain_id,
        from: ETHEREUM_FROM.into(),
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
        unsigned: "0x".into(),
    }
}

/// An EIP-2930 transaction (type 1: a gas price and an access list) sending `value` wei to
/// `to` on `chain_id`; `access_list` holds the addresses the list names.
pub fn ethereum_eip2930_transaction(
    chain_id: u64,
    to: &str,
    value: &str,
    access_list: &[&str],
) -> EthereumTransactionIntent {
    EthereumTransactionIntent {
        tx_type: "eip2930".into(),
        gas_price: Some("20000000000".into()),
        max_fee_per_gas: None,
        max_priority_fee_per_gas: None,
        access_list: access_list.iter().map(|a| a.to_lowercase()).collect(),
        ..ethereum_transaction(chain_id, to, value)
    }
}

/// A legacy (EIP-155) transaction sending `value` wei to `to` on `chain_id` at a gas price of
/// 20 gwei.
pub fn ethereum_legacy_transaction(
    chain_id: u64,
    to: &str,
    value: &str,
) -> EthereumTransactionIntent {
    EthereumTransactionIntent {
        tx_type: "legacy".into(),
        gas_price: Some("20000000000".into()),
        max_fee_per_gas: None,
        max_priority_fee_per_gas: None,
        ..ethereum_transaction(chain_id, to, value)
    }
}

/// An EIP-1559 call of ERC-20 `transfer(to, amount)` on the token contract `token`, with the
/// call data and its decoding as the host makes them (65000 gas, no native value). `amount`
/// is in the token's smallest unit, decimal.
///
/// # Panics
/// When `to` is not a 20-byte `0x` address or `amount` not a decimal below 2^256.
pub fn erc20_transfer(
    chain_id: u64,
    token: &str,
    to: &str,
    amount: &str,
) -> EthereumTransactionIntent {
    erc20_call(
        chain_id,
        token,
        "transfer",
        "a9059cbb",
        &[address_word(to), amount_word(amount)],
        None,
        to,
        amount,
    )
}

/// An EIP-1559 call of ERC-20 `approve(spender, amount)` on `token`.
///
/// # Panics
/// As [`erc20_transfer`].
pub fn erc20_approve(
    chain_id: u64,
    token: &str,
    spender: &str,
    amount: &str,
) -> EthereumTransactionIntent {
    erc20_call(
        chain_id,
        token,
        "approve",
        "095ea7b3",
        &[address_word(spender), amount_word(amount)],
        None,
        spender,
        amount,
    )
}

/// An EIP-1559 call of ERC-20 `transferFrom(owner, to, amount)` on `token`.
///
/// # Panics
/// As [`erc20_transfer`].
pub fn erc20_transfer_from(
    chain_id: u64,
    token: &str,
    owner: &str,
    to: &str,
    amount: &str,
) -> EthereumTransactionIntent {
    erc20_call(
        chain_id,
        token,
        "transferFrom",
        "23b872dd",
        &[address_word(owner), address_word(to), amount_word(amount)],
        Some(owner),
        to,
        amount,
    )
}

#[allow(clippy::too_many_arguments)]
fn erc20_call(
    chain_id: u64,
    token: &str,
    function: &str,
    selector: &str,
    words: &[String],
    owner: Option<&str>,
    to: &str,
    amount: &str,
) -> EthereumTransactionIntent {
    let mut tx = ethereum_transaction(chain_id, token, "0");
    tx.gas_limit = 65_000;
    tx.data = format!("0x{selector}{}", words.concat());
    tx.selector = Some(format!("0x{selector}"));
    tx.erc20 = Some(Erc20Call {
        function: function.into(),
        token: token.to_lowercase(),
        owner: owner.map(str::to_lowercase),
        to: to.to_lowercase(),
        amount: amount.trim_start_matches('0').to_string(),
    });
    if let Some(call) = &mut tx.erc20
        && call.amount.is_empty()
    {
        call.amount = "0".into();
    }
    tx
}

/// An address as a 32-byte ABI word (hex, no `0x`).
fn address_word(address: &str) -> String {
    let digits = address.trim_start_matches("0x").to_lowercase();
    assert!(
        digits.len() == 40 && digits.bytes().all(|c| c.is_ascii_hexdigit()),
        "{address:?} is not a 20-byte 0x address"
    );
    format!("{digits:0>64}")
}

/// A decimal integer below 2^256 as a 32-byte big-endian ABI word (hex, no `0x`).
fn amount_word(amount: &str) -> String {
    assert!(
        !amount.is_empty() && amount.bytes().all(|c| c.is_ascii_digit()),
        "{amount:?} is not a decimal integer"
    );
    let mut word = [0u8; 32];
    for digit in amount.bytes() {
        // word = word * 10 + digit, from the least significant byte.
        let mut carry = u32::from(digit - b'0');
        for byte in word.iter_mut().rev() {
            let v = u32::from(*byte) * 10 + carry;
            *byte = (v & 0xff) as u8;
            carry = v >> 8;
        }
        assert!(carry == 0, "{amount:?} does not fit in 256 bits");
    }
    hex(&word)
}

/// An EIP-191 (`personal_sign`) message from [`ETHEREUM_FROM`]: `text` is set when the bytes
/// are UTF-8, as the host does. The hash is a placeholder.
pub fn ethereum_message(message: &[u8]) -> EthereumMessageIntent {
    EthereumMessageIntent {
        from: ETHEREUM_FROM.into(),
        message: format!("0x{}", hex(message)),
        text: std::str::from_utf8(message).ok().map(str::to_string),
        length: message.len() as u64,
        hash: format!("0x{PLACEHOLDER_HASH}"),
    }
}

/// An EIP-712 domain with `name`, `version`, `chainId` and `verifyingContract` (lower-cased
/// as the host does).
pub fn eip712_domain(
    name: &str,
    version: &str,
    chain_id: u64,
    verifying_contract: &str,
) -> Eip712Domain {
    Eip712Domain {
        name: Some(name.into()),
        version: Some(version.into()),
        chain_id: Some(chain_id),
        verifying_contract: Some(verifying_contract.to_lowercase()),
        salt: None,
    }
}

/// EIP-712 typed data from [`ETHEREUM_FROM`]: `message` is kept as the caller sent it (the
/// host does not normalise it). The hash is a placeholder.
pub fn ethereum_typed_data(
    domain: Eip712Domain,
    primary_type: &str,
    message: serde_json::Value,
) -> EthereumTypedDataIntent {
    EthereumTypedDataIntent {
        from: ETHEREUM_FROM.into(),
        domain,
        primary_type: primary_type.into(),
        message,
        hash: format!("0x{PLACEHOLDER_HASH}"),
    }
}

/// An EIP-2612 `Permit` of the token `token` (named `token_name`, domain version `1`) letting
/// `spender` take `value` of [`ETHEREUM_FROM`]'s tokens until `deadline` (Unix seconds), nonce
/// 0: the typed data gasless approvals are made of.
pub fn erc20_permit(
    chain_id: u64,
    token_name: &str,
    token: &str,
    spender: &str,
    value: &str,
    deadline: u64,
) -> EthereumTypedDataIntent {
    ethereum_typed_data(
        eip712_domain(token_name, "1", chain_id, token),
        "Permit",
        serde_json::json!({
            "owner": ETHEREUM_FROM,
            "spender": spender,
            "value": value,
            "nonce": 0,
            "deadline": deadline,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAI: &str = "0x6B175474E89094C44Da98b954EedeAC495271d0F";
    const BOB: &str = "0x3f5CE5FBFe3E9af3971dD833D26bA9b5C936f0bE";

    #[test]
    fn erc20_call_data_is_the_abi_encoding() {
        let tx = erc20_transfer(1, DAI, BOB, "1000000000000000000");
        assert_eq!(
            tx.data,
            "0xa9059cbb\
             0000000000000000000000003f5ce5fbfe3e9af3971dd833d26ba9b5c936f0be\
             0000000000000000000000000000000000000000000000000de0b6b3a7640000"
        );
        assert_eq!(tx.to.as_deref(), Some(DAI.to_lowercase().as_str()));
        assert_eq!(tx.value, "0");
        let call = tx.erc20.unwrap();
        assert_eq!(
            (call.function.as_str(), call.amount.as_str()),
            ("transfer", "1000000000000000000")
        );
        let max = "115792089237316195423570985008687907853269984665640564039457584007913129639935";
        assert_eq!(amount_word(max), "f".repeat(64));
        let from = erc20_transfer_from(1, DAI, ETHEREUM_FROM, BOB, "7");
        assert_eq!(from.selector.as_deref(), Some("0x23b872dd"));
        assert_eq!(from.data.len(), 2 + 8 + 3 * 64);
        assert_eq!(from.erc20.unwrap().owner.as_deref(), Some(ETHEREUM_FROM));
        assert_eq!(erc20_approve(1, DAI, BOB, "0").erc20.unwrap().amount, "0");
    }

    #[test]
    fn transaction_types_carry_their_own_fee_fields() {
        let legacy = serde_json::to_value(ethereum_legacy_transaction(1, BOB, "1")).unwrap();
        assert!(legacy.get("gas_price").is_some() && legacy.get("max_fee_per_gas").is_none());
        let typed = ethereum_eip2930_transaction(5, BOB, "1", &[DAI]);
        assert_eq!(typed.access_list, [DAI.to_lowercase()]);
        let dynamic = serde_json::to_value(ethereum_transaction(10, BOB, "1")).unwrap();
        assert!(dynamic.get("gas_price").is_none());
        assert!(dynamic.get("max_priority_fee_per_gas").is_some());
    }

    #[test]
    fn messages_have_text_only_when_utf8() {
        assert_eq!(ethereum_message(b"hi").text.as_deref(), Some("hi"));
        let bin = ethereum_message(&[0xff, 0x00]);
        assert_eq!((bin.text, bin.message.as_str()), (None, "0xff00"));
        let permit = erc20_permit(1, "Dai Stablecoin", DAI, BOB, "5", 1_767_618_000);
        assert_eq!(permit.primary_type, "Permit");
        assert_eq!(permit.message["owner"], ETHEREUM_FROM);
    }
}
