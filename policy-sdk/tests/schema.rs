//! The JSON Schemas in `schema/` are generated from the wire types; this test fails when they
//! are stale. Regenerate with
//! `KEYWARD_BLESS=1 cargo test -p keyward-policy-sdk --features schema --test schema`.
#![allow(clippy::unwrap_used)]

use keyward_policy::{Decision, PolicyInput, SettingsCheck};

#[test]
fn checked_in_schemas_are_current() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema");
    let schemas = [
        ("input.schema.json", schemars::schema_for!(PolicyInput)),
        ("output.schema.json", schemars::schema_for!(Decision)),
        (
            "settings-check.schema.json",
            schemars::schema_for!(SettingsCheck),
        ),
    ];
    let bless = std::env::var_os("KEYWARD_BLESS").is_some();
    let mut stale = Vec::new();
    for (file, schema) in schemas {
        let text = serde_json::to_string_pretty(&schema).unwrap() + "\n";
        let path = dir.join(file);
        if bless {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &text).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            stale.push(file);
        }
    }
    assert!(
        stale.is_empty(),
        "stale schemas {stale:?}: run KEYWARD_BLESS=1 cargo test -p keyward-policy-sdk \
         --features schema --test schema"
    );
}
