//! `decide()` throughput for growing route tables and authorization rule sets.
//!
//! Self-timed (no criterion): for each (routes, rules) size, compile one policy, then time
//! `decide` over requests spread across all routes. Prints ns per decision and the growth
//! factor against the smallest size. Run: `cargo bench -p layover-core`.
//! Env: LAYOVER_BENCH_ROUTES / LAYOVER_BENCH_RULES (comma-separated sizes; rules 0 = routing only).

// A benchmark binary may stop on a broken setup.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use layover_core::wire::{self, http_route::Action as WA, string_match::Kind};
use layover_core::{Action, CompiledPolicy, DestinationView, RequestView, SourceView};

const HOST: &str = "bench.default.svc.cluster.local";

fn sm(kind: Kind) -> Option<wire::StringMatch> {
    Some(wire::StringMatch { kind: Some(kind) })
}

/// Route `i`: a mix of exact, prefix, regex and header matches, one quarter each.
fn route(i: usize) -> wire::HttpRoute {
    let mut m = wire::RouteMatch::default();
    match i % 4 {
        0 => m.uri = sm(Kind::Exact(format!("/api/s{i}/items"))),
        1 => m.uri = sm(Kind::Prefix(format!("/api/p{i}/"))),
        2 => m.uri = sm(Kind::Regex(format!("/api/r{i}/[0-9]+(/detail)?"))),
        _ => {
            m.uri = sm(Kind::Prefix(format!("/api/h{i}/")));
            m.headers = vec![wire::HeaderMatch {
                name: "x-tenant".into(),
                value: sm(Kind::Exact(format!("t{}", i % 7))),
            }];
        }
    }
    wire::HttpRoute {
        origin: Some(wire::Origin {
            kind: "VirtualService".into(),
            namespace: "default".into(),
            name: "bench".into(),
            index: i as u32,
            ..Default::default()
        }),
        matches: vec![m],
        action: Some(WA::Forward(wire::Forward {
            destinations: vec![
                wire::Destination {
                    cluster: format!("outbound|9080|v1|{HOST}"),
                    host: HOST.into(),
                    port: 9080,
                    subset: "v1".into(),
                    weight: 90,
                    ..Default::default()
                },
                wire::Destination {
                    cluster: format!("outbound|9080|v2|{HOST}"),
                    host: HOST.into(),
                    port: 9080,
                    subset: "v2".into(),
                    weight: 10,
                    ..Default::default()
                },
            ],
        })),
        ..Default::default()
    }
}

/// `rules` authorization rules bound to the service: a DENY policy with a tenth of them (none
/// match), an ALLOW policy whose rules do not match until the last one, which matches all —
/// every request walks the whole rule set.
fn authz(rules: usize) -> Vec<wire::AuthorizationPolicy> {
    let origin = |name: &str| {
        Some(wire::Origin {
            kind: "AuthorizationPolicy".into(),
            namespace: "default".into(),
            name: name.into(),
            ..Default::default()
        })
    };
    let deny_n = (rules / 10).max(1);
    let deny_rules = (0..deny_n)
        .map(|j| wire::AuthorizationRule {
            to: vec![wire::Operation {
                paths: vec![format!("/admin{j}/*")],
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    let mut allow_rules: Vec<wire::AuthorizationRule> = (0..rules - deny_n - 1)
        .map(|j| wire::AuthorizationRule {
            from: vec![wire::Source {
                principals: vec![format!("cluster.local/ns/other{j}/sa/*")],
                ..Default::default()
            }],
            to: vec![wire::Operation {
                methods: vec!["POST".into()],
                paths: vec![format!("/internal/{j}/*")],
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    allow_rules.push(wire::AuthorizationRule {
        from: vec![wire::Source {
            namespaces: vec!["default".into()],
            ..Default::default()
        }],
        ..Default::default()
    });
    vec![
        wire::AuthorizationPolicy {
            origin: origin("deny"),
            action: wire::AuthorizationAction::Deny as i32,
            rules: deny_rules,
            dry_run: false,
        },
        wire::AuthorizationPolicy {
            origin: origin("allow"),
            action: wire::AuthorizationAction::Allow as i32,
            rules: allow_rules,
            dry_run: false,
        },
    ]
}

fn policy(routes: usize, rules: usize) -> wire::Policy {
    let mut services = Vec::new();
    // A few other services so service lookup is not trivially a one-entry map.
    for k in 0..20 {
        services.push(wire::Service {
            hostname: format!("other{k}.default.svc.cluster.local"),
            namespace: "default".into(),
            name: format!("other{k}"),
            addresses: vec![format!("10.1.0.{k}")],
            ..Default::default()
        });
    }
    services.push(wire::Service {
        hostname: HOST.into(),
        namespace: "default".into(),
        name: "bench".into(),
        addresses: vec!["10.0.0.1".into()],
        ports: vec![wire::ServicePort {
            number: 9080,
            name: "http".into(),
            protocol: "HTTP".into(),
            target_port: 9080,
            cluster: format!("outbound|9080||{HOST}"),
            default_route_retry: None,
        }],
        routes: (0..routes).map(route).collect(),
        route_source: wire::RouteSource::VirtualService as i32,
        // rules == 0: routing only, no AuthorizationPolicy bound.
        authorization_policies: if rules == 0 { vec![] } else { vec![0, 1] },
        origin: "Service default/bench".into(),
    });
    wire::Policy {
        schema_version: layover_proto::SCHEMA_VERSION,
        mesh: Some(wire::MeshSettings::default()),
        services,
        authorization_policies: if rules == 0 { vec![] } else { authz(rules) },
        ..Default::default()
    }
}

/// (path, x-tenant) hitting route `i`.
fn request_for(i: usize) -> (String, String) {
    let path = match i % 4 {
        0 => format!("/api/s{i}/items"),
        1 => format!("/api/p{i}/list?page=2"),
        2 => format!("/api/r{i}/{}", 1000 + i),
        _ => format!("/api/h{i}/x"),
    };
    (path, format!("t{}", i % 7))
}

fn bench(routes: usize, rules: usize) -> f64 {
    let cp = CompiledPolicy::compile(&policy(routes, rules)).expect("bench policy compiles");
    // Requests spread over the whole table (at most 1024 distinct ones).
    let step = (routes / 1024).max(1);
    let reqs: Vec<(String, String)> = (0..routes).step_by(step).map(request_for).collect();
    let views: Vec<[(&str, &str); 3]> = reqs
        .iter()
        .map(|(_, t)| {
            [
                ("user-agent", "bench"),
                ("x-tenant", t.as_str()),
                ("accept", "*/*"),
            ]
        })
        .collect();
    let client_ip: std::net::IpAddr = [10, 2, 0, 5].into();
    let make = |k: usize| RequestView {
        method: "GET",
        scheme: "http",
        authority: "bench:9080",
        path: &reqs[k].0,
        headers: &views[k],
        source: SourceView {
            principal: Some("cluster.local/ns/default/sa/client"),
            namespace: Some("default"),
            ip: Some(client_ip),
            remote_ip: None,
        },
        destination: DestinationView {
            service: Some(HOST),
            ip: None,
            port: 9080,
        },
        sni: None,
        jwt: None,
    };
    // Sanity: every request is routed (not denied / 404).
    for (k, (path, _)) in reqs.iter().enumerate() {
        let d = cp.decide(&make(k));
        let (action, reason) = (d.action, d.reason);
        assert_eq!(
            action,
            Action::Forward,
            "request {path} -> {action:?} {reason}"
        );
    }
    // Warm up, then time for ~150 ms.
    let mut k = 0usize;
    let mut n = 0u64;
    let budget = Duration::from_millis(150);
    for _ in 0..2000 {
        black_box(cp.decide(black_box(&make(k % reqs.len()))).status);
        k += 1;
    }
    let start = Instant::now();
    while start.elapsed() < budget {
        for _ in 0..256 {
            let d = cp.decide(black_box(&make(k % reqs.len())));
            black_box((d.action, d.status, d.destinations.len()));
            k += 1;
        }
        n += 256;
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

fn main() {
    let routes: Vec<usize> = match std::env::var("LAYOVER_BENCH_ROUTES") {
        Ok(v) => v.split(',').filter_map(|x| x.trim().parse().ok()).collect(),
        Err(_) => vec![10, 100, 1_000, 10_000],
    };
    let rules: Vec<usize> = match std::env::var("LAYOVER_BENCH_RULES") {
        Ok(v) => v.split(',').filter_map(|x| x.trim().parse().ok()).collect(),
        Err(_) => vec![0, 10, 100, 1_000],
    };
    println!("decide(): ns per decision (growth vs the first row)");
    println!(
        "{:>8} {:>8} {:>12} {:>8}",
        "routes", "rules", "ns/decide", "growth"
    );
    let mut base = None;
    for &ru in &rules {
        if ru == 0 {
            println!("(rules = 0: routing only, no AuthorizationPolicy bound)");
        }
        for &r in &routes {
            let ns = bench(r, ru);
            let b = *base.get_or_insert(ns);
            println!("{r:>8} {ru:>8} {ns:>12.0} {:>7.2}x", ns / b);
        }
    }
}
