//! Per-key access control: who may sign with a key.
//!
//! A key's `signers` list holds entries of three kinds:
//! - `subject:<sub>`: the token subject (`sub`), from any configured issuer;
//! - `role:<keyward-role>`: a Keyward role after the issuer's `role_map` (`role:signer`, ...;
//!   `admin` holds every role);
//! - `group:<name>`: a name from the issuer's `groups_claim`, as the IdP spells it.
//!
//! An empty list admits every caller holding the role `signer` (the behaviour of keys made
//! before lists existed). A non-empty list admits only callers matching an entry, admins
//! included, and signing still needs the role `signer`. This module only decides; the
//! pipeline enforces it before any policy runs.

use super::{Principal, Role};

/// Most entries a key's list may hold.
pub const MAX_SIGNERS: usize = 100;
/// Longest entry.
pub const MAX_ENTRY_CHARS: usize = 256;

/// One entry of a key's `signers` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignerEntry {
    /// `subject:<sub>`
    Subject(String),
    /// `role:<role>`
    Role(Role),
    /// `group:<name>`
    Group(String),
}

impl SignerEntry {
    /// Parses `kind:value`.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.chars().count() > MAX_ENTRY_CHARS {
            return Err(format!(
                "signer entry {:?}... is longer than {MAX_ENTRY_CHARS} characters",
                text.chars().take(32).collect::<String>()
            ));
        }
        let (kind, value) = text.split_once(':').ok_or_else(|| {
            format!(
                "signer entry {text:?} must look like subject:<sub>, role:<role> or group:<name>"
            )
        })?;
        if value.is_empty() || value.trim() != value {
            return Err(format!(
                "signer entry {text:?} needs a value without surrounding spaces after {kind}:"
            ));
        }
        match kind {
            "subject" => Ok(SignerEntry::Subject(value.to_string())),
            "group" => Ok(SignerEntry::Group(value.to_string())),
            "role" => Role::parse(value).map(SignerEntry::Role).ok_or_else(|| {
                let names: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
                format!(
                    "signer entry {text:?} names no Keyward role; roles are {} \
                     (map IdP roles with role_map, or use group:<name>)",
                    names.join(", ")
                )
            }),
            other => Err(format!(
                "signer entry {text:?} has unknown kind {other:?}; use subject:, role: or group:"
            )),
        }
    }

    /// Whether `principal` matches this entry.
    pub fn matches(&self, principal: &Principal) -> bool {
        match self {
            SignerEntry::Subject(sub) => principal.subject == *sub,
            SignerEntry::Role(role) => principal.has_role(*role),
            SignerEntry::Group(group) => principal.groups.iter().any(|g| g == group),
        }
    }
}

/// Checks and normalises a list given by a caller: each entry parses and holds no control
/// character (NUL, newlines, escapes...: they would forge lines in logs and make entries that
/// look alike differ), duplicates are dropped (first occurrence kept), at most `MAX_SIGNERS`.
pub fn normalize(entries: &[String]) -> Result<Vec<String>, String> {
    if entries.len() > MAX_SIGNERS {
        return Err(format!("a key may list at most {MAX_SIGNERS} signers"));
    }
    let mut out: Vec<String> = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        if entry.chars().any(char::is_control) {
            return Err(format!(
                "signer entry {index} contains a control character; control characters are not \
                 allowed in signer entries"
            ));
        }
        SignerEntry::parse(entry)?;
        if !out.contains(entry) {
            out.push(entry.clone());
        }
    }
    Ok(out)
}

/// Whether `principal` may sign with a key whose list is `signers` (the role `signer` is
/// checked separately by the pipeline). An empty list admits everyone; an entry that no
/// longer parses admits no one.
pub fn admits(signers: &[String], principal: &Principal) -> bool {
    signers.is_empty()
        || signers.iter().any(|s| {
            SignerEntry::parse(s)
                .map(|e| e.matches(principal))
                .unwrap_or(false)
        })
}

/// Whether `principal` may see a key with this list in listings: admins, key-admins,
/// policy-admins and auditors see every key; anyone else sees the keys they may sign with.
pub fn may_see(signers: &[String], principal: &Principal) -> bool {
    principal.has_any_role(&[Role::KeyAdmin, Role::PolicyAdmin, Role::Auditor])
        || (principal.has_role(Role::Signer) && admits(signers, principal))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(sub: &str, roles: &[Role], groups: &[&str]) -> Principal {
        Principal {
            other_roles: vec![],
            issuer: "https://idp".into(),
            subject: sub.into(),
            roles: roles.to_vec(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Principal::default()
        }
    }

    #[test]
    fn entries_parse_and_match() {
        let list = normalize(&[
            "subject:alice".into(),
            "group:payments".into(),
            "role:approver".into(),
            "subject:alice".into(),
        ])
        .unwrap();
        assert_eq!(list.len(), 3);
        assert!(admits(&list, &who("alice", &[Role::Signer], &[])));
        assert!(admits(&list, &who("bob", &[Role::Signer], &["payments"])));
        assert!(admits(&list, &who("carol", &[Role::Approver], &[])));
        assert!(!admits(&list, &who("dave", &[Role::Signer], &["sales"])));
        assert!(admits(&[], &who("dave", &[Role::Signer], &[])));
    }

    #[test]
    fn bad_entries_are_refused() {
        for bad in [
            "alice",
            "role:treasury",
            "team:x",
            "subject:",
            "group: x",
            "",
        ] {
            assert!(normalize(&[bad.to_string()]).is_err(), "{bad}");
        }
        let many: Vec<String> = (0..=MAX_SIGNERS).map(|i| format!("subject:{i}")).collect();
        assert!(normalize(&many).is_err());
    }

    #[test]
    fn control_characters_are_refused() {
        for bad in [
            "subject:alice\0",
            "subject:al\nice",
            "group:pay\rments",
            "subject:\u{1b}[31malice",
            "group:x\u{7f}",
            "subject:a\u{85}b",
            "subject:\talice",
        ] {
            let err = normalize(&["subject:ok".to_string(), bad.to_string()]).unwrap_err();
            assert!(
                err.contains("signer entry 1")
                    && err.contains("control characters are not allowed"),
                "{bad:?}: {err}"
            );
        }
        // Other non-ASCII text is still accepted.
        assert_eq!(
            normalize(&["subject:zoë".into(), "group:財務".into()]).unwrap(),
            vec!["subject:zoë".to_string(), "group:財務".to_string()]
        );
    }

    #[test]
    fn visibility_follows_roles_and_lists() {
        let list = vec!["subject:alice".to_string()];
        assert!(may_see(&list, &who("x", &[Role::Auditor], &[])));
        assert!(may_see(&list, &who("x", &[Role::Admin], &[])));
        assert!(may_see(&list, &who("alice", &[Role::Signer], &[])));
        assert!(!may_see(&list, &who("bob", &[Role::Signer], &[])));
        assert!(!may_see(&list, &who("alice", &[Role::Approver], &[])));
        assert!(may_see(&[], &who("bob", &[Role::Signer], &[])));
    }
}
