//! `layover check-waypoint` on a real config dump: the istiod-shaped waypoint
//! (`layover_bootstrap::istiod`, pinned Istio 1.30.3) runs under the real Envoy (native build),
//! its admin `/config_dump?include_eds=true` is fetched and written to a file, and the checker's
//! library functions — the dump as a static bootstrap (`layover_bootstrap::config_dump`), the
//! EnvoyFilters applied with a report (`layover_envoyfilter::apply_with_report`) — run on it
//! as `layover check-waypoint` runs them. The patched bootstrap must pass `envoy --mode
//! validate`.
//!
//! The dump is checked twice: as Envoy prints it for the local (static) waypoint, and shaped as
//! istiod's ADS delivers the same resources to a waypoint in a cluster — listeners under
//! `dynamic_listeners`, the `inbound-vip|…` clusters as EDS with their endpoints in
//! `dynamic_endpoint_configs`, the node's metadata naming the Gateway. The second shape is
//! committed as `testdata/config-dumps/istiod-waypoint.json`, with the route A EnvoyFilter as
//! `istiod-waypoint-route-a.yaml`, for the CLI test (`LAYOVER_UPDATE_FIXTURES=1` rewrites
//! both).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use layover_bootstrap::config_dump::{
    from_config_dump, write_placeholders, ConvertOptions, PlaceholderPem, SecretPlaceholder,
};
use layover_bootstrap::istiod::{
    http_chain_name, istiod_waypoint_value, route_a_envoy_filter, virtual_host_name,
};
use layover_bootstrap::{
    endpoints_from_registry, to_yaml, waypoint_target, BootstrapOptions, CONNECT_TERMINATE,
    MAIN_INTERNAL,
};
use layover_contract::ClusterSelection;
use layover_envoyfilter::{apply_with_report, load_paths, ApplyContext, IstioVersion, Report};
use layover_integration::mesh::Certs;
use layover_integration::waypoint::{compile_yaml, subsets_yaml, workload_yaml, FilterBuild};
use layover_integration::{validate_config_with, Backend, Envoy, HttpClient, Launch};
use serde_json::{json, Value};

const HCM: &str = "envoy.filters.network.http_connection_manager";

/// reviews with a VIP, subsets v1 / v2 and a VirtualService, as in `istiod_waypoint.rs`.
fn yaml(backend: &Backend) -> String {
    "---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  clusterIP: 10.96.0.10
  selector: {app: reviews}
  ports:
  - {name: http, port: 9080, targetPort: 9080}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
"
    .to_string()
        + &workload_yaml(backend, "reviews")
        + &subsets_yaml("reviews", &["v1", "v2"])
}

struct Fixture {
    compiled: layover_compiler::Compiled,
    dump: Value,
    dir: tempfile::TempDir,
    _certs: Certs,
    _envoy: Envoy,
    _backend: Backend,
}

/// Starts the istiod-shaped waypoint under Envoy and fetches its config dump.
async fn real_dump() -> Fixture {
    let backend = Backend::start("reviews-v1", "v1").await.unwrap();
    let certs = Certs::new().unwrap();
    let compiled = compile_yaml(&yaml(&backend)).unwrap();
    let mut endpoints = endpoints_from_registry(&compiled);
    for ep in &mut endpoints {
        ep.hbone = true;
    }
    let build = FilterBuild::Native;
    let envoy = Envoy::start_with(&build.envoy_options().unwrap(), |launch| {
        let opts = BootstrapOptions {
            admin_port: Launch::ANY_PORT,
            listener_port: Launch::ANY_PORT,
            access_log_path: Some(launch.access_log.display().to_string()),
            hbone: Some(certs.hbone.clone()),
            ..BootstrapOptions::default()
        };
        let v = istiod_waypoint_value(&compiled.policy, &endpoints, &opts, IstioVersion::PINNED)
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(to_yaml(&v))
    })
    .await
    .unwrap();
    let reply = HttpClient::http1()
        .get(&envoy.admin_url("/config_dump?include_eds=true"))
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let dump: Value = serde_json::from_slice(&reply.body).unwrap();
    Fixture {
        compiled,
        dump,
        dir: tempfile::tempdir().unwrap(),
        _certs: certs,
        _envoy: envoy,
        _backend: backend,
    }
}

/// The same resources as istiod's ADS would hold them (see the module docs).
fn ads_shaped(dump: &Value, ns: &str, gateway: &str) -> Value {
    let mut d = dump.clone();
    for c in d["configs"].as_array_mut().unwrap() {
        let ty = c["@type"].as_str().unwrap_or("").to_string();
        if ty.ends_with("BootstrapConfigDump") {
            let b = &mut c["bootstrap"];
            b["node"]["metadata"] = json!({
                "NAMESPACE": ns,
                "LABELS": { "gateway.networking.k8s.io/gateway-name": gateway },
            });
            b["dynamic_resources"] = json!({
                "ads_config": { "api_type": "GRPC", "grpc_services": [{ "envoy_grpc": { "cluster_name": "xds-grpc" } }] },
                "lds_config": { "ads": {} },
                "cds_config": { "ads": {} },
            });
        } else if ty.ends_with("ListenersConfigDump") {
            let ls = c
                .as_object_mut()
                .unwrap()
                .remove("static_listeners")
                .unwrap();
            let dynamic: Vec<Value> = ls.as_array().unwrap().iter().map(|l| {
                json!({ "name": l["listener"]["name"], "active_state": { "listener": l["listener"] } })
            }).collect();
            c["dynamic_listeners"] = Value::Array(dynamic);
        } else if ty.ends_with("ClustersConfigDump") {
            let all = c
                .as_object_mut()
                .unwrap()
                .remove("static_clusters")
                .unwrap();
            let (mut stat, mut dynamic) = (Vec::new(), Vec::new());
            for e in all.as_array().unwrap() {
                let mut cl = e["cluster"].clone();
                if cl["name"].as_str().unwrap().starts_with("inbound-vip|") {
                    let o = cl.as_object_mut().unwrap();
                    o.remove("load_assignment");
                    o.insert("type".into(), json!("EDS"));
                    o.insert(
                        "eds_cluster_config".into(),
                        json!({ "eds_config": { "ads": {}, "initial_fetch_timeout": "0s" } }),
                    );
                    dynamic.push(json!({ "cluster": cl }));
                } else {
                    stat.push(e.clone());
                }
            }
            c["static_clusters"] = Value::Array(stat);
            c["dynamic_active_clusters"] = Value::Array(dynamic);
        } else if ty.ends_with("EndpointsConfigDump") {
            let all = c
                .as_object_mut()
                .unwrap()
                .remove("static_endpoint_configs")
                .unwrap_or(json!([]));
            let (stat, dynamic): (Vec<Value>, Vec<Value>) =
                all.as_array().unwrap().iter().cloned().partition(|e| {
                    !e["endpoint_config"]["cluster_name"]
                        .as_str()
                        .unwrap_or("")
                        .starts_with("inbound-vip|")
                });
            c["static_endpoint_configs"] = Value::Array(stat);
            c["dynamic_endpoint_configs"] = Value::Array(dynamic);
        }
    }
    d
}

/// Route A as `layover manifests` writes it (YAML), for the native build (no layover module:
/// only its connection-manager replacements and the peer-address filter, which stock Envoy
/// loads), written to `dir`.
fn route_a_file(f: &Fixture) -> PathBuf {
    let ef = route_a_envoy_filter(
        &f.compiled.policy,
        None,
        ClusterSelection::Header,
        IstioVersion::PINNED,
        &waypoint_target(&f.compiled.policy),
    )
    .unwrap();
    let path = f.dir.path().join("route-a.yaml");
    std::fs::write(&path, to_yaml(&ef)).unwrap();
    path
}

/// What `layover check-waypoint` does, up to the report: read the dump file, convert, apply.
fn check(dump_file: &Path, filters: &[PathBuf], waypoint: Option<(&str, &str)>) -> (Value, Report) {
    let dump: Value = serde_json::from_str(&std::fs::read_to_string(dump_file).unwrap()).unwrap();
    let opts = ConvertOptions {
        secrets_dir: dump_file.with_extension("secrets"),
    };
    let conv = from_config_dump(&dump, &opts).unwrap();
    // Admin redacts the HBONE keys (even their files' paths), downstream and upstream:
    // throwaway certificates stand in for them.
    let secrets: Vec<&str> = conv
        .placeholders
        .iter()
        .map(|p| match p {
            SecretPlaceholder::Certificate { secret, .. } => secret.as_str(),
            SecretPlaceholder::TrustedCa { secret, .. } => secret.as_str(),
        })
        .collect();
    assert_eq!(
        secrets,
        ["listener_connect_terminate", "cluster_connect_originate"]
    );
    write_placeholders(&conv.placeholders, &placeholder_pem()).unwrap();
    assert!(conv.warnings.is_empty(), "{:?}", conv.warnings);
    let (ns, name) = match waypoint {
        Some((ns, name)) => (ns.to_string(), name.to_string()),
        None => conv.waypoint.clone().expect("the node names the waypoint"),
    };
    let efs = load_paths(filters).unwrap_or_else(|e| panic!("{e:?}"));
    let ctx = ApplyContext::for_waypoint(&ns, &name).with_istio(IstioVersion::PINNED);
    apply_with_report(&conv.bootstrap, &efs, &ctx).unwrap()
}

fn placeholder_pem() -> PlaceholderPem {
    let ca = layover_certs::MeshCa::new("cluster.local").unwrap();
    let cert = ca
        .issue(&layover_certs::Identity::new("test", "placeholder").unwrap())
        .unwrap();
    PlaceholderPem {
        cert_chain: cert.cert_chain_pem,
        private_key: cert.key_pem,
        ca: ca.root_pem().to_string(),
    }
}

fn assert_route_a_applied(report: &Report) {
    assert_eq!(report.applied.len(), 1, "{report:?}");
    assert!(report.skipped.is_empty(), "{report:?}");
    let patches = &report.applied[0].patches;
    assert_eq!(patches.len(), 2);
    for p in patches {
        assert!(p.matched_nothing.is_none(), "{p:?}");
    }
    assert_eq!(
        patches[0].applied_at,
        [format!("listener {CONNECT_TERMINATE} / chain default / filter {HCM} / http filter envoy.filters.http.router (inserted before)")]
    );
    let chain = http_chain_name(
        IstioVersion::PINNED,
        9080,
        "reviews.default.svc.cluster.local",
    );
    assert_eq!(
        patches[1].applied_at,
        [format!(
            "listener {MAIN_INTERNAL} / chain {chain} / filter {HCM} (replaced)"
        )]
    );
}

fn validate(patched: &Value) {
    let text = to_yaml(patched);
    validate_config_with(&text, &FilterBuild::Native.envoy_options().unwrap())
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_a_applies_to_the_real_dump_and_validates() {
    let f = real_dump().await;
    let target = waypoint_target(&f.compiled.policy);
    let route_a = route_a_file(&f);

    // As Envoy prints the local waypoint: its node names no Gateway, so --waypoint is given.
    let file = f.dir.path().join("dump.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&f.dump).unwrap()).unwrap();
    let (patched, report) = check(
        &file,
        std::slice::from_ref(&route_a),
        Some((&target.namespace, &target.gateway)),
    );
    assert_route_a_applied(&report);
    validate(&patched);

    // As istiod's ADS holds it: listeners dynamic, inbound-vip clusters EDS.
    let ads = ads_shaped(&f.dump, &target.namespace, &target.gateway);
    let file = f.dir.path().join("ads-dump.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&ads).unwrap()).unwrap();
    let (patched, report) = check(&file, &[route_a], None);
    assert_route_a_applied(&report);
    let clusters = patched["static_resources"]["clusters"].as_array().unwrap();
    let vip = clusters
        .iter()
        .find(|c| c["name"].as_str().unwrap().starts_with("inbound-vip|"))
        .expect("an inbound-vip cluster");
    assert_eq!(vip["type"], "STATIC");
    assert!(
        vip["load_assignment"]["endpoints"][0]["lb_endpoints"][0].is_object(),
        "{vip}"
    );
    validate(&patched);

    if std::env::var_os("LAYOVER_UPDATE_FIXTURES").is_some() {
        write_fixture(&ads, &f);
    }
}

/// The committed CLI fixture: the ADS-shaped dump with this run's temp paths made stable.
fn write_fixture(ads: &Value, f: &Fixture) {
    let mut ads = ads.clone();
    for c in ads["configs"].as_array_mut().unwrap() {
        // Envoy's self-description (its build, ~90 KB of extension names) is not config.
        if let Some(node) = c
            .pointer_mut("/bootstrap/node")
            .and_then(Value::as_object_mut)
        {
            for k in [
                "user_agent_build_version",
                "extensions",
                "user_agent_name",
                "user_agent_version",
            ] {
                node.remove(k);
            }
        }
    }
    let mut text = serde_json::to_string_pretty(&ads).unwrap();
    for p in [&f._certs.hbone.cert_chain, &f._certs.hbone.trusted_ca] {
        let dir = p.parent().unwrap().display().to_string();
        text = text.replace(&dir, "/var/run/layover/certs");
    }
    // Istio's waypoint logs to /dev/stdout, which every machine has.
    let log = f._envoy.dir().join("access.log").display().to_string();
    text = text.replace(&log, "/dev/stdout");
    assert!(!text.contains("/tmp/"), "a temp path left in the fixture");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/config-dumps");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("istiod-waypoint.json"), text + "\n").unwrap();
    std::fs::copy(route_a_file(f), root.join("istiod-waypoint-route-a.yaml")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_matching_nothing_is_reported_and_the_rest_applies() {
    let f = real_dump().await;
    let target = waypoint_target(&f.compiled.policy);
    let file = f.dir.path().join("dump.json");
    std::fs::write(&file, serde_json::to_vec(&f.dump).unwrap()).unwrap();
    let ef = format!(
        "apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {{name: timeouts, namespace: {ns}}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: Gateway, name: {gw}}}]
  configPatches:
  - applyTo: HTTP_ROUTE
    match:
      context: SIDECAR_INBOUND
      routeConfiguration: {{vhost: {{name: \"{vh}\"}}}}
    patch: {{operation: MERGE, value: {{route: {{timeout: 5s}}}}}}
  - applyTo: CLUSTER
    match: {{context: SIDECAR_INBOUND, cluster: {{service: ratings.default.svc.cluster.local}}}}
    patch: {{operation: MERGE, value: {{connect_timeout: 2s}}}}
",
        ns = target.namespace,
        gw = target.gateway,
        vh = virtual_host_name(9080),
    );
    let path = f.dir.path().join("timeouts.yaml");
    std::fs::write(&path, ef).unwrap();
    let (patched, report) = check(&file, &[path], Some((&target.namespace, &target.gateway)));
    let p = &report.applied[0].patches;
    assert!(!p[0].applied_at.is_empty(), "{p:?}");
    assert!(p[0].applied_at[0].contains(&format!("virtual host {}", virtual_host_name(9080))));
    assert_eq!(
        p[1].matched_nothing.as_deref(),
        Some("MERGE CLUSTER; service ratings.default.svc.cluster.local")
    );
    assert_eq!(report.unmatched().count(), 1);
    validate(&patched);
}

#[test]
fn an_invalid_envoy_filter_names_the_file_object_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: bad, namespace: default}
spec:
  configPatches:
  - applyTo: CLUSTER
    patch: {operation: MERGE, valu: {connect_timeout: 2s}}
",
    )
    .unwrap();
    let errors = load_paths(std::slice::from_ref(&path)).unwrap_err();
    let msg = errors[0].to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("EnvoyFilter default/bad"), "{msg}");
    assert!(msg.contains("valu"), "{msg}");
}
