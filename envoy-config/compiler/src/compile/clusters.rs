//! DestinationRule subsets and the clusters (with endpoints) of every service port.

use super::{Endpoint, Registry};
use crate::model::TrafficPolicy;
use crate::object::{Object, ObjectKind};
use crate::resolve::{sort_by_creation, Ctx, SubsetDef};
use crate::util::{fqdn, host_matches};
use layover_proto::v1 as pb;
use std::collections::BTreeMap;

/// DestinationRules, oldest first, → per-host load balancer and subsets (several rules for
/// one host are merged as istiod `mergeDestinationRule` does).
pub(super) fn collect_destination_rules(ctx: &mut Ctx) {
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
        super::traffic::check_unsupported(ctx, &o.at, &d.spec);
        for t in targets {
            let merging = ctx.drs.contains_key(&t);
            let entry = ctx.drs.entry(t.clone()).or_default();
            if !merging {
                entry.policy = d.spec.traffic_policy.clone().map(|tp| (tp, o.at.clone()));
            }
            let mut dup = Vec::new();
            for (i, s) in d.spec.subsets.iter().enumerate() {
                if entry.subsets.iter().any(|(n, _)| n == &s.name) {
                    dup.push((i, s.name.clone()));
                    continue;
                }
                entry.subsets.push((
                    s.name.clone(),
                    SubsetDef {
                        labels: s.labels.clone(),
                        policy: s.traffic_policy.clone(),
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

fn subset_of(sel: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    sel.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// One cluster per service port and subset, with the endpoints (inline ServiceEntry
/// endpoints, selected WorkloadEntries) behind it.
pub(super) fn build_clusters(ctx: &mut Ctx) -> (Vec<pb::Cluster>, Registry) {
    let bundle = ctx.bundle;
    let mut clusters = Vec::new();
    let mut registry = Registry::default();
    let wes: Vec<&Object> = bundle
        .objects
        .iter()
        .filter(|o| matches!(o.kind, ObjectKind::WorkloadEntry(_)))
        .collect();
    let services = ctx.services.clone();
    for svc in &services {
        let dr = ctx.drs.get(&svc.hostname).cloned().unwrap_or_default();
        let mut variants: Vec<(String, BTreeMap<String, String>, Option<&TrafficPolicy>)> =
            vec![(String::new(), BTreeMap::new(), None)];
        for (n, s) in &dr.subsets {
            variants.push((n.clone(), s.labels.clone(), s.policy.as_ref()));
        }
        let dr_policy = dr.policy.as_ref().map(|(tp, _)| tp);
        for p in &svc.ports {
            for (subset, sub_labels, subset_policy) in &variants {
                let settings = super::traffic::cluster_settings(
                    ctx,
                    dr.policy.as_ref().map(|(_, at)| at),
                    dr_policy,
                    (!subset.is_empty()).then_some(*subset_policy),
                    p.number,
                );
                let name = ctx.cluster_name(p.number, subset, &svc.hostname);
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
                    load_balancer: settings.load_balancer,
                    connection_pool: settings.connection_pool,
                    outlier_detection: settings.outlier_detection,
                });
            }
        }
    }
    clusters.sort_by(|a, b| a.name.cmp(&b.name));
    (clusters, registry)
}
