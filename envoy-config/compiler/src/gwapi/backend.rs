//! HTTPRoute `backendRefs` → a weighted forward action (or 500 without usable backends).

use super::filter::{header_mod, merge_ops};
use crate::diag::ObjRef;
use crate::model::HrRule;
use crate::resolve::{resolve_dest, Ctx};
use crate::util::normalize_weights;
use layover_proto::v1 as pb;

/// The action of a rule that does not redirect: its backends, resolved against the request's
/// `parent_port`.
pub(super) fn backends(
    ctx: &mut Ctx,
    at: &ObjRef,
    rp: &str,
    ns: &str,
    rule: &HrRule,
    parent_port: Option<u32>,
) -> pb::http_route::Action {
    let mut dests = Vec::new();
    let mut weights = Vec::new();
    for (bi, b) in rule.backend_refs.iter().enumerate() {
        let bp = format!("{rp}.backendRefs[{bi}]");
        // CRD default weight 1.
        let w = b.weight.unwrap_or(1);
        if !(0..=1_000_000).contains(&w) {
            ctx.err(
                at,
                format!("{bp}.weight"),
                format!("weight {w} is outside 0..1000000"),
            );
            continue;
        }
        if w == 0 {
            continue;
        }
        let host = match backend_host(
            ns,
            b.group.as_deref(),
            b.kind.as_deref(),
            &b.name,
            b.namespace.as_deref(),
        ) {
            Ok(h) => h,
            Err(e) => {
                ctx.err(at, bp, e);
                continue;
            }
        };
        let mut req = None;
        let mut resp = None;
        for (fi, f) in b.filters.iter().enumerate() {
            let fp = format!("{bp}.filters[{fi}]");
            match (f.type_.as_str(), &f.request_header_modifier, &f.response_header_modifier) {
                ("RequestHeaderModifier", Some(h), _) => merge_ops(&mut req, header_mod(h)),
                ("ResponseHeaderModifier", _, Some(h)) => merge_ops(&mut resp, header_mod(h)),
                (t, _, _) => ctx.err(at, fp, format!("backendRef filter {t:?} is not supported (RequestHeaderModifier, ResponseHeaderModifier)")),
            }
        }
        if b.port.is_none() {
            // Gateway API: "Port is required when the referent is a Kubernetes Service";
            // istiod rejects the route ("port is required in backendRef").
            ctx.err(at, format!("{bp}.port"), "port is required in backendRef");
            continue;
        }
        let d = resolve_dest(ctx, at, &bp, &host, "", b.port, parent_port);
        dests.push(pb::Destination {
            cluster: d.cluster,
            host: d.host,
            port: d.port,
            subset: String::new(),
            weight: 0,
            request_headers: req,
            response_headers: resp,
            unavailable: d.unavailable,
        });
        weights.push(w as u64);
    }
    if dests.is_empty() {
        // Gateway API: no backendRefs, or all of weight 0 / invalid → 500.
        pb::http_route::Action::DirectResponse(pb::DirectResponse {
            status: 500,
            body: Vec::new(),
        })
    } else {
        for (d, w) in dests.iter_mut().zip(normalize_weights(&weights)) {
            d.weight = w;
        }
        pb::http_route::Action::Forward(pb::Forward {
            destinations: dests,
        })
    }
}

/// istiod buildDestination: Service names (not hostnames), or Istio `Hostname` backends.
pub(super) fn backend_host(
    ns: &str,
    group: Option<&str>,
    kind: Option<&str>,
    name: &str,
    bns: Option<&str>,
) -> Result<String, String> {
    let group = group.unwrap_or("");
    let kind = kind.unwrap_or("Service");
    match (group, kind) {
        ("" | "core", "Service") => {
            if name.contains('.') {
                return Err(
                    "service name invalid; the name of the Service must be used, not the hostname"
                        .into(),
                );
            }
            Ok(format!("{name}.{}.svc.cluster.local", bns.unwrap_or(ns)))
        }
        ("networking.istio.io", "Hostname") => {
            if bns.is_some() {
                return Err("namespace may not be set with Hostname type".into());
            }
            Ok(name.to_string())
        }
        _ => Err(format!(
            "backend kind {kind} (group {group:?}) is not supported; use a Service"
        )),
    }
}
