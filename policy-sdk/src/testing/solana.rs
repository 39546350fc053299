//! Builders for the Solana intents: a SOL transfer, an SPL Token `transferChecked`, and an
//! off-chain message with the format the host picks.

use crate::{
    SolanaMessageIntent, SolanaSystemTransfer, SolanaTokenTransfer, SolanaTransactionIntent,
};

/// The address of account 0 of the test mnemonic `abandon ... about` (`m/44'/501'/0'/0'`):
/// the fee payer of the Solana builders.
pub const SOLANA_ACCOUNT: &str = "HAgk14JpMQLgt6rVgv7cBQFJWFto5Dqxi472uT3DKpqk";
/// The System program.
pub const SYSTEM_PROGRAM: &str = "11111111111111111111111111111111";
/// The SPL Token program.
pub const TOKEN_PROGRAM: &str = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA";
/// The blockhash the builders use (a placeholder; the host passes the message's own).
pub const PLACEHOLDER_BLOCKHASH: &str = "GHtXQBsoZHVnNFa9YevAzFr17DJjgHXk3ycTKD5xD3Zi";

/// A legacy transaction with one System `transfer` of `lamports` from `from` (the fee payer
/// and only signer) to `to`.
pub fn solana_transfer(from: &str, to: &str, lamports: u64) -> SolanaTransactionIntent {
    SolanaTransactionIntent {
        version: "legacy".into(),
        fee_payer: from.into(),
        recent_blockhash: PLACEHOLDER_BLOCKHASH.into(),
        signers: vec![from.into()],
        program_ids: vec![SYSTEM_PROGRAM.into()],
        instruction_count: 1,
        lookup_accounts: 0,
        system_transfers: vec![SolanaSystemTransfer {
            instruction: "transfer".into(),
            from: from.into(),
            to: to.into(),
            lamports,
        }],
        token_transfers: Vec::new(),
    }
}

/// A legacy transaction with one SPL Token `transferChecked` of `amount` base units of `mint`
/// (with `decimals`) from the token account `source` to `destination`, authorised by
/// `authority`, the fee payer and only signer.
pub fn spl_token_transfer(
    authority: &str,
    source: &str,
    destination: &str,
    mint: &str,
    amount: u64,
    decimals: u8,
) -> SolanaTransactionIntent {
    SolanaTransactionIntent {
        version: "legacy".into(),
        fee_payer: authority.into(),
        recent_blockhash: PLACEHOLDER_BLOCKHASH.into(),
        signers: vec![authority.into()],
        program_ids: vec![TOKEN_PROGRAM.into()],
        instruction_count: 1,
        lookup_accounts: 0,
        system_transfers: Vec::new(),
        token_transfers: vec![SolanaTokenTransfer {
            program: "spl-token".into(),
            instruction: "transfer_checked".into(),
            source: source.into(),
            destination: destination.into(),
            authority: authority.into(),
            mint: Some(mint.into()),
            amount,
            decimals: Some(decimals),
        }],
    }
}

/// An off-chain message of `text`, in the format the host gives it: `restricted_ascii` for
/// printable ASCII and `limited_utf8` for other text up to 1212 bytes, `extended_utf8` up
/// to 65515 bytes.
pub fn solana_message(text: &str) -> SolanaMessageIntent {
    const MAX_LEN_LEDGER: usize = 1212;
    let format = if text.len() > MAX_LEN_LEDGER {
        "extended_utf8"
    } else if text.bytes().all(|c| (0x20..=0x7e).contains(&c)) {
        "restricted_ascii"
    } else {
        "limited_utf8"
    };
    SolanaMessageIntent {
        format: format.into(),
        text: text.into(),
        message_len: text.len() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfers_and_message_formats() {
        let tx = solana_transfer(SOLANA_ACCOUNT, SYSTEM_PROGRAM, 5);
        assert_eq!(tx.signers, [SOLANA_ACCOUNT]);
        assert_eq!(tx.system_transfers[0].lamports, 5);
        let usdc = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v";
        let tok = spl_token_transfer(SOLANA_ACCOUNT, "src", "dst", usdc, 1_000_000, 6);
        assert_eq!(tok.token_transfers[0].decimals, Some(6));
        assert_eq!(solana_message("hello").format, "restricted_ascii");
        assert_eq!(solana_message("héllo").format, "limited_utf8");
        assert_eq!(solana_message("line\n").format, "limited_utf8");
        assert_eq!(solana_message(&"a".repeat(1213)).format, "extended_utf8");
    }
}
