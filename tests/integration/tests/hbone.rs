//! HBONE under the real Envoy, with both filter builds: the generated `connect_terminate` →
//! `main_internal` chain validates; an HBONE client (`layover-hbone`, playing ztunnel) reaches
//! the backend through :15008 and AuthorizationPolicy sees the tunnel's peer principal and the
//! client address ztunnel forwards; only mesh peers over TLS get through :15008; and in-mesh
//! endpoints are reached by re-originating HBONE (`connect_originate`) to the destination's
//! ztunnel (an `HboneServer`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use layover_bootstrap::{
    bootstrap, endpoints_from_registry, BootstrapOptions, Hbone, CONNECT_TERMINATE,
};
use layover_certs::{Identity, MeshCa};
use layover_integration::mesh::Certs;
use layover_integration::waypoint::{app_yaml, compile_yaml, policy_json, FilterBuild};
use layover_integration::{
    validate_config_with, Backend, ClientIdentity, Envoy, Launch, TlsClient, TlsError,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A client address ztunnel reports in `forwarded` unless a test says otherwise.
const CLIENT: &str = "10.244.1.7:41234";

/// Denies clients from 10.244.9.0/24 by their original address (`remoteIpBlocks`).
const DENY_REMOTE: &str = "
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: reviews-deny-remote
  namespace: default
spec:
  targetRefs:
  - kind: Service
    group: \"\"
    name: reviews
  action: DENY
  rules:
  - from:
    - source:
        remoteIpBlocks: [\"10.244.9.0/24\"]
";

const AUTHZ: &str = "
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: reviews-viewer
  namespace: default
spec:
  targetRefs:
  - kind: Service
    group: \"\"
    name: reviews
  action: ALLOW
  rules:
  - from:
    - source:
        principals: [\"cluster.local/ns/default/sa/productpage\"]
";

fn certs() -> Certs {
    Certs::new().unwrap()
}

fn hbone_config(
    build: FilterBuild,
    backend: &Backend,
    certs: &Certs,
    log: Option<String>,
) -> String {
    hbone_config_with(build, backend, certs.hbone.clone(), log, false, "")
}

/// The waypoint config; `in_mesh`: the backend's endpoints are reached through HBONE.
fn hbone_config_with(
    build: FilterBuild,
    backend: &Backend,
    hbone: Hbone,
    log: Option<String>,
    in_mesh: bool,
    extra_yaml: &str,
) -> String {
    let compiled = compile_yaml(&(app_yaml("reviews", &[backend]) + AUTHZ + extra_yaml)).unwrap();
    let mut opts = BootstrapOptions {
        admin_port: Launch::ANY_PORT,
        listener_port: Launch::ANY_PORT,
        access_log_path: log,
        hbone: Some(hbone),
        ..BootstrapOptions::default()
    };
    let mut endpoints = endpoints_from_registry(&compiled);
    for ep in &mut endpoints {
        ep.hbone = in_mesh;
    }
    if build == FilterBuild::Native {
        return layover_bootstrap::native::native_bootstrap(&compiled.policy, &endpoints, &opts)
            .unwrap();
    }
    opts.layover_filter = Some(build.http_filter(&policy_json(&compiled).unwrap()).unwrap());
    bootstrap(&compiled.policy, &endpoints, &opts).unwrap()
}

async fn validates(build: FilterBuild) {
    let backend = Backend::start("reviews-v1", "v1").await.unwrap();
    let certs = certs();
    let config = hbone_config(build, &backend, &certs, None);
    validate_config_with(&config, &build.envoy_options().unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}\n{config}", build.name()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hbone_bootstrap_passes_envoy_validate_wasm() {
    validates(FilterBuild::Wasm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hbone_bootstrap_passes_envoy_validate_dynamic_module() {
    validates(FilterBuild::DynamicModule).await;
}

/// The native translation (the oracle): the same chain with plain Envoy routes and RBAC, the
/// principal read from the filter state `connect_terminate` records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hbone_bootstrap_passes_envoy_validate_native() {
    validates(FilterBuild::Native).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_15008_refuses_plaintext_and_certless_clients() {
    // The handshake is Envoy's alone: one filter build is enough.
    let build = FilterBuild::Wasm;
    let backend = Backend::start("reviews-v1", "v1").await.unwrap();
    let certs = certs();
    let envoy = Envoy::start_with(&build.envoy_options().unwrap(), |_launch| {
        Ok::<_, std::convert::Infallible>(hbone_config(build, &backend, &certs, None))
    })
    .await
    .unwrap();
    let addr = envoy.listener_addr_of(CONNECT_TERMINATE).unwrap();

    // Plaintext HTTP (what a client outside the mesh would send): no HTTP answer, the
    // connection is closed by the TLS layer.
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"CONNECT 127.0.0.1:9080 HTTP/1.1\r\nHost: 127.0.0.1:9080\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut buf)).await;
    match read {
        Ok(_) => assert!(
            !buf.starts_with(b"HTTP/"),
            "plaintext got an HTTP answer: {}",
            String::from_utf8_lossy(&buf)
        ),
        Err(_) => panic!("plaintext connection was neither answered nor closed"),
    }

    // TLS without a client certificate. (HTTP/1.1 offered: the client then reads the server's
    // alert; an h2 client fails in its preface first and only sees a connection error.)
    let anonymous = TlsClient::new(certs.ca.root_pem(), None, false).unwrap();
    match anonymous.get(addr, "127.0.0.1:9080", "/", &[]).await {
        Err(e @ TlsError::Refused { .. }) => {
            assert_eq!(e.alert(), Some("CertificateRequired"), "{e}")
        }
        other => panic!("expected the handshake to be refused, got {other:?}"),
    }

    // A certificate from another CA.
    let other_ca = MeshCa::new("cluster.local").unwrap();
    let forged = other_ca
        .issue(&Identity::new("default", "productpage").unwrap())
        .unwrap();
    let forger = TlsClient::new(
        certs.ca.root_pem(),
        Some(&ClientIdentity::from_issued(&forged).unwrap()),
        false,
    )
    .unwrap();
    match forger.get(addr, "127.0.0.1:9080", "/", &[]).await {
        Err(e @ TlsError::Refused { .. }) => assert_eq!(e.alert(), Some("UnknownCA"), "{e}"),
        other => panic!("expected the handshake to be refused, got {other:?}"),
    }
    assert_eq!(backend.request_count(), 0);
}

/// One CONNECT through the waypoint's :15008 as `sa` (namespace `default`), then one HTTP/1.1
/// request inside the tunnel; returns the status and the body.
async fn tunnelled_get(
    certs: &Certs,
    addr: std::net::SocketAddr,
    sa: &str,
    connect_authority: &str,
    host: &str,
    path: &str,
    forwarded: &str,
) -> (u16, String) {
    layover_integration::mesh::tunnelled_get(
        certs,
        addr,
        sa,
        connect_authority,
        host,
        path,
        Some(forwarded),
        &[],
    )
    .await
    .unwrap()
}

async fn through_the_tunnel(build: FilterBuild) {
    let backend = Backend::start("reviews-v1", "v1").await.unwrap();
    let certs = certs();
    let envoy = Envoy::start_with(&build.envoy_options().unwrap(), |launch| {
        Ok::<_, std::convert::Infallible>(hbone_config(
            build,
            &backend,
            &certs,
            Some(launch.access_log.display().to_string()),
        ))
    })
    .await
    .unwrap();
    let addr = envoy.listener_addr_of(CONNECT_TERMINATE).unwrap();

    // The service by name and by (VIP) address: the principal comes from the HBONE peer.
    for authority in ["reviews.default.svc.cluster.local:9080", "10.96.0.10:9080"] {
        let (status, body) = tunnelled_get(
            &certs,
            addr,
            "productpage",
            authority,
            "reviews:9080",
            "/reviews/1",
            CLIENT,
        )
        .await;
        assert_eq!(status, 200, "{} {authority}: {body}", build.name());
        let echo: layover_integration::Echo = serde_json::from_str(&body).unwrap();
        assert_eq!(echo.name, "reviews-v1");
        assert_eq!(echo.path, "/reviews/1");

        let (status, body) = tunnelled_get(
            &certs,
            addr,
            "ratings",
            authority,
            "reviews:9080",
            "/reviews/1",
            CLIENT,
        )
        .await;
        assert_eq!(status, 403, "{} {authority}: {body}", build.name());
        assert_eq!(body, "RBAC: access denied");
    }
    assert_eq!(backend.request_count(), 2, "only allowed requests arrive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hbone_connect_reaches_the_backend_with_the_peer_principal_wasm() {
    through_the_tunnel(FilterBuild::Wasm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hbone_connect_reaches_the_backend_with_the_peer_principal_dynamic_module() {
    through_the_tunnel(FilterBuild::DynamicModule).await;
}

/// The native translation (the oracle): the same chain with plain Envoy routes and RBAC, the
/// principal read from the filter state `connect_terminate` records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hbone_connect_reaches_the_backend_with_the_peer_principal_native() {
    through_the_tunnel(FilterBuild::Native).await;
}

async fn hbone_in_and_out(build: FilterBuild) {
    use layover_hbone::{Credentials, HboneServer, PeerPolicy};

    let backend = Backend::start("reviews-v1", "v1").await.unwrap();
    let certs = certs();
    // The destination's ztunnel: accepts HBONE from mesh peers, forwards to the pod address.
    let reviews = certs
        .ca
        .issue(&Identity::new("default", "reviews").unwrap())
        .unwrap();
    let creds = Credentials::from_issued(certs.ca.root_pem(), &reviews, "cluster.local").unwrap();
    let ztunnel = HboneServer::new(&creds, PeerPolicy::trust_domain("cluster.local"))
        .unwrap()
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut hbone = certs.hbone.clone();
    hbone.upstream_port = ztunnel.local_addr().port();

    let envoy = Envoy::start_with(&build.envoy_options().unwrap(), |launch| {
        Ok::<_, std::convert::Infallible>(hbone_config_with(
            build,
            &backend,
            hbone,
            Some(launch.access_log.display().to_string()),
            true,
            "",
        ))
    })
    .await
    .unwrap();
    let addr = envoy.listener_addr_of(CONNECT_TERMINATE).unwrap();

    let (status, body) = tunnelled_get(
        &certs,
        addr,
        "productpage",
        "reviews.default.svc.cluster.local:9080",
        "reviews:9080",
        "/reviews/2",
        CLIENT,
    )
    .await;
    assert_eq!(
        status,
        200,
        "{}: {body}\n{}",
        build.name(),
        envoy.log_tail(40)
    );
    let echo: layover_integration::Echo = serde_json::from_str(&body).unwrap();
    assert_eq!(echo.path, "/reviews/2");

    // The waypoint re-originated HBONE: CONNECT to the pod address, as the waypoint.
    let records = ztunnel.records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].authority, backend.addr().to_string());
    assert_eq!(
        records[0].peer.to_string(),
        "spiffe://cluster.local/ns/default/sa/waypoint"
    );
    assert_eq!(records[0].sni, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_mesh_endpoints_are_reached_through_hbone_wasm() {
    hbone_in_and_out(FilterBuild::Wasm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_mesh_endpoints_are_reached_through_hbone_dynamic_module() {
    hbone_in_and_out(FilterBuild::DynamicModule).await;
}

/// The native translation (the oracle): the same chain with plain Envoy routes and RBAC, the
/// principal read from the filter state `connect_terminate` records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_mesh_endpoints_are_reached_through_hbone_native() {
    hbone_in_and_out(FilterBuild::Native).await;
}

async fn remote_ip_from_forwarded(build: FilterBuild) {
    let backend = Backend::start("reviews-v1", "v1").await.unwrap();
    let certs = certs();
    let hbone = certs.hbone.clone();
    let envoy = Envoy::start_with(&build.envoy_options().unwrap(), |_launch| {
        Ok::<_, std::convert::Infallible>(hbone_config_with(
            build,
            &backend,
            hbone,
            None,
            false,
            DENY_REMOTE,
        ))
    })
    .await
    .unwrap();
    let addr = envoy.listener_addr_of(CONNECT_TERMINATE).unwrap();
    let get = |forwarded: &'static str| {
        tunnelled_get(
            &certs,
            addr,
            "productpage",
            "10.96.0.10:9080",
            "reviews:9080",
            "/",
            forwarded,
        )
    };
    let (status, body) = get(CLIENT).await;
    assert_eq!(status, 200, "{}: {body}", build.name());
    let (status, body) = get("10.244.9.9:5000").await;
    assert_eq!(status, 403, "{}: {body}", build.name());
    assert_eq!(backend.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_ip_blocks_match_the_client_ztunnel_forwards_wasm() {
    remote_ip_from_forwarded(FilterBuild::Wasm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_ip_blocks_match_the_client_ztunnel_forwards_dynamic_module() {
    remote_ip_from_forwarded(FilterBuild::DynamicModule).await;
}

// ---------------------------------------------------------------------------------------------
// Acceptance: trust domains, namespaces, several services, HTTP/2 inside the tunnel, large
// bodies and many streams on one connection.
// ---------------------------------------------------------------------------------------------

/// The waypoint config for arbitrary Istio YAML (no policy added), with `hbone` as :15008.
fn waypoint_config(build: FilterBuild, hbone: Hbone, yaml: &str) -> String {
    let compiled = compile_yaml(yaml).unwrap();
    let opts = BootstrapOptions {
        admin_port: Launch::ANY_PORT,
        listener_port: Launch::ANY_PORT,
        hbone: Some(hbone),
        ..BootstrapOptions::default()
    };
    build.bootstrap(&compiled, opts).unwrap()
}

/// Starts Envoy with `yaml` compiled and `hbone` as :15008; returns it and the :15008 address.
async fn start_waypoint(
    build: FilterBuild,
    hbone: Hbone,
    yaml: &str,
) -> (Envoy, std::net::SocketAddr) {
    let config = waypoint_config(build, hbone, yaml);
    let envoy = Envoy::start_with(&build.envoy_options().unwrap(), |_launch| {
        Ok::<_, std::convert::Infallible>(config)
    })
    .await
    .unwrap();
    let addr = envoy.listener_addr_of(CONNECT_TERMINATE).unwrap();
    (envoy, addr)
}

/// One HBONE connection to the waypoint as `spiffe://cluster.local/ns/<ns>/sa/<sa>`.
async fn hbone_as(
    certs: &Certs,
    addr: std::net::SocketAddr,
    ns: &str,
    sa: &str,
) -> layover_hbone::HboneConnection {
    use layover_hbone::{Credentials, HboneClient, PeerPolicy};
    let cert = certs.ca.issue(&Identity::new(ns, sa).unwrap()).unwrap();
    let creds = Credentials::from_issued(certs.ca.root_pem(), &cert, "cluster.local").unwrap();
    let client = HboneClient::new(&creds, PeerPolicy::trust_domain("cluster.local")).unwrap();
    client.connect(addr).await.unwrap()
}

fn connect_headers() -> layover_hbone::ConnectHeaders {
    layover_hbone::ConnectHeaders {
        forwarded_for: Some(CLIENT.parse().unwrap()),
        ..layover_hbone::ConnectHeaders::default()
    }
}

/// A CONNECT to `authority` on `conn`, then one HTTP/1.1 `method path` with `Host: host` and
/// `body` inside the tunnel; returns the status and the body.
async fn h1_in_tunnel(
    conn: &layover_hbone::HboneConnection,
    authority: &str,
    host: &str,
    method: http::Method,
    path: &str,
    body: bytes::Bytes,
) -> (u16, bytes::Bytes) {
    use http_body_util::{BodyExt, Full};
    let stream = conn.connect(authority, &connect_headers()).await.unwrap();
    let (mut send, driver) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(driver);
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", host)
        .body(Full::new(body))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(30), send.send_request(req))
        .await
        .unwrap()
        .unwrap();
    let status = resp.status().as_u16();
    let body = tokio::time::timeout(Duration::from_secs(30), resp.into_body().collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    (status, body)
}

async fn h1_get(
    conn: &layover_hbone::HboneConnection,
    authority: &str,
    host: &str,
    path: &str,
) -> (u16, String) {
    let (status, body) = h1_in_tunnel(
        conn,
        authority,
        host,
        http::Method::GET,
        path,
        bytes::Bytes::new(),
    )
    .await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn echo_of(body: &str) -> layover_integration::Echo {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not an echo ({e}): {body}"))
}

const REVIEWS: &str = "reviews.default.svc.cluster.local:9080";
const RATINGS: &str = "ratings.default.svc.cluster.local:9080";

// 1. Trust domain -----------------------------------------------------------------------------

async fn foreign_trust_domain_refused(build: FilterBuild) {
    let backend = Backend::start("reviews-v1", "v1").await.unwrap();
    let certs = certs();
    // `MeshCa` issues only in its own trust domain, so the foreign identity comes from a second
    // CA for `evil.example` whose root the waypoint trusts too (a bundle of both roots, as in a
    // multi-cluster mesh). Its chain then verifies, and only the listener's SAN matcher
    // (`spiffe://cluster.local/` prefix) can refuse it: that is the check under test.
    let foreign_ca = MeshCa::new("evil.example").unwrap();
    let bundle_dir = tempfile::tempdir().unwrap();
    let bundle = bundle_dir.path().join("bundle.pem");
    std::fs::write(
        &bundle,
        format!("{}\n{}", certs.ca.root_pem(), foreign_ca.root_pem()),
    )
    .unwrap();
    let mut hbone = certs.hbone.clone();
    hbone.trusted_ca = bundle;
    let (envoy, addr) = start_waypoint(build, hbone, &app_yaml("reviews", &[&backend])).await;

    // Control: a cluster.local identity still gets through with the bundle.
    let conn = hbone_as(&certs, addr, "default", "productpage").await;
    let (status, body) = h1_get(&conn, REVIEWS, "reviews:9080", "/ok").await;
    assert_eq!(status, 200, "{}: {body}", build.name());
    assert_eq!(backend.request_count(), 1);

    let foreign = foreign_ca
        .issue(&Identity::new("default", "productpage").unwrap())
        .unwrap();
    assert!(foreign
        .cert_chain_pem
        .contains("-----BEGIN CERTIFICATE-----"));
    let client = TlsClient::new(
        certs.ca.root_pem(),
        Some(&ClientIdentity::from_issued(&foreign).unwrap()),
        false,
    )
    .unwrap();
    match client.get(addr, REVIEWS, "/foreign", &[]).await {
        Err(e @ TlsError::Refused { .. }) => {
            // Envoy fails the SAN match as a certificate verification failure.
            assert_ne!(
                e.alert(),
                Some("UnknownCA"),
                "{e}: the bundle was not trusted"
            );
        }
        other => panic!(
            "{}: expected the handshake to be refused, got {other:?}",
            build.name()
        ),
    }
    // And through the HBONE client: the connection or its first CONNECT fails.
    {
        use layover_hbone::{Credentials, HboneClient, PeerPolicy};
        let creds =
            Credentials::from_issued(certs.ca.root_pem(), &foreign, "evil.example").unwrap();
        let client = HboneClient::new(&creds, PeerPolicy::trust_domain("cluster.local")).unwrap();
        if let Ok(conn) = client.connect(addr).await {
            let r = conn.connect(REVIEWS, &connect_headers()).await;
            assert!(
                r.is_err(),
                "{}: a foreign trust domain got a tunnel",
                build.name()
            );
        }
    }
    assert_eq!(
        backend.request_count(),
        1,
        "the foreign identity reached the backend"
    );
    drop(envoy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_15008_refuses_a_foreign_trust_domain_wasm() {
    foreign_trust_domain_refused(FilterBuild::Wasm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_15008_refuses_a_foreign_trust_domain_dynamic_module() {
    foreign_trust_domain_refused(FilterBuild::DynamicModule).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_15008_refuses_a_foreign_trust_domain_native() {
    foreign_trust_domain_refused(FilterBuild::Native).await;
}

// 2. Namespaces -------------------------------------------------------------------------------

/// reviews: ALLOW from namespace bookinfo; ratings: DENY from anything not in bookinfo.
const NAMESPACE_POLICIES: &str = "
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: reviews-from-bookinfo
  namespace: default
spec:
  targetRefs:
  - kind: Service
    group: \"\"
    name: reviews
  action: ALLOW
  rules:
  - from:
    - source:
        namespaces: [\"bookinfo\"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: ratings-deny-outsiders
  namespace: default
spec:
  targetRefs:
  - kind: Service
    group: \"\"
    name: ratings
  action: DENY
  rules:
  - from:
    - source:
        notNamespaces: [\"bookinfo\"]
";

/// One tunnel on its own Envoy: starts a waypoint for `yaml`, opens one HBONE connection as
/// `ns`/`sa`, one CONNECT to `authority` and one HTTP/1.1 GET with `Host: host` inside it.
///
/// Why not one Envoy for several tunnels: a later CONNECT (on the same HBONE connection, or on
/// another one while an earlier tunnel is still open) can be judged and routed with the earlier
/// tunnel's peer principal and CONNECT authority — a product bug (see the report); tests that
/// must tell identities or authorities apart would otherwise be flaky.
async fn one_tunnel(
    build: FilterBuild,
    certs: &Certs,
    yaml: &str,
    (ns, sa): (&str, &str),
    authority: &str,
    host: &str,
) -> (u16, String) {
    let (_envoy, addr) = start_waypoint(build, certs.hbone.clone(), yaml).await;
    let conn = hbone_as(certs, addr, ns, sa).await;
    h1_get(&conn, authority, host, "/one").await
}

async fn namespaces_through_hbone(build: FilterBuild) {
    let reviews = Backend::start("reviews-v1", "v1").await.unwrap();
    let ratings = Backend::start("ratings-v1", "v1").await.unwrap();
    let certs = certs();
    let yaml =
        app_yaml("reviews", &[&reviews]) + &app_yaml("ratings", &[&ratings]) + NAMESPACE_POLICIES;
    for (ns, expected) in [("bookinfo", 200), ("default", 403)] {
        for (authority, host, name, policy) in [
            (
                REVIEWS,
                "reviews:9080",
                "reviews-v1",
                "ALLOW namespaces [bookinfo]",
            ),
            (
                RATINGS,
                "ratings:9080",
                "ratings-v1",
                "DENY notNamespaces [bookinfo]",
            ),
        ] {
            let (status, body) =
                one_tunnel(build, &certs, &yaml, (ns, "productpage"), authority, host).await;
            assert_eq!(
                status,
                expected,
                "{} {policy}, from {ns}: {body}",
                build.name()
            );
            if expected == 200 {
                assert_eq!(echo_of(&body).name, name);
            } else {
                assert_eq!(body, "RBAC: access denied");
            }
        }
    }
    assert_eq!(reviews.request_count(), 1);
    assert_eq!(ratings.request_count(), 1);
}

// 3. The CONNECT authority selects the service ------------------------------------------------

/// ratings admits only the reviews service account (reviews: only productpage, `AUTHZ`).
const RATINGS_AUTHZ: &str = "
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: ratings-viewer
  namespace: default
spec:
  targetRefs:
  - kind: Service
    group: \"\"
    name: ratings
  action: ALLOW
  rules:
  - from:
    - source:
        principals: [\"cluster.local/ns/default/sa/reviews\"]
";

async fn authority_selects_service(build: FilterBuild) {
    let reviews = Backend::start("reviews-v1", "v1").await.unwrap();
    let ratings = Backend::start("ratings-v1", "v1").await.unwrap();
    let certs = certs();
    let yaml = app_yaml("reviews", &[&reviews])
        + &app_yaml("ratings", &[&ratings])
        + AUTHZ
        + RATINGS_AUTHZ;
    // The same inner Host header every time: only the CONNECT authority differs.
    const HOST: &str = "reviews:9080";
    for (sa, authority, expected) in [
        ("productpage", REVIEWS, Some("reviews-v1")),
        ("productpage", RATINGS, None),
        ("reviews", RATINGS, Some("ratings-v1")),
        ("reviews", REVIEWS, None),
    ] {
        let (status, body) =
            one_tunnel(build, &certs, &yaml, ("default", sa), authority, HOST).await;
        match expected {
            Some(name) => {
                assert_eq!(status, 200, "{} {sa}→{authority}: {body}", build.name());
                assert_eq!(
                    echo_of(&body).name,
                    name,
                    "{} {sa}→{authority}",
                    build.name()
                );
            }
            None => assert_eq!(status, 403, "{} {sa}→{authority}: {body}", build.name()),
        }
    }
    assert_eq!(reviews.request_count(), 1);
    assert_eq!(ratings.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_authority_selects_the_service_and_its_policy_wasm() {
    authority_selects_service(FilterBuild::Wasm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_authority_selects_the_service_and_its_policy_dynamic_module() {
    authority_selects_service(FilterBuild::DynamicModule).await;
}

// No native variant: native Envoy selects the virtual host from the inner request's Host, not
// from the CONNECT authority in filter state (README "Native translation").

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_policies_apply_through_hbone_wasm() {
    namespaces_through_hbone(FilterBuild::Wasm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_policies_apply_through_hbone_dynamic_module() {
    namespaces_through_hbone(FilterBuild::DynamicModule).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_policies_apply_through_hbone_native() {
    namespaces_through_hbone(FilterBuild::Native).await;
}

// 4. HTTP/2 inside the tunnel -----------------------------------------------------------------

/// An HTTP/2 (prior knowledge) connection inside a new CONNECT stream on `conn`.
async fn h2_in_tunnel(
    conn: &layover_hbone::HboneConnection,
    authority: &str,
) -> hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>> {
    let stream = conn.connect(authority, &connect_headers()).await.unwrap();
    let (send, driver) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(driver);
    send
}

async fn h2_inside_tunnel(build: FilterBuild) {
    use http_body_util::{BodyExt, Empty};
    let backend = Backend::start("reviews-v1", "v1").await.unwrap();
    let certs = certs();
    let yaml = app_yaml("reviews", &[&backend]) + AUTHZ;

    // The policy applies to HTTP/2 inside the tunnel: ratings is not allowed on reviews. (On
    // its own Envoy: with another identity's tunnels on the same Envoy a request can be judged
    // with the other tunnel's peer identity, a product bug; see the report.)
    {
        let (_envoy, addr) = start_waypoint(build, certs.hbone.clone(), &yaml).await;
        let ratings = hbone_as(&certs, addr, "default", "ratings").await;
        let mut send = h2_in_tunnel(&ratings, REVIEWS).await;
        let req = http::Request::builder()
            .uri("http://reviews:9080/denied")
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(20), send.send_request(req))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(resp.version(), http::Version::HTTP_2);
        assert_eq!(resp.status().as_u16(), 403, "{}", build.name());
        assert_eq!(backend.request_count(), 0);
    }

    // Several requests multiplexed on one tunnelled HTTP/2 connection.
    let (_envoy, addr) = start_waypoint(build, certs.hbone.clone(), &yaml).await;
    let conn = hbone_as(&certs, addr, "default", "productpage").await;
    let send = h2_in_tunnel(&conn, REVIEWS).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..5 {
        let mut send = send.clone();
        tasks.spawn(async move {
            let req = http::Request::builder()
                .uri(format!("http://reviews:9080/h2/{i}"))
                .body(Empty::<bytes::Bytes>::new())
                .unwrap();
            let resp = tokio::time::timeout(Duration::from_secs(20), send.send_request(req))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(resp.version(), http::Version::HTTP_2);
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (i, status, String::from_utf8_lossy(&body).into_owned())
        });
    }
    while let Some(r) = tasks.join_next().await {
        let (i, status, body) = r.unwrap();
        assert_eq!(status, 200, "{}: {body}", build.name());
        assert_eq!(echo_of(&body).path, format!("/h2/{i}"));
    }
    assert_eq!(backend.request_count(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_prior_knowledge_inside_the_tunnel_wasm() {
    h2_inside_tunnel(FilterBuild::Wasm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_prior_knowledge_inside_the_tunnel_dynamic_module() {
    h2_inside_tunnel(FilterBuild::DynamicModule).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_prior_knowledge_inside_the_tunnel_native() {
    h2_inside_tunnel(FilterBuild::Native).await;
}

// 5. Large bodies -----------------------------------------------------------------------------

const BIG: usize = 10 * 1024 * 1024;

/// `len` deterministic pseudo-random bytes (xorshift), different per `seed`.
fn blob(len: usize, seed: u64) -> bytes::Bytes {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out.into()
}

fn digest(data: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    data.hash(&mut h);
    h.finish()
}

/// A tiny HTTP/1.1 backend: `POST` echoes the body; `GET` answers `blob(BIG, 7)`. Records the
/// length and digest of every request body it received.
struct BlobBackend {
    addr: std::net::SocketAddr,
    received: std::sync::Arc<std::sync::Mutex<Vec<(usize, u64)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for BlobBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn blob_backend() -> BlobBackend {
    use http_body_util::{BodyExt, Full};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = received.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let seen = seen.clone();
                        async move {
                            let post = req.method() == http::Method::POST;
                            let body = req.into_body().collect().await?.to_bytes();
                            seen.lock().unwrap().push((body.len(), digest(&body)));
                            let out = if post { body } else { blob(BIG, 7) };
                            Ok::<_, hyper::Error>(http::Response::new(Full::new(out)))
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    BlobBackend {
        addr,
        received,
        task,
    }
}

async fn large_bodies(build: FilterBuild) {
    let backend = blob_backend().await;
    let certs = certs();
    let port = backend.addr.port();
    let yaml = layover_integration::waypoint::service_yaml("blobs")
        + &format!(
            "---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: blobs-{port}
  namespace: default
spec:
  address: 127.0.0.1
  ports:
    http: {port}
  labels:
    app: blobs
"
        );
    let (_envoy, addr) = start_waypoint(build, certs.hbone.clone(), &yaml).await;
    let conn = hbone_as(&certs, addr, "default", "productpage").await;
    let authority = "blobs.default.svc.cluster.local:9080";

    // 10 MB up, echoed back down.
    let sent = blob(BIG, 42);
    let (status, got) = h1_in_tunnel(
        &conn,
        authority,
        "blobs:9080",
        http::Method::POST,
        "/echo",
        sent.clone(),
    )
    .await;
    assert_eq!(
        status,
        200,
        "{}: {:?}",
        build.name(),
        &got[..got.len().min(200)]
    );
    assert_eq!(
        backend.received.lock().unwrap().as_slice(),
        &[(BIG, digest(&sent))],
        "{}: the request body arrived altered",
        build.name()
    );
    assert_eq!(got.len(), BIG, "{}", build.name());
    assert_eq!(
        digest(&got),
        digest(&sent),
        "{}: echo altered",
        build.name()
    );

    // 10 MB down.
    let (status, got) = h1_in_tunnel(
        &conn,
        authority,
        "blobs:9080",
        http::Method::GET,
        "/big",
        bytes::Bytes::new(),
    )
    .await;
    assert_eq!(status, 200, "{}", build.name());
    assert_eq!(got.len(), BIG, "{}", build.name());
    assert_eq!(digest(&got), digest(&blob(BIG, 7)), "{}", build.name());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_megabyte_bodies_cross_the_tunnel_intact_wasm() {
    large_bodies(FilterBuild::Wasm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_megabyte_bodies_cross_the_tunnel_intact_dynamic_module() {
    large_bodies(FilterBuild::DynamicModule).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_megabyte_bodies_cross_the_tunnel_intact_native() {
    large_bodies(FilterBuild::Native).await;
}

// 6. Many streams on one connection -----------------------------------------------------------

const STREAMS: usize = 60;

async fn many_streams(build: FilterBuild) {
    let backend = Backend::start("reviews-v1", "v1").await.unwrap();
    let certs = certs();
    let yaml = app_yaml("reviews", &[&backend]) + AUTHZ;
    let (_envoy, addr) = start_waypoint(build, certs.hbone.clone(), &yaml).await;
    let conn = hbone_as(&certs, addr, "default", "productpage").await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..STREAMS {
        let conn = conn.clone();
        tasks.spawn(async move {
            let (status, body) = h1_get(&conn, REVIEWS, "reviews:9080", &format!("/s/{i}")).await;
            (i, status, body)
        });
    }
    let mut seen = std::collections::BTreeSet::new();
    while let Some(r) = tasks.join_next().await {
        let (i, status, body) = r.unwrap();
        assert_eq!(status, 200, "{} stream {i}: {body}", build.name());
        assert_eq!(echo_of(&body).path, format!("/s/{i}"), "{}", build.name());
        seen.insert(i);
    }
    assert_eq!(seen.len(), STREAMS);
    assert!(
        !conn.is_closed(),
        "{}: the HBONE connection closed",
        build.name()
    );
    assert_eq!(backend.request_count(), STREAMS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_concurrent_connects_share_one_hbone_connection_wasm() {
    many_streams(FilterBuild::Wasm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_concurrent_connects_share_one_hbone_connection_dynamic_module() {
    many_streams(FilterBuild::DynamicModule).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_concurrent_connects_share_one_hbone_connection_native() {
    many_streams(FilterBuild::Native).await;
}

// Security regression: a tunnel is judged and routed with its own peer identity and CONNECT
// authority, never with another tunnel's. The HBONE listener shares them with the
// `main_internal` connection as filter state; they must be hashable so Envoy keys its upstream
// connection pool by them — with plain strings a later tunnel could be handed an idle
// connection carrying an earlier tunnel's identity (Envoy
// `CommonUpstreamTransportSocketFactory::hashKey` only folds in `Hashable` objects). One Envoy,
// interleaved tunnels of two identities and two authorities, repeated to give reuse a chance.
async fn tunnels_keep_their_own_identity(build: FilterBuild) {
    let reviews = Backend::start("reviews-v1", "v1").await.unwrap();
    let ratings = Backend::start("ratings-v1", "v1").await.unwrap();
    let certs = certs();
    let yaml =
        app_yaml("reviews", &[&reviews]) + &app_yaml("ratings", &[&ratings]) + NAMESPACE_POLICIES;
    let (_envoy, addr) = start_waypoint(build, certs.hbone.clone(), &yaml).await;
    let insider = hbone_as(&certs, addr, "bookinfo", "productpage").await;
    let outsider = hbone_as(&certs, addr, "default", "productpage").await;
    for round in 0..5 {
        for (authority, host, name) in [
            (REVIEWS, "reviews:9080", "reviews-v1"),
            (RATINGS, "ratings:9080", "ratings-v1"),
        ] {
            let (status, body) = h1_get(&insider, authority, host, "/mine").await;
            assert_eq!(
                status,
                200,
                "{} round {round}: bookinfo → {authority}: {body}",
                build.name()
            );
            assert_eq!(
                echo_of(&body).name,
                name,
                "{} round {round}: the CONNECT authority {authority} must pick the service",
                build.name()
            );
            let (status, body) = h1_get(&outsider, authority, host, "/theirs").await;
            assert_eq!(
                status,
                403,
                "{} round {round}: default → {authority} must be judged as default: {body}",
                build.name()
            );
        }
    }
    assert_eq!(reviews.request_count(), 5);
    assert_eq!(ratings.request_count(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_never_inherit_another_tunnels_identity_wasm() {
    tunnels_keep_their_own_identity(FilterBuild::Wasm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_never_inherit_another_tunnels_identity_dynamic_module() {
    tunnels_keep_their_own_identity(FilterBuild::DynamicModule).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_never_inherit_another_tunnels_identity_native() {
    tunnels_keep_their_own_identity(FilterBuild::Native).await;
}
