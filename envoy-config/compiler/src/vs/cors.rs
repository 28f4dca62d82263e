//! `CorsPolicy` → CORS (allowOrigins string matches, legacy allowOrigin exact values).

use super::duration;
use super::match_::string_match;
use crate::diag::ObjRef;
use crate::model::VsCors;
use crate::resolve::Ctx;
use layover_proto::v1 as pb;

/// Validates and translates `corsPolicy` (at `{path}.corsPolicy`).
pub(super) fn cors(ctx: &mut Ctx, at: &ObjRef, path: &str, c: &VsCors) -> pb::CorsPolicy {
    let cp = format!("{path}.corsPolicy");
    let mut origins = Vec::new();
    for (k, o) in c.allow_origins.iter().enumerate() {
        if let Some(m) = string_match(ctx, at, &format!("{cp}.allowOrigins[{k}]"), o) {
            origins.push(m);
        }
    }
    for o in &c.allow_origin {
        origins.push(pb::StringMatch {
            kind: Some(pb::string_match::Kind::Exact(o.clone())),
        });
    }
    let max_age = c
        .max_age
        .as_ref()
        .map(|m| duration(ctx, at, &format!("{cp}.maxAge"), m) / 1000)
        .unwrap_or(0);
    let forward = match c.unmatched_preflights.as_deref() {
        None | Some("UNSPECIFIED") | Some("FORWARD") => true,
        Some("IGNORE") => false,
        Some(o) => {
            ctx.err(
                at,
                format!("{cp}.unmatchedPreflights"),
                format!("unknown value {o:?} (FORWARD, IGNORE)"),
            );
            true
        }
    };
    pb::CorsPolicy {
        allow_origins: origins,
        allow_methods: c.allow_methods.clone(),
        allow_headers: c.allow_headers.clone(),
        expose_headers: c.expose_headers.clone(),
        max_age_seconds: max_age,
        allow_credentials: match c.allow_credentials {
            None => pb::OptionalBool::Unset,
            Some(true) => pb::OptionalBool::True,
            Some(false) => pb::OptionalBool::False,
        } as i32,
        unmatched_preflights_forward: forward,
    }
}
