//! Builders the unit tests of every module share.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use layover_contract::HBONE_PORT;
use layover_proto::v1::{Cluster, MeshSettings, PathNormalization, Policy};
use serde_json::Value;

use crate::{DownstreamTls, Hbone};

pub(crate) fn cluster(name: &str, service: &str, port: u32, labels: &[(&str, &str)]) -> Cluster {
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
        ..Default::default()
    }
}

pub(crate) fn policy(mode: PathNormalization, clusters: Vec<Cluster>) -> Policy {
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

pub(crate) fn hcm(v: &Value) -> &Value {
    &v["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
}

pub(crate) fn tls(trust_domain: &str) -> DownstreamTls {
    DownstreamTls {
        cert_chain: "/certs/waypoint/cert-chain.pem".into(),
        private_key: "/certs/waypoint/key.pem".into(),
        trusted_ca: "/certs/root-cert.pem".into(),
        trust_domain: trust_domain.into(),
    }
}

pub(crate) fn hbone() -> Hbone {
    Hbone {
        port: HBONE_PORT,
        cert_chain: "/certs/waypoint/cert-chain.pem".into(),
        private_key: "/certs/waypoint/key.pem".into(),
        trusted_ca: "/certs/root-cert.pem".into(),
        trust_domain: "cluster.local".into(),
        upstream_port: HBONE_PORT,
    }
}
