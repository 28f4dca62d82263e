//! Envoy bootstrap generator for a layover waypoint.
//!
//! [`bootstrap`] turns a compiled [`Policy`] plus a list of [`Endpoint`]s into a complete, static
//! Envoy bootstrap: an admin interface, one plain-HTTP listener whose connection manager is set up
//! the way istiod sets up a waypoint's (path normalization from MeshConfig, no default route
//! timeout), a slot for the layover HTTP filter in front of the router, and one STATIC cluster per
//! policy cluster. Routing is delegated to the filter: the only route reads the cluster name from
//! the `x-layover-cluster` request header ([`CLUSTER_HEADER`]).
//!
//! The listener can require mutual TLS ([`BootstrapOptions::downstream_tls`]): peers then present
//! SPIFFE certificates, which is where AuthorizationPolicy principals come from.
//!
//! With [`BootstrapOptions::hbone`] the waypoint also terminates HBONE, as Istio's own waypoint
//! does (see [`Hbone`]): listener `connect_terminate` (mTLS, HTTP/2 CONNECT on :15008) records
//! the peer identity, the CONNECT authority and the original client in filter state shared with
//! the upstream connection, and hands the tunnel's bytes to the internal listener
//! `main_internal`, whose connection manager is the plain listener's (same normalization, same
//! filters, same route). Endpoints marked in-mesh ([`Endpoint::hbone`]) are reached by
//! re-originating HBONE through the internal listener `connect_originate` (mTLS HTTP/2 CONNECT
//! to the pod's HBONE port, authority = the pod `ip:port`); all others stay plaintext.

#![forbid(unsafe_code)]

mod filter;
pub mod manifests;
pub mod native;
pub mod reload;
mod yaml;
pub use filter::{
    dynamic_module_filter, dynamic_module_filter_with, endpoints_from_registry, wasm_filter,
};
pub use yaml::to_yaml;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use layover_contract::filter_state::{
    CONNECT_AUTHORITY, DIRECT_REMOTE_ADDRESS, FORWARDED_FOR, HBONE_PEER_ADDRESS, PEER_PRINCIPAL,
};
use layover_contract::{
    ClusterSelection, CLUSTER_HEADER, DYNAMIC_MODULE_NAME, FILTER_NAME, HBONE_PORT,
};
use layover_proto::v1::{Cluster, PathNormalization, Policy};
use serde_json::{json, Map, Value};

/// Name of the plain-HTTP listener (and its connection manager's stat prefix).
pub const LISTENER_NAME: &str = "layover_http";

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

/// Name of the HBONE listener (and its connection manager's stat prefix).
pub const CONNECT_TERMINATE: &str = "connect_terminate";

/// Name of the internal listener the HBONE tunnels end in, and of the cluster pointing at it.
pub const MAIN_INTERNAL: &str = "main_internal";

/// Name of the internal listener that re-originates HBONE towards in-mesh endpoints, and of
/// the (original-destination) cluster it tunnels through.
pub const CONNECT_ORIGINATE: &str = "connect_originate";

/// Endpoint-metadata namespace the original-destination listener filter reads inside an
/// internal listener (key `local`: the address to treat as the connection's destination).
const ORIGINAL_DST_METADATA: &str = "envoy.filters.listener.original_dst";

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

    fn tls(&self) -> DownstreamTls {
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
        }
    }
}

/// Why a bootstrap could not be generated. The policy is rejected whole: a partial config would
/// route some traffic differently from what the policy says.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EmitError {
    /// `Policy.mesh.path_normalization` holds a value this build does not know.
    #[error("mesh.path_normalization: unknown value {0}")]
    UnknownPathNormalization(i32),
    /// A cluster has an empty name.
    #[error("clusters[{index}]: empty cluster name")]
    EmptyClusterName {
        /// Index in `Policy.clusters`.
        index: usize,
    },
    /// Two clusters share a name; Envoy would reject the bootstrap.
    #[error("clusters[{index}]: duplicate cluster name `{name}`")]
    DuplicateCluster {
        /// Index of the second occurrence in `Policy.clusters`.
        index: usize,
        /// The repeated name.
        name: String,
    },
    /// The load balancer name is not one this generator can express.
    #[error("clusters[{index}] `{cluster}`: unsupported load_balancer `{value}` (expected ROUND_ROBIN, LEAST_REQUEST, LEAST_CONN, RANDOM, RING_HASH, MAGLEV or empty)")]
    UnsupportedLoadBalancer {
        /// Index in `Policy.clusters`.
        index: usize,
        /// Cluster name.
        cluster: String,
        /// The rejected value.
        value: String,
    },
    /// An endpoint address is not an IP literal (STATIC clusters resolve nothing).
    #[error("endpoints[{index}]: address `{address}` is not an IP address")]
    InvalidEndpointAddress {
        /// Index in the endpoint list.
        index: usize,
        /// The rejected address.
        address: String,
    },
    /// An endpoint has port 0.
    #[error("endpoints[{index}]: port 0")]
    InvalidEndpointPort {
        /// Index in the endpoint list.
        index: usize,
    },
    /// The listener address is not an IP literal.
    #[error("listener_address `{0}` is not an IP address")]
    InvalidListenerAddress(String),
    /// Admin and listener would bind the same port.
    #[error("admin_port and listener_port are both {0}")]
    PortClash(u16),
    /// The layover filter entry is not an object with a non-empty string `name`.
    #[error("layover_filter must be an http_filters entry: an object with a string `name`")]
    InvalidFilter,
    /// `downstream_tls` has an empty path or an unusable trust domain.
    #[error("downstream_tls: {0}")]
    InvalidTls(String),
    /// `hbone` has an empty path or an unusable trust domain.
    #[error("hbone: {0}")]
    InvalidHbone(String),
    /// An endpoint is marked in-mesh (`hbone`) but the bootstrap has no HBONE settings (the
    /// waypoint's certificate) to originate HBONE with.
    #[error("endpoints[{index}]: in-mesh (HBONE) endpoint, but no hbone settings")]
    HboneEndpointWithoutHbone {
        /// Index in the endpoint list.
        index: usize,
    },
    /// `cluster_selection: SpecifierPlugin` without a dynamic-module filter in metadata mode.
    #[error("cluster_selection SpecifierPlugin needs the dynamic-module filter built by dynamic_module_filter_with(…, ClusterSelection::SpecifierPlugin)")]
    ClusterSelectionMismatch,
    /// An EnvoyFilter could not be applied (see `layover_envoyfilter::InvalidEnvoyFilter`); the
    /// message names the object and the field.
    #[error("{0}")]
    EnvoyFilter(String),
    /// Serialization failed (not expected for the values built here).
    #[error("serializing the bootstrap: {0}")]
    Serialize(String),
}

/// What istiod puts on a connection manager for one MeshConfig `pathNormalization` value.
///
/// Mirrors `buildHTTPConnectionManager` in istio/istio `pilot/pkg/networking/core/listener_builder.go`:
/// `path_with_escaped_slashes_action` starts as KEEP_UNCHANGED; NONE sets `normalize_path: false`;
/// BASE (and DEFAULT) sets `normalize_path: true`; MERGE_SLASHES adds `merge_slashes: true`;
/// DECODE_AND_MERGE_SLASHES adds `path_with_escaped_slashes_action: UNESCAPE_AND_FORWARD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HcmNormalization {
    /// HCM `normalize_path`.
    pub normalize_path: bool,
    /// HCM `merge_slashes`.
    pub merge_slashes: bool,
    /// HCM `path_with_escaped_slashes_action`.
    pub escaped_slashes_action: &'static str,
}

/// The connection-manager settings istiod derives from a path normalization mode.
pub fn hcm_normalization(mode: PathNormalization) -> HcmNormalization {
    let (normalize_path, merge_slashes, escaped_slashes_action) = match mode {
        PathNormalization::None => (false, false, "KEEP_UNCHANGED"),
        PathNormalization::Base => (true, false, "KEEP_UNCHANGED"),
        PathNormalization::MergeSlashes => (true, true, "KEEP_UNCHANGED"),
        PathNormalization::DecodeAndMergeSlashes => (true, true, "UNESCAPE_AND_FORWARD"),
    };
    HcmNormalization {
        normalize_path,
        merge_slashes,
        escaped_slashes_action,
    }
}

/// Generates the complete Envoy bootstrap for `policy`, with STATIC clusters whose endpoints are
/// picked from `endpoints` by label (and service) selection.
///
/// Clusters that select no endpoint are still emitted, so a route to them gets Envoy's own
/// `503 no healthy upstream` rather than "cluster not found".
pub fn bootstrap(
    policy: &Policy,
    endpoints: &[Endpoint],
    opts: &BootstrapOptions,
) -> Result<String, EmitError> {
    let value = bootstrap_value(policy, endpoints, opts)?;
    match opts.format {
        Format::Json => {
            serde_json::to_string_pretty(&value).map_err(|e| EmitError::Serialize(e.to_string()))
        }
        // Not serde_yaml_ng: Envoy reads YAML 1.1 booleans (`yes`, `on`) that it leaves plain.
        Format::Yaml => Ok(to_yaml(&value)),
    }
}

/// Like [`bootstrap`], but returns the bootstrap as a JSON value (for callers that patch it
/// further, e.g. to add the HBONE listeners).
pub fn bootstrap_value(
    policy: &Policy,
    endpoints: &[Endpoint],
    opts: &BootstrapOptions,
) -> Result<Value, EmitError> {
    validate_options(opts)?;
    let endpoint_ips = validate_endpoints(endpoints)?;
    if opts.hbone.is_none() {
        if let Some(index) = endpoints.iter().position(|ep| ep.hbone) {
            return Err(EmitError::HboneEndpointWithoutHbone { index });
        }
    }
    let mode = match policy.mesh.as_ref() {
        None => PathNormalization::Base,
        Some(mesh) => PathNormalization::try_from(mesh.path_normalization)
            .map_err(|_| EmitError::UnknownPathNormalization(mesh.path_normalization))?,
    };

    let mut seen = BTreeSet::new();
    if opts.hbone.is_some() {
        // The HBONE chain's own cluster: a policy cluster of that name would clash.
        seen.insert(MAIN_INTERNAL);
        seen.insert(CONNECT_ORIGINATE);
    }
    let mut clusters = Vec::with_capacity(policy.clusters.len() + 1);
    for (index, cluster) in policy.clusters.iter().enumerate() {
        if cluster.name.is_empty() {
            return Err(EmitError::EmptyClusterName { index });
        }
        if !seen.insert(cluster.name.as_str()) {
            return Err(EmitError::DuplicateCluster {
                index,
                name: cluster.name.clone(),
            });
        }
        clusters.push(cluster_json(
            index,
            cluster,
            policy,
            endpoints,
            &endpoint_ips,
            opts,
        )?);
    }

    let mut listeners = vec![listener_json(mode, opts)];
    if let Some(hbone) = &opts.hbone {
        listeners.push(connect_terminate_json(hbone, opts));
        listeners.push(main_internal_json(mode, opts));
        clusters.push(main_internal_cluster_json(opts));
        if endpoints.iter().any(|ep| ep.hbone) {
            listeners.push(connect_originate_json());
            clusters.push(connect_originate_cluster_json(hbone, opts));
        }
    }

    let mut out = json!({
        "node": { "id": opts.node_id, "cluster": "layover" },
        "admin": {
            "address": socket_address("127.0.0.1", opts.admin_port),
        },
        "static_resources": {
            "listeners": listeners,
            "clusters": clusters,
        },
        // The runtime flags istiod's bootstrap sets (pkg/bootstrap): fragments are stripped
        // rather than rejected, and RE2 programs get Istio's larger size limit.
        "layered_runtime": {
            "layers": [{
                "name": "global config",
                "static_layer": {
                    "envoy.reloadable_features.http_reject_path_with_fragment": false,
                    "re2.max_program_size.error_level": 32768,
                    "overload.global_downstream_max_connections": 2147483647,
                },
            }],
        },
    });
    if opts.hbone.is_some() {
        if let Some(obj) = out.as_object_mut() {
            obj.insert(
                "bootstrap_extensions".into(),
                json!([{
                    "name": "envoy.bootstrap.internal_listener",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.bootstrap.internal_listener.v3.InternalListener",
                    },
                }]),
            );
        }
    }
    apply_envoy_filters(&mut out, policy, opts)?;
    Ok(out)
}

/// The base bootstrap becomes a layover waypoint the way a cluster's waypoint does: by the
/// EnvoyFilter `layover manifests` emits ([`layover_envoy_filter`], for the plain listener and,
/// with HBONE, `main_internal`), applied with Istio's semantics together with the user's
/// EnvoyFilters ([`BootstrapOptions::envoy_filters`]), in Istio's priority order, all or
/// nothing.
fn apply_envoy_filters(
    out: &mut Value,
    policy: &Policy,
    opts: &BootstrapOptions,
) -> Result<(), EmitError> {
    let target = waypoint_target(policy);
    let mut filters = Vec::with_capacity(opts.envoy_filters.len() + 1);
    if let Some(filter) = &opts.layover_filter {
        let mut listeners = vec![LISTENER_NAME];
        if opts.hbone.is_some() {
            listeners.push(MAIN_INTERNAL);
        }
        let ef = layover_envoy_filter(filter, opts.cluster_selection, &listeners, &target);
        filters.push(
            layover_envoyfilter::EnvoyFilter::from_value(ef)
                .map_err(|e| EmitError::EnvoyFilter(e.to_string()))?,
        );
    }
    filters.extend(opts.envoy_filters.iter().cloned());
    if filters.is_empty() {
        return Ok(());
    }
    let ctx = layover_envoyfilter::ApplyContext::for_waypoint(&target.namespace, &target.gateway);
    layover_envoyfilter::apply(out, &filters, &ctx)
        .map_err(|e| EmitError::EnvoyFilter(e.to_string()))?;
    Ok(())
}

fn validate_options(opts: &BootstrapOptions) -> Result<(), EmitError> {
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

/// The listener's `transport_socket` for [`DownstreamTls`]: TLS 1.3 only, a client certificate
/// required and verified against the mesh root, and only SPIFFE ids of the trust domain
/// accepted (the SAN matcher istiod puts on inbound mTLS listeners).
fn downstream_tls_json(tls: &DownstreamTls) -> Value {
    json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "require_client_certificate": true,
            "common_tls_context": {
                "tls_params": {
                    "tls_minimum_protocol_version": "TLSv1_3",
                    "tls_maximum_protocol_version": "TLSv1_3",
                },
                "alpn_protocols": ["h2", "http/1.1"],
                "tls_certificates": [{
                    "certificate_chain": { "filename": tls.cert_chain.to_string_lossy() },
                    "private_key": { "filename": tls.private_key.to_string_lossy() },
                }],
                "validation_context": {
                    "trusted_ca": { "filename": tls.trusted_ca.to_string_lossy() },
                    "match_typed_subject_alt_names": [{
                        "san_type": "URI",
                        "matcher": { "prefix": format!("spiffe://{}/", tls.trust_domain) },
                    }],
                },
            },
        },
    })
}

fn validate_endpoints(endpoints: &[Endpoint]) -> Result<Vec<IpAddr>, EmitError> {
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

fn socket_address(address: &str, port: u16) -> Value {
    json!({ "socket_address": { "address": address, "port_value": port } })
}

fn duration(d: Duration) -> String {
    // Envoy's JSON mapping of google.protobuf.Duration: seconds with an "s" suffix.
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}.{:09}s", d.as_secs(), d.subsec_nanos())
    }
}

/// Name of the route configuration (and of its only virtual host and route) in every
/// connection manager that serves application traffic (the plain listener's and
/// `main_internal`'s); the EnvoyFilter layover emits selects the route by these names.
pub const ROUTE_CONFIG_NAME: &str = "layover";

/// The cluster specifier that makes the router follow the layover filter's choice.
fn cluster_specifier(selection: ClusterSelection) -> (&'static str, Value) {
    match selection {
        ClusterSelection::Header => ("cluster_header", json!(CLUSTER_HEADER)),
        ClusterSelection::SpecifierPlugin => (
            "inline_cluster_specifier_plugin",
            json!({
                "extension": {
                    "name": FILTER_NAME,
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.router.cluster_specifiers.dynamic_modules.v3.DynamicModuleClusterSpecifier",
                        "dynamic_module_config": { "name": DYNAMIC_MODULE_NAME, "do_not_close": true },
                        "specifier_name": FILTER_NAME,
                    },
                },
            }),
        ),
    }
}

/// The base waypoint's only route: everything to the cluster named by [`CLUSTER_HEADER`],
/// no timeout. Without the layover filter nothing sets the header (so requests get Envoy's
/// 503 unless a client sets it: `--filter none` debugging only).
fn route_json(selection: ClusterSelection) -> Value {
    let (key, value) = cluster_specifier(selection);
    json!({
        "name": ROUTE_CONFIG_NAME,
        "match": { "prefix": "/" },
        "route": {
            key: value,
            // Istio HTTP routes have no timeout unless the VirtualService sets one; the
            // filter sets per-request timeouts through x-envoy-upstream-rq-timeout-ms.
            "timeout": "0s",
        },
        // The header is an internal signal: the upstream must never see it, with or without
        // the layover filter (the EnvoyFilter's route merge repeats this for routes that do
        // not have it; removing a header twice is harmless).
        "request_headers_to_remove": [CLUSTER_HEADER],
    })
}

/// The `Route` fields the layover EnvoyFilter merges into the waypoint's route (HTTP_ROUTE
/// MERGE): the cluster specifier `selection` (a oneof: it replaces whatever cluster the route
/// named), the retry settings headers cannot carry, and removal of the internal header.
pub fn route_merge(selection: ClusterSelection) -> Value {
    let (key, value) = cluster_specifier(selection);
    json!({
        "route": {
            key: value,
            "timeout": "0s",
            // The filter sets attempts / retry_on / per-try timeout per request through the
            // router's x-envoy-* headers; what headers cannot carry is fixed here, as istiod
            // writes it for every HTTP route (route/retry/retry.go): retry on another host, up
            // to 5 host selection attempts. No retry_on here, so a request the filter sets no
            // retries for is never retried.
            "retry_policy": {
                "num_retries": 0,
                "retry_host_predicate": [{
                    "name": "envoy.retry_host_predicates.previous_hosts",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate",
                    },
                }],
                "host_selection_retry_max_attempts": 5,
            },
        },
        // The header is an internal signal: the upstream must not see it. Route header
        // removal runs after the cluster was chosen, so it does not affect routing.
        "request_headers_to_remove": [CLUSTER_HEADER],
    })
}

/// The `set_filter_state` HTTP filter that records the direct peer for the layover filter.
///
/// With istiod's `use_remote_address: false` Envoy rewrites the stream's remote address from
/// the client's x-forwarded-for, and proxy-wasm can only read that rewritten
/// `source.address`. AuthorizationPolicy `ipBlocks` / `source.ip` mean the direct peer
/// (istiod emits RBAC `direct_remote_ip`), so the real socket peer is put in filter state
/// ([`DIRECT_REMOTE_ADDRESS`]) before the layover filter runs; a client cannot forge it.
pub fn direct_remote_address_filter() -> Value {
    json!({
        "name": "layover.direct_remote_address",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.set_filter_state.v3.Config",
            "on_request_headers": [{
                "object_key": DIRECT_REMOTE_ADDRESS,
                "factory_key": "envoy.string",
                "format_string": {
                    "text_format_source": {
                        "inline_string": "%DOWNSTREAM_DIRECT_REMOTE_ADDRESS%",
                    },
                },
            }],
        },
    })
}

/// The EnvoyFilter that turns the base waypoint into a layover waypoint: `layover_filter` (an
/// `http_filters` entry, e.g. [`wasm_filter`] / [`dynamic_module_filter_with`]) and
/// [`direct_remote_address_filter`] inserted before the router in the connection managers of
/// `listeners`, and the route merged with [`route_merge`]`(selection)`. `layover manifests`
/// emits it; [`bootstrap_value`] applies it.
pub fn layover_envoy_filter(
    layover_filter: &Value,
    selection: ClusterSelection,
    listeners: &[&str],
    target: &layover_envoyfilter::emit::Target,
) -> Value {
    layover_envoyfilter::emit::envoy_filter(&layover_envoyfilter::emit::FilterInsertion {
        name: format!("layover-{}", target.gateway),
        target: target.clone(),
        listeners: listeners.iter().map(|l| l.to_string()).collect(),
        filters: vec![direct_remote_address_filter(), layover_filter.clone()],
        route: (
            ROUTE_CONFIG_NAME.into(),
            ROUTE_CONFIG_NAME.into(),
            ROUTE_CONFIG_NAME.into(),
        ),
        route_merge: route_merge(selection),
    })
}

/// The waypoint a policy was compiled for (`namespace/name`), or `default/waypoint`.
pub fn waypoint_target(policy: &Policy) -> layover_envoyfilter::emit::Target {
    let (namespace, gateway) = policy
        .waypoint
        .split_once('/')
        .unwrap_or(("default", "waypoint"));
    layover_envoyfilter::emit::Target {
        namespace: namespace.into(),
        gateway: gateway.into(),
    }
}

/// The connection manager of the plain listener and of `main_internal` (the same one, so a
/// request gets the same treatment inside an HBONE tunnel as on the plain listener).
fn layover_hcm_json(mode: PathNormalization, opts: &BootstrapOptions, stat_prefix: &str) -> Value {
    let norm = hcm_normalization(mode);

    // The base waypoint: the router alone. The layover filter (and the filter-state entry it
    // reads) is put in front of it by applying the EnvoyFilter `layover manifests` emits
    // (see [`bootstrap_value`]).
    let mut http_filters = Vec::with_capacity(1);
    http_filters.push(json!({
        "name": "envoy.filters.http.router",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
        },
    }));

    let route_config = json!({
        "name": ROUTE_CONFIG_NAME,
        // Cluster names come from the filter at request time; there is nothing to validate here.
        "validate_clusters": false,
        "virtual_hosts": [{
            "name": ROUTE_CONFIG_NAME,
            "domains": ["*"],
            "routes": [route_json(ClusterSelection::Header)],
        }],
    });

    let mut hcm = Map::new();
    hcm.insert(
        "@type".into(),
        json!("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"),
    );
    hcm.insert("stat_prefix".into(), json!(stat_prefix));
    hcm.insert("codec_type".into(), json!("AUTO"));
    hcm.insert("normalize_path".into(), json!(norm.normalize_path));
    hcm.insert("merge_slashes".into(), json!(norm.merge_slashes));
    hcm.insert(
        "path_with_escaped_slashes_action".into(),
        json!(norm.escaped_slashes_action),
    );
    hcm.insert("use_remote_address".into(), json!(opts.use_remote_address));
    hcm.insert(
        "xff_num_trusted_hops".into(),
        json!(opts.xff_num_trusted_hops),
    );
    // istiod disables the stream idle timeout on every HTTP connection manager.
    hcm.insert("stream_idle_timeout".into(), json!("0s"));
    // istiod allows websocket upgrades on every HTTP connection manager.
    hcm.insert(
        "upgrade_configs".into(),
        json!([{ "upgrade_type": "websocket" }]),
    );
    if let Some(path) = &opts.access_log_path {
        hcm.insert("access_log".into(), access_log(path));
    }
    hcm.insert("route_config".into(), route_config);
    hcm.insert("http_filters".into(), Value::Array(http_filters));
    json!({
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": Value::Object(hcm),
    })
}

fn listener_json(mode: PathNormalization, opts: &BootstrapOptions) -> Value {
    let mut chain = json!({
        "filters": [layover_hcm_json(mode, opts, LISTENER_NAME)],
    });
    if let (Some(tls), Some(obj)) = (&opts.downstream_tls, chain.as_object_mut()) {
        obj.insert("transport_socket".into(), downstream_tls_json(tls));
    }
    json!({
        "name": LISTENER_NAME,
        "address": socket_address(&opts.listener_address, opts.listener_port),
        "filter_chains": [chain],
    })
}

/// One `set_filter_state` entry: a string object under `key`, shared with the upstream
/// connection once (so the internal listener's connection gets it through `internal_upstream`).
///
/// The object must be *hashable* (`envoy.hashable_string`, not `envoy.string`): Envoy folds
/// hashable shared objects into the upstream connection-pool key. With plain strings a later
/// tunnel could be handed an idle `main_internal` connection that still carries an earlier
/// tunnel's peer identity and CONNECT authority — an authorization bypass and a misroute
/// (reproduced by `tests/integration/tests/hbone.rs` `tunnels_never_inherit_another_tunnels_identity_*`).
fn shared_string_state(key: &str, format: &str) -> Value {
    json!({
        "object_key": key,
        "factory_key": "envoy.hashable_string",
        "format_string": { "text_format_source": { "inline_string": format } },
        "shared_with_upstream": "ONCE",
    })
}

/// Listener `connect_terminate`: HBONE (HTTP/2 CONNECT over mTLS) in, tunnel bytes out to
/// `main_internal`.
fn connect_terminate_json(hbone: &Hbone, opts: &BootstrapOptions) -> Value {
    let mut tls = downstream_tls_json(&hbone.tls());
    // HBONE is HTTP/2 only.
    if let Some(alpn) = tls.pointer_mut("/typed_config/common_tls_context/alpn_protocols") {
        *alpn = json!(["h2"]);
    }
    let mut hcm = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": CONNECT_TERMINATE,
        "codec_type": "HTTP2",
        "http2_protocol_options": {
            "allow_connect": true,
            "max_concurrent_streams": 100,
            "connection_keepalive": { "interval": "30s", "timeout": "10s" },
        },
        "upgrade_configs": [{ "upgrade_type": "CONNECT" }],
        // Tunnels live as long as the connections inside them.
        "stream_idle_timeout": "0s",
        "use_remote_address": false,
        "http_filters": [
            {
                "name": "layover.hbone_state",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.set_filter_state.v3.Config",
                    "on_request_headers": [
                        shared_string_state(PEER_PRINCIPAL, "%DOWNSTREAM_PEER_URI_SAN%"),
                        shared_string_state(CONNECT_AUTHORITY, "%REQ(:AUTHORITY)%"),
                        shared_string_state(FORWARDED_FOR, "%REQ(FORWARDED)%"),
                        shared_string_state(HBONE_PEER_ADDRESS, "%DOWNSTREAM_DIRECT_REMOTE_ADDRESS%"),
                    ],
                },
            },
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
                },
            },
        ],
        "route_config": {
            "name": CONNECT_TERMINATE,
            "virtual_hosts": [{
                "name": CONNECT_TERMINATE,
                // Matched against the CONNECT authority, port included: any.
                "domains": ["*"],
                "routes": [{
                    "name": CONNECT_TERMINATE,
                    "match": { "connect_matcher": {} },
                    "route": {
                        "cluster": MAIN_INTERNAL,
                        // `connect_config` makes the router terminate the CONNECT (without it
                        // Envoy forwards the CONNECT request itself).
                        "upgrade_configs": [{ "upgrade_type": "CONNECT", "connect_config": {} }],
                        "timeout": "0s",
                    },
                }],
            }],
        },
    });
    if let (Some(path), Some(obj)) = (&opts.access_log_path, hcm.as_object_mut()) {
        obj.insert("access_log".into(), access_log(path));
    }
    json!({
        "name": CONNECT_TERMINATE,
        "address": socket_address(&opts.listener_address, hbone.port),
        "filter_chains": [{
            "transport_socket": tls,
            "filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": hcm,
            }],
        }],
    })
}

/// Internal listener `main_internal`: the tunnels' inner HTTP, through the layover connection
/// manager.
fn main_internal_json(mode: PathNormalization, opts: &BootstrapOptions) -> Value {
    json!({
        "name": MAIN_INTERNAL,
        "internal_listener": {},
        "filter_chains": [{
            "filters": [layover_hcm_json(mode, opts, MAIN_INTERNAL)],
        }],
    })
}

/// Cluster `main_internal`: the internal listener as its only endpoint, over the
/// `internal_upstream` transport socket (which hands the shared filter state across; without
/// it the identity does not arrive).
fn main_internal_cluster_json(opts: &BootstrapOptions) -> Value {
    json!({
        "name": MAIN_INTERNAL,
        "type": "STATIC",
        "connect_timeout": duration(opts.connect_timeout),
        "load_assignment": {
            "cluster_name": MAIN_INTERNAL,
            "endpoints": [{
                "lb_endpoints": [{
                    "endpoint": {
                        "address": { "envoy_internal_address": { "server_listener_name": MAIN_INTERNAL } },
                    },
                }],
            }],
        },
        "transport_socket": internal_upstream_json(&[]),
    })
}

/// The `internal_upstream` transport socket (raw bytes inside), passing the endpoint (host)
/// metadata of the given namespaces to the internal listener's connection. Filter state shared
/// with the upstream is always passed.
fn internal_upstream_json(host_metadata: &[&str]) -> Value {
    let mut config = json!({
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.internal_upstream.v3.InternalUpstreamTransport",
        "transport_socket": {
            "name": "envoy.transport_sockets.raw_buffer",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer",
            },
        },
    });
    if !host_metadata.is_empty() {
        if let Some(obj) = config.as_object_mut() {
            let passthrough: Vec<Value> = host_metadata
                .iter()
                .map(|name| json!({ "kind": { "host": {} }, "name": name }))
                .collect();
            obj.insert("passthrough_metadata".into(), Value::Array(passthrough));
        }
    }
    json!({
        "name": "envoy.transport_sockets.internal_upstream",
        "typed_config": config,
    })
}

/// An in-mesh endpoint, as Istio writes it: an internal address of `connect_originate` (one
/// per pod, `endpoint_id` keeps them apart), carrying the pod `ip:port` as the
/// original-destination metadata the internal listener restores as its local address.
fn hbone_endpoint_json(ep: &Endpoint, ip: IpAddr) -> Value {
    let target = std::net::SocketAddr::new(ip, ep.port).to_string();
    json!({
        "endpoint": {
            "address": {
                "envoy_internal_address": {
                    "server_listener_name": CONNECT_ORIGINATE,
                    "endpoint_id": target,
                },
            },
        },
        "metadata": {
            "filter_metadata": {
                "istio": { "workload_labels": ep.labels },
                "envoy.transport_socket_match": { "tunnel": "hbone" },
                ORIGINAL_DST_METADATA: { "local": target },
            },
        },
    })
}

/// Internal listener `connect_originate`: the destination (the pod `ip:port`, restored by the
/// original-destination listener filter from endpoint metadata) becomes the CONNECT authority
/// of an HBONE tunnel through cluster `connect_originate`.
fn connect_originate_json() -> Value {
    json!({
        "name": CONNECT_ORIGINATE,
        "internal_listener": {},
        "use_original_dst": true,
        "listener_filters": [{
            "name": "envoy.filters.listener.original_dst",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst",
            },
        }],
        "filter_chains": [{
            "filters": [{
                "name": "envoy.filters.network.tcp_proxy",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                    "stat_prefix": CONNECT_ORIGINATE,
                    "cluster": CONNECT_ORIGINATE,
                    "tunneling_config": { "hostname": "%DOWNSTREAM_LOCAL_ADDRESS%" },
                },
            }],
        }],
    })
}

/// Cluster `connect_originate`: HTTP/2 over mTLS (the waypoint's certificate, TLS 1.3, ALPN
/// h2, no SNI, the peer verified against the mesh root and trust domain) to the original
/// destination's IP on the HBONE port.
fn connect_originate_cluster_json(hbone: &Hbone, opts: &BootstrapOptions) -> Value {
    json!({
        "name": CONNECT_ORIGINATE,
        "type": "ORIGINAL_DST",
        "lb_policy": "CLUSTER_PROVIDED",
        "connect_timeout": duration(opts.connect_timeout),
        "original_dst_lb_config": { "upstream_port_override": hbone.upstream_port },
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": { "http2_protocol_options": {} },
            },
        },
        "transport_socket": {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "common_tls_context": {
                    "tls_params": {
                        "tls_minimum_protocol_version": "TLSv1_3",
                        "tls_maximum_protocol_version": "TLSv1_3",
                    },
                    "alpn_protocols": ["h2"],
                    "tls_certificates": [{
                        "certificate_chain": { "filename": hbone.cert_chain.to_string_lossy() },
                        "private_key": { "filename": hbone.private_key.to_string_lossy() },
                    }],
                    "validation_context": {
                        "trusted_ca": { "filename": hbone.trusted_ca.to_string_lossy() },
                        "match_typed_subject_alt_names": [{
                            "san_type": "URI",
                            "matcher": { "prefix": format!("spiffe://{}/", hbone.trust_domain) },
                        }],
                    },
                },
            },
        },
    })
}

fn access_log(path: &str) -> Value {
    json!([{
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": path,
            "log_format": {
                "json_format": {
                    "method": "%REQ(:METHOD)%",
                    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
                    "status": "%RESPONSE_CODE%",
                    "flags": "%RESPONSE_FLAGS%",
                    "details": "%RESPONSE_CODE_DETAILS%",
                    "cluster": "%UPSTREAM_CLUSTER%",
                    "upstream": "%UPSTREAM_HOST%",
                    "attempts": "%UPSTREAM_REQUEST_ATTEMPT_COUNT%",
                    // The verified SPIFFE id of an mTLS peer ("-" on plain HTTP).
                    "peer": "%DOWNSTREAM_PEER_URI_SAN%",
                },
            },
        },
    }])
}

/// Envoy `lb_policy` for a DestinationRule simple load balancer, as istiod's `applyLoadBalancer`
/// (istio/istio `pilot/pkg/networking/core/cluster_traffic_policy.go`) maps it: unset means
/// LEAST_REQUEST, LEAST_CONN is an alias of LEAST_REQUEST. PASSTHROUGH needs an ORIGINAL_DST
/// cluster and is not expressible with static endpoints.
fn lb_policy(value: &str) -> Option<&'static str> {
    match value {
        "" | "UNSPECIFIED" | "LEAST_REQUEST" | "LEAST_CONN" => Some("LEAST_REQUEST"),
        "ROUND_ROBIN" => Some("ROUND_ROBIN"),
        "RANDOM" => Some("RANDOM"),
        "RING_HASH" => Some("RING_HASH"),
        "MAGLEV" => Some("MAGLEV"),
        _ => None,
    }
}

/// Whether the cluster's service port speaks HTTP/2 upstream: istiod sets HTTP/2 protocol
/// options on clusters of HTTP2 / GRPC / GRPC-Web ports.
fn speaks_http2(cluster: &Cluster, policy: &Policy) -> bool {
    policy
        .services
        .iter()
        .filter(|svc| svc.hostname == cluster.service)
        .flat_map(|svc| svc.ports.iter())
        .filter(|port| port.number == cluster.port)
        .any(|port| {
            matches!(
                port.protocol.to_ascii_uppercase().as_str(),
                "HTTP2" | "GRPC" | "GRPC-WEB"
            )
        })
}

fn selects(cluster: &Cluster, ep: &Endpoint) -> bool {
    let service_ok = match (&ep.service, cluster.service.is_empty()) {
        (Some(svc), false) => *svc == cluster.service,
        _ => true,
    };
    service_ok
        && cluster
            .labels
            .iter()
            .all(|(k, v)| ep.labels.get(k) == Some(v))
}

fn cluster_json(
    index: usize,
    cluster: &Cluster,
    policy: &Policy,
    endpoints: &[Endpoint],
    endpoint_ips: &[IpAddr],
    opts: &BootstrapOptions,
) -> Result<Value, EmitError> {
    let lb =
        lb_policy(&cluster.load_balancer).ok_or_else(|| EmitError::UnsupportedLoadBalancer {
            index,
            cluster: cluster.name.clone(),
            value: cluster.load_balancer.clone(),
        })?;

    let lb_endpoints: Vec<Value> = endpoints
        .iter()
        .zip(endpoint_ips)
        .filter(|(ep, _)| selects(cluster, ep))
        .map(|(ep, ip)| {
            if ep.hbone {
                return hbone_endpoint_json(ep, *ip);
            }
            json!({
                "endpoint": { "address": socket_address(&ip.to_string(), ep.port) },
                // Istio keeps workload labels on endpoints (subset LB, telemetry); kept here so
                // the config shows why an endpoint was selected.
                "metadata": { "filter_metadata": { "istio": { "workload_labels": ep.labels } } },
            })
        })
        .collect();
    let any_hbone = endpoints.iter().any(|ep| ep.hbone && selects(cluster, ep));
    let localities = if lb_endpoints.is_empty() {
        Vec::new()
    } else {
        vec![json!({ "lb_endpoints": lb_endpoints })]
    };

    let max = u32::MAX;
    let mut out = json!({
        "name": cluster.name,
        "type": "STATIC",
        "connect_timeout": duration(opts.connect_timeout),
        "lb_policy": lb,
        // istiod's default thresholds: effectively unlimited, so the circuit breaker never
        // fails requests a DestinationRule did not ask to limit (Envoy's default max_retries
        // of 3 would).
        "circuit_breakers": {
            "thresholds": [{
                "max_connections": max,
                "max_pending_requests": max,
                "max_requests": max,
                "max_retries": max,
                "track_remaining": true,
            }],
        },
        "load_assignment": {
            "cluster_name": cluster.name,
            "endpoints": localities,
        },
    });
    if any_hbone {
        if let Some(obj) = out.as_object_mut() {
            // In-mesh endpoints are internal addresses of `connect_originate`; the
            // internal_upstream socket hands their metadata (the pod address) across. Other
            // endpoints keep the default plaintext socket.
            obj.insert(
                "transport_socket_matches".into(),
                json!([{
                    "name": "hbone",
                    "match": { "tunnel": "hbone" },
                    "transport_socket": internal_upstream_json(&[ORIGINAL_DST_METADATA]),
                }]),
            );
        }
    }
    if speaks_http2(cluster, policy) {
        if let Some(obj) = out.as_object_mut() {
            obj.insert(
                "typed_extension_protocol_options".into(),
                json!({
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        "explicit_http_config": { "http2_protocol_options": {} },
                    },
                }),
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use layover_proto::v1::{MeshSettings, Service, ServicePort};

    fn cluster(name: &str, service: &str, port: u32, labels: &[(&str, &str)]) -> Cluster {
        Cluster {
            name: name.into(),
            service: service.into(),
            port,
            subset: String::new(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            load_balancer: String::new(),
        }
    }

    fn policy(mode: PathNormalization, clusters: Vec<Cluster>) -> Policy {
        Policy {
            schema_version: 1,
            mesh: Some(MeshSettings {
                path_normalization: mode as i32,
                ..Default::default()
            }),
            clusters,
            ..Default::default()
        }
    }

    fn hcm(v: &Value) -> &Value {
        &v["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    }

    #[test]
    fn normalization_matches_istiod() {
        let cases = [
            (PathNormalization::None, false, false, "KEEP_UNCHANGED"),
            (PathNormalization::Base, true, false, "KEEP_UNCHANGED"),
            (
                PathNormalization::MergeSlashes,
                true,
                true,
                "KEEP_UNCHANGED",
            ),
            (
                PathNormalization::DecodeAndMergeSlashes,
                true,
                true,
                "UNESCAPE_AND_FORWARD",
            ),
        ];
        for (mode, normalize, merge, action) in cases {
            let v =
                bootstrap_value(&policy(mode, vec![]), &[], &BootstrapOptions::default()).unwrap();
            let h = hcm(&v);
            assert_eq!(h["normalize_path"], json!(normalize), "{mode:?}");
            assert_eq!(h["merge_slashes"], json!(merge), "{mode:?}");
            assert_eq!(
                h["path_with_escaped_slashes_action"],
                json!(action),
                "{mode:?}"
            );
        }
    }

    #[test]
    fn missing_mesh_means_base() {
        let v = bootstrap_value(&Policy::default(), &[], &BootstrapOptions::default()).unwrap();
        assert_eq!(hcm(&v)["normalize_path"], json!(true));
        assert_eq!(hcm(&v)["merge_slashes"], json!(false));
    }

    #[test]
    fn unknown_normalization_is_rejected() {
        let mut p = policy(PathNormalization::Base, vec![]);
        p.mesh.as_mut().unwrap().path_normalization = 42;
        assert_eq!(
            bootstrap_value(&p, &[], &BootstrapOptions::default()),
            Err(EmitError::UnknownPathNormalization(42))
        );
    }

    #[test]
    fn endpoints_are_selected_by_labels_and_service() {
        let svc = "reviews.default.svc.cluster.local";
        let p = policy(
            PathNormalization::Base,
            vec![
                cluster("v1", svc, 9080, &[("app", "reviews"), ("version", "v1")]),
                cluster("v2", svc, 9080, &[("app", "reviews"), ("version", "v2")]),
                cluster("v3", svc, 9080, &[("app", "reviews"), ("version", "v3")]),
            ],
        );
        let eps = vec![
            Endpoint::new("10.0.0.1", 9080, [("app", "reviews"), ("version", "v1")]),
            Endpoint::new("10.0.0.2", 9080, [("app", "reviews"), ("version", "v2")])
                .with_service(svc),
            // Same labels, other service: must not be picked.
            Endpoint::new("10.0.0.3", 9080, [("app", "reviews"), ("version", "v2")])
                .with_service("other.default.svc.cluster.local"),
        ];
        let v = bootstrap_value(&p, &eps, &BootstrapOptions::default()).unwrap();
        let clusters = v["static_resources"]["clusters"].as_array().unwrap();
        let addrs = |i: usize| -> Vec<String> {
            clusters[i]["load_assignment"]["endpoints"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|l| l["lb_endpoints"].as_array().unwrap().iter())
                .map(|e| {
                    e["endpoint"]["address"]["socket_address"]["address"]
                        .as_str()
                        .unwrap()
                        .to_string()
                })
                .collect()
        };
        assert_eq!(addrs(0), vec!["10.0.0.1"]);
        assert_eq!(addrs(1), vec!["10.0.0.2"]);
        assert!(addrs(2).is_empty(), "v3 exists with no endpoints");
        assert_eq!(clusters[2]["name"], json!("v3"));
        assert_eq!(clusters[0]["connect_timeout"], json!("10s"));
        assert_eq!(clusters[0]["lb_policy"], json!("LEAST_REQUEST"));
    }

    #[test]
    fn load_balancers_map_like_istiod() {
        for (dr, envoy) in [
            ("", "LEAST_REQUEST"),
            ("LEAST_CONN", "LEAST_REQUEST"),
            ("ROUND_ROBIN", "ROUND_ROBIN"),
            ("RANDOM", "RANDOM"),
        ] {
            let mut c = cluster("c", "s", 80, &[]);
            c.load_balancer = dr.into();
            let v = bootstrap_value(
                &policy(PathNormalization::Base, vec![c]),
                &[],
                &BootstrapOptions::default(),
            )
            .unwrap();
            assert_eq!(
                v["static_resources"]["clusters"][0]["lb_policy"],
                json!(envoy)
            );
        }
        let mut c = cluster("c", "s", 80, &[]);
        c.load_balancer = "PASSTHROUGH".into();
        assert!(matches!(
            bootstrap_value(
                &policy(PathNormalization::Base, vec![c]),
                &[],
                &BootstrapOptions::default()
            ),
            Err(EmitError::UnsupportedLoadBalancer { .. })
        ));
    }

    #[test]
    fn http2_ports_get_http2_upstreams() {
        let mut p = policy(
            PathNormalization::Base,
            vec![
                cluster("g", "grpc.ns.svc.cluster.local", 50051, &[]),
                cluster("h", "web.ns.svc.cluster.local", 80, &[]),
            ],
        );
        for (host, number, protocol) in [
            ("grpc.ns.svc.cluster.local", 50051, "GRPC"),
            ("web.ns.svc.cluster.local", 80, "HTTP"),
        ] {
            p.services.push(Service {
                hostname: host.into(),
                ports: vec![ServicePort {
                    number,
                    protocol: protocol.into(),
                    ..Default::default()
                }],
                ..Default::default()
            });
        }
        let v = bootstrap_value(&p, &[], &BootstrapOptions::default()).unwrap();
        let clusters = &v["static_resources"]["clusters"];
        assert!(clusters[0]["typed_extension_protocol_options"].is_object());
        assert!(clusters[1]
            .get("typed_extension_protocol_options")
            .is_none());
    }

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
    fn filter_slot_sits_before_router() {
        let opts = BootstrapOptions {
            layover_filter: Some(
                json!({"name": "layover", "typed_config": {"@type": "type.googleapis.com/google.protobuf.Empty"}}),
            ),
            ..Default::default()
        };
        let v = bootstrap_value(&Policy::default(), &[], &opts).unwrap();
        let filters = hcm(&v)["http_filters"].as_array().unwrap();
        assert_eq!(filters.len(), 3);
        // The direct peer is captured before layover reads it (x-forwarded-for cannot forge it).
        assert_eq!(filters[0]["name"], json!("layover.direct_remote_address"));
        assert_eq!(
            filters[0]["typed_config"]["on_request_headers"][0]["object_key"],
            json!(DIRECT_REMOTE_ADDRESS)
        );
        assert_eq!(filters[1]["name"], json!("layover"));
        assert_eq!(filters[2]["name"], json!("envoy.filters.http.router"));
    }

    #[test]
    fn cluster_selection_picks_the_route_shape_and_the_filter_config() {
        let route = |v: &Value| hcm(v)["route_config"]["virtual_hosts"][0]["routes"][0].clone();
        let header = BootstrapOptions {
            layover_filter: Some(dynamic_module_filter("{}")),
            ..Default::default()
        };
        let v = bootstrap_value(&Policy::default(), &[], &header).unwrap();
        assert_eq!(route(&v)["route"]["cluster_header"], json!(CLUSTER_HEADER));
        assert_eq!(
            hcm(&v)["http_filters"][1]["typed_config"]["filter_config"]["value"],
            json!("{}"),
            "header mode keeps the bare policy as the filter config"
        );

        let plugin = BootstrapOptions {
            layover_filter: Some(
                dynamic_module_filter_with(
                    "{\"schemaVersion\":1}",
                    ClusterSelection::SpecifierPlugin,
                )
                .unwrap(),
            ),
            cluster_selection: ClusterSelection::SpecifierPlugin,
            ..Default::default()
        };
        let v = bootstrap_value(&Policy::default(), &[], &plugin).unwrap();
        let r = route(&v);
        assert!(r["route"].get("cluster_header").is_none());
        let ext = &r["route"]["inline_cluster_specifier_plugin"]["extension"];
        assert_eq!(
            ext["typed_config"]["@type"],
            json!("type.googleapis.com/envoy.extensions.router.cluster_specifiers.dynamic_modules.v3.DynamicModuleClusterSpecifier")
        );
        assert_eq!(
            ext["typed_config"]["dynamic_module_config"]["name"],
            json!("layover_module")
        );
        let config = hcm(&v)["http_filters"][1]["typed_config"]["filter_config"]["value"]
            .as_str()
            .unwrap()
            .to_string();
        let config: Value = serde_json::from_str(&config).unwrap();
        assert_eq!(
            config,
            json!({"cluster_selection": "metadata", "policy": {"schemaVersion": 1}})
        );

        // The plugin route with a filter that does not write metadata would route nowhere.
        for filter in [
            None,
            Some(dynamic_module_filter("{}")),
            Some(wasm_filter(std::path::Path::new("/x.wasm"), "{}")),
        ] {
            let opts = BootstrapOptions {
                layover_filter: filter,
                cluster_selection: ClusterSelection::SpecifierPlugin,
                ..Default::default()
            };
            assert_eq!(
                bootstrap_value(&Policy::default(), &[], &opts),
                Err(EmitError::ClusterSelectionMismatch)
            );
        }
    }

    fn tls(trust_domain: &str) -> DownstreamTls {
        DownstreamTls {
            cert_chain: "/certs/waypoint/cert-chain.pem".into(),
            private_key: "/certs/waypoint/key.pem".into(),
            trusted_ca: "/certs/root-cert.pem".into(),
            trust_domain: trust_domain.into(),
        }
    }

    #[test]
    fn downstream_tls_requires_a_spiffe_client_cert() {
        let plain = bootstrap_value(&Policy::default(), &[], &BootstrapOptions::default()).unwrap();
        let chain = &plain["static_resources"]["listeners"][0]["filter_chains"][0];
        assert!(chain.get("transport_socket").is_none());

        let opts = BootstrapOptions {
            downstream_tls: Some(tls("example.org")),
            ..Default::default()
        };
        let v = bootstrap_value(&Policy::default(), &[], &opts).unwrap();
        let socket = &v["static_resources"]["listeners"][0]["filter_chains"][0]["transport_socket"];
        let ctx = &socket["typed_config"];
        assert_eq!(ctx["require_client_certificate"], json!(true));
        let common = &ctx["common_tls_context"];
        assert_eq!(
            common["tls_params"]["tls_minimum_protocol_version"],
            json!("TLSv1_3")
        );
        assert_eq!(
            common["tls_certificates"][0]["private_key"]["filename"],
            json!("/certs/waypoint/key.pem")
        );
        let validation = &common["validation_context"];
        assert_eq!(
            validation["trusted_ca"]["filename"],
            json!("/certs/root-cert.pem")
        );
        assert_eq!(
            validation["match_typed_subject_alt_names"],
            json!([{ "san_type": "URI", "matcher": { "prefix": "spiffe://example.org/" } }])
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

    fn hbone() -> Hbone {
        Hbone {
            port: HBONE_PORT,
            cert_chain: "/certs/waypoint/cert-chain.pem".into(),
            private_key: "/certs/waypoint/key.pem".into(),
            trusted_ca: "/certs/root-cert.pem".into(),
            trust_domain: "cluster.local".into(),
            upstream_port: HBONE_PORT,
        }
    }

    #[test]
    fn hbone_generates_the_terminate_chain() {
        let opts = BootstrapOptions {
            layover_filter: Some(
                json!({"name": "layover", "typed_config": {"@type": "type.googleapis.com/google.protobuf.Empty"}}),
            ),
            hbone: Some(hbone()),
            ..Default::default()
        };
        let p = policy(
            PathNormalization::MergeSlashes,
            vec![cluster("c", "s", 80, &[])],
        );
        let v = bootstrap_value(&p, &[], &opts).unwrap();
        assert_eq!(
            v["bootstrap_extensions"][0]["name"],
            json!("envoy.bootstrap.internal_listener")
        );
        let listeners = v["static_resources"]["listeners"].as_array().unwrap();
        let names: Vec<&str> = listeners
            .iter()
            .map(|l| l["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, [LISTENER_NAME, CONNECT_TERMINATE, MAIN_INTERNAL]);

        // connect_terminate: mTLS (h2 only), HTTP/2 CONNECT, identity into shared filter state.
        let term = &listeners[1];
        assert_eq!(
            term["address"]["socket_address"]["port_value"],
            json!(15008)
        );
        let chain = &term["filter_chains"][0];
        let ctx = &chain["transport_socket"]["typed_config"];
        assert_eq!(ctx["require_client_certificate"], json!(true));
        assert_eq!(ctx["common_tls_context"]["alpn_protocols"], json!(["h2"]));
        assert_eq!(
            ctx["common_tls_context"]["tls_params"]["tls_minimum_protocol_version"],
            json!("TLSv1_3")
        );
        assert_eq!(
            ctx["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"],
            json!([{ "san_type": "URI", "matcher": { "prefix": "spiffe://cluster.local/" } }])
        );
        let h = &chain["filters"][0]["typed_config"];
        assert_eq!(h["http2_protocol_options"]["allow_connect"], json!(true));
        assert_eq!(
            h["http2_protocol_options"]["max_concurrent_streams"],
            json!(100)
        );
        assert_eq!(h["upgrade_configs"], json!([{ "upgrade_type": "CONNECT" }]));
        let states = h["http_filters"][0]["typed_config"]["on_request_headers"]
            .as_array()
            .unwrap();
        let keys: Vec<(&str, &str)> = states
            .iter()
            .map(|s| {
                assert_eq!(s["shared_with_upstream"], json!("ONCE"));
                // Hashable, so the shared state partitions main_internal's connection pool.
                assert_eq!(s["factory_key"], json!("envoy.hashable_string"));
                (
                    s["object_key"].as_str().unwrap(),
                    s["format_string"]["text_format_source"]["inline_string"]
                        .as_str()
                        .unwrap(),
                )
            })
            .collect();
        assert_eq!(
            keys,
            [
                (PEER_PRINCIPAL, "%DOWNSTREAM_PEER_URI_SAN%"),
                (CONNECT_AUTHORITY, "%REQ(:AUTHORITY)%"),
                (FORWARDED_FOR, "%REQ(FORWARDED)%"),
                (HBONE_PEER_ADDRESS, "%DOWNSTREAM_DIRECT_REMOTE_ADDRESS%"),
            ]
        );
        assert_eq!(
            h["http_filters"][1]["name"],
            json!("envoy.filters.http.router")
        );
        let route = &h["route_config"]["virtual_hosts"][0]["routes"][0];
        assert_eq!(route["match"], json!({ "connect_matcher": {} }));
        assert_eq!(route["route"]["cluster"], json!(MAIN_INTERNAL));
        assert_eq!(route["route"]["timeout"], json!("0s"));
        assert_eq!(
            route["route"]["upgrade_configs"],
            json!([{ "upgrade_type": "CONNECT", "connect_config": {} }])
        );

        // main_internal: no address, the plain listener's connection manager.
        let internal = &listeners[2];
        assert_eq!(internal["internal_listener"], json!({}));
        assert!(internal.get("address").is_none());
        let mut inner = internal["filter_chains"][0]["filters"][0]["typed_config"].clone();
        let mut plain = hcm(&v).clone();
        assert_eq!(inner["stat_prefix"], json!(MAIN_INTERNAL));
        inner["stat_prefix"] = json!(null);
        plain["stat_prefix"] = json!(null);
        assert_eq!(inner, plain);
        assert_eq!(inner["merge_slashes"], json!(true));

        // The cluster into main_internal carries filter state through internal_upstream.
        let clusters = v["static_resources"]["clusters"].as_array().unwrap();
        let c = clusters
            .iter()
            .find(|c| c["name"] == json!(MAIN_INTERNAL))
            .unwrap();
        assert_eq!(
            c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"],
            json!({ "envoy_internal_address": { "server_listener_name": MAIN_INTERNAL } })
        );
        assert_eq!(
            c["transport_socket"]["name"],
            json!("envoy.transport_sockets.internal_upstream")
        );
    }

    #[test]
    fn in_mesh_endpoints_go_through_connect_originate() {
        let p = policy(
            PathNormalization::Base,
            vec![cluster("r", "", 9080, &[("app", "reviews")])],
        );
        let eps = vec![
            Endpoint::new("10.0.0.1", 9080, [("app", "reviews")]).with_hbone(),
            Endpoint::new("10.0.0.2", 9080, [("app", "reviews")]),
        ];
        // In-mesh endpoints need the waypoint's certificate.
        assert_eq!(
            bootstrap_value(&p, &eps, &BootstrapOptions::default()),
            Err(EmitError::HboneEndpointWithoutHbone { index: 0 })
        );
        let opts = BootstrapOptions {
            hbone: Some(hbone()),
            ..Default::default()
        };
        let v = bootstrap_value(&p, &eps, &opts).unwrap();
        let clusters = v["static_resources"]["clusters"].as_array().unwrap();
        let r = &clusters[0];
        let lb = r["load_assignment"]["endpoints"][0]["lb_endpoints"]
            .as_array()
            .unwrap();
        assert_eq!(
            lb[0]["endpoint"]["address"],
            json!({ "envoy_internal_address": {
                "server_listener_name": CONNECT_ORIGINATE, "endpoint_id": "10.0.0.1:9080" } })
        );
        let md = &lb[0]["metadata"]["filter_metadata"];
        assert_eq!(
            md["envoy.filters.listener.original_dst"]["local"],
            json!("10.0.0.1:9080")
        );
        assert_eq!(md["envoy.transport_socket_match"]["tunnel"], json!("hbone"));
        // The plaintext endpoint is unchanged.
        assert_eq!(
            lb[1]["endpoint"]["address"],
            socket_address("10.0.0.2", 9080)
        );
        assert!(r.get("transport_socket").is_none());
        let m = &r["transport_socket_matches"][0];
        assert_eq!(m["match"], json!({ "tunnel": "hbone" }));
        assert_eq!(
            m["transport_socket"]["typed_config"]["passthrough_metadata"],
            json!([{ "kind": { "host": {} }, "name": "envoy.filters.listener.original_dst" }])
        );

        let listeners = v["static_resources"]["listeners"].as_array().unwrap();
        let orig = listeners
            .iter()
            .find(|l| l["name"] == json!(CONNECT_ORIGINATE))
            .unwrap();
        assert_eq!(orig["internal_listener"], json!({}));
        let tcp = &orig["filter_chains"][0]["filters"][0]["typed_config"];
        assert_eq!(tcp["cluster"], json!(CONNECT_ORIGINATE));
        assert_eq!(
            tcp["tunneling_config"]["hostname"],
            json!("%DOWNSTREAM_LOCAL_ADDRESS%")
        );
        let c = clusters
            .iter()
            .find(|c| c["name"] == json!(CONNECT_ORIGINATE))
            .unwrap();
        assert_eq!(c["type"], json!("ORIGINAL_DST"));
        assert_eq!(
            c["original_dst_lb_config"]["upstream_port_override"],
            json!(15008)
        );
        let ctx = &c["transport_socket"]["typed_config"]["common_tls_context"];
        assert_eq!(ctx["alpn_protocols"], json!(["h2"]));
        assert_eq!(
            ctx["tls_params"]["tls_maximum_protocol_version"],
            json!("TLSv1_3")
        );
        assert!(c["transport_socket"]["typed_config"].get("sni").is_none());
        assert!(c["typed_extension_protocol_options"]
            ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["explicit_http_config"]
            ["http2_protocol_options"]
            .is_object());

        // Without in-mesh endpoints there is no connect_originate.
        let plain = bootstrap_value(&p, &eps[1..], &opts).unwrap();
        assert!(!plain["static_resources"]["listeners"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["name"] == json!(CONNECT_ORIGINATE)));
    }

    #[test]
    fn without_hbone_nothing_changes() {
        let v = bootstrap_value(&Policy::default(), &[], &BootstrapOptions::default()).unwrap();
        assert_eq!(
            v["static_resources"]["listeners"].as_array().unwrap().len(),
            1
        );
        assert!(v.get("bootstrap_extensions").is_none());
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

    #[test]
    fn yaml_and_json_round_trip_to_the_same_value() {
        let p = policy(
            PathNormalization::MergeSlashes,
            vec![cluster("a|b", "s", 1, &[])],
        );
        let value = bootstrap_value(&p, &[], &BootstrapOptions::default()).unwrap();
        let yaml = bootstrap(&p, &[], &BootstrapOptions::default()).unwrap();
        let from_yaml: Value = serde_yaml_ng::from_str(&yaml).unwrap();
        assert_eq!(from_yaml, value);
        let json_opts = BootstrapOptions {
            format: Format::Json,
            ..Default::default()
        };
        let from_json: Value =
            serde_json::from_str(&bootstrap(&p, &[], &json_opts).unwrap()).unwrap();
        assert_eq!(from_json, value);
    }

    #[test]
    fn durations_use_proto_json_form() {
        assert_eq!(duration(Duration::from_secs(10)), "10s");
        assert_eq!(duration(Duration::from_millis(250)), "0.250000000s");
    }
}
