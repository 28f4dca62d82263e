//! Reload under load: the policy changes while clients keep sending requests, through Envoy's
//! own extension config discovery over a file (`layover_bootstrap::reload`), with each filter build.
//!
//! - zero failed requests across every swap (ECDS applies a configuration to new streams only;
//!   nothing drains — https://www.envoyproxy.io/docs/envoy/v1.40.0/configuration/overview/extension);
//! - the new policy is in effect within 2 s of the atomic rename;
//! - an invalid policy is rejected by the filter (wasm `on_configure` false, dynamic module
//!   `config_new` null), Envoy keeps the previous configuration and counts `config_fail`;
//! - after that, a valid policy still applies.
//!
//! Each run writes `target/reload/report-<build>.md` (requests, failures, switch latencies);
//! `cargo xtask reload` runs this file and prints the reports.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use layover_bootstrap::reload::{ecds_filter, ecds_update, write_atomically};
use layover_integration::waypoint::{
    app_yaml, compile_yaml, policy_json, subsets_yaml, waypoint_bootstrap, FilterBuild,
};
use layover_integration::{Backend, Echo, Envoy, HttpClient};

/// Concurrent clients of the constant load.
const CLIENTS: usize = 4;
/// What "in effect" must not exceed (the bar).
const SWITCH_BOUND: Duration = Duration::from_secs(2);

fn yaml(backends: &[Backend], subset: &str) -> String {
    let mut y = app_yaml("reviews", &backends.iter().collect::<Vec<_>>());
    y.push_str(&subsets_yaml("reviews", &["v1", "v2"]));
    // https://istio.io/latest/docs/reference/config/networking/virtual-service/ — the whole
    // service goes to one subset; the swap moves it.
    y.push_str(&format!(
        "---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [reviews]
  http:
  - route: [{{destination: {{host: reviews, subset: {subset}}}}}]
"
    ));
    y
}

/// One answered request: when it was sent and answered, and the subset that answered (or the
/// failure).
#[derive(Debug, Clone)]
struct Sample {
    sent: Instant,
    done: Instant,
    outcome: Result<String, String>,
}

#[derive(Default)]
struct Load {
    samples: Mutex<Vec<Sample>>,
    stop: AtomicBool,
}

fn report_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/reload")
}

/// How long after `at` the old policy stayed in effect: the latest send time of a request
/// answered by `old` (zero when none), and when the first request answered by `new` was sent.
/// Also checks that no request sent after that latest `old` one got `old` again (by
/// construction) nor anything but `new`.
fn switch_latency(samples: &[Sample], at: Instant, old: &str, new: &str) -> (Duration, Duration) {
    let after: Vec<&Sample> = samples.iter().filter(|s| s.sent >= at).collect();
    let last_old = after
        .iter()
        .filter(|s| s.outcome.as_deref() == Ok(old))
        .map(|s| s.sent - at)
        .max()
        .unwrap_or(Duration::ZERO);
    let first_new = after
        .iter()
        .filter(|s| s.outcome.as_deref() == Ok(new))
        .map(|s| s.sent - at)
        .min()
        .unwrap_or(Duration::MAX);
    for s in after
        .iter()
        .filter(|s| s.sent > at + last_old && s.outcome.is_ok())
    {
        assert_eq!(s.outcome.as_deref(), Ok(new), "neither policy answered");
    }
    (last_old, first_new)
}

async fn wait_for(samples: &Load, since: Instant, subset: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = samples
            .samples
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.sent >= since && s.outcome.as_deref() == Ok(subset))
            .count();
        if seen >= 20 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{subset} never answered after the swap"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn stat(envoy: &Envoy, suffix: &str) -> u64 {
    let text = HttpClient::http1()
        .get(&envoy.admin_url("/stats?filter=extension_config_discovery"))
        .await
        .unwrap()
        .text();
    text.lines()
        .filter(|l| l.split(':').next().is_some_and(|n| n.ends_with(suffix)))
        .filter_map(|l| l.rsplit_once(": ")?.1.trim().parse::<u64>().ok())
        .sum()
}

async fn reload_under_load(build: FilterBuild) {
    let tag = build.name();
    let backends = vec![
        Backend::start("reviews-v1", "v1").await.unwrap(),
        Backend::start("reviews-v2", "v2").await.unwrap(),
    ];
    let to_v1 = compile_yaml(&yaml(&backends, "v1")).unwrap();
    let to_v2 = compile_yaml(&yaml(&backends, "v2")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let resource = dir.path().join("layover.ecds.json");
    let filter = build.http_filter(&policy_json(&to_v1).unwrap()).unwrap();
    let (entry, initial) = ecds_filter(&filter, &resource).unwrap();
    write_atomically(&resource, &initial).unwrap();
    let envoy = Envoy::start_with(&build.envoy_options().unwrap(), |launch| {
        waypoint_bootstrap(&to_v1, entry, launch)
    })
    .await
    .unwrap_or_else(|e| panic!("[{tag}] {e}"));

    // Constant load: CLIENTS keep-alive clients, back to back.
    let load = Arc::new(Load::default());
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let load = Arc::clone(&load);
        let url = envoy.url("/");
        tasks.push(tokio::spawn(async move {
            let client = HttpClient::http1();
            while !load.stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let outcome = match client.get_with(&url, &[("host", "reviews:9080")]).await {
                    Ok(r) if r.status == 200 => r
                        .json::<Echo>()
                        .map(|e| e.subset)
                        .map_err(|e| e.to_string()),
                    Ok(r) => Err(format!("{} {}", r.status, r.text())),
                    Err(e) => Err(e.to_string()),
                };
                let done = Instant::now();
                load.samples.lock().unwrap().push(Sample {
                    sent,
                    done,
                    outcome,
                });
            }
        }));
    }
    let started = Instant::now();
    wait_for(&load, started, "v1").await;

    // 1. v1 → v2.
    let swap1 = Instant::now();
    let update = ecds_update(
        &build.http_filter(&policy_json(&to_v2).unwrap()).unwrap(),
        "2",
    );
    write_atomically(&resource, &update.unwrap()).unwrap();
    wait_for(&load, swap1, "v2").await;

    // 2. An invalid policy: rejected, v2 stays.
    let mut bad: serde_json::Value = serde_json::from_str(&policy_json(&to_v1).unwrap()).unwrap();
    bad["schemaVersion"] = 999.into();
    let fails_before = stat(&envoy, ".config_fail").await;
    let invalid_at = Instant::now();
    let update = ecds_update(&build.http_filter(&bad.to_string()).unwrap(), "3");
    write_atomically(&resource, &update.unwrap()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while stat(&envoy, ".config_fail").await <= fails_before {
        assert!(
            Instant::now() < deadline,
            "[{tag}] the invalid policy was never rejected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Keep the load on the rejected configuration for a while.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // 3. Back to v1: reloading still works after a rejection.
    let swap3 = Instant::now();
    let update = ecds_update(
        &build.http_filter(&policy_json(&to_v1).unwrap()).unwrap(),
        "4",
    );
    write_atomically(&resource, &update.unwrap()).unwrap();
    wait_for(&load, swap3, "v1").await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    load.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let samples = load.samples.lock().unwrap().clone();
    let failures: Vec<&Sample> = samples.iter().filter(|s| s.outcome.is_err()).collect();
    let latency1 = switch_latency(
        &samples
            .iter()
            .filter(|s| s.sent < invalid_at)
            .cloned()
            .collect::<Vec<_>>(),
        swap1,
        "v1",
        "v2",
    );
    // Requests sent after the invalid policy was written and answered before the next valid
    // one was: whatever answered them ran under the rejected update. (Judged by the answer time:
    // a request sent just before the next swap may reach Envoy after it.)
    let during_invalid: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.sent >= invalid_at && s.done < swap3)
        .collect();
    let latency3 = switch_latency(&samples, swap3, "v2", "v1");
    let elapsed = started.elapsed();

    let report = format!(
        "# Reload under load — {tag}\n\n\
         | measure | value |\n|---|---|\n\
         | requests | {} over {:.1} s, {CLIENTS} concurrent clients |\n\
         | failed requests | {} |\n\
         | v1 → v2: first v2 / last v1 request after the rename | {} ms / {} ms |\n\
         | invalid policy: requests while it was rejected | {} (all v2: {}) |\n\
         | v2 → v1 after the rejection: first v1 / last v2 | {} ms / {} ms |\n\
         | Envoy `config_fail` after the invalid policy | {} |\n",
        samples.len(),
        elapsed.as_secs_f64(),
        failures.len(),
        latency1.1.as_millis(),
        latency1.0.as_millis(),
        during_invalid.len(),
        during_invalid
            .iter()
            .all(|s| s.outcome.as_deref() == Ok("v2")),
        latency3.1.as_millis(),
        latency3.0.as_millis(),
        stat(&envoy, ".config_fail").await,
    );
    std::fs::create_dir_all(report_dir()).unwrap();
    std::fs::write(report_dir().join(format!("report-{tag}.md")), &report).unwrap();
    println!("{report}");

    assert!(failures.is_empty(), "[{tag}] failed requests: {failures:?}");
    assert!(
        latency1.0 < SWITCH_BOUND,
        "[{tag}] v1 → v2 took {latency1:?}"
    );
    assert!(
        latency3.0 < SWITCH_BOUND,
        "[{tag}] v2 → v1 took {latency3:?}"
    );
    assert!(!during_invalid.is_empty());
    for s in &during_invalid {
        assert_eq!(
            s.outcome.as_deref(),
            Ok("v2"),
            "[{tag}] the invalid policy changed routing"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_swaps_under_load_without_failures_wasm() {
    reload_under_load(FilterBuild::Wasm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_swaps_under_load_without_failures_dynamic_module() {
    reload_under_load(FilterBuild::DynamicModule).await;
}
