//! `layover manifests` and `layover envoy`'s EnvoyFilter handling, running the built binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "layover-cli-manifests-{}-{name}",
        std::process::id()
    ));
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

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn manifests_are_written_per_route_and_parse() {
    let out = tmp("ok");
    let o = layover(&[
        "manifests",
        "--config",
        "testdata/bookinfo",
        "--filter",
        "wasm",
        "--wasm-url",
        "oci://ghcr.io/example/layover-wasm:0.1.0",
        "--drop-in",
        "--module-image",
        "ghcr.io/example/layover-module:0.1.0",
        "--out-dir",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    for (file, kinds) in [
        ("envoyfilter.yaml", &["EnvoyFilter"][..]),
        ("wasmplugin.yaml", &["WasmPlugin"][..]),
        (
            "drop-in-waypoint.yaml",
            &[
                "GatewayClass",
                "Gateway",
                "ServiceAccount",
                "ConfigMap",
                "Deployment",
                "Service",
            ][..],
        ),
    ] {
        assert!(
            err.contains(&format!("wrote {}", out.join(file).display())),
            "{err}"
        );
        let text = std::fs::read_to_string(out.join(file)).unwrap();
        let got: Vec<String> = serde_yaml_ng::Deserializer::from_str(&text)
            .map(|d| {
                let v: serde_json::Value = serde::Deserialize::deserialize(d).unwrap();
                v["kind"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(got, kinds, "{file}");
    }
    // Without --issuer the Secret is the operator's: no Certificate is emitted.
    let text = std::fs::read_to_string(out.join("drop-in-waypoint.yaml")).unwrap();
    assert!(!text.contains("kind: Certificate"));
    assert!(text.contains("secretName: waypoint-layover-certs"));
}

#[test]
fn manifests_refuse_inconsistent_flags_and_write_nothing() {
    let out = tmp("bad");
    let dir = out.join("m");
    let rows: &[(&[&str], &str)] = &[
        (
            &["--wasm-url", "oci://x/y:1"],
            "--wasm-url needs --filter wasm",
        ),
        (
            &[
                "--filter",
                "wasm",
                "--cluster-selection",
                "specifier-plugin",
            ],
            "--cluster-selection specifier-plugin needs --filter dynamic-module",
        ),
        (&["--drop-in"], "--drop-in needs --module-image"),
    ];
    for (extra, want) in rows {
        let mut args = vec![
            "manifests",
            "--config",
            "testdata/bookinfo",
            "--out-dir",
            dir.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let o = layover(&args);
        assert!(!o.status.success(), "{extra:?}");
        assert!(stderr(&o).contains(want), "{extra:?}: {}", stderr(&o));
        assert!(!dir.exists(), "{extra:?} wrote {}", dir.display());
    }
    // A configuration without a waypoint Gateway has nothing to target.
    let o = layover(&[
        "manifests",
        "--config",
        "testdata/bookinfo/02-services.yaml",
        "--out-dir",
        dir.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no waypoint Gateway"), "{}", stderr(&o));
    assert!(!dir.exists());
}

#[test]
fn envoy_rejects_an_invalid_envoy_filter_and_writes_nothing() {
    let dir = tmp("ef");
    std::fs::write(
        dir.join("ef.yaml"),
        "apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: bad, namespace: bookinfo}
spec:
  configPatches:
  - applyTo: CLUSTER
    patch: {operation: ADD, value: oops}
",
    )
    .unwrap();
    let out = dir.join("out");
    let o = layover(&[
        "envoy",
        "--config",
        "testdata/bookinfo",
        dir.to_str().unwrap(),
        "--filter",
        "none",
        "--out-dir",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("(EnvoyFilter bookinfo/bad): spec.configPatches[0].patch.value: expected an object (an Envoy CLUSTER in proto JSON), found a string"),
        "{err}"
    );
    assert!(err.contains("nothing written"), "{err}");
    assert!(!out.exists());
}

/// The EnvoyFilter `layover manifests` writes for `--istio-version` (none: the default).
fn emitted_envoy_filter(name: &str, version: Option<&str>) -> serde_json::Value {
    let out = tmp(name);
    let mut args = vec![
        "manifests",
        "--config",
        "testdata/bookinfo",
        "--out-dir",
        out.to_str().unwrap(),
    ];
    if let Some(v) = version {
        args.extend(["--istio-version", v]);
    }
    let o = layover(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(out.join("envoyfilter.yaml")).unwrap();
    serde_yaml_ng::from_str(&text).unwrap()
}

// Regression (issue 13, failure 1): from Istio 1.27.0 istiod attaches an EnvoyFilter to a
// waypoint only through targetRefs — pilot/pkg/model/policyattachment.go:139-148 @ 1.30.3,
// "waypoints never use selector" — so the default (pinned 1.30.3) output targets the Gateway.
#[test]
fn manifests_attach_by_target_refs_by_default() {
    let ef = emitted_envoy_filter("attach-default", None);
    assert_eq!(
        ef["spec"]["targetRefs"],
        serde_json::json!([{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "waypoint"}])
    );
    assert!(ef["spec"].get("workloadSelector").is_none(), "{ef}");
}

// Up to 1.26.x istiod reads only workloadSelector (push_context.go:2334-2342 @ 1.26.8); a
// targetRefs-only object would land on every proxy of the namespace.
#[test]
fn manifests_attach_by_selector_for_istio_1_26() {
    let ef = emitted_envoy_filter("attach-126", Some("1.26.8"));
    assert_eq!(
        ef["spec"]["workloadSelector"]["labels"]["gateway.networking.k8s.io/gateway-name"],
        "waypoint"
    );
    assert!(ef["spec"].get("targetRefs").is_none(), "{ef}");
}

#[test]
fn an_unknown_istio_version_is_a_clear_error() {
    let out = tmp("attach-bad");
    let o = layover(&[
        "manifests",
        "--config",
        "testdata/bookinfo",
        "--istio-version",
        "1.40",
        "--out-dir",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("unknown Istio version `1.40`") && err.contains("1.30.3"),
        "{err}"
    );
    assert!(!out.join("envoyfilter.yaml").exists());
}

#[test]
fn version_names_the_pinned_istio_release() {
    let o = layover(&["--version"]);
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("Istio 1.30.3 semantics"), "{out}");
}
