//! Compilation of a loaded [`Bundle`] into a waypoint [`pb::Policy`]: the orchestrator.
//!
//! Builds the shared [`Ctx`] (mesh settings, services, the waypoint and what it serves,
//! DestinationRule subsets, clusters), then runs the translators (AuthorizationPolicy,
//! HTTPRoute, VirtualService) and assembles their output into the policy.

mod binding;
mod clusters;
mod mesh;
mod services;
mod traffic;
mod waypoint;

pub use binding::Binding;

use crate::diag::{Error, Errors, Location, Notice, Severity};
use crate::object::Bundle;
use crate::resolve::{istio_default_retry, Ctx, Svc};
use layover_envoyfilter::{DefaultRouteRetry, IstioVersion};
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
    /// The Istio release whose routing defaults apply (`--istio-version`; default the pinned
    /// release): the mesh default retry's 503, the default route's retry policy, and whether a
    /// waypoint merges several VirtualServices for one host
    /// ([`layover_envoyfilter::IstioVersion`] cites each rule).
    pub istio: IstioVersion,
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
    let (deduped, notices) = dedup_objects(bundle);
    let mut ctx = new_ctx(&deduped, notices, opts.istio);
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

fn new_ctx(bundle: &Bundle, mut notices: Vec<Notice>, istio: IstioVersion) -> Ctx<'_> {
    let mut all = bundle.notices.clone();
    all.append(&mut notices);
    Ctx {
        bundle,
        errors: Vec::new(),
        notices: all,
        services: Vec::new(),
        by_host: HashMap::new(),
        drs: HashMap::new(),
        mesh: pb::MeshSettings {
            path_normalization: pb::PathNormalization::Base as i32,
            trust_domain: "cluster.local".into(),
            root_namespace: "istio-system".into(),
            default_retry: Some(istio_default_retry(istio)),
        },
        waypoint: None,
        served: Vec::new(),
        istio,
    }
}

/// One service and the waypoint its traffic passes.
#[derive(Debug, Clone)]
pub struct ServiceBinding {
    /// FQDN.
    pub hostname: String,
    /// Namespace of the Service / ServiceEntry.
    pub namespace: String,
    /// Service name, or the ServiceEntry host.
    pub name: String,
    /// VIPs.
    pub addresses: Vec<String>,
    /// Its waypoint, or why it has none.
    pub binding: Binding,
}

/// The waypoints an input declares and, for every service, the waypoint istiod would put in
/// front of it.
#[derive(Debug, Clone, Default)]
pub struct WaypointBindings {
    /// `namespace/name` of each Gateway of class `istio-waypoint`, in input order.
    pub waypoints: Vec<String>,
    /// Every Service and ServiceEntry host, in input order.
    pub services: Vec<ServiceBinding>,
}

/// Resolves which waypoint serves each service, without compiling any of them: `layover eval`
/// uses it to pick the waypoint a request reaches. Objects the compile would reject are read
/// as far as they can be; compile errors are reported by the compile itself.
pub fn waypoint_bindings(bundle: &Bundle) -> WaypointBindings {
    let (deduped, notices) = dedup_objects(bundle);
    let mut ctx = new_ctx(&deduped, notices, IstioVersion::PINNED);
    mesh::mesh_settings(&mut ctx);
    services::collect_services(&mut ctx);
    let waypoints = waypoint::waypoint_infos(&ctx);
    let bindings = waypoint::bindings(&ctx, &waypoints);
    WaypointBindings {
        waypoints: waypoints.iter().map(|w| w.key()).collect(),
        services: ctx
            .services
            .iter()
            .zip(bindings)
            .map(|(s, binding)| ServiceBinding {
                hostname: s.hostname.clone(),
                namespace: s.namespace.clone(),
                name: s.name.clone(),
                addresses: s.addresses.clone(),
                binding,
            })
            .collect(),
    }
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
        let (route_source, mut rts) = if let Some(r) = routes.remove(&svc.hostname) {
            (pb::RouteSource::HttpRoute, r)
        } else if let Some(r) = vs_routes.remove(&svc.hostname) {
            (pb::RouteSource::VirtualService, r)
        } else {
            (pb::RouteSource::Default, Vec::new())
        };
        if route_source != pb::RouteSource::Default {
            default_routes_for_unrouted_ports(ctx, svc, &mut rts);
        }
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
                    default_route_retry: default_route_retry(ctx.istio, &p.protocol),
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

/// The retry policy of a served service's default route on a port of `protocol`, when the
/// release gives that route its own (`None`: the mesh default applies).
fn default_route_retry(istio: IstioVersion, protocol: &str) -> Option<pb::RetryPolicy> {
    match istio.waypoint_default_route_retry() {
        DefaultRouteRetry::MeshDefault => None,
        DefaultRouteRetry::None => Some(pb::RetryPolicy::default()),
        DefaultRouteRetry::ResetBeforeRequest { grpc } => {
            // `protocol.IsGRPC()`: GRPC and GRPC-Web (pkg/config/protocol/instance.go).
            let is_grpc = matches!(protocol.to_ascii_uppercase().as_str(), "GRPC" | "GRPC-WEB");
            if is_grpc && !grpc {
                return Some(pb::RetryPolicy::default());
            }
            Some(pb::RetryPolicy {
                attempts: 2,
                retry_on: vec!["reset-before-request".to_string()],
                ..pb::RetryPolicy::default()
            })
        }
    }
}

/// istiod builds a waypoint's routes per service port, and a port none of the service's routes
/// applies to (every match names another port, e.g. an HTTPRoute parentRef `port`,
/// conversion.go:359-373 @ 1.30.3) gets the service's default inbound route
/// (`buildWaypointInboundHTTPRouteConfig`, listener_waypoint.go:1143-1145 @ 1.30.3): appended
/// here, pinned to that port.
fn default_routes_for_unrouted_ports(ctx: &Ctx, svc: &Svc, rts: &mut Vec<pb::HttpRoute>) {
    for p in &svc.ports {
        let applies = |r: &pb::HttpRoute| {
            r.matches.is_empty() || r.matches.iter().any(|m| m.port == 0 || m.port == p.number)
        };
        if rts.iter().any(applies) {
            continue;
        }
        rts.push(pb::HttpRoute {
            matches: vec![pb::RouteMatch {
                port: p.number,
                ..Default::default()
            }],
            action: Some(pb::http_route::Action::Forward(pb::Forward {
                destinations: vec![pb::Destination {
                    cluster: ctx.cluster_name(p.number, "", &svc.hostname),
                    host: svc.hostname.clone(),
                    port: p.number,
                    weight: 100,
                    ..Default::default()
                }],
            })),
            // The default route's own retry policy where the release has one.
            retries: default_route_retry(ctx.istio, &p.protocol),
            ..Default::default()
        });
    }
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
