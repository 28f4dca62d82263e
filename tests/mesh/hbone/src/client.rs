//! The HBONE client: what ztunnel does towards a waypoint.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

use crate::headers::ConnectHeaders;
use crate::stream::HboneStream;
use crate::tls::{client_config, peer_id, Credentials, PeerPolicy, SpiffeId};
use crate::HboneError;

/// Flow-control windows: HTTP/2's 64 KiB default caps a tunnel at one window per round trip,
/// far below what a loopback or datacenter link carries.
pub(crate) const STREAM_WINDOW: u32 = 4 << 20;
pub(crate) const CONNECTION_WINDOW: u32 = 16 << 20;

/// Opens HBONE connections with one workload identity; cheap to clone.
#[derive(Clone, Debug)]
pub struct HboneClient {
    config: Arc<rustls::ClientConfig>,
    server: PeerPolicy,
}

impl HboneClient {
    /// A client presenting `creds` and accepting servers that `server` allows.
    pub fn new(creds: &Credentials, server: PeerPolicy) -> Result<HboneClient, HboneError> {
        Ok(HboneClient {
            config: Arc::new(client_config(creds, server.clone())?),
            server,
        })
    }

    /// Connects to an HBONE server (a waypoint's port 15008): TCP, the mTLS handshake, and
    /// the HTTP/2 handshake. CONNECT streams are then opened with [`HboneConnection::connect`].
    pub async fn connect(&self, addr: SocketAddr) -> Result<HboneConnection, HboneError> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|source| HboneError::Connect { addr, source })?;
        // Tunnelled protocols write small frames; waiting for delayed ACKs would stall them.
        tcp.set_nodelay(true)
            .map_err(|source| HboneError::Connect { addr, source })?;
        // An IP address as server name, and SNI disabled: nothing names the server.
        let name = ServerName::IpAddress(addr.ip().into());
        let tls = TlsConnector::from(self.config.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| HboneError::Tls(e.to_string()))?;
        let (_, session) = tls.get_ref();
        if session.alpn_protocol() != Some(b"h2".as_slice()) {
            return Err(HboneError::Tls(
                "the server did not negotiate ALPN h2".into(),
            ));
        }
        let peer = peer_id(session.peer_certificates(), &self.server)?;
        let (send, conn) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .handshake::<_, Bytes>(tls)
            .await
            .map_err(HboneError::from_h2)?;
        let driver = tokio::spawn(conn);
        Ok(HboneConnection {
            send,
            peer: Arc::new(peer),
            driver: Arc::new(Driver(driver)),
        })
    }
}

/// The task driving the connection's I/O. It is not aborted with the handles: h2 closes the
/// connection (GOAWAY) by itself once every handle and every stream is gone, so streams
/// outlive the [`HboneConnection`] they were opened on.
#[derive(Debug)]
struct Driver(JoinHandle<Result<(), h2::Error>>);

/// One HBONE connection; each [`connect`](HboneConnection::connect) is a new CONNECT stream
/// multiplexed over it. Clones share the connection, which closes once the last clone and the
/// last [`HboneStream`] are dropped.
#[derive(Clone, Debug)]
pub struct HboneConnection {
    send: h2::client::SendRequest<Bytes>,
    peer: Arc<SpiffeId>,
    driver: Arc<Driver>,
}

impl HboneConnection {
    /// The server's verified SPIFFE id.
    pub fn peer(&self) -> &SpiffeId {
        &self.peer
    }

    /// Whether the connection has ended (closed by either side or failed).
    pub fn is_closed(&self) -> bool {
        self.driver.0.is_finished()
    }

    /// Sends `CONNECT <authority>` (`<service VIP or host>:<port>`) with `headers`, and on
    /// `200` returns the tunnel's byte stream.
    pub async fn connect(
        &self,
        authority: &str,
        headers: &ConnectHeaders,
    ) -> Result<HboneStream, HboneError> {
        let mut req = Request::builder()
            .method(Method::CONNECT)
            .uri(authority)
            .body(())
            .map_err(|e| HboneError::Request(format!("authority {authority:?}: {e}")))?;
        if req.uri().authority().is_none() || req.uri().path_and_query().is_some() {
            return Err(HboneError::Request(format!(
                "authority {authority:?} is not host:port"
            )));
        }
        *req.headers_mut() = headers.to_header_map()?;
        let mut send = self
            .send
            .clone()
            .ready()
            .await
            .map_err(HboneError::from_h2)?;
        let (response, stream) = send.send_request(req, false).map_err(HboneError::from_h2)?;
        let response = response.await.map_err(HboneError::from_h2)?;
        if response.status() != StatusCode::OK {
            return Err(HboneError::Status {
                authority: authority.to_string(),
                status: response.status(),
            });
        }
        Ok(HboneStream::new(stream, response.into_body()))
    }
}
