//! `mirror` / `mirrorPercentage` / `mirrors` → mirrors (mirrorPercentage wins over the
//! deprecated mirrorPercent; neither means 100%; an explicit 0 means no mirror: istiod
//! `MirrorPercent` / `MirrorPercentByPolicy` return nil and no mirror policy is written,
//! route.go:904-946 and 665-677 @ 1.30.3).

use super::percent;
use crate::diag::ObjRef;
use crate::model::VsHttpRoute;
use crate::resolve::{resolve_dest, Ctx};
use crate::util::fqdn;
use layover_proto::v1 as pb;

/// The mirrors of `http` for a request that arrived on `lp`.
pub(super) fn mirrors(
    ctx: &mut Ctx,
    at: &ObjRef,
    path: &str,
    http: &VsHttpRoute,
    lp: Option<u32>,
) -> Vec<pb::Mirror> {
    let ns = at.namespace.clone();
    let mut out = Vec::new();
    if let Some(m) = &http.mirror {
        // mirrorPercentage wins over the deprecated mirrorPercent; neither = 100%.
        let pct = match (&http.mirror_percentage, http.mirror_percent) {
            (Some(p), _) => percent(ctx, at, &format!("{path}.mirrorPercentage"), p),
            (None, Some(p)) => f64::from(p),
            (None, None) => 100.0,
        };
        let host = fqdn(&m.host, &ns);
        let d = resolve_dest(
            ctx,
            at,
            &format!("{path}.mirror"),
            &host,
            m.subset.as_deref().unwrap_or(""),
            m.port.as_ref().map(|p| p.number),
            lp,
        );
        if pct > 0.0 {
            out.push(pb::Mirror {
                cluster: d.cluster,
                host: d.host,
                port: d.port,
                subset: d.subset,
                percentage: pct,
            });
        }
    }
    if http.mirror.is_some() && !http.mirrors.is_empty() {
        ctx.err(
            at,
            format!("{path}.mirrors"),
            "mirror and mirrors are mutually exclusive",
        );
    }
    for (k, m) in http.mirrors.iter().enumerate() {
        let mp = format!("{path}.mirrors[{k}]");
        let pct = match &m.percentage {
            Some(p) => percent(ctx, at, &format!("{mp}.percentage"), p),
            None => 100.0,
        };
        let host = fqdn(&m.destination.host, &ns);
        let d = resolve_dest(
            ctx,
            at,
            &format!("{mp}.destination"),
            &host,
            m.destination.subset.as_deref().unwrap_or(""),
            m.destination.port.as_ref().map(|p| p.number),
            lp,
        );
        if pct > 0.0 {
            out.push(pb::Mirror {
                cluster: d.cluster,
                host: d.host,
                port: d.port,
                subset: d.subset,
                percentage: pct,
            });
        }
    }
    out
}
