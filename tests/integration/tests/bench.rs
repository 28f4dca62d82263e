//! The side-by-side benchmark's load generator (`src/bin/bench.rs`, run by `cargo xtask bench`)
//! against a real Envoy waypoint with both filter builds: it sends exactly the requested count
//! on the plain listener and through HBONE (one CONNECT tunnel per authority, HTTP/1.1 inside,
//! as ztunnel does — https://istio.io/latest/docs/ambient/architecture/hbone/), spreads them
//! over the request list, counts non-200 answers, and with `--check` stops at the first one and
//! names it. `bench ceiling` turns the same bootstrap into the "no policy" Envoy, which Envoy
//! accepts and which answers through both listeners. `bench istiod` writes the istiod-shaped
//! waypoint (natively and with each build attached by route A) and `bench ztunnel` stands in for
//! the destination ztunnel: the load generator drives that waypoint through HBONE to the service
//! VIP, and every request reaches the backend through HBONE out. The benchmark itself never runs
//! here.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use layover_bootstrap::{bootstrap, endpoints_from_registry, BootstrapOptions, Hbone};
use layover_bootstrap::{CONNECT_TERMINATE, LISTENER_NAME};
use layover_certs::{write_cert, Identity, MeshCa, MeshDir};
use layover_integration::waypoint::{app_yaml, compile_yaml, policy_json, FilterBuild};
use layover_integration::{Backend, Envoy, Launch};

/// `/deny` on `reviews` is refused with 403, everything else allowed (a DENY policy:
/// https://istio.io/latest/docs/reference/config/security/authorization-policy/).
const AUTHZ: &str = "
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-deny, namespace: default}
spec:
  targetRefs: [{kind: Service, group: \"\", name: reviews}]
  action: DENY
  rules:
  - to: [{operation: {paths: [\"/deny\"]}}]
";

const AUTHORITY: &str = "reviews.default.svc.cluster.local:9080";

/// A `layover certs`-style directory: mesh root, the waypoint's and `default/bench`'s certs.
fn mesh_dir(dir: &Path) -> Hbone {
    let ca = MeshCa::new("cluster.local").unwrap();
    let mesh = MeshDir::new(dir);
    std::fs::write(mesh.root_cert(), ca.root_pem()).unwrap();
    let waypoint = Identity::new("default", "waypoint").unwrap();
    write_cert(&mesh.waypoint(), &ca.issue(&waypoint).unwrap()).unwrap();
    for sa in ["bench", "ztunnel"] {
        let id = Identity::new("default", sa).unwrap();
        write_cert(&mesh.workload(&id), &ca.issue(&id).unwrap()).unwrap();
    }
    Hbone {
        port: Launch::ANY_PORT,
        cert_chain: mesh.waypoint().cert_chain,
        private_key: mesh.waypoint().private_key,
        trusted_ca: mesh.root_cert(),
        trust_domain: "cluster.local".into(),
        upstream_port: layover_contract::HBONE_PORT,
    }
}

/// Runs `bench` with `args`; (success, stdout, stderr).
fn bench(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(args)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// `bench load` against `addr` (HBONE with the certs in `certs` when given); the parsed line.
fn load(
    addr: std::net::SocketAddr,
    targets: &Path,
    requests: u64,
    certs: Option<&Path>,
    check: bool,
) -> Result<serde_json::Value, String> {
    let addr = addr.to_string();
    let requests = requests.to_string();
    let mut args = vec![
        "load",
        "--addr",
        &addr,
        "--targets",
        targets.to_str().unwrap(),
        "--requests",
        &requests,
        "--connections",
        "3",
    ];
    if let Some(dir) = certs {
        args.extend([
            "--hbone",
            dir.to_str().unwrap(),
            "--identity",
            "default/bench",
        ]);
    }
    if check {
        args.push("--check");
    }
    let (ok, out, err) = bench(&args);
    if !ok {
        return Err(err);
    }
    Ok(serde_json::from_str(out.trim()).unwrap())
}

async fn drives_both_listeners(build: FilterBuild) {
    let backend = Backend::start("reviews-v1", "v1").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let hbone = mesh_dir(dir.path());
    let compiled = compile_yaml(&(app_yaml("reviews", &[&backend]) + AUTHZ)).unwrap();
    let filter = build.http_filter(&policy_json(&compiled).unwrap()).unwrap();
    let opts = BootstrapOptions {
        admin_port: Launch::ANY_PORT,
        listener_port: Launch::ANY_PORT,
        layover_filter: Some(filter),
        hbone: Some(hbone),
        ..BootstrapOptions::default()
    };
    let config = bootstrap(&compiled.policy, &endpoints_from_registry(&compiled), &opts).unwrap();
    let envoy = Envoy::start_with(&build.envoy_options().unwrap(), |_| {
        Ok::<_, std::convert::Infallible>(config.clone())
    })
    .await
    .unwrap();
    let plain = envoy.listener_addr_of(LISTENER_NAME).unwrap();
    let tunnel = envoy.listener_addr_of(CONNECT_TERMINATE).unwrap();

    let targets = dir.path().join("targets.tsv");
    std::fs::write(
        &targets,
        format!(
            "# two requests, one with a header\n{AUTHORITY}\treviews:9080\t/reviews/1\n\
             {AUTHORITY}\treviews:9080\t/reviews/2?x=1\tx-tenant: t1\n"
        ),
    )
    .unwrap();
    let certs = dir.path();
    for (via, hbone) in [("plain", None), ("hbone", Some(certs))] {
        let before = backend.request_count();
        let addr = if hbone.is_some() { tunnel } else { plain };
        let r = load(addr, &targets, 101, hbone, true).unwrap_or_else(|e| panic!("{via}: {e}"));
        assert_eq!(r["requests"], 101, "{via}: {r}");
        assert_eq!(r["errors"], 0, "{via}: {r}");
        assert!(r["p50_us"].as_u64().unwrap() > 0, "{via}: {r}");
        assert!(r["p99_us"].as_u64() >= r["p50_us"].as_u64(), "{via}: {r}");
        // Exactly the requested count reached the backend, spread over both paths.
        assert_eq!(backend.request_count() - before, 101, "{via}");
    }

    // A denied request: counted without --check, named with it.
    let denied = dir.path().join("denied.tsv");
    std::fs::write(
        &denied,
        format!("{AUTHORITY}\treviews:9080\t/reviews/1\n{AUTHORITY}\treviews:9080\t/deny\n"),
    )
    .unwrap();
    for (via, addr, hbone) in [("plain", plain, None), ("hbone", tunnel, Some(certs))] {
        let r = load(addr, &denied, 10, hbone, false).unwrap();
        assert_eq!(r["errors"], 5, "{via}: {r}");
        let err = load(addr, &denied, 10, hbone, true).unwrap_err();
        assert!(
            err.contains("reviews:9080 /deny") && err.contains("answered 403"),
            "{via}: {err}"
        );
    }
    drop(envoy);

    // The "no policy" ceiling of the same bootstrap: no filter, one route to one cluster; the
    // denied path now reaches the backend on both listeners.
    let original = dir.path().join("envoy.yaml");
    std::fs::write(&original, &config).unwrap();
    let ceiling = dir.path().join("ceiling.yaml");
    let cluster = &compiled.policy.clusters[0].name;
    let (ok, _, err) = bench(&[
        "ceiling",
        "--in",
        original.to_str().unwrap(),
        "--out",
        ceiling.to_str().unwrap(),
        "--cluster",
        cluster,
    ]);
    assert!(ok, "{err}");
    let text = std::fs::read_to_string(&ceiling).unwrap();
    assert!(!text.contains("layover_module") && !text.contains("envoy.filters.http.wasm"));
    let envoy = Envoy::start_with(&build.envoy_options().unwrap(), |_| {
        Ok::<_, std::convert::Infallible>(text.clone())
    })
    .await
    .unwrap();
    let plain = envoy.listener_addr_of(LISTENER_NAME).unwrap();
    let tunnel = envoy.listener_addr_of(CONNECT_TERMINATE).unwrap();
    for (via, addr, hbone) in [("plain", plain, None), ("hbone", tunnel, Some(certs))] {
        let r = load(addr, &denied, 10, hbone, true).unwrap_or_else(|e| panic!("{via}: {e}"));
        assert_eq!(r["errors"], 0, "{via}: {r}");
    }
    let (ok, _, err) = bench(&["ceiling", "--in", targets.to_str().unwrap()]);
    assert!(!ok && err.contains("--out is required"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_generator_drives_plain_and_hbone_wasm() {
    drives_both_listeners(FilterBuild::Wasm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_generator_drives_plain_and_hbone_dynamic_module() {
    drives_both_listeners(FilterBuild::DynamicModule).await;
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `bench ztunnel` on `port`, killed when dropped.
struct Ztunnel(std::process::Child);

impl Ztunnel {
    async fn start(certs: &Path, port: u16) -> Ztunnel {
        let child = Command::new(env!("CARGO_BIN_EXE_bench"))
            .args(["ztunnel", "--certs", certs.to_str().unwrap()])
            .args(["--identity", "default/ztunnel", "--port", &port.to_string()])
            .spawn()
            .unwrap();
        let z = Ztunnel(child);
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return z;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("bench ztunnel did not listen on {port}");
    }
}

impl Drop for Ztunnel {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The istiod shape as `cargo xtask bench` drives it: `bench istiod` writes the waypoint for
/// `build`, the load goes through HBONE to the service VIP (a hostname authority selects no
/// chain: `main_internal` matches by VIP), and each request reaches the backend through
/// `connect_originate` and the `bench ztunnel` stand-in; the DENY policy answers 403 natively
/// (istiod's RBAC) and with layover alike.
async fn drives_the_istiod_shape(build: &str) {
    let backend = Backend::start("reviews-v1", "v1").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    mesh_dir(dir.path());
    let certs = dir.path();
    let yaml = app_yaml("reviews", &[&backend]).replacen(
        "spec:\n  selector:",
        "spec:\n  clusterIP: 10.96.0.10\n  selector:",
        1,
    ) + AUTHZ;
    let istio = dir.path().join("istio.yaml");
    std::fs::write(&istio, &yaml).unwrap();
    let ztunnel_port = free_port();
    let _ztunnel = Ztunnel::start(certs, ztunnel_port).await;
    let out = dir.path().join(format!("{build}.yaml"));
    let wasm = layover_integration::waypoint::wasm_module()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let (ok, _, err) = bench(&[
        "istiod",
        "--config",
        istio.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--build",
        build,
        "--wasm",
        &wasm,
        "--certs",
        certs.to_str().unwrap(),
        "--hbone-port",
        "0",
        "--admin-port",
        "0",
        "--ztunnel-port",
        &ztunnel_port.to_string(),
    ]);
    assert!(ok, "{build}: {err}");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        !text.contains(LISTENER_NAME),
        "{build}: no plain listener in istiod's shape"
    );
    let options = match build {
        "dynamic-module" => FilterBuild::DynamicModule,
        _ => FilterBuild::Wasm,
    }
    .envoy_options()
    .unwrap();
    let envoy = Envoy::start_with(&options, |_| {
        Ok::<_, std::convert::Infallible>(text.clone())
    })
    .await
    .unwrap_or_else(|e| panic!("{build}: {e}"));
    let tunnel = envoy.listener_addr_of(CONNECT_TERMINATE).unwrap();

    let targets = dir.path().join("vip.tsv");
    std::fs::write(
        &targets,
        "10.96.0.10:9080\treviews:9080\t/reviews/1\n10.96.0.10:9080\treviews:9080\t/deny\n",
    )
    .unwrap();
    let before = backend.request_count();
    // 18 requests over 3 connections, each alternating the two paths: 9 allowed, 9 denied.
    let r =
        load(tunnel, &targets, 18, Some(certs), false).unwrap_or_else(|e| panic!("{build}: {e}"));
    assert_eq!(
        (r["requests"].as_u64(), r["errors"].as_u64()),
        (Some(18), Some(9)),
        "{build}: {r}"
    );
    assert_eq!(
        backend.request_count() - before,
        9,
        "{build}: the allowed half arrives"
    );

    // By hostname no chain matches: the CONNECT goes nowhere.
    let by_name = dir.path().join("name.tsv");
    std::fs::write(&by_name, format!("{AUTHORITY}\treviews:9080\t/reviews/1\n")).unwrap();
    assert!(
        load(tunnel, &by_name, 2, Some(certs), true).is_err(),
        "{build}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istiod_shape_native() {
    drives_the_istiod_shape("native").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istiod_shape_wasm() {
    drives_the_istiod_shape("wasm").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istiod_shape_dynamic_module() {
    drives_the_istiod_shape("dynamic-module").await;
}
