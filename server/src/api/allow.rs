//! The `Allow` header of 405 answers (RFC 9110 §15.5.6): the methods each route answers,
//! from the OpenAPI document for the operations in it and from a list for the routes outside
//! it, matched by path template.

use std::sync::OnceLock;

/// Routes outside the OpenAPI document, with their methods.
const OTHER_ROUTES: &[(&str, &[&str])] = &[
    ("/openapi.json", &["GET"]),
    ("/.well-known/openid-configuration", &["GET"]),
    ("/.well-known/jwks.json", &["GET"]),
    ("/v1/ca/certificate", &["GET"]),
    ("/v1/ca/crl", &["GET"]),
    ("/rpc/ethereum", &["POST"]),
];

struct Template {
    segments: Vec<Option<String>>,
    methods: Vec<String>,
}

fn templates() -> &'static [Template] {
    static TABLE: OnceLock<Vec<Template>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let parse = |path: &str| {
            path.trim_matches('/')
                .split('/')
                .map(|s| (!(s.starts_with('{') || s.starts_with(':'))).then(|| s.to_string()))
                .collect()
        };
        let spec: serde_json::Value =
            serde_json::from_str(&super::routes::openapi_json()).unwrap_or_default();
        let mut out: Vec<Template> = spec["paths"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(path, ops)| Template {
                segments: parse(path),
                methods: ops
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(m, _)| m.to_ascii_uppercase())
                    .collect(),
            })
            .collect();
        out.extend(OTHER_ROUTES.iter().map(|(path, methods)| Template {
            segments: parse(path),
            methods: methods.iter().map(|m| m.to_string()).collect(),
        }));
        out
    })
}

/// The methods `path` answers, as an `Allow` value (`HEAD` with `GET`); `None` for an unknown
/// path.
pub fn allowed(path: &str) -> Option<String> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let matching: Vec<&Template> = templates()
        .iter()
        .filter(|t| {
            t.segments.len() == parts.len()
                && t.segments
                    .iter()
                    .zip(&parts)
                    .all(|(s, p)| s.as_deref().is_none_or(|s| s == *p))
        })
        .collect();
    // As the router does, a literal segment wins over a parameter at the first place they
    // differ: `/v1/keys/adopt` is that route, not `/v1/keys/{id}`.
    let literals = |t: &Template| t.segments.iter().map(Option::is_some).collect::<Vec<_>>();
    let best = matching.iter().map(|t| literals(t)).max();
    let mut methods: Vec<&str> = matching
        .iter()
        .filter(|t| Some(literals(t)) == best)
        .flat_map(|t| t.methods.iter().map(String::as_str))
        .collect();
    if methods.contains(&"GET") {
        methods.push("HEAD");
    }
    methods.sort_unstable();
    methods.dedup();
    (!methods.is_empty()).then(|| methods.join(", "))
}

#[cfg(test)]
mod tests {
    #[test]
    fn routes_name_their_methods() {
        assert_eq!(
            super::allowed("/v1/keys").as_deref(),
            Some("GET, HEAD, POST")
        );
        assert_eq!(
            super::allowed("/v1/keys/key_1/sign").as_deref(),
            Some("POST")
        );
        assert_eq!(
            super::allowed("/v1/requests/r1/approve").as_deref(),
            Some("POST")
        );
        assert_eq!(
            super::allowed("/openapi.json").as_deref(),
            Some("GET, HEAD")
        );
        assert_eq!(super::allowed("/rpc/ethereum").as_deref(), Some("POST"));
        assert_eq!(super::allowed("/v1/keys/adopt").as_deref(), Some("POST"));
        assert_eq!(
            super::allowed("/v1/keys/key_1").as_deref(),
            Some("GET, HEAD")
        );
        assert_eq!(super::allowed("/v1/nothing/here"), None);
    }
}
