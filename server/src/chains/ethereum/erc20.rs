//! ERC-20 calls policies see decoded: `transfer`, `approve` and `transferFrom`, with the ABI
//! decoding of `alloy-sol-types`. Anything else (or data that does not decode exactly) is not
//! an ERC-20 call and is left to the selector and raw data.

use alloy_primitives::Address;
use alloy_sol_types::{SolCall, sol};
use keyward_policy::Erc20Call;

use super::lower;

sol! {
    function transfer(address to, uint256 amount) returns (bool);
    function approve(address spender, uint256 amount) returns (bool);
    function transferFrom(address from, address to, uint256 amount) returns (bool);
}

/// Decodes `data` sent to `token` as an ERC-20 call.
pub fn decode(token: &Address, data: &[u8]) -> Option<Erc20Call> {
    let selector: [u8; 4] = data.get(..4)?.try_into().ok()?;
    let token = lower(token);
    match selector {
        transferCall::SELECTOR => {
            let c = transferCall::abi_decode(data).ok()?;
            Some(Erc20Call {
                function: "transfer".into(),
                token,
                owner: None,
                to: lower(&c.to),
                amount: c.amount.to_string(),
            })
        }
        approveCall::SELECTOR => {
            let c = approveCall::abi_decode(data).ok()?;
            Some(Erc20Call {
                function: "approve".into(),
                token,
                owner: None,
                to: lower(&c.spender),
                amount: c.amount.to_string(),
            })
        }
        transferFromCall::SELECTOR => {
            let c = transferFromCall::abi_decode(data).ok()?;
            Some(Erc20Call {
                function: "transferFrom".into(),
                token,
                owner: Some(lower(&c.from)),
                to: lower(&c.to),
                amount: c.amount.to_string(),
            })
        }
        _ => None,
    }
}

/// The call data of `transfer(to, amount)` (for tests and examples).
pub fn transfer_data(to: Address, amount: alloy_primitives::U256) -> Vec<u8> {
    transferCall { to, amount }.abi_encode()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::U256;

    #[test]
    fn transfer_approve_and_transfer_from_decode() {
        let token: Address = "0x6b175474e89094c44da98b954eedeac495271d0f"
            .parse()
            .unwrap();
        let to: Address = "0x3535353535353535353535353535353535353535"
            .parse()
            .unwrap();
        let data = transfer_data(to, U256::from(5u64));
        assert_eq!(hex::encode(&data[..4]), "a9059cbb");
        let call = decode(&token, &data).unwrap();
        assert_eq!(call.function, "transfer");
        assert_eq!(call.to, "0x3535353535353535353535353535353535353535");
        assert_eq!(call.amount, "5");
        assert_eq!(call.token, "0x6b175474e89094c44da98b954eedeac495271d0f");
        let approve = approveCall {
            spender: to,
            amount: U256::MAX,
        }
        .abi_encode();
        assert_eq!(decode(&token, &approve).unwrap().function, "approve");
        let from = transferFromCall {
            from: token,
            to,
            amount: U256::from(1u64),
        }
        .abi_encode();
        let c = decode(&token, &from).unwrap();
        assert_eq!(c.owner.as_deref(), Some(c.token.as_str()));
        assert!(decode(&token, &data[..30]).is_none());
        assert!(decode(&token, &[0xde, 0xad, 0xbe, 0xef]).is_none());
    }
}
