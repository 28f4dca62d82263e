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
