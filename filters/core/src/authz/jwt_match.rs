//! AuthorizationPolicy matching on the verified JWT: `requestPrincipals` and the
//! `request.auth.*` condition keys, with istiod's matchers
//! (`pilot/pkg/security/authz/model/generator.go:255-375 @ 1.30.3`).

use super::matchers::StrMatch;
use super::Pred;
use crate::jwt::{any_string, JwtPayload};

/// One `requestPrincipals` value: matchers for the `iss` and the `sub` claim.
#[derive(Debug, Clone)]
pub(crate) struct PrincipalPat {
    iss: StrMatch,
    sub: StrMatch,
}

/// The forms of `request.auth.*` keys, for errors.
pub(crate) const KEY_FORMS: &str = "expected request.auth.principal, request.auth.audiences, \
request.auth.presenter or request.auth.claims[<name>] (nested: [a][b])";

/// istiod's `requestPrincipalGenerator.extendedPrincipal`
/// (`generator.go:263-320 @ 1.30.3`): the value splits at its LAST `/` (an issuer may be a
/// URL) into `iss/sub`; `*` is any non-empty value, a leading `*` a suffix match, a trailing
/// `*` a prefix match.
fn principal_pat(value: &str) -> PrincipalPat {
    let any = || StrMatch::NonEmpty;
    let (iss, sub, found) = match value.rfind('/') {
        Some(i) => (&value[..i], &value[i + 1..], true),
        None => (value, "", false),
    };
    let exact = |s: &str| StrMatch::Exact(s.into());
    let (iss, sub) = if value == "*" {
        (any(), any())
    } else if let Some(rest) = value.strip_prefix('*') {
        if found {
            let iss = if iss == "*" {
                any()
            } else {
                StrMatch::Suffix(iss.trim_start_matches('*').into())
            };
            (iss, exact(sub))
        } else {
            (any(), StrMatch::Suffix(rest.into()))
        }
    } else if let Some(rest) = value.strip_suffix('*') {
        if found {
            let sub = if sub == "*" {
                any()
            } else {
                StrMatch::Prefix(sub.trim_end_matches('*').into())
            };
            (exact(iss), sub)
        } else {
            (StrMatch::Prefix(rest.into()), any())
        }
    } else {
        (exact(iss), exact(sub))
    };
    PrincipalPat { iss, sub }
}

/// The predicate for `requestPrincipals` / `request.auth.principal` values.
pub(crate) fn principals(values: &[String]) -> Pred {
    Pred::RequestPrincipal(values.iter().map(|v| principal_pat(v)).collect())
}

/// Whether the payload's `iss` and `sub` (plain strings) match one of `pats`.
pub(crate) fn principal(jwt: &JwtPayload, pats: &[PrincipalPat]) -> bool {
    let (Some(iss), Some(sub)) = (jwt.string("iss"), jwt.string("sub")) else {
        return false;
    };
    pats.iter()
        .any(|p| p.iss.matches(iss) && p.sub.matches(sub))
}

/// Whether the claim at `path` is, or lists, a string one of `pats` accepts.
pub(crate) fn claim(jwt: &JwtPayload, path: &[Box<str>], pats: &[StrMatch]) -> bool {
    jwt.get(path)
        .is_some_and(|c| any_string(c, |s| pats.iter().any(|m| m.matches(s))))
}

/// The claim path a `request.auth.*` key reads: `Some(None)` for `request.auth.principal`,
/// `Some(Some(path))` for the others, `None` for an unknown key
/// (`pilot/pkg/security/authz/model/model.go:105-120 @ 1.30.3`).
pub(crate) fn condition_path(key: &str) -> Option<Option<Box<[Box<str>]>>> {
    let one = |c: &str| Some(Some(vec![Box::<str>::from(c)].into_boxed_slice()));
    match key {
        "request.auth.principal" => Some(None),
        "request.auth.audiences" => one("aud"),
        "request.auth.presenter" => one("azp"),
        k => {
            let rest = k.strip_prefix("request.auth.claims")?;
            let names = nested_bracket_names(rest)?;
            Some(Some(names.into_iter().map(Box::from).collect()))
        }
    }
}

/// istiod's `extractNameInNestedBrackets` (`model/util.go:45-73 @ 1.30.3`): `[a][b]` →
/// `a`, `b`; when the nesting does not parse, the whole `[...]` is one name (`[a[b]` → `a[b`).
pub(crate) fn nested_bracket_names(s: &str) -> Option<Vec<&str>> {
    let b = s.as_bytes();
    let end_of = |begin: usize| -> Option<usize> {
        if b.get(begin) != Some(&b'[') {
            return None;
        }
        for (i, c) in b.iter().enumerate().skip(begin + 1) {
            match c {
                b'[' => return None,
                b']' => return Some(i),
                _ => {}
            }
        }
        None
    };
    let mut out = Vec::new();
    let mut begin = 0;
    while begin < b.len() {
        match end_of(begin) {
            Some(end) => {
                out.push(&s[begin + 1..end]);
                begin = end + 1;
            }
            None => {
                let whole = s.strip_prefix('[')?.strip_suffix(']')?;
                return Some(vec![whole]);
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::tests_support::payload;

    macro_rules! principal_case {
        ($name:ident, $value:expr, $iss:expr, $sub:expr, $want:expr) => {
            #[test]
            fn $name() {
                let p = payload(&format!("iss={};sub={}", $iss, $sub));
                assert_eq!(principal(&p, &[principal_pat($value)]), $want);
            }
        };
    }
    // generator.go:281-283 @ 1.30.3: "*" is iss ".+" and sub ".+".
    principal_case!(star_any, "*", "https://a", "u", true);
    // generator.go:284-291: "*<x>/<sub>": iss suffix, sub exact.
    principal_case!(
        lead_star_issuer_suffix,
        "*.example.com/u",
        "https://a.example.com",
        "u",
        true
    );
    principal_case!(
        lead_star_sub_exact,
        "*.example.com/u",
        "https://a.example.com",
        "v",
        false
    );
    // generator.go:285-287: "*/<sub>": any iss.
    principal_case!(star_issuer, "*/u", "anything", "u", true);
    // generator.go:292-294: "*<x>" without "/": sub suffix, iss any.
    principal_case!(lead_star_no_slash, "*er", "iss", "user", true);
    // generator.go:296-302: "<iss>/<x>*": iss exact, sub prefix.
    principal_case!(
        trail_star_sub_prefix,
        "https://a/us*",
        "https://a",
        "user",
        true
    );
    principal_case!(
        trail_star_other_iss,
        "https://a/us*",
        "https://b",
        "user",
        false
    );
    // generator.go:303-305: "<x>*" without "/": iss prefix, sub any.
    principal_case!(trail_star_no_slash, "https:*", "https:", "u", true);
    // generator.go:270-276: split at the LAST "/".
    principal_case!(exact_url_issuer, "https://a/b/u", "https://a/b", "u", true);
    principal_case!(exact_mismatch, "https://a/b/u", "https://a", "b/u", false);

    #[test]
    fn principal_needs_both_claims() {
        assert!(!principal(&payload("iss=a"), &[principal_pat("*")]));
    }

    #[test]
    fn nested_brackets() {
        assert_eq!(nested_bracket_names("[a][b]"), Some(vec!["a", "b"]));
        assert_eq!(nested_bracket_names("[a.b]"), Some(vec!["a.b"]));
        assert_eq!(nested_bracket_names("[a[b]"), Some(vec!["a[b"]));
        assert_eq!(nested_bracket_names("x"), None);
    }
}
