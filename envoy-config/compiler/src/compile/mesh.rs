//! MeshConfig (ConfigMap `istio-system/istio`, key `mesh`) → mesh settings.

use crate::object::ObjectKind;
use crate::resolve::{convert_retry, Ctx};
use layover_proto::v1 as pb;

/// Applies MeshConfig (trust domain, root namespace, path normalization, default retry).
pub(super) fn mesh_settings(ctx: &mut Ctx) {
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
