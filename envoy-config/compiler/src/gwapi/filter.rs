//! HTTPRoute filters, one function per filter type (the way linkerd2-proxy keeps one file
//! per route filter): header modifiers, RequestRedirect, URLRewrite, RequestMirror, CORS.

use super::backend::backend_host;
use super::match_::exact;
use crate::diag::ObjRef;
use crate::model::{
    HrCors, HrHeaderModifier, HrHeaderValue, HrMirror, HrRedirect, HrRule, HrUrlRewrite,
};
use crate::resolve::{resolve_dest, Ctx};
use crate::vs::{is_authority, is_internal};
use layover_proto::v1 as pb;

/// What a rule's filters decide beyond the route fields they set directly.
#[derive(Default)]
pub(super) struct Filtered {
    /// ReplacePrefixMatch value of a URLRewrite / RequestRedirect filter.
    pub prefix_replacement: Option<String>,
    /// The RequestRedirect filter's redirect, which replaces the backends.
    pub redirect: Option<pb::Redirect>,
    /// The host rewrite a RequestHeaderModifier's `host` entry asks for.
    pub header_authority: Option<String>,
}

/// Applies `rule.filters` to `r` (at `{rp}.filters[i]`); mirrors resolve against the request's
/// `parent_port`.
pub(super) fn apply(
    ctx: &mut Ctx,
    at: &ObjRef,
    rp: &str,
    ns: &str,
    rule: &HrRule,
    parent_port: Option<u32>,
    r: &mut pb::HttpRoute,
) -> Filtered {
    let mut out = Filtered::default();
    for (fi, f) in rule.filters.iter().enumerate() {
        let fp = format!("{rp}.filters[{fi}]");
        match f.type_.as_str() {
            "RequestHeaderModifier" => match &f.request_header_modifier {
                Some(h) => {
                    merge_ops(&mut r.request_headers, header_mod(h));
                    out.header_authority = header_authority(h).or(out.header_authority);
                }
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
                    out.redirect = Some(request_redirect(
                        ctx,
                        at,
                        &fp,
                        rd,
                        parent_port,
                        &mut out.prefix_replacement,
                    ))
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
                    url_rewrite(ctx, at, &fp, u, rw, &mut out.prefix_replacement);
                }
                None => ctx.err(
                    at,
                    format!("{fp}.urlRewrite"),
                    "required for type URLRewrite",
                ),
            },
            "RequestMirror" => match &f.request_mirror {
                Some(m) => request_mirror(ctx, at, &fp, ns, m, parent_port, &mut r.mirrors),
                None => ctx.err(
                    at,
                    format!("{fp}.requestMirror"),
                    "required for type RequestMirror",
                ),
            },
            "ExtensionRef" => ctx.err(
                at,
                format!("{fp}.extensionRef"),
                "ExtensionRef filters are not supported",
            ),
            "CORS" => match &f.cors {
                Some(c) => r.cors = Some(cors(c)),
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
    out
}

/// RequestRedirect → a redirect (status default 302); a ReplacePrefixMatch path is returned
/// through `prefix_replacement`, applied per match later. Without `port` and `scheme` the
/// request's port is kept: istiod `createRedirectFilter` writes `FROM_REQUEST_PORT`
/// (conversion.go:1393-1403 @ 1.30.3), i.e. the port the route is built for, `port`
/// (route.go:803-808).
fn request_redirect(
    ctx: &mut Ctx,
    at: &ObjRef,
    fp: &str,
    rd: &HrRedirect,
    port: Option<u32>,
    prefix_replacement: &mut Option<String>,
) -> pb::Redirect {
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
        port: match (rd.port, &rd.scheme) {
            (Some(p), _) => p,
            (None, None) => port.unwrap_or(0),
            (None, Some(_)) => 0,
        },
        // Gateway API: with a scheme and no port, the scheme's well-known port.
        port_from_scheme: rd.scheme.is_some() && rd.port.is_none(),
        scheme: rd.scheme.clone().unwrap_or_default(),
        status,
        ..Default::default()
    };
    if let Some(p) = &rd.path {
        match p.type_.as_str() {
            "ReplaceFullPath" => out.uri = p.replace_full_path.clone().unwrap_or_default(),
            "ReplacePrefixMatch" => {
                *prefix_replacement = Some(p.replace_prefix_match.clone().unwrap_or_default())
            }
            t => ctx.err(
                at,
                format!("{fp}.requestRedirect.path.type"),
                format!("unknown path modifier {t:?}"),
            ),
        }
    }
    out
}

/// URLRewrite → hostname and full-path rewrite into `rw`; ReplacePrefixMatch through
/// `prefix_replacement`.
fn url_rewrite(
    ctx: &mut Ctx,
    at: &ObjRef,
    fp: &str,
    u: &HrUrlRewrite,
    rw: &mut pb::Rewrite,
    prefix_replacement: &mut Option<String>,
) {
    rw.authority = u.hostname.clone().unwrap_or_default();
    if let Some(p) = &u.path {
        match p.type_.as_str() {
            "ReplaceFullPath" => {
                rw.full_path = p.replace_full_path.clone().unwrap_or_default();
                rw.has_full_path = true;
            }
            "ReplacePrefixMatch" => {
                *prefix_replacement = Some(p.replace_prefix_match.clone().unwrap_or_default())
            }
            t => ctx.err(
                at,
                format!("{fp}.urlRewrite.path.type"),
                format!("unknown path modifier {t:?}"),
            ),
        }
    }
}

/// RequestMirror → a mirror of the backendRef (fraction, else percent, else 100%).
fn request_mirror(
    ctx: &mut Ctx,
    at: &ObjRef,
    fp: &str,
    ns: &str,
    m: &HrMirror,
    parent_port: Option<u32>,
    mirrors: &mut Vec<pb::Mirror>,
) {
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
                        ctx.err(
                            at,
                            format!("{fp}.requestMirror.fraction"),
                            "numerator must be ≤ denominator and denominator > 0",
                        );
                        100.0
                    } else {
                        f64::from(fr.numerator) * 100.0 / f64::from(den)
                    }
                }
                (None, Some(p)) => f64::from(p.min(100)),
                (None, None) => 100.0,
            };
            // 0% writes no mirror (conversion.go:1250-1256 → route.go:932-946 @ 1.30.3).
            if pct > 0.0 {
                mirrors.push(pb::Mirror {
                    cluster: d.cluster,
                    host: d.host,
                    port: d.port,
                    subset: String::new(),
                    percentage: pct,
                });
            }
        }
        Err(e) => ctx.err(at, mp, e),
    }
}

/// CORS → the CORS policy.
fn cors(c: &HrCors) -> pb::CorsPolicy {
    // istiod createCorsFilter: origins as exact matches, credentials only when true.
    pb::CorsPolicy {
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
    }
}

/// istiod `headerListToMap` (conversion.go:1221-1235 @ 1.30.3): names lower-cased, and
/// "subsequent entries with an equivalent header name MUST be ignored".
fn first_per_name(v: &[HrHeaderValue]) -> Vec<pb::HeaderValue> {
    let mut out: Vec<pb::HeaderValue> = Vec::new();
    for x in v {
        let name = x.name.to_ascii_lowercase();
        if !out.iter().any(|o| o.name == name) {
            out.push(pb::HeaderValue {
                name,
                value: x.value.clone(),
            });
        }
    }
    out
}

/// A header modifier → header operations (names lower-cased, first entry per name wins);
/// `host` is dropped as istiod's `TranslateHeadersOperations` drops internal headers
/// (route.go:1011-1013, 1020-1030 @ 1.30.3) — a request `set` / `add` of it becomes the host
/// rewrite, see [`header_authority`].
pub(super) fn header_mod(h: &HrHeaderModifier) -> pb::HeaderOperations {
    let keep = |v: pb::HeaderValue| (!is_internal(&v.name)).then_some(v);
    pb::HeaderOperations {
        set: first_per_name(&h.set)
            .into_iter()
            .filter_map(keep)
            .collect(),
        add: first_per_name(&h.add)
            .into_iter()
            .filter_map(keep)
            .collect(),
        remove: h
            .remove
            .iter()
            .filter(|r| !is_internal(r))
            .map(|r| r.to_ascii_lowercase())
            .collect(),
    }
}

/// The host rewrite a request header modifier's `host` entry asks for: `set` wins over `add`
/// (route.go:1044-1048 @ 1.30.3, the HTTPRoute being converted to a VirtualService's headers
/// by conversion.go:141-151).
pub(super) fn header_authority(h: &HrHeaderModifier) -> Option<String> {
    let pick = |v: &[HrHeaderValue]| {
        first_per_name(v)
            .into_iter()
            .find(|x| is_authority(&x.name))
            .map(|x| x.value)
            .filter(|a| !a.is_empty())
    };
    pick(&h.set).or_else(|| pick(&h.add))
}

/// Appends `add` to the operations in `into` (several modifiers of one direction combine).
pub(super) fn merge_ops(into: &mut Option<pb::HeaderOperations>, add: pb::HeaderOperations) {
    let t = into.get_or_insert_with(Default::default);
    t.set.extend(add.set);
    t.add.extend(add.add);
    t.remove.extend(add.remove);
}
