//! HBONE under the real Envoy, with both filter builds: the generated `connect_terminate` →
//! `main_internal` chain validates; an HBONE client (`layover-hbone`, playing ztunnel) reaches
//! the backend through :15008 and AuthorizationPolicy sees the tunnel's peer principal and the
//! client address ztunnel forwards; only mesh peers over TLS get through :15008; and in-mesh
//! endpoints are reached by re-originating HBONE (`connect_originate`) to the destination's
//! ztunnel (an `HboneServer`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use layover_certs::{write_cert, Identity, MeshCa, MeshDir};
use layover_envoy::{
    bootstrap, endpoints_from_registry, BootstrapOptions, Hbone, CONNECT_TERMINATE,
};
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

/// A mesh CA with the waypoint's certificate written to a temp dir.
struct Certs {
    ca: MeshCa,
    hbone: Hbone,
    _dir: tempfile::TempDir,
}

fn certs() -> Certs {
    let ca = MeshCa::new("cluster.local").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mesh = MeshDir::new(dir.path());
    std::fs::write(mesh.root_cert(), ca.root_pem()).unwrap();
    let waypoint = ca
        .issue(&Identity::new("default", "waypoint").unwrap())
        .unwrap();
    write_cert(&mesh.waypoint(), &waypoint).unwrap();
    let hbone = Hbone {
        port: Launch::ANY_PORT,
        cert_chain: mesh.waypoint().cert_chain,
        private_key: mesh.waypoint().private_key,
        trusted_ca: mesh.root_cert(),
        trust_domain: "cluster.local".into(),
        upstream_port: layover_envoy::HBONE_PORT,
    };
    Certs {
        ca,
        hbone,
        _dir: dir,
    }
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
    let filter = build.http_filter(&policy_json(&compiled).unwrap()).unwrap();
    let opts = BootstrapOptions {
        admin_port: Launch::ANY_PORT,
        listener_port: Launch::ANY_PORT,
        access_log_path: log,
        layover_filter: Some(filter),
        hbone: Some(hbone),
        ..BootstrapOptions::default()
    };
    let mut endpoints = endpoints_from_registry(&compiled);
    for ep in &mut endpoints {
        ep.hbone = in_mesh;
    }
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
    use http_body_util::{BodyExt, Empty};
    use layover_hbone::{ConnectHeaders, Credentials, HboneClient, PeerPolicy};

    let cert = certs
        .ca
        .issue(&Identity::new("default", sa).unwrap())
        .unwrap();
    let creds = Credentials::from_issued(certs.ca.root_pem(), &cert, "cluster.local").unwrap();
    let client = HboneClient::new(&creds, PeerPolicy::trust_domain("cluster.local")).unwrap();
    let conn = client.connect(addr).await.unwrap();
    let headers = ConnectHeaders {
        forwarded_for: Some(forwarded.parse().unwrap()),
        ..ConnectHeaders::default()
    };
    let stream = conn.connect(connect_authority, &headers).await.unwrap();
    let (mut send, driver) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(driver);
    let req = http::Request::builder()
        .uri(path)
        .header("host", host)
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(20), send.send_request(req))
        .await
        .unwrap()
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
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
