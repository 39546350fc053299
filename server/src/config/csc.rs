//! `[csc]`: the Cloud Signature Consortium API (SAD lifetime, signatures per authorization).

use serde::Deserialize;

use super::{ConfigError, invalid};

/// `[csc]`, also the validated form.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CscConfig {
    /// How long a SAD from `credentials/authorize` stays usable, seconds (1 to 3600).
    #[serde(default = "default_sad_ttl")]
    pub sad_ttl_seconds: u64,
    /// Most signatures one authorization may cover (the credentials' `multisign`, 1 to 1000).
    #[serde(default = "default_max_signatures")]
    pub max_signatures: u32,
}

impl Default for CscConfig {
    fn default() -> Self {
        CscConfig {
            sad_ttl_seconds: default_sad_ttl(),
            max_signatures: default_max_signatures(),
        }
    }
}

fn default_sad_ttl() -> u64 {
    300
}
fn default_max_signatures() -> u32 {
    16
}

impl CscConfig {
    /// Checks the ranges.
    pub(super) fn validate(&self) -> Result<CscConfig, ConfigError> {
        if self.sad_ttl_seconds == 0 || self.sad_ttl_seconds > 3600 {
            return Err(invalid(
                "csc.sad_ttl_seconds",
                self.sad_ttl_seconds,
                "must be 1 to 3600",
            ));
        }
        if self.max_signatures == 0 || self.max_signatures > 1000 {
            return Err(invalid(
                "csc.max_signatures",
                self.max_signatures,
                "must be 1 to 1000",
            ));
        }
        Ok(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_checked_and_named() {
        assert!(CscConfig::default().validate().is_ok());
        let zero = CscConfig {
            sad_ttl_seconds: 0,
            ..CscConfig::default()
        };
        let err = zero.validate().unwrap_err().to_string();
        assert!(err.contains("csc.sad_ttl_seconds"), "{err}");
        let many = CscConfig {
            max_signatures: 1001,
            ..CscConfig::default()
        };
        let err = many.validate().unwrap_err().to_string();
        assert!(err.contains("csc.max_signatures"), "{err}");
        let parsed: CscConfig = toml::from_str("sad_ttl_seconds = 60").unwrap();
        assert_eq!((parsed.sad_ttl_seconds, parsed.max_signatures), (60, 16));
        assert!(
            toml::from_str::<CscConfig>("sad_ttl = 60").is_err(),
            "unknown keys are refused"
        );
    }
}
