//! Table-driven tests of routing, decisions, sampling and path normalization.
//!
//! Policies are built with the small constructors below over the wire types; each table row
//! cites the Istio / Envoy behaviour it encodes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::type_complexity
)]

// The same tables run compiled to wasm32 (the target the filter ships in) under
// wasm-bindgen-test, so regex, hashing and arithmetic behave identically there.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

mod compile;
mod decisions;
mod matching;
mod normalize;

use std::net::IpAddr;

use crate::request::{DestinationView, RequestView, SourceView};
use crate::wire::{self, http_route::Action as WA, string_match::Kind};
use crate::CompiledPolicy;

pub(crate) const HOST: &str = "reviews.default.svc.cluster.local";

pub(crate) fn exact(s: &str) -> Option<wire::StringMatch> {
    Some(wire::StringMatch {
        kind: Some(Kind::Exact(s.into())),
    })
}
pub(crate) fn prefix(s: &str) -> Option<wire::StringMatch> {
    Some(wire::StringMatch {
        kind: Some(Kind::Prefix(s.into())),
    })
}
pub(crate) fn regex(s: &str) -> Option<wire::StringMatch> {
    Some(wire::StringMatch {
        kind: Some(Kind::Regex(s.into())),
    })
}

pub(crate) fn m_uri(uri: Option<wire::StringMatch>) -> wire::RouteMatch {
    wire::RouteMatch {
        uri,
        ..Default::default()
    }
}
pub(crate) fn hdr(name: &str, value: Option<wire::StringMatch>) -> wire::HeaderMatch {
    wire::HeaderMatch {
        name: name.into(),
        value,
    }
}
pub(crate) fn qp(name: &str, value: Option<wire::StringMatch>) -> wire::QueryParamMatch {
    wire::QueryParamMatch {
        name: name.into(),
        value,
    }
}

pub(crate) fn dest(cluster: &str, weight: u32) -> wire::Destination {
    wire::Destination {
        cluster: cluster.into(),
        host: HOST.into(),
        port: 9080,
        subset: cluster.split('|').nth(2).unwrap_or("").into(),
        weight,
        ..Default::default()
    }
}
pub(crate) fn fwd(dests: Vec<wire::Destination>) -> Option<WA> {
    Some(WA::Forward(wire::Forward {
        destinations: dests,
    }))
}
pub(crate) fn to(cluster: &str) -> Option<WA> {
    fwd(vec![dest(cluster, 100)])
}

/// A route named `name` (origin element name) with the given matches forwarding to `cluster`.
pub(crate) fn route(name: &str, matches: Vec<wire::RouteMatch>, cluster: &str) -> wire::HttpRoute {
    wire::HttpRoute {
        origin: Some(wire::Origin {
            kind: "VirtualService".into(),
            namespace: "default".into(),
            name: "reviews".into(),
            element_name: name.into(),
            ..Default::default()
        }),
        matches,
        action: to(cluster),
        ..Default::default()
    }
}

pub(crate) fn service(
    host: &str,
    source: wire::RouteSource,
    routes: Vec<wire::HttpRoute>,
) -> wire::Service {
    let mut parts = host.split('.');
    let name = parts.next().unwrap_or("").to_string();
    let ns = parts.next().unwrap_or("").to_string();
    wire::Service {
        hostname: host.into(),
        namespace: ns.clone(),
        name,
        addresses: vec![],
        ports: vec![
            wire::ServicePort {
                number: 9080,
                name: "http".into(),
                protocol: "HTTP".into(),
                target_port: 9080,
                cluster: format!("outbound|9080||{host}"),
                default_route_retry: None,
            },
            wire::ServicePort {
                number: 8080,
                name: "http-alt".into(),
                protocol: "HTTP".into(),
                target_port: 8080,
                cluster: format!("outbound|8080||{host}"),
                default_route_retry: None,
            },
        ],
        routes,
        route_source: source as i32,
        authorization_policies: vec![],
        origin: format!("Service {ns}/{host}"),
    }
}

pub(crate) fn policy(services: Vec<wire::Service>) -> wire::Policy {
    wire::Policy {
        schema_version: layover_proto::SCHEMA_VERSION,
        mesh: Some(wire::MeshSettings {
            default_retry: Some(mesh_retry()),
            ..Default::default()
        }),
        services,
        ..Default::default()
    }
}

/// Istio's built-in default retry policy as the compiler writes it (2 attempts,
/// `connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes` + 503,
/// previous_hosts predicate, 5 host selection attempts).
pub(crate) fn mesh_retry() -> wire::RetryPolicy {
    wire::RetryPolicy {
        attempts: 2,
        per_try_timeout_ms: 0,
        retry_on: vec![
            "connect-failure".into(),
            "refused-stream".into(),
            "unavailable".into(),
            "cancelled".into(),
            "retriable-status-codes".into(),
        ],
        retriable_status_codes: vec![503],
        retry_host_predicates: vec!["envoy.retry_host_predicates.previous_hosts".into()],
        host_selection_retry_max_attempts: 5,
        retry_remote_localities: false,
    }
}

pub(crate) fn vs_policy(routes: Vec<wire::HttpRoute>) -> CompiledPolicy {
    CompiledPolicy::compile(&policy(vec![service(
        HOST,
        wire::RouteSource::VirtualService,
        routes,
    )]))
    .expect("policy compiles")
}

/// A GET to `HOST:9080` with `path` and `headers`.
pub(crate) fn rv<'a>(path: &'a str, headers: &'a [(&'a str, &'a str)]) -> RequestView<'a> {
    RequestView {
        method: "GET",
        scheme: "http",
        authority: "reviews:9080",
        path,
        headers,
        source: SourceView::default(),
        destination: DestinationView {
            service: Some(HOST),
            ip: None,
            port: 9080,
        },
        sni: None,
        jwt: None,
    }
}

pub(crate) fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn decision_size_is_reasonable() {
    // Decisions are returned by value per request; keep an eye on the copy cost.
    let size = std::mem::size_of::<crate::Decision<'static>>();
    assert!(size <= 704, "Decision is {size} bytes");
    println!("Decision: {size} bytes");
}
