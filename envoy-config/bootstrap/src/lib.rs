//! Envoy bootstrap generator for a layover waypoint.
//!
//! [`bootstrap`] turns a compiled [`Policy`] plus a list of [`Endpoint`]s into a complete, static
//! Envoy bootstrap: an admin interface, one plain-HTTP listener whose connection manager is set up
//! the way istiod sets up a waypoint's (path normalization from MeshConfig, no default route
//! timeout), a slot for the layover HTTP filter in front of the router, and one STATIC cluster per
//! policy cluster. Routing is delegated to the filter: the only route reads the cluster name from
//! the `x-layover-cluster` request header ([`CLUSTER_HEADER`]).
//!
//! The listener can require mutual TLS ([`BootstrapOptions::downstream_tls`]): peers then present
//! SPIFFE certificates, which is where AuthorizationPolicy principals come from.
//!
//! With [`BootstrapOptions::hbone`] the waypoint also terminates HBONE, as Istio's own waypoint
//! does (see [`Hbone`]): listener `connect_terminate` (mTLS, HTTP/2 CONNECT on :15008) records
//! the peer identity, the CONNECT authority and the original client in filter state shared with
//! the upstream connection, and hands the tunnel's bytes to the internal listener
//! `main_internal`, whose connection manager is the plain listener's (same normalization, same
//! filters, same route). Endpoints marked in-mesh ([`Endpoint::hbone`]) are reached by
//! re-originating HBONE through the internal listener `connect_originate` (mTLS HTTP/2 CONNECT
//! to the pod's HBONE port, authority = the pod `ip:port`); all others stay plaintext.
//!
//! [`CLUSTER_HEADER`]: layover_contract::CLUSTER_HEADER

#![forbid(unsafe_code)]

// The generator by layer. Lowest first: error, options, common, routes, listeners, hbone,
// clusters, envoy_filter; each uses only layers below it (rustfmt sorts the list).
mod clusters;
mod common;
mod envoy_filter;
mod error;
mod hbone;
pub mod jwt_authn;
mod listeners;
mod options;
mod routes;
mod traffic_policy;

pub mod config_dump;
mod filter;
pub mod istiod;
pub mod manifests;
pub mod native;
pub mod reload;
pub mod wasmplugin;
mod yaml;

#[cfg(test)]
mod test_support;

pub use envoy_filter::{direct_remote_address_filter, layover_envoy_filter, waypoint_target};
pub use error::EmitError;
pub use filter::{
    dynamic_module_filter, dynamic_module_filter_with, endpoints_from_registry, wasm_filter,
};
pub use hbone::{hbone_peer_address_filter, CONNECT_ORIGINATE, CONNECT_TERMINATE, MAIN_INTERNAL};
pub use listeners::{hcm_normalization, HcmNormalization, LISTENER_NAME};
pub use options::{
    BootstrapOptions, DownstreamTls, Endpoint, Format, Hbone, DEFAULT_CONNECT_TIMEOUT,
};
pub use routes::{route_merge, ROUTE_CONFIG_NAME};
pub use yaml::to_yaml;

use layover_proto::v1::Policy;
use serde_json::{json, Value};

use clusters::policy_clusters;
use common::socket_address;
use envoy_filter::apply_envoy_filters;
use hbone::{
    connect_originate_cluster_json, connect_originate_json, connect_terminate_json,
    main_internal_cluster_json, main_internal_json,
};
use listeners::{listener_json, path_normalization};
use options::{validate_endpoints, validate_options};

/// Generates the complete Envoy bootstrap for `policy`, with STATIC clusters whose endpoints are
/// picked from `endpoints` by label (and service) selection.
///
/// Clusters that select no endpoint are still emitted, so a route to them gets Envoy's own
/// `503 no healthy upstream` rather than "cluster not found".
pub fn bootstrap(
    policy: &Policy,
    endpoints: &[Endpoint],
    opts: &BootstrapOptions,
) -> Result<String, EmitError> {
    let value = bootstrap_value(policy, endpoints, opts)?;
    match opts.format {
        Format::Json => {
            serde_json::to_string_pretty(&value).map_err(|e| EmitError::Serialize(e.to_string()))
        }
        // Not serde_yaml_ng: Envoy reads YAML 1.1 booleans (`yes`, `on`) that it leaves plain.
        Format::Yaml => Ok(to_yaml(&value)),
    }
}

/// Like [`bootstrap`], but returns the bootstrap as a JSON value (for callers that patch it
/// further, e.g. to add the HBONE listeners).
pub fn bootstrap_value(
    policy: &Policy,
    endpoints: &[Endpoint],
    opts: &BootstrapOptions,
) -> Result<Value, EmitError> {
    validate_options(opts)?;
    let endpoint_ips = validate_endpoints(endpoints)?;
    if opts.hbone.is_none() {
        if let Some(index) = endpoints.iter().position(|ep| ep.hbone) {
            return Err(EmitError::HboneEndpointWithoutHbone { index });
        }
    }
    let mode = path_normalization(policy)?;
    let mut clusters = policy_clusters(policy, endpoints, &endpoint_ips, opts)?;

    let mut listeners = vec![listener_json(mode, opts)];
    if let Some(hbone) = &opts.hbone {
        listeners.push(connect_terminate_json(hbone, opts));
        listeners.push(main_internal_json(mode, opts));
        clusters.push(main_internal_cluster_json(opts));
        if endpoints.iter().any(|ep| ep.hbone) {
            listeners.push(connect_originate_json());
            clusters.push(connect_originate_cluster_json(hbone, opts));
        }
    }

    let mut out = json!({
        "node": { "id": opts.node_id, "cluster": "layover" },
        "admin": {
            "address": socket_address("127.0.0.1", opts.admin_port),
        },
        "static_resources": {
            "listeners": listeners,
            "clusters": clusters,
        },
        "layered_runtime": layered_runtime(),
    });
    if opts.hbone.is_some() {
        if let Some(obj) = out.as_object_mut() {
            obj.insert(
                "bootstrap_extensions".into(),
                json!([{
                    "name": "envoy.bootstrap.internal_listener",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.bootstrap.internal_listener.v3.InternalListener",
                    },
                }]),
            );
        }
    }
    let mut jwt_listeners = vec![listeners::LISTENER_NAME];
    if opts.hbone.is_some() {
        jwt_listeners.push(hbone::MAIN_INTERNAL);
    }
    jwt_authn::insert_jwt_filters(&mut out, policy, &jwt_listeners);
    apply_envoy_filters(&mut out, policy, opts)?;
    Ok(out)
}

/// The runtime flags istiod's bootstrap sets (pkg/bootstrap): fragments are stripped rather
/// than rejected, and RE2 programs get Istio's larger size limit.
fn layered_runtime() -> Value {
    json!({
        "layers": [{
            "name": "global config",
            "static_layer": {
                "envoy.reloadable_features.http_reject_path_with_fragment": false,
                "re2.max_program_size.error_level": 32768,
                "overload.global_downstream_max_connections": 2147483647,
            },
        }],
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use layover_proto::v1::PathNormalization;

    use super::*;
    use crate::test_support::{cluster, policy};

    #[test]
    fn yaml_and_json_round_trip_to_the_same_value() {
        let p = policy(
            PathNormalization::MergeSlashes,
            vec![cluster("a|b", "s", 1, &[])],
        );
        let value = bootstrap_value(&p, &[], &BootstrapOptions::default()).unwrap();
        let yaml = bootstrap(&p, &[], &BootstrapOptions::default()).unwrap();
        let from_yaml: Value = serde_yaml_ng::from_str(&yaml).unwrap();
        assert_eq!(from_yaml, value);
        let json_opts = BootstrapOptions {
            format: Format::Json,
            ..Default::default()
        };
        let from_json: Value =
            serde_json::from_str(&bootstrap(&p, &[], &json_opts).unwrap()).unwrap();
        assert_eq!(from_json, value);
    }
}
