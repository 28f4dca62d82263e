//! One STATIC cluster per policy cluster: endpoints selected by labels and service, the load
//! balancer and upstream protocol istiod would pick, in-mesh endpoints reached through HBONE.

use std::collections::BTreeSet;
use std::net::IpAddr;

use layover_proto::v1::{Cluster, Policy};
use serde_json::{json, Value};

use crate::common::{duration, socket_address};
use crate::error::EmitError;
use crate::hbone::{
    hbone_endpoint_json, internal_upstream_json, CONNECT_ORIGINATE, MAIN_INTERNAL,
    ORIGINAL_DST_METADATA,
};
use crate::options::{BootstrapOptions, Endpoint};
use crate::traffic_policy;

/// The clusters of `policy`, in policy order, each with the endpoints it selects. Names must be
/// non-empty and unique (with HBONE, also distinct from the HBONE chain's own clusters).
pub(crate) fn policy_clusters(
    policy: &Policy,
    endpoints: &[Endpoint],
    endpoint_ips: &[IpAddr],
    opts: &BootstrapOptions,
) -> Result<Vec<Value>, EmitError> {
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
            endpoint_ips,
            opts,
        )?);
    }
    Ok(clusters)
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

/// Whether `cluster` selects `ep`: its labels are all on the endpoint, and the endpoint belongs
/// to the cluster's service when both name one.
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

/// The `load_assignment` localities of `cluster`: one locality with the endpoints it selects
/// (plaintext, or through HBONE for in-mesh ones), none when it selects nothing.
fn localities_json(
    cluster: &Cluster,
    endpoints: &[Endpoint],
    endpoint_ips: &[IpAddr],
) -> Vec<Value> {
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
    if lb_endpoints.is_empty() {
        Vec::new()
    } else {
        vec![json!({ "lb_endpoints": lb_endpoints })]
    }
}

/// One STATIC cluster for policy cluster `index`, with the endpoints it selects.
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

    let localities = localities_json(cluster, endpoints, endpoint_ips);
    let any_hbone = endpoints.iter().any(|ep| ep.hbone && selects(cluster, ep));

    let mut out = json!({
        "name": cluster.name,
        "type": "STATIC",
        "connect_timeout": duration(opts.connect_timeout),
        "lb_policy": lb,
        // istiod's default thresholds: effectively unlimited, so the circuit breaker never
        // fails requests a DestinationRule did not ask to limit (Envoy's default max_retries
        // of 3 would); the DestinationRule's connectionPool replaces each it sets.
        "circuit_breakers": traffic_policy::circuit_breakers(cluster.connection_pool.as_ref()),
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
    if let Some(obj) = out.as_object_mut() {
        if speaks_http2(cluster, policy) {
            traffic_policy::set_http2(obj);
        }
        if let Some(pool) = &cluster.connection_pool {
            traffic_policy::apply_connection_pool(obj, pool);
        }
        if let Some(od) = &cluster.outlier_detection {
            traffic_policy::apply_outlier_detection(obj, od);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use layover_proto::v1::{PathNormalization, Service, ServicePort};
    use serde_json::json;

    use crate::test_support::{cluster, policy};
    use crate::{bootstrap_value, BootstrapOptions, EmitError, Endpoint};

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
}
