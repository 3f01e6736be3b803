//! Test helpers shared by the crates' tests: a scriptable HTTP server on loopback (a
//! JWKS / OIDC provider that can rotate keys, go down, be slow, answer garbage, and
//! count every request, e.g. to prove a URL was never fetched), test signing keys for
//! every JWS algorithm rampart verifies, raw JWS construction (for forged headers), and
//! private directories that pass the data-root rules wherever the clone sits, and a
//! `redis-server` of one test alone.
//!
//! **Guards against:** nothing; test code only. **Trusts:** aws-lc-rs to generate and
//! sign. Only loopback addresses are ever bound.
#![forbid(unsafe_code)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod dirs;
mod keys;
mod redis;
mod server;

pub use dirs::{ancestors_clean, private_dir};

pub use keys::{TestKey, b64url, jws};
pub use redis::OwnRedis;
pub use server::{Reply, TestServer};
