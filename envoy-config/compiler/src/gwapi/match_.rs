//! HTTPRoute matches: path (Exact / PathPrefix / RegularExpression), headers, query params,
//! method → route matches, with the Gateway API precedence key.

use crate::diag::ObjRef;
use crate::model::HrMatch;
use crate::resolve::Ctx;
use crate::util::{validate_header_name, validate_regex};
use layover_proto::v1 as pb;

/// Exact string match.
pub(super) fn exact(s: &str) -> pb::StringMatch {
    pb::StringMatch {
        kind: Some(pb::string_match::Kind::Exact(s.to_string())),
    }
}
/// Plain prefix match.
fn prefix(s: &str) -> pb::StringMatch {
    pb::StringMatch {
        kind: Some(pb::string_match::Kind::Prefix(s.to_string())),
    }
}
/// Regex match.
fn regex(s: &str) -> pb::StringMatch {
    pb::StringMatch {
        kind: Some(pb::string_match::Kind::Regex(s.to_string())),
    }
}

/// The path part of a match: (kind, value). Gateway API default: PathPrefix "/".
enum PathKind {
    Exact(String),
    Prefix(String),
    Regex(String),
}

/// (path rank, path length, has method, headers, query params): larger sorts first.
pub(super) type Key = (u8, usize, bool, usize, usize);

/// One translated match.
pub(super) struct Matched {
    /// Gateway API precedence of the match.
    pub key: Key,
    /// The route match.
    pub route_match: pb::RouteMatch,
    /// Whether the path is a PathPrefix (ReplacePrefixMatch needs one).
    pub is_prefix: bool,
}

/// Translates match `m` (at `mp`) for a route attached on `parent_port`.
pub(super) fn translate(
    ctx: &mut Ctx,
    at: &ObjRef,
    mp: &str,
    m: &HrMatch,
    parent_port: Option<u32>,
) -> Matched {
    let path = path_kind(ctx, at, mp, m);
    let headers = header_matches(ctx, at, mp, m);
    let query = query_matches(ctx, at, mp, m);
    let key = (
        match &path {
            PathKind::Exact(_) => 3,
            PathKind::Prefix(_) => 2,
            PathKind::Regex(_) => 1,
        },
        // getURILength (conversion.go:525-539 @ 1.30.3) measures the converted prefix.
        match &path {
            PathKind::Exact(v) | PathKind::Regex(v) => v.len(),
            PathKind::Prefix(v) => trim_prefix(v).len(),
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
    // PathPrefix is element-wise ("/foo" matches "/foo" and "/foo/x", not "/foobar"): istiod
    // trims one trailing "/" (conversion.go:1549-1553 @ 1.30.3) and writes Envoy's
    // path_separated_prefix for every prefix but "/" (route.go:1088-1093), which the engine
    // applies to HTTPRoute prefixes; a ReplacePrefixMatch replaces exactly that prefix.
    let route_match = match &path {
        PathKind::Exact(v) => mk(exact(v)),
        PathKind::Regex(v) => mk(regex(v)),
        PathKind::Prefix(v) => mk(prefix(&trim_prefix(v))),
    };
    Matched {
        key,
        route_match,
        is_prefix: matches!(path, PathKind::Prefix(_)),
    }
}

/// istiod `createURIMatch` (conversion.go:1549-1553 @ 1.30.3): "When specified, a trailing `/`
/// is ignored" — one "/" trimmed, "/" kept.
fn trim_prefix(v: &str) -> String {
    if v == "/" {
        return v.to_string();
    }
    v.strip_suffix('/').unwrap_or(v).to_string()
}

/// The path part of `m`; Gateway API default: PathPrefix "/".
fn path_kind(ctx: &mut Ctx, at: &ObjRef, mp: &str, m: &HrMatch) -> PathKind {
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
                        format!(
                            "unknown path match type {t:?} (Exact, PathPrefix, RegularExpression)"
                        ),
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
    path
}

/// Header matches (Exact by default, or RegularExpression); names lower-cased.
fn header_matches(ctx: &mut Ctx, at: &ObjRef, mp: &str, m: &HrMatch) -> Vec<pb::HeaderMatch> {
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
    headers
}

/// Query param matches (Exact by default, or RegularExpression).
fn query_matches(ctx: &mut Ctx, at: &ObjRef, mp: &str, m: &HrMatch) -> Vec<pb::QueryParamMatch> {
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
                    format!("unknown query param match type {t:?} (Exact, RegularExpression)"),
                );
                exact(&q.value)
            }
        };
        query.push(pb::QueryParamMatch {
            name: q.name.clone(),
            value: Some(value),
        });
    }
    query
}
