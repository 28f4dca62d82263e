//! `layover hbone`: HBONE as ztunnel speaks it, from the command line.
//!
//! - `layover hbone curl --waypoint 127.0.0.1:15008 --certs <dir> --identity ns/sa
//!   --authority <host:port> [--http2] [-X METHOD] [-H 'k: v']… [-d BODY] <path-or-url>`: one
//!   HTTP request through a CONNECT tunnel; prints the status line, headers and body.
//! - `layover hbone serve --listen 127.0.0.1:15009 --certs <dir> [--identity ns/sa]
//!   [--allow ns/sa]… [--target authority=ip:port]…`: an HBONE server forwarding each CONNECT
//!   to its authority (or the `--target` given for it); logs every CONNECT to stderr.
//!
//! `<dir>` is a `layover certs` directory: root, trust domain and per-identity certificates.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Uri, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use layover_certs::Identity;
use layover_hbone::{
    new_traceparent, Baggage, ConnectHeaders, Credentials, HboneClient, HboneServer, PeerPolicy,
    HBONE_PORT,
};

/// Arguments of `layover hbone`.
#[derive(Debug, Clone, clap::Args)]
pub struct HboneArgs {
    #[command(subcommand)]
    cmd: HboneCmd,
}

#[derive(Debug, Clone, clap::Subcommand)]
enum HboneCmd {
    /// Send one HTTP request through an HBONE CONNECT tunnel (as ztunnel would).
    Curl(CurlArgs),
    /// Accept HBONE connections and forward each CONNECT to its authority.
    Serve(ServeArgs),
}

/// Arguments of `layover hbone curl`.
#[derive(Debug, Clone, clap::Args)]
struct CurlArgs {
    /// The waypoint's HBONE address.
    #[arg(long, default_value_t = SocketAddr::from(([127, 0, 0, 1], HBONE_PORT)))]
    waypoint: SocketAddr,
    /// A `layover certs` directory.
    #[arg(long)]
    certs: PathBuf,
    /// The calling workload (`namespace/service-account`): whose certificate to present.
    #[arg(long, value_name = "NS/SA")]
    identity: Identity,
    /// The CONNECT target: `<service VIP or host>:<port>`.
    #[arg(long)]
    authority: String,
    /// Require exactly this server identity (default: any identity of the trust domain).
    #[arg(long, value_name = "NS/SA")]
    expect_server: Option<Identity>,
    /// Add `forwarded: for="<ip:port>"` to the CONNECT.
    #[arg(long, value_name = "IP:PORT")]
    forwarded_for: Option<SocketAddr>,
    /// Speak HTTP/2 (prior knowledge) inside the tunnel instead of HTTP/1.1.
    #[arg(long)]
    http2: bool,
    /// The request method.
    #[arg(short = 'X', long = "request", default_value = "GET")]
    method: String,
    /// A request header `name: value`; repeat for several.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// The request body.
    #[arg(short = 'd', long = "data")]
    data: Option<String>,
    /// A path (`/productpage`) or a URL whose host becomes the Host header.
    target: String,
}

/// Arguments of `layover hbone serve`.
#[derive(Debug, Clone, clap::Args)]
struct ServeArgs {
    /// Where to listen.
    #[arg(long, default_value_t = SocketAddr::from(([127, 0, 0, 1], HBONE_PORT)))]
    listen: SocketAddr,
    /// A `layover certs` directory.
    #[arg(long)]
    certs: PathBuf,
    /// The server's identity (`namespace/service-account`); default: the waypoint's.
    #[arg(long, value_name = "NS/SA")]
    identity: Option<Identity>,
    /// Accept only these client identities (default: any of the trust domain); repeatable.
    #[arg(long = "allow", value_name = "NS/SA")]
    allow: Vec<Identity>,
    /// Forward CONNECTs for `authority` to `ip:port` (`authority=ip:port`); when any is given,
    /// other authorities are answered 503. Repeatable.
    #[arg(long = "target", value_name = "AUTHORITY=IP:PORT")]
    targets: Vec<String>,
}

/// Runs `layover hbone`.
pub fn run(args: HboneArgs) -> Result<ExitCode, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    match args.cmd {
        HboneCmd::Curl(a) => rt.block_on(curl(a)),
        HboneCmd::Serve(a) => rt.block_on(serve(a)),
    }
}

fn parse_header(h: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = h
        .split_once(':')
        .ok_or_else(|| format!("header {h:?}: expected `name: value`"))?;
    let name =
        HeaderName::from_bytes(name.trim().as_bytes()).map_err(|e| format!("header {h:?}: {e}"))?;
    let value = HeaderValue::from_str(value.trim()).map_err(|e| format!("header {h:?}: {e}"))?;
    Ok((name, value))
}

async fn curl(a: CurlArgs) -> Result<ExitCode, String> {
    let creds =
        Credentials::from_mesh_dir(&a.certs, Some(&a.identity)).map_err(|e| e.to_string())?;
    let td = creds.trust_domain.clone();
    let policy = match &a.expect_server {
        Some(id) => PeerPolicy::exactly(&td, id.clone()),
        None => PeerPolicy::trust_domain(&td),
    };
    let client = HboneClient::new(&creds, policy).map_err(|e| e.to_string())?;
    let conn = client
        .connect(a.waypoint)
        .await
        .map_err(|e| e.to_string())?;
    eprintln!("* HBONE to {} (server {})", a.waypoint, conn.peer());
    let headers = ConnectHeaders {
        forwarded_for: a.forwarded_for,
        forwarded_host: None,
        baggage: Some(Baggage {
            namespace: Some(a.identity.namespace.clone()),
            ..Baggage::default()
        }),
        traceparent: Some(new_traceparent().map_err(|e| e.to_string())?),
        extra: Vec::new(),
    };
    let stream = conn
        .connect(&a.authority, &headers)
        .await
        .map_err(|e| e.to_string())?;
    eprintln!("* CONNECT {} established", a.authority);

    // A URL names the host; a bare path is sent to the CONNECT authority.
    let uri: Uri = a
        .target
        .parse()
        .map_err(|e| format!("{:?}: {e}", a.target))?;
    let host = uri
        .authority()
        .map(|h| h.to_string())
        .unwrap_or_else(|| a.authority.clone());
    let path = uri
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_else(|| "/".into());
    let method =
        Method::from_bytes(a.method.as_bytes()).map_err(|e| format!("{:?}: {e}", a.method))?;
    let mut builder = Request::builder().method(method);
    builder = if a.http2 {
        builder
            .version(Version::HTTP_2)
            .uri(format!("http://{host}{path}"))
    } else {
        builder.uri(path).header(http::header::HOST, &host)
    };
    for h in &a.headers {
        let (name, value) = parse_header(h)?;
        builder = builder.header(name, value);
    }
    let body = Bytes::from(a.data.clone().unwrap_or_default());
    let req = builder
        .body(Full::new(body))
        .map_err(|e| format!("building the request: {e}"))?;

    let io = TokioIo::new(stream);
    let resp = if a.http2 {
        let (mut sender, driver) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| format!("http/2 inside the tunnel: {e}"))?;
        tokio::spawn(driver);
        sender.send_request(req).await
    } else {
        let (mut sender, driver) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| format!("http/1.1 inside the tunnel: {e}"))?;
        tokio::spawn(driver);
        sender.send_request(req).await
    }
    .map_err(|e| format!("request: {e}"))?;

    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("response body: {e}"))?
        .to_bytes();
    let mut out = std::io::stdout().lock();
    let mut print = || -> std::io::Result<()> {
        writeln!(out, "{:?} {}", parts.version, parts.status)?;
        for (name, value) in &parts.headers {
            writeln!(out, "{name}: {}", String::from_utf8_lossy(value.as_bytes()))?;
        }
        writeln!(out)?;
        out.write_all(&body)?;
        out.flush()
    };
    print().map_err(|e| format!("writing to stdout: {e}"))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(a: ServeArgs) -> Result<ExitCode, String> {
    let creds =
        Credentials::from_mesh_dir(&a.certs, a.identity.as_ref()).map_err(|e| e.to_string())?;
    let policy = PeerPolicy {
        trust_domain: creds.trust_domain.clone(),
        allowed: a.allow.clone(),
    };
    let mut server = HboneServer::new(&creds, policy).map_err(|e| e.to_string())?;
    if !a.targets.is_empty() {
        let mut map = HashMap::new();
        for t in &a.targets {
            let (authority, addr) = t
                .split_once('=')
                .ok_or_else(|| format!("--target {t:?}: expected authority=ip:port"))?;
            let addr: SocketAddr = addr.parse().map_err(|e| format!("--target {t:?}: {e}"))?;
            map.insert(authority.to_string(), addr);
        }
        server = server.with_targets(map);
    }
    let server = server.on_connect(|r| {
        eprintln!("hbone: CONNECT {} from {}", r.authority, r.peer);
    });
    let running = server.bind(a.listen).await.map_err(|e| e.to_string())?;
    eprintln!(
        "hbone: listening on {} as {}",
        running.local_addr(),
        a.identity
            .as_ref()
            .map(|i| i.to_string())
            .unwrap_or_else(|| "the waypoint".into())
    );
    running.wait().await;
    Ok(ExitCode::FAILURE)
}
