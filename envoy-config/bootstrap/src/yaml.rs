//! YAML output that Envoy reads back as the same JSON.
//!
//! Envoy parses YAML with YAML 1.1 scalar rules: a plain `yes`, `on`, `y` or `off` becomes a
//! boolean. `serde_yaml_ng` writes YAML 1.2 and leaves those strings plain, so a header value
//! `"yes"` in a filter config would reach Envoy as `true` and be rejected (seen with an
//! EnvoyFilter's header_mutation). This emitter writes a string plain only when it is a
//! simple token no YAML version reads as anything else, and JSON-quotes it otherwise (a JSON
//! string is a valid YAML double-quoted scalar).

use serde_json::Value;

/// `value` as block-style YAML (a trailing newline; `{}` / `[]` for empty containers).
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(m) if !m.is_empty() => write_map(&mut out, m, 0),
        Value::Array(a) if !a.is_empty() => write_seq(&mut out, a, 0),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

const YAML11_WORDS: &[&str] = &[
    "y", "n", "yes", "no", "on", "off", "true", "false", "null", "~",
];

fn plain_ok(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if !(first.is_ascii_alphabetic() || first == '_' || first == '/') {
        return false;
    }
    if YAML11_WORDS.contains(&s.to_ascii_lowercase().as_str()) {
        return false;
    }
    // `:` is plain inside a token (URLs, SPIFFE ids) unless it could start a mapping value.
    if s.ends_with(':') || s.contains(": ") {
        return false;
    }
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/' | ':'))
}

fn string(s: &str) -> String {
    if plain_ok(s) {
        s.to_string()
    } else {
        Value::String(s.to_string()).to_string()
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => string(s),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
        other => other.to_string(),
    }
}

fn write_map(out: &mut String, m: &serde_json::Map<String, Value>, indent: usize) {
    let pad = " ".repeat(indent);
    for (k, v) in m {
        out.push_str(&pad);
        out.push_str(&string(k));
        out.push(':');
        write_value(out, v, indent, false);
    }
}

fn write_value(out: &mut String, v: &Value, indent: usize, in_seq: bool) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            write_map(out, m, indent + 2);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            // Sequences under a key are indented like serde_yaml_ng writes them.
            write_seq(out, a, if in_seq { indent + 2 } else { indent });
        }
        other => write_scalar(out, other, indent + 2),
    }
}

/// A scalar after `key:` or `-`. Multi-line strings become literal blocks (`|` / `|-`), whose
/// content YAML never reinterprets; `content_indent` is the block's indentation.
fn write_scalar(out: &mut String, v: &Value, content_indent: usize) {
    if let Value::String(s) = v {
        let body = s.strip_suffix('\n').unwrap_or(s);
        let literal_ok = s.contains('\n')
            && !body.chars().any(|c| c.is_control() && c != '\n')
            && !body.starts_with([' ', '\n'])
            && !body.ends_with('\n')
            && body.lines().all(|l| !l.ends_with(' '));
        if literal_ok {
            out.push_str(if s.ends_with('\n') { " |\n" } else { " |-\n" });
            let pad = " ".repeat(content_indent);
            for line in body.split('\n') {
                if !line.is_empty() {
                    out.push_str(&pad);
                    out.push_str(line);
                }
                out.push('\n');
            }
            return;
        }
    }
    out.push(' ');
    out.push_str(&scalar(v));
    out.push('\n');
}

fn write_seq(out: &mut String, a: &[Value], indent: usize) {
    let pad = " ".repeat(indent);
    for item in a {
        out.push_str(&pad);
        out.push('-');
        match item {
            Value::Object(m) if !m.is_empty() => {
                // The first key goes on the dash line, the rest align with it.
                let mut first = true;
                for (k, v) in m {
                    if first {
                        out.push(' ');
                        first = false;
                    } else {
                        out.push_str(&" ".repeat(indent + 2));
                    }
                    out.push_str(&string(k));
                    out.push(':');
                    write_value(out, v, indent + 2, false);
                }
            }
            Value::Array(inner) if !inner.is_empty() => {
                out.push('\n');
                write_seq(out, inner, indent + 2);
            }
            other => write_scalar(out, other, indent + 2),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_and_quotes_yaml11_booleans() {
        let v = json!({
            "a": "yes", "b": "On", "c": "y", "d": "plain.name-1/x", "e": "", "f": "1",
            "g": "%DOWNSTREAM_PEER_URI_SAN%", "u": "spiffe://example.org/", "u2": "a:", "u3": "x: y", "h": "multi\nline: yes\n\n  indented\n", "h2": "a\nb", "h3": " lead\nx", "@type": "type.googleapis.com/x.Y",
            "n": 1, "t": true, "z": null, "l": ["off", {"k": "v", "m": {"x": [1, 2]}}, [], {}],
            "em": {}, "nested": [[1, "no"], {"a": {"b": "c"}}],
        });
        let text = to_yaml(&v);
        for word in [
            "a: \"yes\"",
            "b: \"On\"",
            "c: \"y\"",
            "- \"off\"",
            "d: plain.name-1/x",
        ] {
            assert!(text.contains(word), "{word} in\n{text}");
        }
        let back: Value = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(back, v, "\n{text}");
    }
}
