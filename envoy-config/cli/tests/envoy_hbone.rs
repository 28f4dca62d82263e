//! `layover envoy --hbone` end to end, running the built binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "layover-cli-envoy-hbone-{}-{name}",
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

#[test]
fn envoy_hbone_adds_the_terminate_chain() {
    let certs = tmp("certs");
    let o = layover(&[
        "certs",
        "--out",
        certs.to_str().unwrap(),
        "--trust-domain",
        "example.org",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let out = tmp("envoy");
    let o = layover(&[
        "envoy",
        "--config",
        "testdata/bookinfo",
        "--filter",
        "none",
        "--out-dir",
        out.to_str().unwrap(),
        "--hbone",
        certs.to_str().unwrap(),
        "--hbone-port",
        "25008",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let yaml = std::fs::read_to_string(out.join("envoy.yaml")).unwrap();
    for needle in [
        "name: connect_terminate",
        "port_value: 25008",
        "name: main_internal",
        "internal_listener: {}",
        "envoy.bootstrap.internal_listener",
        "allow_connect: true",
        "prefix: spiffe://example.org/",
    ] {
        assert!(yaml.contains(needle), "{needle} missing:\n{yaml}");
    }

    // Without certificates: says how to make them.
    let o = layover(&[
        "envoy",
        "--config",
        "testdata/bookinfo",
        "--filter",
        "none",
        "--out-dir",
        out.to_str().unwrap(),
        "--hbone",
        tmp("empty").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("layover certs --out"), "{err}");
}

/// `--istiod`: the waypoint istiod 1.30.3 generates, natively and with layover attached by the
/// route A EnvoyFilter (chain names, the filter state istiod records, no plain listener).
#[test]
fn envoy_istiod_writes_istiods_waypoint() {
    let certs = tmp("istiod-certs");
    let o = layover(&["certs", "--out", certs.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for (filter, needles) in [
        (
            "none",
            &["envoy.filters.http.rbac", "io.istio.peer_principal"][..],
        ),
        (
            "wasm",
            &["layover.hbone_peer_address", "filters.http.wasm.v3.Wasm"][..],
        ),
    ] {
        let out = tmp(&format!("istiod-{filter}"));
        let wasm = out.join("fake.wasm");
        std::fs::write(&wasm, b"\0asm").unwrap();
        let o = layover(&[
            "envoy",
            "--config",
            "testdata/bookinfo",
            "--istiod",
            "--hbone",
            certs.to_str().unwrap(),
            "--filter",
            filter,
            "--wasm",
            wasm.to_str().unwrap(),
            "--out-dir",
            out.to_str().unwrap(),
        ]);
        assert!(
            o.status.success(),
            "{filter}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let yaml = std::fs::read_to_string(out.join("envoy.yaml")).unwrap();
        for needle in [
            "name: main_internal",
            "\"inbound-vip|9080|http|reviews.bookinfo.svc.cluster.local\"",
            "name: \"inbound|http|9080\"",
            "envoy.filters.listener.original_dst",
        ]
        .iter()
        .chain(needles)
        {
            assert!(yaml.contains(needle), "{filter}: {needle} missing:\n{yaml}");
        }
        assert!(
            !yaml.contains("name: layover_http"),
            "{filter}: no plain listener"
        );
    }
    // --istiod needs the HBONE listener: clap says so before anything is written.
    let o = layover(&["envoy", "--config", "testdata/bookinfo", "--istiod"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--hbone"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
