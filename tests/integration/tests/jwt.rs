//! RequestAuthentication (JWT) on the waypoint under a real Envoy 1.40: Envoy's `jwt_authn`
//! (generated as istiod 1.30.3 generates it, `pilot/pkg/security/authn/policy_applier.go:
//! 147-340`) verifies the token; layover reads the payload `jwt_authn` verified and evaluates
//! AuthorizationPolicy `requestPrincipals` and `request.auth.*`
//! (`pilot/pkg/security/authz/model/generator.go:255-375 @ 1.30.3`).
//!
//! The tokens are signed in the test with a P-256 key generated in the test (ES256); the
//! RequestAuthentication carries its public key inline.
//!
//! istio.io "Authorization with JWT" / RequestAuthentication reference: a request with an
//! invalid token is rejected (401); a request without a token is accepted by authentication,
//! and AuthorizationPolicy decides.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{SystemTime, UNIX_EPOCH};

use layover_integration::waypoint::{app_yaml, FilterBuild, Shape, Waypoint};
use layover_integration::{Backend, Behavior, Echo, Reply};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::json;

const ISSUER: &str = "https://issuer.test";
const OTHER_ISSUER: &str = "https://other.test";

fn b64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// A P-256 signing key and its JWKS.
struct Key {
    pair: EcdsaKeyPair,
    kid: &'static str,
}

impl Key {
    fn new(kid: &'static str) -> Key {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        Key { pair, kid }
    }

    fn jwks(&self) -> String {
        let p = self.pair.public_key().as_ref();
        json!({"keys": [{"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig",
            "kid": self.kid, "x": b64(&p[1..33]), "y": b64(&p[33..65])}]})
        .to_string()
    }

    fn sign(&self, claims: serde_json::Value) -> String {
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", b64(sig.as_ref()))
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(iss: &str, sub: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut c = json!({"iss": iss, "sub": sub, "exp": now() + 3600, "iat": now()});
    if let (Some(o), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            o.insert(k.clone(), v.clone());
        }
    }
    c
}

fn host(app: &str) -> String {
    format!("{app}:9080")
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn assert_status(reply: &Reply, want: u16, what: &str) {
    assert_eq!(reply.status.as_u16(), want, "{what}: {}", reply.text());
}

/// RequestAuthentication for the services (both issuers share the key; two rules exercise
/// istiod's multi-provider requirement), and the policies of each service.
fn yaml(jwks: &str, apps: &str) -> String {
    format!(
        r#"{apps}---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: default}}
spec:
  targetRefs:
  - {{kind: Service, group: "", name: api}}
  - {{kind: Service, group: "", name: open}}
  - {{kind: Service, group: "", name: claims}}
  jwtRules:
  - issuer: {ISSUER}
    jwks: '{jwks}'
  - issuer: {OTHER_ISSUER}
    jwks: '{jwks}'
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: api, namespace: default}}
spec:
  targetRefs: [{{kind: Service, group: "", name: api}}]
  rules:
  - from: [{{source: {{requestPrincipals: ["{ISSUER}/alice"]}}}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: unbound, namespace: default}}
spec:
  targetRefs: [{{kind: Service, group: "", name: unbound}}]
  rules:
  - from: [{{source: {{requestPrincipals: ["{ISSUER}/alice"]}}}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: claims, namespace: default}}
spec:
  targetRefs: [{{kind: Service, group: "", name: claims}}]
  rules:
  - when:
    - {{key: "request.auth.claims[org][team]", values: [red]}}
    - {{key: "request.auth.claims[groups]", values: [admin]}}
    - {{key: request.auth.audiences, values: [api-aud]}}
    - {{key: request.auth.presenter, values: [web*]}}
"#
    )
}

async fn run(build: FilterBuild) {
    let key = Key::new("k1");
    let stranger = Key::new("k1");
    let mut apps = String::new();
    let mut backends = Vec::new();
    for app in ["api", "open", "claims", "unbound"] {
        let b = Backend::start(&format!("{app}-v1"), "v1").await.unwrap();
        apps.push_str(&app_yaml(app, &[&b]));
        backends.push(b);
    }
    let wp = Waypoint::start(build, &yaml(&key.jwks(), &apps))
        .await
        .unwrap_or_else(|e| panic!("[{}] {e}", build.name()));
    let get = |app: &'static str, token: Option<String>, extra: Vec<(&'static str, String)>| {
        let wp = &wp;
        async move {
            let mut h: Vec<(&str, String)> = extra;
            if let Some(t) = token {
                h.push(("authorization", bearer(&t)));
            }
            let hs: Vec<(&str, &str)> = h.iter().map(|(n, v)| (*n, v.as_str())).collect();
            wp.get_with(&host(app), "/", &hs).await.unwrap()
        }
    };
    let alice = key.sign(claims(ISSUER, "alice", json!({})));

    // requestPrincipals "iss/sub" (generator.go:263-320): a valid token of the principal → 200.
    let ok = get("api", Some(alice.clone()), vec![]).await;
    assert_status(&ok, 200, "valid token, allowed principal");
    let echo: Echo = ok.json().unwrap();
    assert!(
        !echo
            .headers
            .contains_key(layover_contract::JWT_PAYLOAD_HEADER),
        "the internal payload header never reaches the upstream: {:?}",
        echo.headers
    );
    // The original token is not forwarded unless forwardOriginalToken (policy_applier.go:166).
    assert!(
        !echo.headers.contains_key("authorization"),
        "{:?}",
        echo.headers
    );
    // Another principal, and the same subject from another (configured) issuer → 403.
    let bob = key.sign(claims(ISSUER, "bob", json!({})));
    assert_status(&get("api", Some(bob), vec![]).await, 403, "other subject");
    let other = key.sign(claims(OTHER_ISSUER, "alice", json!({})));
    assert_status(&get("api", Some(other), vec![]).await, 403, "other issuer");
    // Invalid tokens are rejected by jwt_authn before any policy: bad signature, expired.
    let forged = stranger.sign(claims(ISSUER, "alice", json!({})));
    assert_status(
        &get("api", Some(forged.clone()), vec![]).await,
        401,
        "bad signature",
    );
    let expired = key.sign(json!({"iss": ISSUER, "sub": "alice", "exp": now() - 3600}));
    assert_status(&get("api", Some(expired), vec![]).await, 401, "expired");
    // No token: authentication passes, the policy requiring a principal denies.
    assert_status(&get("api", None, vec![]).await, 403, "no token");
    // A client-sent payload header is removed before jwt_authn runs: no identity from it.
    let spoof = b64(json!({"iss": ISSUER, "sub": "alice"})
        .to_string()
        .as_bytes());
    let reply = get(
        "api",
        None,
        vec![(layover_contract::JWT_PAYLOAD_HEADER, spoof.clone())],
    )
    .await;
    assert_status(&reply, 403, "spoofed payload header, no token");
    let bob = key.sign(claims(ISSUER, "bob", json!({})));
    let reply = get(
        "api",
        Some(bob),
        vec![(layover_contract::JWT_PAYLOAD_HEADER, spoof)],
    )
    .await;
    assert_status(
        &reply,
        403,
        "spoofed payload header next to another principal's token",
    );

    // A service with RequestAuthentication and no AuthorizationPolicy.
    assert_status(&get("open", None, vec![]).await, 200, "no token, no policy");
    assert_status(
        &get("open", Some(alice.clone()), vec![]).await,
        200,
        "valid token, no policy",
    );
    assert_status(
        &get("open", Some(forged), vec![]).await,
        401,
        "bad signature, no policy",
    );

    // request.auth.claims nested and list, audiences, presenter (generator.go:323-375).
    let good = json!({"org": {"team": "red"}, "groups": ["dev", "admin"], "aud": ["x", "api-aud"], "azp": "webapp"});
    let token = |patch: serde_json::Value| {
        let mut c = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        key.sign(claims(ISSUER, "carol", c))
    };
    assert_status(
        &get("claims", Some(token(json!({}))), vec![]).await,
        200,
        "all claims match",
    );
    assert_status(
        &get(
            "claims",
            Some(token(json!({"org": {"team": "blue"}}))),
            vec![],
        )
        .await,
        403,
        "nested claim differs",
    );
    assert_status(
        &get("claims", Some(token(json!({"groups": ["dev"]}))), vec![]).await,
        403,
        "list claim lacks admin",
    );
    assert_status(
        &get("claims", Some(token(json!({"groups": "admin"}))), vec![]).await,
        200,
        "string claim",
    );
    assert_status(
        &get("claims", Some(token(json!({"aud": "other"}))), vec![]).await,
        403,
        "audience differs",
    );
    assert_status(
        &get("claims", Some(token(json!({"azp": "cli"}))), vec![]).await,
        403,
        "presenter differs",
    );
    assert_status(&get("claims", None, vec![]).await, 403, "no token");

    // A service no RequestAuthentication binds: istiod gives its chain no jwt_authn
    // (listener_waypoint.go:876-878 @ 1.30.3), so a token never yields a principal there.
    // layover ignores a payload whose issuer's rules do not bind the service (both shapes).
    // layover's own bootstrap runs one jwt_authn for all services, so there a token that fails
    // verification is answered 401 even for this service (stricter than istiod), and the
    // native translation of the own bootstrap (one jwt_authn, no per-service chains) matches
    // the principal: both are own-bootstrap-only differences.
    let own_native = wp.shape == Shape::OwnBootstrap && build == FilterBuild::Native;
    let reply = get("unbound", Some(alice.clone()), vec![]).await;
    assert_status(
        &reply,
        if own_native { 200 } else { 403 },
        "token for an unbound service",
    );
    let forged = stranger.sign(claims(ISSUER, "alice", json!({})));
    let want = if wp.shape == Shape::Istiod { 403 } else { 401 };
    assert_status(
        &get("unbound", Some(forged), vec![]).await,
        want,
        "bad token, unbound service",
    );
    drop(backends);
}

/// A rule with only `jwksUri`, served by a Service of the input: Envoy fetches the keys
/// through that service's cluster (`remote_jwks`, `policy_applier.go:197-216 @ 1.30.3`), and
/// tokens signed with them verify; tokens signed with another key are still 401.
async fn run_remote_jwks(build: FilterBuild) {
    let key = Key::new("k1");
    let stranger = Key::new("k1");
    let api = Backend::start("api-v1", "v1").await.unwrap();
    let keys = Backend::start("keys-v1", "v1").await.unwrap();
    keys.set_default(Behavior::Respond {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: Some(key.jwks()),
    });
    let yaml = format!(
        r#"{}{}---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: default}}
spec:
  targetRefs: [{{kind: Service, group: "", name: api}}]
  jwtRules:
  - issuer: {ISSUER}
    jwksUri: http://keys.default.svc.cluster.local:9080/jwks.json
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: api, namespace: default}}
spec:
  targetRefs: [{{kind: Service, group: "", name: api}}]
  rules:
  - from: [{{source: {{requestPrincipals: ["{ISSUER}/alice"]}}}}]
"#,
        app_yaml("api", &[&api]),
        app_yaml("keys", &[&keys]),
    );
    let wp = Waypoint::start(build, &yaml)
        .await
        .unwrap_or_else(|e| panic!("[{}] {e}", build.name()));
    let get = |token: String| {
        let wp = &wp;
        async move {
            let auth = bearer(&token);
            wp.get_with(&host("api"), "/", &[("authorization", auth.as_str())])
                .await
                .unwrap()
        }
    };
    let alice = key.sign(claims(ISSUER, "alice", json!({})));
    assert_status(&get(alice).await, 200, "token signed with the fetched key");
    let fetched = keys.received();
    assert!(
        fetched.iter().any(|e| e.path == "/jwks.json"),
        "Envoy fetched the keys through the service: {fetched:?}"
    );
    let forged = stranger.sign(claims(ISSUER, "alice", json!({})));
    assert_status(&get(forged).await, 401, "token signed with another key");
    let bob = key.sign(claims(ISSUER, "bob", json!({})));
    assert_status(&get(bob).await, 403, "other principal");
    drop((api, keys));
}

/// One test per build and shape: layover's own bootstrap (`wasm`, `dynamic_module`, and the
/// native translation `native`) and the istiod-shaped waypoint (`istiod_*`: layover attached
/// by route A, which brings the chain's jwt_authn; `istiod_native`: istiod's own chain,
/// jwt_authn before RBAC, `listener_waypoint.go:896-900 @ 1.30.3`).
macro_rules! builds {
    ($($module:ident => $build:expr, $shape:expr);*) => {$(
        mod $module {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn request_authentication() {
                $shape.scope(run($build)).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn jwks_fetched_through_a_service() {
                $shape.scope(run_remote_jwks($build)).await;
            }
        }
    )*};
}

builds!(
    wasm => FilterBuild::Wasm, Shape::OwnBootstrap;
    dynamic_module => FilterBuild::DynamicModule, Shape::OwnBootstrap;
    native => FilterBuild::Native, Shape::OwnBootstrap;
    istiod_wasm => FilterBuild::Wasm, Shape::Istiod;
    istiod_dynamic_module => FilterBuild::DynamicModule, Shape::Istiod;
    istiod_native => FilterBuild::Native, Shape::Istiod
);
