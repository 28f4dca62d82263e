//! Protobuf merge semantics on proto-JSON values, as istiod's `merge.Merge`
//! (istio/istio `pkg/proto/merge`, which follows `proto.Merge`) applies them to Envoy messages:
//!
//! - messages merge field by field, recursively;
//! - repeated fields append (`MERGE_AND_REPLACE_LIST`: replace);
//! - scalars replace;
//! - setting one member of a `oneof` clears the others (table [`ONEOFS`]: the oneofs of the
//!   Envoy messages EnvoyFilters commonly patch — route actions, cluster specifiers, path
//!   matchers, filter config types, cluster discovery and load-balancer configs);
//! - an `Any` (an object with `@type`) inside a merged message is replaced whole, as
//!   `proto.Merge` replaces its `type_url` and `value` bytes. Filter-level MERGE
//!   (`HTTP_FILTER` / `NETWORK_FILTER`) merges `typed_config` contents instead
//!   ([`merge_any`], istiod's `MergeAnyWithAny`).
//!
//! Differences from protobuf, without a schema: a JSON `null` in the patch is skipped (proto
//! JSON reads it as "unset"), and scalar zero values in the patch replace (protobuf skips
//! proto3 zero scalars; write the wrapper-typed fields Envoy uses for real toggles).
//! A structural mismatch (an object where the config has a list, …) is an error naming the
//! field, never a silent replacement.

use serde_json::{Map, Value};

/// Groups of fields of which at most one may be set (Envoy `oneof`s), by proto JSON name.
pub(crate) const ONEOFS: &[&[&str]] = &[
    // config.route.v3.Route.action
    &[
        "route",
        "redirect",
        "direct_response",
        "filter_action",
        "non_forwarding_action",
    ],
    // config.route.v3.RouteAction.cluster_specifier
    &[
        "cluster",
        "cluster_header",
        "weighted_clusters",
        "cluster_specifier_plugin",
        "inline_cluster_specifier_plugin",
    ],
    // config.route.v3.RouteAction.host_rewrite_specifier
    &[
        "host_rewrite_literal",
        "auto_host_rewrite",
        "host_rewrite_header",
        "host_rewrite_path_regex",
    ],
    // config.route.v3.RouteMatch.path_specifier
    &[
        "prefix",
        "path",
        "safe_regex",
        "connect_matcher",
        "path_separated_prefix",
        "path_match_policy",
    ],
    // type.matcher.v3.StringMatcher.match_pattern (prefix / safe_regex shared with the above)
    &[
        "exact",
        "prefix",
        "suffix",
        "safe_regex",
        "contains",
        "custom",
    ],
    // HttpFilter / Filter / ListenerFilter config_type
    &["typed_config", "config_discovery"],
    // HttpConnectionManager.route_specifier
    &["rds", "route_config", "scoped_routes"],
    // config.cluster.v3.Cluster.cluster_discovery_type
    &["type", "cluster_type"],
    // config.cluster.v3.Cluster.lb_config
    &[
        "ring_hash_lb_config",
        "maglev_lb_config",
        "original_dst_lb_config",
        "least_request_lb_config",
        "round_robin_lb_config",
    ],
];

/// A merge that could not be done: the field (relative to the patch value) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MergeError {
    pub path: String,
    pub expected: String,
    pub found: String,
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Merges `src` into `dst` (both Envoy messages as proto JSON).
pub(crate) fn merge(
    dst: &mut Value,
    src: &Value,
    path: &str,
    replace_lists: bool,
) -> Result<(), MergeError> {
    match (dst, src) {
        (_, Value::Null) => Ok(()),
        (Value::Object(d), Value::Object(s)) => merge_objects(d, s, path, replace_lists),
        (Value::Array(d), Value::Array(s)) => {
            if replace_lists {
                *d = s.clone();
            } else {
                d.extend(s.iter().cloned());
            }
            Ok(())
        }
        (d @ Value::Null, s) => {
            *d = s.clone();
            Ok(())
        }
        (d, s) => {
            let compatible = match (&*d, s) {
                (Value::Object(_), _) | (_, Value::Object(_)) => false,
                (Value::Array(_), _) | (_, Value::Array(_)) => false,
                (Value::Bool(_), other) | (other, Value::Bool(_)) => other.is_boolean(),
                // Numbers and strings interchange in proto JSON (64-bit integers, enums,
                // durations written either way).
                _ => true,
            };
            if !compatible {
                return Err(MergeError {
                    path: path.to_string(),
                    expected: kind(d).to_string(),
                    found: kind(s).to_string(),
                });
            }
            *d = s.clone();
            Ok(())
        }
    }
}

fn merge_objects(
    d: &mut Map<String, Value>,
    s: &Map<String, Value>,
    path: &str,
    replace_lists: bool,
) -> Result<(), MergeError> {
    if s.contains_key("@type") || d.contains_key("@type") {
        // An Any: proto.Merge replaces type_url and value; the message is the patch's.
        if !s.contains_key("@type") {
            return Err(MergeError {
                path: path.to_string(),
                expected: "an Any with `@type`".into(),
                found: "an object without `@type`".into(),
            });
        }
        *d = s.clone();
        return Ok(());
    }
    for (k, v) in s {
        if v.is_null() {
            continue;
        }
        clear_oneof_siblings(d, k);
        let p = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        match d.get_mut(k) {
            Some(existing) => merge(existing, v, &p, replace_lists)?,
            None => {
                d.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(())
}

fn clear_oneof_siblings(d: &mut Map<String, Value>, key: &str) {
    for group in ONEOFS {
        if group.contains(&key) {
            for other in group.iter().filter(|o| **o != key) {
                d.remove(*other);
            }
        }
    }
}

/// Filter-level MERGE of two `typed_config`s (istiod's `MergeAnyWithAny`): the patch's type
/// URL is taken to be the existing one (istiod rewrites it so a v2/v3 mismatch still merges),
/// then the two messages merge field by field.
pub(crate) fn merge_any(
    dst: &mut Value,
    src: &Value,
    path: &str,
    replace_lists: bool,
) -> Result<(), MergeError> {
    let (Some(d), Some(s)) = (dst.as_object_mut(), src.as_object()) else {
        return Err(MergeError {
            path: path.to_string(),
            expected: "an object".into(),
            found: kind(src).into(),
        });
    };
    let mut inner = s.clone();
    inner.remove("@type");
    let mut d_inner = d.clone();
    let type_url = d_inner.remove("@type");
    merge_objects(&mut d_inner, &inner, path, replace_lists)?;
    let mut out = Map::new();
    if let Some(t) = type_url {
        out.insert("@type".into(), t);
    }
    out.extend(d_inner);
    *d = out;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    // Rows mirror proto.Merge as istio/istio pkg/proto/merge applies it (merge_test.go):
    // repeated append, nested messages merge, scalars replace, oneof members replace.
    #[test]
    fn proto_merge_rules() {
        let rows: &[(&str, Value, Value, Value)] = &[
            (
                "scalar replaces",
                json!({"a": 1, "b": "x"}),
                json!({"a": 2}),
                json!({"a": 2, "b": "x"}),
            ),
            (
                "repeated appends",
                json!({"l": [1]}),
                json!({"l": [2, 3]}),
                json!({"l": [1, 2, 3]}),
            ),
            (
                "messages merge",
                json!({"m": {"x": 1, "y": 2}}),
                json!({"m": {"y": 3}}),
                json!({"m": {"x": 1, "y": 3}}),
            ),
            (
                "new field added",
                json!({}),
                json!({"n": {"k": true}}),
                json!({"n": {"k": true}}),
            ),
            (
                "null is unset",
                json!({"a": 1}),
                json!({"a": null}),
                json!({"a": 1}),
            ),
            (
                "oneof member replaces its siblings",
                json!({"route": {"cluster": "a", "timeout": "0s"}}),
                json!({"route": {"cluster_header": "x-c"}}),
                json!({"route": {"timeout": "0s", "cluster_header": "x-c"}}),
            ),
            (
                "route action replaces direct_response",
                json!({"direct_response": {"status": 503}}),
                json!({"route": {"cluster": "c"}}),
                json!({"route": {"cluster": "c"}}),
            ),
            (
                "an Any is replaced whole",
                json!({"t": {"@type": "A", "x": 1}}),
                json!({"t": {"@type": "B", "y": 2}}),
                json!({"t": {"@type": "B", "y": 2}}),
            ),
        ];
        for (name, dst, src, want) in rows {
            let mut d = dst.clone();
            merge(&mut d, src, "", false).unwrap();
            assert_eq!(&d, want, "{name}");
        }
    }

    #[test]
    fn replace_list_and_type_mismatch() {
        let mut d = json!({"l": [1]});
        merge(&mut d, &json!({"l": [2]}), "", true).unwrap();
        assert_eq!(d, json!({"l": [2]}));
        let mut d = json!({"m": {"x": 1}});
        let e = merge(&mut d, &json!({"m": "oops"}), "", false).unwrap_err();
        assert_eq!(e.path, "m");
        assert_eq!(
            (e.expected.as_str(), e.found.as_str()),
            ("an object", "a string")
        );
        let e = merge(&mut json!({"b": true}), &json!({"b": 3}), "", false).unwrap_err();
        assert_eq!(e.path, "b");
    }

    // istio/istio listener_patch.go mergeHTTPFilter: the user's type URL is replaced with the
    // existing one, then the two configs merge.
    #[test]
    fn any_with_any_keeps_the_existing_type() {
        let mut d = json!({"@type": "type.googleapis.com/v3.X", "a": 1, "l": [1]});
        merge_any(
            &mut d,
            &json!({"@type": "type.googleapis.com/v2.X", "b": 2, "l": [2]}),
            "",
            false,
        )
        .unwrap();
        assert_eq!(
            d,
            json!({"@type": "type.googleapis.com/v3.X", "a": 1, "l": [1, 2], "b": 2})
        );
    }
}
