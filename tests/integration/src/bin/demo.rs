//! `cargo xtask demo`: a live layover waypoint for the default bookinfo configuration.
//!
//! Compiles `testdata/bookinfo`, issues a mesh CA and SPIFFE certificates for the bookinfo
//! workloads, starts one demo backend per WorkloadEntry (on the ports the YAML declares), starts
//! Envoy with the layover filter (dynamic module by default, `--filter wasm` for the proxy-wasm
//! build) with the HBONE chain (`connect_terminate` on a kernel-picked port standing for :15008 →
//! `main_internal`), drives the traffic the bookinfo workloads would send exactly as ztunnel
//! would (one HBONE connection per caller with its workload certificate, one CONNECT stream per
//! request carrying the service authority, `forwarded` and `baggage`, HTTP/1.1 inside), and
//! prints what happened: per scenario the responses, which backends
//! served them, denials and retries (from the backends' counters and Envoy's access log), then
//! Envoy's own counters. Everything it started stops when it exits; `--keep-running` keeps the
//! waypoint up until Ctrl-C and prints how to call it with curl.
//!
//! `--listener mtls` drives the same traffic as plain HTTP/1.1 over the mTLS listener instead.
//!
//! Usage: `demo [--config <dir>] [--out <dir>] [--port <n>] [--admin-port <n>] [--filter wasm|dynamic-module] [--listener hbone|mtls] [--keep-running]`
//! (`$LAYOVER_ENVOY` / `$LAYOVER_WASM` select Envoy and the wasm module, as in the test suite).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use layover_bootstrap::{
    bootstrap, endpoints_from_registry, BootstrapOptions, DownstreamTls, Hbone, CONNECT_TERMINATE,
    MAIN_INTERNAL,
};
use layover_certs::{Identity, MeshCa, MeshDir, MeshSpec, DEFAULT_TRUST_DOMAIN};
use layover_hbone::{
    Baggage, ConnectHeaders, Credentials, HboneClient, HboneConnection, PeerPolicy,
};
use layover_integration::waypoint::{policy_json, FilterBuild, DYNAMIC_MODULE_NAME};
use layover_integration::{
    repo_root, Backend, ClientIdentity, Envoy, EnvoyOptions, HarnessError, HttpClient, TlsClient,
};

/// How long one demo request may take (the slowest is the 2 s fault delay).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How the callers reach the waypoint.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ListenerMode {
    /// HBONE on the `connect_terminate` listener, as ztunnel does (the default).
    Hbone,
    /// Plain HTTP/1.1 over the mTLS listener.
    Mtls,
}

const USAGE: &str = "usage: demo [--config <dir>] [--out <dir>] [--port <n>] [--admin-port <n>] [--filter wasm|dynamic-module] [--listener hbone|mtls] [--keep-running]";

struct Args {
    config: PathBuf,
    out: PathBuf,
    port: u16,
    admin_port: u16,
    keep_running: bool,
    filter: FilterBuild,
    listener: ListenerMode,
}

fn parse_args() -> Result<Args, String> {
    let root = repo_root();
    let mut args = Args {
        config: root.join("testdata/bookinfo"),
        out: root.join("target/layover-demo"),
        port: 0,
        admin_port: 0,
        keep_running: false,
        // The dynamic module is the default: it measured faster (less Envoy CPU per request)
        // than the wasm build in the side-by-side load run (see README, Performance).
        filter: FilterBuild::DynamicModule,
        listener: ListenerMode::Hbone,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--config" => args.config = PathBuf::from(value("--config")?),
            "--out" => args.out = PathBuf::from(value("--out")?),
            "--port" => {
                args.port = value("--port")?
                    .parse()
                    .map_err(|e| format!("--port: {e}"))?
            }
            "--admin-port" => {
                args.admin_port = value("--admin-port")?
                    .parse()
                    .map_err(|e| format!("--admin-port: {e}"))?
            }
            "--keep-running" => args.keep_running = true,
            "--filter" => {
                args.filter = match value("--filter")?.as_str() {
                    "wasm" => FilterBuild::Wasm,
                    "dynamic-module" => FilterBuild::DynamicModule,
                    other => {
                        return Err(format!(
                            "--filter: unknown build `{other}` (expected wasm or dynamic-module)"
                        ))
                    }
                }
            }
            "--listener" => {
                args.listener = match value("--listener")?.as_str() {
                    "hbone" => ListenerMode::Hbone,
                    "mtls" => ListenerMode::Mtls,
                    other => {
                        return Err(format!(
                            "--listener: unknown listener `{other}` (expected hbone or mtls)"
                        ))
                    }
                }
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument `{other}` (try --help)")),
        }
    }
    Ok(args)
}

fn step(what: &str) {
    println!("==> {what}");
}

/// A path as the user should type it: relative to the current directory when inside it.
fn shown(path: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Everything the demo starts (Envoy, backends) lives inside `run`'s future and is stopped
    // when it completes or is dropped: on success, on error, and on Ctrl-C at any point.
    let outcome = tokio::select! {
        outcome = run(&args) => outcome,
        interrupted = tokio::signal::ctrl_c() => {
            println!();
            match interrupted {
                Ok(()) if args.keep_running => Ok(true),
                Ok(()) => Err("interrupted".to_string()),
                Err(e) => Err(format!("waiting for Ctrl-C: {e}")),
            }
        }
    };
    if args.keep_running {
        step("stopped Envoy and the demo backends");
    }
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("demo: some requests did not get the response the policy promises (marked UNEXPECTED)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("demo: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A caller of the demo traffic.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Caller {
    /// A mesh workload, by its `app` label (its identity is its WorkloadEntry's service account).
    App(&'static str),
    /// The ingress gateway (a mesh identity outside the bookinfo namespace).
    Ingress,
    /// A client without a certificate.
    NoCert,
    /// A client claiming productpage's identity with a certificate from another CA.
    OtherCa,
}

impl Caller {
    fn label(self) -> &'static str {
        match self {
            Caller::App(app) => app,
            Caller::Ingress => "ingress",
            Caller::NoCert => "(no cert)",
            Caller::OtherCa => "(other CA)",
        }
    }
}

/// What the policy promises for a scenario.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    Status(u16),
    /// The TLS handshake is refused: no request reaches the filter.
    Refused,
}

struct Scenario {
    caller: Caller,
    method: Method,
    host: &'static str,
    path: &'static str,
    jason: bool,
    /// CONNECT to the service VIP instead of its hostname.
    vip: bool,
    count: usize,
    /// Backend answering the scenario's first request with a 503 (to show a retry).
    fail_once: Option<&'static str>,
    expect: Expect,
    /// Which part of testdata/bookinfo the scenario shows.
    why: &'static str,
}

fn scenarios() -> Vec<Scenario> {
    let s = |caller, method, host, path, count, expect, why| Scenario {
        caller,
        method,
        host,
        path,
        jason: false,
        vip: false,
        count,
        fail_once: None,
        expect,
        why,
    };
    vec![
        s(
            Caller::Ingress,
            Method::GET,
            "productpage:9080",
            "/productpage",
            3,
            Expect::Status(200),
            "productpage-viewer: GET from anyone",
        ),
        s(
            Caller::Ingress,
            Method::POST,
            "productpage:9080",
            "/productpage",
            1,
            Expect::Status(403),
            "productpage-viewer: GET only",
        ),
        Scenario {
            vip: true,
            ..s(
                Caller::App("productpage"),
                Method::GET,
                "details:9080",
                "/details/0",
                3,
                Expect::Status(200),
                "no policy on details (CONNECT to the VIP)",
            )
        },
        s(
            Caller::App("productpage"),
            Method::GET,
            "reviews:9080",
            "/reviews/0",
            40,
            Expect::Status(200),
            "split 40/30/30 over v1/v2/v3",
        ),
        Scenario {
            jason: true,
            fail_once: Some("reviews-v2"),
            ..s(
                Caller::App("productpage"),
                Method::GET,
                "reviews:9080",
                "/reviews/0",
                3,
                Expect::Status(200),
                "jason -> v2; v2 fails once: retried",
            )
        },
        s(
            Caller::App("reviews"),
            Method::GET,
            "ratings:9080",
            "/ratings/0",
            3,
            Expect::Status(200),
            "ratings-viewer: only reviews",
        ),
        Scenario {
            jason: true,
            ..s(
                Caller::App("reviews"),
                Method::GET,
                "ratings:9080",
                "/ratings/0",
                1,
                Expect::Status(200),
                "fault: 2s delay for jason",
            )
        },
        s(
            Caller::App("ratings"),
            Method::GET,
            "reviews:9080",
            "/reviews/0",
            1,
            Expect::Status(403),
            "reviews-viewer: only productpage",
        ),
        s(
            Caller::App("productpage"),
            Method::DELETE,
            "reviews:9080",
            "/reviews/0",
            1,
            Expect::Status(403),
            "reviews-viewer: GET only",
        ),
        s(
            Caller::NoCert,
            Method::GET,
            "reviews:9080",
            "/reviews/0",
            1,
            Expect::Refused,
            "mTLS: client certificate required",
        ),
        s(
            Caller::OtherCa,
            Method::GET,
            "reviews:9080",
            "/reviews/0",
            1,
            Expect::Refused,
            "mTLS: chain must reach the mesh root",
        ),
    ]
}

/// One printed row.
struct Row {
    caller: String,
    authority: String,
    request: String,
    n: usize,
    responses: String,
    served_by: String,
    retries: u64,
    slowest: Duration,
    ok: bool,
    why: &'static str,
}

/// What the demo started; dropping it stops Envoy and the backends.
struct Running {
    envoy: Envoy,
    mode: ListenerMode,
    /// Where the callers connect: the HBONE listener or the mTLS listener.
    target: SocketAddr,
    /// HBONE clients (ztunnel with each caller's workload certificate), by caller label.
    hbone_clients: BTreeMap<&'static str, HboneClient>,
    /// Service name → (hostname, first VIP), for CONNECT authorities.
    services: BTreeMap<String, (String, Option<String>)>,
    backends: Vec<Backend>,
    clients: BTreeMap<&'static str, TlsClient>,
    no_cert: TlsClient,
    other_ca: TlsClient,
    certs: MeshDir,
    identities: BTreeMap<&'static str, Identity>,
    trust_domain: String,
    waypoint_id: String,
    /// The waypoint's identity and the certificates directory, for the `layover hbone curl` hint.
    waypoint: Identity,
    certs_dir: PathBuf,
}

async fn run(args: &Args) -> Result<bool, String> {
    let config = shown(&args.config);
    step(&format!("compiling {config}"));
    let compiled = layover_compiler::compile_paths_with(
        std::slice::from_ref(&args.config),
        &layover_compiler::CompileOptions::default(),
    )
    .map_err(|e| format!("{config}: {e}"))?;
    let p = &compiled.policy;
    println!(
        "    {} services, {} clusters, {} authorization policies, waypoint {}",
        p.services.len(),
        p.clusters.len(),
        p.authorization_policies.len(),
        if p.waypoint.is_empty() {
            "-"
        } else {
            &p.waypoint
        }
    );

    let running = start(args, &compiled).await?;
    let (rows, connections) = drive(&running).await?;
    print_table(&running, &rows, &connections);
    print_envoy_counters(&running).await;
    let all_ok = rows.iter().all(|r| r.ok);

    if args.keep_running {
        if !all_ok {
            eprintln!("demo: some requests did not get the response the policy promises (marked UNEXPECTED)");
        }
        print_how_to_call(&running);
        // Runs until Ctrl-C drops this future (see `main`), which stops Envoy and the backends.
        std::future::pending::<()>().await;
    }
    step("stopping Envoy and the demo backends");
    drop(running);
    Ok(all_ok)
}

/// The `app` label → identity of its workloads, from the WorkloadEntries' service accounts.
fn workload_identities(
    compiled: &layover_compiler::Compiled,
) -> Result<BTreeMap<String, Identity>, String> {
    let mut out = BTreeMap::new();
    for ep in compiled.registry.clusters.values().flatten() {
        let (Some(app), false) = (ep.labels.get("app"), ep.service_account.is_empty()) else {
            continue;
        };
        let id = Identity::new(&ep.namespace, &ep.service_account).map_err(|e| e.to_string())?;
        out.insert(app.clone(), id);
    }
    Ok(out)
}

async fn start(args: &Args, compiled: &layover_compiler::Compiled) -> Result<Running, String> {
    let apps = workload_identities(compiled)?;
    let trust_domain = DEFAULT_TRUST_DOMAIN.to_string();
    let mut identities: BTreeMap<&'static str, Identity> = BTreeMap::new();
    identities.insert(
        "ingress",
        Identity::new("istio-ingress", "istio-ingress").map_err(|e| e.to_string())?,
    );
    for app in ["productpage", "details", "reviews", "ratings"] {
        let id = apps.get(app).ok_or_else(|| {
            format!("the config has no workload labelled app={app} with a serviceAccount")
        })?;
        identities.insert(app, id.clone());
    }

    let certs_dir = args.out.join("certs");
    step(&format!(
        "issuing a mesh CA and SPIFFE certificates (trust domain {trust_domain}) into {}",
        shown(&certs_dir)
    ));
    let mut spec = MeshSpec::new(identities.values().cloned().collect());
    spec.trust_domain = trust_domain.clone();
    if let Some(wp) = compiled.policy.waypoint.split_once('/') {
        spec.waypoint = Identity::new(wp.0, wp.1).map_err(|e| e.to_string())?;
    }
    let certs = layover_certs::write_mesh(&certs_dir, &spec).map_err(|e| e.to_string())?;
    // Callers check the waypoint's SPIFFE id, as ztunnel does, not a host name.
    let waypoint_id = spec.waypoint.spiffe_id(&trust_domain);
    let root_pem = std::fs::read_to_string(certs.root_cert())
        .map_err(|e| format!("{}: {e}", certs.root_cert().display()))?;
    let mut clients = BTreeMap::new();
    let mut hbone_clients = BTreeMap::new();
    for (name, id) in &identities {
        // ztunnel's side of HBONE: the workload's certificate, and only the waypoint's
        // SPIFFE id is accepted from the server.
        let creds = Credentials::from_mesh_dir(&certs_dir, Some(id)).map_err(|e| e.to_string())?;
        let hbone = HboneClient::new(
            &creds,
            PeerPolicy::exactly(&trust_domain, spec.waypoint.clone()),
        )
        .map_err(|e| e.to_string())?;
        hbone_clients.insert(*name, hbone);
        let files = certs.workload(id);
        let identity = ClientIdentity::from_files(&files.cert_chain, &files.private_key)
            .map_err(|e| e.to_string())?;
        let client = TlsClient::expecting_server(&root_pem, Some(&identity), false, &waypoint_id)
            .map_err(|e| e.to_string())?
            .with_timeout(REQUEST_TIMEOUT);
        clients.insert(*name, client);
    }
    let no_cert = TlsClient::expecting_server(&root_pem, None, false, &waypoint_id)
        .map_err(|e| e.to_string())?
        .with_timeout(REQUEST_TIMEOUT);
    let foreign = MeshCa::new(&trust_domain).map_err(|e| e.to_string())?;
    let productpage = identities
        .get("productpage")
        .ok_or("no productpage identity")?;
    let forged = foreign.issue(productpage).map_err(|e| e.to_string())?;
    let other_ca = TlsClient::expecting_server(
        &root_pem,
        Some(&ClientIdentity::from_issued(&forged).map_err(|e| e.to_string())?),
        false,
        &waypoint_id,
    )
    .map_err(|e| e.to_string())?
    .with_timeout(REQUEST_TIMEOUT);

    let mut endpoints = endpoints_from_registry(compiled);
    step(&format!(
        "starting {} demo backends on the WorkloadEntry addresses",
        endpoints.len()
    ));
    let mut backends = Vec::new();
    let mut moved = Vec::new();
    for ep in &mut endpoints {
        let app = ep.labels.get("app").map_or("backend", String::as_str);
        let version = ep.labels.get("version").map_or("", String::as_str);
        let name = if version.is_empty() {
            app.to_string()
        } else {
            format!("{app}-{version}")
        };
        let addr: SocketAddr = format!("{}:{}", ep.address, ep.port)
            .parse()
            .map_err(|e| format!("endpoint {}:{}: {e}", ep.address, ep.port))?;
        if let Some(b) = backends.iter().find(|b: &&Backend| b.name() == name) {
            ep.port = b.port();
            continue;
        }
        let backend = match Backend::start_at(&name, version, addr).await {
            Ok(b) => b,
            // A shared machine may have the port taken: the demo then tells Envoy the port
            // it got instead, so the run still works and says so.
            Err(HarnessError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::AddrInUse =>
            {
                let any = SocketAddr::new(addr.ip(), 0);
                let b = Backend::start_at(&name, version, any)
                    .await
                    .map_err(|e| e.to_string())?;
                moved.push(format!("{} :{} busy, using :{}", name, ep.port, b.port()));
                ep.port = b.port();
                b
            }
            Err(e) => return Err(e.to_string()),
        };
        backends.push(backend);
    }
    let list: Vec<String> = backends
        .iter()
        .map(|b| format!("{} :{}", b.name(), b.port()))
        .collect();
    println!("    {}", list.join(", "));
    for m in moved {
        println!("    note: {m}");
    }

    let module = match args.filter {
        FilterBuild::Wasm => format!(
            "the proxy-wasm filter ({})",
            shown(&layover_integration::waypoint::wasm_module().map_err(|e| e.to_string())?)
        ),
        FilterBuild::DynamicModule => format!(
            "the dynamic-module filter ({})",
            shown(
                &layover_integration::waypoint::dynamic_module_dir()
                    .map_err(|e| e.to_string())?
                    .join(format!("lib{DYNAMIC_MODULE_NAME}.so"))
            )
        ),
        // `--filter` never selects it (the demo shows the layover filters).
        FilterBuild::Native => return Err("the demo runs a layover filter build".into()),
    };
    step(&format!(
        "starting Envoy with {module}, {}",
        match args.listener {
            ListenerMode::Hbone =>
                "the HBONE chain (connect_terminate -> main_internal) and an mTLS listener",
            ListenerMode::Mtls => "an mTLS listener",
        }
    ));
    let filter = args
        .filter
        .http_filter(&policy_json(compiled).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let absolute =
        |p: PathBuf| std::fs::canonicalize(&p).map_err(|e| format!("{}: {e}", p.display()));
    let tls = DownstreamTls {
        cert_chain: absolute(certs.waypoint().cert_chain)?,
        private_key: absolute(certs.waypoint().private_key)?,
        trusted_ca: absolute(certs.root_cert())?,
        trust_domain: trust_domain.clone(),
    };
    // The waypoint's HBONE port: kernel-picked like every other port here (read back below),
    // standing for :15008.
    let hbone = (args.listener == ListenerMode::Hbone).then(|| Hbone {
        port: 0,
        ..Hbone::from_tls(&tls)
    });
    let options = EnvoyOptions {
        log_level: "warn".into(),
        ..args.filter.envoy_options().map_err(|e| e.to_string())?
    };
    let started = Instant::now();
    let envoy = Envoy::start_with(&options, |launch| {
        let opts = BootstrapOptions {
            admin_port: args.admin_port,
            listener_port: args.port,
            access_log_path: Some(launch.access_log.display().to_string()),
            layover_filter: Some(filter),
            downstream_tls: Some(tls),
            hbone,
            ..BootstrapOptions::default()
        };
        bootstrap(&compiled.policy, &endpoints, &opts)
    })
    .await
    .map_err(|e| e.to_string())?;
    let target = match args.listener {
        ListenerMode::Hbone => envoy
            .listener_addr_of(CONNECT_TERMINATE)
            .ok_or("Envoy has no HBONE (connect_terminate) listener")?,
        ListenerMode::Mtls => envoy.listener_addr(),
    };
    match args.listener {
        ListenerMode::Hbone => println!(
            "    HBONE (:15008) on {target}, mTLS listener https://{} (admin http://{}), ready in {} ms",
            envoy.listener_addr(),
            envoy.admin_addr(),
            started.elapsed().as_millis()
        ),
        ListenerMode::Mtls => println!(
            "    listening on https://{target} (admin http://{}), ready in {} ms",
            envoy.admin_addr(),
            started.elapsed().as_millis()
        ),
    }
    let services = compiled
        .policy
        .services
        .iter()
        .map(|svc| {
            (
                svc.name.clone(),
                (svc.hostname.clone(), svc.addresses.first().cloned()),
            )
        })
        .collect();
    Ok(Running {
        envoy,
        mode: args.listener,
        target,
        hbone_clients,
        services,
        backends,
        clients,
        no_cert,
        other_ca,
        certs,
        identities,
        trust_domain,
        waypoint_id,
        waypoint: spec.waypoint.clone(),
        certs_dir,
    })
}

fn counts(backends: &[Backend]) -> Vec<usize> {
    backends.iter().map(Backend::request_count).collect()
}

/// One caller's HBONE connection, reused for all its requests (as ztunnel pools them).
struct CallerConnection {
    conn: HboneConnection,
    /// CONNECT streams opened on it.
    streams: usize,
}

/// What the demo reports about each HBONE caller: its SPIFFE id, the waypoint identity its
/// connection verified, and how many CONNECT streams it carried.
struct ConnectionSummary {
    caller: &'static str,
    waypoint: String,
    streams: usize,
}

/// A made-up pod IP for a caller, reported in `forwarded` as ztunnel reports the client.
fn pod_ip(caller: &str) -> &'static str {
    match caller {
        "ingress" => "10.244.0.5",
        "productpage" => "10.244.1.11",
        "details" => "10.244.1.12",
        "reviews" => "10.244.1.13",
        "ratings" => "10.244.1.14",
        _ => "10.244.1.99",
    }
}

/// The `baggage` ztunnel sends for a source workload.
fn baggage(caller: &str, id: Option<&Identity>) -> Baggage {
    let ingress = caller == "ingress";
    Baggage {
        cluster: Some("Kubernetes".into()),
        namespace: id.map(|id| id.namespace.clone()),
        workload_kind: Some("deployment".into()),
        workload_name: Some(if ingress {
            "istio-ingress".into()
        } else {
            format!("{caller}-v1")
        }),
        service_name: Some(if ingress {
            "istio-ingress".into()
        } else {
            caller.into()
        }),
        service_version: (!ingress).then(|| "v1".into()),
    }
}

/// The CONNECT authority for `host` (`<service>:<port>`): the service's hostname, or its VIP.
fn connect_authority(running: &Running, host: &str, vip: bool) -> Result<String, String> {
    let (name, port) = host
        .split_once(':')
        .ok_or_else(|| format!("host {host} has no port"))?;
    let (hostname, address) = running
        .services
        .get(name)
        .ok_or_else(|| format!("the config has no service {name}"))?;
    match (vip, address) {
        (true, Some(address)) => Ok(format!("{address}:{port}")),
        (true, None) => Err(format!("service {name} has no VIP")),
        (false, _) => Ok(format!("{hostname}:{port}")),
    }
}

/// A request's outcome, whichever way it was sent.
enum Outcome {
    Reply { status: u16, body: String },
    Alert(String),
    Error(String),
}

/// One request as ztunnel would carry it: a new CONNECT stream on the caller's HBONE
/// connection, HTTP/1.1 inside.
async fn hbone_request(
    conn: &HboneConnection,
    authority: &str,
    connect: &ConnectHeaders,
    sc: &Scenario,
    headers: &[(&str, &str)],
) -> Result<(u16, String), String> {
    let stream = conn
        .connect(authority, connect)
        .await
        .map_err(|e| format!("CONNECT: {e}"))?;
    let (mut send, driver) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP/1.1 in the tunnel: {e}"))?;
    tokio::spawn(driver);
    let mut req = http::Request::builder()
        .method(sc.method.clone())
        .uri(sc.path)
        .header("host", sc.host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let exchange = async {
        let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok::<_, String>((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer within {REQUEST_TIMEOUT:?}"))?
}

/// The access log lines of the tunnelled HTTP requests (not the CONNECTs the HBONE listener
/// also logs), once there are at least `min` of them.
async fn request_log(running: &Running, min: usize) -> Result<Vec<serde_json::Value>, String> {
    let start = Instant::now();
    loop {
        let lines: Vec<serde_json::Value> = running
            .envoy
            .access_log(0)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|l| l["method"] != "CONNECT")
            .collect();
        if lines.len() >= min {
            return Ok(lines);
        }
        if start.elapsed() > REQUEST_TIMEOUT {
            return Err(format!(
                "access log has {} request lines, expected {min}",
                lines.len()
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn drive(running: &Running) -> Result<(Vec<Row>, Vec<ConnectionSummary>), String> {
    let scenarios = scenarios();
    let total: usize = scenarios.iter().map(|s| s.count).sum();
    step(&format!(
        "sending {total} requests in {} scenarios as the bookinfo workloads would{}",
        scenarios.len(),
        match running.mode {
            ListenerMode::Hbone => " (through HBONE, as ztunnel)",
            ListenerMode::Mtls => " (HTTP/1.1 over mTLS)",
        }
    ));
    let addr = running.target;
    let mut connections: BTreeMap<&'static str, CallerConnection> = BTreeMap::new();
    let mut source_port: u16 = 41000;
    let mut logged = 0usize;
    let mut rows = Vec::new();
    for sc in &scenarios {
        let label = sc.caller.label();
        let client = match sc.caller {
            Caller::App(app) => running.clients.get(app),
            Caller::Ingress => running.clients.get("ingress"),
            Caller::NoCert => Some(&running.no_cert),
            Caller::OtherCa => Some(&running.other_ca),
        }
        .ok_or_else(|| format!("no client for {label}"))?;
        // Callers with a mesh certificate speak HBONE; the refused ones never get past the
        // handshake, so a TLS client shows the alert Envoy sends.
        let hbone = match (running.mode, sc.caller) {
            (ListenerMode::Hbone, Caller::App(_) | Caller::Ingress) => {
                running.hbone_clients.get(label)
            }
            _ => None,
        };
        let authority = match (running.mode, sc.expect) {
            (ListenerMode::Hbone, Expect::Status(_)) => {
                Some(connect_authority(running, sc.host, sc.vip)?)
            }
            _ => None,
        };
        if let Some(name) = sc.fail_once {
            match running.backends.iter().find(|b| b.name() == name) {
                Some(b) => b.fail_next(1),
                None => return Err(format!("no backend {name} to fail once")),
            }
        }
        let before = counts(&running.backends);
        let headers: &[(&str, &str)] = if sc.jason {
            &[("end-user", "jason")]
        } else {
            &[]
        };
        let mut responses: BTreeMap<String, usize> = BTreeMap::new();
        let mut answered = 0usize;
        let mut ok = true;
        let mut slowest = Duration::ZERO;
        for _ in 0..sc.count {
            let t = Instant::now();
            let outcome = match (hbone, &authority) {
                (Some(hbone), Some(authority)) => {
                    // One connection per caller, opened on its first request and reused.
                    if !connections.contains_key(label) {
                        let conn = hbone
                            .connect(addr)
                            .await
                            .map_err(|e| format!("{label}: HBONE connection to {addr}: {e}"))?;
                        connections.insert(label, CallerConnection { conn, streams: 0 });
                    }
                    let caller = connections
                        .get_mut(label)
                        .ok_or_else(|| format!("{label}: no HBONE connection"))?;
                    caller.streams += 1;
                    source_port = source_port.wrapping_add(1);
                    let connect = ConnectHeaders {
                        forwarded_for: Some(
                            format!("{}:{source_port}", pod_ip(label))
                                .parse()
                                .map_err(|e| format!("pod address: {e}"))?,
                        ),
                        baggage: Some(baggage(label, running.identities.get(label))),
                        traceparent: Some(
                            layover_hbone::new_traceparent().map_err(|e| e.to_string())?,
                        ),
                        ..ConnectHeaders::default()
                    };
                    match hbone_request(&caller.conn, authority, &connect, sc, headers).await {
                        Ok((status, body)) => Outcome::Reply { status, body },
                        Err(e) => Outcome::Error(e),
                    }
                }
                _ => match client
                    .request(
                        addr,
                        sc.method.clone(),
                        sc.host,
                        sc.path,
                        headers,
                        Bytes::new(),
                    )
                    .await
                {
                    Ok(reply) => Outcome::Reply {
                        status: reply.status.as_u16(),
                        body: reply.text(),
                    },
                    Err(e) => match e.alert() {
                        Some(alert) => Outcome::Alert(alert.to_string()),
                        None => Outcome::Error(e.to_string()),
                    },
                },
            };
            slowest = slowest.max(t.elapsed());
            let key = match outcome {
                Outcome::Reply { status, body } => {
                    answered += 1;
                    ok &= sc.expect == Expect::Status(status);
                    let denied = status == 403 && body.starts_with("RBAC");
                    format!("{status}{}", if denied { " denied" } else { "" })
                }
                Outcome::Alert(alert) => {
                    ok &= sc.expect == Expect::Refused;
                    format!("TLS alert {alert}")
                }
                Outcome::Error(e) => {
                    ok = false;
                    format!("error: {e}")
                }
            };
            *responses.entry(key).or_default() += 1;
        }
        let after = counts(&running.backends);

        // Envoy logs each answered request once it completed; retries are its attempt count
        // minus one.
        logged += answered;
        let log = request_log(running, logged).await?;
        let retries: u64 = log
            .iter()
            .skip(logged - answered)
            // Envoy writes the count as a JSON number; older formats wrote a string.
            .filter_map(|l| {
                let a = &l["attempts"];
                a.as_u64()
                    .or_else(|| a.as_str().and_then(|s| s.parse().ok()))
            })
            .map(|a| a.saturating_sub(1))
            .sum();

        let served: Vec<String> = running
            .backends
            .iter()
            .zip(before.iter().zip(&after))
            .filter(|(_, (b, a))| a > b)
            .map(|(backend, (b, a))| {
                let who = if backend.subset().is_empty() {
                    backend.name()
                } else {
                    backend.subset()
                };
                format!("{who}:{}", a - b)
            })
            .collect();
        rows.push(Row {
            caller: label.to_string(),
            authority: match (running.mode, &authority) {
                (ListenerMode::Hbone, Some(a)) => a.clone(),
                (ListenerMode::Hbone, None) => "- (handshake refused)".into(),
                (ListenerMode::Mtls, _) => "-".into(),
            },
            request: format!(
                "{} {}{}{}",
                sc.method,
                sc.host,
                sc.path,
                if sc.jason { " (jason)" } else { "" }
            ),
            n: sc.count,
            responses: responses
                .iter()
                .map(|(k, v)| {
                    if *v == 1 {
                        k.clone()
                    } else {
                        format!("{v}× {k}")
                    }
                })
                .collect::<Vec<_>>()
                .join(", "),
            served_by: if served.is_empty() {
                "-".into()
            } else {
                served.join(" ")
            },
            retries,
            slowest,
            ok,
            why: sc.why,
        });
    }
    let summaries = connections
        .into_iter()
        .map(|(caller, c)| ConnectionSummary {
            caller,
            waypoint: c.conn.peer().to_string(),
            streams: c.streams,
        })
        .collect();
    Ok((rows, summaries))
}

fn print_table(running: &Running, rows: &[Row], connections: &[ConnectionSummary]) {
    println!();
    println!(
        "callers (client certificates from the demo mesh CA, trust domain {}):",
        running.trust_domain
    );
    let width = running
        .identities
        .values()
        .map(|id| id.spiffe_id(&running.trust_domain).chars().count())
        .max()
        .unwrap_or(0);
    for (name, id) in &running.identities {
        let spiffe = id.spiffe_id(&running.trust_domain);
        match connections.iter().find(|c| c.caller == *name) {
            Some(c) => println!(
                "  {name:<12} {spiffe:<width$}  1 HBONE connection, {} CONNECT stream{}, waypoint verified as {}",
                c.streams,
                if c.streams == 1 { "" } else { "s" },
                c.waypoint
            ),
            None => println!("  {name:<12} {spiffe}"),
        }
    }
    println!("  {:<12} no client certificate", "(no cert)");
    println!(
        "  {:<12} productpage's SPIFFE id, signed by another CA",
        "(other CA)"
    );
    println!(
        "  every caller requires the waypoint to present {}",
        running.waypoint_id
    );
    println!();

    let header = [
        "caller",
        "CONNECT authority",
        "request",
        "n",
        "responses",
        "subset:hits",
        "retries",
        "slowest",
        "check",
        "shows",
    ];
    let cells: Vec<[String; 10]> = rows
        .iter()
        .map(|r| {
            [
                r.caller.clone(),
                r.authority.clone(),
                r.request.clone(),
                r.n.to_string(),
                r.responses.clone(),
                r.served_by.clone(),
                r.retries.to_string(),
                format!("{} ms", r.slowest.as_millis()),
                if r.ok { "ok" } else { "UNEXPECTED" }.to_string(),
                r.why.to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cols: &[String]| {
        let mut out = String::new();
        for (i, (c, w)) in cols.iter().zip(widths).enumerate() {
            if i + 1 == cols.len() {
                out.push_str(c);
            } else {
                out.push_str(c);
                out.push_str(&" ".repeat(w - c.chars().count() + 2));
            }
        }
        out
    };
    println!("{}", line(&header.map(String::from)));
    println!("{}", line(&widths.map(|w| "-".repeat(w))));
    for row in &cells {
        println!("{}", line(row));
    }
}

/// Envoy's own counters, so the table can be checked against the proxy's view.
async fn print_envoy_counters(running: &Running) {
    let admin = HttpClient::http1().with_timeout(Duration::from_secs(5));
    let Ok(reply) = admin.get(&running.envoy.admin_url("/stats?usedonly")).await else {
        return;
    };
    let text = reply.text();
    let sum = |pred: &dyn Fn(&str) -> bool| -> u64 {
        text.lines()
            .filter_map(|l| l.split_once(": "))
            .filter(|(k, _)| pred(k))
            .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
            .sum()
    };
    let hcm = match running.mode {
        ListenerMode::Hbone => MAIN_INTERNAL,
        ListenerMode::Mtls => layover_bootstrap::LISTENER_NAME,
    };
    let prefix = format!("http.{hcm}.");
    let rq = |class: &str| {
        let name = format!("{prefix}downstream_rq_{class}");
        move |k: &str| k == name
    };
    let total = sum(&rq("completed"));
    let ok2 = sum(&rq("2xx"));
    let c4 = sum(&rq("4xx"));
    let c5 = sum(&rq("5xx"));
    let retries = sum(&|k: &str| k.starts_with("cluster.") && k.ends_with(".upstream_rq_retry"));
    let upstream_5xx = sum(&|k: &str| k.starts_with("cluster.") && k.ends_with(".upstream_rq_5xx"));
    let no_cert =
        sum(&|k: &str| k.starts_with("listener.") && k.ends_with(".ssl.fail_verify_no_cert"));
    let bad_chain =
        sum(&|k: &str| k.starts_with("listener.") && k.ends_with(".ssl.fail_verify_error"));
    let handshakes = sum(&|k: &str| k.starts_with("listener.") && k.ends_with(".ssl.handshake"));
    println!();
    println!(
        "Envoy's counters: {total} requests ({ok2} 2xx, {c4} 4xx, {c5} 5xx); {handshakes} mTLS handshakes, \
         refused: {no_cert} without a client certificate, {bad_chain} with an untrusted one; \
         upstream: {upstream_5xx} 5xx answer(s), {retries} retr{}",
        if retries == 1 { "y" } else { "ies" }
    );
    if running.mode == ListenerMode::Hbone {
        let connect = |what: &str| {
            let name = format!("http.{CONNECT_TERMINATE}.{what}");
            move |k: &str| k == name
        };
        println!(
            "HBONE ({CONNECT_TERMINATE}): {} CONNECT streams over the {handshakes} mTLS connections",
            sum(&connect("downstream_rq_total"))
        );
    }
}

fn print_how_to_call(running: &Running) {
    let port = running.envoy.listener_addr().port();
    let ca = shown(&running.certs.root_cert());
    let as_workload = |app: &str| {
        running
            .identities
            .get(app)
            .map(|id| running.certs.workload(id))
    };
    println!();
    println!(
        "The waypoint keeps running: https://127.0.0.1:{port} (mTLS), admin {}.",
        running.envoy.admin_url("/")
    );
    println!("Access log: {}", running.envoy.access_log_path().display());
    if running.mode == ListenerMode::Hbone {
        let id = |app: &str| {
            running
                .identities
                .get(app)
                .map(|id| format!("{}/{}", id.namespace, id.service_account))
        };
        if let (Some(pp), Some(ratings)) = (id("productpage"), id("ratings")) {
            println!(
                "HBONE on {}: call it as ztunnel would, as productpage (200), then as ratings (403):",
                running.target
            );
            for (who, ip) in [(pp, pod_ip("productpage")), (ratings, pod_ip("ratings"))] {
                println!(
                    "  cargo run -q --release --bin layover -- hbone curl --waypoint {} --certs {} --identity {who} \\\n      --expect-server {}/{} --authority reviews.bookinfo.svc.cluster.local:9080 --forwarded-for {ip}:41000 -H 'host: reviews:9080' /reviews/0",
                    running.target,
                    shown(&running.certs_dir),
                    running.waypoint.namespace,
                    running.waypoint.service_account
                );
            }
        }
        println!("Or over the mTLS listener with curl:");
    }
    if let (Some(pp), Some(ratings)) = (as_workload("productpage"), as_workload("ratings")) {
        println!("Call it as productpage (200), then as ratings (403 RBAC: access denied):");
        for files in [pp, ratings] {
            println!(
                "  curl --cacert {ca} --cert {} --key {} -H 'host: reviews:9080' https://localhost:{port}/reviews/0",
                shown(&files.cert_chain),
                shown(&files.private_key)
            );
        }
    }
    println!("Press Ctrl-C to stop Envoy and the demo backends.");
}
