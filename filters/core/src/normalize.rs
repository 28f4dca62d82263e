//! What Envoy's HTTP connection manager does to `:path` before any filter runs, under each of
//! Istio's MeshConfig `pathNormalization` modes.
//!
//! istiod (`pilot/pkg/networking/core/listener_builder.go`, "Setup normalization") always sets
//! `path_with_escaped_slashes_action: KEEP_UNCHANGED`, then:
//! - `NONE`: `normalize_path: false`;
//! - `BASE` (and `DEFAULT`): `normalize_path: true`;
//! - `MERGE_SLASHES`: `normalize_path: true`, `merge_slashes: true`;
//! - `DECODE_AND_MERGE_SLASHES`: as MERGE_SLASHES plus `UNESCAPE_AND_FORWARD`.
//!
//! Envoy (`ConnectionManagerImpl::ActiveStream::decodeHeaders` and
//! `ConnectionManagerUtility::maybeNormalizePath`) then, in order: answers 404 to a path that is
//! not origin-form; strips a `#fragment` (Istio's bootstrap turns
//! `http_reject_path_with_fragment` off, so fragments are stripped, not rejected); unescapes
//! `%2F`/`%5C` when asked; runs `PathUtil::canonicalPath` (Chromium's `CanonicalizePath` on
//! the part before `?`); then merges slashes (`PathTransformer::mergeSlashes`).

use crate::matcher::hex_val;
use crate::wire::PathNormalization;

/// Envoy answers the request itself instead of running filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathRejected {
    /// The path is empty.
    #[error("missing :path")]
    Empty,
    /// The path does not start with "/". Envoy's HTTP/1 codec answers 400 (measured against
    /// Envoy 1.40 in `tests/integration/tests/envoy_smoke.rs`, paths `a/b` and `*`).
    #[error("path is not origin-form (does not start with '/')")]
    NotOriginForm,
    /// The canonicalizer failed (a NUL byte, raw or as `%00`); Envoy answers 400
    /// (`path_normalization_failed`).
    #[error("path cannot be normalized (NUL byte)")]
    Invalid,
}

impl PathRejected {
    /// The HTTP status Envoy answers with.
    pub fn status(&self) -> u16 {
        match self {
            PathRejected::NotOriginForm => 400,
            PathRejected::Empty | PathRejected::Invalid => 400,
        }
    }
}

/// Apply Envoy's pre-filter path processing for `mode` to a raw request path (with query and
/// possibly a fragment). The query is kept untouched; the fragment is stripped.
pub fn normalize_path(raw: &str, mode: PathNormalization) -> Result<String, PathRejected> {
    if raw.is_empty() {
        return Err(PathRejected::Empty);
    }
    if !raw.starts_with('/') {
        return Err(PathRejected::NotOriginForm);
    }
    // Fragment: everything from the first '#', even inside the query.
    let raw = match raw.find('#') {
        Some(i) => &raw[..i],
        None => raw,
    };
    let (normalize, merge, unescape) = match mode {
        PathNormalization::None => (false, false, false),
        PathNormalization::Base => (true, false, false),
        PathNormalization::MergeSlashes => (true, true, false),
        PathNormalization::DecodeAndMergeSlashes => (true, true, true),
    };
    let (path, query) = match raw.find('?') {
        Some(i) => raw.split_at(i),
        None => (raw, ""),
    };
    let mut p = if unescape {
        unescape_slashes(path)
    } else {
        path.to_string()
    };
    if normalize {
        p = canonicalize(&p)?;
    }
    if merge {
        p = merge_slashes(&p);
    }
    p.push_str(query);
    Ok(p)
}

/// `PathUtil::unescapeSlashes`: `%2F`/`%2f` → `/`, `%5C`/`%5c` → `\`.
fn unescape_slashes(path: &str) -> String {
    if !path.contains('%') {
        return path.to_string();
    }
    let b = path.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let pair = [b[i + 1].to_ascii_uppercase(), b[i + 2].to_ascii_uppercase()];
            match &pair {
                b"2F" => {
                    out.push(b'/');
                    i += 3;
                    continue;
                }
                b"5C" => {
                    out.push(b'\\');
                    i += 3;
                    continue;
                }
                _ => {}
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Character classes of Chromium's `kPathCharLookup` (Envoy's `chromium_url` snapshot /
/// `url::CanonicalizePath`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Copied as is.
    Pass,
    /// Percent-encoded in the output (uppercase hex).
    Escape,
    /// An escaped form is decoded (unreserved characters: ALPHA, DIGIT, `-`, `.`, `_`, `~`).
    Unescape,
    /// NUL: fails canonicalization.
    Invalid,
}

fn class(c: u8) -> Class {
    match c {
        0 => Class::Invalid,
        1..=0x1f | 0x7f..=0xff => Class::Escape,
        b' ' | b'"' | b'#' | b'<' | b'>' | b'?' | b'`' | b'{' | b'|' | b'}' | b'^' | b'\\' => {
            Class::Escape
        }
        b'%' => Class::Escape,
        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => Class::Unescape,
        _ => Class::Pass,
    }
}

/// Length of a "dot" at `i`: 1 for `.`, 3 for `%2e`/`%2E`, 0 otherwise (`IsDot`).
fn dot_len(b: &[u8], i: usize) -> usize {
    if b[i] == b'.' {
        1
    } else if b[i] == b'%' && i + 3 <= b.len() && b[i + 1] == b'2' && (b[i + 2] | 0x20) == b'e' {
        3
    } else {
        0
    }
}

fn is_slash(c: u8) -> bool {
    c == b'/' || c == b'\\'
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn push_escaped(out: &mut Vec<u8>, c: u8) {
    out.push(b'%');
    out.push(HEX_UPPER[usize::from(c >> 4)]);
    out.push(HEX_UPPER[usize::from(c & 0xf)]);
}

/// Remove the last segment of `out` (which ends in '/'), keeping the first slash.
fn back_up_to_previous_slash(out: &mut Vec<u8>) {
    if out.len() <= 1 {
        return;
    }
    let mut i = out.len() - 1;
    // Skip the trailing slash, then find the previous one.
    i -= 1;
    while i > 0 && out[i] != b'/' {
        i -= 1;
    }
    out.truncate(i + 1);
}

/// Chromium `DoPartialPath` as used by Envoy's `PathUtil::canonicalPath`: resolves `.` and `..`
/// segments (also spelled `%2e`), turns `\` into `/`, decodes escaped unreserved characters,
/// escapes characters that must not appear raw, keeps other escapes byte-for-byte, and fails on
/// NUL. Repeated slashes are kept.
fn canonicalize(path: &str) -> Result<String, PathRejected> {
    let b = path.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len() + 8);
    if b.is_empty() || !is_slash(b[0]) {
        out.push(b'/');
    }
    let mut ok = true;
    // Output index of a '%' that did not start a valid escape (nested-escape protection).
    let mut last_invalid_percent: Option<usize> = None;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let dl = dot_len(b, i);
        if dl > 0 {
            if out.last() == Some(&b'/') {
                let after = i + dl;
                if after == b.len() {
                    // "." at the end: current directory.
                    i = after;
                    continue;
                }
                if is_slash(b[after]) {
                    i = after + 1;
                    continue;
                }
                let dl2 = dot_len(b, after);
                if dl2 > 0 {
                    let after2 = after + dl2;
                    if after2 == b.len() {
                        back_up_to_previous_slash(&mut out);
                        i = after2;
                        continue;
                    }
                    if is_slash(b[after2]) {
                        back_up_to_previous_slash(&mut out);
                        i = after2 + 1;
                        continue;
                    }
                }
            }
            out.push(b'.');
            i += dl;
            continue;
        }
        match c {
            b'\\' => out.push(b'/'),
            b'%' => {
                let decoded = if i + 2 < b.len() {
                    match (hex_val(b[i + 1]), hex_val(b[i + 2])) {
                        (Some(h), Some(l)) => Some(h << 4 | l),
                        _ => None,
                    }
                } else {
                    None
                };
                match decoded {
                    Some(v) if class(v) == Class::Unescape => {
                        out.push(v);
                        if let Some(p) = last_invalid_percent {
                            if p + 3 >= out.len() {
                                fix_nested_escape(b, i + 3, p, &mut out);
                            }
                        }
                        i += 3;
                        continue;
                    }
                    Some(v) => {
                        // Kept exactly, hex case included.
                        out.extend_from_slice(&b[i..i + 3]);
                        if class(v) == Class::Invalid {
                            ok = false;
                        }
                        i += 3;
                        continue;
                    }
                    None => {
                        last_invalid_percent = Some(out.len());
                        out.push(b'%');
                    }
                }
            }
            _ => match class(c) {
                Class::Invalid => {
                    push_escaped(&mut out, c);
                    ok = false;
                }
                Class::Escape => push_escaped(&mut out, c),
                Class::Pass | Class::Unescape => out.push(c),
            },
        }
        i += 1;
    }
    if !ok {
        return Err(PathRejected::Invalid);
    }
    Ok(String::from_utf8(out)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

/// Chromium `CheckForNestedEscapes`: after decoding right behind an invalid '%', make sure the
/// output does not now spell a valid escape (e.g. `%%30%30` must not become `%00`); if it does,
/// the '%' becomes `%25`.
fn fix_nested_escape(spec: &[u8], next: usize, pct: usize, out: &mut Vec<u8>) {
    let len = out.len();
    let last = out[len - 1];
    let append_next = pct + 2 == len;
    if append_next {
        if next >= spec.len() || spec[next] >= 0x80 {
            return;
        }
        out.push(spec[next]);
    }
    let valid =
        out.len() >= pct + 3 && hex_val(out[pct + 1]).is_some() && hex_val(out[pct + 2]).is_some();
    if valid {
        if !append_next {
            let c = out[pct + 1];
            out.push(c);
        }
        out[pct + 1] = b'2';
        out[pct + 2] = b'5';
        out.push(last);
    } else if append_next {
        out.truncate(len);
    }
}

/// `PathTransformer::mergeSlashes`: split on '/', drop empty segments, re-join, keeping one
/// leading and one trailing slash if the path had them. Applied to the path part only.
fn merge_slashes(path: &str) -> String {
    if !path.contains("//") {
        return path.to_string();
    }
    let mut out = String::with_capacity(path.len());
    if path.starts_with('/') {
        out.push('/');
    }
    let mut first = true;
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        if !first {
            out.push('/');
        }
        out.push_str(seg);
        first = false;
    }
    if path.ends_with('/') {
        out.push('/');
    }
    out
}
