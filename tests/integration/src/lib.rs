//! Harness for running layover under a real Envoy with real HTTP backends.
//!
//! - [`envoy`]: find the Envoy binary, validate configs, start an Envoy per test (admin and
//!   listeners on kernel-picked loopback ports, read back from Envoy) and stop it on drop.
//! - [`backend`]: programmable HTTP/1.1 + h2c backends that echo what they received as JSON.
//! - [`client`]: a small HTTP client (HTTP/1.1 or h2c) for test requests.
//! - [`waypoint`]: Istio YAML for real backends → compiled policy → Envoy running a layover
//!   filter build (wasm or dynamic module).
//!
//! - [`mesh`]: a mesh CA and an HBONE request, standing in for ztunnel.
//! - [`tls`]: an mTLS client whose client certificate is the caller's SPIFFE identity.
//! - [`bench`]: request lists, percentiles and the "no policy" bootstrap of `cargo xtask bench`.
//!
//! Every piece binds its own ports and uses no shared state, so tests run in parallel.

pub mod backend;
pub mod bench;
pub mod client;
pub mod envoy;
pub mod error;
pub mod mesh;
pub mod tls;
pub mod waypoint;

pub use backend::{Backend, Behavior, Echo};
pub use client::{HttpClient, Reply};
pub use envoy::{
    find_envoy, repo_root, validate_config, validate_config_with, Envoy, EnvoyOptions,
    HarnessError, Launch, Ports,
};
pub use tls::{ClientIdentity, TlsClient, TlsError};

use std::time::Duration;

/// Upper bound for anything a test waits on (Envoy start, one request). Generous because CI
/// machines are shared and slow; a healthy run stays far below it.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(30);
