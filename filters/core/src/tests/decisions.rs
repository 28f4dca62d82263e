//! Decisions: service selection, authz order, default route, destinations and sampling,
//! retries, timeouts, faults, header operations, rewrites, redirects, direct responses, mirrors,
//! CORS.

// The same tables run compiled to wasm32 (the target the filter ships in) under
// wasm-bindgen-test, so regex, hashing and arithmetic behave identically there.
use super::*;
use crate::{Action, CorsKind, HeaderOp};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn one(r: wire::HttpRoute) -> CompiledPolicy {
    vs_policy(vec![r])
}
fn catch_all(f: impl FnOnce(&mut wire::HttpRoute)) -> wire::HttpRoute {
    let mut r = route(
        "r",
        vec![m_uri(prefix("/"))],
        &format!("outbound|9080||{HOST}"),
    );
    f(&mut r);
    r
}
fn hv(name: &str, value: &str) -> wire::HeaderValue {
    wire::HeaderValue {
        name: name.into(),
        value: value.into(),
    }
}
fn set(n: &str, v: &str) -> HeaderOp {
    HeaderOp::Set {
        name: n.into(),
        value: v.into(),
    }
}
fn app(n: &str, v: &str) -> HeaderOp {
    HeaderOp::Append {
        name: n.into(),
        value: v.into(),
    }
}
fn rm(n: &str) -> HeaderOp {
    HeaderOp::Remove { name: n.into() }
}

// ---------------------------------------------------------------- service selection

fn two_services() -> CompiledPolicy {
    let mut a = service(HOST, wire::RouteSource::Default, vec![]);
    a.addresses = vec!["10.0.0.1".into(), "fd00::1".into()];
    let mut b = service(
        "ratings.default.svc.cluster.local",
        wire::RouteSource::Default,
        vec![],
    );
    b.addresses = vec!["10.0.0.2".into()];
    let c = service(
        "reviews.other.svc.cluster.local",
        wire::RouteSource::Default,
        vec![],
    );
    let e = service("api.example.com", wire::RouteSource::Default, vec![]);
    CompiledPolicy::compile(&policy(vec![a, b, c, e])).unwrap()
}

// A waypoint selects the service by the destination the client dialled (HBONE authority /
// original destination), never by the Host header (istio.io/latest/docs/ambient/usage/waypoint/).
#[test]
fn service_selection_by_fqdn_ip_and_unknown() {
    let cp = two_services();
    let rows: &[(&str, Option<&str>, Option<&str>, Option<&str>)] = &[
        ("FQDN exact", Some(HOST), None, Some(HOST)),
        (
            "FQDN is case-insensitive (DNS names, RFC 4343)",
            Some("Reviews.Default.SVC.cluster.local"),
            None,
            Some(HOST),
        ),
        (
            "FQDN with trailing dot",
            Some("ratings.default.svc.cluster.local."),
            None,
            Some("ratings.default.svc.cluster.local"),
        ),
        (
            "no FQDN: VIP selects the service",
            None,
            Some("10.0.0.2"),
            Some("ratings.default.svc.cluster.local"),
        ),
        ("IPv6 VIP", None, Some("fd00::1"), Some(HOST)),
        (
            "unknown FQDN falls back to the VIP",
            Some("nope.default.svc.cluster.local"),
            Some("10.0.0.1"),
            Some(HOST),
        ),
        (
            "unknown service and VIP",
            Some("nope.default.svc.cluster.local"),
            Some("10.9.9.9"),
            None,
        ),
    ];
    for (why, svc, vip, want) in rows {
        let mut req = rv("/", &[]);
        req.destination.service = *svc;
        req.destination.ip = vip.map(ip);
        let d = cp.decide(&req);
        assert_eq!(d.service.map(|s| s.hostname), *want, "{why}");
        if want.is_none() {
            assert_eq!(
                (d.action, d.status, d.reason),
                (Action::UnknownService, Some(404), "unknown_service"),
                "{why}"
            );
        }
    }
}

// Istio sidecar virtual hosts list, per service port: the FQDN, `name.ns.svc`, `name.ns`, the
// short name (same-namespace clients) and the VIPs, each with and without `:port`
// (pilot/pkg/networking/core/httproute.go generateVirtualHostDomains).
#[test]
fn service_for_authority_like_virtual_host_domains() {
    let cp = two_services();
    let rows: &[(&str, Option<&str>)] = &[
        ("ratings", Some("ratings.default.svc.cluster.local")),
        ("ratings:9080", Some("ratings.default.svc.cluster.local")),
        ("ratings.default", Some("ratings.default.svc.cluster.local")),
        (
            "ratings.default:8080",
            Some("ratings.default.svc.cluster.local"),
        ),
        (
            "ratings.default.svc",
            Some("ratings.default.svc.cluster.local"),
        ),
        (
            "ratings.default.svc.cluster.local",
            Some("ratings.default.svc.cluster.local"),
        ),
        (
            "ratings.default.svc.cluster.local:9080",
            Some("ratings.default.svc.cluster.local"),
        ),
        ("RATINGS.Default", Some("ratings.default.svc.cluster.local")),
        ("ratings:1234", None),
        ("10.0.0.2:9080", Some("ratings.default.svc.cluster.local")),
        ("10.0.0.1", Some(HOST)),
        ("[fd00::1]:9080", Some(HOST)),
        // Two services named "reviews" in different namespaces: the short name is ambiguous.
        ("reviews", None),
        ("reviews.other", Some("reviews.other.svc.cluster.local")),
        ("reviews.default:9080", Some(HOST)),
        // ServiceEntry-style hosts only answer to the host itself.
        ("api.example.com:8080", Some("api.example.com")),
        ("api", None),
        ("unknown.default", None),
    ];
    for (authority, want) in rows {
        assert_eq!(cp.service_for_authority(authority), *want, "{authority}");
    }
}

// ---------------------------------------------------------------- authz order

fn authz_policy(
    name: &str,
    action: wire::AuthorizationAction,
    rules: Vec<wire::AuthorizationRule>,
) -> wire::AuthorizationPolicy {
    wire::AuthorizationPolicy {
        origin: Some(wire::Origin {
            kind: "AuthorizationPolicy".into(),
            namespace: "default".into(),
            name: name.into(),
            ..Default::default()
        }),
        action: action as i32,
        rules,
        dry_run: false,
    }
}

fn with_authz(
    p: wire::AuthorizationPolicy,
    routes: Vec<wire::HttpRoute>,
    source: wire::RouteSource,
) -> CompiledPolicy {
    let mut s = service(HOST, source, routes);
    s.authorization_policies = vec![0];
    let mut pol = policy(vec![s]);
    pol.authorization_policies = vec![p];
    CompiledPolicy::compile(&pol).unwrap()
}

// RBAC filters precede the router in the waypoint chain: a DENY answers 403
// "RBAC: access denied" before any route is looked at
// (istio.io/latest/docs/reference/config/security/authorization-policy/).
#[test]
fn authz_deny_precedes_routing() {
    let cp = with_authz(
        authz_policy(
            "deny-all",
            wire::AuthorizationAction::Deny,
            vec![wire::AuthorizationRule::default()],
        ),
        vec![route("x", vec![m_uri(exact("/only"))], "c")],
        wire::RouteSource::VirtualService,
    );
    // Even a path with no route is denied, not 404.
    let d = cp.decide(&rv("/nothing", &[]));
    assert_eq!((d.action, d.status), (Action::Deny, Some(403)));
    assert_eq!(d.body, Some(&b"RBAC: access denied"[..]));
    assert!(d.route.is_none());
    let az = d.authz.unwrap();
    assert!(!az.allowed);
    assert_eq!(az.deciding.map(|p| p.name), Some("deny-all"));
}

// An ALLOW policy with no rules matches nothing: with it bound, everything is denied.
#[test]
fn authz_allow_without_rules_denies() {
    let cp = with_authz(
        authz_policy("allow-nothing", wire::AuthorizationAction::Allow, vec![]),
        vec![],
        wire::RouteSource::Default,
    );
    let d = cp.decide(&rv("/", &[]));
    assert_eq!((d.action, d.status), (Action::Deny, Some(403)));
}

#[test]
fn authz_allow_all_then_routes() {
    let cp = with_authz(
        authz_policy(
            "allow-all",
            wire::AuthorizationAction::Allow,
            vec![wire::AuthorizationRule::default()],
        ),
        vec![],
        wire::RouteSource::Default,
    );
    let d = cp.decide(&rv("/", &[]));
    assert_eq!(d.action, Action::Forward);
    let az = d.authz.unwrap();
    assert!(az.allowed);
    assert_eq!(az.deciding.map(|p| p.name), Some("allow-all"));
}

// ---------------------------------------------------------------- default route

// No VirtualService / HTTPRoute: the service's own cluster for the port, mesh default retries,
// no timeout (istiod BuildDefaultHTTPOutboundRoute / waypoint default routes).
#[test]
fn default_route_per_port_with_mesh_retry() {
    let cp = CompiledPolicy::compile(&policy(vec![service(
        HOST,
        wire::RouteSource::Default,
        vec![],
    )]))
    .unwrap();
    let rows: &[(u16, Option<&str>)] = &[
        (
            9080,
            Some("outbound|9080||reviews.default.svc.cluster.local"),
        ),
        (
            8080,
            Some("outbound|8080||reviews.default.svc.cluster.local"),
        ),
        (1234, None),
    ];
    for (port, want) in rows {
        let mut req = rv("/a?b=c", &[]);
        req.destination.port = *port;
        let d = cp.decide(&req);
        match want {
            Some(cluster) => {
                assert_eq!(d.action, Action::Forward);
                assert_eq!(d.destinations.len(), 1);
                assert_eq!(d.destinations[0].cluster, *cluster);
                assert_eq!(d.destinations[0].probability, 1.0);
                assert!(d.route.unwrap().is_default);
                let retry = d.retry.unwrap();
                assert!(retry.from_mesh_default);
                assert_eq!(retry.policy, &mesh_retry());
                assert_eq!(d.timeout_ms, 0);
                assert_eq!(d.path, "/a?b=c");
                assert_eq!(d.normalized_path, "/a");
            }
            None => assert_eq!(
                (d.action, d.status, d.reason),
                (Action::NoRoute, Some(404), "no_service_port")
            ),
        }
    }
}

// ---------------------------------------------------------------- destinations

// Weighted destinations: every candidate with its weight and probability; Envoy picks
// `random % total_weight` over cumulative weights (WeightedClusterSpecifier).
#[test]
fn weighted_destinations_and_sample_statistics() {
    let cp = one(catch_all(|r| {
        r.action = fwd(vec![
            dest(&format!("outbound|9080|v1|{HOST}"), 50),
            dest(&format!("outbound|9080|v2|{HOST}"), 30),
            dest(&format!("outbound|9080|v3|{HOST}"), 20),
        ])
    }));
    let d = cp.decide(&rv("/", &[]));
    assert_eq!(d.action, Action::Forward);
    let probs: Vec<(String, u32, f64)> = d
        .destinations
        .iter()
        .map(|x| (x.subset.clone(), x.weight, x.probability))
        .collect();
    assert_eq!(
        probs,
        vec![
            ("v1".into(), 50, 0.5),
            ("v2".into(), 30, 0.3),
            ("v3".into(), 20, 0.2)
        ]
    );
    let mut counts = [0u32; 3];
    let n = 100_000u64;
    for e in 0..n {
        counts[d.sample(e).destination.unwrap()] += 1;
    }
    for (c, p) in counts.iter().zip([0.5, 0.3, 0.2]) {
        let f = f64::from(*c) / n as f64;
        assert!((f - p).abs() < 0.01, "observed {f} for {p}");
    }
    // Deterministic for a given entropy.
    assert_eq!(d.sample(42), d.sample(42));
    // The route's pick (whose response operations a local reply would carry) is the forward
    // pick itself.
    for e in 0..1000 {
        let s = d.sample(e);
        assert_eq!(s.route_destination, s.destination);
    }
}

// envoyproxy/envoy source/common/http/filter_manager.cc sendLocalReply: the route is resolved
// (weighted cluster picked) before RBAC answers, and its entry's response header operations
// apply to the 403. A denied request keeps the matched forwarding route's destinations for
// that, and no forwarding pick.
#[test]
fn deny_keeps_the_matched_routes_destinations_for_the_local_reply() {
    let mut p = policy(vec![service(
        HOST,
        wire::RouteSource::VirtualService,
        vec![route(
            "r",
            vec![m_uri(prefix("/"))],
            &format!("outbound|9080|v1|{HOST}"),
        )],
    )]);
    p.authorization_policies.push(wire::AuthorizationPolicy {
        action: wire::AuthorizationAction::Deny as i32,
        rules: vec![wire::AuthorizationRule::default()],
        ..Default::default()
    });
    p.services[0].authorization_policies = vec![0];
    let cp = CompiledPolicy::compile(&p).unwrap();
    let d = cp.decide(&rv("/x", &[]));
    assert_eq!(d.action, Action::Deny);
    assert!(d.destinations.is_empty());
    assert_eq!(d.route_destinations.len(), 1);
    let s = d.sample(7);
    assert_eq!(s.destination, None);
    assert_eq!(s.route_destination, Some(0));
    assert_eq!(s.status, Some(403));
}

// istiod applyHTTPRouteDestination: 0-weight destinations are dropped when there are several.
#[test]
fn zero_weight_destination_is_dropped() {
    let cp = one(catch_all(|r| {
        r.action = fwd(vec![dest("a", 100), dest("b", 0)])
    }));
    let d = cp.decide(&rv("/", &[]));
    assert_eq!(d.destinations.len(), 1);
    assert_eq!(d.destinations[0].cluster, "a");
    assert_eq!(d.sample(7).destination, Some(0));
}

// Subsets are part of the cluster name `outbound|<port>|<subset>|<fqdn>` and reported.
#[test]
fn subset_destination_reported() {
    let cp = one(catch_all(|r| {
        r.action = to(&format!("outbound|9080|v2|{HOST}"))
    }));
    let d = cp.decide(&rv("/", &[]));
    let x = &d.destinations[0];
    assert_eq!(
        (
            x.cluster.as_str(),
            x.host.as_str(),
            x.port,
            x.subset.as_str(),
            x.weight
        ),
        (
            format!("outbound|9080|v2|{HOST}").as_str(),
            HOST,
            9080,
            "v2",
            100
        )
    );
}

// A destination that cannot be served answers like Envoy's missing cluster: 503, or 500 for
// Gateway API routes (istiod cluster_not_found_response_code INTERNAL_SERVER_ERROR).
#[test]
fn unavailable_destination() {
    let mut bad = dest("outbound|9080|nosuch|x", 100);
    bad.unavailable = true;
    let r = catch_all(|r| r.action = fwd(vec![bad.clone()]));
    let d_vs = one(r.clone());
    let d = d_vs.decide(&rv("/", &[]));
    assert_eq!(
        (d.action, d.status, d.reason),
        (Action::Unavailable, Some(503), "cluster_not_found")
    );
    let gw = CompiledPolicy::compile(&policy(vec![service(
        HOST,
        wire::RouteSource::HttpRoute,
        vec![r],
    )]))
    .unwrap();
    let d = gw.decide(&rv("/", &[]));
    assert_eq!((d.action, d.status), (Action::Unavailable, Some(500)));

    // With several destinations only the picked one decides.
    let mut half = bad;
    half.weight = 50;
    let cp = one(catch_all(|r| r.action = fwd(vec![dest("ok", 50), half])));
    let d = cp.decide(&rv("/", &[]));
    assert_eq!((d.action, d.status), (Action::Forward, None));
    let mut seen = [false; 2];
    for e in 0..64 {
        let s = d.sample(e);
        let i = s.destination.unwrap();
        seen[i] = true;
        assert_eq!(s.status, if i == 1 { Some(503) } else { None });
    }
    assert_eq!(seen, [true, true]);
}

// ---------------------------------------------------------------- retries / timeouts

// VirtualService HTTPRetry: a route's policy replaces the mesh default entirely
// (istiod: `policy := in.Retries; if policy == nil { policy = mesh.GetDefaultHttpRetryPolicy() }`).
#[test]
fn retries_explicit_vs_mesh_default() {
    let explicit = wire::RetryPolicy {
        attempts: 5,
        per_try_timeout_ms: 250,
        retry_on: vec!["gateway-error".into(), "retriable-status-codes".into()],
        retriable_status_codes: vec![502, 504],
        retry_host_predicates: vec!["envoy.retry_host_predicates.previous_hosts".into()],
        host_selection_retry_max_attempts: 5,
        retry_remote_localities: true,
    };
    let rows: Vec<(
        &str,
        Option<wire::RetryPolicy>,
        bool,
        Option<wire::RetryPolicy>,
        bool,
    )> = vec![
        (
            "route policy wins",
            Some(explicit.clone()),
            true,
            Some(explicit.clone()),
            false,
        ),
        (
            "no route policy: mesh default",
            None,
            true,
            Some(mesh_retry()),
            true,
        ),
        (
            "attempts 0 disables retries but is still the route's policy",
            Some(wire::RetryPolicy::default()),
            true,
            Some(wire::RetryPolicy::default()),
            false,
        ),
        (
            "no route policy and no mesh default: none",
            None,
            false,
            None,
            false,
        ),
    ];
    for (why, route_retry, mesh_default, want, from_mesh) in rows {
        let r = catch_all(|r| r.retries = route_retry);
        let mut p = policy(vec![service(
            HOST,
            wire::RouteSource::VirtualService,
            vec![r],
        )]);
        if !mesh_default {
            p.mesh = None;
        }
        let cp = CompiledPolicy::compile(&p).unwrap();
        let d = cp.decide(&rv("/", &[]));
        assert_eq!(d.retry.map(|x| x.policy.clone()), want, "{why}");
        if want.is_some() {
            assert_eq!(d.retry.unwrap().from_mesh_default, from_mesh, "{why}");
        }
    }
}

// VirtualService http[].timeout; 0 = no timeout (istiod setTimeout default Notimeout).
#[test]
fn timeout_reported() {
    for t in [0u64, 1500] {
        let cp = one(catch_all(|r| r.timeout_ms = t));
        assert_eq!(cp.decide(&rv("/", &[])).timeout_ms, t);
    }
}

// ---------------------------------------------------------------- faults

fn fault(
    delay: Option<(u64, f64)>,
    abort: Option<(u32, u32, f64)>,
) -> Option<wire::FaultInjection> {
    Some(wire::FaultInjection {
        delay: delay.map(|(ms, p)| wire::FaultDelay {
            fixed_delay_ms: ms,
            percentage: p,
        }),
        abort: abort.map(|(h, g, p)| wire::FaultAbort {
            http_status: h,
            grpc_status: g,
            percentage: p,
        }),
    })
}

// istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPFaultInjection-Abort
#[test]
fn fault_abort_always() {
    let cp = one(catch_all(|r| r.fault = fault(None, Some((418, 0, 100.0)))));
    let d = cp.decide(&rv("/", &[]));
    assert_eq!(
        (d.action, d.status, d.reason),
        (Action::Abort, Some(418), "fault_filter_abort")
    );
    let s = d.sample(1);
    assert_eq!(s.status, Some(418));
    assert_eq!(s.abort.map(|a| a.http_status), Some(418));
}

// The fault filter runs before the router, so an abort also preempts redirects / direct responses.
#[test]
fn fault_abort_preempts_direct_response() {
    let cp = one(catch_all(|r| {
        r.fault = fault(None, Some((503, 0, 100.0)));
        r.action = Some(WA::DirectResponse(wire::DirectResponse {
            status: 200,
            body: b"hi".to_vec(),
        }));
    }));
    let d = cp.decide(&rv("/", &[]));
    assert_eq!(
        (d.action, d.status, d.body),
        (Action::Abort, Some(503), None)
    );
}

// gRPC abort: HTTP 200 with grpc-status (HTTPFaultInjection.Abort.grpcStatus).
#[test]
fn fault_grpc_abort() {
    let cp = one(catch_all(|r| r.fault = fault(None, Some((0, 14, 100.0)))));
    let d = cp.decide(&rv("/", &[]));
    assert_eq!((d.action, d.status), (Action::Abort, Some(200)));
    assert_eq!(d.fault.unwrap().abort.unwrap().grpc_status, Some(14));
}

// Percentages are fractions of requests; delay and abort are independent draws
// (Envoy fault filter, MILLION denominator from istiod translatePercentToFractionalPercent).
#[test]
fn fault_percentages_sample_statistics() {
    let cp = one(catch_all(|r| {
        r.fault = fault(Some((2000, 50.0)), Some((503, 0, 25.0)))
    }));
    let d = cp.decide(&rv("/", &[]));
    assert_eq!((d.action, d.status), (Action::Forward, None));
    let n = 100_000u64;
    let (mut delayed, mut aborted, mut both) = (0u32, 0u32, 0u32);
    for e in 0..n {
        let s = d.sample(e.wrapping_mul(0x9E37_79B9));
        let dl = s.delay_ms == Some(2000);
        let ab = s.abort.is_some();
        delayed += u32::from(dl);
        aborted += u32::from(ab);
        both += u32::from(dl && ab);
        if ab {
            assert_eq!(s.status, Some(503));
        }
    }
    let f = |c: u32| f64::from(c) / n as f64;
    assert!((f(delayed) - 0.5).abs() < 0.01, "delay {}", f(delayed));
    assert!((f(aborted) - 0.25).abs() < 0.01, "abort {}", f(aborted));
    assert!(
        (f(both) - 0.125).abs() < 0.01,
        "independent draws {}",
        f(both)
    );
}

// istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPFaultInjection-Delay:
// percentage 0 injects nothing.
#[test]
fn fault_zero_percent_never_fires() {
    let cp = one(catch_all(|r| {
        r.fault = fault(Some((100, 0.0)), Some((500, 0, 0.0)))
    }));
    let d = cp.decide(&rv("/", &[]));
    for e in 0..1000 {
        let s = d.sample(e);
        assert_eq!((s.delay_ms, s.abort, s.status), (None, None, None));
    }
}

// ---------------------------------------------------------------- header operations

fn ops(
    set: &[(&str, &str)],
    add: &[(&str, &str)],
    remove: &[&str],
) -> Option<wire::HeaderOperations> {
    Some(wire::HeaderOperations {
        set: set.iter().map(|(n, v)| hv(n, v)).collect(),
        add: add.iter().map(|(n, v)| hv(n, v)).collect(),
        remove: remove.iter().map(|s| s.to_string()).collect(),
    })
}

// One destination: istiod appends the destination's operations to the route's lists, so one
// Envoy HeaderParser runs: all removes first, then route sets/adds, then destination ones.
#[test]
fn header_ops_single_destination_order() {
    let mut d0 = dest("c", 100);
    d0.request_headers = ops(&[("x-d", "dv")], &[("x-da", "1")], &["x-drm"]);
    d0.response_headers = ops(&[], &[("x-resp-d", "1")], &[]);
    let cp = one(catch_all(|r| {
        r.request_headers = ops(&[("x-r", "rv")], &[("x-ra", "1")], &["x-rrm"]);
        r.response_headers = ops(&[("x-resp", "r")], &[], &["server"]);
        r.action = fwd(vec![d0]);
    }));
    let d = cp.decide(&rv("/", &[]));
    assert_eq!(
        d.destinations[0].request_header_ops,
        vec![
            rm("x-rrm"),
            rm("x-drm"),
            set("x-r", "rv"),
            app("x-ra", "1"),
            set("x-d", "dv"),
            app("x-da", "1")
        ]
    );
    assert_eq!(
        d.destinations[0].response_header_ops,
        vec![rm("server"), set("x-resp", "r"), app("x-resp-d", "1")]
    );
}

// Several destinations: Envoy evaluates the weighted cluster's parser, then the route's
// (WeightedClusterEntry::finalizeRequestHeaders).
#[test]
fn header_ops_weighted_destination_order() {
    let mut d0 = dest("a", 50);
    d0.request_headers = ops(&[("x-d", "a")], &[], &["x-drm"]);
    let d1 = dest("b", 50);
    let cp = one(catch_all(|r| {
        r.request_headers = ops(&[("x-r", "rv")], &[], &["x-rrm"]);
        r.action = fwd(vec![d0, d1]);
    }));
    let d = cp.decide(&rv("/", &[]));
    assert_eq!(
        d.destinations[0].request_header_ops,
        vec![rm("x-drm"), set("x-d", "a"), rm("x-rrm"), set("x-r", "rv")]
    );
    assert_eq!(
        d.destinations[1].request_header_ops,
        vec![rm("x-rrm"), set("x-r", "rv")]
    );
}

// ---------------------------------------------------------------- rewrites

fn rw_uri(u: &str) -> Option<wire::Rewrite> {
    Some(wire::Rewrite {
        uri: u.into(),
        has_uri: true,
        ..Default::default()
    })
}

struct RwRow {
    why: &'static str,
    m: fn() -> Vec<wire::RouteMatch>,
    rewrite: fn() -> Option<wire::Rewrite>,
    path: &'static str,
    want_path: &'static str,
}

// istiod emits `prefix_rewrite = rewrite.uri` for every match kind (applyHTTPRouteDestination);
// Envoy replaces the *matched* part: the prefix for prefix routes, the configured path for exact
// routes, the whole path for regex routes, and "/" for routes without a uri match
// (RouteEntryImplBase::currentUrlPathAfterRewriteWithMatchedPath). The query is kept.
// istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPRewrite
const RW_ROWS: &[RwRow] = &[
    RwRow {
        why: "prefix match: prefix replaced",
        m: || vec![m_uri(prefix("/old"))],
        rewrite: || rw_uri("/new"),
        path: "/old/x?q=1",
        want_path: "/new/x?q=1",
    },
    RwRow {
        why: "prefix match to root",
        m: || vec![m_uri(prefix("/api/"))],
        rewrite: || rw_uri("/"),
        path: "/api/v1",
        want_path: "/v1",
    },
    RwRow {
        why: "exact match: whole path replaced, query kept",
        m: || vec![m_uri(exact("/login"))],
        rewrite: || rw_uri("/auth/login"),
        path: "/login?next=/x",
        want_path: "/auth/login?next=/x",
    },
    RwRow {
        why: "regex match: whole path replaced",
        m: || vec![m_uri(regex("/u/[0-9]+"))],
        rewrite: || rw_uri("/user"),
        path: "/u/42?a",
        want_path: "/user?a",
    },
    RwRow {
        why: "no uri match: Envoy prefix \"/\" is what gets replaced",
        m: Vec::new,
        rewrite: || rw_uri("/v2/"),
        path: "/foo",
        want_path: "/v2/foo",
    },
    RwRow {
        why: "ignoreUriCase prefix: matched length replaced",
        m: || {
            vec![wire::RouteMatch {
                uri: prefix("/OLD"),
                ignore_uri_case: true,
                ..Default::default()
            }]
        },
        rewrite: || rw_uri("/new"),
        path: "/old/x",
        want_path: "/new/x",
    },
    RwRow {
        why: "uriRegexRewrite with group reference (Envoy regex_rewrite)",
        m: || vec![m_uri(prefix("/"))],
        rewrite: || {
            Some(wire::Rewrite {
                uri_regex: Some(wire::RegexRewrite {
                    pattern: "^/service/([^/]+)(/.*)$".into(),
                    substitution: "\\2/instance/\\1".into(),
                }),
                ..Default::default()
            })
        },
        path: "/service/foo/v1/api?x=1",
        want_path: "/v1/api/instance/foo?x=1",
    },
    RwRow {
        why: "uriRegexRewrite replaces every match (RE2 GlobalReplace)",
        m: || vec![m_uri(prefix("/"))],
        rewrite: || {
            Some(wire::Rewrite {
                uri_regex: Some(wire::RegexRewrite {
                    pattern: "o".into(),
                    substitution: "0".into(),
                }),
                ..Default::default()
            })
        },
        path: "/foo/boo",
        want_path: "/f00/b00",
    },
    RwRow {
        why: "Gateway API ReplaceFullPath keeps the query",
        m: || vec![m_uri(prefix("/"))],
        rewrite: || {
            Some(wire::Rewrite {
                full_path: "/full".into(),
                has_full_path: true,
                ..Default::default()
            })
        },
        path: "/a/b?c=d",
        want_path: "/full?c=d",
    },
    RwRow {
        why: "no rewrite: path unchanged",
        m: || vec![m_uri(prefix("/"))],
        rewrite: || None,
        path: "/a?b",
        want_path: "/a?b",
    },
];

#[test]
fn rewrite_rows() {
    for row in RW_ROWS {
        let mut r = route("rw", (row.m)(), "c");
        r.rewrite = (row.rewrite)();
        let cp = one(r);
        let d = cp.decide(&rv(row.path, &[]));
        assert_eq!(d.action, Action::Forward, "{}", row.why);
        assert_eq!(d.path, row.want_path, "{}", row.why);
        assert_eq!(
            d.normalized_path,
            row.path.split('?').next().unwrap(),
            "{}",
            row.why
        );
    }
}

// HTTPRewrite.authority → Envoy host_rewrite_literal.
#[test]
fn rewrite_authority() {
    let cp = one(catch_all(|r| {
        r.rewrite = Some(wire::Rewrite {
            authority: "new.example".into(),
            ..Default::default()
        })
    }));
    let d = cp.decide(&rv("/x", &[]));
    assert_eq!(
        (d.authority.as_ref(), d.path.as_ref()),
        ("new.example", "/x")
    );
    let plain = one(catch_all(|_| {}));
    assert_eq!(plain.decide(&rv("/x", &[])).authority, "reviews:9080");
}

// Gateway API URLRewrite ReplacePrefixMatch: istiod emits prefix_rewrite, except for "/" where
// it emits regex_rewrite `^<prefix>(/?)(.*)` → `/\2` to avoid a double slash.
#[test]
fn gateway_replace_prefix_match() {
    let rows: &[(&str, &str, &str, &str)] = &[
        ("/foo", "/", "/foo/bar?x", "/bar?x"),
        ("/foo", "/", "/foo", "/"),
        ("/foo", "/v2", "/foo/bar", "/v2/bar"),
        ("/foo/", "/v2", "/foo/bar", "/v2/bar"),
    ];
    for (pfx, uri, path, want) in rows {
        let mut r = route("gw", vec![m_uri(prefix(pfx))], "c");
        r.rewrite = rw_uri(uri);
        let cp = CompiledPolicy::compile(&policy(vec![service(
            HOST,
            wire::RouteSource::HttpRoute,
            vec![r],
        )]))
        .unwrap();
        assert_eq!(
            cp.decide(&rv(path, &[])).path,
            *want,
            "prefix {pfx} uri {uri} path {path}"
        );
    }
}

// ---------------------------------------------------------------- redirects

fn redirect(f: impl FnOnce(&mut wire::Redirect)) -> Option<WA> {
    let mut rd = wire::Redirect::default();
    f(&mut rd);
    Some(WA::Redirect(rd))
}

struct RdRow {
    why: &'static str,
    m: fn() -> Vec<wire::RouteMatch>,
    rd: fn(&mut wire::Redirect),
    scheme: &'static str,
    authority: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    status: u16,
    location: &'static str,
}

// istiod ApplyRedirect → Envoy RedirectAction; Location built by Envoy Http::Utility::newUri.
// istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPRedirect
const RD_ROWS: &[RdRow] = &[
    RdRow {
        why: "defaults: 301, same scheme/host/path, query kept",
        m: || vec![m_uri(prefix("/"))],
        rd: |_| {},
        scheme: "http",
        authority: "reviews:9080",
        path: "/a?b=1",
        headers: &[],
        status: 301,
        location: "http://reviews:9080/a?b=1",
    },
    RdRow {
        why: "uri replaces the path, request query kept",
        m: || vec![m_uri(prefix("/"))],
        rd: |r| r.uri = "/new".into(),
        scheme: "http",
        authority: "reviews",
        path: "/old?x=1",
        headers: &[],
        status: 301,
        location: "http://reviews/new?x=1",
    },
    RdRow {
        why: "uri with its own query drops the request query",
        m: || vec![m_uri(prefix("/"))],
        rd: |r| r.uri = "/new?y=2".into(),
        scheme: "http",
        authority: "reviews",
        path: "/old?x=1",
        headers: &[],
        status: 301,
        location: "http://reviews/new?y=2",
    },
    RdRow {
        why: "authority replaces the whole host incl. port",
        m: || vec![m_uri(prefix("/"))],
        rd: |r| r.authority = "other.example".into(),
        scheme: "http",
        authority: "reviews:9080",
        path: "/p",
        headers: &[],
        status: 301,
        location: "http://other.example/p",
    },
    RdRow {
        why: "port replaces the request port",
        m: || vec![m_uri(prefix("/"))],
        rd: |r| r.port = 8443,
        scheme: "http",
        authority: "reviews:9080",
        path: "/p",
        headers: &[],
        status: 301,
        location: "http://reviews:8443/p",
    },
    RdRow {
        why: "istiod drops an explicit :80 for http (request port kept)",
        m: || vec![m_uri(prefix("/"))],
        rd: |r| r.port = 80,
        scheme: "http",
        authority: "reviews:9080",
        path: "/p",
        headers: &[],
        status: 301,
        location: "http://reviews:9080/p",
    },
    RdRow {
        why: "scheme change strips the old default port (processRequestHost)",
        m: || vec![m_uri(prefix("/"))],
        rd: |r| r.scheme = "https".into(),
        scheme: "http",
        authority: "reviews:80",
        path: "/p",
        headers: &[],
        status: 301,
        location: "https://reviews/p",
    },
    RdRow {
        why: "scheme change keeps a non-default port",
        m: || vec![m_uri(prefix("/"))],
        rd: |r| r.scheme = "https".into(),
        scheme: "http",
        authority: "reviews:9080",
        path: "/p",
        headers: &[],
        status: 301,
        location: "https://reviews:9080/p",
    },
    RdRow {
        why: "port stripping follows x-forwarded-proto",
        m: || vec![m_uri(prefix("/"))],
        rd: |r| r.scheme = "http".into(),
        scheme: "http",
        authority: "reviews:443",
        path: "/p",
        headers: &[("x-forwarded-proto", "https")],
        status: 301,
        location: "http://reviews/p",
    },
    RdRow {
        why: "derivePort FROM_PROTOCOL_DEFAULT: no port_redirect, host kept",
        m: || vec![m_uri(prefix("/"))],
        rd: |r| {
            r.port_from_scheme = true;
            r.port = 9999;
        },
        scheme: "http",
        authority: "reviews:9080",
        path: "/p",
        headers: &[],
        status: 301,
        location: "http://reviews:9080/p",
    },
    RdRow {
        why: "redirectCode 308",
        m: || vec![m_uri(prefix("/"))],
        rd: |r| r.status = 308,
        scheme: "http",
        authority: "reviews",
        path: "/p",
        headers: &[],
        status: 308,
        location: "http://reviews/p",
    },
    RdRow {
        why: "redirectCode 302",
        m: || vec![m_uri(prefix("/"))],
        rd: |r| r.status = 302,
        scheme: "http",
        authority: "reviews",
        path: "/p",
        headers: &[],
        status: 302,
        location: "http://reviews/p",
    },
    RdRow {
        why: "replace_prefix (Gateway ReplacePrefixMatch → prefix_rewrite), query kept",
        m: || vec![m_uri(prefix("/old"))],
        rd: |r| {
            r.uri = "/new".into();
            r.replace_prefix = true;
        },
        scheme: "http",
        authority: "reviews",
        path: "/old/x?q",
        headers: &[],
        status: 301,
        location: "http://reviews/new/x?q",
    },
    RdRow {
        why: "relative uri gets a leading slash",
        m: || vec![m_uri(prefix("/"))],
        rd: |r| r.uri = "rel".into(),
        scheme: "http",
        authority: "reviews",
        path: "/p",
        headers: &[],
        status: 301,
        location: "http://reviews/rel",
    },
];

#[test]
fn redirect_rows() {
    for row in RD_ROWS {
        let mut r = route("rd", (row.m)(), "c");
        r.action = redirect(row.rd);
        r.response_headers = ops(&[("x-rd", "1")], &[], &[]);
        let cp = one(r);
        let mut req = rv(row.path, row.headers);
        req.scheme = row.scheme;
        req.authority = row.authority;
        let d = cp.decide(&req);
        assert_eq!(
            (d.action, d.status),
            (Action::Redirect, Some(row.status)),
            "{}",
            row.why
        );
        assert_eq!(d.location.as_deref(), Some(row.location), "{}", row.why);
        assert_eq!(
            d.response_header_ops,
            &[set("x-rd", "1")][..],
            "{}",
            row.why
        );
    }
}

// ---------------------------------------------------------------- direct response / mirrors

// istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPDirectResponse
#[test]
fn direct_response() {
    let cp = one(catch_all(|r| {
        r.action = Some(WA::DirectResponse(wire::DirectResponse {
            status: 503,
            body: b"unavailable".to_vec(),
        }));
        r.response_headers = ops(&[("content-type", "text/plain")], &[], &[]);
    }));
    let d = cp.decide(&rv("/x", &[]));
    assert_eq!(
        (d.action, d.status, d.body),
        (Action::DirectResponse, Some(503), Some(&b"unavailable"[..]))
    );
    assert_eq!(
        d.response_header_ops,
        &[set("content-type", "text/plain")][..]
    );
    assert!(d.destinations.is_empty());
}

// HTTPMirrorPolicy percentage → RequestMirrorPolicy runtime fraction; independent per mirror.
#[test]
fn mirrors_percentages() {
    let m = |c: &str, p: f64| wire::Mirror {
        cluster: c.into(),
        host: "m".into(),
        port: 80,
        subset: String::new(),
        percentage: p,
    };
    let cp = one(catch_all(|r| {
        r.mirrors = vec![m("always", 100.0), m("never", 0.0), m("half", 50.0)]
    }));
    let d = cp.decide(&rv("/", &[]));
    assert_eq!(d.mirrors.len(), 3);
    assert_eq!(d.mirrors[2].percentage, 50.0);
    let n = 20_000u64;
    let mut half = 0;
    for e in 0..n {
        let s = d.sample(e);
        assert!(s.mirror_fires(0));
        assert!(!s.mirror_fires(1));
        half += u32::from(s.mirror_fires(2));
    }
    let f = f64::from(half) / n as f64;
    assert!((f - 0.5).abs() < 0.02, "{f}");
}

// ---------------------------------------------------------------- CORS

fn cors(f: impl FnOnce(&mut wire::CorsPolicy)) -> wire::HttpRoute {
    let mut c = wire::CorsPolicy {
        allow_origins: vec![
            exact("https://a.example").unwrap(),
            regex("https://.*\\.b\\.example").unwrap(),
        ],
        allow_methods: vec!["GET".into(), "POST".into()],
        allow_headers: vec!["x-a".into(), "x-b".into()],
        expose_headers: vec!["x-exp".into()],
        max_age_seconds: 600,
        allow_credentials: wire::OptionalBool::True as i32,
        unmatched_preflights_forward: true,
    };
    f(&mut c);
    catch_all(|r| r.cors = Some(c))
}

fn options<'a>(headers: &'a [(&'a str, &'a str)]) -> RequestView<'a> {
    let mut r = rv("/x", headers);
    r.method = "OPTIONS";
    r
}

// Envoy CORS filter (cors_filter.cc): a preflight is OPTIONS + Origin + Access-Control-Request-Method;
// an allowed origin gets a 200 with the Access-Control-* headers.
#[test]
fn cors_preflight_allowed() {
    let cp = one(cors(|_| {}));
    let h = [
        ("origin", "https://x.b.example"),
        ("access-control-request-method", "POST"),
    ];
    let d = cp.decide(&options(&h));
    assert_eq!(
        (d.action, d.status, d.reason),
        (Action::DirectResponse, Some(200), "cors_preflight")
    );
    let c = d.cors.unwrap();
    assert_eq!(c.kind, CorsKind::Preflight);
    assert_eq!(
        c.response_headers(),
        vec![
            ("access-control-allow-origin", "https://x.b.example"),
            ("access-control-allow-credentials", "true"),
            ("access-control-allow-methods", "GET,POST"),
            ("access-control-allow-headers", "x-a,x-b"),
            ("access-control-max-age", "600"),
        ]
    );
}

// Non-matching preflight: forwarded upstream by default (istiod forwardNotMatchingPreflights true
// unless unmatchedPreflights: IGNORE), else answered 200 without allow-origin.
#[test]
fn cors_preflight_not_allowed() {
    let h = [
        ("origin", "https://evil.example"),
        ("access-control-request-method", "GET"),
    ];
    let cp = one(cors(|_| {}));
    let d = cp.decide(&options(&h));
    assert_eq!(d.action, Action::Forward);
    assert_eq!(d.cors.unwrap().kind, CorsKind::PreflightForwarded);

    let cp = one(cors(|c| c.unmatched_preflights_forward = false));
    let d = cp.decide(&options(&h));
    assert_eq!((d.action, d.status), (Action::DirectResponse, Some(200)));
    let c = d.cors.unwrap();
    assert_eq!(c.allow_origin, None);
    assert!(!c.origin_allowed);
    assert_eq!(c.allow_methods, Some("GET,POST"));
}

// allowMethods/allowHeaders "*" echo the request's Access-Control-Request-* values.
#[test]
fn cors_preflight_wildcards_echo() {
    let cp = one(cors(|c| {
        c.allow_methods = vec!["*".into()];
        c.allow_headers = vec!["*".into()];
        c.allow_origins = vec![exact("*").unwrap()];
    }));
    let h = [
        ("origin", "https://any.example"),
        ("access-control-request-method", "PATCH"),
        ("access-control-request-headers", "x-z"),
    ];
    let c = cp.decide(&options(&h)).cors.unwrap();
    assert_eq!(
        c.allow_origin,
        Some("https://any.example"),
        "exact \"*\" allows any origin (isOriginAllowed matches \"*\")"
    );
    assert_eq!(
        (c.allow_methods, c.allow_headers),
        (Some("PATCH"), Some("x-z"))
    );
}

// Actual cross-origin request: response gets allow-origin, credentials and expose-headers.
#[test]
fn cors_actual_request() {
    let cp = one(cors(|_| {}));
    let h = [("origin", "https://a.example")];
    let d = cp.decide(&rv("/x", &h));
    assert_eq!(d.action, Action::Forward);
    let c = d.cors.unwrap();
    assert_eq!(c.kind, CorsKind::Actual);
    assert_eq!(
        c.response_headers(),
        vec![
            ("access-control-allow-origin", "https://a.example"),
            ("access-control-allow-credentials", "true"),
            ("access-control-expose-headers", "x-exp")
        ]
    );
    // Not allowed: no headers.
    let h = [("origin", "https://evil.example")];
    assert!(cp
        .decide(&rv("/x", &h))
        .cors
        .unwrap()
        .response_headers()
        .is_empty());
    // No Origin: the CORS filter does nothing.
    assert!(cp.decide(&rv("/x", &[])).cors.is_none());
    // OPTIONS without Access-Control-Request-Method is not a preflight.
    let h = [("origin", "https://a.example")];
    assert_eq!(cp.decide(&options(&h)).cors.unwrap().kind, CorsKind::Actual);
}

// The CORS filter answers a preflight before the fault filter runs.
#[test]
fn cors_preflight_before_fault() {
    let mut r = cors(|_| {});
    r.fault = fault(None, Some((500, 0, 100.0)));
    let cp = one(r);
    let h = [
        ("origin", "https://a.example"),
        ("access-control-request-method", "GET"),
    ];
    let d = cp.decide(&options(&h));
    assert_eq!((d.action, d.status), (Action::DirectResponse, Some(200)));
    assert_eq!(d.sample(3).status, Some(200));
}

// ---------------------------------------------------------------- decision metadata

// `layover eval` explains which object/element/match decided: istiod names Envoy routes
// `<http[].name>.<match[].name>` and carries the VirtualService in route metadata.
#[test]
fn matched_route_metadata() {
    let mut r = route(
        "named",
        vec![
            m_uri(exact("/a")),
            wire::RouteMatch {
                uri: exact("/b"),
                name: "second".into(),
                ..Default::default()
            },
        ],
        "c",
    );
    r.origin.as_mut().unwrap().index = 3;
    let cp = one(r);
    let d = cp.decide(&rv("/b", &[]));
    let m = d.route.unwrap();
    assert_eq!(
        (m.index, m.match_index, m.match_name, m.is_default),
        (Some(0), Some(1), "second", false)
    );
    let o = m.origin.unwrap();
    assert_eq!(
        (
            o.kind.as_str(),
            o.namespace.as_str(),
            o.name.as_str(),
            o.index,
            o.element_name.as_str()
        ),
        ("VirtualService", "default", "reviews", 3, "named")
    );
    assert_eq!(d.service.unwrap().hostname, HOST);
}

// Authorization-only (route B): `authorize` is `decide`'s first step and nothing else — the
// same service lookup and AuthorizationPolicy result, no routing (a path with no route is
// allowed, not 404), and a service the policy does not know is denied.
#[test]
fn authorize_is_the_authorization_step_of_decide() {
    let cp = with_authz(
        authz_policy(
            "deny-admin",
            wire::AuthorizationAction::Deny,
            vec![wire::AuthorizationRule {
                to: vec![wire::Operation {
                    paths: vec!["/admin".into()],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        ),
        vec![route("x", vec![m_uri(exact("/only"))], "c")],
        wire::RouteSource::VirtualService,
    );
    let a = cp.authorize(&rv("/nothing", &[]));
    assert!(a.allowed());
    assert_eq!(a.service.map(|s| s.hostname), Some(HOST));
    assert_eq!(cp.decide(&rv("/nothing", &[])).status, Some(404));
    let req = rv("/admin", &[]);
    let a = cp.authorize(&req);
    assert!(!a.allowed());
    assert_eq!(a.authz, cp.decide(&req).authz);
    let mut stranger = rv("/", &[]);
    stranger.destination.service = Some("other.default.svc.cluster.local");
    let a = cp.authorize(&stranger);
    assert_eq!((a.allowed(), a.service, a.authz), (false, None, None));
}
