//! layover's policy engine.
//!
//! [`CompiledPolicy::compile`] validates a wire [`Policy`] once per configuration (regexes,
//! indexes, CIDR tables are built here); [`CompiledPolicy::decide`] evaluates one request and
//! returns a [`Decision`]; [`Decision::sample`] resolves its random choices from adapter-supplied
//! entropy. [`normalize_path`] reproduces what Envoy does to the path before any filter runs.
//! Nothing here knows about Envoy, proxy-wasm or dynamic modules: the adapters build a
//! [`RequestView`] from host calls and apply the decision.

#![forbid(unsafe_code)]

pub mod authz;
mod authz_api;
mod decision;
mod error;
mod fxhash;
mod index;
pub mod jwt;
mod matcher;
mod normalize;
mod policy;
pub mod request;
mod sample;

#[cfg(test)]
mod tests;

pub use decision::{
    Action, Authorization, CorsDecision, CorsKind, Decision, DestinationChoice, EffectiveRetry,
    FaultAbort, FaultDecision, FaultDelay, HeaderOp, MatchedRoute, MirrorTarget, ServiceRef,
    RBAC_DENIED_BODY,
};
pub use error::InvalidPolicy;
pub use layover_proto::v1 as wire;
pub use layover_proto::v1::Policy;
pub use normalize::{normalize_path, PathRejected};
pub use policy::{CompiledPolicy, JwtSettings};
pub use request::{
    namespace_of_principal, ConnectionNeeds, DestinationView, RequestView, SourceView,
};
pub use sample::{Entropy, Sampled};
