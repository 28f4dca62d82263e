//! `layover certs` and `layover envoy --mtls` end to end, running the built binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("layover-cli-certs-{}-{name}", std::process::id()));
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
fn certs_then_envoy_mtls_wires_the_listener() {
    let certs = tmp("certs");
    let o = layover(&[
        "certs",
        "--out",
        certs.to_str().unwrap(),
        "--trust-domain",
        "example.org",
        "--identity",
        "bookinfo/bookinfo-productpage",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("spiffe://example.org/ns/bookinfo/sa/bookinfo-productpage"),
        "{stdout}"
    );
    for f in [
        "root-cert.pem",
        "trust-domain",
        "waypoint/cert-chain.pem",
        "waypoint/key.pem",
        "bookinfo/bookinfo-productpage/cert-chain.pem",
        "bookinfo/bookinfo-productpage/key.pem",
    ] {
        assert!(certs.join(f).is_file(), "{f} missing");
    }

    let out = tmp("envoy");
    let o = layover(&[
        "envoy",
        "--config",
        "testdata/bookinfo",
        "--filter",
        "none",
        "--out-dir",
        out.to_str().unwrap(),
        "--mtls",
        certs.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let yaml = std::fs::read_to_string(out.join("envoy.yaml")).unwrap();
    let root = std::fs::canonicalize(certs.join("root-cert.pem")).unwrap();
    assert!(yaml.contains("require_client_certificate: true"), "{yaml}");
    assert!(yaml.contains(&root.display().to_string()), "{yaml}");
    // The trust domain comes from the directory's trust-domain file.
    assert!(yaml.contains("prefix: spiffe://example.org/"), "{yaml}");
}

#[test]
fn envoy_mtls_without_certificates_says_how_to_make_them() {
    let empty = tmp("empty");
    let out = tmp("envoy-empty");
    let o = layover(&[
        "envoy",
        "--config",
        "testdata/bookinfo",
        "--filter",
        "none",
        "--out-dir",
        out.to_str().unwrap(),
        "--mtls",
        empty.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("waypoint certificate"), "{err}");
    assert!(err.contains("layover certs --out"), "{err}");
}

#[test]
fn certs_rejects_malformed_identities() {
    let o = layover(&[
        "certs",
        "--out",
        tmp("bad").to_str().unwrap(),
        "--identity",
        "no-slash",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("expected namespace/service-account"));
}
