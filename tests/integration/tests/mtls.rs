//! The waypoint listener in mTLS mode under the real Envoy: the peer's SPIFFE certificate is
//! the identity AuthorizationPolicy principals match (with each filter build), and peers
//! without a certificate from the mesh CA never get to send a request.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use layover_bootstrap::{BootstrapOptions, DownstreamTls};
use layover_certs::{write_cert, Identity, MeshCa, MeshDir};
use layover_integration::waypoint::{app_yaml, compile_yaml, FilterBuild};
use layover_integration::{
    Backend, ClientIdentity, Echo, Envoy, HttpClient, Launch, TlsClient, TlsError,
};

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

struct Mesh {
    envoy: Envoy,
    backend: Backend,
    ca: MeshCa,
    _certs: tempfile::TempDir,
}

impl Mesh {
    async fn start(build: FilterBuild) -> Mesh {
        let backend = Backend::start("reviews-v1", "v1").await.unwrap();
        let compiled = compile_yaml(&(app_yaml("reviews", &[&backend]) + AUTHZ)).unwrap();

        let ca = MeshCa::new("cluster.local").unwrap();
        let certs = tempfile::tempdir().unwrap();
        let dir = MeshDir::new(certs.path());
        std::fs::write(dir.root_cert(), ca.root_pem()).unwrap();
        let waypoint = ca
            .issue(&Identity::new("default", "waypoint").unwrap())
            .unwrap();
        write_cert(&dir.waypoint(), &waypoint).unwrap();
        let tls = DownstreamTls {
            cert_chain: dir.waypoint().cert_chain,
            private_key: dir.waypoint().private_key,
            trusted_ca: dir.root_cert(),
            trust_domain: "cluster.local".into(),
        };

        let envoy = Envoy::start_with(&build.envoy_options().unwrap(), |launch| {
            let opts = BootstrapOptions {
                admin_port: Launch::ANY_PORT,
                listener_port: Launch::ANY_PORT,
                access_log_path: Some(launch.access_log.display().to_string()),
                downstream_tls: Some(tls),
                ..BootstrapOptions::default()
            };
            build.bootstrap(&compiled, opts)
        })
        .await
        .unwrap();
        Mesh {
            envoy,
            backend,
            ca,
            _certs: certs,
        }
    }

    fn client_as(&self, ns: &str, sa: &str, http2: bool) -> TlsClient {
        let cert = self.ca.issue(&Identity::new(ns, sa).unwrap()).unwrap();
        let id = ClientIdentity::from_issued(&cert).unwrap();
        TlsClient::new(self.ca.root_pem(), Some(&id), http2).unwrap()
    }

    /// A listener TLS counter. Its name holds the configured address (`127.0.0.1_0` when the
    /// kernel picked the port), so match on the suffix.
    async fn ssl_stat(&self, name: &str) -> u64 {
        let url = self
            .envoy
            .admin_url(&format!("/stats?filter=^listener\\..*\\.ssl\\.{name}$"));
        let text = HttpClient::http1().get(&url).await.unwrap().text();
        text.lines()
            .filter_map(|l| l.rsplit_once(": ")?.1.trim().parse::<u64>().ok())
            .sum()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn principal_allow_admits_the_right_identity_and_denies_another_wasm() {
    principal_allow(FilterBuild::Wasm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn principal_allow_admits_the_right_identity_and_denies_another_dynamic_module() {
    principal_allow(FilterBuild::DynamicModule).await;
}

/// The native translation: RBAC `authenticated.principal_name` on the mTLS peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn principal_allow_admits_the_right_identity_and_denies_another_native() {
    principal_allow(FilterBuild::Native).await;
}

/// An ALLOW rule on one principal: that identity gets through, another gets 403, over
/// HTTP/1.1 and HTTP/2 alike.
async fn principal_allow(build: FilterBuild) {
    let mesh = Mesh::start(build).await;
    let addr = mesh.envoy.listener_addr();

    for http2 in [false, true] {
        let productpage = mesh.client_as("default", "productpage", http2);
        let reply = productpage
            .get(addr, "reviews:9080", "/reviews/1", &[])
            .await
            .unwrap();
        assert_eq!(
            reply.status,
            200,
            "{} http2={http2}: {}",
            build.name(),
            reply.text()
        );
        let echo: Echo = reply.json().unwrap();
        assert_eq!(echo.name, "reviews-v1");
        assert_eq!(echo.path, "/reviews/1");

        let ratings = mesh.client_as("default", "ratings", http2);
        let reply = ratings
            .get(addr, "reviews:9080", "/reviews/1", &[])
            .await
            .unwrap();
        assert_eq!(
            reply.status,
            403,
            "{} http2={http2}: {}",
            build.name(),
            reply.text()
        );
        assert_eq!(reply.text(), "RBAC: access denied");
    }
    assert_eq!(
        mesh.backend.request_count(),
        2,
        "only allowed requests arrive"
    );

    // Envoy saw the verified SPIFFE ids the filter matched on.
    let log = mesh.envoy.access_log(4).await.unwrap();
    let peers: Vec<&str> = log.iter().map(|l| l["peer"].as_str().unwrap()).collect();
    assert_eq!(
        peers,
        [
            "spiffe://cluster.local/ns/default/sa/productpage",
            "spiffe://cluster.local/ns/default/sa/ratings",
            "spiffe://cluster.local/ns/default/sa/productpage",
            "spiffe://cluster.local/ns/default/sa/ratings",
        ]
    );
}

fn assert_refused(result: Result<layover_integration::Reply, TlsError>, who: &str) -> String {
    match result {
        Err(e @ TlsError::Refused { .. }) => e.alert().unwrap_or_default().to_string(),
        Err(other) => panic!("{who}: expected a TLS alert from the server, got {other}"),
        Ok(reply) => panic!(
            "{who}: expected the TLS handshake to be refused, got HTTP {}",
            reply.status
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_without_a_mesh_certificate_are_refused_at_the_handshake() {
    // The handshake is Envoy's alone: one filter build is enough.
    let mesh = Mesh::start(FilterBuild::Wasm).await;
    let addr = mesh.envoy.listener_addr();

    // No client certificate at all.
    let anonymous = TlsClient::new(mesh.ca.root_pem(), None, false).unwrap();
    let alert = assert_refused(
        anonymous.get(addr, "reviews:9080", "/", &[]).await,
        "no certificate",
    );
    assert_eq!(alert, "CertificateRequired");

    // A certificate for the allowed principal, but issued by another CA.
    let other_ca = MeshCa::new("cluster.local").unwrap();
    let forged = other_ca
        .issue(&Identity::new("default", "productpage").unwrap())
        .unwrap();
    let forger = TlsClient::new(
        mesh.ca.root_pem(),
        Some(&ClientIdentity::from_issued(&forged).unwrap()),
        false,
    )
    .unwrap();
    let alert = assert_refused(
        forger.get(addr, "reviews:9080", "/", &[]).await,
        "certificate from another CA",
    );
    assert_eq!(alert, "UnknownCA");

    assert_eq!(mesh.backend.request_count(), 0);
    assert!(mesh.ssl_stat("fail_verify_no_cert").await >= 1);
    assert!(mesh.ssl_stat("fail_verify_error").await >= 1);
    // And the waypoint still serves a proper mesh peer afterwards.
    let reply = mesh
        .client_as("default", "productpage", false)
        .get(addr, "reviews:9080", "/", &[])
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_can_require_the_waypoint_identity() {
    let mesh = Mesh::start(FilterBuild::Wasm).await;
    let addr = mesh.envoy.listener_addr();
    let cert = mesh
        .ca
        .issue(&Identity::new("default", "productpage").unwrap())
        .unwrap();
    let id = ClientIdentity::from_issued(&cert).unwrap();

    let right = "spiffe://cluster.local/ns/default/sa/waypoint";
    let client = TlsClient::expecting_server(mesh.ca.root_pem(), Some(&id), false, right).unwrap();
    let reply = client.get(addr, "reviews:9080", "/", &[]).await.unwrap();
    assert_eq!(reply.status, 200);

    let wrong = "spiffe://cluster.local/ns/default/sa/impostor";
    let client = TlsClient::expecting_server(mesh.ca.root_pem(), Some(&id), false, wrong).unwrap();
    match client.get(addr, "reviews:9080", "/", &[]).await {
        Err(TlsError::Handshake(why)) => assert!(why.contains(wrong), "{why}"),
        other => panic!("expected our side to refuse the server, got {other:?}"),
    }
}

#[test]
fn uri_sans_reads_the_spiffe_id_and_ignores_host_names() {
    use rustls::pki_types::pem::PemObject;
    let ca = MeshCa::new("cluster.local").unwrap();
    let cert = ca
        .issue_with_hosts(
            &Identity::new("bookinfo", "waypoint").unwrap(),
            &["localhost".to_string(), "127.0.0.1".to_string()],
        )
        .unwrap();
    let der =
        rustls::pki_types::CertificateDer::from_pem_slice(cert.cert_chain_pem.as_bytes()).unwrap();
    assert_eq!(
        layover_integration::tls::uri_sans(&der),
        Some(vec![
            "spiffe://cluster.local/ns/bookinfo/sa/waypoint".to_string()
        ])
    );
    assert_eq!(layover_integration::tls::uri_sans(b"\x30\x03\x02"), None);
}
