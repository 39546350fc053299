//! Constraints declared in the OpenAPI document (poem-openapi validators: `minimum`,
//! `maxLength`, `pattern`, ...) are checked by poem-openapi before a handler runs. Their
//! failures answer 422 `INVALID_REQUEST`, as the checks the handlers make themselves do, with
//! the rule in words instead of the validator's name.

/// Patterns in words (every pattern the API declares has an entry: a test checks).
const PATTERNS: &[(&str, &str)] = &[
    (
        "^[!-~]{1,255}$",
        "must be 1 to 255 printable ASCII characters without spaces",
    ),
    (
        "^[A-Za-z0-9._-]{1,100}$",
        "is invalid: use 1 to 100 characters of A-Z, a-z, 0-9, '.', '_' and '-'",
    ),
    (
        "^[A-Za-z0-9._+-]{1,100}$",
        "is invalid: use 1 to 100 characters of A-Z, a-z, 0-9, '.', '_', '-' and '+'",
    ),
    (
        "^[A-Za-z0-9._+-]{1,64}$",
        "is invalid: use 1 to 64 characters of A-Z, a-z, 0-9, '.', '_', '-' and '+'",
    ),
    (
        SIGNER_ENTRY,
        "entries must look like subject:<sub>, group:<name> (a value without surrounding \
         spaces) or role:<a Keyward role>",
    ),
];

/// The pattern of a signers entry (`auth::signers::SignerEntry`), as the API declares it.
const SIGNER_ENTRY: &str =
    r"^((subject|group):\S(.*\S)?|role:(admin|key-admin|policy-admin|signer|approver|auditor))$";

/// The message for a failed poem-openapi validator, or `None` when `message` (a poem error's
/// text) is not one.
pub fn describe(message: &str) -> Option<String> {
    let (before, rule) = message.split_once("verification failed. ")?;
    let field = before.rsplit('`').nth(1).unwrap_or("a field");
    let rule = rule.split(" (occurred while").next().unwrap_or(rule).trim();
    let open = rule.find('(')?;
    let close = rule.rfind(')')?;
    let (name, args) = (&rule[..open], rule.get(open + 1..close)?);
    let first = args.split(',').next().unwrap_or(args).trim();
    let exclusive = args.contains("exclusive: true");
    let words = match name {
        "minimum" if exclusive => format!("must be greater than {first}"),
        "minimum" => format!("must be at least {first}"),
        "maximum" if exclusive => format!("must be less than {first}"),
        "maximum" => format!("must be at most {first}"),
        "minLength" => format!("must be at least {first} characters long"),
        "maxLength" => format!("must be at most {first} characters long"),
        "minItems" => format!("must hold at least {first} items"),
        "maxItems" => format!("must hold at most {first} items"),
        "pattern" => {
            let pattern = args.trim_matches('"');
            match PATTERNS.iter().find(|(p, _)| *p == pattern) {
                Some((_, words)) => (*words).to_string(),
                None => format!("must match the pattern {args}"),
            }
        }
        "uniqueItems" => "must not hold the same item twice".to_string(),
        "multipleOf" => format!("must be a multiple of {first}"),
        _ => format!("must satisfy {rule}"),
    };
    Some(format!("{field} {words}"))
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn validator_failures_are_put_in_words() {
        assert_eq!(
            describe(
                "failed to parse parameter `limit`: verification failed. minimum(1, exclusive: false)"
            )
            .as_deref(),
            Some("limit must be at least 1")
        );
        assert_eq!(
            describe(
                "parse request payload error: failed to parse \"IssueCertificateBody\": field \
                 `validity_days` verification failed. maximum(3650, exclusive: false) (occurred \
                 while parsing \"IssueCertificateBody\")"
            )
            .as_deref(),
            Some("validity_days must be at most 3650")
        );
        assert_eq!(
            describe(
                "parse request payload error: field `name` verification failed. \
                 pattern(\"^[A-Za-z0-9._-]{1,100}$\")"
            )
            .as_deref(),
            Some("name is invalid: use 1 to 100 characters of A-Z, a-z, 0-9, '.', '_' and '-'")
        );
        assert_eq!(
            describe(
                "failed to parse parameter `Idempotency-Key`: verification failed. \
                 pattern(\"^[!-~]{1,255}$\")"
            )
            .as_deref(),
            Some("Idempotency-Key must be 1 to 255 printable ASCII characters without spaces")
        );
        assert_eq!(
            describe("failed to parse parameter `limit`: invalid digit found in string"),
            None
        );
    }

    #[test]
    fn the_signer_entry_pattern_names_every_role_and_agrees_with_the_parser() {
        let roles: Vec<&str> = crate::auth::Role::ALL.iter().map(|r| r.as_str()).collect();
        assert!(super::SIGNER_ENTRY.contains(&format!("role:({})", roles.join("|"))));
        let re = regex::Regex::new(super::SIGNER_ENTRY).expect("a regex");
        for entry in [
            "subject:alice",
            "group:treasury ops",
            "role:signer",
            "role:nobody",
            "subject:",
            "subject: alice",
            "alice",
            "group:x ",
            "role:admin",
            "subject:a",
        ] {
            assert_eq!(
                re.is_match(entry),
                crate::auth::signers::SignerEntry::parse(entry).is_ok(),
                "{entry:?}"
            );
        }
    }

    #[test]
    fn every_declared_pattern_is_worded() {
        let spec: serde_json::Value =
            serde_json::from_str(&crate::api::routes::openapi_json()).expect("the spec is JSON");
        let mut patterns = Vec::new();
        collect_patterns(&spec, &mut patterns);
        assert!(!patterns.is_empty(), "the spec declares no pattern");
        for pattern in patterns {
            assert!(
                super::PATTERNS.iter().any(|(p, _)| *p == pattern),
                "pattern {pattern} has no words in api/validation.rs"
            );
        }
    }

    fn collect_patterns(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("pattern", serde_json::Value::String(p)) => out.push(p.clone()),
                        _ => collect_patterns(v, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| collect_patterns(v, out)),
            _ => {}
        }
    }
}
