//! Header-smuggling suite: nothing a client writes into a request can steer layover's routing,
//! retries, timeouts, faults, identity or authorization. Every check goes through a real Envoy
//! 1.40 with each filter build, on the plain listener, the mTLS listener and inside HBONE
//! tunnels where identity matters; the backend reports what it received.
//!
//! The tunnel's checks run again in the waypoint istiod generates, layover attached only by the
//! route A EnvoyFilter (`smuggling_istiod`; it has no plain or mTLS listener).
//!
//! Complements tests/integration/tests/waypoint.rs `client_cannot_steer_internals` (x-layover-cluster,
//! retry/timeout router controls, fault headers) and `authz_ip_blocks_ignore_forged_xff`;
//! this file covers the rest of the internal namespace and the identity/address headers.
//!
//! Sources:
//! - `[authz]` https://istio.io/latest/docs/reference/config/security/authorization-policy/#Source
//!   (`principals` come from the peer certificate; `ipBlocks` is the direct peer — RBAC
//!   `direct_remote_ip`; `remoteIpBlocks` is the address Envoy derived from X-Forwarded-For,
//!   RBAC `remote_ip`);
//! - `[hdrs]` https://www.envoyproxy.io/docs/envoy/v1.40.0/configuration/http/http_conn_man/headers
//!   (`x-forwarded-client-cert` is sanitized by default; XFF handling with
//!   `use_remote_address: false` and `xff_num_trusted_hops: 0` takes the last entry; Envoy does
//!   not read `forwarded`, `x-real-ip`);
//! - `[design]` /work/shared/docs/design.md "The client cannot steer internals", and
//!   envoy-1.40-facts.md (Envoy keeps `x-envoy-*` from "internal" peers and never strips the
//!   fault filter's headers, so layover removes every `x-envoy-*` / `x-layover-*` itself);
//! - `[ambient]` https://istio.io/latest/docs/ambient/architecture/hbone/ (in a tunnel the
//!   identity is the HBONE peer's certificate and the client address is ztunnel's `forwarded`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::Method;
use layover_bootstrap::{
    bootstrap, endpoints_from_registry, BootstrapOptions, DownstreamTls, Hbone, CONNECT_TERMINATE,
};
use layover_certs::{write_cert, Identity, MeshCa, MeshDir};
use layover_integration::mesh::DEFAULT_CALLER;
use layover_integration::waypoint::{
    app_yaml, compile_yaml, policy_json, subsets_yaml, FilterBuild, Shape, Waypoint,
};
use layover_integration::{Backend, ClientIdentity, Echo, Envoy, HttpClient, Launch, TlsClient};

const TRUST_DOMAIN: &str = "cluster.local";
/// The client address ztunnel reports in the CONNECT `forwarded` header.
const TUNNEL_CLIENT: &str = "10.244.1.7:41234";
/// The identity `admin`'s policy allows.
const ADMIN: &str = "spiffe://cluster.local/ns/default/sa/admin";

/// A forged XFCC naming the allowed identity, as a proxy in front would write it.
fn forged_xfcc() -> String {
    format!("By=spiffe://cluster.local/ns/default/sa/waypoint;Hash=00;URI={ADMIN}")
}

/// Headers that claim an identity: none of them may grant one. `x-envoy-peer-metadata*` are
/// the headers Istio's metadata exchange uses between sidecars.
fn identity_claims() -> Vec<(&'static str, String)> {
    vec![
        ("x-forwarded-client-cert", forged_xfcc()),
        ("x-spiffe-id", ADMIN.to_string()),
        (
            "x-envoy-peer-metadata-id",
            "sidecar~10.0.0.1~admin.default~default.svc.cluster.local".into(),
        ),
        (
            "x-envoy-peer-metadata",
            "ChgKDkFQUF9DT05UQUlORVJTEgYaBGFkbWlu".into(),
        ),
        (
            "x-layover-principal",
            "cluster.local/ns/default/sa/admin".into(),
        ),
        (
            "x-istio-peer-principal",
            "cluster.local/ns/default/sa/admin".into(),
        ),
    ]
}

/// The subset the client asks for in `x-layover-cluster`; the route pins v1.
const V2_CLUSTER: &str = "inbound-vip|9080|http/v2|open.default.svc.cluster.local";

/// [design] The whole internal namespace: routing, router and stream controls, tracing and
/// stats names, internal-request markers.
const INTERNAL_NAMESPACE: &[(&str, &str)] = &[
    ("x-layover-cluster", V2_CLUSTER),
    ("x-layover-anything", "smuggled"),
    ("x-envoy-original-path", "/smuggled"),
    ("x-envoy-internal", "true"),
    ("x-envoy-decorator-operation", "smuggled"),
    ("x-envoy-upstream-stream-duration-ms", "50"),
    ("x-envoy-upstream-rq-timeout-ms", "50"),
    ("x-envoy-upstream-rq-per-try-timeout-ms", "50"),
    ("x-envoy-expected-rq-timeout-ms", "50"),
    ("x-envoy-hedge-on-per-try-timeout", "true"),
    ("x-envoy-retry-grpc-on", "cancelled,unavailable"),
    ("x-envoy-upstream-alt-stat-name", "smuggled"),
    ("x-envoy-downstream-service-cluster", "smuggled"),
    ("x-envoy-downstream-service-node", "smuggled"),
    ("x-envoy-force-trace", "true"),
    ("x-envoy-fault-throughput-response", "1"),
    ("x-envoy-ip-tags", "smuggled"),
    ("x-envoy-external-address", "10.1.2.3"),
];

/// `open`: a VirtualService pins v1, no policy. `admin`: ALLOW only the `admin` identity.
/// `ipdeny`: DENY the direct peer 127.0.0.1 and ztunnel's client 10.244.1.7 (`ipBlocks`).
/// `remote`: DENY `remoteIpBlocks` 10.244.9.0/24.
fn yaml(backends: &BTreeMap<&'static str, Vec<Backend>>) -> String {
    let mut out = String::new();
    for (app, bs) in backends {
        out.push_str(&app_yaml(app, &bs.iter().collect::<Vec<_>>()));
        out.push_str(&subsets_yaml(app, &["v1", "v2"]));
    }
    out.push_str(
        "---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: open, namespace: default}
spec:
  hosts: [open]
  http:
  - route: [{destination: {host: open, subset: v1}}]
",
    );
    for (app, action, rule) in [
        (
            "admin",
            "ALLOW",
            "{from: [{source: {principals: [cluster.local/ns/default/sa/admin]}}]}",
        ),
        (
            "ipdeny",
            "DENY",
            "{from: [{source: {ipBlocks: [127.0.0.1, 10.244.1.7]}}]}",
        ),
        (
            "remote",
            "DENY",
            "{from: [{source: {remoteIpBlocks: [10.244.9.0/24]}}]}",
        ),
    ] {
        out.push_str(&format!(
            "---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: {app}, namespace: default}}
spec:
  targetRefs: [{{kind: Service, group: '', name: {app}}}]
  action: {action}
  rules: [{rule}]
"
        ));
    }
    out
}

struct Fixture {
    /// Plain listener + HBONE :15008.
    plain: Envoy,
    /// mTLS listener.
    mtls: Envoy,
    backends: BTreeMap<&'static str, Vec<Backend>>,
    ca: MeshCa,
    _dir: tempfile::TempDir,
}

/// Backends v1 and v2 of every app.
async fn start_backends() -> BTreeMap<&'static str, Vec<Backend>> {
    let mut backends = BTreeMap::new();
    for app in ["open", "admin", "ipdeny", "remote"] {
        let mut bs = Vec::new();
        for v in ["v1", "v2"] {
            bs.push(Backend::start(&format!("{app}-{v}"), v).await.unwrap());
        }
        backends.insert(app, bs);
    }
    backends
}

impl Fixture {
    async fn start(build: FilterBuild) -> Fixture {
        let backends = start_backends().await;
        let compiled = compile_yaml(&yaml(&backends)).unwrap();
        let policy = policy_json(&compiled).unwrap();

        let ca = MeshCa::new(TRUST_DOMAIN).unwrap();
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
            trust_domain: TRUST_DOMAIN.into(),
            upstream_port: layover_contract::HBONE_PORT,
        };
        let tls = DownstreamTls {
            cert_chain: mesh.waypoint().cert_chain,
            private_key: mesh.waypoint().private_key,
            trusted_ca: mesh.root_cert(),
            trust_domain: TRUST_DOMAIN.into(),
        };
        let start = |hbone: Option<Hbone>, tls: Option<DownstreamTls>| {
            let filter = build.http_filter(&policy).unwrap();
            let compiled = compiled.clone();
            async move {
                Envoy::start_with(&build.envoy_options().unwrap(), |launch| {
                    let opts = BootstrapOptions {
                        admin_port: Launch::ANY_PORT,
                        listener_port: Launch::ANY_PORT,
                        access_log_path: Some(launch.access_log.display().to_string()),
                        layover_filter: Some(filter),
                        hbone,
                        downstream_tls: tls,
                        ..BootstrapOptions::default()
                    };
                    bootstrap(&compiled.policy, &endpoints_from_registry(&compiled), &opts)
                })
                .await
                .unwrap_or_else(|e| panic!("[{}] {e}", build.name()))
            }
        };
        let (plain, mtls) = tokio::join!(start(Some(hbone), None), start(None, Some(tls)));
        Fixture {
            plain,
            mtls,
            backends,
            ca,
            _dir: dir,
        }
    }

    fn count(&self, app: &str) -> usize {
        self.backends[app].iter().map(Backend::request_count).sum()
    }

    /// A GET on the plain listener with `Host: <app>:9080` and `headers`.
    async fn plain_get(&self, app: &str, headers: &[(&str, &str)]) -> layover_integration::Reply {
        let host = format!("{app}:9080");
        let mut all = vec![("host", host.as_str())];
        all.extend_from_slice(headers);
        HttpClient::http1()
            .get_with(&self.plain.url("/"), &all)
            .await
            .unwrap()
    }

    fn tls_client(&self, sa: &str) -> TlsClient {
        let cert = self
            .ca
            .issue(&Identity::new("default", sa).unwrap())
            .unwrap();
        let id = ClientIdentity::from_issued(&cert).unwrap();
        TlsClient::new(self.ca.root_pem(), Some(&id), false).unwrap()
    }

    /// One HBONE tunnel as `sa` to `<app>.default.svc.cluster.local:9080`, with ztunnel's
    /// `forwarded`, and one HTTP/1.1 GET inside it carrying `headers`.
    async fn tunnelled_get(&self, sa: &str, app: &str, headers: &[(&str, &str)]) -> (u16, String) {
        use http_body_util::{BodyExt, Empty};
        use layover_hbone::{ConnectHeaders, Credentials, HboneClient, PeerPolicy};
        let addr: SocketAddr = self.plain.listener_addr_of(CONNECT_TERMINATE).unwrap();
        let cert = self
            .ca
            .issue(&Identity::new("default", sa).unwrap())
            .unwrap();
        let creds = Credentials::from_issued(self.ca.root_pem(), &cert, TRUST_DOMAIN).unwrap();
        let client = HboneClient::new(&creds, PeerPolicy::trust_domain(TRUST_DOMAIN)).unwrap();
        let conn = client.connect(addr).await.unwrap();
        let connect = ConnectHeaders {
            forwarded_for: Some(TUNNEL_CLIENT.parse().unwrap()),
            ..ConnectHeaders::default()
        };
        let authority = format!("{app}.default.svc.cluster.local:9080");
        let stream = conn.connect(&authority, &connect).await.unwrap();
        let (mut send, driver) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(driver);
        let mut req = http::Request::builder().uri("/").header("host", &authority);
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        let req = req.body(Empty::<bytes::Bytes>::new()).unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(30), send.send_request(req))
            .await
            .unwrap()
            .unwrap();
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

fn echo(status: u16, body: &str) -> Echo {
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not an echo ({e}): {body}"))
}

fn assert_denied(status: u16, body: &str, what: &str) {
    assert_eq!((status, body), (403, "RBAC: access denied"), "{what}");
}

/// Every client-sent value in `sent` is absent upstream (or replaced by layover's own).
fn assert_not_forwarded(e: &Echo, sent: &[(&str, &str)], what: &str) {
    for (name, value) in sent {
        if let Some(got) = e.headers.get(*name) {
            assert!(
                !got.split(',').any(|v| v.trim() == *value),
                "{what}: the upstream received the client's {name}: {value:?} ({got:?})"
            );
        }
    }
}

async fn smuggling(build: FilterBuild) {
    let f = Fixture::start(build).await;
    let tag = build.name();

    // 1. [design] The whole internal namespace: routing, router and stream controls, tracing
    // and stats names, internal-request markers. The route pins v1 and has no timeout; the
    // backend stalls 300 ms, longer than the 50 ms the client asks for.
    let sent = INTERNAL_NAMESPACE;
    let stall = Duration::from_millis(300);
    f.backends["open"][0].stall_next(stall);
    let started = Instant::now();
    let reply = f.plain_get("open", sent).await;
    let e = echo(reply.status.as_u16(), &reply.text());
    assert!(
        started.elapsed() >= stall,
        "[{tag}] a client timeout cut the request"
    );
    assert_eq!(e.subset, "v1", "[{tag}] the client picked the cluster");
    assert_eq!(e.path, "/", "[{tag}]");
    assert_not_forwarded(&e, sent, &format!("[{tag}] plain"));
    assert!(
        !e.headers.keys().any(|k| k.starts_with("x-layover-")),
        "[{tag}] {:?}",
        e.headers
    );
    // Same through an HBONE tunnel (main_internal runs the same connection manager).
    f.backends["open"][0].stall_next(stall);
    let started = Instant::now();
    let (status, body) = f.tunnelled_get("productpage", "open", sent).await;
    let e = echo(status, &body);
    assert!(
        started.elapsed() >= stall,
        "[{tag}] a client timeout cut the tunnelled request"
    );
    assert_eq!(e.subset, "v1", "[{tag}] tunnel");
    assert_not_forwarded(&e, sent, &format!("[{tag}] tunnel"));

    // 2. [authz][hdrs] Identity comes from the peer certificate only.
    let claims = identity_claims();
    let claims: Vec<(&str, &str)> = claims.iter().map(|(n, v)| (*n, v.as_str())).collect();
    // Plain listener: no certificate, no principal, whatever the headers say.
    let reply = f.plain_get("admin", &claims).await;
    assert_denied(
        reply.status.as_u16(),
        &reply.text(),
        &format!("[{tag}] plain with forged identity headers"),
    );
    // mTLS: another identity plus forged headers is still that identity.
    let mtls_addr = f.mtls.listener_addr();
    let reply = f
        .tls_client("other")
        .get(mtls_addr, "admin:9080", "/", &claims)
        .await
        .unwrap();
    assert_denied(
        reply.status.as_u16(),
        &reply.text(),
        &format!("[{tag}] mTLS as sa/other"),
    );
    // HBONE: the tunnel peer's identity, not the inner request's headers.
    let (status, body) = f.tunnelled_get("other", "admin", &claims).await;
    assert_denied(status, &body, &format!("[{tag}] HBONE as sa/other"));
    assert_eq!(
        f.count("admin"),
        0,
        "[{tag}] a forged identity reached the backend"
    );
    // The real identity gets through on both. The forged XFCC never reaches the backend (the
    // connection manager sanitizes client XFCC: forward_client_cert_details SANITIZE), nor do
    // the internal-namespace claims; ordinary application headers (`x-spiffe-id`, …) pass as
    // Istio passes them — they were never an identity.
    let stripped: Vec<(&str, &str)> = claims
        .iter()
        .copied()
        .filter(|(n, _)| {
            *n == "x-forwarded-client-cert"
                || n.starts_with("x-envoy-")
                || n.starts_with("x-layover-")
        })
        .collect();
    let reply = f
        .tls_client("admin")
        .get(mtls_addr, "admin:9080", "/", &claims)
        .await
        .unwrap();
    let e = echo(reply.status.as_u16(), &reply.text());
    assert_not_forwarded(&e, &stripped, &format!("[{tag}] mTLS as sa/admin"));
    let (status, body) = f.tunnelled_get("admin", "admin", &claims).await;
    let e = echo(status, &body);
    assert_not_forwarded(&e, &stripped, &format!("[{tag}] HBONE as sa/admin"));
    assert_eq!(f.count("admin"), 2, "[{tag}]");

    // 3. [authz] ipBlocks is the direct peer (plain) or ztunnel's client (HBONE): no header
    // moves it. Envoy reads none of `forwarded`, `x-real-ip`, `x-envoy-external-address`, and
    // x-forwarded-for only moves the XFF-derived remote address.
    let address_claims: &[&[(&str, &str)]] = &[
        &[("x-forwarded-for", "10.1.2.3")],
        &[("x-forwarded-for", "10.1.2.3, 10.1.2.4")],
        &[("forwarded", "for=10.1.2.3")],
        &[
            ("forwarded", "for=\"10.1.2.3:1234\""),
            ("x-real-ip", "10.1.2.3"),
        ],
        &[("x-envoy-external-address", "10.1.2.3")],
        &[("x-envoy-original-dst-host", "127.0.0.1:1")],
    ];
    for headers in address_claims {
        let reply = f.plain_get("ipdeny", headers).await;
        assert_denied(
            reply.status.as_u16(),
            &reply.text(),
            &format!("[{tag}] plain ipBlocks {headers:?}"),
        );
        let (status, body) = f.tunnelled_get("productpage", "ipdeny", headers).await;
        assert_denied(
            status,
            &body,
            &format!("[{tag}] HBONE ipBlocks {headers:?}"),
        );
    }
    assert_eq!(f.count("ipdeny"), 0, "[{tag}]");

    // 4. [authz][hdrs] remoteIpBlocks on the plain listener is Envoy's remote address: with
    // `use_remote_address: false` and no trusted hops, the last x-forwarded-for entry (what
    // Istio documents: "populated from X-Forwarded-For"). Headers Envoy does not read move
    // nothing.
    for (headers, denied) in [
        (&[][..], false),
        (&[("forwarded", "for=10.244.9.5")][..], false),
        (&[("x-real-ip", "10.244.9.5")][..], false),
        (&[("x-envoy-external-address", "10.244.9.5")][..], false),
        (&[("x-forwarded-for", "10.244.9.5, 10.0.0.1")][..], false),
        (&[("x-forwarded-for", "10.244.9.5")][..], true),
        (&[("x-forwarded-for", "10.0.0.1, 10.244.9.5")][..], true),
    ] {
        let reply = f.plain_get("remote", headers).await;
        let what = format!("[{tag}] plain remoteIpBlocks {headers:?}");
        if denied {
            assert_denied(reply.status.as_u16(), &reply.text(), &what);
        } else {
            assert_eq!(reply.status, 200, "{what}: {}", reply.text());
        }
    }

    // 5. [design] Methods and paths a header could pretend: the decision is on :method/:path.
    let reply = HttpClient::http1()
        .request(
            Method::GET,
            &f.plain.url("/"),
            &[
                ("host", "admin:9080"),
                ("x-http-method-override", "OPTIONS"),
                ("x-original-url", "/healthz"),
                ("x-rewrite-url", "/healthz"),
            ],
            bytes::Bytes::new(),
        )
        .await
        .unwrap();
    assert_denied(
        reply.status.as_u16(),
        &reply.text(),
        &format!("[{tag}] override headers"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_headers_cannot_steer_routing_identity_or_authz_wasm() {
    smuggling(FilterBuild::Wasm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_headers_cannot_steer_routing_identity_or_authz_dynamic_module() {
    smuggling(FilterBuild::DynamicModule).await;
}

/// The same checks in the waypoint istiod generates, layover attached only by the route A
/// EnvoyFilter ([`Shape::Istiod`]): every request inside an HBONE tunnel to the app's VIP.
/// Left out: the plain listener's (no identity; `remoteIpBlocks` from `x-forwarded-for` with
/// `use_remote_address: false`) and the mTLS listener's — istiod's waypoint has neither
/// listener; the tunnel's own cases are all here.
async fn smuggling_istiod(build: FilterBuild) {
    let backends = start_backends().await;
    let wp = Waypoint::start_in(Shape::Istiod, build, &yaml(&backends))
        .await
        .unwrap_or_else(|e| panic!("[istiod {}] {e}", build.name()));
    let tag = format!("istiod {}", build.name());
    let count = |app: &str| -> usize { backends[app].iter().map(Backend::request_count).sum() };
    let get_as = |sa: &'static str, app: &'static str, headers: &[(&str, &str)]| {
        let host = format!("{app}:9080");
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let wp = &wp;
        async move {
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            let reply = wp
                .send_as(sa, Method::GET, &host, "/", &headers, bytes::Bytes::new())
                .await
                .unwrap();
            (reply.status.as_u16(), reply.text())
        }
    };

    // 1. [design] The internal namespace through route A's connection manager.
    let sent = INTERNAL_NAMESPACE;
    let stall = Duration::from_millis(300);
    backends["open"][0].stall_next(stall);
    let started = Instant::now();
    let (status, body) = get_as(DEFAULT_CALLER, "open", sent).await;
    let e = echo(status, &body);
    assert!(
        started.elapsed() >= stall,
        "[{tag}] a client timeout cut the request"
    );
    assert_eq!(e.subset, "v1", "[{tag}] the client picked the cluster");
    assert_eq!(e.path, "/", "[{tag}]");
    assert_not_forwarded(&e, sent, &format!("[{tag}] tunnel"));
    assert!(
        !e.headers.keys().any(|k| k.starts_with("x-layover-")),
        "[{tag}] {:?}",
        e.headers
    );

    // 2. [authz][ambient] The identity is the HBONE peer's certificate, whatever the headers
    // inside the tunnel claim.
    let claims = identity_claims();
    let claims: Vec<(&str, &str)> = claims.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let (status, body) = get_as("other", "admin", &claims).await;
    assert_denied(status, &body, &format!("[{tag}] HBONE as sa/other"));
    assert_eq!(
        count("admin"),
        0,
        "[{tag}] a forged identity reached the backend"
    );
    let stripped: Vec<(&str, &str)> = claims
        .iter()
        .copied()
        .filter(|(n, _)| {
            *n == "x-forwarded-client-cert"
                || n.starts_with("x-envoy-")
                || n.starts_with("x-layover-")
        })
        .collect();
    let (status, body) = get_as("admin", "admin", &claims).await;
    let e = echo(status, &body);
    assert_not_forwarded(&e, &stripped, &format!("[{tag}] HBONE as sa/admin"));
    assert_eq!(count("admin"), 1, "[{tag}]");

    // 3. [authz] ipBlocks is the client route A records at connect_terminate (the HBONE peer,
    // 127.0.0.1): no header inside the tunnel moves it.
    let address_claims: &[&[(&str, &str)]] = &[
        &[("x-forwarded-for", "10.1.2.3")],
        &[("x-forwarded-for", "10.1.2.3, 10.1.2.4")],
        &[("forwarded", "for=10.1.2.3")],
        &[
            ("forwarded", "for=\"10.1.2.3:1234\""),
            ("x-real-ip", "10.1.2.3"),
        ],
        &[("x-envoy-external-address", "10.1.2.3")],
        &[("x-envoy-original-dst-host", "127.0.0.1:1")],
    ];
    for headers in address_claims {
        let (status, body) = get_as(DEFAULT_CALLER, "ipdeny", headers).await;
        assert_denied(
            status,
            &body,
            &format!("[{tag}] HBONE ipBlocks {headers:?}"),
        );
    }
    assert_eq!(count("ipdeny"), 0, "[{tag}]");

    // 5. [design] Methods and paths a header could pretend: the decision is on :method/:path.
    let (status, body) = get_as(
        DEFAULT_CALLER,
        "admin",
        &[
            ("x-http-method-override", "OPTIONS"),
            ("x-original-url", "/healthz"),
            ("x-rewrite-url", "/healthz"),
        ],
    )
    .await;
    assert_denied(status, &body, &format!("[{tag}] override headers"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_headers_cannot_steer_routing_identity_or_authz_istiod_wasm() {
    smuggling_istiod(FilterBuild::Wasm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_headers_cannot_steer_routing_identity_or_authz_istiod_dynamic_module() {
    smuggling_istiod(FilterBuild::DynamicModule).await;
}
