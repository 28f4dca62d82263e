//! Fail closed: when the layover filter itself fails, the request is denied, never forwarded
//! undecided — under the real Envoy 1.40 with each build.
//!
//! - wasm: a trap in the VM (the `test-panic` build panics on `x-layover-test-panic`) answers
//!   that request 503 (Envoy's `wasm_fail_stream`), the backend never sees it, and with
//!   `failure_policy: FAIL_RELOAD` later requests get a fresh VM and are decided normally
//!   (https://www.envoyproxy.io/docs/envoy/v1.40.0/api-v3/extensions/wasm/v3/wasm.proto —
//!   FailurePolicy; Istio WasmPlugin `failStrategy`: FAIL_CLOSE / FAIL_RELOAD).
//! - dynamic module: the same panic is caught at the FFI boundary and answered 500 (see
//!   tests/integration/tests/dynamic_module.rs `a_panic_in_the_filter_fails_that_request_and_envoy_keeps_serving`).
//! - the internal errors that cannot be triggered from outside Envoy (failed host calls,
//!   unreadable filter state) are unit-tested against fake hosts: filters/adapter/src/tests.rs
//!   `internal_errors_deny_with_500`, filters/adapter/src/connection/tests.rs
//!   `connection_with_unreadable_hbone_state_fails_closed`,
//!   filters/dynamic-module/src/exports/tests.rs `failed_host_calls_and_bad_filter_state_fail_closed`.
//!
//! Needs the `test-panic` wasm (`$LAYOVER_WASM_PANIC`, else
//! `target/test-panic-wasm/wasm32-wasip1/wasm-release/layover_wasm.wasm`); `cargo xtask test`
//! builds and exports it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use layover_integration::waypoint::{app_yaml, compile_yaml, policy_json, waypoint_bootstrap};
use layover_integration::{Backend, Echo, Envoy, EnvoyOptions, HttpClient};

fn panic_wasm() -> PathBuf {
    let path = std::env::var_os("LAYOVER_WASM_PANIC")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../target/test-panic-wasm/wasm32-wasip1/wasm-release/layover_wasm.wasm")
        });
    assert!(
        path.is_file(),
        "{}: missing\nhint: cargo build -p layover-wasm --target wasm32-wasip1 --profile wasm-release --features test-panic --target-dir target/test-panic-wasm (cargo xtask test does it)",
        path.display()
    );
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wasm_trap_denies_that_request_and_a_fresh_vm_serves_the_next() {
    let backend = Backend::start("reviews-v1", "v1").await.unwrap();
    let compiled = compile_yaml(&app_yaml("reviews", &[&backend])).unwrap();
    let filter = layover_bootstrap::wasm_filter(&panic_wasm(), &policy_json(&compiled).unwrap());
    let opts = EnvoyOptions {
        log_level: "warn".into(),
        ..EnvoyOptions::default()
    };
    let envoy = Envoy::start_with(&opts, |launch| {
        waypoint_bootstrap(&compiled, filter, launch)
    })
    .await
    .unwrap();
    let client = HttpClient::http1();
    let url = envoy.url("/");
    let get = |panic: bool| {
        let client = client.clone();
        let url = url.clone();
        async move {
            let mut headers = vec![("host", "reviews:9080")];
            if panic {
                headers.push(("x-layover-test-panic", "1"));
            }
            client.get_with(&url, &headers).await.unwrap()
        }
    };

    assert_eq!(
        get(false).await.status,
        200,
        "the test-panic build serves normally"
    );
    let served = backend.request_count();

    // Every trapping request is denied — on either worker, fresh VM or not.
    for _ in 0..4 {
        let boom = get(true).await;
        assert_eq!(boom.status, 503, "a trap must deny: {}", boom.text());
        assert_eq!(
            backend.request_count(),
            served,
            "a trapping request reached the backend"
        );
    }

    // FAIL_RELOAD: the failed VM is replaced; requests are decided (and allowed) again. Until
    // then a request on the failed worker is denied too (503), never forwarded undecided.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut denied_meanwhile = 0;
    let mut ok_in_a_row = 0;
    while ok_in_a_row < 10 {
        let reply = get(false).await;
        match reply.status.as_u16() {
            200 => {
                let echo: Echo = reply.json().unwrap();
                assert_eq!(echo.subset, "v1");
                ok_in_a_row += 1;
            }
            503 => {
                denied_meanwhile += 1;
                ok_in_a_row = 0;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("unexpected {other}: {}", reply.text()),
        }
        assert!(
            Instant::now() < deadline,
            "no fresh VM within 20 s ({denied_meanwhile} requests denied meanwhile)"
        );
    }
    let log = envoy.log();
    assert!(
        log.contains("test-panic"),
        "the trap was not logged:\n{}",
        envoy.log_tail(40)
    );
}
