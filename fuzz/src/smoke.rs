//! The short run of every target that the test suite (and so CI) makes: each target's seeds,
//! the inputs of past findings (`fuzz/regressions/<target>/`, committed), and mutations of
//! them from a fixed pseudo-random sequence, within a budget of inputs and time. It runs on
//! the stable toolchain with the test build's dependencies; the coverage-guided runs are
//! `scripts/fuzz` (cargo-fuzz, nightly).
//!
//! A failing input is written to `fuzz/artifacts/<target>/smoke-<hash>` before the panic goes
//! on, so that `cargo +nightly fuzz run <target> <file>` reproduces it.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sha2::Digest as _;

use crate::targets::Target;

/// The fuzz directory (`fuzz/`).
pub fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The saved inputs of past findings of `target`.
pub fn regressions(target: &str) -> Vec<Vec<u8>> {
    let dir = fuzz_dir().join("regressions").join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    paths
        .iter()
        .filter(|p| p.is_file())
        .map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .collect()
}

/// A small, fixed pseudo-random sequence (xorshift64*).
struct Sequence(u64);

impl Sequence {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const INTERESTING: &[u8] = &[
    0x00, 0x01, 0x7f, 0x80, 0xff, b'"', b'{', b'}', b'0', b'-', 0xc0, 0xf8,
];

/// One mutation of `base` (or a splice of it with `other`).
fn mutate(base: &[u8], other: &[u8], seq: &mut Sequence) -> Vec<u8> {
    let mut out = base.to_vec();
    for _ in 0..1 + seq.below(3) {
        let len = out.len();
        match seq.below(7) {
            0 if len > 0 => {
                let at = seq.below(len);
                out[at] ^= 1 << seq.below(8);
            }
            1 if len > 0 => {
                let at = seq.below(len);
                out[at] = INTERESTING[seq.below(INTERESTING.len())];
            }
            2 => {
                let at = seq.below(len + 1);
                let n = 1 + seq.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| seq.next() as u8).collect();
                out.splice(at..at, bytes);
            }
            3 if len > 0 => {
                let at = seq.below(len);
                let n = 1 + seq.below((len - at).min(16));
                out.drain(at..at + n);
            }
            4 if len > 0 => {
                let at = seq.below(len);
                let n = 1 + seq.below((len - at).min(32));
                let copy = out[at..at + n].to_vec();
                let to = seq.below(len + 1);
                out.splice(to..to, copy);
            }
            5 if !other.is_empty() => {
                let cut = seq.below(len + 1);
                let from = seq.below(other.len());
                out.truncate(cut);
                out.extend_from_slice(&other[from..]);
            }
            _ if len > 0 => {
                // A length or count field: change a byte by a small amount.
                let at = seq.below(len);
                let delta = (seq.below(9) as i16 - 4) as i8;
                out[at] = out[at].wrapping_add_signed(delta);
            }
            _ => out.push(seq.next() as u8),
        }
    }
    out
}

fn check_saving(target: &Target, input: &[u8]) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| (target.check)(input))) {
        let dir = fuzz_dir().join("artifacts").join(target.name);
        let name = hex::encode(&sha2::Sha256::digest(input)[..8]);
        let path = dir.join(format!("smoke-{name}"));
        let saved = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, input));
        match saved {
            Ok(()) => eprintln!("{}: the failing input is {}", target.name, path.display()),
            Err(e) => eprintln!(
                "{}: cannot save the failing input ({e}): {}",
                target.name,
                hex::encode(input)
            ),
        }
        resume_unwind(panic);
    }
}

/// Runs `target` on its seeds, its regressions and mutations of them, until `inputs`
/// mutations ran or `budget` is spent. Gives how many inputs ran.
pub fn run(target: &Target, inputs: usize, budget: Duration) -> usize {
    let mut corpus = (target.seeds)();
    corpus.extend(regressions(target.name));
    assert!(!corpus.is_empty(), "{} has no seeds", target.name);
    for input in &corpus {
        check_saving(target, input);
    }
    let start = Instant::now();
    let name_hash = sha2::Sha256::digest(target.name.as_bytes());
    let mut seq = Sequence(u64::from_le_bytes(name_hash[..8].try_into().expect("8 bytes")) | 1);
    let mut ran = corpus.len();
    for _ in 0..inputs {
        if start.elapsed() > budget {
            break;
        }
        let base = &corpus[seq.below(corpus.len())];
        let other = &corpus[seq.below(corpus.len())];
        let input = mutate(base, other, &mut seq);
        check_saving(target, &input);
        ran += 1;
    }
    ran
}
