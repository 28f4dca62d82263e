//! RequestAuthentication and AuthorizationPolicy JWT fields, one `#[test]` per row; each row
//! cites the istiod 1.30.3 behaviour it pins.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use layover_compiler::Compiled;

/// One `#[test]` per row (as `resolution.rs`): `yaml` is compiled on top of `BASE` plus a
/// waypoint Gateway, and `check` runs on the result.
macro_rules! case {
    ($name:ident, $title:literal, cite: $cite:literal, yaml: $yaml:expr, check: |$c:ident| $check:expr $(,)?) => {
        #[doc = $title]
        #[doc = ""]
        #[doc = concat!("Source: ", $cite)]
        #[test]
        fn $name() {
            let compiled = compile(&format!("{WAYPOINT}\n---\n{}", $yaml));
            let $c: &Compiled = &compiled;
            $check;
        }
    };
}

/// Like [`case!`], for inputs the compiler must reject; `check` sees the rendered errors.
macro_rules! err_case {
    ($name:ident, $title:literal, cite: $cite:literal, yaml: $yaml:expr, check: |$e:ident| $check:expr $(,)?) => {
        #[doc = $title]
        #[doc = ""]
        #[doc = concat!("Source: ", $cite)]
        #[test]
        fn $name() {
            let $e = compile_err(&format!("{WAYPOINT}\n---\n{}", $yaml));
            $check;
        }
    };
}

const WAYPOINT: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: default, labels: {istio.io/use-waypoint: waypoint}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint}
spec: {gatewayClassName: istio-waypoint}
"#;

const JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA","kid":"k"}]}"#;

fn ra(name: &str, target: &str, rules: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {{name: {name}}}\nspec:\n  {target}\n  jwtRules:\n{rules}"
    )
}

fn gw_target() -> &'static str {
    "targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}]"
}

case! {
    bound_to_waypoint_gateway_applies_to_every_service,
    "RequestAuthentication targetRefs the waypoint Gateway: its rule covers every served service",
    cite: "pilot/pkg/model/authentication.go:298-303 @ 1.30.3 (ShouldAttachPolicy)",
    yaml: ra("jwt", gw_target(), &format!("  - issuer: https://issuer\n    jwks: '{JWKS}'\n")),
    check: |c| {
        assert_eq!(c.policy.jwt_rules.len(), 1);
        let r = &c.policy.jwt_rules[0];
        assert_eq!(r.issuer, "https://issuer");
        assert_eq!(r.jwks, JWKS);
        assert_eq!(r.timeout_ms, 5000);
        assert_eq!(r.services.len(), c.policy.services.len());
    },
}

case! {
    selector_policy_is_skipped_with_notice,
    "A selector RequestAuthentication is not applied by waypoints",
    cite: "pilot/pkg/model/authentication.go:298-303 @ 1.30.3; istio.io ambient L7 features",
    yaml: ra("jwt", "selector: {matchLabels: {app: reviews}}", &format!("  - issuer: a\n    jwks: '{JWKS}'\n")),
    check: |c| {
        assert!(c.policy.jwt_rules.is_empty());
        assert!(notices(c).contains("selector-based policies"), "{}", notices(c));
    },
}

case! {
    service_target_binds_that_service_only,
    "targetRefs Service: the rule lists only that service",
    cite: "pilot/pkg/networking/core/listener_waypoint.go:876-878 @ 1.30.3 (authn builder per service)",
    yaml: ra("jwt", "targetRefs: [{kind: Service, group: \"\", name: reviews}]", &format!("  - issuer: a\n    jwks: '{JWKS}'\n")),
    check: |c| {
        assert_eq!(c.policy.jwt_rules[0].services, ["reviews.default.svc.cluster.local"]);
    },
}

case! {
    rules_sorted_by_issuer,
    "Rules of all bound policies are sorted by issuer",
    cite: "pilot/pkg/security/authn/policy_applier.go:84-89 @ 1.30.3",
    yaml: ra("jwt", gw_target(), &format!("  - issuer: zeta\n    jwks: '{JWKS}'\n  - issuer: alpha\n    jwks: '{JWKS}'\n")),
    check: |c| {
        let iss: Vec<&str> = c.policy.jwt_rules.iter().map(|r| r.issuer.as_str()).collect();
        assert_eq!(iss, ["alpha", "zeta"]);
    },
}

case! {
    locations_and_outputs_are_kept,
    "fromHeaders / fromParams / fromCookies / outputs / timeout are carried to the config generator",
    cite: "pilot/pkg/security/authn/policy_applier.go:163-196 @ 1.30.3",
    yaml: ra("jwt", gw_target(), &format!("  - issuer: a\n    jwks: '{JWKS}'\n    fromHeaders: [{{name: x-jwt, prefix: 'Tok '}}]\n    fromParams: [tok]\n    fromCookies: [session]\n    forwardOriginalToken: true\n    outputPayloadToHeader: x-payload\n    outputClaimToHeaders: [{{header: x-sub, claim: sub}}]\n    timeout: 2s\n")),
    check: |c| {
        let r = &c.policy.jwt_rules[0];
        assert_eq!(r.from_headers[0].name, "x-jwt");
        assert_eq!(r.from_headers[0].prefix, "Tok ");
        assert_eq!(r.from_params, ["tok"]);
        assert_eq!(r.from_cookies, ["session"]);
        assert!(r.forward_original_token);
        assert_eq!(r.output_payload_to_header, "x-payload");
        assert_eq!(r.output_claim_to_headers[0].claim, "sub");
        assert_eq!(r.timeout_ms, 2000);
    },
}

case! {
    jwks_uri_without_jwks_warns,
    "jwksUri of a host the input has no service for: layover cannot fetch it and warns (tokens rejected)",
    cite: "pilot/pkg/features/pilot.go:44-54, pilot/pkg/model/jwks_resolver.go:295-316 @ 1.30.3",
    yaml: ra("jwt", gw_target(), "  - issuer: a\n    jwksUri: https://keys.example.com/jwks.json\n"),
    check: |c| {
        assert_eq!(c.policy.jwt_rules.len(), 1);
        assert_eq!(c.policy.jwt_rules[0].jwks_cluster, "");
        assert!(notices(c).contains("spec.jwtRules[0].jwksUri"), "{}", notices(c));
        assert!(notices(c).contains("add a ServiceEntry"), "{}", notices(c));
    },
}

case! {
    jwks_uri_of_a_service_is_fetched_through_its_cluster,
    "jwksUri naming a service of the input (port from the URL): remote_jwks through its cluster",
    cite: "pilot/pkg/security/authn/policy_applier.go:197-216, pilot/pkg/model/telemetry_logging.go:545-579, pkg/config/security/security.go:77-104 @ 1.30.3",
    yaml: ra("jwt", gw_target(), "  - issuer: a\n    jwksUri: http://multi.default.svc.cluster.local:8080/jwks.json\n"),
    check: |c| {
        let r = &c.policy.jwt_rules[0];
        assert_eq!(r.jwks_cluster, "inbound-vip|8080|http|multi.default.svc.cluster.local");
        assert!(notices(c).contains("remote_jwks"), "{}", notices(c));
    },
}

case! {
    jwks_uri_default_port_follows_the_scheme,
    "jwksUri without a port: 80 for http; a service without that port keeps the public-only key, with a warning",
    cite: "pkg/config/security/security.go:83-92 @ 1.30.3",
    yaml: format!("{}\n---\n{}", ra("a", gw_target(), "  - issuer: a\n    jwksUri: http://multi.default.svc.cluster.local/keys\n"),
        ra("b", gw_target(), "  - issuer: b\n    jwksUri: https://multi.default.svc.cluster.local/keys\n")),
    check: |c| {
        assert_eq!(c.policy.jwt_rules[0].jwks_cluster, "inbound-vip|80|http|multi.default.svc.cluster.local");
        assert_eq!(c.policy.jwt_rules[1].jwks_cluster, "");
        assert!(notices(c).contains("has no port 443"), "{}", notices(c));
    },
}

err_case! {
    jwks_uri_bad_port_rejected,
    "A jwksUri whose port is not a number is invalid",
    cite: "pkg/config/security/security.go:94-98 @ 1.30.3",
    yaml: ra("jwt", gw_target(), "  - issuer: a\n    jwksUri: http://keys:http/jwks\n"),
    check: |e| assert!(e.contains("spec.jwtRules[0].jwksUri") && e.contains("invalid port"), "{e}"),
}

err_case! {
    issuer_or_jwks_uri_required,
    "A rule with neither issuer nor jwksUri is invalid",
    cite: "pkg/config/validation/validation.go:1650-1652 @ 1.30.3",
    yaml: ra("jwt", gw_target(), &format!("  - jwks: '{JWKS}'\n")),
    check: |e| assert!(e.contains("spec.jwtRules[0].issuer") && e.contains("issuer or jwksUri"), "{e}"),
}

err_case! {
    jwks_must_parse,
    "Inline jwks must be a JWKS document",
    cite: "pkg/config/validation/validation.go:1660-1665 @ 1.30.3",
    yaml: ra("jwt", gw_target(), "  - issuer: a\n    jwks: 'not json'\n"),
    check: |e| assert!(e.contains("spec.jwtRules[0].jwks") && e.contains("jwks parse error"), "{e}"),
}

err_case! {
    empty_audience_rejected,
    "An empty audience is invalid",
    cite: "pkg/config/validation/validation.go:1643-1647 @ 1.30.3",
    yaml: ra("jwt", gw_target(), &format!("  - issuer: a\n    jwks: '{JWKS}'\n    audiences: ['']\n")),
    check: |e| assert!(e.contains("spec.jwtRules[0].audiences[0]"), "{e}"),
}

err_case! {
    claim_to_header_needs_both,
    "outputClaimToHeaders needs header and claim",
    cite: "pkg/config/validation/validation.go:1685-1697 @ 1.30.3",
    yaml: ra("jwt", gw_target(), &format!("  - issuer: a\n    jwks: '{JWKS}'\n    outputClaimToHeaders: [{{header: x-a, claim: ''}}]\n")),
    check: |e| assert!(e.contains("spec.jwtRules[0].outputClaimToHeaders[0]"), "{e}"),
}

err_case! {
    unknown_field_named,
    "An unknown RequestAuthentication field is an error naming it",
    cite: "istio.io/api security/v1beta1 RequestAuthentication (strict schema)",
    yaml: ra("jwt", gw_target(), &format!("  - issuer: a\n    jwks: '{JWKS}'\n    issuers: [b]\n")),
    check: |e| assert!(e.contains("issuers"), "{e}"),
}

case! {
    request_principals_compile,
    "AuthorizationPolicy requestPrincipals / notRequestPrincipals compile (iss/sub patterns)",
    cite: "pilot/pkg/security/authz/model/generator.go:263-320 @ 1.30.3",
    yaml: format!("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: p}}\nspec:\n  {}\n  rules: [{{from: [{{source: {{requestPrincipals: ['https://issuer/alice'], notRequestPrincipals: ['*/bob']}}}}]}}]\n", gw_target()),
    check: |c| {
        let s = &c.policy.authorization_policies[0].rules[0].from[0];
        assert_eq!(s.request_principals, ["https://issuer/alice"]);
        assert_eq!(s.not_request_principals, ["*/bob"]);
    },
}

case! {
    request_auth_conditions_compile,
    "when request.auth.principal / audiences / presenter / claims[a][b] compile",
    cite: "pilot/pkg/security/authz/model/model.go:105-120 @ 1.30.3",
    yaml: format!("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: p}}\nspec:\n  {}\n  rules: [{{when: [{{key: request.auth.principal, values: ['a/b']}}, {{key: request.auth.audiences, values: [x]}}, {{key: request.auth.presenter, values: [y]}}, {{key: 'request.auth.claims[org][team]', values: [red]}}]}}]\n", gw_target()),
    check: |c| {
        let keys: Vec<&str> = c.policy.authorization_policies[0].rules[0].when.iter().map(|w| w.key.as_str()).collect();
        assert_eq!(keys, ["request.auth.principal", "request.auth.audiences", "request.auth.presenter", "request.auth.claims[org][team]"]);
    },
}

err_case! {
    unknown_request_auth_key_rejected,
    "An unknown request.auth key is an error",
    cite: "pilot/pkg/security/authz/model/model.go:105-125 @ 1.30.3 (unknown attribute)",
    yaml: format!("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: p}}\nspec:\n  {}\n  rules: [{{when: [{{key: request.auth.claim, values: [x]}}]}}]\n", gw_target()),
    check: |e| assert!(e.contains("rules[0].when[0].key"), "{e}"),
}
