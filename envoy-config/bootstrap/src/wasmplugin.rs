//! Route B: a WasmPlugin applied to the istiod-shaped waypoint ([`crate::istiod`]) the way
//! istiod applies it, so the object `layover manifests --filter wasm --wasm-url …` emits can run
//! locally under the real Envoy.
//!
//! istiod, pinned 1.30.3 (1.26 where it differs):
//! - a WasmPlugin becomes a synthetic TrafficExtension `<name>~istio-translated-wasmplugin`
//!   with the same phase number, priority, match and wasm settings
//!   (`pilot/pkg/config/kube/extensions/translate.go:27-77 @ 1.30.3`; none before 1.30.0);
//! - attachment, per waypoint HTTP chain (`listener_waypoint.go:884-887`,
//!   `pilot/pkg/model/push_context.go:2216-2241 @ 1.30.3`), is `ShouldAttachPolicy`
//!   (`pilot/pkg/model/policyattachment.go:123-199`): a waypoint never uses `selector`
//!   (`:140-147`); `targetRefs` to the waypoint's Gateway in its namespace (`:185-197`) or to
//!   GatewayClass `istio-waypoint` from the root namespace (`:177-182`) attach to every chain; a
//!   Service in the plugin's namespace attaches to that service's chains (`:155-163`). Then the
//!   `match` selectors (`extensions.go:271-282`): the waypoint's `ListenerInfo` has no port and
//!   class SidecarInbound, i.e. mode SERVER (`extensions.go:56-69, 91-111`), so `ports` never
//!   match and neither does `mode: CLIENT`;
//! - position by phase (`listener_waypoint.go:896-905 @ 1.30.3`): AUTHN after CUSTOM ext_authz
//!   and before `jwt_authn`; AUTHZ after `jwt_authn` and before istiod's RBAC filters; STATS
//!   and unspecified after fault / CORS, before the telemetry filters and the router; within a
//!   phase by `priority`, higher first, stable (`push_context.go:2151-2166`);
//! - the filter is named `extensions.istio.io/trafficextension/<ns>.<name>~istio-translated-
//!   wasmplugin` (`extensions.go:53, 352 @ 1.30.3`; `extensions.istio.io/wasmplugin/<ns>.<name>`
//!   before 1.30.0, `extensions.go:53 @ 1.26.8`) and fetched over ECDS (`extension/extensionfilter.go:
//!   32-40, 93-127 @ 1.30.3`). Its `PluginConfig` (`extensions.go:226-268`): `name`
//!   `<ns>.<name…>`, `root_id` = `pluginName`, `configuration` = a `StringValue` holding
//!   `pluginConfig` as JSON, VM runtime V8 with the module (`file://` → a local filename,
//!   `:113-126`), `failStrategy` → `failure_policy` (FAIL_CLOSE or unset → FAIL_CLOSED,
//!   FAIL_OPEN → FAIL_OPEN, FAIL_RELOAD → FAIL_RELOAD, `:260-267`).
//!
//! Locally the filter is inline (`typed_config`) instead of ECDS, and the VM's environment
//! variables (istio-agent's image-pull bookkeeping) are left out: Envoy runs the same
//! `PluginConfig` either way.

use layover_envoyfilter::emit::Target;
use layover_envoyfilter::wire::WasmPluginDoc;
use layover_envoyfilter::IstioVersion;
use layover_envoyfilter::WAYPOINT_GATEWAY_CLASS;
use layover_proto::v1::Service;
use serde_json::{json, Value};

use crate::EmitError;

/// The suffix istiod gives the TrafficExtension it makes of a WasmPlugin
/// (`translate.go:27 @ 1.30.3`).
pub const TRANSLATED_SUFFIX: &str = "~istio-translated-wasmplugin";

/// Where in a waypoint chain's HTTP filters a plugin goes (`spec.phase`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before `jwt_authn`.
    Authn,
    /// After `jwt_authn`, before istiod's RBAC filters.
    Authz,
    /// After fault and CORS, before the telemetry filters.
    Stats,
    /// Right after [`Phase::Stats`].
    Unspecified,
}

/// Which HTTP chains of a waypoint a plugin lands in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attachment {
    /// None (a `selector`-only plugin, another Gateway, a `match` that never fits a waypoint).
    Nowhere,
    /// Every service chain (Gateway or GatewayClass `targetRefs`).
    EveryChain,
    /// The chains of these services, `(namespace, name)`.
    Services(Vec<(String, String)>),
}

impl Attachment {
    /// Whether the plugin lands in the chains of `svc`.
    pub fn covers(&self, svc: &Service) -> bool {
        match self {
            Attachment::Nowhere => false,
            Attachment::EveryChain => true,
            Attachment::Services(s) => s
                .iter()
                .any(|(ns, name)| *ns == svc.namespace && *name == svc.name),
        }
    }
}

/// A WasmPlugin as istiod would put it into a waypoint: where, in which phase, and the HTTP
/// filter itself.
#[derive(Debug, Clone, PartialEq)]
pub struct WaypointPlugin {
    /// Which chains.
    pub attachment: Attachment,
    /// Where in a chain.
    pub phase: Phase,
    /// Order within the phase: higher first; unset is lowest.
    pub priority: Option<i32>,
    /// The `http_filters` entry (inline `typed_config` where istiod uses ECDS).
    pub filter: Value,
}

/// Translates `doc` for the waypoint `waypoint` (its Gateway) of an Istio `istio` whose
/// MeshConfig root namespace is `root_namespace`.
pub fn waypoint_plugin(
    doc: &WasmPluginDoc,
    waypoint: &Target,
    root_namespace: &str,
    istio: IstioVersion,
) -> Result<WaypointPlugin, EmitError> {
    let phase = match doc.spec.phase.as_deref() {
        Some("AUTHN") => Phase::Authn,
        Some("AUTHZ") => Phase::Authz,
        Some("STATS") => Phase::Stats,
        _ => Phase::Unspecified,
    };
    Ok(WaypointPlugin {
        attachment: attachment(doc, waypoint, root_namespace),
        phase,
        priority: doc.spec.priority,
        filter: http_filter(doc, istio)?,
    })
}

fn namespace(doc: &WasmPluginDoc) -> &str {
    if doc.metadata.namespace.is_empty() {
        "default"
    } else {
        &doc.metadata.namespace
    }
}

/// Where istiod attaches `doc` in the waypoint of `waypoint` (see the module docs).
pub fn attachment(doc: &WasmPluginDoc, waypoint: &Target, root_namespace: &str) -> Attachment {
    let s = &doc.spec;
    // HTTP (or unspecified) plugins only go into HTTP chains (`extensions.go:192-200`).
    if !matches!(
        s.type_.as_deref(),
        None | Some("HTTP") | Some("UNSPECIFIED_PLUGIN_TYPE")
    ) || !matches_waypoint(&s.match_)
    {
        return Attachment::Nowhere;
    }
    let ns = namespace(doc);
    // translate.go:38-42 @ 1.30.3: the deprecated single targetRef when targetRefs is empty.
    let refs: Vec<_> = if s.target_refs.is_empty() {
        s.target_ref.iter().collect()
    } else {
        s.target_refs.iter().collect()
    };
    let mut services = Vec::new();
    for r in refs {
        let gateway_api = r.group == "gateway.networking.k8s.io";
        let local = ns == waypoint.namespace && (r.namespace.is_empty() || r.namespace == ns);
        match r.kind.as_str() {
            "GatewayClass"
                if gateway_api && ns == root_namespace && r.name == WAYPOINT_GATEWAY_CLASS =>
            {
                return Attachment::EveryChain
            }
            "Gateway" if gateway_api && local && r.name == waypoint.gateway => {
                return Attachment::EveryChain
            }
            // Any namespace's waypoint serves the service; the plugin must be in the
            // service's namespace (policyattachment.go:155-163).
            "Service" if r.group.is_empty() => services.push((ns.to_string(), r.name.clone())),
            _ => {}
        }
    }
    if services.is_empty() {
        Attachment::Nowhere
    } else {
        Attachment::Services(services)
    }
}

/// `matchTrafficExtensionSelectors` for a waypoint chain (no port, mode SERVER): an empty list
/// matches; otherwise one selector without ports whose mode is SERVER, CLIENT_AND_SERVER or
/// unset (`extensions.go:87-111, 271-282 @ 1.30.3`).
fn matches_waypoint(selectors: &[Value]) -> bool {
    selectors.is_empty()
        || selectors.iter().any(|sel| {
            let no_ports = sel
                .get("ports")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty);
            let mode = sel.get("mode").and_then(Value::as_str);
            no_ports
                && matches!(
                    mode,
                    None | Some("UNDEFINED" | "SERVER" | "CLIENT_AND_SERVER")
                )
        })
}

/// The HTTP filter name istiod gives the plugin `namespace/name` under `istio`.
pub fn filter_name(namespace: &str, name: &str, istio: IstioVersion) -> String {
    if translated(istio) {
        format!("extensions.istio.io/trafficextension/{namespace}.{name}{TRANSLATED_SUFFIX}")
    } else {
        format!("extensions.istio.io/wasmplugin/{namespace}.{name}")
    }
}

fn translated(istio: IstioVersion) -> bool {
    istio >= IstioVersion::new(1, 30, 0)
}

/// The `http_filters` entry istiod's ECDS delivers for `doc` (see the module docs).
pub fn http_filter(doc: &WasmPluginDoc, istio: IstioVersion) -> Result<Value, EmitError> {
    let s = &doc.spec;
    let ns = namespace(doc);
    let name = &doc.metadata.name;
    let filename = s.url.strip_prefix("file://").ok_or_else(|| {
        EmitError::EnvoyFilter(format!(
            "WasmPlugin {ns}/{name}: only a file:// url can run locally (istio-agent fetches \
             oci:// and http(s):// modules), got `{}`",
            s.url
        ))
    })?;
    // extensions.go:228-236: a non-empty pluginConfig is handed over as its JSON text.
    let configuration = match &s.plugin_config {
        Some(Value::Object(fields)) if !fields.is_empty() => {
            let text = serde_json::to_string(&Value::Object(fields.clone()))
                .map_err(|e| EmitError::Serialize(e.to_string()))?;
            json!({ "@type": "type.googleapis.com/google.protobuf.StringValue", "value": text })
        }
        Some(Value::Object(_)) | None => json!({}),
        Some(_) => {
            return Err(EmitError::EnvoyFilter(format!(
                "WasmPlugin {ns}/{name}: pluginConfig must be an object (a protobuf Struct)"
            )))
        }
    };
    let failure_policy = match s.fail_strategy.as_deref() {
        Some("FAIL_OPEN") => "FAIL_OPEN",
        Some("FAIL_RELOAD") => "FAIL_RELOAD",
        _ => "FAIL_CLOSED",
    };
    let resource = if translated(istio) {
        format!("{ns}.{name}{TRANSLATED_SUFFIX}")
    } else {
        format!("{ns}.{name}")
    };
    let mut config = json!({
        "name": resource,
        "configuration": configuration,
        "vm_config": {
            "runtime": "envoy.wasm.runtime.v8",
            "code": { "local": { "filename": filename } },
        },
        "failure_policy": failure_policy,
    });
    if let (false, Some(obj)) = (s.plugin_name.is_empty(), config.as_object_mut()) {
        obj.insert("root_id".into(), json!(s.plugin_name));
    }
    Ok(json!({
        "name": filter_name(ns, name, istio),
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": config,
        },
    }))
}

/// The plugins of `plugins` attached to `svc`'s chains in `phase`, in istiod's order.
pub(crate) fn in_phase<'a>(
    plugins: &'a [WaypointPlugin],
    svc: &Service,
    phase: Phase,
) -> Vec<&'a Value> {
    let mut v: Vec<&WaypointPlugin> = plugins
        .iter()
        .filter(|p| p.phase == phase && p.attachment.covers(svc))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.priority.unwrap_or(i32::MIN)));
    v.into_iter().map(|p| &p.filter).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;
