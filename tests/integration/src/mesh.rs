//! The mesh around a waypoint under test: a mesh CA with the waypoint's certificate, and a
//! ztunnel stand-in that sends one HTTP/1.1 request through an HBONE tunnel.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use layover_bootstrap::Hbone;
use layover_certs::{write_cert, Identity, MeshCa, MeshDir};
use layover_hbone::{ConnectHeaders, Credentials, HboneClient, PeerPolicy};

use crate::{HarnessError, Launch};

/// The trust domain of every test mesh.
pub const TRUST_DOMAIN: &str = "cluster.local";

/// A mesh CA with the waypoint's certificate (`default/waypoint`) written to a temp dir, and
/// the [`Hbone`] options pointing at it (listener on a kernel-picked port, upstream HBONE on
/// 15008).
pub struct Certs {
    /// The mesh CA: issue workload identities from it.
    pub ca: MeshCa,
    /// HBONE options for the waypoint's bootstrap.
    pub hbone: Hbone,
    _dir: tempfile::TempDir,
}

fn harness(what: &'static str) -> impl Fn(String) -> HarnessError {
    move |e| HarnessError::Config(format!("{what}: {e}"))
}

impl Certs {
    /// A new CA and waypoint certificate.
    pub fn new() -> Result<Self, HarnessError> {
        let ca = MeshCa::new(TRUST_DOMAIN).map_err(|e| harness("mesh CA")(e.to_string()))?;
        let dir = tempfile::tempdir().map_err(|e| harness("temp dir")(e.to_string()))?;
        let mesh = MeshDir::new(dir.path());
        std::fs::write(mesh.root_cert(), ca.root_pem())
            .map_err(|e| harness("root cert")(e.to_string()))?;
        let id =
            Identity::new("default", "waypoint").map_err(|e| harness("identity")(e.to_string()))?;
        let waypoint = ca
            .issue(&id)
            .map_err(|e| harness("waypoint cert")(e.to_string()))?;
        write_cert(&mesh.waypoint(), &waypoint)
            .map_err(|e| harness("waypoint cert")(e.to_string()))?;
        let hbone = Hbone {
            port: Launch::ANY_PORT,
            cert_chain: mesh.waypoint().cert_chain,
            private_key: mesh.waypoint().private_key,
            trusted_ca: mesh.root_cert(),
            trust_domain: TRUST_DOMAIN.into(),
            upstream_port: layover_contract::HBONE_PORT,
        };
        Ok(Certs {
            ca,
            hbone,
            _dir: dir,
        })
    }

    /// HBONE client credentials for the workload `default/<sa>`.
    pub fn credentials(&self, sa: &str) -> Result<Credentials, HarnessError> {
        let id = Identity::new("default", sa).map_err(|e| harness("identity")(e.to_string()))?;
        let cert = self
            .ca
            .issue(&id)
            .map_err(|e| harness("workload cert")(e.to_string()))?;
        Credentials::from_issued(self.ca.root_pem(), &cert, TRUST_DOMAIN)
            .map_err(|e| harness("credentials")(e.to_string()))
    }
}

/// One CONNECT through the waypoint's HBONE listener at `addr` as `default/<sa>`, with
/// `forwarded: for=<forwarded>` when given, then one HTTP/1.1 GET inside the tunnel with `host`
/// and `headers`; returns the status and the body.
// Each argument is one thing ztunnel or the client controls; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
pub async fn tunnelled_get(
    certs: &Certs,
    addr: SocketAddr,
    sa: &str,
    connect_authority: &str,
    host: &str,
    path: &str,
    forwarded: Option<&str>,
    headers: &[(&str, &str)],
) -> Result<(u16, String), HarnessError> {
    let creds = certs.credentials(sa)?;
    let client = HboneClient::new(&creds, PeerPolicy::trust_domain(TRUST_DOMAIN))
        .map_err(|e| harness("HBONE client")(e.to_string()))?;
    let conn = client
        .connect(addr)
        .await
        .map_err(|e| harness("HBONE connect")(e.to_string()))?;
    let forwarded_for = match forwarded {
        Some(f) => Some(
            f.parse()
                .map_err(|e: std::net::AddrParseError| harness("forwarded")(e.to_string()))?,
        ),
        None => None,
    };
    let connect = ConnectHeaders {
        forwarded_for,
        ..ConnectHeaders::default()
    };
    let stream = conn
        .connect(connect_authority, &connect)
        .await
        .map_err(|e| harness("CONNECT")(e.to_string()))?;
    let (mut send, driver) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| harness("HTTP/1.1 handshake")(e.to_string()))?;
    tokio::spawn(driver);
    let mut req = http::Request::builder().uri(path).header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| harness("request")(e.to_string()))?;
    let resp = tokio::time::timeout(Duration::from_secs(20), send.send_request(req))
        .await
        .map_err(|_| harness("request")("timed out".into()))?
        .map_err(|e| harness("request")(e.to_string()))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| harness("body")(e.to_string()))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
