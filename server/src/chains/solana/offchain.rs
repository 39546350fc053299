//! Solana off-chain messages: the signed bytes start with the signing domain
//! `\xffsolana offchain` (a first byte no transaction or message can start with), then the
//! header version 0, the message format and length, then the message
//! (`solana-offchain-message`, the format of `solana sign-offchain-message`).

use keyward_policy::SolanaMessageIntent;
use solana_offchain_message::{MessageFormat, OffchainMessage};

use super::SolanaError;

/// The bytes to sign for `message` (UTF-8, 1 to 65515 bytes) and the intent policies see.
pub fn prepare(message: &[u8]) -> Result<(SolanaMessageIntent, Vec<u8>), SolanaError> {
    let text = std::str::from_utf8(message)
        .map_err(|_| SolanaError::Invalid("an off-chain message must be UTF-8 text".into()))?;
    let offchain = OffchainMessage::new(0, message).map_err(|e| {
        SolanaError::Invalid(format!(
            "the message cannot be an off-chain message ({e}): it must be 1 to 65515 bytes of UTF-8"
        ))
    })?;
    let format = match offchain.get_format() {
        MessageFormat::RestrictedAscii => "restricted_ascii",
        MessageFormat::LimitedUtf8 => "limited_utf8",
        MessageFormat::ExtendedUtf8 => "extended_utf8",
    };
    let bytes = offchain
        .serialize()
        .map_err(|e| SolanaError::Invalid(format!("the off-chain message does not encode: {e}")))?;
    Ok((
        SolanaMessageIntent {
            format: format.into(),
            text: text.to_string(),
            message_len: message.len() as u64,
        },
        bytes,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_carry_the_signing_domain_and_never_parse_as_transactions() {
        let (intent, bytes) = prepare(b"hello keyward").unwrap();
        assert_eq!(intent.format, "restricted_ascii");
        assert!(bytes.starts_with(b"\xffsolana offchain"));
        assert_eq!(bytes[16], 0, "header version");
        assert_eq!(bytes[17], 0, "format");
        assert_eq!(&bytes[18..20], &13u16.to_le_bytes());
        assert_eq!(&bytes[20..], b"hello keyward");
        let pk = [1u8; 32];
        assert!(super::super::transaction::SolanaPlan::from_message(&bytes, &pk).is_err());
        assert!(super::super::transaction::SolanaPlan::from_transaction(&bytes, &pk).is_err());
        assert_eq!(
            prepare("héllo".as_bytes()).unwrap().0.format,
            "limited_utf8"
        );
        assert!(prepare(b"").is_err());
        assert!(prepare(&[0xff, 0xfe]).is_err());
    }
}
