//! Table-driven tests of AuthorizationPolicy evaluation. Every row names the Istio doc section
//! (istio.io/latest/docs/reference/config/security/authorization-policy/, "AP ref" below) or the
//! istiod / Envoy behaviour it encodes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// The same tables run compiled to wasm32 (the target the filter ships in) under
// wasm-bindgen-test, so regex, hashing and arithmetic behave identically there.
use std::net::IpAddr;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;
use crate::request::{DestinationView, RequestView, SourceView};
use crate::wire::{AuthorizationAction as A, AuthorizationPolicy, AuthorizationRule, Condition};
use crate::wire::{Operation, Origin, Source};

// ---------------------------------------------------------------- builders

fn v(xs: &[&str]) -> Vec<String> {
    xs.iter().map(|s| s.to_string()).collect()
}

fn policy(name: &str, action: A, rules: Vec<AuthorizationRule>) -> AuthorizationPolicy {
    AuthorizationPolicy {
        origin: Some(Origin {
            kind: "AuthorizationPolicy".into(),
            namespace: "foo".into(),
            name: name.into(),
            ..Default::default()
        }),
        action: action as i32,
        rules,
        dry_run: false,
    }
}
fn allow(rules: Vec<AuthorizationRule>) -> AuthorizationPolicy {
    policy("allow", A::Allow, rules)
}
fn deny(rules: Vec<AuthorizationRule>) -> AuthorizationPolicy {
    policy("deny", A::Deny, rules)
}
fn dry(mut p: AuthorizationPolicy) -> AuthorizationPolicy {
    p.dry_run = true;
    p
}
fn rule(from: Vec<Source>, to: Vec<Operation>, when: Vec<Condition>) -> AuthorizationRule {
    AuthorizationRule { from, to, when }
}
fn from(s: Source) -> AuthorizationRule {
    rule(vec![s], vec![], vec![])
}
fn to(o: Operation) -> AuthorizationRule {
    rule(vec![], vec![o], vec![])
}
fn when(c: Vec<Condition>) -> AuthorizationRule {
    rule(vec![], vec![], c)
}
fn cond(key: &str, values: &[&str], not_values: &[&str]) -> Condition {
    Condition {
        key: key.into(),
        values: v(values),
        not_values: v(not_values),
    }
}
fn principals(p: &[&str]) -> Source {
    Source {
        principals: v(p),
        ..Default::default()
    }
}
fn namespaces(p: &[&str]) -> Source {
    Source {
        namespaces: v(p),
        ..Default::default()
    }
}
fn rp(p: &[&str]) -> Source {
    Source {
        request_principals: v(p),
        ..Default::default()
    }
}
fn methods(m: &[&str]) -> Operation {
    Operation {
        methods: v(m),
        ..Default::default()
    }
}
fn paths(p: &[&str]) -> Operation {
    Operation {
        paths: v(p),
        ..Default::default()
    }
}
fn hosts(h: &[&str]) -> Operation {
    Operation {
        hosts: v(h),
        ..Default::default()
    }
}

/// A request; defaults: `GET httpbin.foo:8000/ip` from `cluster.local/ns/foo/sa/sleep`.
#[derive(Clone)]
struct Req {
    method: &'static str,
    authority: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    principal: Option<&'static str>,
    ip: Option<&'static str>,
    remote_ip: Option<&'static str>,
    dest_ip: Option<&'static str>,
    port: u16,
    sni: Option<&'static str>,
    jwt: Option<crate::jwt::JwtPayload>,
}

fn req() -> Req {
    Req {
        method: "GET",
        authority: "httpbin.foo:8000",
        path: "/ip",
        headers: vec![],
        principal: Some("cluster.local/ns/foo/sa/sleep"),
        ip: Some("10.0.0.1"),
        remote_ip: None,
        dest_ip: Some("10.96.0.10"),
        port: 8000,
        sni: None,
        jwt: None,
    }
}

impl Req {
    fn method(mut self, m: &'static str) -> Self {
        self.method = m;
        self
    }
    fn path(mut self, p: &'static str) -> Self {
        self.path = p;
        self
    }
    fn host(mut self, h: &'static str) -> Self {
        self.authority = h;
        self
    }
    fn header(mut self, n: &'static str, val: &'static str) -> Self {
        self.headers.push((n, val));
        self
    }
    fn principal(mut self, p: Option<&'static str>) -> Self {
        self.principal = p;
        self
    }
    fn ip(mut self, ip: &'static str) -> Self {
        self.ip = Some(ip);
        self
    }
    fn remote(mut self, ip: &'static str) -> Self {
        self.remote_ip = Some(ip);
        self
    }
    fn port(mut self, p: u16) -> Self {
        self.port = p;
        self
    }
    fn jwt(mut self, payload: &str) -> Self {
        self.jwt = Some(crate::jwt::tests_support::payload(payload));
        self
    }
    fn sni(mut self, s: &'static str) -> Self {
        self.sni = Some(s);
        self
    }
    fn view(&self) -> RequestView<'_> {
        let ip = |s: Option<&str>| s.map(|s| s.parse::<IpAddr>().unwrap());
        let namespace = self
            .principal
            .and_then(|p| p.split("/ns/").nth(1))
            .and_then(|r| r.split('/').next());
        RequestView {
            method: self.method,
            scheme: "http",
            authority: self.authority,
            path: self.path,
            headers: &self.headers,
            source: SourceView {
                principal: self.principal,
                namespace,
                ip: ip(self.ip),
                remote_ip: ip(self.remote_ip),
            },
            destination: DestinationView {
                service: Some("httpbin.foo.svc.cluster.local"),
                ip: ip(self.dest_ip),
                port: self.port,
            },
            sni: self.sni,
            jwt: self.jwt.as_ref(),
        }
    }
}

/// What a row expects: allowed, and the deciding policy name and rule (if any).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Want {
    /// Allowed because no ALLOW policy applies (no deciding policy).
    AllowNone,
    /// Allowed by this ALLOW policy and rule.
    Allow(&'static str, usize),
    /// Denied by this DENY policy and rule.
    Deny(&'static str, usize),
    /// Denied because ALLOW policies exist and none matched.
    DenyNone,
}

struct Case {
    name: &'static str,
    policies: Vec<AuthorizationPolicy>,
    req: Req,
    want: Want,
}

fn case(name: &'static str, policies: Vec<AuthorizationPolicy>, req: Req, want: Want) -> Case {
    Case {
        name,
        policies,
        req,
        want,
    }
}

/// Shorthand for "one ALLOW policy with these rules; is the request allowed?"
fn allow_case(name: &'static str, rules: Vec<AuthorizationRule>, req: Req, ok: bool) -> Case {
    let want = if ok {
        Want::Allow("allow", 0)
    } else {
        Want::DenyNone
    };
    case(name, vec![allow(rules)], req, want)
}

fn run(c: &Case) -> AuthzDecision<'static> {
    let authz = Box::leak(Box::new(
        CompiledAuthz::compile(&c.policies).unwrap_or_else(|e| panic!("{}: {e}", c.name)),
    ));
    let bound: Vec<u32> = (0..c.policies.len() as u32).collect();
    let r = Box::leak(Box::new(c.req.clone()));
    authz.evaluate(&bound, &r.view())
}

fn check(c: &Case) {
    if let Some(msg) = mismatch(c) {
        panic!("{msg}");
    }
}

fn mismatch(c: &Case) -> Option<String> {
    let d = run(c);
    let got = match (d.allowed, d.deciding) {
        (true, None) => Want::AllowNone,
        (false, None) => Want::DenyNone,
        (true, Some(m)) => Want::Allow(leak(m.name), m.rule.unwrap()),
        (false, Some(m)) => Want::Deny(leak(m.name), m.rule.unwrap()),
    };
    (got != c.want).then(|| format!("case {:?}: got {got:?}, want {:?}", c.name, c.want))
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

// ---------------------------------------------------------------- the table

#[rustfmt::skip]
fn cases() -> Vec<Case> {
    let pfx_ns = |p: &'static str| req().principal(Some(p));
    vec![
        // --- Policy combination: istio.io/latest/docs/concepts/security/#implicit-enablement
        // "If there are any DENY policies that match the request, deny the request."
        case("deny-before-allow",
             vec![allow(vec![rule(vec![], vec![], vec![])]), deny(vec![to(methods(&["GET"]))])],
             req(), Want::Deny("deny", 0)),
        // "If there are no ALLOW policies for the workload, allow the request."
        case("no-allow-policies-allows", vec![deny(vec![to(methods(&["POST"]))])], req(), Want::AllowNone),
        case("no-policies-allows", vec![], req(), Want::AllowNone),
        // "If any of the ALLOW policies match the request, allow the request." / else deny.
        case("allow-exists-none-match-denies", vec![allow(vec![to(methods(&["POST"]))])], req(), Want::DenyNone),
        case("second-allow-matches",
             vec![policy("a1", A::Allow, vec![to(methods(&["POST"]))]), policy("a2", A::Allow, vec![to(methods(&["GET"]))])],
             req(), Want::Allow("a2", 0)),
        // AP ref "AUDIT": audit policies do not affect whether a request is allowed.
        case("audit-does-not-deny", vec![policy("aud", A::Audit, vec![rule(vec![], vec![], vec![])])], req(), Want::AllowNone),
        // AP ref "istio.io/dry-run": dry-run policies are not enforced.
        case("dry-run-deny-not-enforced", vec![dry(deny(vec![to(paths(&["/ip"]))]))], req(), Want::AllowNone),
        case("dry-run-allow-not-enforced", vec![dry(allow(vec![to(methods(&["POST"]))]))], req(), Want::AllowNone),

        // --- AP ref examples "allow-nothing" / "allow-all" / "deny-all"
        // `spec: {}` (ALLOW, no rules) matches nothing: deny everything.
        case("allow-nothing", vec![allow(vec![])], req(), Want::DenyNone),
        // `rules: [{}]` matches everything: allow-all.
        case("allow-all", vec![allow(vec![rule(vec![], vec![], vec![])])], req(), Want::Allow("allow", 0)),
        // DENY without rules matches nothing (istiod emits no RBAC policy for it).
        case("deny-without-rules-matches-nothing", vec![deny(vec![])], req(), Want::AllowNone),
        // AP ref "deny-all": DENY `rules: [{}]`.
        case("deny-all", vec![deny(vec![rule(vec![], vec![], vec![])])], req(), Want::Deny("deny", 0)),
        // allow-nothing plus a specific ALLOW: the specific one decides (ALLOW policies OR).
        case("allow-nothing-plus-allow-get",
             vec![policy("allow-nothing", A::Allow, vec![]), policy("viewer", A::Allow, vec![to(methods(&["GET"]))])],
             req(), Want::Allow("viewer", 0)),

        // --- AP ref "Rule": rules OR; from/to/when AND
        allow_case("rules-or-none-match",
             vec![to(methods(&["POST"])), to(methods(&["GET"]))], req().method("PUT"), false),
        case("rules-or-reports-rule-index",
             vec![allow(vec![to(methods(&["POST"])), to(methods(&["GET"]))])], req(), Want::Allow("allow", 1)),
        allow_case("from-and-to-both-needed",
             vec![rule(vec![principals(&["cluster.local/ns/foo/sa/other"])], vec![methods(&["GET"])], vec![])], req(), false),
        allow_case("from-to-when-all-match",
             vec![rule(vec![namespaces(&["foo"])], vec![methods(&["GET"])], vec![cond("request.headers[x-a]", &["1"], &[])])],
             req().header("x-a", "1"), true),
        allow_case("when-fails-rule-fails",
             vec![rule(vec![namespaces(&["foo"])], vec![methods(&["GET"])], vec![cond("request.headers[x-a]", &["1"], &[])])],
             req().header("x-a", "2"), false),
        // AP ref "Rule.from": "If not set, any source is allowed"; entries OR.
        allow_case("from-entries-or",
             vec![rule(vec![principals(&["cluster.local/ns/x/sa/y"]), namespaces(&["foo"])], vec![], vec![])], req(), true),
        // AP ref "Rule.to": entries OR.
        allow_case("to-entries-or",
             vec![rule(vec![], vec![methods(&["POST"]), paths(&["/ip"])], vec![])], req(), true),
        // AP ref "Rule.when": all conditions AND.
        allow_case("when-conditions-and",
             vec![when(vec![cond("request.headers[x-a]", &["1"], &[]), cond("request.headers[x-b]", &["2"], &[])])],
             req().header("x-a", "1"), false),
        // AP ref "Source": fields AND.
        allow_case("source-fields-and",
             vec![from(Source { principals: v(&["cluster.local/ns/foo/sa/sleep"]), ip_blocks: v(&["192.168.0.0/16"]), ..Default::default() })],
             req(), false),
        // AP ref "Operation": fields AND, values OR.
        allow_case("operation-fields-and-values-or",
             vec![to(Operation { methods: v(&["PUT", "GET"]), paths: v(&["/status", "/ip"]), ..Default::default() })], req(), true),
        allow_case("operation-fields-and-fails",
             vec![to(Operation { methods: v(&["GET"]), paths: v(&["/status"]), ..Default::default() })], req(), false),
        // istiod model: an empty `source: {}` / `operation: {}` generates `any: true`.
        allow_case("empty-source-and-operation-match-all",
             vec![rule(vec![Source::default()], vec![Operation::default()], vec![])], req(), true),

        // --- AP ref "Source.principals": exact, prefix, suffix, "*"
        allow_case("principal-exact", vec![from(principals(&["cluster.local/ns/foo/sa/sleep"]))], req(), true),
        allow_case("principal-exact-mismatch", vec![from(principals(&["cluster.local/ns/foo/sa/other"]))], req(), false),
        allow_case("principal-prefix", vec![from(principals(&["cluster.local/ns/foo/*"]))], req(), true),
        allow_case("principal-suffix", vec![from(principals(&["*/sa/sleep"]))], req(), true),
        allow_case("principal-suffix-mismatch", vec![from(principals(&["*/sa/sleepy"]))], req(), false),
        // istiod StringMatcherWithPrefix: "*" → regex ".+", i.e. any authenticated peer.
        allow_case("principal-star-authenticated", vec![from(principals(&["*"]))], req(), true),
        allow_case("principal-star-plaintext", vec![from(principals(&["*"]))], req().principal(None), false),
        // istiod emits `spiffe://.*<suffix>` without quoting: '.' in the suffix is a regex dot.
        allow_case("principal-suffix-is-unquoted-regex", vec![from(principals(&["*cluster.local/ns/foo/sa/sleep"]))],
             pfx_ns("clusterXlocal/ns/foo/sa/sleep"), true),
        // istiod model: notPrincipals → not_id { or_ids { authenticated } }.
        allow_case("not-principals-excludes", vec![from(Source { not_principals: v(&["cluster.local/ns/foo/sa/sleep"]), ..Default::default() })], req(), false),
        allow_case("not-principals-other", vec![from(Source { not_principals: v(&["cluster.local/ns/foo/sa/x"]), ..Default::default() })], req(), true),
        // ...and an absent (plaintext) principal satisfies notPrincipals.
        allow_case("not-principals-plaintext-matches", vec![from(Source { not_principals: v(&["*"]), ..Default::default() })], req().principal(None), true),
        // ambient-migrate-policies "deny-waypoint-bypass": DENY notPrincipals [waypoint].
        case("sample-deny-waypoint-bypass",
             vec![policy("deny-waypoint-bypass", A::Deny, vec![from(Source { not_principals: v(&["cluster.local/ns/bookinfo/sa/waypoint"]), ..Default::default() })])],
             req(), Want::Deny("deny-waypoint-bypass", 0)),
        case("sample-deny-waypoint-bypass-from-waypoint",
             vec![policy("deny-waypoint-bypass", A::Deny, vec![from(Source { not_principals: v(&["cluster.local/ns/bookinfo/sa/waypoint"]), ..Default::default() })])],
             pfx_ns("cluster.local/ns/bookinfo/sa/waypoint"), Want::AllowNone),

        // --- AP ref "Source.namespaces": istiod regex `.*/ns/<ns>/.*` on the principal
        allow_case("namespace-exact", vec![from(namespaces(&["foo"]))], req(), true),
        allow_case("namespace-mismatch", vec![from(namespaces(&["bar"]))], req(), false),
        allow_case("namespace-no-partial-segment", vec![from(namespaces(&["fo"]))], req(), false),
        // "*" in a namespace becomes ".*": prefix and suffix patterns.
        allow_case("namespace-prefix-wildcard", vec![from(namespaces(&["f*"]))], req(), true),
        allow_case("namespace-suffix-wildcard", vec![from(namespaces(&["*oo"]))], req(), true),
        allow_case("namespace-star-needs-identity", vec![from(namespaces(&["*"]))], req().principal(None), false),
        allow_case("namespace-plaintext-no-match", vec![from(namespaces(&["foo"]))], req().principal(None), false),
        // notNamespaces → not_id: a plaintext peer has no namespace, so it satisfies notNamespaces.
        allow_case("not-namespaces-plaintext", vec![from(Source { not_namespaces: v(&["foo"]), ..Default::default() })], req().principal(None), true),
        allow_case("not-namespaces-excludes", vec![from(Source { not_namespaces: v(&["foo"]), ..Default::default() })], req(), false),

        // --- AP ref "Source.ipBlocks" (direct peer) / "remoteIpBlocks" (X-Forwarded-For / proxy protocol)
        allow_case("ipblocks-cidr-v4", vec![from(Source { ip_blocks: v(&["10.0.0.0/8"]), ..Default::default() })], req(), true),
        allow_case("ipblocks-single-ip", vec![from(Source { ip_blocks: v(&["10.0.0.1"]), ..Default::default() })], req(), true),
        allow_case("ipblocks-single-ip-mismatch", vec![from(Source { ip_blocks: v(&["10.0.0.2"]), ..Default::default() })], req(), false),
        allow_case("ipblocks-v6", vec![from(Source { ip_blocks: v(&["2001:db8::/32"]), ..Default::default() })], req().ip("2001:db8::7"), true),
        // Envoy CidrRange compares same-family only: a v4 range never matches a v6 peer.
        allow_case("ipblocks-family-mismatch", vec![from(Source { ip_blocks: v(&["0.0.0.0/0"]), ..Default::default() })], req().ip("::ffff:10.0.0.1"), false),
        // Envoy masks host bits: 10.0.0.77/24 is 10.0.0.0/24.
        allow_case("ipblocks-host-bits-masked", vec![from(Source { ip_blocks: v(&["10.0.0.77/24"]), ..Default::default() })], req(), true),
        allow_case("not-ipblocks", vec![from(Source { not_ip_blocks: v(&["10.0.0.0/24"]), ..Default::default() })], req(), false),
        allow_case("remote-ipblocks-uses-remote", vec![from(Source { remote_ip_blocks: v(&["203.0.113.0/24"]), ..Default::default() })], req().remote("203.0.113.9"), true),
        // ipBlocks is the direct peer, not the original client.
        allow_case("ipblocks-ignores-remote", vec![from(Source { ip_blocks: v(&["203.0.113.0/24"]), ..Default::default() })], req().remote("203.0.113.9"), false),
        // remote.ip falls back to the peer address without X-Forwarded-For.
        allow_case("remote-ipblocks-fallback", vec![from(Source { remote_ip_blocks: v(&["10.0.0.1"]), ..Default::default() })], req(), true),
        allow_case("not-remote-ipblocks", vec![from(Source { not_remote_ip_blocks: v(&["203.0.113.0/24"]), ..Default::default() })], req().remote("203.0.113.9"), false),

        // --- AP ref "Operation.hosts": case-insensitive; istiod HostMatcher matches :authority as is
        allow_case("host-case-insensitive", vec![to(hosts(&["HTTPBIN.foo:8000"]))], req(), true),
        // No port stripping: "httpbin.foo" does not match "httpbin.foo:8000" (use "httpbin.foo:*").
        allow_case("host-without-port-no-match", vec![to(hosts(&["httpbin.foo"]))], req(), false),
        allow_case("host-port-wildcard", vec![to(hosts(&["httpbin.foo:*"]))], req(), true),
        allow_case("host-suffix", vec![to(hosts(&["*.foo:8000"]))], req(), true),
        allow_case("host-suffix-ignore-case", vec![to(hosts(&["*.FOO:8000"]))], req(), true),
        allow_case("host-star-present", vec![to(hosts(&["*"]))], req(), true),
        allow_case("not-hosts", vec![to(Operation { not_hosts: v(&["httpbin.foo:*"]), ..Default::default() })], req().host("Httpbin.Foo:80"), false),

        // --- AP ref "Operation.ports" (destination port)
        allow_case("ports-match", vec![to(Operation { ports: vec![8000], ..Default::default() })], req(), true),
        allow_case("ports-mismatch", vec![to(Operation { ports: vec![8080], ..Default::default() })], req(), false),
        allow_case("not-ports", vec![to(Operation { not_ports: vec![8000], ..Default::default() })], req(), false),
        // AP ref example: DENY POST on port 8080.
        case("sample-deny-post-8080", vec![policy("httpbin", A::Deny, vec![to(Operation { methods: v(&["POST"]), ports: vec![8080], ..Default::default() })])],
             req().method("POST").port(8080), Want::Deny("httpbin", 0)),
        case("sample-deny-post-8080-other-port", vec![policy("httpbin", A::Deny, vec![to(Operation { methods: v(&["POST"]), ports: vec![8080], ..Default::default() })])],
             req().method("POST"), Want::AllowNone),

        // --- AP ref "Operation.methods": istiod HeaderMatcher(":method") is case-sensitive
        allow_case("method-case-sensitive", vec![to(methods(&["get"]))], req(), false),
        allow_case("not-methods", vec![to(Operation { not_methods: v(&["GET", "HEAD"]), ..Default::default() })], req(), false),
        allow_case("not-methods-other", vec![to(Operation { not_methods: v(&["POST"]), ..Default::default() })], req(), true),

        // --- AP ref "Operation.paths": exact, prefix, suffix, presence; query is not part of the path
        allow_case("path-exact-ignores-query", vec![to(paths(&["/ip"]))], req().path("/ip?x=1"), true),
        allow_case("path-exact-case-sensitive", vec![to(paths(&["/IP"]))], req(), false),
        allow_case("path-prefix", vec![to(paths(&["/api/*"]))], req().path("/api/v1/users"), true),
        allow_case("path-suffix", vec![to(paths(&["*.html"]))], req().path("/a/index.html"), true),
        allow_case("path-star", vec![to(paths(&["*"]))], req(), true),
        allow_case("not-paths", vec![to(Operation { not_paths: v(&["/admin*"]), ..Default::default() })], req().path("/admin/x"), false),
        // AP ref "paths" templates: {*} is exactly one segment.
        allow_case("template-one-segment", vec![to(paths(&["/foo/{*}/bar"]))], req().path("/foo/x/bar"), true),
        allow_case("template-one-not-two", vec![to(paths(&["/foo/{*}/bar"]))], req().path("/foo/x/y/bar"), false),
        allow_case("template-one-not-empty", vec![to(paths(&["/foo/{*}"]))], req().path("/foo/"), false),
        // {**} is zero or more segments (Envoy `**` = `[pchar/]*`).
        allow_case("template-any-many", vec![to(paths(&["/foo/{**}"]))], req().path("/foo/a/b/c"), true),
        allow_case("template-any-zero", vec![to(paths(&["/foo/{**}"]))], req().path("/foo/"), true),
        // ...but the slash before {**} is literal: "/foo" itself does not match "/foo/{**}".
        allow_case("template-any-needs-slash", vec![to(paths(&["/foo/{**}"]))], req().path("/foo"), false),
        allow_case("template-mixed", vec![to(paths(&["/foo/{*}/bar/{**}"]))], req().path("/foo/buzz/bar/bat/x?y=1"), true),
        // Envoy uri_template segments only match RFC 3986 pchar (no '*', '=').
        allow_case("template-segment-charset", vec![to(paths(&["/foo/{*}"]))], req().path("/foo/a=b"), false),

        // --- prefilters (method bits, 8-byte path fingerprint) never hide a match
        allow_case("prefilter-custom-method", vec![to(methods(&["PURGE"]))], req().method("PURGE"), true),
        allow_case("prefilter-custom-method-case", vec![to(methods(&["PURGE"]))], req().method("purge"), false),
        allow_case("prefilter-method-wildcard", vec![to(methods(&["P*"]))], req().method("PATCH"), true),
        allow_case("prefilter-long-exact-path", vec![to(paths(&["/api/v1/users/list"]))], req().path("/api/v1/users/list?x"), true),
        allow_case("prefilter-long-exact-path-differs-late", vec![to(paths(&["/api/v1/users/list"]))], req().path("/api/v1/users/lisT"), false),
        allow_case("prefilter-short-prefix", vec![to(paths(&["/a*"]))], req().path("/abc"), true),
        allow_case("prefilter-exact-is-not-prefix", vec![to(paths(&["/ip"]))], req().path("/ipx"), false),
        allow_case("prefilter-op-without-paths", vec![rule(vec![], vec![paths(&["/x"]), methods(&["GET"])], vec![])], req(), true),
        allow_case("prefilter-op-without-methods", vec![rule(vec![], vec![methods(&["POST"]), paths(&["/ip"])], vec![])], req(), true),

        // --- AP ref "Condition" keys
        allow_case("when-header-exact", vec![when(vec![cond("request.headers[X-User]", &["alice"], &[])])], req().header("x-user", "alice"), true),
        allow_case("when-header-prefix", vec![when(vec![cond("request.headers[user-agent]", &["curl/*"], &[])])], req().header("user-agent", "curl/8.1"), true),
        allow_case("when-header-suffix", vec![when(vec![cond("request.headers[x-user]", &["*@corp"], &[])])], req().header("x-user", "bob@corp"), true),
        // istiod HeaderMatcher: "*" → present_match.
        allow_case("when-header-present", vec![when(vec![cond("request.headers[x-user]", &["*"], &[])])], req().header("x-user", ""), true),
        allow_case("when-header-absent", vec![when(vec![cond("request.headers[x-user]", &["*"], &[])])], req(), false),
        // Envoy joins repeated headers with "," before matching (getAllOfHeaderAsString).
        allow_case("when-header-multi-joined-exact", vec![when(vec![cond("request.headers[x-a]", &["1,2"], &[])])], req().header("x-a", "1").header("x-a", "2"), true),
        allow_case("when-header-multi-no-single", vec![when(vec![cond("request.headers[x-a]", &["2"], &[])])], req().header("x-a", "1").header("x-a", "2"), false),
        allow_case("when-header-multi-suffix", vec![when(vec![cond("request.headers[x-a]", &["*1,2"], &[])])], req().header("x-a", "1").header("x-a", "2"), true),
        // notValues → not: an absent header satisfies notValues.
        allow_case("when-header-not-values-absent", vec![when(vec![cond("request.headers[x-a]", &[], &["1"])])], req(), true),
        allow_case("when-header-not-values-hit", vec![when(vec![cond("request.headers[x-a]", &[], &["1"])])], req().header("x-a", "1"), false),
        // request.experimental.inline.headers: any comma-separated element matches.
        allow_case("when-inline-header-element", vec![when(vec![cond("request.experimental.inline.headers[x-a]", &["2"], &[])])], req().header("x-a", "1,2"), true),
        allow_case("when-source-ip", vec![when(vec![cond("source.ip", &["10.0.0.0/24"], &[])])], req(), true),
        allow_case("when-source-ip-not", vec![when(vec![cond("source.ip", &[], &["10.0.0.1"])])], req(), false),
        allow_case("when-remote-ip", vec![when(vec![cond("remote.ip", &["203.0.113.9"], &[])])], req().remote("203.0.113.9"), true),
        allow_case("when-source-namespace", vec![when(vec![cond("source.namespace", &["foo"], &[])])], req(), true),
        allow_case("when-source-namespace-plaintext", vec![when(vec![cond("source.namespace", &["foo"], &[])])], req().principal(None), false),
        allow_case("when-source-principal", vec![when(vec![cond("source.principal", &["cluster.local/ns/foo/sa/*"], &[])])], req(), true),
        allow_case("when-source-principal-not", vec![when(vec![cond("source.principal", &[], &["*/sa/sleep"])])], req(), false),
        // source.serviceAccount: `<sa>` or `<ns>/<sa>`, namespace defaults to the policy's.
        allow_case("when-service-account", vec![when(vec![cond("source.serviceAccount", &["sleep"], &[])])], req(), true),
        allow_case("when-service-account-other-ns", vec![when(vec![cond("source.serviceAccount", &["bar/sleep"], &[])])], req(), false),
        allow_case("when-destination-ip", vec![when(vec![cond("destination.ip", &["10.96.0.0/12"], &[])])], req(), true),
        allow_case("when-destination-port", vec![when(vec![cond("destination.port", &["8000"], &[])])], req(), true),
        allow_case("when-destination-port-not", vec![when(vec![cond("destination.port", &[], &["8000"])])], req(), false),
        allow_case("when-sni", vec![when(vec![cond("connection.sni", &["*.example.com"], &[])])], req().sni("api.example.com"), true),
        // istiod model ruleList.appendLast: a condition without values or notValues adds nothing.
        allow_case("when-condition-without-values-ignored", vec![when(vec![cond("source.ip", &[], &[])])], req(), true),
        // Several `when` entries on the same key are ANDed, not merged.
        allow_case("when-same-key-twice-and", vec![when(vec![cond("request.headers[x-a]", &["1"], &[]), cond("request.headers[x-a]", &["2"], &[])])],
             req().header("x-a", "1"), false),
        // Pseudo-headers are visible to request.headers[...] as Envoy's header map holds them.
        allow_case("when-header-pseudo-path-has-query", vec![when(vec![cond("request.headers[:path]", &["/ip?*"], &[])])], req().path("/ip?a=1"), true),
        // "*" is ".+": no SNI (empty requested_server_name) does not match.
        allow_case("when-sni-star-absent", vec![when(vec![cond("connection.sni", &["*"], &[])])], req(), false),

        // --- JWT (requestPrincipals, request.auth.*): generator.go:255-375 @ 1.30.3
        allow_case("jwt-principal-exact", vec![from(rp(&["https://issuer/alice"]))], req().jwt("iss=https://issuer;sub=alice"), true),
        allow_case("jwt-principal-wrong-issuer", vec![from(rp(&["https://issuer/alice"]))], req().jwt("iss=https://other;sub=alice"), false),
        allow_case("jwt-principal-no-token", vec![from(rp(&["*"]))], req(), false),
        allow_case("jwt-principal-star-with-token", vec![from(rp(&["*"]))], req().jwt("iss=i;sub=s"), true),
        allow_case("jwt-not-principal-no-token", vec![from(Source { not_request_principals: v(&["*"]), ..Default::default() })], req(), true),
        allow_case("jwt-not-principal-token", vec![from(Source { not_request_principals: v(&["*"]), ..Default::default() })], req().jwt("iss=i;sub=s"), false),
        allow_case("jwt-when-principal", vec![when(vec![cond("request.auth.principal", &["i/s"], &[])])], req().jwt("iss=i;sub=s"), true),
        allow_case("jwt-audiences-list-element", vec![when(vec![cond("request.auth.audiences", &["b"], &[])])], req().jwt("aud=a,b"), true),
        allow_case("jwt-audiences-string", vec![when(vec![cond("request.auth.audiences", &["a*"], &[])])], req().jwt("aud=abc"), true),
        allow_case("jwt-audiences-miss", vec![when(vec![cond("request.auth.audiences", &["c"], &[])])], req().jwt("aud=a,b"), false),
        allow_case("jwt-presenter", vec![when(vec![cond("request.auth.presenter", &["web"], &[])])], req().jwt("azp=web"), true),
        allow_case("jwt-claim-nested", vec![when(vec![cond("request.auth.claims[org][team]", &["red"], &[])])], req().jwt("org.team=red"), true),
        allow_case("jwt-claim-nested-miss", vec![when(vec![cond("request.auth.claims[org][team]", &["red"], &[])])], req().jwt("org.team=blue"), false),
        allow_case("jwt-claim-list", vec![when(vec![cond("request.auth.claims[groups]", &["admin"], &[])])], req().jwt("groups=dev,admin"), true),
        allow_case("jwt-claim-non-string", vec![when(vec![cond("request.auth.claims[n]", &["*"], &[])])], req().jwt("n=#"), false),
        allow_case("jwt-claim-scope-split", vec![when(vec![cond("request.auth.claims[scope]", &["write"], &[])])], req().jwt("scope=read write"), true),
        allow_case("jwt-claim-not-values", vec![when(vec![cond("request.auth.claims[groups]", &[], &["banned"])])], req().jwt("groups=dev,banned"), false),

        // --- istio.io samples, translated by hand
        // reference example 1 (without its request.auth.claims condition, which the compiler rejects).
        case("sample-ref1-get-info-from-sleep",
             vec![policy("httpbin", A::Allow, vec![rule(
                 vec![principals(&["cluster.local/ns/default/sa/sleep"]), namespaces(&["test"])],
                 vec![Operation { methods: v(&["GET"]), paths: v(&["/info*"]), ..Default::default() },
                      Operation { methods: v(&["POST"]), paths: v(&["/data"]), ..Default::default() }],
                 vec![])])],
             pfx_ns("cluster.local/ns/default/sa/sleep").path("/info/x"), Want::Allow("httpbin", 0)),
        case("sample-ref1-post-data-from-test-ns",
             vec![policy("httpbin", A::Allow, vec![rule(
                 vec![principals(&["cluster.local/ns/default/sa/sleep"]), namespaces(&["test"])],
                 vec![Operation { methods: v(&["GET"]), paths: v(&["/info*"]), ..Default::default() },
                      Operation { methods: v(&["POST"]), paths: v(&["/data"]), ..Default::default() }],
                 vec![])])],
             pfx_ns("cluster.local/ns/test/sa/any").method("POST").path("/data"), Want::Allow("httpbin", 0)),
        case("sample-ref1-get-data-denied",
             vec![policy("httpbin", A::Allow, vec![rule(
                 vec![principals(&["cluster.local/ns/default/sa/sleep"]), namespaces(&["test"])],
                 vec![Operation { methods: v(&["GET"]), paths: v(&["/info*"]), ..Default::default() },
                      Operation { methods: v(&["POST"]), paths: v(&["/data"]), ..Default::default() }],
                 vec![])])],
             pfx_ns("cluster.local/ns/test/sa/any").path("/data"), Want::DenyNone),
        // reference example 2: DENY POST from namespace dev.
        case("sample-ref2-deny-post-from-dev",
             vec![policy("httpbin", A::Deny, vec![rule(vec![namespaces(&["dev"])], vec![methods(&["POST"])], vec![])])],
             pfx_ns("cluster.local/ns/dev/sa/x").method("POST"), Want::Deny("httpbin", 0)),
        case("sample-ref2-get-from-dev-allowed",
             vec![policy("httpbin", A::Deny, vec![rule(vec![namespaces(&["dev"])], vec![methods(&["POST"])], vec![])])],
             pfx_ns("cluster.local/ns/dev/sa/x"), Want::AllowNone),
        // tasks/security/authorization/authz-http: reviews-viewer.
        case("sample-reviews-viewer",
             vec![policy("reviews-viewer", A::Allow, vec![rule(vec![principals(&["cluster.local/ns/default/sa/bookinfo-productpage"])], vec![methods(&["GET"])], vec![])])],
             pfx_ns("cluster.local/ns/default/sa/bookinfo-productpage"), Want::Allow("reviews-viewer", 0)),
        case("sample-reviews-viewer-other-sa",
             vec![policy("reviews-viewer", A::Allow, vec![rule(vec![principals(&["cluster.local/ns/default/sa/bookinfo-productpage"])], vec![methods(&["GET"])], vec![])])],
             req(), Want::DenyNone),
    ]
}

#[test]
fn table() {
    let cases = cases();
    assert!(cases.len() >= 60, "only {} cases", cases.len());
    let mut names = std::collections::HashSet::new();
    let mut failed = Vec::new();
    for c in &cases {
        assert!(names.insert(c.name), "duplicate case name {}", c.name);
        failed.extend(mismatch(c));
    }
    assert!(
        failed.is_empty(),
        "{} of {} cases failed:\n{}",
        failed.len(),
        cases.len(),
        failed.join("\n")
    );
    println!("{} table cases passed", cases.len());
}

// ---------------------------------------------------------------- audit and dry-run reporting

#[test]
fn audit_reported_without_changing_decision() {
    // AP ref example "AUDIT": audit GET /user/profile/* (reference example 4).
    let c = case(
        "audit",
        vec![
            policy(
                "anyname",
                A::Audit,
                vec![to(Operation {
                    methods: v(&["GET"]),
                    paths: v(&["/user/profile/*"]),
                    ..Default::default()
                })],
            ),
            policy("viewer", A::Allow, vec![to(methods(&["GET"]))]),
        ],
        req().path("/user/profile/alice"),
        Want::Allow("viewer", 0),
    );
    check(&c);
    let d = run(&c);
    let a = d.audit.unwrap();
    assert_eq!(
        (a.namespace, a.name, a.action, a.rule),
        ("foo", "anyname", A::Audit, Some(0))
    );
    assert_eq!(d.dry_run, None);
}

#[test]
fn dry_run_reports_shadow_decision() {
    // AP ref "dry-run" example: DENY /headers in dry-run; the request still passes.
    let c = case(
        "dry-run",
        vec![dry(policy(
            "dry-run-example",
            A::Deny,
            vec![to(paths(&["/headers"]))],
        ))],
        req().path("/headers"),
        Want::AllowNone,
    );
    check(&c);
    let d = run(&c);
    let (would_allow, m) = d.dry_run.unwrap();
    assert!(!would_allow);
    assert_eq!(m.unwrap().name, "dry-run-example");
    // A dry-run ALLOW that would not match: shadow denies, enforcement allows.
    let c = case(
        "dry-run-allow",
        vec![dry(allow(vec![to(methods(&["POST"]))]))],
        req(),
        Want::AllowNone,
    );
    assert_eq!(run(&c).dry_run, Some((false, None)));
    // Dry-run and enforced are separate: an enforced ALLOW decides, the dry-run DENY is shadow.
    let c = case(
        "mixed",
        vec![
            allow(vec![to(methods(&["GET"]))]),
            dry(policy(
                "shadow",
                A::Deny,
                vec![rule(vec![], vec![], vec![])],
            )),
        ],
        req(),
        Want::Allow("allow", 0),
    );
    check(&c);
    assert_eq!(
        run(&c).dry_run.map(|(a, m)| (a, m.map(|m| m.name))),
        Some((false, Some("shadow")))
    );
}

#[test]
fn out_of_range_binding_fails_closed() {
    let authz = CompiledAuthz::compile(&[]).unwrap();
    let r = req();
    let d = authz.evaluate(&[3], &r.view());
    assert!(!d.allowed);
    assert_eq!(d.deciding, None);
}

#[test]
fn first_matching_deny_reported() {
    let c = case(
        "two-denies",
        vec![
            policy(
                "d1",
                A::Deny,
                vec![to(methods(&["POST"])), to(paths(&["/ip"]))],
            ),
            policy("d2", A::Deny, vec![rule(vec![], vec![], vec![])]),
        ],
        req(),
        Want::Deny("d1", 1),
    );
    check(&c);
}

// ---------------------------------------------------------------- invalid input

fn compile_err(p: AuthorizationPolicy) -> String {
    let p = AuthorizationPolicy {
        origin: Some(Origin {
            namespace: "foo".into(),
            name: "bar".into(),
            ..Default::default()
        }),
        ..p
    };
    CompiledAuthz::compile(&[p]).unwrap_err().to_string()
}

#[test]
fn invalid_cidr_names_policy_and_field() {
    // istiod util.AddrStrToCidrRange / netip.ParsePrefix: /33 is not an IPv4 prefix.
    let e = compile_err(allow(vec![rule(
        vec![
            Source::default(),
            Source {
                ip_blocks: v(&["10.0.0.0/33"]),
                ..Default::default()
            },
        ],
        vec![],
        vec![],
    )]));
    assert_eq!(e, "AuthorizationPolicy foo/bar: rules[0].from[1].source.ipBlocks[0]: invalid CIDR \"10.0.0.0/33\"");
    for bad in [
        "10.0.0.0/",
        "10.0.0/8",
        "010.0.0.1",
        "2001:db8::/129",
        "10.0.0.0/08",
        "fe80::1%eth0",
        " 10.0.0.1",
    ] {
        let e = compile_err(deny(vec![from(Source {
            not_remote_ip_blocks: v(&[bad]),
            ..Default::default()
        })]));
        assert!(
            e.contains("rules[0].from[0].source.notRemoteIpBlocks[0]: invalid CIDR"),
            "{bad}: {e}"
        );
    }
    let e = compile_err(allow(vec![when(vec![cond(
        "destination.ip",
        &["1.2.3.4", "nope"],
        &[],
    )])]));
    assert_eq!(
        e,
        "AuthorizationPolicy foo/bar: rules[0].when[0].values[1]: invalid CIDR \"nope\""
    );
}

#[test]
fn invalid_path_templates() {
    // istio security.CheckValidPathTemplate: "{**} is not the last operator".
    let e = compile_err(allow(vec![to(paths(&["/a/{**}/{*}"]))]));
    assert!(e.starts_with("AuthorizationPolicy foo/bar: rules[0].to[0].operation.paths[0]: invalid path \"/a/{**}/{*}\""), "{e}");
    assert!(e.contains("{**} is not the last operator"), "{e}");
    // "{*}" mixed with other characters in a segment: '{' beyond a supported template.
    let e = compile_err(allow(vec![to(Operation {
        not_paths: v(&["/ok", "/a/{*}.js"]),
        ..Default::default()
    })]));
    assert!(
        e.starts_with(
            "AuthorizationPolicy foo/bar: rules[0].to[0].operation.notPaths[1]: invalid path"
        ),
        "{e}"
    );
    // Braces are rejected even without a template, as istio validation does.
    assert!(compile_err(allow(vec![to(paths(&["/users/{id}"]))])).contains("paths[0]"));
    // A template literal must be pchar (here '*'), and not empty in the middle.
    assert!(compile_err(allow(vec![to(paths(&["/a*/{*}"]))])).contains("invalid path"));
    assert!(compile_err(allow(vec![to(paths(&["/a//{*}"]))])).contains("invalid path"));
    // {**} followed by a literal is accepted by istiod and Envoy.
    assert!(CompiledAuthz::compile(&[allow(vec![to(paths(&["/a/{**}/b"]))])]).is_ok());
}

#[test]
fn invalid_condition_keys() {
    let e = compile_err(allow(vec![when(vec![
        cond("source.ip", &["1.2.3.4"], &[]),
        cond("request.method", &["GET"], &[]),
    ])]));
    assert_eq!(e, "AuthorizationPolicy foo/bar: rules[0].when[1].key: unknown condition key \"request.method\"");
    let e = compile_err(deny(vec![when(vec![cond(
        "request.auth.claim[iss]",
        &["x"],
        &[],
    )])]));
    assert!(
        e.starts_with("AuthorizationPolicy foo/bar: rules[0].when[0].key: "),
        "{e}"
    );
    assert!(e.contains("request.auth.claims[<name>]"), "{e}");
    let e = compile_err(deny(vec![when(vec![cond(
        "experimental.envoy.filters.a.b[c]",
        &["x"],
        &[],
    )])]));
    assert!(
        e.contains("rules[0].when[0].key") && e.contains("not supported"),
        "{e}"
    );
    let e = compile_err(allow(vec![when(vec![cond(
        "request.headers",
        &["x"],
        &[],
    )])]));
    assert!(e.contains("rules[0].when[0].key"), "{e}");
    let e = compile_err(allow(vec![when(vec![cond(
        "request.headers[]",
        &["x"],
        &[],
    )])]));
    assert!(e.contains("rules[0].when[0].key"), "{e}");
}

#[test]
fn invalid_values() {
    let e = compile_err(allow(vec![when(vec![cond(
        "destination.port",
        &["80", "+81"],
        &[],
    )])]));
    assert_eq!(
        e,
        "AuthorizationPolicy foo/bar: rules[0].when[0].values[1]: invalid port \"+81\""
    );
    let e = compile_err(allow(vec![to(Operation {
        ports: vec![70000],
        ..Default::default()
    })]));
    assert_eq!(
        e,
        "AuthorizationPolicy foo/bar: rules[0].to[0].operation.ports[0]: invalid port \"70000\""
    );
    let e = compile_err(allow(vec![
        rule(vec![], vec![], vec![]),
        from(principals(&["a", ""])),
    ]));
    assert_eq!(e, "AuthorizationPolicy foo/bar: rules[1].from[0].source.principals[1]: empty value not allowed");
    let e = compile_err(allow(vec![from(Source {
        request_principals: v(&["iss/sub", ""]),
        ..Default::default()
    })]));
    assert!(
        e.contains("rules[0].from[0].source.requestPrincipals[1]: empty value not allowed"),
        "{e}"
    );
    let e = compile_err(AuthorizationPolicy {
        action: 3,
        ..allow(vec![])
    });
    assert_eq!(
        e,
        "AuthorizationPolicy foo/bar: action: unsupported action 3"
    );
    // istiod pastes the suffix into a regex; one RE2 cannot compile is a config Envoy rejects.
    let e = compile_err(allow(vec![from(principals(&["*ns/(foo"]))]));
    assert!(
        e.contains("rules[0].from[0].source.principals[0]: invalid value"),
        "{e}"
    );
    let e = compile_err(allow(vec![when(vec![cond(
        "source.serviceAccount",
        &["a/b/c"],
        &[],
    )])]));
    assert!(e.contains("rules[0].when[0].values[0]"), "{e}");
}

// ---------------------------------------------------------------- matcher unit checks

#[test]
fn cidr_parsing() {
    use super::cidr::{parse_cidr, Cidr};
    assert_eq!(
        parse_cidr("10.1.2.3"),
        Some(Cidr::V4 {
            net: 0x0a01_0203,
            mask: u32::MAX
        })
    );
    assert_eq!(parse_cidr("0.0.0.0/0"), Some(Cidr::V4 { net: 0, mask: 0 }));
    assert_eq!(parse_cidr("::/0"), Some(Cidr::V6 { net: 0, mask: 0 }));
    assert!(parse_cidr("::1/128").is_some());
    assert!(parse_cidr("1.2.3.4/-1").is_none());
}

#[test]
fn joined_header_matching() {
    use super::matchers::StrMatch;
    let vals = ["ab", "cd", "ef"];
    let it = || vals.iter().copied();
    assert!(StrMatch::istio("ab,cd,ef").matches_joined(it()));
    assert!(StrMatch::istio("ab,c*").matches_joined(it()));
    assert!(StrMatch::istio("*d,ef").matches_joined(it()));
    assert!(!StrMatch::istio("*d,e").matches_joined(it()));
    assert!(!StrMatch::istio("ab,cd,ef,").matches_joined(it()));
    assert!(!StrMatch::istio("x*").matches_joined(it()));
}

// ---------------------------------------------------------------- performance

/// 100 rules, none of which match until the last: `cargo test --release -p layover-core
/// authz::tests::perf -- --ignored --nocapture`.
#[test]
#[ignore]
fn perf_100_rules() {
    let mut rules = Vec::new();
    for i in 0..99 {
        let p: &'static str = leak(&format!("/api/v{i}/*"));
        rules.push(rule(
            vec![
                principals(&["cluster.local/ns/default/sa/frontend"]),
                namespaces(&["team-*"]),
            ],
            vec![Operation {
                methods: v(&["GET", "POST"]),
                paths: v(&[p, leak(&format!("/v{i}/exact"))]),
                ..Default::default()
            }],
            vec![cond("request.headers[x-tenant]", &["acme"], &[])],
        ));
    }
    rules.push(to(paths(&["/ip"])));
    let policies = vec![deny(vec![to(paths(&["/admin/*"]))]), allow(rules)];
    let authz = CompiledAuthz::compile(&policies).unwrap();
    let r = req()
        .header("x-tenant", "acme")
        .header("user-agent", "curl");
    let view = r.view();
    let n = 200_000;
    let start = std::time::Instant::now();
    let mut ok = 0;
    for _ in 0..n {
        ok += usize::from(
            std::hint::black_box(&authz)
                .evaluate(&[0, 1], std::hint::black_box(&view))
                .allowed,
        );
    }
    let per = start.elapsed().as_nanos() / n as u128;
    assert_eq!(ok, n);
    println!("authz evaluate, 100 rules (prefilters reject): {per} ns/request");

    // Worst case for the prefilters: every rule passes method and path and fails on `when`
    // (header) and `from` (principal, namespace regex).
    let mut rules = Vec::new();
    for i in 0..99 {
        let t: &'static str = leak(&format!("tenant-{i}"));
        rules.push(rule(
            vec![
                principals(&["cluster.local/ns/default/sa/frontend"]),
                namespaces(&["team-*"]),
            ],
            vec![Operation {
                methods: v(&["GET", "POST"]),
                paths: v(&["/ip*", "/status"]),
                ..Default::default()
            }],
            vec![cond("request.headers[x-tenant]", &[t], &[])],
        ));
    }
    rules.push(rule(vec![principals(&["*"])], vec![], vec![]));
    let authz = CompiledAuthz::compile(&[allow(rules)]).unwrap();
    let r = req()
        .header("x-tenant", "tenant-x")
        .header("user-agent", "curl");
    let view = r.view();
    let start = std::time::Instant::now();
    let mut ok = 0;
    for _ in 0..n {
        ok += usize::from(
            std::hint::black_box(&authz)
                .evaluate(&[0], std::hint::black_box(&view))
                .allowed,
        );
    }
    let per = start.elapsed().as_nanos() / n as u128;
    assert_eq!(ok, n);
    println!("authz evaluate, 100 rules (full checks): {per} ns/request");
}

/// An unknown client address (the host could not say who the client is; route B) resolves every
/// address check against the caller: ALLOW rules on it never match, DENY / AUDIT rules on it
/// always do (`model.go:354-364 @ 1.30.3`, istiod's own rule for conditions it cannot build).
#[test]
fn an_unknown_client_address_fails_closed_for_allow_and_deny() {
    let unknown = || {
        let mut r = req();
        r.ip = None;
        r.remote_ip = None;
        r
    };
    let ips = |s: &[&str]| Source {
        ip_blocks: v(s),
        ..Default::default()
    };
    let not_ips = |s: &[&str]| Source {
        not_ip_blocks: v(s),
        ..Default::default()
    };
    let remote = |s: &[&str]| Source {
        remote_ip_blocks: v(s),
        ..Default::default()
    };
    let not_remote = |s: &[&str]| Source {
        not_remote_ip_blocks: v(s),
        ..Default::default()
    };
    for c in [
        allow_case(
            "allow ipBlocks",
            vec![from(ips(&["0.0.0.0/0"]))],
            unknown(),
            false,
        ),
        allow_case(
            "allow notIpBlocks",
            vec![from(not_ips(&["10.0.0.0/8"]))],
            unknown(),
            false,
        ),
        allow_case(
            "allow remoteIpBlocks",
            vec![from(remote(&["0.0.0.0/0"]))],
            unknown(),
            false,
        ),
        allow_case(
            "allow notRemoteIpBlocks",
            vec![from(not_remote(&["10.0.0.0/8"]))],
            unknown(),
            false,
        ),
        allow_case(
            "allow when source.ip",
            vec![when(vec![cond("source.ip", &["0.0.0.0/0"], &[])])],
            unknown(),
            false,
        ),
        // A rule without an address check is unaffected; so is an ALLOW whose other rule matches.
        allow_case(
            "allow principals",
            vec![from(principals(&["cluster.local/ns/foo/sa/sleep"]))],
            unknown(),
            true,
        ),
        case(
            "allow: an address-free rule still matches",
            vec![allow(vec![
                from(ips(&["10.0.0.0/8"])),
                from(namespaces(&["foo"])),
            ])],
            unknown(),
            Want::Allow("allow", 1),
        ),
        case(
            "deny ipBlocks",
            vec![deny(vec![from(ips(&["192.0.2.0/24"]))])],
            unknown(),
            Want::Deny("deny", 0),
        ),
        case(
            "deny notIpBlocks",
            vec![deny(vec![from(not_ips(&["10.0.0.0/8"]))])],
            unknown(),
            Want::Deny("deny", 0),
        ),
        case(
            "deny remoteIpBlocks",
            vec![deny(vec![from(remote(&["192.0.2.0/24"]))])],
            unknown(),
            Want::Deny("deny", 0),
        ),
        case(
            "deny when notValues source.ip",
            vec![deny(vec![when(vec![cond(
                "source.ip",
                &[],
                &["10.0.0.0/8"],
            )])])],
            unknown(),
            Want::Deny("deny", 0),
        ),
        // The rest of a DENY rule still has to match: the address alone widens nothing else.
        case(
            "deny ipBlocks on another path",
            vec![deny(vec![rule(
                vec![ips(&["192.0.2.0/24"])],
                vec![paths(&["/blocked"])],
                vec![],
            )])],
            unknown(),
            Want::AllowNone,
        ),
        // A known address is matched as before.
        case(
            "deny ipBlocks, known address",
            vec![deny(vec![from(ips(&["192.0.2.0/24"]))])],
            req(),
            Want::AllowNone,
        ),
    ] {
        check(&c);
    }
}

// ---------------------------------------------------------------- connection needs (issue 15)

fn needs_of(policies: Vec<AuthorizationPolicy>) -> ConnectionNeeds {
    CompiledAuthz::compile(&policies).unwrap().needs()
}

const NO_NEEDS: ConnectionNeeds = ConnectionNeeds {
    principal: false,
    source_ip: false,
    remote_ip: false,
    sni: false,
};

macro_rules! needs_case {
    ($name:ident, $policies:expr, $want:expr) => {
        #[test]
        fn $name() {
            assert_eq!(needs_of($policies), $want);
        }
    };
}

needs_case!(needs_nothing_without_policies, vec![], NO_NEEDS);
needs_case!(
    needs_nothing_for_operations,
    vec![allow(vec![
        to(methods(&["GET"])),
        to(paths(&["/a/*"])),
        to(hosts(&["h"]))
    ])],
    NO_NEEDS
);
needs_case!(
    needs_principal_for_principals,
    vec![deny(vec![from(principals(&["*/sa/x"]))])],
    ConnectionNeeds {
        principal: true,
        ..NO_NEEDS
    }
);
needs_case!(
    needs_principal_for_namespaces,
    vec![allow(vec![from(namespaces(&["foo"]))])],
    ConnectionNeeds {
        principal: true,
        ..NO_NEEDS
    }
);
needs_case!(
    needs_principal_for_service_account_condition,
    vec![allow(vec![when(vec![cond(
        "source.serviceAccount",
        &["foo/sleep"],
        &[]
    )])])],
    ConnectionNeeds {
        principal: true,
        ..NO_NEEDS
    }
);
needs_case!(
    needs_source_ip_for_ip_blocks,
    vec![allow(vec![when(vec![cond(
        "source.ip",
        &["10.0.0.0/8"],
        &[]
    )])])],
    ConnectionNeeds {
        source_ip: true,
        ..NO_NEEDS
    }
);
needs_case!(
    needs_both_addresses_for_remote_ip,
    vec![allow(vec![when(vec![cond(
        "remote.ip",
        &[],
        &["10.0.0.0/8"]
    )])])],
    ConnectionNeeds {
        source_ip: true,
        remote_ip: true,
        ..NO_NEEDS
    }
);
needs_case!(
    needs_sni_for_connection_sni,
    vec![allow(vec![when(vec![cond(
        "connection.sni",
        &["*.example.com"],
        &[]
    )])])],
    ConnectionNeeds {
        sni: true,
        ..NO_NEEDS
    }
);
needs_case!(
    needs_of_dry_run_policies_count,
    vec![dry(deny(vec![from(principals(&["*"]))]))],
    ConnectionNeeds {
        principal: true,
        ..NO_NEEDS
    }
);
