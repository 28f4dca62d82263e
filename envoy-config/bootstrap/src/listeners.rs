//! The plain listener and the connection manager it shares with `main_internal`: path
//! normalization as istiod derives it from MeshConfig, mutual TLS, the access log.

use layover_proto::v1::{PathNormalization, Policy};
use serde_json::{json, Map, Value};

use crate::common::socket_address;
use crate::error::EmitError;
use crate::options::{BootstrapOptions, DownstreamTls};
use crate::routes::route_config_json;

/// Name of the plain-HTTP listener (and its connection manager's stat prefix).
pub const LISTENER_NAME: &str = "layover_http";

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

/// The policy's MeshConfig `pathNormalization`; BASE (istiod's default) when the policy has no
/// mesh settings.
pub(crate) fn path_normalization(policy: &Policy) -> Result<PathNormalization, EmitError> {
    match policy.mesh.as_ref() {
        None => Ok(PathNormalization::Base),
        Some(mesh) => PathNormalization::try_from(mesh.path_normalization)
            .map_err(|_| EmitError::UnknownPathNormalization(mesh.path_normalization)),
    }
}

/// The connection manager of the plain listener and of `main_internal` (the same one, so a
/// request gets the same treatment inside an HBONE tunnel as on the plain listener).
pub(crate) fn layover_hcm_json(
    mode: PathNormalization,
    opts: &BootstrapOptions,
    stat_prefix: &str,
) -> Value {
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

    let route_config = route_config_json();

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

/// The plain listener: the layover connection manager, behind mutual TLS when
/// [`BootstrapOptions::downstream_tls`] is set.
pub(crate) fn listener_json(mode: PathNormalization, opts: &BootstrapOptions) -> Value {
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

/// The listener's `transport_socket` for [`DownstreamTls`]: TLS 1.3 only, a client certificate
/// required and verified against the mesh root, and only SPIFFE ids of the trust domain
/// accepted (the SAN matcher istiod puts on inbound mTLS listeners).
pub(crate) fn downstream_tls_json(tls: &DownstreamTls) -> Value {
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

/// The connection managers' `access_log`: one JSON line per request in the file `path`.
pub(crate) fn access_log(path: &str) -> Value {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use layover_proto::v1::{PathNormalization, Policy};
    use serde_json::json;

    use crate::test_support::{hcm, policy, tls};
    use crate::{bootstrap_value, BootstrapOptions, EmitError};

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
}
