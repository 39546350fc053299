//! Built-in policies, written in WAT so that the server needs no wasm32 toolchain to have
//! them. `allow-all` behaves exactly like `policies/allow-all` (a test checks both agree): it
//! allows every request and accepts any settings. `keyward dev` binds it to new keys
//! (`policy.bind_on_create`). They are stored and run like uploaded modules.

/// Version recorded for built-in policies.
pub const BUILTIN_VERSION: &str = "builtin-1";

/// The built-in `allow-all` policy, ABI v1.
pub const ALLOW_ALL_WAT: &str = r#"
(module
  (memory (export "memory") 1)
  (global $next (mut i32) (i32.const 1024))
  (data (i32.const 16) "{\"decision\":\"allow\"}")
  (data (i32.const 64) "{\"valid\":true}")
  (func (export "keyward_abi_version") (result i32) (i32.const 1))
  ;; A bump allocator: the instance lives for one evaluation.
  (func (export "keyward_alloc") (param $len i32) (result i32)
    (local $ptr i32)
    (local.set $ptr (global.get $next))
    (global.set $next (i32.add (local.get $ptr) (local.get $len)))
    (if (i32.gt_u (global.get $next) (i32.mul (memory.size) (i32.const 65536)))
      (then
        (if (i32.lt_s
              (memory.grow (i32.add (i32.shr_u (local.get $len) (i32.const 16)) (i32.const 1)))
              (i32.const 0))
          (then unreachable))))
    (local.get $ptr))
  (func (export "keyward_dealloc") (param i32 i32))
  (func (export "keyward_evaluate") (param i32 i32) (result i64)
    (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 20)))
  (func (export "keyward_validate_settings") (param i32 i32) (result i64)
    (i64.or (i64.shl (i64.const 64) (i64.const 32)) (i64.const 14)))
)
"#;

/// The names of the built-in policies.
pub const NAMES: &[&str] = &["allow-all"];

/// Whether a module with SHA-256 `digest` (hex) is a built-in policy (trusted as the server
/// binary is: it needs no signature under `policy.trusted_signers`).
pub fn is_builtin(digest: &str) -> bool {
    use sha2::Digest as _;
    static DIGESTS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    DIGESTS
        .get_or_init(|| {
            NAMES
                .iter()
                .filter_map(|n| module(n))
                .map(|m| hex::encode(sha2::Sha256::digest(m)))
                .collect()
        })
        .iter()
        .any(|d| d == digest)
}

/// The module bytes of built-in policy `name`.
pub fn module(name: &str) -> Option<Vec<u8>> {
    match name {
        "allow-all" => wat::parse_str(ALLOW_ALL_WAT).ok(),
        _ => None,
    }
}
