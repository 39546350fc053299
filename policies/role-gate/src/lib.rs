//! The caller must hold one of the roles listed in the settings:
//! `{"roles": ["treasury", "ops"]}`.

use keyward_policy::{Decision, SignRequest};
use serde::Deserialize;

/// Settings of `role-gate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Roles that may sign; holding any one suffices.
    pub roles: Vec<String>,
}

/// Allows callers holding one of `settings.roles`.
pub fn evaluate(req: &SignRequest, settings: &Settings) -> Decision {
    if req
        .principal
        .roles
        .iter()
        .any(|r| settings.roles.contains(r))
    {
        Decision::Allow
    } else {
        Decision::deny(format!(
            "the caller needs one of the roles: {}",
            settings.roles.join(", ")
        ))
    }
}

/// Refuses an empty role list, which would deny everything.
pub fn validate(settings: &Settings) -> Result<(), String> {
    if settings.roles.is_empty() {
        return Err("roles must list at least one role".into());
    }
    Ok(())
}

keyward_policy::export_policy!(evaluate, validate = validate);

#[cfg(test)]
mod tests {
    use super::*;
    use keyward_policy::testing::request;

    fn settings(roles: &[&str]) -> Settings {
        Settings {
            roles: roles.iter().map(|r| r.to_string()).collect(),
        }
    }

    #[test]
    fn allows_a_listed_role() {
        let req = request().roles(&["signer", "treasury"]).build();
        assert_eq!(evaluate(&req, &settings(&["treasury"])), Decision::Allow);
    }

    #[test]
    fn denies_others_and_names_the_roles() {
        let req = request().roles(&["signer"]).build();
        let d = evaluate(&req, &settings(&["treasury", "ops"]));
        assert_eq!(
            d,
            Decision::deny("the caller needs one of the roles: treasury, ops")
        );
    }

    #[test]
    fn an_empty_list_is_refused_at_bind_time() {
        assert!(validate(&settings(&[])).is_err());
        assert!(validate(&settings(&["ops"])).is_ok());
    }
}
