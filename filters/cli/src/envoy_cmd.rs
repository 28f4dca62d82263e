//! `layover envoy`: a complete local waypoint. Compiles the Istio YAML, writes the policy and an
//! Envoy bootstrap that loads the layover filter with it, and optionally starts Envoy.

use std::path::{Path, PathBuf};
use std::process::Command;

use layover_envoy::BootstrapOptions;

/// Which build of the layover filter Envoy loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FilterBuild {
    /// The proxy-wasm module (`layover_wasm.wasm`, V8).
    Wasm,
    /// No layover filter: Envoy routes by the cluster header alone (for debugging the bootstrap).
    None,
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
    /// The filter build Envoy loads.
    #[arg(long, value_enum, default_value = "wasm")]
    pub filter: FilterBuild,
    /// Path of the wasm module (default: the release build under target/).
    #[arg(long)]
    pub wasm: Option<PathBuf>,
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
}

/// The default location of the release wasm module, relative to the repo root.
pub const DEFAULT_WASM: &str = "target/wasm32-wasip1/wasm-release/layover_wasm.wasm";

/// Runs `layover envoy`.
pub fn run(args: &EnvoyArgs) -> Result<(), String> {
    let opts = layover_config::CompileOptions {
        waypoint: args.waypoint.clone(),
    };
    let compiled =
        layover_config::compile_paths_with(&args.config, &opts).map_err(|e| e.to_string())?;
    for notice in &compiled.notices {
        eprintln!("{notice}");
    }
    // The filter rejects an invalid policy at load; check it here so Envoy never gets one.
    layover_core::CompiledPolicy::compile(&compiled.policy)
        .map_err(|e| format!("the compiled policy was rejected by the engine: {e}"))?;
    let policy_json = serde_json::to_string(&compiled.policy)
        .map_err(|e| format!("cannot encode the policy: {e}"))?;

    let filter = match args.filter {
        FilterBuild::None => None,
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
            let wasm =
                std::fs::canonicalize(&wasm).map_err(|e| format!("{}: {e}", wasm.display()))?;
            Some(layover_envoy::wasm_filter(&wasm, &policy_json))
        }
    };

    let endpoints = layover_envoy::endpoints_from_registry(&compiled);
    let bootstrap_opts = BootstrapOptions {
        admin_port: args.admin_port,
        listener_port: args.port,
        layover_filter: filter,
        ..BootstrapOptions::default()
    };
    let bootstrap = layover_envoy::bootstrap(&compiled.policy, &endpoints, &bootstrap_opts)
        .map_err(|e| format!("cannot generate the Envoy bootstrap: {e}"))?;

    std::fs::create_dir_all(&args.out_dir)
        .map_err(|e| format!("{}: {e}", args.out_dir.display()))?;
    let config_path = args.out_dir.join("envoy.yaml");
    write(&args.out_dir.join("policy.json"), &policy_json)?;
    write(&config_path, &bootstrap)?;
    eprintln!(
        "wrote {} ({} services, {} clusters, {} endpoints)",
        config_path.display(),
        compiled.policy.services.len(),
        compiled.policy.clusters.len(),
        endpoints.len()
    );

    if args.run {
        let envoy = find_envoy(args.envoy.as_deref())?;
        eprintln!(
            "starting Envoy: listener http://127.0.0.1:{}, admin http://127.0.0.1:{} (Ctrl-C stops it)",
            args.port, args.admin_port
        );
        let status = Command::new(&envoy)
            .arg("-c")
            .arg(&config_path)
            .args(["--disable-hot-restart", "--log-level", "warn"])
            .status()
            .map_err(|e| format!("cannot start {}: {e}", envoy.display()))?;
        if !status.success() {
            return Err(format!("Envoy exited with {status}"));
        }
    }
    Ok(())
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
