//! Building the EnvoyFilter and WasmPlugin objects layover emits, and checking emitted
//! objects against the API ([`crate::wire`], which denies unknown fields, plus the domain
//! validation of [`crate::EnvoyFilter`]).

use serde_json::{json, Value};

use crate::version::{Attachment, IstioVersion};
use crate::{wire, EnvoyFilter, InvalidEnvoyFilter, Reason, HTTP_CONNECTION_MANAGER, ROUTER};

/// The label Istio (and layover's drop-in) puts on a waypoint's pods: the Gateway's name.
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";

/// `spec.priority` of the EnvoyFilter layover emits.
pub const LAYOVER_PRIORITY: i32 = -100;

/// Who the emitted object is for: the waypoint Gateway `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Namespace of the waypoint Gateway (and of the emitted objects).
    pub namespace: String,
    /// Name of the waypoint Gateway.
    pub gateway: String,
}

impl Target {
    fn target_refs(&self) -> Value {
        json!([{ "group": "gateway.networking.k8s.io", "kind": "Gateway", "name": self.gateway }])
    }
}

/// The HTTP_FILTER INSERT_BEFORE router patches that put `filters` (complete `http_filters`
/// entries, in order) in front of the router of the connection managers of each listener in
/// `listeners`, and an HTTP_ROUTE MERGE of `route_merge` into route `route` of virtual host
/// `vhost` of route configuration `route_configuration`.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterInsertion {
    /// `metadata.name` of the EnvoyFilter.
    pub name: String,
    /// The waypoint it targets.
    pub target: Target,
    /// Listener names whose connection managers get the filters.
    pub listeners: Vec<String>,
    /// `http_filters` entries, inserted in this order before the router.
    pub filters: Vec<Value>,
    /// Route configuration, virtual host and route the merge selects.
    pub route: (String, String, String),
    /// The `Route` fields merged into it (proto JSON).
    pub route_merge: Value,
}

/// The EnvoyFilter for `ins` (`networking.istio.io/v1alpha3`, context SIDECAR_INBOUND: what
/// istiod uses for every waypoint listener), attached the way the pinned Istio release attaches
/// EnvoyFilters to a waypoint ([`attach`]).
pub fn envoy_filter(ins: &FilterInsertion) -> Value {
    let mut patches = Vec::new();
    for listener in &ins.listeners {
        for f in &ins.filters {
            patches.push(json!({
                "applyTo": "HTTP_FILTER",
                "match": {
                    "context": "SIDECAR_INBOUND",
                    "listener": {
                        "name": listener,
                        "filterChain": {
                            "filter": {
                                "name": HTTP_CONNECTION_MANAGER,
                                "subFilter": { "name": ROUTER },
                            },
                        },
                    },
                },
                "patch": { "operation": "INSERT_BEFORE", "value": f },
            }));
        }
    }
    let (rc, vhost, route) = &ins.route;
    patches.push(json!({
        "applyTo": "HTTP_ROUTE",
        "match": {
            "context": "SIDECAR_INBOUND",
            "routeConfiguration": {
                "name": rc,
                "vhost": { "name": vhost, "route": { "name": route, "action": "ROUTE" } },
            },
        },
        "patch": { "operation": "MERGE", "value": ins.route_merge },
    }));
    let mut ef = json!({
        "apiVersion": crate::API_VERSION,
        "kind": "EnvoyFilter",
        "metadata": {
            "name": ins.name,
            "namespace": ins.target.namespace,
            "labels": { "app.kubernetes.io/managed-by": "layover" },
        },
        "spec": {
            // Before EnvoyFilters of the default priority 0, so users can place their filters
            // relative to `layover` (istiod applies lower priorities first).
            "priority": LAYOVER_PRIORITY,
            "configPatches": patches,
        },
    });
    attach(&mut ef, &ins.target, IstioVersion::PINNED);
    ef
}

/// Sets how the EnvoyFilter `ef` selects the waypoint `target` under Istio release `istio`
/// (replacing any earlier choice; the API forbids both fields at once):
/// - from 1.27.0 `targetRefs` to the waypoint's Gateway — istiod attaches nothing else to a
///   waypoint (`pilot/pkg/model/policyattachment.go:139-148 @ 1.30.3`);
/// - up to 1.26.x `workloadSelector` on the Gateway-name label of the waypoint's pods — istiod
///   does not read `targetRefs` there (`push_context.go:2334-2342 @ 1.26.8`), so a
///   targetRefs-only object would land on every proxy of the namespace.
pub fn attach(ef: &mut Value, target: &Target, istio: IstioVersion) {
    let Some(spec) = ef.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    // The selection first, as people write it.
    let mut rest = std::mem::take(spec);
    rest.remove("workloadSelector");
    rest.remove("targetRefs");
    match istio.envoy_filter_attachment() {
        Attachment::TargetRefs { .. } => {
            spec.insert("targetRefs".into(), target.target_refs());
        }
        Attachment::Selector => {
            spec.insert(
                "workloadSelector".into(),
                json!({ "labels": { GATEWAY_NAME_LABEL: target.gateway } }),
            );
        }
    }
    spec.extend(rest);
}

/// A WasmPlugin loading the layover wasm build from `url` (`oci://…` or `file://…`) into the
/// waypoint `target`, with `plugin_config` (a JSON object: the filter configuration, which
/// istiod hands to the filter as its JSON text) as its `pluginConfig`.
pub fn wasm_plugin(name: &str, target: &Target, url: &str, plugin_config: &Value) -> Value {
    json!({
        "apiVersion": crate::WASM_PLUGIN_API_VERSION,
        "kind": "WasmPlugin",
        "metadata": {
            "name": name,
            "namespace": target.namespace,
            "labels": { "app.kubernetes.io/managed-by": "layover" },
        },
        "spec": {
            "targetRefs": target.target_refs(),
            "url": url,
            "imagePullPolicy": "IfNotPresent",
            "pluginName": "layover",
            // After jwt_authn and before istiod's RBAC filters (`listener_waypoint.go:899-900
            // @ 1.30.3`): layover's authorization runs first, istiod's RBAC after it.
            "phase": "AUTHZ",
            "failStrategy": "FAIL_CLOSE",
            "type": "HTTP",
            "pluginConfig": plugin_config,
        },
    })
}

/// Checks an emitted EnvoyFilter against the API: the wire schema (unknown fields, types)
/// and the domain validation.
pub fn check_envoy_filter(v: &Value) -> Result<EnvoyFilter, InvalidEnvoyFilter> {
    EnvoyFilter::from_value(v.clone())
}

const PHASES: &[&str] = &["UNSPECIFIED_PHASE", "AUTHN", "AUTHZ", "STATS"];
const FAIL: &[&str] = &["FAIL_CLOSE", "FAIL_OPEN", "FAIL_RELOAD"];
const PULL: &[&str] = &["UNSPECIFIED_POLICY", "IfNotPresent", "Always"];
const TYPES: &[&str] = &["UNSPECIFIED_PLUGIN_TYPE", "HTTP", "NETWORK"];

/// Checks a WasmPlugin against the API (field names and types, enum values, URL scheme,
/// `targetRefs` vs `selector`).
pub fn check_wasm_plugin(v: &Value) -> Result<wire::WasmPluginDoc, InvalidEnvoyFilter> {
    let object = format!(
        "WasmPlugin {}/{}",
        v.pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default"),
        v.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
    );
    let err = |path: &str, reason: Reason| InvalidEnvoyFilter {
        object: object.clone(),
        path: path.into(),
        reason,
    };
    let doc: wire::WasmPluginDoc = serde_path_to_error::deserialize(v.clone())
        .map_err(|e| err(&e.path().to_string(), Reason::Schema(e.inner().to_string())))?;
    if doc.api_version != crate::WASM_PLUGIN_API_VERSION {
        return Err(err(
            "apiVersion",
            Reason::UnknownValue {
                value: doc.api_version.clone(),
                expected: crate::WASM_PLUGIN_API_VERSION.into(),
            },
        ));
    }
    let s = &doc.spec;
    for (field, value, all) in [
        ("spec.phase", &s.phase, PHASES),
        ("spec.failStrategy", &s.fail_strategy, FAIL),
        ("spec.imagePullPolicy", &s.image_pull_policy, PULL),
        ("spec.type", &s.type_, TYPES),
    ] {
        if let Some(v) = value {
            if !all.contains(&v.as_str()) {
                return Err(err(
                    field,
                    Reason::UnknownValue {
                        value: v.clone(),
                        expected: all.join(", "),
                    },
                ));
            }
        }
    }
    if !["oci://", "file://", "http://", "https://"]
        .iter()
        .any(|p| s.url.starts_with(p))
    {
        return Err(err(
            "spec.url",
            Reason::Unsupported(format!(
                "`{}` is not an oci://, file:// or http(s):// URL",
                s.url
            )),
        ));
    }
    if s.selector.is_some() && !s.target_refs.is_empty() {
        return Err(err(
            "spec.targetRefs",
            Reason::Unsupported("selector and targetRefs are mutually exclusive".into()),
        ));
    }
    Ok(doc)
}
