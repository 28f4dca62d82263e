//! `layover compile` end to end, running the built binary over testdata.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("layover-cli-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn layover(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_layover"))
        .current_dir(repo())
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn compile_writes_binary_policy() {
    let out = tmp("bin").join("policy.pb");
    let o = layover(&["compile", "testdata/bookinfo", "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let bytes = std::fs::read(&out).unwrap();
    let p: layover_proto::v1::Policy = prost::Message::decode(bytes.as_slice()).unwrap();
    assert_eq!(p.schema_version, 1);
    assert_eq!(p.waypoint, "bookinfo/waypoint");
    assert_eq!(p.services.len(), 4);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(
            "4 services, 3 authorization policies, 10 clusters for waypoint bookinfo/waypoint"
        ),
        "{err}"
    );
}

#[test]
fn compile_json_is_proto3_json() {
    let out = tmp("json").join("policy.json");
    let o = layover(&[
        "compile",
        "testdata/bookinfo/",
        "-o",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&out).unwrap();
    let p: layover_proto::v1::Policy = serde_json::from_str(&text).unwrap();
    assert_eq!(p.services.len(), 4);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        v["services"][3]["routeSource"],
        "ROUTE_SOURCE_VIRTUAL_SERVICE"
    );
    assert_eq!(v["schemaVersion"], 1);
}

#[test]
fn compile_to_stdout() {
    let o = layover(&["compile", "testdata/bookinfo", "-o", "-", "--json"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["waypoint"], "bookinfo/waypoint");
}

#[test]
fn notices_go_to_stderr() {
    let out = tmp("notice").join("p.pb");
    let o = layover(&[
        "compile",
        "../shared/istio-samples/bookinfo/networking/bookinfo-gateway.yaml",
        "../shared/istio-samples/bookinfo/platform",
        "-o",
        out.to_str().unwrap(),
    ]);
    if !repo().join("../shared/istio-samples").is_dir() {
        panic!("../shared/istio-samples is missing");
    }
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("notice: ../shared/istio-samples/bookinfo/networking/bookinfo-gateway.yaml: document 2 (VirtualService default/bookinfo): spec.gateways: skipped: does not apply to the waypoint"), "{err}");
    assert!(o.stdout.is_empty());
}

#[test]
fn errors_write_nothing_and_fail() {
    let dir = tmp("err");
    let out = dir.join("policy.pb");
    let o = layover(&[
        "compile",
        "testdata/invalid/unknown-field.yaml",
        "testdata/invalid/custom-action.yaml",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("error: testdata/invalid/unknown-field.yaml: document 2 (VirtualService default/reviews): spec.http[0].route[0].wieght: unknown field `wieght`"), "{err}");
    assert!(err.contains("error: testdata/invalid/custom-action.yaml: document 2 (AuthorizationPolicy default/ext-authz): spec.action: CUSTOM (ext_authz) is not supported yet"), "{err}");
    assert!(err.contains("2 errors; nothing written"), "{err}");
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "no temporary file left behind"
    );
}

#[test]
fn error_keeps_an_existing_output_untouched() {
    let out = tmp("keep").join("policy.pb");
    std::fs::write(&out, b"old").unwrap();
    let o = layover(&[
        "compile",
        "testdata/invalid/malformed-yaml.yaml",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains(
        "error: testdata/invalid/malformed-yaml.yaml: document 1: invalid YAML (line 7, column 7)"
    ));
    assert_eq!(std::fs::read(&out).unwrap(), b"old");
}

#[test]
fn missing_input_is_an_error() {
    let out = tmp("missing").join("p.pb");
    let o = layover(&[
        "compile",
        "testdata/does-not-exist.yaml",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr)
        .contains("error: testdata/does-not-exist.yaml: cannot read file"));
    assert!(!out.exists());
}

#[test]
fn eval_is_dispatched() {
    // The eval command is wired to eval::run; whatever it answers, errors go to stderr with a
    // non-zero exit and success prints to stdout.
    let o = layover(&[
        "eval",
        "--config",
        "testdata/bookinfo",
        "--requests",
        "/dev/null",
    ]);
    if !o.status.success() {
        assert!(String::from_utf8_lossy(&o.stderr).starts_with("error: "));
    }
    let o = layover(&["eval", "--config", "testdata/bookinfo"]);
    assert!(!o.status.success(), "--request or --requests is required");
}

#[test]
fn compile_target_envoy_native_prints_routes_filters_and_clusters() {
    // `--target envoy-native`: what istiod would push for this waypoint, as plain Envoy config
    // (layover_bootstrap::native); JSON with --json, YAML by default.
    let o = layover(&[
        "compile",
        "testdata/bookinfo",
        "--target",
        "envoy-native",
        "--json",
        "-o",
        "-",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let vhosts = v["route_config"]["virtual_hosts"].as_array().unwrap();
    assert!(vhosts
        .iter()
        .any(|vh| vh["name"] == "reviews.bookinfo.svc.cluster.local:9080"));
    let filters: Vec<&str> = v["http_filters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert!(
        filters.contains(&"envoy.filters.http.rbac.allow"),
        "{filters:?}"
    );
    assert_eq!(filters.last(), Some(&"envoy.filters.http.router"));
    assert_eq!(v["clusters"].as_array().unwrap().len(), 10);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("native Envoy configuration"), "{err}");

    let o = layover(&[
        "compile",
        "testdata/bookinfo",
        "--target",
        "envoy-native",
        "-o",
        "-",
    ]);
    assert!(o.status.success());
    let yaml = String::from_utf8_lossy(&o.stdout);
    assert!(yaml.starts_with("route_config:"), "{yaml}");

    // The default target is still the policy.
    let o = layover(&["compile", "testdata/bookinfo", "--json", "-o", "-"]);
    let p: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(p["schemaVersion"], 1);
}

#[test]
fn envoy_filter_none_writes_the_native_translation() {
    let out = tmp("native-envoy");
    let o = layover(&[
        "envoy",
        "--config",
        "testdata/bookinfo",
        "--filter",
        "none",
        "--out-dir",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let yaml = std::fs::read_to_string(out.join("envoy.yaml")).unwrap();
    assert!(yaml.contains("name: layover-native"), "{yaml}");
    assert!(yaml.contains("envoy.filters.http.rbac.allow"), "{yaml}");
    assert!(!yaml.contains("x-layover-cluster"), "{yaml}");
    assert!(!yaml.contains("layover_module"), "{yaml}");
}
