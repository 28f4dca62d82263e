//! Value matchers, each mirroring the Envoy matcher istiod generates for an AuthorizationPolicy
//! field (`pilot/pkg/security/authz/matcher`), so that edge cases (wildcards, empty values,
//! multi-valued headers, case) behave as in an Istio waypoint.

use std::cell::RefCell;
use std::collections::HashMap;

use regex::Regex;

/// Compiled regexes shared by pattern text across all policies: many rules repeat the same
/// namespace or principal wildcard, and one compiled program keeps the working set small.
#[derive(Debug, Default)]
pub(crate) struct RegexCache(RefCell<HashMap<String, Regex>>);

impl RegexCache {
    pub(crate) fn get(&self, pattern: &str) -> Result<Regex, regex::Error> {
        if let Some(r) = self.0.borrow().get(pattern) {
            return Ok(r.clone());
        }
        let r = Regex::new(pattern)?;
        self.0.borrow_mut().insert(pattern.to_owned(), r.clone());
        Ok(r)
    }
}

/// Envoy `StringMatcher` as produced by istiod's `matcher.StringMatcher(v)`:
/// `*` → regex `.+`, `*x` → suffix, `x*` → prefix, otherwise exact.
#[derive(Debug, Clone)]
pub(crate) enum StrMatch {
    /// Regex `.+`: any non-empty value.
    NonEmpty,
    Exact(Box<str>),
    Prefix(Box<str>),
    Suffix(Box<str>),
}

impl StrMatch {
    /// The matcher istiod's `StringMatcher(v)` builds (the `*` check comes first, then a
    /// leading `*`, then a trailing one, exactly in that order).
    pub(crate) fn istio(v: &str) -> Self {
        if v == "*" {
            StrMatch::NonEmpty
        } else if let Some(s) = v.strip_prefix('*') {
            StrMatch::Suffix(s.into())
        } else if let Some(p) = v.strip_suffix('*') {
            StrMatch::Prefix(p.into())
        } else {
            StrMatch::Exact(v.into())
        }
    }

    /// Case-sensitive match of one value.
    #[inline]
    pub(crate) fn matches(&self, s: &str) -> bool {
        let s = s.as_bytes();
        match self {
            StrMatch::NonEmpty => !s.is_empty(),
            StrMatch::Exact(e) => bytes_eq(s, e.as_bytes()),
            StrMatch::Prefix(p) => s.get(..p.len()).is_some_and(|h| bytes_eq(h, p.as_bytes())),
            StrMatch::Suffix(x) => s
                .len()
                .checked_sub(x.len())
                .is_some_and(|i| bytes_eq(&s[i..], x.as_bytes())),
        }
    }

    /// ASCII case-insensitive match (Envoy `ignore_case`), used for hosts.
    pub(crate) fn matches_ignore_case(&self, s: &str) -> bool {
        let s = s.as_bytes();
        match self {
            StrMatch::NonEmpty => !s.is_empty(),
            StrMatch::Exact(e) => s.eq_ignore_ascii_case(e.as_bytes()),
            StrMatch::Prefix(p) => {
                let p = p.as_bytes();
                s.len() >= p.len() && s[..p.len()].eq_ignore_ascii_case(p)
            }
            StrMatch::Suffix(x) => {
                let x = x.as_bytes();
                s.len() >= x.len() && s[s.len() - x.len()..].eq_ignore_ascii_case(x)
            }
        }
    }

    /// Match against the comma-joined value of a multi-valued header, as Envoy's header
    /// matcher sees it (`HeaderUtility::getAllOfHeaderAsString`, separator `,`), without
    /// building the joined string.
    pub(crate) fn matches_joined<'a, I>(&self, values: I) -> bool
    where
        I: DoubleEndedIterator<Item = &'a str> + Clone,
    {
        let mut it = values.clone();
        let Some(first) = it.next() else {
            return false;
        };
        if it.next().is_none() {
            return self.matches(first);
        }
        self.matches_joined_multi(values)
    }

    /// The rare repeated-header case, kept out of line so the common path stays small.
    #[inline(never)]
    fn matches_joined_multi<'a, I>(&self, values: I) -> bool
    where
        I: DoubleEndedIterator<Item = &'a str> + Clone,
    {
        let total: usize = values.clone().map(|v| v.len() + 1).sum::<usize>() - 1;
        let forward = || {
            values
                .clone()
                .flat_map(|v| std::iter::once(b',').chain(v.bytes()))
                .skip(1)
        };
        match self {
            StrMatch::NonEmpty => total > 0,
            StrMatch::Exact(e) => e.len() == total && forward().eq(e.bytes()),
            StrMatch::Prefix(p) => p.len() <= total && forward().take(p.len()).eq(p.bytes()),
            StrMatch::Suffix(x) => {
                x.len() <= total
                    && values
                        .clone()
                        .rev()
                        .flat_map(|v| v.bytes().rev().chain(std::iter::once(b',')))
                        .take(x.len())
                        .eq(x.bytes().rev())
            }
        }
    }
}

/// Byte equality that avoids a `memcmp` call for the short strings policies hold (methods,
/// header names, path prefixes), which dominates evaluation time otherwise.
#[inline]
pub(crate) fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    // Up to 16 bytes: two overlapping 8-byte words per side, no call, no loop.
    if a.len() >= 8 && a.len() <= 16 {
        let w = |s: &[u8], i: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&s[i..i + 8]);
            u64::from_le_bytes(x)
        };
        let last = a.len() - 8;
        return w(a, 0) == w(b, 0) && w(a, last) == w(b, last);
    }
    if a.len() < 8 {
        return a.iter().zip(b).all(|(x, y)| x == y);
    }
    a == b
}

/// Envoy `HeaderMatcher` from istiod's `matcher.HeaderMatcher(k, v)` (and `HostMatcher` with
/// ignore-case): `*` is a presence match, anything else a string match.
#[derive(Debug, Clone)]
pub(crate) enum HeaderPat {
    Present,
    Str(StrMatch),
}

impl HeaderPat {
    pub(crate) fn istio(v: &str) -> Self {
        if v == "*" {
            HeaderPat::Present
        } else {
            HeaderPat::Str(StrMatch::istio(v))
        }
    }

    /// Match a single-valued pseudo-header (`:method`, `:authority`, ...); `None` = absent.
    pub(crate) fn matches_one(&self, v: Option<&str>, ignore_case: bool) -> bool {
        match (self, v) {
            (_, None) => false,
            (HeaderPat::Present, Some(_)) => true,
            (HeaderPat::Str(m), Some(v)) if ignore_case => m.matches_ignore_case(v),
            (HeaderPat::Str(m), Some(v)) => m.matches(v),
        }
    }

    /// Match a possibly repeated header through its comma-joined value.
    pub(crate) fn matches_joined<'a, I>(&self, mut values: I) -> bool
    where
        I: DoubleEndedIterator<Item = &'a str> + Clone,
    {
        match self {
            HeaderPat::Present => values.next().is_some(),
            HeaderPat::Str(m) => m.matches_joined(values),
        }
    }

    /// `request.experimental.inline.headers[..]`: istiod's `HeaderMatcherWithRegex` builds
    /// `^v$|^v,.*|.*,v,.*|.*,v$`, i.e. some comma-separated element of the joined value
    /// matches (no whitespace trimming).
    pub(crate) fn matches_inline<'a, I>(&self, mut values: I) -> bool
    where
        I: Iterator<Item = &'a str> + Clone,
    {
        match self {
            HeaderPat::Present => values.next().is_some(),
            HeaderPat::Str(m) => values.flat_map(|v| v.split(',')).any(|e| m.matches(e)),
        }
    }
}

/// A path value: istiod's `PathMatcher` (a `StringMatcher` on the path without query) or, when
/// the value contains `{*}` / `{**}`, Envoy's `uri_template` matcher.
#[derive(Debug, Clone)]
pub(crate) enum PathPat {
    Str(StrMatch),
    Template(Regex),
}

impl PathPat {
    #[inline]
    pub(crate) fn matches(&self, path: &str) -> bool {
        match self {
            PathPat::Str(m) => m.matches(path),
            PathPat::Template(re) => re.is_match(path),
        }
    }
}

/// Characters Envoy's uri_template accepts in a literal segment and that `*`/`**` match
/// (RFC 3986 pchar without `*` and `=`; `uri_template_internal.cc` `kLiteral`).
fn is_template_literal_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~%!$&'()+,;:@".contains(c)
}

const TEMPLATE_CLASS: &str = r"[a-zA-Z0-9\-._~%!$&'()+,;:@]";

/// Whether istiod treats the value as a path template (`security.ContainsPathTemplate`).
pub(crate) fn contains_path_template(v: &str) -> bool {
    v.contains("{*}") || v.contains("{**}")
}

/// Validates a path value like istiod's `security.CheckValidPathTemplate` (which also runs for
/// plain paths: a `{` or `}` outside a template is an error) and, for templates, compiles the
/// regex Envoy's uri_template matcher uses: `{*}` → one non-empty segment, `{**}` → zero or more
/// characters including `/`, literals matched exactly, whole-path match.
pub(crate) fn compile_path(cache: &RegexCache, v: &str) -> Result<PathPat, String> {
    let is_template = contains_path_template(v);
    let mut seen_any = false;
    for glob in v.trim_matches('/').split('/') {
        match glob {
            "{*}" | "{**}" if seen_any => {
                return Err("{**} is not the last operator".into());
            }
            "{*}" => continue,
            "{**}" => {
                seen_any = true;
                continue;
            }
            _ => {}
        }
        if glob.contains(['{', '}']) {
            return Err("contains '{' or '}' beyond a supported path template".into());
        }
        if is_template && (glob.is_empty() || !glob.chars().all(is_template_literal_char)) {
            return Err(format!("segment {glob:?} is not a valid template literal"));
        }
    }
    if !is_template {
        return Ok(PathPat::Str(StrMatch::istio(v)));
    }
    // Envoy's parser requires a leading '/' (`^/[[:graph:]]*$`).
    let Some(rest) = v.strip_prefix('/') else {
        return Err("a path template must start with '/'".into());
    };
    let mut re = String::from("^/");
    let segs: Vec<&str> = rest.split('/').collect();
    for (i, seg) in segs.iter().enumerate() {
        if i > 0 {
            re.push('/');
        }
        // Envoy only allows an empty segment as the single trailing '/'.
        if seg.is_empty() && i + 1 != segs.len() {
            return Err("empty path segment in a template".into());
        }
        match *seg {
            "{*}" => {
                re.push_str(TEMPLATE_CLASS);
                re.push('+');
            }
            "{**}" => {
                re.push_str(r"[a-zA-Z0-9\-._~%!$&'()+,;:@/]*");
            }
            lit => re.push_str(&regex::escape(lit)),
        }
    }
    re.push('$');
    cache
        .get(&re)
        .map(PathPat::Template)
        .map_err(|e| format!("cannot compile template: {e}"))
}

/// `principals` / `source.principal`: istiod's `StringMatcherWithPrefix(v, "spiffe://")` on the
/// peer's URI SAN. `*` → `.+` (any authenticated peer); `*x` → regex `spiffe://.*x` with `x`
/// inserted unescaped; `x*` → prefix; otherwise exact. Values here are compared against the
/// principal without `spiffe://`, which is equivalent because the scheme is a fixed prefix.
#[derive(Debug, Clone)]
pub(crate) enum PrincipalPat {
    Any,
    Exact(Box<str>),
    Prefix(Box<str>),
    Suffix(Box<str>),
    Regex(Regex),
}

/// Regex metacharacters: a `*suffix` principal without any of them is a plain suffix match.
fn has_regex_meta(s: &str) -> bool {
    s.contains([
        '\\', '.', '+', '*', '?', '(', ')', '|', '[', ']', '{', '}', '^', '$',
    ])
}

impl PrincipalPat {
    pub(crate) fn compile(cache: &RegexCache, v: &str) -> Result<Self, String> {
        Ok(if v == "*" {
            PrincipalPat::Any
        } else if let Some(s) = v.strip_prefix('*') {
            if has_regex_meta(s) {
                // istiod emits `spiffe://.*<s>` as an RE2 regex without quoting <s>.
                let re = cache
                    .get(&format!("^(?:.*{s})$"))
                    .map_err(|e| format!("istiod would emit an invalid regex: {e}"))?;
                PrincipalPat::Regex(re)
            } else {
                PrincipalPat::Suffix(s.into())
            }
        } else if let Some(p) = v.strip_suffix('*') {
            PrincipalPat::Prefix(p.into())
        } else {
            PrincipalPat::Exact(v.into())
        })
    }

    pub(crate) fn matches(&self, p: &str) -> bool {
        match self {
            PrincipalPat::Any => true,
            PrincipalPat::Exact(e) => p == &**e,
            PrincipalPat::Prefix(x) => p.starts_with(&**x),
            PrincipalPat::Suffix(x) => p.ends_with(&**x),
            PrincipalPat::Regex(re) => re.is_match(p),
        }
    }
}

/// `namespaces` / `source.namespace`: istiod matches the URI SAN against the regex
/// `.*/ns/<v>/.*` with `*` in `<v>` replaced by `.*` (other characters unescaped). On the
/// principal without `spiffe://` that is: it starts with `ns/<v>/` or contains `/ns/<v>/`.
#[derive(Debug, Clone)]
pub(crate) enum NamespacePat {
    /// Needle `/ns/<v>/` for a value without wildcards or regex metacharacters.
    Plain(Box<str>),
    Regex(Regex),
}

impl NamespacePat {
    pub(crate) fn compile(cache: &RegexCache, v: &str) -> Result<Self, String> {
        if !has_regex_meta(v) {
            return Ok(NamespacePat::Plain(format!("/ns/{v}/").into()));
        }
        let v = v.replace('*', ".*");
        cache
            .get(&format!("^(?:(?:.*/)?ns/{v}/.*)$"))
            .map(NamespacePat::Regex)
            .map_err(|e| format!("istiod would emit an invalid regex: {e}"))
    }

    pub(crate) fn matches(&self, p: &str) -> bool {
        match self {
            NamespacePat::Plain(needle) => {
                // "spiffe:/" + "/ns/<v>/..." is the only way the scheme takes part in a match.
                p.contains(&**needle) || p.starts_with(&needle[1..])
            }
            NamespacePat::Regex(re) => re.is_match(p),
        }
    }
}

/// `source.serviceAccount`: istiod's `serviceAccountRegex`:
/// `spiffe://.+/ns/<ns>/(.+/|)sa/<sa>(/.+)?`, `<ns>` defaulting to the policy's namespace.
pub(crate) fn compile_service_account(
    cache: &RegexCache,
    default_ns: &str,
    v: &str,
) -> Result<Regex, String> {
    if v.is_empty() || v.contains('*') || v.matches('/').count() > 1 {
        return Err("expected 'serviceAccount' or 'namespace/serviceAccount'".into());
    }
    let (ns, sa) = v.split_once('/').unwrap_or((default_ns, v));
    if ns.is_empty() || sa.is_empty() {
        return Err("expected 'serviceAccount' or 'namespace/serviceAccount'".into());
    }
    // Same reasoning as namespaces: `.+/ns/` on the URI SAN may end inside `spiffe://`.
    cache
        .get(&format!("^(?:(?:.*/)?ns/{ns}/(?:.+/|)sa/{sa}(?:/.+)?)$"))
        .map_err(|e| format!("istiod would emit an invalid regex: {e}"))
}
