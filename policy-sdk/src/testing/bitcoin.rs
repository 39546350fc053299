//! Builders for the Bitcoin PSBT intent: inputs and outputs from addresses, the fee, the
//! estimated virtual size and fee rate computed the way the host computes them.

use super::{PLACEHOLDER_HASH, hex};
use crate::{BitcoinInput, BitcoinOutput, BitcoinPsbtIntent};

/// The BIP-84 address of account 0 of the test mnemonic `abandon ... about` on mainnet
/// (`m/84'/0'/0'/0/0`): the account the Bitcoin examples spend from.
pub const BITCOIN_ACCOUNT: &str = "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu";

/// Witness weight the host assumes for an unsigned P2WPKH input (a 73-byte signature and a
/// 33-byte key, with their lengths and the item count).
const P2WPKH_WITNESS_WU: u64 = 1 + 1 + 73 + 1 + 33;
/// Witness weight the host assumes for an unsigned P2TR key-path input.
const P2TR_WITNESS_WU: u64 = 1 + 1 + 65;

/// An input spending `amount_sat` from the segwit `address`. `ours` says whether the key
/// signs it (it spends the account's own address); such inputs get the sighash the host
/// signs with: `ALL`, or `DEFAULT` for taproot. The outpoint is a placeholder.
pub fn bitcoin_input(amount_sat: u64, address: &str, ours: bool) -> BitcoinInput {
    let taproot = segwit_program(address).is_some_and(|(version, _)| version == 1);
    BitcoinInput {
        outpoint: format!("{PLACEHOLDER_HASH}:0"),
        amount_sat,
        address: Some(address.into()),
        ours,
        sighash: ours.then(|| if taproot { "DEFAULT" } else { "ALL" }.into()),
    }
}

/// An output paying `amount_sat` to the segwit (bech32 or bech32m) `address`, with its
/// script; `change` when it pays back to the wallet.
///
/// # Panics
/// When `address` is not a segwit address: build a [`BitcoinOutput`] with its `script_hex`
/// for other scripts.
pub fn bitcoin_output(address: &str, amount_sat: u64, change: bool) -> BitcoinOutput {
    let (version, program) =
        segwit_program(address).unwrap_or_else(|| panic!("{address:?} is not a segwit address"));
    let op = if version == 0 { 0 } else { 0x50 + version };
    let mut script = vec![op, program.len() as u8];
    script.extend_from_slice(&program);
    BitcoinOutput {
        address: Some(address.into()),
        script_hex: hex(&script),
        amount_sat,
        change,
    }
}

/// An `OP_RETURN` output carrying `data` (at most 75 bytes), with no address and no value.
pub fn op_return_output(data: &[u8]) -> BitcoinOutput {
    assert!(data.len() <= 75, "OP_RETURN data of at most 75 bytes");
    let mut script = vec![0x6a, data.len() as u8];
    script.extend_from_slice(data);
    BitcoinOutput {
        address: None,
        script_hex: hex(&script),
        amount_sat: 0,
        change: false,
    }
}

/// A PSBT on `network` (`bitcoin`, `testnet`, `signet` or `regtest`) spending `inputs` to
/// `outputs`, with the fee (inputs minus outputs), the virtual size the host estimates for
/// the signed transaction (version 2, every input unsigned segwit) and the fee rate. The
/// txid is a placeholder.
///
/// ```
/// use keyward_policy::testing::{BITCOIN_ACCOUNT, bitcoin_input, bitcoin_output, bitcoin_psbt};
///
/// let psbt = bitcoin_psbt(
///     "bitcoin",
///     vec![bitcoin_input(100_000, BITCOIN_ACCOUNT, true)],
///     vec![
///         bitcoin_output("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", 60_000, false),
///         bitcoin_output(BITCOIN_ACCOUNT, 38_590, true),
///     ],
/// );
/// assert_eq!(psbt.fee_sat, 1_410);
/// assert_eq!(psbt.vsize, 141);
/// assert_eq!(psbt.fee_rate_sat_per_kvb, 10_000);
/// ```
///
/// # Panics
/// When the outputs exceed the inputs.
pub fn bitcoin_psbt(
    network: &str,
    inputs: Vec<BitcoinInput>,
    outputs: Vec<BitcoinOutput>,
) -> BitcoinPsbtIntent {
    let total_in: u64 = inputs.iter().map(|i| i.amount_sat).sum();
    let total_out: u64 = outputs.iter().map(|o| o.amount_sat).sum();
    let fee_sat = total_in
        .checked_sub(total_out)
        .expect("the outputs exceed the inputs");
    let varint = |n: u64| match n {
        0..=0xfc => 1,
        0xfd..=0xffff => 3,
        _ => 5,
    };
    // Unsigned transaction: version, inputs (outpoint, empty script, sequence), outputs,
    // lock time; four weight units a byte.
    let outputs_bytes: u64 = outputs
        .iter()
        .map(|o| {
            let len = (o.script_hex.len() / 2) as u64;
            8 + varint(len) + len
        })
        .sum();
    let base = 4
        + varint(inputs.len() as u64)
        + 41 * inputs.len() as u64
        + varint(outputs.len() as u64)
        + outputs_bytes
        + 4;
    let witness: u64 = inputs
        .iter()
        .map(|i| {
            let taproot = i
                .address
                .as_deref()
                .and_then(segwit_program)
                .is_some_and(|(version, _)| version == 1);
            if taproot {
                P2TR_WITNESS_WU
            } else {
                P2WPKH_WITNESS_WU
            }
        })
        .sum();
    // Plus the segwit marker and flag.
    let vsize = (base * 4 + 2 + witness).div_ceil(4);
    BitcoinPsbtIntent {
        network: network.into(),
        txid: PLACEHOLDER_HASH.into(),
        inputs,
        outputs,
        fee_sat,
        vsize,
        fee_rate_sat_per_kvb: fee_sat.saturating_mul(1000) / vsize.max(1),
    }
}

/// The witness version and program of a segwit address (BIP-173/350). The checksum is not
/// verified: these are test values, and no crate is worth a dependency of every policy for it.
fn segwit_program(address: &str) -> Option<(u8, Vec<u8>)> {
    const CHARSET: &[u8] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";
    let lower = address.to_lowercase();
    let (_, data) = lower.rsplit_once('1')?;
    let values: Vec<u8> = data
        .bytes()
        .map(|c| CHARSET.iter().position(|&x| x == c).map(|p| p as u8))
        .collect::<Option<_>>()?;
    let (version, rest) = values.split_first()?;
    let rest = rest.get(..rest.len().checked_sub(6)?)?;
    // Regroup 5-bit values into bytes, dropping the padding.
    let (mut acc, mut bits, mut program) = (0u32, 0u32, Vec::new());
    for v in rest {
        acc = (acc << 5) | u32::from(*v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            program.push((acc >> bits) as u8);
        }
        acc &= (1 << bits) - 1;
    }
    (*version <= 16 && (2..=40).contains(&program.len())).then_some((*version, program))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segwit_addresses_give_their_scripts() {
        // BIP-173 and BIP-350 test vectors.
        assert_eq!(
            bitcoin_output("BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4", 1, false).script_hex,
            "0014751e76e8199196d454941c45d1b3a323f1433bd6"
        );
        assert_eq!(
            bitcoin_output(
                "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0",
                1,
                false
            )
            .script_hex,
            "512079be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
        );
        assert_eq!(op_return_output(b"hi").script_hex, "6a026869");
        assert_eq!(
            bitcoin_input(1, BITCOIN_ACCOUNT, true).sighash.as_deref(),
            Some("ALL")
        );
        assert_eq!(bitcoin_input(1, BITCOIN_ACCOUNT, false).sighash, None);
    }
}
