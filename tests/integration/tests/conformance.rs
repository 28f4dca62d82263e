//! layover's own conformance corpus (`testdata/conformance/corpus.rs`) through real Envoy
//! 1.40.0: every row with an `envoy` expectation runs against the wasm build and the
//! dynamic-module build — and the native translation when the row says it can express the
//! case — in both shapes (own bootstrap; the waypoint istiod generates, through HBONE). Each
//! row cites the istiod 1.30.3 line, Istio integration test or Gateway API conformance test it
//! encodes; `envoy-config/cli/tests/conformance.rs` runs the same rows through `layover eval`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use bytes::Bytes;
use http::Method;
use layover_integration::waypoint::{app_yaml, FilterBuild, Shape, Waypoint};
use layover_integration::{Backend, Echo, Reply};

#[macro_use]
mod rows {
    include!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/conformance/corpus.rs"
    ));
}

/// What `reply` shows that `want` does not: one line per difference.
fn check(reply: &Reply, want: &rows::Envoy) -> Vec<String> {
    let mut bad = Vec::new();
    if reply.status.as_u16() != want.status {
        bad.push(format!("status {} (want {})", reply.status, want.status));
    }
    if let Some(loc) = want.location {
        let got = reply
            .headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("<none>");
        if got != loc {
            bad.push(format!("location {got:?} (want {loc:?})"));
        }
    }
    if let Some(g) = want.grpc_status {
        let got = reply
            .headers
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("<none>");
        if got != g {
            bad.push(format!("grpc-status {got:?} (want {g:?})"));
        }
    }
    let upstream = want.backend.is_some()
        || want.path.is_some()
        || want.authority.is_some()
        || want.header.is_some();
    if !upstream {
        return bad;
    }
    let echo: Echo = match reply.json() {
        Ok(e) => e,
        Err(e) => {
            bad.push(format!("no backend answer: {e}"));
            return bad;
        }
    };
    if let Some(b) = want.backend {
        if echo.name != b {
            bad.push(format!("backend {:?} (want {b:?})", echo.name));
        }
    }
    if let Some(p) = want.path {
        if echo.path != p {
            bad.push(format!("upstream path {:?} (want {p:?})", echo.path));
        }
    }
    if let Some(a) = want.authority {
        if echo.authority != a {
            bad.push(format!(
                "upstream authority {:?} (want {a:?})",
                echo.authority
            ));
        }
    }
    if let Some((k, v)) = want.header {
        let got = echo.headers.get(k).map(String::as_str);
        if got != Some(v) {
            bad.push(format!("upstream {k} {got:?} (want {v:?})"));
        }
    }
    bad
}

async fn run(name: &str, row: rows::Row) {
    let Some(want) = &row.envoy else {
        return;
    };
    let a = Backend::start("a", "v1").await.unwrap();
    let b = Backend::start("b", "v1").await.unwrap();
    let yaml = format!(
        "{}{}---\n{}",
        app_yaml("a", &[&a]),
        app_yaml("b", &[&b]),
        row.yaml
    );
    let mut builds = vec![FilterBuild::Wasm, FilterBuild::DynamicModule];
    if row.native {
        builds.push(FilterBuild::Native);
    }
    let method = Method::from_bytes(row.req.method.as_bytes()).unwrap();
    let body = if method == Method::POST {
        Bytes::from_static(b"payload")
    } else {
        Bytes::new()
    };
    let mut report = String::new();
    for shape in [Shape::OwnBootstrap, Shape::Istiod] {
        for build in &builds {
            let wp = Waypoint::start_in(shape, *build, &yaml).await.unwrap();
            let reply = wp
                .send(
                    method.clone(),
                    row.req.host,
                    row.req.path,
                    row.req.headers,
                    body.clone(),
                )
                .await
                .unwrap_or_else(|e| panic!("{name} {} {}: {e}", shape.name(), build.name()));
            if std::env::var_os("CONFORMANCE_DEBUG").is_some() {
                eprintln!(
                    "{name} {} {}: {} {}",
                    shape.name(),
                    build.name(),
                    reply.status,
                    reply.text()
                );
            }
            for line in check(&reply, want) {
                report.push_str(&format!("  {} {}: {line}\n", shape.name(), build.name()));
            }
        }
    }
    assert!(
        report.is_empty(),
        "{name}: {} {}{}\n{report}  cite: {}",
        row.req.method,
        row.req.host,
        row.req.path,
        row.cite
    );
}

macro_rules! row {
    ($name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            run(stringify!($name), rows::$name()).await;
        }
    };
}

corpus!(row);
