//! The waypoint fixture of the integration suite: Istio YAML for real backends, compiled with
//! `layover_compiler`, turned into a bootstrap by `layover_bootstrap`, served by a real Envoy running
//! one of the layover filter builds.
//!
//! The flow is the one `layover envoy` uses (envoy-config/cli/src/envoy_cmd.rs): YAML → compiled
//! policy → policy JSON as the filter configuration → base waypoint bootstrap with the
//! registry's endpoints → the emitted EnvoyFilter (and any in the YAML) applied to it. Envoy is
//! configured only through EnvoyFilter objects, as a cluster's waypoint would be.

use std::path::PathBuf;

use bytes::Bytes;
use http::Method;
use layover_bootstrap::{bootstrap, endpoints_from_registry, BootstrapOptions};
use serde_json::Value;

use crate::{repo_root, Backend, Envoy, EnvoyOptions, HarnessError, HttpClient, Launch, Reply};

/// Which build of the layover filter Envoy loads. Every test of the suite runs once per build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterBuild {
    /// The proxy-wasm module on V8 (`layover_wasm.wasm`).
    Wasm,
    /// The Envoy dynamic module (`liblayover_module.so`, crate `filters/dynamic-module`).
    DynamicModule,
    /// No layover filter: the native translation of the same policy
    /// (`layover_bootstrap::native`), plain Envoy routes and RBAC as istiod writes them. The
    /// baseline and correctness oracle; it runs the tests whose behaviour native Envoy can
    /// express.
    Native,
}

/// Name Envoy resolves to `lib<name>.so` in `ENVOY_DYNAMIC_MODULES_SEARCH_PATH` (the name
/// `layover_bootstrap::dynamic_module_filter` loads).
pub use layover_contract::DYNAMIC_MODULE_NAME;

/// The proxy-wasm module: `$LAYOVER_WASM`, else the `wasm-release` build under `target/`.
pub fn wasm_module() -> Result<PathBuf, HarnessError> {
    let path = std::env::var_os("LAYOVER_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/wasm32-wasip1/wasm-release/layover_wasm.wasm"));
    if path.is_file() {
        Ok(path)
    } else {
        Err(HarnessError::Config(format!(
            "wasm module {} not found\nhint: build it with `cargo xtask build-wasm` (or point LAYOVER_WASM at a layover_wasm.wasm)",
            path.display()
        )))
    }
}

/// The directory holding `lib<DYNAMIC_MODULE_NAME>.so`: `$LAYOVER_DYNAMIC_MODULE_DIR`, else
/// `target/release`.
pub fn dynamic_module_dir() -> Result<PathBuf, HarnessError> {
    let dir = std::env::var_os("LAYOVER_DYNAMIC_MODULE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/release"));
    let lib = dir.join(format!("lib{DYNAMIC_MODULE_NAME}.so"));
    if lib.is_file() {
        Ok(dir)
    } else {
        Err(HarnessError::Config(format!(
            "dynamic module {} not found\nhint: build it with `cargo xtask build-dynamic-module` (or set LAYOVER_DYNAMIC_MODULE_DIR)",
            lib.display()
        )))
    }
}

impl FilterBuild {
    /// Short name for messages.
    pub fn name(self) -> &'static str {
        match self {
            FilterBuild::Wasm => "wasm",
            FilterBuild::DynamicModule => "dynamic-module",
            FilterBuild::Native => "native",
        }
    }

    /// The `http_filters` entry loading this build with `policy_json` as its configuration.
    pub fn http_filter(self, policy_json: &str) -> Result<Value, HarnessError> {
        match self {
            FilterBuild::Wasm => Ok(layover_bootstrap::wasm_filter(&wasm_module()?, policy_json)),
            FilterBuild::DynamicModule => {
                dynamic_module_dir()?;
                Ok(layover_bootstrap::dynamic_module_filter(policy_json))
            }
            FilterBuild::Native => Err(HarnessError::Config(
                "the native build has no layover filter; use FilterBuild::bootstrap".into(),
            )),
        }
    }

    /// Environment the Envoy process needs for this build.
    pub fn envoy_env(self) -> Result<Vec<(String, String)>, HarnessError> {
        match self {
            FilterBuild::Wasm | FilterBuild::Native => Ok(Vec::new()),
            FilterBuild::DynamicModule => Ok(vec![(
                "ENVOY_DYNAMIC_MODULES_SEARCH_PATH".to_string(),
                dynamic_module_dir()?.display().to_string(),
            )]),
        }
    }

    /// The bootstrap for `compiled` with this build: `opts` plus the layover filter loaded with
    /// the policy, or for [`FilterBuild::Native`] the native translation with `opts`.
    pub fn bootstrap(
        self,
        compiled: &layover_compiler::Compiled,
        opts: BootstrapOptions,
    ) -> Result<String, HarnessError> {
        let endpoints = endpoints_from_registry(compiled);
        if self == FilterBuild::Native {
            return layover_bootstrap::native::native_bootstrap(
                &compiled.policy,
                &endpoints,
                &opts,
            )
            .map_err(|e| HarnessError::Config(e.to_string()));
        }
        let opts = BootstrapOptions {
            layover_filter: Some(self.http_filter(&policy_json(compiled)?)?),
            ..opts
        };
        bootstrap(&compiled.policy, &endpoints, &opts)
            .map_err(|e| HarnessError::Config(e.to_string()))
    }

    /// Envoy options (log level, environment) for this build.
    pub fn envoy_options(self) -> Result<EnvoyOptions, HarnessError> {
        Ok(EnvoyOptions {
            log_level: "warn".into(),
            env: self.envoy_env()?,
            ..EnvoyOptions::default()
        })
    }
}

/// A Kubernetes Service `name` in `default`, selecting `app: <name>`, with one HTTP port 9080
/// (target port 9080; WorkloadEntries override it by port name).
pub fn service_yaml(name: &str) -> String {
    format!(
        "---
apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: default
spec:
  selector:
    app: {name}
  ports:
  - name: http
    port: 9080
    targetPort: 9080
"
    )
}

/// A WorkloadEntry for a running backend: `address: 127.0.0.1`, its real port under the
/// service port's name (`http`, which is how the compiler picks a WorkloadEntry's port), labels
/// `app: <app>` and `version: <backend subset>`.
pub fn workload_yaml(backend: &Backend, app: &str) -> String {
    let version = backend.subset();
    let port = backend.port();
    format!(
        "---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: {app}-{version}-{port}
  namespace: default
spec:
  address: 127.0.0.1
  ports:
    http: {port}
  labels:
    app: {app}
    version: {version}
"
    )
}

/// A DestinationRule for `app` with one subset per version (`version: <v>` labels).
pub fn subsets_yaml(app: &str, versions: &[&str]) -> String {
    let mut out = format!(
        "---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: {app}
  namespace: default
spec:
  host: {app}
  subsets:
"
    );
    for v in versions {
        out.push_str(&format!("  - name: {v}\n    labels:\n      version: {v}\n"));
    }
    out
}

/// Service `app` plus one WorkloadEntry per backend.
pub fn app_yaml(app: &str, backends: &[&Backend]) -> String {
    let mut out = service_yaml(app);
    for b in backends {
        out.push_str(&workload_yaml(b, app));
    }
    out
}

/// Loads and compiles Istio YAML; errors carry the compiler's messages.
pub fn compile_yaml(yaml: &str) -> Result<layover_compiler::Compiled, HarnessError> {
    let bundle = layover_compiler::load_str("test.yaml", yaml)
        .map_err(|e| HarnessError::Config(format!("loading the test YAML:\n{e}\n---\n{yaml}")))?;
    layover_compiler::compile(&bundle)
        .map_err(|e| HarnessError::Config(format!("compiling the test YAML:\n{e}\n---\n{yaml}")))
}

/// The compiled policy as the JSON the filters take as configuration.
pub fn policy_json(compiled: &layover_compiler::Compiled) -> Result<String, HarnessError> {
    serde_json::to_string(&compiled.policy)
        .map_err(|e| HarnessError::Config(format!("encoding the policy: {e}")))
}

/// The bootstrap for `compiled` with `filter` as the layover filter: admin and listener on
/// kernel-picked ports, access log on. The filter gets into Envoy the way it gets into a
/// cluster's waypoint: `layover_bootstrap` applies the EnvoyFilter `layover manifests` emits to the
/// base waypoint.
pub fn waypoint_bootstrap(
    compiled: &layover_compiler::Compiled,
    filter: Value,
    launch: &Launch,
) -> Result<String, HarnessError> {
    waypoint_bootstrap_with(compiled, filter, &[], launch)
}

/// [`waypoint_bootstrap`] plus user EnvoyFilters, applied after layover's with Istio's
/// semantics (what `layover envoy` does with the EnvoyFilters in `--config`).
pub fn waypoint_bootstrap_with(
    compiled: &layover_compiler::Compiled,
    filter: Value,
    envoy_filters: &[layover_envoyfilter::EnvoyFilter],
    launch: &Launch,
) -> Result<String, HarnessError> {
    let opts = BootstrapOptions {
        admin_port: Launch::ANY_PORT,
        listener_port: Launch::ANY_PORT,
        access_log_path: Some(launch.access_log.display().to_string()),
        layover_filter: Some(filter),
        envoy_filters: envoy_filters.to_vec(),
        ..BootstrapOptions::default()
    };
    bootstrap(&compiled.policy, &endpoints_from_registry(compiled), &opts)
        .map_err(|e| HarnessError::Config(e.to_string()))
}

/// The bootstrap options every waypoint test uses: admin and listener on kernel-picked ports,
/// access log on.
pub fn launch_options(launch: &Launch) -> BootstrapOptions {
    BootstrapOptions {
        admin_port: Launch::ANY_PORT,
        listener_port: Launch::ANY_PORT,
        access_log_path: Some(launch.access_log.display().to_string()),
        ..BootstrapOptions::default()
    }
}

/// A layover waypoint under a real Envoy, with an HTTP/1.1 keep-alive client.
#[derive(Debug)]
pub struct Waypoint {
    /// The Envoy process.
    pub envoy: Envoy,
    /// Pooled HTTP/1.1 client.
    pub client: HttpClient,
    /// What the compiler produced for the test YAML.
    pub compiled: layover_compiler::Compiled,
}

impl Waypoint {
    /// Compiles `yaml` and starts Envoy with the `build` filter loaded with the policy; the
    /// EnvoyFilters in `yaml` are applied too, as `layover envoy` applies those in `--config`.
    pub async fn start(build: FilterBuild, yaml: &str) -> Result<Waypoint, HarnessError> {
        let compiled = compile_yaml(yaml)?;
        let envoy_filters = layover_envoyfilter::load_str("test.yaml", yaml).map_err(|e| {
            let lines: Vec<String> = e.iter().map(ToString::to_string).collect();
            HarnessError::Config(format!(
                "loading the test EnvoyFilters:\n{}",
                lines.join("\n")
            ))
        })?;
        let envoy = Envoy::start_with(&build.envoy_options()?, |launch| {
            let opts = BootstrapOptions {
                envoy_filters: envoy_filters.clone(),
                ..launch_options(launch)
            };
            build.bootstrap(&compiled, opts)
        })
        .await?;
        Ok(Waypoint {
            envoy,
            client: HttpClient::http1(),
            compiled,
        })
    }

    /// Sends `method` to `path` with `Host: <host>` and extra headers.
    pub async fn send(
        &self,
        method: Method,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Reply, HarnessError> {
        let mut all: Vec<(&str, &str)> = vec![("host", host)];
        all.extend_from_slice(headers);
        self.client
            .request(method, &self.envoy.url(path), &all, body)
            .await
    }

    /// `GET path` with `Host: <host>`.
    pub async fn get(&self, host: &str, path: &str) -> Result<Reply, HarnessError> {
        self.send(Method::GET, host, path, &[], Bytes::new()).await
    }

    /// `GET path` with `Host: <host>` and extra headers.
    pub async fn get_with(
        &self,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Reply, HarnessError> {
        self.send(Method::GET, host, path, headers, Bytes::new())
            .await
    }
}
