//! Istio's EnvoyFilter semantics on a static bootstrap, case by case. Each row cites the
//! istiod source it mirrors (istio/istio `pilot/pkg/networking/core/envoyfilter/…`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use layover_envoyfilter::{apply, load_str, ApplyContext, EnvoyFilter};
use serde_json::{json, Value};

const HCM: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";

fn hcm(stat: &str, filters: &[&str]) -> Value {
    let http_filters: Vec<Value> = filters
        .iter()
        .map(|n| json!({"name": n, "typed_config": {"@type": format!("type.googleapis.com/{n}"), "k": n}}))
        .collect();
    json!({
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": HCM,
            "stat_prefix": stat,
            "http_filters": http_filters,
            "route_config": {
                "name": "layover",
                "virtual_hosts": [{
                    "name": "layover",
                    "domains": ["*"],
                    "routes": [
                        {"name": "layover", "match": {"prefix": "/"}, "route": {"cluster": "a", "timeout": "0s"}},
                        {"name": "static", "match": {"prefix": "/s"}, "direct_response": {"status": 200}},
                    ],
                }],
            },
        },
    })
}

/// A waypoint-shaped bootstrap: plain listener on 15080, internal `main_internal`, and the
/// HBONE listener on 15008 whose HCM has a router too.
fn base() -> Value {
    json!({
        "static_resources": {
            "listeners": [
                {
                    "name": "layover_http",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": 15080}},
                    "filter_chains": [{"filters": [hcm("layover_http", &["envoy.filters.http.router"])]}],
                },
                {
                    "name": "main_internal",
                    "internal_listener": {},
                    "filter_chains": [{"filters": [hcm("main_internal", &["envoy.filters.http.router"])]}],
                },
                {
                    "name": "connect_terminate",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": 15008}},
                    "filter_chains": [{
                        "name": "hbone",
                        "filter_chain_match": {"transport_protocol": "tls", "application_protocols": ["h2"]},
                        "filters": [hcm("connect_terminate", &["state", "envoy.filters.http.router"])],
                    }],
                },
            ],
            "clusters": [
                {"name": "outbound|9080|v1|reviews.default.svc.cluster.local", "type": "STATIC", "connect_timeout": "10s"},
                {"name": "outbound|9080||ratings.default.svc.cluster.local", "type": "STATIC", "connect_timeout": "10s"},
                {"name": "main_internal", "type": "STATIC", "connect_timeout": "10s",
                 "transport_socket": {"name": "internal", "typed_config": {"@type": "type.googleapis.com/X", "a": 1}}},
            ],
        },
    })
}

fn filters(yaml: &str) -> Vec<EnvoyFilter> {
    load_str("t.yaml", yaml).unwrap_or_else(|e| panic!("{e:?}"))
}

fn ef(patches: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata:\n  name: t\n  namespace: default\nspec:\n  configPatches:\n{patches}"
    )
}

fn names(v: &Value, listener: usize) -> Vec<String> {
    v["static_resources"]["listeners"][listener]["filter_chains"][0]["filters"][0]["typed_config"]
        ["http_filters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect()
}

fn run(yaml: &str) -> Value {
    let mut v = base();
    apply(&mut v, &filters(yaml), &ApplyContext::default()).unwrap_or_else(|e| panic!("{e}"));
    v
}

fn http_patch(op: &str, listener: &str, sub: Option<&str>, name: &str) -> String {
    let sub = sub
        .map(|s| format!("\n            subFilter:\n              name: {s}"))
        .unwrap_or_default();
    format!(
        "  - applyTo: HTTP_FILTER
    match:
      context: SIDECAR_INBOUND
      listener:
        name: {listener}
        filterChain:
          filter:
            name: envoy.filters.network.http_connection_manager{sub}
    patch:
      operation: {op}
      value:
        name: {name}
        typed_config:
          \"@type\": type.googleapis.com/{name}
"
    )
}

// listener_patch.go patchHTTPFilters + util.go insertBeforeFunc/insertAfterFunc.
#[test]
fn http_filter_operations() {
    let r = "envoy.filters.http.router";
    let rows: &[(&str, String, &[&str])] = &[
        (
            "INSERT_BEFORE the router",
            http_patch("INSERT_BEFORE", "layover_http", Some(r), "x"),
            &["x", r],
        ),
        (
            "INSERT_AFTER the router",
            http_patch("INSERT_AFTER", "layover_http", Some(r), "x"),
            &[r, "x"],
        ),
        (
            "INSERT_FIRST",
            http_patch("INSERT_FIRST", "layover_http", Some(r), "x"),
            &["x", r],
        ),
        (
            "INSERT_BEFORE without subFilter inserts first",
            http_patch("INSERT_BEFORE", "layover_http", None, "x"),
            &["x", r],
        ),
        (
            "INSERT_AFTER without subFilter appends",
            http_patch("INSERT_AFTER", "layover_http", None, "x"),
            &[r, "x"],
        ),
        (
            "ADD appends",
            http_patch("ADD", "layover_http", None, "x"),
            &[r, "x"],
        ),
        (
            "REPLACE the matched filter",
            http_patch("REPLACE", "layover_http", Some(r), "x"),
            &["x"],
        ),
    ];
    for (name, patch, want) in rows {
        let v = run(&ef(patch));
        assert_eq!(names(&v, 0), *want, "{name}");
        // The listener match keeps the other connection managers as they were.
        assert_eq!(names(&v, 1), [r], "{name}: main_internal untouched");
        assert_eq!(
            names(&v, 2),
            ["state", r],
            "{name}: connect_terminate untouched"
        );
    }
}

// listener_patch.go: two inserts before the same filter keep their patch order.
#[test]
fn successive_inserts_before_the_router_keep_patch_order() {
    let r = "envoy.filters.http.router";
    let v = run(&ef(&format!(
        "{}{}",
        http_patch("INSERT_BEFORE", "main_internal", Some(r), "a"),
        http_patch("INSERT_BEFORE", "main_internal", Some(r), "b")
    )));
    assert_eq!(names(&v, 1), ["a", "b", r]);
}

// listener_patch.go: REMOVE needs a subFilter match; MERGE merges typed_config with the
// existing type URL (mergeHTTPFilter + MergeAnyWithAny).
#[test]
fn http_filter_remove_and_merge() {
    let v = run(&ef("  - applyTo: HTTP_FILTER
    match:
      listener:
        name: connect_terminate
        filterChain:
          filter:
            name: envoy.filters.network.http_connection_manager
            subFilter:
              name: state
    patch:
      operation: REMOVE
"));
    assert_eq!(names(&v, 2), ["envoy.filters.http.router"]);
    let v = run(&ef("  - applyTo: HTTP_FILTER
    match:
      listener:
        filterChain:
          filter:
            name: envoy.filters.network.http_connection_manager
            subFilter:
              name: state
    patch:
      operation: MERGE
      value:
        typed_config:
          \"@type\": type.googleapis.com/other
          extra: 1
"));
    let f = &v["static_resources"]["listeners"][2]["filter_chains"][0]["filters"][0]
        ["typed_config"]["http_filters"][0];
    assert_eq!(
        f["typed_config"],
        json!({"@type": "type.googleapis.com/state", "k": "state", "extra": 1})
    );
}

// listener_patch.go filterChainMatch: transport protocol and comma-separated ALPN.
#[test]
fn filter_chain_match_fields() {
    let r = "envoy.filters.http.router";
    let patch = |fc: &str| {
        ef(&format!(
            "  - applyTo: HTTP_FILTER
    match:
      listener:
        filterChain:
{fc}
          filter:
            name: envoy.filters.network.http_connection_manager
            subFilter:
              name: {r}
    patch:
      operation: INSERT_BEFORE
      value:
        name: x
"
        ))
    };
    let v = run(&patch(
        "          transportProtocol: tls\n          applicationProtocols: h2",
    ));
    assert_eq!(names(&v, 2), ["state", "x", r]);
    assert_eq!(names(&v, 0), [r]);
    let v = run(&patch("          name: hbone"));
    assert_eq!(names(&v, 2), ["state", "x", r]);
}

// listener_patch.go patchListener (MERGE, REMOVE) and listenerMatch (portNumber).
#[test]
fn listener_merge_and_remove() {
    let v = run(&ef("  - applyTo: LISTENER
    match:
      context: SIDECAR_INBOUND
      listener:
        portNumber: 15080
    patch:
      operation: MERGE
      value:
        per_connection_buffer_limit_bytes: 1024
        filter_chains: [{filters: []}]
"));
    let l = &v["static_resources"]["listeners"][0];
    assert_eq!(l["per_connection_buffer_limit_bytes"], json!(1024));
    assert_eq!(
        l["filter_chains"].as_array().unwrap().len(),
        2,
        "repeated fields append"
    );
    assert!(v["static_resources"]["listeners"][1]
        .get("per_connection_buffer_limit_bytes")
        .is_none());
    let v = run(&ef("  - applyTo: LISTENER
    match:
      listener:
        name: connect_terminate
    patch:
      operation: REMOVE
"));
    assert_eq!(
        v["static_resources"]["listeners"].as_array().unwrap().len(),
        2
    );
}

// cluster_patch.go: clusterMatch parses `direction|port|subset|host`; ADD appends; REMOVE
// drops; a transport_socket of the same name merges its typed config.
#[test]
fn cluster_operations() {
    let v = run(&ef("  - applyTo: CLUSTER
    match:
      cluster:
        service: reviews.default.svc.cluster.local
        subset: v1
        portNumber: 9080
    patch:
      operation: MERGE
      value:
        connect_timeout: 1s
  - applyTo: CLUSTER
    match:
      context: SIDECAR_INBOUND
    patch:
      operation: ADD
      value:
        name: extra
        type: STATIC
  - applyTo: CLUSTER
    match:
      cluster:
        service: \"*.default.svc.cluster.local\"
        subset: \"\"
        portNumber: 9080
        name: outbound|9080||ratings.default.svc.cluster.local
    patch:
      operation: REMOVE
  - applyTo: CLUSTER
    match:
      cluster:
        name: main_internal
    patch:
      operation: MERGE
      value:
        transport_socket:
          name: internal
          typed_config:
            \"@type\": type.googleapis.com/Y
            b: 2
"));
    let c = v["static_resources"]["clusters"].as_array().unwrap();
    let names: Vec<&str> = c.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "outbound|9080|v1|reviews.default.svc.cluster.local",
            "main_internal",
            "extra"
        ]
    );
    assert_eq!(c[0]["connect_timeout"], json!("1s"));
    assert_eq!(
        c[1]["transport_socket"]["typed_config"],
        json!({"@type": "type.googleapis.com/X", "a": 1, "b": 2})
    );
}

// rc_patch.go: ROUTE_CONFIGURATION / VIRTUAL_HOST MERGE, HTTP_ROUTE MERGE (a oneof member
// replaces its siblings) selected by name and action, INSERT_BEFORE a named route.
#[test]
fn route_operations() {
    let v = run(&ef("  - applyTo: ROUTE_CONFIGURATION
    match:
      routeConfiguration:
        name: layover
        portNumber: 15080
    patch:
      operation: MERGE
      value:
        validate_clusters: false
  - applyTo: VIRTUAL_HOST
    match:
      routeConfiguration:
        vhost:
          name: layover
    patch:
      operation: MERGE
      value:
        request_headers_to_add: [{header: {key: a, value: b}}]
  - applyTo: HTTP_ROUTE
    match:
      routeConfiguration:
        vhost:
          route:
            action: ROUTE
    patch:
      operation: MERGE
      value:
        route:
          cluster_header: x-c
  - applyTo: HTTP_ROUTE
    match:
      routeConfiguration:
        vhost:
          route:
            name: static
    patch:
      operation: INSERT_BEFORE
      value:
        name: new
        match: {prefix: /n}
        direct_response: {status: 204}
"));
    let rc0 = &v["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["route_config"];
    assert_eq!(rc0["validate_clusters"], json!(false));
    let vh = &rc0["virtual_hosts"][0];
    assert_eq!(vh["request_headers_to_add"][0]["header"]["key"], json!("a"));
    assert_eq!(
        vh["routes"][0]["route"],
        json!({"timeout": "0s", "cluster_header": "x-c"})
    );
    let route_names: Vec<&str> = vh["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(route_names, ["layover", "new", "static"]);
    // portNumber 15080 selected the plain listener's route configuration only.
    let rc1 = &v["static_resources"]["listeners"][1]["filter_chains"][0]["filters"][0]
        ["typed_config"]["route_config"];
    assert!(rc1.get("validate_clusters").is_none());
}

// pilot/pkg/model push_context.go: lower priority first; equal priority by creation time,
// then name.namespace. Each INSERT_FIRST puts its filter first, so the last applied leads.
#[test]
fn priority_then_creation_time_then_name() {
    let doc = |name: &str, prio: i32, created: &str, filter: &str| {
        format!(
            "---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: {name}
  namespace: default
  creationTimestamp: \"{created}\"
spec:
  priority: {prio}
  configPatches:
{}",
            http_patch("INSERT_FIRST", "layover_http", None, filter)
        )
    };
    let yaml = [
        doc("b", 0, "2024-01-01T00:00:00Z", "b0"),
        doc("a", 0, "2024-01-01T00:00:00Z", "a0"),
        doc("z", 0, "2023-01-01T00:00:00Z", "z0-older"),
        doc("m", -5, "2025-01-01T00:00:00Z", "m-5"),
        doc("c", 10, "2020-01-01T00:00:00Z", "c10"),
    ]
    .concat();
    let v = run(&yaml);
    // Applied: m-5, z0-older, a0, b0, c10 → reversed by INSERT_FIRST.
    assert_eq!(
        names(&v, 0),
        [
            "c10",
            "b0",
            "a0",
            "z0-older",
            "m-5",
            "envoy.filters.http.router"
        ]
    );
}

/// One EnvoyFilter in namespace `$ns` with spec fields `$select` (a YAML flow mapping's
/// inner text: `workloadSelector: …` and/or `targetRefs: …`, or nothing), applied to the
/// waypoint `bookinfo/waypoint` under Istio `$istio`: `$applies` says whether istiod would
/// attach it. One `#[test]` per row, citing the istiod line it encodes.
macro_rules! attachment_test {
    ($name:ident, $istio:expr, $ns:expr, $select:expr, $applies:expr) => {
        #[test]
        fn $name() {
            let yaml = format!(
                "apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {{name: ef, namespace: {}}}
spec:
  {}
  configPatches: [{{applyTo: CLUSTER, match: {{context: SIDECAR_INBOUND}}, patch: {{operation: ADD, value: {{name: added}}}}}}]
",
                $ns, $select
            );
            let mut v = base();
            let ctx = ApplyContext::for_waypoint("bookinfo", "waypoint")
                .with_istio($istio.parse().unwrap());
            let report = apply(&mut v, &filters(&yaml), &ctx).unwrap();
            let added = v["static_resources"]["clusters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["name"] == json!("added"));
            assert_eq!(added, $applies, "{report:?}");
            assert_eq!(report.applied.len(), usize::from($applies), "{report:?}");
            if !$applies {
                assert_eq!(report.skipped.len(), 1, "{report:?}");
            }
        }
    };
}

const GATEWAY_REF: &str =
    "targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: waypoint}]";
const CLASS_REF: &str =
    "targetRefs: [{group: gateway.networking.k8s.io, kind: GatewayClass, name: istio-waypoint}]";
const SERVICE_REF: &str = "targetRefs: [{group: \"\", kind: Service, name: reviews}]";
const SELECTOR: &str =
    "workloadSelector: {labels: {gateway.networking.k8s.io/gateway-name: waypoint}}";
const OTHER_SELECTOR: &str =
    "workloadSelector: {labels: {gateway.networking.k8s.io/gateway-name: other}}";

// From 1.27.0 (pinned 1.30.3): pilot/pkg/model/policyattachment.go:123-201 @ 1.30.3 through
// push_context.go:2358-2367 (getMatchedEnvoyFilters → ShouldAttachPolicy).
// :184-197 — a Gateway targetRef in the waypoint's namespace attaches.
attachment_test!(
    pinned_gateway_target_attaches,
    "1.30.3",
    "bookinfo",
    GATEWAY_REF,
    true
);
// :139-148 — "waypoints never use selector".
attachment_test!(
    pinned_selector_is_ignored,
    "1.30.3",
    "bookinfo",
    SELECTOR,
    false
);
// :139-148 — no targetRefs at all: not attached either.
attachment_test!(
    pinned_no_selection_is_ignored,
    "1.30.3",
    "bookinfo",
    "",
    false
);
// :186-189 — a Gateway targetRef from another namespace never matches.
attachment_test!(
    pinned_gateway_target_from_the_root_namespace_is_ignored,
    "1.30.3",
    "istio-system",
    GATEWAY_REF,
    false
);
// :176-182 — GatewayClass istio-waypoint, from the root namespace only.
attachment_test!(
    pinned_gateway_class_from_the_root_namespace_attaches,
    "1.30.3",
    "istio-system",
    CLASS_REF,
    true
);
attachment_test!(
    pinned_gateway_class_from_the_waypoint_namespace_is_ignored,
    "1.30.3",
    "bookinfo",
    CLASS_REF,
    false
);
// :155-174 — Service targets match only the matcher's services, which getMatchedEnvoyFilters
// never passes.
attachment_test!(
    pinned_service_target_is_ignored,
    "1.30.3",
    "bookinfo",
    SERVICE_REF,
    false
);
// The root-namespace GatewayClass rule needs WithRootNamespace, added to
// getMatchedEnvoyFilters in 1.27.4 (push_context.go:2350 @ 1.27.4; absent @ 1.27.3).
attachment_test!(
    istio_1_27_3_gateway_class_is_ignored,
    "1.27.3",
    "istio-system",
    CLASS_REF,
    false
);
attachment_test!(
    istio_1_27_4_gateway_class_attaches,
    "1.27.4",
    "istio-system",
    CLASS_REF,
    true
);
// Up to 1.26.x: push_context.go:2334-2342 @ 1.26.8 — workloadSelector only.
attachment_test!(
    istio_1_26_selector_attaches,
    "1.26.8",
    "bookinfo",
    SELECTOR,
    true
);
attachment_test!(
    istio_1_26_other_selector_is_ignored,
    "1.26.8",
    "bookinfo",
    OTHER_SELECTOR,
    false
);
// targetRefs is not read: a targetRefs-only object selects every proxy of its namespace.
attachment_test!(
    istio_1_26_target_refs_only_lands_anyway,
    "1.26.8",
    "bookinfo",
    CLASS_REF,
    true
);
attachment_test!(
    istio_1_26_root_namespace_without_selector_attaches,
    "1.26.8",
    "istio-system",
    "",
    true
);
// Any version: only the root namespace and the waypoint's own namespace are consulted
// (push_context.go EnvoyFilters).
attachment_test!(other_namespace_is_ignored, "1.26.8", "elsewhere", "", false);

// MERGE_AND_REPLACE_LIST is not in the EnvoyFilter API of Istio 1.30.3 (its istio/api pin ends
// Patch.Operation at REPLACE); istiod of that release would refuse the object.
#[test]
fn merge_and_replace_list_is_refused_under_the_pinned_release() {
    let fs = filters(&ef("  - applyTo: CLUSTER
    match: {cluster: {name: main_internal}}
    patch: {operation: MERGE_AND_REPLACE_LIST, value: {connect_timeout: 2s}}
"));
    let mut v = base();
    let before = v.clone();
    let e = apply(&mut v, &fs, &ApplyContext::default()).unwrap_err();
    assert_eq!(e.path, "spec.configPatches[0].patch.operation");
    assert!(e.to_string().contains("Istio 1.30.3"), "{e}");
    assert_eq!(v, before, "nothing applied");
}

// An EnvoyFilter set that changes nothing it does not match leaves the bootstrap byte for byte
// as it was (no empty lists added to objects no patch touched).
#[test]
fn untouched_objects_keep_their_shape() {
    let mut v = base();
    if let Some(hcm) =
        v.pointer_mut("/static_resources/listeners/2/filter_chains/0/filters/0/typed_config")
    {
        hcm.as_object_mut().unwrap().remove("http_filters");
        hcm.as_object_mut().unwrap().remove("route_config");
    }
    let before = v.clone();
    let fs = filters(&ef("  - applyTo: CLUSTER
    match: {cluster: {name: main_internal}}
    patch: {operation: MERGE, value: {connect_timeout: 2s}}
"));
    apply(&mut v, &fs, &ApplyContext::default()).unwrap();
    v["static_resources"]["clusters"][2]["connect_timeout"] = json!("10s");
    assert_eq!(v, before);
}

/// One patch (a `configPatches` entry, YAML) applied to [`base`] as istiod's own waypoint
/// would take it: route configuration `layover` stands for a service's chain, built without
/// route patches when `$unpatched` (a service with a VirtualService); `$applies` says whether
/// istiod applies the patch. One `#[test]` per row, citing the istiod line it encodes.
macro_rules! istiod_waypoint_rule {
    ($name:ident, $unpatched:expr, $patch:expr, $applies:expr) => {
        #[test]
        fn $name() {
            let rules = layover_envoyfilter::IstiodWaypointRules {
                unpatched_route_configurations: if $unpatched {
                    ["layover".to_string()].into()
                } else {
                    Default::default()
                },
            };
            let ctx = ApplyContext::default().with_istiod_waypoint(rules);
            let mut v = base();
            let result = apply(&mut v, &filters(&ef($patch)), &ctx);
            match result {
                Ok(_) => assert!($applies, "applied, but istiod would not"),
                Err(e) => {
                    assert!(!$applies, "{e}");
                    assert!(e.to_string().contains("selects nothing"), "{e}");
                }
            }
        }
    };
}

const ROUTE_MERGE: &str = "  - applyTo: HTTP_ROUTE
    match: {context: SIDECAR_INBOUND, routeConfiguration: {vhost: {name: layover, route: {name: layover}}}}
    patch: {operation: MERGE, value: {route: {timeout: 5s}}}
";

// httproute.go:139-140 @ 1.30.3: route patches run only for services without a VirtualService.
istiod_waypoint_rule!(
    istiod_route_patch_skips_virtualservice_chains,
    true,
    ROUTE_MERGE,
    false
);
istiod_waypoint_rule!(
    istiod_route_patch_reaches_default_route_chains,
    false,
    ROUTE_MERGE,
    true
);
// cluster.go:362-364 @ 1.30.3: the waypoint's own clusters are never merged.
istiod_waypoint_rule!(
    istiod_cluster_merge_never_reaches_waypoint_clusters,
    false,
    "  - applyTo: CLUSTER
    match: {context: SIDECAR_INBOUND, cluster: {name: main_internal}}
    patch: {operation: MERGE, value: {connect_timeout: 2s}}
",
    false
);
// cluster.go:349 @ 1.30.3: outbound clusters are patched with SIDECAR_OUTBOUND.
istiod_waypoint_rule!(
    istiod_cluster_merge_reaches_outbound_clusters_as_sidecar_outbound,
    false,
    "  - applyTo: CLUSTER
    match: {context: SIDECAR_OUTBOUND, cluster: {service: ratings.default.svc.cluster.local}}
    patch: {operation: MERGE, value: {connect_timeout: 2s}}
",
    true
);
istiod_waypoint_rule!(
    istiod_cluster_merge_as_sidecar_inbound_misses_outbound_clusters,
    false,
    "  - applyTo: CLUSTER
    match: {context: SIDECAR_INBOUND, cluster: {service: ratings.default.svc.cluster.local}}
    patch: {operation: MERGE, value: {connect_timeout: 2s}}
",
    false
);
// envoyfilter/cluster_patch.go:130-149 @ 1.30.3: an ANY-context ADD is not inserted for
// SIDECAR_INBOUND, the only inserted clusters of a waypoint (cluster.go:364).
istiod_waypoint_rule!(
    istiod_cluster_add_any_context_is_not_inserted,
    false,
    "  - applyTo: CLUSTER
    match: {context: ANY}
    patch: {operation: ADD, value: {name: extra}}
",
    false
);
istiod_waypoint_rule!(
    istiod_cluster_add_sidecar_inbound_is_inserted,
    false,
    "  - applyTo: CLUSTER
    match: {context: SIDECAR_INBOUND}
    patch: {operation: ADD, value: {name: extra}}
",
    true
);
