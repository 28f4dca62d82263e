//! The pieces that put layover into the bootstrap: the filter entry and the endpoints the
//! compiler found.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{json, Value};

use crate::{ClusterSelection, Endpoint};

/// The `http_filters` entry loading the proxy-wasm build with `policy_json` (the output of
/// `layover compile --json`) as its plugin configuration.
pub fn wasm_filter(wasm: &Path, policy_json: &str) -> Value {
    json!({
        "name": "layover",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "layover",
                "root_id": "layover",
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": policy_json,
                },
                "vm_config": {
                    "vm_id": "layover",
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
    dynamic_module_filter_with(policy_json, ClusterSelection::Header)
}

/// Like [`dynamic_module_filter`], for a bootstrap whose
/// [`crate::BootstrapOptions::cluster_selection`] is `selection`. With
/// [`ClusterSelection::Header`] the filter configuration is the policy JSON itself; with
/// [`ClusterSelection::SpecifierPlugin`] it is the wrapper
/// `{"cluster_selection":"metadata","policy":<policy>}`, which tells the module to write its
/// cluster choice to dynamic metadata for the cluster specifier plugin instead of the header.
pub fn dynamic_module_filter_with(policy_json: &str, selection: ClusterSelection) -> Value {
    let filter_config = match selection {
        ClusterSelection::Header => policy_json.to_string(),
        ClusterSelection::SpecifierPlugin => {
            format!("{{\"cluster_selection\":\"metadata\",\"policy\":{policy_json}}}")
        }
    };
    json!({
        "name": "layover",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
            "dynamic_module_config": { "name": "layover_module", "do_not_close": true },
            "filter_name": "layover",
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
pub fn endpoints_from_registry(compiled: &layover_config::Compiled) -> Vec<Endpoint> {
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
