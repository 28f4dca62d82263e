//! VirtualService → per-service route tables, as istiod translates them for a waypoint
//! (`pilot/pkg/networking/core/listener_waypoint.go`: `getVirtualServiceForWaypoint`,
//! `waypointInboundRoute`; `route/route.go`: `TranslateRoute`).

use crate::diag::ObjRef;
use crate::model::{
    Percent, StringMatchSpec, VirtualServiceSpec, VsHeaderOps, VsHttpRoute, VsMatch,
};
use crate::object::{Object, ObjectKind};
use crate::resolve::{convert_retry, port_ambiguous, resolve_dest, sort_by_creation, Ctx, Svc};
use crate::util::{
    base64_decode, fqdn, host_matches, normalize_weights, parse_duration_ms, validate_header_name,
    validate_regex,
};
use layover_proto::v1 as pb;
use std::collections::HashMap;

/// Translates every VirtualService; returns route tables keyed by served service FQDN.
/// Services that already have Gateway API routes (`gw_routes`) keep those.
pub(crate) fn compile_virtual_services(
    ctx: &mut Ctx,
    gw_routes: &HashMap<String, Vec<pb::HttpRoute>>,
) -> HashMap<String, Vec<pb::HttpRoute>> {
    let bundle = ctx.bundle;
    let mut vss: Vec<&Object> = bundle
        .objects
        .iter()
        .filter(|o| matches!(o.kind, ObjectKind::VirtualService(_)))
        .collect();
    sort_by_creation(&mut vss);
    let mut applicable: Vec<&Object> = Vec::new();
    for o in vss {
        let ObjectKind::VirtualService(d) = &o.kind else {
            continue;
        };
        if d.spec.tcp.is_some() || d.spec.tls.is_some() {
            ctx.info(
                &o.at,
                "spec.tcp",
                "tcp/tls routes are not compiled (layover handles HTTP traffic)",
            );
        }
        if !d.spec.gateways.is_empty() && !d.spec.gateways.iter().any(|g| g == "mesh") {
            ctx.info(
                &o.at,
                "spec.gateways",
                format!(
                    "skipped: does not apply to the waypoint: gateways {:?} do not include \"mesh\"",
                    d.spec.gateways
                ),
            );
            // Still validate it, so a broken ingress VS does not pass silently.
            validate_only(ctx, o, &d.spec);
            continue;
        }
        if d.spec.hosts.is_empty() {
            ctx.err(
                &o.at,
                "spec.hosts",
                "a VirtualService needs at least one host",
            );
        }
        applicable.push(o);
    }

    let mut out = HashMap::new();
    // used: applies to some served service; translated: its errors were already collected.
    let mut used = vec![false; applicable.len()];
    let mut translated = vec![false; applicable.len()];
    let services: Vec<(usize, Svc)> = ctx
        .services
        .iter()
        .enumerate()
        .filter(|(i, _)| ctx.served[*i])
        .map(|(i, s)| (i, s.clone()))
        .collect();
    for (_, svc) in &services {
        let mut chosen: Option<usize> = None;
        for (k, o) in applicable.iter().enumerate() {
            let ObjectKind::VirtualService(d) = &o.kind else {
                continue;
            };
            // Only routes in the service's namespace or the waypoint's own namespace apply.
            let ns_ok = o.at.namespace == svc.namespace
                || ctx.waypoint_ns().is_some_and(|w| w == o.at.namespace);
            let host_ok = d
                .spec
                .hosts
                .iter()
                .any(|h| host_matches(&fqdn(h, &o.at.namespace), &svc.hostname));
            if !host_ok || d.spec.http.is_empty() {
                continue;
            }
            if !ns_ok {
                ctx.info(
                    &o.at,
                    "spec.hosts",
                    format!("does not apply to {} on the waypoint: only VirtualServices in the service's namespace ({}) or the waypoint's namespace are used", svc.hostname, svc.namespace),
                );
                continue;
            }
            if gw_routes.contains_key(&svc.hostname) {
                ctx.warn(
                    &o.at,
                    "",
                    format!("ignored for {}: the service also has HTTPRoutes (Gateway API), which take precedence", svc.hostname),
                );
                used[k] = true;
                continue;
            }
            match chosen {
                None => chosen = Some(k),
                Some(c) => {
                    let first = applicable[c].at.object();
                    ctx.warn(
                        &o.at,
                        "",
                        format!("ignored for {}: {first} already routes this host; a waypoint uses only the first (oldest) VirtualService with HTTP routes (istiod getVirtualServiceForWaypoint)", svc.hostname),
                    );
                    used[k] = true;
                }
            }
        }
        if let Some(k) = chosen {
            used[k] = true;
            translated[k] = true;
            let o = applicable[k];
            let ObjectKind::VirtualService(d) = &o.kind else {
                continue;
            };
            let routes = translate_vs(ctx, o, &d.spec, Some(svc));
            if routes.is_empty() {
                ctx.info(
                    &o.at,
                    "spec.http",
                    format!("no route of this VirtualService applies to the waypoint; {} keeps its default route", svc.hostname),
                );
            } else {
                out.insert(svc.hostname.clone(), routes);
            }
        }
    }
    for (k, o) in applicable.iter().enumerate() {
        let ObjectKind::VirtualService(d) = &o.kind else {
            continue;
        };
        if !translated[k] {
            // Shadowed or unused VirtualServices are still checked, so their errors surface.
            validate_only(ctx, o, &d.spec);
        }
        if used[k] {
            continue;
        }
        ctx.info(
            &o.at,
            "spec.hosts",
            format!(
                "skipped: hosts {:?} match no service this waypoint serves",
                d.spec.hosts
            ),
        );
    }
    out
}

/// Translates for errors only; warnings about destinations are dropped because the VS is
/// not used.
fn validate_only(ctx: &mut Ctx, o: &Object, vs: &VirtualServiceSpec) {
    let n = ctx.notices.len();
    let _ = translate_vs(ctx, o, vs, None);
    ctx.notices.truncate(n);
}

fn translate_vs(
    ctx: &mut Ctx,
    o: &Object,
    vs: &VirtualServiceSpec,
    svc: Option<&Svc>,
) -> Vec<pb::HttpRoute> {
    let at = &o.at;
    let ns = at.namespace.clone();
    let mut out = Vec::new();
    for (i, http) in vs.http.iter().enumerate() {
        let path = format!("spec.http[{i}]");
        if http.delegate.is_some() {
            ctx.err(
                at,
                format!("{path}.delegate"),
                "VirtualService delegation is not supported yet",
            );
            continue;
        }
        // Match filtering as the waypoint does it: sourceLabels matches are dropped
        // (istio/istio#51565), gateway matches must name "mesh", sourceNamespace must be the
        // waypoint's namespace (route.go sourceMatchHTTP with the waypoint as the proxy).
        let mut matches: Vec<(usize, &VsMatch)> = Vec::new();
        for (j, m) in http.matches.iter().enumerate() {
            let mp = format!("{path}.match[{j}]");
            if !m.source_labels.is_empty() {
                ctx.info(
                    at,
                    format!("{mp}.sourceLabels"),
                    "match dropped: sourceLabels matches are not applied in ambient mode (waypoints drop them)",
                );
                continue;
            }
            if !m.gateways.is_empty() {
                if !m.gateways.iter().any(|g| g == "mesh") {
                    ctx.info(
                        at,
                        format!("{mp}.gateways"),
                        "match dropped: its gateways do not include \"mesh\", so it never matches on a waypoint",
                    );
                    continue;
                }
            } else if let Some(sn) = &m.source_namespace {
                if ctx.waypoint_ns() != Some(sn.as_str()) {
                    ctx.info(
                        at,
                        format!("{mp}.sourceNamespace"),
                        "match dropped: sourceNamespace is compared with the waypoint's namespace in ambient mode, not the client's",
                    );
                    continue;
                }
            }
            matches.push((j, m));
        }
        if !http.matches.is_empty() && matches.is_empty() {
            ctx.info(
                at,
                &path,
                "route dropped: none of its matches applies to a waypoint",
            );
            continue;
        }
        let ambiguous = http
            .route
            .iter()
            .map(|d| &d.destination)
            .chain(http.mirror.iter())
            .chain(http.mirrors.iter().map(|m| &m.destination))
            .any(|d| port_ambiguous(ctx, &fqdn(&d.host, &ns), d.port.as_ref().map(|p| p.number)));
        let listen_ports: Vec<Option<u32>> = match svc {
            Some(s) if ambiguous && s.ports.len() > 1 => {
                s.ports.iter().map(|p| Some(p.number)).collect()
            }
            Some(s) if s.ports.len() == 1 => vec![Some(s.ports[0].number)],
            _ => vec![None],
        };
        let expand = listen_ports.len() > 1;
        for lp in listen_ports {
            let Some(mut r) = translate_http(ctx, at, i, http, &matches, lp) else {
                continue;
            };
            if expand {
                // The destination port depends on the listener port (istiod builds routes
                // per port): pin this copy to port `lp`.
                let p = lp.unwrap_or(0);
                if r.matches.is_empty() {
                    r.matches.push(pb::RouteMatch {
                        port: p,
                        ..Default::default()
                    });
                } else {
                    r.matches.retain(|m| m.port == 0 || m.port == p);
                    if r.matches.is_empty() {
                        continue;
                    }
                    for m in &mut r.matches {
                        m.port = p;
                    }
                }
            }
            out.push(r);
        }
    }
    out
}

pub(crate) fn string_match(
    ctx: &mut Ctx,
    at: &ObjRef,
    path: &str,
    m: &StringMatchSpec,
) -> Option<pb::StringMatch> {
    use pb::string_match::Kind;
    let set = [m.exact.is_some(), m.prefix.is_some(), m.regex.is_some()]
        .iter()
        .filter(|b| **b)
        .count();
    if set > 1 {
        ctx.err(at, path, "only one of exact, prefix, regex may be set");
        return None;
    }
    if let Some(e) = &m.exact {
        return Some(pb::StringMatch {
            kind: Some(Kind::Exact(e.clone())),
        });
    }
    if let Some(p) = &m.prefix {
        return Some(pb::StringMatch {
            kind: Some(Kind::Prefix(p.clone())),
        });
    }
    if let Some(r) = &m.regex {
        if let Err(e) = validate_regex(r) {
            ctx.err(at, format!("{path}.regex"), e);
            return None;
        }
        return Some(pb::StringMatch {
            kind: Some(Kind::Regex(r.clone())),
        });
    }
    None
}

fn header_ops(h: Option<&VsHeaderOps>) -> Option<pb::HeaderOperations> {
    let h = h?;
    Some(pb::HeaderOperations {
        set: h
            .set
            .iter()
            .map(|(k, v)| pb::HeaderValue {
                name: k.to_ascii_lowercase(),
                value: v.clone(),
            })
            .collect(),
        add: h
            .add
            .iter()
            .map(|(k, v)| pb::HeaderValue {
                name: k.to_ascii_lowercase(),
                value: v.clone(),
            })
            .collect(),
        remove: h.remove.iter().map(|k| k.to_ascii_lowercase()).collect(),
    })
}

/// istio validatePercentage: 0, or within [0.0001, 100].
fn percent(ctx: &mut Ctx, at: &ObjRef, path: &str, p: &Percent) -> f64 {
    if !(0.0..=100.0).contains(&p.value) || (p.value > 0.0 && p.value < 0.0001) {
        ctx.err(
            at,
            format!("{path}.value"),
            format!(
                "percentage {} is neither 0.0, nor in range [0.0001, 100.0]",
                p.value
            ),
        );
    }
    p.value
}

fn duration(ctx: &mut Ctx, at: &ObjRef, path: &str, s: &str) -> u64 {
    match parse_duration_ms(s) {
        Ok(v) => v,
        Err(e) => {
            ctx.err(at, path, e);
            0
        }
    }
}

/// gRPC status names Istio accepts in `fault.abort.grpcStatus`.
fn grpc_code(name: &str) -> Option<u32> {
    const NAMES: &[&str] = &[
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    NAMES
        .iter()
        .position(|n| *n == name)
        .map(|i| i as u32)
        .or_else(|| name.parse().ok().filter(|c| *c <= 16))
}

fn translate_http(
    ctx: &mut Ctx,
    at: &ObjRef,
    i: usize,
    http: &VsHttpRoute,
    matches: &[(usize, &VsMatch)],
    lp: Option<u32>,
) -> Option<pb::HttpRoute> {
    let ns = at.namespace.clone();
    let path = format!("spec.http[{i}]");
    let nerr = ctx.errors.len();
    let mut r = pb::HttpRoute {
        origin: Some(pb::Origin {
            kind: "VirtualService".into(),
            namespace: ns.clone(),
            name: at.name.clone(),
            index: i as u32,
            match_index: 0,
            element_name: http.name.clone().unwrap_or_default(),
        }),
        ..Default::default()
    };
    for (j, m) in matches {
        let mp = format!("{path}.match[{j}]");
        let mut rm = pb::RouteMatch {
            name: m.name.clone().unwrap_or_default(),
            port: m.port.unwrap_or(0),
            ignore_uri_case: m.ignore_uri_case,
            ..Default::default()
        };
        if let Some(u) = &m.uri {
            rm.uri = string_match(ctx, at, &format!("{mp}.uri"), u);
        }
        if let Some(u) = &m.scheme {
            rm.scheme = string_match(ctx, at, &format!("{mp}.scheme"), u);
        }
        if let Some(u) = &m.method {
            rm.method = string_match(ctx, at, &format!("{mp}.method"), u);
        }
        if let Some(u) = &m.authority {
            rm.authority = string_match(ctx, at, &format!("{mp}.authority"), u);
        }
        for (k, v) in &m.headers {
            if let Err(e) = validate_header_name(k) {
                ctx.err(at, format!("{mp}.headers"), e);
            }
            let value = string_match(ctx, at, &format!("{mp}.headers.{k}"), v);
            rm.headers.push(pb::HeaderMatch {
                name: k.to_ascii_lowercase(),
                value,
            });
        }
        for (k, v) in &m.without_headers {
            if let Err(e) = validate_header_name(k) {
                ctx.err(at, format!("{mp}.withoutHeaders"), e);
            }
            let value = string_match(ctx, at, &format!("{mp}.withoutHeaders.{k}"), v);
            rm.without_headers.push(pb::HeaderMatch {
                name: k.to_ascii_lowercase(),
                value,
            });
        }
        for (k, v) in &m.query_params {
            let value = string_match(ctx, at, &format!("{mp}.queryParams.{k}"), v);
            rm.query_params.push(pb::QueryParamMatch {
                name: k.clone(),
                value,
            });
        }
        // A match for another port never matches there: the core compares `port` with
        // the arrival port, as istiod drops such matches per listener port.
        r.matches.push(rm);
    }

    let actions = [
        !http.route.is_empty(),
        http.redirect.is_some(),
        http.direct_response.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if actions == 0 {
        ctx.err(
            at,
            &path,
            "an HTTP route needs one of route, redirect or directResponse",
        );
    } else if actions > 1 {
        ctx.err(
            at,
            &path,
            "route, redirect and directResponse are mutually exclusive",
        );
    }
    if let Some(rd) = &http.redirect {
        let status = rd.redirect_code.unwrap_or(301);
        if !(300..=399).contains(&status) {
            ctx.err(
                at,
                format!("{path}.redirect.redirectCode"),
                format!("redirect code {status} is not a 3xx status"),
            );
        }
        // istio validateHTTPRedirect.
        if rd.uri.is_none()
            && rd.authority.is_none()
            && rd.port.is_none()
            && rd.scheme.is_none()
            && rd.derive_port.is_none()
        {
            ctx.err(
                at,
                format!("{path}.redirect"),
                "redirect must specify URI, authority, scheme, or port",
            );
        }
        if let Some(sc) = rd
            .scheme
            .as_deref()
            .filter(|s| *s != "http" && *s != "https")
        {
            ctx.err(
                at,
                format!("{path}.redirect.scheme"),
                format!("invalid redirect scheme {sc:?}, must be \"http\" or \"https\""),
            );
        }
        let port_from_scheme = match rd.derive_port.as_deref() {
            None | Some("FROM_REQUEST_PORT") => false,
            Some("FROM_PROTOCOL_DEFAULT") => true,
            Some(other) => {
                ctx.err(
                    at,
                    format!("{path}.redirect.derivePort"),
                    format!(
                        "unknown derivePort {other:?} (FROM_PROTOCOL_DEFAULT, FROM_REQUEST_PORT)"
                    ),
                );
                false
            }
        };
        if rd.port.is_some() && port_from_scheme {
            ctx.err(
                at,
                format!("{path}.redirect"),
                "port and derivePort are mutually exclusive",
            );
        }
        r.action = Some(pb::http_route::Action::Redirect(pb::Redirect {
            uri: rd.uri.clone().unwrap_or_default(),
            replace_prefix: false,
            authority: rd.authority.clone().unwrap_or_default(),
            port: rd.port.unwrap_or(0),
            port_from_scheme,
            scheme: rd.scheme.clone().unwrap_or_default(),
            status,
        }));
    } else if let Some(dr) = &http.direct_response {
        if !(200..=599).contains(&dr.status) {
            ctx.err(
                at,
                format!("{path}.directResponse.status"),
                format!("HTTP status {} is not in range 200-599", dr.status),
            );
        }
        let body = match &dr.body {
            None => Vec::new(),
            Some(b) => match (&b.string, &b.bytes) {
                (Some(s), None) => s.as_bytes().to_vec(),
                (None, Some(bs)) => match base64_decode(bs) {
                    Ok(v) => v,
                    Err(e) => {
                        ctx.err(at, format!("{path}.directResponse.body.bytes"), e);
                        Vec::new()
                    }
                },
                (None, None) => Vec::new(),
                (Some(_), Some(_)) => {
                    ctx.err(
                        at,
                        format!("{path}.directResponse.body"),
                        "string and bytes are mutually exclusive",
                    );
                    Vec::new()
                }
            },
        };
        r.action = Some(pb::http_route::Action::DirectResponse(pb::DirectResponse {
            status: dr.status,
            body,
        }));
    } else if !http.route.is_empty() {
        // Weights (istio validation validateHTTPRouteDestinations: no negative weight, and
        // several destinations must not all be 0; route.go: a single destination takes all
        // traffic whatever its weight, 0-weight destinations are skipped).
        let mut dests = Vec::new();
        let mut weights = Vec::new();
        for (k, rd) in http.route.iter().enumerate() {
            let dp = format!("{path}.route[{k}]");
            let w = rd.weight.unwrap_or(0);
            if w < 0 {
                ctx.err(at, format!("{dp}.weight"), format!("weight {w} < 0"));
                continue;
            }
            if http.route.len() > 1 && w == 0 {
                continue;
            }
            let host = fqdn(&rd.destination.host, &ns);
            let d = resolve_dest(
                ctx,
                at,
                &format!("{dp}.destination"),
                &host,
                rd.destination.subset.as_deref().unwrap_or(""),
                rd.destination.port.as_ref().map(|p| p.number),
                lp,
            );
            let hs = rd.headers.as_ref();
            dests.push(pb::Destination {
                cluster: d.cluster,
                host: d.host,
                port: d.port,
                subset: d.subset,
                weight: 0,
                request_headers: header_ops(hs.and_then(|h| h.request.as_ref())),
                response_headers: header_ops(hs.and_then(|h| h.response.as_ref())),
                unavailable: d.unavailable,
            });
            weights.push(w as u64);
        }
        if http.route.len() > 1 && dests.is_empty() && ctx.errors.len() == nerr {
            ctx.err(at, format!("{path}.route"), "total destination weight = 0");
        }
        if dests.len() == 1 {
            dests[0].weight = 100;
        } else if !dests.is_empty() {
            let total: u64 = weights.iter().sum();
            if total != 100 {
                ctx.info(
                    at,
                    format!("{path}.route"),
                    format!("weights sum to {total}, not 100: normalized to 100 keeping their ratios (Envoy splits by the sum)"),
                );
            }
            for (d, w) in dests.iter_mut().zip(normalize_weights(&weights)) {
                d.weight = w;
            }
        }
        r.action = Some(pb::http_route::Action::Forward(pb::Forward {
            destinations: dests,
        }));
    }

    if let Some(h) = &http.headers {
        r.request_headers = header_ops(h.request.as_ref());
        r.response_headers = header_ops(h.response.as_ref());
    }
    if let Some(rw) = &http.rewrite {
        if rw.uri.as_deref().is_some_and(|u| !u.is_empty()) && rw.uri_regex_rewrite.is_some() {
            ctx.err(
                at,
                format!("{path}.rewrite"),
                "uri and uriRegexRewrite are mutually exclusive",
            );
        }
        // istio validateHTTPRewrite.
        if rw.uri.as_deref().unwrap_or("").is_empty()
            && rw.uri_regex_rewrite.is_none()
            && rw.authority.as_deref().unwrap_or("").is_empty()
        {
            ctx.err(
                at,
                format!("{path}.rewrite"),
                "rewrite must specify at least one of uri, uriRegexRewrite, or authority",
            );
        }
        if let Some(rr) = &rw.uri_regex_rewrite {
            if rr.pattern.is_empty() || rr.rewrite.is_empty() {
                ctx.err(
                    at,
                    format!("{path}.rewrite.uriRegexRewrite"),
                    "uriRegexRewrite requires both match and rewrite",
                );
            }
        }
        let mut out = pb::Rewrite {
            authority: rw.authority.clone().unwrap_or_default(),
            ..Default::default()
        };
        if let Some(u) = rw.uri.as_deref().filter(|u| !u.is_empty()) {
            out.uri = u.to_string();
            out.has_uri = true;
        }
        if let Some(rr) = &rw.uri_regex_rewrite {
            if let Err(e) = validate_regex(&rr.pattern) {
                ctx.err(at, format!("{path}.rewrite.uriRegexRewrite.match"), e);
            }
            out.uri_regex = Some(pb::RegexRewrite {
                pattern: rr.pattern.clone(),
                substitution: rr.rewrite.clone(),
            });
        }
        r.rewrite = Some(out);
    }
    if let Some(t) = &http.timeout {
        r.timeout_ms = duration(ctx, at, &format!("{path}.timeout"), t);
    }
    if let Some(rt) = &http.retries {
        r.retries = convert_retry(ctx, at, &format!("{path}.retries"), rt);
    }
    if let Some(f) = &http.fault {
        if f.delay.is_none() && f.abort.is_none() {
            ctx.err(
                at,
                format!("{path}.fault"),
                "HTTP fault injection must have an abort and/or a delay",
            );
        }
        let mut fi = pb::FaultInjection::default();
        if let Some(d) = &f.delay {
            let dp = format!("{path}.fault.delay");
            if d.exponential_delay.is_some() {
                ctx.err(
                    at,
                    format!("{dp}.exponentialDelay"),
                    "exponentialDelay not supported yet",
                );
            }
            let fixed = match &d.fixed_delay {
                Some(s) => duration(ctx, at, &format!("{dp}.fixedDelay"), s),
                None => {
                    if d.exponential_delay.is_none() {
                        ctx.err(at, format!("{dp}.fixedDelay"), "fixedDelay is required");
                    }
                    0
                }
            };
            // percentage wins; the deprecated integer `percent` is read when it is absent;
            // neither means every request (Istio translateFault).
            let pct = match (&d.percentage, d.percent) {
                (Some(p), _) => percent(ctx, at, &format!("{dp}.percentage"), p),
                (None, Some(p)) => f64::from(p),
                (None, None) => 100.0,
            };
            fi.delay = Some(pb::FaultDelay {
                fixed_delay_ms: fixed,
                percentage: pct,
            });
        }
        if let Some(a) = &f.abort {
            let ap = format!("{path}.fault.abort");
            if a.http2_error.is_some() {
                ctx.err(
                    at,
                    format!("{ap}.http2Error"),
                    "HTTP/2 abort fault injection not supported yet",
                );
            }
            let grpc = match &a.grpc_status {
                Some(g) => match grpc_code(g) {
                    Some(c) => c,
                    None => {
                        ctx.err(
                            at,
                            format!("{ap}.grpcStatus"),
                            format!("unknown gRPC status {g:?}"),
                        );
                        0
                    }
                },
                None => 0,
            };
            let status = a.http_status.unwrap_or(0);
            if a.http_status.is_some() && !(200..=599).contains(&status) {
                ctx.err(
                    at,
                    format!("{ap}.httpStatus"),
                    format!("status {status} is outside 200..599"),
                );
            }
            if a.http_status.is_none() && a.grpc_status.is_none() && a.http2_error.is_none() {
                ctx.err(at, &ap, "one of httpStatus, grpcStatus must be set");
            }
            let pct = match &a.percentage {
                Some(p) => percent(ctx, at, &format!("{ap}.percentage"), p),
                None => 100.0,
            };
            fi.abort = Some(pb::FaultAbort {
                http_status: status,
                grpc_status: grpc,
                percentage: pct,
            });
        }
        r.fault = Some(fi);
    }
    if let Some(m) = &http.mirror {
        // mirrorPercentage wins over the deprecated mirrorPercent; neither = 100%.
        let pct = match (&http.mirror_percentage, http.mirror_percent) {
            (Some(p), _) => percent(ctx, at, &format!("{path}.mirrorPercentage"), p),
            (None, Some(p)) => f64::from(p),
            (None, None) => 100.0,
        };
        let host = fqdn(&m.host, &ns);
        let d = resolve_dest(
            ctx,
            at,
            &format!("{path}.mirror"),
            &host,
            m.subset.as_deref().unwrap_or(""),
            m.port.as_ref().map(|p| p.number),
            lp,
        );
        r.mirrors.push(pb::Mirror {
            cluster: d.cluster,
            host: d.host,
            port: d.port,
            subset: d.subset,
            percentage: pct,
        });
    }
    if http.mirror.is_some() && !http.mirrors.is_empty() {
        ctx.err(
            at,
            format!("{path}.mirrors"),
            "mirror and mirrors are mutually exclusive",
        );
    }
    for (k, m) in http.mirrors.iter().enumerate() {
        let mp = format!("{path}.mirrors[{k}]");
        let pct = match &m.percentage {
            Some(p) => percent(ctx, at, &format!("{mp}.percentage"), p),
            None => 100.0,
        };
        let host = fqdn(&m.destination.host, &ns);
        let d = resolve_dest(
            ctx,
            at,
            &format!("{mp}.destination"),
            &host,
            m.destination.subset.as_deref().unwrap_or(""),
            m.destination.port.as_ref().map(|p| p.number),
            lp,
        );
        r.mirrors.push(pb::Mirror {
            cluster: d.cluster,
            host: d.host,
            port: d.port,
            subset: d.subset,
            percentage: pct,
        });
    }
    if let Some(c) = &http.cors_policy {
        let cp = format!("{path}.corsPolicy");
        let mut origins = Vec::new();
        for (k, o) in c.allow_origins.iter().enumerate() {
            if let Some(m) = string_match(ctx, at, &format!("{cp}.allowOrigins[{k}]"), o) {
                origins.push(m);
            }
        }
        for o in &c.allow_origin {
            origins.push(pb::StringMatch {
                kind: Some(pb::string_match::Kind::Exact(o.clone())),
            });
        }
        let max_age = c
            .max_age
            .as_ref()
            .map(|m| duration(ctx, at, &format!("{cp}.maxAge"), m) / 1000)
            .unwrap_or(0);
        let forward = match c.unmatched_preflights.as_deref() {
            None | Some("UNSPECIFIED") | Some("FORWARD") => true,
            Some("IGNORE") => false,
            Some(o) => {
                ctx.err(
                    at,
                    format!("{cp}.unmatchedPreflights"),
                    format!("unknown value {o:?} (FORWARD, IGNORE)"),
                );
                true
            }
        };
        r.cors = Some(pb::CorsPolicy {
            allow_origins: origins,
            allow_methods: c.allow_methods.clone(),
            allow_headers: c.allow_headers.clone(),
            expose_headers: c.expose_headers.clone(),
            max_age_seconds: max_age,
            allow_credentials: match c.allow_credentials {
                None => pb::OptionalBool::Unset,
                Some(true) => pb::OptionalBool::True,
                Some(false) => pb::OptionalBool::False,
            } as i32,
            unmatched_preflights_forward: forward,
        });
    }
    Some(r)
}
