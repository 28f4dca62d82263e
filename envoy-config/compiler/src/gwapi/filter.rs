//! HTTPRoute filters, one function per filter type (the way linkerd2-proxy keeps one file
//! per route filter): header modifiers, RequestRedirect, URLRewrite, RequestMirror, CORS.

use super::backend::backend_host;
use super::match_::exact;
use crate::diag::ObjRef;
use crate::model::{
    HrCors, HrHeaderModifier, HrHeaderValue, HrMirror, HrRedirect, HrRule, HrUrlRewrite,
};
use crate::resolve::{resolve_dest, Ctx};
use layover_proto::v1 as pb;

/// What a rule's filters decide beyond the route fields they set directly.
#[derive(Default)]
pub(super) struct Filtered {
    /// ReplacePrefixMatch value of a URLRewrite / RequestRedirect filter.
    pub prefix_replacement: Option<String>,
    /// The RequestRedirect filter's redirect, which replaces the backends.
    pub redirect: Option<pb::Redirect>,
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
                    out.redirect = Some(request_redirect(
                        ctx,
                        at,
                        &fp,
                        rd,
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
/// through `prefix_replacement`, applied per match later.
fn request_redirect(
    ctx: &mut Ctx,
    at: &ObjRef,
    fp: &str,
    rd: &HrRedirect,
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
        port: rd.port.unwrap_or(0),
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
            mirrors.push(pb::Mirror {
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

/// A header modifier → header operations (names lower-cased).
pub(super) fn header_mod(h: &HrHeaderModifier) -> pb::HeaderOperations {
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

/// Appends `add` to the operations in `into` (several modifiers of one direction combine).
pub(super) fn merge_ops(into: &mut Option<pb::HeaderOperations>, add: pb::HeaderOperations) {
    let t = into.get_or_insert_with(Default::default);
    t.set.extend(add.set);
    t.add.extend(add.add);
    t.remove.extend(add.remove);
}
