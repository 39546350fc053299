//! EIP-191 version 0x45 (`personal_sign`, `eth_sign`): the key signs
//! Keccak-256("\x19Ethereum Signed Message:\n" + decimal length + message).

use alloy_primitives::{B256, eip191_hash_message};
use keyward_policy::EthereumMessageIntent;

/// The intent and the hash to sign for `message`.
pub fn intent(from: &str, message: &[u8]) -> (EthereumMessageIntent, B256) {
    let hash = eip191_hash_message(message);
    let intent = EthereumMessageIntent {
        from: from.to_string(),
        message: format!("0x{}", hex::encode(message)),
        text: std::str::from_utf8(message).ok().map(str::to_string),
        length: message.len() as u64,
        hash: format!("0x{}", hex::encode(hash)),
    };
    (intent, hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_text() {
        let (i, hash) = intent("0x00", b"hello");
        assert_eq!(
            hex::encode(hash),
            "50b2c43fd39106bafbba0da34fc430e1f91e3c96ea2acee2bc34119f92b37750"
        );
        assert_eq!(i.text.as_deref(), Some("hello"));
        assert_eq!(i.length, 5);
        let (i, _) = intent("0x00", &[0xff, 0xfe]);
        assert!(i.text.is_none());
        assert_eq!(i.message, "0xfffe");
    }
}
