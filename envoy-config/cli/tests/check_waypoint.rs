//! `layover check-waypoint`, running the built binary on the committed dump of our own
//! istiod-shaped waypoint (`testdata/config-dumps/`, written by the integration test
//! `check_waypoint.rs`) with the route A EnvoyFilter.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const DUMP: &str = "testdata/config-dumps/istiod-waypoint.json";
const ROUTE_A: &str = "testdata/config-dumps/istiod-waypoint-route-a.yaml";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("layover-cli-check-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn layover(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_layover"))
        .current_dir(repo())
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const CHAIN: &str = "inbound-vip|9080|http|reviews.default.svc.cluster.local";

#[test]
fn route_a_applies_everywhere_and_the_bootstrap_is_written() {
    let dir = tmp("route-a");
    let out = dir.join("waypoint.yaml");
    let o = layover(&[
        "check-waypoint",
        "--config-dump",
        DUMP,
        "--envoyfilter",
        ROUTE_A,
        "--out",
        out.to_str().unwrap(),
        "--strict",
    ]);
    let stdout = text(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", text(&o.stderr));
    // The waypoint comes from the dump's node.
    assert!(
        stdout.starts_with("waypoint default/waypoint (Istio 1.30.3)"),
        "{stdout}"
    );
    assert!(stdout.contains("EDS → STATIC"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "listener main_internal / chain {CHAIN} / filter envoy.filters.network.http_connection_manager (replaced)"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("2 patch(es) applied, 0 matched nothing"),
        "{stdout}"
    );
    let bootstrap = std::fs::read_to_string(&out).unwrap();
    assert!(bootstrap.contains("layover.hbone_peer_address"));
    assert!(!bootstrap.contains("dynamic_resources"));
    // The HBONE keys admin redacted became throwaway files beside the bootstrap.
    let secrets = dir.join("waypoint.yaml.secrets");
    assert!(secrets.join("listener_connect_terminate.key").is_file());
    // With an Envoy at hand (`LAYOVER_ENVOY`), the written bootstrap loads.
    if let Some(envoy) = std::env::var_os("LAYOVER_ENVOY") {
        let v = Command::new(envoy)
            .args(["--mode", "validate", "-c", out.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(v.status.success(), "{}", text(&v.stderr));
    }
}

#[test]
fn json_report_and_a_patch_that_matches_nothing() {
    let dir = tmp("nomatch");
    let ef = dir.join("typo.yaml");
    std::fs::write(
        &ef,
        "apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: typo, namespace: default}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: waypoint}]
  configPatches:
  - applyTo: CLUSTER
    match: {context: SIDECAR_INBOUND, cluster: {service: reveiws.default.svc.cluster.local}}
    patch: {operation: MERGE, value: {connect_timeout: 2s}}
",
    )
    .unwrap();
    let out = dir.join("waypoint.json");
    let args = [
        "check-waypoint",
        "--config-dump",
        DUMP,
        "--envoyfilter",
        ROUTE_A,
        ef.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--json",
    ];
    let o = layover(&args);
    assert!(o.status.success(), "a warning only: {}", text(&o.stderr));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["unmatched"], 1);
    let typo = report["envoy_filters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "typo")
        .unwrap();
    assert_eq!(
        typo["patches"][0]["matched_nothing"],
        "MERGE CLUSTER; service reveiws.default.svc.cluster.local"
    );
    // JSON by extension.
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert!(written["static_resources"]["listeners"].is_array());

    let mut strict = args.to_vec();
    strict.push("--strict");
    let o = layover(&strict);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
}

#[test]
fn an_invalid_envoy_filter_is_an_error_naming_file_object_and_field() {
    let dir = tmp("invalid");
    let ef = dir.join("bad.yaml");
    std::fs::write(
        &ef,
        "apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: bad, namespace: default}
spec:
  configPatches:
  - applyTo: HTTP_FILTER
    patch: {operation: INSERT_SOMEWHERE, value: {name: x}}
",
    )
    .unwrap();
    let out = dir.join("waypoint.yaml");
    let o = layover(&[
        "check-waypoint",
        "--config-dump",
        DUMP,
        "--envoyfilter",
        ef.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains("bad.yaml: document 1 (EnvoyFilter default/bad)"),
        "{err}"
    );
    assert!(
        err.contains("spec.configPatches[0].patch.operation"),
        "{err}"
    );
    assert!(err.contains("INSERT_SOMEWHERE"), "{err}");
    assert!(!out.exists(), "nothing written");
}

#[test]
fn a_dump_without_a_named_waypoint_needs_the_flag() {
    let dir = tmp("nowaypoint");
    let mut dump: Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join(DUMP)).unwrap()).unwrap();
    dump["configs"][0]["bootstrap"]["node"]
        .as_object_mut()
        .unwrap()
        .remove("metadata");
    let file = dir.join("dump.json");
    std::fs::write(&file, serde_json::to_vec(&dump).unwrap()).unwrap();
    let out = dir.join("waypoint.yaml");
    let base = [
        "check-waypoint",
        "--config-dump",
        file.to_str().unwrap(),
        "--envoyfilter",
        ROUTE_A,
        "--out",
        out.to_str().unwrap(),
    ];
    let o = layover(&base);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("pass --waypoint namespace/name"));
    let mut with = base.to_vec();
    with.extend(["--waypoint", "default/waypoint"]);
    let o = layover(&with);
    assert!(o.status.success(), "{}", text(&o.stderr));
}
