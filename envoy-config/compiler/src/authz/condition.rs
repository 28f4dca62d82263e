//! `when[]` → a policy condition (known keys only).

use super::validate::{empty_values, istiod_regexes, strip_spiffe, IstiodRegex};
use crate::diag::ObjRef;
use crate::model::AuthzCondition;
use crate::resolve::Ctx;
use crate::util::validate_cidr;
use layover_proto::v1 as pb;

/// Validates and translates a condition (at `wp`); `None` for unsupported or unknown keys
/// (with an error).
pub(super) fn condition(
    ctx: &mut Ctx,
    at: &ObjRef,
    wp: &str,
    w: &AuthzCondition,
) -> Option<pb::Condition> {
    let key = w.key.as_str();
    // request.auth.* reads the JWT payload Envoy's jwt_authn verified
    // (pilot/pkg/security/authz/model/model.go:105-120 @ 1.30.3).
    let jwt_key = matches!(
        key,
        "request.auth.principal" | "request.auth.audiences" | "request.auth.presenter"
    ) || key
        .strip_prefix("request.auth.claims")
        .is_some_and(|r| r.starts_with('[') && r.ends_with(']') && r.len() > 2);
    let known = jwt_key
        || key.starts_with("request.headers[") && key.ends_with(']')
        || key.starts_with("experimental.envoy.filters.")
        || matches!(
            key,
            "source.ip"
                | "remote.ip"
                | "source.namespace"
                | "source.principal"
                | "source.serviceAccount"
                | "destination.ip"
                | "destination.port"
                | "connection.sni"
        );
    if !known {
        ctx.err(
            at,
            format!("{wp}.key"),
            format!("unknown condition key {key:?}"),
        );
        return None;
    }
    if w.values.is_empty() && w.not_values.is_empty() {
        ctx.err(at, wp, "one of values, notValues must be set");
    }
    empty_values(ctx, at, &format!("{wp}.values"), &w.values);
    empty_values(ctx, at, &format!("{wp}.notValues"), &w.not_values);
    let regex_kind = match key {
        "source.principal" => Some(IstiodRegex::Principal),
        "source.namespace" => Some(IstiodRegex::Namespace),
        _ => None,
    };
    if let Some(kind) = regex_kind {
        istiod_regexes(ctx, at, &format!("{wp}.values"), &w.values, kind);
        istiod_regexes(ctx, at, &format!("{wp}.notValues"), &w.not_values, kind);
    }
    for (name, list) in [("values", &w.values), ("notValues", &w.not_values)] {
        for (k, v) in list.iter().enumerate() {
            let bad = match key {
                "source.ip" | "remote.ip" | "destination.ip" => validate_cidr(v).err(),
                "destination.port" => v
                    .parse::<u16>()
                    .err()
                    .map(|_| format!("invalid port {v:?}")),
                _ => None,
            };
            if let Some(e) = bad {
                ctx.err(at, format!("{wp}.{name}[{k}]"), e);
            }
        }
    }
    let map = |v: &Vec<String>| -> Vec<String> {
        if key == "source.principal" {
            v.iter().map(|p| strip_spiffe(p)).collect()
        } else {
            v.clone()
        }
    };
    Some(pb::Condition {
        key: key.to_string(),
        values: map(&w.values),
        not_values: map(&w.not_values),
    })
}
