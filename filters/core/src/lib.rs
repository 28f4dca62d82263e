//! layover's policy engine.
//!
//! `CompiledPolicy::compile` validates a wire [`Policy`] once per configuration (regexes,
//! indexes, CIDR tables are built here); `CompiledPolicy::decide` evaluates one request and
//! returns a [`Decision`]. Nothing here knows about Envoy, proxy-wasm or dynamic modules: the
//! adapters build a [`RequestView`] from host calls and apply the decision.

#![forbid(unsafe_code)]

pub mod authz;
pub mod request;

pub use layover_proto::v1 as wire;
pub use layover_proto::v1::Policy;
pub use request::{DestinationView, RequestView, SourceView};
