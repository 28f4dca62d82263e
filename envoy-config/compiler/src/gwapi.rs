//! Gateway API HTTPRoutes attached to Services (GAMMA) → per-service route tables.
//!
//! Each (rule, match) becomes one `HttpRoute`, ordered by Gateway API precedence (HTTPRouteRule
//! docs; istiod `pilot/pkg/config/kube/gateway` `sortHTTPRoutes`): exact path > longest prefix /
//! regex > method > most header matches > most query matches; ties keep the oldest route
//! (creationTimestamp), then namespace/name alphabetical, then rule and match order.

use crate::diag::ObjRef;
use crate::model::{HrHeaderModifier, HrHeaderValue, HrMatch, HrRule, HttpRouteSpec, VsRetries};
use crate::object::{Object, ObjectKind};
use crate::resolve::{convert_retry, resolve_dest, Ctx};
use crate::util::{normalize_weights, parse_duration_ms, validate_header_name, validate_regex};
use layover_proto::v1 as pb;
use std::collections::HashMap;

struct Entry {
    /// (path rank, path length, has method, headers, query params)
    key: (u8, usize, bool, usize, usize),
    ts: String,
    ns: String,
    name: String,
    rule: usize,
    m: usize,
    route: pb::HttpRoute,
}

pub(crate) fn compile_http_routes(ctx: &mut Ctx) -> HashMap<String, Vec<pb::HttpRoute>> {
    let bundle = ctx.bundle;
    let mut per_svc: HashMap<String, Vec<Entry>> = HashMap::new();
    for o in &bundle.objects {
        let ObjectKind::HttpRoute(d) = &o.kind else {
            continue;
        };
        if d.spec.parent_refs.is_empty() {
            ctx.info(&o.at, "spec.parentRefs", "skipped: no parentRefs");
        }
        // Validate the route once even when no parent is served, so errors always surface.
        let mut compiled_for_some = false;
        for (pi, pr) in d.spec.parent_refs.iter().enumerate() {
            let pp = format!("spec.parentRefs[{pi}]");
            let group = pr.group.as_deref().unwrap_or("gateway.networking.k8s.io");
            let kind = pr.kind.as_deref().unwrap_or("Gateway");
            let pns = pr
                .namespace
                .clone()
                .unwrap_or_else(|| o.at.namespace.clone());
            if kind == "Gateway" && group == "gateway.networking.k8s.io" {
                let msg = if ctx
                    .waypoint
                    .as_ref()
                    .is_some_and(|(n, m)| *n == pns && *m == pr.name)
                {
                    format!("skipped: parentRef is the waypoint Gateway {pns}/{} itself; attach GAMMA routes to a Service instead", pr.name)
                } else {
                    format!("skipped: parentRef is Gateway {pns}/{} (ingress); only routes attached to Services (GAMMA) apply to a waypoint", pr.name)
                };
                ctx.info(&o.at, &pp, msg);
                continue;
            }
            // GAMMA parents: a Service, or (Istio) a ServiceEntry, meaning all of its hosts.
            let targets: Vec<usize> = if kind == "Service" && (group.is_empty() || group == "core")
            {
                let host = format!("{}.{pns}.svc.cluster.local", pr.name);
                match ctx.by_host.get(&host) {
                    Some(&i) => vec![i],
                    None => {
                        ctx.warn(
                            &o.at,
                            &pp,
                            format!(
                                "parent Service {pns}/{} is not in the input; route skipped",
                                pr.name
                            ),
                        );
                        continue;
                    }
                }
            } else if kind == "ServiceEntry" && group == "networking.istio.io" {
                let key = format!("{pns}/{}", pr.name);
                let v: Vec<usize> = ctx
                    .services
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.se_name.as_deref() == Some(key.as_str()))
                    .map(|(i, _)| i)
                    .collect();
                if v.is_empty() {
                    ctx.warn(
                        &o.at,
                        &pp,
                        format!("parent ServiceEntry {key} is not in the input; route skipped"),
                    );
                    continue;
                }
                v
            } else {
                ctx.info(
                    &o.at,
                    &pp,
                    format!("skipped: parentRef kind {kind} (group {group:?}) is not supported; use a Service or ServiceEntry"),
                );
                continue;
            };
            for idx in targets {
                let host = ctx.services[idx].hostname.clone();
                if !ctx.served[idx] {
                    ctx.info(
                        &o.at,
                        &pp,
                        format!(
                            "skipped: {host} ({kind} {pns}/{}) is not served by this waypoint",
                            pr.name
                        ),
                    );
                    continue;
                }
                let svc_ns = ctx.services[idx].namespace.clone();
                if o.at.namespace != svc_ns && ctx.waypoint_ns() != Some(o.at.namespace.as_str()) {
                    ctx.info(
                        &o.at,
                        &pp,
                        format!("skipped: consumer route (namespace {} ≠ {kind} namespace {svc_ns}) applies to clients' sidecars, not to the waypoint", o.at.namespace),
                    );
                    continue;
                }
                if let Some(p) = pr.port {
                    if !ctx.services[idx].ports.iter().any(|sp| sp.number == p) {
                        ctx.warn(
                            &o.at,
                            format!("{pp}.port"),
                            format!("port {p} is not a port of {host}; route skipped"),
                        );
                        continue;
                    }
                }
                if !d.spec.hostnames.is_empty() {
                    ctx.info(
                        &o.at,
                        "spec.hostnames",
                        "hostnames are ignored for routes attached to a Service (GAMMA)",
                    );
                }
                compiled_for_some = true;
                let entries = translate_route(ctx, o, &d.spec, pr.port);
                per_svc.entry(host).or_default().extend(entries);
            }
        }
        if !compiled_for_some {
            let n = ctx.notices.len();
            let _ = translate_route(ctx, o, &d.spec, None);
            ctx.notices.truncate(n);
        }
    }
    let mut out = HashMap::new();
    for (host, mut entries) in per_svc {
        entries.sort_by(|a, b| {
            b.key
                .cmp(&a.key)
                .then_with(|| a.ts.cmp(&b.ts))
                .then_with(|| a.ns.cmp(&b.ns))
                .then_with(|| a.name.cmp(&b.name))
                .then_with(|| a.rule.cmp(&b.rule))
                .then_with(|| a.m.cmp(&b.m))
        });
        out.insert(host, entries.into_iter().map(|e| e.route).collect());
    }
    out
}

fn exact(s: &str) -> pb::StringMatch {
    pb::StringMatch {
        kind: Some(pb::string_match::Kind::Exact(s.to_string())),
    }
}
fn prefix(s: &str) -> pb::StringMatch {
    pb::StringMatch {
        kind: Some(pb::string_match::Kind::Prefix(s.to_string())),
    }
}
fn regex(s: &str) -> pb::StringMatch {
    pb::StringMatch {
        kind: Some(pb::string_match::Kind::Regex(s.to_string())),
    }
}

fn header_mod(h: &HrHeaderModifier) -> pb::HeaderOperations {
    let hv = |v: &Vec<HrHeaderValue>| {
        v.iter()
            .map(|x| pb::HeaderValue {
                name: x.name.to_ascii_lowercase(),
                value: x.value.clone(),
            })
            .collect()
    };
    pb::HeaderOperations {
        set: hv(&h.set),
        add: hv(&h.add),
        remove: h.remove.iter().map(|r| r.to_ascii_lowercase()).collect(),
    }
}

fn merge_ops(into: &mut Option<pb::HeaderOperations>, add: pb::HeaderOperations) {
    let t = into.get_or_insert_with(Default::default);
    t.set.extend(add.set);
    t.add.extend(add.add);
    t.remove.extend(add.remove);
}

/// The path part of a match: (kind, value). Gateway API default: PathPrefix "/".
enum PathKind {
    Exact(String),
    Prefix(String),
    Regex(String),
}

fn translate_route(
    ctx: &mut Ctx,
    o: &Object,
    spec: &HttpRouteSpec,
    parent_port: Option<u32>,
) -> Vec<Entry> {
    let at = &o.at;
    let ns = at.namespace.clone();
    let ts = o.meta().creation_timestamp.clone().unwrap_or_default();
    let mut out = Vec::new();
    for (ri, rule) in spec.rules.iter().enumerate() {
        let rp = format!("spec.rules[{ri}]");
        // CRD default: a rule without matches has one match, PathPrefix "/".
        let default_match = vec![HrMatch::default()];
        let matches = match &rule.matches {
            Some(m) if !m.is_empty() => m,
            _ => &default_match,
        };
        let base = rule_action(ctx, at, &rp, &ns, rule, parent_port);
        for (mi, m) in matches.iter().enumerate() {
            let mp = format!("{rp}.matches[{mi}]");
            let path = match &m.path {
                None => PathKind::Prefix("/".into()),
                Some(p) => {
                    let v = p.value.clone().unwrap_or_else(|| "/".into());
                    match p.type_.as_deref().unwrap_or("PathPrefix") {
                        "Exact" => PathKind::Exact(v),
                        "PathPrefix" => PathKind::Prefix(v),
                        "RegularExpression" => {
                            if let Err(e) = validate_regex(&v) {
                                ctx.err(at, format!("{mp}.path.value"), e);
                            }
                            PathKind::Regex(v)
                        }
                        t => {
                            ctx.err(
                                at,
                                format!("{mp}.path.type"),
                                format!("unknown path match type {t:?} (Exact, PathPrefix, RegularExpression)"),
                            );
                            PathKind::Prefix(v)
                        }
                    }
                }
            };
            if let PathKind::Exact(v) | PathKind::Prefix(v) = &path {
                if !v.starts_with('/') {
                    ctx.err(at, format!("{mp}.path.value"), "path must start with \"/\"");
                }
            }
            let mut headers = Vec::new();
            for (hi, h) in m.headers.iter().enumerate() {
                if let Err(e) = validate_header_name(&h.name) {
                    ctx.err(at, format!("{mp}.headers[{hi}].name"), e);
                }
                let value = match h.type_.as_deref().unwrap_or("Exact") {
                    "Exact" => exact(&h.value),
                    "RegularExpression" => {
                        if let Err(e) = validate_regex(&h.value) {
                            ctx.err(at, format!("{mp}.headers[{hi}].value"), e);
                        }
                        regex(&h.value)
                    }
                    t => {
                        ctx.err(
                            at,
                            format!("{mp}.headers[{hi}].type"),
                            format!("unknown header match type {t:?} (Exact, RegularExpression)"),
                        );
                        exact(&h.value)
                    }
                };
                headers.push(pb::HeaderMatch {
                    name: h.name.to_ascii_lowercase(),
                    value: Some(value),
                });
            }
            let mut query = Vec::new();
            for (qi, q) in m.query_params.iter().enumerate() {
                let value = match q.type_.as_deref().unwrap_or("Exact") {
                    "Exact" => exact(&q.value),
                    "RegularExpression" => {
                        if let Err(e) = validate_regex(&q.value) {
                            ctx.err(at, format!("{mp}.queryParams[{qi}].value"), e);
                        }
                        regex(&q.value)
                    }
                    t => {
                        ctx.err(
                            at,
                            format!("{mp}.queryParams[{qi}].type"),
                            format!(
                                "unknown query param match type {t:?} (Exact, RegularExpression)"
                            ),
                        );
                        exact(&q.value)
                    }
                };
                query.push(pb::QueryParamMatch {
                    name: q.name.clone(),
                    value: Some(value),
                });
            }
            let key = (
                match &path {
                    PathKind::Exact(_) => 3,
                    PathKind::Prefix(_) => 2,
                    PathKind::Regex(_) => 1,
                },
                match &path {
                    PathKind::Exact(v) | PathKind::Prefix(v) | PathKind::Regex(v) => v.len(),
                },
                m.method.is_some(),
                headers.len(),
                query.len(),
            );
            let mk = |uri: pb::StringMatch| pb::RouteMatch {
                uri: Some(uri),
                method: m.method.as_deref().map(exact),
                headers: headers.clone(),
                query_params: query.clone(),
                port: parent_port.unwrap_or(0),
                ..Default::default()
            };
            // PathPrefix is element-wise ("/foo" matches "/foo" and "/foo/x", not "/foobar"),
            // which istiod gets from Envoy's path_separated_prefix. StringMatch has plain
            // prefixes only, so "/foo" becomes two alternatives: exact "/foo", prefix "/foo/".
            // A ReplacePrefixMatch rewrite needs each alternative as its own route, with the
            // replacement adjusted for the trailing "/".
            let variants: Vec<(pb::RouteMatch, Option<String>)> = match &path {
                PathKind::Exact(v) => vec![(mk(exact(v)), None)],
                PathKind::Regex(v) => vec![(mk(regex(v)), None)],
                PathKind::Prefix(v) => {
                    let t = v.trim_end_matches('/');
                    if t.is_empty() {
                        vec![(mk(prefix("/")), Some("/".into()))]
                    } else {
                        vec![
                            (mk(exact(t)), None),
                            (mk(prefix(&format!("{t}/"))), Some("/".into())),
                        ]
                    }
                }
            };
            let prefix_rewrite = base.prefix_replacement.is_some();
            let mut routes: Vec<pb::HttpRoute> = Vec::new();
            if prefix_rewrite && !matches!(path, PathKind::Prefix(_)) {
                ctx.err(
                    at,
                    format!("{rp}.filters"),
                    "ReplacePrefixMatch requires a PathPrefix match",
                );
            }
            if prefix_rewrite {
                for (rm, slash) in variants {
                    let mut r = base.route.clone();
                    let repl = base.prefix_replacement.clone().unwrap_or_default();
                    let repl = match slash {
                        // The matched prefix ends in "/": keep one "/" after the replacement.
                        Some(_) => format!("{}/", repl.trim_end_matches('/')),
                        None => repl,
                    };
                    apply_prefix_replacement(&mut r, &repl);
                    r.matches = vec![rm];
                    routes.push(r);
                }
            } else {
                let mut r = base.route.clone();
                r.matches = variants.into_iter().map(|(m, _)| m).collect();
                routes.push(r);
            }
            for mut r in routes {
                if let Some(og) = r.origin.as_mut() {
                    og.match_index = mi as u32;
                }
                out.push(Entry {
                    key,
                    ts: ts.clone(),
                    ns: ns.clone(),
                    name: at.name.clone(),
                    rule: ri,
                    m: mi,
                    route: r,
                });
            }
        }
    }
    out
}

fn apply_prefix_replacement(r: &mut pb::HttpRoute, repl: &str) {
    match r.action.as_mut() {
        Some(pb::http_route::Action::Redirect(rd)) => {
            rd.uri = repl.to_string();
            rd.replace_prefix = true;
        }
        _ => {
            let rw = r.rewrite.get_or_insert_with(Default::default);
            rw.uri = repl.to_string();
            rw.has_uri = true;
        }
    }
}

struct RuleAction {
    route: pb::HttpRoute,
    /// ReplacePrefixMatch value of a URLRewrite / RequestRedirect filter.
    prefix_replacement: Option<String>,
}

/// istiod buildDestination: Service names (not hostnames), or Istio `Hostname` backends.
fn backend_host(
    ns: &str,
    group: Option<&str>,
    kind: Option<&str>,
    name: &str,
    bns: Option<&str>,
) -> Result<String, String> {
    let group = group.unwrap_or("");
    let kind = kind.unwrap_or("Service");
    match (group, kind) {
        ("" | "core", "Service") => {
            if name.contains('.') {
                return Err(
                    "service name invalid; the name of the Service must be used, not the hostname"
                        .into(),
                );
            }
            Ok(format!("{name}.{}.svc.cluster.local", bns.unwrap_or(ns)))
        }
        ("networking.istio.io", "Hostname") => {
            if bns.is_some() {
                return Err("namespace may not be set with Hostname type".into());
            }
            Ok(name.to_string())
        }
        _ => Err(format!(
            "backend kind {kind} (group {group:?}) is not supported; use a Service"
        )),
    }
}

fn rule_action(
    ctx: &mut Ctx,
    at: &ObjRef,
    rp: &str,
    ns: &str,
    rule: &HrRule,
    parent_port: Option<u32>,
) -> RuleAction {
    let mut r = pb::HttpRoute {
        origin: Some(pb::Origin {
            kind: "HTTPRoute".into(),
            namespace: ns.to_string(),
            name: at.name.clone(),
            index: 0,
            match_index: 0,
            element_name: rule.name.clone().unwrap_or_default(),
        }),
        ..Default::default()
    };
    if let Some(og) = r.origin.as_mut() {
        og.index = rp
            .trim_start_matches("spec.rules[")
            .trim_end_matches(']')
            .parse()
            .unwrap_or(0);
    }
    let mut prefix_replacement = None;
    let mut redirect = None;
    for (fi, f) in rule.filters.iter().enumerate() {
        let fp = format!("{rp}.filters[{fi}]");
        match f.type_.as_str() {
            "RequestHeaderModifier" => match &f.request_header_modifier {
                Some(h) => merge_ops(&mut r.request_headers, header_mod(h)),
                None => ctx.err(
                    at,
                    format!("{fp}.requestHeaderModifier"),
                    "required for type RequestHeaderModifier",
                ),
            },
            "ResponseHeaderModifier" => match &f.response_header_modifier {
                Some(h) => merge_ops(&mut r.response_headers, header_mod(h)),
                None => ctx.err(
                    at,
                    format!("{fp}.responseHeaderModifier"),
                    "required for type ResponseHeaderModifier",
                ),
            },
            "RequestRedirect" => match &f.request_redirect {
                Some(rd) => {
                    let status = rd.status_code.unwrap_or(302);
                    if ![301, 302, 303, 307, 308].contains(&status) {
                        ctx.err(
                            at,
                            format!("{fp}.requestRedirect.statusCode"),
                            format!("status {status} is not one of 301, 302, 303, 307, 308"),
                        );
                    }
                    let mut out = pb::Redirect {
                        authority: rd.hostname.clone().unwrap_or_default(),
                        port: rd.port.unwrap_or(0),
                        // Gateway API: with a scheme and no port, the scheme's well-known port.
                        port_from_scheme: rd.scheme.is_some() && rd.port.is_none(),
                        scheme: rd.scheme.clone().unwrap_or_default(),
                        status,
                        ..Default::default()
                    };
                    if let Some(p) = &rd.path {
                        match p.type_.as_str() {
                            "ReplaceFullPath" => {
                                out.uri = p.replace_full_path.clone().unwrap_or_default()
                            }
                            "ReplacePrefixMatch" => {
                                prefix_replacement =
                                    Some(p.replace_prefix_match.clone().unwrap_or_default())
                            }
                            t => ctx.err(
                                at,
                                format!("{fp}.requestRedirect.path.type"),
                                format!("unknown path modifier {t:?}"),
                            ),
                        }
                    }
                    redirect = Some(out);
                }
                None => ctx.err(
                    at,
                    format!("{fp}.requestRedirect"),
                    "required for type RequestRedirect",
                ),
            },
            "URLRewrite" => match &f.url_rewrite {
                Some(u) => {
                    let rw = r.rewrite.get_or_insert_with(Default::default);
                    rw.authority = u.hostname.clone().unwrap_or_default();
                    if let Some(p) = &u.path {
                        match p.type_.as_str() {
                            "ReplaceFullPath" => {
                                rw.full_path = p.replace_full_path.clone().unwrap_or_default();
                                rw.has_full_path = true;
                            }
                            "ReplacePrefixMatch" => {
                                prefix_replacement =
                                    Some(p.replace_prefix_match.clone().unwrap_or_default())
                            }
                            t => ctx.err(
                                at,
                                format!("{fp}.urlRewrite.path.type"),
                                format!("unknown path modifier {t:?}"),
                            ),
                        }
                    }
                }
                None => ctx.err(
                    at,
                    format!("{fp}.urlRewrite"),
                    "required for type URLRewrite",
                ),
            },
            "RequestMirror" => {
                match &f.request_mirror {
                    Some(m) => {
                        let mp = format!("{fp}.requestMirror.backendRef");
                        let b = &m.backend_ref;
                        if b.port.is_none() {
                            ctx.err(at, format!("{mp}.port"), "port is required in backendRef");
                        }
                        match backend_host(
                            ns,
                            b.group.as_deref(),
                            b.kind.as_deref(),
                            &b.name,
                            b.namespace.as_deref(),
                        ) {
                            Ok(host) => {
                                let d = resolve_dest(ctx, at, &mp, &host, "", b.port, parent_port);
                                let pct = match (&m.fraction, m.percent) {
                                    (Some(fr), _) => {
                                        let den = fr.denominator.unwrap_or(100);
                                        if den == 0 || fr.numerator > den {
                                            ctx.err(at, format!("{fp}.requestMirror.fraction"), "numerator must be ≤ denominator and denominator > 0");
                                            100.0
                                        } else {
                                            f64::from(fr.numerator) * 100.0 / f64::from(den)
                                        }
                                    }
                                    (None, Some(p)) => f64::from(p.min(100)),
                                    (None, None) => 100.0,
                                };
                                r.mirrors.push(pb::Mirror {
                                    cluster: d.cluster,
                                    host: d.host,
                                    port: d.port,
                                    subset: String::new(),
                                    percentage: pct,
                                });
                            }
                            Err(e) => ctx.err(at, mp, e),
                        }
                    }
                    None => ctx.err(
                        at,
                        format!("{fp}.requestMirror"),
                        "required for type RequestMirror",
                    ),
                }
            }
            "ExtensionRef" => ctx.err(
                at,
                format!("{fp}.extensionRef"),
                "ExtensionRef filters are not supported",
            ),
            "CORS" => match &f.cors {
                // istiod createCorsFilter: origins as exact matches, credentials only when true.
                Some(c) => {
                    r.cors = Some(pb::CorsPolicy {
                        allow_origins: c
                            .allow_origins
                            .iter()
                            .filter(|o| !o.is_empty())
                            .map(|o| exact(o))
                            .collect(),
                        allow_methods: c.allow_methods.clone(),
                        allow_headers: c.allow_headers.clone(),
                        expose_headers: c.expose_headers.clone(),
                        max_age_seconds: c.max_age.unwrap_or(0),
                        allow_credentials: if c.allow_credentials == Some(true) {
                            pb::OptionalBool::True
                        } else {
                            pb::OptionalBool::Unset
                        } as i32,
                        unmatched_preflights_forward: true,
                    });
                }
                None => ctx.err(at, format!("{fp}.cors"), "required for type CORS"),
            },
            "ExternalAuth" => ctx.err(
                at,
                format!("{fp}.externalAuth"),
                "the ExternalAuth filter is not supported yet",
            ),
            t => ctx.err(
                at,
                format!("{fp}.type"),
                format!("unknown filter type {t:?}"),
            ),
        }
    }
    if let Some(rt) = &rule.retry {
        // istiod convertHTTPRoute: connection errors are always retried, plus the listed
        // codes; attempts default to 2 (Istio's default retry count).
        let mut on = String::from("connect-failure,refused-stream,unavailable,cancelled");
        for c in &rt.codes {
            on.push_str(&format!(",{c}"));
        }
        let attempts = rt.attempts.unwrap_or(2);
        let spec = VsRetries {
            attempts: i64::from(attempts),
            per_try_timeout: None,
            retry_on: if attempts == 0 { None } else { Some(on) },
            retry_remote_localities: None,
            retry_ignore_previous_hosts: None,
            backoff: rt.backoff.clone(),
        };
        r.retries = convert_retry(ctx, at, &format!("{rp}.retry"), &spec);
    }
    if let Some(t) = &rule.timeouts {
        if let Some(req) = &t.request {
            match parse_duration_ms(req) {
                Ok(ms) => r.timeout_ms = ms,
                Err(e) => ctx.err(at, format!("{rp}.timeouts.request"), e),
            }
        }
        if let Some(b) = &t.backend_request {
            match parse_duration_ms(b) {
                // istiod convertHTTPRoute: with a retry stanza backendRequest is the per-try
                // timeout; without one it replaces the route timeout.
                Ok(ms) if ms > 0 => match r.retries.as_mut() {
                    Some(rt) if rt.attempts > 0 => rt.per_try_timeout_ms = ms,
                    _ => r.timeout_ms = ms,
                },
                Ok(_) => {}
                Err(e) => ctx.err(at, format!("{rp}.timeouts.backendRequest"), e),
            }
        }
    }
    if rule.session_persistence.is_some() {
        ctx.err(
            at,
            format!("{rp}.sessionPersistence"),
            "sessionPersistence is not supported yet",
        );
    }
    if let Some(rd) = redirect {
        if !rule.backend_refs.is_empty() {
            ctx.info(
                at,
                format!("{rp}.backendRefs"),
                "ignored: the rule redirects",
            );
        }
        r.action = Some(pb::http_route::Action::Redirect(rd));
        return RuleAction {
            route: r,
            prefix_replacement,
        };
    }
    let mut dests = Vec::new();
    let mut weights = Vec::new();
    for (bi, b) in rule.backend_refs.iter().enumerate() {
        let bp = format!("{rp}.backendRefs[{bi}]");
        // CRD default weight 1.
        let w = b.weight.unwrap_or(1);
        if !(0..=1_000_000).contains(&w) {
            ctx.err(
                at,
                format!("{bp}.weight"),
                format!("weight {w} is outside 0..1000000"),
            );
            continue;
        }
        if w == 0 {
            continue;
        }
        let host = match backend_host(
            ns,
            b.group.as_deref(),
            b.kind.as_deref(),
            &b.name,
            b.namespace.as_deref(),
        ) {
            Ok(h) => h,
            Err(e) => {
                ctx.err(at, bp, e);
                continue;
            }
        };
        let mut req = None;
        let mut resp = None;
        for (fi, f) in b.filters.iter().enumerate() {
            let fp = format!("{bp}.filters[{fi}]");
            match (f.type_.as_str(), &f.request_header_modifier, &f.response_header_modifier) {
                ("RequestHeaderModifier", Some(h), _) => merge_ops(&mut req, header_mod(h)),
                ("ResponseHeaderModifier", _, Some(h)) => merge_ops(&mut resp, header_mod(h)),
                (t, _, _) => ctx.err(at, fp, format!("backendRef filter {t:?} is not supported (RequestHeaderModifier, ResponseHeaderModifier)")),
            }
        }
        if b.port.is_none() {
            // Gateway API: "Port is required when the referent is a Kubernetes Service";
            // istiod rejects the route ("port is required in backendRef").
            ctx.err(at, format!("{bp}.port"), "port is required in backendRef");
            continue;
        }
        let d = resolve_dest(ctx, at, &bp, &host, "", b.port, parent_port);
        dests.push(pb::Destination {
            cluster: d.cluster,
            host: d.host,
            port: d.port,
            subset: String::new(),
            weight: 0,
            request_headers: req,
            response_headers: resp,
            unavailable: d.unavailable,
        });
        weights.push(w as u64);
    }
    if dests.is_empty() {
        // Gateway API: no backendRefs, or all of weight 0 / invalid → 500.
        r.action = Some(pb::http_route::Action::DirectResponse(pb::DirectResponse {
            status: 500,
            body: Vec::new(),
        }));
    } else {
        for (d, w) in dests.iter_mut().zip(normalize_weights(&weights)) {
            d.weight = w;
        }
        r.action = Some(pb::http_route::Action::Forward(pb::Forward {
            destinations: dests,
        }));
    }
    RuleAction {
        route: r,
        prefix_replacement,
    }
}
