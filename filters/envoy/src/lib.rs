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
//! The HBONE listener chain (`connect_terminate` → internal listener → `connect_originate`) is
//! not generated yet; this is the plain-HTTP core the chain will wrap.

#![forbid(unsafe_code)]

mod filter;
pub use filter::{
    dynamic_module_filter, dynamic_module_filter_with, endpoints_from_registry, wasm_filter,
};

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use layover_proto::v1::{Cluster, PathNormalization, Policy};
use serde_json::{json, Map, Value};

/// Request header the layover filter writes with the chosen cluster name; the only route in the
/// generated config takes its cluster from it.
pub const CLUSTER_HEADER: &str = "x-layover-cluster";

/// Filter-state key holding the directly connected peer's `ip:port` for the layover filter
/// (must equal `layover_adapter::DIRECT_REMOTE_ADDRESS_KEY`; a test checks they agree).
pub const DIRECT_REMOTE_ADDRESS_KEY: &str = "layover.direct_remote_address";

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
        }
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

/// Text format of the generated bootstrap. Envoy reads both (`-c file.yaml` / `file.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// YAML (the default; what people read).
    #[default]
    Yaml,
    /// JSON (exact, easy to post-process).
    Json,
}

/// How the layover filter's cluster choice reaches the route (see
/// [`BootstrapOptions::cluster_selection`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClusterSelection {
    /// The route reads the `x-layover-cluster` header ([`CLUSTER_HEADER`]); the filter writes it
    /// and clears the route cache. Works with both builds. The default: it measured 1–2 µs of
    /// Envoy CPU per request cheaper than [`ClusterSelection::SpecifierPlugin`] (within noise,
    /// never worse; `cargo xtask bench-cluster-selection`, numbers in the dynamic-module crate
    /// docs).
    #[default]
    Header,
    /// The route uses the dynamic module's cluster specifier plugin
    /// (`envoy.router.cluster_specifier_plugin.dynamic_modules`), whose `select` reads the
    /// cluster the filter wrote to dynamic metadata (`layover.cluster`); the filter then only
    /// refreshes the route's cluster. Dynamic-module build only: the filter must be
    /// [`dynamic_module_filter_with`]`(…, SpecifierPlugin)`.
    SpecifierPlugin,
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
    /// The layover HTTP filter: a complete `http_filters` entry (`{name, typed_config}` object),
    /// placed directly before the router. `None` until the filter exists.
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
    /// `cluster_selection: SpecifierPlugin` without a dynamic-module filter in metadata mode.
    #[error("cluster_selection SpecifierPlugin needs the dynamic-module filter built by dynamic_module_filter_with(…, ClusterSelection::SpecifierPlugin)")]
    ClusterSelectionMismatch,
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
        Format::Yaml => {
            serde_yaml_ng::to_string(&value).map_err(|e| EmitError::Serialize(e.to_string()))
        }
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
    let mode = match policy.mesh.as_ref() {
        None => PathNormalization::Base,
        Some(mesh) => PathNormalization::try_from(mesh.path_normalization)
            .map_err(|_| EmitError::UnknownPathNormalization(mesh.path_normalization))?,
    };

    let mut seen = BTreeSet::new();
    let mut clusters = Vec::with_capacity(policy.clusters.len());
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

    Ok(json!({
        "node": { "id": opts.node_id, "cluster": "layover" },
        "admin": {
            "address": socket_address("127.0.0.1", opts.admin_port),
        },
        "static_resources": {
            "listeners": [listener_json(mode, opts)],
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
    }))
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

fn listener_json(mode: PathNormalization, opts: &BootstrapOptions) -> Value {
    let norm = hcm_normalization(mode);

    let mut http_filters = Vec::with_capacity(3);
    if let Some(filter) = &opts.layover_filter {
        // With istiod's `use_remote_address: false` Envoy rewrites the stream's remote address
        // from the client's x-forwarded-for, and proxy-wasm can only read that rewritten
        // `source.address`. AuthorizationPolicy `ipBlocks` / `source.ip` mean the direct peer
        // (istiod emits RBAC `direct_remote_ip`), so the real socket peer is put in filter state
        // for the layover filter first; a client cannot forge it.
        http_filters.push(json!({
            "name": "layover.direct_remote_address",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.set_filter_state.v3.Config",
                "on_request_headers": [{
                    "object_key": DIRECT_REMOTE_ADDRESS_KEY,
                    "factory_key": "envoy.string",
                    "format_string": {
                        "text_format_source": {
                            "inline_string": "%DOWNSTREAM_DIRECT_REMOTE_ADDRESS%",
                        },
                    },
                }],
            },
        }));
        http_filters.push(filter.clone());
    }
    http_filters.push(json!({
        "name": "envoy.filters.http.router",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
        },
    }));

    let (route_name, cluster_specifier) = match opts.cluster_selection {
        ClusterSelection::Header => ("layover-cluster-header", "cluster_header"),
        ClusterSelection::SpecifierPlugin => (
            "layover-cluster-specifier",
            "inline_cluster_specifier_plugin",
        ),
    };
    let cluster_specifier_value = match opts.cluster_selection {
        ClusterSelection::Header => json!(CLUSTER_HEADER),
        ClusterSelection::SpecifierPlugin => json!({
            "extension": {
                "name": "layover",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.router.cluster_specifiers.dynamic_modules.v3.DynamicModuleClusterSpecifier",
                    "dynamic_module_config": { "name": "layover_module", "do_not_close": true },
                    "specifier_name": "layover",
                },
            },
        }),
    };
    let route_config = json!({
        "name": "layover",
        // Cluster names come from the filter at request time; there is nothing to validate here.
        "validate_clusters": false,
        "virtual_hosts": [{
            "name": "layover",
            "domains": ["*"],
            "routes": [{
                "name": route_name,
                "match": { "prefix": "/" },
                "route": {
                    cluster_specifier: cluster_specifier_value,
                    // Istio HTTP routes have no timeout unless the VirtualService sets one; the
                    // filter sets per-request timeouts through x-envoy-upstream-rq-timeout-ms.
                    "timeout": "0s",
                    // The filter sets attempts / retry_on / per-try timeout per request through
                    // the router's x-envoy-* headers; what headers cannot carry is fixed here,
                    // as istiod writes it for every HTTP route (route/retry/retry.go): retry on
                    // another host, up to 5 host selection attempts. No retry_on here, so a
                    // request the filter sets no retries for is never retried.
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
            }],
        }],
    });

    let mut hcm = Map::new();
    hcm.insert(
        "@type".into(),
        json!("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"),
    );
    hcm.insert("stat_prefix".into(), json!(LISTENER_NAME));
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

    let mut chain = json!({
        "filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": Value::Object(hcm),
        }],
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
            json!({
                "endpoint": { "address": socket_address(&ip.to_string(), ep.port) },
                // Istio keeps workload labels on endpoints (subset LB, telemetry); kept here so
                // the config shows why an endpoint was selected.
                "metadata": { "filter_metadata": { "istio": { "workload_labels": ep.labels } } },
            })
        })
        .collect();
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
            layover_filter: Some(json!({"name": "layover", "typed_config": {}})),
            ..Default::default()
        };
        let v = bootstrap_value(&Policy::default(), &[], &opts).unwrap();
        let filters = hcm(&v)["http_filters"].as_array().unwrap();
        assert_eq!(filters.len(), 3);
        // The direct peer is captured before layover reads it (x-forwarded-for cannot forge it).
        assert_eq!(filters[0]["name"], json!("layover.direct_remote_address"));
        assert_eq!(
            filters[0]["typed_config"]["on_request_headers"][0]["object_key"],
            json!(DIRECT_REMOTE_ADDRESS_KEY)
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
            layover_filter: Some(dynamic_module_filter_with(
                "{\"schemaVersion\":1}",
                ClusterSelection::SpecifierPlugin,
            )),
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
