//! `layover certs`: a local mesh CA. Writes a root certificate, the waypoint's certificate and
//! SPIFFE workload certificates into a directory, for `layover envoy --mtls` and for clients
//! that stand in for mesh workloads.

use std::path::PathBuf;

use layover_certs::{write_mesh, Identity, MeshSpec, DEFAULT_TRUST_DOMAIN};

/// Arguments of `layover certs`.
#[derive(Debug, Clone, clap::Args)]
pub struct CertsArgs {
    /// Directory to write the certificates into (created if missing; files are replaced).
    #[arg(long, default_value = "target/layover-certs")]
    pub out: PathBuf,
    /// Trust domain of every identity (MeshConfig `trustDomain`).
    #[arg(long, default_value = DEFAULT_TRUST_DOMAIN)]
    pub trust_domain: String,
    /// A workload identity `namespace/service-account` to issue a certificate for; repeat for
    /// several.
    #[arg(long = "identity", value_name = "NS/SA")]
    pub identities: Vec<String>,
    /// The waypoint's own identity (Istio: the waypoint Gateway's service account).
    #[arg(long, value_name = "NS/SA", default_value = "bookinfo/waypoint")]
    pub waypoint: String,
    /// DNS name or IP address added to the waypoint's certificate so local clients that check
    /// host names (curl) accept it; repeat for several.
    #[arg(long = "waypoint-host", value_name = "HOST", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string()])]
    pub waypoint_hosts: Vec<String>,
}

/// Runs `layover certs`.
pub fn run(args: &CertsArgs) -> Result<(), String> {
    let parse = |s: &str| s.parse::<Identity>().map_err(|e| e.to_string());
    let identities = args
        .identities
        .iter()
        .map(|s| parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let spec = MeshSpec {
        trust_domain: args.trust_domain.clone(),
        identities,
        waypoint: parse(&args.waypoint)?,
        waypoint_hosts: args.waypoint_hosts.clone(),
    };
    let dir = write_mesh(&args.out, &spec).map_err(|e| e.to_string())?;
    let td = &spec.trust_domain;
    let parent = |p: PathBuf| {
        p.parent()
            .map(|d| d.display().to_string())
            .unwrap_or_default()
    };
    println!("root CA   {}", dir.root_cert().display());
    println!(
        "waypoint  {}  {}/{{cert-chain,key}}.pem",
        spec.waypoint.spiffe_id(td),
        parent(dir.waypoint().cert_chain)
    );
    for id in &spec.identities {
        println!(
            "workload  {}  {}/{{cert-chain,key}}.pem",
            id.spiffe_id(td),
            parent(dir.workload(id).cert_chain)
        );
    }
    if spec.identities.is_empty() {
        eprintln!("note: no --identity given: only the root and the waypoint's certificate");
    }
    eprintln!(
        "next: layover envoy --config <yaml…> --mtls {} --run",
        args.out.display()
    );
    Ok(())
}
