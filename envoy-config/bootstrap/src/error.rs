//! Why a bootstrap could not be generated.

/// Why a bootstrap could not be generated. The policy is rejected whole: a partial config would
/// route some traffic differently from what the policy says.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EmitError {
    /// The istiod-shaped waypoint was asked for without HBONE (its only listener).
    #[error("the istiod-shaped waypoint needs HBONE (hbone options: certificates and port)")]
    IstiodShapeNeedsHbone,
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
