//! `HTTPRewrite` → a rewrite (istio `validateHTTPRewrite`).

use crate::diag::ObjRef;
use crate::model::VsRewrite;
use crate::resolve::Ctx;
use crate::util::validate_regex;
use layover_proto::v1 as pb;

/// Validates and translates `rewrite` (at `{path}.rewrite`).
pub(super) fn rewrite(ctx: &mut Ctx, at: &ObjRef, path: &str, rw: &VsRewrite) -> pb::Rewrite {
    if rw.uri.as_deref().is_some_and(|u| !u.is_empty()) && rw.uri_regex_rewrite.is_some() {
        ctx.err(
            at,
            format!("{path}.rewrite"),
            "uri and uriRegexRewrite are mutually exclusive",
        );
    }
    // istio validateHTTPRewrite.
    if rw.uri.as_deref().unwrap_or("").is_empty()
        && rw.uri_regex_rewrite.is_none()
        && rw.authority.as_deref().unwrap_or("").is_empty()
    {
        ctx.err(
            at,
            format!("{path}.rewrite"),
            "rewrite must specify at least one of uri, uriRegexRewrite, or authority",
        );
    }
    if let Some(rr) = &rw.uri_regex_rewrite {
        if rr.pattern.is_empty() || rr.rewrite.is_empty() {
            ctx.err(
                at,
                format!("{path}.rewrite.uriRegexRewrite"),
                "uriRegexRewrite requires both match and rewrite",
            );
        }
    }
    let mut out = pb::Rewrite {
        authority: rw.authority.clone().unwrap_or_default(),
        ..Default::default()
    };
    if let Some(u) = rw.uri.as_deref().filter(|u| !u.is_empty()) {
        out.uri = u.to_string();
        out.has_uri = true;
    }
    if let Some(rr) = &rw.uri_regex_rewrite {
        if let Err(e) = validate_regex(&rr.pattern) {
            ctx.err(at, format!("{path}.rewrite.uriRegexRewrite.match"), e);
        }
        out.uri_regex = Some(pb::RegexRewrite {
            pattern: rr.pattern.clone(),
            substitution: rr.rewrite.clone(),
        });
    }
    out
}
