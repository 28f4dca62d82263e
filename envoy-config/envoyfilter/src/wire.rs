//! The EnvoyFilter (`networking.istio.io/v1alpha3`) and WasmPlugin
//! (`extensions.istio.io/v1alpha1`) APIs as they are written in YAML, field for field from
//! istio/api `networking/v1alpha3/envoy_filter.proto` and `extensions/v1alpha1/wasm.proto`.
//!
//! Every struct denies unknown fields: these types are the schema the emitted manifests are
//! checked against and the first line of validation for user input. Enums stay strings here
//! and become Rust enums in the validated domain types (`crate::EnvoyFilter`), so an unknown
//! value gets a message naming the field and the accepted values.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `metadata` of a Kubernetes object (the fields layover reads; the rest is accepted and
/// ignored, as the API server would keep it).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// `metadata.name`.
    #[serde(default)]
    pub name: String,
    /// `metadata.namespace` (`default` when empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// `metadata.creationTimestamp` (RFC 3339); istiod orders equal priorities by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
    /// `metadata.labels`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// `metadata.annotations`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Everything else (uid, resourceVersion, managedFields, …).
    #[serde(flatten, skip_serializing)]
    pub other: BTreeMap<String, Value>,
}

/// A whole EnvoyFilter document.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvoyFilterDoc {
    /// `networking.istio.io/v1alpha3`.
    pub api_version: String,
    /// `EnvoyFilter`.
    pub kind: String,
    /// Object metadata.
    pub metadata: ObjectMeta,
    /// The filter.
    pub spec: EnvoyFilterSpec,
    /// Written by the API server; ignored.
    #[serde(default, skip_serializing)]
    pub status: Option<Value>,
}

/// `EnvoyFilter` spec.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvoyFilterSpec {
    /// Workloads the filter applies to, by label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<WorkloadSelector>,
    /// Objects (a waypoint Gateway, a Service) the filter applies to (Istio 1.22+).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<PolicyTargetReference>,
    /// The patches, in order.
    #[serde(default)]
    pub config_patches: Vec<ConfigPatch>,
    /// Ordering between EnvoyFilters: lower first; default 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: i32,
}

fn is_zero(v: &i32) -> bool {
    *v == 0
}

/// `workloadSelector`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadSelector {
    /// Labels the workload must carry.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// `selector` of policies such as WasmPlugin (istio.type.v1beta1.WorkloadSelector): the labels
/// are `matchLabels` there, unlike EnvoyFilter's `workloadSelector.labels`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    /// Labels the workload must carry.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

/// `targetRefs[]` (istio.type.v1beta1.PolicyTargetReference).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyTargetReference {
    /// API group (`gateway.networking.k8s.io`, or empty for core).
    #[serde(default)]
    pub group: String,
    /// Kind (`Gateway`, `Service`, `ServiceEntry`, `GatewayClass`).
    pub kind: String,
    /// Name.
    pub name: String,
    /// Namespace; must be the policy's own when set.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

/// `configPatches[]` (EnvoyConfigObjectPatch).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigPatch {
    /// `LISTENER`, `FILTER_CHAIN`, `NETWORK_FILTER`, `HTTP_FILTER`, `ROUTE_CONFIGURATION`,
    /// `VIRTUAL_HOST`, `HTTP_ROUTE`, `CLUSTER`, … (string here, validated later).
    #[serde(default)]
    pub apply_to: String,
    /// Which objects the patch applies to.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub match_: Option<ObjectMatch>,
    /// What to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<Patch>,
}

/// `match` (EnvoyConfigObjectMatch).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMatch {
    /// `ANY` (default), `SIDECAR_INBOUND`, `SIDECAR_OUTBOUND`, `GATEWAY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// Proxy version / metadata match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyMatch>,
    /// Listener match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener: Option<ListenerMatch>,
    /// Route configuration match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_configuration: Option<RouteConfigurationMatch>,
    /// Cluster match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterMatch>,
}

/// `match.proxy`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyMatch {
    /// Regular expression on the proxy version.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub proxy_version: String,
    /// Node metadata that must match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// `match.listener`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenerMatch {
    /// Listener port.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub port_number: u32,
    /// Deprecated, ignored by istiod.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub port_name: String,
    /// Filter chain match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_chain: Option<FilterChainMatch>,
    /// Listener filter name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub listener_filter: String,
    /// Listener name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

/// `match.listener.filterChain`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FilterChainMatch {
    /// Filter chain name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// SNI in the chain's `filter_chain_match.server_names`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sni: String,
    /// `filter_chain_match.transport_protocol`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub transport_protocol: String,
    /// Comma-separated `filter_chain_match.application_protocols`, all required.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub application_protocols: String,
    /// Network filter match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<FilterMatch>,
    /// `filter_chain_match.destination_port`.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub destination_port: u32,
}

/// `match.listener.filterChain.filter`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FilterMatch {
    /// Network filter name.
    #[serde(default)]
    pub name: String,
    /// HTTP filter inside an HTTP connection manager.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_filter: Option<SubFilterMatch>,
}

/// `match.listener.filterChain.filter.subFilter`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubFilterMatch {
    /// HTTP filter name.
    #[serde(default)]
    pub name: String,
}

/// `match.routeConfiguration`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteConfigurationMatch {
    /// Listener port the route configuration serves.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub port_number: u32,
    /// Gateway server port name (gateways only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub port_name: String,
    /// Gateway name (gateways only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub gateway: String,
    /// Virtual host match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vhost: Option<VirtualHostMatch>,
    /// Route configuration name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// `match.routeConfiguration.vhost`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualHostMatch {
    /// Virtual host name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Domain the virtual host serves (Istio 1.25+).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain_name: String,
    /// Route match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<RouteMatch>,
}

/// `match.routeConfiguration.vhost.route`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteMatch {
    /// Route name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// `ANY` (default), `ROUTE`, `REDIRECT`, `DIRECT_RESPONSE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

/// `match.cluster`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterMatch {
    /// Service port.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub port_number: u32,
    /// Service FQDN.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service: String,
    /// DestinationRule subset.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subset: String,
    /// Exact cluster name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// `patch`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Patch {
    /// `MERGE`, `ADD`, `REMOVE`, `INSERT_BEFORE`, `INSERT_AFTER`, `INSERT_FIRST`, `REPLACE`,
    /// `MERGE_AND_REPLACE_LIST` (string here, validated later).
    #[serde(default)]
    pub operation: String,
    /// The Envoy configuration the operation uses (proto JSON, snake_case fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// `UNSPECIFIED`, `AUTHN`, `AUTHZ`, `STATS` (HTTP_FILTER ADD only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_class: Option<String>,
}

/// A whole WasmPlugin document (`extensions.istio.io/v1alpha1`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WasmPluginDoc {
    /// `extensions.istio.io/v1alpha1`.
    pub api_version: String,
    /// `WasmPlugin`.
    pub kind: String,
    /// Object metadata.
    pub metadata: ObjectMeta,
    /// The plugin.
    pub spec: WasmPluginSpec,
}

/// `WasmPlugin` spec (istio/api `extensions/v1alpha1/wasm.proto`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WasmPluginSpec {
    /// Workload selector (sidecars and classic gateways; never a waypoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Deprecated single target reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<PolicyTargetReference>,
    /// Targets: a waypoint is addressed by its Gateway.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<PolicyTargetReference>,
    /// `oci://…`, `file://…` or `http(s)://…`.
    pub url: String,
    /// SHA-256 of the module (required for http(s) URLs by some Istio versions).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sha256: String,
    /// `UNSPECIFIED_POLICY`, `IfNotPresent`, `Always`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// Secret holding the OCI registry credentials.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image_pull_secret: String,
    /// The plugin's configuration (any JSON value; delivered as a StringValue of its JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_config: Option<Value>,
    /// The plugin's root id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub plugin_name: String,
    /// `UNSPECIFIED_PHASE`, `AUTHN`, `AUTHZ`, `STATS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Order within a phase: higher first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// `FAIL_CLOSE`, `FAIL_OPEN`, `FAIL_RELOAD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_strategy: Option<String>,
    /// VM settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_config: Option<Value>,
    /// Traffic selectors (mode / ports).
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub match_: Vec<Value>,
    /// `UNSPECIFIED_PLUGIN_TYPE`, `HTTP`, `NETWORK`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
}
