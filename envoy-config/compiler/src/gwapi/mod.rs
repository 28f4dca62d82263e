//! Gateway API HTTPRoutes attached to Services (GAMMA) → per-service route tables.
//!
//! Each (rule, match) becomes one `HttpRoute`, ordered by Gateway API precedence (HTTPRouteRule
//! docs; istiod `pilot/pkg/config/kube/gateway` `sortHTTPRoutes`): exact path > longest prefix /
//! regex > method > most header matches > most query matches; ties keep the oldest route
//! (creationTimestamp), then namespace/name alphabetical, then rule and match order.

//!
//! One file per part of a rule: [`match_`] (matches and precedence), [`filter`] (one function
//! per filter type), [`backend`] (backendRefs), [`timeouts`] (retry and timeouts).

mod backend;
mod filter;
mod grpc;
mod match_;
mod timeouts;

pub(crate) use grpc::to_http_route as grpc_to_http_route;

use crate::diag::ObjRef;
use crate::model::{HrMatch, HrRule, HttpRouteSpec, ParentRef};
use crate::object::{Object, ObjectKind};
use crate::resolve::Ctx;
use layover_proto::v1 as pb;
use std::collections::HashMap;

/// One route of a service's table with what orders it.
struct Entry {
    /// (path rank, path length, has method, headers, query params)
    key: match_::Key,
    ts: String,
    ns: String,
    name: String,
    rule: usize,
    m: usize,
    route: pb::HttpRoute,
}

/// A `parentRefs[i]` with its defaults applied.
struct Parent<'a> {
    /// Field path, `spec.parentRefs[i]`.
    path: String,
    group: &'a str,
    kind: &'a str,
    /// Namespace of the parent (the route's when unset).
    ns: String,
    r: &'a ParentRef,
}

/// Translates every HTTPRoute attached (GAMMA) to a service this waypoint serves; returns
/// route tables keyed by service FQDN, in Gateway API precedence order.
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
            let parent = Parent {
                path: format!("spec.parentRefs[{pi}]"),
                group: pr.group.as_deref().unwrap_or("gateway.networking.k8s.io"),
                kind: pr.kind.as_deref().unwrap_or("Gateway"),
                ns: pr
                    .namespace
                    .clone()
                    .unwrap_or_else(|| o.at.namespace.clone()),
                r: pr,
            };
            let Some(targets) = parent_targets(ctx, o, &parent) else {
                continue;
            };
            for idx in targets {
                if !attaches(ctx, o, &d.spec, &parent, idx) {
                    continue;
                }
                compiled_for_some = true;
                let host = ctx.services[idx].hostname.clone();
                for port in route_ports(ctx, &d.spec, idx, pr.port) {
                    let entries = translate_route(ctx, o, &d.spec, port);
                    per_svc.entry(host.clone()).or_default().extend(entries);
                }
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

/// The ports a route is translated for: the parentRef's port, or, when a RequestRedirect keeps
/// the request's port (no port, no scheme: `FROM_REQUEST_PORT`, conversion.go:1393-1403 @
/// 1.30.3) on a service with several ports, one copy per port, pinned to it, as istiod builds
/// routes per listener port (route.go:803-808); otherwise one port-agnostic copy.
fn route_ports(
    ctx: &Ctx,
    spec: &HttpRouteSpec,
    idx: usize,
    parent: Option<u32>,
) -> Vec<Option<u32>> {
    if parent.is_some() {
        return vec![parent];
    }
    let keeps_port = spec.rules.iter().any(|r| {
        r.filters.iter().any(|f| {
            f.request_redirect
                .as_ref()
                .is_some_and(|rd| rd.port.is_none() && rd.scheme.is_none())
        })
    });
    let ports = &ctx.services[idx].ports;
    if keeps_port && !ports.is_empty() {
        ports.iter().map(|p| Some(p.number)).collect()
    } else {
        vec![None]
    }
}

/// The services a parentRef names: a Service, or (Istio) a ServiceEntry, meaning all of its
/// hosts. `None` (with a notice) for Gateways and unknown or unsupported parents.
fn parent_targets(ctx: &mut Ctx, o: &Object, parent: &Parent) -> Option<Vec<usize>> {
    let (pp, group, kind, pns, pr) = (
        parent.path.clone(),
        parent.group,
        parent.kind,
        parent.ns.clone(),
        parent.r,
    );
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
        return None;
    }
    // GAMMA parents: a Service, or (Istio) a ServiceEntry, meaning all of its hosts.
    let targets: Vec<usize> = if kind == "Service" && (group.is_empty() || group == "core") {
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
                return None;
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
            return None;
        }
        v
    } else {
        ctx.info(
            &o.at,
            &pp,
            format!("skipped: parentRef kind {kind} (group {group:?}) is not supported; use a Service or ServiceEntry"),
        );
        return None;
    };
    Some(targets)
}

/// Whether the route applies to service `idx` through `parent`: the service is served, the
/// route is a producer route (or in the waypoint's namespace), and the port exists.
fn attaches(ctx: &mut Ctx, o: &Object, spec: &HttpRouteSpec, parent: &Parent, idx: usize) -> bool {
    let (pp, kind, pns, pr) = (
        parent.path.clone(),
        parent.kind,
        parent.ns.clone(),
        parent.r,
    );
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
        return false;
    }
    let svc_ns = ctx.services[idx].namespace.clone();
    if o.at.namespace != svc_ns && ctx.waypoint_ns() != Some(o.at.namespace.as_str()) {
        ctx.info(
            &o.at,
            &pp,
            format!("skipped: consumer route (namespace {} ≠ {kind} namespace {svc_ns}) applies to clients' sidecars, not to the waypoint", o.at.namespace),
        );
        return false;
    }
    if let Some(p) = pr.port {
        if !ctx.services[idx].ports.iter().any(|sp| sp.number == p) {
            ctx.warn(
                &o.at,
                format!("{pp}.port"),
                format!("port {p} is not a port of {host}; route skipped"),
            );
            return false;
        }
    }
    if !spec.hostnames.is_empty() {
        ctx.info(
            &o.at,
            "spec.hostnames",
            "hostnames are ignored for routes attached to a Service (GAMMA)",
        );
    }
    true
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
            let mt = match_::translate(ctx, at, &mp, m, parent_port);
            let prefix_rewrite = base.prefix_replacement.is_some();
            if prefix_rewrite && !mt.is_prefix {
                ctx.err(
                    at,
                    format!("{rp}.filters"),
                    "ReplacePrefixMatch requires a PathPrefix match",
                );
            }
            let mut r = base.route.clone();
            if let Some(repl) = &base.prefix_replacement {
                apply_prefix_replacement(&mut r, repl);
            }
            r.matches = vec![mt.route_match];
            if let Some(og) = r.origin.as_mut() {
                og.match_index = mi as u32;
            }
            out.push(Entry {
                key: mt.key,
                ts: ts.clone(),
                ns: ns.clone(),
                name: at.name.clone(),
                rule: ri,
                m: mi,
                route: r,
            });
        }
    }
    out
}

/// A ReplacePrefixMatch of the matched (path-separated) prefix. A RequestRedirect keeps the
/// value as written (`%PREFIX()%` + value → prefix_rewrite, conversion.go:1408-1409 and
/// route.go:788-793 @ 1.30.3); a URLRewrite trims one trailing "/", "" meaning "/" which strips
/// the prefix (conversion.go:1266-1272; the engine's `^prefix(/?)(.*)` → `/\2`, route.go:641-650).
fn apply_prefix_replacement(r: &mut pb::HttpRoute, repl: &str) {
    match r.action.as_mut() {
        Some(pb::http_route::Action::Redirect(rd)) => {
            rd.uri = repl.to_string();
            rd.replace_prefix = true;
        }
        _ => {
            let trimmed = repl.strip_suffix('/').unwrap_or(repl);
            let rw = r.rewrite.get_or_insert_with(Default::default);
            rw.uri = if trimmed.is_empty() { "/" } else { trimmed }.to_string();
            rw.has_uri = true;
        }
    }
}

/// The host rewrite the backendRefs' RequestHeaderModifier `host` entries ask for: one backend's,
/// or the value every backend of non-zero weight sets (istiod's per-cluster host rewrite then
/// rewrites every request alike, route.go:765-768 @ 1.30.3). Other mixes are not expressible yet:
/// warned and dropped.
fn backend_authority(ctx: &mut Ctx, at: &ObjRef, rp: &str, rule: &HrRule) -> Option<String> {
    let kept: Vec<(usize, Option<String>)> = rule
        .backend_refs
        .iter()
        .enumerate()
        .filter(|(_, b)| b.weight.unwrap_or(1) != 0)
        .map(|(i, b)| {
            let a = b
                .filters
                .iter()
                .filter_map(|f| f.request_header_modifier.as_ref())
                .find_map(filter::header_authority);
            (i, a)
        })
        .collect();
    let first = kept.first().and_then(|(_, a)| a.clone());
    if first.is_some() && kept.iter().all(|(_, a)| *a == first) {
        return first;
    }
    for (i, a) in &kept {
        if a.is_some() {
            ctx.warn(
                at,
                format!("{rp}.backendRefs[{i}].filters"),
                "ignored: a host header on some but not all weighted backendRefs (istiod rewrites the host per cluster) is not supported yet",
            );
        }
    }
    None
}

/// A rule's route without matches, shared by its matches.
struct RuleAction {
    route: pb::HttpRoute,
    /// ReplacePrefixMatch value of a URLRewrite / RequestRedirect filter.
    prefix_replacement: Option<String>,
}

/// Translates a rule's filters, retry, timeouts and backends into the route every one of its
/// matches shares.
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
            // "HTTPRoute", or "GRPCRoute" for one read through `grpc::to_http_route`.
            kind: if at.kind.is_empty() {
                "HTTPRoute".into()
            } else {
                at.kind.clone()
            },
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
    let filtered = filter::apply(ctx, at, rp, ns, rule, parent_port, &mut r);
    let prefix_replacement = filtered.prefix_replacement;
    timeouts::retry_and_timeouts(ctx, at, rp, rule, &mut r);
    if rule.session_persistence.is_some() {
        ctx.err(
            at,
            format!("{rp}.sessionPersistence"),
            "sessionPersistence is not supported yet",
        );
    }
    if let Some(rd) = filtered.redirect {
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
    r.action = Some(backend::backends(ctx, at, rp, ns, rule, parent_port));
    // A URLRewrite hostname wins over a header modifier's host (route.go:654-662 @ 1.30.3),
    // which wins over the backendRefs' own (route.go:725-734, 765-768).
    if let Some(a) = filtered
        .header_authority
        .or_else(|| backend_authority(ctx, at, rp, rule))
    {
        let rw = r.rewrite.get_or_insert_with(Default::default);
        if rw.authority.is_empty() {
            rw.authority = a;
        }
    }
    RuleAction {
        route: r,
        prefix_replacement,
    }
}
