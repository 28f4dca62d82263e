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
    pub number: u32,
    pub name: String,
    pub protocol: String,
    pub target_port: u32,
    /// Named target port (Service `targetPort: http`), resolved per endpoint.
    pub target_name: Option<String>,
}

/// A Service or one host of a ServiceEntry.
#[derive(Debug, Clone)]
pub(crate) struct Svc {
    pub hostname: String,
    pub namespace: String,
    pub name: String,
    pub addresses: Vec<String>,
    pub ports: Vec<SvcPort>,
    /// Endpoint selector (Service selector / ServiceEntry workloadSelector).
    pub selector: Option<BTreeMap<String, String>>,
    /// Inline ServiceEntry endpoints.
    pub inline_endpoints: Vec<(WorkloadEntrySpec, ObjRef)>,
    pub labels: BTreeMap<String, String>,
    pub origin: String,
    /// `kind/namespace/name` of the ServiceEntry, for targetRefs.
    pub se_name: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct SubsetDef {
    pub labels: BTreeMap<String, String>,
    pub lb: String,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct DrInfo {
    pub lb: String,
    pub subsets: Vec<(String, SubsetDef)>,
}

/// Compilation state shared by the translators.
pub(crate) struct Ctx<'a> {
    pub bundle: &'a Bundle,
    pub errors: Vec<Error>,
    pub notices: Vec<Notice>,
    pub services: Vec<Svc>,
    pub by_host: HashMap<String, usize>,
    pub drs: HashMap<String, DrInfo>,
    pub mesh: pb::MeshSettings,
    /// (namespace, name) of the waypoint Gateway.
    pub waypoint: Option<(String, String)>,
    /// Index into `services` → served by this waypoint.
    pub served: Vec<bool>,
}

impl<'a> Ctx<'a> {
    pub fn err(&mut self, at: &ObjRef, path: impl Into<String>, msg: impl Into<String>) {
        self.errors.push(Error {
            at: Location::Object(at.clone()),
            path: path.into(),
            message: msg.into(),
        });
    }
    pub fn info(&mut self, at: &ObjRef, path: impl Into<String>, msg: impl Into<String>) {
        self.notices.push(Notice {
            severity: Severity::Info,
            at: Location::Object(at.clone()),
            path: path.into(),
            message: msg.into(),
        });
    }
    pub fn warn(&mut self, at: &ObjRef, path: impl Into<String>, msg: impl Into<String>) {
        self.notices.push(Notice {
            severity: Severity::Warning,
            at: Location::Object(at.clone()),
            path: path.into(),
            message: msg.into(),
        });
    }
    pub fn svc(&self, host: &str) -> Option<&Svc> {
        self.by_host.get(host).map(|&i| &self.services[i])
    }
    pub fn waypoint_ns(&self) -> Option<&str> {
        self.waypoint.as_ref().map(|(ns, _)| ns.as_str())
    }
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
