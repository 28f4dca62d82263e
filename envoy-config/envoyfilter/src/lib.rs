//! Istio's EnvoyFilter for layover's waypoint.
//!
//! - [`wire`]: the EnvoyFilter (`networking.istio.io/v1alpha3`) and WasmPlugin
//!   (`extensions.istio.io/v1alpha1`) APIs as serde types that deny unknown fields — the schema
//!   user input and emitted manifests are checked against.
//! - [`EnvoyFilter`]: the validated form (`TryFrom<wire::EnvoyFilterDoc>`), with an
//!   [`InvalidEnvoyFilter`] error naming the object and the field (`spec.configPatches[2].patch.operation`).
//! - [`apply()`]: Istio's patch semantics (istio/istio `pilot/pkg/networking/core/envoyfilter/`)
//!   applied to a static Envoy bootstrap, all or nothing; [`apply_with_report()`] the same
//!   passes, reporting per patch where it applied and which matched nothing.
//! - [`emit`]: the EnvoyFilter / WasmPlugin objects layover emits, checked against [`wire`].
//! - [`load_paths`] / [`load_str`]: the EnvoyFilter documents of the same YAML inputs the
//!   compiler reads.

#![forbid(unsafe_code)]

mod apply;
pub mod emit;
mod load;
mod merge;
mod version;
pub mod wire;

pub use apply::{
    apply, apply_with_report, Applied, ApplyContext, FilterReport, IstiodWaypointRules,
    PatchReport, Report, SkippedFilter, DEFAULT_ROOT_NAMESPACE, WAYPOINT_GATEWAY_CLASS,
};
pub use load::{load_paths, load_str};
pub use version::{Attachment, DefaultRouteRetry, IstioVersion};

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

/// The EnvoyFilter API version layover reads and writes.
pub const API_VERSION: &str = "networking.istio.io/v1alpha3";

/// The WasmPlugin API version layover writes.
pub const WASM_PLUGIN_API_VERSION: &str = "extensions.istio.io/v1alpha1";

/// Name of the HTTP connection manager network filter; HTTP_FILTER patches only reach
/// connection managers of this name (istio/istio `listener_patch.go`, `patchNetworkFilter`).
pub const HTTP_CONNECTION_MANAGER: &str = "envoy.filters.network.http_connection_manager";

/// Name of the router HTTP filter.
pub const ROUTER: &str = "envoy.filters.http.router";

/// Why an EnvoyFilter was rejected, or could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{object}: {path}: {reason}")]
pub struct InvalidEnvoyFilter {
    /// Where: `file: document N (EnvoyFilter ns/name)`, or `EnvoyFilter ns/name`.
    pub object: String,
    /// Field path inside the object, e.g. `spec.configPatches[2].patch.operation`.
    pub path: String,
    /// What is wrong.
    pub reason: Reason,
}

/// What is wrong with an EnvoyFilter field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    /// The YAML does not fit the API (unknown field, wrong type).
    #[error("{0}")]
    Schema(String),
    /// A required field is missing.
    #[error("required")]
    Missing,
    /// An enum field holds a value the API does not define.
    #[error("unknown value `{value}` (expected one of {expected})")]
    UnknownValue {
        /// The value written.
        value: String,
        /// The accepted values.
        expected: String,
    },
    /// A value has the wrong JSON type.
    #[error("expected {expected}, found {found}")]
    WrongType {
        /// What the field takes.
        expected: String,
        /// What was written.
        found: String,
    },
    /// Valid for Istio, but not something the local waypoint can apply (or not on a waypoint).
    #[error("{0}")]
    Unsupported(String),
    /// The match selects no object of the waypoint's configuration. istiod ignores such a
    /// patch silently; layover refuses it so a typo cannot go unnoticed.
    #[error("the match selects nothing in the waypoint configuration ({0})")]
    MatchesNothing(String),
}

/// `match.context`: the kind of proxy configuration a patch applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PatchContext {
    /// Any (the default).
    Any,
    /// Inbound configuration of a sidecar — and, in istiod, every listener of a waypoint.
    SidecarInbound,
    /// Outbound configuration of a sidecar.
    SidecarOutbound,
    /// Gateways (ingress/egress).
    Gateway,
}

impl PatchContext {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ANY" => PatchContext::Any,
            "SIDECAR_INBOUND" => PatchContext::SidecarInbound,
            "SIDECAR_OUTBOUND" => PatchContext::SidecarOutbound,
            "GATEWAY" => PatchContext::Gateway,
            _ => return None,
        })
    }

    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PatchContext::Any => "ANY",
            PatchContext::SidecarInbound => "SIDECAR_INBOUND",
            PatchContext::SidecarOutbound => "SIDECAR_OUTBOUND",
            PatchContext::Gateway => "GATEWAY",
        }
    }
}

/// `applyTo`: the kind of Envoy object a patch changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ApplyTo {
    /// A listener.
    Listener,
    /// A filter chain.
    FilterChain,
    /// A network filter.
    NetworkFilter,
    /// An HTTP filter of an HTTP connection manager.
    HttpFilter,
    /// A route configuration.
    RouteConfiguration,
    /// A virtual host.
    VirtualHost,
    /// A route.
    HttpRoute,
    /// A cluster.
    Cluster,
    /// An ECDS extension configuration.
    ExtensionConfig,
    /// The bootstrap.
    Bootstrap,
    /// A listener filter.
    ListenerFilter,
}

impl ApplyTo {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "LISTENER" => ApplyTo::Listener,
            "FILTER_CHAIN" => ApplyTo::FilterChain,
            "NETWORK_FILTER" => ApplyTo::NetworkFilter,
            "HTTP_FILTER" => ApplyTo::HttpFilter,
            "ROUTE_CONFIGURATION" => ApplyTo::RouteConfiguration,
            "VIRTUAL_HOST" => ApplyTo::VirtualHost,
            "HTTP_ROUTE" => ApplyTo::HttpRoute,
            "CLUSTER" => ApplyTo::Cluster,
            "EXTENSION_CONFIG" => ApplyTo::ExtensionConfig,
            "BOOTSTRAP" => ApplyTo::Bootstrap,
            "LISTENER_FILTER" => ApplyTo::ListenerFilter,
            _ => return None,
        })
    }

    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ApplyTo::Listener => "LISTENER",
            ApplyTo::FilterChain => "FILTER_CHAIN",
            ApplyTo::NetworkFilter => "NETWORK_FILTER",
            ApplyTo::HttpFilter => "HTTP_FILTER",
            ApplyTo::RouteConfiguration => "ROUTE_CONFIGURATION",
            ApplyTo::VirtualHost => "VIRTUAL_HOST",
            ApplyTo::HttpRoute => "HTTP_ROUTE",
            ApplyTo::Cluster => "CLUSTER",
            ApplyTo::ExtensionConfig => "EXTENSION_CONFIG",
            ApplyTo::Bootstrap => "BOOTSTRAP",
            ApplyTo::ListenerFilter => "LISTENER_FILTER",
        }
    }

    fn is_listener_class(self) -> bool {
        matches!(
            self,
            ApplyTo::Listener
                | ApplyTo::FilterChain
                | ApplyTo::NetworkFilter
                | ApplyTo::HttpFilter
                | ApplyTo::ListenerFilter
        )
    }

    fn is_route_class(self) -> bool {
        matches!(
            self,
            ApplyTo::RouteConfiguration | ApplyTo::VirtualHost | ApplyTo::HttpRoute
        )
    }
}

/// `patch.operation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Proto merge into the matched object.
    Merge,
    /// Append a new object.
    Add,
    /// Remove the matched object.
    Remove,
    /// Insert before the matched object (or first without a filter/route match).
    InsertBefore,
    /// Insert after the matched object (or last without a filter/route match).
    InsertAfter,
    /// Insert first.
    InsertFirst,
    /// Replace the matched object.
    Replace,
    /// Merge, but lists replace instead of appending.
    MergeAndReplaceList,
}

impl Operation {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "MERGE" => Operation::Merge,
            "ADD" => Operation::Add,
            "REMOVE" => Operation::Remove,
            "INSERT_BEFORE" => Operation::InsertBefore,
            "INSERT_AFTER" => Operation::InsertAfter,
            "INSERT_FIRST" => Operation::InsertFirst,
            "REPLACE" => Operation::Replace,
            "MERGE_AND_REPLACE_LIST" => Operation::MergeAndReplaceList,
            _ => return None,
        })
    }

    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Merge => "MERGE",
            Operation::Add => "ADD",
            Operation::Remove => "REMOVE",
            Operation::InsertBefore => "INSERT_BEFORE",
            Operation::InsertAfter => "INSERT_AFTER",
            Operation::InsertFirst => "INSERT_FIRST",
            Operation::Replace => "REPLACE",
            Operation::MergeAndReplaceList => "MERGE_AND_REPLACE_LIST",
        }
    }

    fn is_merge(self) -> bool {
        matches!(self, Operation::Merge | Operation::MergeAndReplaceList)
    }
}

/// The operations the local waypoint applies, per `applyTo` (what layover emits plus what
/// users commonly write). Other combinations are valid Istio but rejected with a clear error
/// rather than ignored.
fn supported(apply_to: ApplyTo) -> &'static [&'static str] {
    match apply_to {
        ApplyTo::Listener => &["MERGE", "MERGE_AND_REPLACE_LIST", "ADD", "REMOVE"],
        ApplyTo::NetworkFilter | ApplyTo::HttpFilter => &[
            "MERGE",
            "MERGE_AND_REPLACE_LIST",
            "ADD",
            "REMOVE",
            "INSERT_BEFORE",
            "INSERT_AFTER",
            "INSERT_FIRST",
            "REPLACE",
        ],
        ApplyTo::RouteConfiguration => &["MERGE", "MERGE_AND_REPLACE_LIST"],
        ApplyTo::VirtualHost => &[
            "MERGE",
            "MERGE_AND_REPLACE_LIST",
            "ADD",
            "REMOVE",
            "REPLACE",
        ],
        ApplyTo::HttpRoute => &[
            "MERGE",
            "MERGE_AND_REPLACE_LIST",
            "ADD",
            "REMOVE",
            "INSERT_BEFORE",
            "INSERT_AFTER",
            "INSERT_FIRST",
        ],
        ApplyTo::Cluster => &["MERGE", "MERGE_AND_REPLACE_LIST", "ADD", "REMOVE"],
        ApplyTo::FilterChain
        | ApplyTo::ExtensionConfig
        | ApplyTo::Bootstrap
        | ApplyTo::ListenerFilter => &[],
    }
}

/// `match.routeConfiguration.vhost.route.action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteAction {
    /// Any action.
    Any,
    /// `route`.
    Route,
    /// `redirect`.
    Redirect,
    /// `direct_response`.
    DirectResponse,
}

/// One validated `configPatches[]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigPatch {
    /// Index in `spec.configPatches` (for messages).
    pub index: usize,
    /// What it changes.
    pub apply_to: ApplyTo,
    /// `match.context`.
    pub context: PatchContext,
    /// `match.listener`.
    pub listener: Option<wire::ListenerMatch>,
    /// `match.routeConfiguration`.
    pub route_configuration: Option<wire::RouteConfigurationMatch>,
    /// `match.routeConfiguration.vhost.route.action`, parsed.
    pub route_action: RouteAction,
    /// `match.cluster`.
    pub cluster: Option<wire::ClusterMatch>,
    /// `patch.operation`.
    pub operation: Operation,
    /// `patch.value` (an object; `Null` for REMOVE).
    pub value: Value,
}

/// A validated EnvoyFilter.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvoyFilter {
    /// Where it came from (`file: document N`), when loaded from a file.
    pub source: Option<String>,
    /// `metadata.namespace` (`default` when empty).
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.creationTimestamp`.
    pub creation_timestamp: Option<String>,
    /// `spec.priority`.
    pub priority: i32,
    /// `spec.workloadSelector.labels`.
    pub workload_selector: Option<BTreeMap<String, String>>,
    /// `spec.targetRefs`.
    pub target_refs: Vec<wire::PolicyTargetReference>,
    /// `spec.configPatches`.
    pub patches: Vec<ConfigPatch>,
}

impl EnvoyFilter {
    /// `EnvoyFilter ns/name`, prefixed with the source when known.
    pub fn object(&self) -> String {
        match &self.source {
            Some(src) => format!("{src} (EnvoyFilter {}/{})", self.namespace, self.name),
            None => format!("EnvoyFilter {}/{}", self.namespace, self.name),
        }
    }

    pub(crate) fn error(&self, path: String, reason: Reason) -> InvalidEnvoyFilter {
        InvalidEnvoyFilter {
            object: self.object(),
            path,
            reason,
        }
    }

    /// Validates a wire document; `source` names the file and document for messages.
    pub fn from_doc(
        doc: wire::EnvoyFilterDoc,
        source: Option<String>,
    ) -> Result<Self, InvalidEnvoyFilter> {
        let namespace = if doc.metadata.namespace.is_empty() {
            "default".to_string()
        } else {
            doc.metadata.namespace.clone()
        };
        let mut out = EnvoyFilter {
            source,
            namespace,
            name: doc.metadata.name.clone(),
            creation_timestamp: doc.metadata.creation_timestamp.clone(),
            priority: doc.spec.priority,
            workload_selector: doc
                .spec
                .workload_selector
                .as_ref()
                .map(|s| s.labels.clone()),
            target_refs: doc.spec.target_refs.clone(),
            patches: Vec::new(),
        };
        if doc.api_version != API_VERSION {
            return Err(out.error(
                "apiVersion".into(),
                Reason::UnknownValue {
                    value: doc.api_version,
                    expected: API_VERSION.into(),
                },
            ));
        }
        if doc.metadata.name.is_empty() {
            return Err(out.error("metadata.name".into(), Reason::Missing));
        }
        // istio/istio pkg/config/validation/envoyfilter/envoyfilter.go: workloadSelector and
        // targetRefs exclude each other.
        if doc.spec.workload_selector.is_some() && !doc.spec.target_refs.is_empty() {
            return Err(out.error(
                "spec.targetRefs".into(),
                Reason::Unsupported(
                    "workloadSelector and targetRefs are mutually exclusive".into(),
                ),
            ));
        }
        for (i, r) in doc.spec.target_refs.iter().enumerate() {
            if !r.namespace.is_empty() && r.namespace != out.namespace {
                return Err(out.error(
                    format!("spec.targetRefs[{i}].namespace"),
                    Reason::Unsupported(format!(
                        "cross-namespace target `{}` (must be the EnvoyFilter's namespace `{}`)",
                        r.namespace, out.namespace
                    )),
                ));
            }
        }
        let mut patches = Vec::with_capacity(doc.spec.config_patches.len());
        for (index, cp) in doc.spec.config_patches.into_iter().enumerate() {
            patches.push(validate_patch(&out, index, cp)?);
        }
        out.patches = patches;
        Ok(out)
    }
}

impl TryFrom<wire::EnvoyFilterDoc> for EnvoyFilter {
    type Error = InvalidEnvoyFilter;

    fn try_from(doc: wire::EnvoyFilterDoc) -> Result<Self, Self::Error> {
        EnvoyFilter::from_doc(doc, None)
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn expect_one_of(value: &str, all: &[&str]) -> Reason {
    Reason::UnknownValue {
        value: value.to_string(),
        expected: all.join(", "),
    }
}

const APPLY_TO: &[&str] = &[
    "LISTENER",
    "FILTER_CHAIN",
    "NETWORK_FILTER",
    "HTTP_FILTER",
    "ROUTE_CONFIGURATION",
    "VIRTUAL_HOST",
    "HTTP_ROUTE",
    "CLUSTER",
    "EXTENSION_CONFIG",
    "BOOTSTRAP",
    "LISTENER_FILTER",
];
const OPERATIONS: &[&str] = &[
    "MERGE",
    "ADD",
    "REMOVE",
    "INSERT_BEFORE",
    "INSERT_AFTER",
    "INSERT_FIRST",
    "REPLACE",
    "MERGE_AND_REPLACE_LIST",
];
const CONTEXTS: &[&str] = &["ANY", "SIDECAR_INBOUND", "SIDECAR_OUTBOUND", "GATEWAY"];
const ROUTE_ACTIONS: &[&str] = &["ANY", "ROUTE", "REDIRECT", "DIRECT_RESPONSE"];

fn validate_patch(
    ef: &EnvoyFilter,
    index: usize,
    cp: wire::ConfigPatch,
) -> Result<ConfigPatch, InvalidEnvoyFilter> {
    let at = |field: &str| format!("spec.configPatches[{index}].{field}");
    if cp.apply_to.is_empty() {
        return Err(ef.error(at("applyTo"), Reason::Missing));
    }
    let apply_to = ApplyTo::parse(&cp.apply_to)
        .ok_or_else(|| ef.error(at("applyTo"), expect_one_of(&cp.apply_to, APPLY_TO)))?;
    let patch = cp
        .patch
        .ok_or_else(|| ef.error(at("patch"), Reason::Missing))?;
    if patch.operation.is_empty() {
        return Err(ef.error(at("patch.operation"), Reason::Missing));
    }
    let operation = Operation::parse(&patch.operation).ok_or_else(|| {
        ef.error(
            at("patch.operation"),
            expect_one_of(&patch.operation, OPERATIONS),
        )
    })?;
    let ok_ops = supported(apply_to);
    if ok_ops.is_empty() {
        return Err(ef.error(
            at("applyTo"),
            Reason::Unsupported(format!(
                "{} patches are not applied by layover's waypoint (supported: LISTENER, NETWORK_FILTER, HTTP_FILTER, ROUTE_CONFIGURATION, VIRTUAL_HOST, HTTP_ROUTE, CLUSTER)",
                apply_to.as_str()
            )),
        ));
    }
    if !ok_ops.contains(&operation.as_str()) {
        return Err(ef.error(
            at("patch.operation"),
            Reason::Unsupported(format!(
                "{} is not an operation on {} (supported: {})",
                operation.as_str(),
                apply_to.as_str(),
                ok_ops.join(", ")
            )),
        ));
    }
    if let Some(class) = &patch.filter_class {
        if class != "UNSPECIFIED" {
            return Err(ef.error(
                at("patch.filterClass"),
                Reason::Unsupported(format!(
                    "filterClass {class} is not supported by layover's waypoint; position the filter with INSERT_BEFORE/INSERT_AFTER"
                )),
            ));
        }
    }
    let m = cp.match_.unwrap_or_default();
    let context = match &m.context {
        None => PatchContext::Any,
        Some(c) => PatchContext::parse(c)
            .ok_or_else(|| ef.error(at("match.context"), expect_one_of(c, CONTEXTS)))?,
    };
    if m.proxy.is_some() {
        return Err(ef.error(
            at("match.proxy"),
            Reason::Unsupported(
                "proxy version/metadata matches are not supported by layover's waypoint".into(),
            ),
        ));
    }
    // istio/istio pkg/config/validation/envoyfilter/envoyfilter.go: a match must be of the
    // class of object the patch applies to.
    if m.listener.is_some() && !apply_to.is_listener_class() {
        return Err(ef.error(
            at("match.listener"),
            Reason::Unsupported(format!(
                "a listener match cannot select {} objects",
                apply_to.as_str()
            )),
        ));
    }
    if m.route_configuration.is_some() && !apply_to.is_route_class() {
        return Err(ef.error(
            at("match.routeConfiguration"),
            Reason::Unsupported(format!(
                "a routeConfiguration match cannot select {} objects",
                apply_to.as_str()
            )),
        ));
    }
    if m.cluster.is_some() && apply_to != ApplyTo::Cluster {
        return Err(ef.error(
            at("match.cluster"),
            Reason::Unsupported(format!(
                "a cluster match cannot select {} objects",
                apply_to.as_str()
            )),
        ));
    }
    let mut route_action = RouteAction::Any;
    if let Some(action) = m
        .route_configuration
        .as_ref()
        .and_then(|r| r.vhost.as_ref())
        .and_then(|v| v.route.as_ref())
        .and_then(|r| r.action.as_ref())
    {
        route_action = match action.as_str() {
            "ANY" => RouteAction::Any,
            "ROUTE" => RouteAction::Route,
            "REDIRECT" => RouteAction::Redirect,
            "DIRECT_RESPONSE" => RouteAction::DirectResponse,
            other => {
                return Err(ef.error(
                    at("match.routeConfiguration.vhost.route.action"),
                    expect_one_of(other, ROUTE_ACTIONS),
                ))
            }
        };
    }
    let value = match (operation, patch.value) {
        (Operation::Remove, _) => Value::Null,
        (_, None) | (_, Some(Value::Null)) => {
            return Err(ef.error(at("patch.value"), Reason::Missing));
        }
        (_, Some(v)) => v,
    };
    if operation != Operation::Remove {
        check_value(ef, &at("patch.value"), apply_to, operation, &value)?;
    }
    Ok(ConfigPatch {
        index,
        apply_to,
        context,
        listener: m.listener,
        route_configuration: m.route_configuration,
        route_action,
        cluster: m.cluster,
        operation,
        value,
    })
}

/// The patch value's shape: an object (an Envoy message in proto JSON); the fields every
/// object kind names itself with are strings; `typed_config` is an `Any` with a string
/// `@type`; objects that are added must be named (Envoy rejects unnamed filters/clusters).
fn check_value(
    ef: &EnvoyFilter,
    path: &str,
    apply_to: ApplyTo,
    operation: Operation,
    value: &Value,
) -> Result<(), InvalidEnvoyFilter> {
    let Some(obj) = value.as_object() else {
        return Err(ef.error(
            path.to_string(),
            Reason::WrongType {
                expected: format!("an object (an Envoy {} in proto JSON)", apply_to.as_str()),
                found: json_type(value).into(),
            },
        ));
    };
    if let Some(name) = obj.get("name") {
        if !name.is_string() {
            return Err(ef.error(
                format!("{path}.name"),
                Reason::WrongType {
                    expected: "a string".into(),
                    found: json_type(name).into(),
                },
            ));
        }
    }
    let adds = !operation.is_merge();
    let named = matches!(
        apply_to,
        ApplyTo::HttpFilter | ApplyTo::NetworkFilter | ApplyTo::Listener | ApplyTo::Cluster
    );
    if adds
        && named
        && obj
            .get("name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    {
        return Err(ef.error(format!("{path}.name"), Reason::Missing));
    }
    check_any_fields(ef, path, value)
}

/// Every `typed_config` in the value must be an object with a string `@type`.
fn check_any_fields(ef: &EnvoyFilter, path: &str, value: &Value) -> Result<(), InvalidEnvoyFilter> {
    match value {
        Value::Object(obj) => {
            for (k, v) in obj {
                let p = format!("{path}.{k}");
                if k == "typed_config" {
                    let Some(tc) = v.as_object() else {
                        return Err(ef.error(
                            p,
                            Reason::WrongType {
                                expected: "an object with `@type`".into(),
                                found: json_type(v).into(),
                            },
                        ));
                    };
                    if !tc.get("@type").is_some_and(Value::is_string) {
                        return Err(ef.error(format!("{p}.@type"), Reason::Missing));
                    }
                }
                check_any_fields(ef, &p, v)?;
            }
            Ok(())
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                check_any_fields(ef, &format!("{path}[{i}]"), v)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

impl fmt::Display for PatchContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
