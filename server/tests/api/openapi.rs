//! The committed OpenAPI document matches the server, and every operation is documented.

use serde_json::Value;

#[test]
fn committed_openapi_json_is_current() {
    let live = keyward_server::api::routes::openapi_json();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi/openapi.json");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed.trim() == live.trim(),
        "openapi/openapi.json is stale; regenerate it with:\n  cargo run -p keyward-server -- openapi > openapi/openapi.json"
    );
}

#[test]
fn every_v1_operation_requires_the_bearer_scheme() {
    let spec: Value = serde_json::from_str(&keyward_server::api::routes::openapi_json()).unwrap();
    assert_eq!(
        spec["components"]["securitySchemes"]["BearerAuth"]["scheme"],
        "bearer"
    );
    let paths = spec["paths"].as_object().unwrap();
    let mut count = 0;
    for (path, ops) in paths {
        for (method, op) in ops.as_object().unwrap() {
            if path.starts_with("/v1/") {
                count += 1;
                let security = op["security"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{method} {path} has no security"));
                assert!(
                    security.iter().any(|s| s.get("BearerAuth").is_some()),
                    "{method} {path}"
                );
            }
            assert!(op["responses"].is_object(), "{method} {path}");
        }
    }
    assert!(count >= 8, "{count} operations");
    for route in [
        "/v1/keys",
        "/v1/keys/import",
        "/v1/keys/{id}",
        "/v1/keys/{id}/sign",
        "/v1/keys/{id}/verify",
        "/v1/keys/{id}/disable",
        "/v1/audit",
        "/health/ready",
    ] {
        assert!(paths.contains_key(route), "{route} missing from the spec");
    }
}
