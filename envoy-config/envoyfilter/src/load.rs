//! The EnvoyFilter documents among the YAML inputs `layover compile` reads (files and
//! directories, `*.yaml` / `*.yml`, sorted, multi-document streams and `kind: List`).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::{wire, EnvoyFilter, InvalidEnvoyFilter, Reason, API_VERSION};

/// Every EnvoyFilter in `paths`, validated. All errors are returned, so one run reports them
/// all; other kinds are ignored (the compiler reads them).
pub fn load_paths(paths: &[PathBuf]) -> Result<Vec<EnvoyFilter>, Vec<InvalidEnvoyFilter>> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        if p.is_dir() {
            if let Err(e) = walk(p, &mut files) {
                errors.push(io_error(p, &e));
            }
        } else {
            files.push(p.clone());
        }
    }
    let mut seen = std::collections::HashSet::new();
    files.retain(|f| seen.insert(std::fs::canonicalize(f).unwrap_or_else(|_| f.clone())));
    let mut out = Vec::new();
    for f in files {
        match std::fs::read_to_string(&f) {
            Ok(text) => match load_str(&f.display().to_string(), &text) {
                Ok(mut found) => out.append(&mut found),
                Err(mut e) => errors.append(&mut e),
            },
            Err(e) => errors.push(io_error(&f, &e)),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn io_error(p: &Path, e: &std::io::Error) -> InvalidEnvoyFilter {
    InvalidEnvoyFilter {
        object: p.display().to_string(),
        path: String::new(),
        reason: Reason::Schema(format!("cannot read: {e}")),
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out)?;
        } else if matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("yaml") | Some("yml")
        ) {
            out.push(p);
        }
    }
    Ok(())
}

/// The EnvoyFilters in one YAML stream; `file` names it in messages.
pub fn load_str(file: &str, text: &str) -> Result<Vec<EnvoyFilter>, Vec<InvalidEnvoyFilter>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let source = format!("{file}: document {}", i + 1);
        let value = match Value::deserialize(doc) {
            Ok(v) => v,
            Err(e) => {
                // YAML syntax: the compiler reports it too, with the same location.
                errors.push(InvalidEnvoyFilter {
                    object: source,
                    path: String::new(),
                    reason: Reason::Schema(format!("invalid YAML: {e}")),
                });
                break;
            }
        };
        let items = if value.get("kind").and_then(Value::as_str) == Some("List") {
            value
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        } else {
            vec![value]
        };
        for item in items {
            if item.get("kind").and_then(Value::as_str) != Some("EnvoyFilter") {
                continue;
            }
            match from_value(item, Some(source.clone())) {
                Ok(ef) => out.push(ef),
                Err(e) => errors.push(e),
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Validates one EnvoyFilter object given as JSON.
pub(crate) fn from_value(
    value: Value,
    source: Option<String>,
) -> Result<EnvoyFilter, InvalidEnvoyFilter> {
    let ns = value
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let object = match &source {
        Some(s) => format!("{s} (EnvoyFilter {ns}/{name})"),
        None => format!("EnvoyFilter {ns}/{name}"),
    };
    if let Some(av) = value.get("apiVersion").and_then(Value::as_str) {
        if av != API_VERSION {
            return Err(InvalidEnvoyFilter {
                object,
                path: "apiVersion".into(),
                reason: Reason::UnknownValue {
                    value: av.into(),
                    expected: API_VERSION.into(),
                },
            });
        }
    }
    let doc: wire::EnvoyFilterDoc =
        serde_path_to_error::deserialize(value).map_err(|e| InvalidEnvoyFilter {
            object: object.clone(),
            path: e.path().to_string(),
            reason: Reason::Schema(e.inner().to_string()),
        })?;
    EnvoyFilter::from_doc(doc, source)
}

impl EnvoyFilter {
    /// Validates one EnvoyFilter object given as JSON (e.g. one layover emitted).
    pub fn from_value(value: Value) -> Result<EnvoyFilter, InvalidEnvoyFilter> {
        from_value(value, None)
    }
}
