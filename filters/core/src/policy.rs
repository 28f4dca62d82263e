//! `CompiledPolicy`: the wire policy validated, regexes compiled, indexes built — and `decide`.

use std::borrow::Cow;
use std::net::IpAddr;

use regex::Regex;

use crate::authz_api::{AuthzDecision, CompiledAuthz};
use crate::decision::{
    Action, Authorization, CorsDecision, CorsKind, Decision, DestinationChoice, EffectiveRetry,
    FaultAbort, FaultDecision, FaultDelay, HeaderOp, MatchedRoute, MirrorTarget, ServiceRef,
    RBAC_DENIED_BODY,
};
use crate::error::InvalidPolicy;
use crate::fxhash::FxHashMap;
use crate::index::{Entry, RouteIndex};
use crate::matcher::{
    compile_full_regex, compile_value_match, HeaderCond, MatchCond, QueryCond, StrMatcher, UriCond,
};
use crate::request::{ConnectionNeeds, RequestView};
use crate::wire;

/// A validated, indexed policy, ready to [`decide`](CompiledPolicy::decide) requests.
#[derive(Debug)]
pub struct CompiledPolicy {
    services: Vec<CompiledService>,
    by_host: FxHashMap<String, u32>,
    by_ip: FxHashMap<IpAddr, u32>,
    /// Istio virtual-host domains (without port) → service.
    by_authority: FxHashMap<String, u32>,
    authz: CompiledAuthz,
    /// What the authorization policies read of the connection ([`CompiledPolicy::needs`]).
    needs: ConnectionNeeds,
    default_retry: Option<wire::RetryPolicy>,
    path_normalization: wire::PathNormalization,
    jwt: JwtSettings,
}

/// What the filters need of the policy's RequestAuthentication rules (Envoy's `jwt_authn`
/// verifies the tokens; the filters only read the verified payload).
#[derive(Debug, Default)]
pub struct JwtSettings {
    /// Whether any rule exists (the generated configuration then runs `jwt_authn`).
    pub enabled: bool,
    /// `outputPayloadToHeader` of the rules, lower-cased, deduplicated.
    pub output_payload_headers: Vec<String>,
    /// `spaceDelimitedClaims` of all rules (besides `scope` and `permission`).
    pub space_delimited_claims: Vec<String>,
    /// The rules themselves (for offline verification by `layover eval`).
    pub rules: Vec<wire::JwtRule>,
}

impl JwtSettings {
    /// Whether a RequestAuthentication rule of the payload's issuer binds `service`.
    pub fn binds(&self, payload: &crate::jwt::JwtPayload, service: &str) -> bool {
        let iss = payload.string("iss").unwrap_or("");
        self.rules
            .iter()
            .any(|r| r.issuer == iss && r.services.iter().any(|s| s == service))
    }

    fn of(rules: &[wire::JwtRule]) -> JwtSettings {
        let mut s = JwtSettings {
            enabled: !rules.is_empty(),
            rules: rules.to_vec(),
            ..JwtSettings::default()
        };
        for r in rules {
            let h = r.output_payload_to_header.to_ascii_lowercase();
            if !h.is_empty() && !s.output_payload_headers.contains(&h) {
                s.output_payload_headers.push(h);
            }
            for c in &r.space_delimited_claims {
                if !s.space_delimited_claims.contains(c) {
                    s.space_delimited_claims.push(c.clone());
                }
            }
        }
        s
    }
}

#[derive(Debug)]
struct CompiledService {
    hostname: String,
    namespace: String,
    name: String,
    origin: String,
    /// (port number, the one-element destination list of its default route).
    /// Port → its default-route destination and, when the release says so, that route's
    /// own retry policy (`ServicePort.default_route_retry`).
    ports: Vec<(u16, Vec<DestinationChoice>, Option<wire::RetryPolicy>)>,
    route_source: wire::RouteSource,
    authz_bound: Vec<u32>,
    routes: Vec<CompiledRoute>,
    index: RouteIndex,
}

#[derive(Debug)]
struct CompiledRoute {
    origin: wire::Origin,
    matches: Vec<MatchCond>,
    match_names: Vec<String>,
    action: RouteAction,
    /// Route-level response operations, for replies the proxy generates.
    local_response_ops: Vec<HeaderOp>,
    rewrite: CompiledRewrite,
    retry: Option<wire::RetryPolicy>,
    timeout_ms: u64,
    fault: Option<FaultDecision>,
    mirrors: Vec<MirrorTarget>,
    cors: Option<CompiledCors>,
}

#[derive(Debug)]
enum RouteAction {
    Forward(Vec<DestinationChoice>),
    Redirect(CompiledRedirect),
    Direct { status: u16, body: Vec<u8> },
}

#[derive(Debug, Default)]
struct CompiledRewrite {
    /// `prefix_rewrite`.
    uri: Option<String>,
    /// `regex_rewrite`: unanchored pattern, substitution already in `regex` crate syntax.
    uri_regex: Option<(Regex, String)>,
    full_path: Option<String>,
    authority: Option<String>,
}

#[derive(Debug)]
struct CompiledRedirect {
    uri: Option<String>,
    replace_prefix: bool,
    authority: Option<String>,
    /// Envoy `port_redirect` after istiod's dropping of :80 for http / :443 for https; 0 = none.
    port: u32,
    scheme: Option<String>,
    status: u16,
}

#[derive(Debug)]
struct CompiledCors {
    origins: Vec<StrMatcher>,
    allow_methods: String,
    allow_headers: String,
    expose_headers: String,
    max_age: String,
    allow_credentials: bool,
    forward_unmatched: bool,
}

fn origin_label(o: Option<&wire::Origin>) -> String {
    match o {
        Some(o) => {
            let mut s = format!("{} {}/{}[{}]", o.kind, o.namespace, o.name, o.index);
            if !o.element_name.is_empty() {
                s.push_str(&format!(" {:?}", o.element_name));
            }
            s
        }
        None => "unknown origin".to_string(),
    }
}

/// Split header operations into (removes, sets-then-adds), the two phases of one Envoy
/// `HeaderParser` (`evaluateHeaders` removes first; istiod emits `set` entries before `add`).
fn header_phases(h: Option<&wire::HeaderOperations>) -> (Vec<HeaderOp>, Vec<HeaderOp>) {
    let Some(h) = h else {
        return (Vec::new(), Vec::new());
    };
    let removes = h
        .remove
        .iter()
        .map(|n| HeaderOp::Remove { name: n.clone() })
        .collect();
    let mut adds: Vec<HeaderOp> = h
        .set
        .iter()
        .map(|v| HeaderOp::Set {
            name: v.name.clone(),
            value: v.value.clone(),
        })
        .collect();
    adds.extend(h.add.iter().map(|v| HeaderOp::Append {
        name: v.name.clone(),
        value: v.value.clone(),
    }));
    (removes, adds)
}

/// Envoy refuses to configure mutations of pseudo-headers and `host` (istiod drops them and
/// turns an authority set into `host_rewrite_literal`), so a policy carrying one is invalid.
fn check_header_ops(
    ctx: &RouteCtx<'_>,
    field: &str,
    h: Option<&wire::HeaderOperations>,
) -> Result<(), InvalidPolicy> {
    let Some(h) = h else {
        return Ok(());
    };
    let names = h
        .set
        .iter()
        .map(|v| v.name.as_str())
        .chain(h.add.iter().map(|v| v.name.as_str()))
        .chain(h.remove.iter().map(String::as_str));
    for n in names {
        if n.is_empty() || n.starts_with(':') || n.eq_ignore_ascii_case("host") {
            return Err(ctx.err(
                field,
                format!("header {n:?} cannot be modified (pseudo-header, host or empty)"),
            ));
        }
    }
    Ok(())
}

/// Envoy's order for one destination: with a single destination istiod merges the destination's
/// operations into the route's lists (one parser: all removes, then route adds, then destination
/// adds); with weighted clusters the cluster's parser runs before the route's.
fn combine_ops(
    route: Option<&wire::HeaderOperations>,
    dest: Option<&wire::HeaderOperations>,
    single: bool,
) -> Vec<HeaderOp> {
    let (rr, ra) = header_phases(route);
    let (dr, da) = header_phases(dest);
    let mut out = Vec::with_capacity(rr.len() + ra.len() + dr.len() + da.len());
    if single {
        out.extend(rr);
        out.extend(dr);
        out.extend(ra);
        out.extend(da);
    } else {
        out.extend(dr);
        out.extend(da);
        out.extend(rr);
        out.extend(ra);
    }
    out
}

/// Convert an RE2 rewrite string (`\1`, `\\`) into `regex` crate replacement syntax, checking
/// group references the way RE2's `CheckRewriteString` does (Envoy rejects such configs).
fn convert_substitution(sub: &str, groups: usize) -> Result<String, String> {
    let mut out = String::with_capacity(sub.len() + 8);
    let mut chars = sub.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('\\') => out.push('\\'),
                Some(d) if d.is_ascii_digit() => {
                    let n = (d as u8 - b'0') as usize;
                    if n >= groups {
                        return Err(format!(
                            "substitution refers to group \\{n} but the pattern has {} group(s)",
                            groups.saturating_sub(1)
                        ));
                    }
                    out.push_str(&format!("${{{n}}}"));
                }
                Some(d) => return Err(format!("invalid escape \\{d} in substitution")),
                None => return Err("substitution ends with a lone backslash".to_string()),
            },
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    Ok(out)
}

fn check_pct(p: f64) -> Result<f64, String> {
    if p.is_finite() && (0.0..=100.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!("percentage {p} is outside 0..=100"))
    }
}

struct RouteCtx<'c> {
    service: &'c str,
    route: usize,
    origin: String,
}

impl RouteCtx<'_> {
    fn err(&self, field: impl Into<String>, message: impl Into<String>) -> InvalidPolicy {
        InvalidPolicy::Route {
            service: self.service.to_string(),
            route: self.route,
            origin: self.origin.clone(),
            field: field.into(),
            message: message.into(),
        }
    }
}

fn compile_uri(
    ctx: &RouteCtx<'_>,
    field: &str,
    m: Option<&wire::StringMatch>,
    ci: bool,
    gateway: bool,
) -> Result<UriCond, InvalidPolicy> {
    use wire::string_match::Kind;
    let Some(kind) = m.and_then(|m| m.kind.as_ref()) else {
        return Ok(UriCond::Any);
    };
    Ok(match kind {
        Kind::Exact(e) => UriCond::Exact {
            value: e.clone(),
            ci,
        },
        // istiod `TranslateRouteMatch`: Gateway API prefixes other than "/" become
        // `path_separated_prefix` with one trailing "/" trimmed.
        Kind::Prefix(p) if gateway && p != "/" => UriCond::SeparatedPrefix {
            value: p.strip_suffix('/').unwrap_or(p).to_string(),
            ci,
        },
        Kind::Prefix(p) => UriCond::Prefix {
            value: p.clone(),
            ci,
        },
        Kind::Regex(r) => UriCond::Regex(
            compile_full_regex(r).map_err(|e| ctx.err(format!("{field}.regex"), e.to_string()))?,
        ),
    })
}

fn compile_match(
    ctx: &RouteCtx<'_>,
    i: usize,
    m: &wire::RouteMatch,
    gateway: bool,
) -> Result<MatchCond, InvalidPolicy> {
    let f = |s: &str| format!("matches[{i}].{s}");
    let uri = compile_uri(ctx, &f("uri"), m.uri.as_ref(), m.ignore_uri_case, gateway)?;
    let mut headers = Vec::new();
    // istiod emits method / authority / scheme as header matchers on the pseudo-headers.
    for (field, pseudo, sm) in [
        ("scheme", ":scheme", m.scheme.as_ref()),
        ("method", ":method", m.method.as_ref()),
        ("authority", ":authority", m.authority.as_ref()),
    ] {
        if let Some(sm) = sm {
            let value = compile_value_match(Some(sm)).map_err(|e| ctx.err(f(field), e))?;
            headers.push(HeaderCond {
                name: pseudo.to_string(),
                value,
                invert: false,
                missing_as_empty: false,
            });
        }
    }
    for (j, h) in m.headers.iter().enumerate() {
        if h.name.is_empty() {
            return Err(ctx.err(f(&format!("headers[{j}].name")), "empty header name"));
        }
        let value = compile_value_match(h.value.as_ref())
            .map_err(|e| ctx.err(f(&format!("headers[{j}].value")), e))?;
        headers.push(HeaderCond {
            name: h.name.to_ascii_lowercase(),
            value,
            invert: false,
            missing_as_empty: false,
        });
    }
    for (j, h) in m.without_headers.iter().enumerate() {
        if h.name.is_empty() {
            return Err(ctx.err(
                f(&format!("without_headers[{j}].name")),
                "empty header name",
            ));
        }
        let value = compile_value_match(h.value.as_ref())
            .map_err(|e| ctx.err(f(&format!("without_headers[{j}].value")), e))?;
        // istiod: `invert_match`, plus `treat_missing_header_as_empty` unless it is a presence
        // match (the two conflict in Envoy).
        let missing_as_empty = value.is_some();
        headers.push(HeaderCond {
            name: h.name.to_ascii_lowercase(),
            value,
            invert: true,
            missing_as_empty,
        });
    }
    let mut query = Vec::new();
    for (j, q) in m.query_params.iter().enumerate() {
        if q.name.is_empty() {
            return Err(ctx.err(
                f(&format!("query_params[{j}].name")),
                "empty parameter name",
            ));
        }
        let value = compile_value_match(q.value.as_ref())
            .map_err(|e| ctx.err(f(&format!("query_params[{j}].value")), e))?;
        query.push(QueryCond {
            name: q.name.clone(),
            value,
        });
    }
    let port = u16::try_from(m.port).map_err(|_| ctx.err(f("port"), "port out of range"))?;
    Ok(MatchCond {
        uri,
        headers,
        query,
        port,
    })
}

fn compile_route(
    ctx: &RouteCtx<'_>,
    r: &wire::HttpRoute,
    gateway: bool,
) -> Result<CompiledRoute, InvalidPolicy> {
    use wire::http_route::Action as WA;
    check_header_ops(ctx, "request_headers", r.request_headers.as_ref())?;
    check_header_ops(ctx, "response_headers", r.response_headers.as_ref())?;
    if let Some(WA::Forward(fw)) = &r.action {
        for (i, d) in fw.destinations.iter().enumerate() {
            let f = format!("forward.destinations[{i}]");
            check_header_ops(
                ctx,
                &format!("{f}.request_headers"),
                d.request_headers.as_ref(),
            )?;
            check_header_ops(
                ctx,
                &format!("{f}.response_headers"),
                d.response_headers.as_ref(),
            )?;
        }
    }
    let mut matches = Vec::with_capacity(r.matches.len());
    let mut match_names = Vec::with_capacity(r.matches.len());
    for (i, m) in r.matches.iter().enumerate() {
        matches.push(compile_match(ctx, i, m, gateway)?);
        match_names.push(m.name.clone());
    }
    let action = match &r.action {
        None => {
            return Err(ctx.err(
                "action",
                "route has neither forward, redirect nor direct_response",
            ))
        }
        Some(WA::Forward(fw)) => {
            if fw.destinations.is_empty() {
                return Err(ctx.err("forward.destinations", "no destination"));
            }
            // istiod ignores 0-weight destinations when there are several.
            let single = fw.destinations.len() == 1;
            let kept: Vec<&wire::Destination> = if single {
                fw.destinations.iter().collect()
            } else {
                fw.destinations.iter().filter(|d| d.weight > 0).collect()
            };
            let total: u64 = kept.iter().map(|d| u64::from(d.weight)).sum();
            if !single && total == 0 {
                return Err(ctx.err("forward.destinations", "weights sum to 0"));
            }
            let single = kept.len() == 1;
            let mut dests = Vec::with_capacity(kept.len());
            for (i, d) in kept.into_iter().enumerate() {
                if d.cluster.is_empty() && !d.unavailable {
                    return Err(ctx.err(
                        format!("forward.destinations[{i}].cluster"),
                        "empty cluster name",
                    ));
                }
                let probability = if single {
                    1.0
                } else {
                    d.weight as f64 / total as f64
                };
                dests.push(DestinationChoice {
                    cluster: d.cluster.clone(),
                    host: d.host.clone(),
                    port: d.port,
                    subset: d.subset.clone(),
                    weight: d.weight,
                    probability,
                    unavailable: d.unavailable,
                    request_header_ops: combine_ops(
                        r.request_headers.as_ref(),
                        d.request_headers.as_ref(),
                        single,
                    ),
                    response_header_ops: combine_ops(
                        r.response_headers.as_ref(),
                        d.response_headers.as_ref(),
                        single,
                    ),
                });
            }
            RouteAction::Forward(dests)
        }
        Some(WA::Redirect(rd)) => {
            let status = match rd.status {
                0 => 301,
                s @ (301 | 302 | 303 | 307 | 308) => s as u16,
                s => {
                    return Err(ctx.err(
                        "redirect.status",
                        format!(
                            "{s} is not a redirect code Istio supports (301, 302, 303, 307, 308)"
                        ),
                    ))
                }
            };
            if rd.port > 65535 {
                return Err(ctx.err("redirect.port", "port out of range"));
            }
            let scheme = (!rd.scheme.is_empty()).then(|| rd.scheme.clone());
            // istiod `ApplyRedirect`: an explicit :80 with http (or :443 with https) is dropped;
            // the waypoint listener is plaintext, so an unset scheme counts as http.
            let eff_scheme = scheme.as_deref().unwrap_or("http");
            let mut port = if rd.port_from_scheme { 0 } else { rd.port };
            if (port == 80 && eff_scheme == "http") || (port == 443 && eff_scheme == "https") {
                port = 0;
            }
            if rd.replace_prefix && rd.uri.is_empty() {
                return Err(ctx.err("redirect.uri", "replace_prefix needs a uri"));
            }
            RouteAction::Redirect(CompiledRedirect {
                uri: (!rd.uri.is_empty()).then(|| rd.uri.clone()),
                replace_prefix: rd.replace_prefix,
                authority: (!rd.authority.is_empty()).then(|| rd.authority.clone()),
                port,
                scheme,
                status,
            })
        }
        Some(WA::DirectResponse(dr)) => {
            if !(100..=599).contains(&dr.status) {
                return Err(ctx.err("direct_response.status", "status must be within 100..=599"));
            }
            RouteAction::Direct {
                status: dr.status as u16,
                body: dr.body.clone(),
            }
        }
    };

    let (rr, ra) = header_phases(r.response_headers.as_ref());
    let mut local_response_ops = rr;
    local_response_ops.extend(ra);

    let mut rewrite = CompiledRewrite::default();
    if let Some(rw) = &r.rewrite {
        let has_regex = rw.uri_regex.as_ref().is_some_and(|x| !x.pattern.is_empty());
        let n_kinds =
            usize::from(has_regex) + usize::from(rw.has_uri) + usize::from(rw.has_full_path);
        if n_kinds > 1 {
            return Err(ctx.err(
                "rewrite",
                "only one of uri, uri_regex and full_path may be set",
            ));
        }
        if let Some(rx) = rw.uri_regex.as_ref().filter(|_| has_regex) {
            let re = Regex::new(&rx.pattern)
                .map_err(|e| ctx.err("rewrite.uri_regex.pattern", e.to_string()))?;
            let sub = convert_substitution(&rx.substitution, re.captures_len())
                .map_err(|e| ctx.err("rewrite.uri_regex.substitution", e))?;
            rewrite.uri_regex = Some((re, sub));
        }
        // istiod only emits prefix_rewrite for a non-empty `rewrite.uri`.
        if rw.has_uri && !rw.uri.is_empty() {
            rewrite.uri = Some(rw.uri.clone());
        }
        if rw.has_full_path {
            rewrite.full_path = Some(rw.full_path.clone());
        }
        if !rw.authority.is_empty() {
            rewrite.authority = Some(rw.authority.clone());
        }
    }

    let fault = match &r.fault {
        None => None,
        Some(f) => {
            let delay = match &f.delay {
                // Envoy delays only when the duration is > 0 ms.
                Some(d) if d.fixed_delay_ms == 0 => None,
                None => None,
                Some(d) => Some(FaultDelay {
                    fixed_delay_ms: d.fixed_delay_ms,
                    percentage: check_pct(d.percentage)
                        .map_err(|e| ctx.err("fault.delay.percentage", e))?,
                }),
            };
            let abort = match &f.abort {
                None => None,
                Some(a) => {
                    // Envoy `FaultFilter::abortStatus`: an HTTP status wins; a gRPC-only abort
                    // answers HTTP 200 with grpc-status.
                    let grpc_status =
                        (a.grpc_status != 0 && a.http_status == 0).then_some(a.grpc_status);
                    if grpc_status.is_none() && !(200..=599).contains(&a.http_status) {
                        return Err(
                            ctx.err("fault.abort.http_status", "status must be within 200..=599")
                        );
                    }
                    if a.grpc_status > 16 {
                        return Err(ctx.err("fault.abort.grpc_status", "not a gRPC status code"));
                    }
                    Some(FaultAbort {
                        http_status: a.http_status as u16,
                        grpc_status,
                        percentage: check_pct(a.percentage)
                            .map_err(|e| ctx.err("fault.abort.percentage", e))?,
                    })
                }
            };
            (delay.is_some() || abort.is_some()).then_some(FaultDecision { delay, abort })
        }
    };

    if r.mirrors.len() > 64 {
        return Err(ctx.err("mirrors", "at most 64 mirrors are supported"));
    }
    let mut mirrors = Vec::with_capacity(r.mirrors.len());
    for (i, m) in r.mirrors.iter().enumerate() {
        if m.cluster.is_empty() {
            return Err(ctx.err(format!("mirrors[{i}].cluster"), "empty cluster name"));
        }
        mirrors.push(MirrorTarget {
            cluster: m.cluster.clone(),
            host: m.host.clone(),
            port: m.port,
            subset: m.subset.clone(),
            percentage: check_pct(m.percentage)
                .map_err(|e| ctx.err(format!("mirrors[{i}].percentage"), e))?,
        });
    }

    let cors = match &r.cors {
        None => None,
        Some(c) => {
            let mut origins = Vec::with_capacity(c.allow_origins.len());
            for (i, o) in c.allow_origins.iter().enumerate() {
                use wire::string_match::Kind;
                let m = match &o.kind {
                    None => continue,
                    Some(Kind::Exact(e)) => StrMatcher::Exact(e.clone()),
                    Some(Kind::Prefix(p)) => StrMatcher::Prefix(p.clone()),
                    Some(Kind::Regex(rx)) => {
                        StrMatcher::Regex(compile_full_regex(rx).map_err(|e| {
                            ctx.err(format!("cors.allow_origins[{i}].regex"), e.to_string())
                        })?)
                    }
                };
                origins.push(m);
            }
            Some(CompiledCors {
                origins,
                // istiod `TranslateCORSPolicy` joins the lists with ",".
                allow_methods: c.allow_methods.join(","),
                allow_headers: c.allow_headers.join(","),
                expose_headers: c.expose_headers.join(","),
                max_age: if c.max_age_seconds > 0 {
                    c.max_age_seconds.to_string()
                } else {
                    String::new()
                },
                allow_credentials: c.allow_credentials == wire::OptionalBool::True as i32,
                forward_unmatched: c.unmatched_preflights_forward,
            })
        }
    };

    Ok(CompiledRoute {
        origin: r.origin.clone().unwrap_or_default(),
        matches,
        match_names,
        action,
        local_response_ops,
        rewrite,
        retry: r.retries.clone(),
        timeout_ms: r.timeout_ms,
        fault,
        mirrors,
        cors,
    })
}

fn compile_service(
    si: usize,
    s: &wire::Service,
    n_authz: usize,
) -> Result<CompiledService, InvalidPolicy> {
    let label = if s.hostname.is_empty() {
        format!("#{si}")
    } else {
        s.hostname.clone()
    };
    let serr = |field: &str, message: String| InvalidPolicy::Service {
        service: label.clone(),
        field: field.to_string(),
        message,
    };
    if s.hostname.is_empty() {
        return Err(serr("hostname", "empty hostname".to_string()));
    }
    let hostname = s.hostname.to_ascii_lowercase();
    let route_source = wire::RouteSource::try_from(s.route_source)
        .map_err(|_| serr("route_source", format!("unknown value {}", s.route_source)))?;
    for (i, &a) in s.authorization_policies.iter().enumerate() {
        if a as usize >= n_authz {
            return Err(serr(
                &format!("authorization_policies[{i}]"),
                format!("index {a} is out of range ({n_authz} policies)"),
            ));
        }
    }
    let mut ports = Vec::with_capacity(s.ports.len());
    for (i, p) in s.ports.iter().enumerate() {
        let number = u16::try_from(p.number)
            .ok()
            .filter(|n| *n != 0)
            .ok_or_else(|| {
                serr(
                    &format!("ports[{i}].number"),
                    format!("invalid port {}", p.number),
                )
            })?;
        ports.push((
            number,
            vec![DestinationChoice {
                cluster: p.cluster.clone(),
                host: hostname.clone(),
                port: p.number,
                subset: String::new(),
                weight: 100,
                probability: 1.0,
                unavailable: p.cluster.is_empty(),
                request_header_ops: Vec::new(),
                response_header_ops: Vec::new(),
            }],
            p.default_route_retry.clone(),
        ));
    }
    let gateway = route_source == wire::RouteSource::HttpRoute;
    let mut routes = Vec::with_capacity(s.routes.len());
    let mut index = RouteIndex::default();
    for (ri, r) in s.routes.iter().enumerate() {
        let ctx = RouteCtx {
            service: &label,
            route: ri,
            origin: origin_label(r.origin.as_ref()),
        };
        let cr = compile_route(&ctx, r, gateway)?;
        if cr.matches.is_empty() {
            index.add(ri as u32, u32::MAX, &UriCond::Any);
        } else {
            for (mi, m) in cr.matches.iter().enumerate() {
                index.add(ri as u32, mi as u32, &m.uri);
            }
        }
        routes.push(cr);
    }
    index
        .finish()
        .map_err(|e| serr("routes", format!("regex set: {e}")))?;
    Ok(CompiledService {
        hostname,
        namespace: s.namespace.clone(),
        name: s.name.clone(),
        origin: s.origin.clone(),
        ports,
        route_source,
        authz_bound: s.authorization_policies.clone(),
        routes,
        index,
    })
}

/// Split `host[:port]` (IPv6 literals in brackets) into host and numeric port.
fn split_host_port(authority: &str) -> (&str, Option<u16>) {
    if let Some(rest) = authority.strip_prefix('[') {
        if let Some(end) = rest.find(']') {
            let host = &rest[..end];
            let port = rest[end + 1..]
                .strip_prefix(':')
                .and_then(|p| p.parse().ok());
            return (host, port);
        }
        return (authority, None);
    }
    match authority.rfind(':') {
        Some(i) if authority[..i].find(':').is_none() => match authority[i + 1..].parse() {
            Ok(p) => (&authority[..i], Some(p)),
            Err(_) => (authority, None),
        },
        _ => (authority, None),
    }
}

impl CompiledPolicy {
    /// Validate and index a wire policy. Called once per configuration.
    pub fn compile(policy: &wire::Policy) -> Result<CompiledPolicy, InvalidPolicy> {
        if policy.schema_version != layover_proto::SCHEMA_VERSION {
            return Err(InvalidPolicy::SchemaVersion {
                found: policy.schema_version,
                supported: layover_proto::SCHEMA_VERSION,
            });
        }
        let mesh = policy.mesh.clone().unwrap_or_default();
        let path_normalization = wire::PathNormalization::try_from(mesh.path_normalization)
            .map_err(|_| InvalidPolicy::Service {
                service: "(mesh)".to_string(),
                field: "mesh.path_normalization".to_string(),
                message: format!("unknown value {}", mesh.path_normalization),
            })?;
        let authz = CompiledAuthz::compile(&policy.authorization_policies)?;
        let n_authz = policy.authorization_policies.len();

        let mut services = Vec::with_capacity(policy.services.len());
        let mut by_host = FxHashMap::default();
        let mut by_ip = FxHashMap::default();
        for (si, s) in policy.services.iter().enumerate() {
            let cs = compile_service(si, s, n_authz)?;
            let idx = si as u32;
            if by_host.insert(cs.hostname.clone(), idx).is_some() {
                return Err(InvalidPolicy::Service {
                    service: cs.hostname.clone(),
                    field: "hostname".to_string(),
                    message: "duplicate service hostname".to_string(),
                });
            }
            for (i, a) in s.addresses.iter().enumerate() {
                let ip: IpAddr = a.parse().map_err(|_| InvalidPolicy::Service {
                    service: cs.hostname.clone(),
                    field: format!("addresses[{i}]"),
                    message: format!("{a:?} is not an IP address"),
                })?;
                if let Some(prev) = by_ip.insert(ip, idx) {
                    if prev != idx {
                        return Err(InvalidPolicy::Service {
                            service: cs.hostname.clone(),
                            field: format!("addresses[{i}]"),
                            message: format!("address {ip} is already used by another service"),
                        });
                    }
                }
            }
            services.push(cs);
        }

        // Istio sidecar virtual-host domains: FQDN, `name.ns.svc`, `name.ns`, and the short name
        // (which istiod only emits for clients in the same namespace; a waypoint has no client
        // namespace, so the short name is kept only when it is unambiguous).
        let mut by_authority: FxHashMap<String, u32> = FxHashMap::default();
        let mut short: FxHashMap<String, Option<u32>> = FxHashMap::default();
        for (i, s) in services.iter().enumerate() {
            let idx = i as u32;
            by_authority.insert(s.hostname.clone(), idx);
            let name = s.name.to_ascii_lowercase();
            let ns = s.namespace.to_ascii_lowercase();
            if !name.is_empty()
                && !ns.is_empty()
                && s.hostname.starts_with(&format!("{name}.{ns}.svc."))
            {
                by_authority
                    .entry(format!("{name}.{ns}.svc"))
                    .or_insert(idx);
                by_authority.entry(format!("{name}.{ns}")).or_insert(idx);
                short
                    .entry(name)
                    .and_modify(|v| *v = None)
                    .or_insert(Some(idx));
            }
        }
        for (name, idx) in short {
            if let Some(idx) = idx {
                by_authority.entry(name).or_insert(idx);
            }
        }

        Ok(CompiledPolicy {
            services,
            by_host,
            by_ip,
            by_authority,
            needs: authz.needs(),
            authz,
            default_retry: mesh.default_retry,
            path_normalization,
            jwt: JwtSettings::of(&policy.jwt_rules),
        })
    }

    /// The policy's RequestAuthentication settings the filters need.
    pub fn jwt(&self) -> &JwtSettings {
        &self.jwt
    }

    /// The connection attributes this policy can read: an adapter fetches only these from its
    /// host (each is a host call, and for proxy-wasm a copy into VM memory). Routing reads none
    /// of them (the service comes from the CONNECT authority or the Host header); only
    /// AuthorizationPolicy predicates do.
    pub fn needs(&self) -> ConnectionNeeds {
        self.needs
    }

    /// MeshConfig `pathNormalization` the policy was compiled with.
    pub fn path_normalization(&self) -> wire::PathNormalization {
        self.path_normalization
    }

    /// The mesh default retry policy, if any.
    pub fn default_retry(&self) -> Option<&wire::RetryPolicy> {
        self.default_retry.as_ref()
    }

    /// The services this policy serves.
    pub fn services(&self) -> impl Iterator<Item = ServiceRef<'_>> + '_ {
        self.services.iter().map(CompiledService::as_ref)
    }

    /// Resolve a Host / `:authority` header to a service FQDN the way Istio's sidecar virtual
    /// hosts do: `name`, `name.ns`, `name.ns.svc`, the FQDN, or a service VIP, each optionally
    /// with `:port` (which must then be one of the service's ports). Case-insensitive.
    pub fn service_for_authority(&self, authority: &str) -> Option<&str> {
        let (host, port) = split_host_port(authority.trim());
        let host = host.strip_suffix('.').unwrap_or(host);
        let idx = match host.parse::<IpAddr>() {
            Ok(ip) => self.by_ip.get(&ip).copied(),
            Err(_) => match self.by_authority.get(host) {
                Some(i) => Some(*i),
                None => self.by_authority.get(&host.to_ascii_lowercase()).copied(),
            },
        }?;
        let svc = self.services.get(idx as usize)?;
        if let Some(p) = port {
            if !svc.ports.iter().any(|(n, _, _)| *n == p) {
                return None;
            }
        }
        Some(svc.hostname.as_str())
    }

    fn find_service(&self, req: &RequestView<'_>) -> Option<&CompiledService> {
        if let Some(name) = req.destination.service {
            let name = name.strip_suffix('.').unwrap_or(name);
            let found = match self.by_host.get(name) {
                Some(i) => Some(*i),
                None if name.bytes().any(|b| b.is_ascii_uppercase()) => {
                    self.by_host.get(&name.to_ascii_lowercase()).copied()
                }
                None => None,
            };
            if let Some(i) = found {
                return self.services.get(i as usize);
            }
        }
        let ip = req.destination.ip?;
        self.by_ip
            .get(&ip)
            .and_then(|i| self.services.get(*i as usize))
    }

    /// The request's service and the AuthorizationPolicy result for it: the first step of
    /// [`CompiledPolicy::decide`], and all of [`CompiledPolicy::authorize`].
    fn authorize_service<'a>(
        &'a self,
        req: &RequestView<'a>,
    ) -> Option<(&'a CompiledService, AuthzDecision<'a>)> {
        let svc = self.find_service(req)?;
        // istiod builds jwt_authn per service chain (listener_waypoint.go:876-878 @ 1.30.3): a
        // token counts only where a RequestAuthentication of its issuer binds the service.
        let scoped;
        let req = match req.jwt {
            Some(j) if !self.jwt.binds(j, &svc.hostname) => {
                scoped = RequestView { jwt: None, ..*req };
                &scoped
            }
            _ => req,
        };
        Some((svc, self.authz.evaluate(&svc.authz_bound, req)))
    }

    /// AuthorizationPolicy only: the same service lookup and evaluation as
    /// [`CompiledPolicy::decide`] runs first, without routing. For the authorization-only mode
    /// (route B), where the proxy's own routes do the rest. Pure; allocates nothing.
    pub fn authorize<'a>(&'a self, req: &RequestView<'a>) -> Authorization<'a> {
        match self.authorize_service(req) {
            Some((svc, az)) => Authorization {
                service: Some(svc.as_ref()),
                authz: Some(az),
            },
            None => Authorization {
                service: None,
                authz: None,
            },
        }
    }

    /// Decide what happens to one request. Deterministic; pure; allocates only when the decision
    /// needs a new string (rewritten path, redirect location) or a header repeats.
    ///
    /// Order follows the waypoint's HTTP filter chain: RBAC (AuthorizationPolicy) first, then
    /// route selection, then CORS, then fault injection, then the route action.
    pub fn decide<'a>(&'a self, req: &RequestView<'a>) -> Decision<'a> {
        let normalized_path = req.path_without_query();
        let mut d = Decision {
            action: Action::NoRoute,
            status: None,
            reason: "",
            body: None,
            service: None,
            authz: None,
            route: None,
            normalized_path,
            path: Cow::Borrowed(req.path),
            authority: Cow::Borrowed(req.authority),
            destinations: &[],
            route_destinations: &[],
            path_rewritten: false,
            authority_rewritten: false,
            response_header_ops: &[],
            location: None,
            retry: None,
            timeout_ms: 0,
            fault: None,
            mirrors: &[],
            cors: None,
            unavailable_status: 503,
        };
        let Some((svc, az)) = self.authorize_service(req) else {
            d.action = Action::UnknownService;
            d.status = Some(404);
            d.reason = "unknown_service";
            return d;
        };
        d.service = Some(svc.as_ref());
        if svc.route_source == wire::RouteSource::HttpRoute {
            d.unavailable_status = 500;
        }

        let allowed = az.allowed;
        d.authz = Some(az);
        if !allowed {
            d.action = Action::Deny;
            d.status = Some(403);
            d.reason = "rbac_access_denied";
            d.body = Some(RBAC_DENIED_BODY);
            // Envoy resolved the route before RBAC answered; its response header operations
            // apply to the 403 too (see `Decision::route_destinations`).
            d.route_destinations = self.route_destinations_for(svc, req, normalized_path);
            return d;
        }

        if svc.route_source == wire::RouteSource::Default {
            let Some((dest, port_retry)) = default_port_destinations(svc, req.destination.port)
            else {
                d.action = Action::NoRoute;
                d.status = Some(404);
                d.reason = "no_service_port";
                return d;
            };
            d.route = Some(MatchedRoute {
                index: None,
                origin: None,
                match_index: None,
                match_name: "",
                is_default: true,
            });
            d.action = Action::Forward;
            d.reason = "default_route";
            d.destinations = dest;
            d.route_destinations = dest;
            d.retry = match port_retry {
                Some(policy) => Some(EffectiveRetry {
                    policy,
                    from_mesh_default: false,
                }),
                None => self.default_retry.as_ref().map(|policy| EffectiveRetry {
                    policy,
                    from_mesh_default: true,
                }),
            };
            if dest.first().is_some_and(|x| x.unavailable) {
                d.action = Action::Unavailable;
                d.status = Some(d.unavailable_status);
                d.reason = "cluster_not_found";
            }
            return d;
        }

        let Some((ri, mi, matched_len)) = select_route(svc, req, normalized_path) else {
            d.action = Action::NoRoute;
            d.status = Some(404);
            d.reason = "route_not_found";
            return d;
        };
        let Some(route) = svc.routes.get(ri) else {
            d.status = Some(404);
            d.reason = "route_not_found";
            return d;
        };
        d.route = Some(MatchedRoute {
            index: Some(ri),
            origin: Some(&route.origin),
            match_index: mi,
            match_name: mi
                .and_then(|i| route.match_names.get(i))
                .map(String::as_str)
                .unwrap_or(""),
            is_default: false,
        });

        // CORS filter.
        if let Some(c) = &route.cors {
            d.cors = evaluate_cors(c, req);
            if let Some(cd) = d.cors {
                if cd.kind == CorsKind::Preflight {
                    d.action = Action::DirectResponse;
                    d.status = Some(200);
                    d.reason = "cors_preflight";
                    return d;
                }
            }
        }

        // Fault filter.
        d.fault = route.fault;
        let uri_cond = mi.and_then(|i| route.matches.get(i)).map(|m| &m.uri);
        match &route.action {
            RouteAction::Forward(dests) => {
                d.action = Action::Forward;
                d.reason = "forward";
                d.destinations = dests.as_slice();
                d.route_destinations = dests.as_slice();
                d.retry = match &route.retry {
                    Some(policy) => Some(EffectiveRetry {
                        policy,
                        from_mesh_default: false,
                    }),
                    None => self.default_retry.as_ref().map(|policy| EffectiveRetry {
                        policy,
                        from_mesh_default: true,
                    }),
                };
                d.timeout_ms = route.timeout_ms;
                d.mirrors = route.mirrors.as_slice();
                if let Some(p) = rewrite_path(
                    &route.rewrite,
                    svc.route_source,
                    uri_cond,
                    req.path,
                    normalized_path,
                    matched_len,
                ) {
                    d.path = Cow::Owned(p);
                    d.path_rewritten = true;
                }
                if let Some(a) = &route.rewrite.authority {
                    d.authority = Cow::Borrowed(a.as_str());
                    d.authority_rewritten = true;
                }
                if dests.len() == 1 && dests.first().is_some_and(|x| x.unavailable) {
                    d.action = Action::Unavailable;
                    d.status = Some(d.unavailable_status);
                    d.reason = "cluster_not_found";
                }
            }
            RouteAction::Redirect(rd) => {
                d.action = Action::Redirect;
                d.reason = "redirect";
                d.status = Some(rd.status);
                d.response_header_ops = route.local_response_ops.as_slice();
                d.location = Some(redirect_location(rd, req, normalized_path, matched_len));
            }
            RouteAction::Direct { status, body } => {
                d.action = Action::DirectResponse;
                d.reason = "direct_response";
                d.status = Some(*status);
                d.body = Some(body.as_slice());
                d.response_header_ops = route.local_response_ops.as_slice();
            }
        }
        // A fault abort at 100% answers before the router runs, whatever the route action.
        if let Some(a) = route.fault.and_then(|f| f.abort) {
            if a.percentage >= 100.0 {
                d.action = Action::Abort;
                d.status = Some(a.status());
                d.reason = "fault_filter_abort";
                d.location = None;
                d.body = None;
            }
        }
        d
    }
}

impl CompiledPolicy {
    /// The destinations of the forwarding route a request matches, whatever the proxy then does
    /// with it (empty when no route matches or it redirects / answers directly).
    fn route_destinations_for<'a>(
        &'a self,
        svc: &'a CompiledService,
        req: &RequestView<'a>,
        normalized_path: &'a str,
    ) -> &'a [DestinationChoice] {
        if svc.route_source == wire::RouteSource::Default {
            return default_port_destinations(svc, req.destination.port).map_or(&[], |(d, _)| d);
        }
        let Some((ri, _, _)) = select_route(svc, req, normalized_path) else {
            return &[];
        };
        match svc.routes.get(ri).map(|r| &r.action) {
            Some(RouteAction::Forward(dests)) => dests.as_slice(),
            _ => &[],
        }
    }
}

/// The default route of a service without routes: its port's destination (the only port when
/// the request names none).
fn default_port_destinations(
    svc: &CompiledService,
    port: u16,
) -> Option<(&[DestinationChoice], Option<&wire::RetryPolicy>)> {
    svc.ports
        .iter()
        .find(|(n, _, _)| *n == port)
        .or_else(|| {
            if svc.ports.len() == 1 && port == 0 {
                svc.ports.first()
            } else {
                None
            }
        })
        .map(|(_, dest, retry)| (dest.as_slice(), retry.as_ref()))
}

/// The first route (index, match index, matched path length) of the service's table that the
/// request matches.
fn select_route<'a>(
    svc: &'a CompiledService,
    req: &RequestView<'a>,
    normalized_path: &'a str,
) -> Option<(usize, Option<usize>, usize)> {
    let query = req.query();
    svc.index.first(normalized_path, |e: Entry| {
        let route = svc.routes.get(e.route as usize)?;
        if e.m == u32::MAX {
            return Some((e.route as usize, None, 1usize));
        }
        let m = route.matches.get(e.m as usize)?;
        let len = m.uri.matched_len(normalized_path)?;
        m.matches_rest(req, query)
            .then_some((e.route as usize, Some(e.m as usize), len))
    })
}

impl CompiledService {
    fn as_ref(&self) -> ServiceRef<'_> {
        ServiceRef {
            hostname: &self.hostname,
            namespace: &self.namespace,
            name: &self.name,
            origin: &self.origin,
        }
    }
}

/// Envoy's CORS filter (`cors_filter.cc` `decodeHeaders` / `encodeHeaders`) for one route.
fn evaluate_cors<'a>(c: &'a CompiledCors, req: &RequestView<'a>) -> Option<CorsDecision<'a>> {
    let origin = req
        .header_values("origin")
        .next()
        .filter(|o| !o.is_empty())?;
    // `isOriginAllowed`: a matcher that accepts "*" allows every origin.
    let allowed = c
        .origins
        .iter()
        .any(|m| m.matches("*") || m.matches(origin));
    let nonempty = |s: &'a str| (!s.is_empty()).then_some(s);
    let acrm = req
        .header_values("access-control-request-method")
        .next()
        .unwrap_or("");
    if req.method != "OPTIONS" || acrm.is_empty() {
        return Some(CorsDecision {
            kind: CorsKind::Actual,
            origin_allowed: allowed,
            allow_origin: allowed.then_some(origin),
            allow_credentials: allowed && c.allow_credentials,
            allow_methods: None,
            allow_headers: None,
            max_age: None,
            expose_headers: if allowed {
                nonempty(&c.expose_headers)
            } else {
                None
            },
        });
    }
    if !allowed && c.forward_unmatched {
        return Some(CorsDecision {
            kind: CorsKind::PreflightForwarded,
            origin_allowed: false,
            allow_origin: None,
            allow_credentials: false,
            allow_methods: None,
            allow_headers: None,
            max_age: None,
            expose_headers: None,
        });
    }
    // The preflight reply carries the policy's headers even for a non-allowed origin (only
    // access-control-allow-origin depends on the match); "*" echoes the request's values.
    let allow_methods = if c.allow_methods == "*" {
        Some(acrm)
    } else {
        nonempty(&c.allow_methods)
    };
    let allow_headers = if c.allow_headers == "*" {
        req.header_values("access-control-request-headers").next()
    } else {
        nonempty(&c.allow_headers)
    };
    Some(CorsDecision {
        kind: CorsKind::Preflight,
        origin_allowed: allowed,
        allow_origin: allowed.then_some(origin),
        allow_credentials: c.allow_credentials,
        allow_methods,
        allow_headers,
        max_age: nonempty(&c.max_age),
        expose_headers: None,
    })
}

/// The path the upstream receives, or `None` when it is unchanged.
///
/// - `uri_regex` → Envoy `regex_rewrite`: every match in the path (query excluded) replaced.
/// - `full_path` → the whole path replaced, query kept.
/// - `uri` → Envoy `prefix_rewrite`, which istiod always emits for `rewrite.uri`: the matched
///   prefix is replaced — for `prefix` matches the prefix, for `exact` the whole path, for regex
///   matches the whole path, and for a match without uri the implicit prefix "/"
///   (`currentUrlPathAfterRewriteWithMatchedPath`). The query is kept.
///   Gateway API `ReplacePrefixMatch: /` is the exception: istiod emits
///   `regex_rewrite ^<prefix>(/?)(.*) → /\2` so no double slash appears.
fn rewrite_path(
    rw: &CompiledRewrite,
    source: wire::RouteSource,
    uri_cond: Option<&UriCond>,
    full: &str,
    path: &str,
    matched_len: usize,
) -> Option<String> {
    let query = &full[path.len()..];
    if let Some((re, sub)) = &rw.uri_regex {
        let replaced = re.replace_all(path, sub.as_str());
        return Some(format!("{replaced}{query}"));
    }
    if let Some(fp) = &rw.full_path {
        return Some(format!("{fp}{query}"));
    }
    let uri = rw.uri.as_ref()?;
    if source == wire::RouteSource::HttpRoute && uri == "/" {
        let prefix_len = match uri_cond {
            Some(UriCond::SeparatedPrefix { value, .. }) => value.len(),
            _ => 0,
        };
        let rest = path.get(prefix_len..).unwrap_or("");
        let rest = rest.strip_prefix('/').unwrap_or(rest);
        return Some(format!("/{rest}{query}"));
    }
    let tail = full.get(matched_len..).unwrap_or("");
    Some(format!("{uri}{tail}"))
}

/// Envoy `Http::Utility::newUri` for a route redirect, from istiod's `ApplyRedirect` output.
fn redirect_location(
    rd: &CompiledRedirect,
    req: &RequestView<'_>,
    path: &str,
    matched_len: usize,
) -> String {
    let scheme = rd.scheme.as_deref().unwrap_or(req.scheme);
    let port = if rd.port != 0 {
        format!(":{}", rd.port)
    } else {
        String::new()
    };
    let host: &str = match &rd.authority {
        Some(a) => a,
        None => {
            // `processRequestHost`: drop the request's port when a new port is set, or when the
            // scheme changes away from the forwarded protocol and the port is that protocol's
            // default.
            let h = req.authority;
            let host_end = if h.starts_with('[') {
                h.rfind("]:").map(|i| i + 1)
            } else {
                h.rfind(':')
            };
            match host_end {
                Some(i) => {
                    let req_port = &h[i..];
                    let xfp = req
                        .header_values("x-forwarded-proto")
                        .next()
                        .unwrap_or(req.scheme);
                    let mut remove = !port.is_empty();
                    if scheme != xfp {
                        remove |= xfp == "https" && req_port == ":443";
                        remove |= xfp == "http" && req_port == ":80";
                    }
                    if remove {
                        &h[..i]
                    } else {
                        h
                    }
                }
                None => h,
            }
        }
    };
    let query = &req.path[path.len()..];
    let mut new_path = match &rd.uri {
        Some(u) if rd.replace_prefix => {
            format!("{u}{}", req.path.get(matched_len..).unwrap_or(""))
        }
        // A redirect path without its own query keeps the request's query.
        Some(u) if u.contains('?') => u.clone(),
        Some(u) => format!("{u}{query}"),
        None => req.path.to_string(),
    };
    if !new_path.starts_with('/') {
        new_path.insert(0, '/');
    }
    format!("{scheme}://{host}{port}{new_path}")
}
