//! What `layover manifests` emits for a cluster with Istio ambient: the EnvoyFilter that puts
//! layover into the waypoint, the WasmPlugin alternative for the wasm build, and the drop-in
//! waypoint (layover's own Envoy as the waypoint of a GatewayClass of its own). Every
//! EnvoyFilter and WasmPlugin is checked against the API types of `layover_envoyfilter::wire`
//! before it is returned.

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::{
    bootstrap_value, dynamic_module_filter_with, endpoints_from_registry, waypoint_target,
    BootstrapOptions, DownstreamTls, EmitError, Hbone,
};
use layover_contract::{ClusterSelection, FilterConfig, FilterMode, HBONE_PORT};
use layover_envoyfilter::emit::GATEWAY_NAME_LABEL;
use layover_envoyfilter::IstioVersion;

/// Where the module files are in the waypoint pod (an emptyDir the init container fills, or a
/// volume the operator mounts).
pub const MODULE_DIR: &str = "/var/lib/layover";

/// Where the drop-in waypoint's workload certificate is mounted (the Secret's keys
/// `cert-chain.pem`, `key.pem`, `root-cert.pem`, the layout Istio uses for file-mounted certs).
pub const CERT_DIR: &str = "/var/run/secrets/layover";

/// The GatewayClass of the drop-in waypoint.
pub const GATEWAY_CLASS: &str = "layover-waypoint";

/// The controller name the drop-in GatewayClass declares. No controller reconciles it: the
/// Deployment and Service are emitted alongside, so the class only marks the Gateway as
/// layover's (istiod ignores Gateways of classes it does not own).
pub const CONTROLLER_NAME: &str = "layover.dev/waypoint";

/// Which build the waypoint loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleBuild {
    /// `liblayover_module.so` (Envoy dynamic module; the Envoy must be the exact version it
    /// was built for, 1.40.0).
    DynamicModule,
    /// `layover_wasm.wasm` (proxy-wasm, V8).
    Wasm,
}

/// The drop-in waypoint's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropIn {
    /// Envoy image (must be Envoy 1.40.0 for the dynamic module).
    pub envoy_image: String,
    /// Image holding the module files under `/layover/` (copied by an init container).
    pub module_image: String,
    /// Trust domain of the mesh.
    pub trust_domain: String,
    /// cert-manager issuer (`ClusterIssuer` name) that signs with the mesh CA; `None` expects
    /// the Secret to be created by hand.
    pub issuer: Option<String>,
}

/// Everything `layover manifests` needs besides the compiled policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestOptions {
    /// The build.
    pub build: ModuleBuild,
    /// How the route follows the filter (specifier plugin: dynamic module only).
    pub cluster_selection: ClusterSelection,
    /// WasmPlugin `url` (`oci://…` or `file://…`); with the wasm build a WasmPlugin is emitted.
    pub wasm_url: Option<String>,
    /// Also emit the drop-in waypoint.
    pub drop_in: Option<DropIn>,
    /// The Istio release of the cluster's istiod: how the EnvoyFilter attaches to the
    /// waypoint (`targetRefs` from 1.27, `workloadSelector` before).
    pub istio: IstioVersion,
}

/// One output file: a name (`envoyfilter.yaml`, …) and its objects.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// File name.
    pub file: String,
    /// What the file holds (for messages).
    pub what: String,
    /// The objects, in apply order.
    pub objects: Vec<Value>,
}

impl Manifest {
    /// The objects as one multi-document YAML stream.
    pub fn to_yaml(&self) -> Result<String, EmitError> {
        let mut out = String::new();
        for o in &self.objects {
            out.push_str("---\n");
            out.push_str(&crate::to_yaml(o));
        }
        Ok(out)
    }
}

/// The http_filters entry for `build` as it runs in the waypoint pod (module files under
/// [`MODULE_DIR`]).
pub fn pod_filter(
    build: ModuleBuild,
    policy_json: &str,
    selection: ClusterSelection,
) -> Result<Value, EmitError> {
    match build {
        ModuleBuild::DynamicModule => {
            dynamic_module_filter_with(policy_json, selection).map_err(EmitError::Serialize)
        }
        ModuleBuild::Wasm => Ok(crate::wasm_filter(
            &PathBuf::from(format!("{MODULE_DIR}/layover_wasm.wasm")),
            policy_json,
        )),
    }
}

fn checked_envoy_filter(v: Value) -> Result<Value, EmitError> {
    layover_envoyfilter::emit::check_envoy_filter(&v)
        .map_err(|e| EmitError::EnvoyFilter(format!("emitted {e}")))?;
    Ok(v)
}

/// The manifests for `compiled`.
pub fn manifests(
    compiled: &layover_compiler::Compiled,
    opts: &ManifestOptions,
) -> Result<Vec<Manifest>, EmitError> {
    if opts.cluster_selection == ClusterSelection::SpecifierPlugin
        && opts.build != ModuleBuild::DynamicModule
    {
        return Err(EmitError::ClusterSelectionMismatch);
    }
    // Protobuf map fields (labels) have no order; sorting every object's keys makes the
    // manifests reproducible (the same input gives the same bytes, so `kubectl diff` is quiet).
    let mut policy_value =
        serde_json::to_value(&compiled.policy).map_err(|e| EmitError::Serialize(e.to_string()))?;
    sort_keys(&mut policy_value);
    let policy_json =
        serde_json::to_string(&policy_value).map_err(|e| EmitError::Serialize(e.to_string()))?;
    let target = waypoint_target(&compiled.policy);
    let filter = pod_filter(opts.build, &policy_json, opts.cluster_selection)?;
    let mut out = Vec::new();

    // Route A: what makes layover the L7 of Istio's own waypoint, within istiod's patch rules
    // for the release (crate::istiod::route_a_envoy_filter says why it replaces each chain's
    // connection manager).
    let ef = checked_envoy_filter(crate::istiod::route_a_envoy_filter(
        &compiled.policy,
        Some(&filter),
        opts.cluster_selection,
        opts.istio,
        &target,
    )?)?;
    out.push(Manifest {
        file: "envoyfilter.yaml".into(),
        what: format!(
            "EnvoyFilter {}/layover-{} ({} build)",
            target.namespace,
            target.gateway,
            match opts.build {
                ModuleBuild::DynamicModule => "dynamic-module",
                ModuleBuild::Wasm => "wasm",
            }
        ),
        objects: vec![ef],
    });

    if let (ModuleBuild::Wasm, Some(url)) = (opts.build, &opts.wasm_url) {
        let wp = layover_envoyfilter::emit::wasm_plugin(
            &format!("layover-{}", target.gateway),
            &target,
            url,
            &route_b_plugin_config(&policy_json)?,
        );
        layover_envoyfilter::emit::check_wasm_plugin(&wp)
            .map_err(|e| EmitError::EnvoyFilter(format!("emitted {e}")))?;
        out.push(Manifest {
            file: "wasmplugin.yaml".into(),
            what: format!("WasmPlugin {}/layover-{}", target.namespace, target.gateway),
            objects: vec![wp],
        });
    }

    if let Some(d) = &opts.drop_in {
        out.push(drop_in(compiled, opts, d, &filter, &target)?);
    }
    Ok(out)
}

/// The WasmPlugin's `pluginConfig` (route B): the filter configuration in authorization-only
/// mode, `{"mode": "authorization", "policy": {…}}`. istiod hands a non-empty `pluginConfig`
/// (a protobuf Struct, so a JSON object) to the filter as its JSON text
/// (`pilot/pkg/model/extensions.go:228-236 @ 1.30.3`), which the filter decodes as
/// [`layover_contract::FilterConfig`]. Authorization only, because in Istio's own waypoint
/// istiod's routes already apply the VirtualServices.
pub fn route_b_plugin_config(policy_json: &str) -> Result<Value, EmitError> {
    let text = FilterConfig::encode_with(
        policy_json,
        FilterMode::Authorization,
        ClusterSelection::Header,
    )
    .map_err(EmitError::Serialize)?;
    serde_json::from_str(&text).map_err(|e| EmitError::Serialize(e.to_string()))
}

/// The drop-in waypoint: GatewayClass, Gateway, ServiceAccount, certificate, ConfigMap with
/// the bootstrap (the base waypoint with the EnvoyFilter applied), Deployment, Service.
fn drop_in(
    compiled: &layover_compiler::Compiled,
    opts: &ManifestOptions,
    d: &DropIn,
    filter: &Value,
    target: &layover_envoyfilter::emit::Target,
) -> Result<Manifest, EmitError> {
    let ns = &target.namespace;
    let name = &target.gateway;
    let sa = name.clone();
    let cert = |f: &str| PathBuf::from(format!("{CERT_DIR}/{f}"));
    let tls = DownstreamTls {
        cert_chain: cert("cert-chain.pem"),
        private_key: cert("key.pem"),
        trusted_ca: cert("root-cert.pem"),
        trust_domain: d.trust_domain.clone(),
    };
    let hbone = Hbone::from_tls(&tls);
    let bootstrap_opts = BootstrapOptions {
        admin_port: 15000,
        listener_address: "0.0.0.0".into(),
        listener_port: 15080,
        node_id: format!("{name}.{ns}"),
        layover_filter: Some(filter.clone()),
        // The plain listener requires a mesh certificate too: nothing reaches the policy
        // without a verified SPIFFE identity.
        downstream_tls: Some(tls),
        cluster_selection: opts.cluster_selection,
        hbone: Some(hbone),
        ..BootstrapOptions::default()
    };
    let endpoints = endpoints_from_registry(compiled);
    let bootstrap = bootstrap_value(&compiled.policy, &endpoints, &bootstrap_opts)?;
    let bootstrap_yaml = crate::to_yaml(&bootstrap);
    let labels = json!({
        GATEWAY_NAME_LABEL: name,
        "app.kubernetes.io/managed-by": "layover",
    });
    let spiffe = format!("spiffe://{}/ns/{ns}/sa/{sa}", d.trust_domain);
    let secret = format!("{name}-layover-certs");
    let mut objects = vec![
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GatewayClass",
            "metadata": { "name": GATEWAY_CLASS },
            "spec": {
                "controllerName": CONTROLLER_NAME,
                "description": "layover's Envoy as an Istio ambient waypoint (HBONE on 15008)",
            },
        }),
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {
                "name": name,
                "namespace": ns,
                "labels": { "istio.io/waypoint-for": "service" },
            },
            "spec": {
                "gatewayClassName": GATEWAY_CLASS,
                // What `istioctl waypoint generate` writes: one HBONE listener on 15008.
                "listeners": [{ "name": "mesh", "port": HBONE_PORT, "protocol": "HBONE" }],
            },
        }),
        json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": { "name": sa, "namespace": ns },
        }),
    ];
    if let Some(issuer) = &d.issuer {
        objects.push(json!({
            "apiVersion": "cert-manager.io/v1",
            "kind": "Certificate",
            "metadata": { "name": secret, "namespace": ns },
            "spec": {
                "secretName": secret,
                "uris": [spiffe],
                "duration": "24h",
                "renewBefore": "8h",
                "privateKey": { "algorithm": "ECDSA", "size": 256 },
                "usages": ["digital signature", "key encipherment", "server auth", "client auth"],
                "issuerRef": { "kind": "ClusterIssuer", "group": "cert-manager.io", "name": issuer },
                // Istio's file layout; cert-manager writes tls.crt / tls.key / ca.crt, mapped
                // to these names by the Deployment's volume items.
            },
        }));
    }
    let cert_items = if d.issuer.is_some() {
        json!([
            { "key": "tls.crt", "path": "cert-chain.pem" },
            { "key": "tls.key", "path": "key.pem" },
            { "key": "ca.crt", "path": "root-cert.pem" },
        ])
    } else {
        json!([
            { "key": "cert-chain.pem", "path": "cert-chain.pem" },
            { "key": "key.pem", "path": "key.pem" },
            { "key": "root-cert.pem", "path": "root-cert.pem" },
        ])
    };
    let mut env = vec![];
    if opts.build == ModuleBuild::DynamicModule {
        env.push(json!({ "name": "ENVOY_DYNAMIC_MODULES_SEARCH_PATH", "value": MODULE_DIR }));
    }
    objects.push(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": { "name": format!("{name}-layover-bootstrap"), "namespace": ns },
        "data": { "envoy.yaml": bootstrap_yaml },
    }));
    objects.push(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name, "namespace": ns, "labels": labels },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { GATEWAY_NAME_LABEL: name } },
            "template": {
                "metadata": {
                    "labels": labels,
                    // The waypoint's own traffic is not captured by ztunnel: it speaks HBONE
                    // itself, as Istio's waypoints do.
                    "annotations": { "ambient.istio.io/redirection": "disabled" },
                },
                "spec": {
                    "serviceAccountName": sa,
                    "initContainers": [{
                        "name": "layover-module",
                        "image": d.module_image,
                        "command": ["sh", "-c", format!("cp /layover/* {MODULE_DIR}/")],
                        "volumeMounts": [{ "name": "layover-module", "mountPath": MODULE_DIR }],
                    }],
                    "containers": [{
                        "name": "envoy",
                        "image": d.envoy_image,
                        "args": ["-c", "/etc/layover/envoy.yaml", "--disable-hot-restart", "--log-level", "warn"],
                        "env": env,
                        "ports": [
                            { "name": "hbone", "containerPort": HBONE_PORT },
                        ],
                        "readinessProbe": { "tcpSocket": { "port": HBONE_PORT } },
                        "securityContext": {
                            "runAsNonRoot": true,
                            "runAsUser": 1337,
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                            "capabilities": { "drop": ["ALL"] },
                        },
                        "volumeMounts": [
                            { "name": "bootstrap", "mountPath": "/etc/layover", "readOnly": true },
                            { "name": "layover-module", "mountPath": MODULE_DIR, "readOnly": true },
                            { "name": "certs", "mountPath": CERT_DIR, "readOnly": true },
                        ],
                    }],
                    "volumes": [
                        { "name": "bootstrap", "configMap": { "name": format!("{name}-layover-bootstrap") } },
                        { "name": "layover-module", "emptyDir": {} },
                        { "name": "certs", "secret": { "secretName": secret, "items": cert_items } },
                    ],
                },
            },
        },
    }));
    objects.push(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": { "name": name, "namespace": ns, "labels": labels },
        "spec": {
            "selector": { GATEWAY_NAME_LABEL: name },
            // ztunnel sends a waypoint HBONE on 15008 only.
            "ports": [{ "name": "mesh", "port": HBONE_PORT, "targetPort": HBONE_PORT, "appProtocol": "all" }],
        },
    }));
    Ok(Manifest {
        file: "drop-in-waypoint.yaml".into(),
        what: format!(
            "drop-in waypoint {ns}/{name}: GatewayClass {GATEWAY_CLASS}, Gateway, ServiceAccount, {}ConfigMap (bootstrap), Deployment, Service",
            if d.issuer.is_some() { "Certificate, " } else { "" }
        ),
        objects,
    })
}

fn sort_keys(v: &mut Value) {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = std::mem::take(map).into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            for (k, mut val) in entries {
                sort_keys(&mut val);
                map.insert(k, val);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(sort_keys),
        _ => {}
    }
}
