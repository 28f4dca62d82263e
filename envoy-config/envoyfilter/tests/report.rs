//! `apply_with_report`: the same passes as `apply`, reporting where each patch applied and
//! going on past a patch that matches nothing (as istiod does).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use layover_envoyfilter::{apply, apply_with_report, load_str, ApplyContext, Reason};
use serde_json::{json, Value};

fn base() -> Value {
    json!({
        "static_resources": {
            "listeners": [{
                "name": "main_internal",
                "internal_listener": {},
                "filter_chains": [{
                    "name": "inbound-vip|9080|http|reviews.default.svc.cluster.local",
                    "filters": [{
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                            "stat_prefix": "s",
                            "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/R"}}],
                            "route_config": {
                                "name": "rc",
                                "virtual_hosts": [{"name": "inbound|http|9080", "domains": ["*"],
                                    "routes": [{"name": "default", "match": {"prefix": "/"}, "route": {"cluster": "a"}}]}],
                            },
                        },
                    }],
                }],
            }],
            "clusters": [{"name": "a", "type": "STATIC", "connect_timeout": "1s"}],
        },
    })
}

const PATCHES: &str = "apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: t, namespace: default}
spec:
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      listener:
        name: main_internal
        filterChain: {filter: {name: envoy.filters.network.http_connection_manager, subFilter: {name: envoy.filters.http.router}}}
    patch:
      operation: INSERT_BEFORE
      value: {name: x, typed_config: {\"@type\": type.googleapis.com/X}}
  - applyTo: HTTP_ROUTE
    match:
      routeConfiguration: {vhost: {name: \"inbound|http|9080\", route: {name: default}}}
    patch:
      operation: MERGE
      value: {route: {timeout: 5s}}
  - applyTo: CLUSTER
    match: {cluster: {name: a}}
    patch:
      operation: MERGE
      value: {connect_timeout: 2s}
  - applyTo: CLUSTER
    match: {cluster: {name: typo}}
    patch:
      operation: MERGE
      value: {connect_timeout: 2s}
";

#[test]
fn reports_where_each_patch_applied_and_goes_on_past_no_match() {
    let filters = load_str("t.yaml", PATCHES).unwrap();
    let ctx = ApplyContext::default();
    let before = base();
    let (out, report) = apply_with_report(&before, &filters, &ctx).unwrap();
    assert_eq!(before, base(), "the input is not changed");
    assert_eq!(report.applied.len(), 1);
    let p = &report.applied[0].patches;
    let chain = "listener main_internal / chain inbound-vip|9080|http|reviews.default.svc.cluster.local / filter envoy.filters.network.http_connection_manager";
    assert_eq!(
        p[0].applied_at,
        [format!(
            "{chain} / http filter envoy.filters.http.router (inserted before)"
        )]
    );
    assert_eq!(
        p[1].applied_at,
        [format!(
            "{chain} / route configuration rc / virtual host inbound|http|9080 / route default"
        )]
    );
    assert_eq!(p[2].applied_at, ["cluster a"]);
    assert!(p[3].applied_at.is_empty());
    assert_eq!(
        p[3].matched_nothing.as_deref(),
        Some("MERGE CLUSTER; cluster typo")
    );
    assert_eq!(report.unmatched().count(), 1);
    // The patches that matched were applied.
    let hcm =
        &out["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
    assert_eq!(hcm["http_filters"][0]["name"], "x");
    assert_eq!(
        hcm["route_config"]["virtual_hosts"][0]["routes"][0]["route"]["timeout"],
        "5s"
    );
    assert_eq!(
        out["static_resources"]["clusters"][0]["connect_timeout"],
        "2s"
    );

    // apply() keeps refusing the same input, and leaves the bootstrap alone.
    let mut v = base();
    let e = apply(&mut v, &filters, &ctx).unwrap_err();
    assert!(matches!(e.reason, Reason::MatchesNothing(_)), "{e}");
    assert_eq!(e.path, "spec.configPatches[3].match");
    assert_eq!(v, base());
}

#[test]
fn skipped_filters_are_reported_with_the_reason() {
    let filters = load_str("t.yaml", PATCHES).unwrap();
    let ctx = ApplyContext::for_waypoint("default", "waypoint");
    let (out, report) = apply_with_report(&base(), &filters, &ctx).unwrap();
    assert_eq!(out, base());
    assert!(report.applied.is_empty());
    assert_eq!(report.skipped.len(), 1);
    assert!(
        report.skipped[0].reason.contains("targetRefs"),
        "{}",
        report.skipped[0].reason
    );
    assert_eq!(report.waypoint.as_deref(), Some("default/waypoint"));
    assert_eq!(report.istio, "1.30.3");
}

#[test]
fn a_value_that_does_not_merge_is_still_an_error() {
    let yaml = "apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: t, namespace: default}
spec:
  configPatches:
  - applyTo: CLUSTER
    match: {cluster: {name: a}}
    patch:
      operation: MERGE
      value: {connect_timeout: {seconds: 1}}
";
    let filters = load_str("t.yaml", yaml).unwrap();
    let e = apply_with_report(&base(), &filters, &ApplyContext::default()).unwrap_err();
    assert!(
        e.path.starts_with("spec.configPatches[0].patch.value"),
        "{e}"
    );
}
