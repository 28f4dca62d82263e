//! Bad EnvoyFilter input: a clear error naming the object and the field, and nothing applied.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use layover_envoyfilter::{apply, load_str, ApplyContext};
use serde_json::json;

fn base() -> serde_json::Value {
    json!({"static_resources": {"listeners": [{
        "name": "layover_http",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 15080}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {"@type": "hcm", "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": "r"}}]},
        }]}],
    }], "clusters": []}})
}

fn doc(patches: &str) -> String {
    format!("# comment\n---\napiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata:\n  name: bad\n  namespace: ns\nspec:\n  configPatches:\n{patches}")
}

/// Loading fails with exactly one error; returns its message.
fn load_error(patches: &str) -> String {
    let errs = load_str("f.yaml", &doc(patches)).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    errs[0].to_string()
}

/// Loading succeeds, applying fails; the bootstrap is unchanged. Returns the message.
fn apply_error(patches: &str) -> String {
    let filters = load_str("f.yaml", &doc(patches)).unwrap_or_else(|e| panic!("{e:?}"));
    let mut v = base();
    let before = v.clone();
    let e = apply(&mut v, &filters, &ApplyContext::default()).unwrap_err();
    assert_eq!(v, before, "nothing applied");
    e.to_string()
}

// istio/istio pkg/config/validation/envoyfilter/envoyfilter.go rejects these too.
#[test]
fn invalid_fields_name_object_and_field() {
    let rows: &[(&str, &str, &str)] = &[
        (
            "unknown operation",
            "  - applyTo: HTTP_FILTER\n    patch:\n      operation: PREPEND\n      value: {name: x}\n",
            "f.yaml: document 1 (EnvoyFilter ns/bad): spec.configPatches[0].patch.operation: unknown value `PREPEND` (expected one of MERGE, ADD, REMOVE, INSERT_BEFORE, INSERT_AFTER, INSERT_FIRST, REPLACE, MERGE_AND_REPLACE_LIST)",
        ),
        (
            "unknown applyTo",
            "  - applyTo: HTTP_FILTERS\n    patch:\n      operation: ADD\n      value: {name: x}\n",
            "spec.configPatches[0].applyTo: unknown value `HTTP_FILTERS`",
        ),
        (
            "unknown context",
            "  - applyTo: HTTP_FILTER\n    match: {context: INBOUND}\n    patch:\n      operation: ADD\n      value: {name: x}\n",
            "spec.configPatches[0].match.context: unknown value `INBOUND`",
        ),
        (
            "misspelt match field",
            "  - applyTo: HTTP_FILTER\n    match: {listner: {name: x}}\n    patch:\n      operation: ADD\n      value: {name: x}\n",
            "spec.configPatches[0].match.listner: unknown field `listner`",
        ),
        (
            "value of the wrong type",
            "  - applyTo: HTTP_FILTER\n    patch:\n      operation: ADD\n      value: envoy.filters.http.lua\n",
            "spec.configPatches[0].patch.value: expected an object (an Envoy HTTP_FILTER in proto JSON), found a string",
        ),
        (
            "typed_config without @type",
            "  - applyTo: HTTP_FILTER\n    patch:\n      operation: ADD\n      value: {name: x, typed_config: {inline_code: y}}\n",
            "spec.configPatches[0].patch.value.typed_config.@type: required",
        ),
        (
            "unnamed filter",
            "  - applyTo: HTTP_FILTER\n    patch:\n      operation: INSERT_FIRST\n      value: {typed_config: {\"@type\": t}}\n",
            "spec.configPatches[0].patch.value.name: required",
        ),
        (
            "operation that does not exist for the object",
            "  - applyTo: ROUTE_CONFIGURATION\n    patch:\n      operation: REMOVE\n",
            "spec.configPatches[0].patch.operation: REMOVE is not an operation on ROUTE_CONFIGURATION",
        ),
        (
            "match of the wrong class",
            "  - applyTo: CLUSTER\n    match: {listener: {name: x}}\n    patch:\n      operation: MERGE\n      value: {}\n",
            "spec.configPatches[0].match.listener: a listener match cannot select CLUSTER objects",
        ),
        (
            "missing value",
            "  - applyTo: CLUSTER\n    patch:\n      operation: ADD\n",
            "spec.configPatches[0].patch.value: required",
        ),
    ];
    for (name, patch, want) in rows {
        let msg = load_error(patch);
        assert!(msg.contains(want), "{name}: {msg}\nwant: {want}");
        assert!(msg.contains("EnvoyFilter ns/bad"), "{name}: {msg}");
    }
}

#[test]
fn a_match_that_matches_nothing_is_an_error_and_nothing_is_applied() {
    let rows: &[(&str, &str, &str)] = &[
        (
            "unknown listener",
            "  - applyTo: CLUSTER\n    patch: {operation: ADD, value: {name: ok}}\n  - applyTo: HTTP_FILTER\n    match:\n      listener:\n        name: nope\n        filterChain: {filter: {name: envoy.filters.network.http_connection_manager, subFilter: {name: envoy.filters.http.router}}}\n    patch:\n      operation: INSERT_BEFORE\n      value: {name: x}\n",
            "EnvoyFilter ns/bad): spec.configPatches[1].match: the match selects nothing in the waypoint configuration (INSERT_BEFORE HTTP_FILTER; listener nope; filter envoy.filters.network.http_connection_manager; subFilter envoy.filters.http.router)",
        ),
        (
            "gateway context",
            "  - applyTo: CLUSTER\n    match: {context: GATEWAY}\n    patch: {operation: ADD, value: {name: x}}\n",
            "context GATEWAY never applies to a waypoint",
        ),
        (
            "unknown subFilter for REMOVE",
            "  - applyTo: HTTP_FILTER\n    match: {listener: {filterChain: {filter: {name: envoy.filters.network.http_connection_manager, subFilter: {name: envoy.filters.http.lua}}}}}\n    patch: {operation: REMOVE}\n",
            "spec.configPatches[0].match: the match selects nothing",
        ),
        (
            "ANY listener ADD",
            "  - applyTo: LISTENER\n    patch: {operation: ADD, value: {name: l}}\n",
            "set context SIDECAR_INBOUND",
        ),
    ];
    for (name, patch, want) in rows {
        let msg = apply_error(patch);
        assert!(msg.contains(want), "{name}: {msg}\nwant: {want}");
    }
}

#[test]
fn a_value_that_does_not_merge_names_the_field() {
    let msg = apply_error(
        "  - applyTo: LISTENER\n    patch:\n      operation: MERGE\n      value:\n        address: 127.0.0.1\n",
    );
    assert!(
        msg.contains(
            "spec.configPatches[0].patch.value.address: expected an object, found a string"
        ),
        "{msg}"
    );
}
