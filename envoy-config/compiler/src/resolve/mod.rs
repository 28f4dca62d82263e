//! Shared resolution state and rules the translators (VirtualService, HTTPRoute,
//! AuthorizationPolicy) build on: the compilation context ([`Ctx`]), services as the compiler
//! sees them ([`Svc`]), DestinationRule subsets, cluster naming, creation order, destination
//! resolution ([`dest`]) and retry conversion ([`retry`]).
//!
//! Depends only on plain data (the model, loaded objects, diagnostics) and utilities, so the
//! orchestrator (`compile`) and every translator can use it without importing each other.

mod dest;
mod retry;

pub(crate) use dest::{port_ambiguous, resolve_dest};
pub(crate) use retry::{convert_retry, istio_default_retry};

use crate::diag::{Error, Location, Notice, ObjRef, Severity};
use crate::model::WorkloadEntrySpec;
use crate::object::{Bundle, Object};
use layover_proto::v1 as pb;
use std::collections::{BTreeMap, HashMap};

/// A service port as the compiler sees it.
#[derive(Debug, Clone)]
pub(crate) struct SvcPort {
    /// Service port number.
    pub number: u32,
    /// Port name.
    pub name: String,
    /// Protocol (Istio protocol selection).
    pub protocol: String,
    /// Port on the endpoints.
    pub target_port: u32,
    /// Named target port (Service `targetPort: http`), resolved per endpoint.
    pub target_name: Option<String>,
}

/// A Service or one host of a ServiceEntry.
#[derive(Debug, Clone)]
pub(crate) struct Svc {
    /// FQDN.
    pub hostname: String,
    /// Namespace of the Service / ServiceEntry.
    pub namespace: String,
    /// Service name, or the ServiceEntry host.
    pub name: String,
    /// VIPs.
    pub addresses: Vec<String>,
    /// Ports.
    pub ports: Vec<SvcPort>,
    /// Endpoint selector (Service selector / ServiceEntry workloadSelector).
    pub selector: Option<BTreeMap<String, String>>,
    /// Inline ServiceEntry endpoints.
    pub inline_endpoints: Vec<(WorkloadEntrySpec, ObjRef)>,
    /// Labels (`istio.io/use-waypoint`).
    pub labels: BTreeMap<String, String>,
    /// `Kind namespace/name` of the defining object.
    pub origin: String,
    /// `kind/namespace/name` of the ServiceEntry, for targetRefs.
    pub se_name: Option<String>,
}

/// A DestinationRule subset: endpoint labels and load balancer.
#[derive(Debug, Clone)]
pub(crate) struct SubsetDef {
    /// Labels the subset's endpoints carry.
    pub labels: BTreeMap<String, String>,
    /// The subset's own traffic policy (merged with the rule's per port when clusters are
    /// built).
    pub policy: Option<crate::model::TrafficPolicy>,
}

/// What the DestinationRules of one host define.
#[derive(Debug, Clone, Default)]
pub(crate) struct DrInfo {
    /// Traffic policy of the host (the oldest rule's), and where it came from.
    pub policy: Option<(crate::model::TrafficPolicy, ObjRef)>,
    /// Subsets by name, in definition order.
    pub subsets: Vec<(String, SubsetDef)>,
}

/// Compilation state shared by the translators.
pub(crate) struct Ctx<'a> {
    /// The (deduplicated) input.
    pub bundle: &'a Bundle,
    /// Errors found so far.
    pub errors: Vec<Error>,
    /// Notices found so far.
    pub notices: Vec<Notice>,
    /// Every service in the input.
    pub services: Vec<Svc>,
    /// FQDN → index into `services`.
    pub by_host: HashMap<String, usize>,
    /// FQDN → its DestinationRules.
    pub drs: HashMap<String, DrInfo>,
    /// Mesh settings (MeshConfig or defaults).
    pub mesh: pb::MeshSettings,
    /// (namespace, name) of the waypoint Gateway.
    pub waypoint: Option<(String, String)>,
    /// Index into `services` → served by this waypoint.
    pub served: Vec<bool>,
    /// The Istio release whose version-dependent rules apply.
    pub istio: layover_envoyfilter::IstioVersion,
}

impl<'a> Ctx<'a> {
    /// Records an error at `at`/`path`.
    pub fn err(&mut self, at: &ObjRef, path: impl Into<String>, msg: impl Into<String>) {
        self.errors.push(Error {
            at: Location::Object(at.clone()),
            path: path.into(),
            message: msg.into(),
        });
    }
    /// Records an informational notice.
    pub fn info(&mut self, at: &ObjRef, path: impl Into<String>, msg: impl Into<String>) {
        self.notices.push(Notice {
            severity: Severity::Info,
            at: Location::Object(at.clone()),
            path: path.into(),
            message: msg.into(),
        });
    }
    /// Records a warning.
    pub fn warn(&mut self, at: &ObjRef, path: impl Into<String>, msg: impl Into<String>) {
        self.notices.push(Notice {
            severity: Severity::Warning,
            at: Location::Object(at.clone()),
            path: path.into(),
            message: msg.into(),
        });
    }
    /// The service with FQDN `host`.
    pub fn svc(&self, host: &str) -> Option<&Svc> {
        self.by_host.get(host).map(|&i| &self.services[i])
    }
    /// Namespace of the waypoint, when one was chosen.
    pub fn waypoint_ns(&self) -> Option<&str> {
        self.waypoint.as_ref().map(|(ns, _)| ns.as_str())
    }
    /// The cluster a destination `host:port` / `subset` names, as istiod's waypoint names it:
    /// `inbound-vip|…` when this waypoint serves `host`, `outbound|…` otherwise
    /// (`getWaypointDestinationCluster`, `listener_waypoint.go:1259-1294 @ 1.30.3`).
    pub fn cluster_name(&self, port: u32, subset: &str, host: &str) -> String {
        let served = self
            .by_host
            .get(host)
            .is_some_and(|&i| self.served.get(i).copied().unwrap_or(false));
        if served {
            inbound_vip_cluster_name(port, subset, host)
        } else {
            outbound_cluster_name(port, subset, host)
        }
    }

    /// Whether a DestinationRule defines `subset` for `host`.
    pub fn has_subset(&self, host: &str, subset: &str) -> bool {
        self.drs
            .get(host)
            .is_some_and(|d| d.subsets.iter().any(|(n, _)| n == subset))
    }
}

/// Cluster name the way istiod builds it for a service the waypoint does not serve
/// (`model.BuildSubsetKey`, outbound direction): `outbound|<port>|<subset>|<host>`.
pub fn outbound_cluster_name(port: u32, subset: &str, host: &str) -> String {
    format!("outbound|{port}|{subset}|{host}")
}

/// Cluster name the way istiod's waypoint builds it for a service it serves
/// (`model.BuildSubsetKey` with `TrafficDirectionInboundVIP` and `portToSubset`:
/// `pilot/pkg/networking/core/listener_waypoint.go:1259-1319 @ 1.30.3`):
/// `inbound-vip|<port>|http[/<subset>]|<host>`. Every port the compiler keeps is HTTP (istiod
/// uses `tcp` for TCP ports).
pub fn inbound_vip_cluster_name(port: u32, subset: &str, host: &str) -> String {
    if subset.is_empty() {
        format!("inbound-vip|{port}|http|{host}")
    } else {
        format!("inbound-vip|{port}|http/{subset}|{host}")
    }
}

/// Orders objects as istiod's `sortConfigByCreationTime`: creation time, then name, then
/// namespace. Objects without a timestamp (plain YAML files) compare equal on time.
pub(crate) fn sort_by_creation(objs: &mut [&Object]) {
    objs.sort_by(|a, b| {
        let ta = a.meta().creation_timestamp.clone().unwrap_or_default();
        let tb = b.meta().creation_timestamp.clone().unwrap_or_default();
        ta.cmp(&tb)
            .then_with(|| a.at.name.cmp(&b.at.name))
            .then_with(|| a.at.namespace.cmp(&b.at.namespace))
    });
}
