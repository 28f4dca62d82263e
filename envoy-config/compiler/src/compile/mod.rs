//! Compilation of a loaded [`Bundle`] into a waypoint [`pb::Policy`]: the orchestrator.
//!
//! Builds the shared [`Ctx`] (mesh settings, services, the waypoint and what it serves,
//! DestinationRule subsets, clusters), then runs the translators (AuthorizationPolicy,
//! HTTPRoute, VirtualService) and assembles their output into the policy.

mod clusters;
mod mesh;
mod services;
mod waypoint;

use crate::diag::{Error, Errors, Location, Notice, Severity};
use crate::object::Bundle;
use crate::resolve::{istio_default_retry, Ctx};
use layover_proto::v1 as pb;
use std::collections::{BTreeMap, HashMap};

/// Label a Service / ServiceEntry / Namespace uses to name its waypoint.
pub const USE_WAYPOINT: &str = "istio.io/use-waypoint";
/// Label naming the namespace of the waypoint when it is not the object's own.
pub const USE_WAYPOINT_NAMESPACE: &str = "istio.io/use-waypoint-namespace";
/// Gateway label saying which traffic the waypoint takes (`service` by default).
pub const WAYPOINT_FOR: &str = "istio.io/waypoint-for";

/// Compiler knobs.
#[derive(Debug, Clone, Default)]
pub struct CompileOptions {
    /// Waypoint Gateway to compile for, `namespace/name` or `name`; required only when the
    /// input declares several waypoints. May name a Gateway of any class (drop-in waypoint).
    pub waypoint: Option<String>,
}

/// The compiler's output.
#[derive(Debug, Clone, Default)]
pub struct Compiled {
    /// The policy the filters evaluate.
    pub policy: pb::Policy,
    /// Loader and compiler notices, in the order they were found.
    pub notices: Vec<Notice>,
    /// Endpoints behind each cluster, for the Envoy config generator.
    pub registry: Registry,
}

/// Endpoints known from WorkloadEntries and ServiceEntry endpoints.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    /// Cluster name (as in `Policy.clusters`) → endpoints, in input order.
    pub clusters: BTreeMap<String, Vec<Endpoint>>,
}

/// One backend address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// IP address or DNS name.
    pub address: String,
    /// Port to connect to (the target port).
    pub port: u32,
    /// Workload labels.
    pub labels: BTreeMap<String, String>,
    /// Service account of the workload (empty when unknown).
    pub service_account: String,
    /// Namespace of the workload.
    pub namespace: String,
    /// `Kind namespace/name` of the object that declared the endpoint.
    pub origin: String,
}

/// Compiles with default options.
pub fn compile(bundle: &Bundle) -> Result<Compiled, Errors> {
    compile_with(bundle, &CompileOptions::default())
}

/// Resolves everything in `bundle` for one waypoint. All errors are collected; on error
/// nothing is returned.
pub fn compile_with(bundle: &Bundle, opts: &CompileOptions) -> Result<Compiled, Errors> {
    let (deduped, mut notices) = dedup_objects(bundle);
    let bundle = &deduped;
    let mut ctx = Ctx {
        bundle,
        errors: Vec::new(),
        notices: {
            let mut n = bundle.notices.clone();
            n.append(&mut notices);
            n
        },
        services: Vec::new(),
        by_host: HashMap::new(),
        drs: HashMap::new(),
        mesh: pb::MeshSettings {
            path_normalization: pb::PathNormalization::Base as i32,
            trust_domain: "cluster.local".into(),
            root_namespace: "istio-system".into(),
            default_retry: Some(istio_default_retry()),
        },
        waypoint: None,
        served: Vec::new(),
    };
    mesh::mesh_settings(&mut ctx);
    services::collect_services(&mut ctx);
    waypoint::pick_waypoint(&mut ctx, opts);
    waypoint::compute_served(&mut ctx);
    clusters::collect_destination_rules(&mut ctx);
    let (clusters, registry) = clusters::build_clusters(&mut ctx);
    let (authz, bindings) = crate::authz::compile_policies(&mut ctx);
    let jwt_rules = crate::jwt::compile_request_authentications(&mut ctx);
    let routes = crate::gwapi::compile_http_routes(&mut ctx);
    let vs_routes = crate::vs::compile_virtual_services(&mut ctx, &routes);
    let services = service_table(&ctx, routes, vs_routes, &bindings);

    // A VirtualService applied to several services (wildcard hosts, per-port copies) reports
    // the same finding more than once: keep the first of each.
    dedup(&mut ctx.errors, |e| e.to_string());
    dedup(&mut ctx.notices, |n| n.to_string());
    if !ctx.errors.is_empty() {
        return Err(Errors(ctx.errors));
    }
    let policy = pb::Policy {
        schema_version: layover_proto::SCHEMA_VERSION,
        mesh: Some(ctx.mesh.clone()),
        services,
        authorization_policies: authz,
        jwt_rules,
        clusters,
        waypoint: ctx
            .waypoint
            .as_ref()
            .map(|(ns, n)| format!("{ns}/{n}"))
            .unwrap_or_default(),
    };
    // Safety net: the filters compile the policy again when Envoy loads it and refuse it as a
    // whole on any error. Whatever slipped through the checks above is reported here, so
    // `layover compile` never writes a policy the filters would refuse.
    if let Err(e) = layover_core::CompiledPolicy::compile(&policy) {
        return Err(Errors(vec![Error {
            at: Location::Input,
            path: String::new(),
            message: format!("the compiled policy is invalid for the filters: {e}"),
        }]));
    }
    Ok(Compiled {
        policy,
        notices: ctx.notices,
        registry,
    })
}

/// The served services with their route tables: HTTPRoutes take precedence over
/// VirtualServices, and a service with neither keeps its default route.
fn service_table(
    ctx: &Ctx,
    mut routes: HashMap<String, Vec<pb::HttpRoute>>,
    mut vs_routes: HashMap<String, Vec<pb::HttpRoute>>,
    bindings: &HashMap<String, Vec<u32>>,
) -> Vec<pb::Service> {
    let mut services = Vec::new();
    for (i, svc) in ctx.services.iter().enumerate() {
        if !ctx.served[i] {
            continue;
        }
        let (route_source, rts) = if let Some(r) = routes.remove(&svc.hostname) {
            (pb::RouteSource::HttpRoute, r)
        } else if let Some(r) = vs_routes.remove(&svc.hostname) {
            (pb::RouteSource::VirtualService, r)
        } else {
            (pb::RouteSource::Default, Vec::new())
        };
        services.push(pb::Service {
            hostname: svc.hostname.clone(),
            namespace: svc.namespace.clone(),
            name: svc.name.clone(),
            addresses: svc.addresses.clone(),
            ports: svc
                .ports
                .iter()
                .map(|p| pb::ServicePort {
                    number: p.number,
                    name: p.name.clone(),
                    protocol: p.protocol.clone(),
                    target_port: p.target_port,
                    cluster: ctx.cluster_name(p.number, "", &svc.hostname),
                })
                .collect(),
            routes: rts,
            route_source: route_source as i32,
            authorization_policies: bindings.get(&svc.hostname).cloned().unwrap_or_default(),
            origin: svc.origin.clone(),
        });
    }
    services.sort_by(|a, b| a.hostname.cmp(&b.hostname));
    services
}

/// The same object (kind, namespace, name) given twice: like `kubectl apply` of both files,
/// the later one replaces the earlier one.
fn dedup_objects(bundle: &Bundle) -> (Bundle, Vec<Notice>) {
    let mut last: HashMap<(String, String, String), usize> = HashMap::new();
    for (i, o) in bundle.objects.iter().enumerate() {
        last.insert(
            (o.at.kind.clone(), o.at.namespace.clone(), o.at.name.clone()),
            i,
        );
    }
    let mut notices = Vec::new();
    let mut objects = Vec::new();
    for (i, o) in bundle.objects.iter().enumerate() {
        let key = (o.at.kind.clone(), o.at.namespace.clone(), o.at.name.clone());
        match last.get(&key) {
            Some(&j) if j != i => {
                let later = &bundle.objects[j].at;
                notices.push(Notice {
                    severity: Severity::Warning,
                    at: Location::Object(o.at.clone()),
                    path: String::new(),
                    message: format!(
                        "replaced by the later definition in {}: document {} (as kubectl apply would)",
                        later.file, later.doc
                    ),
                });
            }
            _ => objects.push(o.clone()),
        }
    }
    (
        Bundle {
            objects,
            notices: bundle.notices.clone(),
        },
        notices,
    )
}

fn dedup<T>(v: &mut Vec<T>, key: impl Fn(&T) -> String) {
    let mut seen = std::collections::HashSet::new();
    v.retain(|x| seen.insert(key(x)));
}
