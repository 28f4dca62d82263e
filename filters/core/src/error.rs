//! Why a policy was rejected. Every variant names where the problem is, so `layover compile`
//! and the filters' logs point at the offending object and field.

use crate::authz_api::InvalidAuthz;

/// A policy the engine refuses to load. Invalid configuration is rejected whole.
#[derive(Debug, thiserror::Error)]
pub enum InvalidPolicy {
    /// The policy was written for another schema version.
    #[error(
        "policy schema_version {found} is not supported (this build reads version {supported})"
    )]
    SchemaVersion {
        /// Version found in the policy.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },
    /// A service-level field is invalid.
    #[error("service {service}: {field}: {message}")]
    Service {
        /// Service hostname (or its index when the hostname is missing).
        service: String,
        /// Field path inside the service.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A route-level field is invalid.
    #[error("service {service}: route {route} ({origin}): {field}: {message}")]
    Route {
        /// Service hostname.
        service: String,
        /// Index of the route in the service's route list.
        route: usize,
        /// `Kind namespace/name[index]` of the object the route came from.
        origin: String,
        /// Field path inside the route, e.g. `matches[0].headers[1].value.regex`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The AuthorizationPolicies could not be compiled.
    #[error("authorization policies: {0}")]
    Authz(#[from] InvalidAuthz),
}
