//! The native translation, feature by feature: Istio YAML → compiled policy → native route
//! configuration, checked against the Envoy fragment istiod writes for the same input (each row
//! cites the istiod source or golden file it encodes). That Envoy accepts the output is checked
//! by `tests/integration/tests/native.rs` (`envoy --mode validate`) and its behaviour by the integration
//! suite (`FilterBuild::Native`) and `tests/integration/tests/differential.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::{DownstreamTls, Hbone};

/// Service `name` in `default` with one HTTP port 9080 and subsets v1, v2.
fn svc(name: &str) -> String {
    format!(
        "---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec:
  selector: {{app: {name}}}
  ports: [{{name: http, port: 9080, targetPort: 9080}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name}, namespace: default}}
spec:
  host: {name}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
"
    )
}

/// A VirtualService for `r` with the `http:` items given (indented by two spaces).
fn vs(http: &str) -> String {
    format!(
        "{}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: r, namespace: default}}
spec:
  hosts: [r]
  http:
{http}",
        svc("r")
    )
}

/// An AuthorizationPolicy on Service `r` (targetRefs) with the given action and rules.
fn authz(action: &str, rules: &str, extra_meta: &str) -> String {
    format!(
        "{}---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: p, namespace: default{extra_meta}}}
spec:
  targetRefs: [{{kind: Service, group: '', name: r}}]
  action: {action}
  rules:
{rules}",
        svc("r")
    )
}

fn compile(yaml: &str) -> Policy {
    let bundle =
        layover_compiler::load_str("t.yaml", yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    layover_compiler::compile(&bundle)
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"))
        .policy
}

fn routes(yaml: &str) -> Value {
    route_configuration(&compile(yaml)).unwrap()
}

/// Whether some value inside `hay` contains `needle`: objects by key subset, arrays by each
/// needle element being contained in some element, scalars by equality.
fn contains(hay: &Value, needle: &Value) -> bool {
    fn covers(h: &Value, n: &Value) -> bool {
        match (h, n) {
            (Value::Object(h), Value::Object(n)) => n
                .iter()
                .all(|(k, nv)| h.get(k).is_some_and(|hv| covers(hv, nv))),
            (Value::Array(h), Value::Array(n)) => {
                n.iter().all(|nv| h.iter().any(|hv| covers(hv, nv)))
            }
            (h, n) => h == n,
        }
    }
    covers(hay, needle)
        || match hay {
            Value::Object(m) => m.values().any(|v| contains(v, needle)),
            Value::Array(a) => a.iter().any(|v| contains(v, needle)),
            _ => false,
        }
}

fn assert_has(yaml: &str, needle: Value, why: &str) {
    let rc = routes(yaml);
    assert!(
        contains(&rc, &needle),
        "{why}\nexpected fragment:\n{}\nin:\n{}",
        serde_json::to_string_pretty(&needle).unwrap(),
        serde_json::to_string_pretty(&rc).unwrap()
    );
}

/// The route table: each row is (what, YAML, the fragment istiod emits).
#[test]
fn route_features_translate_as_istiod_writes_them() {
    let rows: Vec<(&str, String, Value)> = vec![
        // istio/istio pilot/pkg/networking/core/route/route.go TranslateRouteMatch: exact →
        // `path`, prefix → `prefix`, regex → `safe_regex`; ignoreUriCase → case_sensitive false.
        (
            "uri exact",
            vs("  - match: [{uri: {exact: /e}}]\n    route: [{destination: {host: r}}]\n"),
            json!({ "match": { "path": "/e" } }),
        ),
        (
            "uri prefix, ignoreUriCase",
            vs("  - match: [{uri: {prefix: /P}, ignoreUriCase: true}]\n    route: [{destination: {host: r}}]\n"),
            json!({ "match": { "prefix": "/P", "case_sensitive": false } }),
        ),
        (
            "uri regex",
            vs("  - match: [{uri: {regex: '/r[0-9]+'}}]\n    route: [{destination: {host: r}}]\n"),
            json!({ "match": { "safe_regex": { "regex": "/r[0-9]+" } } }),
        ),
        // TranslateHeaderMatcher: exact / prefix / regex string matchers; no value → present.
        (
            "headers exact, prefix, present",
            vs("  - match: [{headers: {x-a: {exact: a}, x-b: {prefix: b}, x-c: {}}}]\n    route: [{destination: {host: r}}]\n"),
            json!({ "match": { "headers": [
                { "name": "x-a", "string_match": { "exact": "a" } },
                { "name": "x-b", "string_match": { "prefix": "b" } },
                { "name": "x-c", "present_match": true },
            ] } }),
        ),
        // withoutHeaders: invert_match, and treat_missing_header_as_empty for value matches.
        (
            "withoutHeaders",
            vs("  - match: [{withoutHeaders: {x-a: {exact: a}}}]\n    route: [{destination: {host: r}}]\n"),
            json!({ "match": { "headers": [{
                "name": "x-a", "string_match": { "exact": "a" },
                "invert_match": true, "treat_missing_header_as_empty": true,
            }] } }),
        ),
        // method / authority → header matchers on the pseudo-headers.
        (
            "method",
            vs("  - match: [{method: {exact: POST}}]\n    route: [{destination: {host: r}}]\n"),
            json!({ "match": { "headers": [{ "name": ":method", "string_match": { "exact": "POST" } }] } }),
        ),
        // TranslateQueryParamMatch.
        (
            "queryParams",
            vs("  - match: [{queryParams: {q: {exact: '1'}}}]\n    route: [{destination: {host: r}}]\n"),
            json!({ "match": { "query_parameters": [{ "name": "q", "string_match": { "exact": "1" } }] } }),
        ),
        // route.go translateRoute: several destinations → weighted_clusters.
        (
            "weighted split",
            vs("  - route:\n    - {destination: {host: r, subset: v1}, weight: 75}\n    - {destination: {host: r, subset: v2}, weight: 25}\n"),
            json!({ "route": { "weighted_clusters": { "clusters": [
                { "name": "inbound-vip|9080|http/v1|r.default.svc.cluster.local", "weight": 75 },
                { "name": "inbound-vip|9080|http/v2|r.default.svc.cluster.local", "weight": 25 },
            ] } } }),
        ),
        // route/retry/retry.go ConvertPolicy.
        (
            "retries",
            vs("  - route: [{destination: {host: r}}]\n    retries: {attempts: 3, perTryTimeout: 2s, retryOn: 5xx}\n"),
            json!({ "route": { "retry_policy": {
                "num_retries": 3, "per_try_timeout": "2s", "retry_on": "5xx",
                "retry_host_predicate": [{ "name": "envoy.retry_host_predicates.previous_hosts" }],
                "host_selection_retry_max_attempts": 5,
            } } }),
        ),
        // retry.go:35-103 @ 1.30.3 DefaultPolicy: 2 attempts, istiod's retry_on, no status codes.
        (
            "default retry policy",
            vs("  - route: [{destination: {host: r}}]\n"),
            json!({ "route": { "retry_policy": {
                "num_retries": 2,
                "retry_on": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
                "host_selection_retry_max_attempts": 5,
            } } }),
        ),
        // route.go setTimeout: timeout and the deprecated max_grpc_timeout.
        (
            "timeout",
            vs("  - route: [{destination: {host: r}}]\n    timeout: 400ms\n"),
            json!({ "route": { "timeout": "0.400s", "max_grpc_timeout": "0.400s" } }),
        ),
        (
            "no timeout",
            vs("  - route: [{destination: {host: r}}]\n"),
            json!({ "route": { "timeout": "0s", "max_grpc_timeout": "0s" } }),
        ),
        // route.go TranslateFault → typed_per_filter_config envoy.filters.http.fault, percent
        // per million (translatePercentToFractionalPercent).
        (
            "fault abort and delay",
            vs("  - route: [{destination: {host: r}}]\n    fault: {abort: {httpStatus: 418, percentage: {value: 50}}, delay: {fixedDelay: 1s, percentage: {value: 100}}}\n"),
            json!({ "typed_per_filter_config": { "envoy.filters.http.fault": {
                "abort": { "http_status": 418, "percentage": { "numerator": 500000, "denominator": "MILLION" } },
                "delay": { "fixed_delay": "1s", "percentage": { "numerator": 1000000, "denominator": "MILLION" } },
            } } }),
        ),
        // route.go TranslateCORSPolicy → per-route CorsPolicy.
        (
            "cors",
            vs("  - route: [{destination: {host: r}}]\n    corsPolicy: {allowOrigins: [{exact: 'https://a.example'}], allowMethods: [GET, POST], maxAge: 60s, allowCredentials: true}\n"),
            json!({ "typed_per_filter_config": { "envoy.filters.http.cors": {
                "allow_origin_string_match": [{ "exact": "https://a.example" }],
                "allow_methods": "GET,POST", "max_age": "60", "allow_credentials": true,
            } } }),
        ),
        // route.go TranslateRequestMirrorPolicy.
        (
            "mirror",
            vs("  - route: [{destination: {host: r, subset: v1}}]\n    mirror: {host: r, subset: v2}\n    mirrorPercentage: {value: 25}\n"),
            json!({ "route": { "request_mirror_policies": [{
                "cluster": "inbound-vip|9080|http/v2|r.default.svc.cluster.local",
                "runtime_fraction": { "default_value": { "numerator": 250000, "denominator": "MILLION" } },
            }] } }),
        ),
        // route.go: headers.request.set → OVERWRITE_IF_EXISTS_OR_ADD, add → APPEND, remove.
        (
            "header operations",
            vs("  - route: [{destination: {host: r}}]\n    headers:\n      request: {set: {x-s: s}, add: {x-a: a}, remove: [x-r]}\n      response: {set: {x-rs: rs}}\n"),
            json!({
                "request_headers_to_add": [
                    { "header": { "key": "x-s", "value": "s" }, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD" },
                    { "header": { "key": "x-a", "value": "a" }, "append_action": "APPEND_IF_EXISTS_OR_ADD" },
                ],
                "request_headers_to_remove": ["x-r"],
                "response_headers_to_add": [
                    { "header": { "key": "x-rs", "value": "rs" }, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD" },
                ],
            }),
        ),
        // route.go: rewrite.uri → prefix_rewrite, rewrite.authority → host_rewrite_literal.
        (
            "rewrite uri and authority",
            vs("  - match: [{uri: {prefix: /old}}]\n    rewrite: {uri: /new, authority: other}\n    route: [{destination: {host: r}}]\n"),
            json!({ "route": { "prefix_rewrite": "/new", "host_rewrite_literal": "other" } }),
        ),
        // route.go: uriRegexRewrite → regex_rewrite.
        (
            "uriRegexRewrite",
            vs("  - rewrite: {uriRegexRewrite: {match: '^/a/(.*)', rewrite: '/b/\\1'}}\n    route: [{destination: {host: r}}]\n"),
            json!({ "route": { "regex_rewrite": { "pattern": { "regex": "^/a/(.*)" }, "substitution": "/b/\\1" } } }),
        ),
        // route.go ApplyRedirect: an explicit :80 with http is dropped; redirectCode → enum.
        (
            "redirect",
            vs("  - redirect: {uri: /to, authority: elsewhere, port: 80, redirectCode: 302}\n"),
            json!({ "redirect": { "path_redirect": "/to", "host_redirect": "elsewhere", "response_code": "FOUND" } }),
        ),
        // route.go: directResponse → direct_response with an inline body.
        (
            "direct response",
            vs("  - directResponse: {status: 418, body: {string: teapot}}\n"),
            json!({ "direct_response": { "status": 418, "body": { "inline_string": "teapot" } } }),
        ),
    ];
    for (what, yaml, needle) in rows {
        assert_has(&yaml, needle, what);
    }
}

#[test]
fn redirect_port_80_with_http_is_dropped() {
    // istio/istio route.go ApplyRedirect (the core's CompiledRedirect does the same).
    let rc = routes(&vs("  - redirect: {uri: /to, port: 80}\n"));
    assert!(!contains(&rc, &json!({ "port_redirect": 80 })), "{rc}");
    let rc = routes(&vs("  - redirect: {uri: /to, port: 8080}\n"));
    assert!(contains(&rc, &json!({ "port_redirect": 8080 })), "{rc}");
}

#[test]
fn one_envoy_route_per_match_in_order_then_404() {
    // route.go BuildHTTPRoutesForVirtualService: each match of an http[] entry becomes its own
    // route, in order; no catch-all is added by istiod (Envoy answers 404 NR), ours is a 404
    // direct response so the service's RBAC still runs first.
    let rc = routes(&vs(
        "  - match: [{uri: {exact: /a}}, {uri: {exact: /b}}]\n    route: [{destination: {host: r, subset: v1}}]\n  - route: [{destination: {host: r, subset: v2}}]\n",
    ));
    let vh = rc["virtual_hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "r.default.svc.cluster.local:9080")
        .unwrap();
    let paths: Vec<Value> = vh["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["match"]
                .get("path")
                .or(r["match"].get("prefix"))
                .cloned()
                .unwrap()
        })
        .collect();
    assert_eq!(paths, [json!("/a"), json!("/b"), json!("/"), json!("/")]);
    assert_eq!(vh["routes"][3]["direct_response"]["status"], 404);
}

#[test]
fn match_port_selects_the_ports_virtual_host() {
    // httproute.go: a match `port` only applies to that port's virtual host; a Host without
    // a port has no destination port, so port matches never apply there.
    let rc = routes(&vs(
        "  - match: [{port: 9080, uri: {exact: /p}}]\n    route: [{destination: {host: r}}]\n",
    ));
    let vh = |name: &str| {
        rc["virtual_hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .cloned()
            .unwrap()
    };
    assert!(contains(
        &vh("r.default.svc.cluster.local:9080"),
        &json!({ "path": "/p" })
    ));
    assert!(!contains(
        &vh("r.default.svc.cluster.local"),
        &json!({ "path": "/p" })
    ));
}

#[test]
fn domains_are_the_sidecar_host_forms_and_short_names_only_when_unambiguous() {
    // pilot/pkg/networking/core/httproute.go generateVirtualHostDomains; the short name is
    // only for clients of the same namespace, so a waypoint keeps it when it is unambiguous
    // (the core's service_for_authority does the same).
    let yaml = format!(
        "{}{}---
apiVersion: v1
kind: Service
metadata: {{name: a, namespace: other}}
spec:
  selector: {{app: a}}
  ports: [{{name: http, port: 9080}}]
",
        svc("a"),
        svc("b")
    );
    let rc = routes(&yaml);
    let domains: Vec<String> = rc["virtual_hosts"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|v| v["domains"].as_array().unwrap().clone())
        .map(|d| d.as_str().unwrap().to_string())
        .collect();
    for d in [
        "a.default.svc.cluster.local:9080",
        "a.default.svc:9080",
        "a.default:9080",
        "a.other:9080",
        "b:9080",
        "b",
        "b.default.svc.cluster.local.:9080",
    ] {
        assert!(domains.iter().any(|x| x == d), "{d} missing: {domains:?}");
    }
    assert!(
        !domains.iter().any(|x| x == "a:9080" || x == "a"),
        "{domains:?}"
    );
    // Envoy refuses a domain on two virtual hosts.
    let unique: BTreeSet<&String> = domains.iter().collect();
    assert_eq!(unique.len(), domains.len());
}

/// The RBAC table: (what, policy YAML, the fragment istiod's authz builder emits).
#[test]
fn authorization_policies_translate_to_rbac_per_service() {
    let rows: Vec<(&str, String, Value)> = vec![
        // builder.go: DENY policies go to the DENY filter; methods → `:method` header
        // (model/permission.go), paths → url_path.
        (
            "deny methods and paths",
            authz(
                "DENY",
                "  - to: [{operation: {methods: [DELETE], paths: ['/admin/*']}}]\n",
                "",
            ),
            json!({ "envoy.filters.http.rbac.deny": { "rbac": { "rules": { "action": "DENY", "policies": {
                "ns[default]-policy[p]-rule[0]": { "permissions": [{ "and_rules": { "rules": [{ "or_rules": { "rules": [
                    { "and_rules": { "rules": [
                        { "or_rules": { "rules": [{ "header": { "name": ":method", "string_match": { "exact": "DELETE" } } }] } },
                        { "or_rules": { "rules": [{ "url_path": { "path": { "prefix": "/admin/" } } }] } },
                    ] } },
                ] } }] } }] },
            } } } } }),
        ),
        // testdata/http/allow-full-rule-ambient-out.yaml: principals match the peer identity
        // in filter state; allow-full-rule-out.yaml: `authenticated.principal_name`, with the
        // spiffe:// prefix.
        (
            "allow principals",
            authz(
                "ALLOW",
                "  - from: [{source: {principals: [cluster.local/ns/default/sa/sleep]}}]\n",
                "",
            ),
            json!({ "envoy.filters.http.rbac.allow": { "rbac": { "rules": { "action": "ALLOW" } } } }),
        ),
        (
            "principal via mTLS peer",
            authz(
                "ALLOW",
                "  - from: [{source: {principals: [cluster.local/ns/default/sa/sleep]}}]\n",
                "",
            ),
            json!({ "authenticated": { "principal_name": { "exact": "spiffe://cluster.local/ns/default/sa/sleep" } } }),
        ),
        (
            "principal via HBONE filter state",
            authz(
                "ALLOW",
                "  - from: [{source: {principals: [cluster.local/ns/default/sa/sleep]}}]\n",
                "",
            ),
            json!({ "filter_state": { "key": PEER_PRINCIPAL, "string_match": { "exact": "spiffe://cluster.local/ns/default/sa/sleep" } } }),
        ),
        // allow-full-rule-out.yaml: namespaces → `.*/ns/<ns>/.*`.
        (
            "namespaces",
            authz("ALLOW", "  - from: [{source: {namespaces: [foo]}}]\n", ""),
            json!({ "authenticated": { "principal_name": { "safe_regex": { "regex": ".*/ns/foo/.*" } } } }),
        ),
        // allow-full-rule-out.yaml: ipBlocks → direct_remote_ip, remoteIpBlocks → remote_ip.
        (
            "ipBlocks",
            authz(
                "ALLOW",
                "  - from: [{source: {ipBlocks: [10.0.0.0/8]}}]\n",
                "",
            ),
            json!({ "direct_remote_ip": { "address_prefix": "10.0.0.0", "prefix_len": 8 } }),
        ),
        (
            "remoteIpBlocks",
            authz(
                "ALLOW",
                "  - from: [{source: {remoteIpBlocks: [1.2.3.4]}}]\n",
                "",
            ),
            json!({ "remote_ip": { "address_prefix": "1.2.3.4", "prefix_len": 32 } }),
        ),
        // allow-full-rule-out.yaml: hosts → `:authority` with ignore_case.
        (
            "hosts",
            authz(
                "ALLOW",
                "  - to: [{operation: {hosts: ['*.example.com']}}]\n",
                "",
            ),
            json!({ "header": { "name": ":authority", "string_match": { "suffix": ".example.com", "ignore_case": true } } }),
        ),
        // model/permission.go: path templates → uri_template.
        (
            "path template",
            authz(
                "ALLOW",
                "  - to: [{operation: {paths: ['/api/{*}/x']}}]\n",
                "",
            ),
            json!({ "uri_template": { "typed_config": { "path_template": "/api/{*}/x" } } }),
        ),
        // `when` request.headers → principal header matcher.
        (
            "when request.headers",
            authz(
                "DENY",
                "  - when: [{key: 'request.headers[x-block]', values: ['yes']}]\n",
                "",
            ),
            json!({ "header": { "name": "x-block", "string_match": { "exact": "yes" } } }),
        ),
        // builder.go: AUDIT → RBAC action LOG.
        (
            "audit",
            authz("AUDIT", "  - to: [{operation: {methods: [GET]}}]\n", ""),
            json!({ "envoy.filters.http.rbac.audit": { "rbac": { "rules": { "action": "LOG" } } } }),
        ),
        // testdata/http/dry-run-allow-out.yaml: istio.io/dry-run → shadow_rules only.
        (
            "dry run",
            authz(
                "ALLOW",
                "  - to: [{operation: {methods: [GET]}}]\n",
                ", annotations: {istio.io/dry-run: 'true'}",
            ),
            json!({ "envoy.filters.http.rbac.allow": { "rbac": {
                "shadow_rules": { "action": "ALLOW" },
                "shadow_rules_stat_prefix": "istio_dry_run_allow_",
            } } }),
        ),
    ];
    for (what, yaml, needle) in rows {
        assert_has(&yaml, needle, what);
    }
    // A dry-run policy enforces nothing.
    let rc = routes(&authz(
        "ALLOW",
        "  - to: [{operation: {methods: [GET]}}]\n",
        ", annotations: {istio.io/dry-run: 'true'}",
    ));
    assert!(!contains(&rc, &json!({ "rbac": { "rules": {} } })), "{rc}");
}

#[test]
fn allow_policy_without_rules_denies_everything() {
    // testdata/http/allow-nil-rule-out.yaml: an ALLOW policy with no rules is an ALLOW RBAC
    // filter without policies, which denies every request.
    let yaml = format!(
        "{}---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: p, namespace: default}}
spec:
  targetRefs: [{{kind: Service, group: '', name: r}}]
",
        svc("r")
    );
    let rc = routes(&yaml);
    assert!(
        contains(
            &rc,
            &json!({ "envoy.filters.http.rbac.allow": { "rbac": { "rules": { "action": "ALLOW", "policies": {} } } } })
        ),
        "{rc}"
    );
}

#[test]
fn http_filters_in_istiod_order() {
    // builder.go:124-140 @ 1.30.3: AUDIT, DENY, ALLOW; then fault, CORS, router
    // (pilot/pkg/networking/core/listener_builder.go:438 @ 1.30.3).
    let names: Vec<String> = http_filters()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        [
            RBAC_AUDIT_FILTER,
            RBAC_DENY_FILTER,
            RBAC_ALLOW_FILTER,
            FAULT_FILTER,
            CORS_FILTER,
            "envoy.filters.http.router"
        ]
    );
}

#[test]
fn invalid_policy_is_refused_like_the_core_refuses_it() {
    let mut policy = compile(&vs("  - route: [{destination: {host: r}}]\n"));
    policy.schema_version = 999;
    let err = route_configuration(&policy).unwrap_err();
    assert!(matches!(err, NativeError::InvalidPolicy(_)), "{err}");
    assert!(err.to_string().contains("schema_version"), "{err}");
    let err = native_bootstrap(&policy, &[], &BootstrapOptions::default()).unwrap_err();
    assert!(err.to_string().contains("schema_version"), "{err}");
}

#[test]
fn bootstrap_replaces_the_plain_and_main_internal_connection_managers() {
    let policy = compile(&vs("  - route: [{destination: {host: r}}]\n"));
    let tls = DownstreamTls {
        cert_chain: "/c.pem".into(),
        private_key: "/k.pem".into(),
        trusted_ca: "/ca.pem".into(),
        trust_domain: "cluster.local".into(),
    };
    let opts = BootstrapOptions {
        hbone: Some(Hbone::from_tls(&tls)),
        downstream_tls: Some(tls),
        // Ignored: the native bootstrap has no layover filter.
        layover_filter: Some(json!({ "name": "layover" })),
        ..BootstrapOptions::default()
    };
    let v = native_bootstrap_value(&policy, &[], &opts).unwrap();
    let listeners = v["static_resources"]["listeners"].as_array().unwrap();
    let mut seen = Vec::new();
    for l in listeners {
        let name = l["name"].as_str().unwrap();
        let hcm = &l["filter_chains"][0]["filters"][0]["typed_config"];
        if name == LISTENER_NAME || name == MAIN_INTERNAL {
            assert_eq!(hcm["route_config"]["name"], ROUTE_CONFIG_NAME, "{name}");
            assert_eq!(hcm["http_filters"], Value::Array(http_filters()), "{name}");
            seen.push(name);
        }
        assert!(
            !l.to_string().contains("\"layover\""),
            "layover filter left in {name}"
        );
    }
    assert_eq!(seen, [LISTENER_NAME, MAIN_INTERNAL]);
    // mTLS stays on the plain listener.
    assert!(listeners[0]["filter_chains"][0]
        .get("transport_socket")
        .is_some());
}

#[test]
fn yaml_output_never_lets_yaml_1_1_rewrite_a_string() {
    // Envoy reads YAML 1.1: `yes` would become `true` and the bootstrap refused.
    let v = json!({ "exact": "yes" });
    let text = to_text(&v, Format::Yaml).unwrap();
    assert_eq!(text, "exact: \"yes\"\n");
    let plain = json!({ "exact": "maybe", "t": "1:30", "u": "spiffe://td/ns/a" });
    let text = to_text(&plain, Format::Yaml).unwrap();
    assert_eq!(
        serde_yaml_ng::from_str::<Value>(&text).unwrap(),
        plain,
        "{text}"
    );
    assert!(text.contains("\"1:30\""), "{text}");
}

#[test]
fn native_config_lists_routes_filters_and_clusters() {
    let policy = compile(&vs("  - route: [{destination: {host: r, subset: v1}}]\n"));
    let v = native_config(&policy, &[], &BootstrapOptions::default()).unwrap();
    assert_eq!(v["route_config"]["name"], ROUTE_CONFIG_NAME);
    assert_eq!(v["http_filters"], Value::Array(http_filters()));
    let clusters: BTreeSet<String> = v["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    for c in routed_clusters(&v["route_config"]) {
        assert!(clusters.contains(&c), "{c} routed but not defined");
    }
}

#[test]
fn base64_matches_rfc4648() {
    for (input, out) in [
        (&b""[..], ""),
        (b"f", "Zg=="),
        (b"fo", "Zm8="),
        (b"foo", "Zm9v"),
        (b"\xff\x00\x80", "/wCA"),
    ] {
        assert_eq!(base64(input), out);
    }
}

#[test]
fn gateway_api_routes_translate_as_istiod_writes_them() {
    // istio/istio pilot/pkg/config/kube/gateway (HTTPRoute → VirtualService-like routes) and
    // route.go TranslateRouteMatch: PathPrefix other than "/" → path_separated_prefix (one
    // trailing "/" trimmed); URLRewrite ReplacePrefixMatch "/" → regex rewrite without a double
    // slash, ReplaceFullPath → whole-path regex rewrite; a backend that cannot be served
    // answers 500 (cluster_not_found_response_code).
    let yaml = format!(
        "{}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: h, namespace: default}}
spec:
  parentRefs: [{{group: '', kind: Service, name: r}}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /api/}}}}]
    filters:
    - type: URLRewrite
      urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: /}}}}
    backendRefs: [{{name: r, port: 9080}}]
  - matches: [{{path: {{type: Exact, value: /full}}}}]
    filters:
    - type: URLRewrite
      urlRewrite: {{path: {{type: ReplaceFullPath, replaceFullPath: /other}}}}
    backendRefs: [{{name: r, port: 9080}}]
  - matches: [{{path: {{type: PathPrefix, value: /gone}}}}]
    backendRefs: [{{name: missing, port: 9080}}]
",
        svc("r")
    );
    let bundle = layover_compiler::load_str("t.yaml", &yaml).unwrap_or_else(|e| panic!("{e}"));
    let policy = layover_compiler::compile(&bundle)
        .unwrap_or_else(|e| panic!("{e}"))
        .policy;
    let rc = route_configuration(&policy).unwrap();
    for needle in [
        json!({ "match": { "path_separated_prefix": "/api" }, "route": {
            "regex_rewrite": { "pattern": { "regex": "^/api(/?)(.*)" }, "substitution": "/\\2" },
            "cluster_not_found_response_code": "INTERNAL_SERVER_ERROR",
        } }),
        json!({ "match": { "path": "/full" }, "route": {
            "regex_rewrite": { "pattern": { "regex": "^/.*$" }, "substitution": "/other" },
        } }),
        json!({ "match": { "path_separated_prefix": "/gone" }, "route": {
            "cluster_not_found_response_code": "INTERNAL_SERVER_ERROR",
        } }),
    ] {
        assert!(contains(&rc, &needle), "{needle}\nin\n{rc:#}");
    }
}
