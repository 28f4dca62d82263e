//! layover's own conformance corpus (`testdata/conformance/corpus.rs`) through `layover eval`:
//! the compiler and the core engine, one `#[test]` per row. Each row cites the istiod 1.30.3
//! line, Istio integration test or Gateway API conformance test it encodes; the same rows run
//! through real Envoy in `tests/integration/tests/conformance.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

#[macro_use]
mod rows {
    include!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/conformance/corpus.rs"
    ));
}

/// Services `a` and `b`, as the integration driver's `service_yaml` writes them.
const BASE: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: a, namespace: default}
spec:
  selector: {app: a}
  ports: [{name: http, port: 9080, targetPort: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: b, namespace: default}
spec:
  selector: {app: b}
  ports: [{name: http, port: 9080, targetPort: 9080}]
"#;

/// `shown` is a subset of `actual`: objects key by key, arrays element-wise with equal length.
fn contains(actual: &Value, shown: &Value, at: &str) -> Result<(), String> {
    match (actual, shown) {
        (Value::Object(a), Value::Object(s)) => s.iter().try_for_each(|(k, v)| {
            let got = a.get(k).ok_or_else(|| format!("{at}.{k}: missing"))?;
            contains(got, v, &format!("{at}.{k}"))
        }),
        (Value::Array(a), Value::Array(s)) if a.len() == s.len() => a
            .iter()
            .zip(s)
            .enumerate()
            .try_for_each(|(i, (x, y))| contains(x, y, &format!("{at}[{i}]"))),
        _ if actual == shown => Ok(()),
        _ => Err(format!("{at}: expected {shown}, eval says {actual}")),
    }
}

fn run(name: &str, row: &rows::Row) {
    let dir =
        std::env::temp_dir().join(format!("layover-conformance-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config: PathBuf = dir.join("config.yaml");
    std::fs::write(&config, format!("{BASE}---\n{}", row.yaml)).unwrap();
    let headers: serde_json::Map<String, Value> = row
        .req
        .headers
        .iter()
        .map(|(k, v)| ((*k).to_string(), Value::String((*v).to_string())))
        .collect();
    let host = row.req.host.split(':').next().unwrap_or_default();
    let request = serde_json::json!({
        "method": row.req.method,
        "authority": row.req.host,
        "path": row.req.path,
        "headers": headers,
        "destination": {
            "service": format!("{host}.default.svc.cluster.local"),
            "port": row.req.port,
        },
    });
    let req_file = dir.join("request.json");
    std::fs::write(&req_file, request.to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_layover"))
        .arg("eval")
        .arg("--config")
        .arg(&config)
        .arg("--request")
        .arg(&req_file)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{name}: eval failed: {}\n(cite: {})",
        String::from_utf8_lossy(&out.stderr),
        row.cite
    );
    let actual: Value = serde_json::from_str(stdout.trim()).unwrap();
    let shown: Value = serde_json::from_str(row.eval).unwrap();
    if let Err(e) = contains(&actual, &shown, name) {
        panic!("{e}\n  cite: {}\n  decision: {actual}", row.cite);
    }
}

macro_rules! row {
    ($name:ident) => {
        #[test]
        fn $name() {
            run(stringify!($name), &rows::$name());
        }
    };
}

corpus!(row);
