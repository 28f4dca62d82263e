//! `layover manifests`: the Kubernetes objects that deploy layover into a cluster with Istio
//! ambient — the EnvoyFilter for the waypoint, the WasmPlugin alternative (wasm build), and
//! with `--drop-in` layover's own Envoy as the waypoint (see envoy-config/docs/deploy.md).

use std::path::PathBuf;

use layover_bootstrap::manifests::{DropIn, ManifestOptions, ModuleBuild};
use layover_contract::ClusterSelection;
use layover_envoyfilter::IstioVersion;

use crate::envoy_cmd::cluster_selection_parser;

/// The build the waypoint loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Build {
    /// The Envoy dynamic module (`liblayover_module.so`).
    DynamicModule,
    /// The proxy-wasm module (`layover_wasm.wasm`).
    Wasm,
}

/// Arguments of `layover manifests`.
#[derive(Debug, Clone, clap::Args)]
pub struct ManifestsArgs {
    /// YAML files or directories holding the Istio configuration (the same inputs as `compile`).
    #[arg(long, required = true, num_args = 1..)]
    pub config: Vec<PathBuf>,
    /// Waypoint Gateway to compile for (`namespace/name`), when the input has several.
    #[arg(long)]
    pub waypoint: Option<String>,
    /// The build the waypoint loads.
    #[arg(long, value_enum, default_value = "dynamic-module")]
    pub filter: Build,
    /// The Istio release of the cluster's istiod (default: the release layover pins). It decides
    /// how the EnvoyFilter attaches to the waypoint: `targetRefs` to the Gateway from 1.27,
    /// `workloadSelector` on the waypoint's pods up to 1.26.
    #[arg(long, default_value_t = IstioVersion::PINNED)]
    pub istio_version: IstioVersion,
    /// How the route takes the filter's cluster choice (`specifier-plugin`: dynamic module only).
    #[arg(long, default_value = "header", value_parser = cluster_selection_parser())]
    pub cluster_selection: ClusterSelection,
    /// With `--filter wasm`: also emit a WasmPlugin fetching the module from this URL
    /// (`oci://registry/image:tag` or `file:///path/in/the/proxy`).
    #[arg(long, value_name = "URL")]
    pub wasm_url: Option<String>,
    /// Directory to write the manifests into (one file per kind of deployment).
    #[arg(long, default_value = "target/layover-manifests")]
    pub out_dir: PathBuf,
    /// Also emit the drop-in waypoint: layover's own Envoy as the waypoint (GatewayClass
    /// layover-waypoint, Gateway, Deployment, Service, bootstrap ConfigMap).
    #[arg(long)]
    pub drop_in: bool,
    /// With --drop-in: the image holding the module files in /layover/.
    #[arg(long, requires = "drop_in", value_name = "IMAGE")]
    pub module_image: Option<String>,
    /// With --drop-in: the Envoy image (Envoy 1.40.0, the version the dynamic module is built for).
    #[arg(long, requires = "drop_in", default_value = "envoyproxy/envoy:v1.40.0")]
    pub envoy_image: String,
    /// With --drop-in: the mesh trust domain.
    #[arg(long, requires = "drop_in", default_value = layover_certs::DEFAULT_TRUST_DOMAIN)]
    pub trust_domain: String,
    /// With --drop-in: a cert-manager ClusterIssuer that signs with the mesh CA (e.g. the
    /// issuer behind istio-csr); emits a Certificate for the waypoint's SPIFFE id. Without
    /// it, create the Secret <gateway>-layover-certs yourself.
    #[arg(long, requires = "drop_in", value_name = "CLUSTER_ISSUER")]
    pub issuer: Option<String>,
}

/// Runs `layover manifests`.
pub fn run(args: &ManifestsArgs) -> Result<(), String> {
    let opts = layover_compiler::CompileOptions {
        waypoint: args.waypoint.clone(),
        istio: args.istio_version,
    };
    let compiled =
        layover_compiler::compile_paths_with(&args.config, &opts).map_err(|e| e.to_string())?;
    for notice in &compiled.notices {
        eprintln!("{notice}");
    }
    layover_core::CompiledPolicy::compile(&compiled.policy)
        .map_err(|e| format!("the compiled policy was rejected by the engine: {e}"))?;
    if compiled.policy.waypoint.is_empty() {
        return Err("no waypoint Gateway in the input: manifests target a waypoint (add its Gateway, e.g. `istioctl waypoint generate`, to --config)".into());
    }
    let build = match args.filter {
        Build::DynamicModule => ModuleBuild::DynamicModule,
        Build::Wasm => ModuleBuild::Wasm,
    };
    if args.wasm_url.is_some() && build != ModuleBuild::Wasm {
        return Err("--wasm-url needs --filter wasm (a WasmPlugin loads the wasm build)".into());
    }
    let cluster_selection = args.cluster_selection;
    if cluster_selection == ClusterSelection::SpecifierPlugin && build != ModuleBuild::DynamicModule
    {
        return Err("--cluster-selection specifier-plugin needs --filter dynamic-module".into());
    }
    let drop_in = if args.drop_in {
        let Some(module_image) = args.module_image.clone() else {
            return Err(
                "--drop-in needs --module-image (an image with the module files in /layover/)"
                    .into(),
            );
        };
        Some(DropIn {
            envoy_image: args.envoy_image.clone(),
            module_image,
            trust_domain: args.trust_domain.clone(),
            issuer: args.issuer.clone(),
        })
    } else {
        None
    };
    let manifests = layover_bootstrap::manifests::manifests(
        &compiled,
        &ManifestOptions {
            build,
            cluster_selection,
            wasm_url: args.wasm_url.clone(),
            drop_in,
            istio: args.istio_version,
        },
    )
    .map_err(|e| format!("cannot generate the manifests: {e}"))?;
    // Render everything before writing anything: an error leaves no partial set behind.
    let mut rendered = Vec::new();
    for m in &manifests {
        rendered.push((m, m.to_yaml().map_err(|e| e.to_string())?));
    }
    std::fs::create_dir_all(&args.out_dir)
        .map_err(|e| format!("{}: {e}", args.out_dir.display()))?;
    for (m, text) in rendered {
        let path = args.out_dir.join(&m.file);
        std::fs::write(&path, text)
            .map_err(|e| format!("{}: cannot write: {e}", path.display()))?;
        eprintln!("wrote {} ({})", path.display(), m.what);
    }
    Ok(())
}
