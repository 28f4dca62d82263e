//! Property tests (proptest) of the whole pipeline the filters run: Istio YAML → compiler →
//! policy (binary protobuf / proto3 JSON) → [`load_policy`] (the filters' decoder) → `decide`
//! → [`StreamFilter`] against a fake host.
//!
//! - `decide` (and the adapter around it) never panics, for arbitrary requests against
//!   arbitrary policies: compiled from generated YAML, and decoded from corrupted encodings of
//!   valid policies (whatever the decoder and the engine accept must be decidable);
//! - compile → encode → decode round-trips, in both encodings the filters accept, and the
//!   engine accepts every policy the compiler emits;
//! - weighted splits follow their weights (`VirtualService` `route[].weight`,
//!   https://istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPRouteDestination).
//!
//! Native only (proptest does not target wasm32); `cargo xtask test` runs it in CI.
//! `PROPTEST_CASES=N` raises the number of cases per property.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::IpAddr;

use layover_adapter::recording::RecordingHost;
use layover_adapter::{load_policy, Connection, StreamFilter, Verdict};
use layover_core::{wire, CompiledPolicy, DestinationView, Entropy, RequestView, SourceView};
use proptest::prelude::*;
use proptest::test_runner::Config;

// ------------------------------------------------------------------------ generated YAML

/// Strings that stress matchers: path-ish characters, escapes, globs, regex metacharacters.
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,6}",
        "/[a-zA-Z0-9/._~%-]{0,10}\\*?",
        "\\*[a-z/]{0,5}",
        "[a-z/]{0,5}\\*",
        Just("{*}".to_string()),
        Just("/api/{**}".to_string()),
        Just("(".to_string()),
        Just("^/v[0-9]+/.*$".to_string()),
        Just("".to_string()),
        "\\PC{0,8}",
    ]
}

/// A YAML scalar, quoted so any token stays a string.
fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

fn string_match() -> impl Strategy<Value = String> {
    (0..3usize, token()).prop_map(|(k, v)| {
        let kind = ["exact", "prefix", "regex"][k];
        format!("{{{kind}: {}}}", q(&v))
    })
}

fn destination() -> impl Strategy<Value = String> {
    (
        prop_oneof![Just("reviews"), Just("ratings"), Just("nowhere")],
        prop::option::of(prop_oneof![Just("v1"), Just("v2"), Just("v9")]),
        prop::option::of(0u32..120),
    )
        .prop_map(|(host, subset, weight)| {
            let mut d = format!("{{destination: {{host: {host}");
            if let Some(s) = subset {
                d.push_str(&format!(", subset: {s}"));
            }
            d.push('}');
            if let Some(w) = weight {
                d.push_str(&format!(", weight: {w}"));
            }
            d.push('}');
            d
        })
}

fn http_route() -> impl Strategy<Value = String> {
    (
        prop::option::of(string_match()),
        prop::option::of((token(), string_match())),
        prop::collection::vec(destination(), 1..4),
        prop::option::of((0u32..3000, 0.0f64..101.0)),
        prop::option::of((100u32..600, 0.0f64..101.0)),
        prop::option::of(0i32..5),
        prop::option::of(token()),
    )
        .prop_map(|(uri, header, dests, delay, abort, retries, rewrite)| {
            let mut r = String::from("  - ");
            let mut m = Vec::new();
            if let Some(u) = uri {
                m.push(format!("uri: {u}"));
            }
            if let Some((name, v)) = header {
                m.push(format!("headers: {{{}: {v}}}", q(&name)));
            }
            if !m.is_empty() {
                r.push_str(&format!("match: [{{{}}}]\n    ", m.join(", ")));
            }
            r.push_str(&format!("route: [{}]\n", dests.join(", ")));
            let mut fault = Vec::new();
            if let Some((ms, pct)) = delay {
                fault.push(format!(
                    "delay: {{fixedDelay: {ms}ms, percentage: {{value: {pct}}}}}"
                ));
            }
            if let Some((status, pct)) = abort {
                fault.push(format!(
                    "abort: {{httpStatus: {status}, percentage: {{value: {pct}}}}}"
                ));
            }
            if !fault.is_empty() {
                r.push_str(&format!("    fault: {{{}}}\n", fault.join(", ")));
            }
            if let Some(a) = retries {
                r.push_str(&format!("    retries: {{attempts: {a}, retryOn: 5xx}}\n"));
            }
            if let Some(uri) = rewrite {
                r.push_str(&format!("    rewrite: {{uri: {}}}\n", q(&uri)));
            }
            r
        })
}

fn authz_rule() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(token(), 0..3),
        prop::collection::vec(
            prop_oneof![
                Just("127.0.0.1".to_string()),
                Just("10.0.0.0/8".to_string()),
                Just("::1/128".to_string()),
                Just("10.0.0.0/33".to_string()),
                token()
            ],
            0..2,
        ),
        prop::collection::vec(token(), 0..3),
        prop::collection::vec(prop_oneof![Just("GET"), Just("POST"), Just("*")], 0..2),
        prop::collection::vec(token(), 0..2),
        prop::option::of((
            prop_oneof![
                Just("request.headers[x-user]".to_string()),
                Just("source.ip".to_string()),
                Just("source.namespace".to_string()),
                Just("destination.port".to_string()),
                Just("request.auth.claims[iss]".to_string()),
                token()
            ],
            token(),
        )),
    )
        .prop_map(|(principals, ips, paths, methods, hosts, when)| {
            let list = |v: &[String]| v.iter().map(|s| q(s)).collect::<Vec<_>>().join(", ");
            let mut source = Vec::new();
            if !principals.is_empty() {
                source.push(format!("principals: [{}]", list(&principals)));
            }
            if !ips.is_empty() {
                source.push(format!("ipBlocks: [{}]", list(&ips)));
            }
            let mut op = Vec::new();
            if !paths.is_empty() {
                op.push(format!("paths: [{}]", list(&paths)));
            }
            if !methods.is_empty() {
                op.push(format!("methods: [{}]", methods.join(", ")));
            }
            if !hosts.is_empty() {
                op.push(format!("hosts: [{}]", list(&hosts)));
            }
            let mut rule = Vec::new();
            if !source.is_empty() {
                rule.push(format!("from: [{{source: {{{}}}}}]", source.join(", ")));
            }
            if !op.is_empty() {
                rule.push(format!("to: [{{operation: {{{}}}}}]", op.join(", ")));
            }
            if let Some((key, value)) = when {
                rule.push(format!(
                    "when: [{{key: {}, values: [{}]}}]",
                    q(&key),
                    q(&value)
                ));
            }
            format!("{{{}}}", rule.join(", "))
        })
}

const SERVICES: &str = "
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: default}
spec:
  selector: {app: ratings}
  ports: [{name: http, port: 9080}, {name: grpc, port: 9090, appProtocol: grpc}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
";

/// Istio YAML: two services, a VirtualService with 0–3 routes, 0–2 AuthorizationPolicies, a
/// path-normalization mode.
fn istio_yaml() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(http_route(), 0..4),
        prop::collection::vec(
            (
                prop_oneof![Just("ALLOW"), Just("DENY"), Just("AUDIT")],
                prop::collection::vec(authz_rule(), 0..3),
            ),
            0..3,
        ),
        prop_oneof![
            Just("BASE"),
            Just("NONE"),
            Just("MERGE_SLASHES"),
            Just("DECODE_AND_MERGE_SLASHES")
        ],
    )
        .prop_map(|(routes, policies, mode)| {
            let mut y = format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: istio, namespace: istio-system}}\n\
                 data:\n  mesh: \"pathNormalization: {{normalization: {mode}}}\"\n---\n{SERVICES}"
            );
            if !routes.is_empty() {
                y.push_str(
                    "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\n\
                     metadata: {name: reviews, namespace: default}\nspec:\n  hosts: [reviews]\n  http:\n",
                );
                for r in routes {
                    y.push_str(&r);
                }
            }
            for (i, (action, rules)) in policies.into_iter().enumerate() {
                y.push_str(&format!(
                    "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
                     metadata: {{name: p{i}, namespace: default}}\nspec:\n  \
                     targetRefs: [{{kind: Service, group: '', name: reviews}}]\n  action: {action}\n"
                ));
                if !rules.is_empty() {
                    y.push_str(&format!("  rules: [{}]\n", rules.join(", ")));
                }
            }
            y
        })
}

/// The compiler's policy for `yaml`, or `None` when the compiler rejects it (a clear error is
/// the right outcome for invalid input; the properties are about what it accepts).
fn compile(yaml: &str) -> Option<wire::Policy> {
    let bundle = layover_compiler::load_str("prop.yaml", yaml).ok()?;
    layover_compiler::compile(&bundle).ok().map(|c| c.policy)
}

// ------------------------------------------------------------------------------ requests

#[derive(Debug, Clone)]
struct Req {
    method: String,
    path: String,
    authority: String,
    headers: Vec<(String, String)>,
    principal: Option<String>,
    ip: Option<IpAddr>,
    remote_ip: Option<IpAddr>,
    service: Option<String>,
    port: u16,
}

fn request() -> impl Strategy<Value = Req> {
    let ip = prop::option::of(prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
    ]);
    (
        prop_oneof![
            Just("GET".to_string()),
            Just("POST".to_string()),
            "\\PC{0,6}"
        ],
        prop_oneof!["/[a-zA-Z0-9/._~%?#;=&*\\\\-]{0,24}", "\\PC{0,24}", token()],
        prop_oneof![
            Just("reviews:9080".to_string()),
            Just("ratings.default.svc.cluster.local:9090".to_string()),
            Just("REVIEWS".to_string()),
            "\\PC{0,16}"
        ],
        prop::collection::vec(
            (
                prop_oneof![
                    Just("x-user".to_string()),
                    Just("origin".to_string()),
                    Just("x-layover-cluster".to_string()),
                    "[a-z-]{1,8}"
                ],
                "\\PC{0,12}",
            ),
            0..4,
        ),
        prop::option::of(prop_oneof![
            Just("cluster.local/ns/default/sa/productpage".to_string()),
            "\\PC{0,20}"
        ]),
        ip.clone(),
        ip,
        prop::option::of(prop_oneof![
            Just("reviews.default.svc.cluster.local".to_string()),
            "\\PC{0,12}"
        ]),
        any::<u16>(),
    )
        .prop_map(
            |(method, path, authority, headers, principal, ip, remote_ip, service, port)| Req {
                method,
                path,
                authority,
                headers,
                principal,
                ip,
                remote_ip,
                service,
                port,
            },
        )
}

/// Decides `req` and samples the decision with `entropy`: must not panic.
fn decide(policy: &CompiledPolicy, req: &Req, entropy: u64) {
    let headers: Vec<(&str, &str)> = req
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let view = RequestView {
        method: &req.method,
        scheme: "http",
        authority: &req.authority,
        path: &req.path,
        headers: &headers,
        source: SourceView {
            principal: req.principal.as_deref(),
            namespace: req
                .principal
                .as_deref()
                .and_then(layover_core::namespace_of_principal),
            ip: req.ip,
            remote_ip: req.remote_ip,
        },
        destination: DestinationView {
            service: req.service.as_deref(),
            ip: None,
            port: req.port,
        },
        sni: None,
        jwt: None,
    };
    let decision = policy.decide(&view);
    let sampled = decision.sample(entropy);
    if let Some(i) = sampled.destination {
        assert!(i < decision.destinations.len());
    }
}

/// Runs `req` through the adapter (what both filter builds run): never panics, and whatever
/// happens no client-sent `x-layover-*` / `x-envoy-*` value survives.
fn through_adapter(policy: &CompiledPolicy, req: &Req, entropy: u64) {
    let mut host = RecordingHost::default();
    host.request.push((":method".into(), req.method.clone()));
    host.request.push((":path".into(), req.path.clone()));
    host.request
        .push((":authority".into(), req.authority.clone()));
    host.request.push((":scheme".into(), "http".into()));
    let client: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
        .collect();
    host.request.extend(client.iter().cloned());
    let conn = Connection {
        principal: req.principal.clone(),
        source_ip: req.ip,
        remote_ip: req.remote_ip,
        destination_service: req.service.clone(),
        destination_port: req.port,
        ..Connection::default()
    };
    let mut filter = StreamFilter::default();
    let verdict = filter.on_request_headers(policy, Ok(&conn), entropy, &mut host);
    if let Verdict::Delay(_) = verdict {
        filter.on_delay_elapsed(&mut host);
    }
    for (name, value) in &client {
        if layover_adapter::is_internal_signal(name) {
            assert!(
                !host.request.iter().any(|(n, v)| n == name && v == value),
                "client's {name}: {value:?} survived"
            );
        }
    }
}

fn config() -> Config {
    // PROPTEST_CASES overrides; the default keeps CI fast on a 2-core machine.
    // Failures are not persisted to files: each one found becomes a named regression test
    // below.
    Config {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(256),
        failure_persistence: None,
        ..Config::default()
    }
}

/// Found by `compiled_policies_round_trip_and_decide_anything`: a fault percentage of
/// 94.11110651370487 came back from proto3 JSON as …488 (serde_json's default float parser is
/// not correctly rounded; the workspace now enables `float_roundtrip`).
#[test]
fn regression_fault_percentage_survives_json() {
    let policy = wire::Policy {
        services: vec![wire::Service {
            routes: vec![wire::HttpRoute {
                fault: Some(wire::FaultInjection {
                    delay: Some(wire::FaultDelay {
                        fixed_delay_ms: 0,
                        percentage: 94.11110651370487,
                    }),
                    abort: None,
                }),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let json = serde_json::to_vec(&policy).unwrap();
    let back: wire::Policy = serde_json::from_slice(&json).unwrap();
    assert_eq!(back, policy);
}

proptest! {
    #![proptest_config(config())]

    /// Every policy the compiler emits round-trips through both encodings, is accepted by the
    /// engine, and decides arbitrary requests without panicking (directly and through the
    /// adapter).
    #[test]
    fn compiled_policies_round_trip_and_decide_anything(
        yaml in istio_yaml(),
        reqs in prop::collection::vec((request(), any::<u64>()), 1..8),
    ) {
        let Some(policy) = compile(&yaml) else { return Ok(()) };
        // Binary protobuf.
        let bytes = prost::Message::encode_to_vec(&policy);
        let back: wire::Policy = prost::Message::decode(bytes.as_slice()).unwrap();
        prop_assert_eq!(&back, &policy);
        // proto3 JSON (what `layover compile --json` and the bootstraps carry).
        let json = serde_json::to_vec(&policy).unwrap();
        let back: wire::Policy = serde_json::from_slice(&json).unwrap();
        prop_assert_eq!(&back, &policy);
        // The filters' decoder accepts both, and they decide alike.
        let from_pb = load_policy(&bytes)
            .unwrap_or_else(|e| panic!("the engine refused a compiled policy: {e}\n{yaml}"));
        let from_json = load_policy(&json).unwrap();
        for (req, entropy) in &reqs {
            decide(&from_pb, req, *entropy);
            decide(&from_json, req, *entropy);
            through_adapter(&from_pb, req, *entropy);
        }
    }

    /// Corrupted encodings of valid policies: the decoder either refuses them with an error or
    /// yields a policy that decides anything without panicking.
    #[test]
    fn corrupted_policies_are_refused_or_decidable(
        yaml in istio_yaml(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in prop::option::of(any::<prop::sample::Index>()),
        reqs in prop::collection::vec((request(), any::<u64>()), 1..4),
    ) {
        let Some(policy) = compile(&yaml) else { return Ok(()) };
        let mut bytes = prost::Message::encode_to_vec(&policy);
        if bytes.is_empty() { return Ok(()) }
        for (at, byte) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= byte;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        if let Ok(engine) = load_policy(&bytes) {
            for (req, entropy) in &reqs {
                decide(&engine, req, *entropy);
                through_adapter(&engine, req, *entropy);
            }
        }
    }

    /// Arbitrary bytes as a filter configuration: an error, never a panic.
    #[test]
    fn arbitrary_configurations_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = load_policy(&bytes);
        let mut json = b"{".to_vec();
        json.extend_from_slice(&bytes);
        let _ = load_policy(&json);
    }

    /// A weighted split sends each destination its share of requests (Envoy's
    /// weighted_clusters: `random % total_weight` over cumulative weights).
    #[test]
    fn split_frequencies_follow_weights(
        w in (0u32..=100, 0u32..=100).prop_filter("sum ≤ 100", |(a, b)| a + b <= 100),
        seed in any::<u64>(),
    ) {
        let (a, b) = w;
        let c = 100 - a - b;
        let yaml = format!("{SERVICES}---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: ratings, namespace: default}}
spec:
  host: ratings
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
  - {{name: v3, labels: {{version: v3}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: ratings, namespace: default}}
spec:
  hosts: [ratings]
  http:
  - route:
    - {{destination: {{host: ratings, subset: v1}}, weight: {a}}}
    - {{destination: {{host: ratings, subset: v2}}, weight: {b}}}
    - {{destination: {{host: ratings, subset: v3}}, weight: {c}}}
");
        let policy = load_policy(&prost::Message::encode_to_vec(&compile(&yaml).unwrap())).unwrap();
        let view = RequestView {
            method: "GET",
            scheme: "http",
            authority: "ratings:9080",
            path: "/",
            headers: &[],
            source: SourceView::default(),
            destination: DestinationView {
                service: Some("ratings.default.svc.cluster.local"),
                ip: None,
                port: 9080,
            },
            sni: None,
            jwt: None,
        };
        let decision = policy.decide(&view);
        let weights: Vec<u32> = decision.destinations.iter().map(|d| d.weight).collect();
        let mut counts = vec![0usize; decision.destinations.len()];
        let mut rng = Entropy::new(seed);
        const N: usize = 20_000;
        for _ in 0..N {
            let i = decision.sample(rng.next_u64()).destination.unwrap();
            counts[i] += 1;
        }
        let total: u32 = weights.iter().sum();
        for (i, (&n, &w)) in counts.iter().zip(&weights).enumerate() {
            let want = f64::from(w) / f64::from(total);
            let got = n as f64 / N as f64;
            // 6 standard errors at most (≤ 0.0212 for N = 20,000): a real skew of 2% or more
            // fails, chance alone practically never.
            let tolerance = 6.0 * (want * (1.0 - want) / N as f64).sqrt() + 1e-9;
            prop_assert!(
                (got - want).abs() <= tolerance,
                "destination {} (weight {}): {:.4} of requests, want {:.4} ± {:.4}; weights {:?} counts {:?}",
                i, w, got, want, tolerance, weights, counts
            );
            if w == 0 {
                prop_assert_eq!(n, 0, "a weight-0 destination got traffic");
            }
        }
    }
}
