//! Per-service route index: finds the first route (in the compiler's order) whose match holds,
//! without testing every route.
//!
//! Every `(route, match)` pair is an *entry*, numbered in evaluation order. Each entry lands in
//! exactly one bucket by its uri condition: exact paths in a hash map, prefixes (and regexes
//! that start with a literal) in a hash map keyed by the prefix and probed once per distinct
//! prefix length, the rest in an "always check" list (or a `RegexSet` when there are many
//! unanchored regexes). A request collects the buckets it can hit — each already sorted — and
//! walks their merge in entry order, testing each candidate fully; the first that holds wins,
//! exactly as Envoy's linear first-match walk would.

use regex::RegexSet;

use crate::fxhash::FxHashMap;
use crate::matcher::UriCond;

/// Regexes without a literal prefix are tested one by one up to this many; beyond it a
/// `RegexSet` tests them in one pass.
const REGEX_SET_THRESHOLD: usize = 16;

/// Sources kept on the stack while merging; more spill to a heap list.
const MAX_SOURCES: usize = 32;

/// Paths up to this length are lower-cased on the stack for case-insensitive lookups.
const STACK_LOWER: usize = 256;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    pub(crate) route: u32,
    /// Index into the route's matches; `u32::MAX` when the route has no matches at all.
    pub(crate) m: u32,
}

#[derive(Debug, Default)]
pub(crate) struct RouteIndex {
    pub(crate) entries: Vec<Entry>,
    exact: FxHashMap<Box<[u8]>, Vec<u32>>,
    exact_ci: FxHashMap<Box<[u8]>, Vec<u32>>,
    prefix: FxHashMap<Box<[u8]>, Vec<u32>>,
    prefix_lens: Vec<usize>,
    prefix_ci: FxHashMap<Box<[u8]>, Vec<u32>>,
    prefix_ci_lens: Vec<usize>,
    always: Vec<u32>,
    ungated_regex: Vec<(u32, String)>,
    regex_set: Option<(RegexSet, Vec<u32>)>,
}

/// The literal text every match of `pattern` must start with, or "" when that cannot be told
/// cheaply. Conservative: alternations, groups and flags stop the scan, and a literal followed
/// by a quantifier that allows zero repetitions is dropped.
pub(crate) fn regex_literal_prefix(pattern: &str) -> String {
    if pattern.contains('|') {
        return String::new();
    }
    let body = pattern.strip_prefix('^').unwrap_or(pattern);
    let mut out = String::new();
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        let lit = match c {
            '\\' => match chars.next() {
                Some(d) if d.is_ascii_punctuation() => d,
                _ => break,
            },
            '.' | '+' | '*' | '?' | '(' | ')' | '[' | ']' | '{' | '}' | '^' | '$' | '|' => break,
            c => c,
        };
        match chars.peek() {
            Some('?') | Some('*') | Some('{') => break,
            Some('+') => {
                out.push(lit);
                break;
            }
            _ => out.push(lit),
        }
    }
    out
}

fn push_sorted_len(lens: &mut Vec<usize>, l: usize) {
    if let Err(pos) = lens.binary_search(&l) {
        lens.insert(pos, l);
    }
}

impl RouteIndex {
    /// Add the next entry (entries must be added in evaluation order).
    pub(crate) fn add(&mut self, route: u32, m: u32, uri: &UriCond) {
        let id = self.entries.len() as u32;
        self.entries.push(Entry { route, m });
        match uri {
            UriCond::Any => self.always.push(id),
            UriCond::Exact { value, ci: false } => self
                .exact
                .entry(value.as_bytes().into())
                .or_default()
                .push(id),
            UriCond::Exact { value, ci: true } => self
                .exact_ci
                .entry(value.to_ascii_lowercase().into_bytes().into())
                .or_default()
                .push(id),
            UriCond::Prefix { value, ci: false }
            | UriCond::SeparatedPrefix { value, ci: false } => {
                push_sorted_len(&mut self.prefix_lens, value.len());
                self.prefix
                    .entry(value.as_bytes().into())
                    .or_default()
                    .push(id);
            }
            UriCond::Prefix { value, ci: true } | UriCond::SeparatedPrefix { value, ci: true } => {
                push_sorted_len(&mut self.prefix_ci_lens, value.len());
                self.prefix_ci
                    .entry(value.to_ascii_lowercase().into_bytes().into())
                    .or_default()
                    .push(id);
            }
            UriCond::Regex(r) => {
                let src = r.as_str();
                // Strip the `^(?:` … `)$` wrapper added at compile time.
                let inner = src
                    .strip_prefix("^(?:")
                    .and_then(|s| s.strip_suffix(")$"))
                    .unwrap_or("");
                let lit = regex_literal_prefix(inner);
                if lit.is_empty() {
                    self.ungated_regex.push((id, src.to_string()));
                } else {
                    push_sorted_len(&mut self.prefix_lens, lit.len());
                    self.prefix
                        .entry(lit.into_bytes().into())
                        .or_default()
                        .push(id);
                }
            }
        }
    }

    /// Finish building: decide how unanchored regexes are tested.
    pub(crate) fn finish(&mut self) -> Result<(), regex::Error> {
        let ungated = std::mem::take(&mut self.ungated_regex);
        if ungated.len() <= REGEX_SET_THRESHOLD {
            for (id, _) in ungated {
                self.always.push(id);
            }
            self.always.sort_unstable();
        } else {
            let set = RegexSet::new(ungated.iter().map(|(_, p)| p.as_str()))?;
            self.regex_set = Some((set, ungated.into_iter().map(|(id, _)| id).collect()));
        }
        Ok(())
    }

    /// Walk the candidate entries for `path` (no query) in evaluation order; return the first
    /// for which `accept` holds, with what `accept` returned.
    pub(crate) fn first<T>(
        &self,
        path: &str,
        mut accept: impl FnMut(Entry) -> Option<T>,
    ) -> Option<T> {
        let mut srcs: [&[u32]; MAX_SOURCES] = [&[]; MAX_SOURCES];
        let mut n = 0usize;
        let mut spill: Vec<u32> = Vec::new();
        macro_rules! add_src {
            ($s:expr) => {{
                let s: &[u32] = $s;
                if !s.is_empty() {
                    if n < MAX_SOURCES {
                        srcs[n] = s;
                        n += 1;
                    } else {
                        spill.extend_from_slice(s);
                    }
                }
            }};
        }

        let bytes = path.as_bytes();
        if let Some(v) = self.exact.get(bytes) {
            add_src!(v.as_slice());
        }
        for &l in &self.prefix_lens {
            if l > bytes.len() {
                break;
            }
            if let Some(v) = self.prefix.get(&bytes[..l]) {
                add_src!(v.as_slice());
            }
        }
        if !self.exact_ci.is_empty() || !self.prefix_ci.is_empty() {
            let mut stack = [0u8; STACK_LOWER];
            let heap;
            let lower: &[u8] = if bytes.len() <= STACK_LOWER {
                let buf = &mut stack[..bytes.len()];
                buf.copy_from_slice(bytes);
                buf.make_ascii_lowercase();
                buf
            } else {
                heap = bytes.to_ascii_lowercase();
                &heap
            };
            if let Some(v) = self.exact_ci.get(lower) {
                add_src!(v.as_slice());
            }
            for &l in &self.prefix_ci_lens {
                if l > lower.len() {
                    break;
                }
                if let Some(v) = self.prefix_ci.get(&lower[..l]) {
                    add_src!(v.as_slice());
                }
            }
        }
        add_src!(self.always.as_slice());
        if let Some((set, ids)) = &self.regex_set {
            if set.is_match(path) {
                for i in set.matches(path).iter() {
                    if let Some(&id) = ids.get(i) {
                        spill.push(id);
                    }
                }
            }
        }
        if !spill.is_empty() {
            spill.sort_unstable();
            spill.dedup();
        }
        let mut spill_pos = 0usize;

        loop {
            let mut min = u32::MAX;
            for s in &srcs[..n] {
                if let Some(&h) = s.first() {
                    min = min.min(h);
                }
            }
            if let Some(&h) = spill.get(spill_pos) {
                min = min.min(h);
            }
            if min == u32::MAX {
                return None;
            }
            if let Some(e) = self.entries.get(min as usize) {
                if let Some(t) = accept(*e) {
                    return Some(t);
                }
            }
            for s in &mut srcs[..n] {
                if s.first() == Some(&min) {
                    *s = &s[1..];
                }
            }
            if spill.get(spill_pos) == Some(&min) {
                spill_pos += 1;
            }
        }
    }
}
