//! Checks istiod makes (or would fail on) for rule values.

use crate::diag::ObjRef;
use crate::resolve::Ctx;
use crate::util::validate_regex;

/// Istio validation (istio/istio pkg/config/security `CheckEmptyValues`): an empty string in
/// any value list of a rule is an error ("empty value not allowed"); `spiffe://` alone is an
/// empty principal.
pub(super) fn empty_values(ctx: &mut Ctx, at: &ObjRef, field: &str, values: &[String]) {
    for (k, v) in values.iter().enumerate() {
        if v.is_empty() || v == "spiffe://" {
            ctx.err(at, format!("{field}[{k}]"), "empty value not allowed");
        }
    }
}

/// Regex metacharacters (RE2): istiod pastes some values into regexes unquoted.
fn has_regex_meta(s: &str) -> bool {
    s.contains([
        '\\', '.', '+', '*', '?', '(', ')', '|', '[', ']', '{', '}', '^', '$',
    ])
}

/// Which regex istiod builds from a value (istio/istio pilot/pkg/security/authz/matcher):
/// the regex must compile, or Envoy would reject the whole RBAC filter istiod pushes.
#[derive(Clone, Copy)]
pub(super) enum IstiodRegex {
    /// `principals`, `source.principal`: `*<suffix>` → `spiffe://.*<suffix>`.
    Principal,
    /// `namespaces`, `source.namespace`: `.*/ns/<v>/.*`, `*` → `.*`.
    Namespace,
}

/// Checks that the regexes istiod builds from `values` compile.
pub(super) fn istiod_regexes(
    ctx: &mut Ctx,
    at: &ObjRef,
    field: &str,
    values: &[String],
    kind: IstiodRegex,
) {
    for (k, v) in values.iter().enumerate() {
        let re = match kind {
            IstiodRegex::Principal => match strip_spiffe(v).strip_prefix('*') {
                Some(s) if has_regex_meta(s) => format!("^(?:.*{s})$"),
                _ => continue,
            },
            IstiodRegex::Namespace if has_regex_meta(v) => {
                format!("^(?:(?:.*/)?ns/{}/.*)$", v.replace('*', ".*"))
            }
            IstiodRegex::Namespace => continue,
        };
        if let Err(e) = validate_regex(&re) {
            ctx.err(
                at,
                format!("{field}[{k}]"),
                format!("{v:?}: istiod would emit an invalid regex: {e}"),
            );
        }
    }
}

/// A principal without its `spiffe://` scheme, as the policy stores it.
pub(super) fn strip_spiffe(p: &str) -> String {
    p.strip_prefix("spiffe://").unwrap_or(p).to_string()
}
