//! An mTLS client standing in for a mesh workload: its client certificate carries the caller's
//! SPIFFE identity, which is how a waypoint learns who is calling (HBONE will carry the same
//! certificates inside the CONNECT tunnel).
//!
//! One TLS connection per request keeps the client simple and makes every request show the
//! handshake outcome on its own. TLS 1.3 only, no SNI (as in HBONE), HTTP/1.1 or HTTP/2 by
//! ALPN. The server's certificate must chain to the mesh root; its host name is not checked,
//! because mesh peers are not named by DNS. Like ztunnel, the client can instead require the
//! server's SPIFFE id ([`TlsClient::expecting_server`]).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::crypto::ring;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::error::HarnessError;
use crate::{Reply, TEST_TIMEOUT};

/// Why an mTLS exchange did not produce a response.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Certificates or keys could not be loaded.
    #[error("tls setup: {0}")]
    Setup(String),
    /// The TCP connection failed.
    #[error("connecting to {addr}: {source}")]
    Connect {
        /// Where.
        addr: SocketAddr,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The server refused us with a TLS alert. In TLS 1.3 the server checks the client
    /// certificate after the client finished its side of the handshake, so a rejected client
    /// certificate arrives as an alert on the first read.
    #[error("refused by the server with TLS alert {alert}")]
    Refused {
        /// The alert, e.g. `CertificateRequired`, `UnknownCA`.
        alert: String,
    },
    /// The handshake failed on our side (e.g. the server's certificate is not trusted).
    #[error("TLS handshake failed: {0}")]
    Handshake(String),
    /// The HTTP exchange failed after the handshake.
    #[error("http: {0}")]
    Http(String),
    /// No response in time.
    #[error("no response within {0:?}")]
    Timeout(Duration),
}

impl TlsError {
    /// The alert's name when the server refused the connection with a TLS alert.
    pub fn alert(&self) -> Option<&str> {
        match self {
            TlsError::Refused { alert } => Some(alert),
            _ => None,
        }
    }
}

impl From<TlsError> for HarnessError {
    fn from(e: TlsError) -> HarnessError {
        HarnessError::Http(e.to_string())
    }
}

/// The rustls error somewhere in an error's source chain (hyper and tokio-rustls wrap it in
/// `std::io::Error`s).
fn rustls_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(inner);
        }
        current = e.source();
    }
    None
}

/// Classifies an error of the TLS stream: a received alert means the server refused us.
fn classify(err: &(dyn std::error::Error + 'static), fallback: fn(String) -> TlsError) -> TlsError {
    match rustls_error(err) {
        Some(rustls::Error::AlertReceived(alert)) => TlsError::Refused {
            alert: format!("{alert:?}"),
        },
        Some(other) => TlsError::Handshake(other.to_string()),
        None => fallback(format!("{err}")),
    }
}

/// A client certificate and its key: who the client is.
#[derive(Debug)]
pub struct ClientIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for ClientIdentity {
    fn clone(&self) -> Self {
        ClientIdentity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl ClientIdentity {
    /// From PEM text: the certificate chain (leaf first) and the private key.
    pub fn from_pem(cert_chain_pem: &str, key_pem: &str) -> Result<ClientIdentity, TlsError> {
        let chain = CertificateDer::pem_slice_iter(cert_chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Setup(format!("certificate chain: {e}")))?;
        if chain.is_empty() {
            return Err(TlsError::Setup("certificate chain: no certificate".into()));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| TlsError::Setup(format!("private key: {e}")))?;
        Ok(ClientIdentity { chain, key })
    }

    /// From a certificate issued by [`layover_certs::MeshCa`].
    pub fn from_issued(cert: &layover_certs::IssuedCert) -> Result<ClientIdentity, TlsError> {
        ClientIdentity::from_pem(&cert.cert_chain_pem, &cert.key_pem)
    }

    /// From files (e.g. `layover certs` output, or a real mesh workload's certificate).
    pub fn from_files(cert_chain: &Path, private_key: &Path) -> Result<ClientIdentity, TlsError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|e| TlsError::Setup(format!("{}: {e}", p.display())))
        };
        ClientIdentity::from_pem(&read(cert_chain)?, &read(private_key)?)
    }
}

/// The URI SANs of a DER certificate (shared with the HBONE client).
pub use layover_hbone::uri_sans;

/// An mTLS HTTP client for one caller identity (or none); cheap to clone.
#[derive(Clone, Debug)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
    timeout: Duration,
}

impl TlsClient {
    /// A client trusting the mesh root(s) in `roots_pem` and presenting `identity` (`None`:
    /// no client certificate). `http2` offers only `h2` by ALPN; otherwise only `http/1.1`.
    pub fn new(
        roots_pem: &str,
        identity: Option<&ClientIdentity>,
        http2: bool,
    ) -> Result<TlsClient, TlsError> {
        TlsClient::build(roots_pem, identity, http2, None)
    }

    /// Like [`TlsClient::new`], and the server must present the SPIFFE id `server_id`
    /// (e.g. `spiffe://cluster.local/ns/bookinfo/sa/waypoint`), as ztunnel requires of a
    /// waypoint.
    pub fn expecting_server(
        roots_pem: &str,
        identity: Option<&ClientIdentity>,
        http2: bool,
        server_id: &str,
    ) -> Result<TlsClient, TlsError> {
        TlsClient::build(roots_pem, identity, http2, Some(server_id.to_string()))
    }

    fn build(
        roots_pem: &str,
        identity: Option<&ClientIdentity>,
        http2: bool,
        server_id: Option<String>,
    ) -> Result<TlsClient, TlsError> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(roots_pem.as_bytes()) {
            let cert = cert.map_err(|e| TlsError::Setup(format!("root certificate: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| TlsError::Setup(format!("root certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(TlsError::Setup("no root certificate".into()));
        }
        // The expected server is a SPIFFE id: the HBONE client's verifier checks it (and the
        // chain to the mesh roots), so both clients accept exactly the same servers.
        let policy = match server_id {
            None => None,
            Some(id) => {
                let spiffe = layover_hbone::SpiffeId::parse(&id)
                    .ok_or_else(|| TlsError::Setup(format!("{id} is not a SPIFFE id")))?;
                Some(layover_hbone::PeerPolicy::exactly(
                    &spiffe.trust_domain,
                    spiffe.identity,
                ))
            }
        };
        let builder = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Setup(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(layover_hbone::mesh_server_verifier(
                Arc::new(roots),
                policy,
            ));
        let mut config = match identity {
            Some(id) => builder
                .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
                .map_err(|e| TlsError::Setup(format!("client certificate: {e}")))?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![if http2 {
            b"h2".to_vec()
        } else {
            b"http/1.1".to_vec()
        }];
        Ok(TlsClient {
            config: Arc::new(config),
            timeout: TEST_TIMEOUT,
        })
    }

    /// Changes the per-request timeout (default [`TEST_TIMEOUT`]).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// `GET path` on `addr` with `Host: <authority>`.
    pub async fn get(
        &self,
        addr: SocketAddr,
        authority: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Reply, TlsError> {
        self.request(addr, Method::GET, authority, path, headers, Bytes::new())
            .await
    }

    /// Sends one request over a new mTLS connection to `addr` and reads the whole response.
    pub async fn request(
        &self,
        addr: SocketAddr,
        method: Method,
        authority: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Reply, TlsError> {
        let body = body.into();
        match tokio::time::timeout(
            self.timeout,
            self.exchange(addr, method, authority, path, headers, body),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(TlsError::Timeout(self.timeout)),
        }
    }

    async fn exchange(
        &self,
        addr: SocketAddr,
        method: Method,
        authority: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Reply, TlsError> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|source| TlsError::Connect { addr, source })?;
        // Without it, a request written in two pieces waits for a delayed ACK (~40 ms).
        tcp.set_nodelay(true)
            .map_err(|source| TlsError::Connect { addr, source })?;
        // An IP address as server name: rustls then sends no SNI, as HBONE clients do.
        let name = ServerName::IpAddress(addr.ip().into());
        let tls = TlsConnector::from(self.config.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| classify(&e, TlsError::Handshake))?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());

        let mut builder = Request::builder().method(method).uri(path);
        if h2 {
            builder = builder
                .version(Version::HTTP_2)
                .uri(format!("https://{authority}{path}"));
        } else {
            builder = builder.header(http::header::HOST, authority);
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let req = builder
            .body(Full::new(body))
            .map_err(|e| TlsError::Http(format!("building the request: {e}")))?;

        let io = TokioIo::new(tls);
        let resp = if h2 {
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(|e| classify(&e, TlsError::Http))?;
            let driver = tokio::spawn(conn);
            let resp = sender.send_request(req).await;
            finish(resp, driver).await
        } else {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|e| classify(&e, TlsError::Http))?;
            let driver = tokio::spawn(conn);
            let resp = sender.send_request(req).await;
            finish(resp, driver).await
        };
        resp
    }
}

/// Reads the response, or explains why there is none. When the connection fails, the request
/// only learns "canceled"; the connection task holds the cause (e.g. the server's TLS alert).
async fn finish(
    resp: Result<http::Response<hyper::body::Incoming>, hyper::Error>,
    driver: tokio::task::JoinHandle<Result<(), hyper::Error>>,
) -> Result<Reply, TlsError> {
    match resp {
        Ok(resp) => {
            let reply = read_reply(resp).await;
            driver.abort();
            reply
        }
        Err(e) => match driver.await {
            Ok(Err(conn_err)) => Err(classify(&conn_err, TlsError::Http)),
            _ => Err(classify(&e, TlsError::Http)),
        },
    }
}

async fn read_reply(resp: http::Response<hyper::body::Incoming>) -> Result<Reply, TlsError> {
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| classify(&e, TlsError::Http))?
        .to_bytes();
    Ok(Reply {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body,
    })
}
