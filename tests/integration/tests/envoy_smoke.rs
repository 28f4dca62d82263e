//! Smoke tests of the generated bootstrap under the real Envoy 1.40.0: it validates, routes by
//! the cluster header to label-selected endpoints, answers 503 for empty clusters, and
//! normalizes paths the way each MeshConfig mode promises.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use layover_bootstrap::{bootstrap, BootstrapOptions, Endpoint, Format};
use layover_contract::CLUSTER_HEADER;
use layover_integration::client::raw_http1;
use layover_integration::{validate_config, Backend, Echo, Envoy, HttpClient, Launch};
use layover_proto::v1::{Cluster, MeshSettings, PathNormalization, Policy, Service, ServicePort};
use serde_json::json;

const REVIEWS: &str = "reviews.default.svc.cluster.local";

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn cluster(name: &str, service: &str, port: u32, subset: &str, sel: &[(&str, &str)]) -> Cluster {
    Cluster {
        name: name.into(),
        service: service.into(),
        port,
        subset: subset.into(),
        labels: labels(sel).into_iter().collect(),
        load_balancer: String::new(),
        ..Default::default()
    }
}

fn policy(mode: PathNormalization, clusters: Vec<Cluster>) -> Policy {
    Policy {
        schema_version: 1,
        mesh: Some(MeshSettings {
            path_normalization: mode as i32,
            ..Default::default()
        }),
        clusters,
        ..Default::default()
    }
}

fn endpoint(backend: &Backend, service: &str, sel: &[(&str, &str)]) -> Endpoint {
    Endpoint {
        address: backend.addr().ip().to_string(),
        port: backend.port(),
        labels: labels(sel),
        service: Some(service.to_string()),
        hbone: false,
    }
}

fn options(launch: &Launch) -> BootstrapOptions {
    BootstrapOptions {
        admin_port: Launch::ANY_PORT,
        listener_port: Launch::ANY_PORT,
        access_log_path: Some(launch.access_log.display().to_string()),
        ..Default::default()
    }
}

async fn start_envoy(policy: &Policy, endpoints: &[Endpoint]) -> Envoy {
    Envoy::start(|launch| bootstrap(policy, endpoints, &options(launch)))
        .await
        .unwrap()
}

/// The reviews service with subsets v1 and v2 (label-selected), an empty subset v3, and a
/// decoy endpoint of another service that carries the v2 labels.
struct Reviews {
    v1: Backend,
    v2: Backend,
    decoy: Backend,
    envoy: Envoy,
}

const V1: &str = "outbound|9080|v1|reviews.default.svc.cluster.local";
const V2: &str = "outbound|9080|v2|reviews.default.svc.cluster.local";
const V3: &str = "outbound|9080|v3|reviews.default.svc.cluster.local";

async fn reviews() -> Reviews {
    let v1 = Backend::start("reviews-v1", "v1").await.unwrap();
    let v2 = Backend::start("reviews-v2", "v2").await.unwrap();
    let decoy = Backend::start("ratings-v2", "v2").await.unwrap();
    let p = policy(
        PathNormalization::Base,
        vec![
            cluster(
                V1,
                REVIEWS,
                9080,
                "v1",
                &[("app", "reviews"), ("version", "v1")],
            ),
            cluster(
                V2,
                REVIEWS,
                9080,
                "v2",
                &[("app", "reviews"), ("version", "v2")],
            ),
            cluster(
                V3,
                REVIEWS,
                9080,
                "v3",
                &[("app", "reviews"), ("version", "v3")],
            ),
        ],
    );
    let eps = vec![
        endpoint(&v1, REVIEWS, &[("app", "reviews"), ("version", "v1")]),
        endpoint(&v2, REVIEWS, &[("app", "reviews"), ("version", "v2")]),
        endpoint(
            &decoy,
            "ratings.default.svc.cluster.local",
            &[("app", "reviews"), ("version", "v2")],
        ),
    ];
    let envoy = start_envoy(&p, &eps).await;
    Reviews {
        v1,
        v2,
        decoy,
        envoy,
    }
}

#[test]
fn generated_bootstrap_passes_envoy_validate() {
    let clusters = vec![
        cluster(V1, REVIEWS, 9080, "v1", &[("version", "v1")]),
        cluster(V3, REVIEWS, 9080, "v3", &[("version", "v3")]),
        cluster(
            "outbound|50051||grpc.default.svc.cluster.local",
            "grpc.default.svc.cluster.local",
            50051,
            "",
            &[],
        ),
    ];
    let eps = vec![Endpoint::new("127.0.0.1", 9080, [("version", "v1")])];
    let modes = [
        PathNormalization::None,
        PathNormalization::Base,
        PathNormalization::MergeSlashes,
        PathNormalization::DecodeAndMergeSlashes,
    ];
    for (i, mode) in modes.into_iter().enumerate() {
        let mut p = policy(mode, clusters.clone());
        p.services.push(Service {
            hostname: "grpc.default.svc.cluster.local".into(),
            ports: vec![ServicePort {
                number: 50051,
                protocol: "GRPC".into(),
                ..Default::default()
            }],
            ..Default::default()
        });
        let opts = BootstrapOptions {
            format: if i % 2 == 0 {
                Format::Yaml
            } else {
                Format::Json
            },
            access_log_path: Some("/dev/null".into()),
            // A stand-in for the layover filter, to prove the slot takes a real filter entry.
            layover_filter: Some(json!({
                "name": "layover-stand-in",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
                    "mutations": { "response_mutations": [{ "append": { "header": { "key": "x-layover-slot", "value": "1" } } }] },
                },
            })),
            ..Default::default()
        };
        let config = bootstrap(&p, &eps, &opts).unwrap();
        if let Err(e) = validate_config(&config) {
            panic!("{mode:?}: {e}\n--- config ---\n{config}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_header_reaches_the_label_selected_subset() {
    let r = reviews().await;
    let client = HttpClient::http1();
    for (cluster, expect) in [(V1, &r.v1), (V2, &r.v2), (V1, &r.v1), (V2, &r.v2)] {
        let reply = client
            .get_with(
                &r.envoy.url("/reviews/1?x=y"),
                &[(CLUSTER_HEADER, cluster), ("host", "reviews:9080")],
            )
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
        let echo: Echo = reply.json().unwrap();
        assert_eq!(echo.name, expect.name());
        assert_eq!(echo.subset, expect.subset());
        assert_eq!(echo.path, "/reviews/1?x=y");
        assert_eq!(echo.authority, "reviews:9080");
        // The routing signal is internal: it must not leak to the upstream.
        assert!(
            !echo.headers.contains_key(CLUSTER_HEADER),
            "upstream saw {CLUSTER_HEADER}: {:?}",
            echo.headers
        );
    }
    assert_eq!(r.v1.request_count(), 2);
    assert_eq!(r.v2.request_count(), 2);
    assert_eq!(
        r.decoy.request_count(),
        0,
        "endpoint of another service was selected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_without_endpoints_answers_503() {
    let r = reviews().await;
    let client = HttpClient::http1();
    let reply = client
        .get_with(&r.envoy.url("/"), &[(CLUSTER_HEADER, V3)])
        .await
        .unwrap();
    assert_eq!(reply.status, 503);
    assert_eq!(reply.text(), "no healthy upstream");

    // No header at all: the route names no cluster, and Envoy answers 503 as well.
    let reply = client.get(&r.envoy.url("/")).await.unwrap();
    assert_eq!(reply.status, 503, "{}", reply.text());

    // A header naming a cluster that does not exist: 503 too (cluster_not_found_response_code).
    let reply = client
        .get_with(&r.envoy.url("/"), &[(CLUSTER_HEADER, "outbound|1||nope")])
        .await
        .unwrap();
    assert_eq!(reply.status, 503, "{}", reply.text());

    assert_eq!(r.v1.request_count() + r.v2.request_count(), 0);
    // The access log tells the two 503s apart: no healthy upstream (UH) vs no cluster (NC).
    let log = r.envoy.access_log(3).await.unwrap();
    let flags: Vec<&str> = log.iter().map(|e| e["flags"].as_str().unwrap()).collect();
    assert_eq!(flags, ["UH", "NC", "NC"]);
    assert_eq!(log[0]["details"], "no_healthy_upstream");
    assert_eq!(log[1]["details"], "cluster_not_found");
    assert_eq!(
        r.envoy
            .stat(&format!("cluster.{V3}.upstream_cx_none_healthy"))
            .await
            .unwrap(),
        Some(1)
    );
}

/// Sends `path` verbatim through an Envoy with the given normalization and returns the path the
/// backend received, or the status Envoy answered with when the request did not get through.
async fn path_seen(envoy: &Envoy, path: &str) -> Result<String, u16> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nhost: svc\r\n{CLUSTER_HEADER}: echo\r\nconnection: close\r\n\r\n"
    );
    let response = raw_http1(envoy.listener_addr(), request.as_bytes())
        .await
        .unwrap();
    let status: u16 = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"));
    if status != 200 {
        return Err(status);
    }
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    let echo: Echo = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"));
    Ok(echo.path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_normalization_modes_do_what_istio_promises() {
    let backend = Backend::start("echo", "").await.unwrap();
    let eps = vec![endpoint(&backend, "echo.default.svc.cluster.local", &[])];
    let clusters = vec![cluster(
        "echo",
        "echo.default.svc.cluster.local",
        80,
        "",
        &[],
    )];

    let modes = [
        PathNormalization::None,
        PathNormalization::Base,
        PathNormalization::MergeSlashes,
        PathNormalization::DecodeAndMergeSlashes,
    ];
    // Start the four Envoys concurrently: startup dominates this test's run time.
    let envoys = futures_join_all(modes.iter().map(|&mode| {
        let p = policy(mode, clusters.clone());
        let eps = eps.clone();
        async move { start_envoy(&p, &eps).await }
    }))
    .await;

    // Request path → what the upstream receives under NONE, BASE, MERGE_SLASHES,
    // DECODE_AND_MERGE_SLASHES; "!400" means Envoy answered 400 itself.
    let cases: &[(&str, [&str; 4])] = &[
        ("/a/../b", ["/a/../b", "/b", "/b", "/b"]),
        ("/a/./b/", ["/a/./b/", "/a/b/", "/a/b/", "/a/b/"]),
        ("/a/..", ["/a/..", "/", "/", "/"]),
        ("/..", ["/..", "/", "/", "/"]),
        ("/a;b/../c", ["/a;b/../c", "/c", "/c", "/c"]),
        // Backslash is a separator for normalize_path.
        ("/a\\b", ["/a\\b", "/a/b", "/a/b", "/a/b"]),
        // normalize_path decodes percent-encoded unreserved characters, dots included.
        ("/%61%7E", ["/%61%7E", "/a~", "/a~", "/a~"]),
        ("/a/%2e%2e/b", ["/a/%2e%2e/b", "/b", "/b", "/b"]),
        (
            "/a/%2e%2e%2fb",
            ["/a/%2e%2e%2fb", "/a/..%2fb", "/a/..%2fb", "/b"],
        ),
        // Slash merging keeps a leading and a trailing slash: an all-slash path stays "//".
        ("//a//b", ["//a//b", "//a//b", "/a/b", "/a/b"]),
        ("/a//", ["/a//", "/a//", "/a/", "/a/"]),
        ("//", ["//", "//", "//", "//"]),
        ("///", ["///", "///", "//", "//"]),
        // Escaped slashes and backslashes are decoded only by DECODE_AND_MERGE_SLASHES,
        // before normalization and merging.
        ("/a%2Fb", ["/a%2Fb", "/a%2Fb", "/a%2Fb", "/a/b"]),
        (
            "/a%2f..%2fb",
            ["/a%2f..%2fb", "/a%2f..%2fb", "/a%2f..%2fb", "/b"],
        ),
        ("/a%5Cb", ["/a%5Cb", "/a%5Cb", "/a%5Cb", "/a/b"]),
        ("/a%2F%2Fb", ["/a%2F%2Fb", "/a%2F%2Fb", "/a%2F%2Fb", "/a/b"]),
        ("/a/%2F/", ["/a/%2F/", "/a/%2F/", "/a/%2F/", "/a/"]),
        ("/%2F", ["/%2F", "/%2F", "/%2F", "//"]),
        ("/%2F%2F", ["/%2F%2F", "/%2F%2F", "/%2F%2F", "//"]),
        // Only one level of decoding.
        ("/a%252Fb", ["/a%252Fb", "/a%252Fb", "/a%252Fb", "/a%252Fb"]),
        // A malformed escape passes; an escaped NUL is rejected once normalization is on.
        ("/a%2", ["/a%2", "/a%2", "/a%2", "/a%2"]),
        ("/a%00b", ["/a%00b", "!400", "!400", "!400"]),
        // Rejected by the HTTP/1 codec in every mode.
        ("a/b", ["!400", "!400", "!400", "!400"]),
        ("*", ["!400", "!400", "!400", "!400"]),
        // istiod's bootstrap sets the runtime flag http_reject_path_with_fragment=false, so
        // Envoy strips the fragment instead of rejecting the request (in every mode).
        ("/a#frag", ["/a", "/a", "/a", "/a"]),
        ("/a?x#y", ["/a?x", "/a?x", "/a?x", "/a?x"]),
        // The query is never normalized.
        (
            "/a/../b?p=/x/../y",
            [
                "/a/../b?p=/x/../y",
                "/b?p=/x/../y",
                "/b?p=/x/../y",
                "/b?p=/x/../y",
            ],
        ),
    ];
    let mut failures = Vec::new();
    for (path, expected) in cases {
        for (i, envoy) in envoys.iter().enumerate() {
            let got = match path_seen(envoy, path).await {
                Ok(path) => path,
                Err(status) => format!("!{status}"),
            };
            if got != expected[i] {
                failures.push(format!(
                    "{:?} {path:?}: expected {:?}, got {got:?}",
                    modes[i], expected[i]
                ));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Waits for all futures, keeping order. (A tiny join_all so the suite needs no futures crate.)
async fn futures_join_all<F, T>(futures: impl IntoIterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_requests_reach_many_backends() {
    const N: usize = 8;
    let mut backends = Vec::new();
    for i in 0..N {
        backends.push(Backend::start(&format!("svc{i}"), "v1").await.unwrap());
    }
    let clusters: Vec<Cluster> = (0..N)
        .map(|i| {
            let svc = format!("svc{i}.default.svc.cluster.local");
            cluster(
                &format!("outbound|80||{svc}"),
                &svc,
                80,
                "",
                &[("app", &format!("svc{i}"))],
            )
        })
        .collect();
    let eps: Vec<Endpoint> = backends
        .iter()
        .enumerate()
        .map(|(i, b)| {
            endpoint(
                b,
                &format!("svc{i}.default.svc.cluster.local"),
                &[("app", &format!("svc{i}"))],
            )
        })
        .collect();
    let envoy = start_envoy(&policy(PathNormalization::Base, clusters), &eps).await;

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for round in 0..4 {
        for i in 0..N {
            // Half the requests over HTTP/1.1 (one connection each), half multiplexed over h2c.
            let client = if (round + i) % 2 == 0 {
                HttpClient::http1()
            } else {
                HttpClient::h2c()
            };
            let url = envoy.url(&format!("/r{round}/b{i}"));
            let cluster = format!("outbound|80||svc{i}.default.svc.cluster.local");
            tasks.spawn(async move {
                let reply = client
                    .get_with(&url, &[(CLUSTER_HEADER, &cluster)])
                    .await
                    .unwrap();
                assert_eq!(reply.status, 200, "{}", reply.text());
                let echo: Echo = reply.json().unwrap();
                (i, round, echo)
            });
        }
    }
    while let Some(done) = tasks.join_next().await {
        let (i, round, echo) = done.unwrap();
        assert_eq!(echo.name, format!("svc{i}"));
        assert_eq!(echo.path, format!("/r{round}/b{i}"));
    }
    for b in &backends {
        assert_eq!(b.request_count(), 4, "{}", b.name());
    }
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_service_ports_get_h2_upstreams() {
    let grpc = Backend::start("grpc", "").await.unwrap();
    let web = Backend::start("web", "").await.unwrap();
    let mut p = policy(
        PathNormalization::Base,
        vec![
            cluster("grpc", "grpc.default.svc.cluster.local", 50051, "", &[]),
            cluster("web", "web.default.svc.cluster.local", 80, "", &[]),
        ],
    );
    for (host, number, protocol) in [
        ("grpc.default.svc.cluster.local", 50051, "GRPC"),
        ("web.default.svc.cluster.local", 80, "HTTP"),
    ] {
        p.services.push(Service {
            hostname: host.into(),
            ports: vec![ServicePort {
                number,
                protocol: protocol.into(),
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    let eps = vec![
        endpoint(&grpc, "grpc.default.svc.cluster.local", &[]),
        endpoint(&web, "web.default.svc.cluster.local", &[]),
    ];
    let envoy = start_envoy(&p, &eps).await;
    let client = HttpClient::http1();
    for (cluster, version) in [("grpc", "HTTP/2.0"), ("web", "HTTP/1.1")] {
        let reply = client
            .get_with(&envoy.url("/"), &[(CLUSTER_HEADER, cluster)])
            .await
            .unwrap();
        let echo: Echo = reply.json().unwrap();
        assert_eq!(echo.version, version, "{cluster}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_slot_runs_before_the_router() {
    let backend = Backend::start("echo", "").await.unwrap();
    let p = policy(
        PathNormalization::Base,
        vec![cluster("echo", "", 80, "", &[])],
    );
    let eps = vec![Endpoint::new("127.0.0.1", backend.port(), [("x", "y")])];
    let envoy = Envoy::start(|launch| {
        let opts = BootstrapOptions {
            layover_filter: Some(json!({
                "name": "layover-stand-in",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
                    "mutations": { "response_mutations": [{ "append": { "header": { "key": "x-layover-slot", "value": "1" } } }] },
                },
            })),
            ..options(launch)
        };
        bootstrap(&p, &eps, &opts)
    })
    .await
    .unwrap();
    let reply = HttpClient::h2c()
        .get_with(&envoy.url("/"), &[(CLUSTER_HEADER, "echo")])
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-layover-slot"), Some("1"));
    assert_eq!(reply.header("x-backend"), Some("echo"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_behaviors_pass_through_envoy() {
    let backend = Backend::start("flaky", "v1").await.unwrap();
    let p = policy(
        PathNormalization::Base,
        vec![cluster("flaky", "", 80, "", &[])],
    );
    let eps = vec![Endpoint::new("127.0.0.1", backend.port(), [("a", "b")])];
    let envoy = start_envoy(&p, &eps).await;
    let client = HttpClient::http1();
    let url = envoy.url("/");
    let get = || client.get_with(&url, &[(CLUSTER_HEADER, "flaky")]);

    // No retry policy on the route: every upstream 503 reaches the client.
    backend.fail_next(2);
    assert_eq!(get().await.unwrap().status, 503);
    assert_eq!(get().await.unwrap().status, 503);
    assert_eq!(get().await.unwrap().status, 200);

    backend.respond_next(1, 418, &[("x-teapot", "yes")]);
    let reply = get().await.unwrap();
    assert_eq!(reply.status, 418);
    assert_eq!(reply.header("x-teapot"), Some("yes"));

    // A reset before headers becomes Envoy's 503 with the upstream-reset body.
    backend.reset_next(1);
    let reply = get().await.unwrap();
    assert_eq!(reply.status, 503);
    assert!(
        reply
            .text()
            .contains("upstream connect error or disconnect/reset before headers"),
        "{}",
        reply.text()
    );

    // The route has no timeout (Istio's default): a stalled answer still arrives.
    let stall = Duration::from_millis(300);
    backend.stall_next(stall);
    let started = Instant::now();
    assert_eq!(get().await.unwrap().status, 200);
    assert!(started.elapsed() >= stall);

    assert_eq!(backend.request_count(), 6, "{:#?}", backend.received());

    // Envoy's own account of the same six requests (the reset shows as UC).
    let log = envoy.access_log(6).await.unwrap();
    let seen: Vec<(u64, &str)> = log
        .iter()
        .map(|e| (e["status"].as_u64().unwrap(), e["flags"].as_str().unwrap()))
        .collect();
    assert_eq!(
        seen,
        [
            (503, "-"),
            (503, "-"),
            (200, "-"),
            (418, "-"),
            (503, "UC"),
            (200, "-")
        ]
    );
    assert!(log.iter().all(|e| e["cluster"] == "flaky"));
}

/// The layover filter will steer the router with `x-envoy-*` headers; a client must not be able
/// to do the same. The facts doc says the connection manager strips them from external clients;
/// this checks it for the generated listener (use_remote_address: false, as on Istio waypoints),
/// with and without an `x-forwarded-for` from the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_cannot_steer_the_router() {
    let backend = Backend::start("flaky", "v1").await.unwrap();
    let p = policy(
        PathNormalization::Base,
        vec![cluster("flaky", "", 80, "", &[])],
    );
    let eps = vec![Endpoint::new("127.0.0.1", backend.port(), [("a", "b")])];
    let envoy = start_envoy(&p, &eps).await;
    let client = HttpClient::http1();
    let url = envoy.url("/");

    // A client-set upstream timeout is ignored: the stalled answer arrives (no 504).
    let stall = Duration::from_millis(400);
    backend.stall_next(stall);
    let reply = client
        .get_with(
            &url,
            &[
                (CLUSTER_HEADER, "flaky"),
                ("x-envoy-upstream-rq-timeout-ms", "50"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let echo: Echo = reply.json().unwrap();
    assert!(!echo.headers.contains_key("x-envoy-upstream-rq-timeout-ms"));

    // Client-set retry headers are ignored: one 503, no second attempt.
    for xff in [None, Some("203.0.113.7")] {
        let before = backend.request_count();
        backend.fail_next(1);
        let mut headers = vec![
            (CLUSTER_HEADER, "flaky"),
            ("x-envoy-retry-on", "5xx"),
            ("x-envoy-max-retries", "3"),
        ];
        if let Some(xff) = xff {
            headers.push(("x-forwarded-for", xff));
        }
        let reply = client.get_with(&url, &headers).await.unwrap();
        assert_eq!(reply.status, 503, "xff {xff:?}");
        assert_eq!(backend.request_count(), before + 1, "xff {xff:?}: retried");
    }
}
