//! `Headers` (request / response set, add, remove) → header operations; names lower-cased.

use crate::model::VsHeaderOps;
use layover_proto::v1 as pb;

/// Header operations of one direction, `None` when absent.
pub(super) fn header_ops(h: Option<&VsHeaderOps>) -> Option<pb::HeaderOperations> {
    let h = h?;
    Some(pb::HeaderOperations {
        set: h
            .set
            .iter()
            .map(|(k, v)| pb::HeaderValue {
                name: k.to_ascii_lowercase(),
                value: v.clone(),
            })
            .collect(),
        add: h
            .add
            .iter()
            .map(|(k, v)| pb::HeaderValue {
                name: k.to_ascii_lowercase(),
                value: v.clone(),
            })
            .collect(),
        remove: h.remove.iter().map(|k| k.to_ascii_lowercase()).collect(),
    })
}
