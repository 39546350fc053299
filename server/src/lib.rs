//! # Keyward server
//!
//! A remote signing server: callers authenticate with an OIDC bearer token, each request
//! becomes a typed intent, the key's policies decide, the key's backend signs, and the
//! outcome lands in a hash-chained audit log before any signature leaves.
//!
//! Start reading at `pipeline`: it is the one signing path, and the security story of the
//! whole server is there and in the modules it calls.

pub mod api;
pub mod app;
pub mod approvals;
pub mod audit;
pub mod auth;
pub mod chains;
pub mod clock;
pub mod commands;
pub mod config;
pub mod csc;
pub mod documents;
pub mod error_code;
pub mod files;
pub mod intent;
pub mod keys;
pub mod lifecycle;
pub mod notify;
pub mod pipeline;
pub mod policy;
pub mod request_id;
pub mod sdk_bundle;
pub mod store;
pub mod wallets;
