//! The waypoint listener in mTLS mode under the real Envoy with the wasm filter: the peer's
//! SPIFFE certificate is the identity AuthorizationPolicy principals match, and peers without
//! a certificate from the mesh CA never get to send a request.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use layover_certs::{write_cert, Identity, MeshCa, MeshDir};
use layover_envoy::{bootstrap, endpoints_from_registry, BootstrapOptions, DownstreamTls};
use layover_integration::waypoint::{app_yaml, compile_yaml, policy_json, FilterBuild};
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
    async fn start() -> Mesh {
        let backend = Backend::start("reviews-v1", "v1").await.unwrap();
        let compiled = compile_yaml(&(app_yaml("reviews", &[&backend]) + AUTHZ)).unwrap();
        let build = FilterBuild::Wasm;
        let filter = build.http_filter(&policy_json(&compiled).unwrap()).unwrap();

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
                layover_filter: Some(filter),
                downstream_tls: Some(tls),
                ..BootstrapOptions::default()
            };
            bootstrap(&compiled.policy, &endpoints_from_registry(&compiled), &opts)
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
async fn principal_allow_admits_the_right_identity_and_denies_another() {
    let mesh = Mesh::start().await;
    let addr = mesh.envoy.listener_addr();

    for http2 in [false, true] {
        let productpage = mesh.client_as("default", "productpage", http2);
        let reply = productpage
            .get(addr, "reviews:9080", "/reviews/1", &[])
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "http2={http2}: {}", reply.text());
        let echo: Echo = reply.json().unwrap();
        assert_eq!(echo.name, "reviews-v1");
        assert_eq!(echo.path, "/reviews/1");

        let ratings = mesh.client_as("default", "ratings", http2);
        let reply = ratings
            .get(addr, "reviews:9080", "/reviews/1", &[])
            .await
            .unwrap();
        assert_eq!(reply.status, 403, "http2={http2}: {}", reply.text());
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
    let mesh = Mesh::start().await;
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
