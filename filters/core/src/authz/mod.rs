//! AuthorizationPolicy evaluation, with the semantics an Istio waypoint enforces.
//!
//! istiod translates each policy into Envoy RBAC policies (`pilot/pkg/security/authz/model`):
//! every rule becomes `permissions` (the `to` operations and the `when` conditions Envoy checks
//! on the request/destination) and `principals` (the `from` sources and the `when` conditions
//! on the caller). [`CompiledAuthz::compile`] builds the same predicates once per configuration
//! (patterns, regexes, CIDR tables); [`CompiledAuthz::evaluate`] runs them per request without
//! allocating.
//!
//! Decision order, as in Istio: DENY policies first (any match denies), then ALLOW (when at
//! least one ALLOW policy is bound, one must match), AUDIT only reports, and `istio.io/dry-run`
//! policies run in a shadow evaluation that never changes the decision.
//!
//! Semantics taken from istiod and Envoy rather than guessed (each has a test in `tests.rs`):
//! - `principals`: `StringMatcherWithPrefix(v, "spiffe://")` — `*` needs an authenticated peer,
//!   `*suffix` becomes the regex `spiffe://.*suffix` (suffix unquoted), `prefix*` a prefix.
//! - `namespaces` / `source.namespace`: the regex `.*/ns/<v>/.*` on the principal (`*` → `.*`);
//!   a plaintext peer has no namespace.
//! - `not*` fields are `not(or(...))`: an absent attribute satisfies them.
//! - `hosts`: case-insensitive match of the whole `:authority`, port included (no port
//!   stripping: `example.com` does not match `example.com:80`; Istio users write `host:*`).
//! - `methods`, header values: case-sensitive `HeaderMatcher`s; `*` is a presence match.
//! - Repeated headers are matched on their `,`-joined value, as Envoy's header matcher sees them.
//! - `paths`: exact/prefix/suffix/`*` on the path without query; values with `{*}`/`{**}` use
//!   Envoy's uri_template semantics (`{*}` one non-empty pchar segment, `{**}` any pchars and
//!   `/`, `{**}` may only be followed by literals).
//! - Invalid values Istio's validation or Envoy would reject fail the whole compile (istiod
//!   instead skips bad ALLOW rules and widens DENY rules; an invalid policy never reaches a
//!   waypoint through the validation webhook, so rejecting it is the faithful outcome here).

mod cidr;
mod jwt_match;
mod matchers;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::IpAddr;

use regex::Regex;

use crate::request::{ConnectionNeeds, RequestView};
use crate::wire;
use cidr::{parse_cidr, CidrSet};
use matchers::{
    compile_path, compile_service_account, HeaderPat, NamespacePat, PathPat, PrincipalPat,
    RegexCache, StrMatch,
};

/// A policy the compiler produced that the filters must refuse: the message names the policy
/// (`namespace/name`) and the field path inside it, e.g.
/// `AuthorizationPolicy foo/bar: rules[0].from[1].source.ipBlocks[0]: invalid CIDR "10.0.0.0/33"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidAuthz {
    /// An action other than ALLOW, DENY or AUDIT (CUSTOM is not supported by the filters).
    #[error("AuthorizationPolicy {policy}: action: unsupported action {value}")]
    Action {
        /// `namespace/name` of the policy.
        policy: String,
        /// The raw enum value.
        value: i32,
    },
    /// A value that is not an IP address or CIDR range.
    #[error("AuthorizationPolicy {policy}: {field}: invalid CIDR {value:?}")]
    Cidr {
        /// `namespace/name` of the policy.
        policy: String,
        /// Path of the offending field.
        field: String,
        /// The rejected value.
        value: String,
    },
    /// A port outside 0..=65535 or not a decimal number.
    #[error("AuthorizationPolicy {policy}: {field}: invalid port {value:?}")]
    Port {
        /// `namespace/name` of the policy.
        policy: String,
        /// Path of the offending field.
        field: String,
        /// The rejected value.
        value: String,
    },
    /// A path Istio's validation or Envoy's uri_template parser rejects.
    #[error("AuthorizationPolicy {policy}: {field}: invalid path {value:?}: {reason}")]
    Path {
        /// `namespace/name` of the policy.
        policy: String,
        /// Path of the offending field.
        field: String,
        /// The rejected value.
        value: String,
        /// Why it is rejected.
        reason: String,
    },
    /// A value istiod would turn into a regex Envoy cannot compile, or another malformed value.
    #[error("AuthorizationPolicy {policy}: {field}: invalid value {value:?}: {reason}")]
    Value {
        /// `namespace/name` of the policy.
        policy: String,
        /// Path of the offending field.
        field: String,
        /// The rejected value.
        value: String,
        /// Why it is rejected.
        reason: String,
    },
    /// An empty string in a list of values (Istio validation: "empty value not allowed").
    #[error("AuthorizationPolicy {policy}: {field}: empty value not allowed")]
    EmptyValue {
        /// `namespace/name` of the policy.
        policy: String,
        /// Path of the offending field.
        field: String,
    },
    /// A `when` key istiod does not know.
    #[error("AuthorizationPolicy {policy}: {field}: unknown condition key {key:?}")]
    UnknownKey {
        /// `namespace/name` of the policy.
        policy: String,
        /// Path of the offending field.
        field: String,
        /// The key.
        key: String,
    },
    /// A field or key Istio knows but the filters do not evaluate (JWT `request.auth.*`,
    /// `requestPrincipals`, `experimental.envoy.filters.*` metadata).
    #[error("AuthorizationPolicy {policy}: {field}: {what} is not supported")]
    Unsupported {
        /// `namespace/name` of the policy.
        policy: String,
        /// Path of the offending field.
        field: String,
        /// What is unsupported.
        what: String,
    },
}

/// All AuthorizationPolicies of a waypoint, compiled. Services refer to them by index.
#[derive(Debug, Clone, Default)]
pub struct CompiledAuthz {
    policies: Vec<Policy>,
}

/// What AuthorizationPolicy decided for one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AuthzDecision<'p> {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// The policy that decided (the matching DENY, the matching ALLOW, or None when allowed
    /// because no ALLOW policy applies / denied because ALLOW policies exist and none matched).
    pub deciding: Option<PolicyMatch<'p>>,
    /// First matching AUDIT policy, if any.
    pub audit: Option<PolicyMatch<'p>>,
    /// What dry-run (istio.io/dry-run) policies would have done: Some((would_allow, matching
    /// policy)) when any dry-run policy is bound.
    pub dry_run: Option<(bool, Option<PolicyMatch<'p>>)>,
}

/// A policy (and the rule inside it) that matched a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyMatch<'p> {
    /// Namespace of the AuthorizationPolicy.
    pub namespace: &'p str,
    /// Name of the AuthorizationPolicy.
    pub name: &'p str,
    /// Its action.
    pub action: wire::AuthorizationAction,
    /// Index of the first matching rule in `rules[]`.
    pub rule: Option<usize>,
}

impl CompiledAuthz {
    /// Validates and compiles every policy. Any invalid policy rejects the whole set: a filter
    /// that silently skipped one would enforce less (ALLOW) or more (DENY) than intended.
    pub fn compile(policies: &[wire::AuthorizationPolicy]) -> Result<CompiledAuthz, InvalidAuthz> {
        let cache = RegexCache::default();
        let policies = policies
            .iter()
            .map(|p| Policy::compile(&cache, p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CompiledAuthz { policies })
    }

    /// The connection attributes some predicate of some policy reads (dry-run ones too: their
    /// verdict is reported).
    pub fn needs(&self) -> ConnectionNeeds {
        let mut needs = ConnectionNeeds::default();
        let checks = self.policies.iter().flat_map(|p| &p.rules).flat_map(|r| {
            r.from
                .iter()
                .chain(&r.to)
                .chain(std::iter::once(&r.when))
                .flat_map(|c| &c.checks)
        });
        for check in checks {
            needs = needs.union(check.pred.needs());
        }
        needs
    }

    /// Number of compiled policies; bound indexes must be below it.
    pub fn len(&self) -> usize {
        self.policies.len()
    }

    /// Whether no policy was compiled.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// Evaluates the policies bound to the request's service.
    ///
    /// `bound`: the service's bound policy indexes (into the slice given to compile). An
    /// index out of range is an internal error and denies the request (fail closed) with no
    /// deciding policy.
    pub fn evaluate<'p>(&'p self, bound: &[u32], req: &RequestView<'_>) -> AuthzDecision<'p> {
        use wire::AuthorizationAction as A;

        let req = &Input::new(req);
        let mut broken = false;
        let mut deny: Option<PolicyMatch<'p>> = None;
        let mut allow: Option<PolicyMatch<'p>> = None;
        let mut has_allow = false;
        let mut audit: Option<PolicyMatch<'p>> = None;

        let mut dry_any = false;
        let mut dry_deny: Option<PolicyMatch<'p>> = None;
        let mut dry_allow: Option<PolicyMatch<'p>> = None;
        let mut dry_has_allow = false;

        for &i in bound {
            let Some(p) = self.policies.get(i as usize) else {
                broken = true;
                continue;
            };
            if p.dry_run {
                dry_any = true;
                match p.action {
                    A::Deny if dry_deny.is_none() => dry_deny = p.matching(req),
                    A::Allow => {
                        dry_has_allow = true;
                        if dry_allow.is_none() && dry_deny.is_none() {
                            dry_allow = p.matching(req);
                        }
                    }
                    _ => {}
                }
                continue;
            }
            match p.action {
                A::Deny if deny.is_none() => deny = p.matching(req),
                A::Allow => {
                    has_allow = true;
                    // Once a DENY matched the ALLOW outcome no longer matters.
                    if allow.is_none() && deny.is_none() {
                        allow = p.matching(req);
                    }
                }
                A::Audit if audit.is_none() => audit = p.matching(req),
                _ => {}
            }
        }

        let (allowed, deciding) = if broken {
            (false, None)
        } else if deny.is_some() {
            (false, deny)
        } else if !has_allow {
            (true, None)
        } else {
            (allow.is_some(), allow)
        };
        let dry_run = dry_any.then(|| {
            if dry_deny.is_some() {
                (false, dry_deny)
            } else if !dry_has_allow {
                (true, None)
            } else {
                (dry_allow.is_some(), dry_allow)
            }
        });
        AuthzDecision {
            allowed,
            deciding,
            audit,
            dry_run,
        }
    }
}

#[derive(Debug, Clone)]
struct Policy {
    namespace: Box<str>,
    name: Box<str>,
    action: wire::AuthorizationAction,
    dry_run: bool,
    rules: Vec<Rule>,
}

impl Policy {
    fn compile(re: &RegexCache, p: &wire::AuthorizationPolicy) -> Result<Policy, InvalidAuthz> {
        let (namespace, name) = p
            .origin
            .as_ref()
            .map(|o| (o.namespace.as_str(), o.name.as_str()))
            .unwrap_or(("", ""));
        let cx = Cx {
            policy: format!("{namespace}/{name}"),
            namespace,
            re,
        };
        let action =
            wire::AuthorizationAction::try_from(p.action).map_err(|_| InvalidAuthz::Action {
                policy: cx.policy.clone(),
                value: p.action,
            })?;
        let rules = p
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| Rule::compile(&cx, &format!("rules[{i}]"), r))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Policy {
            namespace: namespace.into(),
            name: name.into(),
            action,
            dry_run: p.dry_run,
            rules,
        })
    }

    /// The first matching rule, as a [`PolicyMatch`]. No rules matches nothing: `spec: {}`
    /// is "allow nothing" (istiod emits no RBAC policy for it).
    ///
    /// A check on a client address the request does not carry (`source.ip` /
    /// `remote.ip` unknown: the host could not say who the client is) resolves against the
    /// caller: it holds in a DENY or AUDIT policy and fails in an ALLOW policy. That is how
    /// istiod treats a condition it cannot build (`rule.checkError`,
    /// `pilot/pkg/security/authz/model/model.go:354-364 @ 1.30.3`: an ALLOW rule is dropped,
    /// a DENY or AUDIT rule widened), so an unknown address can neither unlock an ALLOW nor
    /// slip past a DENY, whether the policy says `ipBlocks` or `notIpBlocks`.
    fn matching(&self, req: &Input<'_, '_>) -> Option<PolicyMatch<'_>> {
        let unknown = self.action != wire::AuthorizationAction::Allow;
        let rule = self.rules.iter().position(|r| r.matches(req, unknown))?;
        Some(PolicyMatch {
            namespace: &self.namespace,
            name: &self.name,
            action: self.action,
            rule: Some(rule),
        })
    }
}

/// Compile context: names the policy in errors and supplies its namespace.
struct Cx<'a> {
    policy: String,
    namespace: &'a str,
    re: &'a RegexCache,
}

impl Cx<'_> {
    fn empty(&self, field: String) -> InvalidAuthz {
        InvalidAuthz::EmptyValue {
            policy: self.policy.clone(),
            field,
        }
    }

    fn value(&self, field: String, value: &str, reason: String) -> InvalidAuthz {
        InvalidAuthz::Value {
            policy: self.policy.clone(),
            field,
            value: value.to_owned(),
            reason,
        }
    }

    fn unsupported(&self, field: String, what: &str) -> InvalidAuthz {
        InvalidAuthz::Unsupported {
            policy: self.policy.clone(),
            field,
            what: what.to_owned(),
        }
    }
}

/// One rule: `from` entries OR, `to` entries OR, `when` conditions AND; the groups AND.
/// An empty group matches everything, so `rules: [{}]` matches every request.
#[derive(Debug, Clone)]
struct Rule {
    /// Method bits ([`method_bit`]) some operation of the rule can match; all bits when the
    /// rule does not restrict methods to exact names. Only a prefilter.
    methods: u16,
    /// Path fingerprints every operation's `paths` can match; `None` when some operation does
    /// not restrict paths to exact/prefix values. Only a prefilter.
    path_gate: Option<PathGate>,
    from: Vec<Clause>,
    to: Vec<Clause>,
    when: Clause,
}

impl Rule {
    fn compile(cx: &Cx<'_>, at: &str, r: &wire::AuthorizationRule) -> Result<Rule, InvalidAuthz> {
        let mut from = Vec::with_capacity(r.from.len());
        for (i, s) in r.from.iter().enumerate() {
            from.push(compile_source(cx, &format!("{at}.from[{i}].source"), s)?);
        }
        let mut to = Vec::with_capacity(r.to.len());
        for (i, o) in r.to.iter().enumerate() {
            to.push(compile_operation(
                cx,
                &format!("{at}.to[{i}].operation"),
                o,
            )?);
        }
        let mut when = Clause::default();
        for (i, c) in r.when.iter().enumerate() {
            compile_condition(cx, &format!("{at}.when[{i}]"), c, &mut when)?;
        }
        when.sort();
        let methods = if to.is_empty() {
            ALL_METHODS
        } else {
            to.iter().fold(0, |acc, c| acc | c.method_bits())
        };
        let path_gate = PathGate::of(&to);
        Ok(Rule {
            methods,
            path_gate,
            from,
            to,
            when,
        })
    }

    /// `unknown`: what a check on an unknown client address counts as ([`Policy::matching`]).
    fn matches(&self, req: &Input<'_, '_>, unknown: bool) -> bool {
        // Prefilter: a rule whose every operation names exact methods cannot match others.
        if self.methods & req.method_bit == 0 {
            return false;
        }
        if let Some(gate) = &self.path_gate {
            if !gate.admits(req.path8) {
                return false;
            }
        }
        // Operations first: method/path/port checks are the cheapest and most selective.
        (self.to.is_empty() || self.to.iter().any(|c| c.matches(req, unknown)))
            && self.when.matches(req, unknown)
            && (self.from.is_empty() || self.from.iter().any(|c| c.matches(req, unknown)))
    }
}

/// Checks that must all hold (a Source, an Operation, or a rule's `when` list).
#[derive(Debug, Clone, Default)]
struct Clause {
    checks: Vec<Check>,
}

impl Clause {
    fn push(&mut self, pred: Pred, negate: bool) {
        self.checks.push(Check { pred, negate });
    }

    /// Cheapest checks first; the checks are pure, so order never changes the result.
    fn sort(&mut self) {
        self.checks.sort_by_key(|c| c.pred.cost());
    }

    /// Every check holds. A check on an unknown client address counts as `unknown` whether
    /// negated or not (`notIpBlocks` must not pass on an address nobody knows either); above
    /// the checks the logic is monotone (AND / OR), so this resolves the whole rule safely.
    fn matches(&self, req: &Input<'_, '_>, unknown: bool) -> bool {
        self.checks.iter().all(|c| {
            if c.pred.on_unknown_address(req) {
                unknown
            } else {
                c.pred.matches(req) != c.negate
            }
        })
    }

    /// Methods this operation can match: those of its positive exact `methods` check, or all.
    fn method_bits(&self) -> u16 {
        self.checks
            .iter()
            .find_map(|c| match (&c.pred, c.negate) {
                (Pred::MethodSet(bits, _), false) => Some(*bits),
                _ => None,
            })
            .unwrap_or(ALL_METHODS)
    }
}

/// Methods with a bit of their own; everything else shares [`OTHER_METHOD`].
const KNOWN_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];
const OTHER_METHOD: u16 = 1 << KNOWN_METHODS.len();
const ALL_METHODS: u16 = u16::MAX;

fn method_bit(m: &str) -> u16 {
    KNOWN_METHODS
        .iter()
        .position(|k| *k == m)
        .map_or(OTHER_METHOD, |i| 1 << i)
}

/// The request plus what every rule would otherwise recompute.
struct Input<'r, 'a> {
    req: &'r RequestView<'a>,
    /// Path without query or fragment, the value path matchers see.
    path: &'a str,
    /// First 8 bytes of `path`, zero-padded, for [`PathGate`].
    path8: u64,
    method_bit: u16,
}

impl<'r, 'a> Input<'r, 'a> {
    fn new(req: &'r RequestView<'a>) -> Self {
        let path = req.path_without_query();
        Input {
            req,
            path,
            path8: PathGate::fingerprint(path.as_bytes(), 8).0,
            method_bit: method_bit(req.method),
        }
    }
}

/// Inline prefilter on the first 8 bytes of the path: a request whose path cannot start with
/// any of a rule's exact/prefix path values skips the rule without touching its operations.
/// False positives are fine (the full check follows); false negatives are impossible because a
/// matching path shares the pattern's first min(8, len) bytes (and, for an exact value shorter
/// than 8 bytes, its zero padding too).
#[derive(Debug, Clone, Copy)]
struct PathGate {
    len: u8,
    entries: [(u64, u64); PathGate::MAX],
}

impl PathGate {
    const MAX: usize = 4;

    /// `(value, mask)` of the first `min(n, 8)` bytes of `b`, little-endian, zero-padded.
    fn fingerprint(b: &[u8], n: usize) -> (u64, u64) {
        let n = n.min(8).min(b.len());
        let mut v = [0u8; 8];
        v[..n].copy_from_slice(&b[..n]);
        let mask = if n == 8 {
            u64::MAX
        } else {
            (1u64 << (8 * n)) - 1
        };
        (u64::from_le_bytes(v), mask)
    }

    fn of(to: &[Clause]) -> Option<PathGate> {
        let mut gate = PathGate {
            len: 0,
            entries: [(0, 0); PathGate::MAX],
        };
        if to.is_empty() {
            return None;
        }
        for op in to {
            let pats = op.checks.iter().find_map(|c| match (&c.pred, c.negate) {
                (Pred::Path(p), false) => Some(p),
                _ => None,
            })?;
            for p in pats {
                let entry = match p {
                    PathPat::Str(StrMatch::Prefix(x)) => Self::fingerprint(x.as_bytes(), 8),
                    // An exact value shorter than 8 bytes also fixes the zero padding.
                    PathPat::Str(StrMatch::Exact(x)) => {
                        (Self::fingerprint(x.as_bytes(), 8).0, u64::MAX)
                    }
                    _ => return None,
                };
                let slot = gate.entries.get_mut(usize::from(gate.len))?;
                *slot = entry;
                gate.len += 1;
            }
        }
        Some(gate)
    }

    fn admits(&self, path8: u64) -> bool {
        self.entries[..usize::from(self.len)]
            .iter()
            .any(|&(v, m)| path8 & m == v)
    }
}

/// A field's values (OR), or with `negate` its not-values: istiod wraps those as
/// `not_rule`/`not_id { or { ... } }`, so an absent attribute satisfies a not-field.
#[derive(Debug, Clone)]
struct Check {
    pred: Pred,
    negate: bool,
}

/// One attribute against a list of alternative values.
#[derive(Debug, Clone)]
enum Pred {
    /// Peer principal (`principals`, `source.principal`); absent for plaintext peers.
    Principal(Vec<PrincipalPat>),
    /// Peer namespace through the principal (`namespaces`, `source.namespace`).
    Namespace(Vec<NamespacePat>),
    /// `source.serviceAccount` regexes on the principal.
    ServiceAccount(Vec<Regex>),
    /// Direct peer address (`ipBlocks`, `source.ip`).
    SourceIp(CidrSet),
    /// Original client address (`remoteIpBlocks`, `remote.ip`).
    RemoteIp(CidrSet),
    /// `destination.ip`.
    DestIp(CidrSet),
    /// `destination.port`, `ports`.
    Port(Vec<u16>),
    /// `:method` header matchers.
    Method(Vec<HeaderPat>),
    /// `:method` when every value is an exact name: bits of known methods, other names.
    MethodSet(u16, Vec<Box<str>>),
    /// `:authority` header matchers, ignore-case.
    Host(Vec<HeaderPat>),
    /// Path matchers on the path without query.
    Path(Vec<PathPat>),
    /// `request.headers[name]`.
    Header(Box<str>, Vec<HeaderPat>),
    /// `request.experimental.inline.headers[name]`.
    InlineHeader(Box<str>, Vec<HeaderPat>),
    /// `connection.sni`.
    Sni(Vec<StrMatch>),
    /// `requestPrincipals`, `request.auth.principal`: `iss` and `sub` of the verified JWT.
    RequestPrincipal(Vec<jwt_match::PrincipalPat>),
    /// `request.auth.audiences` (`aud`), `request.auth.presenter` (`azp`),
    /// `request.auth.claims[..]`: a claim path of the verified JWT.
    Claim(Box<[Box<str>]>, Vec<StrMatch>),
}

impl Pred {
    /// The connection attributes this predicate reads.
    fn needs(&self) -> ConnectionNeeds {
        let mut needs = ConnectionNeeds::default();
        match self {
            Pred::Principal(_) | Pred::Namespace(_) | Pred::ServiceAccount(_) => {
                needs.principal = true
            }
            Pred::SourceIp(_) => needs.source_ip = true,
            // `remote.ip` falls back to the direct peer's address.
            Pred::RemoteIp(_) => {
                needs.remote_ip = true;
                needs.source_ip = true;
            }
            Pred::Sni(_) => needs.sni = true,
            // The destination comes from the CONNECT authority, which is always read.
            Pred::DestIp(_)
            | Pred::Port(_)
            | Pred::Method(_)
            | Pred::MethodSet(..)
            | Pred::Host(_)
            | Pred::Path(_)
            | Pred::Header(..)
            | Pred::InlineHeader(..) => {}
            // The verified JWT payload arrives in a request header (jwt_authn's
            // forward_payload_header), not as a connection attribute.
            Pred::RequestPrincipal(_) | Pred::Claim(..) => {}
        }
        needs
    }

    fn cost(&self) -> u8 {
        match self {
            Pred::Port(_) | Pred::Method(_) | Pred::MethodSet(..) => 0,
            Pred::Path(p) if p.iter().all(|p| matches!(p, PathPat::Str(_))) => 1,
            Pred::Host(_) | Pred::SourceIp(_) | Pred::RemoteIp(_) | Pred::DestIp(_) => 1,
            Pred::Sni(_) | Pred::Principal(_) | Pred::Namespace(_) => 2,
            Pred::Header(..) | Pred::InlineHeader(..) => 3,
            Pred::RequestPrincipal(_) | Pred::Claim(..) => 3,
            Pred::Path(_) | Pred::ServiceAccount(_) => 4,
        }
    }

    /// Whether this is a check on a client address the request does not carry.
    fn on_unknown_address(&self, input: &Input<'_, '_>) -> bool {
        match self {
            Pred::SourceIp(_) => input.req.source.ip.is_none(),
            Pred::RemoteIp(_) => input.req.remote_ip().is_none(),
            _ => false,
        }
    }

    /// Hot predicates inline; the rare ones live in [`Pred::matches_cold`] to keep this small.
    fn matches(&self, input: &Input<'_, '_>) -> bool {
        let req = input.req;
        match self {
            Pred::MethodSet(bits, others) => {
                if input.method_bit == OTHER_METHOD {
                    others.iter().any(|o| **o == *req.method)
                } else {
                    bits & input.method_bit != 0
                }
            }
            Pred::Port(ports) => ports.contains(&req.destination.port),
            Pred::Path(pats) => pats.iter().any(|m| m.matches(input.path)),
            Pred::Principal(pats) => req
                .source
                .principal
                .is_some_and(|p| pats.iter().any(|m| m.matches(p))),
            Pred::Namespace(pats) => req
                .source
                .principal
                .is_some_and(|p| pats.iter().any(|m| m.matches(p))),
            Pred::Header(name, pats) if !name.starts_with(':') => {
                // One pass finds the value and whether the header repeats; the joined-value
                // matcher is only needed for a repeated header.
                let mut found = req.headers.iter().filter(|(n, _)| **n == **name);
                match (found.next(), found.next()) {
                    (None, _) => false,
                    (Some((_, v)), None) => pats.iter().any(|m| m.matches_one(Some(v), false)),
                    _ => pats
                        .iter()
                        .any(|m| m.matches_joined(header_values(req.headers, name))),
                }
            }
            _ => self.matches_cold(input),
        }
    }

    #[inline(never)]
    fn matches_cold(&self, input: &Input<'_, '_>) -> bool {
        let req = input.req;
        match self {
            Pred::ServiceAccount(res) => req
                .source
                .principal
                .is_some_and(|p| res.iter().any(|r| r.is_match(p))),
            Pred::SourceIp(set) => ip_in(req.source.ip, set),
            Pred::RemoteIp(set) => ip_in(req.remote_ip(), set),
            Pred::DestIp(set) => ip_in(req.destination.ip, set),
            Pred::Method(pats) => pats
                .iter()
                .any(|m| m.matches_one(non_empty(req.method), false)),
            Pred::Host(pats) => pats
                .iter()
                .any(|m| m.matches_one(non_empty(req.authority), true)),
            Pred::Header(name, pats) => match pseudo_header(req, name) {
                Some(v) => pats.iter().any(|m| m.matches_one(v, false)),
                None => pats
                    .iter()
                    .any(|m| m.matches_joined(header_values(req.headers, name))),
            },
            Pred::InlineHeader(name, pats) => match pseudo_header(req, name) {
                Some(v) => pats.iter().any(|m| m.matches_inline(v.into_iter())),
                None => pats
                    .iter()
                    .any(|m| m.matches_inline(header_values(req.headers, name))),
            },
            Pred::Sni(pats) => {
                // Envoy's requested_server_name is "" without SNI.
                let sni = req.sni.unwrap_or("");
                pats.iter().any(|m| m.matches(sni))
            }
            Pred::RequestPrincipal(pats) => req.jwt.is_some_and(|j| jwt_match::principal(j, pats)),
            Pred::Claim(path, pats) => req.jwt.is_some_and(|j| jwt_match::claim(j, path, pats)),
            // Handled by `matches`; listed so a new variant must be placed deliberately.
            Pred::MethodSet(..)
            | Pred::Port(_)
            | Pred::Path(_)
            | Pred::Principal(_)
            | Pred::Namespace(_) => self.matches(input),
        }
    }
}

fn ip_in(ip: Option<IpAddr>, set: &CidrSet) -> bool {
    ip.is_some_and(|ip| set.contains(ip))
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// Values of a header (lower-case name) in arrival order. The four pseudo-headers the view
/// carries as fields are answered by [`pseudo_header`] before this is consulted.
fn header_values<'a>(
    headers: &'a [(&'a str, &'a str)],
    name: &'a str,
) -> impl DoubleEndedIterator<Item = &'a str> + Clone + 'a {
    headers
        .iter()
        .filter(move |(n, _)| matchers::bytes_eq(n.as_bytes(), name.as_bytes()))
        .map(|(_, v)| *v)
}

/// Envoy keeps `:method`, `:path` (with query), `:authority` and `:scheme` in the header map, so
/// a `request.headers[:path]` condition sees them; the view carries them as fields.
/// `Some(None)` means "a pseudo-header that is absent".
fn pseudo_header<'a>(req: &RequestView<'a>, name: &str) -> Option<Option<&'a str>> {
    match name {
        ":method" => Some(non_empty(req.method)),
        ":path" => Some(non_empty(req.path)),
        ":authority" => Some(non_empty(req.authority)),
        ":scheme" => Some(non_empty(req.scheme)),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Compilation of the wire messages.
// ---------------------------------------------------------------------------------------------

fn check_values(cx: &Cx<'_>, field: &str, values: &[String]) -> Result<(), InvalidAuthz> {
    match values.iter().position(|v| v.is_empty()) {
        Some(i) => Err(cx.empty(format!("{field}[{i}]"))),
        None => Ok(()),
    }
}

fn cidrs(cx: &Cx<'_>, field: &str, values: &[String]) -> Result<CidrSet, InvalidAuthz> {
    let mut set = CidrSet::default();
    for (i, v) in values.iter().enumerate() {
        let c = parse_cidr(v).ok_or_else(|| InvalidAuthz::Cidr {
            policy: cx.policy.clone(),
            field: format!("{field}[{i}]"),
            value: v.clone(),
        })?;
        set.push(c);
    }
    Ok(set)
}

fn principals(cx: &Cx<'_>, field: &str, values: &[String]) -> Result<Pred, InvalidAuthz> {
    let pats = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            PrincipalPat::compile(cx.re, v).map_err(|e| cx.value(format!("{field}[{i}]"), v, e))
        })
        .collect::<Result<_, _>>()?;
    Ok(Pred::Principal(pats))
}

fn namespaces(cx: &Cx<'_>, field: &str, values: &[String]) -> Result<Pred, InvalidAuthz> {
    let pats = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            NamespacePat::compile(cx.re, v).map_err(|e| cx.value(format!("{field}[{i}]"), v, e))
        })
        .collect::<Result<_, _>>()?;
    Ok(Pred::Namespace(pats))
}

fn paths(cx: &Cx<'_>, field: &str, values: &[String]) -> Result<Pred, InvalidAuthz> {
    let pats = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            compile_path(cx.re, v).map_err(|reason| InvalidAuthz::Path {
                policy: cx.policy.clone(),
                field: format!("{field}[{i}]"),
                value: v.clone(),
                reason,
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Pred::Path(pats))
}

/// `methods` are `:method` header matchers; exact names become a bit set.
fn method_pred(values: &[String]) -> Pred {
    let pats = header_pats(values);
    if !pats
        .iter()
        .all(|p| matches!(p, HeaderPat::Str(StrMatch::Exact(_))))
    {
        return Pred::Method(pats);
    }
    let mut bits = 0;
    let mut others = Vec::new();
    for v in values {
        match method_bit(v) {
            OTHER_METHOD => {
                bits |= OTHER_METHOD;
                others.push(v.as_str().into());
            }
            b => bits |= b,
        }
    }
    Pred::MethodSet(bits, others)
}

fn header_pats(values: &[String]) -> Vec<HeaderPat> {
    values.iter().map(|v| HeaderPat::istio(v)).collect()
}

fn ports_u32(cx: &Cx<'_>, field: &str, values: &[u32]) -> Result<Pred, InvalidAuthz> {
    let mut out = Vec::with_capacity(values.len());
    for (i, &p) in values.iter().enumerate() {
        let p = u16::try_from(p).map_err(|_| InvalidAuthz::Port {
            policy: cx.policy.clone(),
            field: format!("{field}[{i}]"),
            value: p.to_string(),
        })?;
        out.push(p);
    }
    Ok(Pred::Port(out))
}

/// istiod's `convertToPort`: `strconv.ParseUint(v, 10, 32)` and at most 65535.
fn ports_str(cx: &Cx<'_>, field: &str, values: &[String]) -> Result<Pred, InvalidAuthz> {
    let mut out = Vec::with_capacity(values.len());
    for (i, v) in values.iter().enumerate() {
        let p = v
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| v.parse::<u16>().ok())
            .flatten()
            .ok_or_else(|| InvalidAuthz::Port {
                policy: cx.policy.clone(),
                field: format!("{field}[{i}]"),
                value: v.clone(),
            })?;
        out.push(p);
    }
    Ok(Pred::Port(out))
}

/// Adds `pred(values)` and `not pred(not_values)` for a field that has any of them.
fn add<F>(
    clause: &mut Clause,
    field: &str,
    not_field: &str,
    values: &[String],
    not_values: &[String],
    mut build: F,
) -> Result<(), InvalidAuthz>
where
    F: FnMut(&str, &[String]) -> Result<Pred, InvalidAuthz>,
{
    if !values.is_empty() {
        clause.push(build(field, values)?, false);
    }
    if !not_values.is_empty() {
        clause.push(build(not_field, not_values)?, true);
    }
    Ok(())
}

fn compile_source(cx: &Cx<'_>, at: &str, s: &wire::Source) -> Result<Clause, InvalidAuthz> {
    let f = |name: &str| format!("{at}.{name}");
    for (name, v) in [
        ("principals", &s.principals),
        ("notPrincipals", &s.not_principals),
        ("namespaces", &s.namespaces),
        ("notNamespaces", &s.not_namespaces),
        ("ipBlocks", &s.ip_blocks),
        ("notIpBlocks", &s.not_ip_blocks),
        ("remoteIpBlocks", &s.remote_ip_blocks),
        ("notRemoteIpBlocks", &s.not_remote_ip_blocks),
    ] {
        check_values(cx, &f(name), v)?;
    }
    check_values(cx, &f("requestPrincipals"), &s.request_principals)?;
    check_values(cx, &f("notRequestPrincipals"), &s.not_request_principals)?;
    let mut c = Clause::default();
    add(
        &mut c,
        &f("requestPrincipals"),
        &f("notRequestPrincipals"),
        &s.request_principals,
        &s.not_request_principals,
        |_, v| Ok(jwt_match::principals(v)),
    )?;
    add(
        &mut c,
        &f("principals"),
        &f("notPrincipals"),
        &s.principals,
        &s.not_principals,
        |fld, v| principals(cx, fld, v),
    )?;
    add(
        &mut c,
        &f("namespaces"),
        &f("notNamespaces"),
        &s.namespaces,
        &s.not_namespaces,
        |fld, v| namespaces(cx, fld, v),
    )?;
    add(
        &mut c,
        &f("ipBlocks"),
        &f("notIpBlocks"),
        &s.ip_blocks,
        &s.not_ip_blocks,
        |fld, v| cidrs(cx, fld, v).map(Pred::SourceIp),
    )?;
    add(
        &mut c,
        &f("remoteIpBlocks"),
        &f("notRemoteIpBlocks"),
        &s.remote_ip_blocks,
        &s.not_remote_ip_blocks,
        |fld, v| cidrs(cx, fld, v).map(Pred::RemoteIp),
    )?;
    c.sort();
    Ok(c)
}

fn compile_operation(cx: &Cx<'_>, at: &str, o: &wire::Operation) -> Result<Clause, InvalidAuthz> {
    let f = |name: &str| format!("{at}.{name}");
    for (name, v) in [
        ("hosts", &o.hosts),
        ("notHosts", &o.not_hosts),
        ("methods", &o.methods),
        ("notMethods", &o.not_methods),
        ("paths", &o.paths),
        ("notPaths", &o.not_paths),
    ] {
        check_values(cx, &f(name), v)?;
    }
    let mut c = Clause::default();
    add(
        &mut c,
        &f("hosts"),
        &f("notHosts"),
        &o.hosts,
        &o.not_hosts,
        |_, v| Ok(Pred::Host(header_pats(v))),
    )?;
    if !o.ports.is_empty() {
        c.push(ports_u32(cx, &f("ports"), &o.ports)?, false);
    }
    if !o.not_ports.is_empty() {
        c.push(ports_u32(cx, &f("notPorts"), &o.not_ports)?, true);
    }
    add(
        &mut c,
        &f("methods"),
        &f("notMethods"),
        &o.methods,
        &o.not_methods,
        |_, v| Ok(method_pred(v)),
    )?;
    add(
        &mut c,
        &f("paths"),
        &f("notPaths"),
        &o.paths,
        &o.not_paths,
        |fld, v| paths(cx, fld, v),
    )?;
    c.sort();
    Ok(c)
}

/// Name inside `[...]` as istiod's `extractNameInBrackets`, lower-cased like Envoy's
/// `LowerCaseString` header names.
fn bracket_name(rest: &str) -> Option<Box<str>> {
    let name = rest.strip_prefix('[')?.strip_suffix(']')?;
    (!name.is_empty()).then(|| name.to_ascii_lowercase().into())
}

fn compile_condition(
    cx: &Cx<'_>,
    at: &str,
    c: &wire::Condition,
    clause: &mut Clause,
) -> Result<(), InvalidAuthz> {
    let key = c.key.as_str();
    let kf = format!("{at}.key");
    let vf = format!("{at}.values");
    let nf = format!("{at}.notValues");
    check_values(cx, &vf, &c.values)?;
    check_values(cx, &nf, &c.not_values)?;
    let (values, not_values) = (&c.values, &c.not_values);
    match key {
        "source.ip" => add(clause, &vf, &nf, values, not_values, |fld, v| {
            cidrs(cx, fld, v).map(Pred::SourceIp)
        }),
        "remote.ip" => add(clause, &vf, &nf, values, not_values, |fld, v| {
            cidrs(cx, fld, v).map(Pred::RemoteIp)
        }),
        "destination.ip" => add(clause, &vf, &nf, values, not_values, |fld, v| {
            cidrs(cx, fld, v).map(Pred::DestIp)
        }),
        "destination.port" => add(clause, &vf, &nf, values, not_values, |fld, v| {
            ports_str(cx, fld, v)
        }),
        "connection.sni" => add(clause, &vf, &nf, values, not_values, |_, v| {
            Ok(Pred::Sni(v.iter().map(|s| StrMatch::istio(s)).collect()))
        }),
        "source.namespace" => add(clause, &vf, &nf, values, not_values, |fld, v| {
            namespaces(cx, fld, v)
        }),
        "source.principal" => add(clause, &vf, &nf, values, not_values, |fld, v| {
            principals(cx, fld, v)
        }),
        "source.serviceAccount" => add(clause, &vf, &nf, values, not_values, |fld, v| {
            let res = v
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    compile_service_account(cx.re, cx.namespace, s)
                        .map_err(|e| cx.value(format!("{fld}[{i}]"), s, e))
                })
                .collect::<Result<_, _>>()?;
            Ok(Pred::ServiceAccount(res))
        }),
        k if k.starts_with("request.headers") => {
            let name = bracket_name(&k["request.headers".len()..]).ok_or_else(|| {
                cx.value(kf.clone(), k, "expected request.headers[<name>]".into())
            })?;
            add(clause, &vf, &nf, values, not_values, |_, v| {
                Ok(Pred::Header(name.clone(), header_pats(v)))
            })
        }
        k if k.starts_with("request.experimental.inline.headers") => {
            let rest = &k["request.experimental.inline.headers".len()..];
            let name = bracket_name(rest).ok_or_else(|| {
                cx.value(
                    kf.clone(),
                    k,
                    "expected request.experimental.inline.headers[<name>]".into(),
                )
            })?;
            add(clause, &vf, &nf, values, not_values, |_, v| {
                Ok(Pred::InlineHeader(name.clone(), header_pats(v)))
            })
        }
        k if k.starts_with("request.auth.") => {
            let path = jwt_match::condition_path(k)
                .ok_or_else(|| cx.value(kf.clone(), k, jwt_match::KEY_FORMS.into()))?;
            add(clause, &vf, &nf, values, not_values, |_, v| {
                Ok(match &path {
                    None => jwt_match::principals(v),
                    Some(p) => {
                        Pred::Claim(p.clone(), v.iter().map(|s| StrMatch::istio(s)).collect())
                    }
                })
            })
        }
        k if k.starts_with("experimental.") => {
            Err(cx.unsupported(kf, &format!("condition key {k:?} (Envoy metadata)")))
        }
        k => Err(InvalidAuthz::UnknownKey {
            policy: cx.policy.clone(),
            field: kf,
            key: k.to_owned(),
        }),
    }
}

impl fmt::Display for PolicyMatch<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)?;
        if let Some(r) = self.rule {
            write!(f, " rules[{r}]")?;
        }
        Ok(())
    }
}
