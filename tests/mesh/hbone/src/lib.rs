//! HBONE — HTTP/2 CONNECT over mutual TLS, the tunnel ztunnel speaks to a waypoint — as a
//! client ([`HboneClient`], playing ztunnel) and a server ([`HboneServer`], playing the
//! destination's ztunnel), for tests and for `layover hbone`.
//!
//! Both ends use TLS 1.3 with ALPN `h2` and no SNI, present SPIFFE workload certificates
//! (`layover certs`) and accept the peer only when its chain verifies against the mesh root
//! and its SPIFFE id is in the trust domain (optionally one of some identities). Each CONNECT
//! is a stream of one shared HTTP/2 connection; its bytes are an [`HboneStream`], on which
//! callers run HTTP/1.1, HTTP/2 or anything else.

#![forbid(unsafe_code)]

mod client;
mod headers;
mod server;
mod stream;
mod tls;

use std::net::SocketAddr;

pub use client::{HboneClient, HboneConnection};
pub use headers::{new_traceparent, Baggage, ConnectHeaders};
pub use server::{ConnectRecord, HboneServer, RunningServer};
pub use stream::HboneStream;
pub use tls::{mesh_server_verifier, uri_sans, Credentials, PeerPolicy, SpiffeId};

/// HBONE's port on every mesh workload and waypoint (defined by `layover-contract`).
pub use layover_contract::HBONE_PORT;

/// Why an HBONE connection or CONNECT failed.
#[derive(Debug, thiserror::Error)]
pub enum HboneError {
    /// Certificates, keys or settings could not be used.
    #[error("setup: {0}")]
    Setup(String),
    /// The TCP connection failed.
    #[error("connecting to {addr}: {source}")]
    Connect {
        /// Where.
        addr: SocketAddr,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The TLS handshake failed or the peer refused us with an alert.
    #[error("TLS: {0}")]
    Tls(String),
    /// The peer's certificate names no acceptable identity.
    #[error("peer identity: {0}")]
    Identity(String),
    /// The HTTP/2 layer failed (in TLS 1.3 a rejected client certificate shows up here, as
    /// an alert on the first read after the handshake).
    #[error("http/2: {0}")]
    H2(String),
    /// The CONNECT was answered with a status other than 200.
    #[error("CONNECT {authority} answered {status}")]
    Status {
        /// The CONNECT authority.
        authority: String,
        /// The status.
        status: http::StatusCode,
    },
    /// A header or authority is not valid HTTP.
    #[error("invalid request: {0}")]
    Request(String),
    /// An I/O error.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl HboneError {
    /// An h2 error, with the TLS error inside it when there is one (a TLS alert is how the
    /// server refuses a client certificate in TLS 1.3).
    pub(crate) fn from_h2(e: h2::Error) -> HboneError {
        let mut current: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(err) = current {
            if let Some(tls) = err.downcast_ref::<rustls::Error>() {
                return HboneError::Tls(tls.to_string());
            }
            if let Some(tls) = err
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            {
                return HboneError::Tls(tls.to_string());
            }
            current = err.source();
        }
        HboneError::H2(e.to_string())
    }
}
