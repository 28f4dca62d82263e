//! Native translation: the compiled policy as plain Envoy configuration, the way istiod writes
//! it, with no layover filter in the request path.
//!
//! It is the baseline the layover filters are measured against (`layover envoy --filter none`,
//! `cargo xtask bench`) and a correctness oracle: the integration suite and a differential test
//! run the same requests against it and against the filters. [`native_bootstrap_value`] keeps
//! everything of [`crate::bootstrap_value`] (admin, listeners incl. mTLS and the HBONE chain,
//! clusters, runtime) and replaces the connection manager's route configuration and HTTP filters
//! of the plain listener and of `main_internal` with [`route_configuration`] and
//! [`http_filters`].
//!
//! # What is translated (istio/istio sources)
//!
//! - Services → one virtual host per service and port, the way sidecar virtual hosts are built
//!   (`pilot/pkg/networking/core/httproute.go` `generateVirtualHostDomains`): domains are the
//!   FQDN, `name.ns.svc`, `name.ns`, the short name when unambiguous and the VIPs, each with
//!   `:port` (the port's vhost) and without (a port-less vhost), plus trailing-dot forms. This is
//!   exactly how the core's `service_for_authority` resolves a Host.
//! - Routes (`pilot/pkg/networking/core/route/route.go` `BuildHTTPRoutesForVirtualService`,
//!   `translateRoute`, `TranslateRouteMatch`): one Envoy route per match, in policy order; uri →
//!   `path` / `prefix` / `safe_regex` (`path_separated_prefix` for Gateway API prefixes),
//!   `ignoreUriCase` → `case_sensitive: false`; `method` / `authority` / `scheme` → header
//!   matchers on the pseudo-headers; `headers` / `withoutHeaders` (`invert_match`,
//!   `treat_missing_header_as_empty`); `queryParams`; a match `port` selects the port's vhost.
//! - Forward → `cluster` or `weighted_clusters` (0-weight entries dropped), `timeout` (0s
//!   when unset) and `max_grpc_timeout`, `retry_policy` (`route/retry/retry.go`: the route's
//!   or the mesh default; previous-hosts predicate, `host_selection_retry_max_attempts`,
//!   `retryRemoteLocalities` → previous-priorities), `request_mirror_policies`, rewrites
//!   (`prefix_rewrite`, `regex_rewrite`, Gateway API `ReplacePrefixMatch: /` and
//!   `ReplaceFullPath` as regex rewrites, `host_rewrite_literal`), header operations (set →
//!   `OVERWRITE_IF_EXISTS_OR_ADD`, add → `APPEND_IF_EXISTS_OR_ADD`, remove; a single
//!   destination's operations merged into the route's, weighted clusters' on the cluster).
//! - Redirect → `redirect` (port handling of istiod's `ApplyRedirect`), direct response →
//!   `direct_response`; fault → `typed_per_filter_config` `envoy.filters.http.fault`
//!   (`route/route.go` `TranslateFault`), CORS → per-route `envoy.filters.http.cors`
//!   (`TranslateCORSPolicy`).
//! - AuthorizationPolicy (`pilot/pkg/security/authz/builder/builder.go`, `model/`) → RBAC
//!   filters in istiod's order (AUDIT as a `LOG` filter, DENY, ALLOW), `istio.io/dry-run`
//!   as `shadow_rules`; the policies bound to a service are that service's virtual hosts'
//!   `RBACPerRoute`. Principals match the mTLS peer (`authenticated`) or, inside the HBONE
//!   tunnel, the peer identity `connect_terminate` left in filter state (`filter_state`, as
//!   istiod's ambient output does with `io.istio.peer_principal`).
//!
//! A policy the core refuses is refused here too (it is compiled with
//! `layover_core::CompiledPolicy::compile` first), so both sides accept the same inputs.
//!
//! # What native Envoy cannot express (the closest istiod behaviour is emitted)
//!
//! - **Service selection inside HBONE.** layover picks the service from the CONNECT authority;
//!   the native route configuration selects the virtual host from the inner request's Host (as a
//!   sidecar does). They agree whenever the client's Host names the service it dialled.
//! - **Destination port inside HBONE.** layover takes it from the CONNECT authority; native
//!   from the Host's port (route `port` matches and AuthorizationPolicy `ports` /
//!   `destination.port`).
//! - **`ipBlocks` / `source.ip` inside HBONE.** layover reads the client ztunnel reported in
//!   `forwarded`; native `direct_remote_ip` is the internal listener's peer there.
//! - **AuthorizationPolicy `ports` / `destination.port` on the plain listener.** istiod emits
//!   `destination_port`, which on a plain listener is the listener's own port; layover (like a
//!   waypoint behind ztunnel) means the service port the client asked for, so native matches
//!   the `:authority` port (`:authority` suffix `:<port>`) instead.
//! - **Client-sent `x-envoy-*` headers.** Envoy honours some of them (timeouts, retries) from
//!   private-address clients, as istiod's configuration does; layover strips every
//!   `x-envoy-*` / `x-layover-*` request header.

use std::collections::{BTreeMap, BTreeSet};

use layover_core::CompiledPolicy;
use layover_proto::v1::{
    self as wire, http_route::Action as WA, string_match::Kind, AuthorizationAction,
    AuthorizationPolicy, HeaderOperations, HttpRoute, Policy, RetryPolicy, RouteSource, Service,
};
use serde_json::{json, Map, Value};

use crate::{
    bootstrap_value, BootstrapOptions, EmitError, Endpoint, Format, LISTENER_NAME, MAIN_INTERNAL,
};
use layover_contract::filter_state::PEER_PRINCIPAL;

/// HTTP filter names of the native connection manager. Per-virtual-host RBAC configuration is
/// keyed by them.
pub const RBAC_DENY_FILTER: &str = "envoy.filters.http.rbac.deny";
/// The ALLOW RBAC filter (see [`RBAC_DENY_FILTER`]).
pub const RBAC_ALLOW_FILTER: &str = "envoy.filters.http.rbac.allow";
/// The AUDIT (`LOG`) RBAC filter (see [`RBAC_DENY_FILTER`]).
pub const RBAC_AUDIT_FILTER: &str = "envoy.filters.http.rbac.audit";
/// The CORS filter; routes carry their `CorsPolicy` under this name.
pub const CORS_FILTER: &str = "envoy.filters.http.cors";
/// The fault filter; routes carry their `HTTPFault` under this name.
pub const FAULT_FILTER: &str = "envoy.filters.http.fault";

/// Name of the native route configuration.
pub const ROUTE_CONFIG_NAME: &str = "layover-native";

/// Name of the last route of each virtual host: the 404 for a request no route matched.
pub const NO_ROUTE: &str = "no-route";

/// Why the native configuration could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum NativeError {
    /// The policy is one the core refuses (message names service, route and field).
    #[error("invalid policy: {0}")]
    InvalidPolicy(#[from] layover_core::InvalidPolicy),
    /// The shared bootstrap generator refused the options or clusters.
    #[error(transparent)]
    Emit(#[from] EmitError),
    /// A CIDR the core accepted that this translation cannot split (not expected).
    #[error("AuthorizationPolicy {policy}: {field}: invalid CIDR {value:?}")]
    Cidr {
        /// `namespace/name` of the policy.
        policy: String,
        /// Path of the field.
        field: String,
        /// The value.
        value: String,
    },
}

/// The complete native bootstrap as text (YAML or JSON per `opts.format`).
pub fn native_bootstrap(
    policy: &Policy,
    endpoints: &[Endpoint],
    opts: &BootstrapOptions,
) -> Result<String, NativeError> {
    let value = native_bootstrap_value(policy, endpoints, opts)?;
    to_text(&value, opts.format)
}

/// Serializes a configuration value as YAML or JSON. YAML goes through [`crate::to_yaml`],
/// which quotes every string Envoy's YAML 1.1 reader would read as something else.
pub fn to_text(value: &Value, format: Format) -> Result<String, NativeError> {
    match format {
        Format::Json => serde_json::to_string_pretty(value)
            .map_err(|e| EmitError::Serialize(e.to_string()).into()),
        Format::Yaml => Ok(crate::to_yaml(value)),
    }
}

/// The complete native bootstrap: [`crate::bootstrap_value`] without the layover filter, with
/// the native route configuration and HTTP filters in the plain listener's and `main_internal`'s
/// connection managers. `opts.layover_filter` and `opts.cluster_selection` are ignored.
pub fn native_bootstrap_value(
    policy: &Policy,
    endpoints: &[Endpoint],
    opts: &BootstrapOptions,
) -> Result<Value, NativeError> {
    let route_config = route_configuration(policy)?;
    let mut chain = crate::jwt_authn::istiod_jwt_filter(policy)
        .into_iter()
        .collect::<Vec<_>>();
    chain.extend(http_filters());
    let filters = Value::Array(chain);
    let base = BootstrapOptions {
        layover_filter: None,
        cluster_selection: layover_contract::ClusterSelection::Header,
        ..opts.clone()
    };
    let mut out = bootstrap_value(policy, endpoints, &base)?;
    if let Some(listeners) = out
        .pointer_mut("/static_resources/listeners")
        .and_then(Value::as_array_mut)
    {
        for listener in listeners {
            let name = listener.get("name").and_then(Value::as_str).unwrap_or("");
            if name != LISTENER_NAME && name != MAIN_INTERNAL {
                continue;
            }
            let chains = listener
                .get_mut("filter_chains")
                .and_then(Value::as_array_mut);
            for chain in chains.into_iter().flatten() {
                let nf = chain.get_mut("filters").and_then(Value::as_array_mut);
                for filter in nf.into_iter().flatten() {
                    if filter.get("name").and_then(Value::as_str)
                        != Some("envoy.filters.network.http_connection_manager")
                    {
                        continue;
                    }
                    if let Some(hcm) = filter
                        .get_mut("typed_config")
                        .and_then(Value::as_object_mut)
                    {
                        hcm.insert("route_config".into(), route_config.clone());
                        hcm.insert("http_filters".into(), filters.clone());
                    }
                }
            }
        }
    }
    Ok(out)
}

/// What `layover compile --target envoy-native` prints: the route configuration, the HTTP
/// filter chain and the clusters istiod would push for this waypoint (endpoints from
/// `endpoints`).
pub fn native_config(
    policy: &Policy,
    endpoints: &[Endpoint],
    opts: &BootstrapOptions,
) -> Result<Value, NativeError> {
    let full = native_bootstrap_value(policy, endpoints, opts)?;
    let clusters = full
        .pointer("/static_resources/clusters")
        .cloned()
        .unwrap_or(Value::Array(Vec::new()));
    let mut filters: Vec<Value> = crate::jwt_authn::istiod_jwt_filter(policy)
        .into_iter()
        .collect();
    filters.extend(http_filters());
    Ok(json!({
        "route_config": route_configuration(policy)?,
        "http_filters": filters,
        "clusters": clusters,
    }))
}

/// The connection manager's HTTP filters, in istiod's order: RBAC AUDIT, DENY, ALLOW
/// (`pilot/pkg/security/authz/builder/builder.go:124-140 @ 1.30.3`), fault, CORS
/// (`pilot/pkg/networking/core/listener_builder.go:438`), router. Each filter's base configuration is a no-op; routes and virtual hosts carry
/// the real configuration in `typed_per_filter_config`.
pub fn http_filters() -> Vec<Value> {
    let rbac = |name: &str| {
        // No `rules`: the filter enforces nothing unless a virtual host says otherwise.
        json!({
            "name": name,
            "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC" },
        })
    };
    vec![
        rbac(RBAC_AUDIT_FILTER),
        rbac(RBAC_DENY_FILTER),
        rbac(RBAC_ALLOW_FILTER),
        json!({
            "name": FAULT_FILTER,
            "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault" },
        }),
        json!({
            "name": CORS_FILTER,
            "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors" },
        }),
        json!({
            "name": "envoy.filters.http.router",
            "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" },
        }),
    ]
}

/// The native route configuration: one virtual host per service port plus a port-less one per
/// service, routes in policy order, per-service RBAC on the virtual hosts.
pub fn route_configuration(policy: &Policy) -> Result<Value, NativeError> {
    // Refuse exactly what the filters refuse.
    CompiledPolicy::compile(policy)?;
    let default_retry = policy.mesh.as_ref().and_then(|m| m.default_retry.as_ref());
    let domains = service_domains(policy);
    let mut vhosts = Vec::new();
    for (si, svc) in policy.services.iter().enumerate() {
        let rbac = service_rbac(policy, svc)?;
        let aliases = domains.get(&si).cloned().unwrap_or_default();
        let mut ports: Vec<Option<u32>> = vec![None];
        ports.extend(svc.ports.iter().map(|p| Some(p.number)));
        for port in ports {
            let mut names: Vec<String> = Vec::new();
            for a in &aliases {
                let (plain, dotted) = match port {
                    None => (a.clone(), format!("{a}.")),
                    Some(p) => (format!("{a}:{p}"), format!("{a}.:{p}")),
                };
                names.push(plain);
                // Hosts ending in a dot name the same service (the core strips the dot); IP
                // literals have no such form.
                if !a.starts_with('[') && a.parse::<std::net::IpAddr>().is_err() {
                    names.push(dotted);
                }
            }
            if names.is_empty() {
                continue;
            }
            let vh_name = match port {
                None => svc.hostname.to_ascii_lowercase(),
                Some(p) => format!("{}:{p}", svc.hostname.to_ascii_lowercase()),
            };
            let mut vh = Map::new();
            vh.insert("name".into(), json!(vh_name));
            vh.insert("domains".into(), json!(names));
            vh.insert(
                "routes".into(),
                Value::Array(service_routes(svc, port, default_retry)),
            );
            if !rbac.is_empty() {
                vh.insert(
                    "typed_per_filter_config".into(),
                    Value::Object(rbac.clone()),
                );
            }
            vhosts.push(Value::Object(vh));
        }
    }
    Ok(json!({
        "name": ROUTE_CONFIG_NAME,
        // A destination whose subset or host is unknown names a cluster that does not exist:
        // requests picked for it get Envoy's 503, as istiod's config does.
        "validate_clusters": false,
        "virtual_hosts": vhosts,
    }))
}

/// Host aliases per service index (lower case, without port), each alias owned by one service:
/// the core's `service_for_authority` table (`by_authority` + `by_ip`).
fn service_domains(policy: &Policy) -> BTreeMap<usize, Vec<String>> {
    let mut owner: BTreeMap<String, usize> = BTreeMap::new();
    let mut order: Vec<(usize, String)> = Vec::new();
    let mut claim = |alias: String, si: usize, owner: &mut BTreeMap<String, usize>| {
        if let std::collections::btree_map::Entry::Vacant(e) = owner.entry(alias.clone()) {
            e.insert(si);
            order.push((si, alias));
        }
    };
    let mut short: BTreeMap<String, Option<usize>> = BTreeMap::new();
    for (si, s) in policy.services.iter().enumerate() {
        let host = s.hostname.to_ascii_lowercase();
        claim(host.clone(), si, &mut owner);
        let name = s.name.to_ascii_lowercase();
        let ns = s.namespace.to_ascii_lowercase();
        if !name.is_empty() && !ns.is_empty() && host.starts_with(&format!("{name}.{ns}.svc.")) {
            claim(format!("{name}.{ns}.svc"), si, &mut owner);
            claim(format!("{name}.{ns}"), si, &mut owner);
            short
                .entry(name)
                .and_modify(|v| *v = None)
                .or_insert(Some(si));
        }
    }
    for (name, si) in short {
        if let Some(si) = si {
            claim(name, si, &mut owner);
        }
    }
    for (si, s) in policy.services.iter().enumerate() {
        for a in &s.addresses {
            match a.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V6(v6)) => claim(format!("[{v6}]"), si, &mut owner),
                Ok(ip) => claim(ip.to_string(), si, &mut owner),
                Err(_) => {}
            }
        }
    }
    let mut out: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for (si, alias) in order {
        out.entry(si).or_default().push(alias);
    }
    out
}

/// The routes of one service's virtual host for `port` (`None`: the authority had no port).
pub(crate) fn service_routes(
    svc: &Service,
    port: Option<u32>,
    default_retry: Option<&RetryPolicy>,
) -> Vec<Value> {
    let source = RouteSource::try_from(svc.route_source).unwrap_or(RouteSource::Default);
    let mut out = Vec::new();
    if source == RouteSource::Default {
        // No VirtualService / HTTPRoute: the service itself, on the port the client asked for
        // (a port-less authority means the only port, when there is one).
        let sp = match port {
            Some(p) => svc.ports.iter().find(|sp| sp.number == p),
            None if svc.ports.len() == 1 => svc.ports.first(),
            None => None,
        };
        if let Some(sp) = sp {
            let mut action = Map::new();
            if sp.cluster.is_empty() {
                action.insert(
                    "cluster".into(),
                    json!(missing_cluster(&svc.hostname, sp.number, "")),
                );
            } else {
                action.insert("cluster".into(), json!(sp.cluster));
            }
            timeouts(&mut action, 0);
            // Before 1.30.3 the default route was an inbound route with its own retry policy
            // (ServicePort.default_route_retry); from 1.30.3 the mesh default applies.
            let retry = sp.default_route_retry.as_ref().or(default_retry);
            if let Some(rp) = retry.and_then(retry_policy) {
                action.insert("retry_policy".into(), rp);
            }
            out.push(json!({
                "name": "default",
                "match": { "prefix": "/" },
                "route": Value::Object(action),
            }));
            return out;
        }
    } else {
        let gateway = source == RouteSource::HttpRoute;
        for (ri, r) in svc.routes.iter().enumerate() {
            let matches: Vec<Option<&wire::RouteMatch>> = if r.matches.is_empty() {
                vec![None]
            } else {
                r.matches.iter().map(Some).collect()
            };
            for (mi, m) in matches.into_iter().enumerate() {
                // A match on another port belongs to that port's virtual host only.
                if let Some(m) = m {
                    if m.port != 0 && Some(m.port) != port {
                        continue;
                    }
                }
                out.push(route_json(r, ri, mi, m, gateway, default_retry));
            }
        }
    }
    // Nothing matched: 404, as Envoy answers without a route, but still inside the virtual
    // host so the service's AuthorizationPolicies run first (Istio's waypoint enforces them
    // on the whole service, matched route or not).
    out.push(json!({
        "name": NO_ROUTE,
        "match": { "prefix": "/" },
        "direct_response": { "status": 404 },
    }));
    out
}

/// Name for a destination the policy marks unavailable and gives no cluster: a cluster that
/// does not exist, so Envoy answers 503 as for any missing cluster.
fn missing_cluster(host: &str, port: u32, subset: &str) -> String {
    format!("outbound|{port}|{subset}|{host}")
}

/// `timeout` and `max_grpc_timeout` as istiod writes them for an HTTP route (istio/istio
/// `pilot/pkg/networking/core/route/route.go` `setTimeout`: `timeout` from the route, 0s = none;
/// the deprecated `max_grpc_timeout` set to the same value, "as the replacement
/// MaxStreamDuration has some regressions" — with `max_stream_duration` present Envoy's router
/// stops applying the route `timeout`, which the integration suite caught).
fn timeouts(action: &mut Map<String, Value>, timeout_ms: u64) {
    let d = millis(timeout_ms);
    action.insert("timeout".into(), json!(d));
    action.insert("max_grpc_timeout".into(), json!(d));
}

fn millis(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{}.{:03}s", ms / 1000, ms % 1000)
    }
}

/// One Envoy route for match `mi` of policy route `ri`.
fn route_json(
    r: &HttpRoute,
    ri: usize,
    mi: usize,
    m: Option<&wire::RouteMatch>,
    gateway: bool,
    default_retry: Option<&RetryPolicy>,
) -> Value {
    let mut route = Map::new();
    route.insert("name".into(), json!(route_name(r, ri, mi, m)));
    route.insert("match".into(), route_match(m, gateway));

    let per_filter = route_filter_configs(r);

    // Route-level response operations apply to the replies the proxy generates too.
    let (rsp_add, rsp_remove) = header_ops(r.response_headers.as_ref());

    match &r.action {
        Some(WA::Forward(fw)) => {
            let rsp = (rsp_add, rsp_remove);
            forward_route(&mut route, r, fw, m, gateway, default_retry, rsp);
        }
        Some(WA::Redirect(rd)) => {
            route.insert("redirect".into(), redirect_json(rd));
            finish_headers(&mut route, Vec::new(), Vec::new(), rsp_add, rsp_remove);
        }
        Some(WA::DirectResponse(dr)) => {
            route.insert("direct_response".into(), direct_response_json(dr));
            finish_headers(&mut route, Vec::new(), Vec::new(), rsp_add, rsp_remove);
        }
        // The core refuses a route without action before we get here.
        None => {
            route.insert("direct_response".into(), json!({ "status": 500 }));
        }
    }
    if !per_filter.is_empty() {
        route.insert("typed_per_filter_config".into(), Value::Object(per_filter));
    }
    Value::Object(route)
}

/// The Envoy route name: where the route came from, its index, and the match index when the
/// route has matches.
fn route_name(r: &HttpRoute, ri: usize, mi: usize, m: Option<&wire::RouteMatch>) -> String {
    let origin = r.origin.clone().unwrap_or_default();
    let mut name = format!("{} {}/{}[{ri}]", origin.kind, origin.namespace, origin.name);
    if !origin.element_name.is_empty() {
        name.push_str(&format!(" {}", origin.element_name));
    }
    if m.is_some() {
        name.push_str(&format!(" match[{mi}]"));
    }
    name
}

/// The route's `typed_per_filter_config`: its fault injection and CORS policy.
fn route_filter_configs(r: &HttpRoute) -> Map<String, Value> {
    let mut per_filter = Map::new();
    if let Some(f) = &r.fault {
        if let Some(cfg) = fault_json(f) {
            per_filter.insert(FAULT_FILTER.into(), cfg);
        }
    }
    if let Some(c) = &r.cors {
        per_filter.insert(CORS_FILTER.into(), cors_json(c));
    }
    per_filter
}

/// The `route` action of a forwarding route and the route's header operations; `rsp` holds the
/// route-level response operations.
fn forward_route(
    route: &mut Map<String, Value>,
    r: &HttpRoute,
    fw: &wire::Forward,
    m: Option<&wire::RouteMatch>,
    gateway: bool,
    default_retry: Option<&RetryPolicy>,
    rsp: (Vec<Value>, Vec<String>),
) {
    let (mut rsp_add, mut rsp_remove) = rsp;
    let single = fw.destinations.len() == 1;
    let kept: Vec<&wire::Destination> = if single {
        fw.destinations.iter().collect()
    } else {
        fw.destinations.iter().filter(|d| d.weight > 0).collect()
    };
    let (mut req_add, mut req_remove) = header_ops(r.request_headers.as_ref());
    let mut action = Map::new();
    if gateway {
        // Gateway API: a backend that cannot be served answers 500, not 503 (istiod's
        // `cluster_not_found_response_code` for HTTPRoute routes; the core's
        // `unavailable_status`).
        action.insert(
            "cluster_not_found_response_code".into(),
            json!("INTERNAL_SERVER_ERROR"),
        );
    }
    if let [d] = kept.as_slice() {
        action.insert("cluster".into(), json!(dest_cluster(d)));
        // istiod merges a single destination's operations into the route's lists.
        let (da, dr) = header_ops(d.request_headers.as_ref());
        req_add.extend(da);
        req_remove.extend(dr);
        let (da, dr) = header_ops(d.response_headers.as_ref());
        rsp_add.extend(da);
        rsp_remove.extend(dr);
    } else {
        action.insert("weighted_clusters".into(), weighted_clusters_json(&kept));
    }
    timeouts(&mut action, r.timeout_ms);
    let retry = r.retries.as_ref().or(default_retry);
    if let Some(rp) = retry.and_then(retry_policy) {
        action.insert("retry_policy".into(), rp);
    }
    if !r.mirrors.is_empty() {
        action.insert(
            "request_mirror_policies".into(),
            mirror_policies_json(&r.mirrors),
        );
    }
    if let Some(rw) = &r.rewrite {
        rewrite_json(&mut action, rw, m, gateway);
    }
    route.insert("route".into(), Value::Object(action));
    finish_headers(route, req_add, req_remove, rsp_add, rsp_remove);
}

/// `weighted_clusters` for several destinations, each with its own header operations.
fn weighted_clusters_json(kept: &[&wire::Destination]) -> Value {
    let clusters: Vec<Value> = kept
        .iter()
        .map(|d| {
            let mut c = Map::new();
            c.insert("name".into(), json!(dest_cluster(d)));
            c.insert("weight".into(), json!(d.weight));
            let (qa, qr) = header_ops(d.request_headers.as_ref());
            let (sa, sr) = header_ops(d.response_headers.as_ref());
            let mut cv = Value::Object(c);
            if let Some(obj) = cv.as_object_mut() {
                finish_headers(obj, qa, qr, sa, sr);
            }
            cv
        })
        .collect();
    json!({ "clusters": clusters })
}

/// `request_mirror_policies` for the route's mirrors.
fn mirror_policies_json(mirrors: &[wire::Mirror]) -> Value {
    let mirrors: Vec<Value> = mirrors
        .iter()
        .map(|mr| {
            json!({
                "cluster": mr.cluster,
                "runtime_fraction": { "default_value": fraction(mr.percentage) },
                "trace_sampled": false,
            })
        })
        .collect();
    Value::Array(mirrors)
}

/// A `direct_response` action: the status and the body (inline string when UTF-8, bytes
/// otherwise).
fn direct_response_json(dr: &wire::DirectResponse) -> Value {
    let mut d = Map::new();
    d.insert("status".into(), json!(dr.status));
    if !dr.body.is_empty() {
        let body = match std::str::from_utf8(&dr.body) {
            Ok(s) => json!({ "inline_string": s }),
            Err(_) => json!({ "inline_bytes": base64(&dr.body) }),
        };
        d.insert("body".into(), body);
    }
    Value::Object(d)
}

fn dest_cluster(d: &wire::Destination) -> String {
    if d.cluster.is_empty() {
        missing_cluster(&d.host, d.port, &d.subset)
    } else {
        d.cluster.clone()
    }
}

/// Envoy `RouteMatch` for one policy match (`TranslateRouteMatch`).
fn route_match(m: Option<&wire::RouteMatch>, gateway: bool) -> Value {
    let mut out = Map::new();
    let Some(m) = m else {
        out.insert("prefix".into(), json!("/"));
        return Value::Object(out);
    };
    match m.uri.as_ref().and_then(|u| u.kind.as_ref()) {
        None => {
            out.insert("prefix".into(), json!("/"));
        }
        Some(Kind::Exact(e)) => {
            out.insert("path".into(), json!(e));
        }
        Some(Kind::Prefix(p)) if gateway && p != "/" => {
            out.insert(
                "path_separated_prefix".into(),
                json!(p.strip_suffix('/').unwrap_or(p)),
            );
        }
        Some(Kind::Prefix(p)) => {
            out.insert("prefix".into(), json!(p));
        }
        Some(Kind::Regex(r)) => {
            out.insert("safe_regex".into(), json!({ "regex": r }));
        }
    }
    if m.ignore_uri_case {
        out.insert("case_sensitive".into(), json!(false));
    }
    let mut headers = Vec::new();
    for (pseudo, sm) in [
        (":scheme", m.scheme.as_ref()),
        (":method", m.method.as_ref()),
        (":authority", m.authority.as_ref()),
    ] {
        if let Some(sm) = sm {
            headers.push(header_matcher(pseudo, Some(sm), false));
        }
    }
    for h in &m.headers {
        headers.push(header_matcher(
            &h.name.to_ascii_lowercase(),
            h.value.as_ref(),
            false,
        ));
    }
    for h in &m.without_headers {
        headers.push(header_matcher(
            &h.name.to_ascii_lowercase(),
            h.value.as_ref(),
            true,
        ));
    }
    if !headers.is_empty() {
        out.insert("headers".into(), Value::Array(headers));
    }
    if !m.query_params.is_empty() {
        let qs: Vec<Value> = m
            .query_params
            .iter()
            .map(|q| match value_matcher(q.value.as_ref()) {
                Some(sm) => json!({ "name": q.name, "string_match": sm }),
                None => json!({ "name": q.name, "present_match": true }),
            })
            .collect();
        out.insert("query_parameters".into(), Value::Array(qs));
    }
    Value::Object(out)
}

/// A `StringMatcher` for a route value match, `None` for a presence match (no value, or the
/// regex `*`, which istiod turns into `present_match`).
fn value_matcher(sm: Option<&wire::StringMatch>) -> Option<Value> {
    match sm.and_then(|s| s.kind.as_ref())? {
        Kind::Exact(e) => Some(json!({ "exact": e })),
        Kind::Prefix(p) => Some(json!({ "prefix": p })),
        Kind::Regex(r) if r == "*" => None,
        Kind::Regex(r) => Some(json!({ "safe_regex": { "regex": r } })),
    }
}

/// Route header matcher; `invert` is `withoutHeaders` (istiod: `invert_match`, plus
/// `treat_missing_header_as_empty` unless it is a presence match).
fn header_matcher(name: &str, sm: Option<&wire::StringMatch>, invert: bool) -> Value {
    let mut h = Map::new();
    h.insert("name".into(), json!(name));
    match value_matcher(sm) {
        Some(v) => {
            h.insert("string_match".into(), v);
            if invert {
                h.insert("treat_missing_header_as_empty".into(), json!(true));
            }
        }
        None => {
            h.insert("present_match".into(), json!(true));
        }
    }
    if invert {
        h.insert("invert_match".into(), json!(true));
    }
    Value::Object(h)
}

/// (`*_headers_to_add` entries, `*_headers_to_remove` names) of one operation set, sets before
/// adds as istiod emits them.
fn header_ops(h: Option<&HeaderOperations>) -> (Vec<Value>, Vec<String>) {
    let Some(h) = h else {
        return (Vec::new(), Vec::new());
    };
    let mut add: Vec<Value> = h
        .set
        .iter()
        .map(|v| {
            json!({
                "header": { "key": v.name, "value": v.value },
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            })
        })
        .collect();
    add.extend(h.add.iter().map(|v| {
        json!({
            "header": { "key": v.name, "value": v.value },
            "append_action": "APPEND_IF_EXISTS_OR_ADD",
        })
    }));
    (add, h.remove.clone())
}

fn finish_headers(
    obj: &mut Map<String, Value>,
    req_add: Vec<Value>,
    req_remove: Vec<String>,
    rsp_add: Vec<Value>,
    rsp_remove: Vec<String>,
) {
    if !req_add.is_empty() {
        obj.insert("request_headers_to_add".into(), Value::Array(req_add));
    }
    if !req_remove.is_empty() {
        obj.insert("request_headers_to_remove".into(), json!(req_remove));
    }
    if !rsp_add.is_empty() {
        obj.insert("response_headers_to_add".into(), Value::Array(rsp_add));
    }
    if !rsp_remove.is_empty() {
        obj.insert("response_headers_to_remove".into(), json!(rsp_remove));
    }
}

/// Envoy `RetryPolicy` (istio/istio `pilot/pkg/networking/core/route/retry/retry.go`
/// `ConvertPolicy`); `None` when retries are disabled (0 attempts).
fn retry_policy(p: &RetryPolicy) -> Option<Value> {
    if p.attempts == 0 {
        return None;
    }
    let mut out = Map::new();
    out.insert("retry_on".into(), json!(p.retry_on.join(",")));
    out.insert("num_retries".into(), json!(p.attempts));
    if p.per_try_timeout_ms > 0 {
        out.insert(
            "per_try_timeout".into(),
            json!(millis(p.per_try_timeout_ms)),
        );
    }
    if !p.retriable_status_codes.is_empty() {
        out.insert(
            "retriable_status_codes".into(),
            json!(p.retriable_status_codes),
        );
    }
    if !p.retry_host_predicates.is_empty() {
        let preds: Vec<Value> = p
            .retry_host_predicates
            .iter()
            .map(|name| {
                let ty = match name.as_str() {
                    "envoy.retry_host_predicates.previous_hosts" => "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate",
                    "envoy.retry_host_predicates.omit_canary_hosts" => "type.googleapis.com/envoy.extensions.retry.host.omit_canary_hosts.v3.OmitCanaryHostsPredicate",
                    _ => "type.googleapis.com/envoy.extensions.retry.host.omit_host_metadata.v3.OmitHostMetadataConfig",
                };
                json!({ "name": name, "typed_config": { "@type": ty } })
            })
            .collect();
        out.insert("retry_host_predicate".into(), Value::Array(preds));
    }
    if p.host_selection_retry_max_attempts > 0 {
        out.insert(
            "host_selection_retry_max_attempts".into(),
            json!(p.host_selection_retry_max_attempts),
        );
    }
    if p.retry_remote_localities {
        out.insert(
            "retry_priority".into(),
            json!({
                "name": "envoy.retry_priorities.previous_priorities",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig",
                    "update_frequency": 2,
                },
            }),
        );
    }
    Some(Value::Object(out))
}

/// A percentage 0..=100 as istiod's `translatePercentToFractionalPercent`: per million.
fn fraction(pct: f64) -> Value {
    let n = (pct * 10_000.0).round().clamp(0.0, 1_000_000.0) as u64;
    json!({ "numerator": n, "denominator": "MILLION" })
}

/// Per-route `HTTPFault` (`TranslateFault`); `None` when it would do nothing.
fn fault_json(f: &wire::FaultInjection) -> Option<Value> {
    let mut out = Map::new();
    out.insert(
        "@type".into(),
        json!("type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"),
    );
    if let Some(d) = f.delay.as_ref().filter(|d| d.fixed_delay_ms > 0) {
        out.insert(
            "delay".into(),
            json!({ "fixed_delay": millis(d.fixed_delay_ms), "percentage": fraction(d.percentage) }),
        );
    }
    if let Some(a) = &f.abort {
        let mut abort = Map::new();
        if a.http_status == 0 && a.grpc_status != 0 {
            abort.insert("grpc_status".into(), json!(a.grpc_status));
        } else {
            abort.insert("http_status".into(), json!(a.http_status));
        }
        abort.insert("percentage".into(), fraction(a.percentage));
        out.insert("abort".into(), Value::Object(abort));
    }
    (out.len() > 1).then_some(Value::Object(out))
}

/// Per-route `CorsPolicy` (`TranslateCORSPolicy`).
fn cors_json(c: &wire::CorsPolicy) -> Value {
    let mut out = Map::new();
    out.insert(
        "@type".into(),
        json!("type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy"),
    );
    let origins: Vec<Value> = c
        .allow_origins
        .iter()
        .filter_map(|o| value_matcher_strict(Some(o)))
        .collect();
    out.insert("allow_origin_string_match".into(), Value::Array(origins));
    if !c.allow_methods.is_empty() {
        out.insert("allow_methods".into(), json!(c.allow_methods.join(",")));
    }
    if !c.allow_headers.is_empty() {
        out.insert("allow_headers".into(), json!(c.allow_headers.join(",")));
    }
    if !c.expose_headers.is_empty() {
        out.insert("expose_headers".into(), json!(c.expose_headers.join(",")));
    }
    if c.max_age_seconds > 0 {
        out.insert("max_age".into(), json!(c.max_age_seconds.to_string()));
    }
    match wire::OptionalBool::try_from(c.allow_credentials) {
        Ok(wire::OptionalBool::True) => {
            out.insert("allow_credentials".into(), json!(true));
        }
        Ok(wire::OptionalBool::False) => {
            out.insert("allow_credentials".into(), json!(false));
        }
        _ => {}
    }
    // Envoy forwards unmatched preflights unless told otherwise; the policy says which.
    out.insert(
        "forward_not_matching_preflights".into(),
        json!(c.unmatched_preflights_forward),
    );
    Value::Object(out)
}

/// Like [`value_matcher`] but a regex `*` stays a regex (CORS origins are never presence
/// matches).
fn value_matcher_strict(sm: Option<&wire::StringMatch>) -> Option<Value> {
    match sm.and_then(|s| s.kind.as_ref())? {
        Kind::Exact(e) => Some(json!({ "exact": e })),
        Kind::Prefix(p) => Some(json!({ "prefix": p })),
        Kind::Regex(r) => Some(json!({ "safe_regex": { "regex": r } })),
    }
}

/// Rewrites on a forwarding route action (`route.go` rewrite handling).
fn rewrite_json(
    action: &mut Map<String, Value>,
    rw: &wire::Rewrite,
    m: Option<&wire::RouteMatch>,
    gateway: bool,
) {
    if let Some(rx) = rw.uri_regex.as_ref().filter(|x| !x.pattern.is_empty()) {
        action.insert(
            "regex_rewrite".into(),
            json!({ "pattern": { "regex": rx.pattern }, "substitution": rx.substitution }),
        );
    } else if rw.has_full_path {
        // Gateway API ReplaceFullPath: the whole path (query kept).
        action.insert(
            "regex_rewrite".into(),
            json!({ "pattern": { "regex": "^/.*$" }, "substitution": rw.full_path }),
        );
    } else if rw.has_uri && !rw.uri.is_empty() {
        let separated = m
            .and_then(|m| m.uri.as_ref())
            .and_then(|u| u.kind.as_ref())
            .and_then(|k| match k {
                Kind::Prefix(p) if gateway && p != "/" => {
                    Some(p.strip_suffix('/').unwrap_or(p).to_string())
                }
                _ => None,
            });
        match separated {
            // Gateway API `ReplacePrefixMatch: /`: istiod rewrites with a regex so no double
            // slash appears.
            Some(prefix) if gateway && rw.uri == "/" => {
                action.insert(
                    "regex_rewrite".into(),
                    json!({
                        "pattern": { "regex": format!("^{}(/?)(.*)", regex_escape(&prefix)) },
                        "substitution": "/\\2",
                    }),
                );
            }
            _ => {
                action.insert("prefix_rewrite".into(), json!(rw.uri));
            }
        }
    }
    if !rw.authority.is_empty() {
        action.insert("host_rewrite_literal".into(), json!(rw.authority));
    }
}

/// Route `redirect` (istiod `ApplyRedirect`).
fn redirect_json(rd: &wire::Redirect) -> Value {
    let mut out = Map::new();
    if !rd.uri.is_empty() {
        if rd.replace_prefix {
            out.insert("prefix_rewrite".into(), json!(rd.uri));
        } else {
            out.insert("path_redirect".into(), json!(rd.uri));
        }
    }
    if !rd.authority.is_empty() {
        out.insert("host_redirect".into(), json!(rd.authority));
    }
    let scheme = (!rd.scheme.is_empty()).then_some(rd.scheme.as_str());
    if let Some(s) = scheme {
        out.insert("scheme_redirect".into(), json!(s));
    }
    // An explicit :80 with http (or :443 with https) is dropped; the listener is plaintext, so
    // an unset scheme counts as http.
    let eff = scheme.unwrap_or("http");
    let mut port = if rd.port_from_scheme { 0 } else { rd.port };
    if (port == 80 && eff == "http") || (port == 443 && eff == "https") {
        port = 0;
    }
    if port != 0 {
        out.insert("port_redirect".into(), json!(port));
    }
    let code = match rd.status {
        302 => "FOUND",
        303 => "SEE_OTHER",
        307 => "TEMPORARY_REDIRECT",
        308 => "PERMANENT_REDIRECT",
        _ => "MOVED_PERMANENTLY",
    };
    out.insert("response_code".into(), json!(code));
    Value::Object(out)
}

fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// AuthorizationPolicy → RBAC
// ---------------------------------------------------------------------------------------------

/// The RBAC policies of one action for one service.
#[derive(Default)]
struct RbacGroup {
    /// Enforced policies, by RBAC policy name.
    enforced: Map<String, Value>,
    /// `istio.io/dry-run` policies (`shadow_rules`).
    shadow: Map<String, Value>,
    /// At least one enforced policy is bound (even one without rules).
    has_enforced: bool,
}

/// The `typed_per_filter_config` of a service's virtual hosts: one `RBACPerRoute` per action the
/// service's bound policies use.
pub(crate) fn service_rbac(
    policy: &Policy,
    svc: &Service,
) -> Result<Map<String, Value>, NativeError> {
    let mut groups: BTreeMap<&str, RbacGroup> = BTreeMap::new();
    for &i in &svc.authorization_policies {
        let Some(p) = policy.authorization_policies.get(i as usize) else {
            continue;
        };
        let action = AuthorizationAction::try_from(p.action).unwrap_or(AuthorizationAction::Allow);
        let filter = match action {
            AuthorizationAction::Deny => RBAC_DENY_FILTER,
            AuthorizationAction::Allow => RBAC_ALLOW_FILTER,
            AuthorizationAction::Audit => RBAC_AUDIT_FILTER,
        };
        let entry = groups.entry(filter).or_default();
        let policies = rbac_policies(p)?;
        if p.dry_run {
            entry.shadow.extend(policies);
        } else {
            entry.enforced.extend(policies);
            // An ALLOW policy without rules still makes the ALLOW filter enforce (deny all).
            entry.has_enforced = true;
        }
    }
    let mut out = Map::new();
    for (
        filter,
        RbacGroup {
            enforced,
            shadow,
            has_enforced,
        },
    ) in groups
    {
        let action = match filter {
            RBAC_DENY_FILTER => "DENY",
            RBAC_ALLOW_FILTER => "ALLOW",
            _ => "LOG",
        };
        let mut rbac = Map::new();
        if has_enforced {
            rbac.insert(
                "rules".into(),
                json!({ "action": action, "policies": enforced }),
            );
        }
        if !shadow.is_empty() {
            rbac.insert(
                "shadow_rules".into(),
                json!({ "action": action, "policies": shadow }),
            );
            rbac.insert(
                "shadow_rules_stat_prefix".into(),
                json!(format!("istio_dry_run_{}_", action.to_ascii_lowercase())),
            );
        }
        out.insert(
            filter.into(),
            json!({
                "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute",
                "rbac": Value::Object(rbac),
            }),
        );
    }
    Ok(out)
}

/// One RBAC policy per rule, named as istiod names them (`ns[..]-policy[..]-rule[i]`).
fn rbac_policies(p: &AuthorizationPolicy) -> Result<Map<String, Value>, NativeError> {
    let origin = p.origin.clone().unwrap_or_default();
    let label = format!("{}/{}", origin.namespace, origin.name);
    let mut out = Map::new();
    for (ri, rule) in p.rules.iter().enumerate() {
        let cx = Cx {
            policy: &label,
            namespace: &origin.namespace,
            at: format!("rules[{ri}]"),
        };
        let mut perms: Vec<Value> = Vec::new();
        let mut ids: Vec<Value> = Vec::new();
        // from[]: alternatives of sources.
        if !rule.from.is_empty() {
            let alts = rule
                .from
                .iter()
                .enumerate()
                .map(|(fi, s)| source_ids(&cx, fi, s))
                .collect::<Result<Vec<_>, _>>()?;
            ids.push(json!({ "or_ids": { "ids": alts } }));
        }
        if !rule.to.is_empty() {
            let alts: Vec<Value> = rule.to.iter().map(operation_rules).collect();
            perms.push(json!({ "or_rules": { "rules": alts } }));
        }
        for (wi, c) in rule.when.iter().enumerate() {
            condition(&cx, wi, c, &mut perms, &mut ids)?;
        }
        let permission = if perms.is_empty() {
            json!({ "any": true })
        } else {
            json!({ "and_rules": { "rules": perms } })
        };
        let principal = if ids.is_empty() {
            json!({ "any": true })
        } else {
            json!({ "and_ids": { "ids": ids } })
        };
        out.insert(
            format!(
                "ns[{}]-policy[{}]-rule[{ri}]",
                origin.namespace, origin.name
            ),
            json!({ "permissions": [permission], "principals": [principal] }),
        );
    }
    Ok(out)
}

struct Cx<'a> {
    policy: &'a str,
    namespace: &'a str,
    at: String,
}

fn or_ids(ids: Vec<Value>, negate: bool) -> Value {
    let any = json!({ "or_ids": { "ids": ids } });
    if negate {
        json!({ "not_id": any })
    } else {
        any
    }
}

fn or_rules(rules: Vec<Value>, negate: bool) -> Value {
    let any = json!({ "or_rules": { "rules": rules } });
    if negate {
        json!({ "not_rule": any })
    } else {
        any
    }
}

/// A principal-name matcher against both places the peer identity can be: the mTLS peer
/// certificate (`authenticated`) and the HBONE peer recorded by `connect_terminate`.
fn identity(sm: Value) -> Vec<Value> {
    vec![
        json!({ "authenticated": { "principal_name": sm.clone() } }),
        json!({ "filter_state": { "key": PEER_PRINCIPAL, "string_match": sm } }),
    ]
}

/// `principals` values: `StringMatcherWithPrefix(v, "spiffe://")` (istio/istio
/// `pilot/pkg/security/authz/matcher/string.go`).
fn principal_ids(values: &[String]) -> Vec<Value> {
    values
        .iter()
        .flat_map(|v| {
            let sm = if v == "*" {
                json!({ "safe_regex": { "regex": ".+" } })
            } else if let Some(s) = v.strip_prefix('*') {
                json!({ "safe_regex": { "regex": format!("spiffe://.*{s}") } })
            } else if let Some(p) = v.strip_suffix('*') {
                json!({ "prefix": format!("spiffe://{p}") })
            } else {
                json!({ "exact": format!("spiffe://{v}") })
            };
            identity(sm)
        })
        .collect()
}

/// `namespaces` values: the regex `.*/ns/<ns>/.*` on the principal (`model/principal.go`).
fn namespace_ids(values: &[String]) -> Vec<Value> {
    values
        .iter()
        .flat_map(|v| {
            let re = format!(".*/ns/{}/.*", v.replace('*', ".*"));
            identity(json!({ "safe_regex": { "regex": re } }))
        })
        .collect()
}

fn cidr_json(cx: &Cx<'_>, field: &str, v: &str) -> Result<Value, NativeError> {
    let bad = || NativeError::Cidr {
        policy: cx.policy.to_string(),
        field: field.to_string(),
        value: v.to_string(),
    };
    let (addr, len) = match v.split_once('/') {
        Some((a, l)) => (a, Some(l.parse::<u32>().map_err(|_| bad())?)),
        None => (v, None),
    };
    let ip: std::net::IpAddr = addr.parse().map_err(|_| bad())?;
    let len = len.unwrap_or(if ip.is_ipv4() { 32 } else { 128 });
    Ok(json!({ "address_prefix": ip.to_string(), "prefix_len": len }))
}

fn cidrs(
    cx: &Cx<'_>,
    field: &str,
    key: &str,
    values: &[String],
) -> Result<Vec<Value>, NativeError> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            cidr_json(cx, &format!("{field}[{i}]"), v).map(|c| {
                let mut m = Map::new();
                m.insert(key.into(), c);
                Value::Object(m)
            })
        })
        .collect()
}

/// Istio's `*`/prefix/suffix string value as an Envoy `StringMatcher`.
fn istio_string(v: &str, ignore_case: bool) -> Value {
    let mut m = if v == "*" {
        // Non-empty.
        json!({ "safe_regex": { "regex": ".+" } })
    } else if let Some(s) = v.strip_prefix('*') {
        json!({ "suffix": s })
    } else if let Some(p) = v.strip_suffix('*') {
        json!({ "prefix": p })
    } else {
        json!({ "exact": v })
    };
    if ignore_case {
        if let Some(o) = m.as_object_mut() {
            o.insert("ignore_case".into(), json!(true));
        }
    }
    m
}

/// A header matcher for an Istio header value (`*` = present), as `model/permission.go` emits
/// for `methods`, `hosts` and `request.headers` (the value Envoy sees is all values joined by
/// `,`).
fn istio_header(name: &str, v: &str, ignore_case: bool) -> Value {
    if v == "*" {
        json!({ "header": { "name": name, "present_match": true } })
    } else {
        json!({ "header": { "name": name, "string_match": istio_string(v, ignore_case) } })
    }
}

/// `request.experimental.inline.headers`: any one comma-separated element matches (istiod
/// builds the alternation regex below).
fn inline_header(name: &str, v: &str) -> Value {
    if v == "*" {
        return json!({ "header": { "name": name, "present_match": true } });
    }
    let core = if let Some(s) = v.strip_prefix('*') {
        format!(".*{}", regex_escape(s))
    } else if let Some(p) = v.strip_suffix('*') {
        format!("{}.*", regex_escape(p))
    } else {
        regex_escape(v)
    };
    let re = format!("^{core}$|^{core},.*|.*,{core},.*|.*,{core}$");
    json!({ "header": { "name": name, "safe_regex_match": { "regex": re } } })
}

fn source_ids(cx: &Cx<'_>, fi: usize, s: &wire::Source) -> Result<Value, NativeError> {
    let at = format!("{}.from[{fi}].source", cx.at);
    let mut ids = Vec::new();
    for (vals, neg) in [(&s.principals, false), (&s.not_principals, true)] {
        if !vals.is_empty() {
            ids.push(or_ids(principal_ids(vals), neg));
        }
    }
    for (vals, neg) in [(&s.namespaces, false), (&s.not_namespaces, true)] {
        if !vals.is_empty() {
            ids.push(or_ids(namespace_ids(vals), neg));
        }
    }
    for (vals, neg) in [
        (&s.request_principals, false),
        (&s.not_request_principals, true),
    ] {
        if !vals.is_empty() {
            ids.push(or_ids(
                vals.iter().map(|v| jwt::principal_id(v)).collect(),
                neg,
            ));
        }
    }
    for (vals, neg, f) in [
        (&s.ip_blocks, false, "ipBlocks"),
        (&s.not_ip_blocks, true, "notIpBlocks"),
    ] {
        if !vals.is_empty() {
            ids.push(or_ids(
                cidrs(cx, &format!("{at}.{f}"), "direct_remote_ip", vals)?,
                neg,
            ));
        }
    }
    for (vals, neg, f) in [
        (&s.remote_ip_blocks, false, "remoteIpBlocks"),
        (&s.not_remote_ip_blocks, true, "notRemoteIpBlocks"),
    ] {
        if !vals.is_empty() {
            ids.push(or_ids(
                cidrs(cx, &format!("{at}.{f}"), "remote_ip", vals)?,
                neg,
            ));
        }
    }
    Ok(if ids.is_empty() {
        json!({ "any": true })
    } else {
        json!({ "and_ids": { "ids": ids } })
    })
}

/// `ports` / `destination.port`: the service port the client asked for, i.e. the port of the
/// `:authority` (see the module docs: on the plain listener `destination_port` would be the
/// listener's own port).
fn port_rule(port: &str) -> Value {
    json!({ "header": { "name": ":authority", "string_match": { "suffix": format!(":{port}") } } })
}

fn operation_rules(o: &wire::Operation) -> Value {
    let mut rules = Vec::new();
    for (vals, neg) in [(&o.hosts, false), (&o.not_hosts, true)] {
        if !vals.is_empty() {
            let r = vals
                .iter()
                .map(|v| istio_header(":authority", v, true))
                .collect();
            rules.push(or_rules(r, neg));
        }
    }
    for (vals, neg) in [(&o.ports, false), (&o.not_ports, true)] {
        if !vals.is_empty() {
            let r = vals.iter().map(|p| port_rule(&p.to_string())).collect();
            rules.push(or_rules(r, neg));
        }
    }
    for (vals, neg) in [(&o.methods, false), (&o.not_methods, true)] {
        if !vals.is_empty() {
            let r = vals
                .iter()
                .map(|v| istio_header(":method", v, false))
                .collect();
            rules.push(or_rules(r, neg));
        }
    }
    for (vals, neg) in [(&o.paths, false), (&o.not_paths, true)] {
        if !vals.is_empty() {
            let r = vals.iter().map(|v| path_rule(v)).collect();
            rules.push(or_rules(r, neg));
        }
    }
    if rules.is_empty() {
        json!({ "any": true })
    } else {
        json!({ "and_rules": { "rules": rules } })
    }
}

/// `paths`: `url_path` (path without query, case-sensitive), templates with `{*}` / `{**}` as
/// `uri_template` (`model/permission.go`).
fn path_rule(v: &str) -> Value {
    if v.contains("{*}") || v.contains("{**}") {
        return json!({
            "uri_template": {
                "name": "uri-template",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig",
                    "path_template": v,
                },
            },
        });
    }
    json!({ "url_path": { "path": istio_string(v, false) } })
}

fn condition(
    cx: &Cx<'_>,
    wi: usize,
    c: &wire::Condition,
    perms: &mut Vec<Value>,
    ids: &mut Vec<Value>,
) -> Result<(), NativeError> {
    let at = format!("{}.when[{wi}]", cx.at);
    let key = c.key.as_str();
    let header_name = |prefix: &str| -> Option<String> {
        key.strip_prefix(prefix)?
            .strip_prefix('[')?
            .strip_suffix(']')
            .map(str::to_ascii_lowercase)
    };
    for (vals, neg, f) in [
        (&c.values, false, "values"),
        (&c.not_values, true, "notValues"),
    ] {
        if vals.is_empty() {
            continue;
        }
        let field = format!("{at}.{f}");
        match key {
            "source.ip" => ids.push(or_ids(cidrs(cx, &field, "direct_remote_ip", vals)?, neg)),
            "remote.ip" => ids.push(or_ids(cidrs(cx, &field, "remote_ip", vals)?, neg)),
            "source.namespace" => ids.push(or_ids(namespace_ids(vals), neg)),
            "source.principal" => ids.push(or_ids(principal_ids(vals), neg)),
            "source.serviceAccount" => {
                let alts = vals
                    .iter()
                    .flat_map(|v| {
                        let (ns, sa) = v.split_once('/').unwrap_or((cx.namespace, v));
                        identity(json!({ "safe_regex": {
                            "regex": format!("(?:.*/)?ns/{ns}/(?:.+/|)sa/{sa}(?:/.+)?"),
                        } }))
                    })
                    .collect();
                ids.push(or_ids(alts, neg));
            }
            "destination.ip" => {
                perms.push(or_rules(cidrs(cx, &field, "destination_ip", vals)?, neg));
            }
            "destination.port" => {
                perms.push(or_rules(vals.iter().map(|p| port_rule(p)).collect(), neg));
            }
            "connection.sni" => {
                let r = vals
                    .iter()
                    .map(|v| json!({ "requested_server_name": istio_string(v, false) }))
                    .collect();
                perms.push(or_rules(r, neg));
            }
            "request.auth.principal" => {
                ids.push(or_ids(
                    vals.iter().map(|v| jwt::principal_id(v)).collect(),
                    neg,
                ));
            }
            k if k.starts_with("request.auth.") => {
                if let Some(path) = jwt::key_path(k) {
                    ids.push(or_ids(
                        vec![jwt::claim_id(&path, vals, |v| istio_string(v, false))],
                        neg,
                    ));
                }
            }
            _ => {
                if let Some(name) = header_name("request.headers") {
                    let r = vals.iter().map(|v| istio_header(&name, v, false)).collect();
                    ids.push(or_ids(r, neg));
                } else if let Some(name) = header_name("request.experimental.inline.headers") {
                    let r = vals.iter().map(|v| inline_header(&name, v)).collect();
                    ids.push(or_ids(r, neg));
                }
                // Anything else was refused by the core's compile.
            }
        }
    }
    Ok(())
}

/// Names of every cluster the native route configuration may name that the policy declares
/// (for tests and tooling).
pub fn routed_clusters(route_config: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    collect_clusters(route_config, &mut out);
    out
}

fn collect_clusters(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "cluster" {
                    if let Some(s) = x.as_str() {
                        out.insert(s.to_string());
                    }
                }
                if k == "weighted_clusters" {
                    if let Some(cs) = x.get("clusters").and_then(Value::as_array) {
                        for c in cs {
                            if let Some(s) = c.get("name").and_then(Value::as_str) {
                                out.insert(s.to_string());
                            }
                        }
                    }
                }
                collect_clusters(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_clusters(x, out)),
        _ => {}
    }
}

mod jwt;
#[cfg(test)]
mod tests;
