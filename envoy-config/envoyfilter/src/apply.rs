//! Applying EnvoyFilters to a static bootstrap with istiod's semantics.
//!
//! Mirrors istio/istio `pilot/pkg/networking/core/envoyfilter/`:
//! - `listener_patch.go`: per listener, LISTENER MERGE/REMOVE, then per filter chain the
//!   NETWORK_FILTER ADD/INSERT_*/REPLACE/REMOVE, then NETWORK_FILTER MERGE on each filter, and
//!   inside every filter named `envoy.filters.network.http_connection_manager` the HTTP_FILTER
//!   ADD/INSERT_*/REPLACE/REMOVE followed by HTTP_FILTER MERGE; LISTENER ADD last.
//!   INSERT_BEFORE / INSERT_AFTER act at the first matching filter; without a filter (or
//!   subFilter) match they insert first / last; REPLACE and REMOVE without one do nothing.
//! - `rc_patch.go`: ROUTE_CONFIGURATION MERGE, VIRTUAL_HOST REMOVE/MERGE/REPLACE then ADD,
//!   HTTP_ROUTE REMOVE/MERGE then ADD/INSERT_*; applied here to each connection manager's
//!   inline `route_config` (the bootstrap has no RDS). istiod reads a sidecar route
//!   configuration's port from its RDS name; an inline one's port is its listener's port.
//! - `cluster_patch.go`: CLUSTER REMOVE, then MERGE (a `transport_socket` of the same name
//!   merges its typed config), then ADD.
//! - Ordering (`pilot/pkg/model/push_context.go`, `envoyfilter.go`): root-namespace filters,
//!   then the waypoint namespace's, each by creation time then `name.namespace`, then a stable
//!   sort by `priority`; within a filter, patches in order.
//! - Selection (`push_context.go` `EnvoyFilters` / `getMatchedEnvoyFilters`): the root
//!   namespace's and the waypoint namespace's filters that the Istio release attaches to the
//!   waypoint — by `workloadSelector` up to 1.26.x, by `targetRefs` from 1.27.0
//!   ([`crate::Attachment`]).
//! - Context: istiod builds every waypoint listener, inline route and inbound cluster with
//!   patch context SIDECAR_INBOUND (`pilot/pkg/networking/core/waypoint.go`, `cluster.go`);
//!   layover's waypoint is patched the same way, so `ANY` and `SIDECAR_INBOUND` apply, and
//!   `SIDECAR_OUTBOUND` / `GATEWAY` patches select nothing.
//!
//! [`apply()`] is stricter than istiod: a patch whose match selects nothing is an error (istiod
//! skips it silently), and so is a patch value that does not merge (wrong type). Either way
//! nothing is applied: the work happens on a copy that replaces the bootstrap only on success.
//! [`apply_with_report`] runs the same passes but, as istiod does, goes on past a patch that
//! matches nothing, and reports where every patch applied (`layover check-waypoint`).

use serde_json::Value;

use crate::merge::{merge, merge_any, MergeError};
use crate::version::{Attachment, IstioVersion};
use crate::{
    ApplyTo, ConfigPatch, EnvoyFilter, InvalidEnvoyFilter, Operation, PatchContext, Reason,
    RouteAction, HTTP_CONNECTION_MANAGER,
};

/// Where the EnvoyFilters are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyContext {
    /// The proxy's patch context for listeners, routes and clusters (a waypoint:
    /// SIDECAR_INBOUND).
    pub context: PatchContext,
    /// The waypoint Gateway (`namespace`, `name`), when known: EnvoyFilters that istiod would
    /// not attach to it (see [`ApplyContext::skip_reason`]) are skipped.
    pub waypoint: Option<(String, String)>,
    /// Istio's root namespace: EnvoyFilters there apply to every proxy.
    pub root_namespace: String,
    /// The Istio release whose attachment and patch rules apply.
    pub istio: IstioVersion,
    /// Set when the bootstrap is istiod's own waypoint: the limits istiod's waypoint
    /// generation puts on route and cluster patches ([`IstiodWaypointRules`]).
    pub istiod_waypoint: Option<IstiodWaypointRules>,
}

/// What istiod's waypoint generation runs through the EnvoyFilter patchers, beyond the patch
/// context (istio/istio `pilot/pkg/networking/core` @ 1.30.3):
/// - route patches run only in `buildSidecarInboundHTTPRouteConfig`, i.e. for services without
///   a VirtualService / HTTPRoute (`httproute.go:139-140`); the VirtualService path returns
///   its route configuration unpatched (`listener_waypoint.go:1153-1157`);
/// - the waypoint's own clusters (`inbound-vip|…`, `main_internal`, `encap`,
///   `connect_originate`) are appended without `ApplyClusterMerge`, so CLUSTER MERGE / REMOVE
///   never reach them; only `outbound|…` clusters are patched, with context SIDECAR_OUTBOUND;
///   CLUSTER ADD inserts only SIDECAR_INBOUND patches (`cluster.go:349-364`;
///   `envoyfilter/cluster_patch.go:130-149`: an ANY-context ADD is not inserted there).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IstiodWaypointRules {
    /// Names of the route configurations istiod builds without running route patches (the
    /// chains of services with a VirtualService or HTTPRoute).
    pub unpatched_route_configurations: std::collections::BTreeSet<String>,
}

impl Default for ApplyContext {
    fn default() -> Self {
        ApplyContext {
            context: PatchContext::SidecarInbound,
            waypoint: None,
            root_namespace: DEFAULT_ROOT_NAMESPACE.into(),
            istio: IstioVersion::PINNED,
            istiod_waypoint: None,
        }
    }
}

/// The label istiod reads a waypoint pod's Gateway from (`workloadGatewayName`,
/// `pilot/pkg/model/policyattachment.go @ 1.30.3`); Istio's waypoint pods (and layover's
/// drop-in's) carry it, with `istio.io/gateway-name` for older tooling.
const GATEWAY_NAME_LABELS: [&str; 2] = [crate::emit::GATEWAY_NAME_LABEL, "istio.io/gateway-name"];

/// Istio's default root namespace (MeshConfig `rootNamespace`): EnvoyFilters (and
/// GatewayClass-targeted policies) there apply to every proxy.
pub const DEFAULT_ROOT_NAMESPACE: &str = "istio-system";

impl ApplyContext {
    /// The context of the waypoint Gateway `namespace/name` under the pinned Istio release.
    pub fn for_waypoint(namespace: &str, name: &str) -> Self {
        ApplyContext {
            waypoint: Some((namespace.into(), name.into())),
            ..ApplyContext::default()
        }
    }

    /// The same context under Istio release `istio`.
    #[must_use]
    pub fn with_istio(mut self, istio: IstioVersion) -> Self {
        self.istio = istio;
        self
    }

    /// The same context for istiod's own waypoint, whose generation limits route and cluster
    /// patches as `rules` says.
    #[must_use]
    pub fn with_istiod_waypoint(mut self, rules: IstiodWaypointRules) -> Self {
        self.istiod_waypoint = Some(rules);
        self
    }

    /// Why `ef` does not apply to this waypoint, or `None` when it does: istiod's rules of
    /// [`ApplyContext::istio`] (see [`Attachment`]).
    pub fn skip_reason(&self, ef: &EnvoyFilter) -> Option<String> {
        let (ns, name) = self.waypoint.as_ref()?;
        if ef.namespace != *ns && ef.namespace != self.root_namespace {
            return Some(format!(
                "namespace {} is neither the waypoint's ({ns}) nor the root namespace ({})",
                ef.namespace, self.root_namespace
            ));
        }
        match self.istio.envoy_filter_attachment() {
            Attachment::Selector => self.selector_skip(ef, name),
            Attachment::TargetRefs { gateway_class } => {
                self.target_refs_skip(ef, ns, name, gateway_class)
            }
        }
    }

    /// Up to 1.26.x: a `workloadSelector` must be a subset of the waypoint pod's labels; no
    /// selector selects every proxy; `targetRefs` is not read (`push_context.go:2334-2342 @
    /// 1.26.8`).
    fn selector_skip(&self, ef: &EnvoyFilter, name: &str) -> Option<String> {
        let labels = ef.workload_selector.as_ref()?;
        let ok = labels
            .iter()
            .all(|(k, v)| GATEWAY_NAME_LABELS.contains(&k.as_str()) && v == name);
        (!ok).then(|| {
            format!(
                "under Istio {} workloadSelector does not select the pods of waypoint {name} (gateway.networking.k8s.io/gateway-name: {name})",
                self.istio
            )
        })
    }

    /// From 1.27.0: only `targetRefs` (`policyattachment.go:123-201 @ 1.30.3`).
    fn target_refs_skip(
        &self,
        ef: &EnvoyFilter,
        ns: &str,
        name: &str,
        gateway_class: bool,
    ) -> Option<String> {
        if ef.target_refs.is_empty() {
            // policyattachment.go:139-148 @ 1.30.3: "waypoints never use selector".
            return Some(format!(
                "Istio {} attaches EnvoyFilters to a waypoint only through targetRefs (\"waypoints never use selector\"): target the Gateway {ns}/{name}",
                self.istio
            ));
        }
        let attaches = ef.target_refs.iter().any(|r| {
            let gateway_api = r.group == "gateway.networking.k8s.io";
            // policyattachment.go:176-182: GatewayClass istio-waypoint from the root namespace.
            let class = gateway_class
                && gateway_api
                && r.kind == "GatewayClass"
                && r.name == WAYPOINT_GATEWAY_CLASS
                && ef.namespace == self.root_namespace;
            // policyattachment.go:184-197: the waypoint's own Gateway, from its namespace.
            let gateway = gateway_api
                && r.kind == "Gateway"
                && r.name == name
                && ef.namespace == ns
                && (r.namespace.is_empty() || r.namespace == ns);
            class || gateway
        });
        (!attaches).then(|| {
            format!(
                "under Istio {} no targetRef selects waypoint {ns}/{name} (a Gateway `{name}` in namespace {ns}{}; Service and ServiceEntry targets never attach EnvoyFilters: getMatchedEnvoyFilters passes no services, push_context.go:2358-2367 @ 1.30.3)",
                self.istio,
                if gateway_class {
                    ", or GatewayClass `istio-waypoint` from the root namespace"
                } else {
                    ""
                }
            )
        })
    }
}

/// The GatewayClass of Istio's waypoints (`pkg/config/constants/constants.go:181 @ 1.30.3`).
pub const WAYPOINT_GATEWAY_CLASS: &str = "istio-waypoint";

/// Refuses patch operations the Istio release does not have: istiod of that release would
/// reject the object (its API has no such enum value), so it must not work here either.
fn check_operations(ef: &EnvoyFilter, istio: IstioVersion) -> Result<(), InvalidEnvoyFilter> {
    for cp in &ef.patches {
        if cp.operation == Operation::MergeAndReplaceList && !istio.has_merge_and_replace_list() {
            return Err(ef.error(
                format!("spec.configPatches[{}].patch.operation", cp.index),
                Reason::Unsupported(format!(
                    "MERGE_AND_REPLACE_LIST is not in Istio {istio}'s EnvoyFilter API (it arrives in 1.31); use MERGE, or REPLACE the object"
                )),
            ));
        }
    }
    Ok(())
}

/// What [`apply()`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// EnvoyFilters applied, in application order (`EnvoyFilter ns/name`).
    pub applied: Vec<String>,
    /// EnvoyFilters that do not select this waypoint, with the reason.
    pub skipped: Vec<(String, String)>,
}

struct P<'a> {
    ef: &'a EnvoyFilter,
    cp: &'a ConfigPatch,
}

struct Run<'a> {
    patches: Vec<P<'a>>,
    /// Per patch, where it applied (empty: it matched nothing).
    hits: Vec<Vec<String>>,
    context: PatchContext,
    istiod_waypoint: Option<IstiodWaypointRules>,
    error: Option<InvalidEnvoyFilter>,
}

/// Applies `filters` to `bootstrap` (a static Envoy bootstrap as proto JSON) with istiod's
/// semantics (see the module docs), all or nothing: on error `bootstrap` is unchanged.
pub fn apply(
    bootstrap: &mut Value,
    filters: &[EnvoyFilter],
    ctx: &ApplyContext,
) -> Result<Applied, InvalidEnvoyFilter> {
    let out = run(bootstrap, filters, ctx)?;
    if let Some(i) = out.run.hits.iter().position(Vec::is_empty) {
        let p = &out.run.patches[i];
        return Err(p.ef.error(
            format!("spec.configPatches[{}].match", p.cp.index),
            Reason::MatchesNothing(describe(p.cp)),
        ));
    }
    *bootstrap = out.work;
    Ok(Applied {
        applied: out.selected.iter().map(|ef| ef.object()).collect(),
        skipped: out.skipped,
    })
}

/// Applies `filters` to a copy of `bootstrap` as [`apply()`] does — the same selection,
/// ordering and patch passes — but, like istiod, keeps going when a patch matches nothing, and
/// reports where each patch applied ([`Report`]). Still an error: an EnvoyFilter the Istio
/// release would reject, or a patch value that does not merge into the object it matched.
pub fn apply_with_report(
    bootstrap: &Value,
    filters: &[EnvoyFilter],
    ctx: &ApplyContext,
) -> Result<(Value, Report), InvalidEnvoyFilter> {
    let out = run(bootstrap, filters, ctx)?;
    let mut applied: Vec<FilterReport> = Vec::new();
    for (p, hits) in out.run.patches.iter().zip(&out.run.hits) {
        let patch = PatchReport {
            index: p.cp.index,
            apply_to: p.cp.apply_to.as_str().into(),
            operation: p.cp.operation.as_str().into(),
            applied_at: hits.clone(),
            matched_nothing: hits.is_empty().then(|| describe(p.cp)),
        };
        let object = p.ef.object();
        match applied.last_mut() {
            Some(last) if last.object == object => last.patches.push(patch),
            _ => applied.push(FilterReport {
                object,
                namespace: p.ef.namespace.clone(),
                name: p.ef.name.clone(),
                patches: vec![patch],
            }),
        }
    }
    // A selected filter without patches is still reported, as applied.
    for ef in &out.selected {
        if ef.patches.is_empty() {
            applied.push(FilterReport {
                object: ef.object(),
                namespace: ef.namespace.clone(),
                name: ef.name.clone(),
                patches: Vec::new(),
            });
        }
    }
    let report = Report {
        istio: ctx.istio.to_string(),
        waypoint: ctx.waypoint.as_ref().map(|(ns, n)| format!("{ns}/{n}")),
        applied,
        skipped: out
            .skipped
            .into_iter()
            .map(|(object, reason)| SkippedFilter { object, reason })
            .collect(),
    };
    Ok((out.work, report))
}

/// Where one patch applied ([`apply_with_report`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PatchReport {
    /// Index in `spec.configPatches`.
    pub index: usize,
    /// `applyTo`.
    pub apply_to: String,
    /// `patch.operation`.
    pub operation: String,
    /// Each place the patch changed, e.g. `listener main_internal / chain C / filter F
    /// (replaced)`, `cluster C`; empty when the match selected nothing.
    pub applied_at: Vec<String>,
    /// When `applied_at` is empty: what the match looked for (and, where known, why it cannot
    /// select anything on a waypoint). istiod skips such a patch silently.
    pub matched_nothing: Option<String>,
}

/// The patches of one EnvoyFilter that attaches to the waypoint.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FilterReport {
    /// `file: document N (EnvoyFilter ns/name)` or `EnvoyFilter ns/name`.
    pub object: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// Its patches, in order.
    pub patches: Vec<PatchReport>,
}

/// An EnvoyFilter istiod would not attach to the waypoint.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SkippedFilter {
    /// `file: document N (EnvoyFilter ns/name)` or `EnvoyFilter ns/name`.
    pub object: String,
    /// Why istiod does not attach it.
    pub reason: String,
}

/// What [`apply_with_report`] did, per EnvoyFilter and per patch.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    /// The Istio release whose rules applied.
    pub istio: String,
    /// The waypoint Gateway (`ns/name`), when known.
    pub waypoint: Option<String>,
    /// EnvoyFilters that attach, in istiod's application order.
    pub applied: Vec<FilterReport>,
    /// EnvoyFilters that do not attach, with the reason.
    pub skipped: Vec<SkippedFilter>,
}

impl Report {
    /// The patches that matched nothing, with their EnvoyFilter.
    pub fn unmatched(&self) -> impl Iterator<Item = (&FilterReport, &PatchReport)> {
        self.applied
            .iter()
            .flat_map(|f| f.patches.iter().map(move |p| (f, p)))
            .filter(|(_, p)| p.applied_at.is_empty())
    }
}

/// One pass of the patch engine over a copy of the bootstrap, shared by [`apply()`] and
/// [`apply_with_report`].
struct Outcome<'a> {
    work: Value,
    run: Run<'a>,
    selected: Vec<&'a EnvoyFilter>,
    skipped: Vec<(String, String)>,
}

fn run<'a>(
    bootstrap: &Value,
    filters: &'a [EnvoyFilter],
    ctx: &ApplyContext,
) -> Result<Outcome<'a>, InvalidEnvoyFilter> {
    let mut skipped = Vec::new();
    let mut selected: Vec<&EnvoyFilter> = Vec::new();
    for ef in filters {
        match ctx.skip_reason(ef) {
            Some(why) => skipped.push((ef.object(), why)),
            None => selected.push(ef),
        }
    }
    let root_rank = |ef: &EnvoyFilter| u8::from(ef.namespace != ctx.root_namespace);
    selected.sort_by(|a, b| {
        root_rank(a)
            .cmp(&root_rank(b))
            .then_with(|| a.creation_timestamp.cmp(&b.creation_timestamp))
            .then_with(|| {
                format!("{}.{}", a.name, a.namespace).cmp(&format!("{}.{}", b.name, b.namespace))
            })
    });
    selected.sort_by_key(|ef| ef.priority);
    for ef in &selected {
        check_operations(ef, ctx.istio)?;
    }

    let patches: Vec<P> = selected
        .iter()
        .flat_map(|ef| ef.patches.iter().map(move |cp| P { ef, cp }))
        .collect();
    let mut run = Run {
        hits: vec![Vec::new(); patches.len()],
        patches,
        context: ctx.context,
        istiod_waypoint: ctx.istiod_waypoint.clone(),
        error: None,
    };
    let mut work = bootstrap.clone();
    run.listeners(&mut work);
    run.clusters(&mut work);
    if let Some(e) = run.error.take() {
        return Err(e);
    }
    Ok(Outcome {
        work,
        run,
        selected,
        skipped,
    })
}

fn describe(cp: &ConfigPatch) -> String {
    let mut out = format!("{} {}", cp.operation.as_str(), cp.apply_to.as_str());
    match cp.context {
        PatchContext::SidecarOutbound | PatchContext::Gateway => {
            out.push_str(&format!(
                "; context {} never applies to a waypoint: istiod patches waypoint listeners, routes and clusters as SIDECAR_INBOUND",
                cp.context
            ));
            return out;
        }
        _ => {}
    }
    if cp.apply_to == ApplyTo::Listener
        && cp.operation == Operation::Add
        && cp.context == PatchContext::Any
    {
        out.push_str("; istiod adds ANY-context listeners to sidecar-outbound and gateway proxies only: set context SIDECAR_INBOUND");
        return out;
    }
    if let Some(l) = &cp.listener {
        if !l.name.is_empty() {
            out.push_str(&format!("; listener {}", l.name));
        }
        if l.port_number != 0 {
            out.push_str(&format!("; port {}", l.port_number));
        }
        if let Some(f) = l.filter_chain.as_ref().and_then(|fc| fc.filter.as_ref()) {
            out.push_str(&format!("; filter {}", f.name));
            if let Some(s) = &f.sub_filter {
                out.push_str(&format!("; subFilter {}", s.name));
            }
        }
    }
    if let Some(r) = &cp.route_configuration {
        if !r.name.is_empty() {
            out.push_str(&format!("; routeConfiguration {}", r.name));
        }
        if let Some(v) = &r.vhost {
            if !v.name.is_empty() {
                out.push_str(&format!("; vhost {}", v.name));
            }
            if let Some(route) = &v.route {
                if !route.name.is_empty() {
                    out.push_str(&format!("; route {}", route.name));
                }
            }
        }
    }
    if let Some(c) = &cp.cluster {
        if !c.name.is_empty() {
            out.push_str(&format!("; cluster {}", c.name));
        }
        if !c.service.is_empty() {
            out.push_str(&format!("; service {}", c.service));
        }
    }
    out
}

fn str_at<'v>(v: &'v Value, ptr: &str) -> &'v str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn port_of(listener: &Value) -> u32 {
    listener
        .pointer("/address/socket_address/port_value")
        .and_then(Value::as_u64)
        .and_then(|p| u32::try_from(p).ok())
        .unwrap_or(0)
}

// --- matches (istio/istio listener_patch.go, rc_patch.go, cluster_patch.go) ---

fn listener_match(l: &Value, cp: &ConfigPatch) -> bool {
    let Some(m) = &cp.listener else { return true };
    if !m.name.is_empty() && m.name != str_at(l, "/name") {
        return false;
    }
    m.port_number == 0 || m.port_number == port_of(l)
}

fn filter_chain_match(fc: &Value, cp: &ConfigPatch) -> bool {
    let Some(m) = cp.listener.as_ref().and_then(|l| l.filter_chain.as_ref()) else {
        return true;
    };
    if !m.name.is_empty() && m.name != str_at(fc, "/name") {
        return false;
    }
    let fcm = fc.get("filter_chain_match");
    let list = |key: &str| -> Vec<&str> {
        fcm.and_then(|f| f.get(key))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    };
    if !m.sni.is_empty() && !list("server_names").contains(&m.sni.as_str()) {
        return false;
    }
    if !m.transport_protocol.is_empty()
        && fcm
            .and_then(|f| f.get("transport_protocol"))
            .and_then(Value::as_str)
            != Some(m.transport_protocol.as_str())
    {
        return false;
    }
    if !m.application_protocols.is_empty() {
        let have = list("application_protocols");
        if fcm.is_none()
            || !m
                .application_protocols
                .split(',')
                .all(|p| have.contains(&p))
        {
            return false;
        }
    }
    if m.destination_port != 0 {
        let port = fcm
            .and_then(|f| f.get("destination_port"))
            .and_then(Value::as_u64);
        if port != Some(u64::from(m.destination_port)) {
            return false;
        }
    }
    true
}

fn network_filter_name(cp: &ConfigPatch) -> Option<&str> {
    cp.listener
        .as_ref()?
        .filter_chain
        .as_ref()?
        .filter
        .as_ref()
        .map(|f| f.name.as_str())
}

fn network_filter_match(f: &Value, cp: &ConfigPatch) -> bool {
    network_filter_name(cp).is_none_or(|n| n == str_at(f, "/name"))
}

fn http_filter_name(cp: &ConfigPatch) -> Option<&str> {
    cp.listener
        .as_ref()?
        .filter_chain
        .as_ref()?
        .filter
        .as_ref()?
        .sub_filter
        .as_ref()
        .map(|s| s.name.as_str())
}

fn http_filter_match(f: &Value, cp: &ConfigPatch) -> bool {
    http_filter_name(cp).is_none_or(|n| n == str_at(f, "/name"))
}

fn route_configuration_match(rc: &Value, port: u32, cp: &ConfigPatch) -> bool {
    let Some(m) = &cp.route_configuration else {
        return true;
    };
    if m.port_number != 0 && m.port_number != port {
        return false;
    }
    m.name.is_empty() || m.name == str_at(rc, "/name")
}

fn virtual_host_match(vh: &Value, cp: &ConfigPatch) -> bool {
    let Some(m) = cp
        .route_configuration
        .as_ref()
        .and_then(|r| r.vhost.as_ref())
    else {
        return true;
    };
    if !m.name.is_empty() && m.name != str_at(vh, "/name") {
        return false;
    }
    if !m.domain_name.is_empty() {
        let has = vh
            .get("domains")
            .and_then(Value::as_array)
            .is_some_and(|d| d.iter().any(|x| x.as_str() == Some(m.domain_name.as_str())));
        if !has {
            return false;
        }
    }
    true
}

fn has_route_match(cp: &ConfigPatch) -> bool {
    cp.route_configuration
        .as_ref()
        .and_then(|r| r.vhost.as_ref())
        .is_some_and(|v| v.route.is_some())
}

fn route_match(route: &Value, cp: &ConfigPatch) -> bool {
    let Some(m) = cp
        .route_configuration
        .as_ref()
        .and_then(|r| r.vhost.as_ref())
        .and_then(|v| v.route.as_ref())
    else {
        return true;
    };
    if !m.name.is_empty() && m.name != str_at(route, "/name") {
        return false;
    }
    match cp.route_action {
        RouteAction::Any => true,
        RouteAction::Route => route.get("route").is_some(),
        RouteAction::Redirect => route.get("redirect").is_some(),
        RouteAction::DirectResponse => route.get("direct_response").is_some(),
    }
}

/// istiod's `ParseSubsetKey`: `direction|port|subset|host`.
fn parse_subset_key(name: &str) -> (&str, u32, &str) {
    let parts: Vec<&str> = name.split('|').collect();
    if parts.len() != 4 {
        return ("", 0, "");
    }
    (parts[3], parts[1].parse().unwrap_or(0), parts[2])
}

/// Istio host matching: exact, or a `*.suffix` wildcard on the match side.
fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some(suffix) => host.ends_with(suffix),
        None => pattern == host,
    }
}

fn cluster_match(c: &Value, cp: &ConfigPatch) -> bool {
    let Some(m) = &cp.cluster else { return true };
    let name = str_at(c, "/name");
    if !m.name.is_empty() {
        return m.name == name;
    }
    let (host, port, subset) = parse_subset_key(name);
    if !m.subset.is_empty() && m.subset != subset {
        return false;
    }
    if !m.service.is_empty() && !host_matches(&m.service, host) {
        return false;
    }
    m.port_number == 0 || m.port_number == port
}

// --- the passes ---

impl Run<'_> {
    fn ctx_ok(&self, cp: &ConfigPatch) -> bool {
        cp.context == PatchContext::Any || cp.context == self.context
    }

    /// Records that patch `i` applied at `loc` (once per place).
    fn hit(&mut self, i: usize, loc: impl Into<String>) {
        let loc = loc.into();
        if !self.hits[i].contains(&loc) {
            self.hits[i].push(loc);
        }
    }

    fn indices(&self, apply_to: ApplyTo) -> Vec<usize> {
        (0..self.patches.len())
            .filter(|i| self.patches[*i].cp.apply_to == apply_to)
            .collect()
    }

    fn fail(&mut self, i: usize, e: MergeError) {
        if self.error.is_some() {
            return;
        }
        let p = &self.patches[i];
        let path = if e.path.is_empty() {
            format!("spec.configPatches[{}].patch.value", p.cp.index)
        } else {
            format!("spec.configPatches[{}].patch.value.{}", p.cp.index, e.path)
        };
        self.error = Some(p.ef.error(
            path,
            Reason::WrongType {
                expected: e.expected,
                found: e.found,
            },
        ));
    }

    fn merge_into(&mut self, i: usize, dst: &mut Value) {
        let cp = self.patches[i].cp;
        let replace = cp.operation == Operation::MergeAndReplaceList;
        if let Err(e) = merge(dst, &cp.value, "", replace) {
            self.fail(i, e);
        }
    }

    /// The per-object pass istiod runs on listeners, virtual hosts and routes: each patch of
    /// `patches` that `matches` the object as it is by then, in order — REMOVE drops it and ends
    /// the pass, MERGE merges into it, REPLACE (only where `allow_replace`: virtual hosts)
    /// swaps it. Returns whether the object stays.
    fn patch_object(
        &mut self,
        patches: &[usize],
        allow_replace: bool,
        object: &mut Value,
        loc: &str,
        matches: impl Fn(&Self, &Value, &ConfigPatch) -> bool,
    ) -> bool {
        for &i in patches {
            let cp = self.patches[i].cp;
            if !matches(self, object, cp) {
                continue;
            }
            match cp.operation {
                Operation::Remove => {
                    self.hit(i, loc);
                    return false;
                }
                Operation::Replace if allow_replace => {
                    self.hit(i, loc);
                    *object = cp.value.clone();
                }
                op if op.is_merge() => {
                    self.hit(i, loc);
                    self.merge_into(i, object);
                }
                _ => {}
            }
        }
        true
    }

    fn listeners(&mut self, root: &mut Value) {
        let Some(Value::Array(listeners)) = root.pointer_mut("/static_resources/listeners") else {
            return;
        };
        let mut kept = Vec::with_capacity(listeners.len());
        let listener_patches = self.indices(ApplyTo::Listener);
        for mut l in std::mem::take(listeners) {
            let loc = format!("listener {}", str_at(&l, "/name"));
            let kept_listener =
                self.patch_object(&listener_patches, false, &mut l, &loc, |run, l, cp| {
                    run.ctx_ok(cp) && listener_match(l, cp)
                });
            if !kept_listener {
                continue;
            }
            let port = port_of(&l);
            let snapshot = l.clone();
            let loc = format!("listener {}", str_at(&l, "/name"));
            if let Some(Value::Array(chains)) = l.get_mut("filter_chains") {
                for (n, fc) in chains.iter_mut().enumerate() {
                    let chain = match str_at(fc, "/name") {
                        "" => format!("{loc} / chain #{n}"),
                        name => format!("{loc} / chain {name}"),
                    };
                    self.filter_chain(&snapshot, port, fc, &chain);
                }
            }
            if let Some(fc) = l.get_mut("default_filter_chain") {
                self.filter_chain(&snapshot, port, fc, &format!("{loc} / default chain"));
            }
            kept.push(l);
        }
        for &i in &listener_patches {
            let cp = self.patches[i].cp;
            // istio/istio listener_patch.go patchListeners: an ANY-context ADD is for
            // sidecar-outbound and gateway proxies only.
            if cp.operation == Operation::Add && cp.context != PatchContext::Any && self.ctx_ok(cp)
            {
                self.hit(
                    i,
                    format!("listener {} (added)", str_at(&cp.value, "/name")),
                );
                kept.push(cp.value.clone());
            }
        }
        *listeners = kept;
    }

    fn filter_chain(&mut self, listener: &Value, port: u32, fc: &mut Value, loc: &str) {
        let nf = self.indices(ApplyTo::NetworkFilter);
        let fc_snapshot = fc.clone();
        let Some(Value::Array(filters)) = fc.get_mut("filters") else {
            return;
        };
        for &i in &nf {
            let cp = self.patches[i].cp;
            if !self.ctx_ok(cp)
                || !listener_match(listener, cp)
                || !filter_chain_match(&fc_snapshot, cp)
            {
                continue;
            }
            let target = network_filter_name(cp);
            if list_op(filters, cp, target.is_some(), |f| {
                network_filter_match(f, cp)
            }) {
                self.hit(i, list_loc(loc, "filter", cp, target));
            }
        }
        for f in filters.iter_mut() {
            for &i in &nf {
                let cp = self.patches[i].cp;
                if !cp.operation.is_merge()
                    || !self.ctx_ok(cp)
                    || !listener_match(listener, cp)
                    || !filter_chain_match(&fc_snapshot, cp)
                    || !network_filter_match(f, cp)
                {
                    continue;
                }
                self.merge_filter(i, f, &format!("{loc} / filter"));
            }
            if str_at(f, "/name") == HTTP_CONNECTION_MANAGER {
                let hcm_loc = format!("{loc} / filter {HTTP_CONNECTION_MANAGER}");
                if let Some(hcm) = f.get_mut("typed_config") {
                    self.http_filters(listener, &fc_snapshot, hcm, &hcm_loc);
                    if let Some(rc) = hcm.get_mut("route_config") {
                        self.route_configuration(port, rc, &hcm_loc);
                    }
                }
            }
        }
    }

    /// Filter-level MERGE (istio/istio listener_patch.go `mergeHTTPFilter` /
    /// `patchNetworkFilter`): only `name` and `typed_config` are merged; a filter without a
    /// `typed_config` is left alone, as istiod does.
    fn merge_filter(&mut self, i: usize, f: &mut Value, loc: &str) {
        let cp = self.patches[i].cp;
        if f.get("typed_config").is_none() {
            return;
        }
        self.hit(i, format!("{loc} {}", str_at(f, "/name")));
        if let Some(name) = cp.value.get("name").and_then(Value::as_str) {
            if !name.is_empty() {
                if let Some(obj) = f.as_object_mut() {
                    obj.insert("name".into(), Value::String(name.into()));
                }
            }
        }
        if let (Some(src), Some(dst)) = (cp.value.get("typed_config"), f.get_mut("typed_config")) {
            let replace = cp.operation == Operation::MergeAndReplaceList;
            if let Err(mut e) = merge_any(dst, src, "", replace) {
                e.path = if e.path.is_empty() {
                    "typed_config".into()
                } else {
                    format!("typed_config.{}", e.path)
                };
                self.fail(i, e);
            }
        }
    }

    fn http_filters(&mut self, listener: &Value, fc: &Value, hcm: &mut Value, loc: &str) {
        let hf = self.indices(ApplyTo::HttpFilter);
        if hf.is_empty() {
            return;
        }
        let hcm_filter = serde_json::json!({ "name": HTTP_CONNECTION_MANAGER });
        let Some(obj) = hcm.as_object_mut() else {
            return;
        };
        let filters = obj
            .entry("http_filters")
            .or_insert_with(|| Value::Array(Vec::new()));
        let Value::Array(filters) = filters else {
            return;
        };
        let applies = |run: &Self, cp: &ConfigPatch| {
            run.ctx_ok(cp)
                && listener_match(listener, cp)
                && filter_chain_match(fc, cp)
                && network_filter_match(&hcm_filter, cp)
        };
        for &i in &hf {
            let cp = self.patches[i].cp;
            if !applies(self, cp) {
                continue;
            }
            let target = http_filter_name(cp);
            if list_op(filters, cp, target.is_some(), |f| http_filter_match(f, cp)) {
                self.hit(i, list_loc(loc, "http filter", cp, target));
            }
        }
        for f in filters.iter_mut() {
            for &i in &hf {
                let cp = self.patches[i].cp;
                if cp.operation.is_merge() && applies(self, cp) && http_filter_match(f, cp) {
                    self.merge_filter(i, f, &format!("{loc} / http filter"));
                }
            }
        }
    }

    fn route_configuration(&mut self, port: u32, rc: &mut Value, loc: &str) {
        if self.istiod_waypoint.as_ref().is_some_and(|r| {
            r.unpatched_route_configurations
                .contains(str_at(rc, "/name"))
        }) {
            return;
        }
        if self.patches.iter().all(|p| {
            !matches!(
                p.cp.apply_to,
                ApplyTo::RouteConfiguration | ApplyTo::VirtualHost | ApplyTo::HttpRoute
            )
        }) {
            return;
        }
        for i in self.indices(ApplyTo::RouteConfiguration) {
            let cp = self.patches[i].cp;
            if cp.operation.is_merge() && self.ctx_ok(cp) && route_configuration_match(rc, port, cp)
            {
                self.hit(
                    i,
                    format!("{loc} / route configuration {}", str_at(rc, "/name")),
                );
                self.merge_into(i, rc);
            }
        }
        let rc_snapshot = rc.clone();
        let loc = format!("{loc} / route configuration {}", str_at(rc, "/name"));
        let vh_patches = self.indices(ApplyTo::VirtualHost);
        let Some(obj) = rc.as_object_mut() else {
            return;
        };
        let Value::Array(vhosts) = obj
            .entry("virtual_hosts")
            .or_insert_with(|| Value::Array(Vec::new()))
        else {
            return;
        };
        let mut kept = Vec::with_capacity(vhosts.len());
        for mut vh in std::mem::take(vhosts) {
            let vh_loc = format!("{loc} / virtual host {}", str_at(&vh, "/name"));
            let kept_vhost =
                self.patch_object(&vh_patches, true, &mut vh, &vh_loc, |run, vh, cp| {
                    run.ctx_ok(cp)
                        && route_configuration_match(&rc_snapshot, port, cp)
                        && virtual_host_match(vh, cp)
                });
            if !kept_vhost {
                continue;
            }
            let vh_loc = format!("{loc} / virtual host {}", str_at(&vh, "/name"));
            self.http_routes(&rc_snapshot, port, &mut vh, &vh_loc);
            kept.push(vh);
        }
        for &i in &vh_patches {
            let cp = self.patches[i].cp;
            if cp.operation == Operation::Add
                && self.ctx_ok(cp)
                && route_configuration_match(&rc_snapshot, port, cp)
            {
                self.hit(
                    i,
                    format!(
                        "{loc} / virtual host {} (added)",
                        str_at(&cp.value, "/name")
                    ),
                );
                kept.push(cp.value.clone());
            }
        }
        *vhosts = kept;
    }

    fn http_routes(&mut self, rc: &Value, port: u32, vh: &mut Value, loc: &str) {
        let rp = self.indices(ApplyTo::HttpRoute);
        let vh_snapshot = vh.clone();
        let Some(obj) = vh.as_object_mut() else {
            return;
        };
        let Value::Array(routes) = obj
            .entry("routes")
            .or_insert_with(|| Value::Array(Vec::new()))
        else {
            return;
        };
        let applies = |run: &Self, cp: &ConfigPatch| {
            run.ctx_ok(cp)
                && route_configuration_match(rc, port, cp)
                && virtual_host_match(&vh_snapshot, cp)
        };
        let mut kept = Vec::with_capacity(routes.len());
        for (n, mut r) in std::mem::take(routes).into_iter().enumerate() {
            let r_loc = match str_at(&r, "/name") {
                "" => format!("{loc} / route #{n}"),
                name => format!("{loc} / route {name}"),
            };
            if self.patch_object(&rp, false, &mut r, &r_loc, |run, r, cp| {
                applies(run, cp) && route_match(r, cp)
            }) {
                kept.push(r);
            }
        }
        for &i in &rp {
            let cp = self.patches[i].cp;
            if !applies(self, cp) {
                continue;
            }
            let has = has_route_match(cp);
            let value = cp.value.clone();
            let first = kept.iter().position(|r| route_match(r, cp));
            let done = match (cp.operation, has, first) {
                (Operation::Add, _, _) | (Operation::InsertAfter, false, _) => {
                    kept.push(value);
                    true
                }
                (Operation::InsertBefore | Operation::InsertFirst, false, _) => {
                    kept.insert(0, value);
                    true
                }
                (Operation::InsertAfter, true, Some(at)) => {
                    kept.insert(at + 1, value);
                    true
                }
                (Operation::InsertBefore, true, Some(at)) => {
                    kept.insert(at, value);
                    true
                }
                // rc_patch.go: INSERT_FIRST with a route match inserts at the top, if the
                // matched route exists.
                (Operation::InsertFirst, true, Some(_)) => {
                    kept.insert(0, value);
                    true
                }
                _ => false,
            };
            if done {
                self.hit(
                    i,
                    format!("{loc} / route {} (inserted)", str_at(&cp.value, "/name")),
                );
            }
        }
        *routes = kept;
    }

    fn clusters(&mut self, root: &mut Value) {
        let cps = self.indices(ApplyTo::Cluster);
        if cps.is_empty() {
            return;
        }
        let Some(sr) = root
            .get_mut("static_resources")
            .and_then(Value::as_object_mut)
        else {
            return;
        };
        let Value::Array(clusters) = sr
            .entry("clusters")
            .or_insert_with(|| Value::Array(Vec::new()))
        else {
            return;
        };
        let mut kept = Vec::with_capacity(clusters.len());
        for mut c in std::mem::take(clusters) {
            let Some(context) = self.cluster_context(&c) else {
                kept.push(c);
                continue;
            };
            let ctx_ok =
                |cp: &ConfigPatch| cp.context == PatchContext::Any || cp.context == context;
            // cluster_patch.go ShouldKeepCluster: any matching REMOVE drops it.
            let mut removed = false;
            for &i in &cps {
                let cp = self.patches[i].cp;
                if cp.operation == Operation::Remove && ctx_ok(cp) && cluster_match(&c, cp) {
                    self.hit(i, format!("cluster {}", str_at(&c, "/name")));
                    removed = true;
                }
            }
            if removed {
                continue;
            }
            for &i in &cps {
                let cp = self.patches[i].cp;
                if !cp.operation.is_merge() || !ctx_ok(cp) || !cluster_match(&c, cp) {
                    continue;
                }
                self.hit(i, format!("cluster {}", str_at(&c, "/name")));
                self.merge_cluster(i, &mut c);
            }
            kept.push(c);
        }
        for &i in &cps {
            let cp = self.patches[i].cp;
            let inserted = match self.istiod_waypoint {
                Some(_) => cp.context == PatchContext::SidecarInbound,
                None => self.ctx_ok(cp),
            };
            if cp.operation == Operation::Add && inserted {
                self.hit(i, format!("cluster {} (added)", str_at(&cp.value, "/name")));
                kept.push(cp.value.clone());
            }
        }
        *clusters = kept;
    }

    /// The patch context cluster `c` is patched with, or `None` when no MERGE / REMOVE reaches
    /// it (see [`IstiodWaypointRules`]).
    fn cluster_context(&self, c: &Value) -> Option<PatchContext> {
        if self.istiod_waypoint.is_none() {
            return Some(self.context);
        }
        str_at(c, "/name")
            .starts_with("outbound|")
            .then_some(PatchContext::SidecarOutbound)
    }

    /// cluster_patch.go `mergeTransportSocketCluster`: a patch `transport_socket` with the
    /// cluster's socket name merges into its typed config; the rest merges as a message.
    fn merge_cluster(&mut self, i: usize, c: &mut Value) {
        let cp = self.patches[i].cp;
        let mut value = cp.value.clone();
        let same_socket = value
            .pointer("/transport_socket/name")
            .and_then(Value::as_str)
            .is_some_and(|n| {
                c.pointer("/transport_socket/name").and_then(Value::as_str) == Some(n)
            });
        if same_socket {
            if let (Some(src), Some(dst)) = (
                value.pointer("/transport_socket/typed_config").cloned(),
                c.pointer_mut("/transport_socket/typed_config"),
            ) {
                let replace = cp.operation == Operation::MergeAndReplaceList;
                if let Err(mut e) = merge_any(dst, &src, "", replace) {
                    e.path = format!("transport_socket.typed_config.{}", e.path);
                    self.fail(i, e);
                    return;
                }
            }
            if let Some(obj) = value.as_object_mut() {
                obj.remove("transport_socket");
            }
        }
        let replace = cp.operation == Operation::MergeAndReplaceList;
        if let Err(e) = merge(c, &value, "", replace) {
            self.fail(i, e);
        }
    }
}

/// Where a list operation on a filter list under `loc` acted: the matched filter, or the one
/// the patch adds.
fn list_loc(loc: &str, kind: &str, cp: &ConfigPatch, target: Option<&str>) -> String {
    let added = str_at(&cp.value, "/name");
    match (cp.operation, target) {
        // Without a filter match INSERT_BEFORE inserts first and INSERT_AFTER appends
        // (listener_patch.go, see `list_op`).
        (Operation::InsertBefore, None) => format!("{loc} / {kind} {added} (inserted first)"),
        (Operation::InsertAfter, None) => format!("{loc} / {kind} {added} (added)"),
        (Operation::Add | Operation::InsertFirst, _) | (_, None) => {
            format!("{loc} / {kind} {added} ({})", verb(cp.operation))
        }
        (_, Some(t)) => format!("{loc} / {kind} {t} ({})", verb(cp.operation)),
    }
}

fn verb(op: Operation) -> &'static str {
    match op {
        Operation::Add => "added",
        Operation::InsertFirst => "inserted first",
        Operation::InsertBefore => "inserted before",
        Operation::InsertAfter => "inserted after",
        Operation::Replace => "replaced",
        Operation::Remove => "removed",
        Operation::Merge | Operation::MergeAndReplaceList => "merged",
    }
}

/// ADD / INSERT_FIRST / INSERT_BEFORE / INSERT_AFTER / REPLACE / REMOVE on a filter list
/// (istio/istio listener_patch.go with util.go's `insertBeforeFunc` / `insertAfterFunc` /
/// `replaceFunc`: the first matching filter). `has_match` says whether the patch names a
/// filter. Returns whether the list changed.
fn list_op(
    list: &mut Vec<Value>,
    cp: &ConfigPatch,
    has_match: bool,
    matches: impl Fn(&Value) -> bool,
) -> bool {
    let value = cp.value.clone();
    let first = list.iter().position(&matches);
    match (cp.operation, has_match, first) {
        (Operation::Add, _, _) | (Operation::InsertAfter, false, _) => {
            list.push(value);
            true
        }
        (Operation::InsertFirst, _, _) | (Operation::InsertBefore, false, _) => {
            list.insert(0, value);
            true
        }
        (Operation::InsertBefore, true, Some(at)) => {
            list.insert(at, value);
            true
        }
        (Operation::InsertAfter, true, Some(at)) => {
            list.insert(at + 1, value);
            true
        }
        (Operation::Replace, true, Some(at)) => {
            list[at] = value;
            true
        }
        (Operation::Remove, true, Some(_)) => {
            list.retain(|f| !matches(f));
            true
        }
        _ => false,
    }
}
