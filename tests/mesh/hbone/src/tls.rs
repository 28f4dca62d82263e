//! Mesh mTLS: workload credentials, SPIFFE ids and the certificate verifiers both ends use.

use std::path::Path;
use std::sync::Arc;

use layover_certs::{Identity, MeshDir, DEFAULT_TRUST_DOMAIN};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

use crate::HboneError;

/// A SPIFFE id of a mesh workload: `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SpiffeId {
    /// The trust domain.
    pub trust_domain: String,
    /// Namespace and service account.
    pub identity: Identity,
}

impl SpiffeId {
    /// Parses `spiffe://<td>/ns/<ns>/sa/<sa>`; `None` for anything else.
    pub fn parse(uri: &str) -> Option<SpiffeId> {
        let rest = uri.strip_prefix("spiffe://")?;
        let mut parts = rest.split('/');
        let td = parts.next()?;
        let (ns_kw, ns, sa_kw, sa) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || ns_kw != "ns" || sa_kw != "sa" {
            return None;
        }
        if td.is_empty() || ns.is_empty() || sa.is_empty() {
            return None;
        }
        Some(SpiffeId {
            trust_domain: td.to_string(),
            identity: Identity {
                namespace: ns.to_string(),
                service_account: sa.to_string(),
            },
        })
    }

    /// The principal AuthorizationPolicies match (the id without `spiffe://`).
    pub fn principal(&self) -> String {
        self.identity.principal(&self.trust_domain)
    }
}

impl std::fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.identity.spiffe_id(&self.trust_domain))
    }
}

/// Which peers are accepted: a trust domain, and optionally only some identities in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerPolicy {
    /// The peer's SPIFFE id must be in this trust domain.
    pub trust_domain: String,
    /// When not empty, the peer must be one of these identities.
    pub allowed: Vec<Identity>,
}

impl PeerPolicy {
    /// Any identity of `trust_domain`.
    pub fn trust_domain(trust_domain: &str) -> PeerPolicy {
        PeerPolicy {
            trust_domain: trust_domain.to_string(),
            allowed: Vec::new(),
        }
    }

    /// Only `identity` in `trust_domain`.
    pub fn exactly(trust_domain: &str, identity: Identity) -> PeerPolicy {
        PeerPolicy {
            trust_domain: trust_domain.to_string(),
            allowed: vec![identity],
        }
    }

    /// The accepted SPIFFE id among a certificate's URI SANs, or why there is none.
    pub(crate) fn check(&self, cert: &CertificateDer<'_>) -> Result<SpiffeId, String> {
        let uris = uri_sans(cert).ok_or("certificate cannot be parsed for URI SANs")?;
        let ids: Vec<SpiffeId> = uris.iter().filter_map(|u| SpiffeId::parse(u)).collect();
        if ids.is_empty() {
            return Err(format!("no SPIFFE id among URI SANs {uris:?}"));
        }
        ids.iter()
            .find(|id| {
                id.trust_domain == self.trust_domain
                    && (self.allowed.is_empty() || self.allowed.contains(&id.identity))
            })
            .cloned()
            .ok_or_else(|| {
                let allowed: Vec<String> = self
                    .allowed
                    .iter()
                    .map(|i| i.spiffe_id(&self.trust_domain))
                    .collect();
                format!(
                    "peer {uris:?} not accepted (trust domain {}, identities {allowed:?})",
                    self.trust_domain
                )
            })
    }
}

/// A workload's mesh credentials: its certificate chain and key, and the trust bundle.
pub struct Credentials {
    pub(crate) roots: Arc<RootCertStore>,
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) key: PrivateKeyDer<'static>,
    /// The trust domain the credentials belong to (from `trust-domain`, else `cluster.local`).
    pub trust_domain: String,
}

impl std::fmt::Debug for Credentials {
    // The key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("trust_domain", &self.trust_domain)
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl Clone for Credentials {
    fn clone(&self) -> Self {
        Credentials {
            roots: self.roots.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            trust_domain: self.trust_domain.clone(),
        }
    }
}

fn setup(what: &str) -> impl Fn(String) -> HboneError + '_ {
    move |e| HboneError::Setup(format!("{what}: {e}"))
}

impl Credentials {
    /// From PEM text: root certificate(s), the certificate chain (leaf first) and the key.
    pub fn from_pem(
        roots_pem: &str,
        cert_chain_pem: &str,
        key_pem: &str,
        trust_domain: &str,
    ) -> Result<Credentials, HboneError> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(roots_pem.as_bytes()) {
            let cert = cert.map_err(|e| setup("root certificate")(e.to_string()))?;
            roots
                .add(cert)
                .map_err(|e| setup("root certificate")(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(HboneError::Setup("no root certificate".into()));
        }
        let chain = CertificateDer::pem_slice_iter(cert_chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| setup("certificate chain")(e.to_string()))?;
        if chain.is_empty() {
            return Err(HboneError::Setup(
                "certificate chain: no certificate".into(),
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| setup("private key")(e.to_string()))?;
        Ok(Credentials {
            roots: Arc::new(roots),
            chain,
            key,
            trust_domain: trust_domain.to_string(),
        })
    }

    /// A certificate issued by [`layover_certs::MeshCa`], trusting `roots_pem`.
    pub fn from_issued(
        roots_pem: &str,
        cert: &layover_certs::IssuedCert,
        trust_domain: &str,
    ) -> Result<Credentials, HboneError> {
        Credentials::from_pem(roots_pem, &cert.cert_chain_pem, &cert.key_pem, trust_domain)
    }

    /// From a `layover certs` directory: `identity`'s certificate, or the waypoint's when
    /// `identity` is `None`.
    pub fn from_mesh_dir(
        dir: &Path,
        identity: Option<&Identity>,
    ) -> Result<Credentials, HboneError> {
        let mesh = MeshDir::new(dir);
        let files = match identity {
            Some(id) => mesh.workload(id),
            None => mesh.waypoint(),
        };
        let read = |p: &Path| {
            std::fs::read_to_string(p)
                .map_err(|e| HboneError::Setup(format!("{}: {e}", p.display())))
        };
        let td = mesh
            .trust_domain()
            .unwrap_or_else(|| DEFAULT_TRUST_DOMAIN.to_string());
        Credentials::from_pem(
            &read(&mesh.root_cert())?,
            &read(&files.cert_chain)?,
            &read(&files.private_key)?,
            &td,
        )
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// The client's TLS config: TLS 1.3, ALPN `h2`, no SNI, our certificate, mesh server checks.
pub(crate) fn client_config(
    creds: &Credentials,
    server: PeerPolicy,
) -> Result<rustls::ClientConfig, HboneError> {
    let provider = provider();
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| HboneError::Setup(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(MeshServerVerifier {
            roots: creds.roots.clone(),
            provider,
            policy: Some(server),
        }))
        .with_client_auth_cert(creds.chain.clone(), creds.key.clone_key())
        .map_err(|e| setup("client certificate")(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    // HBONE peers are not named by DNS: never send SNI.
    config.enable_sni = false;
    Ok(config)
}

/// The server's TLS config: TLS 1.3, ALPN `h2`, a client certificate required and checked.
pub(crate) fn server_config(
    creds: &Credentials,
    clients: PeerPolicy,
) -> Result<rustls::ServerConfig, HboneError> {
    let provider = provider();
    let inner = WebPkiClientVerifier::builder_with_provider(creds.roots.clone(), provider.clone())
        .build()
        .map_err(|e| setup("client verifier")(e.to_string()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| HboneError::Setup(e.to_string()))?
        .with_client_cert_verifier(Arc::new(MeshClientVerifier {
            inner,
            policy: clients,
        }))
        .with_single_cert(creds.chain.clone(), creds.key.clone_key())
        .map_err(|e| setup("server certificate")(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// The server certificate must chain to the mesh roots and carry an accepted SPIFFE id; DNS
/// names and IP addresses are not looked at (mesh peers are not named by DNS).
#[derive(Debug)]
struct MeshServerVerifier {
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
    /// `None`: any certificate chaining to the roots (for tests of the chain check alone).
    policy: Option<PeerPolicy>,
}

/// A rustls server-certificate verifier for mesh peers: the chain must reach `roots` (DNS
/// names and IP addresses are not looked at) and, with a `policy`, the certificate must carry
/// an accepted SPIFFE id. TLS 1.3 signatures only.
pub fn mesh_server_verifier(
    roots: Arc<RootCertStore>,
    policy: Option<PeerPolicy>,
) -> Arc<dyn ServerCertVerifier> {
    Arc::new(MeshServerVerifier {
        roots,
        provider: provider(),
        policy,
    })
}

impl ServerCertVerifier for MeshServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        if let Some(policy) = &self.policy {
            policy
                .check(end_entity)
                .map_err(|e| rustls::Error::General(format!("server identity: {e}")))?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // TLS 1.3 only; a TLS 1.2 signature is never legitimate here.
        Err(rustls::Error::General("TLS 1.2 is not allowed".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// webpki's client verification (chain to the mesh roots, required), plus the SPIFFE check.
#[derive(Debug)]
struct MeshClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    policy: PeerPolicy,
}

impl ClientCertVerifier for MeshClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)?;
        self.policy
            .check(end_entity)
            .map_err(|e| rustls::Error::General(format!("client identity: {e}")))?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The peer's accepted SPIFFE id after a handshake the verifiers let through.
pub(crate) fn peer_id(
    certs: Option<&[CertificateDer<'static>]>,
    policy: &PeerPolicy,
) -> Result<SpiffeId, HboneError> {
    let leaf = certs
        .and_then(|c| c.first())
        .ok_or_else(|| HboneError::Identity("peer presented no certificate".into()))?;
    policy.check(leaf).map_err(HboneError::Identity)
}

/// Reads one DER TLV at the start of `der`: (tag, contents, rest).
fn der_tlv(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (len_bytes, rest) = rest.split_at(n);
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, rest)
    };
    (rest.len() >= len).then(|| {
        let (body, rest) = rest.split_at(len);
        (tag, body, rest)
    })
}

/// The URI SANs of a DER certificate (RFC 5280: tbsCertificate → extensions [3] →
/// subjectAltName 2.5.29.17 → GeneralName uniformResourceIdentifier [6]). `None` when the
/// certificate cannot be parsed that far. (A dependency-free parser: webpki does not expose
/// URI SANs.)
pub fn uri_sans(cert_der: &[u8]) -> Option<Vec<String>> {
    const SAN_OID: &[u8] = &[0x55, 0x1d, 0x11];
    let (_, cert, _) = der_tlv(cert_der)?;
    let (_, mut tbs, _) = der_tlv(cert)?;
    let mut uris = Vec::new();
    while !tbs.is_empty() {
        let (tag, body, rest) = der_tlv(tbs)?;
        tbs = rest;
        // [3] EXPLICIT Extensions
        if tag != 0xa3 {
            continue;
        }
        let (_, mut exts, _) = der_tlv(body)?;
        while !exts.is_empty() {
            let (_, ext, rest) = der_tlv(exts)?;
            exts = rest;
            let (_, oid, fields) = der_tlv(ext)?;
            if oid != SAN_OID {
                continue;
            }
            // Optional `critical` BOOLEAN, then the OCTET STRING holding GeneralNames.
            let (mut tag, mut value, rest) = der_tlv(fields)?;
            if tag == 0x01 {
                (tag, value, _) = der_tlv(rest)?;
            }
            if tag != 0x04 {
                return None;
            }
            let (_, mut names, _) = der_tlv(value)?;
            while !names.is_empty() {
                let (tag, name, rest) = der_tlv(names)?;
                names = rest;
                if tag == 0x86 {
                    uris.push(String::from_utf8_lossy(name).into_owned());
                }
            }
        }
    }
    Some(uris)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn spiffe_ids_parse_only_in_the_istio_shape() {
        let id = SpiffeId::parse("spiffe://cluster.local/ns/bookinfo/sa/productpage").unwrap();
        assert_eq!(id.trust_domain, "cluster.local");
        assert_eq!(id.identity.to_string(), "bookinfo/productpage");
        assert_eq!(id.principal(), "cluster.local/ns/bookinfo/sa/productpage");
        assert_eq!(
            id.to_string(),
            "spiffe://cluster.local/ns/bookinfo/sa/productpage"
        );
        for bad in [
            "https://cluster.local/ns/a/sa/b",
            "spiffe://cluster.local/ns/a",
            "spiffe://cluster.local/ns/a/sa/b/extra",
            "spiffe://cluster.local/namespace/a/sa/b",
            "spiffe:///ns/a/sa/b",
            "spiffe://cluster.local/ns//sa/b",
        ] {
            assert_eq!(SpiffeId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn policy_checks_trust_domain_and_identities() {
        let ca = layover_certs::MeshCa::new("cluster.local").unwrap();
        let id: Identity = "bookinfo/productpage".parse().unwrap();
        let cert = ca.issue(&id).unwrap();
        let der = CertificateDer::from_pem_slice(cert.cert_chain_pem.as_bytes()).unwrap();
        assert_eq!(
            uri_sans(&der).unwrap(),
            ["spiffe://cluster.local/ns/bookinfo/sa/productpage"]
        );
        assert!(PeerPolicy::trust_domain("cluster.local")
            .check(&der)
            .is_ok());
        assert!(PeerPolicy::exactly("cluster.local", id).check(&der).is_ok());
        assert!(PeerPolicy::trust_domain("other.local").check(&der).is_err());
        let other: Identity = "bookinfo/reviews".parse().unwrap();
        assert!(PeerPolicy::exactly("cluster.local", other)
            .check(&der)
            .is_err());
    }
}
