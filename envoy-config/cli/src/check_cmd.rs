//! `layover check-waypoint`: a real waypoint's config dump, checked offline against
//! EnvoyFilters.
//!
//! The dump (`istioctl proxy-config all -o json`) becomes a static bootstrap
//! ([`layover_bootstrap::config_dump`]); the EnvoyFilters are applied to it with istiod's rules
//! for `--istio-version` ([`layover_envoyfilter::apply_with_report`]), and the report says per
//! EnvoyFilter and per patch where it applied, and which matched nothing. The patched bootstrap
//! is written to `--out` (YAML, or JSON for `*.json`), ready for `envoy --mode validate`; SDS
//! secrets become throwaway certificates in `<out>.secrets/`.
//!
//! Exit status: 0; 1 when an EnvoyFilter is invalid (or the input unreadable); 2 when a patch
//! matches nothing under `--strict` (istiod ignores such a patch silently, so by default it is
//! a warning).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use layover_bootstrap::config_dump::{self, ConvertOptions, Converted, SecretPlaceholder};
use layover_envoyfilter::{ApplyContext, IstioVersion, Report};
use serde_json::{json, Value};

/// `layover check-waypoint` arguments.
#[derive(clap::Args)]
pub struct CheckArgs {
    /// The waypoint's Envoy config dump (`istioctl proxy-config all -o json`, or admin
    /// `/config_dump?include_eds=true`).
    #[arg(long = "config-dump", value_name = "FILE")]
    pub config_dump: PathBuf,
    /// EnvoyFilter YAML files or directories (searched for *.yaml / *.yml).
    #[arg(long, num_args = 1.., value_name = "PATH")]
    pub envoyfilter: Vec<PathBuf>,
    /// The Istio release of the cluster's istiod: its attachment and patch rules apply.
    #[arg(long, default_value_t = IstioVersion::PINNED)]
    pub istio_version: IstioVersion,
    /// The waypoint Gateway (`namespace/name`); default: from the dump's node (pod label
    /// `gateway.networking.k8s.io/gateway-name`, metadata `NAMESPACE`).
    #[arg(long, value_name = "NS/NAME")]
    pub waypoint: Option<String>,
    /// Where to write the patched static bootstrap (`*.json`: JSON, otherwise YAML).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// A patch that matches nothing is an error (exit status 2).
    #[arg(long)]
    pub strict: bool,
}

/// Runs the check; `Err` is a message for stderr (exit status 1).
pub fn run(args: &CheckArgs) -> Result<ExitCode, String> {
    check(args).map_err(|m| {
        if m.starts_with("error: ") {
            m
        } else {
            format!("error: {m}")
        }
    })
}

fn check(args: &CheckArgs) -> Result<ExitCode, String> {
    let text = std::fs::read_to_string(&args.config_dump)
        .map_err(|e| format!("cannot read {}: {e}", args.config_dump.display()))?;
    let dump: Value = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{}: not JSON ({e}); dump with `istioctl proxy-config all -o json`",
            args.config_dump.display()
        )
    })?;
    let filters = layover_envoyfilter::load_paths(&args.envoyfilter).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| format!("error: {e}")).collect();
        format!(
            "{}\nlayover check-waypoint: {} invalid EnvoyFilter{}; nothing written",
            lines.join("\n"),
            errors.len(),
            if errors.len() == 1 { "" } else { "s" }
        )
    })?;
    let opts = ConvertOptions {
        secrets_dir: secrets_dir(&args.out),
    };
    let conv = config_dump::from_config_dump(&dump, &opts)
        .map_err(|e| format!("{}: {e}", args.config_dump.display()))?;
    let (ns, name) = waypoint(args.waypoint.as_deref(), &conv)?;
    let ctx = ApplyContext::for_waypoint(&ns, &name).with_istio(args.istio_version);
    let (patched, report) = layover_envoyfilter::apply_with_report(&conv.bootstrap, &filters, &ctx)
        .map_err(|e| format!("error: {e}\nlayover check-waypoint: nothing written"))?;
    write_placeholders(&conv.placeholders)?;
    write_bootstrap(&args.out, &patched)?;
    let unmatched = report.unmatched().count();
    if args.json {
        let out = json_report(&args.out, &conv, &report);
        let text = serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?;
        println!("{text}");
    } else {
        print!("{}", human_report(&args.out, &patched, &conv, &report));
    }
    if unmatched > 0 && args.strict {
        eprintln!("layover check-waypoint: {unmatched} patch(es) match nothing (--strict)");
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

/// `<out>.secrets/` beside the bootstrap.
fn secrets_dir(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| "bootstrap".into());
    out.with_file_name(format!("{name}.secrets"))
}

/// `--waypoint`, else the dump's node.
fn waypoint(arg: Option<&str>, conv: &Converted) -> Result<(String, String), String> {
    match arg {
        Some(w) => match w.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok((ns.into(), name.into()))
            }
            _ => Err(format!(
                "--waypoint `{w}`: expected namespace/name (the waypoint Gateway)"
            )),
        },
        None => conv.waypoint.clone().ok_or_else(|| {
            "the dump's node does not name a waypoint Gateway (no `gateway.networking.k8s.io/gateway-name` in node metadata LABELS): pass --waypoint namespace/name".to_string()
        }),
    }
}

/// Throwaway certificates for the secrets the running proxy had from SDS (or whose keys admin
/// redacted): Envoy needs loadable PEM files to validate the TLS contexts; the real keys never
/// leave the pod.
fn write_placeholders(placeholders: &[SecretPlaceholder]) -> Result<(), String> {
    if placeholders.is_empty() {
        return Ok(());
    }
    let pem =
        placeholder_pem().map_err(|e| format!("cannot make placeholder certificates: {e}"))?;
    config_dump::write_placeholders(placeholders, &pem)
        .map_err(|e| format!("cannot write placeholder certificates: {e}"))
}

fn placeholder_pem() -> Result<config_dump::PlaceholderPem, layover_certs::CertError> {
    let ca = layover_certs::MeshCa::new(layover_certs::DEFAULT_TRUST_DOMAIN)?;
    let cert = ca.issue(&layover_certs::Identity::new(
        "layover-check",
        "placeholder",
    )?)?;
    Ok(config_dump::PlaceholderPem {
        cert_chain: cert.cert_chain_pem,
        private_key: cert.key_pem,
        ca: ca.root_pem().to_string(),
    })
}

fn write_bootstrap(out: &Path, v: &Value) -> Result<(), String> {
    let json = out.extension().and_then(|e| e.to_str()) == Some("json");
    let text = if json {
        let mut s = serde_json::to_string_pretty(v).map_err(|e| e.to_string())?;
        s.push('\n');
        s
    } else {
        layover_bootstrap::to_yaml(v)
    };
    crate::write_output(out, text.as_bytes())
}

fn json_report(out: &Path, conv: &Converted, report: &Report) -> Value {
    let placeholders: Vec<String> = conv
        .placeholders
        .iter()
        .map(|p| match p {
            SecretPlaceholder::Certificate { cert_chain, .. } => cert_chain.display().to_string(),
            SecretPlaceholder::TrustedCa { path, .. } => path.display().to_string(),
        })
        .collect();
    json!({
        "bootstrap": out.display().to_string(),
        "waypoint": report.waypoint,
        "istio": report.istio,
        "notes": conv.notes,
        "warnings": conv.warnings,
        "placeholders": placeholders,
        "envoy_filters": report.applied,
        "skipped": report.skipped,
        "unmatched": report.unmatched().count(),
    })
}

fn count(v: &Value, key: &str) -> usize {
    v.pointer(&format!("/static_resources/{key}"))
        .and_then(Value::as_array)
        .map_or(0, Vec::len)
}

/// The report for people (stdout).
pub fn human_report(out: &Path, patched: &Value, conv: &Converted, report: &Report) -> String {
    let mut s = format!(
        "waypoint {} (Istio {}): bootstrap → {} ({} listeners, {} clusters)\n",
        report.waypoint.as_deref().unwrap_or("?"),
        report.istio,
        out.display(),
        count(patched, "listeners"),
        count(patched, "clusters"),
    );
    for n in &conv.notes {
        s.push_str(&format!("note: {n}\n"));
    }
    for w in &conv.warnings {
        s.push_str(&format!("warning: {w}\n"));
    }
    let mut applied = 0;
    for f in &report.applied {
        s.push_str(&format!("{}\n", f.object));
        for p in &f.patches {
            let head = format!(
                "  configPatches[{}] {} {}",
                p.index, p.operation, p.apply_to
            );
            match &p.matched_nothing {
                Some(why) => s.push_str(&format!(
                    "{head}: warning: matches nothing, istiod ignores it ({why})\n"
                )),
                None => {
                    applied += 1;
                    s.push_str(&format!("{head}: applied at\n"));
                    for at in &p.applied_at {
                        s.push_str(&format!("      {at}\n"));
                    }
                }
            }
        }
    }
    for k in &report.skipped {
        s.push_str(&format!("{}: not attached: {}\n", k.object, k.reason));
    }
    s.push_str(&format!(
        "summary: {} EnvoyFilter(s) attached, {} skipped; {applied} patch(es) applied, {} matched nothing\n",
        report.applied.len(),
        report.skipped.len(),
        report.unmatched().count()
    ));
    s
}
