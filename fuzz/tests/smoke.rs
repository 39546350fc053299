//! Every fuzz target on its seeds, its saved findings and a few thousand mutations (see
//! `keyward_fuzz::smoke`); one test per target (from the one list, `with_targets!`), so a
//! failure names its target.

use std::time::Duration;

use keyward_fuzz::{smoke, targets};

/// Mutations per target, and the time a target may take at most.
const INPUTS: usize = 3_000;
const BUDGET: Duration = Duration::from_secs(20);

fn run(name: &str) {
    let target = targets::by_name(name).unwrap_or_else(|| panic!("no target {name}"));
    let ran = smoke::run(&target, INPUTS, BUDGET);
    eprintln!("{name}: {ran} inputs");
}

macro_rules! smoke_tests {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            run(stringify!($name));
        }
    )*};
}

keyward_fuzz::with_targets!(smoke_tests);

#[test]
fn every_target_has_a_cargo_fuzz_binary() {
    let manifest = std::fs::read_to_string(smoke::fuzz_dir().join("cargo-fuzz/Cargo.toml"))
        .expect("fuzz/cargo-fuzz/Cargo.toml");
    for target in targets::ALL {
        assert!(
            manifest.contains(&format!("name = \"{}\"", target.name)),
            "{} has no binary",
            target.name
        );
        assert!(
            smoke::fuzz_dir()
                .join("cargo-fuzz/fuzz_targets")
                .join(format!("{}.rs", target.name))
                .is_file(),
            "{} has no fuzz_targets file",
            target.name
        );
    }
}

/// With every decodable input signed for real, the seeds of the signing targets reach the
/// independent signature checks (so a smoke run that passes has checked signatures).
#[test]
fn the_signing_targets_check_real_signatures() {
    keyward_fuzz::sign_every_input(true);
    for name in [
        "bitcoin_psbt",
        "ethereum_transaction",
        "ethereum_typed_data",
        "solana_transaction",
        "solana_offchain_message",
        "rpc_ethereum",
        "csc_request",
    ] {
        let target = targets::by_name(name).expect("a target");
        let before = keyward_fuzz::verified_signatures();
        for seed in (target.seeds)() {
            (target.check)(&seed);
        }
        let checked = keyward_fuzz::verified_signatures() - before;
        assert!(checked > 0, "{name}: no signature was checked");
        eprintln!("{name}: {checked} signatures checked");
    }
}
