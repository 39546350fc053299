//! At most N signatures per key per hour, counted by the host: `{"max_per_hour": 100}`.

use keyward_policy::{Decision, SignRequest};
use serde::Deserialize;

/// Settings of `rate-limit`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Signatures this key may make in any hour.
    pub max_per_hour: u64,
}

/// Denies once the key made `max_per_hour` signatures in the last hour.
pub fn evaluate(req: &SignRequest, settings: &Settings) -> Decision {
    let used = req.context.key_signatures_last_hour;
    if used >= settings.max_per_hour {
        keyward_policy::log(&format!(
            "rate limit hit: {used} signatures in the last hour"
        ));
        Decision::deny(format!(
            "rate limit: this key made {used} signatures in the last hour (limit {})",
            settings.max_per_hour
        ))
    } else {
        Decision::Allow
    }
}

keyward_policy::export_policy!(evaluate);

#[cfg(test)]
mod tests {
    use super::*;
    use keyward_policy::testing::{request, take_logs};

    #[test]
    fn allows_below_the_limit() {
        let req = request().key_signatures_last_hour(2).build();
        assert_eq!(
            evaluate(&req, &Settings { max_per_hour: 3 }),
            Decision::Allow
        );
    }

    #[test]
    fn denies_at_the_limit_and_logs() {
        let req = request().key_signatures_last_hour(3).build();
        let d = evaluate(&req, &Settings { max_per_hour: 3 });
        assert_eq!(
            d,
            Decision::deny("rate limit: this key made 3 signatures in the last hour (limit 3)")
        );
        assert_eq!(
            take_logs(),
            ["rate limit hit: 3 signatures in the last hour"]
        );
    }
}
