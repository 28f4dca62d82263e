//! The loaded objects: typed Istio / Kubernetes documents with their location. Plain data the
//! loader produces and the resolver and translators read.

use crate::diag::{Notice, ObjRef};
use crate::model::{
    AuthorizationPolicySpec, ConfigMapDoc, DestinationRuleSpec, Doc, GatewaySpec, HttpRouteSpec,
    MeshConfigSpec, Metadata, NamespaceSpec, OptSpecDoc, RequestAuthenticationSpec,
    ServiceEntrySpec, ServiceSpec, VirtualServiceSpec, WorkloadEntrySpec,
};

/// One recognised object with its location.
#[derive(Debug, Clone)]
pub struct Object {
    /// File, document, kind, namespace/name.
    pub at: ObjRef,
    /// The typed object.
    pub kind: ObjectKind,
}

impl Object {
    /// `metadata` of the object.
    pub fn meta(&self) -> &Metadata {
        match &self.kind {
            ObjectKind::Service(d) => &d.metadata,
            ObjectKind::Namespace(d) => &d.metadata,
            ObjectKind::MeshConfig(_, d) => &d.metadata,
            ObjectKind::ServiceEntry(d) => &d.metadata,
            ObjectKind::WorkloadEntry(d) => &d.metadata,
            ObjectKind::VirtualService(d) => &d.metadata,
            ObjectKind::DestinationRule(d) => &d.metadata,
            ObjectKind::Gateway(d) => &d.metadata,
            ObjectKind::HttpRoute(d) => &d.metadata,
            ObjectKind::AuthorizationPolicy(d) => &d.metadata,
            ObjectKind::RequestAuthentication(d) => &d.metadata,
        }
    }
}

/// The kinds layover reads.
#[derive(Debug, Clone)]
#[allow(missing_docs, clippy::large_enum_variant)]
pub enum ObjectKind {
    Service(Doc<ServiceSpec>),
    Namespace(OptSpecDoc<NamespaceSpec>),
    /// ConfigMap `istio-system/istio`, key `mesh`, parsed.
    MeshConfig(MeshConfigSpec, ConfigMapDoc),
    ServiceEntry(Doc<ServiceEntrySpec>),
    WorkloadEntry(Doc<WorkloadEntrySpec>),
    VirtualService(Doc<VirtualServiceSpec>),
    DestinationRule(Doc<DestinationRuleSpec>),
    /// gateway.networking.k8s.io Gateway (any class; the compiler picks waypoints).
    Gateway(Doc<GatewaySpec>),
    HttpRoute(Doc<HttpRouteSpec>),
    AuthorizationPolicy(Doc<AuthorizationPolicySpec>),
    RequestAuthentication(Doc<RequestAuthenticationSpec>),
}

/// Everything loaded: objects in input order, and loader notices.
#[derive(Debug, Clone, Default)]
pub struct Bundle {
    /// Recognised objects in file order, then document order.
    pub objects: Vec<Object>,
    /// Skipped documents and other non-fatal findings.
    pub notices: Vec<Notice>,
}
