//! The waypoint istiod generates, built locally from the same YAML: the configuration users
//! actually run, and the baseline route A (EnvoyFilter, [`route_a_envoy_filter`]) and route B
//! (WasmPlugin, [`istiod_waypoint_with_plugins`] with [`crate::wasmplugin`]) must fit.
//!
//! Source of truth: istio/istio at the pinned release (`IstioVersion::PINNED`, 1.30.3), with the
//! 1.26 shape where it differs. Every construct cites `path:line @ tag`:
//!
//! - listener `connect_terminate` (`pilot/pkg/networking/core/listener_waypoint.go:321-371 @
//!   1.30.3`): mTLS (client certificate required, URI SAN prefix `spiffe://<td>/`, ALPN `h2`,
//!   TLS 1.3 only, `:1322-1345`), HTTP/2 CONNECT (`allow_connect`, 100 streams, keepalive
//!   10s/20s, `:256-272`), a `set_filter_state` filter `connect_authority` recording
//!   `envoy.filters.listener.original_dst.local_ip` / `io.istio.connect_authority` (the CONNECT
//!   `:authority`), `envoy.filters.listener.original_dst.remote_ip` (the peer),
//!   `io.istio.peer_principal` / `io.istio.local_principal` (the TLS URI SANs), each
//!   `shared_with_upstream: ONCE` (`pilot/pkg/xds/filters/filters.go:259-351 @ 1.30.3`), and a
//!   `connect_matcher` route into cluster `main_internal`;
//! - internal listener `main_internal` (`listener_waypoint.go:388-788`): listener filter
//!   `original_dst` (restores the tunnel's destination and source from that filter state), a
//!   `filter_chain_matcher` on destination IP (the service VIPs) then port (`:719-731`,
//!   `match/match.go:122-131`), one HTTP chain per service port named like its cluster
//!   `inbound-vip|<port>|http|<fqdn>` (≤ 1.23: `inbound-vip|<port>||<fqdn>-http`,
//!   `listener_waypoint.go:213-220 @ 1.23.0`), no default chain;
//! - per chain a connection manager (`listener_waypoint.go:911-963`, `listener_builder.go:311-480
//!   @ 1.30.3`): `stat_prefix inbound_0.0.0.0_<port>;`, `use_remote_address: false`, MeshConfig
//!   path normalization, websocket upgrades, `stream_idle_timeout: 0s`, an inline route
//!   configuration named like the chain with virtual host `inbound|http|<port>` (`httproute.go:52`),
//!   HTTP filters RBAC (AUDIT, DENY, ALLOW: `security/authz/builder/builder.go:124-140`), fault,
//!   CORS, router (`listener_builder.go:438`); RBAC principals are matched against filter state
//!   `io.istio.peer_principal` (`security/authz/model/principal.go:60-80`);
//! - clusters and `connect_originate` as [`crate::bootstrap_value`] builds them for in-mesh
//!   endpoints (`cluster_waypoint.go:437-540`), named by the compiler.
//!
//! Left out, because upstream Envoy 1.40 has no such extension (they are Istio proxy builds'
//! own): `waypoint_downstream_peer_metadata` on `connect_terminate`, and
//! `waypoint_upstream_peer_metadata` / `istio.stats` / `grpc_stats` on each chain. The filter
//! state uses Envoy's `envoy.hashable_string` where istiod 1.30.3 uses Istio's
//! `istio.hashable_string` (both hashable, so shared objects split the upstream connection pool;
//! 1.26.8 used the non-hashable `envoy.string`, `filters.go:247 @ 1.26.8`). Multi-network
//! (`AMBIENT_ENABLE_MULTI_NETWORK`), direct pod addressing (`direct-http` / `direct-tcp`) and TCP
//! chains are not generated: every policy service port is HTTP.

use std::net::IpAddr;

use layover_contract::filter_state;
use layover_envoyfilter::emit::Target;
use layover_envoyfilter::IstioVersion;
use layover_proto::v1::{PathNormalization, Policy, Service};
use serde_json::{json, Map, Value};

use crate::listeners::path_normalization;
use crate::native::{self, NativeError};
use crate::wasmplugin::{self, Phase, WaypointPlugin};
use crate::{
    bootstrap_value, hcm_normalization, BootstrapOptions, EmitError, Endpoint, Hbone,
    CONNECT_TERMINATE, LISTENER_NAME, MAIN_INTERNAL,
};

/// Envoy's HTTP connection manager network filter.
const HCM: &str = "envoy.filters.network.http_connection_manager";

/// The CONNECT `:authority` as the address `main_internal`'s `original_dst` listener filter
/// restores as the tunnelled connection's destination (`filters.go:78 @ 1.30.3`); Envoy's own
/// factory for this name parses it (an `ip:port`: a hostname authority selects no chain).
const ORIGINAL_DST_LOCAL_IP: &str = "envoy.filters.listener.original_dst.local_ip";

/// The HBONE peer's address, which `original_dst` restores as the tunnelled connection's
/// remote address — not its *direct* remote address, which stays the internal listener's
/// (`envoy://internal_client_address/`, measured on Envoy 1.40).
const ORIGINAL_DST_REMOTE_IP: &str = "envoy.filters.listener.original_dst.remote_ip";

/// The waypoint's own URI SAN (`%DOWNSTREAM_LOCAL_URI_SAN%`); nothing here reads it.
const LOCAL_PRINCIPAL: &str = "io.istio.local_principal";

/// istiod's HTTP RBAC filter name (every RBAC filter of a chain has it).
const RBAC: &str = "envoy.filters.http.rbac";

/// The name istiod gives the HTTP chain (and its route configuration) of `port` of the service
/// `fqdn` in `main_internal`: the cluster's name from 1.24.0 (`listener_waypoint.go:461, 480
/// @ 1.30.3`), `<cluster without subset>-http` before (`listener_waypoint.go:213-220 @ 1.23.0`).
pub fn http_chain_name(istio: IstioVersion, port: u32, fqdn: &str) -> String {
    if istio >= IstioVersion::new(1, 24, 0) {
        format!("inbound-vip|{port}|http|{fqdn}")
    } else {
        format!("inbound-vip|{port}||{fqdn}-http")
    }
}

/// The virtual host of a waypoint chain's route configuration (`inboundVirtualHostPrefix`,
/// `pilot/pkg/networking/core/httproute.go:52 @ 1.30.3`).
pub fn virtual_host_name(port: u32) -> String {
    format!("inbound|http|{port}")
}

/// The chains of `main_internal`: one per service port, `(service, port, VIPs, chain name)`.
fn chains(policy: &Policy, istio: IstioVersion) -> Vec<(&Service, u32, Vec<IpAddr>, String)> {
    let mut out = Vec::new();
    for svc in &policy.services {
        let vips: Vec<IpAddr> = svc
            .addresses
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect();
        for p in &svc.ports {
            let name = http_chain_name(istio, p.number, &svc.hostname.to_ascii_lowercase());
            out.push((svc, p.number, vips.clone(), name));
        }
    }
    out
}

/// A waypoint chain's connection manager with istiod's settings (see the module docs) around
/// the given HTTP filters and inline route configuration. Route A's replacement uses the same
/// settings, so the two differ only in filters and routes.
pub fn chain_hcm(
    port: u32,
    mode: PathNormalization,
    http_filters: Vec<Value>,
    route_config: Value,
    access_log: Option<&Value>,
) -> Value {
    let n = hcm_normalization(mode);
    let mut hcm = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        // cc.StatPrefix(): "inbound_" + "0.0.0.0_<port>" + ";" (listener_inbound.go:98-123).
        "stat_prefix": format!("inbound_0.0.0.0_{port};"),
        "codec_type": "AUTO",
        "use_remote_address": false,
        "normalize_path": n.normalize_path,
        "merge_slashes": n.merge_slashes,
        "path_with_escaped_slashes_action": n.escaped_slashes_action,
        "upgrade_configs": [{ "upgrade_type": "websocket" }],
        "stream_idle_timeout": "0s",
        "server_name": "istio-envoy",
        "route_config": route_config,
        "http_filters": http_filters,
    });
    if let (Some(log), Some(obj)) = (access_log, hcm.as_object_mut()) {
        obj.insert("access_log".into(), log.clone());
    }
    hcm
}

fn router() -> Value {
    json!({
        "name": layover_envoyfilter::ROUTER,
        "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" },
    })
}

/// One chain's native configuration: the service's routes and its AuthorizationPolicies as
/// RBAC filters, as istiod builds them, with the WasmPlugins `plugins` attached to the service
/// at their phases' positions (`listener_waypoint.go:896-905 @ 1.30.3`; no CUSTOM ext_authz
/// and no `jwt_authn` here, so AUTHN and AUTHZ plugins both precede the RBAC filters, AUTHN
/// first).
fn native_chain(
    policy: &Policy,
    svc: &Service,
    port: u32,
    name: &str,
    plugins: &[WaypointPlugin],
) -> Result<(Vec<Value>, Value), NativeError> {
    let default_retry = policy.mesh.as_ref().and_then(|m| m.default_retry.as_ref());
    // istiod's route configuration ends with the service's routes; a request no route matches
    // gets Envoy's own 404 (the RBAC filters are filter-level, so they still run first).
    let routes: Vec<Value> = native::service_routes(svc, Some(port), default_retry)
        .into_iter()
        .filter(|r| r.get("name").and_then(Value::as_str) != Some(native::NO_ROUTE))
        .collect();
    let route_config = json!({
        "name": name,
        "virtual_hosts": [{
            "name": virtual_host_name(port),
            "domains": ["*"],
            "routes": routes,
        }],
        "validate_clusters": false,
    });
    let per_route = native::service_rbac(policy, svc)?;
    let phase = |p: Phase| wasmplugin::in_phase(plugins, svc, p).into_iter().cloned();
    // listener_waypoint.go:896-900 @ 1.30.3: AUTHN plugins, jwt_authn, AUTHZ plugins, RBAC.
    let mut filters: Vec<Value> = phase(Phase::Authn).collect();
    filters.extend(crate::jwt_authn::istiod_jwt_filter_for_service(
        policy,
        &svc.hostname,
    ));
    filters.extend(phase(Phase::Authz));
    // builder.go:124-140 @ 1.30.3: AUDIT, then DENY, then ALLOW.
    for key in [
        native::RBAC_AUDIT_FILTER,
        native::RBAC_DENY_FILTER,
        native::RBAC_ALLOW_FILTER,
    ] {
        if let Some(rbac) = per_route.get(key).and_then(|c| c.get("rbac")) {
            let mut config = rbac.clone();
            if let Some(obj) = config.as_object_mut() {
                obj.insert(
                    "@type".into(),
                    json!("type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"),
                );
            }
            filters.push(json!({ "name": RBAC, "typed_config": config }));
        }
    }
    filters.push(json!({
        "name": native::FAULT_FILTER,
        "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault" },
    }));
    filters.push(json!({
        "name": native::CORS_FILTER,
        "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors" },
    }));
    filters.extend(phase(Phase::Stats).chain(phase(Phase::Unspecified)));
    filters.push(router());
    Ok((filters, route_config))
}

/// `main_internal`'s `filter_chain_matcher`: destination IP (each service's VIPs, as /32 or
/// /128 ranges) then destination port, naming the chain (`listener_waypoint.go:719-731 @
/// 1.30.3`; `match/match.go:122-131`: the action is the chain name as a `StringValue`).
fn filter_chain_matcher(chains: &[(&Service, u32, Vec<IpAddr>, String)]) -> Value {
    let mut by_vips: Vec<(Vec<IpAddr>, Map<String, Value>)> = Vec::new();
    for (_, port, vips, name) in chains {
        if vips.is_empty() {
            continue;
        }
        let action = json!({
            "action": {
                "name": name,
                "typed_config": { "@type": "type.googleapis.com/google.protobuf.StringValue", "value": name },
            }
        });
        match by_vips.iter_mut().find(|(v, _)| v == vips) {
            Some((_, ports)) => {
                ports.insert(port.to_string(), action);
            }
            None => {
                let mut ports = Map::new();
                ports.insert(port.to_string(), action);
                by_vips.push((vips.clone(), ports));
            }
        }
    }
    let range_matchers: Vec<Value> = by_vips
        .into_iter()
        .map(|(vips, ports)| {
            let ranges: Vec<Value> = vips
                .iter()
                .map(|ip| {
                    let len = if ip.is_ipv4() { 32 } else { 128 };
                    json!({ "address_prefix": ip.to_string(), "prefix_len": len })
                })
                .collect();
            json!({
                "ranges": ranges,
                "on_match": { "matcher": { "matcher_tree": {
                    "input": {
                        "name": "port",
                        "typed_config": { "@type": "type.googleapis.com/envoy.extensions.matching.common_inputs.network.v3.DestinationPortInput" },
                    },
                    "exact_match_map": { "map": Value::Object(ports) },
                } } },
            })
        })
        .collect();
    json!({
        "matcher_tree": {
            "input": {
                "name": "ip",
                "typed_config": { "@type": "type.googleapis.com/envoy.extensions.matching.common_inputs.network.v3.DestinationIPInput" },
            },
            "custom_match": {
                "name": "ip",
                "typed_config": {
                    "@type": "type.googleapis.com/xds.type.matcher.v3.IPMatcher",
                    "range_matchers": range_matchers,
                },
            },
        }
    })
}

/// Listener `main_internal` as istiod builds it, with the native chains.
fn main_internal(
    policy: &Policy,
    istio: IstioVersion,
    mode: PathNormalization,
    access_log: Option<&Value>,
    plugins: &[WaypointPlugin],
) -> Result<Value, NativeError> {
    let chains = chains(policy, istio);
    let mut filter_chains = Vec::new();
    for (svc, port, _, name) in &chains {
        let (filters, route_config) = native_chain(policy, svc, *port, name, plugins)?;
        filter_chains.push(json!({
            "name": name,
            "filters": [{
                "name": HCM,
                "typed_config": chain_hcm(*port, mode, filters, route_config, access_log),
            }],
        }));
    }
    Ok(json!({
        "name": MAIN_INTERNAL,
        "internal_listener": {},
        "traffic_direction": "INBOUND",
        // filters.go:148-153 @ 1.30.3: restores the tunnel's destination (the CONNECT
        // authority) and source from the filter state connect_terminate shared.
        "listener_filters": [{
            "name": "envoy.filters.listener.original_dst",
            "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst" },
        }],
        "filter_chain_matcher": filter_chain_matcher(&chains),
        "filter_chains": filter_chains,
    }))
}

/// One `connect_authority` entry (`filters.go:259-351 @ 1.30.3`). The two original-destination
/// keys have no factory key: Envoy's own factories for those names parse the address.
fn state(key: &str, format: &str, hashable: bool) -> Value {
    let mut v = json!({
        "object_key": key,
        "format_string": { "text_format_source": { "inline_string": format } },
        "shared_with_upstream": "ONCE",
    });
    if let (true, Some(obj)) = (hashable, v.as_object_mut()) {
        obj.insert("factory_key".into(), json!("envoy.hashable_string"));
    }
    v
}

/// The filter-state entries istiod's `connect_terminate` writes, in its order.
fn connect_authority_filter() -> Value {
    json!({
        "name": "connect_authority",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.set_filter_state.v3.Config",
            "on_request_headers": [
                state(ORIGINAL_DST_LOCAL_IP, "%REQ(:AUTHORITY)%", false),
                state(filter_state::CONNECT_AUTHORITY, "%REQ(:AUTHORITY)%", true),
                state(ORIGINAL_DST_REMOTE_IP, "%DOWNSTREAM_REMOTE_ADDRESS%", false),
                state(filter_state::PEER_PRINCIPAL, "%DOWNSTREAM_PEER_URI_SAN%", true),
                state(LOCAL_PRINCIPAL, "%DOWNSTREAM_LOCAL_URI_SAN%", true),
            ],
        },
    })
}

/// istiod's downstream TLS for HBONE (`buildCommonConnectTLSContext`,
/// `listener_waypoint.go:1322-1345 @ 1.30.3`).
fn connect_tls(hbone: &Hbone) -> Value {
    json!({
        "name": "tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "require_client_certificate": true,
            "common_tls_context": {
                "alpn_protocols": ["h2"],
                "tls_params": { "tls_minimum_protocol_version": "TLSv1_3", "tls_maximum_protocol_version": "TLSv1_3" },
                "tls_certificates": [{
                    "certificate_chain": { "filename": hbone.cert_chain.to_string_lossy() },
                    "private_key": { "filename": hbone.private_key.to_string_lossy() },
                }],
                // istiod: combined_validation_context with the root from SDS (`ROOTCA`); the
                // local waypoint reads the same root from a file.
                "validation_context": {
                    "trusted_ca": { "filename": hbone.trusted_ca.to_string_lossy() },
                    "match_typed_subject_alt_names": [{
                        "san_type": "URI",
                        "matcher": { "prefix": format!("spiffe://{}/", hbone.trust_domain) },
                    }],
                },
            },
        },
    })
}

/// Listener `connect_terminate` as istiod builds it (`listener_waypoint.go:223-371 @ 1.30.3`).
fn connect_terminate(hbone: &Hbone, address: &str, access_log: Option<&Value>) -> Value {
    let mut hcm = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": CONNECT_TERMINATE,
        "route_config": {
            "name": "default",
            "virtual_hosts": [{
                "name": "default",
                "domains": ["*"],
                "routes": [{
                    "match": { "connect_matcher": {} },
                    "route": {
                        "cluster": MAIN_INTERNAL,
                        "upgrade_configs": [{ "upgrade_type": "CONNECT", "connect_config": {} }],
                    },
                }],
            }],
        },
        "forward_client_cert_details": "APPEND_FORWARD",
        "set_current_client_cert_details": { "subject": true, "uri": true, "dns": true },
        "server_name": "istio-envoy",
        "use_remote_address": false,
        "stream_idle_timeout": "0s",
        "upgrade_configs": [{ "upgrade_type": "CONNECT" }],
        "http2_protocol_options": {
            "allow_connect": true,
            "max_concurrent_streams": 100,
            "connection_keepalive": { "interval": "10s", "timeout": "20s" },
        },
        "http_filters": [connect_authority_filter(), router()],
    });
    if let (Some(log), Some(obj)) = (access_log, hcm.as_object_mut()) {
        obj.insert("access_log".into(), log.clone());
    }
    json!({
        "name": CONNECT_TERMINATE,
        "address": { "socket_address": { "address": address, "port_value": hbone.port } },
        "filter_chains": [{
            "name": "default",
            "transport_socket": connect_tls(hbone),
            "filters": [{ "name": HCM, "typed_config": hcm }],
        }],
    })
}

fn find_listener_hcm_access_log(base: &Value, listener: &str) -> Option<Value> {
    base.pointer("/static_resources/listeners")?
        .as_array()?
        .iter()
        .find(|l| l.get("name").and_then(Value::as_str) == Some(listener))?
        .pointer("/filter_chains/0/filters/0/typed_config/access_log")
        .cloned()
}

/// The istiod-shaped waypoint as a cluster runs it with layover: `opts.layover_filter`, when
/// set, is attached only by the route A EnvoyFilter ([`route_a_envoy_filter`] for
/// `opts.istio` and `opts.cluster_selection`), applied ahead of `opts.envoy_filters`; without
/// it, istiod's own configuration.
pub fn istiod_waypoint_with_layover(
    policy: &Policy,
    endpoints: &[Endpoint],
    opts: &BootstrapOptions,
) -> Result<Value, NativeError> {
    let mut opts = opts.clone();
    if let Some(filter) = opts.layover_filter.take() {
        let target = crate::waypoint_target(policy);
        let ef = route_a_envoy_filter(
            policy,
            Some(&filter),
            opts.cluster_selection,
            opts.istio,
            &target,
        )?;
        let ef = layover_envoyfilter::EnvoyFilter::from_value(ef)
            .map_err(|e| EmitError::EnvoyFilter(format!("emitted {e}")))?;
        opts.envoy_filters.insert(0, ef);
    }
    istiod_waypoint_value(policy, endpoints, &opts, opts.istio)
}

/// The waypoint istiod `istio` would push for `policy` (see the module docs), with
/// `opts.hbone` (required) for the HBONE listener's certificates and port. `opts.layover_filter`
/// is not inserted here: layover gets in the way it does in a cluster, by applying the
/// EnvoyFilters in `opts.envoy_filters` (e.g. [`route_a_envoy_filter`]) with istiod's rules for
/// `istio`.
pub fn istiod_waypoint_value(
    policy: &Policy,
    endpoints: &[Endpoint],
    opts: &BootstrapOptions,
    istio: IstioVersion,
) -> Result<Value, NativeError> {
    istiod_waypoint_with_plugins(policy, endpoints, opts, istio, &[])
}

/// [`istiod_waypoint_value`] with the WasmPlugins `wasm_plugins` applied as istiod `istio`
/// applies them to this waypoint (route B; see [`crate::wasmplugin`]), MeshConfig root
/// namespace [`layover_envoyfilter::DEFAULT_ROOT_NAMESPACE`]. A plugin that does not attach to the
/// waypoint is left out, as istiod leaves it out.
pub fn istiod_waypoint_with_plugins(
    policy: &Policy,
    endpoints: &[Endpoint],
    opts: &BootstrapOptions,
    istio: IstioVersion,
    wasm_plugins: &[layover_envoyfilter::wire::WasmPluginDoc],
) -> Result<Value, NativeError> {
    let target = crate::waypoint_target(policy);
    let plugins = wasm_plugins
        .iter()
        .map(|doc| {
            wasmplugin::waypoint_plugin(
                doc,
                &target,
                layover_envoyfilter::DEFAULT_ROOT_NAMESPACE,
                istio,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let hbone = opts
        .hbone
        .as_ref()
        .ok_or(EmitError::IstiodShapeNeedsHbone)?;
    let mode = path_normalization(policy)?;
    let base_opts = BootstrapOptions {
        layover_filter: None,
        envoy_filters: Vec::new(),
        cluster_selection: layover_contract::ClusterSelection::Header,
        ..opts.clone()
    };
    let mut out = bootstrap_value(policy, endpoints, &base_opts)?;
    let access_log = find_listener_hcm_access_log(&out, CONNECT_TERMINATE);
    let terminate = connect_terminate(hbone, &opts.listener_address, access_log.as_ref());
    let internal = main_internal(policy, istio, mode, access_log.as_ref(), &plugins)?;
    if let Some(listeners) = out
        .pointer_mut("/static_resources/listeners")
        .and_then(Value::as_array_mut)
    {
        // No plain listener: ztunnel reaches a waypoint through HBONE only.
        listeners.retain(|l| l.get("name").and_then(Value::as_str) != Some(LISTENER_NAME));
        for l in listeners.iter_mut() {
            match l.get("name").and_then(Value::as_str) {
                Some(CONNECT_TERMINATE) => *l = terminate.clone(),
                Some(MAIN_INTERNAL) => *l = internal.clone(),
                _ => {}
            }
        }
    }
    if !opts.envoy_filters.is_empty() {
        let ctx =
            layover_envoyfilter::ApplyContext::for_waypoint(&target.namespace, &target.gateway)
                .with_istio(istio)
                .with_istiod_waypoint(patch_rules(policy, istio));
        layover_envoyfilter::apply(&mut out, &opts.envoy_filters, &ctx)
            .map_err(|e| EmitError::EnvoyFilter(e.to_string()))?;
    }
    Ok(out)
}

/// What istiod's waypoint generation lets EnvoyFilters patch here: no route patches for the
/// chains of services with a VirtualService or HTTPRoute (`httproute.go:139-140`,
/// `listener_waypoint.go:1153-1157 @ 1.30.3`); the cluster limits are by name
/// ([`layover_envoyfilter::IstiodWaypointRules`]).
fn patch_rules(policy: &Policy, istio: IstioVersion) -> layover_envoyfilter::IstiodWaypointRules {
    use layover_proto::v1::RouteSource;
    let unpatched_route_configurations = chains(policy, istio)
        .into_iter()
        .filter(|(svc, ..)| {
            RouteSource::try_from(svc.route_source).unwrap_or(RouteSource::Default)
                != RouteSource::Default
        })
        .map(|(.., name)| name)
        .collect();
    layover_envoyfilter::IstiodWaypointRules {
        unpatched_route_configurations,
    }
}

/// Route A: the EnvoyFilter that makes layover the L7 of each of the waypoint's HTTP chains.
///
/// istiod 1.30 runs route and virtual-host patches only for services without a VirtualService
/// (`httproute.go:139-140`; the VirtualService path returns its route configuration unpatched,
/// `listener_waypoint.go:1153-1157 @ 1.30.3`), and an inline route configuration's virtual
/// hosts cannot be replaced by a listener MERGE (lists append; a second `*` domain is
/// rejected). So each chain's connection manager is replaced whole — NETWORK_FILTER REPLACE,
/// matched by `listener.name: main_internal` and `filterChain.name`, which istiod applies to
/// waypoint listeners under SIDECAR_INBOUND (`listener_builder.go:190 @ 1.30.3`) — with
/// istiod's connection-manager settings ([`chain_hcm`]) around layover's filters and a route
/// that follows layover's cluster choice. layover then enforces the chain's
/// AuthorizationPolicies and routes once, in place of istiod's RBAC, fault, CORS filters and
/// routes (a policy enforced twice costs twice; one half-replaced is a hole). One more patch
/// inserts [`crate::hbone_peer_address_filter`] before the router of `connect_terminate`: the
/// HBONE peer's address is the client's (`ipBlocks`), and istiod records none the filters can
/// read.
pub fn route_a_envoy_filter(
    policy: &Policy,
    layover_filter: Option<&Value>,
    selection: layover_contract::ClusterSelection,
    istio: IstioVersion,
    target: &Target,
) -> Result<Value, EmitError> {
    let mode = path_normalization(policy)?;
    let mut patches = vec![json!({
        "applyTo": "HTTP_FILTER",
        "match": {
            "context": "SIDECAR_INBOUND",
            "listener": {
                "name": CONNECT_TERMINATE,
                "filterChain": { "filter": { "name": HCM, "subFilter": { "name": layover_envoyfilter::ROUTER } } },
            },
        },
        "patch": { "operation": "INSERT_BEFORE", "value": crate::hbone_peer_address_filter() },
    })];
    for (svc, port, _, name) in chains(policy, istio) {
        // The chain's jwt_authn (istiod's, with layover's payload header and its strip in
        // front: the chain's connection manager is replaced whole, so layover brings it), the
        // direct peer's address (what `ipBlocks` outside a tunnel needs, as in layover's own
        // waypoint), then the layover filter, then the router.
        let mut filters = crate::jwt_authn::jwt_filters_for_service(policy, &svc.hostname);
        filters.push(crate::direct_remote_address_filter());
        filters.extend(layover_filter.cloned());
        filters.push(router());
        let mut route = crate::route_merge(selection);
        if let Some(obj) = route.as_object_mut() {
            obj.insert("name".into(), json!(crate::ROUTE_CONFIG_NAME));
            obj.insert("match".into(), json!({ "prefix": "/" }));
        }
        let route_config = json!({
            "name": name,
            "virtual_hosts": [{ "name": virtual_host_name(port), "domains": ["*"], "routes": [route] }],
            "validate_clusters": false,
        });
        patches.push(json!({
            "applyTo": "NETWORK_FILTER",
            "match": {
                "context": "SIDECAR_INBOUND",
                "listener": { "name": MAIN_INTERNAL, "filterChain": { "name": name, "filter": { "name": HCM } } },
            },
            "patch": {
                "operation": "REPLACE",
                "value": { "name": HCM, "typed_config": chain_hcm(port, mode, filters, route_config, None) },
            },
        }));
    }
    let mut ef = json!({
        "apiVersion": layover_envoyfilter::API_VERSION,
        "kind": "EnvoyFilter",
        "metadata": {
            "name": format!("layover-{}", target.gateway),
            "namespace": target.namespace,
            "labels": { "app.kubernetes.io/managed-by": "layover" },
        },
        "spec": {
            "priority": layover_envoyfilter::emit::LAYOVER_PRIORITY,
            "configPatches": patches,
        },
    });
    layover_envoyfilter::emit::attach(&mut ef, target, istio);
    Ok(ef)
}
