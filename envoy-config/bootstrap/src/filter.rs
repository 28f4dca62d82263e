//! The pieces that put layover into the bootstrap: the filter entry and the endpoints the
//! compiler found.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{json, Value};

use layover_contract::{ClusterSelection, FilterConfig, DYNAMIC_MODULE_NAME, FILTER_NAME};

use crate::Endpoint;

/// The `http_filters` entry loading the proxy-wasm build with `policy_json` (the output of
/// `layover compile --json`) as its plugin configuration.
pub fn wasm_filter(wasm: &Path, policy_json: &str) -> Value {
    json!({
        "name": FILTER_NAME,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": FILTER_NAME,
                "root_id": FILTER_NAME,
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": policy_json,
                },
                "vm_config": {
                    "vm_id": FILTER_NAME,
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": wasm.to_string_lossy()}},
                },
                // A VM failure (a trap) is never let through: the request that hit it gets
                // 503, and a fresh VM replaces the failed one for later requests (FAIL_CLOSED
                // would leave that worker answering 503 to everything until a restart;
                // README "Security").
                "failure_policy": "FAIL_RELOAD",
            }
        }
    })
}

/// The `http_filters` entry loading the dynamic-module build (`liblayover_module.so`, found on
/// `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`) with `policy_json` (the output of `layover compile --json`)
/// as its filter configuration. `do_not_close` keeps the module loaded for the life of the
/// process: it runs a timer thread.
pub fn dynamic_module_filter(policy_json: &str) -> Value {
    dynamic_module_entry(policy_json.to_string())
}

/// Like [`dynamic_module_filter`], for a bootstrap whose
/// [`crate::BootstrapOptions::cluster_selection`] is `selection`: the filter configuration is
/// [`FilterConfig::encode`]`(policy_json, selection)`, which tells the module where to write its
/// cluster choice. Fails when `policy_json` is not JSON.
pub fn dynamic_module_filter_with(
    policy_json: &str,
    selection: ClusterSelection,
) -> Result<Value, String> {
    FilterConfig::encode(policy_json, selection).map(dynamic_module_entry)
}

fn dynamic_module_entry(filter_config: String) -> Value {
    json!({
        "name": FILTER_NAME,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
            "dynamic_module_config": { "name": DYNAMIC_MODULE_NAME, "do_not_close": true },
            "filter_name": FILTER_NAME,
            "filter_config": {
                "@type": "type.googleapis.com/google.protobuf.StringValue",
                "value": filter_config,
            },
        }
    })
}

/// The compiler's per-cluster endpoints as one list for [`crate::bootstrap`], which selects each
/// cluster's endpoints by labels (and service) itself. An endpoint listed under several clusters
/// (the service's default cluster and a subset) appears once.
pub fn endpoints_from_registry(compiled: &layover_compiler::Compiled) -> Vec<Endpoint> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (cluster, eps) in &compiled.registry.clusters {
        let service = compiled
            .policy
            .clusters
            .iter()
            .find(|c| &c.name == cluster)
            .map(|c| c.service.clone());
        for ep in eps {
            let Ok(port) = u16::try_from(ep.port) else {
                continue;
            };
            if !seen.insert((ep.address.clone(), port, ep.labels.clone(), service.clone())) {
                continue;
            }
            let mut e = Endpoint::new(ep.address.clone(), port, ep.labels.clone());
            if let Some(s) = &service {
                e = e.with_service(s.clone());
            }
            out.push(e);
        }
    }
    out
}
