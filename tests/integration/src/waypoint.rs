//! The waypoint fixture of the integration suite: Istio YAML for real backends, compiled with
//! `layover_compiler`, turned into a bootstrap by `layover_bootstrap`, served by a real Envoy running
//! one of the layover filter builds.
//!
//! The flow is the one `layover envoy` uses (envoy-config/cli/src/envoy_cmd.rs): YAML → compiled
//! policy → policy JSON as the filter configuration → base waypoint bootstrap with the
//! registry's endpoints → the emitted EnvoyFilter (and any in the YAML) applied to it. Envoy is
//! configured only through EnvoyFilter objects, as a cluster's waypoint would be.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::Method;
use layover_bootstrap::istiod::istiod_waypoint_with_layover;
use layover_bootstrap::{bootstrap, endpoints_from_registry, BootstrapOptions, CONNECT_TERMINATE};
use layover_contract::ClusterSelection;
use layover_envoyfilter::IstioVersion;
use serde_json::Value;

use crate::client::{parse_raw, raw_http1_over, raw_request, RawResponse};
use crate::mesh::{Certs, Tunnels, DEFAULT_CALLER};
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
    compile_yaml_at(yaml, IstioVersion::PINNED)
}

/// [`compile_yaml`] with the routing defaults of Istio release `istio`.
pub fn compile_yaml_at(
    yaml: &str,
    istio: IstioVersion,
) -> Result<layover_compiler::Compiled, HarnessError> {
    let bundle = layover_compiler::load_str("test.yaml", yaml)
        .map_err(|e| HarnessError::Config(format!("loading the test YAML:\n{e}\n---\n{yaml}")))?;
    let opts = layover_compiler::CompileOptions {
        istio,
        ..layover_compiler::CompileOptions::default()
    };
    layover_compiler::compile_with(&bundle, &opts)
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

/// The shape of the waypoint a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// layover's own bootstrap (`layover_bootstrap::bootstrap`): requests go through the plain
    /// listener and the `Host` header selects the service.
    OwnBootstrap,
    /// The waypoint istiod generates (`layover_bootstrap::istiod::istiod_waypoint_value`),
    /// natively or with layover attached only by the route A EnvoyFilter
    /// (`layover_bootstrap::istiod::route_a_envoy_filter`). It has no plain listener:
    /// requests go through HBONE, a CONNECT to the service `VIP:port` (the chain of
    /// `main_internal` is picked by destination IP, then port), as a mesh workload.
    Istiod,
}

tokio::task_local! {
    /// The shape [`Waypoint::start`] builds, set per test by the suites' macros.
    static SHAPE: Shape;
}

impl Shape {
    /// The shape set for the current task by [`Shape::scope`]; [`Shape::OwnBootstrap`]
    /// outside one. Task-locals do not follow `tokio::spawn`: read it before spawning and pass
    /// it to [`Waypoint::start_in`].
    pub fn current() -> Shape {
        SHAPE.try_with(|s| *s).unwrap_or(Shape::OwnBootstrap)
    }

    /// Runs `f` with this shape as [`Shape::current`].
    pub async fn scope<F: std::future::Future>(self, f: F) -> F::Output {
        SHAPE.scope(self, f).await
    }

    /// Short name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Shape::OwnBootstrap => "own-bootstrap",
            Shape::Istiod => "istiod",
        }
    }
}

/// Gives every service of `compiled` without an address a VIP, `10.96.<a>.<b>` derived from
/// its hostname (FNV-1a; the next free one on a collision), as Kubernetes allocates a
/// ClusterIP to every Service: the istiod shape selects a service by VIP. The suite's YAML
/// leaves `clusterIP` out (the own-bootstrap runs select by `Host`), so the VIP is added to the
/// compiled policy, for the native configuration and the filters alike.
pub fn assign_vips(compiled: &mut layover_compiler::Compiled) {
    let mut used: std::collections::BTreeSet<String> = compiled
        .policy
        .services
        .iter()
        .flat_map(|s| s.addresses.iter().cloned())
        .collect();
    for svc in &mut compiled.policy.services {
        if !svc.addresses.is_empty() {
            continue;
        }
        let mut h: u32 = 0x811c_9dc5;
        for b in svc.hostname.bytes() {
            h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
        let mut n = (h ^ (h >> 16)) & 0xffff;
        loop {
            let (a, b) = (n >> 8, n & 0xff);
            let vip = format!("10.96.{a}.{b}");
            if b != 0 && b != 255 && !used.contains(&vip) {
                used.insert(vip.clone());
                svc.addresses.push(vip);
                break;
            }
            n = (n + 1) & 0xffff;
        }
    }
}

impl FilterBuild {
    /// The istiod-shaped waypoint for `compiled` with this build, as YAML: natively
    /// ([`FilterBuild::Native`], istiod's own RBAC and routes) or with the layover filter
    /// attached only by the route A EnvoyFilter (what `layover manifests` emits, applied with
    /// istiod's rules at `opts.istio`) ahead of `opts.envoy_filters`.
    /// `opts.hbone` is required; every service needs an address ([`assign_vips`]).
    pub fn istiod_bootstrap(
        self,
        compiled: &layover_compiler::Compiled,
        opts: BootstrapOptions,
    ) -> Result<String, HarnessError> {
        let endpoints = endpoints_from_registry(compiled);
        let layover_filter = match self {
            FilterBuild::Native => None,
            _ => Some(self.http_filter(&policy_json(compiled)?)?),
        };
        let opts = BootstrapOptions {
            layover_filter,
            cluster_selection: ClusterSelection::Header,
            ..opts
        };
        let v = istiod_waypoint_with_layover(&compiled.policy, &endpoints, &opts)
            .map_err(|e| HarnessError::Config(format!("istiod waypoint: {e}")))?;
        Ok(layover_bootstrap::to_yaml(&v))
    }
}

/// Where a [`Waypoint`]'s requests go.
#[derive(Debug, Clone)]
enum Transport {
    /// The plain listener; `Host` selects the service.
    Plain {
        client: Box<HttpClient>,
        addr: SocketAddr,
    },
    /// HBONE to the service VIP the `Host` names.
    Hbone {
        tunnels: Arc<Tunnels>,
        services: Arc<Vec<ServiceAddr>>,
    },
}

/// A service's names and `VIP:port`s, to resolve a request's `Host` in the istiod shape.
#[derive(Debug, Clone)]
struct ServiceAddr {
    /// `name`, `name.ns`, `name.ns.svc`, the hostname (lower case), and the VIPs.
    names: Vec<String>,
    vip: IpAddr,
    ports: Vec<u16>,
}

/// Sends requests to a [`Waypoint`]; cheap to clone and `'static`, for concurrent requests
/// from spawned tasks ([`Waypoint::sender`]).
#[derive(Debug, Clone)]
pub struct Sender {
    transport: Transport,
}

impl Sender {
    /// `VIP:port` of the service `host` (`name[.ns[.svc[.cluster.local]]][.][:port]`, any
    /// case, or the VIP itself) names; without a port, the service's only port. `None` in the
    /// own-bootstrap shape, and for a host naming no service port: ztunnel would have no VIP
    /// to send such a request to, so the istiod shape cannot express it.
    pub fn resolve(&self, host: &str) -> Option<SocketAddr> {
        let Transport::Hbone { services, .. } = &self.transport else {
            return None;
        };
        let host = host.to_ascii_lowercase();
        let (name, port) = match host.rsplit_once(':') {
            Some((n, p)) => (n, Some(p.parse::<u16>().ok()?)),
            None => (host.as_str(), None),
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        let svc = services
            .iter()
            .find(|s| s.names.iter().any(|n| n == name))?;
        let port = match port {
            Some(p) => svc.ports.iter().copied().find(|sp| *sp == p)?,
            None => match svc.ports.as_slice() {
                [only] => *only,
                _ => return None,
            },
        };
        Some(SocketAddr::new(svc.vip, port))
    }

    /// Sends `method` to `path` with `Host: <host>` and extra headers; in the istiod shape as
    /// `default/<sa>` through HBONE.
    pub async fn send_as(
        &self,
        sa: &str,
        method: Method,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Reply, HarnessError> {
        match &self.transport {
            Transport::Plain { client, addr } => {
                let mut all: Vec<(&str, &str)> = vec![("host", host)];
                all.extend_from_slice(headers);
                client
                    .request(method, &format!("http://{addr}{path}"), &all, body)
                    .await
            }
            Transport::Hbone { tunnels, .. } => {
                let vip = self.resolve(host).ok_or_else(|| {
                    HarnessError::Config(format!(
                        "Host {host:?} names no service port: the istiod shape has no VIP to tunnel it to"
                    ))
                })?;
                let stream = tunnels.open(sa, &vip.to_string()).await?;
                crate::mesh::request_over(stream, method, host, path, headers, body.into()).await
            }
        }
    }

    /// [`Sender::send_as`] as the default caller ([`crate::mesh::DEFAULT_CALLER`]).
    pub async fn send(
        &self,
        method: Method,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Reply, HarnessError> {
        self.send_as(DEFAULT_CALLER, method, host, path, headers, body)
            .await
    }

    /// Sends `request` byte for byte (see [`crate::client::raw_request`]): to the plain
    /// listener, or in the istiod shape in an HBONE tunnel, as the default caller, to the
    /// service `route_host` names (the request's own `Host` may say anything).
    pub async fn raw(&self, route_host: &str, request: &[u8]) -> Result<RawResponse, HarnessError> {
        match &self.transport {
            Transport::Plain { addr, .. } => raw_request(*addr, request).await,
            Transport::Hbone { tunnels, .. } => {
                let vip = self.resolve(route_host).ok_or_else(|| {
                    HarnessError::Config(format!("{route_host:?} names no service port"))
                })?;
                let stream = tunnels.open(DEFAULT_CALLER, &vip.to_string()).await?;
                let peer = format!("tunnel to {vip}");
                parse_raw(&peer, &raw_http1_over(stream, &peer, request).await?)
            }
        }
    }
}

/// A layover waypoint under a real Envoy, with an HTTP/1.1 keep-alive client.
#[derive(Debug)]
pub struct Waypoint {
    /// The Envoy process.
    pub envoy: Envoy,
    /// Pooled HTTP/1.1 client (the plain listener's; [`Waypoint::send`] picks the shape's way).
    pub client: HttpClient,
    /// What the compiler produced for the test YAML (in the istiod shape with the VIPs of
    /// [`assign_vips`]).
    pub compiled: layover_compiler::Compiled,
    /// Which waypoint this is.
    pub shape: Shape,
    sender: Sender,
}

impl Waypoint {
    /// [`Waypoint::start_in`] the shape of [`Shape::current`].
    pub async fn start(build: FilterBuild, yaml: &str) -> Result<Waypoint, HarnessError> {
        Waypoint::start_in(Shape::current(), build, yaml).await
    }

    /// Compiles `yaml` and starts Envoy in `shape` with the `build` filter loaded with the
    /// policy; the EnvoyFilters in `yaml` are applied too, as `layover envoy` applies those in
    /// `--config` (in the istiod shape after route A's).
    pub async fn start_in(
        shape: Shape,
        build: FilterBuild,
        yaml: &str,
    ) -> Result<Waypoint, HarnessError> {
        Waypoint::start_at(shape, build, yaml, IstioVersion::PINNED).await
    }

    /// [`Waypoint::start_in`] for Istio release `istio`: its routing defaults in the policy
    /// (`--istio-version`), and in the istiod shape its waypoint and EnvoyFilter rules.
    pub async fn start_at(
        shape: Shape,
        build: FilterBuild,
        yaml: &str,
        istio: IstioVersion,
    ) -> Result<Waypoint, HarnessError> {
        let mut compiled = compile_yaml_at(yaml, istio)?;
        let envoy_filters = layover_envoyfilter::load_str("test.yaml", yaml).map_err(|e| {
            let lines: Vec<String> = e.iter().map(ToString::to_string).collect();
            HarnessError::Config(format!(
                "loading the test EnvoyFilters:\n{}",
                lines.join("\n")
            ))
        })?;
        let client = HttpClient::http1();
        match shape {
            Shape::OwnBootstrap => {
                let envoy = Envoy::start_with(&build.envoy_options()?, |launch| {
                    let opts = BootstrapOptions {
                        envoy_filters: envoy_filters.clone(),
                        istio,
                        ..launch_options(launch)
                    };
                    build.bootstrap(&compiled, opts)
                })
                .await?;
                let sender = Sender {
                    transport: Transport::Plain {
                        client: Box::new(client.clone()),
                        addr: envoy.listener_addr(),
                    },
                };
                Ok(Waypoint {
                    envoy,
                    client,
                    compiled,
                    shape,
                    sender,
                })
            }
            Shape::Istiod => {
                assign_vips(&mut compiled);
                let certs = Certs::new()?;
                let envoy = Envoy::start_with(&build.envoy_options()?, |launch| {
                    let opts = BootstrapOptions {
                        envoy_filters: envoy_filters.clone(),
                        hbone: Some(certs.hbone.clone()),
                        istio,
                        ..launch_options(launch)
                    };
                    build.istiod_bootstrap(&compiled, opts)
                })
                .await?;
                let addr = envoy.listener_addr_of(CONNECT_TERMINATE).ok_or_else(|| {
                    HarnessError::Config(format!("no {CONNECT_TERMINATE} listener"))
                })?;
                let services = service_addrs(&compiled)?;
                let sender = Sender {
                    transport: Transport::Hbone {
                        tunnels: Arc::new(Tunnels::new(certs, addr)),
                        services: Arc::new(services),
                    },
                };
                Ok(Waypoint {
                    envoy,
                    client,
                    compiled,
                    shape,
                    sender,
                })
            }
        }
    }

    /// A handle sending to this waypoint, for spawned tasks.
    pub fn sender(&self) -> Sender {
        self.sender.clone()
    }

    /// See [`Sender::resolve`].
    pub fn resolve(&self, host: &str) -> Option<SocketAddr> {
        self.sender.resolve(host)
    }

    /// Sends `method` to `path` with `Host: <host>` and extra headers (in the istiod shape as
    /// the default caller, [`crate::mesh::DEFAULT_CALLER`]).
    pub async fn send(
        &self,
        method: Method,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Reply, HarnessError> {
        self.sender.send(method, host, path, headers, body).await
    }

    /// [`Waypoint::send`] as the workload `default/<sa>`: the caller's identity in the istiod
    /// shape; the plain listener has none, so there `sa` changes nothing.
    pub async fn send_as(
        &self,
        sa: &str,
        method: Method,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Reply, HarnessError> {
        self.sender
            .send_as(sa, method, host, path, headers, body)
            .await
    }

    /// See [`Sender::raw`].
    pub async fn raw(&self, route_host: &str, request: &[u8]) -> Result<RawResponse, HarnessError> {
        self.sender.raw(route_host, request).await
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

/// The names and VIP of every service of `compiled`.
fn service_addrs(compiled: &layover_compiler::Compiled) -> Result<Vec<ServiceAddr>, HarnessError> {
    let mut out = Vec::new();
    for s in &compiled.policy.services {
        let hostname = s.hostname.to_ascii_lowercase();
        let vip: IpAddr = s
            .addresses
            .first()
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| HarnessError::Config(format!("service {hostname} has no VIP")))?;
        let labels: Vec<&str> = hostname.split('.').collect();
        let mut names = vec![hostname.clone()];
        for n in 1..labels.len().min(4) {
            names.push(labels[..n].join("."));
        }
        names.extend(s.addresses.iter().cloned());
        let ports = s
            .ports
            .iter()
            .filter_map(|p| u16::try_from(p.number).ok())
            .collect();
        out.push(ServiceAddr { names, vip, ports });
    }
    Ok(out)
}
