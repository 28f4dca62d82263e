//! Offline JWT verification for `layover eval`: what Envoy's `jwt_authn` decides for the
//! request's token, against the policy's RequestAuthentication rules with inline JWKS.
//!
//! As istiod configures `jwt_authn` (`pilot/pkg/security/authn/policy_applier.go:249-340
//! @ 1.30.3`): no token → authentication passes and AuthorizationPolicy decides; a token that
//! does not verify (unknown issuer, bad signature, expired, not yet valid, wrong audience) →
//! 401. Supported algorithms: RS256, ES256. The token comes from the request JSON's `jwt`
//! field, else the rules' locations (`fromHeaders`, default `Authorization: Bearer`;
//! `fromParams`, default `access_token`; `fromCookies`).

use std::time::{SystemTime, UNIX_EPOCH};

use layover_core::jwt::{Claim, JwtPayload};
use layover_core::CompiledPolicy;
use layover_proto::v1::JwtRule;
use ring::signature::{self, UnparsedPublicKey};
use serde_json::{json, Value};

use super::request::RequestJson;

/// Envoy's default `clock_skew_seconds` for exp / nbf.
const CLOCK_SKEW_SECONDS: u64 = 60;

/// The verified payload (`Ok(None)` without a token), or the 401 decision JSON.
pub fn authenticate(
    policy: &CompiledPolicy,
    request: &RequestJson,
) -> Result<Option<JwtPayload>, Value> {
    let settings = policy.jwt();
    if !settings.enabled {
        return Ok(None);
    }
    let Some(token) = find_token(&settings.rules, request) else {
        return Ok(None);
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if let Some(rule) = remote_keys_rule(&settings.rules, &token) {
        let mut out = serde_json::Map::new();
        if let Some(name) = &request.name {
            out.insert("name".into(), json!(name));
        }
        out.insert("action".into(), json!("undecided"));
        out.insert(
            "reason".into(),
            json!(format!(
                "jwt_authn: the keys of issuer {:?} are fetched by Envoy at run time from {} (cluster {}); eval verifies only against inline jwks",
                rule.issuer, rule.jwks_uri, rule.jwks_cluster
            )),
        );
        return Err(Value::Object(out));
    }
    match verify(&settings.rules, &token, now) {
        Ok(payload) => Ok(Some(JwtPayload::new(
            to_claim(&payload),
            &settings.space_delimited_claims,
        ))),
        Err(reason) => {
            let mut out = serde_json::Map::new();
            if let Some(name) = &request.name {
                out.insert("name".into(), json!(name));
            }
            out.insert("action".into(), json!("reject"));
            out.insert("status".into(), json!(401));
            out.insert("reason".into(), json!(format!("jwt_authn: {reason}")));
            Err(Value::Object(out))
        }
    }
}

/// The request's token: `jwt`, else the first rule location that holds one.
fn find_token(rules: &[JwtRule], request: &RequestJson) -> Option<String> {
    if let Some(t) = &request.jwt {
        return Some(t.clone());
    }
    let headers = request.header_pairs();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let query = request.path.split_once('?').map_or("", |(_, q)| q);
    let param = |name: &str| {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    };
    for r in rules {
        if r.from_headers.is_empty() && r.from_params.is_empty() && r.from_cookies.is_empty() {
            let bearer =
                header("authorization").and_then(|v| v.strip_prefix("Bearer ").map(str::to_string));
            if let Some(t) = bearer.or_else(|| param("access_token")) {
                return Some(t);
            }
        }
        for h in &r.from_headers {
            if let Some(v) = header(&h.name) {
                if let Some(t) = v.strip_prefix(h.prefix.as_str()) {
                    return Some(t.to_string());
                }
            }
        }
        if let Some(t) = r.from_params.iter().find_map(|p| param(p)) {
            return Some(t);
        }
        let cookies = header("cookie").unwrap_or_default();
        let cookie = |name: &str| {
            cookies
                .split(';')
                .filter_map(|kv| kv.trim().split_once('='))
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        if let Some(t) = r.from_cookies.iter().find_map(|c| cookie(c)) {
            return Some(t);
        }
    }
    None
}

/// The rule of the token's issuer when Envoy fetches its keys (`remote_jwks`), which eval
/// cannot: it has no inline keys and a cluster serving its `jwksUri`.
fn remote_keys_rule<'a>(rules: &'a [JwtRule], token: &str) -> Option<&'a JwtRule> {
    let payload = json_part(token.split('.').nth(1)?).ok()?;
    let iss = payload.get("iss").and_then(Value::as_str)?;
    rules
        .iter()
        .find(|r| r.issuer == iss && r.jwks.is_empty() && !r.jwks_cluster.is_empty())
}

/// Verifies `token` against the rule of its issuer; the payload JSON on success.
pub fn verify(rules: &[JwtRule], token: &str, now: u64) -> Result<Value, String> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("Jwt is not in the form of Header.Payload.Signature".into());
    };
    let header: Value = json_part(h).map_err(|e| format!("Jwt header is invalid: {e}"))?;
    let payload: Value = json_part(p).map_err(|e| format!("Jwt payload is invalid: {e}"))?;
    let sig = b64url(s).ok_or("Jwt signature is not base64url")?;
    let iss = payload.get("iss").and_then(Value::as_str).unwrap_or("");
    let rule = rules
        .iter()
        .find(|r| r.issuer == iss)
        .ok_or_else(|| format!("Jwt issuer {iss:?} is not configured"))?;
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
    let kid = header.get("kid").and_then(Value::as_str);
    // No inline keys and no cluster: the public-only key, which no token verifies against.
    let jwks: Value = serde_json::from_str(&rule.jwks)
        .map_err(|_| "Jwks doesn't have key to match kid or alg from Jwt".to_string())?;
    let keys = jwks
        .get("keys")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let input = format!("{h}.{p}");
    let ok = keys
        .iter()
        .filter(|k| {
            kid.is_none()
                || k.get("kid")
                    .and_then(Value::as_str)
                    .is_none_or(|x| Some(x) == kid)
        })
        .any(|k| check_signature(alg, k, input.as_bytes(), &sig));
    if !ok {
        return Err("Jwt verification fails".into());
    }
    let num = |name: &str| payload.get(name).and_then(Value::as_u64);
    if num("exp").is_some_and(|exp| now > exp + CLOCK_SKEW_SECONDS) {
        return Err("Jwt is expired".into());
    }
    if num("nbf").is_some_and(|nbf| nbf > now + CLOCK_SKEW_SECONDS) {
        return Err("Jwt not yet valid".into());
    }
    if !rule.audiences.is_empty() {
        let auds: Vec<&str> = match payload.get("aud") {
            Some(Value::String(a)) => vec![a.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !auds
            .iter()
            .any(|a| rule.audiences.iter().any(|want| want == a))
        {
            return Err("Audiences in Jwt are not allowed".into());
        }
    }
    Ok(payload)
}

fn check_signature(alg: &str, key: &Value, input: &[u8], sig: &[u8]) -> bool {
    let field = |n: &str| key.get(n).and_then(Value::as_str).and_then(b64url);
    match alg {
        "RS256" => {
            let (Some(n), Some(e)) = (field("n"), field("e")) else {
                return false;
            };
            signature::RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, input, sig)
                .is_ok()
        }
        "ES256" => {
            let (Some(x), Some(y)) = (field("x"), field("y")) else {
                return false;
            };
            let mut point = vec![4u8];
            point.extend(x);
            point.extend(y);
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(input, sig)
                .is_ok()
        }
        _ => false,
    }
}

fn json_part(part: &str) -> Result<Value, String> {
    let bytes = b64url(part).ok_or("not base64url")?;
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

fn to_claim(v: &Value) -> Claim {
    match v {
        Value::String(s) => Claim::Str(s.clone()),
        Value::Array(a) => Claim::List(a.iter().map(to_claim).collect()),
        Value::Object(o) => {
            Claim::Object(o.iter().map(|(k, v)| (k.clone(), to_claim(v))).collect())
        }
        _ => Claim::Other,
    }
}

/// Unpadded or padded base64url.
fn b64url(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in s.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    (s.len() % 4 != 1).then_some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

    fn enc(b: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for c in b.chunks(3) {
            let n = c.iter().fold(0u32, |a, x| (a << 8) | u32::from(*x)) << (8 * (3 - c.len()));
            for i in 0..=c.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }

    fn key() -> EcdsaKeyPair {
        let rng = SystemRandom::new();
        let p = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, p.as_ref(), &rng).unwrap()
    }

    fn rule(k: &EcdsaKeyPair, aud: &[&str]) -> JwtRule {
        let p = k.public_key().as_ref();
        JwtRule {
            issuer: "iss".into(),
            audiences: aud.iter().map(|a| a.to_string()).collect(),
            jwks: json!({"keys": [{"kty": "EC", "crv": "P-256", "x": enc(&p[1..33]), "y": enc(&p[33..65])}]}).to_string(),
            ..Default::default()
        }
    }

    fn sign(k: &EcdsaKeyPair, claims: Value) -> String {
        let input = format!(
            "{}.{}",
            enc(br#"{"alg":"ES256"}"#),
            enc(claims.to_string().as_bytes())
        );
        let sig = k.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", enc(sig.as_ref()))
    }

    #[test]
    fn es256_valid_token_verifies() {
        let k = key();
        let t = sign(&k, json!({"iss": "iss", "sub": "a", "exp": 2000}));
        assert_eq!(verify(&[rule(&k, &[])], &t, 1000).unwrap()["sub"], "a");
    }

    #[test]
    fn other_key_is_rejected() {
        let (k, other) = (key(), key());
        let t = sign(&other, json!({"iss": "iss"}));
        assert_eq!(
            verify(&[rule(&k, &[])], &t, 0).unwrap_err(),
            "Jwt verification fails"
        );
    }

    #[test]
    fn expired_beyond_skew_is_rejected() {
        let k = key();
        let t = sign(&k, json!({"iss": "iss", "exp": 1000}));
        assert!(verify(&[rule(&k, &[])], &t, 1060).is_ok());
        assert_eq!(
            verify(&[rule(&k, &[])], &t, 1061).unwrap_err(),
            "Jwt is expired"
        );
    }

    /// End to end through `explain`: RequestAuthentication + requestPrincipals ALLOW
    /// (policy_applier.go:249-340, generator.go:263-320 @ 1.30.3).
    #[test]
    fn explain_valid_invalid_missing() {
        let (k, other) = (key(), key());
        let jwks = rule(&k, &[]).jwks;
        let yaml = format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: api, namespace: default}}\nspec: {{clusterIP: 10.0.0.9, ports: [{{name: http, port: 80}}]}}\n---\napiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {{name: jwt, namespace: default}}\nspec:\n  targetRefs: [{{kind: Service, group: '', name: api}}]\n  jwtRules: [{{issuer: iss, jwks: '{jwks}'}}]\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: api, namespace: default}}\nspec:\n  targetRefs: [{{kind: Service, group: '', name: api}}]\n  rules: [{{from: [{{source: {{requestPrincipals: [iss/alice]}}}}]}}]\n"
        );
        let compiled = layover_compiler::compile_str("t.yaml", &yaml, &Default::default()).unwrap();
        let policy = CompiledPolicy::compile(&compiled.policy).unwrap();
        let run = |jwt: Option<String>, auth: Option<String>| {
            let mut r = json!({"authority": "api.default.svc.cluster.local:80"});
            if let Some(t) = jwt {
                r["jwt"] = json!(t);
            }
            if let Some(a) = auth {
                r["headers"] = json!({"authorization": a});
            }
            let req = RequestJson::parse(&r.to_string()).unwrap();
            super::super::explain(&policy, &req)
        };
        let alice = sign(&k, json!({"iss": "iss", "sub": "alice"}));
        assert_eq!(run(Some(alice.clone()), None)["action"], "route");
        assert_eq!(
            run(None, Some(format!("Bearer {alice}")))["action"],
            "route"
        );
        let bob = sign(&k, json!({"iss": "iss", "sub": "bob"}));
        assert_eq!(run(Some(bob), None)["status"], 403);
        let forged = sign(&other, json!({"iss": "iss", "sub": "alice"}));
        let d = run(Some(forged), None);
        assert_eq!(
            (d["action"].clone(), d["status"].clone()),
            (json!("reject"), json!(401))
        );
        assert_eq!(run(None, None)["status"], 403);
    }

    #[test]
    fn unknown_issuer_and_audience() {
        let k = key();
        let t = sign(&k, json!({"iss": "other"}));
        assert!(verify(&[rule(&k, &[])], &t, 0)
            .unwrap_err()
            .contains("not configured"));
        let t = sign(&k, json!({"iss": "iss", "aud": ["x", "y"]}));
        assert!(verify(&[rule(&k, &["y"])], &t, 0).is_ok());
        assert!(verify(&[rule(&k, &["z"])], &t, 0).is_err());
    }

    /// A rule whose keys Envoy fetches (remote_jwks): eval says it cannot decide, never 401.
    #[test]
    fn remote_keys_are_undecided() {
        let k = key();
        let mut r = rule(&k, &[]);
        r.jwks.clear();
        r.jwks_uri = "http://keys.default.svc.cluster.local/jwks".into();
        r.jwks_cluster = "outbound|80||keys.default.svc.cluster.local".into();
        let t = sign(&k, json!({"iss": "iss", "sub": "a"}));
        assert!(remote_keys_rule(std::slice::from_ref(&r), &t).is_some());
        r.jwks_cluster.clear();
        assert!(remote_keys_rule(std::slice::from_ref(&r), &t).is_none());
        assert!(verify(&[r], &t, 0).is_err());
    }
}
