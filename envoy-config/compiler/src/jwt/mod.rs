//! RequestAuthentication → the JWT rules of a waypoint.
//!
//! A RequestAuthentication applies to a waypoint exactly as an AuthorizationPolicy does: only
//! through `targetRefs` (`pilot/pkg/model/authentication.go:298-303 @ 1.30.3`,
//! `ShouldAttachPolicy`); selector and namespace-wide policies are skipped with a notice. The
//! rules of every bound policy are sorted by issuer (`pilot/pkg/security/authn/
//! policy_applier.go:84-89 @ 1.30.3`) and become Envoy's `jwt_authn` filter in the
//! generated configuration (`envoy-config/bootstrap`), as istiod's `convertToEnvoyJwtConfig`
//! builds it (`policy_applier.go:147-340 @ 1.30.3`).

use crate::authz::bind_refs;
use crate::diag::ObjRef;
use crate::model::JwtRuleSpec;
use crate::object::{Object, ObjectKind};
use crate::resolve::Ctx;
use crate::util::parse_duration_ms;
use layover_proto::v1 as pb;

/// istiod's JWKS fetch timeout when a rule sets none (`policy_applier.go:192 @ 1.30.3`).
const DEFAULT_TIMEOUT_MS: u64 = 5_000;

/// Translates every RequestAuthentication bound to this waypoint into its JWT rules, sorted by
/// issuer (stable, so rules of one issuer keep policy order: namespace, name, index).
pub(crate) fn compile_request_authentications(ctx: &mut Ctx) -> Vec<pb::JwtRule> {
    let bundle = ctx.bundle;
    let mut objs: Vec<&Object> = bundle
        .objects
        .iter()
        .filter(|o| matches!(o.kind, ObjectKind::RequestAuthentication(_)))
        .collect();
    objs.sort_by(|a, b| {
        (a.at.namespace.as_str(), a.at.name.as_str())
            .cmp(&(b.at.namespace.as_str(), b.at.name.as_str()))
    });
    let mut out = Vec::new();
    for o in objs {
        let ObjectKind::RequestAuthentication(d) = &o.kind else {
            continue;
        };
        let spec = &d.spec;
        let Some(hosts) = bind_refs(
            ctx,
            &o.at,
            spec.selector.is_some(),
            spec.target_ref.as_ref(),
            &spec.target_refs,
        ) else {
            continue;
        };
        let nerr = ctx.errors.len();
        let rules: Vec<pb::JwtRule> = spec
            .jwt_rules
            .iter()
            .enumerate()
            .map(|(i, r)| rule(ctx, &o.at, i, r, &hosts))
            .collect();
        if ctx.errors.len() == nerr {
            out.extend(rules);
        }
    }
    out.sort_by(|a, b| a.issuer.cmp(&b.issuer));
    out
}

/// Validates one `jwtRules[i]` as istiod's `validateJwtRule` does
/// (`pkg/config/validation/validation.go:1639-1705 @ 1.30.3`) and translates it.
fn rule(ctx: &mut Ctx, at: &ObjRef, i: usize, r: &JwtRuleSpec, hosts: &[String]) -> pb::JwtRule {
    let p = format!("spec.jwtRules[{i}]");
    for (k, a) in r.audiences.iter().enumerate() {
        if a.is_empty() {
            ctx.err(
                at,
                format!("{p}.audiences[{k}]"),
                "audience must be non-empty string",
            );
        }
    }
    if r.issuer.is_empty() && r.jwks_uri.is_empty() {
        ctx.err(
            at,
            format!("{p}.issuer"),
            "issuer or jwksUri must be non-empty string",
        );
    }
    let uri = if r.jwks_uri.is_empty() {
        None
    } else {
        match parse_jwks_uri(&r.jwks_uri) {
            Ok(u) => Some(u),
            Err(e) => {
                ctx.err(at, format!("{p}.jwksUri"), e);
                None
            }
        }
    };
    let mut jwks_cluster = String::new();
    if !r.jwks.is_empty() {
        if let Err(e) = check_jwks(&r.jwks) {
            ctx.err(at, format!("{p}.jwks"), format!("jwks parse error: {e}"));
        }
    } else if let Some((host, port)) = &uri {
        jwks_cluster = jwks_cluster_for(ctx, at, &format!("{p}.jwksUri"), host, *port);
    }
    for (k, h) in r.from_headers.iter().enumerate() {
        if h.name.is_empty() {
            ctx.err(
                at,
                format!("{p}.fromHeaders[{k}].name"),
                "location header name must be non-empty string",
            );
        }
    }
    for (k, q) in r.from_params.iter().enumerate() {
        if q.is_empty() {
            ctx.err(
                at,
                format!("{p}.fromParams[{k}]"),
                "location query must be non-empty string",
            );
        }
    }
    for (k, c) in r.from_cookies.iter().enumerate() {
        if c.is_empty() {
            ctx.err(
                at,
                format!("{p}.fromCookies[{k}]"),
                "cookie name must be non-empty string",
            );
        }
    }
    for (k, c) in r.output_claim_to_headers.iter().enumerate() {
        if c.claim.is_empty() || c.header.is_empty() {
            ctx.err(
                at,
                format!("{p}.outputClaimToHeaders[{k}]"),
                "outputClaimToHeaders header and claim value must be non-empty string",
            );
        } else if !is_strict_header_name(&c.header) {
            ctx.err(
                at,
                format!("{p}.outputClaimToHeaders[{k}].header"),
                format!("invalid header name {:?}", c.header),
            );
        }
    }
    let timeout_ms = match r.timeout.as_deref().map(parse_duration_ms) {
        None => DEFAULT_TIMEOUT_MS,
        Some(Ok(ms)) if ms > 0 => ms,
        Some(Ok(_)) => {
            ctx.err(
                at,
                format!("{p}.timeout"),
                "duration must be greater than 0",
            );
            DEFAULT_TIMEOUT_MS
        }
        Some(Err(e)) => {
            ctx.err(at, format!("{p}.timeout"), e);
            DEFAULT_TIMEOUT_MS
        }
    };
    pb::JwtRule {
        origin: Some(pb::Origin {
            kind: "RequestAuthentication".into(),
            namespace: at.namespace.clone(),
            name: at.name.clone(),
            index: i as u32,
            match_index: 0,
            element_name: String::new(),
        }),
        issuer: r.issuer.clone(),
        audiences: r.audiences.clone(),
        jwks: r.jwks.clone(),
        jwks_uri: r.jwks_uri.clone(),
        from_headers: r
            .from_headers
            .iter()
            .map(|h| pb::JwtHeader {
                name: h.name.clone(),
                prefix: h.prefix.clone(),
            })
            .collect(),
        from_params: r.from_params.clone(),
        from_cookies: r.from_cookies.clone(),
        forward_original_token: r.forward_original_token,
        output_payload_to_header: r.output_payload_to_header.clone(),
        output_claim_to_headers: r
            .output_claim_to_headers
            .iter()
            .map(|c| pb::JwtClaimToHeader {
                header: c.header.clone(),
                claim: c.claim.clone(),
            })
            .collect(),
        timeout_ms,
        space_delimited_claims: r.space_delimited_claims.clone(),
        services: hosts.to_vec(),
        jwks_cluster,
    }
}

/// istiod's `security.ParseJwksURI` (`pkg/config/security/security.go:77-104 @ 1.30.3`): an
/// http(s) URL with a host; the port is the URL's, else 80 / 443 by scheme.
fn parse_jwks_uri(uri: &str) -> Result<(String, u32), String> {
    let (rest, default_port) = if let Some(r) = uri.strip_prefix("https://") {
        (r, 443)
    } else if let Some(r) = uri.strip_prefix("http://") {
        (r, 80)
    } else {
        return Err(format!("{uri:?}: jwksUri must use http or https"));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    // `[v6]:port` keeps its colons inside the brackets.
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((h, tail)) => (h, tail.strip_prefix(':')),
            None => return Err(format!("{uri:?}: jwksUri has an unclosed [")),
        },
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=65535).contains(n))
            .ok_or_else(|| format!("{uri:?}: jwksUri has an invalid port {p:?}"))?,
    };
    if host.is_empty() {
        return Err(format!("{uri:?}: jwksUri has no host"));
    }
    Ok((host.to_ascii_lowercase(), port))
}

/// The cluster Envoy fetches a `jwksUri` through, or empty with a warning.
///
/// istiod's default fetch mode (`PILOT_JWT_ENABLE_REMOTE_JWKS=false`,
/// `pilot/pkg/features/pilot.go:44-54 @ 1.30.3`) has istiod fetch the keys and inline them; its
/// `envoy` / `hybrid` modes give Envoy a `remote_jwks` through the cluster of the service that
/// serves the URI's host (`policy_applier.go:197-216`, `model.LookupCluster`,
/// `telemetry_logging.go:545-579`). layover compiles offline and never fetches, so it takes
/// the second path whenever the input has that service (and port); otherwise the rule keeps
/// a key nobody can sign for, as istiod does when its own fetch fails
/// (`jwks_resolver.go:295-316`), and says so.
fn jwks_cluster_for(ctx: &mut Ctx, at: &ObjRef, path: &str, host: &str, port: u32) -> String {
    match ctx.svc(host) {
        Some(svc) if svc.ports.iter().any(|p| p.number == port) => {
            let cluster = ctx.cluster_name(port, "", host);
            ctx.info(
                at,
                path,
                format!("Envoy fetches the keys through cluster {cluster} (remote_jwks)"),
            );
            cluster
        }
        Some(_) => {
            ctx.warn(
                at,
                path,
                format!("service {host} has no port {port}: the keys cannot be fetched, so every token of this issuer is rejected (401); add the port or put the keys in jwks"),
            );
            String::new()
        }
        None => {
            ctx.warn(
                at,
                path,
                format!("no Service or ServiceEntry in the input serves {host}, and layover compiles offline: every token of this issuer is rejected (401), as istiod does when its fetch fails; add a ServiceEntry for {host} (Envoy then fetches the keys) or put the keys in jwks"),
            );
            String::new()
        }
    }
}

/// A JWKS document: a JSON object with a `keys` array of objects that each name a `kty`.
fn check_jwks(jwks: &str) -> Result<(), String> {
    let v: serde_json::Value = serde_json::from_str(jwks).map_err(|e| e.to_string())?;
    let keys = v
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or("expected an object with a \"keys\" array")?;
    for (i, k) in keys.iter().enumerate() {
        if k.get("kty").and_then(|t| t.as_str()).is_none() {
            return Err(format!("keys[{i}]: missing \"kty\""));
        }
    }
    Ok(())
}

/// istiod's `ValidateStrictHTTPHeaderName`: an RFC 7230 token.
fn is_strict_header_name(h: &str) -> bool {
    !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
