//! `CompiledPolicy::compile` rejects what Envoy / istiod would reject, naming where.

// The same tables run compiled to wasm32 (the target the filter ships in) under
// wasm-bindgen-test, so regex, hashing and arithmetic behave identically there.
use super::*;
use crate::InvalidPolicy;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn compile_err(p: wire::Policy) -> String {
    match CompiledPolicy::compile(&p) {
        Ok(_) => panic!("policy unexpectedly compiled"),
        Err(e) => e.to_string(),
    }
}

fn with_route(f: impl FnOnce(&mut wire::HttpRoute)) -> wire::Policy {
    let mut r = route("bad", vec![m_uri(prefix("/"))], "c");
    f(&mut r);
    policy(vec![service(
        HOST,
        wire::RouteSource::VirtualService,
        vec![r],
    )])
}

// proto/layover/v1/policy.proto: filters accept exactly the schema versions they were built with.
#[test]
fn schema_version_must_match() {
    let mut p = policy(vec![]);
    p.schema_version = 2;
    assert!(matches!(
        CompiledPolicy::compile(&p),
        Err(InvalidPolicy::SchemaVersion {
            found: 2,
            supported: 1
        })
    ));
}

// Each row: (why, policy, substrings the error must contain).
#[test]
fn invalid_routes_name_service_route_and_field() {
    let rows: Vec<(&str, wire::Policy, &[&str])> = vec![
        (
            "uri regex must compile (Envoy safe_regex, RE2 syntax)",
            with_route(|r| r.matches = vec![m_uri(regex("/a(["))]),
            &[
                HOST,
                "route 0",
                "VirtualService default/reviews",
                "matches[0].uri.regex",
            ],
        ),
        (
            "header regex must compile",
            with_route(|r| {
                r.matches = vec![wire::RouteMatch {
                    headers: vec![hdr("x", regex("(("))],
                    ..Default::default()
                }]
            }),
            &["matches[0].headers[0].value"],
        ),
        (
            "query regex must compile",
            with_route(|r| {
                r.matches = vec![wire::RouteMatch {
                    query_params: vec![qp("q", regex("[z-a]"))],
                    ..Default::default()
                }]
            }),
            &["matches[0].query_params[0].value"],
        ),
        (
            "a route needs an action",
            with_route(|r| r.action = None),
            &["action"],
        ),
        (
            "weights must not all be 0",
            with_route(|r| r.action = fwd(vec![dest("a", 0), dest("b", 0)])),
            &["forward.destinations", "weights sum to 0"],
        ),
        (
            "redirect codes are the ones istiod ApplyRedirect supports",
            with_route(|r| {
                r.action = Some(WA::Redirect(wire::Redirect {
                    status: 305,
                    ..Default::default()
                }))
            }),
            &["redirect.status", "305"],
        ),
        (
            "direct response status range (Envoy DirectResponseAction [100, 599])",
            with_route(|r| {
                r.action = Some(WA::DirectResponse(wire::DirectResponse {
                    status: 99,
                    body: vec![],
                }))
            }),
            &["direct_response.status"],
        ),
        (
            "fault abort http status range (Envoy FaultAbort [200, 600))",
            with_route(|r| {
                r.fault = Some(wire::FaultInjection {
                    delay: None,
                    abort: Some(wire::FaultAbort {
                        http_status: 100,
                        grpc_status: 0,
                        percentage: 100.0,
                    }),
                })
            }),
            &["fault.abort.http_status"],
        ),
        (
            "percentages are 0..=100",
            with_route(|r| {
                r.fault = Some(wire::FaultInjection {
                    delay: Some(wire::FaultDelay {
                        fixed_delay_ms: 1,
                        percentage: 150.0,
                    }),
                    abort: None,
                })
            }),
            &["fault.delay.percentage"],
        ),
        (
            "uri_regex substitution may only refer to existing groups (RE2 CheckRewriteString)",
            with_route(|r| {
                r.rewrite = Some(wire::Rewrite {
                    uri_regex: Some(wire::RegexRewrite {
                        pattern: "/(a)".into(),
                        substitution: "\\2".into(),
                    }),
                    ..Default::default()
                })
            }),
            &["rewrite.uri_regex.substitution"],
        ),
        (
            "uri and uri_regex are exclusive (Istio validation)",
            with_route(|r| {
                r.rewrite = Some(wire::Rewrite {
                    uri: "/x".into(),
                    has_uri: true,
                    uri_regex: Some(wire::RegexRewrite {
                        pattern: "a".into(),
                        substitution: "b".into(),
                    }),
                    ..Default::default()
                })
            }),
            &["rewrite", "only one of"],
        ),
        (
            "pseudo-headers and host cannot be mutated (Envoy HeaderParser; istiod isInternalHeader)",
            with_route(|r| r.request_headers = Some(wire::HeaderOperations { set: vec![wire::HeaderValue { name: ":authority".into(), value: "x".into() }], ..Default::default() })),
            &["request_headers", ":authority"],
        ),
        (
            "host cannot be removed on a destination either",
            with_route(|r| {
                let mut d = dest("c", 100);
                d.request_headers = Some(wire::HeaderOperations { remove: vec!["Host".into()], ..Default::default() });
                r.action = fwd(vec![d]);
            }),
            &["forward.destinations[0].request_headers", "Host"],
        ),
        (
            "CORS origin regex must compile",
            with_route(|r| {
                r.cors = Some(wire::CorsPolicy {
                    allow_origins: vec![regex("(").unwrap()],
                    ..Default::default()
                })
            }),
            &["cors.allow_origins[0].regex"],
        ),
    ];
    for (why, p, wants) in rows {
        let e = compile_err(p);
        for w in wants {
            assert!(e.contains(w), "{why}: error {e:?} lacks {w:?}");
        }
    }
}

// Service VIPs select the service (ambient: one address, one service); bindings index
// Policy.authorization_policies (policy.proto Service.authorization_policies).
#[test]
fn invalid_services() {
    let mut bad_ip = service(HOST, wire::RouteSource::Default, vec![]);
    bad_ip.addresses = vec!["10.0.0.300".into()];
    let mut authz_oob = service(HOST, wire::RouteSource::Default, vec![]);
    authz_oob.authorization_policies = vec![3];
    let mut shared_vip_a = service(HOST, wire::RouteSource::Default, vec![]);
    shared_vip_a.addresses = vec!["10.0.0.1".into()];
    let mut shared_vip_b = service(
        "ratings.default.svc.cluster.local",
        wire::RouteSource::Default,
        vec![],
    );
    shared_vip_b.addresses = vec!["10.0.0.1".into()];
    let rows: Vec<(&str, wire::Policy, &[&str])> = vec![
        (
            "addresses must be IPs",
            policy(vec![bad_ip]),
            &["addresses[0]", "10.0.0.300"],
        ),
        (
            "authz binding index in range",
            policy(vec![authz_oob]),
            &["authorization_policies[0]", "out of range"],
        ),
        (
            "duplicate hostnames (case-insensitive)",
            policy(vec![
                service(HOST, wire::RouteSource::Default, vec![]),
                service(&HOST.to_uppercase(), wire::RouteSource::Default, vec![]),
            ]),
            &["duplicate service hostname"],
        ),
        (
            "one VIP, one service",
            policy(vec![shared_vip_a, shared_vip_b]),
            &["10.0.0.1", "already used"],
        ),
        (
            "empty hostname",
            policy(vec![service("", wire::RouteSource::Default, vec![])]),
            &["#0", "hostname"],
        ),
    ];
    for (why, p, wants) in rows {
        let e = compile_err(p);
        for w in wants {
            assert!(e.contains(w), "{why}: error {e:?} lacks {w:?}");
        }
    }
}

// The policy is rejected whole when an AuthorizationPolicy is invalid (CUSTOM / unknown action
// is not supported by the filters); the message names the policy.
#[test]
fn invalid_authz_is_reported_through_invalid_policy() {
    let mut p = policy(vec![]);
    p.authorization_policies = vec![wire::AuthorizationPolicy {
        origin: Some(wire::Origin {
            kind: "AuthorizationPolicy".into(),
            namespace: "ns".into(),
            name: "p".into(),
            ..Default::default()
        }),
        action: 42,
        rules: vec![],
        dry_run: false,
    }];
    let e = compile_err(p);
    assert!(e.starts_with("authorization policies:"), "{e}");
    assert!(e.contains("ns/p"), "{e}");
}
