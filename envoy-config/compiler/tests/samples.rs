//! Upstream Istio samples (../shared/istio-samples, verbatim): each file is compiled together
//! with `bookinfo/platform/*.yaml` (the Services they refer to). Samples that apply to a waypoint
//! compile to the expected routes / bindings; the others are skipped with a precise notice.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use layover_proto::v1::RouteSource;
use std::path::{Path, PathBuf};

enum Expect {
    /// Service (short name in `default`, or FQDN) has routes from this source.
    Route(&'static str, RouteSource),
    /// Service has this many authorization policies bound.
    Authz(&'static str, usize),
    /// A cluster with this name exists.
    Cluster(&'static str),
    /// A notice (or warning) containing this text was emitted.
    Notice(&'static str),
    /// Compiled for this waypoint.
    Waypoint(&'static str),
    /// Number of authorization policies in the policy.
    Policies(usize),
}
use Expect::*;

const SELECTOR: &str = "skipped: selector-based policies are enforced by ztunnel or sidecars, not by waypoints; bind it to the waypoint with targetRefs";
const NS_WIDE: &str =
    "skipped: namespace-wide policies without targetRefs are not enforced by waypoints";

fn table() -> Vec<(&'static str, Vec<Expect>)> {
    vec![
        ("authz/ambient-enforce-auth-policies--1-productpage-ztunnel-l4.yaml", vec![Notice(SELECTOR), Policies(0)]),
        ("authz/ambient-enforce-auth-policies--2-productpage-waypoint-l7.yaml", vec![Authz("productpage", 1), Authz("reviews", 0)]),
        ("authz/ambient-enforce-auth-policies--3-productpage-ztunnel-l4-updated.yaml", vec![Notice(SELECTOR), Policies(0)]),
        ("authz/ambient-getting-started-legacy--1-productpage-viewer-l4.yaml", vec![Notice(SELECTOR), Policies(0)]),
        ("authz/ambient-getting-started-legacy--2-productpage-viewer-l7-targetRef.yaml", vec![Authz("productpage", 1)]),
        ("authz/ambient-l4-policy--1-allow-sleep-to-httpbin.yaml", vec![Notice(SELECTOR), Policies(0)]),
        ("authz/ambient-l4-policy--2-allow-sleep-to-httpbin-l7-selector-failclosed.yaml", vec![Notice(SELECTOR), Policies(0)]),
        ("authz/ambient-l7-features--viewer-targetRefs-waypoint-gateway.yaml", vec![
            Notice("no waypoint Gateway in the input: Gateway default/waypoint is taken to be this waypoint (every service)"),
            Authz("productpage", 1), Authz("reviews-v1", 1),
        ]),
        ("authz/ambient-migrate-policies--1-allow-frontend-l4.yaml", vec![Notice(SELECTOR), Policies(0)]),
        ("authz/ambient-migrate-policies--2-allow-get-reviews-before-selector.yaml", vec![Notice(SELECTOR), Policies(0)]),
        ("authz/ambient-migrate-policies--3-allow-get-reviews-after-targetRefs.yaml", vec![
            Notice("spec.targetRefs[0]: skipped target: Service bookinfo/reviews is not in the input"), Policies(0),
        ]),
        ("authz/ambient-migrate-policies--4-deny-waypoint-bypass.yaml", vec![Notice(SELECTOR), Policies(0)]),
        ("authz/ambient-migrate-policies--5-deny-waypoint-bypass-incremental.yaml", vec![Notice(SELECTOR), Policies(0)]),
        ("authz/reference-authorization-policy--01-httpbin-allow-principal-ns-method-path-jwt.yaml", vec![Notice(NS_WIDE), Policies(0)]),
        ("authz/reference-authorization-policy--02-httpbin-deny-post-from-dev-ns.yaml", vec![Notice(NS_WIDE), Policies(0)]),
        ("authz/reference-authorization-policy--03-httpbin-deny-post-port-8080.yaml", vec![Notice(NS_WIDE), Policies(0)]),
        ("authz/reference-authorization-policy--04-anyname-audit-get-user-profile.yaml", vec![Notice(SELECTOR), Policies(0)]),
        ("authz/reference-authorization-policy--05-allow-nothing-namespace-foo.yaml", vec![Notice(NS_WIDE), Policies(0)]),
        ("authz/reference-authorization-policy--06-allow-all-namespace-foo.yaml", vec![Notice(NS_WIDE), Policies(0)]),
        ("authz/reference-authorization-policy--07-allow-nothing-selector-bar.yaml", vec![Notice(SELECTOR), Policies(0)]),
        ("authz/reference-authorization-policy--08-allow-nothing-root-ns-selector.yaml", vec![Notice(SELECTOR), Policies(0)]),
        ("authz/reference-authorization-policy--09-dry-run-example-deny-path.yaml", vec![Notice(SELECTOR), Policies(0)]),
        ("authz/reference-authorization-policy--10-ext-authz-custom-provider.yaml", vec![Notice(SELECTOR), Policies(0)]),
        ("authz/tasks-authz-http--1-allow-nothing.yaml", vec![Notice(NS_WIDE), Policies(0)]),
        ("authz/tasks-authz-http--2-productpage-viewer.yaml", vec![Notice(SELECTOR), Policies(0)]),
        ("authz/tasks-authz-http--3-details-viewer.yaml", vec![Notice(SELECTOR), Policies(0)]),
        ("authz/tasks-authz-http--4-reviews-viewer.yaml", vec![Notice(SELECTOR), Policies(0)]),
        ("authz/tasks-authz-http--5-ratings-viewer.yaml", vec![Notice(SELECTOR), Policies(0)]),
        ("bookinfo/gateway-api/bookinfo-gateway.yaml", vec![
            Notice("(Gateway default/bookinfo-gateway): spec.gatewayClassName: skipped: Gateway of class \"istio\" is not a waypoint (class istio-waypoint); ingress gateways are not compiled"),
            Notice("(HTTPRoute default/bookinfo): spec.parentRefs[0]: skipped: parentRef is Gateway default/bookinfo-gateway (ingress); only routes attached to Services (GAMMA) apply to a waypoint"),
            Route("productpage", RouteSource::Default),
        ]),
        ("bookinfo/gateway-api/route-all-v1.yaml", vec![
            Route("reviews", RouteSource::HttpRoute), Route("productpage", RouteSource::HttpRoute),
            Route("ratings", RouteSource::HttpRoute), Route("details", RouteSource::HttpRoute),
        ]),
        ("bookinfo/gateway-api/route-reviews-50-v3.yaml", vec![Route("reviews", RouteSource::HttpRoute)]),
        ("bookinfo/gateway-api/route-reviews-90-10.yaml", vec![Route("reviews", RouteSource::HttpRoute)]),
        ("bookinfo/gateway-api/route-reviews-v1.yaml", vec![Route("reviews", RouteSource::HttpRoute)]),
        ("bookinfo/gateway-api/route-reviews-v3.yaml", vec![Route("reviews", RouteSource::HttpRoute)]),
        ("bookinfo/networking/bookinfo-gateway.yaml", vec![
            Notice("(Gateway default/bookinfo-gateway): skipped: networking.istio.io Gateway configures ingress/egress gateways, not waypoints"),
            Notice("(VirtualService default/bookinfo): spec.gateways: skipped: does not apply to the waypoint: gateways [\"bookinfo-gateway\"] do not include \"mesh\""),
            Route("productpage", RouteSource::Default),
        ]),
        ("bookinfo/networking/certmanager-gateway.yaml", vec![
            Notice("(Gateway istio-system/cert-manager-gateway): skipped: networking.istio.io Gateway"),
            Notice("(VirtualService istio-system/cert-manager): spec.gateways: skipped: does not apply to the waypoint: gateways [\"cert-manager-gateway\"] do not include \"mesh\""),
        ]),
        ("bookinfo/networking/destination-rule-all-mtls.yaml", vec![Cluster("inbound-vip|9080|http/v2-mysql-vm|ratings.default.svc.cluster.local"), Cluster("inbound-vip|9080|http/v3|reviews.default.svc.cluster.local")]),
        ("bookinfo/networking/destination-rule-all.yaml", vec![Cluster("inbound-vip|9080|http/v2-mysql|ratings.default.svc.cluster.local"), Cluster("inbound-vip|9080|http/v1|productpage.default.svc.cluster.local")]),
        ("bookinfo/networking/destination-rule-reviews.yaml", vec![Cluster("inbound-vip|9080|http/v2|reviews.default.svc.cluster.local")]),
        ("bookinfo/networking/egress-rule-google-apis.yaml", vec![Route("www.googleapis.com", RouteSource::VirtualService), Cluster("inbound-vip|443|http|www.googleapis.com")]),
        ("bookinfo/networking/fault-injection-details-v1.yaml", vec![Route("details", RouteSource::VirtualService), Cluster("inbound-vip|9080|http/v1|details.default.svc.cluster.local")]),
        ("bookinfo/networking/virtual-service-all-v1.yaml", vec![
            Route("productpage", RouteSource::VirtualService), Route("reviews", RouteSource::VirtualService),
            Route("ratings", RouteSource::VirtualService), Route("details", RouteSource::VirtualService),
            Notice("subset \"v1\" of reviews.default.svc.cluster.local is not defined by any DestinationRule; requests routed there get 503"),
        ]),
        ("bookinfo/networking/virtual-service-details-v2.yaml", vec![Route("details", RouteSource::VirtualService)]),
        ("bookinfo/networking/virtual-service-ratings-db.yaml", vec![Route("reviews", RouteSource::VirtualService), Route("ratings", RouteSource::VirtualService)]),
        ("bookinfo/networking/virtual-service-ratings-mysql-vm.yaml", vec![Route("ratings", RouteSource::VirtualService)]),
        ("bookinfo/networking/virtual-service-ratings-mysql.yaml", vec![Route("ratings", RouteSource::VirtualService)]),
        ("bookinfo/networking/virtual-service-ratings-test-abort.yaml", vec![Route("ratings", RouteSource::VirtualService)]),
        ("bookinfo/networking/virtual-service-ratings-test-delay.yaml", vec![Route("ratings", RouteSource::VirtualService)]),
        ("bookinfo/networking/virtual-service-reviews-50-v3.yaml", vec![Route("reviews", RouteSource::VirtualService)]),
        ("bookinfo/networking/virtual-service-reviews-80-20.yaml", vec![Route("reviews", RouteSource::VirtualService)]),
        ("bookinfo/networking/virtual-service-reviews-90-10.yaml", vec![Route("reviews", RouteSource::VirtualService)]),
        ("bookinfo/networking/virtual-service-reviews-jason-v2-v3.yaml", vec![Route("reviews", RouteSource::VirtualService)]),
        ("bookinfo/networking/virtual-service-reviews-test-v2.yaml", vec![Route("reviews", RouteSource::VirtualService)]),
        ("bookinfo/networking/virtual-service-reviews-v2-v3.yaml", vec![Route("reviews", RouteSource::VirtualService)]),
        ("bookinfo/networking/virtual-service-reviews-v3.yaml", vec![Route("reviews", RouteSource::VirtualService)]),
        ("bookinfo/platform/bookinfo-services-serviceaccounts.yaml", vec![
            Route("reviews", RouteSource::Default),
            Notice("(ServiceAccount default/bookinfo-details): skipped: kind ServiceAccount (v1) is not Istio traffic or security configuration"),
        ]),
        ("bookinfo/platform/bookinfo-versions.yaml", vec![Route("reviews-v1", RouteSource::Default)]),
        ("routing-docs/ambient-l7-features--reviews-httproute-v1beta1-90-10.yaml", vec![Route("reviews", RouteSource::HttpRoute)]),
        ("routing-docs/ambient-migrate-policies--1-reviews-virtualservice-header-subsets.yaml", vec![Route("reviews", RouteSource::VirtualService)]),
        ("routing-docs/ambient-migrate-policies--2-reviews-version-services.yaml", vec![Route("reviews-v2.bookinfo.svc.cluster.local", RouteSource::Default)]),
        ("routing-docs/ambient-migrate-policies--3-reviews-httproute-header-match.yaml", vec![
            Notice("(HTTPRoute bookinfo/reviews): spec.parentRefs[0]: parent Service bookinfo/reviews is not in the input; route skipped"),
        ]),
        ("waypoint/ambient-argo-details-waypoint.yaml", vec![
            Waypoint("default/bookinfo-details"),
            Notice("waypoint default/bookinfo-details serves no service: label a Service, ServiceEntry or Namespace with istio.io/use-waypoint: bookinfo-details"),
        ]),
        ("waypoint/ambient-argo-reviews-waypoint.yaml", vec![Waypoint("default/bookinfo-reviews")]),
        ("waypoint/istio-io-waypoint-generate--waypoint-for-service.yaml", vec![
            Waypoint("default/waypoint"),
            Notice("(Gateway default/waypoint): no apiVersion: read as gateway.networking.k8s.io/v1"),
        ]),
    ]
}

fn samples_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/istio-samples");
    assert!(
        d.join("README.md").is_file(),
        "istio samples not found at {} (expected ../shared/istio-samples next to the repo)",
        d.display()
    );
    d
}

fn all_yaml(dir: &Path, base: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            all_yaml(&p, base, out);
        } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(p.strip_prefix(base).unwrap().to_string_lossy().to_string());
        }
    }
}

#[test]
fn every_sample_compiles_or_is_skipped_with_a_notice() {
    let dir = samples_dir();
    let mut files = Vec::new();
    all_yaml(&dir, &dir, &mut files);
    files.sort();
    let table = table();
    for f in &files {
        assert!(
            table.iter().any(|(t, _)| t == f),
            "sample {f} has no expectation"
        );
    }
    assert_eq!(
        files.len(),
        table.len(),
        "table lists files that do not exist"
    );
    let mut failures = Vec::new();
    for (file, expects) in &table {
        let paths = vec![dir.join(file), dir.join("bookinfo/platform")];
        let c = match layover_compiler::compile_paths(&paths) {
            Ok(c) => c,
            Err(e) => {
                failures.push(format!("{file}: did not compile:\n{e}"));
                continue;
            }
        };
        let notices: Vec<String> = c.notices.iter().map(|n| n.to_string()).collect();
        let find = |host: &str| {
            let h = if host.contains('.') {
                host.to_string()
            } else {
                format!("{host}.default.svc.cluster.local")
            };
            c.policy.services.iter().find(|s| s.hostname == h)
        };
        for e in expects {
            let ok = match e {
                Route(h, src) => find(h).is_some_and(|s| {
                    s.route_source == *src as i32
                        && (*src == RouteSource::Default || !s.routes.is_empty())
                }),
                Authz(h, n) => find(h).is_some_and(|s| s.authorization_policies.len() == *n),
                Cluster(n) => c.policy.clusters.iter().any(|x| x.name == *n),
                Notice(t) => {
                    notices.iter().any(|n| n.contains(t) && n.contains(file))
                        || notices
                            .iter()
                            .any(|n| n.starts_with("notice: input:") && n.contains(t))
                }
                Waypoint(w) => c.policy.waypoint == *w,
                Policies(n) => c.policy.authorization_policies.len() == *n,
            };
            if !ok {
                let what = match e {
                    Route(h, s) => format!("route {h} {s:?}"),
                    Authz(h, n) => format!("authz {h} {n}"),
                    Cluster(n) => format!("cluster {n}"),
                    Notice(t) => format!("notice {t:?}"),
                    Waypoint(w) => format!("waypoint {w}"),
                    Policies(n) => format!("{n} policies"),
                };
                failures.push(format!(
                    "{file}: expected {what}\nnotices:\n{}",
                    notices.join("\n")
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn all_samples_together_report_only_known_conflicts() {
    // Everything at once (except the waypoints, which would need --waypoint): still compiles.
    let dir = samples_dir();
    let paths: Vec<PathBuf> = ["authz", "bookinfo", "routing-docs"]
        .iter()
        .map(|d| dir.join(d))
        .collect();
    let c = layover_compiler::compile_paths(&paths).unwrap_or_else(|e| panic!("{e}"));
    // reviews has both HTTPRoutes (gateway-api/) and VirtualServices (networking/).
    assert!(c
        .notices
        .iter()
        .any(|n| n.to_string().contains("which take precedence")));
    // default/productpage-viewer is defined by three files; the last one (a selector policy,
    // tasks-authz-http--2) replaces the others, as kubectl apply would.
    assert!(c.notices.iter().any(|n| n.to_string().contains(
        "(AuthorizationPolicy default/productpage-viewer): replaced by the later definition"
    )));
    assert_eq!(c.policy.authorization_policies.len(), 2);
}
