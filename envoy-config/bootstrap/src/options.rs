//! Everything about the bootstrap that is not in the policy: the options, the upstream endpoints
//! clusters select from, the mutual TLS and HBONE settings, and their validation.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use layover_contract::{ClusterSelection, HBONE_PORT};
use serde_json::{json, Value};

use crate::error::EmitError;

/// istiod's default `MeshConfig.connectTimeout`, applied to every cluster.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One upstream endpoint (a pod or WorkloadEntry) the clusters can select.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Endpoint {
    /// IP address (v4 or v6) Envoy connects to. STATIC clusters accept only IP literals.
    pub address: String,
    /// Port Envoy connects to (the workload's target port).
    pub port: u16,
    /// Workload labels; a cluster selects the endpoint when these contain all its labels.
    pub labels: BTreeMap<String, String>,
    /// FQDN of the service the endpoint belongs to. When set, the endpoint is only selected by
    /// clusters of that service; when unset, labels alone decide.
    pub service: Option<String>,
    /// The endpoint is in the mesh (captured by ztunnel): traffic to it is re-originated as
    /// HBONE through `connect_originate` (mTLS HTTP/2 CONNECT to its port
    /// [`Hbone::upstream_port`], authority `address:port`). Needs [`BootstrapOptions::hbone`].
    /// `false` (the default): plaintext to `address:port`, for destinations outside the mesh.
    pub hbone: bool,
}

impl Endpoint {
    /// An endpoint at `address:port` with the given labels and no service restriction.
    pub fn new<I, K, V>(address: impl Into<String>, port: u16, labels: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Endpoint {
            address: address.into(),
            port,
            labels: labels
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            service: None,
            hbone: false,
        }
    }

    /// Marks the endpoint as in the mesh: reached through HBONE (see [`Endpoint::hbone`]).
    #[must_use]
    pub fn with_hbone(mut self) -> Self {
        self.hbone = true;
        self
    }

    /// Restricts the endpoint to clusters of the service `fqdn`.
    #[must_use]
    pub fn with_service(mut self, fqdn: impl Into<String>) -> Self {
        self.service = Some(fqdn.into());
        self
    }
}

/// Mutual TLS on the listener: what a waypoint gets from HBONE (a verified SPIFFE peer), without
/// the CONNECT tunnel. Clients must present a certificate that chains to `trusted_ca` and whose
/// URI SAN is a SPIFFE id in `trust_domain`; the layover filter then reads the peer principal
/// from the connection. File paths, so real mesh certificates (e.g. Istio's file-mounted
/// `cert-chain.pem` / `key.pem` / `root-cert.pem`) work as well as `layover certs` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownstreamTls {
    /// The waypoint's certificate chain (PEM, leaf first).
    pub cert_chain: PathBuf,
    /// The waypoint's private key (PEM).
    pub private_key: PathBuf,
    /// The mesh trust bundle (PEM) client certificates must chain to.
    pub trusted_ca: PathBuf,
    /// Only peers with a `spiffe://<trust_domain>/…` URI SAN are accepted.
    pub trust_domain: String,
}

/// HBONE termination: the waypoint accepts HTTP/2 CONNECT over mutual TLS from ztunnel (or any
/// mesh peer) on [`Hbone::port`], and the tunnelled HTTP gets the same layover processing as on
/// the plain listener, with the HBONE peer's SPIFFE id as the source principal and the CONNECT
/// authority as the destination.
///
/// Generated chain: listener `connect_terminate` (TLS 1.3 only, ALPN `h2`, client certificate
/// verified against `trusted_ca` with a `spiffe://<trust_domain>/` URI SAN; HTTP/2 with
/// `allow_connect`, 100 concurrent streams; `set_filter_state` with [`PEER_PRINCIPAL`],
/// [`CONNECT_AUTHORITY`], [`FORWARDED_FOR`], [`HBONE_PEER_ADDRESS`], each
/// `shared_with_upstream: ONCE`; a `connect_matcher` route that terminates the CONNECT) → cluster
/// `main_internal` (an `envoy_internal_address` endpoint over the `internal_upstream` transport
/// socket, which carries the shared filter state) → internal listener `main_internal`.
///
/// Re-origination, when some endpoint is in the mesh ([`Endpoint::hbone`]): the endpoint is an
/// `envoy_internal_address` of `connect_originate` carrying the pod `ip:port` as
/// `envoy.filters.listener.original_dst` metadata (passed by `internal_upstream`); there the
/// original-destination listener filter restores it as the local address, and `tcp_proxy`
/// tunnels to cluster `connect_originate` (ORIGINAL_DST, port overridden to
/// [`Hbone::upstream_port`], HTTP/2, mTLS with the waypoint's certificate, TLS 1.3, ALPN h2,
/// no SNI) with `tunneling_config.hostname: %DOWNSTREAM_LOCAL_ADDRESS%`.
///
/// [`PEER_PRINCIPAL`]: layover_contract::filter_state::PEER_PRINCIPAL
/// [`CONNECT_AUTHORITY`]: layover_contract::filter_state::CONNECT_AUTHORITY
/// [`FORWARDED_FOR`]: layover_contract::filter_state::FORWARDED_FOR
/// [`HBONE_PEER_ADDRESS`]: layover_contract::filter_state::HBONE_PEER_ADDRESS
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hbone {
    /// Listener port (default [`HBONE_PORT`]); 0 lets the kernel pick.
    pub port: u16,
    /// The waypoint's certificate chain (PEM, leaf first).
    pub cert_chain: PathBuf,
    /// The waypoint's private key (PEM).
    pub private_key: PathBuf,
    /// The mesh trust bundle (PEM) peer certificates must chain to.
    pub trusted_ca: PathBuf,
    /// Only peers with a `spiffe://<trust_domain>/…` URI SAN are accepted.
    pub trust_domain: String,
    /// Port in-mesh endpoints ([`Endpoint::hbone`]) accept HBONE on (default [`HBONE_PORT`]).
    pub upstream_port: u16,
}

impl Hbone {
    /// HBONE on the default port with the same certificates as `tls`.
    pub fn from_tls(tls: &DownstreamTls) -> Self {
        Hbone {
            port: HBONE_PORT,
            cert_chain: tls.cert_chain.clone(),
            private_key: tls.private_key.clone(),
            trusted_ca: tls.trusted_ca.clone(),
            trust_domain: tls.trust_domain.clone(),
            upstream_port: HBONE_PORT,
        }
    }

    /// The certificates as [`DownstreamTls`] (HBONE's listener uses the same mTLS settings).
    pub(crate) fn tls(&self) -> DownstreamTls {
        DownstreamTls {
            cert_chain: self.cert_chain.clone(),
            private_key: self.private_key.clone(),
            trusted_ca: self.trusted_ca.clone(),
            trust_domain: self.trust_domain.clone(),
        }
    }
}

/// Text format of the generated bootstrap. Envoy reads both (`-c file.yaml` / `file.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// YAML (the default; what people read).
    #[default]
    Yaml,
    /// JSON (exact, easy to post-process).
    Json,
}

/// Everything about the bootstrap that is not in the policy.
#[derive(Debug, Clone, PartialEq)]
pub struct BootstrapOptions {
    /// Admin interface port, bound on 127.0.0.1 only (the admin API can stop Envoy). 0 lets the
    /// kernel pick (read it back with `--admin-address-path`).
    pub admin_port: u16,
    /// Address the HTTP listener binds (default `127.0.0.1`).
    pub listener_address: String,
    /// Port of the HTTP listener; 0 lets the kernel pick (admin `/listeners` shows it).
    pub listener_port: u16,
    /// HCM `use_remote_address`. istiod builds waypoint connection managers with `false`: the
    /// waypoint sits behind ztunnel, and the client address arrives through HBONE, not the socket.
    pub use_remote_address: bool,
    /// HCM `xff_num_trusted_hops`; istiod leaves it at 0 for waypoints.
    pub xff_num_trusted_hops: u32,
    /// The layover HTTP filter: a complete `http_filters` entry (`{name, typed_config}` object).
    /// It is put before the router by applying the EnvoyFilter `layover manifests` emits
    /// ([`layover_envoy_filter`]); `None` leaves the base waypoint.
    ///
    /// [`layover_envoy_filter`]: crate::layover_envoy_filter
    pub layover_filter: Option<Value>,
    /// Cluster `connect_timeout` (istiod default 10s).
    pub connect_timeout: Duration,
    /// When set, an HTTP access log is written to this file (one line per request, with the
    /// response flags and the cluster), which tests read to see what Envoy did.
    pub access_log_path: Option<String>,
    /// Envoy node id (appears in logs and admin output).
    pub node_id: String,
    /// Output format.
    pub format: Format,
    /// When set, the listener requires mutual TLS (see [`DownstreamTls`]); plain HTTP otherwise.
    pub downstream_tls: Option<DownstreamTls>,
    /// How the route takes the filter's cluster choice (default: the header).
    pub cluster_selection: ClusterSelection,
    /// When set, the waypoint also terminates HBONE (see [`Hbone`]).
    pub hbone: Option<Hbone>,
    /// EnvoyFilters applied to the bootstrap after the layover one (user patches from the
    /// `--config` inputs), with Istio's semantics and ordering (see `layover_envoyfilter`).
    pub envoy_filters: Vec<layover_envoyfilter::EnvoyFilter>,
    /// The Istio release whose EnvoyFilter rules (attachment, operations) apply to
    /// `envoy_filters`.
    pub istio: layover_envoyfilter::IstioVersion,
}

impl Default for BootstrapOptions {
    fn default() -> Self {
        BootstrapOptions {
            admin_port: 15000,
            listener_address: "127.0.0.1".to_string(),
            listener_port: 15080,
            use_remote_address: false,
            xff_num_trusted_hops: 0,
            layover_filter: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            access_log_path: None,
            node_id: "layover-waypoint".to_string(),
            format: Format::Yaml,
            downstream_tls: None,
            cluster_selection: ClusterSelection::Header,
            hbone: None,
            envoy_filters: Vec::new(),
            istio: layover_envoyfilter::IstioVersion::PINNED,
        }
    }
}

/// Checks the options [`crate::bootstrap_value`] cannot generate a valid bootstrap from.
pub(crate) fn validate_options(opts: &BootstrapOptions) -> Result<(), EmitError> {
    if opts.listener_address.parse::<IpAddr>().is_err() {
        return Err(EmitError::InvalidListenerAddress(
            opts.listener_address.clone(),
        ));
    }
    // Port 0 means "any" for both, so two zeros do not clash.
    if opts.admin_port == opts.listener_port && opts.admin_port != 0 {
        return Err(EmitError::PortClash(opts.admin_port));
    }
    if let Some(filter) = &opts.layover_filter {
        let named = filter
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(|name| !name.is_empty());
        if !named {
            return Err(EmitError::InvalidFilter);
        }
    }
    if let Some(tls) = &opts.downstream_tls {
        validate_tls(tls)?;
    }
    if let Some(hbone) = &opts.hbone {
        validate_tls(&hbone.tls()).map_err(|e| match e {
            EmitError::InvalidTls(m) => EmitError::InvalidHbone(m),
            other => other,
        })?;
        if hbone.port != 0 && (hbone.port == opts.admin_port || hbone.port == opts.listener_port) {
            return Err(EmitError::PortClash(hbone.port));
        }
    }
    if opts.cluster_selection == ClusterSelection::SpecifierPlugin {
        // The plugin only selects what the dynamic-module filter wrote in metadata mode; with any
        // other filter every request would find no cluster.
        let metadata_mode = opts
            .layover_filter
            .as_ref()
            .and_then(|f| f.pointer("/typed_config/filter_config/value"))
            .and_then(Value::as_str)
            .and_then(|c| serde_json::from_str::<Value>(c).ok())
            .is_some_and(|c| c.get("cluster_selection") == Some(&json!("metadata")));
        if !metadata_mode {
            return Err(EmitError::ClusterSelectionMismatch);
        }
    }
    Ok(())
}

/// Checks certificate paths and the trust domain of a mutual TLS setting.
fn validate_tls(tls: &DownstreamTls) -> Result<(), EmitError> {
    for (field, path) in [
        ("cert_chain", &tls.cert_chain),
        ("private_key", &tls.private_key),
        ("trusted_ca", &tls.trusted_ca),
    ] {
        if path.as_os_str().is_empty() {
            return Err(EmitError::InvalidTls(format!("{field}: empty path")));
        }
    }
    // The trust domain becomes a SAN prefix: a `/` or an empty value would widen the match
    // beyond one trust domain.
    let td = &tls.trust_domain;
    if td.is_empty() || td.contains(['/', ':']) || td.chars().any(char::is_whitespace) {
        return Err(EmitError::InvalidTls(format!(
            "trust_domain `{td}` is not a trust domain name"
        )));
    }
    Ok(())
}

/// The endpoints' addresses as IPs; an endpoint with a non-IP address or port 0 is rejected.
pub(crate) fn validate_endpoints(endpoints: &[Endpoint]) -> Result<Vec<IpAddr>, EmitError> {
    endpoints
        .iter()
        .enumerate()
        .map(|(index, ep)| {
            if ep.port == 0 {
                return Err(EmitError::InvalidEndpointPort { index });
            }
            ep.address
                .parse::<IpAddr>()
                .map_err(|_| EmitError::InvalidEndpointAddress {
                    index,
                    address: ep.address.clone(),
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::path::PathBuf;

    use layover_proto::v1::{PathNormalization, Policy};
    use serde_json::json;

    use crate::hbone::MAIN_INTERNAL;
    use crate::test_support::{cluster, hbone, policy, tls};
    use crate::{bootstrap_value, BootstrapOptions, EmitError, Endpoint};

    #[test]
    fn invalid_input_is_rejected() {
        let opts = BootstrapOptions::default();
        let dup = policy(
            PathNormalization::Base,
            vec![cluster("a", "", 1, &[]), cluster("a", "", 2, &[])],
        );
        assert!(matches!(
            bootstrap_value(&dup, &[], &opts),
            Err(EmitError::DuplicateCluster { index: 1, .. })
        ));
        let empty = policy(PathNormalization::Base, vec![cluster("", "", 1, &[])]);
        assert_eq!(
            bootstrap_value(&empty, &[], &opts),
            Err(EmitError::EmptyClusterName { index: 0 })
        );
        let p = Policy::default();
        let host = Endpoint::new("reviews", 80, [("a", "b")]);
        assert!(matches!(
            bootstrap_value(&p, &[host], &opts),
            Err(EmitError::InvalidEndpointAddress { index: 0, .. })
        ));
        let clash = BootstrapOptions {
            admin_port: 8000,
            listener_port: 8000,
            ..Default::default()
        };
        assert_eq!(
            bootstrap_value(&p, &[], &clash),
            Err(EmitError::PortClash(8000))
        );
        let bad_filter = BootstrapOptions {
            layover_filter: Some(json!({"typed_config": {}})),
            ..Default::default()
        };
        assert_eq!(
            bootstrap_value(&p, &[], &bad_filter),
            Err(EmitError::InvalidFilter)
        );
    }

    #[test]
    fn downstream_tls_rejects_unusable_trust_domains_and_paths() {
        for td in ["", "a/b", "spiffe://x", "a b"] {
            let opts = BootstrapOptions {
                downstream_tls: Some(tls(td)),
                ..Default::default()
            };
            assert!(
                matches!(
                    bootstrap_value(&Policy::default(), &[], &opts),
                    Err(EmitError::InvalidTls(_))
                ),
                "{td:?}"
            );
        }
        let mut no_key = tls("cluster.local");
        no_key.private_key = PathBuf::new();
        let opts = BootstrapOptions {
            downstream_tls: Some(no_key),
            ..Default::default()
        };
        assert_eq!(
            bootstrap_value(&Policy::default(), &[], &opts),
            Err(EmitError::InvalidTls("private_key: empty path".into()))
        );
    }

    #[test]
    fn hbone_rejects_clashes_and_bad_settings() {
        let opts = BootstrapOptions {
            hbone: Some(hbone()),
            ..Default::default()
        };
        let p = policy(
            PathNormalization::Base,
            vec![cluster(MAIN_INTERNAL, "s", 80, &[])],
        );
        assert!(matches!(
            bootstrap_value(&p, &[], &opts),
            Err(EmitError::DuplicateCluster { index: 0, .. })
        ));
        let mut clash = hbone();
        clash.port = 15080;
        let opts = BootstrapOptions {
            hbone: Some(clash),
            ..Default::default()
        };
        assert_eq!(
            bootstrap_value(&Policy::default(), &[], &opts),
            Err(EmitError::PortClash(15080))
        );
        let mut bad = hbone();
        bad.trust_domain = "a/b".into();
        let opts = BootstrapOptions {
            hbone: Some(bad),
            ..Default::default()
        };
        assert!(matches!(
            bootstrap_value(&Policy::default(), &[], &opts),
            Err(EmitError::InvalidHbone(_))
        ));
    }
}
