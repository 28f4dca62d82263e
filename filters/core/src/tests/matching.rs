//! Route matching: every HTTPMatchRequest field, OR/AND, first-match order, index paths.

// The same tables run compiled to wasm32 (the target the filter ships in) under
// wasm-bindgen-test, so regex, hashing and arithmetic behave identically there.
use super::*;
use crate::Action;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn ci(uri: Option<wire::StringMatch>) -> wire::RouteMatch {
    wire::RouteMatch {
        uri,
        ignore_uri_case: true,
        ..Default::default()
    }
}
fn with(uri: &str, f: impl FnOnce(&mut wire::RouteMatch)) -> wire::RouteMatch {
    let mut m = m_uri(prefix(uri));
    f(&mut m);
    m
}

/// The route table every row of `MATCH_ROWS` runs against (order matters: first match wins).
fn match_table() -> CompiledPolicy {
    let r = |name: &str, m: wire::RouteMatch| {
        route(name, vec![m], &format!("outbound|9080|{name}|{HOST}"))
    };
    vs_policy(vec![
        r("exact", m_uri(exact("/exact"))),
        r("prefix", m_uri(prefix("/pre/"))),
        r("regex", m_uri(regex("/re/[0-9]+"))),
        r("ci-exact", ci(exact("/CaseExact"))),
        r("ci-prefix", ci(prefix("/CasePre/"))),
        r("method", with("/m/", |m| m.method = exact("POST"))),
        r(
            "authority",
            with("/auth/", |m| m.authority = exact("reviews.example:9080")),
        ),
        r(
            "authority-prefix",
            with("/ap/", |m| m.authority = prefix("reviews")),
        ),
        r("scheme", with("/scheme/", |m| m.scheme = exact("https"))),
        r(
            "hdr-exact",
            with("/h/", |m| m.headers = vec![hdr("x-h", exact("v"))]),
        ),
        r(
            "hdr-prefix",
            with("/hp/", |m| m.headers = vec![hdr("x-hp", prefix("ab"))]),
        ),
        r(
            "hdr-regex",
            with("/hr/", |m| m.headers = vec![hdr("x-hr", regex("[a-z]+"))]),
        ),
        r(
            "hdr-present",
            with("/hpres/", |m| m.headers = vec![hdr("x-present", None)]),
        ),
        r(
            "hdr-star",
            with("/hstar/", |m| m.headers = vec![hdr("x-star", regex("*"))]),
        ),
        r(
            "without",
            with("/wo/", |m| {
                m.without_headers = vec![hdr("x-wo", exact("bad"))]
            }),
        ),
        r(
            "without-present",
            with("/wp/", |m| m.without_headers = vec![hdr("x-wop", None)]),
        ),
        r(
            "without-regex",
            with("/wr/", |m| {
                m.without_headers = vec![hdr("x-wr", regex(".*"))]
            }),
        ),
        r(
            "query-exact",
            with("/q/", |m| m.query_params = vec![qp("q", exact("1"))]),
        ),
        r(
            "query-regex",
            with("/qr/", |m| m.query_params = vec![qp("id", regex("[0-9]+"))]),
        ),
        r(
            "query-present",
            with("/qp/", |m| m.query_params = vec![qp("debug", None)]),
        ),
        r("port", with("/port/", |m| m.port = 8080)),
        route("or", vec![m_uri(exact("/or1")), m_uri(exact("/or2"))], "c"),
        r(
            "and",
            with("/and/", |m| m.headers = vec![hdr("x-a", exact("1"))]),
        ),
        r(
            "pseudo",
            with("/pseudo/", |m| {
                m.headers = vec![hdr(":authority", exact("pseudo.example"))]
            }),
        ),
        r(
            "multi",
            with("/multi/", |m| m.headers = vec![hdr("x-m", exact("a,b"))]),
        ),
        r(
            "catchall-delete",
            wire::RouteMatch {
                method: exact("DELETE"),
                ..Default::default()
            },
        ),
    ])
}

#[derive(Clone, Copy)]
struct Row {
    why: &'static str,
    method: &'static str,
    scheme: &'static str,
    authority: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    port: u16,
    want: Option<(&'static str, usize)>,
}

const R: Row = Row {
    why: "",
    method: "GET",
    scheme: "http",
    authority: "reviews:9080",
    path: "/",
    headers: &[],
    port: 9080,
    want: None,
};

const VS: &str =
    "istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPMatchRequest";

const MATCH_ROWS: &[Row] = &[
    // --- uri exact: Envoy `path` compares the path without query, case-sensitively.
    Row {
        why: "uri.exact matches the whole path (VS HTTPMatchRequest.uri)",
        path: "/exact",
        want: Some(("exact", 0)),
        ..R
    },
    Row {
        why: "uri.exact ignores the query string (Envoy PathRouteEntryImpl strips ?query)",
        path: "/exact?x=1",
        want: Some(("exact", 0)),
        ..R
    },
    Row {
        why: "uri.exact does not match a longer path",
        path: "/exact/",
        ..R
    },
    Row {
        why: "uri.exact is case-sensitive without ignoreUriCase",
        path: "/EXACT",
        ..R
    },
    // --- uri prefix.
    Row {
        why: "uri.prefix matches paths starting with it",
        path: "/pre/x",
        want: Some(("prefix", 0)),
        ..R
    },
    Row {
        why: "uri.prefix matches the prefix itself",
        path: "/pre/",
        want: Some(("prefix", 0)),
        ..R
    },
    Row {
        why: "uri.prefix does not match a shorter path",
        path: "/pre",
        ..R
    },
    // --- uri regex: Envoy safe_regex is a full match (RE2 FullMatch) on the path without query.
    Row {
        why: "uri.regex full match",
        path: "/re/123",
        want: Some(("regex", 0)),
        ..R
    },
    Row {
        why: "uri.regex must match the whole path, not a substring",
        path: "/re/12a",
        ..R
    },
    Row {
        why: "uri.regex is matched on the path without query",
        path: "/re/123?q=a",
        want: Some(("regex", 0)),
        ..R
    },
    Row {
        why: "uri.regex is anchored at the start",
        path: "/x/re/123",
        ..R
    },
    // --- ignoreUriCase: istiod sets RouteMatch.case_sensitive = !ignoreUriCase.
    Row {
        why: "ignoreUriCase exact, lower-case request",
        path: "/caseexact",
        want: Some(("ci-exact", 0)),
        ..R
    },
    Row {
        why: "ignoreUriCase exact, upper-case request",
        path: "/CASEEXACT",
        want: Some(("ci-exact", 0)),
        ..R
    },
    Row {
        why: "ignoreUriCase prefix",
        path: "/casepre/Abc",
        want: Some(("ci-prefix", 0)),
        ..R
    },
    Row {
        why: "ignoreUriCase prefix, upper-case request",
        path: "/CASEPRE/x",
        want: Some(("ci-prefix", 0)),
        ..R
    },
    // --- method (istiod: header matcher on :method).
    Row {
        why: "method exact POST",
        method: "POST",
        path: "/m/x",
        want: Some(("method", 0)),
        ..R
    },
    Row {
        why: "method mismatch falls through to no match",
        path: "/m/x",
        ..R
    },
    // --- authority (header matcher on :authority: raw value, case-sensitive, port included).
    Row {
        why: "authority exact incl. port",
        authority: "reviews.example:9080",
        path: "/auth/",
        want: Some(("authority", 0)),
        ..R
    },
    Row {
        why: "authority exact is case-sensitive (Envoy StringMatcher without ignore_case)",
        authority: "Reviews.example:9080",
        path: "/auth/",
        ..R
    },
    Row {
        why: "authority exact compares the port too",
        authority: "reviews.example",
        path: "/auth/",
        ..R
    },
    Row {
        why: "authority prefix",
        path: "/ap/",
        want: Some(("authority-prefix", 0)),
        ..R
    },
    // --- scheme (header matcher on :scheme).
    Row {
        why: "scheme exact https",
        scheme: "https",
        path: "/scheme/",
        want: Some(("scheme", 0)),
        ..R
    },
    Row {
        why: "scheme mismatch",
        path: "/scheme/",
        ..R
    },
    // --- headers.
    Row {
        why: "header exact",
        path: "/h/",
        headers: &[("x-h", "v")],
        want: Some(("hdr-exact", 0)),
        ..R
    },
    Row {
        why: "header exact is case-sensitive on the value",
        path: "/h/",
        headers: &[("x-h", "V")],
        ..R
    },
    Row {
        why: "header match fails when the header is missing",
        path: "/h/",
        ..R
    },
    Row {
        why: "header prefix",
        path: "/hp/",
        headers: &[("x-hp", "abc")],
        want: Some(("hdr-prefix", 0)),
        ..R
    },
    Row {
        why: "header prefix mismatch",
        path: "/hp/",
        headers: &[("x-hp", "xab")],
        ..R
    },
    Row {
        why: "header regex full match",
        path: "/hr/",
        headers: &[("x-hr", "abc")],
        want: Some(("hdr-regex", 0)),
        ..R
    },
    Row {
        why: "header regex must match the whole value",
        path: "/hr/",
        headers: &[("x-hr", "abc1")],
        ..R
    },
    Row {
        why: "header without value = presence (present_match), empty value counts",
        path: "/hpres/",
        headers: &[("x-present", "")],
        want: Some(("hdr-present", 0)),
        ..R
    },
    Row {
        why: "presence fails when absent",
        path: "/hpres/",
        ..R
    },
    Row {
        why: "regex \"*\" becomes present_match (istiod canBeConvertedToPresentMatch, istio#20629)",
        path: "/hstar/",
        headers: &[("x-star", "anything")],
        want: Some(("hdr-star", 0)),
        ..R
    },
    // --- withoutHeaders: invert_match + treat_missing_header_as_empty (istiod TranslateRouteMatch).
    Row {
        why:
            "withoutHeaders: absent header is treated as \"\" which is not \"bad\" -> route matches",
        path: "/wo/",
        want: Some(("without", 0)),
        ..R
    },
    Row {
        why: "withoutHeaders: matching value excludes the route",
        path: "/wo/",
        headers: &[("x-wo", "bad")],
        ..R
    },
    Row {
        why: "withoutHeaders: other value keeps the route",
        path: "/wo/",
        headers: &[("x-wo", "good")],
        want: Some(("without", 0)),
        ..R
    },
    Row {
        why: "withoutHeaders presence: absent header -> route matches",
        path: "/wp/",
        want: Some(("without-present", 0)),
        ..R
    },
    Row {
        why: "withoutHeaders presence: present header excludes the route",
        path: "/wp/",
        headers: &[("x-wop", "1")],
        ..R
    },
    Row {
        why: "withoutHeaders regex .*: missing header is \"\" which matches .* -> excluded",
        path: "/wr/",
        ..R
    },
    // --- queryParams: Envoy parses and percent-decodes the query, first value wins.
    Row {
        why: "queryParams exact",
        path: "/q/?q=1",
        want: Some(("query-exact", 0)),
        ..R
    },
    Row {
        why: "queryParams exact mismatch",
        path: "/q/?q=2",
        ..R
    },
    Row {
        why: "queryParams: the first value of a repeated parameter is matched",
        path: "/q/?q=1&q=2",
        want: Some(("query-exact", 0)),
        ..R
    },
    Row {
        why: "queryParams: a later value does not count",
        path: "/q/?q=2&q=1",
        ..R
    },
    Row {
        why: "queryParams: names and values are percent-decoded",
        path: "/q/?%71=%31",
        want: Some(("query-exact", 0)),
        ..R
    },
    Row {
        why: "queryParams: missing parameter fails",
        path: "/q/",
        ..R
    },
    Row {
        why: "queryParams regex full match",
        path: "/qr/?id=42",
        want: Some(("query-regex", 0)),
        ..R
    },
    Row {
        why: "queryParams regex must match the whole value",
        path: "/qr/?id=4a",
        ..R
    },
    Row {
        why: "queryParams presence, no '='",
        path: "/qp/?debug",
        want: Some(("query-present", 0)),
        ..R
    },
    Row {
        why: "queryParams presence, empty value",
        path: "/qp/?a=1&debug=",
        want: Some(("query-present", 0)),
        ..R
    },
    Row {
        why: "queryParams presence needs the exact name",
        path: "/qp/?debugx=1",
        ..R
    },
    // --- port (istiod drops matches whose port differs from the listener port).
    Row {
        why: "match.port equal to destination port",
        path: "/port/",
        port: 8080,
        want: Some(("port", 0)),
        ..R
    },
    Row {
        why: "match.port different from destination port",
        path: "/port/",
        ..R
    },
    // --- OR between match[] entries, AND inside one.
    Row {
        why: "match[] entries OR: first entry",
        path: "/or1",
        want: Some(("or", 0)),
        ..R
    },
    Row {
        why: "match[] entries OR: second entry reports match index 1",
        path: "/or2",
        want: Some(("or", 1)),
        ..R
    },
    Row {
        why: "fields inside one match AND: both hold",
        path: "/and/",
        headers: &[("x-a", "1")],
        want: Some(("and", 0)),
        ..R
    },
    Row {
        why: "fields inside one match AND: one fails",
        path: "/and/",
        ..R
    },
    // --- pseudo-header names are looked up like any header in Envoy's header map.
    Row {
        why: "header named :authority matches the request authority",
        authority: "pseudo.example",
        path: "/pseudo/",
        want: Some(("pseudo", 0)),
        ..R
    },
    // --- repeated headers are joined with \",\" (Envoy HeaderUtility::getAllOfHeaderAsString).
    Row {
        why: "repeated header values joined with ','",
        path: "/multi/",
        headers: &[("x-m", "a"), ("x-m", "b")],
        want: Some(("multi", 0)),
        ..R
    },
    Row {
        why: "single value does not equal the joined form",
        path: "/multi/",
        headers: &[("x-m", "a")],
        ..R
    },
    // --- a match without uri is Envoy prefix \"/\".
    Row {
        why: "match without uri matches any path (istiod emits prefix \"/\")",
        method: "DELETE",
        path: "/anything/at/all",
        want: Some(("catchall-delete", 0)),
        ..R
    },
    Row {
        why: "nothing matches -> 404 (VirtualService)",
        path: "/nothing",
        ..R
    },
];

#[test]
fn match_table_rows() {
    let cp = match_table();
    let mut failures = Vec::new();
    for row in MATCH_ROWS {
        let mut req = rv(row.path, row.headers);
        req.method = row.method;
        req.scheme = row.scheme;
        req.authority = row.authority;
        req.destination.port = row.port;
        let d = cp.decide(&req);
        let got = d.route.map(|r| {
            (
                r.origin.map(|o| o.element_name.as_str()).unwrap_or(""),
                r.match_index.unwrap_or(0),
            )
        });
        let want = row.want;
        let ok = match (got, want) {
            (Some(g), Some(w)) => g == w && d.action == Action::Forward,
            (None, None) => d.action == Action::NoRoute && d.status == Some(404),
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "{} [{}]: got {got:?} / {:?}, want {want:?}",
                row.why, row.path, d.action
            ));
        }
    }
    assert!(failures.is_empty(), "{VS}\n{}", failures.join("\n"));
    assert!(MATCH_ROWS.len() >= 60);
}

fn names(cp: &CompiledPolicy, path: &str) -> Option<String> {
    let d = cp.decide(&rv(path, &[]));
    d.route
        .and_then(|r| r.origin)
        .map(|o| o.element_name.clone())
}

// Envoy walks routes in order and takes the first match; istiod keeps VirtualService http[]
// order and the compiler keeps Gateway API precedence order. The index must not reorder.
#[test]
fn first_match_wins_across_index_buckets() {
    let cp = vs_policy(vec![
        route("A", vec![m_uri(prefix("/a"))], "a"),
        route("B", vec![m_uri(exact("/a/b"))], "b"),
        route("C", vec![m_uri(regex("/a/.*"))], "c"),
        route("D", vec![], "d"),
    ]);
    let rows: &[(&str, &str, &str)] = &[
        ("earlier prefix beats later exact", "/a/b", "A"),
        ("earlier prefix beats later regex", "/a/zzz", "A"),
        ("route without matches catches the rest", "/x", "D"),
    ];
    for (why, path, want) in rows {
        assert_eq!(names(&cp, path).as_deref(), Some(*want), "{why}");
    }
}

#[test]
fn first_match_regex_before_exact_and_prefix() {
    let cp = vs_policy(vec![
        route("R", vec![m_uri(regex("/r/[a-z]+"))], "r"),
        route("E", vec![m_uri(exact("/r/abc"))], "e"),
        route("P", vec![m_uri(prefix("/r"))], "p"),
    ]);
    // istio.io/latest/docs/concepts/traffic-management/#routing-rule-precedence: first rule wins.
    assert_eq!(names(&cp, "/r/abc").as_deref(), Some("R"));
    assert_eq!(names(&cp, "/r/123").as_deref(), Some("P"));
}

// ignoreUriCase routes live in their own lower-cased index; Envoy's first-match order across
// case-sensitive and case-insensitive routes must still hold (RouteMatch.case_sensitive).
#[test]
fn first_match_case_insensitive_bucket_keeps_order() {
    let cp = vs_policy(vec![
        route("CI", vec![ci(prefix("/Z"))], "ci"),
        route("EX", vec![m_uri(exact("/z/1"))], "ex"),
    ]);
    assert_eq!(names(&cp, "/z/1").as_deref(), Some("CI"));
}

// Envoy safe_regex routes are full matches tested in route order; many regexes without a
// literal prefix are tested in one RegexSet pass, which must not change first-match results.
#[test]
fn unanchored_regexes_through_regex_set_keep_order() {
    // More than the per-entry threshold of regexes without a literal prefix: RegexSet path.
    let mut routes: Vec<wire::HttpRoute> = (0..20)
        .map(|i| {
            route(
                &format!("ext{i}"),
                vec![m_uri(regex(&format!(".*\\.ext{i}")))],
                "c",
            )
        })
        .collect();
    routes.insert(5, route("EXACT", vec![m_uri(exact("/img/a.ext9"))], "e"));
    routes.push(route("LAST", vec![m_uri(prefix("/"))], "l"));
    let cp = vs_policy(routes);
    assert_eq!(names(&cp, "/img/a.ext3").as_deref(), Some("ext3"));
    assert_eq!(
        names(&cp, "/img/a.ext9").as_deref(),
        Some("EXACT"),
        "exact at index 5 precedes regex ext9"
    );
    assert_eq!(
        names(&cp, "/img/a.ext19").as_deref(),
        Some("ext19"),
        ".*\\.ext1 must not match ext19 (full match)"
    );
    assert_eq!(names(&cp, "/img/a.png").as_deref(), Some("LAST"));
}

// Regex routes are bucketed by their literal prefix; that must never hide a route Envoy's
// RE2 full match would select (optional characters, alternations, flags).
#[test]
fn regex_with_literal_prefix_and_optional_char() {
    // "/ab?c" must not be indexed under "/ab": the 'b' is optional.
    let cp = vs_policy(vec![route("OPT", vec![m_uri(regex("/ab?c"))], "o")]);
    assert_eq!(names(&cp, "/ac").as_deref(), Some("OPT"));
    assert_eq!(names(&cp, "/abc").as_deref(), Some("OPT"));
    assert_eq!(crate::index::regex_literal_prefix("/ab?c"), "/a");
    assert_eq!(crate::index::regex_literal_prefix("/a|/b"), "");
    assert_eq!(crate::index::regex_literal_prefix("(?i)/abc"), "");
    assert_eq!(crate::index::regex_literal_prefix("/v1\\.0/x+"), "/v1.0/x");
}

// Gateway API PathPrefix: istiod emits path_separated_prefix (trailing "/" trimmed) for
// HTTPRoute-derived routes (TranslateRouteMatch, UseGatewaySemantics).
#[test]
fn gateway_path_prefix_is_segment_based() {
    let routes = vec![
        route("sep", vec![m_uri(prefix("/foo"))], "s"),
        route("slash", vec![m_uri(prefix("/bar/"))], "b"),
        route("root", vec![m_uri(prefix("/"))], "r"),
    ];
    let cp = CompiledPolicy::compile(&policy(vec![service(
        HOST,
        wire::RouteSource::HttpRoute,
        routes.clone(),
    )]))
    .unwrap();
    let rows: &[(&str, &str)] = &[
        ("/foo", "sep"),
        ("/foo/bar", "sep"),
        ("/foobar", "root"),
        ("/bar", "slash"),
        ("/bar/x", "slash"),
        ("/barx", "root"),
    ];
    for (path, want) in rows {
        assert_eq!(names(&cp, path).as_deref(), Some(*want), "gateway {path}");
    }
    // The same routes as a VirtualService use plain string prefixes.
    let vs = vs_policy(routes);
    assert_eq!(names(&vs, "/foobar").as_deref(), Some("sep"));
    assert_eq!(names(&vs, "/bar").as_deref(), Some("root"));
}

#[test]
fn no_match_in_http_route_is_404() {
    // gateway-api.sigs.k8s.io: a request matching no rule gets 404.
    let cp = CompiledPolicy::compile(&policy(vec![service(
        HOST,
        wire::RouteSource::HttpRoute,
        vec![route("x", vec![m_uri(exact("/x"))], "c")],
    )]))
    .unwrap();
    let d = cp.decide(&rv("/y", &[]));
    assert_eq!(
        (d.action, d.status, d.reason),
        (Action::NoRoute, Some(404), "route_not_found")
    );
}

// Envoy evaluates a virtual host's routes linearly, first match wins
// (envoyproxy.io/docs/envoy/latest/intro/arch_overview/http/http_routing): the index must agree
// with that walk on a large mixed table.
#[test]
fn many_routes_index_agrees_with_linear_scan() {
    // 600 mixed routes; every request must land where a linear first-match walk lands.
    let mut routes = Vec::new();
    for i in 0..600 {
        let m = match i % 4 {
            0 => m_uri(exact(&format!("/svc{}/item", i % 50))),
            1 => m_uri(prefix(&format!("/svc{}/", i % 40))),
            2 => m_uri(regex(&format!("/svc{}/[0-9]+", i % 30))),
            _ => with(&format!("/svc{}", i % 20), |m| {
                m.headers = vec![hdr("x-v", exact(&format!("{}", i % 3)))]
            }),
        };
        routes.push(route(&format!("r{i}"), vec![m], "c"));
    }
    let cp = vs_policy(routes.clone());
    let compiled: Vec<Option<regex::Regex>> = routes
        .iter()
        .map(
            |r| match r.matches[0].uri.as_ref().and_then(|u| u.kind.as_ref()) {
                Some(Kind::Regex(x)) => Some(regex::Regex::new(&format!("^(?:{x})$")).unwrap()),
                _ => None,
            },
        )
        .collect();
    let linear = |path: &str, hv: &str| -> Option<String> {
        let hs = [("x-v", hv)];
        let req = rv(path, &hs);
        for (r, re) in routes.iter().zip(&compiled) {
            let m = &r.matches[0];
            let pm = match m.uri.as_ref().and_then(|u| u.kind.as_ref()) {
                Some(Kind::Exact(e)) => path == e,
                Some(Kind::Prefix(p)) => path.starts_with(p.as_str()),
                Some(Kind::Regex(_)) => re.as_ref().is_some_and(|re| re.is_match(path)),
                None => true,
            };
            let hm =
                m.headers
                    .iter()
                    .all(|h| match h.value.as_ref().and_then(|v| v.kind.as_ref()) {
                        Some(Kind::Exact(e)) => req.header_values("x-v").next() == Some(e.as_str()),
                        _ => true,
                    });
            if pm && hm {
                return r.origin.as_ref().map(|o| o.element_name.clone());
            }
        }
        None
    };
    for i in 0..200 {
        for path in [
            format!("/svc{}/item", i % 60),
            format!("/svc{}/{}", i % 45, i),
            format!("/svc{}", i % 25),
            format!("/svc{}/x", i % 33),
        ] {
            for hv in ["0", "1", "2"] {
                let hs = [("x-v", hv)];
                let got = cp
                    .decide(&rv(&path, &hs))
                    .route
                    .and_then(|r| r.origin)
                    .map(|o| o.element_name.clone());
                assert_eq!(got, linear(&path, hv), "{path} x-v={hv}");
            }
        }
    }
}
