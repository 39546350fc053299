//! Raw signing speed of the software slots, one core, next to `openssl speed` on the same
//! machine in the same run (skipped with a message when `openssl` is not installed).
//!
//! Run with `cargo bench -p keyward-server --bench signing`. For each algorithm it signs for
//! two seconds with the key a software slot loads from its sealed material (the same
//! `SigningKey::sign` the signing path calls), prints signatures per second, and, where
//! `openssl speed` measures the same operation, OpenSSL's figure and the ratio. Numbers only,
//! no assertions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use keyward_server::keys::{
    Algorithm, HashAlg, Kek, KeyBackend, RsaScheme, SignOptions, SoftwareBackend, ToSign,
};

const RUN: Duration = Duration::from_secs(2);

/// Signatures per second of `alg` with `scheme` on one thread.
fn keyward_rate(alg: Algorithm, scheme: RsaScheme) -> f64 {
    let backend = SoftwareBackend::new(Kek::generate());
    let made = backend.generate("bench", alg).unwrap();
    let key = backend.load("bench", alg, &made.material).unwrap();
    let input = match alg {
        Algorithm::Ed25519 => ToSign::Message(b"pay 10 EUR to Alice".to_vec()),
        _ => ToSign::Digest {
            hash: HashAlg::Sha256,
            digest: HashAlg::Sha256.digest(b"pay 10 EUR to Alice"),
        },
    };
    let options = SignOptions {
        scheme,
        ..Default::default()
    };
    for _ in 0..20 {
        key.sign(&input, options).unwrap();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < RUN {
        for _ in 0..10 {
            std::hint::black_box(key.sign(&input, options).unwrap());
        }
        n += 10;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Signatures per second `openssl speed` reports for `name` (e.g. `rsa2048`, `ecdsap256`,
/// `ed25519`), one process, or `None` when openssl is missing or prints something else.
fn openssl_rate(name: &str) -> Option<f64> {
    let out = Command::new("openssl")
        .args(["speed", "-seconds", "2", "-mr", name])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // Machine-readable lines: "+F2:<i>:<bits>:<signs/s>:<verifies/s>" (RSA), "+F4:..." (ECDSA),
    // "+F6:<i>:<bits>:<name>:<signs/s>:<verifies/s>" (EdDSA).
    let line = text
        .lines()
        .find(|l| l.starts_with("+F2:") || l.starts_with("+F4:") || l.starts_with("+F6:"))?;
    line.split(':')
        .skip(3)
        .find_map(|field| field.parse::<f64>().ok())
        .filter(|rate| *rate > 0.0)
}

fn main() {
    let rows = [
        (
            "ed25519",
            Algorithm::Ed25519,
            RsaScheme::Pkcs1v15,
            "ed25519",
        ),
        ("secp256k1", Algorithm::Secp256k1, RsaScheme::Pkcs1v15, ""),
        ("p256", Algorithm::P256, RsaScheme::Pkcs1v15, "ecdsap256"),
        (
            "rsa-2048 pkcs1",
            Algorithm::Rsa2048,
            RsaScheme::Pkcs1v15,
            "rsa2048",
        ),
        ("rsa-2048 pss", Algorithm::Rsa2048, RsaScheme::Pss, ""),
        (
            "rsa-3072 pkcs1",
            Algorithm::Rsa3072,
            RsaScheme::Pkcs1v15,
            "rsa3072",
        ),
    ];
    println!(
        "{:<16} {:>12} {:>12} {:>8}",
        "software key", "keyward /s", "openssl /s", "ratio"
    );
    for (label, alg, scheme, openssl) in rows {
        let ours = keyward_rate(alg, scheme);
        let theirs = (!openssl.is_empty())
            .then(|| openssl_rate(openssl))
            .flatten();
        match theirs {
            Some(theirs) => println!(
                "{label:<16} {ours:>12.0} {theirs:>12.0} {:>8.2}",
                ours / theirs
            ),
            None => println!("{label:<16} {ours:>12.0} {:>12} {:>8}", "-", "-"),
        }
    }
}
