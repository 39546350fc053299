//! The policy SDK's source, carried in the binary so that `keyward policy new` works with no
//! Keyward checkout (see `policy::author`). It lists the SDK's files, chain modules included,
//! as they are; it holds no logic.

/// The SDK's source files, carried in the binary so that `keyward policy new` works with no
/// Keyward checkout: `(path under the SDK's directory, text)`. A test fails when a file of
/// `policy-sdk/src` is missing here.
pub const BUNDLED_SDK_FILES: &[(&str, &str)] = &[
    ("README.md", include_str!("../../policy-sdk/README.md")),
    ("ABI.md", include_str!("../../policy-sdk/ABI.md")),
    ("src/lib.rs", include_str!("../../policy-sdk/src/lib.rs")),
    (
        "src/bitcoin.rs",
        include_str!("../../policy-sdk/src/bitcoin.rs"),
    ),
    (
        "src/export.rs",
        include_str!("../../policy-sdk/src/export.rs"),
    ),
    ("src/host.rs", include_str!("../../policy-sdk/src/host.rs")),
    (
        "src/solana.rs",
        include_str!("../../policy-sdk/src/solana.rs"),
    ),
    ("src/wire.rs", include_str!("../../policy-sdk/src/wire.rs")),
    (
        "src/testing/mod.rs",
        include_str!("../../policy-sdk/src/testing/mod.rs"),
    ),
    (
        "src/testing/bitcoin.rs",
        include_str!("../../policy-sdk/src/testing/bitcoin.rs"),
    ),
    (
        "src/testing/ethereum.rs",
        include_str!("../../policy-sdk/src/testing/ethereum.rs"),
    ),
    (
        "src/testing/solana.rs",
        include_str!("../../policy-sdk/src/testing/solana.rs"),
    ),
];
