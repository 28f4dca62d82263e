//! The contract between the layover filters (wasm, dynamic module, through `layover-adapter`)
//! and the Envoy configuration that loads them (`layover-bootstrap`, the manifests, the CLI).
//!
//! Every header, filter-state key, dynamic-metadata key, port and name that one side writes and
//! the other reads is defined here, once, and both sides use these definitions: the bootstrap
//! generator can never set a key the filters do not read.

#![forbid(unsafe_code)]

mod filter_config;
pub use filter_config::{ClusterSelection, FilterConfig, FilterMode};

/// Name of the layover HTTP filter: the `http_filters` entry, the proxy-wasm `root_id` and
/// `vm_id`, and the dynamic module's `filter_name`.
pub const FILTER_NAME: &str = "layover";

/// Name of the dynamic module (`liblayover_module.so`, found on
/// `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`; the `dynamic_module_config.name`).
pub const DYNAMIC_MODULE_NAME: &str = "layover_module";

/// The request header that carries layover's cluster choice to the `cluster_header` route
/// ([`ClusterSelection::Header`]). The filter removes a client's copy first; the route removes
/// it before the upstream sees it.
pub const CLUSTER_HEADER: &str = "x-layover-cluster";

/// Prefix of every request header layover uses as an internal signal; a client's copies are
/// removed before anything else (Envoy's own `x-envoy-*` controls are removed too).
pub const INTERNAL_HEADER_PREFIX: &str = "x-layover-";

/// The request header Envoy's `jwt_authn` filter writes the payload of a token it verified to
/// (`forward_payload_header`: the token's base64url payload segment), for layover to read
/// `requestPrincipals` / `request.auth.*` from. The generated configuration removes a client's
/// copy (an `envoy.filters.http.header_mutation` filter) BEFORE `jwt_authn` runs, so the header
/// only ever holds what `jwt_authn` verified; layover removes it before the upstream.
///
/// Why a header and not the dynamic metadata istiod's RBAC reads
/// (`filter_metadata["envoy.filters.http.jwt_authn"]["payload"]`): the dynamic-module ABI of
/// Envoy 1.40.0 reads only top-level metadata keys of scalar type
/// (`envoy_dynamic_module_callback_http_get_metadata_{string,number,bool,list_*}`), and the
/// payload is a nested `Struct`; one signal for both builds keeps them identical.
pub const JWT_PAYLOAD_HEADER: &str = "x-layover-jwt-payload";

/// The request header that makes a `test-panic` build of either filter panic (tests of the
/// fail-closed behaviour only; the release builds do not read it).
pub const TEST_PANIC_HEADER: &str = "x-layover-test-panic";

/// The port ztunnel dials a waypoint's HBONE listener on, and in-mesh pods accept HBONE on
/// (istio/istio `pkg/config/constants`: `HBONEInboundListenPort`).
pub const HBONE_PORT: u16 = 15008;

/// Filter-state keys the configuration writes (`envoy.filters.http.set_filter_state` /
/// `envoy.filters.network.set_filter_state`, factory `envoy.string`) and the filters read.
pub mod filter_state {
    /// The directly connected peer's `ip:port` (`%DOWNSTREAM_DIRECT_REMOTE_ADDRESS%`), written
    /// before the layover filter in each connection manager.
    ///
    /// Why: with `use_remote_address: false` (istiod's waypoint setting) the connection manager
    /// replaces the stream's remote address with the last `x-forwarded-for` entry, and
    /// proxy-wasm has no property for the direct peer. AuthorizationPolicy `ipBlocks` must match
    /// the direct peer (istiod: RBAC `direct_remote_ip`), so a client could otherwise pick its
    /// own source address with one header.
    pub const DIRECT_REMOTE_ADDRESS: &str = "layover.direct_remote_address";

    /// HBONE: the verified URI SAN of the HBONE peer (`spiffe://td/ns/…/sa/…`), recorded by
    /// `connect_terminate` from `%DOWNSTREAM_PEER_URI_SAN%` and shared with the internal
    /// listener `main_internal`, where the TLS peer is gone. istiod's name, so the filters read
    /// the same key in Istio's own waypoint and in layover's (`pilot/pkg/xds/filters/filters.go:
    /// 259-351 @ 1.30.3`, `connect_authority`; its RBAC matches principals against it,
    /// `security/authz/model/principal.go:60-80`).
    pub const PEER_PRINCIPAL: &str = "io.istio.peer_principal";

    /// HBONE: the CONNECT `:authority` (`vip:port`, `pod-ip:port` or `host:port`), the
    /// destination ztunnel asked for. istiod's name (`filters.go:82 @ 1.30.3`).
    pub const CONNECT_AUTHORITY: &str = "io.istio.connect_authority";

    /// HBONE: the CONNECT request's `forwarded` header as ztunnel sent it
    /// (`for="<client ip:port>"`), naming the original client.
    pub const FORWARDED_FOR: &str = "layover.forwarded_for";

    /// HBONE: the address of the HBONE peer itself (`%DOWNSTREAM_DIRECT_REMOTE_ADDRESS%` at
    /// `connect_terminate`: ztunnel, which connects from the client pod's address), the client
    /// address when no `forwarded` header was recorded (Istio's waypoint records none).
    ///
    /// Not istiod's `envoy.filters.listener.original_dst.remote_ip`: Envoy's object for that
    /// name is an address, which neither build can read as a string, and istiod writes it from
    /// `%DOWNSTREAM_REMOTE_ADDRESS%`, which follows `x-forwarded-for` under
    /// `use_remote_address: false`. Inside `main_internal` the direct remote address is the
    /// internal listener's (`envoy://internal_client_address/`, measured on Envoy 1.40), so the
    /// HBONE peer has to be recorded at `connect_terminate`: route A inserts this entry there.
    /// Route B (a WasmPlugin) cannot, so there the client address is unknown and address
    /// checks resolve against the caller (`layover_core`: ALLOW fails, DENY fires).
    pub const HBONE_PEER_ADDRESS: &str = "layover.hbone_peer_address";
}

/// Dynamic metadata the dynamic module writes for its cluster specifier plugin
/// ([`ClusterSelection::SpecifierPlugin`]).
pub mod metadata {
    /// Dynamic-metadata namespace of the cluster choice.
    pub const NAMESPACE: &str = "layover";
    /// Key of the cluster choice within [`NAMESPACE`].
    pub const CLUSTER: &str = "cluster";
}
