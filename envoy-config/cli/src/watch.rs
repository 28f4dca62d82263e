//! `layover envoy --watch`: the policy follows the YAML while Envoy runs. The layover filter is
//! served over ECDS from `<out-dir>/layover.ecds.json` (`layover_bootstrap::reload`); when a file
//! under `--config` changes, the YAML is compiled again and, when it compiles, the resource is
//! replaced atomically — Envoy applies it to new requests without draining anything. A YAML that
//! does not compile is reported and the running policy stays; so is one that needs clusters the
//! running bootstrap does not have (a restart is needed for those).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use serde_json::Value;

/// How often the configuration files are checked for changes.
const POLL: Duration = Duration::from_millis(500);

/// The ECDS resource file in `out_dir`.
pub fn resource_path(out_dir: &Path) -> Result<PathBuf, String> {
    // Absolute (Envoy watches an absolute directory) without touching the file system: the
    // directory is created only once the whole configuration was generated.
    let dir = std::path::absolute(out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    Ok(dir.join("layover.ecds.json"))
}

/// The newest modification time and the file list under `paths` (recursively).
fn snapshot(paths: &[PathBuf]) -> (Option<SystemTime>, BTreeSet<PathBuf>) {
    let mut newest = None;
    let mut files = BTreeSet::new();
    let mut stack: Vec<PathBuf> = paths.to_vec();
    while let Some(p) = stack.pop() {
        if let Ok(rd) = std::fs::read_dir(&p) {
            stack.extend(rd.filter_map(|e| e.ok().map(|e| e.path())));
            continue;
        }
        if let Ok(m) = std::fs::metadata(&p).and_then(|m| m.modified()) {
            newest = newest.max(Some(m));
        }
        files.insert(p);
    }
    (newest, files)
}

/// Watches `args.config` until interrupted; `make_filter` builds the filter entry for a policy
/// (JSON), `clusters` is the cluster set of the running bootstrap.
pub fn watch(
    config: &[PathBuf],
    opts: &layover_compiler::CompileOptions,
    resource: &Path,
    clusters: &BTreeSet<String>,
    make_filter: &dyn Fn(&str) -> Result<Option<Value>, String>,
    stop: &AtomicBool,
) -> Result<(), String> {
    let mut seen = snapshot(config);
    let mut version: u64 = 1;
    eprintln!(
        "watching {} for changes (ECDS resource {})",
        config
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        resource.display()
    );
    loop {
        std::thread::sleep(POLL);
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let now = snapshot(config);
        if now == seen {
            continue;
        }
        seen = now;
        let compiled = match layover_compiler::compile_paths_with(config, opts) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{e}\nlayover envoy --watch: the running policy stays in effect");
                continue;
            }
        };
        if let Err(e) = layover_core::CompiledPolicy::compile(&compiled.policy) {
            eprintln!("the compiled policy was rejected by the engine: {e}\nlayover envoy --watch: the running policy stays in effect");
            continue;
        }
        let wanted: BTreeSet<String> = compiled
            .policy
            .clusters
            .iter()
            .map(|c| c.name.clone())
            .collect();
        let missing: Vec<&String> = wanted.difference(clusters).collect();
        if !missing.is_empty() {
            eprintln!(
                "layover envoy --watch: the new policy needs clusters the running bootstrap lacks ({}); restart `layover envoy` to apply it — the running policy stays in effect",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            continue;
        }
        let policy_json = serde_json::to_string(&compiled.policy)
            .map_err(|e| format!("cannot encode the policy: {e}"))?;
        let Some(filter) = make_filter(&policy_json)? else {
            continue;
        };
        version += 1;
        let update = layover_bootstrap::reload::ecds_update(&filter, &version.to_string())
            .map_err(|e| e.to_string())?;
        layover_bootstrap::reload::write_atomically(resource, &update)
            .map_err(|e| e.to_string())?;
        eprintln!(
            "layover envoy --watch: policy version {version} written ({} services); Envoy applies it to new requests",
            compiled.policy.services.len()
        );
    }
}
