//! A small local mesh CA: a root certificate and SPIFFE workload certificates, as Istio's CA
//! would issue them, for a waypoint that terminates mTLS without a cluster (`layover certs`,
//! the demo and the integration tests share it).
//!
//! Certificates follow what istiod issues: ECDSA P-256 keys, a self-signed root with
//! `O=<trust domain>`, and workload certificates with an empty subject and a single critical
//! URI SAN `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`, usable for both
//! client and server authentication. Nothing here talks to a cluster: real mesh certificates
//! work just as well wherever these files are read (see [`MeshDir`] for the layout).

#![forbid(unsafe_code)]

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

/// The trust domain Istio uses unless MeshConfig says otherwise.
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";

/// How long the root is valid (Istio's self-signed root: 10 years).
const ROOT_VALIDITY: Duration = Duration::days(3650);
/// How long a workload certificate is valid. istiod issues 24h certificates and rotates them;
/// nothing rotates these, so they last long enough for a demo left running or a test suite.
const WORKLOAD_VALIDITY: Duration = Duration::days(365);
/// Backdating tolerates clocks that disagree slightly (the same margin Istio's CA uses).
const BACKDATE: Duration = Duration::hours(1);

/// Why certificates could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A trust domain, namespace or service account is not a valid name.
    #[error("{what} `{value}`: {why}")]
    InvalidName {
        /// Which name (trust domain, namespace, service account, identity).
        what: &'static str,
        /// The rejected value.
        value: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// rcgen could not generate a key or sign a certificate.
    #[error("generating {what}: {source}")]
    Generate {
        /// What was being generated.
        what: String,
        /// The underlying error.
        source: rcgen::Error,
    },
    /// Writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Checks a name that becomes part of a SPIFFE id and of a file path: lowercase letters,
/// digits, `-`, `.` and `_` (a superset of Kubernetes names and SPIFFE trust domains), not
/// starting with `.` so it can never be `.` or `..`.
fn check_name(what: &'static str, value: &str) -> Result<(), CertError> {
    let invalid = |why| CertError::InvalidName {
        what,
        value: value.to_string(),
        why,
    };
    if value.is_empty() {
        return Err(invalid("empty"));
    }
    if value.len() > 253 {
        return Err(invalid("longer than 253 characters"));
    }
    if value.starts_with('.') {
        return Err(invalid("starts with `.`"));
    }
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-._".contains(c);
    if !value.chars().all(allowed) {
        return Err(invalid(
            "only lowercase letters, digits, `-`, `.` and `_` are allowed",
        ));
    }
    Ok(())
}

/// A workload identity: a Kubernetes service account in a namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Identity {
    /// Namespace.
    pub namespace: String,
    /// Service account.
    pub service_account: String,
}

impl Identity {
    /// The identity `namespace/service_account`, validated.
    pub fn new(namespace: &str, service_account: &str) -> Result<Identity, CertError> {
        check_name("namespace", namespace)?;
        check_name("service account", service_account)?;
        Ok(Identity {
            namespace: namespace.to_string(),
            service_account: service_account.to_string(),
        })
    }

    /// The SPIFFE id in `trust_domain`: `spiffe://<td>/ns/<ns>/sa/<sa>`.
    pub fn spiffe_id(&self, trust_domain: &str) -> String {
        format!("spiffe://{}", self.principal(trust_domain))
    }

    /// The principal AuthorizationPolicies match: the SPIFFE id without `spiffe://`.
    pub fn principal(&self, trust_domain: &str) -> String {
        format!(
            "{trust_domain}/ns/{}/sa/{}",
            self.namespace, self.service_account
        )
    }
}

impl FromStr for Identity {
    type Err = CertError;

    /// Parses `namespace/service-account`.
    fn from_str(s: &str) -> Result<Identity, CertError> {
        let (ns, sa) = s.split_once('/').ok_or_else(|| CertError::InvalidName {
            what: "identity",
            value: s.to_string(),
            why: "expected namespace/service-account",
        })?;
        Identity::new(ns, sa)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.service_account)
    }
}

/// A certificate and its private key, both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedCert {
    /// The SPIFFE id in the certificate's URI SAN.
    pub spiffe_id: String,
    /// The certificate chain, leaf first (the root is not included: peers have it).
    pub cert_chain_pem: String,
    /// The private key (PKCS#8).
    pub key_pem: String,
}

impl fmt::Debug for IssuedCert {
    // The key stays out of logs and test failure output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCert")
            .field("spiffe_id", &self.spiffe_id)
            .finish_non_exhaustive()
    }
}

/// A mesh root CA for one trust domain, held in memory.
pub struct MeshCa {
    trust_domain: String,
    issuer: Issuer<'static, KeyPair>,
    root_pem: String,
}

impl fmt::Debug for MeshCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeshCa")
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

fn generate_err(what: impl Into<String>) -> impl FnOnce(rcgen::Error) -> CertError {
    let what = what.into();
    move |source| CertError::Generate { what, source }
}

impl MeshCa {
    /// A new root CA (fresh key) for `trust_domain`.
    pub fn new(trust_domain: &str) -> Result<MeshCa, CertError> {
        check_name("trust domain", trust_domain)?;
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        // istiod's self-signed root carries the trust domain as its organization.
        dn.push(DnType::OrganizationName, trust_domain);
        dn.push(DnType::CommonName, "layover mesh root CA");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = now - BACKDATE;
        params.not_after = now + ROOT_VALIDITY;
        let key = KeyPair::generate().map_err(generate_err("the root CA key"))?;
        let root = params
            .self_signed(&key)
            .map_err(generate_err("the root CA certificate"))?;
        Ok(MeshCa {
            trust_domain: trust_domain.to_string(),
            issuer: Issuer::new(params, key),
            root_pem: root.pem(),
        })
    }

    /// The trust domain this CA issues identities in.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The root certificate (PEM): the trust bundle peers verify against.
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// A workload certificate for `identity`.
    pub fn issue(&self, identity: &Identity) -> Result<IssuedCert, CertError> {
        self.issue_with_hosts(identity, &[])
    }

    /// A workload certificate for `identity` that also names `hosts` (DNS names or IP
    /// addresses) as SANs, so clients that check host names (curl, browsers) accept it as a
    /// server certificate. Mesh peers only look at the SPIFFE id.
    pub fn issue_with_hosts(
        &self,
        identity: &Identity,
        hosts: &[String],
    ) -> Result<IssuedCert, CertError> {
        let spiffe_id = identity.spiffe_id(&self.trust_domain);
        let what = || format!("the certificate of {spiffe_id}");
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::new(hosts.to_vec()).map_err(generate_err(what()))?;
        let uri = spiffe_id.clone().try_into().map_err(generate_err(what()))?;
        params.subject_alt_names.insert(0, SanType::URI(uri));
        // An empty subject makes rcgen mark the SAN extension critical, as in Istio's certs.
        params.distinguished_name = DistinguishedName::new();
        params.is_ca = IsCa::ExplicitNoCa;
        // ECDSA keys only sign (key encipherment is an RSA key-exchange usage).
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = now - BACKDATE;
        params.not_after = now + WORKLOAD_VALIDITY;
        let key = KeyPair::generate().map_err(generate_err(what()))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(generate_err(what()))?;
        Ok(IssuedCert {
            spiffe_id,
            cert_chain_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Where one workload's certificate files live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    /// The certificate chain (PEM, leaf first), Istio's `cert-chain.pem`.
    pub cert_chain: PathBuf,
    /// The private key (PEM), Istio's `key.pem`.
    pub private_key: PathBuf,
}

/// The layout of a certificate directory (the one Istio uses for file-mounted certs, per
/// identity):
///
/// ```text
/// <dir>/root-cert.pem                 the mesh root (trust bundle)
/// <dir>/trust-domain                  the trust domain, one line
/// <dir>/waypoint/cert-chain.pem       the waypoint's certificate and key
/// <dir>/waypoint/key.pem
/// <dir>/<ns>/<sa>/cert-chain.pem      one directory per workload identity
/// <dir>/<ns>/<sa>/key.pem
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshDir {
    dir: PathBuf,
}

impl MeshDir {
    /// The layout rooted at `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> MeshDir {
        MeshDir { dir: dir.into() }
    }

    /// The directory itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The root certificate (trust bundle).
    pub fn root_cert(&self) -> PathBuf {
        self.dir.join("root-cert.pem")
    }

    /// The file naming the trust domain.
    pub fn trust_domain_file(&self) -> PathBuf {
        self.dir.join("trust-domain")
    }

    /// The trust domain written by [`write_mesh`], if the file is there.
    pub fn trust_domain(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.trust_domain_file()).ok()?;
        let td = text.trim();
        check_name("trust domain", td).ok()?;
        Some(td.to_string())
    }

    /// The waypoint's certificate files.
    pub fn waypoint(&self) -> CertFiles {
        files_in(&self.dir.join("waypoint"))
    }

    /// A workload identity's certificate files.
    pub fn workload(&self, identity: &Identity) -> CertFiles {
        files_in(
            &self
                .dir
                .join(&identity.namespace)
                .join(&identity.service_account),
        )
    }
}

fn files_in(dir: &Path) -> CertFiles {
    CertFiles {
        cert_chain: dir.join("cert-chain.pem"),
        private_key: dir.join("key.pem"),
    }
}

/// What [`write_mesh`] generates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshSpec {
    /// Trust domain of every identity.
    pub trust_domain: String,
    /// Workload identities to issue certificates for.
    pub identities: Vec<Identity>,
    /// The waypoint's own identity (Istio: the waypoint Gateway's service account).
    pub waypoint: Identity,
    /// Extra DNS names / IP addresses in the waypoint's certificate, for local clients that
    /// check host names.
    pub waypoint_hosts: Vec<String>,
}

impl MeshSpec {
    /// The default trust domain, no workloads, the waypoint `bookinfo/waypoint` reachable as
    /// `localhost` / `127.0.0.1`.
    pub fn new(identities: Vec<Identity>) -> MeshSpec {
        MeshSpec {
            trust_domain: DEFAULT_TRUST_DOMAIN.to_string(),
            identities,
            waypoint: Identity {
                namespace: "bookinfo".into(),
                service_account: "waypoint".into(),
            },
            waypoint_hosts: vec!["localhost".into(), "127.0.0.1".into()],
        }
    }
}

/// Generates a new root CA and every certificate `spec` asks for into `dir` (created if
/// missing; existing files are replaced). Private keys are written readable by the owner only.
pub fn write_mesh(dir: &Path, spec: &MeshSpec) -> Result<MeshDir, CertError> {
    let ca = MeshCa::new(&spec.trust_domain)?;
    let layout = MeshDir::new(dir);
    write_file(&layout.root_cert(), ca.root_pem(), false)?;
    write_file(
        &layout.trust_domain_file(),
        &format!("{}\n", spec.trust_domain),
        false,
    )?;
    let waypoint = ca.issue_with_hosts(&spec.waypoint, &spec.waypoint_hosts)?;
    write_cert(&layout.waypoint(), &waypoint)?;
    for identity in &spec.identities {
        write_cert(&layout.workload(identity), &ca.issue(identity)?)?;
    }
    Ok(layout)
}

/// Writes a certificate and its key to `files`.
pub fn write_cert(files: &CertFiles, cert: &IssuedCert) -> Result<(), CertError> {
    write_file(&files.cert_chain, &cert.cert_chain_pem, false)?;
    write_file(&files.private_key, &cert.key_pem, true)
}

fn write_file(path: &Path, text: &str, secret: bool) -> Result<(), CertError> {
    let io = |source| CertError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    // Remove first so a key never inherits looser permissions from an older file.
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(path).map_err(io)?;
    std::io::Write::write_all(&mut file, text.as_bytes()).map_err(io)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn identities_parse_and_format() {
        let id: Identity = "bookinfo/bookinfo-reviews".parse().unwrap();
        assert_eq!(id.namespace, "bookinfo");
        assert_eq!(id.service_account, "bookinfo-reviews");
        assert_eq!(id.to_string(), "bookinfo/bookinfo-reviews");
        assert_eq!(
            id.spiffe_id("cluster.local"),
            "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-reviews"
        );
        assert_eq!(
            id.principal("td"),
            "td/ns/bookinfo/sa/bookinfo-reviews".to_string()
        );
        for bad in ["", "bookinfo", "a/", "/b", "a/b/c", "../x", "A/b", "a/.."] {
            assert!(bad.parse::<Identity>().is_err(), "{bad:?} was accepted");
        }
        assert!(MeshCa::new("Cluster.Local").is_err());
    }

    #[test]
    fn workload_certs_carry_only_the_spiffe_uri() {
        let ca = MeshCa::new("example.org").unwrap();
        let id = Identity::new("ns1", "sa1").unwrap();
        let cert = ca.issue(&id).unwrap();
        assert_eq!(cert.spiffe_id, "spiffe://example.org/ns/ns1/sa/sa1");
        assert!(cert
            .cert_chain_pem
            .starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(cert.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(ca.root_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        // The key never shows in debug output.
        assert!(!format!("{cert:?}").contains("PRIVATE"));
    }

    #[test]
    fn write_mesh_lays_out_files() {
        let tmp = tempfile::tempdir().unwrap();
        let spec = MeshSpec::new(vec!["bookinfo/bookinfo-productpage".parse().unwrap()]);
        let dir = write_mesh(tmp.path(), &spec).unwrap();
        assert!(dir.root_cert().is_file());
        assert_eq!(dir.trust_domain().as_deref(), Some("cluster.local"));
        assert!(dir.waypoint().cert_chain.is_file());
        let files = dir.workload(&spec.identities[0]);
        assert_eq!(
            files.cert_chain,
            tmp.path()
                .join("bookinfo/bookinfo-productpage/cert-chain.pem")
        );
        assert!(files.private_key.is_file());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&files.private_key)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "key readable by others: {mode:o}");
        }
        // Writing again replaces everything (a new CA).
        let before = std::fs::read_to_string(dir.root_cert()).unwrap();
        write_mesh(tmp.path(), &spec).unwrap();
        assert_ne!(before, std::fs::read_to_string(dir.root_cert()).unwrap());
    }
}
