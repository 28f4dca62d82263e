//! The `layover` command.
//!
//! - `layover compile <files|dirs…> -o <out> [--json] [--waypoint ns/name] [--target T]`: Istio
//!   YAML → policy (binary protobuf, or proto3 JSON with `--json`; `-o -` writes to stdout), or
//!   with `--target envoy-native` the native Envoy translation (YAML, JSON with `--json`). Notices go to
//!   stderr; on any error every error is printed to stderr, nothing is written and the exit
//!   status is 1.
//! - `layover eval --config <paths…> (--request <file|-> | --requests <jsonl>)`: the offline
//!   decision explain (see `eval.rs`).
//! - `layover certs --out <dir> [--identity ns/sa]…`: a local mesh CA and SPIFFE certificates
//!   (see `certs.rs`), for `layover envoy --mtls <dir>`.
//! - `layover manifests --config <paths…> [--filter dynamic-module|wasm] [--wasm-url URL]
//!   [--drop-in --module-image IMAGE]`: EnvoyFilter / WasmPlugin / drop-in waypoint manifests
//!   (see `manifests_cmd.rs`).
//! - `layover check-waypoint --config-dump <file> --envoyfilter <paths…> --out <file> [--waypoint
//!   ns/name] [--istio-version V] [--json] [--strict]`: a waypoint's config dump as a static
//!   bootstrap, with the EnvoyFilters applied and a report of where each patch applied (see
//!   `check_cmd.rs`).
//! - `layover hbone curl|serve`: an HBONE client and server standing in for ztunnel (see
//!   `hbone_cmd.rs`).

mod certs;
mod check_cmd;
mod envoy_cmd;
mod eval;
mod hbone_cmd;
mod manifests_cmd;
mod supervise;
mod watch;

use clap::{ArgGroup, Parser, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "layover", about = "L7 waypoint policy for Istio ambient mesh")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Generate a complete local waypoint (Envoy bootstrap + policy); `--run` starts Envoy.
    Envoy(envoy_cmd::EnvoyArgs),
    /// Kubernetes manifests deploying layover into an Istio ambient waypoint (EnvoyFilter,
    /// WasmPlugin) or as a drop-in waypoint.
    Manifests(manifests_cmd::ManifestsArgs),
    /// Generate a local mesh CA and SPIFFE certificates (for `layover envoy --mtls`).
    Certs(certs::CertsArgs),
    /// Check EnvoyFilters offline against a real waypoint's config dump: writes the dump as a
    /// static bootstrap with the EnvoyFilters applied, and reports where each patch applied.
    CheckWaypoint(check_cmd::CheckArgs),
    /// HBONE (HTTP/2 CONNECT over mTLS) as ztunnel speaks it: `curl` through a waypoint, `serve`.
    Hbone(hbone_cmd::HboneArgs),
    /// Compile Istio YAML (files or directories) into a layover policy, or with `--target
    /// envoy-native` into the equivalent plain Envoy configuration (routes, RBAC, clusters).
    Compile {
        /// YAML files or directories (searched recursively for *.yaml / *.yml).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Output file (`-` for stdout).
        #[arg(short = 'o', long = "out")]
        out: PathBuf,
        /// Write JSON instead of the default encoding (binary protobuf for the policy, YAML for
        /// `--target envoy-native`).
        #[arg(long)]
        json: bool,
        /// What to produce: the layover policy (default), or `envoy-native`, the same policy as
        /// plain Envoy configuration the way istiod writes it for this waypoint (route
        /// configuration, HTTP filters with per-route RBAC / fault / CORS, clusters), the
        /// baseline and correctness oracle of the layover filters.
        #[arg(long, value_enum, default_value = "policy")]
        target: Target,
        /// Waypoint Gateway to compile for (`namespace/name`), when the input has several.
        #[arg(long)]
        waypoint: Option<String>,
        /// The Istio release whose routing defaults apply (1.22–1.30; default the pinned one).
        #[arg(long, default_value_t = layover_envoyfilter::IstioVersion::PINNED)]
        istio_version: layover_envoyfilter::IstioVersion,
    },
    /// Evaluate requests against a configuration and explain the decisions.
    #[command(group(ArgGroup::new("input").required(true).args(["request", "requests"])))]
    Eval {
        /// YAML files or directories holding the Istio configuration.
        #[arg(long, required = true, num_args = 1..)]
        config: Vec<PathBuf>,
        /// One request as JSON (`-` for stdin).
        #[arg(long)]
        request: Option<PathBuf>,
        /// Many requests, one JSON object per line.
        #[arg(long)]
        requests: Option<PathBuf>,
        /// Print a table (one row per request) instead of JSON lines.
        #[arg(long)]
        table: bool,
        /// Evaluate every request at this waypoint Gateway (`namespace/name` or `name`);
        /// default: the waypoint that serves each request's destination service, as istiod
        /// resolves `istio.io/use-waypoint`.
        #[arg(long)]
        waypoint: Option<String>,
        /// The Istio release whose routing defaults apply (1.22–1.30; default the pinned one).
        #[arg(long, default_value_t = layover_envoyfilter::IstioVersion::PINNED)]
        istio_version: layover_envoyfilter::IstioVersion,
    },
}

/// `layover --version`: the crate version and the Istio release whose semantics it implements.
fn version() -> &'static str {
    // clap keeps the string for the life of the process; made once, at start.
    Box::leak(
        format!(
            "{} (Istio {} semantics)",
            env!("CARGO_PKG_VERSION"),
            layover_envoyfilter::IstioVersion::PINNED
        )
        .into_boxed_str(),
    )
}

fn main() -> ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command().version(version()).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match cli.cmd {
        Cmd::Envoy(args) => match envoy_cmd::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(msg) => {
                eprintln!("error: {msg}");
                ExitCode::FAILURE
            }
        },
        Cmd::Manifests(args) => match manifests_cmd::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(msg) => {
                eprintln!("error: {msg}");
                ExitCode::FAILURE
            }
        },
        Cmd::Certs(args) => match certs::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(msg) => {
                eprintln!("error: {msg}");
                ExitCode::FAILURE
            }
        },
        Cmd::CheckWaypoint(args) => match check_cmd::run(&args) {
            Ok(code) => code,
            Err(msg) => {
                eprintln!("{msg}");
                ExitCode::FAILURE
            }
        },
        Cmd::Hbone(args) => match hbone_cmd::run(args) {
            Ok(code) => code,
            Err(msg) => {
                eprintln!("error: {msg}");
                ExitCode::FAILURE
            }
        },
        Cmd::Compile {
            paths,
            out,
            json,
            target,
            waypoint,
            istio_version,
        } => match compile(
            &paths,
            &out,
            json,
            target,
            layover_compiler::CompileOptions {
                waypoint,
                istio: istio_version,
            },
        ) {
            Ok(()) => ExitCode::SUCCESS,
            Err(msg) => {
                eprintln!("{msg}");
                ExitCode::FAILURE
            }
        },
        Cmd::Eval {
            config,
            request,
            requests,
            table,
            waypoint,
            istio_version,
        } => {
            let args = eval::EvalArgs {
                config,
                request,
                requests,
                table,
                waypoint,
                istio: istio_version,
            };
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            match eval::run(&args, &mut lock) {
                Ok(()) => ExitCode::SUCCESS,
                Err(msg) => {
                    let _ = lock.flush();
                    eprintln!("error: {msg}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `layover compile --target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Target {
    /// The layover policy the filters load.
    Policy,
    /// The native Envoy translation of the policy (`layover_bootstrap::native`).
    EnvoyNative,
}

fn compile(
    paths: &[PathBuf],
    out: &Path,
    json: bool,
    target: Target,
    opts: layover_compiler::CompileOptions,
) -> Result<(), String> {
    let compiled = match layover_compiler::compile_paths_with(paths, &opts) {
        Ok(c) => c,
        Err(errors) => {
            let n = errors.0.len();
            return Err(format!(
                "{errors}\nlayover compile: {n} error{}; nothing written",
                if n == 1 { "" } else { "s" }
            ));
        }
    };
    for n in &compiled.notices {
        eprintln!("{n}");
    }
    if target == Target::EnvoyNative {
        let endpoints = layover_bootstrap::endpoints_from_registry(&compiled);
        let opts = layover_bootstrap::BootstrapOptions::default();
        let value = layover_bootstrap::native::native_config(&compiled.policy, &endpoints, &opts)
            .map_err(|e| format!("error: {e}\nlayover compile: nothing written"))?;
        let format = if json {
            layover_bootstrap::Format::Json
        } else {
            layover_bootstrap::Format::Yaml
        };
        let mut text = layover_bootstrap::native::to_text(&value, format)
            .map_err(|e| format!("error: {e}"))?;
        if !text.ends_with('\n') {
            text.push('\n');
        }
        write_output(out, text.as_bytes())?;
        eprintln!(
            "layover compile: native Envoy configuration ({} virtual hosts, {} clusters) → {}",
            value
                .pointer("/route_config/virtual_hosts")
                .and_then(serde_json::Value::as_array)
                .map_or(0, Vec::len),
            value
                .get("clusters")
                .and_then(serde_json::Value::as_array)
                .map_or(0, Vec::len),
            out.display()
        );
        return Ok(());
    }
    let bytes = if json {
        let mut s = serde_json::to_string_pretty(&compiled.policy)
            .map_err(|e| format!("error: cannot encode JSON: {e}"))?;
        s.push('\n');
        s.into_bytes()
    } else {
        prost::Message::encode_to_vec(&compiled.policy)
    };
    write_output(out, &bytes)?;
    let p = &compiled.policy;
    eprintln!(
        "layover compile: {} service{}, {} authorization polic{}, {} cluster{}{} → {}",
        p.services.len(),
        if p.services.len() == 1 { "" } else { "s" },
        p.authorization_policies.len(),
        if p.authorization_policies.len() == 1 {
            "y"
        } else {
            "ies"
        },
        p.clusters.len(),
        if p.clusters.len() == 1 { "" } else { "s" },
        if p.waypoint.is_empty() {
            String::new()
        } else {
            format!(" for waypoint {}", p.waypoint)
        },
        out.display()
    );
    Ok(())
}

/// Writes through a temporary file and a rename, so a failure never leaves a partial policy.
fn write_output(out: &Path, bytes: &[u8]) -> Result<(), String> {
    if out == Path::new("-") {
        let mut so = std::io::stdout().lock();
        return so
            .write_all(bytes)
            .and_then(|_| so.flush())
            .map_err(|e| format!("error: cannot write to stdout: {e}"));
    }
    let file_name = out
        .file_name()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_else(|| "policy".into());
    let tmp = out.with_file_name(format!(".{file_name}.tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)
        .and_then(|_| std::fs::rename(&tmp, out))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("error: cannot write {}: {e}", out.display())
        })
}
