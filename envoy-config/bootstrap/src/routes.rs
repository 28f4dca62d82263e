//! The route that follows the layover filter's cluster choice: the base waypoint's route
//! configuration, the cluster specifier, and the route fields the layover EnvoyFilter merges.

use layover_contract::{ClusterSelection, CLUSTER_HEADER, DYNAMIC_MODULE_NAME, FILTER_NAME};
use serde_json::{json, Value};

/// Name of the route configuration (and of its only virtual host and route) in every
/// connection manager that serves application traffic (the plain listener's and
/// `main_internal`'s); the EnvoyFilter layover emits selects the route by these names.
pub const ROUTE_CONFIG_NAME: &str = "layover";

/// The cluster specifier that makes the router follow the layover filter's choice.
fn cluster_specifier(selection: ClusterSelection) -> (&'static str, Value) {
    match selection {
        ClusterSelection::Header => ("cluster_header", json!(CLUSTER_HEADER)),
        ClusterSelection::SpecifierPlugin => (
            "inline_cluster_specifier_plugin",
            json!({
                "extension": {
                    "name": FILTER_NAME,
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.router.cluster_specifiers.dynamic_modules.v3.DynamicModuleClusterSpecifier",
                        "dynamic_module_config": { "name": DYNAMIC_MODULE_NAME, "do_not_close": true },
                        "specifier_name": FILTER_NAME,
                    },
                },
            }),
        ),
    }
}

/// The base waypoint's only route: everything to the cluster named by [`CLUSTER_HEADER`],
/// no timeout. Without the layover filter nothing sets the header (so requests get Envoy's
/// 503 unless a client sets it: `--filter none` debugging only).
fn route_json(selection: ClusterSelection) -> Value {
    let (key, value) = cluster_specifier(selection);
    json!({
        "name": ROUTE_CONFIG_NAME,
        "match": { "prefix": "/" },
        "route": {
            key: value,
            // Istio HTTP routes have no timeout unless the VirtualService sets one; the
            // filter sets per-request timeouts through x-envoy-upstream-rq-timeout-ms.
            "timeout": "0s",
        },
        // The header is an internal signal: the upstream must never see it, with or without
        // the layover filter (the EnvoyFilter's route merge repeats this for routes that do
        // not have it; removing a header twice is harmless).
        "request_headers_to_remove": [CLUSTER_HEADER],
    })
}

/// The route configuration of the base waypoint's connection managers: one virtual host for
/// every domain, with the only route ([`route_json`]).
pub(crate) fn route_config_json() -> Value {
    json!({
        "name": ROUTE_CONFIG_NAME,
        // Cluster names come from the filter at request time; there is nothing to validate here.
        "validate_clusters": false,
        "virtual_hosts": [{
            "name": ROUTE_CONFIG_NAME,
            "domains": ["*"],
            "routes": [route_json(ClusterSelection::Header)],
        }],
    })
}

/// The `Route` fields the layover EnvoyFilter merges into the waypoint's route (HTTP_ROUTE
/// MERGE): the cluster specifier `selection` (a oneof: it replaces whatever cluster the route
/// named), the retry settings headers cannot carry, and removal of the internal header.
pub fn route_merge(selection: ClusterSelection) -> Value {
    let (key, value) = cluster_specifier(selection);
    json!({
        "route": {
            key: value,
            "timeout": "0s",
            // The filter sets attempts / retry_on / per-try timeout per request through the
            // router's x-envoy-* headers; what headers cannot carry is fixed here, as istiod
            // writes it for every HTTP route (route/retry/retry.go): retry on another host, up
            // to 5 host selection attempts. No retry_on here, so a request the filter sets no
            // retries for is never retried.
            "retry_policy": {
                "num_retries": 0,
                "retry_host_predicate": [{
                    "name": "envoy.retry_host_predicates.previous_hosts",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate",
                    },
                }],
                "host_selection_retry_max_attempts": 5,
            },
        },
        // The header is an internal signal: the upstream must not see it. Route header
        // removal runs after the cluster was chosen, so it does not affect routing.
        "request_headers_to_remove": [CLUSTER_HEADER],
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use layover_contract::{ClusterSelection, CLUSTER_HEADER};
    use layover_proto::v1::Policy;
    use serde_json::{json, Value};

    use crate::test_support::hcm;
    use crate::{
        bootstrap_value, dynamic_module_filter, dynamic_module_filter_with, wasm_filter,
        BootstrapOptions, EmitError,
    };

    #[test]
    fn cluster_selection_picks_the_route_shape_and_the_filter_config() {
        let route = |v: &Value| hcm(v)["route_config"]["virtual_hosts"][0]["routes"][0].clone();
        let header = BootstrapOptions {
            layover_filter: Some(dynamic_module_filter("{}")),
            ..Default::default()
        };
        let v = bootstrap_value(&Policy::default(), &[], &header).unwrap();
        assert_eq!(route(&v)["route"]["cluster_header"], json!(CLUSTER_HEADER));
        assert_eq!(
            hcm(&v)["http_filters"][1]["typed_config"]["filter_config"]["value"],
            json!("{}"),
            "header mode keeps the bare policy as the filter config"
        );

        let plugin = BootstrapOptions {
            layover_filter: Some(
                dynamic_module_filter_with(
                    "{\"schemaVersion\":1}",
                    ClusterSelection::SpecifierPlugin,
                )
                .unwrap(),
            ),
            cluster_selection: ClusterSelection::SpecifierPlugin,
            ..Default::default()
        };
        let v = bootstrap_value(&Policy::default(), &[], &plugin).unwrap();
        let r = route(&v);
        assert!(r["route"].get("cluster_header").is_none());
        let ext = &r["route"]["inline_cluster_specifier_plugin"]["extension"];
        assert_eq!(
            ext["typed_config"]["@type"],
            json!("type.googleapis.com/envoy.extensions.router.cluster_specifiers.dynamic_modules.v3.DynamicModuleClusterSpecifier")
        );
        assert_eq!(
            ext["typed_config"]["dynamic_module_config"]["name"],
            json!("layover_module")
        );
        let config = hcm(&v)["http_filters"][1]["typed_config"]["filter_config"]["value"]
            .as_str()
            .unwrap()
            .to_string();
        let config: Value = serde_json::from_str(&config).unwrap();
        assert_eq!(
            config,
            json!({"cluster_selection": "metadata", "policy": {"schemaVersion": 1}})
        );

        // The plugin route with a filter that does not write metadata would route nowhere.
        for filter in [
            None,
            Some(dynamic_module_filter("{}")),
            Some(wasm_filter(std::path::Path::new("/x.wasm"), "{}")),
        ] {
            let opts = BootstrapOptions {
                layover_filter: filter,
                cluster_selection: ClusterSelection::SpecifierPlugin,
                ..Default::default()
            };
            assert_eq!(
                bootstrap_value(&Policy::default(), &[], &opts),
                Err(EmitError::ClusterSelectionMismatch)
            );
        }
    }
}
