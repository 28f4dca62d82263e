//! Request matchers compiled from the wire `RouteMatch`, with Envoy's matching semantics.
//!
//! istiod translates a VirtualService `HTTPMatchRequest` into one Envoy `RouteMatch`
//! (`pilot/pkg/networking/core/route/route.go`, `TranslateRouteMatch`): the uri becomes the path
//! specifier, `method` / `authority` / `scheme` become header matchers on the `:method`,
//! `:authority` and `:scheme` pseudo-headers, `headers` / `withoutHeaders` become header matchers
//! (the latter with `invert_match` and `treat_missing_header_as_empty`), `queryParams` become
//! query parameter matchers. Everything here mirrors how Envoy then evaluates those.

use std::borrow::Cow;

use regex::Regex;

use crate::request::RequestView;
use crate::wire;

/// A compiled `StringMatch` (Envoy `StringMatcher` without `ignore_case`).
#[derive(Debug, Clone)]
pub(crate) enum StrMatcher {
    Exact(String),
    Prefix(String),
    /// Anchored: RE2 `FullMatch` semantics, as Envoy's `safe_regex`.
    Regex(Regex),
}

impl StrMatcher {
    #[inline]
    pub(crate) fn matches(&self, value: &str) -> bool {
        match self {
            StrMatcher::Exact(e) => value == e,
            StrMatcher::Prefix(p) => value.starts_with(p.as_str()),
            StrMatcher::Regex(r) => r.is_match(value),
        }
    }
}

/// Compile an RE2 pattern for full-string matching, as Envoy's `safe_regex` matcher does.
pub(crate) fn compile_full_regex(pattern: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?:{pattern})$"))
}

/// What a non-uri string match compiles to. `None` means "present": istiod turns a missing
/// match type, and the regex `*`, into `present_match` (`canBeConvertedToPresentMatch`,
/// istio/istio#20629).
pub(crate) fn compile_value_match(
    m: Option<&wire::StringMatch>,
) -> Result<Option<StrMatcher>, String> {
    use wire::string_match::Kind;
    let Some(kind) = m.and_then(|m| m.kind.as_ref()) else {
        return Ok(None);
    };
    Ok(Some(match kind {
        Kind::Exact(e) => StrMatcher::Exact(e.clone()),
        Kind::Prefix(p) => StrMatcher::Prefix(p.clone()),
        Kind::Regex(r) if r == "*" => return Ok(None),
        Kind::Regex(r) => StrMatcher::Regex(compile_full_regex(r).map_err(|e| e.to_string())?),
    }))
}

/// A header condition (Envoy `HeaderMatcher`).
#[derive(Debug, Clone)]
pub(crate) struct HeaderCond {
    /// Lower-case name; may be a pseudo-header (`:authority`, `:method`, `:scheme`, `:path`).
    pub(crate) name: String,
    /// `None`: `present_match`.
    pub(crate) value: Option<StrMatcher>,
    /// `invert_match` (VirtualService `withoutHeaders`).
    pub(crate) invert: bool,
    /// `treat_missing_header_as_empty`: istiod sets it on every `withoutHeaders` matcher that is
    /// not a presence match, so an absent header is compared as "".
    pub(crate) missing_as_empty: bool,
}

impl HeaderCond {
    pub(crate) fn matches(&self, req: &RequestView<'_>) -> bool {
        let value = header_value(req, &self.name);
        let raw = match (&value, &self.value) {
            (None, None) => false,
            (Some(_), None) => true,
            (Some(v), Some(m)) => m.matches(v),
            (None, Some(m)) => {
                if self.missing_as_empty {
                    m.matches("")
                } else {
                    // Envoy: a missing header fails the matcher before inversion is considered
                    // (only `present_match` inverts on absence).
                    return false;
                }
            }
        };
        raw != self.invert
    }
}

/// The value Envoy's header matcher sees: pseudo-headers come from the request line, repeated
/// headers are joined with "," (`HeaderUtility::getAllOfHeaderAsString`).
pub(crate) fn header_value<'a>(req: &RequestView<'a>, name: &str) -> Option<Cow<'a, str>> {
    if let Some(pseudo) = name.strip_prefix(':') {
        return match pseudo {
            "authority" => Some(Cow::Borrowed(req.authority)),
            "method" => Some(Cow::Borrowed(req.method)),
            "scheme" => Some(Cow::Borrowed(req.scheme)),
            "path" => Some(Cow::Borrowed(req.path)),
            _ => None,
        };
    }
    let mut found: Option<Cow<'a, str>> = None;
    for (n, v) in req.headers {
        if *n != name {
            continue;
        }
        found = Some(match found {
            None => Cow::Borrowed(*v),
            Some(prev) => {
                let mut joined = prev.into_owned();
                joined.push(',');
                joined.push_str(v);
                Cow::Owned(joined)
            }
        });
    }
    found
}

/// A query parameter condition (Envoy `QueryParameterMatcher`).
#[derive(Debug, Clone)]
pub(crate) struct QueryCond {
    pub(crate) name: String,
    /// `None`: `present_match`.
    pub(crate) value: Option<StrMatcher>,
}

impl QueryCond {
    /// Envoy parses the query with `QueryParamsMulti::parseAndDecodeQueryString` (names and
    /// values percent-decoded, `+` left alone) and matches the *first* value of the name.
    pub(crate) fn matches(&self, query: &str) -> bool {
        match first_query_value(query, &self.name) {
            None => false,
            Some(v) => match &self.value {
                None => true,
                Some(m) => m.matches(&v),
            },
        }
    }
}

/// First value of `name` in `query` (no leading `?`), after percent-decoding both sides.
pub(crate) fn first_query_value<'q>(query: &'q str, name: &str) -> Option<Cow<'q, str>> {
    if query.is_empty() {
        return None;
    }
    for param in query.split('&') {
        let (n, v) = match param.find('=') {
            Some(i) => (&param[..i], &param[i + 1..]),
            None => (param, ""),
        };
        if percent_decode(n) == name {
            return Some(percent_decode(v));
        }
    }
    None
}

/// Envoy's `PercentEncoding::decode`: every valid `%XX` becomes its byte; malformed escapes are
/// kept verbatim. Invalid UTF-8 after decoding is replaced (Envoy compares bytes; such values
/// only ever match a regex that accepts anything).
pub(crate) fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex_val(b[i + 1]), hex_val(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(s) => Cow::Owned(s),
        Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

#[inline]
pub(crate) fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// How the uri of one match entry is tested.
#[derive(Debug, Clone)]
pub(crate) enum UriCond {
    /// No uri condition: Envoy `prefix: "/"` (what istiod emits when the match has no uri).
    Any,
    /// Envoy `path`; `ci` = `case_sensitive: false`.
    Exact { value: String, ci: bool },
    /// Envoy `prefix`.
    Prefix { value: String, ci: bool },
    /// Envoy `path_separated_prefix` (Gateway API `PathPrefix`; istiod uses it for HTTPRoute
    /// prefixes other than "/" and trims a trailing "/").
    SeparatedPrefix { value: String, ci: bool },
    /// Envoy `safe_regex` on the path; `case_sensitive` does not apply to regexes.
    Regex(Regex),
}

impl UriCond {
    /// Test `path` (no query). Returns the length of the path prefix the route "matched", which
    /// `prefix_rewrite` replaces (Envoy `currentUrlPathAfterRewriteWithMatchedPath`).
    pub(crate) fn matched_len(&self, path: &str) -> Option<usize> {
        match self {
            UriCond::Any => path.starts_with('/').then_some(1),
            UriCond::Exact { value, ci } => {
                let ok = if *ci {
                    path.eq_ignore_ascii_case(value)
                } else {
                    path == value
                };
                ok.then_some(value.len())
            }
            UriCond::Prefix { value, ci } => starts_with(path, value, *ci).then_some(value.len()),
            UriCond::SeparatedPrefix { value, ci } => {
                let ok = starts_with(path, value, *ci)
                    && (path.len() == value.len() || path.as_bytes()[value.len()] == b'/');
                ok.then_some(value.len())
            }
            UriCond::Regex(r) => r.is_match(path).then_some(path.len()),
        }
    }
}

#[inline]
fn starts_with(path: &str, prefix: &str, ci: bool) -> bool {
    if ci {
        path.len() >= prefix.len()
            && path.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
    } else {
        path.starts_with(prefix)
    }
}

/// One compiled `RouteMatch` (all conditions AND).
#[derive(Debug, Clone)]
pub(crate) struct MatchCond {
    pub(crate) uri: UriCond,
    /// `:scheme`, `:method`, `:authority` matchers, then `headers`, then `withoutHeaders`.
    pub(crate) headers: Vec<HeaderCond>,
    pub(crate) query: Vec<QueryCond>,
    /// 0 = any.
    pub(crate) port: u16,
}

impl MatchCond {
    /// Everything except the uri (which the index already tested or the caller tests).
    pub(crate) fn matches_rest(&self, req: &RequestView<'_>, query: &str) -> bool {
        if self.port != 0 && self.port != req.destination.port {
            return false;
        }
        self.headers.iter().all(|h| h.matches(req)) && self.query.iter().all(|q| q.matches(query))
    }
}
