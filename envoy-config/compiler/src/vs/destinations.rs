//! `HTTPRouteDestination`s → a weighted forward action.

use super::headers::header_ops;
use crate::diag::ObjRef;
use crate::model::VsHttpRoute;
use crate::resolve::{resolve_dest, Ctx};
use crate::util::{fqdn, normalize_weights};
use layover_proto::v1 as pb;

/// Resolves `http.route` for a request that arrived on `lp`. `nerr` is the error count when
/// the route's translation started: "all weights 0" is reported only when nothing else was.
pub(super) fn forward(
    ctx: &mut Ctx,
    at: &ObjRef,
    path: &str,
    http: &VsHttpRoute,
    lp: Option<u32>,
    nerr: usize,
) -> pb::Forward {
    let ns = at.namespace.clone();
    // Weights (istio validation validateHTTPRouteDestinations: no negative weight, and
    // several destinations must not all be 0; route.go: a single destination takes all
    // traffic whatever its weight, 0-weight destinations are skipped).
    let mut dests = Vec::new();
    let mut weights = Vec::new();
    for (k, rd) in http.route.iter().enumerate() {
        let dp = format!("{path}.route[{k}]");
        let w = rd.weight.unwrap_or(0);
        if w < 0 {
            ctx.err(at, format!("{dp}.weight"), format!("weight {w} < 0"));
            continue;
        }
        if http.route.len() > 1 && w == 0 {
            continue;
        }
        let host = fqdn(&rd.destination.host, &ns);
        let d = resolve_dest(
            ctx,
            at,
            &format!("{dp}.destination"),
            &host,
            rd.destination.subset.as_deref().unwrap_or(""),
            rd.destination.port.as_ref().map(|p| p.number),
            lp,
        );
        let hs = rd.headers.as_ref();
        dests.push(pb::Destination {
            cluster: d.cluster,
            host: d.host,
            port: d.port,
            subset: d.subset,
            weight: 0,
            request_headers: header_ops(hs.and_then(|h| h.request.as_ref())),
            response_headers: header_ops(hs.and_then(|h| h.response.as_ref())),
            unavailable: d.unavailable,
        });
        weights.push(w as u64);
    }
    if http.route.len() > 1 && dests.is_empty() && ctx.errors.len() == nerr {
        ctx.err(at, format!("{path}.route"), "total destination weight = 0");
    }
    if dests.len() == 1 {
        dests[0].weight = 100;
    } else if !dests.is_empty() {
        let total: u64 = weights.iter().sum();
        if total != 100 {
            ctx.info(
                at,
                format!("{path}.route"),
                format!("weights sum to {total}, not 100: normalized to 100 keeping their ratios (Envoy splits by the sum)"),
            );
        }
        for (d, w) in dests.iter_mut().zip(normalize_weights(&weights)) {
            d.weight = w;
        }
    }
    pb::Forward {
        destinations: dests,
    }
}
