//! Pieces of the side-by-side benchmark's load generator (`src/bin/bench.rs`, driven by
//! `cargo xtask bench`) that are worth testing on their own: the request list format, latency
//! percentiles, the "no policy" rewrite of a waypoint bootstrap, and the istiod-shaped
//! waypoint (native, or with layover attached by the route A EnvoyFilter).

use layover_bootstrap::istiod::istiod_waypoint_with_layover;
use layover_bootstrap::{
    dynamic_module_filter, endpoints_from_registry, to_yaml, wasm_filter, BootstrapOptions, Hbone,
};
use serde_json::{json, Value};

/// One request of the load: the HBONE CONNECT authority (ignored on the plain listener), the
/// `Host` header, the path, and extra headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `<service host>:<port>`: which tunnel carries the request under HBONE.
    pub authority: String,
    /// The `Host` header.
    pub host: String,
    /// Path and query.
    pub path: String,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
}

impl Target {
    /// Parses a request list: one request a line, `authority<TAB>host<TAB>path` followed by
    /// optional `<TAB>name: value` headers; empty lines and `#` comments are skipped.
    pub fn parse_list(text: &str) -> Result<Vec<Target>, String> {
        let mut out = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split('\t');
            let mut next = |what: &str| {
                fields
                    .next()
                    .filter(|f| !f.is_empty())
                    .map(str::to_string)
                    .ok_or_else(|| format!("line {}: no {what}", n + 1))
            };
            let authority = next("authority")?;
            let host = next("host")?;
            let path = next("path")?;
            if !path.starts_with('/') {
                return Err(format!("line {}: path `{path}` must start with /", n + 1));
            }
            let headers = fields
                .map(|h| {
                    h.split_once(':')
                        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                        .filter(|(k, _)| !k.is_empty())
                        .ok_or_else(|| format!("line {}: header `{h}` is not `name: value`", n + 1))
                })
                .collect::<Result<_, _>>()?;
            out.push(Target {
                authority,
                host,
                path,
                headers,
            });
        }
        if out.is_empty() {
            return Err("no requests in the list".into());
        }
        Ok(out)
    }
}

/// The `p`-th percentile (nearest rank) of ascending `sorted`; 0 for an empty slice.
pub fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

const HCM: &str = "envoy.filters.network.http_connection_manager";

/// Rewrites a waypoint bootstrap into the benchmark's "no policy" ceiling: every HTTP
/// connection manager except `connect_terminate`'s (which only hands CONNECT tunnels to
/// `main_internal`) gets a single route, `prefix: /` → `cluster`, and the router as its only
/// HTTP filter. Listeners, TLS and clusters stay as they are. Returns how many connection
/// managers were rewritten.
pub fn ceiling(config: &mut Value, cluster: &str) -> Result<usize, String> {
    let listeners = config
        .pointer_mut("/static_resources/listeners")
        .and_then(Value::as_array_mut)
        .ok_or("no static_resources.listeners")?;
    let mut changed = 0;
    for listener in listeners {
        if listener.get("name").and_then(Value::as_str)
            == Some(layover_bootstrap::CONNECT_TERMINATE)
        {
            continue;
        }
        let Some(chains) = listener
            .get_mut("filter_chains")
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        for chain in chains {
            let Some(filters) = chain.get_mut("filters").and_then(Value::as_array_mut) else {
                continue;
            };
            for filter in filters {
                if filter.get("name").and_then(Value::as_str) != Some(HCM) {
                    continue;
                }
                let Some(hcm) = filter
                    .get_mut("typed_config")
                    .and_then(Value::as_object_mut)
                else {
                    continue;
                };
                hcm.insert(
                    "route_config".into(),
                    json!({
                        "name": "no-policy",
                        "virtual_hosts": [{
                            "name": "all",
                            "domains": ["*"],
                            "routes": [{
                                "match": {"prefix": "/"},
                                "route": {"cluster": cluster, "timeout": "0s"},
                            }],
                        }],
                    }),
                );
                hcm.insert(
                    "http_filters".into(),
                    json!([{
                        "name": "envoy.filters.http.router",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
                        },
                    }]),
                );
                changed += 1;
            }
        }
    }
    Ok(changed)
}

/// Which waypoint of the istiod shape to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IstiodBuild {
    /// istiod's own RBAC filters and routes on every chain (the baseline).
    Native,
    /// layover's proxy-wasm build (this module file) attached by route A.
    Wasm(std::path::PathBuf),
    /// layover's dynamic module attached by route A.
    DynamicModule,
}

impl IstiodBuild {
    /// `native`, `wasm` (with the module file) or `dynamic-module`.
    pub fn parse(name: &str, wasm: Option<&std::path::Path>) -> Result<IstiodBuild, String> {
        match (name, wasm) {
            ("native", _) => Ok(IstiodBuild::Native),
            ("dynamic-module", _) => Ok(IstiodBuild::DynamicModule),
            ("wasm", Some(path)) => Ok(IstiodBuild::Wasm(path.to_path_buf())),
            ("wasm", None) => Err("the wasm build needs the module file (--wasm)".into()),
            (other, _) => Err(format!(
                "unknown build `{other}` (native, wasm or dynamic-module)"
            )),
        }
    }
}

/// The waypoint istiod would push for the Istio YAML `yaml` ([`istiod_waypoint_value`] at the
/// pinned release): HBONE in on `hbone.port`, one `main_internal` chain per service port
/// selected by the service's VIP, every endpoint in the mesh (reached by HBONE through
/// `connect_originate` on `hbone.upstream_port`, the destination ztunnel's). For the layover
/// builds the filter gets in the way a cluster attaches it: the route A EnvoyFilter applied with
/// istiod's rules. Every service must have a VIP (a Service `clusterIP`): `main_internal`
/// selects chains by VIP only, so a service without one could not be reached.
pub fn istiod_bootstrap(
    yaml: &str,
    build: &IstiodBuild,
    hbone: Hbone,
    admin_port: u16,
) -> Result<String, String> {
    let compiled = crate::waypoint::compile_yaml(yaml).map_err(|e| e.to_string())?;
    let policy = &compiled.policy;
    if let Some(svc) = policy.services.iter().find(|s| {
        !s.ports.is_empty()
            && !s
                .addresses
                .iter()
                .any(|a| a.parse::<std::net::IpAddr>().is_ok())
    }) {
        return Err(format!(
            "service {} has no VIP (Service clusterIP): istiod's main_internal selects chains by VIP",
            svc.hostname
        ));
    }
    let mut endpoints = endpoints_from_registry(&compiled);
    for ep in &mut endpoints {
        ep.hbone = true;
    }
    let policy_json = serde_json::to_string(policy).map_err(|e| e.to_string())?;
    let layover_filter = match build {
        IstiodBuild::Native => None,
        IstiodBuild::Wasm(path) => Some(wasm_filter(path, &policy_json)),
        IstiodBuild::DynamicModule => Some(dynamic_module_filter(&policy_json)),
    };
    let opts = BootstrapOptions {
        admin_port,
        listener_port: 0,
        hbone: Some(hbone),
        layover_filter,
        ..BootstrapOptions::default()
    };
    let v = istiod_waypoint_with_layover(policy, &endpoints, &opts).map_err(|e| e.to_string())?;
    Ok(to_yaml(&v))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn request_lists_parse_and_reject_bad_lines() {
        let list = "# comment\n\
                    a.default.svc.cluster.local:9080\ta:9080\t/api/s0/items\n\
                    \n\
                    a.default.svc.cluster.local:9080\ta:9080\t/api/h3/x\tx-tenant: t3\n";
        let t = Target::parse_list(list).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].host, "a:9080");
        assert!(t[0].headers.is_empty());
        assert_eq!(t[1].headers, vec![("x-tenant".into(), "t3".into())]);
        assert!(Target::parse_list("a\tb\n")
            .unwrap_err()
            .contains("line 1: no path"));
        assert!(Target::parse_list("a\tb\tp\n")
            .unwrap_err()
            .contains("must start with /"));
        assert!(Target::parse_list("a\tb\t/p\tnocolon\n")
            .unwrap_err()
            .contains("not `name: value`"));
        assert!(Target::parse_list("# nothing\n").is_err());
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&v, 0.0), 1);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
    }

    #[test]
    fn ceiling_rewrites_every_http_manager_but_connect_terminate() {
        let hcm = |route: &str| {
            json!({"name": HCM, "typed_config": {
                "stat_prefix": "x",
                "route_config": {"name": route},
                "http_filters": [{"name": "layover"}, {"name": "envoy.filters.http.router"}],
            }})
        };
        let mut config = json!({"static_resources": {"listeners": [
            {"name": "layover", "filter_chains": [{"filters": [hcm("a")]}]},
            {"name": layover_bootstrap::CONNECT_TERMINATE, "filter_chains": [{"filters": [hcm("b")]}]},
            {"name": "main_internal", "filter_chains": [{"filters": [hcm("c")]}]},
            {"name": "tcp", "filter_chains": [{"filters": [{"name": "envoy.filters.network.tcp_proxy"}]}]},
        ]}});
        assert_eq!(ceiling(&mut config, "outbound|9080||a").unwrap(), 2);
        let l = &config["static_resources"]["listeners"];
        for i in [0, 2] {
            let tc = &l[i]["filter_chains"][0]["filters"][0]["typed_config"];
            assert_eq!(
                tc["route_config"]["virtual_hosts"][0]["routes"][0]["route"]["cluster"],
                json!("outbound|9080||a")
            );
            assert_eq!(tc["http_filters"].as_array().unwrap().len(), 1);
            assert_eq!(tc["stat_prefix"], json!("x"));
        }
        let untouched = &l[1]["filter_chains"][0]["filters"][0]["typed_config"];
        assert_eq!(untouched["route_config"]["name"], json!("b"));
        assert!(ceiling(&mut json!({}), "c").is_err());
    }
}
