//! Self-tests of the harness: backends, client, and Envoy process handling.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use layover_integration::{
    validate_config, Backend, Behavior, Echo, Envoy, HarnessError, HttpClient, Launch,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_echoes_over_http1_and_h2c() {
    let backend = Backend::start("echo", "v7").await.unwrap();
    let url = format!("http://{}/p?q=1", backend.addr());
    for (client, version) in [
        (HttpClient::http1(), "HTTP/1.1"),
        (HttpClient::h2c(), "HTTP/2.0"),
    ] {
        let reply = client
            .request(http::Method::POST, &url, &[("x-test", "a")], "body")
            .await
            .unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("x-backend"), Some("echo"));
        let echo: Echo = reply.json().unwrap();
        assert_eq!(echo.name, "echo");
        assert_eq!(echo.subset, "v7");
        assert_eq!(echo.method, "POST");
        assert_eq!(echo.path, "/p?q=1");
        assert_eq!(echo.authority, backend.addr().to_string());
        assert_eq!(echo.headers.get("x-test").map(String::as_str), Some("a"));
        assert_eq!(echo.version, version);
        assert_eq!(echo.body_len, 4);
    }
    assert_eq!(backend.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_behaviors_apply_in_order() {
    let backend = Backend::start("b", "").await.unwrap();
    let url = format!("http://{}/", backend.addr());
    let client = HttpClient::http1();
    backend.fail_next(1);
    backend.respond_next(1, 201, &[("x-a", "1")]);
    backend.push(Behavior::Respond {
        status: 202,
        headers: vec![],
        body: Some("plain".into()),
    });
    let statuses = [503, 201, 202, 200];
    for status in statuses {
        let reply = client.get(&url).await.unwrap();
        assert_eq!(reply.status, status);
        if status == 201 {
            assert_eq!(reply.header("x-a"), Some("1"));
        }
        if status == 202 {
            assert_eq!(reply.text(), "plain");
        }
    }
    backend.set_default(Behavior::Respond {
        status: 500,
        headers: vec![],
        body: None,
    });
    assert_eq!(client.get(&url).await.unwrap().status, 500);
    assert_eq!(client.get(&url).await.unwrap().status, 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_reset_and_stall() {
    let backend = Backend::start("b", "").await.unwrap();
    let url = format!("http://{}/", backend.addr());
    for client in [HttpClient::http1(), HttpClient::h2c()] {
        backend.reset_next(1);
        let err = client.get(&url).await.unwrap_err();
        assert!(matches!(err, HarnessError::Http(_)), "{err}");
        // The client recovers: the next request works.
        assert_eq!(client.get(&url).await.unwrap().status, 200);
    }

    let stall = Duration::from_millis(200);
    backend.stall_next(stall);
    let started = Instant::now();
    assert_eq!(HttpClient::h2c().get(&url).await.unwrap().status, 200);
    assert!(started.elapsed() >= stall);

    // A stall longer than the client's patience shows as a client timeout.
    backend.stall_next(Duration::from_secs(5));
    let err = HttpClient::http1()
        .with_timeout(Duration::from_millis(100))
        .get(&url)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no response within"), "{err}");
}

#[test]
fn validate_rejects_a_broken_config() {
    let err = validate_config("static_resources:\n  clusters:\n  - name: x\n    type: NOPE\n")
        .unwrap_err();
    assert!(matches!(err, HarnessError::Invalid(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_failure_reports_the_envoy_log() {
    let err = Envoy::start(|_launch| {
        Ok::<_, String>("static_resources:\n  clusters:\n  - name: x\n    type: NOPE\n".into())
    })
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, HarnessError::Start { .. }), "{text}");
    assert!(text.contains("Envoy exited"), "{text}");
    assert!(
        text.contains("NOPE"),
        "the log tail should name the bad value: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_is_killed_on_drop() {
    let envoy = Envoy::start(|_launch| {
        Ok::<_, String>(format!(
            "admin:\n  address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}\n\
             static_resources:\n  listeners:\n  - name: l\n    address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}\n    filter_chains:\n    - filters:\n      - name: envoy.filters.network.tcp_proxy\n        typed_config:\n          \"@type\": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy\n          stat_prefix: t\n          cluster: c\n  clusters:\n  - name: c\n    type: STATIC\n    load_assignment: {{cluster_name: c}}\n",
            Launch::ANY_PORT,
            Launch::ANY_PORT
        ))
    })
    .await
    .unwrap();
    let addr = envoy.listener_addr();
    assert_eq!(envoy.listener_addr_of("l"), Some(addr));
    assert_ne!(
        addr.port(),
        0,
        "the kernel-picked port is read back from Envoy"
    );
    assert_ne!(envoy.ports().admin, 0);
    // The listener accepts before Envoy logs "starting main dispatch loop": connections wait in
    // the kernel backlog until the worker runs, so they are served, just later. tcp_proxy to
    // an empty cluster closes the connection without a byte.
    // (Closing with unread input may show as a reset instead of EOF; both are fine.)
    match layover_integration::client::raw_http1(addr, b"x").await {
        Ok(reply) => assert!(reply.is_empty(), "{reply:?}"),
        Err(e) => assert!(
            !e.to_string().contains("no complete response within"),
            "{e}"
        ),
    }
    drop(envoy);
    // Drop waits for the process, so its sockets are closed by now.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[test]
fn missing_envoy_says_how_to_install_it() {
    let err = HarnessError::EnvoyNotFound("x does not exist".into());
    assert!(err.to_string().contains("cargo xtask install-envoy"));
}
