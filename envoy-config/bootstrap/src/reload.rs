//! Hot policy reload without draining anything: the layover filter's configuration comes from
//! Envoy's extension config discovery (ECDS) over a file instead of being inline.
//!
//! [`ecds_filter`] turns a layover `http_filters` entry (from [`crate::wasm_filter`] or
//! [`crate::dynamic_module_filter`]) into an entry with `config_discovery` whose
//! `path_config_source` points at a resource file, and returns the resource file's content (an
//! xDS `DiscoveryResponse` holding one `TypedExtensionConfig` named like the filter). Envoy reads
//! the file at start and again whenever it is *moved* into place in the watched directory
//! ([`write_atomically`]: write a temporary file beside it, then rename). A new configuration
//! applies to streams created after it is accepted; listeners, connections and in-flight
//! requests are untouched (https://www.envoyproxy.io/docs/envoy/v1.40.0/configuration/overview/extension).
//!
//! A configuration the filter refuses (wasm `on_configure` returning false, the dynamic module's
//! `config_new` returning null: an invalid policy) is rejected by Envoy as a whole and the
//! previous one stays in effect (`extension_config_discovery.<name>.config_fail` counts it).

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

/// Why an ECDS entry could not be built or written.
#[derive(Debug, thiserror::Error)]
pub enum InvalidReload {
    /// The filter entry has no `name` or no `typed_config` with an `@type`.
    #[error(
        "the layover filter entry needs `name` and `typed_config.@type` to be served over ECDS"
    )]
    FilterEntry,
    /// The resource path has no parent directory to watch, or is not valid UTF-8.
    #[error("ECDS resource path {0}: needs a parent directory and a UTF-8 name")]
    Path(PathBuf),
    /// Writing or renaming the resource file failed.
    #[error("writing the ECDS resource {path}: {source}")]
    Io {
        /// The resource file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// `filter` served over ECDS from `resource`: returns the `http_filters` entry that refers to
/// it and the initial content of `resource` (write it with [`write_atomically`] before Envoy
/// starts: listeners wait for the first configuration).
pub fn ecds_filter(filter: &Value, resource: &Path) -> Result<(Value, Value), InvalidReload> {
    let name = filter
        .get("name")
        .and_then(Value::as_str)
        .ok_or(InvalidReload::FilterEntry)?;
    let typed_config = filter
        .get("typed_config")
        .ok_or(InvalidReload::FilterEntry)?;
    let type_url = typed_config
        .get("@type")
        .and_then(Value::as_str)
        .ok_or(InvalidReload::FilterEntry)?;
    let dir = resource
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .and_then(Path::to_str)
        .ok_or_else(|| InvalidReload::Path(resource.to_path_buf()))?;
    let path = resource
        .to_str()
        .ok_or_else(|| InvalidReload::Path(resource.to_path_buf()))?;
    let entry = json!({
        "name": name,
        "config_discovery": {
            "config_source": {
                "resource_api_version": "V3",
                "path_config_source": {
                    "path": path,
                    // Without it Envoy watches the file itself and misses atomic renames.
                    "watched_directory": { "path": dir },
                },
            },
            "type_urls": [type_url],
        },
    });
    Ok((entry, ecds_resource(name, typed_config, "1")))
}

/// The ECDS resource file for filter `name` with `typed_config`, at `version`.
pub fn ecds_resource(name: &str, typed_config: &Value, version: &str) -> Value {
    json!({
        "version_info": version,
        "resources": [{
            "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
            "name": name,
            "typed_config": typed_config,
        }],
    })
}

/// The resource for a new policy: the `typed_config` of `filter` (a fresh filter entry built
/// with the new policy), named `name`, at `version`.
pub fn ecds_update(filter: &Value, version: &str) -> Result<Value, InvalidReload> {
    let name = filter
        .get("name")
        .and_then(Value::as_str)
        .ok_or(InvalidReload::FilterEntry)?;
    let typed_config = filter
        .get("typed_config")
        .ok_or(InvalidReload::FilterEntry)?;
    Ok(ecds_resource(name, typed_config, version))
}

/// Replaces `path` with `content` atomically: written to a temporary file in the same directory,
/// then renamed over `path`, so Envoy never reads half a file and its directory watch fires.
pub fn write_atomically(path: &Path, content: &Value) -> Result<(), InvalidReload> {
    let io = |source| InvalidReload::Io {
        path: path.to_path_buf(),
        source,
    };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| InvalidReload::Path(path.to_path_buf()))?;
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let bytes = serde_json::to_vec_pretty(content).map_err(|e| io(e.into()))?;
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ecds_entry_refers_to_the_resource_and_keeps_the_type() {
        let filter = crate::dynamic_module_filter("{}");
        let (entry, resource) =
            ecds_filter(&filter, Path::new("/tmp/x/layover.ecds.json")).unwrap();
        assert_eq!(entry["name"], "layover");
        assert!(entry.get("typed_config").is_none());
        let cs = &entry["config_discovery"]["config_source"]["path_config_source"];
        assert_eq!(cs["path"], "/tmp/x/layover.ecds.json");
        assert_eq!(cs["watched_directory"]["path"], "/tmp/x");
        assert_eq!(
            entry["config_discovery"]["type_urls"][0],
            filter["typed_config"]["@type"]
        );
        assert_eq!(resource["resources"][0]["name"], "layover");
        assert_eq!(
            resource["resources"][0]["typed_config"],
            filter["typed_config"]
        );
        assert!(ecds_filter(&json!({"name": "x"}), Path::new("/tmp/a")).is_err());
        assert!(ecds_filter(&filter, Path::new("relative")).is_err());
    }

    #[test]
    fn atomic_write_replaces_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        write_atomically(&path, &json!({"a": 1})).unwrap();
        write_atomically(&path, &json!({"a": 2})).unwrap();
        let back: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(back["a"], 2);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
