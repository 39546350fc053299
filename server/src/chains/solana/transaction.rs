//! Solana transactions and messages (legacy and v0), decoded with the Solana SDK crates.
//!
//! A request carries either a whole serialized transaction (its signatures, then the message)
//! or the message alone. Keyward signs exactly the message bytes it decoded, after checking
//! that they re-encode to the same bytes (no trailing or non-canonical data can hide behind
//! the decoded form), that the message is well-formed (account indexes in range), and that
//! the fee payer (the first account) is the account.

use keyward_policy::{SolanaSystemTransfer, SolanaTokenTransfer, SolanaTransactionIntent};
use solana_message::{Address, VersionedMessage};
use solana_system_interface::instruction::SystemInstruction;
use solana_transaction::versioned::VersionedTransaction;

use super::SolanaError;

/// The SPL Token program.
pub const TOKEN_PROGRAM: &str = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA";
/// The SPL Token-2022 program.
pub const TOKEN_2022_PROGRAM: &str = "TokenzQdBNbLqP5VEhdkAS6EPFLC1bQ9gMgnKvu6mRZ";

/// A decoded transaction, ready to be signed by the account.
#[derive(Debug, Clone)]
pub struct SolanaPlan {
    /// What policies see.
    pub intent: SolanaTransactionIntent,
    /// The serialized message: exactly what the key signs.
    pub message: Vec<u8>,
    /// The signatures the transaction arrived with (zeros where missing), one per required
    /// signer.
    signatures: Vec<[u8; 64]>,
    /// The account's position among the signers.
    signer_index: usize,
}

fn malformed(what: &str, e: impl std::fmt::Display) -> SolanaError {
    SolanaError::Malformed(format!("{what} does not decode: {e}"))
}

impl SolanaPlan {
    /// Decodes a serialized transaction (signatures and message).
    pub fn from_transaction(bytes: &[u8], account: &[u8; 32]) -> Result<Self, SolanaError> {
        let tx: VersionedTransaction =
            wincode::deserialize_exact(bytes).map_err(|e| malformed("the transaction", e))?;
        let reencoded = wincode::serialize(&tx).map_err(|e| malformed("the transaction", e))?;
        if reencoded != bytes {
            return Err(SolanaError::Malformed(
                "the transaction is not in canonical wire form".into(),
            ));
        }
        let required = usize::from(tx.message.header().num_required_signatures);
        if tx.signatures.len() != required {
            return Err(SolanaError::Malformed(format!(
                "the transaction carries {} signatures but its message requires {required}",
                tx.signatures.len()
            )));
        }
        let signatures = tx
            .signatures
            .iter()
            .map(|s| {
                let mut out = [0u8; 64];
                out.copy_from_slice(s.as_ref());
                out
            })
            .collect();
        let message = tx.message.serialize();
        Self::decode(tx.message, message, Some(signatures), account)
    }

    /// Decodes a serialized message.
    pub fn from_message(bytes: &[u8], account: &[u8; 32]) -> Result<Self, SolanaError> {
        let message: VersionedMessage =
            wincode::deserialize_exact(bytes).map_err(|e| malformed("the message", e))?;
        Self::decode(message, bytes.to_vec(), None, account)
    }

    fn decode(
        message: VersionedMessage,
        bytes: Vec<u8>,
        signatures: Option<Vec<[u8; 64]>>,
        account: &[u8; 32],
    ) -> Result<Self, SolanaError> {
        let version = match &message {
            VersionedMessage::Legacy(_) => "legacy",
            VersionedMessage::V0(_) => "v0",
            _ => {
                return Err(SolanaError::Invalid(
                    "only legacy and v0 messages are supported".into(),
                ));
            }
        };
        if message.serialize() != bytes {
            return Err(SolanaError::Malformed(
                "the message is not in canonical wire form".into(),
            ));
        }
        message
            .sanitize()
            .map_err(|e| SolanaError::Malformed(format!("the message is not well-formed: {e}")))?;
        let keys = message.static_account_keys();
        let required = usize::from(message.header().num_required_signatures);
        let fee_payer = keys
            .first()
            .ok_or_else(|| SolanaError::Malformed("the message has no accounts".into()))?;
        if fee_payer.as_ref() != account {
            return Err(SolanaError::FeePayerNotOurs(format!(
                "the fee payer {fee_payer} is not this account ({}); Keyward signs transactions its account pays for",
                super::address(account)
            )));
        }
        let signer_index = 0;

        let lookups = message.address_table_lookups().unwrap_or(&[]);
        let writable: usize = lookups.iter().map(|l| l.writable_indexes.len()).sum();
        let lookup_accounts = writable
            + lookups
                .iter()
                .map(|l| l.readonly_indexes.len())
                .sum::<usize>();
        // Names an account by its index: static keys by address, loaded ones by table.
        let name = |index: u8| -> String {
            let index = usize::from(index);
            if let Some(key) = keys.get(index) {
                return key.to_string();
            }
            let mut j = index - keys.len();
            let (writable_part, pick): (bool, usize) = if j < writable {
                (true, j)
            } else {
                j -= writable;
                (false, j)
            };
            let mut rest = pick;
            for l in lookups {
                let list = if writable_part {
                    &l.writable_indexes
                } else {
                    &l.readonly_indexes
                };
                if rest < list.len() {
                    return format!("lookup:{}:{}", l.account_key, list[rest]);
                }
                rest -= list.len();
            }
            format!("lookup:?:{index}")
        };

        let system: Address = solana_sdk_ids::system_program::ID;
        let mut program_ids: Vec<String> = Vec::new();
        let mut system_transfers = Vec::new();
        let mut token_transfers = Vec::new();
        for ix in message.instructions() {
            let program = name(ix.program_id_index);
            if !program_ids.contains(&program) {
                program_ids.push(program.clone());
            }
            let account = |i: usize| ix.accounts.get(i).map(|&a| name(a));
            if keys.get(usize::from(ix.program_id_index)) == Some(&system) {
                if let Some(t) = system_transfer(&ix.data, &account)? {
                    system_transfers.push(t);
                }
            } else if (program == TOKEN_PROGRAM || program == TOKEN_2022_PROGRAM)
                && let Some(t) = token_transfer(&program, &ix.data, &account)?
            {
                token_transfers.push(t);
            }
        }

        let intent = SolanaTransactionIntent {
            version: version.to_string(),
            fee_payer: fee_payer.to_string(),
            recent_blockhash: message.recent_blockhash().to_string(),
            signers: keys.iter().take(required).map(|k| k.to_string()).collect(),
            program_ids,
            instruction_count: message.instructions().len() as u32,
            lookup_accounts: lookup_accounts as u32,
            system_transfers,
            token_transfers,
        };
        Ok(SolanaPlan {
            intent,
            message: bytes,
            signatures: signatures.unwrap_or_else(|| vec![[0u8; 64]; required]),
            signer_index,
        })
    }

    /// The signed transaction in wire form: the signatures (the account's put in its place,
    /// others as they came or zero) followed by the message.
    pub fn signed_transaction(mut self, signature: &[u8]) -> Result<Vec<u8>, SolanaError> {
        let sig: [u8; 64] = signature
            .try_into()
            .map_err(|_| SolanaError::Invalid("an Ed25519 signature is 64 bytes".into()))?;
        self.signatures[self.signer_index] = sig;
        let mut out = Vec::with_capacity(3 + 64 * self.signatures.len() + self.message.len());
        short_vec_len(&mut out, self.signatures.len());
        for s in &self.signatures {
            out.extend_from_slice(s);
        }
        out.extend_from_slice(&self.message);
        Ok(out)
    }
}

/// The compact-u16 length prefix of the wire format.
fn short_vec_len(out: &mut Vec<u8>, mut len: usize) {
    loop {
        let mut byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            out.push(byte);
            return;
        }
        byte |= 0x80;
        out.push(byte);
    }
}

fn missing(what: &str) -> SolanaError {
    SolanaError::Malformed(format!("{what} lacks an account it needs"))
}

fn system_transfer(
    data: &[u8],
    account: &dyn Fn(usize) -> Option<String>,
) -> Result<Option<SolanaSystemTransfer>, SolanaError> {
    // Instructions the host does not decode are still listed under program_ids.
    let Ok(ix) = wincode::deserialize_exact::<SystemInstruction>(data) else {
        return Ok(None);
    };
    let (instruction, lamports, from, to) = match ix {
        SystemInstruction::Transfer { lamports } => ("transfer", lamports, 0, 1),
        SystemInstruction::TransferWithSeed { lamports, .. } => {
            ("transfer_with_seed", lamports, 0, 2)
        }
        SystemInstruction::CreateAccount { lamports, .. } => ("create_account", lamports, 0, 1),
        SystemInstruction::CreateAccountWithSeed { lamports, .. } => {
            ("create_account_with_seed", lamports, 0, 1)
        }
        _ => return Ok(None),
    };
    let what = format!("a System {instruction}");
    Ok(Some(SolanaSystemTransfer {
        instruction: instruction.to_string(),
        from: account(from).ok_or_else(|| missing(&what))?,
        to: account(to).ok_or_else(|| missing(&what))?,
        lamports,
    }))
}

fn token_transfer(
    program: &str,
    data: &[u8],
    account: &dyn Fn(usize) -> Option<String>,
) -> Result<Option<SolanaTokenTransfer>, SolanaError> {
    let program_name = if program == TOKEN_PROGRAM {
        "spl-token"
    } else {
        "spl-token-2022"
    };
    let amount = |bytes: &[u8]| -> Result<u64, SolanaError> {
        let b: [u8; 8] = bytes
            .get(1..9)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| {
                SolanaError::Malformed("a token transfer's amount is cut short".into())
            })?;
        Ok(u64::from_le_bytes(b))
    };
    // SPL Token instruction layout: a one-byte tag, then the fields little-endian.
    Ok(match data.first() {
        Some(3) if data.len() == 9 => Some(SolanaTokenTransfer {
            program: program_name.into(),
            instruction: "transfer".into(),
            source: account(0).ok_or_else(|| missing("a token transfer"))?,
            destination: account(1).ok_or_else(|| missing("a token transfer"))?,
            authority: account(2).ok_or_else(|| missing("a token transfer"))?,
            mint: None,
            amount: amount(data)?,
            decimals: None,
        }),
        Some(12) if data.len() == 10 => Some(SolanaTokenTransfer {
            program: program_name.into(),
            instruction: "transfer_checked".into(),
            source: account(0).ok_or_else(|| missing("a token transfer"))?,
            mint: Some(account(1).ok_or_else(|| missing("a token transfer"))?),
            destination: account(2).ok_or_else(|| missing("a token transfer"))?,
            authority: account(3).ok_or_else(|| missing("a token transfer"))?,
            amount: amount(data)?,
            decimals: Some(data[9]),
        }),
        Some(3 | 12) => {
            return Err(SolanaError::Malformed(
                "a token transfer instruction has the wrong length".into(),
            ));
        }
        _ => None,
    })
}
