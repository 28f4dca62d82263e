//! The EnvoyFilter that makes the base waypoint a layover waypoint (what `layover manifests`
//! emits for a cluster's waypoint), and its application together with the user's EnvoyFilters.

use layover_contract::filter_state::DIRECT_REMOTE_ADDRESS;
use layover_contract::ClusterSelection;
use layover_proto::v1::Policy;
use serde_json::{json, Value};

use crate::error::EmitError;
use crate::hbone::MAIN_INTERNAL;
use crate::listeners::LISTENER_NAME;
use crate::options::BootstrapOptions;
use crate::routes::{route_merge, ROUTE_CONFIG_NAME};

/// The `set_filter_state` HTTP filter that records the direct peer for the layover filter.
///
/// With istiod's `use_remote_address: false` Envoy rewrites the stream's remote address from
/// the client's x-forwarded-for, and proxy-wasm can only read that rewritten
/// `source.address`. AuthorizationPolicy `ipBlocks` / `source.ip` mean the direct peer
/// (istiod emits RBAC `direct_remote_ip`), so the real socket peer is put in filter state
/// ([`DIRECT_REMOTE_ADDRESS`]) before the layover filter runs; a client cannot forge it.
pub fn direct_remote_address_filter() -> Value {
    json!({
        "name": "layover.direct_remote_address",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.set_filter_state.v3.Config",
            "on_request_headers": [{
                "object_key": DIRECT_REMOTE_ADDRESS,
                "factory_key": "envoy.string",
                "format_string": {
                    "text_format_source": {
                        "inline_string": "%DOWNSTREAM_DIRECT_REMOTE_ADDRESS%",
                    },
                },
            }],
        },
    })
}

/// The EnvoyFilter that turns the base waypoint into a layover waypoint: `layover_filter` (an
/// `http_filters` entry, e.g. [`wasm_filter`] / [`dynamic_module_filter_with`]) and
/// [`direct_remote_address_filter`] inserted before the router in the connection managers of
/// `listeners`, and the route merged with [`route_merge`]`(selection)`. `layover manifests`
/// emits it; [`bootstrap_value`] applies it.
///
/// [`wasm_filter`]: crate::wasm_filter
/// [`dynamic_module_filter_with`]: crate::dynamic_module_filter_with
/// [`bootstrap_value`]: crate::bootstrap_value
pub fn layover_envoy_filter(
    layover_filter: &Value,
    selection: ClusterSelection,
    listeners: &[&str],
    target: &layover_envoyfilter::emit::Target,
) -> Value {
    layover_envoyfilter::emit::envoy_filter(&layover_envoyfilter::emit::FilterInsertion {
        name: format!("layover-{}", target.gateway),
        target: target.clone(),
        listeners: listeners.iter().map(|l| l.to_string()).collect(),
        filters: vec![direct_remote_address_filter(), layover_filter.clone()],
        route: (
            ROUTE_CONFIG_NAME.into(),
            ROUTE_CONFIG_NAME.into(),
            ROUTE_CONFIG_NAME.into(),
        ),
        route_merge: route_merge(selection),
    })
}

/// The waypoint a policy was compiled for (`namespace/name`), or `default/waypoint`.
pub fn waypoint_target(policy: &Policy) -> layover_envoyfilter::emit::Target {
    let (namespace, gateway) = policy
        .waypoint
        .split_once('/')
        .unwrap_or(("default", "waypoint"));
    layover_envoyfilter::emit::Target {
        namespace: namespace.into(),
        gateway: gateway.into(),
    }
}

/// The base bootstrap becomes a layover waypoint the way a cluster's waypoint does: by the
/// EnvoyFilter `layover manifests` emits ([`layover_envoy_filter`], for the plain listener and,
/// with HBONE, `main_internal`), applied with Istio's semantics together with the user's
/// EnvoyFilters ([`BootstrapOptions::envoy_filters`]), in Istio's priority order, all or
/// nothing.
pub(crate) fn apply_envoy_filters(
    out: &mut Value,
    policy: &Policy,
    opts: &BootstrapOptions,
) -> Result<(), EmitError> {
    let target = waypoint_target(policy);
    let mut filters = Vec::with_capacity(opts.envoy_filters.len() + 1);
    if let Some(filter) = &opts.layover_filter {
        let mut listeners = vec![LISTENER_NAME];
        if opts.hbone.is_some() {
            listeners.push(MAIN_INTERNAL);
        }
        let ef = layover_envoy_filter(filter, opts.cluster_selection, &listeners, &target);
        filters.push(
            layover_envoyfilter::EnvoyFilter::from_value(ef)
                .map_err(|e| EmitError::EnvoyFilter(e.to_string()))?,
        );
    }
    filters.extend(opts.envoy_filters.iter().cloned());
    if filters.is_empty() {
        return Ok(());
    }
    let ctx = layover_envoyfilter::ApplyContext::for_waypoint(&target.namespace, &target.gateway)
        .with_istio(opts.istio);
    layover_envoyfilter::apply(out, &filters, &ctx)
        .map_err(|e| EmitError::EnvoyFilter(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use layover_contract::filter_state::DIRECT_REMOTE_ADDRESS;
    use layover_proto::v1::Policy;
    use serde_json::json;

    use crate::test_support::hcm;
    use crate::{bootstrap_value, BootstrapOptions};

    #[test]
    fn filter_slot_sits_before_router() {
        let opts = BootstrapOptions {
            layover_filter: Some(
                json!({"name": "layover", "typed_config": {"@type": "type.googleapis.com/google.protobuf.Empty"}}),
            ),
            ..Default::default()
        };
        let v = bootstrap_value(&Policy::default(), &[], &opts).unwrap();
        let filters = hcm(&v)["http_filters"].as_array().unwrap();
        assert_eq!(filters.len(), 3);
        // The direct peer is captured before layover reads it (x-forwarded-for cannot forge it).
        assert_eq!(filters[0]["name"], json!("layover.direct_remote_address"));
        assert_eq!(
            filters[0]["typed_config"]["on_request_headers"][0]["object_key"],
            json!(DIRECT_REMOTE_ADDRESS)
        );
        assert_eq!(filters[1]["name"], json!("layover"));
        assert_eq!(filters[2]["name"], json!("envoy.filters.http.router"));
    }
}
