//! Tests of configuration parsing and validation.

use super::*;
use crate::auth::Role;

fn table(text: &str) -> toml::Table {
    toml::from_str(text).unwrap()
}

const KEK: &str = "0000000000000000000000000000000000000000000000000000000000000001";

fn env(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<Vec<_>>()
        .into_iter()
}

#[test]
fn environment_overlays_nested_keys() {
    let cfg = Config::from_table(
        table("[storage]\ndata_dir = \"d\"\n[auth]\ndev_issuer = true\n"),
        env(&[
            ("KEYWARD_KEK", KEK),
            ("KEYWARD_POLICY__DEFAULT_DECISION", "allow"),
            ("KEYWARD_SERVER__MAX_BODY_BYTES", "4096"),
            ("OTHER", "x"),
        ]),
        Path::new("/base"),
    )
    .unwrap();
    assert_eq!(cfg.default_decision, DefaultDecision::Allow);
    assert_eq!(cfg.max_body_bytes, 4096);
    assert_eq!(cfg.database, Path::new("/base/d/keyward.db"));
}

#[test]
fn policy_limits_are_validated() {
    let base = "[storage]\ndata_dir = \"d\"\n[auth]\ndev_issuer = true\n";
    let cfg = Config::from_table(
        table(&format!(
            "{base}[policy]\nfuel = 5000\nbind_on_create = [\"allow-all\"]\n"
        )),
        env(&[
            ("KEYWARD_KEK", KEK),
            ("KEYWARD_POLICY__MAX_TIMEOUT_MS", "300"),
        ]),
        Path::new("/"),
    )
    .unwrap();
    assert_eq!(cfg.policy.limits.default.fuel, 5000);
    assert_eq!(cfg.policy.limits.max.timeout_ms, 300);
    assert_eq!(cfg.policy.bind_on_create, ["allow-all"]);
    let err = Config::from_table(
        table(&format!(
            "{base}[policy]\ntimeout_ms = 500\nmax_timeout_ms = 100\n"
        )),
        env(&[("KEYWARD_KEK", KEK)]),
        Path::new("/"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("policy.timeout_ms") && err.contains("500"),
        "{err}"
    );
    let err = Config::from_table(
        table(&format!("{base}[policy]\nbind_on_create = [\"nope\"]\n")),
        env(&[("KEYWARD_KEK", KEK)]),
        Path::new("/"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("bind_on_create") && err.contains("nope"),
        "{err}"
    );
}

#[test]
fn errors_name_the_key_and_value() {
    let err = Config::from_table(
        table("[storage]\ndata_dir = \"d\"\n[server]\nlisten = \"nowhere\"\n"),
        env(&[("KEYWARD_KEK", KEK)]),
        Path::new("/"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("server.listen") && err.contains("nowhere"),
        "{err}"
    );

    let err = Config::from_table(
        table("[storage]\ndata_dir = \"d\"\nbogus = 1\n"),
        env(&[("KEYWARD_KEK", KEK)]),
        Path::new("/"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("bogus"), "{err}");

    let err = Config::from_table(
        table("[storage]\ndata_dir = \"d\"\n[auth]\ndev_issuer = true\n"),
        env(&[("KEYWARD_KEK", "short")]),
        Path::new("/"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("KEYWARD_KEK") && !err.contains("short"),
        "{err}"
    );
}

#[test]
fn documents_settings_are_checked() {
    let base = "[storage]\ndata_dir = \"d\"\n[auth]\ndev_issuer = true\n";
    let cfg =
        Config::from_table(table(base), env(&[("KEYWARD_KEK", KEK)]), Path::new("/")).unwrap();
    assert_eq!(cfg.documents.max_document_bytes, 512 * 1024);
    for (key, value) in [
        ("KEYWARD_DOCUMENTS__CA_SUBJECT", "not a name"),
        ("KEYWARD_DOCUMENTS__CA_ALGORITHM", "secp256k1"),
        ("KEYWARD_DOCUMENTS__MAX_DOCUMENT_BYTES", "0"),
    ] {
        let err = Config::from_table(
            table(base),
            env(&[("KEYWARD_KEK", KEK), (key, value)]),
            Path::new("/"),
        )
        .unwrap_err()
        .to_string();
        let name = key
            .trim_start_matches("KEYWARD_DOCUMENTS__")
            .to_ascii_lowercase();
        assert!(err.contains(&format!("documents.{name}")), "{err}");
    }
}

#[test]
fn a_production_config_needs_an_issuer_and_a_kek() {
    let err = Config::from_table(
        table("[storage]\ndata_dir = \"d\"\n"),
        env(&[("KEYWARD_KEK", KEK)]),
        Path::new("/"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("auth.issuers"), "{err}");
    let err = Config::from_table(
        table("[storage]\ndata_dir = \"d\"\n[auth]\ndev_issuer = true\n"),
        env(&[]),
        Path::new("/"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("KEYWARD_KEK"), "{err}");
}

#[test]
fn issuers_are_discovered_or_fetched_and_role_maps_name_keyward_roles() {
    let base = "[storage]\ndata_dir = \"d\"\n[auth]\njwks_refetch_cooldown_seconds = 7\n\
                [[auth.issuers]]\nissuer = \"https://idp.test/realms/x/\"\n\
                audiences = [\"keyward\"]\n";
    let cfg = Config::from_table(
        table(&format!(
            "{base}roles_claim = \"/realm_access/roles\"\n\
             role_map = {{ \"kw-sign\" = \"signer\", \"ops\" = [\"auditor\", \"key-admin\"] }}\n"
        )),
        env(&[("KEYWARD_KEK", KEK)]),
        Path::new("/"),
    )
    .unwrap();
    let issuer = &cfg.issuers[0];
    // The issuer is kept exactly as written (trailing slash included).
    assert_eq!(issuer.settings.issuer, "https://idp.test/realms/x/");
    assert_eq!(issuer.keys, IssuerKeys::Remote(None));
    assert_eq!(
        issuer.settings.role_map["ops"],
        vec![Role::Auditor, Role::KeyAdmin]
    );
    assert_eq!(cfg.jwks_cache.refetch_cooldown, Duration::from_secs(7));

    for (extra, key) in [
        ("role_map = { \"x\" = \"treasurer\" }\n", "role_map.x"),
        (
            "jwks_uri = \"https://idp.test/certs\"\njwks_file = \"k.json\"\n",
            "jwks_uri",
        ),
        ("jwks_uri = \"file:///etc/passwd\"\n", "jwks_uri"),
        ("groups_claim = \"groups\"\n", "groups_claim"),
    ] {
        let err = Config::from_table(
            table(&format!("{base}{extra}")),
            env(&[("KEYWARD_KEK", KEK)]),
            Path::new("/"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains(key), "{extra}: {err}");
    }
}

#[test]
fn the_example_production_config_is_valid_and_says_what_it_means() {
    let text = include_str!("../../../examples/production.toml");
    let cfg = Config::from_table(table(text), env(&[("KEYWARD_KEK", KEK)]), Path::new("/"))
        .expect("examples/production.toml is valid");
    assert_eq!(cfg.default_decision, DefaultDecision::Deny);
    assert!(!cfg.issuers.is_empty());
    assert_eq!(cfg.approvals.max_quorum, 16);
    assert_eq!(cfg.csc.sad_ttl_seconds, 300);
    assert_eq!(cfg.documents.max_document_bytes, 524_288);
    assert_eq!(cfg.policy.replay.days, 30);
}

#[test]
fn policy_inputs_are_kept_30_days_by_default_and_the_retention_is_checked() {
    let base = "[storage]\ndata_dir = \"d\"\n[auth]\ndev_issuer = true\n";
    let load = |extra: &str, vars: &[(&str, &str)]| {
        let mut all = vec![("KEYWARD_KEK", KEK)];
        all.extend_from_slice(vars);
        Config::from_table(table(&format!("{base}{extra}")), env(&all), Path::new("/"))
    };
    let cfg = load("", &[]).unwrap();
    assert_eq!(
        cfg.policy.replay,
        ReplayRetention {
            days: 30,
            max_inputs: 1_000_000
        }
    );
    assert!(cfg.policy.replay.keeps());
    let cfg = load(
        "[policy]\nreplay_retention_days = 0\n",
        &[("KEYWARD_POLICY__REPLAY_MAX_INPUTS", "5000")],
    )
    .unwrap();
    assert!(!cfg.policy.replay.keeps());
    assert_eq!(cfg.policy.replay.max_inputs, 5000);
    for (extra, key) in [
        (
            "[policy]\nreplay_retention_days = 3651\n",
            "policy.replay_retention_days",
        ),
        (
            "[policy]\nreplay_max_inputs = 0\n",
            "policy.replay_max_inputs",
        ),
    ] {
        let err = load(extra, &[]).unwrap_err().to_string();
        assert!(err.contains(key), "{extra}: {err}");
    }
}

/// A development configuration (data dir, development issuer, KEK) with `extra` appended.
fn load_dev(extra: &str) -> Result<Config, ConfigError> {
    let base = "[storage]\ndata_dir = \"d\"\n[auth]\ndev_issuer = true\n";
    Config::from_table(
        table(&format!("{base}{extra}")),
        env(&[("KEYWARD_KEK", KEK)]),
        Path::new("/"),
    )
}

#[test]
fn trusted_signers_take_pem_or_base64_keys_with_optional_names() {
    use crate::policy::signature::encode_public_key;

    assert!(!load_dev("").unwrap().policy.trusted_signers.required());
    let a = encode_public_key(&ed25519_dalek::SigningKey::from_bytes(&[1; 32]).verifying_key());
    let b = encode_public_key(&ed25519_dalek::SigningKey::from_bytes(&[2; 32]).verifying_key());
    let pem = format!("-----BEGIN PUBLIC KEY-----\n{b}\n-----END PUBLIC KEY-----\n");
    let cfg = load_dev(&format!(
        "[policy]\ntrusted_signers = [\"{a}\", {{ name = \"release@example.org\", public_key = \"\"\"\n{pem}\"\"\" }}]\n"
    ))
    .unwrap();
    let signers = cfg.policy.trusted_signers.signers();
    assert_eq!(signers.len(), 2);
    assert_eq!(
        (signers[0].name.as_deref(), signers[0].public_key.as_str()),
        (None, a.as_str())
    );
    assert_eq!(signers[1].name.as_deref(), Some("release@example.org"));
    assert_eq!(signers[1].public_key, b);
    for (extra, want) in [
        (
            "trusted_signers = [\"MCowBQ\"]".to_string(),
            "policy.trusted_signers[0]",
        ),
        (
            format!("trusted_signers = [\"{a}\", \"{a}\"]"),
            "the same key as policy.trusted_signers[0]",
        ),
        (
            format!(
                "trusted_signers = [{{ name = \"x\", public_key = \"{a}\" }}, \
                 {{ name = \"x\", public_key = \"{b}\" }}]"
            ),
            "the same name as policy.trusted_signers[0]",
        ),
        (
            format!("trusted_signers = [{{ name = \"has space\", public_key = \"{a}\" }}]"),
            "signer name",
        ),
        ("trusted_signers = [42]".to_string(), "trusted_signers"),
    ] {
        let err = load_dev(&format!("[policy]\n{extra}\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{extra}: {err}");
    }
}

#[test]
fn the_ui_section_names_a_provider_or_none() {
    let cfg = load_dev("").unwrap();
    assert!(cfg.ui.enabled);
    assert_eq!(cfg.ui.sign_in, None);
    let cfg = load_dev(
        "[ui]\nissuer = \"https://idp.example.com/realms/x/\"\nclient_id = \"kw\"\n\
         authorize_params = { audience = \"keyward\" }\n",
    )
    .unwrap();
    let s = cfg.ui.sign_in.unwrap();
    assert_eq!(s.issuer, "https://idp.example.com/realms/x");
    assert_eq!((s.client_id.as_str(), s.scope.as_str()), ("kw", "openid"));
    assert_eq!(s.authorize_params["audience"], "keyward");
    assert!(!load_dev("[ui]\nenabled = false\n").unwrap().ui.enabled);
    for (extra, want) in [
        ("[ui]\nissuer = \"https://idp\"\n", "ui.client_id"),
        ("[ui]\nclient_id = \"kw\"\n", "ui.issuer"),
        (
            "[ui]\nissuer = \"idp.example.com\"\nclient_id = \"kw\"\n",
            "http(s) URL",
        ),
        (
            "[ui]\nissuer = \"https://idp\"\nclient_id = \"kw\"\nauthorize_params = { state = \"x\" }\n",
            "set by the page",
        ),
        ("[ui]\nredirect_uri = \"https://kw/ui/\"\n", "ui.issuer"),
        ("[ui]\ncolour = \"blue\"\n", "colour"),
    ] {
        let err = load_dev(extra).unwrap_err().to_string();
        assert!(err.contains(want), "{extra}: {err}");
    }
}

#[test]
fn a_postgres_node_keeps_two_connections_for_the_writer_and_the_usage_reads() {
    let with = |n: u32| {
        Config::from_table(
            table(&format!(
                "[storage]\ndata_dir = \"d\"\nurl = \"postgres://kw@db:5432/kw\"\n\
                 max_connections = {n}\n[auth]\ndev_issuer = true\n"
            )),
            env(&[("KEYWARD_KEK", KEK)]),
            Path::new("/"),
        )
    };
    let cfg = with(3).unwrap();
    assert_eq!(cfg.postgres.expect("postgres").max_connections, 3);
    for n in [0, 2, 1001] {
        let err = with(n).unwrap_err().to_string();
        assert!(err.contains("storage.max_connections"), "{n}: {err}");
        assert!(err.contains("between 3 and 1000"), "{n}: {err}");
    }
}
