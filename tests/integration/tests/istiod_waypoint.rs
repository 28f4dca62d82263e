//! The waypoint istiod generates (`layover_bootstrap::istiod`, pinned Istio 1.30.3) under the
//! real Envoy: natively (istiod's own RBAC and routes — the baseline), and with layover attached
//! only the way a cluster attaches it, through the route A EnvoyFilter, for both builds.
//!
//! ztunnel is played by an HBONE client that sends what ztunnel sends: a CONNECT to the
//! service VIP and port (`main_internal` picks its chain by that address, as istiod's
//! `filter_chain_matcher` does), with the caller's SPIFFE certificate. Each test is one of the
//! four ways the previous EnvoyFilter failed in Istio's waypoint (issue 13):
//! 1. attachment — the EnvoyFilter attaches through `targetRefs` (and only so, from 1.27);
//! 2. identity — principals come from istiod's `io.istio.peer_principal`;
//! 3. clusters — destinations are reached through istiod's `inbound-vip|…` clusters and
//!    `connect_originate` (HBONE to the pod);
//! 4. routes — layover's routing takes effect for a service with a VirtualService.
//!
//! Route B: the wasm build as the WasmPlugin `layover manifests` emits (authorization only),
//! applied as istiod applies it (`layover_bootstrap::wasmplugin`): istiod's routes and RBAC stay,
//! layover runs before the RBAC filters and answers only denials.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use layover_bootstrap::istiod::{
    http_chain_name, istiod_waypoint_with_layover, istiod_waypoint_with_plugins,
};
use layover_bootstrap::manifests::{manifests, ManifestOptions, ModuleBuild};
use layover_bootstrap::{
    endpoints_from_registry, to_yaml, BootstrapOptions, Endpoint, CONNECT_TERMINATE, MAIN_INTERNAL,
};
use layover_contract::ClusterSelection;
use layover_envoyfilter::IstioVersion;
use layover_integration::mesh::{tunnelled_get, Certs};
use layover_integration::waypoint::{
    compile_yaml, policy_json, subsets_yaml, wasm_module, workload_yaml, FilterBuild,
};
use layover_integration::{validate_config_with, Backend, Echo, Envoy, Launch};
use serde_json::Value;

/// The service VIP ztunnel dials.
const VIP: &str = "10.96.0.10:9080";

/// reviews with a VIP, subsets v1 / v2, a VirtualService sending `end-user: jason` to v2 and
/// everyone else to v1, and an ALLOW policy for productpage only.
fn yaml(backends: &[&Backend]) -> String {
    let mut y = "---
apiVersion: v1
kind: Service
metadata:
  name: reviews
  namespace: default
spec:
  clusterIP: 10.96.0.10
  selector:
    app: reviews
  ports:
  - name: http
    port: 9080
    targetPort: 9080
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: default
spec:
  hosts: [reviews]
  http:
  - name: jason
    match:
    - headers:
        end-user:
          exact: jason
    route:
    - destination: {host: reviews, subset: v2}
  - route:
    - destination: {host: reviews, subset: v1}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: reviews-viewer
  namespace: default
spec:
  targetRefs:
  - {kind: Service, group: \"\", name: reviews}
  action: ALLOW
  rules:
  - from:
    - source:
        principals: [cluster.local/ns/default/sa/productpage]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: reviews-deny-ip
  namespace: default
spec:
  targetRefs:
  - {kind: Service, group: \"\", name: reviews}
  action: DENY
  rules:
  # The client (the HBONE peer, 127.0.0.1) on /blocked; never 127.0.0.2 on /other.
  - from: [{source: {ipBlocks: [127.0.0.1/32]}}]
    to: [{operation: {paths: [/blocked]}}]
  - from: [{source: {ipBlocks: [127.0.0.2/32]}}]
    to: [{operation: {paths: [/other]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: reviews-deny-ns
  namespace: default
spec:
  targetRefs:
  - {kind: Service, group: \"\", name: reviews}
  action: DENY
  rules:
  # By namespace: every caller here is in `default`.
  - from: [{source: {namespaces: [default]}}]
    to: [{operation: {paths: [/ns-denied]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: reviews-allow-ip
  namespace: default
spec:
  targetRefs:
  - {kind: Service, group: \"\", name: reviews}
  action: ALLOW
  rules:
  # An ALLOW on the client address (never the HBONE peer, 127.0.0.1): no header may unlock it.
  - from: [{source: {ipBlocks: [127.0.0.2/32]}}]
    to: [{operation: {paths: [/xff]}}]
"
    .to_string();
    for b in backends {
        y.push_str(&workload_yaml(b, "reviews"));
    }
    y + &subsets_yaml("reviews", &["v1", "v2"])
}

/// The compiled test YAML, its endpoints (in-mesh or not) and istiod-like bootstrap options.
fn setup(
    backends: &[&Backend],
    certs: &Certs,
    in_mesh: bool,
    launch: Option<&Launch>,
) -> (layover_compiler::Compiled, Vec<Endpoint>, BootstrapOptions) {
    let compiled = compile_yaml(&yaml(backends)).unwrap();
    let mut endpoints = endpoints_from_registry(&compiled);
    for ep in &mut endpoints {
        ep.hbone = in_mesh;
    }
    let opts = BootstrapOptions {
        admin_port: Launch::ANY_PORT,
        listener_port: Launch::ANY_PORT,
        access_log_path: launch.map(|l| l.access_log.display().to_string()),
        hbone: Some(certs.hbone.clone()),
        ..BootstrapOptions::default()
    };
    (compiled, endpoints, opts)
}

/// The istiod-shaped waypoint for `build`: native, or with layover attached by the route A
/// EnvoyFilter (the same object `layover manifests` writes), applied with istiod's rules.
fn config(
    build: FilterBuild,
    backends: &[&Backend],
    certs: &Certs,
    istio: IstioVersion,
    in_mesh: bool,
    launch: Option<&Launch>,
) -> String {
    let (compiled, endpoints, opts) = setup(backends, certs, in_mesh, launch);
    let layover_filter = (build != FilterBuild::Native)
        .then(|| build.http_filter(&policy_json(&compiled).unwrap()).unwrap());
    let opts = BootstrapOptions {
        layover_filter,
        istio,
        ..opts
    };
    let v = istiod_waypoint_with_layover(&compiled.policy, &endpoints, &opts).unwrap();
    to_yaml(&v)
}

/// Route B: the istiod-shaped waypoint with the WasmPlugin `layover manifests --filter wasm
/// --wasm-url file://…` emits for the same YAML, applied as istiod `istio` applies it.
fn route_b_config(
    backends: &[&Backend],
    certs: &Certs,
    istio: IstioVersion,
    launch: Option<&Launch>,
) -> String {
    let (compiled, endpoints, opts) = setup(backends, certs, true, launch);
    let url = format!("file://{}", wasm_module().unwrap().display());
    let files = manifests(
        &compiled,
        &ManifestOptions {
            build: ModuleBuild::Wasm,
            cluster_selection: ClusterSelection::Header,
            wasm_url: Some(url),
            drop_in: None,
            istio,
        },
    )
    .unwrap();
    let wp = files
        .iter()
        .find(|m| m.file == "wasmplugin.yaml")
        .expect("a WasmPlugin for the wasm build")
        .objects[0]
        .clone();
    let doc = layover_envoyfilter::emit::check_wasm_plugin(&wp).unwrap();
    let v =
        istiod_waypoint_with_plugins(&compiled.policy, &endpoints, &opts, istio, &[doc]).unwrap();
    to_yaml(&v)
}

fn chain<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["static_resources"]["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == MAIN_INTERNAL)
        .unwrap()["filter_chains"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no chain {name}"))
}

fn http_filter_names(chain: &Value) -> Vec<String> {
    chain["filters"][0]["typed_config"]["http_filters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect()
}

async fn validates(build: FilterBuild, istio: &str) {
    let backend = Backend::start("reviews-v1", "v1").await.unwrap();
    let certs = Certs::new().unwrap();
    let istio: IstioVersion = istio.parse().unwrap();
    let text = config(build, &[&backend], &certs, istio, true, None);
    validate_config_with(&text, &build.envoy_options().unwrap())
        .unwrap_or_else(|e| panic!("{} @ {istio}: {e}\n{text}", build.name()));
    // The chain is named as istiod names it for that release, and (route A) its connection
    // manager is layover's: no RBAC filter of istiod's is left to enforce the policy twice.
    let v: Value = serde_yaml_ng::from_str(&text).unwrap();
    let name = http_chain_name(istio, 9080, "reviews.default.svc.cluster.local");
    let filters = http_filter_names(chain(&v, &name));
    match build {
        // DENY then ALLOW (builder.go:124-140 @ 1.30.3), then fault and CORS.
        FilterBuild::Native => assert_eq!(
            filters,
            [
                "envoy.filters.http.rbac",
                "envoy.filters.http.rbac",
                "envoy.filters.http.fault",
                "envoy.filters.http.cors",
                "envoy.filters.http.router"
            ]
        ),
        _ => assert_eq!(
            filters,
            [
                "layover.direct_remote_address",
                "layover",
                "envoy.filters.http.router"
            ]
        ),
    }
}

/// Routing and authorization through the tunnel: the VirtualService's header route picks v2
/// (failure 4), the default route v1; productpage is allowed and ratings denied by principal
/// (failure 2); in-mesh endpoints are reached by HBONE through `connect_originate` (failure 3).
/// reviews v1 and v2, the mesh certificates, and the destination's ztunnel (terminates the
/// waypoint's HBONE and forwards to the pod; `certs.hbone.upstream_port` points at it).
struct Mesh {
    v1: Backend,
    v2: Backend,
    certs: Certs,
    ztunnel: layover_hbone::RunningServer,
}

async fn mesh() -> Mesh {
    use layover_hbone::{Credentials, HboneServer, PeerPolicy};

    let v1 = Backend::start("reviews-v1", "v1").await.unwrap();
    let v2 = Backend::start("reviews-v2", "v2").await.unwrap();
    let mut certs = Certs::new().unwrap();
    let ztunnel_id = certs
        .ca
        .issue(&layover_certs::Identity::new("default", "ztunnel").unwrap())
        .unwrap();
    let creds =
        Credentials::from_issued(certs.ca.root_pem(), &ztunnel_id, "cluster.local").unwrap();
    let ztunnel = HboneServer::new(&creds, PeerPolicy::trust_domain("cluster.local"))
        .unwrap()
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    certs.hbone.upstream_port = ztunnel.local_addr().port();
    Mesh {
        v1,
        v2,
        certs,
        ztunnel,
    }
}

async fn serves(build: FilterBuild) {
    let Mesh {
        v1,
        v2,
        certs,
        ztunnel,
    } = mesh().await;

    let envoy = Envoy::start_with(&build.envoy_options().unwrap(), |launch| {
        Ok::<_, std::convert::Infallible>(config(
            build,
            &[&v1, &v2],
            &certs,
            IstioVersion::PINNED,
            true,
            Some(launch),
        ))
    })
    .await
    .unwrap();
    let addr = envoy.listener_addr_of(CONNECT_TERMINATE).unwrap();
    let get = |sa: &'static str, headers: &'static [(&'static str, &'static str)]| {
        tunnelled_get(
            &certs,
            addr,
            sa,
            VIP,
            "reviews:9080",
            "/reviews/1",
            None,
            headers,
        )
    };
    let get_path = |path: &'static str| {
        tunnelled_get(
            &certs,
            addr,
            "productpage",
            VIP,
            "reviews:9080",
            path,
            None,
            &[],
        )
    };

    let (status, body) = get("productpage", &[]).await.unwrap();
    assert_eq!(status, 200, "{}: {body}", build.name());
    let echo: Echo = serde_json::from_str(&body).unwrap();
    assert_eq!(echo.name, "reviews-v1", "{}", build.name());

    let (status, body) = get("productpage", &[("end-user", "jason")]).await.unwrap();
    assert_eq!(status, 200, "{}: {body}", build.name());
    let echo: Echo = serde_json::from_str(&body).unwrap();
    assert_eq!(
        echo.name,
        "reviews-v2",
        "{}: the VirtualService route",
        build.name()
    );

    let (status, body) = get("ratings", &[]).await.unwrap();
    assert_eq!(status, 403, "{}: {body}", build.name());
    assert_eq!(body, "RBAC: access denied");

    // ipBlocks: layover matches the client's address, the HBONE peer's (route A records it at
    // connect_terminate). istiod's own RBAC matches `direct_remote_ip`
    // (pilot/pkg/security/authz/model/generator.go:156 @ 1.30.3), which inside main_internal
    // is the internal listener's address on Envoy 1.40 (original_dst restores the remote
    // address, not the direct one): natively the DENY never fires.
    let blocked = if build == FilterBuild::Native {
        200
    } else {
        403
    };
    let (status, body) = get_path("/blocked").await.unwrap();
    assert_eq!(status, blocked, "{}: {body}", build.name());
    let (status, body) = get_path("/other").await.unwrap();
    assert_eq!(status, 200, "{}: {body}", build.name());

    assert_eq!(
        v1.request_count() + v2.request_count(),
        if build == FilterBuild::Native { 4 } else { 3 },
        "{}",
        build.name()
    );
    assert!(
        ztunnel.records().len() >= 2,
        "{}: each backend is reached through connect_originate's HBONE",
        build.name()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istiod_shape_validates_native() {
    validates(FilterBuild::Native, "1.30.3").await;
    validates(FilterBuild::Native, "1.26.8").await;
    validates(FilterBuild::Native, "1.23.6").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_a_validates_wasm() {
    validates(FilterBuild::Wasm, "1.30.3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_a_validates_dynamic_module() {
    validates(FilterBuild::DynamicModule, "1.30.3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istiod_shape_serves_native() {
    serves(FilterBuild::Native).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_a_serves_wasm() {
    serves(FilterBuild::Wasm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_a_serves_dynamic_module() {
    serves(FilterBuild::DynamicModule).await;
}

/// Route B's shape: the plugin is istiod's named filter, in every HTTP chain, at the AUTHZ
/// position (no jwt_authn here, so first), before istiod's RBAC filters, which stay; the
/// filter's configuration is the authorization-only wrapper. Envoy accepts it.
async fn route_b_validates(istio: &str, plugin_filter: &str) {
    let backend = Backend::start("reviews-v1", "v1").await.unwrap();
    let certs = Certs::new().unwrap();
    let istio: IstioVersion = istio.parse().unwrap();
    let text = route_b_config(&[&backend], &certs, istio, None);
    validate_config_with(&text, &FilterBuild::Wasm.envoy_options().unwrap())
        .unwrap_or_else(|e| panic!("route B @ {istio}: {e}\n{text}"));
    let v: Value = serde_yaml_ng::from_str(&text).unwrap();
    let name = http_chain_name(istio, 9080, "reviews.default.svc.cluster.local");
    let c = chain(&v, &name);
    assert_eq!(
        http_filter_names(c),
        [
            plugin_filter,
            "envoy.filters.http.rbac",
            "envoy.filters.http.rbac",
            "envoy.filters.http.fault",
            "envoy.filters.http.cors",
            "envoy.filters.http.router"
        ]
    );
    let wasm = &c["filters"][0]["typed_config"]["http_filters"][0]["typed_config"]["config"];
    let configuration = wasm["configuration"]["value"].as_str().unwrap();
    let fc = layover_contract::FilterConfig::decode(configuration.as_bytes()).unwrap();
    assert_eq!(fc.mode, layover_contract::FilterMode::Authorization);
    assert_eq!(wasm["failure_policy"], "FAIL_CLOSED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_b_validates_wasm() {
    route_b_validates(
        "1.30.3",
        "extensions.istio.io/trafficextension/default.layover-waypoint~istio-translated-wasmplugin",
    )
    .await;
    route_b_validates(
        "1.26.8",
        "extensions.istio.io/wasmplugin/default.layover-waypoint",
    )
    .await;
}

/// Route B through the tunnel. layover (authorization only) runs first and answers denials;
/// istiod's routes still route (the VirtualService's `end-user: jason` → v2) and istiod's RBAC
/// still runs after layover on what it lets through (the same policy is enforced twice).
///
/// Client address: istiod records the HBONE peer only as
/// `envoy.filters.listener.original_dst.remote_ip`, an address object neither build can read,
/// and inside `main_internal` the direct remote address is the internal listener's while
/// `source.address` follows `x-forwarded-for` (`use_remote_address: false`). So on route B
/// layover does not know the client address, and reads no header for it: every `ipBlocks`
/// check resolves against the caller — an ALLOW on it never matches (no header unlocks it), a
/// DENY on it always does (here: both `/blocked` and `/other` are denied, though only
/// 127.0.0.1 is the client; natively neither is, as `direct_remote_ip` is the internal
/// listener's address).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_b_serves_wasm() {
    let Mesh {
        v1,
        v2,
        certs,
        ztunnel,
    } = mesh().await;
    let envoy = Envoy::start_with(&FilterBuild::Wasm.envoy_options().unwrap(), |launch| {
        Ok::<_, std::convert::Infallible>(route_b_config(
            &[&v1, &v2],
            &certs,
            IstioVersion::PINNED,
            Some(launch),
        ))
    })
    .await
    .unwrap();
    let addr = envoy.listener_addr_of(CONNECT_TERMINATE).unwrap();
    let get =
        |sa: &'static str, path: &'static str, headers: &'static [(&'static str, &'static str)]| {
            tunnelled_get(&certs, addr, sa, VIP, "reviews:9080", path, None, headers)
        };
    // istiod's RBAC filters share the chain's connection manager stats.
    let rbac = |what: &'static str| {
        let envoy = &envoy;
        async move {
            envoy
                .stat(&format!("http.inbound_0.0.0.0_9080;.rbac.{what}"))
                .await
                .unwrap()
                .unwrap_or(0)
        }
    };

    // Allowed by principal: istiod's default route (v1), with the client's headers untouched
    // (authorization-only mode strips nothing; istiod's routes may match on them).
    let (status, body) = get("productpage", "/reviews/1", &[("x-layover-probe", "kept")])
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}\n{}", envoy.log_tail(40));
    let echo: Echo = serde_json::from_str(&body).unwrap();
    assert_eq!(echo.name, "reviews-v1");
    assert_eq!(
        echo.headers.get("x-layover-probe").map(String::as_str),
        Some("kept")
    );
    assert!(
        !echo.headers.contains_key(layover_contract::CLUSTER_HEADER),
        "layover chooses no cluster on route B"
    );
    // istiod's RBAC ran after layover (DENY and ALLOW filters, each counting an allow).
    let allowed_by_rbac = rbac("allowed").await;
    assert!(allowed_by_rbac >= 1, "istiod's RBAC did not run");

    // istiod's VirtualService routes.
    let (status, body) = get("productpage", "/reviews/1", &[("end-user", "jason")])
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let echo: Echo = serde_json::from_str(&body).unwrap();
    assert_eq!(echo.name, "reviews-v2", "the VirtualService route");

    // Denied by principal, by layover: istiod's RBAC never saw the request.
    let (status, body) = get("ratings", "/reviews/1", &[]).await.unwrap();
    assert_eq!((status, body.as_str()), (403, "RBAC: access denied"));
    // By namespace.
    let (status, body) = get("productpage", "/ns-denied", &[]).await.unwrap();
    assert_eq!((status, body.as_str()), (403, "RBAC: access denied"));
    assert_eq!(
        rbac("denied").await,
        0,
        "layover answered both denials first"
    );

    // ipBlocks with the client address unknown: DENY rules on it fire (fail closed) …
    for path in ["/blocked", "/other"] {
        let (status, body) = get("productpage", path, &[]).await.unwrap();
        assert_eq!(
            (status, body.as_str()),
            (403, "RBAC: access denied"),
            "{path}"
        );
    }
    // … and no x-forwarded-for unlocks an ALLOW on it.
    let (status, _) = get("ratings", "/xff", &[("x-forwarded-for", "127.0.0.2")])
        .await
        .unwrap();
    assert_eq!(status, 403, "a client header decided ipBlocks");
    assert_eq!(rbac("denied").await, 0);

    assert_eq!(v1.request_count() + v2.request_count(), 2);
    assert!(ztunnel.records().len() >= 2);
}
