//! Which Gateway is the waypoint, and which services it serves.

use super::{CompileOptions, USE_WAYPOINT, USE_WAYPOINT_NAMESPACE, WAYPOINT_FOR};
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

/// Marks the services the waypoint serves (`istio.io/use-waypoint` on the service, else on
/// its namespace).
pub(super) fn compute_served(ctx: &mut Ctx) {
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
