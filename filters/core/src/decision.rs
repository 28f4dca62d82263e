//! What the engine decided for one request. Every field is public so `layover eval` can render
//! it; everything that comes from the policy is borrowed from the [`crate::CompiledPolicy`].

use std::borrow::Cow;

use crate::authz_api::AuthzDecision;
use crate::wire;

/// The body Envoy's RBAC filter answers a denied request with.
pub const RBAC_DENIED_BODY: &[u8] = b"RBAC: access denied";

/// What the waypoint does with the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Forward upstream to one of [`Decision::destinations`] (picked by [`Decision::sample`]).
    Forward,
    /// AuthorizationPolicy denied the request (403 `RBAC: access denied`).
    Deny,
    /// The proxy answers itself: a route `directResponse`, or a CORS preflight.
    DirectResponse,
    /// The proxy answers with a redirect ([`Decision::location`]).
    Redirect,
    /// A fault abort that fires for every request (percentage 100).
    Abort,
    /// The service's route table matched nothing (404).
    NoRoute,
    /// The destination is not a service this waypoint serves (404).
    UnknownService,
    /// The only destination cannot be served (503; 500 for Gateway API routes).
    Unavailable,
}

/// One header mutation, in the order Envoy applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderOp {
    /// Replace every value of the header (create it if missing): `OVERWRITE_IF_EXISTS_OR_ADD`.
    Set {
        /// Header name.
        name: String,
        /// New value.
        value: String,
    },
    /// Add a value, keeping existing ones: `APPEND_IF_EXISTS_OR_ADD`.
    Append {
        /// Header name.
        name: String,
        /// Added value.
        value: String,
    },
    /// Remove the header.
    Remove {
        /// Header name.
        name: String,
    },
}

/// A forwarding candidate of a route.
#[derive(Debug, Clone, PartialEq)]
pub struct DestinationChoice {
    /// Envoy cluster, e.g. `outbound|9080|v1|reviews.default.svc.cluster.local`.
    pub cluster: String,
    /// Destination host (service FQDN).
    pub host: String,
    /// Destination port.
    pub port: u32,
    /// DestinationRule subset, empty for none.
    pub subset: String,
    /// Configured weight (normalized by the compiler).
    pub weight: u32,
    /// Probability of being picked: weight / sum of weights.
    pub probability: f64,
    /// Picking it answers 503 (500 for Gateway API routes), as Envoy does for a missing cluster.
    pub unavailable: bool,
    /// Request header operations when this destination is picked, route- and destination-level
    /// combined in Envoy's order: with one destination istiod appends the destination's operations
    /// to the route's (one parser: removes first, then sets/adds); with several, Envoy evaluates
    /// the weighted cluster's parser before the route's (`WeightedClusterEntry::finalizeRequestHeaders`).
    pub request_header_ops: Vec<HeaderOp>,
    /// Response header operations, combined the same way.
    pub response_header_ops: Vec<HeaderOp>,
}

/// A mirror target (`RequestMirrorPolicy`).
#[derive(Debug, Clone, PartialEq)]
pub struct MirrorTarget {
    /// Envoy cluster.
    pub cluster: String,
    /// Mirror host.
    pub host: String,
    /// Mirror port.
    pub port: u32,
    /// Subset, empty for none.
    pub subset: String,
    /// Percentage of requests mirrored, 0..=100.
    pub percentage: f64,
}

/// The service the request was matched to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceRef<'a> {
    /// FQDN.
    pub hostname: &'a str,
    /// Namespace.
    pub namespace: &'a str,
    /// Short name.
    pub name: &'a str,
    /// "Kind namespace/name" of the object the service came from.
    pub origin: &'a str,
}

/// What AuthorizationPolicy alone decided for a request ([`crate::CompiledPolicy::authorize`]):
/// the authorization-only mode (`layover_contract::FilterMode::Authorization`, route B), where
/// the proxy's own routes do everything else.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Authorization<'a> {
    /// The service the request was matched to; `None` when the policy does not know it.
    pub service: Option<ServiceRef<'a>>,
    /// The AuthorizationPolicy result for that service (`None` when no service was found).
    pub authz: Option<AuthzDecision<'a>>,
}

impl Authorization<'_> {
    /// Whether the request may continue. A service the policy does not know is denied: which
    /// AuthorizationPolicies bind there is unknown, and allowing would skip them all.
    pub fn allowed(&self) -> bool {
        self.authz.is_some_and(|a| a.allowed)
    }

    /// The reply status of a denied request: 403, as Envoy's RBAC filter answers.
    pub const DENIED_STATUS: u16 = 403;

    /// The reply body of a denied request ([`RBAC_DENIED_BODY`]).
    pub const DENIED_BODY: &'static [u8] = RBAC_DENIED_BODY;
}

/// The route that matched.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MatchedRoute<'a> {
    /// Position in the service's ordered route list (`None` for the default route).
    pub index: Option<usize>,
    /// User object the route came from (`None` for the default route).
    pub origin: Option<&'a wire::Origin>,
    /// Which entry of the route's `matches` matched (`None`: the route has no conditions).
    pub match_index: Option<usize>,
    /// Name of the matching entry (VirtualService `match[].name`), may be empty.
    pub match_name: &'a str,
    /// True for the implicit route of a service without VirtualService / HTTPRoute.
    pub is_default: bool,
}

/// The retry policy in effect, in Envoy's own terms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EffectiveRetry<'a> {
    /// The policy (retry_on, retriable status codes, host predicates, attempts, per-try timeout).
    pub policy: &'a wire::RetryPolicy,
    /// True when the route set none and MeshConfig's default applies.
    pub from_mesh_default: bool,
}

/// Fault delay (`HTTPFaultInjection.Delay`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultDelay {
    /// Fixed delay before the request proceeds.
    pub fixed_delay_ms: u64,
    /// Percentage of requests delayed, 0..=100.
    pub percentage: f64,
}

/// Fault abort (`HTTPFaultInjection.Abort`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultAbort {
    /// HTTP status answered.
    pub http_status: u16,
    /// gRPC status answered instead (HTTP 200 + `grpc-status`), if set.
    pub grpc_status: Option<u32>,
    /// Percentage of requests aborted, 0..=100.
    pub percentage: f64,
}

impl FaultAbort {
    /// The HTTP status of the abort reply: 200 for a gRPC abort (status in `grpc-status`).
    pub fn status(&self) -> u16 {
        if self.grpc_status.is_some() {
            200
        } else {
            self.http_status
        }
    }
}

/// Fault injection configured on the matched route (the fault filter runs after CORS, before
/// the router).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultDecision {
    /// Delay, if configured.
    pub delay: Option<FaultDelay>,
    /// Abort, if configured.
    pub abort: Option<FaultAbort>,
}

/// How the CORS filter treats the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorsKind {
    /// Preflight answered by the proxy (200 with the `Access-Control-*` headers).
    Preflight,
    /// Preflight from a non-allowed origin, forwarded upstream (`forward_not_matching_preflights`).
    PreflightForwarded,
    /// Actual cross-origin request: the response gets the `Access-Control-*` headers if allowed.
    Actual,
}

/// Result of Envoy's CORS filter for this request. Headers are `None` when not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CorsDecision<'a> {
    /// Preflight or actual request.
    pub kind: CorsKind,
    /// The Origin matched `allowOrigins`.
    pub origin_allowed: bool,
    /// `access-control-allow-origin` (the request's Origin, when allowed).
    pub allow_origin: Option<&'a str>,
    /// `access-control-allow-credentials: true`.
    pub allow_credentials: bool,
    /// `access-control-allow-methods` (preflight only).
    pub allow_methods: Option<&'a str>,
    /// `access-control-allow-headers` (preflight only).
    pub allow_headers: Option<&'a str>,
    /// `access-control-max-age` (preflight only).
    pub max_age: Option<&'a str>,
    /// `access-control-expose-headers` (actual requests only).
    pub expose_headers: Option<&'a str>,
}

impl<'a> CorsDecision<'a> {
    /// The response headers the CORS filter adds, in a stable order.
    pub fn response_headers(&self) -> Vec<(&'static str, &'a str)> {
        let mut out = Vec::new();
        if let Some(o) = self.allow_origin {
            out.push(("access-control-allow-origin", o));
        }
        if self.allow_credentials {
            out.push(("access-control-allow-credentials", "true"));
        }
        if let Some(v) = self.allow_methods {
            out.push(("access-control-allow-methods", v));
        }
        if let Some(v) = self.allow_headers {
            out.push(("access-control-allow-headers", v));
        }
        if let Some(v) = self.max_age {
            out.push(("access-control-max-age", v));
        }
        if let Some(v) = self.expose_headers {
            out.push(("access-control-expose-headers", v));
        }
        out
    }
}

/// The engine's answer for one request. Deterministic: random choices (weighted destination,
/// fault and mirror percentages) are left to [`Decision::sample`].
#[derive(Debug, Clone)]
pub struct Decision<'a> {
    /// What happens.
    pub action: Action,
    /// Status whenever the proxy answers itself (deny, no route, direct response, redirect,
    /// certain abort, unavailable destination). `None` when the request is forwarded.
    pub status: Option<u16>,
    /// Short machine-readable reason, in the spirit of Envoy's response code details. One of
    /// `unknown_service`, `rbac_access_denied`, `no_service_port`, `route_not_found`,
    /// `default_route`, `forward`, `cors_preflight`, `redirect`, `direct_response`,
    /// `fault_filter_abort`, `cluster_not_found`.
    pub reason: &'static str,
    /// Body of a proxy answer (deny, direct response), if any.
    pub body: Option<&'a [u8]>,
    /// The service the request was matched to.
    pub service: Option<ServiceRef<'a>>,
    /// AuthorizationPolicy result (`None` when no service was found).
    pub authz: Option<AuthzDecision<'a>>,
    /// The matched route (`None` when denied before routing or nothing matched).
    pub route: Option<MatchedRoute<'a>>,
    /// The path policies were matched against (normalized, no query, no fragment).
    pub normalized_path: &'a str,
    /// The path the upstream receives after rewrites, with the query.
    pub path: Cow<'a, str>,
    /// The authority the upstream receives after rewrites.
    pub authority: Cow<'a, str>,
    /// Forwarding candidates with weights and probabilities (empty unless forwarding).
    pub destinations: &'a [DestinationChoice],
    /// The destinations of the forwarding route the request matched, also when the proxy answers
    /// itself (AuthorizationPolicy deny, fault abort, unavailable destination). Envoy resolves
    /// the route, picking the weighted cluster, before any filter answers, and every local reply
    /// gets that route entry's response header operations (`FilterManager::sendLocalReply`,
    /// envoyproxy/envoy source/common/http/filter_manager.cc): each destination's
    /// `response_header_ops` are exactly those. Empty when no forwarding route matched.
    pub route_destinations: &'a [DestinationChoice],
    /// A path rewrite applied (Envoy then keeps the original in `x-envoy-original-path`).
    pub path_rewritten: bool,
    /// An authority rewrite applied (Envoy keeps the original in `x-envoy-original-host`).
    pub authority_rewritten: bool,
    /// Route-level response header operations applied to a proxy-generated reply (redirect,
    /// direct response). For forwarded requests see each destination's combined lists.
    pub response_header_ops: &'a [HeaderOp],
    /// Redirect target.
    pub location: Option<String>,
    /// Retry policy in effect (route's, else the mesh default; `None`: no retries configured).
    pub retry: Option<EffectiveRetry<'a>>,
    /// Upstream timeout in milliseconds, 0 = none.
    pub timeout_ms: u64,
    /// Fault injection of the matched route.
    pub fault: Option<FaultDecision>,
    /// Mirror targets of the matched route.
    pub mirrors: &'a [MirrorTarget],
    /// CORS filter result, when the route has a CORS policy and the request an Origin.
    pub cors: Option<CorsDecision<'a>>,
    /// Status answered when the picked destination is unavailable: 503, or 500 for Gateway API
    /// routes (istiod sets `cluster_not_found_response_code: INTERNAL_SERVER_ERROR` there).
    pub unavailable_status: u16,
}
