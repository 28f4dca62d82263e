//! Helpers shared by the config crate's integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use layover_compiler::{compile_str, CompileOptions, Compiled};
use layover_proto::v1 as pb;

/// Services used by most cases: reviews / ratings (one port), multi (two ports), all in `default`.
pub const BASE: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  clusterIP: 10.0.0.1
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: default}
spec:
  selector: {app: ratings}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: multi, namespace: default}
spec:
  selector: {app: multi}
  ports: [{name: http, port: 80}, {name: http-alt, port: 8080, targetPort: 9090}]
"#;

pub fn try_compile_opts(yaml: &str, opts: &CompileOptions) -> Result<Compiled, String> {
    compile_str("test.yaml", yaml, opts).map_err(|e| e.to_string())
}

pub fn try_compile(yaml: &str) -> Result<Compiled, String> {
    try_compile_opts(yaml, &CompileOptions::default())
}

/// Compiles BASE + `yaml`.
pub fn compile(yaml: &str) -> Compiled {
    match try_compile(&format!("{BASE}\n---\n{yaml}")) {
        Ok(c) => c,
        Err(e) => panic!("compile failed:\n{e}"),
    }
}

/// Compiles BASE + `yaml`, expecting failure; returns the rendered errors.
pub fn compile_err(yaml: &str) -> String {
    match try_compile(&format!("{BASE}\n---\n{yaml}")) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    }
}

pub fn svc<'a>(c: &'a Compiled, host: &str) -> &'a pb::Service {
    c.policy
        .services
        .iter()
        .find(|s| s.hostname == host)
        .unwrap_or_else(|| {
            panic!(
                "no service {host}; have {:?}",
                c.policy
                    .services
                    .iter()
                    .map(|s| &s.hostname)
                    .collect::<Vec<_>>()
            )
        })
}

pub fn has_svc(c: &Compiled, host: &str) -> bool {
    c.policy.services.iter().any(|s| s.hostname == host)
}

pub fn reviews(c: &Compiled) -> &pb::Service {
    svc(c, "reviews.default.svc.cluster.local")
}

pub fn notices(c: &Compiled) -> String {
    c.notices
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn forward(r: &pb::HttpRoute) -> &pb::Forward {
    match &r.action {
        Some(pb::http_route::Action::Forward(f)) => f,
        other => panic!("not a forward: {other:?}"),
    }
}

pub fn exact(s: &str) -> Option<pb::StringMatch> {
    Some(pb::StringMatch {
        kind: Some(pb::string_match::Kind::Exact(s.into())),
    })
}
pub fn prefix(s: &str) -> Option<pb::StringMatch> {
    Some(pb::StringMatch {
        kind: Some(pb::string_match::Kind::Prefix(s.into())),
    })
}
pub fn regex(s: &str) -> Option<pb::StringMatch> {
    Some(pb::StringMatch {
        kind: Some(pb::string_match::Kind::Regex(s.into())),
    })
}
