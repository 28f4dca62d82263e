//! Envoy's `jwt_authn` filter for a policy's RequestAuthentication rules, built as istiod's
//! `convertToEnvoyJwtConfig` builds it (`pilot/pkg/security/authn/policy_applier.go:147-340
//! @ 1.30.3`), and placed before the layover filter as istiod places authn before authz
//! (`pilot/pkg/networking/core/listener_waypoint.go:896-900 @ 1.30.3`).
//!
//! Two additions, both for layover's own reading of the verified payload
//! ([`JWT_PAYLOAD_HEADER`]): every provider writes its verified payload to that header
//! (`forward_payload_header`; a rule's own `outputPayloadToHeader` takes its place, as istiod
//! sets it), and an `envoy.filters.http.header_mutation` filter in front of `jwt_authn`
//! removes a client's copy of every such header, so it only ever carries what `jwt_authn`
//! verified.

use layover_contract::JWT_PAYLOAD_HEADER;
use layover_proto::v1::{JwtRule, Policy};
use serde_json::{json, Value};

/// Envoy's (and istiod's) name of the JWT filter (`pilot/pkg/xds/filters/filters.go:66`).
pub const JWT_AUTHN: &str = "envoy.filters.http.jwt_authn";
/// The filter that removes client copies of the payload headers before `jwt_authn`.
pub const JWT_PAYLOAD_STRIP: &str = "layover.jwt_payload_strip";

/// istiod's `PublicOnlyJwks` idea (`pilot/pkg/model/jwks_resolver.go:302-307, 318 @ 1.30.3`):
/// when the keys of a `jwksUri` are not available, a public key whose private half was
/// discarded at generation, so every token of that issuer is rejected (401). This key was
/// generated for layover; its private key was never stored.
const PUBLIC_ONLY_JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"layover-public-only","alg":"ES256","use":"sig","x":"WeLbuID1ZIeGo2PxpjB7inLidA0xM9jXCt0xVIzN1PQ","y":"POX14DrCJcpgBo1IzZFknn_UWOLyXn30oWkS3iMBUh4"}]}"#;

/// The headers `jwt_authn` writes verified payloads to, lower-case, deduplicated.
pub fn payload_headers(rules: &[JwtRule]) -> Vec<String> {
    let mut out = vec![JWT_PAYLOAD_HEADER.to_string()];
    for r in rules {
        let h = r.output_payload_to_header.to_ascii_lowercase();
        if !h.is_empty() && !out.contains(&h) {
            out.push(h);
        }
    }
    out
}

/// The HTTP filters to run before layover for `policy`: none without RequestAuthentication
/// rules, else the payload-header strip and `jwt_authn`.
pub fn jwt_filters(policy: &Policy) -> Vec<Value> {
    layover_filters(&policy.jwt_rules)
}

/// The rules that apply to the served service `host` (their RequestAuthentication binds it),
/// in the policy's (issuer) order: istiod builds `jwt_authn` per service chain
/// (`listener_waypoint.go:876-878 @ 1.30.3`).
fn rules_for(policy: &Policy, host: &str) -> Vec<JwtRule> {
    policy
        .jwt_rules
        .iter()
        .filter(|r| r.services.iter().any(|s| s == host))
        .cloned()
        .collect()
}

/// [`jwt_filters`] for one service chain (the istiod-shaped waypoint's route A).
pub fn jwt_filters_for_service(policy: &Policy, host: &str) -> Vec<Value> {
    layover_filters(&rules_for(policy, host))
}

/// [`istiod_jwt_filter`] for one service chain (istiod's own waypoint configuration).
pub fn istiod_jwt_filter_for_service(policy: &Policy, host: &str) -> Option<Value> {
    istiod_filter(&rules_for(policy, host))
}

fn layover_filters(rules: &[JwtRule]) -> Vec<Value> {
    if rules.is_empty() {
        return Vec::new();
    }
    let remove: Vec<Value> = payload_headers(rules)
        .into_iter()
        .map(|h| json!({ "remove": h }))
        .collect();
    vec![
        json!({
            "name": JWT_PAYLOAD_STRIP,
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
                "mutations": { "request_mutations": remove },
            },
        }),
        json!({
            "name": JWT_AUTHN,
            "typed_config": jwt_authn_config(rules),
        }),
    ]
}

/// `jwt_authn` exactly as istiod writes it (no layover payload header): for the native
/// translation. `None` without rules.
pub fn istiod_jwt_filter(policy: &Policy) -> Option<Value> {
    istiod_filter(&policy.jwt_rules)
}

fn istiod_filter(rules: &[JwtRule]) -> Option<Value> {
    if rules.is_empty() {
        return None;
    }
    let mut config = jwt_authn_config(rules);
    if let Some(ps) = config.get_mut("providers").and_then(Value::as_object_mut) {
        for (p, r) in ps.values_mut().zip(rules) {
            if r.output_payload_to_header.is_empty() {
                if let Some(o) = p.as_object_mut() {
                    o.remove("forward_payload_header");
                }
            }
        }
    }
    Some(json!({ "name": JWT_AUTHN, "typed_config": config }))
}

/// One provider (`policy_applier.go:162-248 @ 1.30.3`).
fn provider(r: &JwtRule) -> Value {
    let mut p = json!({
        "issuer": r.issuer,
        "audiences": r.audiences,
        "forward": r.forward_original_token,
        "forward_payload_header": if r.output_payload_to_header.is_empty() {
            JWT_PAYLOAD_HEADER
        } else {
            r.output_payload_to_header.as_str()
        },
        "payload_in_metadata": "payload",
        "normalize_payload_in_metadata": {
            "space_delimited_claims": space_delimited_claims(&r.space_delimited_claims),
        },
        // istiod: clearRouteCache for every proxy but sidecars (authentication.go:105).
        "clear_route_cache": true,
    });
    let obj = match p.as_object_mut() {
        Some(o) => o,
        None => return p,
    };
    if !r.output_claim_to_headers.is_empty() {
        let c: Vec<Value> = r
            .output_claim_to_headers
            .iter()
            .map(|c| json!({ "header_name": c.header, "claim_name": c.claim }))
            .collect();
        obj.insert("claim_to_headers".into(), json!(c));
    }
    if !r.from_headers.is_empty() {
        let h: Vec<Value> = r
            .from_headers
            .iter()
            .map(|h| json!({ "name": h.name, "value_prefix": h.prefix }))
            .collect();
        obj.insert("from_headers".into(), json!(h));
    }
    if !r.from_params.is_empty() {
        obj.insert("from_params".into(), json!(r.from_params));
    }
    if !r.from_cookies.is_empty() {
        obj.insert("from_cookies".into(), json!(r.from_cookies));
    }
    let (field, keys) = keys_source(r);
    obj.insert(field.into(), keys);
    p
}

/// Where Envoy takes a provider's keys from (`policy_applier.go:197-248 @ 1.30.3`): inline
/// keys; else `remote_jwks` through the cluster of the service serving `jwksUri` (istiod's
/// Envoy-fetch path, with its 5-minute cache), when the compiler found one; else the
/// public-only key (istiod's answer to a failed fetch), so every token is rejected.
fn keys_source(r: &JwtRule) -> (&'static str, Value) {
    if r.jwks.is_empty() && !r.jwks_cluster.is_empty() {
        let timeout_ms = if r.timeout_ms == 0 {
            5_000
        } else {
            r.timeout_ms
        };
        return (
            "remote_jwks",
            json!({
                "http_uri": {
                    "uri": r.jwks_uri,
                    "cluster": r.jwks_cluster,
                    "timeout": format!("{}.{:03}s", timeout_ms / 1000, timeout_ms % 1000),
                },
                "cache_duration": "300s",
            }),
        );
    }
    let keys = if r.jwks.is_empty() {
        PUBLIC_ONLY_JWKS
    } else {
        r.jwks.as_str()
    };
    ("local_jwks", json!({ "inline_string": keys }))
}

/// istiod's `buildSpaceDelimitedClaims` (`policy_applier.go:350-364 @ 1.30.3`).
fn space_delimited_claims(extra: &[String]) -> Vec<String> {
    let mut all: Vec<String> = extra.to_vec();
    all.extend(["permission".to_string(), "scope".to_string()]);
    all.sort();
    all.dedup();
    all
}

/// The filter config: providers `origins-<i>` over the issuer-sorted rules, and one rule for
/// every path requiring "a valid token of a provider, or none" (`policy_applier.go:249-340`).
fn jwt_authn_config(rules: &[JwtRule]) -> Value {
    let mut providers = serde_json::Map::new();
    let mut inner_and = Vec::new();
    let mut outer_or = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        let name = format!("origins-{i}");
        providers.insert(name.clone(), provider(r));
        inner_and.push(json!({ "requires_any": { "requirements": [
            { "provider_name": name },
            { "allow_missing": {} },
        ] } }));
        outer_or.push(json!({ "provider_name": name }));
    }
    let requires = if inner_and.len() == 1 {
        inner_and.remove(0)
    } else {
        outer_or.push(json!({ "requires_all": { "requirements": inner_and } }));
        json!({ "requires_any": { "requirements": outer_or } })
    };
    json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
        "providers": providers,
        "rules": [{ "match": { "prefix": "/" }, "requires": requires }],
        "bypass_cors_preflight": true,
    })
}

/// Puts [`jwt_filters`] first in the connection managers of `listeners` in `bootstrap`
/// (istiod's authn filter precedes everything of layover's).
pub(crate) fn insert_jwt_filters(bootstrap: &mut Value, policy: &Policy, listeners: &[&str]) {
    let filters = jwt_filters(policy);
    if filters.is_empty() {
        return;
    }
    let Some(ls) = bootstrap
        .pointer_mut("/static_resources/listeners")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for l in ls.iter_mut() {
        if !listeners.iter().any(|n| l["name"] == json!(n)) {
            continue;
        }
        let Some(chains) = l.get_mut("filter_chains").and_then(Value::as_array_mut) else {
            continue;
        };
        for chain in chains {
            let Some(nfs) = chain.get_mut("filters").and_then(Value::as_array_mut) else {
                continue;
            };
            for nf in nfs {
                if let Some(hf) = nf
                    .pointer_mut("/typed_config/http_filters")
                    .and_then(Value::as_array_mut)
                {
                    for (k, f) in filters.iter().enumerate() {
                        hf.insert(k, f.clone());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn rule(iss: &str) -> JwtRule {
        JwtRule {
            issuer: iss.into(),
            jwks: "{\"keys\":[]}".into(),
            timeout_ms: 5000,
            ..Default::default()
        }
    }

    /// policy_applier.go:306-330 @ 1.30.3: one provider → OR {provider, allow_missing}.
    #[test]
    fn one_provider_allows_missing() {
        let c = jwt_authn_config(&[rule("a")]);
        let req = &c["rules"][0]["requires"]["requires_any"]["requirements"];
        assert_eq!(req[0]["provider_name"], "origins-0");
        assert!(req[1]["allow_missing"].is_object());
        assert_eq!(c["bypass_cors_preflight"], true);
        assert_eq!(
            c["providers"]["origins-0"]["payload_in_metadata"],
            "payload"
        );
        assert_eq!(
            c["providers"]["origins-0"]["forward_payload_header"],
            JWT_PAYLOAD_HEADER
        );
    }

    /// policy_applier.go:332-340 @ 1.30.3: OR {P0, P1, AND{OR{P0,missing}, OR{P1,missing}}}.
    #[test]
    fn two_providers_shape() {
        let c = jwt_authn_config(&[rule("a"), rule("b")]);
        let req = &c["rules"][0]["requires"]["requires_any"]["requirements"];
        assert_eq!(req[0]["provider_name"], "origins-0");
        assert_eq!(req[1]["provider_name"], "origins-1");
        assert_eq!(
            req[2]["requires_all"]["requirements"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }

    /// policy_applier.go:350-364 @ 1.30.3.
    #[test]
    fn space_delimited_defaults_sorted() {
        assert_eq!(
            space_delimited_claims(&["roles".into(), "scope".into()]),
            ["permission", "roles", "scope"]
        );
    }

    #[test]
    fn strip_precedes_jwt_authn_and_names_output_header() {
        let mut r = rule("a");
        r.output_payload_to_header = "X-Payload".into();
        let f = jwt_filters(&Policy {
            jwt_rules: vec![r],
            ..Default::default()
        });
        assert_eq!(f[0]["name"], JWT_PAYLOAD_STRIP);
        let rm = &f[0]["typed_config"]["mutations"]["request_mutations"];
        assert_eq!(rm[0]["remove"], JWT_PAYLOAD_HEADER);
        assert_eq!(rm[1]["remove"], "x-payload");
        assert_eq!(f[1]["name"], JWT_AUTHN);
        assert_eq!(
            f[1]["typed_config"]["providers"]["origins-0"]["forward_payload_header"],
            "X-Payload"
        );
    }

    #[test]
    fn no_rules_no_filters() {
        assert!(jwt_filters(&Policy::default()).is_empty());
    }

    /// policy_applier.go:207-219 @ 1.30.3: a jwksUri the mesh serves → remote_jwks through its
    /// cluster with the rule's timeout and a 5-minute cache; no cluster → the public-only key.
    #[test]
    fn jwks_uri_through_a_cluster() {
        let mut r = rule("a");
        r.jwks.clear();
        r.jwks_uri = "http://keys.default.svc.cluster.local/jwks".into();
        r.jwks_cluster = "outbound|80||keys.default.svc.cluster.local".into();
        r.timeout_ms = 2500;
        let p = provider(&r);
        assert_eq!(p["remote_jwks"]["http_uri"]["cluster"], r.jwks_cluster);
        assert_eq!(p["remote_jwks"]["http_uri"]["uri"], r.jwks_uri);
        assert_eq!(p["remote_jwks"]["http_uri"]["timeout"], "2.500s");
        assert_eq!(p["remote_jwks"]["cache_duration"], "300s");
        assert!(p.get("local_jwks").is_none());
        r.jwks_cluster.clear();
        let p = provider(&r);
        assert_eq!(p["local_jwks"]["inline_string"], PUBLIC_ONLY_JWKS);
        assert!(p.get("remote_jwks").is_none());
    }
}
