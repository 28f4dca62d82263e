//! HBONE client ↔ server over loopback, with certificates from `layover-certs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use layover_certs::{Identity, MeshCa};
use layover_hbone::{
    new_traceparent, Baggage, ConnectHeaders, Credentials, HboneClient, HboneConnection,
    HboneError, HboneServer, PeerPolicy, RunningServer, SpiffeId,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TD: &str = "cluster.local";
const LOCAL: &str = "127.0.0.1:0";

fn id(s: &str) -> Identity {
    s.parse().unwrap()
}

fn creds(ca: &MeshCa, identity: &str) -> Credentials {
    let cert = ca.issue(&id(identity)).unwrap();
    Credentials::from_issued(ca.root_pem(), &cert, ca.trust_domain()).unwrap()
}

fn sha256(data: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .to_vec()
}

/// Bounds every test: a hang fails instead of blocking the suite.
async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("test timed out")
}

/// A TCP backend that echoes every byte back and closes its side after the client's EOF.
async fn echo_backend() -> SocketAddr {
    let listener = TcpListener::bind(LOCAL).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// An HTTP/1.1 + HTTP/2 backend answering with the request's method, path and version in
/// headers and its body echoed.
async fn http_backend() -> SocketAddr {
    let listener = TcpListener::bind(LOCAL).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let svc = service_fn(|req: Request<hyper::body::Incoming>| async move {
                    let method = req.method().to_string();
                    let path = req.uri().path().to_string();
                    let version = format!("{:?}", req.version());
                    let body = req.into_body().collect().await?.to_bytes();
                    let resp = http::Response::builder()
                        .header("x-method", method)
                        .header("x-path", path)
                        .header("x-version", version)
                        .body(Full::new(body))
                        .unwrap();
                    Ok::<_, hyper::Error>(resp)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

struct Mesh {
    ca: MeshCa,
    client: Credentials,
    server: Credentials,
}

fn mesh() -> Mesh {
    let ca = MeshCa::new(TD).unwrap();
    let client = creds(&ca, "bookinfo/productpage");
    let server = creds(&ca, "bookinfo/waypoint");
    Mesh { ca, client, server }
}

async fn start_server(creds: &Credentials) -> RunningServer {
    HboneServer::new(creds, PeerPolicy::trust_domain(TD))
        .unwrap()
        .bind(LOCAL.parse().unwrap())
        .await
        .unwrap()
}

async fn connect(m: &Mesh, server: &RunningServer) -> HboneConnection {
    HboneClient::new(&m.client, PeerPolicy::trust_domain(TD))
        .unwrap()
        .connect(server.local_addr())
        .await
        .unwrap()
}

/// Opens a CONNECT and returns whatever error the attempt ends with (none: `Ok`).
async fn try_tunnel(
    client: &HboneClient,
    addr: SocketAddr,
    authority: &str,
) -> Result<(), HboneError> {
    let conn = client.connect(addr).await?;
    let mut s = conn.connect(authority, &ConnectHeaders::default()).await?;
    s.write_all(b"ping").await?;
    s.shutdown().await?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await?;
    Ok(())
}

#[tokio::test]
async fn connect_reaches_echo_backend_with_authority_headers_and_both_identities() {
    within(async {
        let m = mesh();
        let backend = echo_backend().await;
        let server = start_server(&m.server).await;
        let client =
            HboneClient::new(&m.client, PeerPolicy::exactly(TD, id("bookinfo/waypoint"))).unwrap();
        let conn = client.connect(server.local_addr()).await.unwrap();
        assert_eq!(
            conn.peer(),
            &SpiffeId::parse("spiffe://cluster.local/ns/bookinfo/sa/waypoint").unwrap()
        );
        let traceparent = new_traceparent().unwrap();
        let headers = ConnectHeaders {
            forwarded_for: Some("10.0.0.7:41234".parse().unwrap()),
            forwarded_host: Some("reviews.bookinfo.svc.cluster.local".into()),
            baggage: Some(Baggage {
                cluster: Some("Kubernetes".into()),
                namespace: Some("bookinfo".into()),
                workload_kind: Some("deployment".into()),
                workload_name: Some("productpage-v1".into()),
                service_name: Some("productpage".into()),
                service_version: Some("v1".into()),
            }),
            traceparent: Some(traceparent.clone()),
            extra: vec![("x-test".into(), "1".into())],
        };
        let authority = backend.to_string();
        let mut s = conn.connect(&authority, &headers).await.unwrap();
        s.write_all(b"hello through hbone").await.unwrap();
        s.shutdown().await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"hello through hbone");

        let records = server.records();
        assert_eq!(records.len(), 1);
        let r = &records[0];
        assert_eq!(r.authority, authority);
        assert_eq!(
            r.peer.to_string(),
            "spiffe://cluster.local/ns/bookinfo/sa/productpage"
        );
        assert_eq!(
            r.peer.principal(),
            "cluster.local/ns/bookinfo/sa/productpage"
        );
        assert_eq!(r.sni, None, "HBONE sends no SNI");
        let h = |name: &str| r.headers.get(name).unwrap().to_str().unwrap().to_string();
        assert_eq!(
            h("forwarded"),
            "for=\"10.0.0.7:41234\";host=reviews.bookinfo.svc.cluster.local"
        );
        assert_eq!(
            h("baggage"),
            "k8s.cluster.name=Kubernetes,k8s.namespace.name=bookinfo,\
             k8s.deployment.name=productpage-v1,service.name=productpage,service.version=v1"
        );
        assert_eq!(h("traceparent"), traceparent);
        assert_eq!(traceparent.len(), 55);
        assert_eq!(h("x-test"), "1");
        assert_eq!(server.connections(), 1);
    })
    .await;
}

#[tokio::test]
async fn service_vip_authority_is_resolved_by_the_target_map() {
    within(async {
        let m = mesh();
        let backend = echo_backend().await;
        let targets = HashMap::from([("10.96.0.10:9080".to_string(), backend)]);
        let server = HboneServer::new(&m.server, PeerPolicy::trust_domain(TD))
            .unwrap()
            .with_targets(targets)
            .bind(LOCAL.parse().unwrap())
            .await
            .unwrap();
        let conn = connect(&m, &server).await;
        let mut s = conn
            .connect("10.96.0.10:9080", &ConnectHeaders::default())
            .await
            .unwrap();
        s.write_all(b"vip").await.unwrap();
        s.shutdown().await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"vip");
        // An authority the map does not know: no route, 503.
        let err = conn
            .connect("10.96.0.11:9080", &ConnectHeaders::default())
            .await
            .unwrap_err();
        assert!(
            matches!(err, HboneError::Status { status, .. } if status == StatusCode::SERVICE_UNAVAILABLE),
            "{err}"
        );
        let authorities: Vec<String> = server.records().into_iter().map(|r| r.authority).collect();
        assert_eq!(authorities, ["10.96.0.10:9080", "10.96.0.11:9080"]);
    })
    .await;
}

#[tokio::test]
async fn plaintext_client_is_refused() {
    within(async {
        let m = mesh();
        let server = start_server(&m.server).await;
        let mut tcp = TcpStream::connect(server.local_addr()).await.unwrap();
        // An HTTP/2 prior-knowledge preface and a CONNECT-ish line: not a TLS ClientHello.
        tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nCONNECT 127.0.0.1:1 HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        let _ = tcp.read_to_end(&mut out).await;
        // Either nothing or a TLS alert record (content type 21), never an HTTP answer.
        assert!(out.is_empty() || out[0] == 0x15, "{out:?}");
        assert!(server.records().is_empty());
        assert_eq!(server.connections(), 0);
        // The server counts the rejection just after closing the socket.
        for _ in 0..100 {
            if server.rejected() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(server.rejected(), 1);
    })
    .await;
}

#[tokio::test]
async fn client_cert_from_another_ca_is_refused() {
    within(async {
        let m = mesh();
        let backend = echo_backend().await;
        let server = start_server(&m.server).await;
        // Same trust domain and identity, but a different root: the server must not accept it.
        let rogue_ca = MeshCa::new(TD).unwrap();
        let rogue = rogue_ca.issue(&id("bookinfo/productpage")).unwrap();
        let rogue =
            Credentials::from_pem(m.ca.root_pem(), &rogue.cert_chain_pem, &rogue.key_pem, TD)
                .unwrap();
        let client = HboneClient::new(&rogue, PeerPolicy::trust_domain(TD)).unwrap();
        let err = try_tunnel(&client, server.local_addr(), &backend.to_string())
            .await
            .unwrap_err();
        eprintln!("refused as expected: {err}");
        assert!(server.records().is_empty());
        assert_eq!(server.connections(), 0);
    })
    .await;
}

#[tokio::test]
async fn client_identity_not_allowed_by_the_server_is_refused() {
    within(async {
        let m = mesh();
        let backend = echo_backend().await;
        let server = HboneServer::new(&m.server, PeerPolicy::exactly(TD, id("bookinfo/reviews")))
            .unwrap()
            .bind(LOCAL.parse().unwrap())
            .await
            .unwrap();
        let client = HboneClient::new(&m.client, PeerPolicy::trust_domain(TD)).unwrap();
        assert!(
            try_tunnel(&client, server.local_addr(), &backend.to_string())
                .await
                .is_err()
        );
        assert!(server.records().is_empty());
        // The allowed identity gets through.
        let reviews = creds(&m.ca, "bookinfo/reviews");
        let client = HboneClient::new(&reviews, PeerPolicy::trust_domain(TD)).unwrap();
        try_tunnel(&client, server.local_addr(), &backend.to_string())
            .await
            .unwrap();
        assert_eq!(server.records().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn server_from_another_trust_domain_is_refused_by_the_client() {
    within(async {
        let m = mesh();
        let backend = echo_backend().await;
        // The other trust domain's root is trusted too, so only the SPIFFE check can refuse.
        let other_ca = MeshCa::new("other.local").unwrap();
        let other = other_ca.issue(&id("bookinfo/waypoint")).unwrap();
        let server_creds =
            Credentials::from_pem(m.ca.root_pem(), &other.cert_chain_pem, &other.key_pem, TD)
                .unwrap();
        let server = start_server(&server_creds).await;
        let roots = format!("{}{}", m.ca.root_pem(), other_ca.root_pem());
        let cert = m.ca.issue(&id("bookinfo/productpage")).unwrap();
        let client_creds = Credentials::from_issued(&roots, &cert, TD).unwrap();
        let client = HboneClient::new(&client_creds, PeerPolicy::trust_domain(TD)).unwrap();
        let err = try_tunnel(&client, server.local_addr(), &backend.to_string())
            .await
            .unwrap_err();
        assert!(matches!(err, HboneError::Tls(_)), "{err}");
        assert!(err.to_string().contains("server identity"), "{err}");
        // Accepting that trust domain, the same server is fine.
        let client =
            HboneClient::new(&client_creds, PeerPolicy::trust_domain("other.local")).unwrap();
        try_tunnel(&client, server.local_addr(), &backend.to_string())
            .await
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn server_with_an_unexpected_identity_is_refused_by_the_client() {
    within(async {
        let m = mesh();
        let backend = echo_backend().await;
        let server = start_server(&m.server).await;
        let client = HboneClient::new(
            &m.client,
            PeerPolicy::exactly(TD, id("istio-system/ztunnel")),
        )
        .unwrap();
        let err = try_tunnel(&client, server.local_addr(), &backend.to_string())
            .await
            .unwrap_err();
        assert!(matches!(err, HboneError::Tls(_)), "{err}");
        assert!(server.records().is_empty());
    })
    .await;
}

async fn http_through_tunnel(http2: bool) {
    let m = mesh();
    let backend = http_backend().await;
    let server = start_server(&m.server).await;
    let conn = connect(&m, &server).await;
    let stream = conn
        .connect(&backend.to_string(), &ConnectHeaders::default())
        .await
        .unwrap();
    let io = TokioIo::new(stream);
    let mut req = Request::builder()
        .method("POST")
        .uri("/reviews/1")
        .header("host", "reviews:9080")
        .body(Full::new(Bytes::from_static(b"request body")))
        .unwrap();
    let resp = if http2 {
        *req.version_mut() = Version::HTTP_2;
        *req.uri_mut() = "http://reviews:9080/reviews/1".parse().unwrap();
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        tokio::spawn(conn);
        sender.send_request(req).await.unwrap()
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        sender.send_request(req).await.unwrap()
    };
    assert_eq!(resp.status(), StatusCode::OK);
    let h = |n: &str| resp.headers().get(n).unwrap().to_str().unwrap().to_string();
    assert_eq!(h("x-method"), "POST");
    assert_eq!(h("x-path"), "/reviews/1");
    assert_eq!(h("x-version"), if http2 { "HTTP/2.0" } else { "HTTP/1.1" });
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"request body");
}

#[tokio::test]
async fn http1_inside_the_tunnel() {
    within(http_through_tunnel(false)).await;
}

#[tokio::test]
async fn http2_inside_the_tunnel() {
    within(http_through_tunnel(true)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_megabytes_both_ways_intact() {
    within(async {
        let m = mesh();
        let backend = echo_backend().await;
        let server = start_server(&m.server).await;
        let conn = connect(&m, &server).await;
        let stream = conn
            .connect(&backend.to_string(), &ConnectHeaders::default())
            .await
            .unwrap();
        // Not a repeating pattern: a shifted or dropped chunk changes the hash.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let data: Vec<u8> = (0..10 * 1024 * 1024)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let want = sha256(&data);
        let (mut r, mut w) = tokio::io::split(stream);
        let writer = tokio::spawn(async move {
            w.write_all(&data).await.unwrap();
            w.shutdown().await.unwrap();
        });
        let mut out = Vec::with_capacity(10 * 1024 * 1024);
        r.read_to_end(&mut out).await.unwrap();
        writer.await.unwrap();
        assert_eq!(out.len(), 10 * 1024 * 1024);
        assert_eq!(sha256(&out), want);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_streams_over_one_connection() {
    within(async {
        let m = mesh();
        let backend = echo_backend().await;
        let server = start_server(&m.server).await;
        let conn = connect(&m, &server).await;
        let mut tasks = Vec::new();
        // Every stream is opened before any finishes: all 100 are open at once.
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(100));
        for i in 0..100 {
            let conn = conn.clone();
            let barrier = barrier.clone();
            let authority = backend.to_string();
            tasks.push(tokio::spawn(async move {
                let mut s = conn
                    .connect(&authority, &ConnectHeaders::default())
                    .await
                    .unwrap();
                barrier.wait().await;
                let msg = format!("stream {i} ").repeat(1000);
                s.write_all(msg.as_bytes()).await.unwrap();
                s.shutdown().await.unwrap();
                let mut out = Vec::new();
                s.read_to_end(&mut out).await.unwrap();
                assert_eq!(out, msg.as_bytes(), "stream {i}");
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(server.records().len(), 100);
        assert_eq!(server.connections(), 1);
        assert!(!conn.is_closed());
    })
    .await;
}

#[tokio::test]
async fn a_stream_outlives_its_connection_handle() {
    within(async {
        let m = mesh();
        let backend = echo_backend().await;
        let server = start_server(&m.server).await;
        let mut s = connect(&m, &server)
            .await
            .connect(&backend.to_string(), &ConnectHeaders::default())
            .await
            .unwrap();
        // The HboneConnection is gone; the stream keeps the connection alive.
        tokio::time::sleep(Duration::from_millis(50)).await;
        s.write_all(b"still here").await.unwrap();
        s.shutdown().await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"still here");
    })
    .await;
}
