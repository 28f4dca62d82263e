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
    /// Load balancer (the rule's when the subset sets none).
    pub lb: String,
}

/// What the DestinationRules of one host define.
#[derive(Debug, Clone, Default)]
pub(crate) struct DrInfo {
    /// Load balancer of the host.
    pub lb: String,
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
    /// Whether a DestinationRule defines `subset` for `host`.
    pub fn has_subset(&self, host: &str, subset: &str) -> bool {
        self.drs
            .get(host)
            .is_some_and(|d| d.subsets.iter().any(|(n, _)| n == subset))
    }
}

/// Cluster name the way istiod builds it (`model.BuildSubsetKey`, outbound direction).
pub fn cluster_name(port: u32, subset: &str, host: &str) -> String {
    format!("outbound|{port}|{subset}|{host}")
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
