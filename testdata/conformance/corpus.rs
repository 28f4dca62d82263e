// layover's own conformance corpus: VirtualService / Gateway API edges, each row citing the
// istiod 1.30.3 line, Istio integration test case or Gateway API conformance test it encodes.
// Included (`include!`) by two drivers, one `#[test]` per row through `corpus!`:
//   envoy-config/cli/tests/conformance.rs  — `layover eval` (compiler + core engine), `eval`;
//   tests/integration/tests/conformance.rs — real Envoy 1.40.0, both builds (and the native
//                                            translation when `native`), `envoy`.
// Services `a` and `b` (namespace default, one HTTP port 9080) exist in both drivers; a row's
// `yaml` adds to them. To add a row: write its `fn` below and name it in `corpus!`.

/// One request: the `Host` header (which names the service) and the service port it is sent to.
pub struct Req {
    pub method: &'static str,
    pub host: &'static str,
    /// The service port dialled (what the waypoint sees as the destination port).
    pub port: u16,
    pub path: &'static str,
    pub headers: &'static [(&'static str, &'static str)],
}

/// What real Envoy answers; `None` fields are not checked.
#[derive(Default)]
pub struct Envoy {
    pub status: u16,
    /// The service whose backend answered (`a` / `b`).
    pub backend: Option<&'static str>,
    /// Path and authority the backend received.
    pub path: Option<&'static str>,
    pub authority: Option<&'static str>,
    /// A request header the backend received.
    pub header: Option<(&'static str, &'static str)>,
    /// `Location` of a redirect.
    pub location: Option<&'static str>,
    /// `grpc-status` of the answer: Envoy turns a local reply to a gRPC request into HTTP 200
    /// with the mapped gRPC status (404 → 12 UNIMPLEMENTED).
    pub grpc_status: Option<&'static str>,
}

pub struct Row {
    pub cite: &'static str,
    pub yaml: &'static str,
    pub req: Req,
    /// JSON that must be a subset of `layover eval`'s decision.
    pub eval: &'static str,
    /// `None`: the row is checked by eval only (say why in `cite`).
    pub envoy: Option<Envoy>,
    /// Whether the native translation expresses the case (then it runs too).
    pub native: bool,
}

/// A GET to port 9080, the port of `a` and `b`.
const fn get(host: &'static str, path: &'static str) -> Req {
    Req { method: "GET", host, port: 9080, path, headers: &[] }
}

/// A GET to another port (eval-only rows with their own services).
const fn get_on(host: &'static str, port: u16, path: &'static str) -> Req {
    Req { method: "GET", host, port, path, headers: &[] }
}

/// Runs `$m!(row)` for every row.
macro_rules! corpus {
    ($m:ident) => {
        $m!(vs_set_host_header_rewrites_the_authority);
        $m!(vs_add_authority_header_rewrites_the_authority);
        $m!(vs_rewrite_authority_wins_over_host_header);
        $m!(vs_single_destination_host_header_rewrites_the_authority);
        $m!(vs_route_host_header_wins_over_weighted_destination_host);
        $m!(vs_same_host_header_on_every_weighted_destination);
        $m!(vs_abort_without_percentage_never_aborts);
        $m!(vs_delay_without_percentage_never_delays);
        $m!(vs_mirror_percentage_zero_writes_no_mirror);
        $m!(vs_empty_header_string_match_is_present_match);
        $m!(vs_empty_header_string_match_absent_header_no_route);
        $m!(vs_without_headers_regex_star_header_present);
        $m!(vs_without_headers_regex_star_header_absent);
        $m!(vs_redirect_from_request_port_keeps_the_port);
        $m!(vs_redirect_request_port_non_default);
        $m!(vs_redirect_request_port_to_default);
        $m!(vs_redirect_request_port_to_default_with_host_port);
        $m!(vs_redirect_request_port_and_scheme);
        $m!(vs_redirect_explicit_port_80_with_http_is_dropped);
        $m!(vs_redirect_scheme_https_protocol_default);
        $m!(vs_subset_without_endpoints_is_503);
        $m!(gw_redirect_hostname_keeps_request_port);
        $m!(gw_redirect_scheme_without_port_uses_protocol_default);
        $m!(gw_redirect_explicit_port);
        $m!(gw_rewrite_replace_prefix_match_segment);
        $m!(gw_rewrite_replace_prefix_match_exact_prefix);
        $m!(gw_rewrite_replace_prefix_match_not_a_segment);
        $m!(gw_rewrite_strip_prefix_slash);
        $m!(gw_redirect_replace_prefix_match);
        $m!(gw_header_modifier_host_rewrites_the_authority);
        $m!(gw_header_modifier_first_duplicate_wins);
        $m!(gw_backend_ref_host_header_rewrites_the_authority);
        $m!(gw_parent_ref_port_applies_to_that_port_only);
        $m!(gw_parent_ref_port_routes_that_port);
        $m!(grpc_route_service_and_method_exact);
        $m!(grpc_route_other_method_no_route);
        $m!(grpc_route_service_only_prefix);
        $m!(grpc_route_method_only_regex);
    };
}

const VS_HOST: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: default}
spec:
  hosts: [a]
  http:
  - headers: {request: {set: {host: set.example, x-kept: "1"}, add: {host: add.example}}}
    route: [{destination: {host: b}}]
"#;

pub fn vs_set_host_header_rewrites_the_authority() -> Row {
    Row {
        cite: "route.go:1036-1048,654-662 @ 1.30.3 (TranslateHeadersOperations: a set of host/:authority becomes host_rewrite_literal, set wins over add, internal headers dropped); routing.go \"set authority header\" cases",
        yaml: VS_HOST,
        req: get("a:9080", "/h"),
        eval: r#"{"action":"route","authority":"set.example","request_headers":[{"op":"set","name":"x-kept","value":"1"}]}"#,
        envoy: Some(Envoy { status: 200, backend: Some("b"), authority: Some("set.example"), header: Some(("x-kept", "1")), ..Envoy::default() }),
        native: true,
    }
}

pub fn vs_add_authority_header_rewrites_the_authority() -> Row {
    Row {
        cite: "route.go:1037,1044-1048 @ 1.30.3: an `add` of :authority is the host rewrite when no `set` names it",
        yaml: r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: default}
spec:
  hosts: [a]
  http:
  - headers: {request: {add: {":authority": add.example}}}
    route: [{destination: {host: b}}]
"#,
        req: get("a:9080", "/h"),
        eval: r#"{"action":"route","authority":"add.example"}"#,
        envoy: Some(Envoy { status: 200, backend: Some("b"), authority: Some("add.example"), ..Envoy::default() }),
        native: true,
    }
}

pub fn vs_rewrite_authority_wins_over_host_header() -> Row {
    Row {
        cite: "route.go:654-656 @ 1.30.3: rewrite.authority replaces the headers' authority",
        yaml: r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: default}
spec:
  hosts: [a]
  http:
  - headers: {request: {set: {host: header.example}}}
    rewrite: {authority: rewrite.example}
    route: [{destination: {host: b}}]
"#,
        req: get("a:9080", "/h"),
        eval: r#"{"action":"route","authority":"rewrite.example"}"#,
        envoy: Some(Envoy { status: 200, backend: Some("b"), authority: Some("rewrite.example"), ..Envoy::default() }),
        native: true,
    }
}

pub fn vs_single_destination_host_header_rewrites_the_authority() -> Row {
    Row {
        cite: "route.go:725-734 @ 1.30.3 (processDestination: a single destination's host header is the host rewrite when the route sets none)",
        yaml: r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: default}
spec:
  hosts: [a]
  http:
  - route: [{destination: {host: b}, headers: {request: {set: {host: dest.example}}}}]
"#,
        req: get("a:9080", "/h"),
        eval: r#"{"action":"route","authority":"dest.example"}"#,
        envoy: Some(Envoy { status: 200, backend: Some("b"), authority: Some("dest.example"), ..Envoy::default() }),
        native: true,
    }
}

pub fn vs_route_host_header_wins_over_weighted_destination_host() -> Row {
    Row {
        cite: "route.go:654-662,765-768 @ 1.30.3; routing.go:350-381 @ 1.30.3 \"set host header in route and multi destination\" (route-authority)",
        yaml: r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: default}
spec:
  hosts: [a]
  http:
  - route:
    - {destination: {host: a}, weight: 50, headers: {request: {set: {Host: dest-authority}}}}
    - {destination: {host: b}, weight: 50}
    headers: {request: {set: {":authority": route-authority}}}
"#,
        req: get("a:9080", "/h"),
        eval: r#"{"action":"route","authority":"route-authority"}"#,
        envoy: Some(Envoy { status: 200, authority: Some("route-authority"), ..Envoy::default() }),
        native: true,
    }
}

pub fn vs_same_host_header_on_every_weighted_destination() -> Row {
    Row {
        cite: "route.go:765-768 @ 1.30.3; routing.go:420-455 @ 1.30.3 \"set host header multi destination\" (dest-authority)",
        yaml: r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: default}
spec:
  hosts: [a]
  http:
  - route:
    - {destination: {host: a}, weight: 50, headers: {request: {set: {Host: dest-authority}}}}
    - {destination: {host: b}, weight: 50, headers: {request: {set: {Host: dest-authority}}}}
"#,
        req: get("a:9080", "/h"),
        eval: r#"{"action":"route","authority":"dest-authority"}"#,
        envoy: Some(Envoy { status: 200, authority: Some("dest-authority"), ..Envoy::default() }),
        native: true,
    }
}

pub fn vs_abort_without_percentage_never_aborts() -> Row {
    Row {
        cite: "route.go:1414-1416 @ 1.30.3 (abort.percentage unset stays unset: 0%); virtual_service.proto:1521 @ 1.30.3 \"If not specified, no request will be aborted\"",
        yaml: r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: default}
spec:
  hosts: [a]
  http:
  - fault: {abort: {httpStatus: 418}}
    route: [{destination: {host: a}}]
"#,
        req: get("a:9080", "/f"),
        eval: r#"{"action":"route","status":null}"#,
        envoy: Some(Envoy { status: 200, backend: Some("a"), ..Envoy::default() }),
        native: true,
    }
}

pub fn vs_delay_without_percentage_never_delays() -> Row {
    Row {
        cite: "route.go:1396-1400 @ 1.30.3 (delay without percentage: the unset integer percent, 0%); virtual_service.proto:1474 \"If left unspecified, no request will be delayed\". Eval only: a delay is not asserted in timed tests",
        yaml: r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: default}
spec:
  hosts: [a]
  http:
  - fault: {delay: {fixedDelay: 5s}}
    route: [{destination: {host: a}}]
"#,
        req: get("a:9080", "/f"),
        eval: r#"{"action":"route","fault":{"delay":{"fixed_delay_ms":5000,"percentage":0.0}}}"#,
        envoy: None,
        native: false,
    }
}

pub fn vs_mirror_percentage_zero_writes_no_mirror() -> Row {
    Row {
        cite: "route.go:904-914,665-670 @ 1.30.3 (MirrorPercent: an explicit 0 returns nil, no mirror policy). Eval only: the mirror is not observable by the client",
        yaml: r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: default}
spec:
  hosts: [a]
  http:
  - mirror: {host: b}
    mirrorPercentage: {value: 0}
    route: [{destination: {host: a}}]
"#,
        req: get("a:9080", "/m"),
        eval: r#"{"action":"route","mirror":[]}"#,
        envoy: None,
        native: false,
    }
}

const VS_PRESENT: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: default}
spec:
  hosts: [a]
  http:
  - match: [{headers: {x-present: {}}}]
    route: [{destination: {host: b}}]
"#;

pub fn vs_empty_header_string_match_is_present_match() -> Row {
    Row {
        cite: "route.go:1164-1170,1209-1211 @ 1.30.3 (canBeConvertedToPresentMatch: a StringMatch without a type is present_match; the regex \"*\" case is rejected earlier by validation.go:2369 @ 1.30.3)",
        yaml: VS_PRESENT,
        req: Req { method: "GET", host: "a:9080", port: 9080, path: "/p", headers: &[("x-present", "")] },
        eval: r#"{"action":"route"}"#,
        envoy: Some(Envoy { status: 200, backend: Some("b"), ..Envoy::default() }),
        native: true,
    }
}

pub fn vs_empty_header_string_match_absent_header_no_route() -> Row {
    Row {
        cite: "route.go:1209-1211 @ 1.30.3: present_match fails on an absent header; no route → 404",
        yaml: VS_PRESENT,
        req: get("a:9080", "/p"),
        eval: r#"{"action":"no_route","status":404}"#,
        envoy: Some(Envoy { status: 404, ..Envoy::default() }),
        native: true,
    }
}

const VS_WITHOUT_STAR: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: default}
spec:
  hosts: [a]
  http:
  - match: [{withoutHeaders: {end-user: {regex: "*"}}}]
    route: [{destination: {host: a}}]
    fault: {abort: {percentage: {value: 100}, httpStatus: 403}}
  - route: [{destination: {host: b}}]
"#;

pub fn vs_without_headers_regex_star_header_present() -> Row {
    Row {
        cite: "validation/virtualservice.go:149-154 @ 1.30.3 (withoutHeaders regex \"*\" allowed) + route.go:1164-1186 (present_match, inverted); routing.go:1171 @ 1.30.3 \"without headers regex convert to present_match\" / \"have end-user header and value\"",
        yaml: VS_WITHOUT_STAR,
        req: Req { method: "GET", host: "a:9080", port: 9080, path: "/w", headers: &[("end-user", "jason")] },
        eval: r#"{"action":"route","route":{"index":1}}"#,
        envoy: Some(Envoy { status: 200, backend: Some("b"), ..Envoy::default() }),
        native: true,
    }
}

pub fn vs_without_headers_regex_star_header_absent() -> Row {
    Row {
        cite: "routing.go:1171 @ 1.30.3 \"without headers regex convert to present_match\" / \"do not have end-user header\" (403 from the abort)",
        yaml: VS_WITHOUT_STAR,
        req: get("a:9080", "/w"),
        eval: r#"{"action":"abort","status":403}"#,
        envoy: Some(Envoy { status: 403, ..Envoy::default() }),
        native: true,
    }
}

pub fn vs_redirect_from_request_port_keeps_the_port() -> Row {
    Row {
        cite: "route.go:803-808 @ 1.30.3 (FROM_REQUEST_PORT: the listener port the route is built for); routing.go \"redirect port and scheme\" cases",
        yaml: r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: default}
spec:
  hosts: [a]
  http:
  - redirect: {uri: /new, authority: other.example, derivePort: FROM_REQUEST_PORT}
"#,
        req: get("a:9080", "/old"),
        eval: r#"{"action":"redirect","status":301,"location":"http://other.example:9080/new"}"#,
        envoy: Some(Envoy { status: 301, location: Some("http://other.example:9080/new"), ..Envoy::default() }),
        native: true,
    }
}

const VS_REQUEST_PORT: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: default}
spec:
  hosts: [a]
  http:
  - match: [{uri: {exact: /foo}}]
    redirect: {derivePort: FROM_REQUEST_PORT}
"#;

pub fn vs_redirect_request_port_non_default() -> Row {
    Row {
        cite: "route.go:803-808 @ 1.30.3; routing.go:586-604 @ 1.30.3 \"redirect request port\" / \"non-default\" (Host without port → the request port is added)",
        yaml: VS_REQUEST_PORT,
        req: get("a", "/foo"),
        eval: r#"{"action":"redirect","status":301,"location":"http://a:9080/foo"}"#,
        envoy: Some(Envoy { status: 301, location: Some("http://a:9080/foo"), ..Envoy::default() }),
        native: true,
    }
}

const P80: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: p80, namespace: default}
spec:
  selector: {app: p80}
  ports: [{name: http, port: 80}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: p80, namespace: default}
spec:
  hosts: [p80]
  http:
  - match: [{uri: {exact: /foo}}]
    redirect: {derivePort: FROM_REQUEST_PORT}
  - match: [{uri: {exact: /scheme}}]
    redirect: {derivePort: FROM_REQUEST_PORT, scheme: https}
"#;

pub fn vs_redirect_request_port_to_default() -> Row {
    Row {
        cite: "route.go:822-824 @ 1.30.3; routing.go:545-564 @ 1.30.3 \"redirect request port\" / \"to default\" (no :80 added). Eval only: the harness services listen on 9080",
        yaml: P80,
        req: get_on("p80", 80, "/foo"),
        eval: r#"{"action":"redirect","location":"http://p80/foo"}"#,
        envoy: None,
        native: false,
    }
}

pub fn vs_redirect_request_port_to_default_with_host_port() -> Row {
    Row {
        cite: "routing.go:566-584 @ 1.30.3 \"to default with host port\" (:80 kept: it was explicit in the Host). Eval only: the harness services listen on 9080",
        yaml: P80,
        req: get_on("p80:80", 80, "/foo"),
        eval: r#"{"action":"redirect","location":"http://p80:80/foo"}"#,
        envoy: None,
        native: false,
    }
}

pub fn vs_redirect_request_port_and_scheme() -> Row {
    Row {
        cite: "route.go:803-827 @ 1.30.3 (port 80 with https is kept); routing.go:494-525 @ 1.30.3 \"redirect port and scheme\" (https://host:80/foo). Eval only: the harness services listen on 9080",
        yaml: P80,
        req: get_on("p80", 80, "/scheme"),
        eval: r#"{"action":"redirect","location":"https://p80:80/scheme"}"#,
        envoy: None,
        native: false,
    }
}

pub fn vs_redirect_explicit_port_80_with_http_is_dropped() -> Row {
    Row {
        cite: "route.go:822-827 @ 1.30.3 (no explicit :80 with http)",
        yaml: r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: default}
spec:
  hosts: [a]
  http:
  - redirect: {authority: other.example, port: 80}
"#,
        req: get("a:9080", "/old"),
        eval: r#"{"action":"redirect","location":"http://other.example/old"}"#,
        envoy: Some(Envoy { status: 301, location: Some("http://other.example/old"), ..Envoy::default() }),
        native: true,
    }
}

pub fn vs_redirect_scheme_https_protocol_default() -> Row {
    Row {
        cite: "route.go:798-812 @ 1.30.3 (FROM_PROTOCOL_DEFAULT writes no port: Envoy's default)",
        yaml: r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: default}
spec:
  hosts: [a]
  http:
  - redirect: {authority: other.example, scheme: https, derivePort: FROM_PROTOCOL_DEFAULT}
"#,
        req: get("a:9080", "/old"),
        eval: r#"{"action":"redirect","location":"https://other.example/old"}"#,
        envoy: Some(Envoy { status: 301, location: Some("https://other.example/old"), ..Envoy::default() }),
        native: true,
    }
}

pub fn vs_subset_without_endpoints_is_503() -> Row {
    Row {
        cite: "route.go:714-718 @ 1.30.3 (the subset's cluster is used whether or not it has endpoints); Envoy answers 503 no healthy upstream",
        yaml: r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: b, namespace: default}
spec:
  host: b
  subsets: [{name: v9, labels: {version: v9}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: default}
spec:
  hosts: [a]
  http:
  - route: [{destination: {host: b, subset: v9}}]
"#,
        req: get("a:9080", "/s"),
        eval: r#"{"action":"route","destinations":[{"subset":"v9","unavailable":false}]}"#,
        envoy: Some(Envoy { status: 503, ..Envoy::default() }),
        native: true,
    }
}

const GW_REDIRECT_HOST: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: a, namespace: default}
spec:
  parentRefs: [{group: "", kind: Service, name: a}]
  rules:
  - filters: [{type: RequestRedirect, requestRedirect: {hostname: other.example}}]
"#;

pub fn gw_redirect_hostname_keeps_request_port() -> Row {
    Row {
        cite: "conversion.go:1393-1403 @ 1.30.3 (no port, no scheme: FROM_REQUEST_PORT) → route.go:803-808; Gateway API conformance httproute-redirect-port-and-scheme (/scheme-nil-and-port-nil keeps the listener port)",
        yaml: GW_REDIRECT_HOST,
        req: get("a:9080", "/r"),
        eval: r#"{"action":"redirect","status":302,"location":"http://other.example:9080/r"}"#,
        envoy: Some(Envoy { status: 302, location: Some("http://other.example:9080/r"), ..Envoy::default() }),
        native: true,
    }
}

pub fn gw_redirect_scheme_without_port_uses_protocol_default() -> Row {
    Row {
        cite: "conversion.go:1396-1399 @ 1.30.3 (scheme without port: FROM_PROTOCOL_DEFAULT); Gateway API conformance mesh-redirect-scheme (/scheme-and-host)",
        yaml: r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: a, namespace: default}
spec:
  parentRefs: [{group: "", kind: Service, name: a}]
  rules:
  - filters: [{type: RequestRedirect, requestRedirect: {scheme: https, hostname: other.example}}]
"#,
        req: get("a:9080", "/r"),
        eval: r#"{"action":"redirect","location":"https://other.example/r"}"#,
        envoy: Some(Envoy { status: 302, location: Some("https://other.example/r"), ..Envoy::default() }),
        native: true,
    }
}

pub fn gw_redirect_explicit_port() -> Row {
    Row {
        cite: "conversion.go:1393-1394 @ 1.30.3 (explicit port) → route.go:809-810; Gateway API conformance mesh-redirect-port (/port)",
        yaml: r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: a, namespace: default}
spec:
  parentRefs: [{group: "", kind: Service, name: a}]
  rules:
  - filters: [{type: RequestRedirect, requestRedirect: {port: 8083}}]
"#,
        req: get("a:9080", "/r"),
        eval: r#"{"action":"redirect","location":"http://a:8083/r"}"#,
        envoy: Some(Envoy { status: 302, location: Some("http://a:8083/r"), ..Envoy::default() }),
        native: true,
    }
}

const GW_REWRITE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: a, namespace: default}
spec:
  parentRefs: [{group: "", kind: Service, name: a}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /prefix/one}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /one}}}]
    backendRefs: [{name: b, port: 9080}]
  - matches: [{path: {type: PathPrefix, value: /strip-prefix}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]
    backendRefs: [{name: b, port: 9080}]
"#;

pub fn gw_rewrite_replace_prefix_match_segment() -> Row {
    Row {
        cite: "conversion.go:1265-1270 @ 1.30.3 + route.go:1090-1092 (path_separated_prefix) ; Gateway API conformance httproute-rewrite-path (\"/prefix/one/two\" → \"/one/two\")",
        yaml: GW_REWRITE,
        req: get("a:9080", "/prefix/one/two"),
        eval: r#"{"action":"route","path":"/one/two"}"#,
        envoy: Some(Envoy { status: 200, backend: Some("b"), path: Some("/one/two"), ..Envoy::default() }),
        native: true,
    }
}

pub fn gw_rewrite_replace_prefix_match_exact_prefix() -> Row {
    Row {
        cite: "route.go:1090-1092 @ 1.30.3 (path_separated_prefix matches the prefix itself); Gateway API HTTPPathModifier ReplacePrefixMatch (\"/prefix/one\" → \"/one\")",
        yaml: GW_REWRITE,
        req: get("a:9080", "/prefix/one"),
        eval: r#"{"action":"route","path":"/one"}"#,
        envoy: Some(Envoy { status: 200, backend: Some("b"), path: Some("/one"), ..Envoy::default() }),
        native: true,
    }
}

pub fn gw_rewrite_replace_prefix_match_not_a_segment() -> Row {
    Row {
        cite: "route.go:1090-1092 @ 1.30.3: \"/prefix/onetwo\" is not under the segment \"/prefix/one\"; no route → 404",
        yaml: GW_REWRITE,
        req: get("a:9080", "/prefix/onetwo"),
        eval: r#"{"action":"no_route","status":404}"#,
        envoy: Some(Envoy { status: 404, ..Envoy::default() }),
        native: true,
    }
}

pub fn gw_rewrite_strip_prefix_slash() -> Row {
    Row {
        cite: "conversion.go:1268-1272 @ 1.30.3 (\"/\" strips the prefix) → route.go:641-650 (regex ^prefix(/?)(.*) → /\\2); Gateway API conformance httproute-rewrite-path (\"/strip-prefix/three\" → \"/three\")",
        yaml: GW_REWRITE,
        req: get("a:9080", "/strip-prefix/three?q=1"),
        eval: r#"{"action":"route","path":"/three?q=1"}"#,
        envoy: Some(Envoy { status: 200, backend: Some("b"), path: Some("/three?q=1"), ..Envoy::default() }),
        native: true,
    }
}

pub fn gw_redirect_replace_prefix_match() -> Row {
    Row {
        cite: "conversion.go:1408-1409 @ 1.30.3 (%PREFIX()%) → route.go:788-793 (prefix_rewrite); Gateway API conformance httproute-redirect-path",
        yaml: r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: a, namespace: default}
spec:
  parentRefs: [{group: "", kind: Service, name: a}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /original-prefix}}]
    filters: [{type: RequestRedirect, requestRedirect: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /replacement-prefix}}}]
"#,
        req: get("a:9080", "/original-prefix/lemon"),
        eval: r#"{"action":"redirect","location":"http://a:9080/replacement-prefix/lemon"}"#,
        envoy: Some(Envoy { status: 302, location: Some("http://a:9080/replacement-prefix/lemon"), ..Envoy::default() }),
        native: true,
    }
}

pub fn gw_header_modifier_host_rewrites_the_authority() -> Row {
    Row {
        cite: "conversion.go:141-151 @ 1.30.3 (the modifier becomes the VirtualService's headers) → route.go:1036-1048 (host set → host_rewrite_literal)",
        yaml: r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: a, namespace: default}
spec:
  parentRefs: [{group: "", kind: Service, name: a}]
  rules:
  - filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: Host, value: gw.example}]}}]
    backendRefs: [{name: b, port: 9080}]
"#,
        req: get("a:9080", "/h"),
        eval: r#"{"action":"route","authority":"gw.example","request_headers":[]}"#,
        envoy: Some(Envoy { status: 200, backend: Some("b"), authority: Some("gw.example"), ..Envoy::default() }),
        native: true,
    }
}

pub fn gw_backend_ref_host_header_rewrites_the_authority() -> Row {
    Row {
        cite: "conversion.go:970-996 @ 1.30.3 (backendRef filters become the destination's headers) → route.go:725-734 (a single destination's host header is the host rewrite)",
        yaml: r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: a, namespace: default}
spec:
  parentRefs: [{group: "", kind: Service, name: a}]
  rules:
  - backendRefs:
    - name: b
      port: 9080
      filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: host, value: backend.example}]}}]
"#,
        req: get("a:9080", "/h"),
        eval: r#"{"action":"route","authority":"backend.example"}"#,
        envoy: Some(Envoy { status: 200, backend: Some("b"), authority: Some("backend.example"), ..Envoy::default() }),
        native: true,
    }
}

pub fn gw_header_modifier_first_duplicate_wins() -> Row {
    Row {
        cite: "conversion.go:1221-1235 @ 1.30.3 (headerListToMap: \"Subsequent entries with an equivalent header name MUST be ignored\")",
        yaml: r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: a, namespace: default}
spec:
  parentRefs: [{group: "", kind: Service, name: a}]
  rules:
  - filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-dup, value: first}, {name: X-Dup, value: second}]}}]
    backendRefs: [{name: b, port: 9080}]
"#,
        req: get("a:9080", "/h"),
        eval: r#"{"action":"route","request_headers":[{"op":"set","name":"x-dup","value":"first"}]}"#,
        envoy: Some(Envoy { status: 200, backend: Some("b"), header: Some(("x-dup", "first")), ..Envoy::default() }),
        native: true,
    }
}

const PARENT_PORT: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: m, namespace: default}
spec:
  selector: {app: m}
  ports: [{name: http, port: 9080}, {name: http-alt, port: 9081}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: m, namespace: default}
spec:
  parentRefs: [{group: "", kind: Service, name: m, port: 9081}]
  rules:
  - backendRefs: [{name: b, port: 9080}]
"#;

pub fn gw_parent_ref_port_applies_to_that_port_only() -> Row {
    Row {
        cite: "conversion.go:359-373 @ 1.30.3 (augmentPortMatch: a parentRef port becomes every match's port); another port keeps the default route, listener_waypoint.go:1143-1145. Eval only: the harness services have one port",
        yaml: PARENT_PORT,
        req: get_on("m:9080", 9080, "/p"),
        eval: r#"{"action":"route","destinations":[{"host":"m.default.svc.cluster.local"}]}"#,
        envoy: None,
        native: false,
    }
}

pub fn gw_parent_ref_port_routes_that_port() -> Row {
    Row {
        cite: "conversion.go:359-373 @ 1.30.3 (augmentPortMatch) and route.go:479-482 (a match port selects the listener port). Eval only: the harness services have one port",
        yaml: PARENT_PORT,
        req: get_on("m:9081", 9081, "/p"),
        eval: r#"{"action":"route","route":{"source":"HTTPRoute default/m"},"destinations":[{"host":"b.default.svc.cluster.local"}]}"#,
        envoy: None,
        native: false,
    }
}

const GRPC: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: a, namespace: default}
spec:
  parentRefs: [{group: "", kind: Service, name: a}]
  rules:
  - matches: [{method: {service: pkg.Exact, method: Get}}]
    backendRefs: [{name: b, port: 9080}]
  - matches: [{method: {service: pkg.Whole}}]
    backendRefs: [{name: b, port: 9080}]
  - matches: [{method: {type: RegularExpression, method: "Any.*"}}]
    backendRefs: [{name: b, port: 9080}]
"#;

const fn grpc(path: &'static str) -> Req {
    Req { method: "POST", host: "a:9080", port: 9080, path, headers: &[("content-type", "application/grpc")] }
}

pub fn grpc_route_service_and_method_exact() -> Row {
    Row {
        cite: "conversion.go:265-346,1585-1597 @ 1.30.3 (convertGRPCRoute; service + method: exact path /service/method); Gateway API conformance grpcroute-exact-method-matching",
        yaml: GRPC,
        req: grpc("/pkg.Exact/Get"),
        eval: r#"{"action":"route","route":{"source":"GRPCRoute default/a"},"destinations":[{"host":"b.default.svc.cluster.local"}]}"#,
        envoy: Some(Envoy { status: 200, backend: Some("b"), path: Some("/pkg.Exact/Get"), ..Envoy::default() }),
        native: true,
    }
}

pub fn grpc_route_other_method_no_route() -> Row {
    Row {
        cite: "conversion.go:1595-1597 @ 1.30.3: another method of the service does not match; no route → 404, which Envoy answers a gRPC client as HTTP 200, grpc-status 12 (UNIMPLEMENTED)",
        yaml: GRPC,
        req: grpc("/pkg.Exact/Put"),
        eval: r#"{"action":"no_route","status":404}"#,
        envoy: Some(Envoy { status: 200, grpc_status: Some("12"), ..Envoy::default() }),
        native: true,
    }
}

pub fn grpc_route_service_only_prefix() -> Row {
    Row {
        cite: "conversion.go:1586-1590 @ 1.30.3 (service only: prefix /service/)",
        yaml: GRPC,
        req: grpc("/pkg.Whole/Anything"),
        eval: r#"{"action":"route","destinations":[{"host":"b.default.svc.cluster.local"}]}"#,
        envoy: Some(Envoy { status: 200, backend: Some("b"), ..Envoy::default() }),
        native: true,
    }
}

pub fn grpc_route_method_only_regex() -> Row {
    Row {
        cite: "conversion.go:1604-1608 @ 1.30.3 (RegularExpression, method only: regex /[^/]+/<method>)",
        yaml: GRPC,
        req: grpc("/other.Svc/AnyThing"),
        eval: r#"{"action":"route","destinations":[{"host":"b.default.svc.cluster.local"}]}"#,
        envoy: Some(Envoy { status: 200, backend: Some("b"), ..Envoy::default() }),
        native: true,
    }
}
