//! Which Gateway is the waypoint, and which services it serves.

use super::binding::{bind_service, Binding, Labelled, WaypointInfo};
use super::{CompileOptions, USE_WAYPOINT, WAYPOINT_FOR};
use crate::diag::{Error, Location, Notice, Severity};
use crate::object::{Object, ObjectKind};
use crate::resolve::Ctx;
use std::collections::{BTreeMap, HashMap};

/// Chooses the waypoint Gateway (class istio-waypoint, or the one `--waypoint` names).
pub(super) fn pick_waypoint(ctx: &mut Ctx, opts: &CompileOptions) {
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

/// The waypoint Gateways binding rules can name: class `istio-waypoint`, plus the Gateway the
/// compile was asked for (a drop-in waypoint may have another class).
pub(super) fn waypoint_infos(ctx: &Ctx) -> Vec<WaypointInfo> {
    let chosen = ctx.waypoint.as_ref();
    ctx.bundle
        .objects
        .iter()
        .filter_map(|o| {
            let ObjectKind::Gateway(g) = &o.kind else {
                return None;
            };
            let is_chosen = chosen.is_some_and(|(ns, n)| *ns == o.at.namespace && *n == o.at.name);
            (g.spec.gateway_class_name == "istio-waypoint" || is_chosen).then(|| {
                WaypointInfo::from_gateway(&o.at.namespace, &o.at.name, &g.metadata.labels, &g.spec)
            })
        })
        .collect()
}

/// Namespace name → its labels.
pub(super) fn namespace_labels(ctx: &Ctx) -> HashMap<String, BTreeMap<String, String>> {
    ctx.bundle
        .objects
        .iter()
        .filter_map(|o| match &o.kind {
            ObjectKind::Namespace(n) => Some((n.metadata.name.clone(), n.metadata.labels.clone())),
            _ => None,
        })
        .collect()
}

/// Every service's binding, in `ctx.services` order.
pub(super) fn bindings(ctx: &Ctx, waypoints: &[WaypointInfo]) -> Vec<Binding> {
    let ns_labels = namespace_labels(ctx);
    let empty = BTreeMap::new();
    ctx.services
        .iter()
        .map(|s| {
            let svc = Labelled {
                what: s.origin.clone(),
                namespace: &s.namespace,
                labels: &s.labels,
            };
            bind_service(
                &svc,
                ns_labels.get(&s.namespace).unwrap_or(&empty),
                waypoints,
            )
        })
        .collect()
}

/// Marks the services the waypoint serves: those whose binding (istiod's rules, see
/// [`binding`](super::binding)) is this waypoint. A label that names this waypoint but is
/// refused (attachment denied, wrong traffic type) is a warning on the service.
pub(super) fn compute_served(ctx: &mut Ctx) {
    let Some((wns, wname)) = ctx.waypoint.clone() else {
        ctx.served = vec![true; ctx.services.len()];
        return;
    };
    let key = format!("{wns}/{wname}");
    let waypoints = waypoint_infos(ctx);
    let bindings = bindings(ctx, &waypoints);
    let mut served = Vec::with_capacity(bindings.len());
    for (i, b) in bindings.iter().enumerate() {
        served.push(b.waypoint() == Some(key.as_str()));
        if b.refused() == Some(key.as_str()) {
            let svc = &ctx.services[i];
            ctx.notices.push(Notice {
                severity: Severity::Warning,
                at: Location::Input,
                path: String::new(),
                message: format!(
                    "{} ({}): not served: {}",
                    svc.origin,
                    svc.hostname,
                    b.reason()
                ),
            });
        }
    }
    if !served.iter().any(|s| *s) {
        ctx.notices.push(Notice {
            severity: Severity::Info,
            at: Location::Input,
            path: String::new(),
            message: format!(
                "waypoint {key} serves no service: label a Service, ServiceEntry or Namespace with {USE_WAYPOINT}: {wname}"
            ),
        });
    }
    ctx.served = served;
}
