//! The load generator and config helper of `cargo xtask bench` (the side-by-side benchmark).
//!
//! - `bench load --addr IP:PORT --targets FILE --requests N [--connections C] [--hbone CERTS_DIR
//!   --identity NS/SA] [--check]`: sends exactly N HTTP/1.1 GETs over C keep-alive connections
//!   (one request in flight on each), round-robin over the request list in FILE (one request a
//!   line: `authority<TAB>host<TAB>path[<TAB>name: value]…`), and prints one JSON line:
//!   requests, errors, seconds, req/s and the latency percentiles (µs). With `--hbone` every
//!   connection is an HBONE connection (mutual TLS + HTTP/2, the identity's certificate from a
//!   `layover certs` directory) carrying one CONNECT tunnel per authority, with HTTP/1.1 inside,
//!   as ztunnel pools them. `--check` fails on the first answer other than 200 (naming the
//!   request) instead of counting it.
//! - `bench ceiling --in ENVOY_YAML --out ENVOY_YAML --cluster NAME`: the "no policy" Envoy for
//!   the same listeners — every HTTP connection manager outside `connect_terminate` gets one
//!   route, `prefix: /` → NAME, and the router as its only filter.
//! - `bench istiod --config ISTIO_YAML --out ENVOY_YAML --build native|wasm|dynamic-module
//!   [--wasm FILE] --certs CERTS_DIR --hbone-port P --admin-port P --ztunnel-port P`: the
//!   waypoint istiod would push for the YAML (HBONE in, chains selected by service VIP, HBONE out
//!   through `connect_originate` to the destination ztunnel on the ztunnel port), natively or
//!   with layover attached by the route A EnvoyFilter.
//! - `bench ztunnel --certs CERTS_DIR --identity NS/SA --port P`: the destination ztunnel's
//!   stand-in until killed — an HBONE server (mutual TLS + HTTP/2 CONNECT, one thread) that
//!   forwards each tunnel to its CONNECT authority (the endpoint, the direct-response upstream).
//!
//! The orchestration (Envoys, CPU and RSS from /proc, rounds, report) lives in xtask, which is
//! std-only; this binary carries the async HTTP and TLS stack it needs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use layover_bootstrap::Hbone;
use layover_certs::Identity;
use layover_hbone::{ConnectHeaders, Credentials, HboneClient, HboneServer, PeerPolicy};
use layover_integration::bench::{istiod_bootstrap, percentile, IstiodBuild, Target};
use serde_json::{json, Value};

/// How long one request may take before the run is declared broken.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

const USAGE: &str = "usage: bench load --addr IP:PORT --targets FILE --requests N [--connections C] [--hbone CERTS_DIR --identity NS/SA] [--check]
       bench ceiling --in ENVOY_YAML --out ENVOY_YAML --cluster NAME
       bench istiod --config ISTIO_YAML --out ENVOY_YAML --build native|wasm|dynamic-module [--wasm FILE] --certs CERTS_DIR --hbone-port P --admin-port P --ztunnel-port P
       bench ztunnel --certs CERTS_DIR --identity NS/SA --port P";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("load") => load_cmd(&args[1..]),
        Some("ceiling") => ceiling_cmd(&args[1..]),
        Some("istiod") => istiod_cmd(&args[1..]),
        Some("ztunnel") => ztunnel_cmd(&args[1..]),
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--name value` pairs and bare flags.
struct Flags(Vec<(String, Option<String>)>);

impl Flags {
    fn parse(args: &[String], bare: &[&str]) -> Result<Flags, String> {
        let mut out = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let name = a
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument `{a}`\n{USAGE}"))?;
            if bare.contains(&name) {
                out.push((name.to_string(), None));
            } else {
                let v = it
                    .next()
                    .ok_or_else(|| format!("--{name} needs a value\n{USAGE}"))?;
                out.push((name.to_string(), Some(v.clone())));
            }
        }
        Ok(Flags(out))
    }
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }
    fn need(&self, name: &str) -> Result<&str, String> {
        self.get(name)
            .ok_or_else(|| format!("--{name} is required\n{USAGE}"))
    }
    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _)| n == name)
    }
}

/// Where and how the load goes.
struct LoadPlan {
    addr: SocketAddr,
    targets: Arc<Vec<Target>>,
    requests: u64,
    connections: u64,
    hbone: Option<HboneClient>,
    check: bool,
}

fn load_cmd(args: &[String]) -> Result<(), String> {
    let f = Flags::parse(args, &["check"])?;
    let addr: SocketAddr = f
        .need("addr")?
        .parse()
        .map_err(|e| format!("--addr: {e}"))?;
    let targets_path = PathBuf::from(f.need("targets")?);
    let text = std::fs::read_to_string(&targets_path)
        .map_err(|e| format!("{}: {e}", targets_path.display()))?;
    let targets =
        Target::parse_list(&text).map_err(|e| format!("{}: {e}", targets_path.display()))?;
    let requests: u64 = f
        .need("requests")?
        .parse()
        .map_err(|e| format!("--requests: {e}"))?;
    let connections: u64 = f
        .get("connections")
        .unwrap_or("8")
        .parse()
        .map_err(|e| format!("--connections: {e}"))?;
    if connections == 0 || requests == 0 {
        return Err("--requests and --connections must be at least 1".into());
    }
    let hbone = match f.get("hbone") {
        None => None,
        Some(dir) => {
            let identity: Identity = f
                .need("identity")?
                .parse()
                .map_err(|e| format!("--identity: {e}"))?;
            let creds = Credentials::from_mesh_dir(std::path::Path::new(dir), Some(&identity))
                .map_err(|e| format!("--hbone {dir}: {e}"))?;
            let td = creds.trust_domain.clone();
            Some(
                HboneClient::new(&creds, PeerPolicy::trust_domain(&td))
                    .map_err(|e| format!("HBONE client: {e}"))?,
            )
        }
    };
    let plan = LoadPlan {
        addr,
        targets: Arc::new(targets),
        requests,
        connections,
        hbone,
        check: f.has("check"),
    };
    // One thread: the client must cost little next to the Envoy it measures, and on a small
    // machine a second client thread would compete with that Envoy for a core.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let result = rt.block_on(run_load(plan))?;
    println!("{result}");
    Ok(())
}

/// What one connection did.
#[derive(Default)]
struct ConnStats {
    latencies_us: Vec<u32>,
    errors: u64,
}

async fn run_load(plan: LoadPlan) -> Result<Value, String> {
    let plan = Arc::new(plan);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..plan.connections {
        let n = plan.requests / plan.connections + u64::from(c < plan.requests % plan.connections);
        // Each connection starts at another place in the list, so together they cover it evenly.
        let first = (c as usize * plan.targets.len()) / plan.connections as usize;
        let plan = plan.clone();
        tasks.push(tokio::spawn(
            async move { connection(&plan, n, first).await },
        ));
    }
    let mut all = ConnStats::default();
    for t in tasks {
        let s = t
            .await
            .map_err(|e| format!("a connection task failed: {e}"))??;
        all.latencies_us.extend(s.latencies_us);
        all.errors += s.errors;
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut lat = all.latencies_us;
    lat.sort_unstable();
    Ok(json!({
        "requests": plan.requests,
        "errors": all.errors,
        "seconds": seconds,
        "req_per_s": plan.requests as f64 / seconds,
        "p50_us": percentile(&lat, 50.0),
        "p90_us": percentile(&lat, 90.0),
        "p99_us": percentile(&lat, 99.0),
        "max_us": lat.last().copied().unwrap_or(0),
    }))
}

/// An HTTP/1.1 connection: the plain listener's TCP connection, or one tunnel per authority.
struct Senders {
    /// (authority, sender); plain mode holds one entry with an empty authority.
    open: Vec<(String, SendRequest<Empty<Bytes>>)>,
}

async fn http1(
    io: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    what: &str,
) -> Result<SendRequest<Empty<Bytes>>, String> {
    let (send, driver) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP/1.1 handshake ({what}): {e}"))?;
    tokio::spawn(driver);
    Ok(send)
}

async fn connection(plan: &LoadPlan, n: u64, first: usize) -> Result<ConnStats, String> {
    let mut stats = ConnStats {
        latencies_us: Vec::with_capacity(n as usize),
        errors: 0,
    };
    let mut senders = Senders { open: Vec::new() };
    let hbone = match &plan.hbone {
        Some(client) => Some(
            client
                .connect(plan.addr)
                .await
                .map_err(|e| format!("HBONE to {}: {e}", plan.addr))?,
        ),
        None => {
            let tcp = tokio::net::TcpStream::connect(plan.addr)
                .await
                .map_err(|e| format!("connecting to {}: {e}", plan.addr))?;
            tcp.set_nodelay(true)
                .map_err(|e| format!("{}: {e}", plan.addr))?;
            senders
                .open
                .push((String::new(), http1(tcp, "plain").await?));
            None
        }
    };
    let count = plan.targets.len();
    for i in 0..n as usize {
        let t = &plan.targets[(first + i) % count];
        let key = if hbone.is_some() {
            t.authority.as_str()
        } else {
            ""
        };
        let slot = match senders.open.iter().position(|(a, _)| a == key) {
            Some(slot) => slot,
            None => {
                let conn = hbone.as_ref().ok_or("no HBONE connection")?;
                let stream = conn
                    .connect(key, &ConnectHeaders::default())
                    .await
                    .map_err(|e| format!("CONNECT {key}: {e}"))?;
                senders
                    .open
                    .push((key.to_string(), http1(stream, key).await?));
                senders.open.len() - 1
            }
        };
        let send = &mut senders.open[slot].1;
        let mut req = http::Request::builder()
            .uri(t.path.as_str())
            .header(http::header::HOST, t.host.as_str());
        for (name, value) in &t.headers {
            req = req.header(name.as_str(), value.as_str());
        }
        let req = req
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("request {}: {e}", t.path))?;
        let started = Instant::now();
        let resp = tokio::time::timeout(REQUEST_TIMEOUT, async {
            send.ready().await?;
            let resp = send.send_request(req).await?;
            let status = resp.status();
            resp.into_body().collect().await?;
            Ok::<_, hyper::Error>(status)
        })
        .await
        .map_err(|_| {
            format!(
                "{} {}: no answer within {REQUEST_TIMEOUT:?}",
                t.host, t.path
            )
        })?
        .map_err(|e| format!("{} {}: {e}", t.host, t.path))?;
        let took = started.elapsed().as_micros();
        stats
            .latencies_us
            .push(u32::try_from(took).unwrap_or(u32::MAX));
        if resp != http::StatusCode::OK {
            if plan.check {
                return Err(format!(
                    "{} {}{}: answered {resp}, expected 200",
                    t.host,
                    t.path,
                    if key.is_empty() {
                        String::new()
                    } else {
                        format!(" (CONNECT {key})")
                    }
                ));
            }
            stats.errors += 1;
        }
    }
    Ok(stats)
}

fn ceiling_cmd(args: &[String]) -> Result<(), String> {
    let f = Flags::parse(args, &[])?;
    let input = PathBuf::from(f.need("in")?);
    let output = PathBuf::from(f.need("out")?);
    let cluster = f.need("cluster")?;
    let text = std::fs::read_to_string(&input).map_err(|e| format!("{}: {e}", input.display()))?;
    let mut config: Value = serde_yaml_ng::from_str(&text)
        .map_err(|e| format!("{}: not YAML: {e}", input.display()))?;
    let changed = layover_integration::bench::ceiling(&mut config, cluster)
        .map_err(|e| format!("{}: {e}", input.display()))?;
    if changed == 0 {
        return Err(format!(
            "{}: no HTTP connection manager to rewrite",
            input.display()
        ));
    }
    let out = serde_json::to_string_pretty(&config).map_err(|e| e.to_string())?;
    std::fs::write(&output, out).map_err(|e| format!("{}: {e}", output.display()))?;
    Ok(())
}

/// A port flag's value.
fn port(f: &Flags, name: &str) -> Result<u16, String> {
    f.need(name)?.parse().map_err(|e| format!("--{name}: {e}"))
}

/// The waypoint's HBONE settings from a `layover certs` directory (absolute paths: Envoy reads
/// them from its own working directory).
fn hbone_settings(dir: &std::path::Path, port: u16, upstream_port: u16) -> Result<Hbone, String> {
    let mesh = layover_certs::MeshDir::new(dir);
    let abs = |p: PathBuf| std::fs::canonicalize(&p).map_err(|e| format!("{}: {e}", p.display()));
    Ok(Hbone {
        port,
        cert_chain: abs(mesh.waypoint().cert_chain)?,
        private_key: abs(mesh.waypoint().private_key)?,
        trusted_ca: abs(mesh.root_cert())?,
        trust_domain: mesh
            .trust_domain()
            .unwrap_or_else(|| layover_certs::DEFAULT_TRUST_DOMAIN.to_string()),
        upstream_port,
    })
}

fn istiod_cmd(args: &[String]) -> Result<(), String> {
    let f = Flags::parse(args, &[])?;
    let input = PathBuf::from(f.need("config")?);
    let output = PathBuf::from(f.need("out")?);
    let wasm = f.get("wasm").map(PathBuf::from);
    let build = IstiodBuild::parse(f.need("build")?, wasm.as_deref())?;
    let hbone = hbone_settings(
        std::path::Path::new(f.need("certs")?),
        port(&f, "hbone-port")?,
        port(&f, "ztunnel-port")?,
    )?;
    let yaml = std::fs::read_to_string(&input).map_err(|e| format!("{}: {e}", input.display()))?;
    let config = istiod_bootstrap(&yaml, &build, hbone, port(&f, "admin-port")?)
        .map_err(|e| format!("{}: {e}", input.display()))?;
    std::fs::write(&output, config).map_err(|e| format!("{}: {e}", output.display()))?;
    Ok(())
}

fn ztunnel_cmd(args: &[String]) -> Result<(), String> {
    let f = Flags::parse(args, &[])?;
    let identity: Identity = f
        .need("identity")?
        .parse()
        .map_err(|e| format!("--identity: {e}"))?;
    let dir = std::path::Path::new(f.need("certs")?);
    let creds = Credentials::from_mesh_dir(dir, Some(&identity))
        .map_err(|e| format!("--certs {}: {e}", dir.display()))?;
    let td = creds.trust_domain.clone();
    let addr = SocketAddr::from(([127, 0, 0, 1], port(&f, "port")?));
    // One thread, as the load generator: it shares the machine with the Envoy it serves.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    rt.block_on(async {
        let server = HboneServer::new(&creds, PeerPolicy::trust_domain(&td))
            .map_err(|e| format!("HBONE server: {e}"))?
            .bind(addr)
            .await
            .map_err(|e| format!("listening on {addr}: {e}"))?;
        server.wait().await;
        Err::<(), String>(format!("the HBONE server on {addr} stopped"))
    })
}
