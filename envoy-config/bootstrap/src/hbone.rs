//! HBONE: listener `connect_terminate` (HTTP/2 CONNECT over mutual TLS in), the internal
//! listener `main_internal` the tunnels end in and the cluster into it, and `connect_originate`,
//! which re-originates HBONE towards in-mesh endpoints ([`crate::Hbone`] describes the chain).

use std::net::IpAddr;

use layover_contract::filter_state::{
    CONNECT_AUTHORITY, FORWARDED_FOR, HBONE_PEER_ADDRESS, PEER_PRINCIPAL,
};
use layover_proto::v1::PathNormalization;
use serde_json::{json, Value};

use crate::common::{duration, socket_address};
use crate::listeners::{access_log, downstream_tls_json, layover_hcm_json};
use crate::options::{BootstrapOptions, Endpoint, Hbone};

/// Name of the HBONE listener (and its connection manager's stat prefix).
pub const CONNECT_TERMINATE: &str = "connect_terminate";

/// Name of the internal listener the HBONE tunnels end in, and of the cluster pointing at it.
pub const MAIN_INTERNAL: &str = "main_internal";

/// Name of the internal listener that re-originates HBONE towards in-mesh endpoints, and of
/// the (original-destination) cluster it tunnels through.
pub const CONNECT_ORIGINATE: &str = "connect_originate";

/// Endpoint-metadata namespace the original-destination listener filter reads inside an
/// internal listener (key `local`: the address to treat as the connection's destination).
pub(crate) const ORIGINAL_DST_METADATA: &str = "envoy.filters.listener.original_dst";

/// One `set_filter_state` entry: a string object under `key`, shared with the upstream
/// connection once (so the internal listener's connection gets it through `internal_upstream`).
///
/// The object must be *hashable* (`envoy.hashable_string`, not `envoy.string`): Envoy folds
/// hashable shared objects into the upstream connection-pool key. With plain strings a later
/// tunnel could be handed an idle `main_internal` connection that still carries an earlier
/// tunnel's peer identity and CONNECT authority — an authorization bypass and a misroute
/// (reproduced by `tests/integration/tests/hbone.rs` `tunnels_never_inherit_another_tunnels_identity_*`).
fn shared_string_state(key: &str, format: &str) -> Value {
    json!({
        "object_key": key,
        "factory_key": "envoy.hashable_string",
        "format_string": { "text_format_source": { "inline_string": format } },
        "shared_with_upstream": "ONCE",
    })
}

/// The `set_filter_state` HTTP filter recording the HBONE peer's address
/// ([`HBONE_PEER_ADDRESS`]) at `connect_terminate`. Route A inserts it into istiod's
/// `connect_terminate`, which records no address the filters can read.
pub fn hbone_peer_address_filter() -> Value {
    json!({
        "name": HBONE_PEER_ADDRESS,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.set_filter_state.v3.Config",
            "on_request_headers": [
                shared_string_state(HBONE_PEER_ADDRESS, "%DOWNSTREAM_DIRECT_REMOTE_ADDRESS%"),
            ],
        },
    })
}

/// Listener `connect_terminate`: HBONE (HTTP/2 CONNECT over mTLS) in, tunnel bytes out to
/// `main_internal`.
pub(crate) fn connect_terminate_json(hbone: &Hbone, opts: &BootstrapOptions) -> Value {
    let mut tls = downstream_tls_json(&hbone.tls());
    // HBONE is HTTP/2 only.
    if let Some(alpn) = tls.pointer_mut("/typed_config/common_tls_context/alpn_protocols") {
        *alpn = json!(["h2"]);
    }
    json!({
        "name": CONNECT_TERMINATE,
        "address": socket_address(&opts.listener_address, hbone.port),
        "filter_chains": [{
            "transport_socket": tls,
            "filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": connect_terminate_hcm_json(opts),
            }],
        }],
    })
}

/// `connect_terminate`'s connection manager: HTTP/2 with CONNECT, the HBONE peer's identity,
/// the CONNECT authority and the original client recorded in filter state shared with the
/// upstream, and one route that terminates the CONNECT into `main_internal`.
fn connect_terminate_hcm_json(opts: &BootstrapOptions) -> Value {
    let mut hcm = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": CONNECT_TERMINATE,
        "codec_type": "HTTP2",
        "http2_protocol_options": {
            "allow_connect": true,
            "max_concurrent_streams": 100,
            "connection_keepalive": { "interval": "30s", "timeout": "10s" },
        },
        "upgrade_configs": [{ "upgrade_type": "CONNECT" }],
        // Tunnels live as long as the connections inside them.
        "stream_idle_timeout": "0s",
        "use_remote_address": false,
        "http_filters": [
            {
                "name": "layover.hbone_state",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.set_filter_state.v3.Config",
                    "on_request_headers": [
                        shared_string_state(PEER_PRINCIPAL, "%DOWNSTREAM_PEER_URI_SAN%"),
                        shared_string_state(CONNECT_AUTHORITY, "%REQ(:AUTHORITY)%"),
                        shared_string_state(FORWARDED_FOR, "%REQ(FORWARDED)%"),
                        shared_string_state(HBONE_PEER_ADDRESS, "%DOWNSTREAM_DIRECT_REMOTE_ADDRESS%"),
                    ],
                },
            },
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
                },
            },
        ],
        "route_config": {
            "name": CONNECT_TERMINATE,
            "virtual_hosts": [{
                "name": CONNECT_TERMINATE,
                // Matched against the CONNECT authority, port included: any.
                "domains": ["*"],
                "routes": [{
                    "name": CONNECT_TERMINATE,
                    "match": { "connect_matcher": {} },
                    "route": {
                        "cluster": MAIN_INTERNAL,
                        // `connect_config` makes the router terminate the CONNECT (without it
                        // Envoy forwards the CONNECT request itself).
                        "upgrade_configs": [{ "upgrade_type": "CONNECT", "connect_config": {} }],
                        "timeout": "0s",
                    },
                }],
            }],
        },
    });
    if let (Some(path), Some(obj)) = (&opts.access_log_path, hcm.as_object_mut()) {
        obj.insert("access_log".into(), access_log(path));
    }
    hcm
}

/// Internal listener `main_internal`: the tunnels' inner HTTP, through the layover connection
/// manager.
pub(crate) fn main_internal_json(mode: PathNormalization, opts: &BootstrapOptions) -> Value {
    json!({
        "name": MAIN_INTERNAL,
        "internal_listener": {},
        "filter_chains": [{
            "filters": [layover_hcm_json(mode, opts, MAIN_INTERNAL)],
        }],
    })
}

/// Cluster `main_internal`: the internal listener as its only endpoint, over the
/// `internal_upstream` transport socket (which hands the shared filter state across; without
/// it the identity does not arrive).
pub(crate) fn main_internal_cluster_json(opts: &BootstrapOptions) -> Value {
    json!({
        "name": MAIN_INTERNAL,
        "type": "STATIC",
        "connect_timeout": duration(opts.connect_timeout),
        "load_assignment": {
            "cluster_name": MAIN_INTERNAL,
            "endpoints": [{
                "lb_endpoints": [{
                    "endpoint": {
                        "address": { "envoy_internal_address": { "server_listener_name": MAIN_INTERNAL } },
                    },
                }],
            }],
        },
        "transport_socket": internal_upstream_json(&[]),
    })
}

/// The `internal_upstream` transport socket (raw bytes inside), passing the endpoint (host)
/// metadata of the given namespaces to the internal listener's connection. Filter state shared
/// with the upstream is always passed.
pub(crate) fn internal_upstream_json(host_metadata: &[&str]) -> Value {
    let mut config = json!({
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.internal_upstream.v3.InternalUpstreamTransport",
        "transport_socket": {
            "name": "envoy.transport_sockets.raw_buffer",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer",
            },
        },
    });
    if !host_metadata.is_empty() {
        if let Some(obj) = config.as_object_mut() {
            let passthrough: Vec<Value> = host_metadata
                .iter()
                .map(|name| json!({ "kind": { "host": {} }, "name": name }))
                .collect();
            obj.insert("passthrough_metadata".into(), Value::Array(passthrough));
        }
    }
    json!({
        "name": "envoy.transport_sockets.internal_upstream",
        "typed_config": config,
    })
}

/// An in-mesh endpoint, as Istio writes it: an internal address of `connect_originate` (one
/// per pod, `endpoint_id` keeps them apart), carrying the pod `ip:port` as the
/// original-destination metadata the internal listener restores as its local address.
pub(crate) fn hbone_endpoint_json(ep: &Endpoint, ip: IpAddr) -> Value {
    let target = std::net::SocketAddr::new(ip, ep.port).to_string();
    json!({
        "endpoint": {
            "address": {
                "envoy_internal_address": {
                    "server_listener_name": CONNECT_ORIGINATE,
                    "endpoint_id": target,
                },
            },
        },
        "metadata": {
            "filter_metadata": {
                "istio": { "workload_labels": ep.labels },
                "envoy.transport_socket_match": { "tunnel": "hbone" },
                ORIGINAL_DST_METADATA: { "local": target },
            },
        },
    })
}

/// Internal listener `connect_originate`: the destination (the pod `ip:port`, restored by the
/// original-destination listener filter from endpoint metadata) becomes the CONNECT authority
/// of an HBONE tunnel through cluster `connect_originate`.
pub(crate) fn connect_originate_json() -> Value {
    json!({
        "name": CONNECT_ORIGINATE,
        "internal_listener": {},
        "use_original_dst": true,
        "listener_filters": [{
            "name": "envoy.filters.listener.original_dst",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst",
            },
        }],
        "filter_chains": [{
            "filters": [{
                "name": "envoy.filters.network.tcp_proxy",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                    "stat_prefix": CONNECT_ORIGINATE,
                    "cluster": CONNECT_ORIGINATE,
                    "tunneling_config": { "hostname": "%DOWNSTREAM_LOCAL_ADDRESS%" },
                },
            }],
        }],
    })
}

/// Cluster `connect_originate`: HTTP/2 over mTLS (the waypoint's certificate, TLS 1.3, ALPN
/// h2, no SNI, the peer verified against the mesh root and trust domain) to the original
/// destination's IP on the HBONE port.
pub(crate) fn connect_originate_cluster_json(hbone: &Hbone, opts: &BootstrapOptions) -> Value {
    json!({
        "name": CONNECT_ORIGINATE,
        "type": "ORIGINAL_DST",
        "lb_policy": "CLUSTER_PROVIDED",
        "connect_timeout": duration(opts.connect_timeout),
        "original_dst_lb_config": { "upstream_port_override": hbone.upstream_port },
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": { "http2_protocol_options": {} },
            },
        },
        "transport_socket": {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "common_tls_context": {
                    "tls_params": {
                        "tls_minimum_protocol_version": "TLSv1_3",
                        "tls_maximum_protocol_version": "TLSv1_3",
                    },
                    "alpn_protocols": ["h2"],
                    "tls_certificates": [{
                        "certificate_chain": { "filename": hbone.cert_chain.to_string_lossy() },
                        "private_key": { "filename": hbone.private_key.to_string_lossy() },
                    }],
                    "validation_context": {
                        "trusted_ca": { "filename": hbone.trusted_ca.to_string_lossy() },
                        "match_typed_subject_alt_names": [{
                            "san_type": "URI",
                            "matcher": { "prefix": format!("spiffe://{}/", hbone.trust_domain) },
                        }],
                    },
                },
            },
        },
    })
}

#[cfg(test)]
mod tests;
