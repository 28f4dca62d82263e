//! The HBONE chain: termination, the internal listener, re-origination towards in-mesh
//! endpoints.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use layover_contract::filter_state::{
    CONNECT_AUTHORITY, FORWARDED_FOR, HBONE_PEER_ADDRESS, PEER_PRINCIPAL,
};
use layover_proto::v1::{PathNormalization, Policy};
use serde_json::json;

use super::*;
use crate::test_support::{cluster, hbone, hcm, policy};
use crate::{bootstrap_value, EmitError, LISTENER_NAME};

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
