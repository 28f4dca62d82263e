//! EnvoyFilter objects drive the local waypoint, for both builds: the layover filter itself
//! gets into Envoy through the EnvoyFilter `layover manifests` emits (every test of the suite
//! starts that way), and user-written EnvoyFilters in the same YAML patch the waypoint with
//! Istio's semantics (istio/istio `pilot/pkg/networking/core/envoyfilter/`), visible through
//! real requests.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use layover_integration::waypoint::{app_yaml, compile_yaml, policy_json, FilterBuild, Waypoint};
use layover_integration::{Backend, Echo, HttpClient, Launch};

macro_rules! both_builds {
    ($($(#[$attr:meta])* async fn $name:ident($build:ident: FilterBuild) $body:block)*) => {
        $($(#[$attr])* async fn $name($build: FilterBuild) $body)*
        per_build!(wasm, FilterBuild::Wasm, $($name)*);
        per_build!(dynamic_module, FilterBuild::DynamicModule, $($name)*);
    };
}

macro_rules! per_build {
    ($module:ident, $build:expr, $($name:ident)*) => {
        mod $module {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($build).await;
                }
            )*
        }
    };
}

/// User EnvoyFilters of the kinds people write for waypoints:
/// - HTTP_FILTER INSERT_BEFORE `layover` (a header_mutation filter: the request header it adds
///   must be seen by layover's routing, proving it runs before layover);
/// - HTTP_FILTER INSERT_AFTER `layover` (a response header);
/// - VIRTUAL_HOST MERGE (`response_headers_to_add` on the waypoint's virtual host);
/// - LISTENER MERGE (`per_connection_buffer_limit_bytes`, checked in the admin config dump).
///
/// Istio: https://istio.io/latest/docs/reference/config/networking/envoy-filter/
const USER_FILTERS: &str = r#"
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: user-patches
  namespace: default
spec:
  # Istio 1.27+ attaches EnvoyFilters to a waypoint only through targetRefs
  # (pilot/pkg/model/policyattachment.go:139-148 @ 1.30.3).
  targetRefs:
  - {group: gateway.networking.k8s.io, kind: Gateway, name: waypoint}
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: SIDECAR_INBOUND
      listener:
        filterChain:
          filter:
            name: envoy.filters.network.http_connection_manager
            subFilter:
              name: layover
    patch:
      operation: INSERT_BEFORE
      value:
        name: user.canary-header
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation
          mutations:
            request_mutations:
            - append:
                header: {key: x-canary, value: "yes"}
                append_action: OVERWRITE_IF_EXISTS_OR_ADD
  - applyTo: HTTP_FILTER
    match:
      listener:
        filterChain:
          filter:
            name: envoy.filters.network.http_connection_manager
            subFilter:
              name: layover
    patch:
      operation: INSERT_AFTER
      value:
        name: user.response-header
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation
          mutations:
            response_mutations:
            - append: {header: {key: x-after-layover, value: "1"}}
  - applyTo: VIRTUAL_HOST
    match:
      context: SIDECAR_INBOUND
      routeConfiguration:
        vhost:
          name: layover
    patch:
      operation: MERGE
      value:
        response_headers_to_add:
        - header: {key: x-vhost-merged, value: "1"}
  - applyTo: LISTENER
    match:
      listener:
        name: layover_http
    patch:
      operation: MERGE
      value:
        per_connection_buffer_limit_bytes: 65536
"#;

/// A VirtualService that routes on the header the user's filter adds: only if that filter
/// runs before layover (INSERT_BEFORE) does the request reach v2.
const CANARY_VS: &str = r#"
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match:
    - headers:
        x-canary: {exact: "yes"}
    route:
    - destination: {host: reviews, subset: v2}
  - route:
    - destination: {host: reviews, subset: v1}
"#;

both_builds! {
    async fn user_envoy_filters_patch_the_waypoint(build: FilterBuild) {
        let v1 = Backend::start("reviews-v1", "v1").await.unwrap();
        let v2 = Backend::start("reviews-v2", "v2").await.unwrap();
        let yaml = format!("{}{CANARY_VS}{USER_FILTERS}", app_yaml("reviews", &[&v1, &v2]));
        let wp = Waypoint::start(build, &yaml).await.unwrap_or_else(|e| panic!("[{}] {e}", build.name()));

        let reply = wp.get("reviews:9080", "/r").await.unwrap();
        assert_eq!(reply.status, 200, "[{}] {}", build.name(), reply.text());
        let echo: Echo = reply.json().unwrap();
        // INSERT_BEFORE layover: the header exists when layover routes, so v2 is chosen.
        assert_eq!(echo.subset, "v2", "[{}] routed before the user filter ran", build.name());
        assert_eq!(echo.headers.get("x-canary").map(String::as_str), Some("yes"));
        // INSERT_AFTER layover and VIRTUAL_HOST MERGE: both response headers arrive.
        assert_eq!(reply.header("x-after-layover"), Some("1"), "[{}]", build.name());
        assert_eq!(reply.header("x-vhost-merged"), Some("1"), "[{}]", build.name());
        assert_eq!(v1.request_count(), 0);

        // LISTENER MERGE: the setting is in Envoy's running configuration.
        let dump = HttpClient::http1()
            .get(&wp.envoy.admin_url("/config_dump?resource=static_listeners"))
            .await
            .unwrap()
            .text();
        assert!(
            dump.contains("\"per_connection_buffer_limit_bytes\": 65536"),
            "[{}] listener merge missing from the config dump",
            build.name()
        );
    }

    async fn without_the_user_filters_the_same_request_goes_to_v1(build: FilterBuild) {
        // The control: the routing above is the user filter's doing, not the default.
        let v1 = Backend::start("reviews-v1", "v1").await.unwrap();
        let v2 = Backend::start("reviews-v2", "v2").await.unwrap();
        let yaml = format!("{}{CANARY_VS}", app_yaml("reviews", &[&v1, &v2]));
        let wp = Waypoint::start(build, &yaml).await.unwrap();
        let reply = wp.get("reviews:9080", "/r").await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
        let echo: Echo = reply.json().unwrap();
        assert_eq!(echo.subset, "v1");
        assert_eq!(reply.header("x-after-layover"), None);
        assert_eq!(v2.request_count(), 0);
    }
}

/// A user EnvoyFilter whose match selects nothing is refused with the object and field named,
/// and no bootstrap is produced (istiod would skip it silently; layover is stricter).
#[test]
fn a_user_filter_that_matches_nothing_refuses_the_bootstrap() {
    let yaml = format!(
        "{}{}",
        layover_integration::waypoint::service_yaml("reviews"),
        USER_FILTERS.replace("name: layover_http", "name: no_such_listener")
    );
    let compiled = compile_yaml(&yaml).unwrap();
    let filters = layover_envoyfilter::load_str("test.yaml", &yaml).unwrap();
    let launch = Launch {
        dir: std::env::temp_dir(),
        access_log: "/dev/null".into(),
    };
    // The filter entry's content does not matter here: the bootstrap is refused before Envoy.
    let filter = layover_bootstrap::dynamic_module_filter(&policy_json(&compiled).unwrap());
    let err = layover_integration::waypoint::waypoint_bootstrap_with(
        &compiled, filter, &filters, &launch,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("test.yaml: document 2 (EnvoyFilter default/user-patches): spec.configPatches[3].match: the match selects nothing")
            && err.contains("listener no_such_listener"),
        "{err}"
    );
}
