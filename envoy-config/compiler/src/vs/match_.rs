//! `HTTPMatchRequest` → route matches, after dropping the matches a waypoint never applies.

use crate::diag::ObjRef;
use crate::model::{StringMatchSpec, VsHttpRoute, VsMatch};
use crate::resolve::Ctx;
use crate::util::{validate_header_name, validate_regex};
use layover_proto::v1 as pb;

/// The matches of `http` that apply on a waypoint, with their index; `None` when the route had
/// matches and none applies (the route is dropped).
pub(super) fn waypoint_matches<'a>(
    ctx: &mut Ctx,
    at: &ObjRef,
    path: &str,
    http: &'a VsHttpRoute,
) -> Option<Vec<(usize, &'a VsMatch)>> {
    // Match filtering as the waypoint does it: sourceLabels matches are dropped
    // (pilot/pkg/networking/core/listener_waypoint.go:1198-1203 @ 1.30.3), gateway matches must name "mesh", sourceNamespace must be the
    // waypoint's namespace (route.go sourceMatchHTTP with the waypoint as the proxy).
    let mut matches: Vec<(usize, &VsMatch)> = Vec::new();
    for (j, m) in http.matches.iter().enumerate() {
        let mp = format!("{path}.match[{j}]");
        if !m.source_labels.is_empty() {
            ctx.info(
                at,
                format!("{mp}.sourceLabels"),
                "match dropped: waypoints drop matches with sourceLabels (ambient mode does not support them; istiod listener_waypoint.go:1198-1203 @ 1.30.3)",
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
            path,
            "route dropped: none of its matches applies to a waypoint",
        );
        return None;
    }
    Some(matches)
}

/// One applicable match → a route match.
pub(super) fn route_match(ctx: &mut Ctx, at: &ObjRef, mp: &str, m: &VsMatch) -> pb::RouteMatch {
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
        // `regex: "*"` is accepted here only, as a present match (validation skips it,
        // pkg/config/validation/virtualservice.go:149-154 @ 1.30.3; route.go:1164-1186
        // canBeConvertedToPresentMatch): the route matches when the header is absent.
        let value = if v.regex.as_deref() == Some("*") && v.exact.is_none() && v.prefix.is_none() {
            None
        } else {
            string_match(ctx, at, &format!("{mp}.withoutHeaders.{k}"), v)
        };
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
    rm
}

/// `StringMatch` (exact / prefix / regex, at most one) → the policy's string match.
pub(super) fn string_match(
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
