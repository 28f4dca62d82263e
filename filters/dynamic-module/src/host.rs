//! The safe host: what the hooks call, in Rust types (strings, `Option`, `Result`) over the raw
//! ABI handles of [`crate::abi`]. Header names, values and attributes are copied out of Envoy as
//! (lossy) UTF-8 strings; what a failed call means for the request is the caller's business.
//!
//! No `unsafe` here: every foreign call is one method of a [`crate::abi`] handle.

#![forbid(unsafe_code)]

use layover_adapter::ConnectionHost;

use crate::abi::{self, FilterPtr, SpecifierPtr, CALLOUT_SUCCESS};
pub(crate) use crate::abi::{
    body_status, headers_status, trailers_status, Attribute, HeaderKind, Level, Scheduler,
};

/// The event id layover commits when a fault delay elapsed.
pub(crate) const DELAY_EVENT: u64 = 1;

/// Logs through Envoy's `dynamic_modules` logger.
pub(crate) fn log(level: Level, message: &str) {
    abi::log(level, message.as_bytes());
}

/// True when Envoy would print a message at `level` (to skip formatting otherwise).
pub(crate) fn log_enabled(level: Level) -> bool {
    abi::log_enabled(level)
}

fn lossy(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Envoy's per-stream filter object during one hook (see [`FilterPtr`]: it can neither be kept
/// past the hook nor reach another thread).
#[derive(Debug, Clone, Copy)]
pub(crate) struct HttpFilter<'hook> {
    raw: FilterPtr<'hook>,
}

impl<'hook> HttpFilter<'hook> {
    /// The safe host over the filter handle of the current hook.
    pub(crate) fn new(raw: FilterPtr<'hook>) -> Self {
        HttpFilter { raw }
    }
}

impl HttpFilter<'_> {
    /// Every header of `kind`, pseudo-headers included, in order, copied out of Envoy. Empty when
    /// the map could not be read.
    pub(crate) fn headers(self, kind: HeaderKind) -> Vec<(String, String)> {
        self.raw
            .headers(kind)
            .into_iter()
            .map(|(k, v)| (lossy(k), lossy(v)))
            .collect()
    }

    /// Replaces (`Some`) or removes (`None`) a header. False when Envoy refused.
    pub(crate) fn set_header(self, kind: HeaderKind, name: &str, value: Option<&str>) -> bool {
        self.raw
            .set_header(kind, name.as_bytes(), value.map(str::as_bytes))
    }

    /// Appends a header value. False when Envoy refused.
    pub(crate) fn add_header(self, kind: HeaderKind, name: &str, value: &str) -> bool {
        self.raw.add_header(kind, name.as_bytes(), value.as_bytes())
    }

    /// Sends a local reply. `details` is the response-code detail in access logs (a token).
    ///
    /// Envoy's `envoy_dynamic_module_callback_http_send_response` passes `sendLocalReply` a gRPC
    /// status of 0, so a gRPC client would read `grpc-status: 0` (OK) on a 404 or 403. The reply
    /// to a gRPC request therefore carries the status Envoy maps the HTTP code to
    /// (`Grpc::Utility::httpToGrpcStatus`), as the wasm build and native Envoy answer, unless
    /// layover already set one (fault abort `grpcStatus`).
    pub(crate) fn send_response(
        self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
        details: &str,
    ) {
        let has_grpc_status = headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("grpc-status"));
        if !has_grpc_status && self.is_grpc_request() {
            let mut with = headers.to_vec();
            with.push((
                "grpc-status".to_string(),
                grpc_status_for(status).to_string(),
            ));
            self.raw
                .send_response(u32::from(status), &with, body, details.as_bytes());
            return;
        }
        self.raw
            .send_response(u32::from(status), headers, body, details.as_bytes());
    }

    /// Envoy `Grpc::Common::hasGrpcContentType`: `application/grpc`, optionally followed by `+`
    /// or `;` and more.
    fn is_grpc_request(self) -> bool {
        self.headers(HeaderKind::Request)
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("content-type"))
            .any(|(_, v)| {
                let v = v.as_bytes();
                let base = b"application/grpc";
                v.len() >= base.len()
                    && v[..base.len()].eq_ignore_ascii_case(base)
                    && matches!(v.get(base.len()), None | Some(b'+') | Some(b';'))
            })
    }

    /// Makes the connection manager re-run route selection (after writing the cluster header).
    pub(crate) fn clear_route_cache(self) {
        self.raw.clear_route_cache();
    }

    /// Makes the cached route re-select its cluster without re-matching the route: on a route
    /// with the dynamic-module cluster specifier plugin, `on_cluster_specifier_select` runs again.
    pub(crate) fn clear_route_cluster_cache(self) {
        self.raw.clear_route_cluster_cache();
    }

    /// Sets a string in the stream's dynamic metadata (`namespace` is created when missing, an
    /// existing `key` is overwritten).
    pub(crate) fn set_dynamic_metadata_string(self, namespace: &str, key: &str, value: &str) {
        self.raw.set_dynamic_metadata_string(
            namespace.as_bytes(),
            key.as_bytes(),
            value.as_bytes(),
        );
    }

    /// A string attribute, copied; `None` when absent or not available.
    pub(crate) fn attribute(self, id: Attribute) -> Option<String> {
        self.raw.attribute_string(id).map(lossy)
    }

    /// The address of the directly connected peer ("ip:port"), copied. Unlike the
    /// `source.address` attribute, which follows `x-forwarded-for` when the connection manager
    /// does not use the remote address (`use_remote_address: false`, as on Istio waypoints),
    /// this is the socket peer a client cannot forge.
    pub(crate) fn direct_remote_address(self) -> Option<String> {
        self.raw.direct_remote_address().map(lossy)
    }

    /// A string filter-state object (`envoy.string`, e.g. written by `set_filter_state`),
    /// copied; `None` when absent or of another type.
    pub(crate) fn filter_state_string(self, key: &str) -> Option<String> {
        self.raw.filter_state_bytes(key.as_bytes()).map(lossy)
    }

    /// Resumes a request this filter stopped.
    pub(crate) fn continue_decoding(self) {
        self.raw.continue_decoding();
    }

    /// Creates the stream's scheduler (see [`Scheduler`]), whose slot commits [`DELAY_EVENT`];
    /// `None` if Envoy returned null.
    pub(crate) fn new_scheduler(self) -> Option<Scheduler> {
        Scheduler::new(self.raw, DELAY_EVENT)
    }

    /// Fire-and-forget request to `cluster` (mirroring). `Err` carries Envoy's init result.
    pub(crate) fn http_callout(
        self,
        cluster: &str,
        headers: &[(String, String)],
        timeout_ms: u64,
    ) -> Result<u64, u32> {
        match self
            .raw
            .http_callout(cluster.as_bytes(), headers, timeout_ms)
        {
            (CALLOUT_SUCCESS, id) => Ok(id),
            (result, _) => Err(result),
        }
    }
}

/// What `layover_adapter::connection` reads, each one callback: the attribute API
/// (`connection.uri_san_peer_certificate`, `connection.requested_server_name`,
/// `source.address`), the socket peer, and string filter state.
impl ConnectionHost for HttpFilter<'_> {
    fn filter_state(&self, key: &str) -> Option<String> {
        self.filter_state_string(key)
    }
    fn peer_uri_san(&self) -> Option<String> {
        self.attribute(Attribute::UriSanPeerCertificate)
    }
    fn direct_remote_address(&self) -> Option<String> {
        // The socket peer from Envoy itself, never `source.address`: with
        // `use_remote_address: false` (Istio waypoints) the latter follows x-forwarded-for.
        HttpFilter::direct_remote_address(*self)
    }
    fn source_address(&self) -> Option<String> {
        self.attribute(Attribute::SourceAddress)
    }
    fn sni(&self) -> Option<String> {
        self.attribute(Attribute::RequestedServerName)
    }
}

/// The cluster-specifier context of the current `on_cluster_specifier_select` (see
/// [`SpecifierPtr`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpecifierContext<'hook> {
    raw: SpecifierPtr<'hook>,
}

impl<'hook> SpecifierContext<'hook> {
    /// The safe host over the context handle of the current call.
    pub(crate) fn new(raw: SpecifierPtr<'hook>) -> Self {
        SpecifierContext { raw }
    }
}

impl SpecifierContext<'_> {
    /// A string from the stream's dynamic metadata (`namespace`, then `key`), copied; `None` when
    /// absent or not a string.
    pub(crate) fn dynamic_metadata_string(self, namespace: &str, key: &str) -> Option<String> {
        self.raw
            .dynamic_metadata_string(namespace.as_bytes(), key.as_bytes())
            .map(lossy)
    }

    /// Selects the upstream cluster for the request.
    pub(crate) fn set_cluster_name(self, cluster: &str) {
        self.raw.set_cluster_name(cluster.as_bytes());
    }
}

/// Envoy `Grpc::Utility::httpToGrpcStatus` (source/common/grpc/status.cc).
fn grpc_status_for(http: u16) -> u32 {
    match http {
        400 => 13,             // INTERNAL
        401 => 16,             // UNAUTHENTICATED
        403 => 7,              // PERMISSION_DENIED
        404 => 12,             // UNIMPLEMENTED
        429 | 502..=504 => 14, // UNAVAILABLE
        _ => 2,                // UNKNOWN
    }
}

#[cfg(test)]
mod grpc_status_tests {
    use super::grpc_status_for;

    #[test]
    fn http_codes_map_as_envoy_maps_them() {
        assert_eq!(grpc_status_for(404), 12);
        assert_eq!(grpc_status_for(403), 7);
        assert_eq!(grpc_status_for(503), 14);
        assert_eq!(grpc_status_for(500), 2);
    }
}
