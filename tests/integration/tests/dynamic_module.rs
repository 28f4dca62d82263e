//! The Envoy dynamic-module build (`liblayover_module.so`) under the real Envoy 1.40.0: it loads
//! (and an invalid policy is rejected at load), routes, denies, delays, survives a panic inside
//! the filter, and stays healthy when clients walk away from delayed requests.
//!
//! Needs the release module (`cargo xtask build-dynamic-module`, or `$LAYOVER_DYNAMIC_MODULE_DIR`)
//! and, for the panic test, the `test-panic` build (`$LAYOVER_DYNAMIC_MODULE_PANIC_DIR`, else
//! `target/test-panic-module/debug`); `cargo xtask test` builds and exports both.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use layover_integration::waypoint::{
    app_yaml, compile_yaml, dynamic_module_dir, policy_json, subsets_yaml, waypoint_bootstrap,
};
use layover_integration::{
    validate_config_with, Backend, Echo, Envoy, EnvoyOptions, HttpClient, Reply,
};
use tokio::io::AsyncWriteExt;

const REVIEWS: &str = "reviews:9080";

/// The `test-panic` build of the module (see the file docs).
fn panic_module_dir() -> PathBuf {
    let dir = std::env::var_os("LAYOVER_DYNAMIC_MODULE_PANIC_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-panic-module/debug")
        });
    assert!(
        dir.join("liblayover_module.so").is_file(),
        "{}: no liblayover_module.so\nhint: cargo build -p layover-dynamic-module --features test-panic --target-dir target/test-panic-module (cargo xtask test does it)",
        dir.display()
    );
    dir
}

fn options(module_dir: &Path) -> EnvoyOptions {
    EnvoyOptions {
        log_level: "info".into(),
        env: vec![(
            "ENVOY_DYNAMIC_MODULES_SEARCH_PATH".into(),
            module_dir.display().to_string(),
        )],
        ..EnvoyOptions::default()
    }
}

/// reviews v1/v2/v3 backends, their DestinationRule subsets, and `extra` YAML.
async fn reviews_yaml(extra: &str) -> (String, Vec<Backend>) {
    let mut bs = Vec::new();
    for v in ["v1", "v2", "v3"] {
        bs.push(Backend::start(&format!("reviews-{v}"), v).await.unwrap());
    }
    let yaml = format!(
        "{}{}{extra}",
        app_yaml("reviews", &bs.iter().collect::<Vec<_>>()),
        subsets_yaml("reviews", &["v1", "v2", "v3"]),
    );
    (yaml, bs)
}

/// Starts Envoy with the dynamic module from `module_dir` loaded with the policy of `yaml`.
async fn start(yaml: &str, module_dir: &Path) -> Envoy {
    let compiled = compile_yaml(yaml).unwrap();
    let filter = layover_bootstrap::dynamic_module_filter(&policy_json(&compiled).unwrap());
    Envoy::start_with(&options(module_dir), |launch| {
        waypoint_bootstrap(&compiled, filter, launch)
    })
    .await
    .unwrap()
}

async fn get(envoy: &Envoy, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut all = vec![("host", REVIEWS)];
    all.extend_from_slice(headers);
    HttpClient::http1()
        .get_with(&envoy.url(path), &all)
        .await
        .unwrap()
}

fn subset(reply: &Reply) -> String {
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json::<Echo>().unwrap().subset
}

/// jason → v2, `/fault` → 300 ms delay then v1, `/fault-abort` → 300 ms delay then 418,
/// everything else → v1.
const VIRTUAL_SERVICE: &str = "---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - match: [{uri: {prefix: /fault-abort}}]
    fault:
      delay: {fixedDelay: 300ms, percentage: {value: 100}}
      abort: {httpStatus: 418, percentage: {value: 100}}
    route: [{destination: {host: reviews, subset: v1}}]
  - match: [{uri: {prefix: /fault}}]
    fault: {delay: {fixedDelay: 300ms, percentage: {value: 100}}}
    route: [{destination: {host: reviews, subset: v1}}]
  - route: [{destination: {host: reviews, subset: v1}}]
";

/// DELETE is denied; so is `/loopback-only` from 127.0.0.1 (the socket peer address is read).
const AUTHZ: &str = "---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-deny, namespace: default}
spec:
  targetRefs: [{kind: Service, group: '', name: reviews}]
  action: DENY
  rules:
  - to: [{operation: {methods: [DELETE]}}]
  - from: [{source: {ipBlocks: [127.0.0.1/32]}}]
    to: [{operation: {paths: [/loopback-only]}}]
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn module_loads_under_envoy_validate_and_bad_policy_is_rejected() {
    let (yaml, _bs) = reviews_yaml(VIRTUAL_SERVICE).await;
    let compiled = compile_yaml(&yaml).unwrap();
    let dir = dynamic_module_dir().unwrap();
    let launch = layover_integration::Launch {
        dir: std::env::temp_dir(),
        access_log: "/dev/null".into(),
    };
    let filter = layover_bootstrap::dynamic_module_filter(&policy_json(&compiled).unwrap());
    let config = waypoint_bootstrap(&compiled, filter, &launch).unwrap();
    validate_config_with(&config, &options(&dir)).unwrap();

    // A configuration that is not a policy: config_new returns null and Envoy rejects it.
    let bad = layover_bootstrap::dynamic_module_filter("{\"schemaVersion\": \"not a number\"}");
    let config = waypoint_bootstrap(&compiled, bad, &launch).unwrap();
    let err = validate_config_with(&config, &options(&dir))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Failed to initialize dynamic module"),
        "unexpected rejection: {err}"
    );
    assert!(
        err.contains("layover"),
        "the module's reason is logged: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_to_the_decided_subset_and_ignores_client_cluster_header() {
    let (yaml, bs) = reviews_yaml(VIRTUAL_SERVICE).await;
    let envoy = start(&yaml, &dynamic_module_dir().unwrap()).await;
    assert_eq!(subset(&get(&envoy, "/r", &[]).await), "v1");
    assert_eq!(
        subset(&get(&envoy, "/r", &[("end-user", "jason")]).await),
        "v2"
    );
    // A client cannot pick the cluster: the filter overwrites the header.
    let steer = get(
        &envoy,
        "/r",
        &[(
            "x-layover-cluster",
            "inbound-vip|9080|http/v3|reviews.default.svc.cluster.local",
        )],
    )
    .await;
    assert_eq!(subset(&steer), "v1");
    assert_eq!(bs[2].request_count(), 0);
    let echo: Echo = steer.json().unwrap();
    assert!(
        !echo.headers.contains_key("x-layover-cluster")
            || echo.headers["x-layover-cluster"].contains("|http/v1|"),
        "{:?}",
        echo.headers
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_deny_is_403_and_ip_blocks_use_the_socket_peer() {
    let (yaml, bs) = reviews_yaml(&format!("{VIRTUAL_SERVICE}{AUTHZ}")).await;
    let envoy = start(&yaml, &dynamic_module_dir().unwrap()).await;
    let client = HttpClient::http1();
    let delete = client
        .request(
            http::Method::DELETE,
            &envoy.url("/r"),
            &[("host", REVIEWS)],
            bytes::Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(delete.status, 403, "{}", delete.text());
    assert_eq!(delete.text(), "RBAC: access denied");
    // The source IP is the socket peer: a forged x-forwarded-for does not escape the rule.
    let forged = get(&envoy, "/loopback-only", &[("x-forwarded-for", "10.1.2.3")]).await;
    assert_eq!(forged.status, 403, "{}", forged.text());
    let loopback = get(&envoy, "/loopback-only", &[]).await;
    assert_eq!(
        loopback.status,
        403,
        "source.address must be 127.0.0.1: {}",
        loopback.text()
    );
    assert_eq!(subset(&get(&envoy, "/r", &[]).await), "v1");
    let total: usize = bs.iter().map(Backend::request_count).sum();
    assert_eq!(total, 1, "denied requests never reach a backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_delay_holds_only_the_delayed_request() {
    let (yaml, bs) = reviews_yaml(VIRTUAL_SERVICE).await;
    let envoy = start(&yaml, &dynamic_module_dir().unwrap()).await;
    let delay = Duration::from_millis(300);
    // Warm up the connection pools so timings measure the filter.
    assert_eq!(subset(&get(&envoy, "/r", &[]).await), "v1");

    let started = Instant::now();
    let url = envoy.url("/fault");
    let delayed = tokio::spawn(async move {
        let reply = HttpClient::http1()
            .get_with(&url, &[("host", REVIEWS)])
            .await
            .unwrap();
        (reply, started.elapsed())
    });
    // While it waits, the (single) worker keeps serving: nothing blocks on the delay.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let quick_start = Instant::now();
    assert_eq!(subset(&get(&envoy, "/r", &[]).await), "v1");
    assert!(quick_start.elapsed() < delay, "an undelayed request waited");

    let (reply, elapsed) = delayed.await.unwrap();
    assert_eq!(subset(&reply), "v1");
    assert!(elapsed >= delay, "delay not applied: {elapsed:?}");
    assert!(elapsed < delay * 10, "delay far too long: {elapsed:?}");

    // Delay then abort: the abort is sent when the delay ends, and nothing reaches v1.
    let before = bs[0].request_count();
    let started = Instant::now();
    let abort = get(&envoy, "/fault-abort", &[]).await;
    assert_eq!(abort.status, 418);
    assert_eq!(abort.text(), "fault filter abort");
    assert!(started.elapsed() >= delay);
    assert_eq!(bs[0].request_count(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_filter_fails_that_request_and_envoy_keeps_serving() {
    let (yaml, _bs) = reviews_yaml(VIRTUAL_SERVICE).await;
    let envoy = start(&yaml, &panic_module_dir()).await;
    for _ in 0..3 {
        let boom = get(&envoy, "/r", &[("x-layover-test-panic", "1")]).await;
        assert_eq!(boom.status, 500, "{}", boom.text());
        assert_eq!(boom.text(), "layover: internal error");
        // The very next request on the same Envoy is served normally.
        assert_eq!(subset(&get(&envoy, "/r", &[]).await), "v1");
    }
    let ready = HttpClient::http1()
        .get(&envoy.admin_url("/ready"))
        .await
        .unwrap();
    assert_eq!(ready.status, 200);
    let log = envoy.log();
    assert!(
        log.contains("panic in request_headers caught at the FFI boundary"),
        "the panic is logged: {}",
        envoy.log_tail(30)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_leaving_during_a_delay_leave_envoy_healthy() {
    let (yaml, bs) = reviews_yaml(VIRTUAL_SERVICE).await;
    let envoy = start(&yaml, &dynamic_module_dir().unwrap()).await;
    // Many delayed requests whose clients disconnect mid-delay: each stream is destroyed while
    // its timer entry is pending, so the timer later finds a revoked slot (and the scheduler
    // was deleted on the worker). Any use-after-free would crash Envoy here.
    let mut conns = Vec::new();
    for i in 0..40 {
        let mut s = tokio::net::TcpStream::connect(envoy.listener_addr())
            .await
            .unwrap();
        let req = format!("GET /fault/{i} HTTP/1.1\r\nhost: {REVIEWS}\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        conns.push(s);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(conns);
    // Past their deadlines: nothing was forwarded for a stream that is gone.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        bs[0].request_count(),
        0,
        "cancelled requests must not be forwarded"
    );

    // Also close some right at the deadline, racing the timer's commit.
    let mut late = Vec::new();
    for i in 0..20 {
        let mut s = tokio::net::TcpStream::connect(envoy.listener_addr())
            .await
            .unwrap();
        let req = format!("GET /fault/late{i} HTTP/1.1\r\nhost: {REVIEWS}\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        late.push(s);
    }
    tokio::time::sleep(Duration::from_millis(295)).await;
    drop(late);
    // Past every deadline.
    tokio::time::sleep(Duration::from_millis(400)).await;

    // A late close may lose its race against the timer and be forwarded legitimately, so the
    // HTTP/2 phase below is judged on its own delta.
    let before_h2 = bs[0].request_count();

    // HTTP/2: streams reset mid-delay on a connection that stays open (the worker keeps the
    // connection; only the streams and their schedulers go away).
    let mut h2 = h2_connection(&envoy).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let req = h2_get(&format!("/fault/h2-{i}"));
        let send = h2.send_request(req);
        tasks.spawn(async move { tokio::time::timeout(Duration::from_millis(100), send).await });
    }
    while let Some(reply) = tasks.join_next().await {
        assert!(
            reply.unwrap().is_err(),
            "a delayed h2 request was answered within 100 ms"
        );
    }
    // The timeouts dropped the response futures: hyper resets those streams.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        bs[0].request_count(),
        before_h2,
        "reset h2 streams must not be forwarded"
    );
    let reply = h2.send_request(h2_get("/r")).await.unwrap();
    assert_eq!(reply.status(), 200, "the same h2 connection still serves");

    // Envoy is alive and serves, delayed and undelayed alike.
    assert_eq!(subset(&get(&envoy, "/r", &[]).await), "v1");
    let started = Instant::now();
    assert_eq!(subset(&get(&envoy, "/fault/after", &[]).await), "v1");
    assert!(started.elapsed() >= Duration::from_millis(300));
    let ready = HttpClient::http1()
        .get(&envoy.admin_url("/ready"))
        .await
        .unwrap();
    assert_eq!(ready.status, 200);
    assert!(
        !envoy.log().contains("Caught Segmentation fault"),
        "{}",
        envoy.log_tail(40)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_reaches_the_shadow_subset() {
    let (yaml, bs) = reviews_yaml(
        "---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews, subset: v1}}]
    mirror: {host: reviews, subset: v3}
    mirrorPercentage: {value: 100}
",
    )
    .await;
    let envoy = start(&yaml, &dynamic_module_dir().unwrap()).await;
    for i in 0..5 {
        assert_eq!(subset(&get(&envoy, &format!("/m{i}"), &[]).await), "v1");
    }
    let started = Instant::now();
    while bs[2].request_count() < 5 && started.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let shadow = bs[2].received();
    assert_eq!(shadow.len(), 5, "every request mirrored once");
    for e in &shadow {
        assert_eq!(e.authority, "reviews-shadow:9080");
        assert!(e.path.starts_with("/m"));
    }
}

/// An h2c connection to the Envoy listener (prior knowledge), driven in the background.
async fn h2_connection(
    envoy: &Envoy,
) -> hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>> {
    let tcp = tokio::net::TcpStream::connect(envoy.listener_addr())
        .await
        .unwrap();
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    send
}

/// `GET http://reviews:9080<path>` (the `:authority` names the service).
fn h2_get(path: &str) -> http::Request<http_body_util::Empty<bytes::Bytes>> {
    http::Request::get(format!("http://{REVIEWS}{path}"))
        .version(http::Version::HTTP_2)
        .body(http_body_util::Empty::new())
        .unwrap()
}

/// Starts Envoy with the cluster specifier plugin route (`ClusterSelection::SpecifierPlugin`):
/// the module's filter writes its choice to dynamic metadata and the plugin's `select` reads it.
async fn start_specifier(yaml: &str) -> Envoy {
    use layover_bootstrap::BootstrapOptions;
    use layover_contract::ClusterSelection;
    let compiled = compile_yaml(yaml).unwrap();
    let filter = layover_bootstrap::dynamic_module_filter_with(
        &policy_json(&compiled).unwrap(),
        ClusterSelection::SpecifierPlugin,
    )
    .unwrap();
    Envoy::start_with(&options(&dynamic_module_dir().unwrap()), |launch| {
        let opts = BootstrapOptions {
            admin_port: layover_integration::Launch::ANY_PORT,
            listener_port: layover_integration::Launch::ANY_PORT,
            access_log_path: Some(launch.access_log.display().to_string()),
            layover_filter: Some(filter),
            cluster_selection: ClusterSelection::SpecifierPlugin,
            ..BootstrapOptions::default()
        };
        let config = layover_bootstrap::bootstrap(
            &compiled.policy,
            &layover_bootstrap::endpoints_from_registry(&compiled),
            &opts,
        )
        .map_err(|e| e.to_string())?;
        assert!(config.contains("inline_cluster_specifier_plugin"));
        assert!(!config.contains("cluster_header"));
        Ok::<_, String>(config)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_specifier_plugin_routes_to_the_decided_subset_and_ignores_client_header() {
    let (yaml, bs) = reviews_yaml(VIRTUAL_SERVICE).await;
    let envoy = start_specifier(&yaml).await;
    assert_eq!(subset(&get(&envoy, "/r", &[]).await), "v1");
    assert_eq!(
        subset(&get(&envoy, "/r", &[("end-user", "jason")]).await),
        "v2"
    );
    // The route has no cluster_header: a client-sent x-layover-cluster selects nothing, and the
    // filter strips it before the upstream sees it.
    let steer = get(
        &envoy,
        "/r",
        &[(
            "x-layover-cluster",
            "inbound-vip|9080|http/v3|reviews.default.svc.cluster.local",
        )],
    )
    .await;
    assert_eq!(subset(&steer), "v1");
    let echo: Echo = steer.json().unwrap();
    assert!(
        !echo.headers.contains_key("x-layover-cluster"),
        "{:?}",
        echo.headers
    );
    // Many requests on one connection, alternating decisions: each stream selects its own.
    for i in 0..10 {
        let user = if i % 2 == 0 { "jason" } else { "someone" };
        let want = if i % 2 == 0 { "v2" } else { "v1" };
        assert_eq!(
            subset(&get(&envoy, "/r", &[("end-user", user)]).await),
            want
        );
    }
    assert_eq!(bs[2].request_count(), 0, "v3 was never selected");
    // Faults still apply (the delayed request resumes into the refreshed route).
    let started = Instant::now();
    assert_eq!(subset(&get(&envoy, "/fault", &[]).await), "v1");
    assert!(started.elapsed() >= Duration::from_millis(300));
    // The module knew which mode it was configured for.
    assert!(
        envoy.log().contains("cluster selection: metadata"),
        "{}",
        envoy.log_tail(30)
    );
}
