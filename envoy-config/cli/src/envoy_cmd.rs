//! `layover envoy`: a complete local waypoint. Compiles the Istio YAML, writes the policy and an
//! Envoy bootstrap that loads the layover filter with it (or, with `--filter none`, the native
//! translation of the same policy), and optionally starts Envoy.
//!
//! The layover bootstrap is built the way a cluster's waypoint is: the base waypoint, then the
//! EnvoyFilter `layover manifests` emits (the layover filter before the router, the route
//! following its choice), then every EnvoyFilter found in `--config`, with Istio's semantics
//! (`layover-envoyfilter`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;

use layover_bootstrap::{BootstrapOptions, DownstreamTls, Hbone};
use layover_contract::ClusterSelection;
use layover_envoyfilter::IstioVersion;

/// Which build of the layover filter Envoy loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FilterBuild {
    /// The proxy-wasm module (`layover_wasm.wasm`, V8).
    Wasm,
    /// The Envoy dynamic module (`liblayover_module.so`).
    DynamicModule,
    /// No layover filter: the native translation. The same policy as plain Envoy configuration,
    /// the way istiod writes it (ordered routes, weighted clusters, retries, timeouts, per-route
    /// fault and CORS, RBAC per service); the baseline for benchmarks and the correctness oracle
    /// (`layover_bootstrap::native` lists what it cannot express).
    None,
}

/// Parser of `--cluster-selection`: the contract's [`ClusterSelection`] by its command-line
/// name, with the values listed in `--help`.
pub fn cluster_selection_parser() -> impl clap::builder::TypedValueParser<Value = ClusterSelection>
{
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(ClusterSelection::ALL.map(ClusterSelection::cli_name))
        .try_map(|s| s.parse::<ClusterSelection>())
}

/// Arguments of `layover envoy`.
#[derive(Debug, Clone, clap::Args)]
pub struct EnvoyArgs {
    /// YAML files or directories holding the Istio configuration (policy and service registry).
    #[arg(long, required = true, num_args = 1..)]
    pub config: Vec<PathBuf>,
    /// Directory to write `envoy.yaml` and `policy.json` into.
    #[arg(long, default_value = "target/layover-envoy")]
    pub out_dir: PathBuf,
    /// The filter build Envoy loads. The dynamic module is the default: it measured faster
    /// (less Envoy CPU per request) than the wasm build. `none` writes the native translation
    /// instead: plain Envoy routes, RBAC, fault and CORS configuration as istiod would push it,
    /// no layover filter (the benchmark baseline).
    #[arg(long, value_enum, default_value = "dynamic-module")]
    pub filter: FilterBuild,
    /// How the route takes the filter's cluster choice. `header` (the default) works with both
    /// builds and measured slightly cheaper; `specifier-plugin` needs `--filter dynamic-module`.
    #[arg(long, default_value = "header", value_parser = cluster_selection_parser())]
    pub cluster_selection: ClusterSelection,
    /// Path of the wasm module (default: the release build under target/).
    #[arg(long)]
    pub wasm: Option<PathBuf>,
    /// Directory holding `liblayover_module.so` (default: target/release).
    #[arg(long)]
    pub dynamic_module_dir: Option<PathBuf>,
    /// Port of the plain-HTTP listener (127.0.0.1).
    #[arg(long, default_value_t = 15080)]
    pub port: u16,
    /// Admin port (127.0.0.1).
    #[arg(long, default_value_t = 15000)]
    pub admin_port: u16,
    /// Waypoint Gateway to compile for, when the input has several.
    #[arg(long)]
    pub waypoint: Option<String>,
    /// Start Envoy with the generated config (in the foreground).
    #[arg(long)]
    pub run: bool,
    /// Envoy executable (default: $LAYOVER_ENVOY, then .layover/envoy).
    #[arg(long)]
    pub envoy: Option<PathBuf>,
    /// Require mutual TLS on the listener, with the certificates in this directory (the layout
    /// `layover certs` writes: root-cert.pem, waypoint/cert-chain.pem, waypoint/key.pem).
    /// Peers are identified by their SPIFFE certificate, as a waypoint identifies them.
    #[arg(long, value_name = "CERTS_DIR")]
    pub mtls: Option<PathBuf>,
    /// With --mtls: the waypoint's certificate chain, instead of <CERTS_DIR>/waypoint/cert-chain.pem.
    #[arg(long, requires = "mtls")]
    pub mtls_cert: Option<PathBuf>,
    /// With --mtls: the waypoint's private key, instead of <CERTS_DIR>/waypoint/key.pem.
    #[arg(long, requires = "mtls")]
    pub mtls_key: Option<PathBuf>,
    /// With --mtls: the trust bundle, instead of <CERTS_DIR>/root-cert.pem.
    #[arg(long, requires = "mtls")]
    pub mtls_ca: Option<PathBuf>,
    /// With --mtls or --hbone: the trust domain peers must belong to (default:
    /// <CERTS_DIR>/trust-domain, else cluster.local).
    #[arg(long)]
    pub trust_domain: Option<String>,
    /// Also terminate HBONE (HTTP/2 CONNECT over mutual TLS, what ztunnel sends a waypoint) on
    /// --hbone-port, with the certificates in this directory (the `layover certs` layout). The
    /// tunnelled HTTP gets the same policy, with the HBONE peer's SPIFFE id as its principal.
    #[arg(long, value_name = "CERTS_DIR")]
    pub hbone: Option<PathBuf>,
    /// With --hbone: the HBONE listener's port.
    #[arg(long, requires = "hbone", default_value_t = layover_contract::HBONE_PORT)]
    pub hbone_port: u16,
    /// Build the waypoint istiod generates (`--istio-version`; needs --hbone): its
    /// connect_terminate / main_internal / connect_originate listeners, one chain per service
    /// port selected by VIP, its clusters and filter state. The layover filter gets in through
    /// the route A EnvoyFilter `layover manifests` emits; with `--filter none` it is istiod's
    /// own configuration (RBAC and routes), the baseline.
    #[arg(long, requires = "hbone")]
    pub istiod: bool,
    /// The Istio release whose istiod the waypoint follows: EnvoyFilter attachment and patch
    /// rules (for EnvoyFilters in --config) and, with --istiod, the waypoint's shape.
    #[arg(long, default_value_t = IstioVersion::PINNED)]
    pub istio_version: IstioVersion,
    /// Serve the layover filter's policy over ECDS (`<out-dir>/layover.ecds.json`) and follow
    /// changes to --config: each change is compiled and, when valid, swapped into the running
    /// Envoy without draining; compile errors are printed and the running policy stays.
    #[arg(long)]
    pub watch: bool,
}

/// The HBONE settings `--hbone` describes (certificates checked to exist now).
fn hbone(args: &EnvoyArgs) -> Result<Option<Hbone>, String> {
    let Some(dir) = &args.hbone else {
        return Ok(None);
    };
    let layout = layover_certs::MeshDir::new(dir);
    let waypoint = layout.waypoint();
    let pick = |path: PathBuf, what: &str| -> Result<PathBuf, String> {
        std::fs::canonicalize(&path).map_err(|e| {
            format!(
                "{} ({what}): {e}\nhint: `layover certs --out {}` writes a local mesh CA there",
                path.display(),
                dir.display()
            )
        })
    };
    Ok(Some(Hbone {
        port: args.hbone_port,
        cert_chain: pick(waypoint.cert_chain, "waypoint certificate")?,
        private_key: pick(waypoint.private_key, "waypoint key")?,
        trusted_ca: pick(layout.root_cert(), "trust bundle")?,
        trust_domain: args
            .trust_domain
            .clone()
            .or_else(|| layout.trust_domain())
            .unwrap_or_else(|| layover_certs::DEFAULT_TRUST_DOMAIN.to_string()),
        upstream_port: layover_contract::HBONE_PORT,
    }))
}

/// The listener TLS settings `--mtls` and its overrides describe, with absolute paths (Envoy
/// may run from another directory) that are checked to exist now rather than at Envoy start.
fn downstream_tls(args: &EnvoyArgs) -> Result<Option<DownstreamTls>, String> {
    let Some(dir) = &args.mtls else {
        return Ok(None);
    };
    let layout = layover_certs::MeshDir::new(dir);
    let waypoint = layout.waypoint();
    let pick = |flag: &Option<PathBuf>, default: PathBuf, what: &str| -> Result<PathBuf, String> {
        let path = flag.clone().unwrap_or(default);
        std::fs::canonicalize(&path).map_err(|e| {
            format!(
                "{} ({what}): {e}\nhint: `layover certs --out {}` writes a local mesh CA there",
                path.display(),
                dir.display()
            )
        })
    };
    Ok(Some(DownstreamTls {
        cert_chain: pick(&args.mtls_cert, waypoint.cert_chain, "waypoint certificate")?,
        private_key: pick(&args.mtls_key, waypoint.private_key, "waypoint key")?,
        trusted_ca: pick(&args.mtls_ca, layout.root_cert(), "trust bundle")?,
        trust_domain: args
            .trust_domain
            .clone()
            .or_else(|| layout.trust_domain())
            .unwrap_or_else(|| layover_certs::DEFAULT_TRUST_DOMAIN.to_string()),
    }))
}

/// The default location of the release wasm module, relative to the repo root.
pub const DEFAULT_WASM: &str = "target/wasm32-wasip1/wasm-release/layover_wasm.wasm";

/// The default directory of the release dynamic module, relative to the repo root.
pub const DEFAULT_DYNAMIC_MODULE_DIR: &str = "target/release";

/// The istiod-shaped waypoint for `opts` (`--istiod`): layover's filter, when there is one, is
/// attached by the route A EnvoyFilter, before the user's EnvoyFilters.
fn istiod_bootstrap(
    policy: &layover_proto::v1::Policy,
    endpoints: &[layover_bootstrap::Endpoint],
    opts: BootstrapOptions,
) -> Result<String, String> {
    let v = layover_bootstrap::istiod::istiod_waypoint_with_layover(policy, endpoints, &opts)
        .map_err(|e| format!("cannot generate the istiod-shaped waypoint: {e}"))?;
    match opts.format {
        layover_bootstrap::Format::Yaml => Ok(layover_bootstrap::to_yaml(&v)),
        layover_bootstrap::Format::Json => serde_json::to_string_pretty(&v)
            .map_err(|e| format!("cannot encode the bootstrap: {e}")),
    }
}

/// Runs `layover envoy`.
pub fn run(args: &EnvoyArgs) -> Result<(), String> {
    let opts = layover_compiler::CompileOptions {
        waypoint: args.waypoint.clone(),
        istio: args.istio_version,
    };
    let compiled =
        layover_compiler::compile_paths_with(&args.config, &opts).map_err(|e| e.to_string())?;
    for notice in &compiled.notices {
        eprintln!("{notice}");
    }
    // The filter rejects an invalid policy at load; check it here so Envoy never gets one.
    layover_core::CompiledPolicy::compile(&compiled.policy)
        .map_err(|e| format!("the compiled policy was rejected by the engine: {e}"))?;
    let policy_json = serde_json::to_string(&compiled.policy)
        .map_err(|e| format!("cannot encode the policy: {e}"))?;

    // Set when Envoy must find the dynamic module (ENVOY_DYNAMIC_MODULES_SEARCH_PATH).
    let mut module_dir = None;
    let cluster_selection = args.cluster_selection;
    if cluster_selection == ClusterSelection::SpecifierPlugin
        && args.filter != FilterBuild::DynamicModule
    {
        return Err("--cluster-selection specifier-plugin needs --filter dynamic-module".into());
    }
    // Checked once; `make_filter` then builds the entry for any policy (also on --watch updates).
    let wasm_path = match args.filter {
        FilterBuild::DynamicModule => {
            let dir = args
                .dynamic_module_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DYNAMIC_MODULE_DIR));
            if !dir.join("liblayover_module.so").is_file() {
                return Err(format!(
                    "{}: liblayover_module.so not found\nhint: build it with `cargo xtask build-dynamic-module`",
                    dir.display()
                ));
            }
            module_dir =
                Some(std::fs::canonicalize(&dir).map_err(|e| format!("{}: {e}", dir.display()))?);
            None
        }
        FilterBuild::Wasm => {
            let wasm = args
                .wasm
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_WASM));
            if !wasm.is_file() {
                return Err(format!(
                    "{}: wasm module not found\nhint: build it with `cargo xtask build-wasm`",
                    wasm.display()
                ));
            }
            Some(std::fs::canonicalize(&wasm).map_err(|e| format!("{}: {e}", wasm.display()))?)
        }
        FilterBuild::None => None,
    };
    let build = args.filter;
    let make_filter = move |policy_json: &str| match (build, &wasm_path) {
        (FilterBuild::DynamicModule, _) => {
            layover_bootstrap::dynamic_module_filter_with(policy_json, cluster_selection).map(Some)
        }
        (FilterBuild::Wasm, Some(wasm)) => {
            Ok(Some(layover_bootstrap::wasm_filter(wasm, policy_json)))
        }
        _ => Ok(None),
    };
    let mut filter = make_filter(&policy_json)?;
    // Nothing is written until everything below succeeded: the ECDS entry is computed now and
    // its resource file written with the rest.
    let mut ecds = None;
    if args.watch {
        let Some(inline) = &filter else {
            return Err("--watch needs a layover filter (--filter wasm or dynamic-module)".into());
        };
        let resource = crate::watch::resource_path(&args.out_dir)?;
        let (entry, initial) =
            layover_bootstrap::reload::ecds_filter(inline, &resource).map_err(|e| e.to_string())?;
        filter = Some(entry);
        ecds = Some((resource, initial));
    }

    // EnvoyFilters among the inputs patch the generated waypoint, as istiod patches its own
    // (after the layover EnvoyFilter, in Istio's priority order; all or nothing).
    let envoy_filters = layover_envoyfilter::load_paths(&args.config).map_err(|errors| {
        let n = errors.len();
        let mut msg: Vec<String> = errors.iter().map(ToString::to_string).collect();
        msg.push(format!(
            "{n} invalid EnvoyFilter{}; nothing written",
            if n == 1 { "" } else { "s" }
        ));
        msg.join("\nerror: ")
    })?;
    let endpoints = layover_bootstrap::endpoints_from_registry(&compiled);
    if args.trust_domain.is_some() && args.mtls.is_none() && args.hbone.is_none() {
        return Err("--trust-domain needs --mtls or --hbone".into());
    }
    let tls = downstream_tls(args)?;
    let hbone = hbone(args)?;
    let hbone_port = hbone.as_ref().map(|h| h.port);
    let scheme = if tls.is_some() { "https" } else { "http" };
    let bootstrap_opts = BootstrapOptions {
        admin_port: args.admin_port,
        listener_port: args.port,
        layover_filter: filter,
        downstream_tls: tls,
        cluster_selection,
        hbone,
        envoy_filters: envoy_filters.clone(),
        istio: args.istio_version,
        ..BootstrapOptions::default()
    };
    let bootstrap = if args.istiod {
        istiod_bootstrap(&compiled.policy, &endpoints, bootstrap_opts)?
    } else if args.filter == FilterBuild::None {
        layover_bootstrap::native::native_bootstrap(&compiled.policy, &endpoints, &bootstrap_opts)
            .map_err(|e| format!("cannot generate the native Envoy bootstrap: {e}"))?
    } else {
        layover_bootstrap::bootstrap(&compiled.policy, &endpoints, &bootstrap_opts)
            .map_err(|e| format!("cannot generate the Envoy bootstrap: {e}"))?
    };

    std::fs::create_dir_all(&args.out_dir)
        .map_err(|e| format!("{}: {e}", args.out_dir.display()))?;
    let mut ecds_resource = None;
    if let Some((resource, initial)) = ecds {
        layover_bootstrap::reload::write_atomically(&resource, &initial)
            .map_err(|e| e.to_string())?;
        ecds_resource = Some(resource);
    }
    let config_path = args.out_dir.join("envoy.yaml");
    write(&args.out_dir.join("policy.json"), &policy_json)?;
    write(&config_path, &bootstrap)?;
    let target = layover_bootstrap::waypoint_target(&compiled.policy);
    let ctx = layover_envoyfilter::ApplyContext::for_waypoint(&target.namespace, &target.gateway)
        .with_istio(args.istio_version);
    for ef in &envoy_filters {
        match ctx.skip_reason(ef) {
            None => eprintln!("applied {}", ef.object()),
            Some(why) => eprintln!("skipped {}: {why}", ef.object()),
        }
    }
    eprintln!(
        "wrote {} ({} services, {} clusters, {} endpoints)",
        config_path.display(),
        compiled.policy.services.len(),
        compiled.policy.clusters.len(),
        endpoints.len()
    );

    if let Some(port) = hbone_port {
        eprintln!("HBONE (mTLS HTTP/2 CONNECT) on 127.0.0.1:{port} (listener connect_terminate)");
    }
    let clusters: std::collections::BTreeSet<String> = compiled
        .policy
        .clusters
        .iter()
        .map(|c| c.name.clone())
        .collect();
    let watch = |resource: &Path, stop: &AtomicBool| {
        crate::watch::watch(
            &args.config,
            &layover_compiler::CompileOptions {
                waypoint: args.waypoint.clone(),
                istio: args.istio_version,
            },
            resource,
            &clusters,
            &make_filter,
            stop,
        )
    };
    if args.run {
        let envoy = find_envoy(args.envoy.as_deref())?;
        eprintln!(
            "starting Envoy: listener {scheme}://127.0.0.1:{}, admin http://127.0.0.1:{} (Ctrl-C stops it)",
            args.port, args.admin_port
        );
        let mut cmd = Command::new(&envoy);
        if let Some(dir) = &module_dir {
            cmd.env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", dir);
        }
        cmd.arg("-c")
            .arg(&config_path)
            .args(["--disable-hot-restart", "--log-level", "warn"]);
        // Envoy runs beside the watch loop, if any; SIGTERM / SIGINT reach Envoy, and layover
        // exits after it.
        let beside = ecds_resource
            .as_ref()
            .map(|resource| move |stop: &AtomicBool| watch(resource, stop));
        let status = crate::supervise::run(
            &mut cmd,
            beside.as_ref().map(|f| f as crate::supervise::Beside<'_>),
        )?;
        // Stopped by a signal we passed on: a normal end, not a failure.
        if !status.success() && !stopped_by_signal(status) {
            return Err(format!("Envoy exited with {status}"));
        }
    } else if let Some(resource) = &ecds_resource {
        return watch(resource, &AtomicBool::new(false));
    }
    Ok(())
}

/// Envoy ends with status 0 on SIGTERM / SIGINT; a signal that killed it outright also counts
/// as a deliberate stop.
fn stopped_by_signal(status: std::process::ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.signal().is_some()
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: cannot write: {e}", path.display()))
}

/// Envoy: the flag, `$LAYOVER_ENVOY`, or the project-local install.
pub fn find_envoy(flag: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(p) = flag {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("LAYOVER_ENVOY") {
        return Ok(PathBuf::from(p));
    }
    let local = PathBuf::from(".layover/envoy/envoy/_bin/envoy");
    if local.is_file() {
        return Ok(local);
    }
    Err("Envoy not found\nhint: run `cargo xtask install-envoy` (or set LAYOVER_ENVOY)".into())
}
