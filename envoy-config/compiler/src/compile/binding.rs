//! Which waypoint a service uses, resolved the way istiod 1.30.3 resolves it for the ambient
//! index (`pilot/pkg/serviceregistry/ambient/waypoints.go @ 1.30.3`):
//!
//! - the service's own `istio.io/use-waypoint` label wins; `none` opts out; a named waypoint that
//!   does not exist leaves the service without one — there is no fall-back to the namespace
//!   (`fetchWaypointForTarget`, waypoints.go:99-128);
//! - otherwise the namespace's label (waypoints.go:130-145);
//! - `istio.io/use-waypoint-namespace` names the waypoint's namespace, else the object's own
//!   (`getUseWaypoint`, waypoints.go:200-218);
//! - the waypoint must allow attachment from the service's namespace: `allowedRoutes` of its HBONE
//!   listener (port 15008), `Same` when unset (`makeAllowedRoutes` / `makeWaypointSelector`,
//!   waypoints.go:481-535; `AllowsAttachmentFromNamespace`, waypoints.go:441-466);
//! - and take service traffic: `istio.io/waypoint-for` `service` (the default) or `all`
//!   (`fetchWaypointForService`, waypoints.go:151-173; default at waypoints.go:244-258);
//! - a waypoint's own Service never has a waypoint (waypoints.go:154-157).

use super::{USE_WAYPOINT, USE_WAYPOINT_NAMESPACE, WAYPOINT_FOR};
use crate::model::GatewaySpec;
use serde_json::Value;
use std::collections::BTreeMap;

/// `gateway.istio.io/managed` value of a waypoint's own Service (waypoints.go:154).
const MANAGED_LABEL: &str = "gateway.istio.io/managed";
const MANAGED_BY_MESH_CONTROLLER: &str = "istio.io-mesh-controller";
/// The HBONE listener whose `allowedRoutes` govern attachment (waypoints.go:490-496).
const HBONE_LISTENER_PORT: u64 = 15008;

/// A waypoint Gateway as the binding rules see it.
#[derive(Debug, Clone)]
pub(crate) struct WaypointInfo {
    pub namespace: String,
    pub name: String,
    /// `istio.io/waypoint-for`: `service` (default), `workload`, `all` or `none`.
    pub traffic_type: String,
    pub allowed: AllowedNamespaces,
}

/// `allowedRoutes.namespaces` of the waypoint's HBONE listener.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AllowedNamespaces {
    Same,
    All,
    /// A label selector; `None` when it cannot be read (matches nothing, as an invalid
    /// selector does in istiod: `LabelSelectorAsSelector` errors are dropped and the zero
    /// selector matches nothing).
    Selector(Option<Selector>),
}

/// A Kubernetes label selector (`matchLabels` and `matchExpressions`).
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Selector {
    labels: BTreeMap<String, String>,
    expressions: Vec<(String, String, Vec<String>)>,
}

impl Selector {
    fn parse(v: &Value) -> Option<Selector> {
        let mut s = Selector::default();
        if let Some(m) = v.get("matchLabels") {
            for (k, val) in m.as_object()? {
                s.labels.insert(k.clone(), val.as_str()?.to_string());
            }
        }
        if let Some(exprs) = v.get("matchExpressions") {
            for e in exprs.as_array()? {
                let values = match e.get("values") {
                    Some(vs) => vs
                        .as_array()?
                        .iter()
                        .map(|x| x.as_str().map(str::to_string))
                        .collect::<Option<Vec<_>>>()?,
                    None => Vec::new(),
                };
                s.expressions.push((
                    e.get("key")?.as_str()?.to_string(),
                    e.get("operator")?.as_str()?.to_string(),
                    values,
                ));
            }
        }
        Some(s)
    }

    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.expressions.iter().all(|(k, op, vals)| {
                let got = labels.get(k);
                match op.as_str() {
                    "In" => got.is_some_and(|g| vals.contains(g)),
                    "NotIn" => got.is_none_or(|g| !vals.contains(g)),
                    "Exists" => got.is_some(),
                    "DoesNotExist" => got.is_none(),
                    _ => false,
                }
            })
    }
}

impl WaypointInfo {
    /// Reads the binding-relevant parts of a waypoint Gateway.
    pub fn from_gateway(
        namespace: &str,
        name: &str,
        labels: &BTreeMap<String, String>,
        spec: &GatewaySpec,
    ) -> WaypointInfo {
        WaypointInfo {
            namespace: namespace.to_string(),
            name: name.to_string(),
            traffic_type: labels
                .get(WAYPOINT_FOR)
                .cloned()
                .unwrap_or_else(|| "service".to_string()),
            allowed: allowed_from_listeners(&spec.listeners),
        }
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    fn allows(&self, namespace: &str, ns_labels: &BTreeMap<String, String>) -> bool {
        match &self.allowed {
            AllowedNamespaces::All => true,
            AllowedNamespaces::Same => self.namespace == namespace,
            AllowedNamespaces::Selector(s) => s.as_ref().is_some_and(|s| s.matches(ns_labels)),
        }
    }

    fn describe_allowed(&self) -> String {
        match &self.allowed {
            AllowedNamespaces::Same => format!("only namespace {} (from: Same)", self.namespace),
            AllowedNamespaces::All => "all namespaces".to_string(),
            AllowedNamespaces::Selector(_) => "namespaces its selector matches".to_string(),
        }
    }
}

/// The HBONE listener's `allowedRoutes.namespaces`; `Same` without one (waypoints.go:490-502).
fn allowed_from_listeners(listeners: &[Value]) -> AllowedNamespaces {
    let hbone = listeners.iter().find(|l| {
        l.get("protocol").and_then(Value::as_str) == Some("HBONE")
            && l.get("port").and_then(Value::as_u64) == Some(HBONE_LISTENER_PORT)
    });
    let Some(ns) = hbone.and_then(|l| l.pointer("/allowedRoutes/namespaces")) else {
        return AllowedNamespaces::Same;
    };
    match ns.get("from").and_then(Value::as_str).unwrap_or("Same") {
        "All" => AllowedNamespaces::All,
        "Selector" => AllowedNamespaces::Selector(
            ns.get("selector")
                .map_or(Some(Selector::default()), Selector::parse),
        ),
        _ => AllowedNamespaces::Same,
    }
}

/// Where a service's traffic goes, and why.
#[derive(Debug, Clone, PartialEq)]
pub enum Binding {
    /// Through this waypoint (`namespace/name`); the reason names the label that chose it.
    Waypoint { waypoint: String, reason: String },
    /// Not through any waypoint (ztunnel sends it to the workloads directly). `named` is the
    /// waypoint a label asked for when istiod refuses the attachment.
    Direct {
        reason: String,
        named: Option<String>,
    },
}

impl Binding {
    /// The waypoint, when there is one.
    pub fn waypoint(&self) -> Option<&str> {
        match self {
            Binding::Waypoint { waypoint, .. } => Some(waypoint),
            Binding::Direct { .. } => None,
        }
    }

    /// The waypoint a label named but istiod does not attach (missing, denied, wrong traffic).
    pub fn refused(&self) -> Option<&str> {
        match self {
            Binding::Direct { named, .. } => named.as_deref(),
            Binding::Waypoint { .. } => None,
        }
    }

    /// Why the service has (or has no) waypoint.
    pub fn reason(&self) -> &str {
        match self {
            Binding::Waypoint { reason, .. } | Binding::Direct { reason, .. } => reason,
        }
    }
}

/// The label set a binding is read from, and what to call it in messages.
pub(crate) struct Labelled<'a> {
    pub what: String,
    pub namespace: &'a str,
    pub labels: &'a BTreeMap<String, String>,
}

/// Resolves the waypoint of a service (`svc`) in a namespace with `ns_labels`.
pub(crate) fn bind_service(
    svc: &Labelled<'_>,
    ns_labels: &BTreeMap<String, String>,
    waypoints: &[WaypointInfo],
) -> Binding {
    if svc.labels.get(MANAGED_LABEL).map(String::as_str) == Some(MANAGED_BY_MESH_CONTROLLER) {
        return direct(format!("{} is a waypoint's own Service", svc.what));
    }
    if let Some(chosen) = use_waypoint(svc.labels, svc.namespace) {
        let Some((ns, name)) = chosen else {
            return direct(format!("{} opts out: {USE_WAYPOINT}: none", svc.what));
        };
        return attach(&svc.what, svc.namespace, ns_labels, &ns, &name, waypoints);
    }
    let ns_what = format!("Namespace {}", svc.namespace);
    match use_waypoint(ns_labels, svc.namespace) {
        Some(Some((ns, name))) => attach(&ns_what, svc.namespace, ns_labels, &ns, &name, waypoints),
        Some(None) => direct(format!("{ns_what} opts out: {USE_WAYPOINT}: none")),
        None => direct(format!(
            "neither {} nor {ns_what} carries {USE_WAYPOINT}: its traffic does not pass a waypoint",
            svc.what
        )),
    }
}

fn direct(reason: String) -> Binding {
    Binding::Direct {
        reason,
        named: None,
    }
}

/// `getUseWaypoint`: `None` without the label, `Some(None)` for `none`.
fn use_waypoint(
    labels: &BTreeMap<String, String>,
    default_namespace: &str,
) -> Option<Option<(String, String)>> {
    let name = labels.get(USE_WAYPOINT)?;
    if name == "none" {
        return Some(None);
    }
    let ns = labels
        .get(USE_WAYPOINT_NAMESPACE)
        .map_or(default_namespace, String::as_str);
    Some(Some((ns.to_string(), name.clone())))
}

fn attach(
    what: &str,
    svc_namespace: &str,
    ns_labels: &BTreeMap<String, String>,
    ns: &str,
    name: &str,
    waypoints: &[WaypointInfo],
) -> Binding {
    let named = Some(format!("{ns}/{name}"));
    let Some(w) = waypoints
        .iter()
        .find(|w| w.namespace == ns && w.name == name)
    else {
        return Binding::Direct {
            named,
            reason: format!(
                "{what} names waypoint {ns}/{name} ({USE_WAYPOINT}), which is not in the input (istiod: WaypointIsNotReady, no fall-back)"
            ),
        };
    };
    if !w.allows(svc_namespace, ns_labels) {
        return Binding::Direct {
            named,
            reason: format!(
                "{what} names waypoint {}, whose HBONE listener admits {} (allowedRoutes.namespaces), not {svc_namespace} (istiod: WaypointAttachmentDenied)",
                w.key(),
                w.describe_allowed()
            ),
        };
    }
    if w.traffic_type != "service" && w.traffic_type != "all" {
        return Binding::Direct {
            named,
            reason: format!(
                "{what} names waypoint {}, which takes {:?} traffic ({WAYPOINT_FOR}), not service traffic",
                w.key(),
                w.traffic_type
            ),
        };
    }
    Binding::Waypoint {
        waypoint: w.key(),
        reason: format!("{what} carries {USE_WAYPOINT}: {name}"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn wp(ns: &str, name: &str, for_: &str, listeners: Value) -> WaypointInfo {
        let spec: GatewaySpec = serde_json::from_value(json!({
            "gatewayClassName": "istio-waypoint",
            "listeners": listeners,
        }))
        .unwrap();
        WaypointInfo::from_gateway(ns, name, &labels(&[(WAYPOINT_FOR, for_)]), &spec)
    }

    fn hbone(namespaces: Value) -> Value {
        json!([{"name": "mesh", "port": 15008, "protocol": "HBONE", "allowedRoutes": {"namespaces": namespaces}}])
    }

    /// One row: service namespace and labels, namespace labels, waypoints, expected waypoint.
    macro_rules! case {
        ($name:ident, svc_ns: $sns:expr, svc: $svc:expr, ns: $ns:expr, waypoints: $wps:expr, want: $want:expr) => {
            #[test]
            fn $name() {
                let svc_labels = labels(&$svc);
                let svc = Labelled {
                    what: "Service x".into(),
                    namespace: $sns,
                    labels: &svc_labels,
                };
                let got = bind_service(&svc, &labels(&$ns), &$wps);
                assert_eq!(got.waypoint(), $want, "{}", got.reason());
            }
        };
    }

    // waypoints.go:107-111: the service's own `none` wins over the namespace's label.
    case!(service_none_opts_out, svc_ns: "a", svc: [(USE_WAYPOINT, "none")],
        ns: [(USE_WAYPOINT, "w")], waypoints: [wp("a", "w", "service", json!([]))], want: None);
    // waypoints.go:112-128: the service label wins over the namespace label.
    case!(service_label_wins, svc_ns: "a", svc: [(USE_WAYPOINT, "w2")],
        ns: [(USE_WAYPOINT, "w")],
        waypoints: [wp("a", "w", "service", json!([])), wp("a", "w2", "service", json!([]))],
        want: Some("a/w2"));
    // waypoints.go:126-127: a missing waypoint on the service is not ready; no namespace fall-back.
    case!(missing_service_waypoint_no_fallback, svc_ns: "a", svc: [(USE_WAYPOINT, "gone")],
        ns: [(USE_WAYPOINT, "w")], waypoints: [wp("a", "w", "service", json!([]))], want: None);
    // waypoints.go:130-145: the namespace's label applies when the service has none.
    case!(namespace_label_applies, svc_ns: "a", svc: [], ns: [(USE_WAYPOINT, "w")],
        waypoints: [wp("a", "w", "service", json!([]))], want: Some("a/w"));
    case!(no_label_no_waypoint, svc_ns: "a", svc: [], ns: [],
        waypoints: [wp("a", "w", "service", json!([]))], want: None);
    // waypoints.go:209-211: use-waypoint-namespace names the waypoint's namespace.
    case!(cross_namespace_needs_allowed_routes, svc_ns: "a",
        svc: [(USE_WAYPOINT, "w"), (USE_WAYPOINT_NAMESPACE, "infra")], ns: [],
        waypoints: [wp("infra", "w", "service", json!([]))], want: None);
    // waypoints.go:441-445: from: All admits every namespace.
    case!(cross_namespace_from_all, svc_ns: "a",
        svc: [(USE_WAYPOINT, "w"), (USE_WAYPOINT_NAMESPACE, "infra")], ns: [],
        waypoints: [wp("infra", "w", "service", hbone(json!({"from": "All"})))], want: Some("infra/w"));
    // waypoints.go:446-448: from: Selector matches the service's namespace labels.
    case!(cross_namespace_selector_match, svc_ns: "a",
        svc: [(USE_WAYPOINT, "w"), (USE_WAYPOINT_NAMESPACE, "infra")], ns: [("team", "x")],
        waypoints: [wp("infra", "w", "service",
            hbone(json!({"from": "Selector", "selector": {"matchLabels": {"team": "x"}}})))],
        want: Some("infra/w"));
    case!(cross_namespace_selector_miss, svc_ns: "a",
        svc: [(USE_WAYPOINT, "w"), (USE_WAYPOINT_NAMESPACE, "infra")], ns: [("team", "y")],
        waypoints: [wp("infra", "w", "service",
            hbone(json!({"from": "Selector", "selector": {"matchExpressions": [{"key": "team", "operator": "In", "values": ["x"]}]}})))],
        want: None);
    // waypoints.go:166-172: a workload-only waypoint takes no service traffic.
    case!(workload_waypoint_takes_no_services, svc_ns: "a", svc: [(USE_WAYPOINT, "w")], ns: [],
        waypoints: [wp("a", "w", "workload", json!([]))], want: None);
    case!(all_traffic_waypoint_takes_services, svc_ns: "a", svc: [(USE_WAYPOINT, "w")], ns: [],
        waypoints: [wp("a", "w", "all", json!([]))], want: Some("a/w"));
    // waypoints.go:154-157: the waypoint's own Service has no waypoint.
    case!(waypoint_service_has_none, svc_ns: "a",
        svc: [(MANAGED_LABEL, MANAGED_BY_MESH_CONTROLLER)], ns: [(USE_WAYPOINT, "w")],
        waypoints: [wp("a", "w", "service", json!([]))], want: None);
}
