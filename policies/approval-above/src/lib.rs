//! Requires approval when a condition holds; for now, when the caller sends a message longer
//! than `max_message_len` bytes (or, with `digests: true`, any pre-hashed digest, whose
//! content the host cannot see):
//! `{"max_message_len": 1024, "approvals": 2, "approver_roles": ["treasury"], "ttl_seconds": 3600}`.
//!
//! For Ethereum keys, `max_value_wei` (a decimal string) asks for approval when a transaction
//! sends more native value than that; Ethereum messages and typed data follow `digests`
//! (their content is a hash the host decoded, so `digests: true` sends them to approvers).

use keyward_policy::{Decision, Intent, SignRequest};
use serde::Deserialize;

/// Settings of `approval-above`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Messages up to this many bytes pass without approval.
    pub max_message_len: u64,
    /// Whether a pre-hashed digest needs approval too (default `false`).
    #[serde(default)]
    pub digests: bool,
    /// Distinct approvers needed.
    pub approvals: u32,
    /// Roles an approver may hold.
    pub approver_roles: Vec<String>,
    /// Ethereum transactions sending more than this many wei need approval (when absent,
    /// every Ethereum transaction does).
    #[serde(default)]
    pub max_value_wei: Option<String>,
    /// How long the request may wait, seconds (default one hour).
    #[serde(default = "one_hour")]
    pub ttl_seconds: u64,
}

fn one_hour() -> u64 {
    3600
}

/// Asks for approval above the threshold, allows the rest.
pub fn evaluate(req: &SignRequest, settings: &Settings) -> Decision {
    let reason = match &req.intent {
        Intent::Raw(raw) => match raw.message_len {
            Some(len) if len > settings.max_message_len => Some(format!(
                "message of {len} bytes is above {} bytes",
                settings.max_message_len
            )),
            None if settings.digests => Some("pre-hashed digests need approval".to_string()),
            _ => None,
        },
        Intent::Document(doc) => match doc.document_len {
            Some(len) if len > settings.max_message_len => Some(format!(
                "document of {len} bytes is above {} bytes",
                settings.max_message_len
            )),
            None if settings.digests => Some("document hashes need approval".to_string()),
            _ => None,
        },
        Intent::EthereumTransaction(tx) => match &settings.max_value_wei {
            Some(max) => match keyward_policy::wei_cmp(&tx.value, max) {
                Some(std::cmp::Ordering::Greater) | None => {
                    Some(format!("value {} wei is above {max} wei", tx.value))
                }
                _ => None,
            },
            None => Some("Ethereum transactions need approval".to_string()),
        },
        Intent::EthereumMessage(_) | Intent::EthereumTypedData(_) if settings.digests => {
            Some("Ethereum messages and typed data need approval".to_string())
        }
        Intent::EthereumMessage(_) | Intent::EthereumTypedData(_) => None,
        // A kind of request this policy does not know yet: ask people rather than allow.
        _ => Some("this kind of request needs approval".to_string()),
    };
    match reason {
        None => Decision::Allow,
        Some(reason) => Decision::RequireApproval {
            reason,
            approvals: settings.approvals,
            approver_roles: settings.approver_roles.clone(),
            ttl_seconds: settings.ttl_seconds,
        },
    }
}

/// A quorum of at least one, some approver role and a positive TTL.
pub fn validate(settings: &Settings) -> Result<(), String> {
    if settings.approvals == 0 {
        return Err("approvals must be at least 1".into());
    }
    if settings.approver_roles.is_empty() {
        return Err("approver_roles must list at least one role".into());
    }
    if settings.ttl_seconds == 0 {
        return Err("ttl_seconds must be at least 1".into());
    }
    Ok(())
}

keyward_policy::export_policy!(evaluate, validate = validate);

#[cfg(test)]
mod tests {
    use super::*;
    use keyward_policy::testing::request;

    fn settings() -> Settings {
        Settings {
            max_message_len: 100,
            digests: false,
            approvals: 2,
            approver_roles: vec!["treasury".into()],
            max_value_wei: None,
            ttl_seconds: 600,
        }
    }

    #[test]
    fn ethereum_value_above_the_threshold_needs_approval() {
        use keyward_policy::testing::ethereum_transaction;
        let s = Settings {
            max_value_wei: Some("1000000000000000000".into()),
            ..settings()
        };
        let tx = |v: &str| {
            request()
                .intent(Intent::EthereumTransaction(ethereum_transaction(
                    1,
                    "0x3535353535353535353535353535353535353535",
                    v,
                )))
                .build()
        };
        assert_eq!(evaluate(&tx("1000000000000000000"), &s), Decision::Allow);
        assert_eq!(
            evaluate(&tx("1000000000000000001"), &s).name(),
            "require_approval"
        );
        assert_eq!(evaluate(&tx("1"), &settings()).name(), "require_approval");
    }

    #[test]
    fn small_messages_and_digests_pass() {
        assert_eq!(
            evaluate(&request().message_len(100).build(), &settings()),
            Decision::Allow
        );
        assert_eq!(evaluate(&request().build(), &settings()), Decision::Allow);
    }

    #[test]
    fn large_messages_need_the_quorum() {
        let d = evaluate(&request().message_len(101).build(), &settings());
        assert_eq!(
            d,
            Decision::RequireApproval {
                reason: "message of 101 bytes is above 100 bytes".into(),
                approvals: 2,
                approver_roles: vec!["treasury".into()],
                ttl_seconds: 600,
            }
        );
    }

    #[test]
    fn digests_can_require_approval() {
        let s = Settings {
            digests: true,
            ..settings()
        };
        assert_eq!(evaluate(&request().build(), &s).name(), "require_approval");
    }

    #[test]
    fn settings_need_a_quorum_and_roles() {
        assert!(validate(&settings()).is_ok());
        assert!(
            validate(&Settings {
                approvals: 0,
                ..settings()
            })
            .is_err()
        );
        assert!(
            validate(&Settings {
                approver_roles: vec![],
                ..settings()
            })
            .is_err()
        );
    }
}
