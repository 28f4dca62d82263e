//! `Headers` (request / response set, add, remove) → header operations; names lower-cased.
//!
//! istiod `TranslateHeadersOperations` (pilot/pkg/networking/core/route/route.go:1032-1057
//! @ 1.30.3): a request `set` / `add` of `:authority` or `host` becomes the route's host rewrite
//! (`set` wins over `add`, route.go:1044-1048), and every pseudo-header or `host` entry is
//! dropped from the operations Envoy receives (`isInternalHeader`, route.go:1011-1013, used by
//! `translateAppendHeaders` route.go:982 and `dropInternal` route.go:1020).

use crate::model::VsHeaderOps;
use layover_proto::v1 as pb;
use std::collections::BTreeMap;

/// istiod `isInternalHeader` (route.go:1011-1013 @ 1.30.3).
pub(crate) fn is_internal(name: &str) -> bool {
    name.starts_with(':') || name.eq_ignore_ascii_case("host")
}

/// istiod `isAuthorityHeader` (route.go:1016-1018 @ 1.30.3).
pub(crate) fn is_authority(name: &str) -> bool {
    name.eq_ignore_ascii_case(":authority") || name.eq_ignore_ascii_case("host")
}

/// Header operations of one direction, `None` when absent; internal headers dropped.
pub(super) fn header_ops(h: Option<&VsHeaderOps>) -> Option<pb::HeaderOperations> {
    header_ops_and_authority(h).0
}

fn values(m: &BTreeMap<String, String>) -> Vec<pb::HeaderValue> {
    m.iter()
        .filter(|(k, _)| !is_internal(k))
        .map(|(k, v)| pb::HeaderValue {
            name: k.to_ascii_lowercase(),
            value: v.clone(),
        })
        .collect()
}

/// Header operations plus the authority a request `set` (else `add`) of `:authority` / `host`
/// asks for (route.go:1036-1048 @ 1.30.3; for a map "last one wins", route.go:979).
pub(super) fn header_ops_and_authority(
    h: Option<&VsHeaderOps>,
) -> (Option<pb::HeaderOperations>, Option<String>) {
    let Some(h) = h else {
        return (None, None);
    };
    let pick = |m: &BTreeMap<String, String>| {
        m.iter()
            .filter(|(k, _)| is_authority(k))
            .map(|(_, v)| v.clone())
            .next_back()
    };
    let authority = pick(&h.set)
        .filter(|a| !a.is_empty())
        .or_else(|| pick(&h.add))
        .filter(|a| !a.is_empty());
    let ops = pb::HeaderOperations {
        set: values(&h.set),
        add: values(&h.add),
        remove: h
            .remove
            .iter()
            .filter(|k| !is_internal(k))
            .map(|k| k.to_ascii_lowercase())
            .collect(),
    };
    (Some(ops), authority)
}
