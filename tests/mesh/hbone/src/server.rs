//! The HBONE server: what the destination's ztunnel does with a CONNECT.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::client::{CONNECTION_WINDOW, STREAM_WINDOW};
use crate::stream::HboneStream;
use crate::tls::{peer_id, server_config, Credentials, PeerPolicy, SpiffeId};
use crate::HboneError;

/// Istio's waypoint allows 100 concurrent CONNECT streams per connection.
const MAX_CONCURRENT_STREAMS: u32 = 100;
/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// One accepted CONNECT, as the server saw it.
#[derive(Debug, Clone)]
pub struct ConnectRecord {
    /// The CONNECT `:authority`.
    pub authority: String,
    /// The client's verified SPIFFE id.
    pub peer: SpiffeId,
    /// The TLS server name the client sent (HBONE clients send none).
    pub sni: Option<String>,
    /// The CONNECT's request headers.
    pub headers: HeaderMap,
}

type Resolver = dyn Fn(&str) -> Option<SocketAddr> + Send + Sync;
type Observer = dyn Fn(&ConnectRecord) + Send + Sync;

/// An HBONE server: accepts mTLS connections from accepted peers and forwards each CONNECT's
/// bytes to a TCP target resolved from its authority.
#[derive(Clone)]
pub struct HboneServer {
    acceptor: TlsAcceptor,
    clients: PeerPolicy,
    resolver: Option<Arc<Resolver>>,
    observer: Option<Arc<Observer>>,
}

impl std::fmt::Debug for HboneServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HboneServer")
            .field("clients", &self.clients)
            .finish_non_exhaustive()
    }
}

impl HboneServer {
    /// A server presenting `creds` and accepting clients that `clients` allows. By default
    /// each CONNECT is forwarded to its authority itself (`ip:port`, or `host:port` looked up
    /// in DNS).
    pub fn new(creds: &Credentials, clients: PeerPolicy) -> Result<HboneServer, HboneError> {
        Ok(HboneServer {
            acceptor: TlsAcceptor::from(Arc::new(server_config(creds, clients.clone())?)),
            clients,
            resolver: None,
            observer: None,
        })
    }

    /// Resolves authorities with `resolve` instead (`None`: answer 503, as for no route).
    #[must_use]
    pub fn with_resolver(
        mut self,
        resolve: impl Fn(&str) -> Option<SocketAddr> + Send + Sync + 'static,
    ) -> HboneServer {
        self.resolver = Some(Arc::new(resolve));
        self
    }

    /// Forwards only the authorities in `targets`, each to its address.
    #[must_use]
    pub fn with_targets(self, targets: HashMap<String, SocketAddr>) -> HboneServer {
        self.with_resolver(move |authority| targets.get(authority).copied())
    }

    /// Calls `observe` for every accepted CONNECT (e.g. to log it).
    #[must_use]
    pub fn on_connect(mut self, observe: impl Fn(&ConnectRecord) + Send + Sync + 'static) -> Self {
        self.observer = Some(Arc::new(observe));
        self
    }

    /// Listens on `addr` (port 0: any free port) and serves in the background until the
    /// returned [`RunningServer`] is dropped.
    pub async fn bind(self, addr: SocketAddr) -> Result<RunningServer, HboneError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| HboneError::Connect { addr, source })?;
        let local_addr = listener.local_addr()?;
        let state = Arc::new(State::default());
        let task = tokio::spawn(accept_loop(self, listener, state.clone()));
        Ok(RunningServer {
            local_addr,
            state,
            task,
        })
    }
}

#[derive(Default)]
struct State {
    records: Mutex<Vec<ConnectRecord>>,
    connections: AtomicUsize,
    rejected: AtomicUsize,
}

/// A listening [`HboneServer`]; stops accepting when dropped.
pub struct RunningServer {
    local_addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for RunningServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningServer")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl RunningServer {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Every CONNECT accepted so far, in order.
    pub fn records(&self) -> Vec<ConnectRecord> {
        match self.state.records.lock() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// How many connections completed the mTLS handshake with an accepted peer.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::Relaxed)
    }

    /// How many connections failed the handshake or the peer check.
    pub fn rejected(&self) -> usize {
        self.state.rejected.load(Ordering::Relaxed)
    }

    /// Serves until the accept loop ends (it only ends if the listener fails).
    pub async fn wait(mut self) {
        let _ = (&mut self.task).await;
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(server: HboneServer, listener: TcpListener, state: Arc<State>) {
    loop {
        let (tcp, from) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Running out of descriptors and the like is transient: keep serving.
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let server = server.clone();
        let state = state.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_connection(&server, tcp, &state).await {
                eprintln!("hbone: connection from {from}: {e}");
            }
        });
    }
}

async fn serve_connection(
    server: &HboneServer,
    tcp: TcpStream,
    state: &Arc<State>,
) -> Result<(), HboneError> {
    let _ = tcp.set_nodelay(true);
    // A client that connects and never completes the handshake must not hold a task forever.
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, server.acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            state.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(HboneError::Tls(e.to_string()));
        }
        Err(_) => {
            state.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(HboneError::Tls(format!(
                "no handshake within {HANDSHAKE_TIMEOUT:?}"
            )));
        }
    };
    let peer = match peer_id(tls.get_ref().1.peer_certificates(), &server.clients) {
        Ok(peer) => peer,
        Err(e) => {
            state.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(e);
        }
    };
    let sni = tls.get_ref().1.server_name().map(str::to_string);
    state.connections.fetch_add(1, Ordering::Relaxed);
    let mut conn = h2::server::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .handshake::<_, Bytes>(tls)
        .await
        .map_err(HboneError::from_h2)?;
    while let Some(accepted) = conn.accept().await {
        let (req, respond) = match accepted {
            Ok(accepted) => accepted,
            // A client that exits without closing the connection is not worth a log line.
            Err(e) if e.get_io().is_some_and(|io| went_away(io.kind())) => return Ok(()),
            Err(e) => return Err(HboneError::from_h2(e)),
        };
        let server = server.clone();
        let state = state.clone();
        let peer = peer.clone();
        let sni = sni.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_stream(&server, req, respond, peer, sni, &state).await {
                eprintln!("hbone: stream: {e}");
            }
        });
    }
    Ok(())
}

fn reply(
    respond: &mut h2::server::SendResponse<Bytes>,
    status: StatusCode,
) -> Result<(), HboneError> {
    let mut resp = Response::new(());
    *resp.status_mut() = status;
    respond
        .send_response(resp, true)
        .map(|_| ())
        .map_err(HboneError::from_h2)
}

async fn serve_stream(
    server: &HboneServer,
    req: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    peer: SpiffeId,
    sni: Option<String>,
    state: &State,
) -> Result<(), HboneError> {
    if req.method() != Method::CONNECT {
        return reply(&mut respond, StatusCode::METHOD_NOT_ALLOWED);
    }
    let Some(authority) = req.uri().authority().map(|a| a.to_string()) else {
        return reply(&mut respond, StatusCode::BAD_REQUEST);
    };
    let record = ConnectRecord {
        authority: authority.clone(),
        peer,
        sni,
        headers: req.headers().clone(),
    };
    if let Some(observe) = &server.observer {
        observe(&record);
    }
    match state.records.lock() {
        Ok(mut r) => r.push(record),
        Err(poisoned) => poisoned.into_inner().push(record),
    }
    let target = match &server.resolver {
        Some(resolve) => resolve(&authority),
        None => tokio::net::lookup_host(authority.as_str())
            .await
            .ok()
            .and_then(|mut addrs| addrs.next()),
    };
    let Some(target) = target else {
        return reply(&mut respond, StatusCode::SERVICE_UNAVAILABLE);
    };
    let mut upstream = match TcpStream::connect(target).await {
        Ok(tcp) => tcp,
        Err(_) => return reply(&mut respond, StatusCode::SERVICE_UNAVAILABLE),
    };
    let _ = upstream.set_nodelay(true);
    let send = respond
        .send_response(Response::new(()), false)
        .map_err(HboneError::from_h2)?;
    let mut tunnel = HboneStream::new(send, req.into_body());
    // Each direction ends with its own EOF (half-close); done when both sides closed.
    match tokio::io::copy_bidirectional(&mut tunnel, &mut upstream).await {
        Ok(_) => Ok(()),
        Err(e) if went_away(e.kind()) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Whether an I/O error only says that a peer left abruptly (closed or reset mid-stream).
fn went_away(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    matches!(
        kind,
        BrokenPipe | ConnectionAborted | ConnectionReset | UnexpectedEof
    )
}
