//! The verified JWT payload a request carries, as Envoy's `jwt_authn` filter verified it, and
//! the claim lookups AuthorizationPolicy `requestPrincipals` / `request.auth.*` make on it.
//!
//! istiod matches these with Envoy metadata matchers on
//! `filter_metadata["envoy.filters.http.jwt_authn"]["payload"]`
//! (`pilot/pkg/security/authz/model/util.go:75-110 @ 1.30.3`): a string matcher applies to a
//! string value, and the "extended JWT" list matcher (`matcher/metadata.go:52-90 @ 1.30.3`)
//! also to any string element of a list. Numbers, booleans and objects never match.

/// A claim value. Only what a string matcher can see is kept apart; everything else is
/// [`Claim::Other`].
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// A JSON string.
    Str(String),
    /// A JSON array.
    List(Vec<Claim>),
    /// A JSON object, in document order.
    Object(Vec<(String, Claim)>),
    /// A number, boolean or null.
    Other,
}

/// Claims Envoy's `jwt_authn` splits on spaces before storing the payload in metadata: istiod
/// always sets `normalize_payload_in_metadata.space_delimited_claims` to these plus the rule's
/// own (`pilot/pkg/security/authn/policy_applier.go:169-171, 350-364 @ 1.30.3`).
pub const DEFAULT_SPACE_DELIMITED_CLAIMS: [&str; 2] = ["permission", "scope"];

/// The verified payload of a request's JWT.
#[derive(Debug, Clone, PartialEq)]
pub struct JwtPayload {
    root: Claim,
}

impl JwtPayload {
    /// The payload of a verified token. `space_delimited` top-level string claims become lists
    /// of their space-separated words, as Envoy's `normalize_payload_in_metadata` stores them.
    pub fn new(root: Claim, space_delimited: &[String]) -> JwtPayload {
        let root = match root {
            Claim::Object(fields) => Claim::Object(
                fields
                    .into_iter()
                    .map(|(k, v)| match v {
                        Claim::Str(s)
                            if space_delimited.contains(&k)
                                || DEFAULT_SPACE_DELIMITED_CLAIMS.contains(&k.as_str()) =>
                        {
                            let words = s
                                .split(' ')
                                .filter(|w| !w.is_empty())
                                .map(|w| Claim::Str(w.to_owned()))
                                .collect();
                            (k, Claim::List(words))
                        }
                        v => (k, v),
                    })
                    .collect(),
            ),
            other => other,
        };
        JwtPayload { root }
    }

    /// The claim at `path` (object keys from the top), if present.
    pub fn get(&self, path: &[Box<str>]) -> Option<&Claim> {
        let mut at = &self.root;
        for key in path {
            let Claim::Object(fields) = at else {
                return None;
            };
            // Envoy's Struct keeps the last of duplicate keys.
            at = fields
                .iter()
                .rev()
                .find(|(k, _)| **k == **key)
                .map(|(_, v)| v)?;
        }
        Some(at)
    }

    /// A top-level claim that is a string (`iss`, `sub` for requestPrincipals: a plain
    /// metadata string matcher, no list).
    pub fn string(&self, name: &str) -> Option<&str> {
        match self.get(&[name.into()]) {
            Some(Claim::Str(s)) => Some(s),
            _ => None,
        }
    }
}

/// Whether `claim` is a string that `m` accepts or a list with such a string element (istiod's
/// extended JWT list matcher: `OrMatch{ListMatch{OneOf}, value}`).
pub(crate) fn any_string(claim: &Claim, m: impl Fn(&str) -> bool) -> bool {
    match claim {
        Claim::Str(s) => m(s),
        Claim::List(items) => items.iter().any(|c| matches!(c, Claim::Str(s) if m(s))),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(f: &[(&str, Claim)]) -> Claim {
        Claim::Object(f.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
    }
    fn s(v: &str) -> Claim {
        Claim::Str(v.into())
    }

    #[test]
    fn scope_is_split_on_spaces() {
        let p = JwtPayload::new(obj(&[("scope", s("read  write"))]), &[]);
        assert_eq!(
            p.get(&["scope".into()]),
            Some(&Claim::List(vec![s("read"), s("write")]))
        );
    }

    #[test]
    fn extra_space_delimited_claim_is_split() {
        let p = JwtPayload::new(obj(&[("roles", s("a b"))]), &["roles".into()]);
        assert!(matches!(p.get(&["roles".into()]), Some(Claim::List(l)) if l.len() == 2));
    }

    #[test]
    fn nested_lookup() {
        let p = JwtPayload::new(obj(&[("a", obj(&[("b", s("x"))]))]), &[]);
        assert_eq!(p.get(&["a".into(), "b".into()]), Some(&s("x")));
        assert_eq!(p.get(&["a".into(), "c".into()]), None);
        assert_eq!(p.string("a"), None);
    }

    #[test]
    fn list_matches_any_string_element_only() {
        let l = Claim::List(vec![Claim::Other, s("x")]);
        assert!(any_string(&l, |v| v == "x"));
        assert!(!any_string(&Claim::Other, |_| true));
    }
}

/// Test helper: a payload from `"k=v;a.b=x;aud=x,y"` (dotted keys nest, commas make lists).
#[cfg(test)]
pub(crate) mod tests_support {
    use super::{Claim, JwtPayload};

    fn insert(fields: &mut Vec<(String, Claim)>, path: &[&str], value: Claim) {
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        if rest.is_empty() {
            fields.push(((*first).to_owned(), value));
            return;
        }
        if !fields.iter().any(|(k, _)| k == first) {
            fields.push(((*first).to_owned(), Claim::Object(Vec::new())));
        }
        if let Some((_, Claim::Object(inner))) = fields.iter_mut().find(|(k, _)| k == first) {
            insert(inner, rest, value);
        }
    }

    pub(crate) fn payload(spec: &str) -> JwtPayload {
        let mut fields = Vec::new();
        for entry in spec.split(';').filter(|e| !e.is_empty()) {
            let (k, v) = entry.split_once('=').unwrap_or((entry, ""));
            let value = if v.contains(',') {
                Claim::List(v.split(',').map(|s| Claim::Str(s.into())).collect())
            } else if v == "#" {
                Claim::Other
            } else {
                Claim::Str(v.into())
            };
            let path: Vec<&str> = k.split('.').collect();
            insert(&mut fields, &path, value);
        }
        JwtPayload::new(Claim::Object(fields), &[])
    }
}

/// A token counts only for services its issuer's RequestAuthentication binds.
#[cfg(test)]
mod scope_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use crate::tests::{policy, rv, service, HOST};
    use crate::{wire, CompiledPolicy};

    fn compiled(bound_services: &[&str]) -> CompiledPolicy {
        let mut svc = service(HOST, wire::RouteSource::Default, vec![]);
        svc.authorization_policies = vec![0];
        let mut p = policy(vec![svc]);
        p.authorization_policies = vec![wire::AuthorizationPolicy {
            origin: Some(wire::Origin {
                namespace: "default".into(),
                name: "jwt".into(),
                ..Default::default()
            }),
            action: wire::AuthorizationAction::Allow as i32,
            rules: vec![wire::AuthorizationRule {
                from: vec![wire::Source {
                    request_principals: vec!["iss/alice".into()],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            dry_run: false,
        }];
        p.jwt_rules = vec![wire::JwtRule {
            issuer: "iss".into(),
            services: bound_services.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }];
        CompiledPolicy::compile(&p).unwrap()
    }

    /// pilot/pkg/networking/core/listener_waypoint.go:876-878 @ 1.30.3: jwt_authn per chain.
    #[test]
    fn token_counts_only_where_its_issuer_binds() {
        let payload = super::tests_support::payload("iss=iss;sub=alice");
        let mut req = rv("/", &[]);
        req.jwt = Some(&payload);
        assert!(compiled(&[HOST]).authorize(&req).allowed());
        assert!(!compiled(&["other.default.svc.cluster.local"])
            .authorize(&req)
            .allowed());
    }
}
