//! GRPCRoute → the HTTPRoute istiod converts it to (`convertGRPCRoute`,
//! pilot/pkg/config/kube/gateway/conversion.go:265-346 @ 1.30.3), which then compiles like any
//! HTTPRoute attached to a Service: a waypoint serves gRPC as HTTP/2.

use crate::model::{GrMatch, GrpcRouteSpec, HrMatch, HrPath, HrRule, HttpRouteSpec};

/// The filter types a GRPCRoute rule or backendRef may carry (conversion.go:291-325 @ 1.30.3
/// rejects the others as `unsupported filter type`).
const GRPC_FILTERS: &[&str] = &[
    "RequestHeaderModifier",
    "ResponseHeaderModifier",
    "RequestMirror",
];

/// Converts `spec`; `Err((field path, message))` for what istiod rejects.
pub(crate) fn to_http_route(spec: GrpcRouteSpec) -> Result<HttpRouteSpec, (String, String)> {
    let mut rules = Vec::with_capacity(spec.rules.len());
    for (ri, r) in spec.rules.into_iter().enumerate() {
        let mut matches = Vec::with_capacity(r.matches.len());
        for (mi, m) in r.matches.iter().enumerate() {
            matches.push(
                convert_match(m)
                    .map_err(|e| (format!("spec.rules[{ri}].matches[{mi}].method"), e))?,
            );
        }
        for (fi, f) in r.filters.iter().enumerate() {
            if !GRPC_FILTERS.contains(&f.type_.as_str()) {
                return Err((
                    format!("spec.rules[{ri}].filters[{fi}].type"),
                    format!("unsupported filter type {:?} for a GRPCRoute (RequestHeaderModifier, ResponseHeaderModifier, RequestMirror)", f.type_),
                ));
            }
        }
        for (bi, b) in r.backend_refs.iter().enumerate() {
            for (fi, f) in b.filters.iter().enumerate() {
                if f.type_ == "RequestMirror" || !GRPC_FILTERS.contains(&f.type_.as_str()) {
                    return Err((
                        format!("spec.rules[{ri}].backendRefs[{bi}].filters[{fi}].type"),
                        format!("unsupported filter type {:?} on a GRPCRoute backendRef (conversion.go:1044-1070)", f.type_),
                    ));
                }
            }
        }
        rules.push(HrRule {
            name: r.name,
            // No matches: istiod writes none, which matches every request (PathPrefix "/").
            matches: (!matches.is_empty()).then_some(matches),
            filters: r.filters,
            backend_refs: r.backend_refs,
            timeouts: None,
            retry: None,
            session_persistence: r.session_persistence,
        });
    }
    Ok(HttpRouteSpec {
        parent_refs: spec.parent_refs,
        hostnames: spec.hostnames,
        rules,
    })
}

/// `createGRPCURIMatch` (conversion.go:1570-1618 @ 1.30.3): `/<service>/<method>` as a path
/// match; headers as in `createGRPCHeadersMatch` (conversion.go:1510-1536).
fn convert_match(m: &GrMatch) -> Result<HrMatch, String> {
    let path = match &m.method {
        None => None,
        Some(gm) => {
            let tp = gm.type_.as_deref().unwrap_or("Exact");
            let (ty, value) = match (tp, gm.service.as_deref(), gm.method.as_deref()) {
                (_, None, None) => {
                    return Err("gRPC match must have method or service defined".into())
                }
                ("Exact", Some(s), None) => ("PathPrefix", format!("/{s}/")),
                ("Exact", None, Some(me)) => ("RegularExpression", format!("/[^/]+/{me}")),
                ("Exact", Some(s), Some(me)) => ("Exact", format!("/{s}/{me}")),
                ("RegularExpression", Some(s), None) => ("RegularExpression", format!("/{s}/.+")),
                ("RegularExpression", None, Some(me)) => {
                    ("RegularExpression", format!("/[^/]+/{me}"))
                }
                ("RegularExpression", Some(s), Some(me)) => {
                    ("RegularExpression", format!("/{s}/{me}"))
                }
                (t, _, _) => {
                    return Err(format!(
                        "unknown gRPC method match type {t:?} (Exact, RegularExpression)"
                    ))
                }
            };
            Some(HrPath {
                type_: Some(ty.to_string()),
                value: Some(value),
            })
        }
    };
    Ok(HrMatch {
        path,
        headers: m.headers.clone(),
        query_params: Vec::new(),
        method: None,
    })
}
