//! Blockchains: key derivation shared by every chain (`hd`), and one folder per chain that
//! decodes what it is asked to sign into an intent and assembles the signed result.
//!
//! Nothing here signs: decoders produce the digests the pipeline hands to the key backend, and
//! assemblers put the backend's signatures into the chain's own encoding afterwards.

pub mod bitcoin;
pub mod ethereum;
pub mod hd;
pub mod solana;
