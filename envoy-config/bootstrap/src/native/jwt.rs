//! The native (istiod) translation of requestPrincipals and request.auth.*: RBAC metadata
//! matchers on `filter_metadata["envoy.filters.http.jwt_authn"]["payload"]`
//! (`pilot/pkg/security/authz/model/util.go:75-110`, `generator.go:255-375 @ 1.30.3`).

use serde_json::{json, Value};

use crate::jwt_authn::JWT_AUTHN;

/// `payload_in_metadata` istiod sets (`pilot/pkg/xds/filters/filters.go:69 @ 1.30.3`).
const PAYLOAD: &str = "payload";

fn any() -> Value {
    json!({ "safe_regex": { "regex": ".+" } })
}

/// `MetadataStringMatcherForJWTClaim`: a plain string matcher on one top-level claim.
fn claim_string(claim: &str, m: Value) -> Value {
    json!({ "metadata": {
        "filter": JWT_AUTHN,
        "path": [{ "key": PAYLOAD }, { "key": claim }],
        "value": { "string_match": m },
    } })
}

/// One `requestPrincipals` value → AND of `iss` and `sub` matchers (`generator.go:263-320`).
pub(crate) fn principal_id(value: &str) -> Value {
    let (iss, sub, found) = match value.rfind('/') {
        Some(i) => (&value[..i], &value[i + 1..], true),
        None => (value, "", false),
    };
    let exact = |s: &str| json!({ "exact": s });
    let (mi, ms) = if value == "*" {
        (any(), any())
    } else if let Some(rest) = value.strip_prefix('*') {
        if found {
            let mi = if iss == "*" {
                any()
            } else {
                json!({ "suffix": iss.trim_start_matches('*') })
            };
            (mi, exact(sub))
        } else {
            (any(), json!({ "suffix": rest }))
        }
    } else if let Some(rest) = value.strip_suffix('*') {
        if found {
            let ms = if sub == "*" {
                any()
            } else {
                json!({ "prefix": sub.trim_end_matches('*') })
            };
            (exact(iss), ms)
        } else {
            (json!({ "prefix": rest }), any())
        }
    } else {
        (exact(iss), exact(sub))
    };
    json!({ "and_ids": { "ids": [claim_string("iss", mi), claim_string("sub", ms)] } })
}

/// `MetadataListValueMatcher(..., useExtendedJwt=true)` with `StringOrMatcher(values)`: the
/// claim at `path` is a matching string or a list with a matching string element.
pub(crate) fn claim_id(
    path: &[&str],
    values: &[String],
    string_matcher: impl Fn(&str) -> Value,
) -> Value {
    let ms: Vec<Value> = values
        .iter()
        .map(|v| json!({ "string_match": string_matcher(v) }))
        .collect();
    let value = if ms.len() == 1 {
        ms[0].clone()
    } else {
        json!({ "or_match": { "value_matchers": ms } })
    };
    let mut p = vec![json!({ "key": PAYLOAD })];
    p.extend(path.iter().map(|k| json!({ "key": k })));
    json!({ "metadata": {
        "filter": JWT_AUTHN,
        "path": p,
        "value": { "or_match": { "value_matchers": [
            { "list_match": { "one_of": value } },
            value,
        ] } },
    } })
}

/// The claim path of a `request.auth.*` key other than `principal`
/// (`model.go:105-120`, `util.go:45-73 @ 1.30.3`).
pub(crate) fn key_path(key: &str) -> Option<Vec<&str>> {
    match key {
        "request.auth.audiences" => Some(vec!["aud"]),
        "request.auth.presenter" => Some(vec!["azp"]),
        k => {
            let s = k.strip_prefix("request.auth.claims")?;
            let b = s.as_bytes();
            let mut out = Vec::new();
            let mut begin = 0;
            while begin < b.len() {
                let end = (b[begin] == b'[')
                    .then(|| {
                        b.iter()
                            .enumerate()
                            .skip(begin + 1)
                            .find(|(_, c)| **c == b'[' || **c == b']')
                            .filter(|(_, c)| **c == b']')
                            .map(|(i, _)| i)
                    })
                    .flatten();
                match end {
                    Some(e) => {
                        out.push(&s[begin + 1..e]);
                        begin = e + 1;
                    }
                    None => return Some(vec![s.strip_prefix('[')?.strip_suffix(']')?]),
                }
            }
            (!out.is_empty()).then_some(out)
        }
    }
}
