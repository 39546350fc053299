//! Allows every request. `keyward dev` binds the same policy (a built-in copy) to new keys.

use keyward_policy::{Decision, NoSettings, SignRequest};

/// Allows everything.
pub fn evaluate(_req: &SignRequest, _settings: &NoSettings) -> Decision {
    Decision::Allow
}

keyward_policy::export_policy!(evaluate);

#[cfg(test)]
mod tests {
    use super::*;
    use keyward_policy::testing::request;

    #[test]
    fn allows_any_request() {
        assert_eq!(evaluate(&request().build(), &NoSettings), Decision::Allow);
        let other = request().roles(&[]).message_len(1 << 20).build();
        assert_eq!(evaluate(&other, &NoSettings), Decision::Allow);
    }
}
