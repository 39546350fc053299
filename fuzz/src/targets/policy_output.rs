//! A policy's output (ABI v1: the JSON decision a module writes), as the engine parses it
//! after every evaluation.
//!
//! Invariants: an output that parses is the decision its `decision` field names,
//! re-serializes to an output that parses to the same decision, and a require-approval asks
//! for at least one approver and a positive time to live; whatever else is a failure with a
//! code (the engine turns it into a deny), never a panic.

use keyward_policy::Decision;
use keyward_server::policy::abi::parse_decision;
use serde_json::{Value, json};

/// Seed inputs.
pub fn seeds() -> Vec<Vec<u8>> {
    crate::json_seeds(&[
        json!({"decision": "allow"}),
        json!({"decision": "deny", "reason": "over the daily limit"}),
        json!({"decision": "require_approval", "reason": "large transfer", "approvals": 2,
               "approver_roles": ["treasury"], "ttl_seconds": 3600}),
        json!({"decision": "deny"}),
    ])
}

/// Checks one input.
pub fn check(data: &[u8]) {
    match parse_decision(data) {
        Ok(decision) => {
            let named = serde_json::from_slice::<Value>(data).expect("a parsed output is JSON");
            assert_eq!(named["decision"].as_str(), Some(decision.name()));
            if let Decision::RequireApproval {
                approvals,
                ttl_seconds,
                ..
            } = &decision
            {
                assert!(*approvals >= 1 && *ttl_seconds >= 1, "{decision:?}");
            }
            let again = serde_json::to_vec(&decision).expect("a decision serializes");
            assert_eq!(parse_decision(&again).as_ref(), Ok(&decision), "round trip");
        }
        Err(failure) => {
            assert!(!failure.code().is_empty());
            assert!(!failure.detail().is_empty());
        }
    }
}
