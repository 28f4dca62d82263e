//! VirtualService → per-service route tables, as istiod translates them for a waypoint
//! (`pilot/pkg/networking/core/listener_waypoint.go`: `getVirtualServiceForWaypoint`,
//! `waypointInboundRoute`; `route/route.go`: `TranslateRoute`).
//!
//! One file per section of an `HTTPRoute`, as linkerd2-proxy keeps one file per route filter:
//! [`match_`], [`redirect`], [`direct_response`], [`destinations`], [`rewrite`], [`fault`],
//! [`mirror`], [`cors`], [`headers`]; retries and the timeout are one line each here.

mod cors;
mod destinations;
mod direct_response;
mod fault;
mod headers;
mod match_;
mod mirror;
mod redirect;
mod rewrite;

use crate::diag::ObjRef;
use crate::model::{Percent, VirtualServiceSpec, VsHttpRoute, VsMatch};
use crate::object::{Object, ObjectKind};
use crate::resolve::{convert_retry, port_ambiguous, sort_by_creation, Ctx, Svc};
use crate::util::{fqdn, host_matches, parse_duration_ms};
use layover_proto::v1 as pb;
use std::collections::HashMap;

pub(crate) use headers::{is_authority, is_internal};

/// Translates every VirtualService; returns route tables keyed by served service FQDN.
/// Services that already have Gateway API routes (`gw_routes`) keep those.
pub(crate) fn compile_virtual_services(
    ctx: &mut Ctx,
    gw_routes: &HashMap<String, Vec<pb::HttpRoute>>,
) -> HashMap<String, Vec<pb::HttpRoute>> {
    let applicable = applicable(ctx);
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
        let chosen = choose(ctx, &applicable, svc, gw_routes, &mut used);
        let mut table = Vec::new();
        for k in chosen {
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
                    format!(
                        "no route of this VirtualService applies to the waypoint for {}",
                        svc.hostname
                    ),
                );
            }
            table.extend(routes);
        }
        // No route left from any VirtualService: the default route
        // (`listener_waypoint.go:1143-1145 @ 1.30.3`).
        if !table.is_empty() {
            out.insert(svc.hostname.clone(), table);
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

/// The VirtualServices that may apply to the waypoint (gateways include "mesh"), oldest
/// first; the others are only validated.
fn applicable<'a>(ctx: &mut Ctx<'a>) -> Vec<&'a Object> {
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
    applicable
}

/// The VirtualServices that route `svc`, oldest first: every applicable one with HTTP routes
/// for its host, from the service's or the waypoint's namespace, their routes merged in that
/// order (1.30.0, 1.29.2 and 1.28.6 on: `listener_waypoint.go:1132-1142 @ 1.30.3`); before,
/// only the oldest (`listener_waypoint.go:771-779 @ 1.26.8`), and the others that would apply
/// are marked `used` with a warning so they are not reported as matching nothing.
fn choose(
    ctx: &mut Ctx,
    applicable: &[&Object],
    svc: &Svc,
    gw_routes: &HashMap<String, Vec<pb::HttpRoute>>,
    used: &mut [bool],
) -> Vec<usize> {
    let merge = ctx.istio.waypoint_merges_virtual_services();
    let mut chosen: Vec<usize> = Vec::new();
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
        if let Some(&c) = chosen.first() {
            let first = applicable[c].at.object();
            if !merge {
                ctx.warn(
                    &o.at,
                    "",
                    format!("ignored for {}: {first} already routes this host; before Istio 1.30.0 (1.29.2, 1.28.6) a waypoint uses only the first (oldest) VirtualService with HTTP routes (listener_waypoint.go:771-779 @ 1.26.8)", svc.hostname),
                );
                used[k] = true;
                continue;
            }
            ctx.info(
                &o.at,
                "",
                format!("merged for {}: its routes follow those of the older {first} (istiod merges every matching VirtualService, listener_waypoint.go:1130-1142 @ 1.30.3)", svc.hostname),
            );
        }
        chosen.push(k);
    }
    if gw_routes.contains_key(&svc.hostname) {
        chosen.clear();
    }
    chosen
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
        let Some(matches) = match_::waypoint_matches(ctx, at, &path, http) else {
            continue;
        };
        let ambiguous = http
            .route
            .iter()
            .map(|d| &d.destination)
            .chain(http.mirror.iter())
            .chain(http.mirrors.iter().map(|m| &m.destination))
            .any(|d| port_ambiguous(ctx, &fqdn(&d.host, &ns), d.port.as_ref().map(|p| p.number)))
            // FROM_REQUEST_PORT redirects carry the arrival port (route.go:803-808 @ 1.30.3).
            || http.redirect.as_ref().is_some_and(|rd| {
                rd.port.is_none() && rd.derive_port.as_deref() == Some("FROM_REQUEST_PORT")
            });
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

/// One `http[i]` route for a request that arrived on `lp`, one function per section; `None`
/// never happens today but keeps the per-port expansion free to skip a copy.
fn translate_http(
    ctx: &mut Ctx,
    at: &ObjRef,
    i: usize,
    http: &VsHttpRoute,
    matches: &[(usize, &VsMatch)],
    lp: Option<u32>,
) -> Option<pb::HttpRoute> {
    let path = format!("spec.http[{i}]");
    let nerr = ctx.errors.len();
    let mut r = pb::HttpRoute {
        origin: Some(pb::Origin {
            kind: "VirtualService".into(),
            namespace: at.namespace.clone(),
            name: at.name.clone(),
            index: i as u32,
            match_index: 0,
            element_name: http.name.clone().unwrap_or_default(),
        }),
        ..Default::default()
    };
    for (j, m) in matches {
        let mp = format!("{path}.match[{j}]");
        r.matches.push(match_::route_match(ctx, at, &mp, m));
    }
    r.action = action(ctx, at, &path, http, lp, nerr);
    let mut authority = None;
    if let Some(h) = &http.headers {
        let (req, a) = headers::header_ops_and_authority(h.request.as_ref());
        r.request_headers = req;
        r.response_headers = headers::header_ops(h.response.as_ref());
        authority = a;
    }
    if let Some(rw) = &http.rewrite {
        r.rewrite = Some(rewrite::rewrite(ctx, at, &path, rw));
    }
    host_rewrite(ctx, at, &path, http, authority, &mut r);
    if let Some(t) = &http.timeout {
        r.timeout_ms = duration(ctx, at, &format!("{path}.timeout"), t);
    }
    if let Some(rt) = &http.retries {
        r.retries = convert_retry(ctx, at, &format!("{path}.retries"), rt);
    }
    if let Some(f) = &http.fault {
        r.fault = Some(fault::fault(ctx, at, &path, f));
    }
    r.mirrors = mirror::mirrors(ctx, at, &path, http, lp);
    if let Some(c) = &http.cors_policy {
        r.cors = Some(cors::cors(ctx, at, &path, c));
    }
    Some(r)
}

/// The host rewrite a forward route gets from `:authority` / `host` header operations
/// (istiod `applyHTTPRouteDestination`, route.go:654-662 @ 1.30.3: `rewrite.authority` wins over
/// the route's headers); with a single destination its own header authority applies only when
/// the route sets none (`processDestination`, route.go:725-734). Weighted destinations rewrite
/// per cluster (route.go:765-768), and a route-level rewrite still wins (routing.go "set host
/// header in route and multi destination" @ 1.30.3); when every weighted destination sets the
/// same authority that is one route-level rewrite ("set host header multi destination"). Other
/// mixes are not expressible yet: dropped with a warning.
fn host_rewrite(
    ctx: &mut Ctx,
    at: &ObjRef,
    path: &str,
    http: &VsHttpRoute,
    authority: Option<String>,
    r: &mut pb::HttpRoute,
) {
    if !matches!(r.action, Some(pb::http_route::Action::Forward(_))) {
        return;
    }
    let from_rewrite = r
        .rewrite
        .as_ref()
        .is_some_and(|rw| !rw.authority.is_empty());
    let dest_authority = |k: usize| {
        http.route.get(k).and_then(|d| {
            headers::header_ops_and_authority(d.headers.as_ref().and_then(|h| h.request.as_ref())).1
        })
    };
    // The destinations istiod keeps: all of a single one; 0-weight ones are skipped otherwise.
    let kept: Vec<usize> = (0..http.route.len())
        .filter(|&k| http.route.len() == 1 || http.route[k].weight.unwrap_or(0) != 0)
        .collect();
    let dests: Vec<Option<String>> = kept.iter().map(|&k| dest_authority(k)).collect();
    let chosen = if from_rewrite {
        None
    } else if authority.is_some() {
        authority
    } else if dests.first().is_some_and(Option::is_some) && dests.windows(2).all(|w| w[0] == w[1]) {
        dests.first().cloned().flatten()
    } else {
        for (&k, a) in kept.iter().zip(&dests) {
            if a.is_some() {
                ctx.warn(
                    at,
                    format!("{path}.route[{k}].headers.request"),
                    "ignored: a :authority / host operation on some but not all weighted destinations (istiod rewrites the host per cluster) is not supported yet",
                );
            }
        }
        None
    };
    if let Some(a) = chosen {
        r.rewrite.get_or_insert_with(Default::default).authority = a;
    }
}

/// Exactly one of route, redirect, directResponse (istio validateHTTPRoute); the action of
/// the first one set.
fn action(
    ctx: &mut Ctx,
    at: &ObjRef,
    path: &str,
    http: &VsHttpRoute,
    lp: Option<u32>,
    nerr: usize,
) -> Option<pb::http_route::Action> {
    use pb::http_route::Action;
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
            path,
            "an HTTP route needs one of route, redirect or directResponse",
        );
    } else if actions > 1 {
        ctx.err(
            at,
            path,
            "route, redirect and directResponse are mutually exclusive",
        );
    }
    if let Some(rd) = &http.redirect {
        Some(Action::Redirect(redirect::redirect(ctx, at, path, rd, lp)))
    } else if let Some(dr) = &http.direct_response {
        Some(Action::DirectResponse(direct_response::direct_response(
            ctx, at, path, dr,
        )))
    } else if !http.route.is_empty() {
        Some(Action::Forward(destinations::forward(
            ctx, at, path, http, lp, nerr,
        )))
    } else {
        None
    }
}
