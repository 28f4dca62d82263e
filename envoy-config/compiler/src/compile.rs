//! Resolution of a loaded [`Bundle`] into a waypoint [`Policy`].

use crate::load::{Bundle, Object, ObjectKind};
use crate::model::*;
use crate::util::{fqdn, host_matches};
use crate::{Error, Errors, Location, Notice, ObjRef, Severity};
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

/// Istio's built-in retry policy for routes without `retries`
/// (istiod `pilot/pkg/networking/core/route/retry/retry.go`, `defaultPolicy`).
pub fn istio_default_retry() -> pb::RetryPolicy {
    pb::RetryPolicy {
        attempts: 2,
        per_try_timeout_ms: 0,
        retry_on: [
            "connect-failure",
            "refused-stream",
            "unavailable",
            "cancelled",
            "retriable-status-codes",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        retriable_status_codes: vec![503],
        retry_host_predicates: vec!["envoy.retry_host_predicates.previous_hosts".into()],
        host_selection_retry_max_attempts: 5,
        retry_remote_localities: false,
    }
}

/// Istio's `retry.ConvertPolicy` for an explicit `HTTPRetry`: attempts ≤ 0 disables retries;
/// otherwise the built-in default with the given fields replaced. Bare status codes in
/// `retryOn` become retriable status codes (and add `retriable-status-codes`).
pub(crate) fn convert_retry(
    ctx: &mut Ctx,
    at: &ObjRef,
    path: &str,
    r: &VsRetries,
) -> Option<pb::RetryPolicy> {
    if r.attempts < 0 {
        ctx.err(
            at,
            format!("{path}.attempts"),
            format!("attempts {} < 0", r.attempts),
        );
        return None;
    }
    if r.attempts == 0 {
        // istio validation validateHTTPRetry: settings next to attempts 0 are an error.
        if r.per_try_timeout.is_some()
            || r.retry_on.is_some()
            || r.retry_remote_localities.is_some()
        {
            ctx.err(
                at,
                path,
                "http retry policy configured when attempts are set to 0 (disabled)",
            );
        }
        return Some(pb::RetryPolicy::default());
    }
    let mut out = istio_default_retry();
    out.attempts = r.attempts as u32;
    if let Some(on) = r.retry_on.as_deref().filter(|s| !s.trim().is_empty()) {
        out.retry_on.clear();
        out.retriable_status_codes.clear();
        // Like istio's validateHTTPRetry, entries are not trimmed: "503, 504" is invalid.
        for part in on.split(',') {
            if let Ok(code) = part.parse::<u32>() {
                if !(100..=599).contains(&code) {
                    ctx.err(
                        at,
                        format!("{path}.retryOn"),
                        format!("{code} is not an HTTP status code"),
                    );
                }
                out.retriable_status_codes.push(code);
            } else {
                const KNOWN: &[&str] = &[
                    "5xx",
                    "gateway-error",
                    "reset",
                    "reset-before-request",
                    "connect-failure",
                    "envoy-ratelimited",
                    "retriable-4xx",
                    "refused-stream",
                    "retriable-status-codes",
                    "retriable-headers",
                    "http3-post-connect-failure",
                    "cancelled",
                    "deadline-exceeded",
                    "internal",
                    "resource-exhausted",
                    "unavailable",
                ];
                if !KNOWN.contains(&part) {
                    ctx.err(
                        at,
                        format!("{path}.retryOn"),
                        format!("{part:?} is not a valid retryOn policy"),
                    );
                }
                out.retry_on.push(part.to_string());
            }
        }
        if !out.retriable_status_codes.is_empty()
            && !out.retry_on.iter().any(|s| s == "retriable-status-codes")
        {
            out.retry_on.push("retriable-status-codes".into());
        }
    }
    if let Some(t) = &r.per_try_timeout {
        match crate::util::parse_duration_ms(t) {
            Ok(ms) => out.per_try_timeout_ms = ms,
            Err(e) => ctx.err(at, format!("{path}.perTryTimeout"), e),
        }
    }
    if r.retry_remote_localities == Some(true) {
        out.retry_remote_localities = true;
    }
    if r.retry_ignore_previous_hosts == Some(false) {
        out.retry_host_predicates.clear();
        out.host_selection_retry_max_attempts = 0;
    }
    if r.backoff.is_some() {
        ctx.info(
            at,
            format!("{path}.backoff"),
            "retry backoff is not represented in the policy; Envoy's default backoff applies",
        );
    }
    Some(out)
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
    mesh_settings(&mut ctx);
    collect_services(&mut ctx);
    pick_waypoint(&mut ctx, opts);
    compute_served(&mut ctx);
    collect_destination_rules(&mut ctx);
    let (clusters, registry) = build_clusters(&mut ctx);
    let (authz, bindings) = crate::authz::compile_policies(&mut ctx);
    let mut routes = crate::gwapi::compile_http_routes(&mut ctx);
    let mut vs_routes = crate::vs::compile_virtual_services(&mut ctx, &routes);

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
                    cluster: cluster_name(p.number, "", &svc.hostname),
                })
                .collect(),
            routes: rts,
            route_source: route_source as i32,
            authorization_policies: bindings.get(&svc.hostname).cloned().unwrap_or_default(),
            origin: svc.origin.clone(),
        });
    }
    services.sort_by(|a, b| a.hostname.cmp(&b.hostname));

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

fn mesh_settings(ctx: &mut Ctx) {
    let bundle = ctx.bundle;
    for o in &bundle.objects {
        let ObjectKind::MeshConfig(m, _) = &o.kind else {
            continue;
        };
        if let Some(td) = &m.trust_domain {
            ctx.mesh.trust_domain = td.clone();
        }
        if let Some(rn) = &m.root_namespace {
            ctx.mesh.root_namespace = rn.clone();
        }
        if let Some(pn) = m
            .path_normalization
            .as_ref()
            .and_then(|p| p.normalization.as_deref())
        {
            let v = match pn {
                "DEFAULT" | "BASE" => Some(pb::PathNormalization::Base),
                "NONE" => Some(pb::PathNormalization::None),
                "MERGE_SLASHES" => Some(pb::PathNormalization::MergeSlashes),
                "DECODE_AND_MERGE_SLASHES" => Some(pb::PathNormalization::DecodeAndMergeSlashes),
                _ => None,
            };
            match v {
                Some(v) => ctx.mesh.path_normalization = v as i32,
                None => ctx.err(
                    &o.at,
                    "data.mesh.pathNormalization.normalization",
                    format!("unknown normalization {pn:?} (DEFAULT, NONE, BASE, MERGE_SLASHES, DECODE_AND_MERGE_SLASHES)"),
                ),
            }
        }
        if let Some(r) = &m.default_http_retry_policy {
            // MeshConfig.defaultHttpRetryPolicy goes through the same ConvertPolicy as a
            // route's retries (istiod route.go: `policy = mesh.DefaultHttpRetryPolicy`).
            let at = o.at.clone();
            ctx.mesh.default_retry = convert_retry(ctx, &at, "data.mesh.defaultHttpRetryPolicy", r);
        }
    }
}

/// Istio protocol selection from the port name prefix / appProtocol (`protocol.Parse`).
fn port_protocol(name: &str, app_protocol: Option<&str>, k8s_protocol: Option<&str>) -> String {
    if k8s_protocol.is_some_and(|p| p.eq_ignore_ascii_case("UDP")) {
        return "UDP".into();
    }
    let known = |p: &str| -> Option<String> {
        let p = p.to_ascii_lowercase();
        let r = match p.as_str() {
            "http" => "HTTP",
            "http2" | "h2c" | "kubernetes.io/h2c" => "HTTP2",
            "grpc" | "grpc-web" => "GRPC",
            "https" => "HTTPS",
            "tls" => "TLS",
            "tcp" => "TCP",
            "mongo" => "Mongo",
            "redis" => "Redis",
            "mysql" => "MySQL",
            "kubernetes.io/ws" | "kubernetes.io/wss" => "HTTP",
            _ => return None,
        };
        Some(r.to_string())
    };
    if let Some(p) = app_protocol.and_then(known) {
        return p;
    }
    let prefix = name.split('-').next().unwrap_or("");
    known(prefix).unwrap_or_else(|| "UNSUPPORTED".into())
}

fn collect_services(ctx: &mut Ctx) {
    let bundle = ctx.bundle;
    for o in &bundle.objects {
        match &o.kind {
            ObjectKind::Service(d) => {
                let ns = o.at.namespace.clone();
                let hostname = format!("{}.{}.svc.cluster.local", d.metadata.name, ns);
                let mut addresses: Vec<String> = if d.spec.cluster_ips.is_empty() {
                    d.spec.cluster_ip.iter().cloned().collect()
                } else {
                    d.spec.cluster_ips.clone()
                };
                addresses.retain(|a| !a.is_empty() && a != "None");
                let field = if d.spec.cluster_ips.is_empty() {
                    "spec.clusterIP"
                } else {
                    "spec.clusterIPs"
                };
                for a in &addresses {
                    if a.parse::<std::net::IpAddr>().is_err() {
                        // Kubernetes API validation: clusterIP is an IP address or "None".
                        ctx.err(&o.at, field, format!("{a:?} is not an IP address"));
                    }
                }
                let mut ports = Vec::new();
                for (i, p) in d.spec.ports.iter().enumerate() {
                    let name = p.name.clone().unwrap_or_default();
                    let (target_port, target_name) = match &p.target_port {
                        None => (p.port, None),
                        Some(serde_json::Value::Number(n)) => {
                            (n.as_u64().unwrap_or(p.port as u64) as u32, None)
                        }
                        Some(serde_json::Value::String(s)) => match s.parse::<u32>() {
                            Ok(n) => (n, None),
                            Err(_) => (p.port, Some(s.clone())),
                        },
                        Some(_) => {
                            ctx.err(
                                &o.at,
                                format!("spec.ports[{i}].targetPort"),
                                "expected a port number or name",
                            );
                            (p.port, None)
                        }
                    };
                    ports.push(SvcPort {
                        number: p.port,
                        protocol: port_protocol(
                            &name,
                            p.app_protocol.as_deref(),
                            p.protocol.as_deref(),
                        ),
                        name,
                        target_port,
                        target_name,
                    });
                }
                add_service(
                    ctx,
                    o,
                    Svc {
                        hostname,
                        namespace: ns,
                        name: d.metadata.name.clone(),
                        addresses,
                        ports,
                        selector: d.spec.selector.clone().filter(|s| !s.is_empty()),
                        inline_endpoints: Vec::new(),
                        labels: d.metadata.labels.clone(),
                        origin: o.at.object(),
                        se_name: None,
                    },
                );
            }
            ObjectKind::ServiceEntry(d) => {
                let ns = o.at.namespace.clone();
                if d.spec.hosts.is_empty() {
                    ctx.err(
                        &o.at,
                        "spec.hosts",
                        "a ServiceEntry needs at least one host",
                    );
                }
                let ports: Vec<SvcPort> = d
                    .spec
                    .ports
                    .iter()
                    .map(|p| {
                        let name = p.name.clone().unwrap_or_default();
                        SvcPort {
                            number: p.number,
                            protocol: p
                                .protocol
                                .clone()
                                .map(|s| s.to_ascii_uppercase())
                                .unwrap_or_else(|| port_protocol(&name, None, None)),
                            name,
                            target_port: p.target_port.unwrap_or(p.number),
                            target_name: None,
                        }
                    })
                    .collect();
                for (hi, h) in d.spec.hosts.iter().enumerate() {
                    if h.starts_with('*') {
                        ctx.info(
                            &o.at,
                            format!("spec.hosts[{hi}]"),
                            format!("wildcard host {h:?} cannot be served by a waypoint (no VIP); skipped"),
                        );
                        continue;
                    }
                    add_service(
                        ctx,
                        o,
                        Svc {
                            hostname: fqdn(h, &ns),
                            namespace: ns.clone(),
                            name: h.clone(),
                            addresses: d.spec.addresses.clone(),
                            ports: ports.clone(),
                            selector: d.spec.workload_selector.as_ref().map(|w| w.labels.clone()),
                            inline_endpoints: d
                                .spec
                                .endpoints
                                .iter()
                                .map(|e| (e.clone(), o.at.clone()))
                                .collect(),
                            labels: d.metadata.labels.clone(),
                            origin: o.at.object(),
                            se_name: Some(format!("{ns}/{}", d.metadata.name)),
                        },
                    );
                }
            }
            _ => {}
        }
    }
}

fn add_service(ctx: &mut Ctx, o: &Object, svc: Svc) {
    if let Some(&i) = ctx.by_host.get(&svc.hostname) {
        let first = ctx.services[i].origin.clone();
        ctx.warn(
            &o.at,
            "",
            format!(
                "host {} is already defined by {first}; this definition is ignored (first one wins)",
                svc.hostname
            ),
        );
        return;
    }
    ctx.by_host.insert(svc.hostname.clone(), ctx.services.len());
    ctx.services.push(svc);
}

fn pick_waypoint(ctx: &mut Ctx, opts: &CompileOptions) {
    let bundle = ctx.bundle;
    let mut candidates: Vec<&Object> = Vec::new();
    for o in &bundle.objects {
        let ObjectKind::Gateway(g) = &o.kind else {
            continue;
        };
        let wanted = opts
            .waypoint
            .as_deref()
            .is_some_and(|w| w == format!("{}/{}", o.at.namespace, o.at.name) || w == o.at.name);
        if g.spec.gateway_class_name == "istio-waypoint" || wanted {
            candidates.push(o);
        } else {
            ctx.info(
                &o.at,
                "spec.gatewayClassName",
                format!(
                    "skipped: Gateway of class {:?} is not a waypoint (class istio-waypoint); ingress gateways are not compiled",
                    g.spec.gateway_class_name
                ),
            );
        }
    }
    let chosen: Option<&Object> = match &opts.waypoint {
        Some(w) => {
            let c = candidates
                .iter()
                .copied()
                .find(|o| w == &format!("{}/{}", o.at.namespace, o.at.name) || w == &o.at.name);
            if c.is_none() {
                ctx.errors.push(Error {
                    at: Location::Input,
                    path: String::new(),
                    message: format!("waypoint Gateway {w:?} is not in the input"),
                });
            }
            c
        }
        None => {
            if candidates.len() > 1 {
                ctx.errors.push(Error {
                    at: Location::Input,
                    path: String::new(),
                    message: format!(
                        "the input declares several waypoint Gateways ({}); choose one with --waypoint <namespace/name>",
                        candidates
                            .iter()
                            .map(|o| format!("{}/{}", o.at.namespace, o.at.name))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
                None
            } else {
                candidates.first().copied()
            }
        }
    };
    for o in candidates {
        if chosen.is_some_and(|c| std::ptr::eq(c, o)) {
            continue;
        }
        if opts.waypoint.is_some() {
            ctx.info(&o.at, "", "skipped: not the waypoint being compiled");
        }
    }
    if let Some(o) = chosen {
        ctx.waypoint = Some((o.at.namespace.clone(), o.at.name.clone()));
        if let ObjectKind::Gateway(g) = &o.kind {
            let wf = g
                .metadata
                .labels
                .get(WAYPOINT_FOR)
                .map(String::as_str)
                .unwrap_or("service");
            if wf == "workload" || wf == "none" {
                ctx.info(
                    &o.at,
                    format!("metadata.labels[{WAYPOINT_FOR}]"),
                    format!("waypoint-for {wf:?}: this waypoint takes no service traffic, so no service is compiled"),
                );
            }
        }
    }
}

fn compute_served(ctx: &mut Ctx) {
    let bundle = ctx.bundle;
    let mut ns_labels: HashMap<String, BTreeMap<String, String>> = HashMap::new();
    for o in &bundle.objects {
        if let ObjectKind::Namespace(n) = &o.kind {
            ns_labels.insert(n.metadata.name.clone(), n.metadata.labels.clone());
        }
    }
    let Some((wns, wname)) = ctx.waypoint.clone() else {
        ctx.served = vec![true; ctx.services.len()];
        return;
    };
    let mut waypoint_for_services = true;
    for o in &bundle.objects {
        if let ObjectKind::Gateway(g) = &o.kind {
            if o.at.namespace == wns && o.at.name == wname {
                let wf = g.metadata.labels.get(WAYPOINT_FOR).map(String::as_str);
                waypoint_for_services = !matches!(wf, Some("workload") | Some("none"));
            }
        }
    }
    let served: Vec<bool> = ctx
        .services
        .iter()
        .map(|s| {
            if !waypoint_for_services {
                return false;
            }
            let empty = BTreeMap::new();
            let nsl = ns_labels.get(&s.namespace).unwrap_or(&empty);
            // The service's own label overrides the namespace's (istio.io ambient docs,
            // "Configure a service to use a specific waypoint").
            let (name, ns) = if let Some(n) = s.labels.get(USE_WAYPOINT) {
                (
                    n.clone(),
                    s.labels
                        .get(USE_WAYPOINT_NAMESPACE)
                        .cloned()
                        .unwrap_or_else(|| s.namespace.clone()),
                )
            } else if let Some(n) = nsl.get(USE_WAYPOINT) {
                (
                    n.clone(),
                    nsl.get(USE_WAYPOINT_NAMESPACE)
                        .cloned()
                        .unwrap_or_else(|| s.namespace.clone()),
                )
            } else {
                return false;
            };
            name != "none" && name == wname && ns == wns
        })
        .collect();
    if !served.iter().any(|s| *s) {
        ctx.notices.push(Notice {
            severity: Severity::Info,
            at: Location::Input,
            path: String::new(),
            message: format!(
                "waypoint {wns}/{wname} serves no service: label a Service, ServiceEntry or Namespace with {USE_WAYPOINT}: {wname}"
            ),
        });
    }
    ctx.served = served;
}

fn collect_destination_rules(ctx: &mut Ctx) {
    let bundle = ctx.bundle;
    let mut drs: Vec<&Object> = bundle
        .objects
        .iter()
        .filter(|o| matches!(o.kind, ObjectKind::DestinationRule(_)))
        .collect();
    sort_by_creation(&mut drs);
    for o in drs {
        let ObjectKind::DestinationRule(d) = &o.kind else {
            continue;
        };
        let host = fqdn(&d.spec.host, &o.at.namespace);
        let targets: Vec<String> = if ctx.by_host.contains_key(&host) {
            vec![host.clone()]
        } else if host.starts_with('*') {
            ctx.services
                .iter()
                .filter(|s| host_matches(&host, &s.hostname))
                .map(|s| s.hostname.clone())
                .collect()
        } else {
            Vec::new()
        };
        if targets.is_empty() {
            ctx.warn(
                &o.at,
                "spec.host",
                format!("host {host} matches no Service or ServiceEntry in the input; subsets are not compiled"),
            );
            continue;
        }
        let lb_of = |tp: &Option<TrafficPolicy>| -> String {
            tp.as_ref()
                .and_then(|t| t.load_balancer.as_ref())
                .map(|lb| {
                    if let Some(s) = &lb.simple {
                        s.clone()
                    } else if lb.consistent_hash.is_some() {
                        "CONSISTENT_HASH".to_string()
                    } else {
                        String::new()
                    }
                })
                .unwrap_or_default()
        };
        let dr_lb = lb_of(&d.spec.traffic_policy);
        for t in targets {
            let merging = ctx.drs.contains_key(&t);
            let entry = ctx.drs.entry(t.clone()).or_default();
            if !merging {
                entry.lb = dr_lb.clone();
            }
            let mut dup = Vec::new();
            for (i, s) in d.spec.subsets.iter().enumerate() {
                if entry.subsets.iter().any(|(n, _)| n == &s.name) {
                    dup.push((i, s.name.clone()));
                    continue;
                }
                let lb = {
                    let l = lb_of(&s.traffic_policy);
                    if l.is_empty() {
                        dr_lb.clone()
                    } else {
                        l
                    }
                };
                entry.subsets.push((
                    s.name.clone(),
                    SubsetDef {
                        labels: s.labels.clone(),
                        lb,
                    },
                ));
            }
            if merging {
                ctx.info(
                    &o.at,
                    "",
                    format!("several DestinationRules for {t}: subsets are merged and the oldest rule's traffic policy is kept (istiod mergeDestinationRule)"),
                );
            }
            for (i, n) in dup {
                ctx.warn(
                    &o.at,
                    format!("spec.subsets[{i}]"),
                    format!("subset {n:?} of {t} is already defined by an older DestinationRule; ignored"),
                );
            }
        }
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

fn subset_of(sel: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    sel.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn build_clusters(ctx: &mut Ctx) -> (Vec<pb::Cluster>, Registry) {
    let bundle = ctx.bundle;
    let mut clusters = Vec::new();
    let mut registry = Registry::default();
    let wes: Vec<&Object> = bundle
        .objects
        .iter()
        .filter(|o| matches!(o.kind, ObjectKind::WorkloadEntry(_)))
        .collect();
    for svc in &ctx.services {
        let dr = ctx.drs.get(&svc.hostname).cloned().unwrap_or_default();
        let mut variants: Vec<(String, BTreeMap<String, String>, String)> =
            vec![(String::new(), BTreeMap::new(), dr.lb.clone())];
        for (n, s) in &dr.subsets {
            variants.push((n.clone(), s.labels.clone(), s.lb.clone()));
        }
        for p in &svc.ports {
            for (subset, sub_labels, lb) in &variants {
                let name = cluster_name(p.number, subset, &svc.hostname);
                let mut labels = svc.selector.clone().unwrap_or_default();
                labels.extend(sub_labels.clone());
                let mut eps = Vec::new();
                // Inline ServiceEntry endpoints.
                for (e, at) in &svc.inline_endpoints {
                    if !subset_of(sub_labels, &e.labels) {
                        continue;
                    }
                    let port = e.ports.get(&p.name).copied().unwrap_or(p.target_port);
                    eps.push(Endpoint {
                        address: e.address.clone().unwrap_or_else(|| svc.hostname.clone()),
                        port,
                        labels: e.labels.clone(),
                        service_account: e.service_account.clone().unwrap_or_default(),
                        namespace: svc.namespace.clone(),
                        origin: at.object(),
                    });
                }
                // WorkloadEntries selected by the Service selector / ServiceEntry
                // workloadSelector (same namespace, as Kubernetes and istiod select).
                if let Some(sel) = &svc.selector {
                    for o in &wes {
                        let ObjectKind::WorkloadEntry(w) = &o.kind else {
                            continue;
                        };
                        if o.at.namespace != svc.namespace
                            || !subset_of(sel, &w.spec.labels)
                            || !subset_of(sub_labels, &w.spec.labels)
                        {
                            continue;
                        }
                        let port = w
                            .spec
                            .ports
                            .get(&p.name)
                            .or_else(|| p.target_name.as_ref().and_then(|t| w.spec.ports.get(t)))
                            .copied()
                            .unwrap_or(p.target_port);
                        eps.push(Endpoint {
                            address: w.spec.address.clone().unwrap_or_default(),
                            port,
                            labels: w.spec.labels.clone(),
                            service_account: w.spec.service_account.clone().unwrap_or_default(),
                            namespace: o.at.namespace.clone(),
                            origin: o.at.object(),
                        });
                    }
                }
                registry.clusters.insert(name.clone(), eps);
                clusters.push(pb::Cluster {
                    name,
                    service: svc.hostname.clone(),
                    port: p.number,
                    subset: subset.clone(),
                    labels: labels.into_iter().collect(),
                    load_balancer: lb.clone(),
                });
            }
        }
    }
    clusters.sort_by(|a, b| a.name.cmp(&b.name));
    (clusters, registry)
}

/// Resolved destination for a route or mirror.
pub(crate) struct Dest {
    pub cluster: String,
    pub host: String,
    pub port: u32,
    pub subset: String,
    pub unavailable: bool,
}

/// Resolves a destination as istiod's `getWaypointDestinationCluster`: explicit port, else
/// the only port of the service, else the port the request arrived on (`listen_port`).
/// Unknown hosts, ports and subsets are kept but marked unavailable (Envoy answers 503).
pub(crate) fn resolve_dest(
    ctx: &mut Ctx,
    at: &ObjRef,
    path: &str,
    host: &str,
    subset: &str,
    port: Option<u32>,
    listen_port: Option<u32>,
) -> Dest {
    let svc = ctx.svc(host).cloned();
    let port = port.filter(|p| *p != 0).or_else(|| match &svc {
        Some(s) if s.ports.len() == 1 => Some(s.ports[0].number),
        _ => listen_port,
    });
    let port = port.unwrap_or(0);
    let mut unavailable = false;
    match &svc {
        None => {
            ctx.warn(
                at,
                path,
                format!("destination host {host} is not a Service or ServiceEntry in the input; requests routed there get 503"),
            );
            unavailable = true;
        }
        Some(s) => {
            if !s.ports.iter().any(|p| p.number == port) {
                ctx.warn(
                    at,
                    path,
                    format!("destination port {port} is not a port of {host}; requests routed there get 503"),
                );
                unavailable = true;
            }
            if !subset.is_empty() && !ctx.has_subset(host, subset) {
                ctx.warn(
                    at,
                    path,
                    format!("subset {subset:?} of {host} is not defined by any DestinationRule; requests routed there get 503"),
                );
                unavailable = true;
            }
        }
    }
    Dest {
        cluster: cluster_name(port, subset, host),
        host: host.to_string(),
        port,
        subset: subset.to_string(),
        unavailable,
    }
}

/// Whether a destination without an explicit port depends on the port the request used.
pub(crate) fn port_ambiguous(ctx: &Ctx, host: &str, port: Option<u32>) -> bool {
    if port.is_some_and(|p| p != 0) {
        return false;
    }
    !matches!(ctx.svc(host), Some(s) if s.ports.len() == 1)
}
