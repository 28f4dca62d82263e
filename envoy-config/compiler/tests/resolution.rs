//! Table-driven tests of the resolution rules. Each case cites the Istio / Gateway API source
//! of the behaviour it pins.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use layover_compiler::{CompileOptions, Compiled};
use layover_proto::v1 as pb;

const R: &str = "reviews.default.svc.cluster.local";

/// One `#[test]` per row, like istio/ztunnel's `rbac_test!` (src/rbac.rs): the row's title and
/// citation become the test's doc, `yaml` is compiled on top of `BASE`, and `check` runs on the
/// result, so `cargo test --test resolution <name>` runs one row and a failure shows its own
/// assertion.
macro_rules! case {
    (
        $name:ident,
        $title:literal,
        cite: $cite:literal,
        yaml: $yaml:expr,
        check: |$c:ident| $check:expr $(,)?
    ) => {
        #[doc = $title]
        #[doc = ""]
        #[doc = concat!("Source: ", $cite)]
        #[test]
        fn $name() {
            let compiled = compile($yaml);
            let $c: &Compiled = &compiled;
            $check;
        }
    };
}

case! {
    short_host_resolves_with_the_objects_namespace,
    "short host resolves with the object's namespace",
    cite: "istiod model.ResolveShortnameToFQDN (pilot/pkg/model/virtualservice.go)",
    yaml: r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews}}]
"#,
    check: |c| {
        let s = reviews(c);
        assert_eq!(s.route_source, pb::RouteSource::VirtualService as i32);
        let d = &forward(&s.routes[0]).destinations[0];
        assert_eq!(d.host, R);
        assert_eq!(d.cluster, format!("inbound-vip|9080|http|{R}"));
        assert_eq!(d.weight, 100);
    },
}

case! {
    destinations_of_other_services_are_outbound_clusters,
    "a served service's destinations: inbound-vip for services the waypoint serves, outbound for the others",
    cite: "istiod getWaypointDestinationCluster (pilot/pkg/networking/core/listener_waypoint.go:1259-1294 @ 1.30.3): TrafficDirectionOutbound and the plain subset when the waypoint is not responsible for the service",
    yaml: r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: default}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
---
apiVersion: v1
kind: Service
metadata: {name: front, namespace: default, labels: {istio.io/use-waypoint: waypoint}}
spec:
  clusterIP: 10.0.0.9
  selector: {app: front}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: front, namespace: default}
spec:
  hosts: [front]
  http:
  - match: [{uri: {prefix: /self}}]
    route: [{destination: {host: front}}]
  - route: [{destination: {host: reviews}}]
"#,
    check: |c| {
        let s = svc(c, "front.default.svc.cluster.local");
        assert_eq!(s.ports[0].cluster, "inbound-vip|9080|http|front.default.svc.cluster.local");
        assert_eq!(
            forward(&s.routes[0]).destinations[0].cluster,
            "inbound-vip|9080|http|front.default.svc.cluster.local"
        );
        assert_eq!(
            forward(&s.routes[1]).destinations[0].cluster,
            format!("outbound|9080||{R}")
        );
    },
}

case! {
    objects_without_metadata_namespace_are_in_default,
    "objects without metadata.namespace are in default",
    cite: "kubectl apply without -n uses namespace default",
    yaml: r#"
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews}}]
"#,
    check: |c| {
        assert_eq!(reviews(c).routes.len(), 1);
        assert_eq!(reviews(c).routes[0].origin.as_ref().unwrap().namespace, "default");
    },
}

case! {
    a_short_host_in_another_namespace_names_another_service,
    "a short host in another namespace names another service",
    cite: "ResolveShortnameToFQDN uses the VirtualService's namespace",
    yaml: r#"
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: reviews, namespace: other}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews}}]
"#,
    check: |c| {
        assert_eq!(reviews(c).route_source, pb::RouteSource::Default as i32);
        assert!(notices(c).contains("match no service this waypoint serves"), "{}", notices(c));
    },
}

case! {
    fqdn_hosts_are_kept,
    "FQDN hosts are kept",
    cite: "ResolveShortnameToFQDN: names with a dot are not expanded",
    yaml: r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r, namespace: other}
spec:
  hosts: [reviews.default.svc.cluster.local]
  http:
  - route: [{destination: {host: ratings.default.svc.cluster.local}}]
"#,
    check: |c| {
        // The VS is in namespace "other": waypoints use only VSs from the service's or
        // the waypoint's namespace (listener_waypoint.go getVirtualServiceForWaypoint).
        assert_eq!(reviews(c).route_source, pb::RouteSource::Default as i32);
        assert!(notices(c).contains("only VirtualServices in the service's namespace"));
    },
}

case! {
    no_waypoint_gateway_every_service_is_served_policy_waypoint_empty,
    "no waypoint Gateway: every service is served, Policy.waypoint empty",
    cite: "layover schema: Policy.waypoint comment",
    yaml: "",
    check: |c| {
        assert_eq!(c.policy.waypoint, "");
        assert_eq!(c.policy.services.len(), 3);
        assert_eq!(c.policy.schema_version, 1);
    },
}

case! {
    namespace_label_istio_io_use_waypoint_selects_services,
    "namespace label istio.io/use-waypoint selects services",
    cite: "istio.io ambient/usage/waypoint: 'Configure a namespace to use a waypoint'",
    yaml: r#"
apiVersion: v1
kind: Namespace
metadata: {name: default, labels: {istio.io/use-waypoint: waypoint}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: default}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
"#,
    check: |c| {
        assert_eq!(c.policy.waypoint, "default/waypoint");
        assert_eq!(c.policy.services.len(), 3);
    },
}

case! {
    service_label_overrides_the_namespace_label_none_opts_out,
    "service label overrides the namespace label (none opts out)",
    cite: "istio.io ambient/usage/waypoint: service label takes precedence; value 'none'",
    yaml: r#"
apiVersion: v1
kind: Namespace
metadata: {name: default, labels: {istio.io/use-waypoint: waypoint}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: default}
spec: {gatewayClassName: istio-waypoint}
---
apiVersion: v1
kind: Service
metadata: {name: optout, namespace: default, labels: {istio.io/use-waypoint: none}}
spec: {ports: [{port: 80, name: http}]}
---
apiVersion: v1
kind: Service
metadata: {name: elsewhere, namespace: default, labels: {istio.io/use-waypoint: other-waypoint}}
spec: {ports: [{port: 80, name: http}]}
"#,
    check: |c| {
        assert!(has_svc(c, R));
        assert!(!has_svc(c, "optout.default.svc.cluster.local"));
        assert!(!has_svc(c, "elsewhere.default.svc.cluster.local"));
    },
}

case! {
    only_labelled_services_are_served,
    "only labelled services are served",
    cite: "istio.io ambient/usage/waypoint: 'Configure a service to use a specific waypoint'",
    yaml: r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: wp, namespace: default}
spec: {gatewayClassName: istio-waypoint}
---
apiVersion: v1
kind: Service
metadata: {name: labelled, namespace: default, labels: {istio.io/use-waypoint: wp}}
spec: {ports: [{port: 80, name: http}]}
"#,
    check: |c| {
        assert_eq!(c.policy.services.len(), 1);
        assert_eq!(c.policy.services[0].hostname, "labelled.default.svc.cluster.local");
        assert_eq!(c.policy.services[0].origin, "Service default/labelled");
    },
}

case! {
    istio_io_use_waypoint_namespace_points_at_a_waypoint_in_another_namespace,
    "istio.io/use-waypoint-namespace points at a waypoint in another namespace",
    cite: "pilot/pkg/serviceregistry/ambient/waypoints.go:200-218 and :441-445 @ 1.30.3 (from: All)",
    yaml: r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: shared, namespace: infra}
spec:
  gatewayClassName: istio-waypoint
  listeners:
  - {name: mesh, port: 15008, protocol: HBONE, allowedRoutes: {namespaces: {from: All}}}
---
apiVersion: v1
kind: Service
metadata:
  name: x
  namespace: default
  labels: {istio.io/use-waypoint: shared, istio.io/use-waypoint-namespace: infra}
spec: {ports: [{port: 80, name: http}]}
"#,
    check: |c| {
        assert_eq!(c.policy.waypoint, "infra/shared");
        assert_eq!(c.policy.services.len(), 1);
    },
}

case! {
    another_namespaces_waypoint_without_allowed_routes_is_refused,
    "a waypoint in another namespace admits only its own namespace unless allowedRoutes says otherwise",
    cite: "pilot/pkg/serviceregistry/ambient/waypoints.go:120-121, :497-502, :524-528 @ 1.30.3 (default from: Same)",
    yaml: r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: shared, namespace: infra}
spec: {gatewayClassName: istio-waypoint}
---
apiVersion: v1
kind: Service
metadata:
  name: x
  namespace: default
  labels: {istio.io/use-waypoint: shared, istio.io/use-waypoint-namespace: infra}
spec: {ports: [{port: 80, name: http}]}
"#,
    check: |c| {
        assert_eq!(c.policy.waypoint, "infra/shared");
        assert!(c.policy.services.is_empty());
        assert!(
            c.notices.iter().any(|n| n.to_string().contains("WaypointAttachmentDenied")),
            "{:?}",
            c.notices
        );
    },
}

case! {
    waypoint_for_workload_takes_no_service_traffic,
    "waypoint-for: workload takes no service traffic",
    cite: "istio.io ambient/usage/waypoint: istio.io/waypoint-for (service default)",
    yaml: r#"
apiVersion: v1
kind: Namespace
metadata: {name: default, labels: {istio.io/use-waypoint: wp}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: wp, namespace: default, labels: {istio.io/waypoint-for: workload}}
spec: {gatewayClassName: istio-waypoint}
"#,
    check: |c| {
        assert!(c.policy.services.is_empty());
        assert!(notices(c).contains("waypoint-for \"workload\""));
    },
}

case! {
    serviceentry_hosts_are_services_label_on_the_serviceentry,
    "ServiceEntry hosts are services (label on the ServiceEntry)",
    cite: "istio.io ambient/usage/waypoint: ServiceEntry with istio.io/use-waypoint",
    yaml: r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: wp, namespace: default}
spec: {gatewayClassName: istio-waypoint}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: default, labels: {istio.io/use-waypoint: wp}}
spec:
  hosts: [api.example.com]
  addresses: [240.0.0.1]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
  endpoints: [{address: 192.0.2.1}]
"#,
    check: |c| {
        let s = svc(c, "api.example.com");
        assert_eq!(s.addresses, vec!["240.0.0.1"]);
        assert_eq!(s.ports[0].cluster, "inbound-vip|80|http|api.example.com");
        assert_eq!(s.ports[0].protocol, "HTTP");
        assert_eq!(s.origin, "ServiceEntry default/ext");
        let eps = &c.registry.clusters["inbound-vip|80|http|api.example.com"];
        assert_eq!(eps[0].address, "192.0.2.1");
        assert_eq!(eps[0].port, 80);
    },
}

case! {
    virtualservice_http_order_is_the_route_order,
    "VirtualService http[] order is the route order",
    cite: "Istio VirtualService reference: 'rules are evaluated in order'; waypointInboundRoute",
    yaml: r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - name: a
    match: [{uri: {prefix: /a}}]
    route: [{destination: {host: reviews}}]
  - name: b
    match: [{uri: {exact: /b}}, {uri: {regex: "/c.*"}}]
    route: [{destination: {host: ratings}}]
  - name: rest
    route: [{destination: {host: reviews}}]
"#,
    check: |c| {
        let r = &reviews(c).routes;
        let names: Vec<_> = r.iter().map(|x| x.origin.as_ref().unwrap().element_name.clone()).collect();
        assert_eq!(names, ["a", "b", "rest"]);
        assert_eq!(r[0].matches[0].uri, prefix("/a"));
        assert_eq!(r[1].matches.len(), 2);
        assert_eq!(r[1].matches[1].uri, regex("/c.*"));
        assert!(r[2].matches.is_empty());
        assert_eq!(r[1].origin.as_ref().unwrap().index, 1);
    },
}

case! {
    gateways_without_mesh_the_virtualservice_does_not_apply_to_the_waypoint,
    "gateways without mesh: the VirtualService does not apply to the waypoint",
    cite: "Istio VirtualService.gateways: 'mesh' is implied only when the field is empty",
    yaml: r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  gateways: [my-ingress]
  http:
  - route: [{destination: {host: ratings}}]
"#,
    check: |c| {
        assert_eq!(reviews(c).route_source, pb::RouteSource::Default as i32);
        assert!(notices(c).contains("skipped: does not apply to the waypoint: gateways [\"my-ingress\"] do not include \"mesh\""));
    },
}

case! {
    gateways_including_mesh_applies,
    "gateways including mesh applies",
    cite: "Istio VirtualService.gateways: reserved word mesh",
    yaml: r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  gateways: [my-ingress, mesh]
  http:
  - route: [{destination: {host: ratings}}]
"#,
    check: |c| assert_eq!(reviews(c).route_source, pb::RouteSource::VirtualService as i32),
}

case! {
    sourcelabels_matches_are_dropped_on_waypoints,
    "sourceLabels matches are dropped on waypoints",
    cite: "istiod listener_waypoint.go waypointInboundRoute (istio/istio#51565)",
    yaml: r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{sourceLabels: {app: productpage}}]
    route: [{destination: {host: ratings}}]
  - match: [{sourceLabels: {app: x}}, {uri: {prefix: /keep}}]
    route: [{destination: {host: ratings}}]
  - route: [{destination: {host: reviews}}]
"#,
    check: |c| {
        let r = &reviews(c).routes;
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].matches.len(), 1);
        assert_eq!(r[0].matches[0].uri, prefix("/keep"));
        assert!(notices(c).contains("spec.http[0].match[0].sourceLabels: match dropped"));
        assert!(notices(c).contains("spec.http[0]: route dropped"));
    },
}

case! {
    match_gateways_without_mesh_never_match_on_a_waypoint,
    "match gateways without mesh never match on a waypoint",
    cite: "istiod route.go sourceMatchHTTP with gateway set {mesh}",
    yaml: r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{gateways: [ingress], uri: {prefix: /x}}, {gateways: [mesh], uri: {prefix: /y}}]
    route: [{destination: {host: ratings}}]
"#,
    check: |c| {
        let r = &reviews(c).routes;
        assert_eq!(r[0].matches.len(), 1);
        assert_eq!(r[0].matches[0].uri, prefix("/y"));
        assert!(notices(c).contains("match[0].gateways: match dropped"));
    },
}

case! {
    sourcenamespace_is_compared_with_the_waypoints_namespace,
    "sourceNamespace is compared with the waypoint's namespace",
    cite: "istiod route.go sourceMatchHTTP(proxyNamespace = waypoint namespace)",
    yaml: r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{sourceNamespace: frontend}]
    route: [{destination: {host: ratings}}]
  - route: [{destination: {host: reviews}}]
"#,
    check: |c| {
        assert_eq!(reviews(c).routes.len(), 1);
        assert!(notices(c).contains("sourceNamespace: match dropped"));
    },
}

const TWO_VIRTUAL_SERVICES: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a-newer, creationTimestamp: "2024-02-01T00:00:00Z"}
spec:
  hosts: [reviews]
  http: [{match: [{uri: {prefix: /a}}], route: [{destination: {host: ratings}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: z-older, creationTimestamp: "2024-01-01T00:00:00Z"}
spec:
  hosts: [reviews]
  http: [{match: [{uri: {prefix: /z}}], route: [{destination: {host: reviews}}]}]
"#;

fn compile_at(yaml: &str, istio: &str) -> Compiled {
    let opts = CompileOptions {
        istio: istio.parse().unwrap(),
        ..CompileOptions::default()
    };
    try_compile_opts(&format!("{BASE}\n---\n{yaml}"), &opts).unwrap()
}

case! {
    several_virtualservices_for_one_host_are_merged_oldest_first,
    "several VirtualServices for one host: their routes are merged, oldest first",
    cite: "pilot/pkg/networking/core/listener_waypoint.go:1132-1142 @ 1.30.3 (commit da25675dc27)",
    yaml: TWO_VIRTUAL_SERVICES,
    check: |c| {
        let r = &reviews(c).routes;
        let names: Vec<&str> = r.iter().map(|r| r.origin.as_ref().unwrap().name.as_str()).collect();
        assert_eq!(names, ["z-older", "a-newer"]);
    },
}

/// Before 1.30.0 / 1.29.2 / 1.28.6 a waypoint used only the oldest VirtualService with HTTP
/// routes (`listener_waypoint.go:771-779 @ 1.26.8`).
#[test]
fn several_virtualservices_before_the_merge_the_oldest_wins() {
    for istio in ["1.26.8", "1.28.5", "1.29.1"] {
        let c = compile_at(TWO_VIRTUAL_SERVICES, istio);
        let r = &reviews(&c).routes;
        assert_eq!(r.len(), 1, "{istio}");
        assert_eq!(r[0].origin.as_ref().unwrap().name, "z-older", "{istio}");
        assert!(notices(&c).contains("VirtualService default/a-newer): ignored for reviews.default.svc.cluster.local: VirtualService default/z-older already routes this host"), "{istio}");
    }
    for istio in ["1.28.6", "1.29.2", "1.30.0"] {
        assert_eq!(
            reviews(&compile_at(TWO_VIRTUAL_SERVICES, istio))
                .routes
                .len(),
            2,
            "{istio}"
        );
    }
}

/// One row per release boundary of the mesh default retry and the default route's retry
/// (`layover_envoyfilter::IstioVersion` cites each): (release, 503 retried by default,
/// default-route retry_on, default-route attempts; `None`: the mesh default applies).
macro_rules! retry_row {
    ($name:ident, $istio:expr, mesh_503: $m503:expr, default_route: $dr:expr) => {
        #[test]
        fn $name() {
            let c = compile_at("", $istio);
            let mesh = c
                .policy
                .mesh
                .as_ref()
                .unwrap()
                .default_retry
                .as_ref()
                .unwrap();
            assert_eq!(mesh.retriable_status_codes.contains(&503), $m503);
            let got = reviews(&c).ports[0]
                .default_route_retry
                .as_ref()
                .map(|r| (r.retry_on.join(","), r.attempts));
            let want: Option<(&str, u32)> = $dr;
            assert_eq!(got, want.map(|(on, n)| (on.to_string(), n)));
        }
    };
}

// retry.go:48 @ 1.23.6; inbound default route without retry (route.go:1218-1229 @ 1.22.0).
retry_row!(retries_at_1_22, "1.22.8", mesh_503: true, default_route: Some(("", 0)));
// ENABLE_INBOUND_RETRY_POLICY defaults to false (features/pilot.go:248 @ 1.23.0).
retry_row!(retries_at_1_23, "1.23.6", mesh_503: true, default_route: Some(("", 0)));
// EXCLUDE_UNSAFE_503_FROM_DEFAULT_RETRY (commit 65aaaf4f8c5); inbound reset-before-request
// (route.go:1242-1260 @ 1.24.0).
retry_row!(retries_at_1_24, "1.24.0", mesh_503: false, default_route: Some(("reset-before-request", 2)));
retry_row!(retries_at_1_26, "1.26.8", mesh_503: false, default_route: Some(("reset-before-request", 2)));
retry_row!(retries_at_1_30_2, "1.30.2", mesh_503: false, default_route: Some(("reset-before-request", 2)));
// The waypoint's default route is built like an outbound route (httproute.go:119-122 @ 1.30.3,
// commit f830a7d4ba6): the mesh default applies.
retry_row!(retries_at_1_30_3, "1.30.3", mesh_503: false, default_route: None);

case! {
    same_creation_time_name_order_decides,
    "same creation time: name order decides",
    cite: "istiod sortConfigByCreationTime: then name, then namespace",
    yaml: r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: b}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: ratings}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews}}]}]
"#,
    check: |c| assert_eq!(reviews(c).routes[0].origin.as_ref().unwrap().name, "a"),
}

case! {
    wildcard_virtualservice_hosts_match_services,
    "wildcard VirtualService hosts match services",
    cite: "istiod host.Name.Matches in getVirtualServiceForWaypoint",
    yaml: r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: all}
spec:
  hosts: ["*.default.svc.cluster.local"]
  http: [{route: [{destination: {host: reviews}}]}]
"#,
    check: |c| {
        assert_eq!(svc(c, "ratings.default.svc.cluster.local").routes.len(), 1);
        assert_eq!(reviews(c).routes.len(), 1);
    },
}

case! {
    match_fields_port_ignoreuricase_headers_presence_withoutheaders_queryparams,
    "match fields: port, ignoreUriCase, headers presence, withoutHeaders, queryParams",
    cite: "Istio HTTPMatchRequest reference (empty StringMatch = presence)",
    yaml: r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match:
    - name: m
      port: 9080
      ignoreUriCase: true
      uri: {exact: /Info}
      method: {exact: GET}
      scheme: {exact: http}
      authority: {prefix: reviews}
      headers: {X-User: {}, end-user: {regex: "j.*"}}
      withoutHeaders: {x-debug: {exact: "1"}}
      queryParams: {v: {exact: "2"}, flag: {}}
    route: [{destination: {host: reviews}}]
"#,
    check: |c| {
        let m = &reviews(c).routes[0].matches[0];
        assert_eq!(m.name, "m");
        assert_eq!(m.port, 9080);
        assert!(m.ignore_uri_case);
        assert_eq!(m.uri, exact("/Info"));
        assert_eq!(m.method, exact("GET"));
        assert_eq!(m.scheme, exact("http"));
        assert_eq!(m.authority, prefix("reviews"));
        let h: Vec<_> = m.headers.iter().map(|h| (h.name.as_str(), h.value.clone())).collect();
        assert_eq!(h, [("x-user", None), ("end-user", regex("j.*"))]);
        assert_eq!(m.without_headers[0].name, "x-debug");
        let q: Vec<_> = m.query_params.iter().map(|q| (q.name.as_str(), q.value.clone())).collect();
        assert_eq!(q, [("flag", None), ("v", exact("2"))]);
    },
}

case! {
    weights_a_single_destination_gets_100_whatever_it_says,
    "weights: a single destination gets 100 whatever it says",
    cite: "istiod route.go applyHTTPRouteDestination: one destination = single cluster",
    yaml: r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews}, weight: 30}]}]
"#,
    check: |c| assert_eq!(forward(&reviews(c).routes[0]).destinations[0].weight, 100),
}

case! {
    weights_0_weight_destinations_are_skipped_the_rest_normalized_to_100,
    "weights: 0-weight destinations are skipped, the rest normalized to 100",
    cite: "istiod route.go (weight 0 clusters skipped); validation allows sums ≠ 100",
    yaml: r#"
apiVersion: v1
kind: Service
metadata: {name: three}
spec: {ports: [{port: 80, name: http}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - {destination: {host: reviews}, weight: 1}
    - {destination: {host: ratings}, weight: 1}
    - {destination: {host: three}, weight: 1}
    - {destination: {host: three, port: {number: 80}}, weight: 0}
"#,
    check: |c| {
        let w: Vec<_> = forward(&reviews(c).routes[0]).destinations.iter().map(|d| d.weight).collect();
        assert_eq!(w, [34, 33, 33]);
        assert!(notices(c).contains("weights sum to 3, not 100"));
    },
}

case! {
    weights_90_10_stay_as_written,
    "weights 90/10 stay as written",
    cite: "bookinfo virtual-service-reviews-90-10.yaml",
    yaml: r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - {destination: {host: reviews}, weight: 90}
    - {destination: {host: ratings}, weight: 10}
"#,
    check: |c| {
        let w: Vec<_> = forward(&reviews(c).routes[0]).destinations.iter().map(|d| d.weight).collect();
        assert_eq!(w, [90, 10]);
    },
}

case! {
    retries_unset_route_leaves_retries_empty_mesh_default_is_istios_built_in,
    "retries unset: route leaves retries empty; mesh default is Istio's built-in",
    cite: "istiod pilot/pkg/networking/core/route/retry/retry.go:35-103 @ 1.30.3 DefaultPolicy (no retriable status codes)",
    yaml: r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews}}]}]
"#,
    check: |c| {
        assert!(reviews(c).routes[0].retries.is_none());
        let d = c.policy.mesh.as_ref().unwrap().default_retry.as_ref().unwrap();
        assert_eq!(d.attempts, 2);
        assert_eq!(d.retry_on, ["connect-failure", "refused-stream", "unavailable", "cancelled", "retriable-status-codes"]);
        assert!(d.retriable_status_codes.is_empty(), "1.30.3 lists no retriable status codes");
        assert_eq!(d.retry_host_predicates, ["envoy.retry_host_predicates.previous_hosts"]);
        assert_eq!(d.host_selection_retry_max_attempts, 5);
    },
}

case! {
    retries_attempts_0_disables_retries,
    "retries attempts 0 disables retries",
    cite: "istiod retry.ConvertPolicy: attempts <= 0 → no retry policy",
    yaml: r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews}}], retries: {attempts: 0}}]
"#,
    check: |c| assert_eq!(reviews(c).routes[0].retries.as_ref().unwrap().attempts, 0),
}

case! {
    retryon_with_bare_status_codes_retriable_status_codes,
    "retryOn with bare status codes → retriable-status-codes",
    cite: "istiod retry.go parseRetryOn + 'retriable-status-codes' appended",
    yaml: r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews}}]
    retries: {attempts: 3, perTryTimeout: 2s, retryOn: "503,504,connect-failure", retryRemoteLocalities: true}
"#,
    check: |c| {
        let r = reviews(c).routes[0].retries.clone().unwrap();
        assert_eq!(r.attempts, 3);
        assert_eq!(r.per_try_timeout_ms, 2000);
        assert_eq!(r.retry_on, ["connect-failure", "retriable-status-codes"]);
        assert_eq!(r.retriable_status_codes, [503, 504]);
        assert!(r.retry_remote_localities);
        assert_eq!(r.host_selection_retry_max_attempts, 5);
    },
}

case! {
    attempts_without_retryon_keep_the_default_conditions,
    "attempts without retryOn keep the default conditions",
    cite: "istiod retry.ConvertPolicy starts from defaultPolicy",
    yaml: r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews}}], retries: {attempts: 5}}]
"#,
    check: |c| {
        let r = reviews(c).routes[0].retries.clone().unwrap();
        assert_eq!(r.attempts, 5);
        assert!(r.retriable_status_codes.is_empty());
        assert!(r.retry_on.contains(&"refused-stream".to_string()));
    },
}

case! {
    meshconfig_from_configmap_istio_system_istio,
    "MeshConfig from ConfigMap istio-system/istio",
    cite: "Istio MeshConfig reference: trustDomain, rootNamespace, pathNormalization, defaultHttpRetryPolicy",
    yaml: r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |-
    trustDomain: example.org
    rootNamespace: mesh-root
    accessLogFile: /dev/stdout
    pathNormalization:
      normalization: MERGE_SLASHES
    defaultHttpRetryPolicy:
      attempts: 1
      retryOn: gateway-error
"#,
    check: |c| {
        let m = c.policy.mesh.as_ref().unwrap();
        assert_eq!(m.trust_domain, "example.org");
        assert_eq!(m.root_namespace, "mesh-root");
        assert_eq!(m.path_normalization, pb::PathNormalization::MergeSlashes as i32);
        let r = m.default_retry.as_ref().unwrap();
        assert_eq!(r.attempts, 1);
        assert_eq!(r.retry_on, ["gateway-error"]);
        assert!(r.retriable_status_codes.is_empty());
    },
}

case! {
    timeout_and_fault_delay_default_0_legacy_percent_abort,
    "timeout and fault (delay and abort without percentage: 0%, legacy percent)",
    cite: "istiod TranslateFault (route.go:1396-1400, 1414-1416 @ 1.30.3); virtual_service.proto:1474,1521 @ 1.30.3 (unspecified: no request delayed / aborted)",
    yaml: r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews}}]
    timeout: 1.5s
    fault: {delay: {fixedDelay: 7s}, abort: {httpStatus: 500, percentage: {value: 10.5}}}
  - route: [{destination: {host: reviews}}]
    fault: {delay: {fixedDelay: 100ms, percent: 20}, abort: {grpcStatus: UNAVAILABLE}}
"#,
    check: |c| {
        let r = &reviews(c).routes;
        assert_eq!(r[0].timeout_ms, 1500);
        let f = r[0].fault.as_ref().unwrap();
        assert_eq!(f.delay.as_ref().unwrap().fixed_delay_ms, 7000);
        assert_eq!(f.delay.as_ref().unwrap().percentage, 0.0);
        assert_eq!(f.abort.as_ref().unwrap().http_status, 500);
        assert_eq!(f.abort.as_ref().unwrap().percentage, 10.5);
        let f = r[1].fault.as_ref().unwrap();
        assert_eq!(f.delay.as_ref().unwrap().percentage, 20.0);
        assert_eq!(f.abort.as_ref().unwrap().grpc_status, 14);
        assert_eq!(f.abort.as_ref().unwrap().percentage, 0.0);
    },
}

case! {
    header_operations_route_level_and_per_destination,
    "header operations, route level and per destination",
    cite: "Istio Headers reference (request/response set/add/remove)",
    yaml: r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - headers:
      request: {set: {X-A: "1"}, add: {x-b: "2"}, remove: [X-C]}
      response: {set: {x-d: "4"}}
    route:
    - destination: {host: reviews}
      headers: {response: {remove: [server]}}
"#,
    check: |c| {
        let r = &reviews(c).routes[0];
        let rq = r.request_headers.as_ref().unwrap();
        assert_eq!((rq.set[0].name.as_str(), rq.set[0].value.as_str()), ("x-a", "1"));
        assert_eq!(rq.add[0].name, "x-b");
        assert_eq!(rq.remove, ["x-c"]);
        assert_eq!(r.response_headers.as_ref().unwrap().set[0].name, "x-d");
        let d = &forward(r).destinations[0];
        assert_eq!(d.response_headers.as_ref().unwrap().remove, ["server"]);
    },
}

case! {
    rewrite_uri_uriregexrewrite_authority,
    "rewrite: uri, uriRegexRewrite, authority",
    cite: "Istio HTTPRewrite reference",
    yaml: r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /old}}]
    rewrite: {uri: /new, authority: internal}
    route: [{destination: {host: reviews}}]
  - rewrite: {uriRegexRewrite: {match: "^/v1/(.*)$", rewrite: '/v2/\1'}}
    route: [{destination: {host: reviews}}]
"#,
    check: |c| {
        let r = &reviews(c).routes;
        let w = r[0].rewrite.as_ref().unwrap();
        assert!(w.has_uri);
        assert_eq!(w.uri, "/new");
        assert_eq!(w.authority, "internal");
        let w = r[1].rewrite.as_ref().unwrap();
        assert!(!w.has_uri);
        assert_eq!(w.uri_regex.as_ref().unwrap().substitution, "/v2/\\1");
    },
}

case! {
    redirect_defaults_to_301_deriveport_from_protocol_default,
    "redirect defaults to 301; derivePort FROM_PROTOCOL_DEFAULT",
    cite: "Istio HTTPRedirect reference (redirectCode default 301)",
    yaml: r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - redirect: {uri: /x, authority: a.example, scheme: https, derivePort: FROM_PROTOCOL_DEFAULT}
  - redirect: {port: 8443, redirectCode: 308}
"#,
    check: |c| {
        let r = &reviews(c).routes;
        let Some(pb::http_route::Action::Redirect(a)) = &r[0].action else { panic!() };
        assert_eq!((a.uri.as_str(), a.authority.as_str(), a.scheme.as_str(), a.status), ("/x", "a.example", "https", 301));
        assert!(a.port_from_scheme);
        let Some(pb::http_route::Action::Redirect(b)) = &r[1].action else { panic!() };
        assert_eq!((b.port, b.status), (8443, 308));
    },
}

case! {
    directresponse_with_string_and_bytes_bodies,
    "directResponse with string and bytes bodies",
    cite: "Istio HTTPDirectResponse reference (body.string / body.bytes base64)",
    yaml: r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {exact: /a}}]
    directResponse: {status: 503, body: {string: "down"}}
  - directResponse: {status: 200, body: {bytes: "aGVsbG8="}}
"#,
    check: |c| {
        let r = &reviews(c).routes;
        let Some(pb::http_route::Action::DirectResponse(a)) = &r[0].action else { panic!() };
        assert_eq!((a.status, a.body.as_slice()), (503, b"down".as_slice()));
        let Some(pb::http_route::Action::DirectResponse(b)) = &r[1].action else { panic!() };
        assert_eq!(b.body, b"hello");
    },
}

case! {
    mirror_defaults_to_100_mirrorpercentage_mirrors_list,
    "mirror defaults to 100%; mirrorPercentage; mirrors list",
    cite: "Istio HTTPRoute.mirror / mirrorPercentage / mirrors reference",
    yaml: r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews}}]
    mirror: {host: ratings}
  - route: [{destination: {host: reviews}}]
    mirror: {host: ratings}
    mirrorPercentage: {value: 12.5}
  - route: [{destination: {host: reviews}}]
    mirrors: [{destination: {host: ratings}, percentage: {value: 5}}, {destination: {host: reviews}}]
"#,
    check: |c| {
        let r = &reviews(c).routes;
        assert_eq!(r[0].mirrors[0].percentage, 100.0);
        assert_eq!(r[0].mirrors[0].cluster, "inbound-vip|9080|http|ratings.default.svc.cluster.local");
        assert_eq!(r[1].mirrors[0].percentage, 12.5);
        assert_eq!(r[2].mirrors.len(), 2);
        assert_eq!(r[2].mirrors[0].percentage, 5.0);
        assert_eq!(r[2].mirrors[1].percentage, 100.0);
    },
}

case! {
    corspolicy_alloworigins_legacy_alloworigin_maxage_credentials_unmatchedpreflights,
    "corsPolicy: allowOrigins, legacy allowOrigin, maxAge, credentials, unmatchedPreflights",
    cite: "Istio CorsPolicy reference",
    yaml: r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews}}]
    corsPolicy:
      allowOrigins: [{exact: "https://a.example"}, {regex: "https://.*\\.b\\.example"}]
      allowOrigin: ["https://legacy.example"]
      allowMethods: [GET, POST]
      allowHeaders: [x-a]
      exposeHeaders: [x-b]
      maxAge: 24h
      allowCredentials: false
      unmatchedPreflights: IGNORE
"#,
    check: |c| {
        let p = reviews(c).routes[0].cors.clone().unwrap();
        assert_eq!(p.allow_origins.len(), 3);
        assert_eq!(p.allow_origins[2], exact("https://legacy.example").unwrap());
        assert_eq!(p.allow_methods, ["GET", "POST"]);
        assert_eq!(p.max_age_seconds, 86400);
        assert_eq!(p.allow_credentials, pb::OptionalBool::False as i32);
        assert!(!p.unmatched_preflights_forward);
    },
}

case! {
    destinationrule_subsets_clusters_with_selector_subset_labels,
    "DestinationRule subsets → clusters with selector + subset labels",
    cite: "istiod model.BuildSubsetKey with portToSubset (inbound-vip|port|http/subset|host for a served service: pilot/pkg/networking/core/listener_waypoint.go:1259-1319 @ 1.30.3); DR subset labels",
    yaml: r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy: {loadBalancer: {simple: LEAST_REQUEST}, connectionPool: {tcp: {maxConnections: 10}}}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}, trafficPolicy: {loadBalancer: {simple: RANDOM}}}
"#,
    check: |c| {
        let cl = |n: &str| c.policy.clusters.iter().find(|x| x.name == n).unwrap_or_else(|| panic!("{n}"));
        let v1 = cl("inbound-vip|9080|http/v1|reviews.default.svc.cluster.local");
        assert_eq!(v1.labels.get("app").map(String::as_str), Some("reviews"));
        assert_eq!(v1.labels.get("version").map(String::as_str), Some("v1"));
        assert_eq!(v1.load_balancer, "LEAST_REQUEST");
        assert_eq!(cl("inbound-vip|9080|http/v2|reviews.default.svc.cluster.local").load_balancer, "RANDOM");
        assert_eq!(cl("inbound-vip|9080|http|reviews.default.svc.cluster.local").subset, "");
        assert_eq!(reviews(c).ports[0].cluster, "inbound-vip|9080|http|reviews.default.svc.cluster.local");
        // multi has two ports → two default clusters.
        assert!(c.policy.clusters.iter().any(|x| x.name == "inbound-vip|8080|http|multi.default.svc.cluster.local"));
    },
}

case! {
    a_subset_no_destinationrule_defines_is_unavailable_503_with_a_warning,
    "a subset no DestinationRule defines is unavailable (503) with a warning",
    cite: "Envoy answers 503 for a route to a missing cluster (istiod builds no cluster)",
    yaml: r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews, subset: v9}}]}]
"#,
    check: |c| {
        let d = &forward(&reviews(c).routes[0]).destinations[0];
        assert!(d.unavailable);
        assert_eq!(d.cluster, "inbound-vip|9080|http/v9|reviews.default.svc.cluster.local");
        assert!(notices(c).contains("warning:") && notices(c).contains("subset \"v9\""));
    },
}

case! {
    destination_port_explicit_the_only_port_else_the_arrival_port_per_port_routes,
    "destination port: explicit, the only port, else the arrival port (per-port routes)",
    cite: "istiod listener_waypoint.go getWaypointDestinationCluster",
    yaml: r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: multi}
spec:
  hosts: [multi]
  http:
  - match: [{uri: {prefix: /p}}]
    route: [{destination: {host: multi, port: {number: 8080}}}]
  - route: [{destination: {host: multi}}]
"#,
    check: |c| {
        let r = &svc(c, "multi.default.svc.cluster.local").routes;
        assert_eq!(r.len(), 3);
        assert_eq!(forward(&r[0]).destinations[0].port, 8080);
        assert_eq!(r[1].matches[0].port, 80);
        assert_eq!(forward(&r[1]).destinations[0].cluster, "inbound-vip|80|http|multi.default.svc.cluster.local");
        assert_eq!(r[2].matches[0].port, 8080);
        assert_eq!(forward(&r[2]).destinations[0].port, 8080);
        let p = &svc(c, "multi.default.svc.cluster.local").ports[1];
        assert_eq!((p.number, p.target_port, p.protocol.as_str()), (8080, 9090, "HTTP"));
    },
}

case! {
    httproute_to_a_service_crd_defaults_pathprefix_weight_1_source_http_route,
    "HTTPRoute to a Service: CRD defaults (PathPrefix /, weight 1), source HTTP_ROUTE",
    cite: "Gateway API HTTPRoute CRD defaults; GAMMA parentRefs group \"\" kind Service",
    yaml: r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews, port: 9080}]
  rules:
  - backendRefs: [{name: reviews, port: 9080}, {name: ratings, port: 9080}, {name: ratings, port: 9080, weight: 2}]
"#,
    check: |c| {
        let s = reviews(c);
        assert_eq!(s.route_source, pb::RouteSource::HttpRoute as i32);
        let r = &s.routes[0];
        assert_eq!(r.matches[0].uri, prefix("/"));
        assert_eq!(r.matches[0].port, 9080);
        let w: Vec<_> = forward(r).destinations.iter().map(|d| d.weight).collect();
        assert_eq!(w, [25, 25, 50]);
        assert_eq!(r.origin.as_ref().unwrap().kind, "HTTPRoute");
    },
}

case! {
    httproute_precedence_exact_longest_prefix_method_headers_query_age_name,
    "HTTPRoute precedence: exact > longest prefix > method > headers > query > age > name",
    cite: "Gateway API HTTPRouteRule docs (precedence); istiod sortHTTPRoutes",
    yaml: r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: b-route, creationTimestamp: "2024-01-01T00:00:00Z"}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews}]
  rules:
  - name: short-prefix
    matches: [{path: {type: PathPrefix, value: /a}}]
    backendRefs: [{name: reviews, port: 9080}]
  - name: query
    matches: [{path: {type: PathPrefix, value: /abc}, queryParams: [{name: q, value: "1"}]}]
    backendRefs: [{name: reviews, port: 9080}]
  - name: headers
    matches: [{path: {type: PathPrefix, value: /abc}, headers: [{name: x, value: "1"}]}]
    backendRefs: [{name: reviews, port: 9080}]
  - name: method
    matches: [{path: {type: PathPrefix, value: /abc}, method: GET}]
    backendRefs: [{name: reviews, port: 9080}]
  - name: exact
    matches: [{path: {type: Exact, value: /a}}]
    backendRefs: [{name: reviews, port: 9080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: a-route, creationTimestamp: "2024-06-01T00:00:00Z"}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews}]
  rules:
  - name: newer-short-prefix
    matches: [{path: {type: PathPrefix, value: /a}}]
    backendRefs: [{name: reviews, port: 9080}]
"#,
    check: |c| {
        let names: Vec<_> = reviews(c).routes.iter().map(|r| r.origin.as_ref().unwrap().element_name.clone()).collect();
        assert_eq!(names, ["exact", "method", "headers", "query", "short-prefix", "newer-short-prefix"]);
    },
}

case! {
    pathprefix_is_element_wise_one_separated_prefix,
    "PathPrefix is element-wise: one prefix /foo (one trailing / trimmed) that the engine reads as path_separated_prefix",
    cite: "Gateway API PathPrefix ('/foo' matches '/foo/bar', not '/foobar'); istiod createURIMatch (conversion.go:1549-1553 @ 1.30.3) and TranslateRouteMatch (route.go:1088-1093)",
    yaml: r#"
apiVersion: gateway.networking.k8s.io/v1beta1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews}]
  rules:
  - matches: [{path: {value: /foo/}}]
    backendRefs: [{name: reviews, port: 9080}]
"#,
    check: |c| {
        let m = &reviews(c).routes[0].matches;
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].uri, prefix("/foo"));
    },
}

case! {
    httproute_filters_headers_urlrewrite_prefix_full_path_mirror_redirect_302,
    "HTTPRoute filters: headers, URLRewrite prefix/full path, mirror, redirect 302",
    cite: "Gateway API HTTPRouteFilter reference (RequestRedirect statusCode default 302)",
    yaml: r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /api}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: X-A, value: "1"}], remove: [X-B]}
    - type: ResponseHeaderModifier
      responseHeaderModifier: {add: [{name: x-c, value: "3"}]}
    - type: URLRewrite
      urlRewrite: {hostname: internal, path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}}
    - type: RequestMirror
      requestMirror: {backendRef: {name: ratings, port: 9080}, percent: 10}
    backendRefs: [{name: reviews, port: 9080}]
  - matches: [{path: {type: Exact, value: /old}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {scheme: https, hostname: new.example, path: {type: ReplaceFullPath, replaceFullPath: /new}}
  - matches: [{path: {type: Exact, value: /full}}]
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /other}}
    backendRefs: [{name: reviews, port: 9080}]
"#,
    check: |c| {
        let r = &reviews(c).routes;
        // Exact /full (longer) before Exact /old, then prefix /api.
        let Some(pb::http_route::Action::Redirect(rd)) = &r[1].action else { panic!("{:?}", r[1]) };
        assert_eq!((rd.status, rd.scheme.as_str(), rd.authority.as_str(), rd.uri.as_str()), (302, "https", "new.example", "/new"));
        assert!(rd.port_from_scheme);
        let w = r[0].rewrite.as_ref().unwrap();
        assert!(w.has_full_path);
        assert_eq!(w.full_path, "/other");
        assert_eq!(r.len(), 3);
        assert_eq!(r[2].matches[0].uri, prefix("/api"));
        assert_eq!(r[2].rewrite.as_ref().unwrap().uri, "/v2");
        assert_eq!(r[2].rewrite.as_ref().unwrap().authority, "internal");
        assert_eq!(r[2].request_headers.as_ref().unwrap().set[0].name, "x-a");
        assert_eq!(r[2].request_headers.as_ref().unwrap().remove, ["x-b"]);
        assert_eq!(r[2].response_headers.as_ref().unwrap().add[0].name, "x-c");
        assert_eq!(r[2].mirrors[0].percentage, 10.0);
    },
}

case! {
    httproute_timeouts_backendrequest_replaces_the_timeout_or_is_the_per_try_timeout_with_retry,
    "HTTPRoute timeouts: backendRequest replaces the timeout, or is the per-try timeout with retry",
    cite: "istiod pilot/pkg/config/kube/gateway/conversion.go convertHTTPRoute (timeouts, retry)",
    yaml: r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews}]
  rules:
  - matches: [{path: {type: Exact, value: /a}}]
    timeouts: {request: 10s, backendRequest: 2s}
    backendRefs: [{name: reviews, port: 9080}]
  - matches: [{path: {type: Exact, value: /b}}]
    timeouts: {request: 10s, backendRequest: 2s}
    retry: {codes: [503, 504], attempts: 3}
    backendRefs: [{name: reviews, port: 9080}]
  - matches: [{path: {type: Exact, value: /c}}]
    timeouts: {request: 10s}
    backendRefs: [{name: reviews, port: 9080}]
"#,
    check: |c| {
        let r = &reviews(c).routes;
        assert_eq!(r[0].timeout_ms, 2000);
        assert!(r[0].retries.is_none());
        assert_eq!(r[1].timeout_ms, 10_000);
        let rt = r[1].retries.as_ref().unwrap();
        assert_eq!((rt.attempts, rt.per_try_timeout_ms), (3, 2000));
        assert_eq!(rt.retry_on, ["connect-failure", "refused-stream", "unavailable", "cancelled", "retriable-status-codes"]);
        assert_eq!(rt.retriable_status_codes, [503, 504]);
        assert_eq!(r[2].timeout_ms, 10_000);
    },
}

case! {
    httproute_cors_filter,
    "HTTPRoute CORS filter",
    cite: "istiod conversion.go createCorsFilter (exact origins, credentials only when true)",
    yaml: r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews}]
  rules:
  - filters:
    - type: CORS
      cors: {allowOrigins: ["https://a.example"], allowMethods: [GET], allowCredentials: true, maxAge: 60}
    backendRefs: [{name: reviews, port: 9080}]
"#,
    check: |c| {
        let p = reviews(c).routes[0].cors.clone().unwrap();
        assert_eq!(p.allow_origins, [exact("https://a.example").unwrap()]);
        assert_eq!(p.allow_credentials, pb::OptionalBool::True as i32);
        assert_eq!(p.max_age_seconds, 60);
    },
}

case! {
    httproute_attached_to_a_serviceentry_routes_each_of_its_hosts,
    "HTTPRoute attached to a ServiceEntry routes each of its hosts",
    cite: "istiod conversion.go allowedParentReferences (Gateway, Service, ServiceEntry)",
    yaml: r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext}
spec:
  hosts: [api.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ext}
spec:
  parentRefs: [{group: networking.istio.io, kind: ServiceEntry, name: ext}]
  rules:
  - backendRefs: [{group: networking.istio.io, kind: Hostname, name: api.example.com, port: 80}]
"#,
    check: |c| {
        let s = svc(c, "api.example.com");
        assert_eq!(s.route_source, pb::RouteSource::HttpRoute as i32);
        assert_eq!(forward(&s.routes[0]).destinations[0].cluster, "inbound-vip|80|http|api.example.com");
    },
}

case! {
    httproute_to_an_ingress_gateway_is_skipped_with_a_notice,
    "HTTPRoute to an ingress Gateway is skipped with a notice",
    cite: "GAMMA: only Service parentRefs configure mesh (waypoint) traffic",
    yaml: r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: ingress}]
  rules: [{backendRefs: [{name: reviews, port: 9080}]}]
"#,
    check: |c| {
        assert_eq!(reviews(c).route_source, pb::RouteSource::Default as i32);
        assert!(notices(c).contains("spec.parentRefs[0]: skipped: parentRef is Gateway default/ingress (ingress)"));
    },
}

case! {
    virtualservice_and_httproute_for_one_service_the_httproute_wins,
    "VirtualService and HTTPRoute for one service: the HTTPRoute wins",
    cite: "Istio docs: Gateway API is the recommended ambient API; mixing both for a host is unsupported",
    yaml: r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews}]
  rules: [{backendRefs: [{name: ratings, port: 9080}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews}}]}]
"#,
    check: |c| {
        assert_eq!(reviews(c).route_source, pb::RouteSource::HttpRoute as i32);
        assert!(notices(c).contains("the service also has HTTPRoutes (Gateway API), which take precedence"));
    },
}

case! {
    httproute_rule_without_usable_backends_answers_500,
    "HTTPRoute rule without usable backends answers 500",
    cite: "Gateway API HTTPRouteRule.backendRefs: no valid backend → 500",
    yaml: r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews}]
  rules:
  - backendRefs: [{name: reviews, port: 9080, weight: 0}]
"#,
    check: |c| {
        let Some(pb::http_route::Action::DirectResponse(d)) = &reviews(c).routes[0].action else { panic!() };
        assert_eq!(d.status, 500);
    },
}

case! {
    authorizationpolicy_targetrefs_waypoint_gateway_binds_every_served_service,
    "AuthorizationPolicy targetRefs: waypoint Gateway binds every served service",
    cite: "istio.io ambient/usage/l7-features: 'Attach to the entire waypoint proxy'",
    yaml: r#"
apiVersion: v1
kind: Namespace
metadata: {name: default, labels: {istio.io/use-waypoint: waypoint}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint}
spec: {gatewayClassName: istio-waypoint}
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: viewer}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}]
  rules: [{to: [{operation: {methods: [GET]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: other-gw}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: not-me}]
"#,
    check: |c| {
        assert_eq!(c.policy.authorization_policies.len(), 1);
        for s in &c.policy.services {
            assert_eq!(s.authorization_policies, [0]);
        }
        assert!(notices(c).contains("skipped target: Gateway default/not-me is not this waypoint (default/waypoint)"));
    },
}

case! {
    authorizationpolicy_targetref_s_service_binds_that_service_legacy_singular_targetref,
    "AuthorizationPolicy targetRef(s) Service binds that service; legacy singular targetRef",
    cite: "istio.io ambient/usage/l7-features: 'Attach to a specific service'; API targetRef (deprecated)",
    yaml: r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: a}
spec:
  targetRefs: [{kind: Service, group: "", name: reviews}]
  action: DENY
  rules: [{to: [{operation: {ports: ["8080", 9090], paths: ["/admin*"]}}]}]
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: b, annotations: {"istio.io/dry-run": "true"}}
spec:
  targetRef: {kind: Service, group: "", name: ratings}
  rules:
  - from: [{source: {principals: ["spiffe://cluster.local/ns/default/sa/x"], notNamespaces: [evil]}}]
"#,
    check: |c| {
        let p = &c.policy.authorization_policies;
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].action, pb::AuthorizationAction::Deny as i32);
        assert_eq!(p[0].rules[0].to[0].ports, [8080, 9090]);
        assert!(p[1].dry_run);
        assert_eq!(p[1].rules[0].from[0].principals, ["cluster.local/ns/default/sa/x"]);
        assert_eq!(reviews(c).authorization_policies, [0]);
        assert_eq!(svc(c, "ratings.default.svc.cluster.local").authorization_policies, [1]);
        assert!(svc(c, "multi.default.svc.cluster.local").authorization_policies.is_empty());
    },
}

case! {
    selector_and_namespace_wide_policies_are_not_enforced_by_waypoints_custom_there_is_no_error,
    "selector and namespace-wide policies are not enforced by waypoints (CUSTOM there is no error)",
    cite: "istio.io ambient/usage/l7-features: waypoints enforce policies attached with targetRefs",
    yaml: r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: sel}
spec:
  selector: {matchLabels: {app: reviews}}
  action: CUSTOM
  provider: {name: x}
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ns-wide}
spec: {}
"#,
    check: |c| {
        assert!(c.policy.authorization_policies.is_empty());
        let n = notices(c);
        assert!(n.contains("(AuthorizationPolicy default/sel): skipped: selector-based policies are enforced by ztunnel or sidecars, not by waypoints"));
        assert!(n.contains("(AuthorizationPolicy default/ns-wide): skipped: namespace-wide policies without targetRefs are not enforced by waypoints"));
    },
}

case! {
    gatewayclass_istio_waypoint_targets_apply_only_from_the_root_namespace,
    "GatewayClass istio-waypoint targets apply only from the root namespace",
    cite: "Istio AuthorizationPolicy.targetRefs: GatewayClass in the root namespace",
    yaml: r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: mesh-wide, namespace: istio-system}
spec:
  targetRefs: [{kind: GatewayClass, group: gateway.networking.k8s.io, name: istio-waypoint}]
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: not-root, namespace: default}
spec:
  targetRefs: [{kind: GatewayClass, group: gateway.networking.k8s.io, name: istio-waypoint}]
"#,
    check: |c| {
        assert_eq!(c.policy.authorization_policies.len(), 1);
        assert_eq!(c.policy.authorization_policies[0].origin.as_ref().unwrap().name, "mesh-wide");
        assert_eq!(c.policy.authorization_policies[0].rules.len(), 1);
        assert!(notices(c).contains("GatewayClass targets only apply from the root namespace"));
    },
}

case! {
    allow_without_rules_matches_nothing_rules_matches_everything,
    "ALLOW without rules matches nothing; rules: [{}] matches everything",
    cite: "Istio AuthorizationPolicy reference (allow-nothing / allow-all examples)",
    yaml: r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-nothing}
spec:
  targetRefs: [{kind: Service, group: "", name: reviews}]
"#,
    check: |c| {
        let p = &c.policy.authorization_policies[0];
        assert_eq!(p.action, pb::AuthorizationAction::Allow as i32);
        assert!(p.rules.is_empty());
    },
}

case! {
    serviceentry_targetref_binds_its_hosts,
    "ServiceEntry targetRef binds its hosts",
    cite: "Istio AuthorizationPolicy.targetRefs: ServiceEntry (networking.istio.io)",
    yaml: r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext}
spec:
  hosts: [a.example.com, b.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext}
spec:
  targetRefs: [{kind: ServiceEntry, group: networking.istio.io, name: ext}]
  rules: [{when: [{key: "request.headers[x-token]", values: ["ok"]}, {key: source.ip, notValues: ["10.0.0.0/8"]}]}]
"#,
    check: |c| {
        assert_eq!(svc(c, "a.example.com").authorization_policies, [0]);
        assert_eq!(svc(c, "b.example.com").authorization_policies, [0]);
        assert_eq!(c.policy.authorization_policies[0].rules[0].when.len(), 2);
    },
}

case! {
    unknown_kinds_are_skipped_with_a_notice_no_apiversion_is_accepted_with_a_notice,
    "unknown kinds are skipped with a notice; no apiVersion is accepted with a notice",
    cite: "istio.io waypoint page shows a Gateway without apiVersion",
    yaml: r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: d}
spec: {}
---
kind: Service
metadata: {name: bare}
spec: {ports: [{port: 80}]}
---
apiVersion: networking.istio.io/v1
kind: EnvoyFilter
metadata: {name: ef}
spec: {}
"#,
    check: |c| {
        let n = notices(c);
        assert!(n.contains("(Deployment default/d): skipped: kind Deployment (apps/v1) is not Istio traffic or security configuration"));
        assert!(n.contains("(Service default/bare): no apiVersion: read as v1"));
        // istio/istio pilot/pkg/networking/core/envoyfilter: EnvoyFilter patches the generated Envoy
        // config; it is applied by `layover envoy` (layover-envoyfilter), not compiled.
        assert!(n.contains("skipped: EnvoyFilter patches Envoy configuration, not policy"));
        assert_eq!(svc(c, "bare.default.svc.cluster.local").ports[0].protocol, "UNSUPPORTED");
    },
}

#[test]
fn several_waypoints_need_a_choice() {
    let yaml = format!(
        "{BASE}\n---\n{}",
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: a}
spec: {gatewayClassName: istio-waypoint}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: b}
spec: {gatewayClassName: istio-waypoint}
"#
    );
    let e = try_compile(&yaml).err().unwrap();
    assert!(
        e.contains("several waypoint Gateways (default/a, default/b)"),
        "{e}"
    );
    let c = try_compile_opts(
        &yaml,
        &CompileOptions {
            waypoint: Some("default/b".into()),
            ..CompileOptions::default()
        },
    )
    .unwrap();
    assert_eq!(c.policy.waypoint, "default/b");
}

#[test]
fn loader_accepts_kubectl_style_yaml() {
    // Comments, empty documents, a leading "---", 1-space indentation, trailing "---", no
    // trailing newline.
    let yaml = "# leading comment\n---\n---\napiVersion: v1\nkind: Service\nmetadata:\n name: a\n namespace: x\nspec:\n ports:\n - port: 80\n   name: http\n---\n# only a comment\n---\napiVersion: v1\nkind: Service\nmetadata: {name: b}\nspec: {ports: [{port: 81}]}\n---";
    let c = try_compile(yaml).unwrap();
    assert!(has_svc(&c, "a.x.svc.cluster.local"));
    assert!(has_svc(&c, "b.default.svc.cluster.local"));
}

#[test]
fn kubectl_list_output_is_read() {
    let c = try_compile(
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata: {name: a, namespace: x}\n  spec: {ports: [{port: 80, name: http}]}\n",
    )
    .unwrap();
    assert!(has_svc(&c, "a.x.svc.cluster.local"));
}

#[test]
fn all_errors_are_collected() {
    let e = compile_err(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: one}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews}, weight: "x"}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: two}
spec:
  hosts: [ratings]
  http: [{match: [{uri: {regex: "("}}], route: [{destination: {host: ratings}}]}]
"#,
    );
    assert!(e.contains("test.yaml: document 4 (VirtualService default/one): spec.http[0].route[0].weight: invalid type: string \"x\""), "{e}");
    assert!(e.contains("test.yaml: document 5 (VirtualService default/two): spec.http[0].match[0].uri.regex: invalid regex"), "{e}");
}

#[test]
fn bookinfo_testdata_compiles() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/bookinfo");
    let c = layover_compiler::compile_paths(&[root]).unwrap();
    let p = &c.policy;
    assert_eq!(p.waypoint, "bookinfo/waypoint");
    assert_eq!(p.services.len(), 4);
    let rv = p.services.iter().find(|s| s.name == "reviews").unwrap();
    assert_eq!(rv.addresses, ["10.96.10.14"]);
    assert_eq!(rv.routes.len(), 2);
    assert_eq!(rv.routes[0].matches[0].headers[0].value, exact("jason"));
    let split: Vec<_> = forward(&rv.routes[1])
        .destinations
        .iter()
        .map(|d| (d.subset.clone(), d.weight))
        .collect();
    assert_eq!(
        split,
        [
            ("v1".to_string(), 40),
            ("v2".to_string(), 30),
            ("v3".to_string(), 30)
        ]
    );
    let rt = rv.routes[1].retries.as_ref().unwrap();
    assert_eq!((rt.attempts, rt.per_try_timeout_ms), (3, 2000));
    assert_eq!(rt.retry_on, ["5xx", "connect-failure"]);
    let ra = p.services.iter().find(|s| s.name == "ratings").unwrap();
    assert_eq!(
        ra.routes[0]
            .fault
            .as_ref()
            .unwrap()
            .delay
            .as_ref()
            .unwrap()
            .fixed_delay_ms,
        2000
    );
    assert_eq!(ra.routes[1].timeout_ms, 10_000);
    assert_eq!(p.authorization_policies.len(), 3);
    // Endpoints for the Envoy generator.
    let eps = &c.registry.clusters["inbound-vip|9080|http/v2|reviews.bookinfo.svc.cluster.local"];
    assert_eq!(eps.len(), 1);
    assert_eq!((eps[0].address.as_str(), eps[0].port), ("127.0.0.1", 19085));
    assert_eq!(eps[0].service_account, "bookinfo-reviews");
    assert_eq!(
        c.registry.clusters["inbound-vip|9080|http|reviews.bookinfo.svc.cluster.local"].len(),
        3
    );
    assert!(c.notices.is_empty(), "{}", notices(&c));
}

/// Invalid configuration istio's validation webhook would reject (pkg/config/validation):
/// (yaml appended to BASE, expected `path: message` fragment).
const VALIDATION: &[(&str, &str)] = &[
    (
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\nspec: {hosts: [reviews], http: [{route: [{destination: {host: reviews}}], retries: {attempts: 0, retryOn: 5xx}}]}",
        "spec.http[0].retries: http retry policy configured when attempts are set to 0 (disabled)",
    ),
    (
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\nspec: {hosts: [reviews], http: [{route: [{destination: {host: reviews}}], retries: {attempts: 2, retryOn: \"503, 504\"}}]}",
        "spec.http[0].retries.retryOn: \" 504\" is not a valid retryOn policy",
    ),
    (
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\nspec: {hosts: [reviews], http: [{redirect: {}}]}",
        "spec.http[0].redirect: redirect must specify URI, authority, scheme, or port",
    ),
    (
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\nspec: {hosts: [reviews], http: [{redirect: {scheme: ftp}}]}",
        "spec.http[0].redirect.scheme: invalid redirect scheme \"ftp\"",
    ),
    (
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\nspec: {hosts: [reviews], http: [{rewrite: {}, route: [{destination: {host: reviews}}]}]}",
        "spec.http[0].rewrite: rewrite must specify at least one of uri, uriRegexRewrite, or authority",
    ),
    (
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\nspec: {hosts: [reviews], http: [{fault: {}, route: [{destination: {host: reviews}}]}]}",
        "spec.http[0].fault: HTTP fault injection must have an abort and/or a delay",
    ),
    (
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\nspec: {hosts: [reviews], http: [{fault: {abort: {httpStatus: 503, percentage: {value: 150}}}, route: [{destination: {host: reviews}}]}]}",
        "spec.http[0].fault.abort.percentage.value: percentage 150 is neither 0.0, nor in range [0.0001, 100.0]",
    ),
    (
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\nspec: {hosts: [reviews], http: [{fault: {abort: {grpcStatus: NOPE}}, route: [{destination: {host: reviews}}]}]}",
        "spec.http[0].fault.abort.grpcStatus: unknown gRPC status \"NOPE\"",
    ),
    (
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\nspec: {hosts: [reviews], http: [{directResponse: {status: 700}}]}",
        "spec.http[0].directResponse.status: HTTP status 700 is not in range 200-599",
    ),
    (
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\nspec: {hosts: [reviews], http: [{match: [{uri: {exact: /a, prefix: /b}}], route: [{destination: {host: reviews}}]}]}",
        "spec.http[0].match[0].uri: only one of exact, prefix, regex may be set",
    ),
    (
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\nspec: {hosts: [reviews], http: [{}]}",
        "spec.http[0]: an HTTP route needs one of route, redirect or directResponse",
    ),
    (
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec: {selector: {matchLabels: {app: x}}, targetRefs: [{kind: Service, group: \"\", name: reviews}]}",
        "spec.selector: selector and targetRefs are mutually exclusive",
    ),
    (
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec: {action: PERMIT, targetRefs: [{kind: Service, group: \"\", name: reviews}]}",
        "spec.action: unknown action \"PERMIT\"",
    ),
    (
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec: {targetRefs: [{kind: Service, group: \"\", name: reviews}], rules: [{when: [{key: source.colour, values: [red]}]}]}",
        "spec.rules[0].when[0].key: unknown condition key \"source.colour\"",
    ),
    (
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec: {targetRefs: [{kind: Service, group: \"\", name: reviews}], rules: [{when: [{key: remote.ip, values: [\"1.2.3.4/40\"]}]}]}",
        "spec.rules[0].when[0].values[0]: invalid CIDR \"1.2.3.4/40\"",
    ),
    (
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec: {targetRefs: [{kind: Pod, group: \"\", name: reviews}]}",
        "spec.targetRefs[0].kind: unsupported targetRef /Pod",
    ),
    (
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec: {parentRefs: [{group: \"\", kind: Service, name: reviews}], rules: [{matches: [{path: {type: RegularExpression, value: \"(\"}}], backendRefs: [{name: reviews, port: 9080}]}]}",
        "spec.rules[0].matches[0].path.value: invalid regex \"(\"",
    ),
    (
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec: {parentRefs: [{group: \"\", kind: Service, name: reviews}], rules: [{matches: [{path: {type: Glob, value: /a}}], backendRefs: [{name: reviews, port: 9080}]}]}",
        "spec.rules[0].matches[0].path.type: unknown path match type \"Glob\"",
    ),
    (
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec: {parentRefs: [{group: \"\", kind: Service, name: reviews}], rules: [{backendRefs: [{name: reviews, port: 9080, kind: Pod}]}]}",
        "spec.rules[0].backendRefs[0]: backend kind Pod (group \"\") is not supported; use a Service",
    ),
    (
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec: {parentRefs: [{group: \"\", kind: Service, name: reviews}], rules: [{backendRefs: [{name: reviews}]}]}",
        "spec.rules[0].backendRefs[0].port: port is required in backendRef",
    ),
    (
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec: {parentRefs: [{group: \"\", kind: Service, name: reviews}], rules: [{backendRefs: [{name: reviews.default.svc.cluster.local, port: 9080}]}]}",
        "spec.rules[0].backendRefs[0]: service name invalid; the name of the Service must be used, not the hostname",
    ),
    // Found by the property tests (filters/adapter/tests/properties.rs): the compiler emitted
    // policies the engine refuses. istio/istio pkg/config/validation ValidateHTTPHeaderName.
    (
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\nspec: {hosts: [reviews], http: [{match: [{headers: {\"\": {exact: x}}}], route: [{destination: {host: reviews}}]}]}",
        "spec.http[0].match[0].headers: header name cannot be empty",
    ),
    (
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\nspec: {hosts: [reviews], http: [{match: [{withoutHeaders: {\"a b\": {exact: x}}}], route: [{destination: {host: reviews}}]}]}",
        "spec.http[0].match[0].withoutHeaders: invalid header name \"a b\"",
    ),
    // Found by fuzzing (cargo xtask fuzz, yaml_compiler): the engine refused these later.
    (
        "apiVersion: v1\nkind: Service\nmetadata: {name: odd}\nspec: {clusterIP: \"10.96.10-14\", ports: [{name: http, port: 80}]}",
        "spec.clusterIP: \"10.96.10-14\" is not an IP address",
    ),
    (
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec: {targetRefs: [{kind: Service, group: \"\", name: reviews}], rules: [{to: [{operation: {paths: [\"/x/{*}{/y\"]}}]}]}",
        "the compiled policy is invalid for the filters: authorization policies: AuthorizationPolicy default/a: rules[0].to[0].operation.paths[0]: invalid path",
    ),
    // istio/istio pkg/config/security CheckEmptyValues.
    (
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec: {targetRefs: [{kind: Service, group: \"\", name: reviews}], rules: [{from: [{source: {principals: [\"\"]}}]}]}",
        "spec.rules[0].from[0].source.principals[0]: empty value not allowed",
    ),
    (
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec: {targetRefs: [{kind: Service, group: \"\", name: reviews}], rules: [{to: [{operation: {hosts: [\"\"]}}]}]}",
        "spec.rules[0].to[0].operation.hosts[0]: empty value not allowed",
    ),
    // istiod pastes namespaces into a regex unquoted: one that does not compile would make
    // Envoy reject the RBAC filter.
    (
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec: {targetRefs: [{kind: Service, group: \"\", name: reviews}], rules: [{when: [{key: source.namespace, values: [\"/api/{**}\"]}]}]}",
        "spec.rules[0].when[0].values[0]: \"/api/{**}\": istiod would emit an invalid regex",
    ),
    (
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec: {targetRefs: [{kind: Service, group: \"\", name: reviews}], rules: [{from: [{source: {principals: [\"*(\"]}}]}]}",
        "spec.rules[0].from[0].source.principals[0]: \"*(\": istiod would emit an invalid regex",
    ),
    (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata: {mesh: \"pathNormalization: {normalization: WEIRD}\"}",
        "data.mesh.pathNormalization.normalization: unknown normalization \"WEIRD\"",
    ),
];

#[test]
fn validation_errors_name_the_field() {
    let mut failed = Vec::new();
    for (yaml, want) in VALIDATION {
        match try_compile(&format!("{BASE}\n---\n{yaml}\n")) {
            Ok(_) => failed.push(format!("compiled, expected {want}")),
            Err(e) if e.contains(want) => {}
            Err(e) => failed.push(format!("want {want}\ngot {e}")),
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

#[test]
fn later_definition_of_the_same_object_wins() {
    let c = compile(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: ratings}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews}}]}]
"#,
    );
    assert_eq!(forward(&reviews(&c).routes[0]).destinations[0].host, R);
    assert!(notices(&c).contains("replaced by the later definition in test.yaml: document 5"));
}

// ------------------------------------------------- DestinationRule traffic policy per cluster

/// The cluster `name` of the compiled policy.
fn cluster<'a>(c: &'a Compiled, name: &str) -> &'a pb::Cluster {
    c.policy
        .clusters
        .iter()
        .find(|k| k.name == name)
        .unwrap_or_else(|| panic!("no cluster {name}"))
}

const TRAFFIC_DR: &str = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: multi}
spec:
  host: multi
  trafficPolicy:
    loadBalancer: {simple: RANDOM}
    connectionPool:
      tcp: {maxConnections: 7, connectTimeout: 3s, idleTimeout: 9s}
      http: {http1MaxPendingRequests: 5, http2MaxRequests: 6, maxRetries: 0, idleTimeout: 4s, maxRequestsPerConnection: 2}
    outlierDetection: {consecutive5xxErrors: 3, interval: 5s, baseEjectionTime: 30s, maxEjectionPercent: 50}
    portLevelSettings:
    - port: {number: 8080}
      loadBalancer: {simple: ROUND_ROBIN}
  subsets:
  - name: a
    labels: {v: a}
    trafficPolicy:
      outlierDetection: {consecutiveGatewayErrors: 2}
  - name: b
    labels: {v: b}
    trafficPolicy:
      portLevelSettings:
      - port: {number: 80}
        loadBalancer: {simple: LEAST_REQUEST}
"#;

/// One row: cluster name → its (load balancer, has connection pool, outlier: 5xx, gateway).
macro_rules! traffic_row {
    ($name:ident, $cite:literal, $cluster:expr, lb: $lb:expr, pool: $pool:expr, outlier: $od:expr) => {
        #[doc = concat!("Source: ", $cite)]
        #[test]
        fn $name() {
            let c = compile(TRAFFIC_DR);
            let k = cluster(&c, $cluster);
            assert_eq!(k.load_balancer, $lb);
            assert_eq!(k.connection_pool.is_some(), $pool);
            let od = k
                .outlier_detection
                .as_ref()
                .map(|o| (o.consecutive_5xx_errors, o.consecutive_gateway_errors));
            let want: Option<(Option<u32>, Option<u32>)> = $od;
            assert_eq!(od, want);
        }
    };
}

traffic_row!(rule_policy_applies_to_the_port, "cluster_waypoint.go:343-345 @ 1.30.3",
    "inbound-vip|80|http|multi.default.svc.cluster.local", lb: "RANDOM", pool: true, outlier: Some((Some(3), None)));
traffic_row!(port_level_replaces_the_whole_policy, "util.go:810-835 @ 1.30.3 (no inheritance)",
    "inbound-vip|8080|http|multi.default.svc.cluster.local", lb: "ROUND_ROBIN", pool: false, outlier: None);
traffic_row!(subset_overrides_one_component, "util.go:838-866 @ 1.30.3 (mergeTrafficPolicy)",
    "inbound-vip|80|http/a|multi.default.svc.cluster.local", lb: "RANDOM", pool: true, outlier: Some((None, Some(2))));
traffic_row!(subset_port_level_replaces_every_component, "util.go:860-871 @ 1.30.3 (hasPortLevel)",
    "inbound-vip|80|http/b|multi.default.svc.cluster.local", lb: "LEAST_REQUEST", pool: false, outlier: None);
traffic_row!(subset_on_another_port_merges_the_rules_port_level, "util.go:840 @ 1.30.3",
    "inbound-vip|8080|http/b|multi.default.svc.cluster.local", lb: "ROUND_ROBIN", pool: false, outlier: None);

#[test]
fn connection_pool_fields_as_istiod_reads_them() {
    // cluster_traffic_policy.go:106-142 @ 1.30.3: positive values only; http idleTimeout wins.
    let c = compile(TRAFFIC_DR);
    let p = cluster(&c, "inbound-vip|80|http|multi.default.svc.cluster.local")
        .connection_pool
        .unwrap();
    assert_eq!(
        (
            p.max_connections,
            p.connect_timeout_ms,
            p.http1_max_pending_requests,
            p.http2_max_requests
        ),
        (7, 3000, 5, 6)
    );
    assert_eq!(
        (
            p.max_retries,
            p.idle_timeout_ms,
            p.max_requests_per_connection
        ),
        (0, 4000, 2)
    );
}

#[test]
fn unsupported_traffic_policy_fields_are_warnings_naming_them() {
    let c = compile(
        r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {consistentHash: {httpHeaderName: x-user}, localityLbSetting: {enabled: true}}
    tls: {mode: SIMPLE}
    outlierDetection: {consecutiveErrors: 5}
    connectionPool: {tcp: {tcpKeepalive: {time: 10s}}}
"#,
    );
    let n = notices(&c);
    for field in [
        "spec.trafficPolicy.loadBalancer.consistentHash",
        "spec.trafficPolicy.loadBalancer.localityLbSetting",
        "spec.trafficPolicy.tls",
        "spec.trafficPolicy.outlierDetection.consecutiveErrors",
        "spec.trafficPolicy.connectionPool.tcp.tcpKeepalive",
    ] {
        assert!(
            n.contains(&format!("{field}: ")),
            "{field} not warned:\n{n}"
        );
    }
    // consistentHash no longer fails the compile: the default balancer, and a warning.
    assert_eq!(
        cluster(
            &c,
            "inbound-vip|9080|http|reviews.default.svc.cluster.local"
        )
        .load_balancer,
        ""
    );
}

#[test]
fn an_invalid_traffic_policy_duration_is_an_error_naming_the_field() {
    let e = compile_err(
        r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    outlierDetection: {baseEjectionTime: soon}
"#,
    );
    assert!(
        e.contains("outlierDetection.baseEjectionTime: invalid duration \"soon\""),
        "{e}"
    );
}

case! {
    grpcroute_method_matches_become_path_matches,
    "GRPCRoute: service+method exact → exact path, service only → prefix /svc/ (one trailing / trimmed), method only → regex, RegularExpression forms",
    cite: "istiod convertGRPCRoute / createGRPCURIMatch (pilot/pkg/config/kube/gateway/conversion.go:265-346, 1570-1618 @ 1.30.3); PathPrefix trimming conversion.go:1549-1553",
    yaml: r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: g}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews}]
  rules:
  - matches:
    - method: {service: pkg.S, method: M}
    - method: {service: pkg.S}
    - method: {method: M}
    - method: {type: RegularExpression, service: "pkg\\..*"}
    - headers: [{name: X-H, value: v}]
    backendRefs: [{name: ratings, port: 9080}]
"#,
    check: |c| {
        let r = &reviews(c).routes;
        let uris: Vec<_> = r.iter().map(|x| x.matches[0].uri.clone()).collect();
        assert!(uris.contains(&exact("/pkg.S/M")));
        assert!(uris.contains(&prefix("/pkg.S")));
        assert!(uris.contains(&regex("/[^/]+/M")));
        assert!(uris.contains(&regex("/pkg\\..*/.+")));
        assert!(r.iter().all(|x| x.origin.as_ref().unwrap().kind == "GRPCRoute"));
        let h = r.iter().find(|x| !x.matches[0].headers.is_empty()).unwrap();
        assert_eq!(h.matches[0].headers[0].name, "x-h");
    },
}

case! {
    without_headers_regex_star_is_a_present_match,
    "withoutHeaders regex \"*\" is accepted and compiles to a present match (the route matches when the header is absent)",
    cite: "pkg/config/validation/virtualservice.go:149-154 @ 1.30.3; route.go:1164-1186 canBeConvertedToPresentMatch; tests/integration/pilot/common/routing.go:1171 \"without headers regex convert to present_match\"",
    yaml: r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{withoutHeaders: {end-user: {regex: "*"}}}]
    route: [{destination: {host: reviews}}]
"#,
    check: |c| {
        let m = &reviews(c).routes[0].matches[0];
        assert_eq!(m.without_headers[0].name, "end-user");
        assert_eq!(m.without_headers[0].value, None);
    },
}
