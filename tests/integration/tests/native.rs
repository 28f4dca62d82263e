//! The native translation (`layover_bootstrap::native`) is configuration the real Envoy 1.40 accepts:
//! the bootstrap for `testdata/bookinfo` and for every upstream Istio sample (each compiled with
//! `bookinfo/platform`, as `envoy-config/compiler/tests/samples.rs` compiles them) passes
//! `envoy --mode validate`, on the plain listener and with mTLS plus the HBONE chain
//! (`main_internal` carries the same native route configuration). What the configuration does
//! is tested by the integration suite (`FilterBuild::Native`) and `differential.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use layover_bootstrap::native::native_bootstrap;
use layover_bootstrap::{endpoints_from_registry, BootstrapOptions, DownstreamTls, Hbone};
use layover_integration::validate_config;

fn repo() -> PathBuf {
    layover_integration::repo_root()
}

fn samples_dir() -> PathBuf {
    let d = repo().join("../shared/istio-samples");
    assert!(
        d.join("README.md").is_file(),
        "istio samples not found at {} (expected ../shared/istio-samples next to the repo)",
        d.display()
    );
    d
}

fn all_yaml(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            all_yaml(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(p);
        }
    }
}

/// The plain listener, and mTLS with HBONE termination and in-mesh (HBONE) endpoints (Envoy
/// loads the certificates while validating, so `certs` holds real ones).
fn variants(compiled: &layover_compiler::Compiled, certs: &Path) -> Vec<(String, String)> {
    let plain = BootstrapOptions {
        admin_port: 0,
        listener_port: 0,
        ..BootstrapOptions::default()
    };
    let endpoints = endpoints_from_registry(compiled);
    let mut out = vec![(
        "plain".to_string(),
        native_bootstrap(&compiled.policy, &endpoints, &plain).unwrap(),
    )];
    let tls = DownstreamTls {
        cert_chain: certs.join("cert-chain.pem"),
        private_key: certs.join("key.pem"),
        trusted_ca: certs.join("root-cert.pem"),
        trust_domain: "cluster.local".into(),
    };
    let hbone = BootstrapOptions {
        hbone: Some(Hbone {
            port: 0,
            ..Hbone::from_tls(&tls)
        }),
        downstream_tls: Some(tls),
        ..plain
    };
    let in_mesh: Vec<_> = endpoints.iter().cloned().map(|e| e.with_hbone()).collect();
    out.push((
        "mtls+hbone".to_string(),
        native_bootstrap(&compiled.policy, &in_mesh, &hbone).unwrap(),
    ));
    out
}

/// A mesh CA's root and the waypoint's certificate, as `cert-chain.pem`, `key.pem` and
/// `root-cert.pem` in one directory.
fn certs() -> tempfile::TempDir {
    use layover_certs::{CertFiles, Identity, MeshCa};
    let ca = MeshCa::new("cluster.local").unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("root-cert.pem"), ca.root_pem()).unwrap();
    let wp = ca
        .issue(&Identity::new("default", "waypoint").unwrap())
        .unwrap();
    let files = CertFiles {
        cert_chain: dir.path().join("cert-chain.pem"),
        private_key: dir.path().join("key.pem"),
    };
    layover_certs::write_cert(&files, &wp).unwrap();
    dir
}

#[test]
fn bookinfo_native_bootstrap_passes_envoy_validate() {
    let compiled = layover_compiler::compile_paths(&[repo().join("testdata/bookinfo")]).unwrap();
    assert!(!compiled.policy.services.is_empty());
    let certs = certs();
    for (what, config) in variants(&compiled, certs.path()) {
        validate_config(&config)
            .unwrap_or_else(|e| panic!("testdata/bookinfo ({what}): {e}\n{config}"));
    }
}

#[test]
fn every_istio_sample_native_bootstrap_passes_envoy_validate() {
    let dir = samples_dir();
    let mut files = Vec::new();
    all_yaml(&dir, &mut files);
    files.sort();
    let platform = dir.join("bookinfo/platform");
    let certs = certs();
    let mut failures = Vec::new();
    let mut validated = 0;
    for file in files.iter().filter(|f| !f.starts_with(&platform)) {
        // Samples the compiler refuses are covered by envoy-config/compiler/tests/samples.rs.
        let Ok(compiled) = layover_compiler::compile_paths(&[file.clone(), platform.clone()])
        else {
            continue;
        };
        for (what, config) in variants(&compiled, certs.path()) {
            match validate_config(&config) {
                Ok(()) => validated += 1,
                Err(e) => failures.push(format!("{} ({what}): {e}", file.display())),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // Every sample of samples.rs's table compiles; a sharp drop means files went missing.
    assert!(validated >= 40, "only {validated} bootstraps validated");
}
