//! The hooks end to end over the fake host (`abi::fake`): the exported `extern "C"` entry points
//! are called the way Envoy calls them, with the fake standing in for Envoy's callbacks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::ffi::c_void;
use std::time::{Duration, Instant};

use crate::abi::fake::{self, envoy_ptr, LAST_SCHEDULER, STREAM};
use crate::abi::{body_status, headers_status, Attribute, Buffer, Level, ABI_VERSION};
use crate::exports as s;
use crate::hooks::{fail_closed, guard, response_headers, Filter};
use crate::host::{HttpFilter, SpecifierContext, DELAY_EVENT};

const YAML: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /slow}}]
    fault: {delay: {fixedDelay: 50ms, percentage: {value: 100}}}
    route: [{destination: {host: reviews, subset: v2}}]
  - match: [{uri: {prefix: /deny}}]
    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
    route: [{destination: {host: reviews, subset: v1}}]
  - route: [{destination: {host: reviews, subset: v1}}]
"#;

const V1: &str = "inbound-vip|9080|http/v1|reviews.default.svc.cluster.local";
const V2: &str = "inbound-vip|9080|http/v2|reviews.default.svc.cluster.local";

fn policy_json() -> String {
    let bundle = layover_compiler::load_str("t.yaml", YAML).unwrap();
    let compiled = layover_compiler::compile(&bundle).unwrap();
    serde_json::to_string(&compiled.policy).unwrap()
}

fn buf(bytes: &[u8]) -> Buffer {
    fake::buffer(bytes)
}

/// The module filter behind a pointer `on_http_filter_new` returned.
fn filter_ref<'a>(raw: *const c_void) -> &'a Filter {
    // SAFETY: tests pass pointers from on_http_filter_new that are not destroyed yet.
    unsafe { s::module_filter(raw) }.unwrap()
}

/// Runs `f` with an `HttpFilter` over the fake stream.
fn with_envoy<T>(f: impl FnOnce(HttpFilter<'_>) -> T) -> T {
    f(HttpFilter::new(fake::filter_ptr()))
}

/// Runs `f` with a `SpecifierContext` over the fake stream.
fn with_specifier<T>(f: impl FnOnce(SpecifierContext<'_>) -> T) -> T {
    f(SpecifierContext::new(fake::specifier_ptr()))
}

/// A configured module and one stream with the given request path.
struct Stream {
    config: *const c_void,
    filter: *const c_void,
}

impl Stream {
    fn new(path: &str) -> Stream {
        Stream::with_config(path, policy_json())
    }

    fn with_config(path: &str, json: String) -> Stream {
        // SAFETY: the fake upholds the hook contract: pointers from config_new/filter_new, live.
        let config = unsafe {
            s::envoy_dynamic_module_on_http_filter_config_new(
                envoy_ptr(),
                buf(b"layover"),
                buf(json.as_bytes()),
            )
        };
        assert!(!config.is_null());
        // SAFETY: the fake upholds the hook contract: pointers from config_new/filter_new, live.
        let filter = unsafe { s::envoy_dynamic_module_on_http_filter_new(config, envoy_ptr()) };
        assert!(!filter.is_null());
        STREAM.with(|st| {
            let mut st = st.borrow_mut();
            *st = fake::Stream::default();
            st.request = [
                (":method", "GET"),
                (":path", path),
                (":authority", "reviews:9080"),
                (":scheme", "http"),
                ("x-layover-cluster", "client-choice"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            st.attributes = vec![
                (Attribute::SourceAddress as u32, "10.9.9.9:1".into()),
                (fake::DIRECT_REMOTE, "10.1.2.3:4567".into()),
            ];
        });
        Stream { config, filter }
    }

    fn request_headers(&self) -> u32 {
        // SAFETY: the fake upholds the hook contract: pointers from config_new/filter_new, live.
        unsafe {
            s::envoy_dynamic_module_on_http_filter_request_headers(envoy_ptr(), self.filter, true)
        }
    }

    fn header(&self, name: &str) -> Vec<String> {
        STREAM.with(|st| {
            st.borrow()
                .request
                .iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .collect()
        })
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // SAFETY: the fake upholds the hook contract: pointers from config_new/filter_new, live.
        unsafe { s::envoy_dynamic_module_on_http_filter_destroy(self.filter) };
        // SAFETY: the fake upholds the hook contract: pointers from config_new/filter_new, live.
        unsafe { s::envoy_dynamic_module_on_http_filter_config_destroy(self.config) };
    }
}

fn commits() -> Vec<u64> {
    LAST_SCHEDULER.with(|l| l.borrow().as_ref().unwrap().lock().unwrap().clone())
}

fn wait_for_commit() -> Vec<u64> {
    let start = Instant::now();
    while commits().is_empty() && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(5));
    }
    commits()
}

#[test]
fn program_init_returns_the_abi_version() {
    let v = s::envoy_dynamic_module_on_program_init();
    assert!(!v.is_null());
    assert_eq!(ABI_VERSION, b"v0.2.0\0");
}

#[test]
fn invalid_policy_is_rejected_with_a_logged_reason() {
    STREAM.with(|st| *st.borrow_mut() = fake::Stream::default());
    // SAFETY: the fake upholds the hook contract: pointers from config_new/filter_new, live.
    let config = unsafe {
        s::envoy_dynamic_module_on_http_filter_config_new(
            envoy_ptr(),
            buf(b"layover"),
            buf(b"{not json"),
        )
    };
    assert!(config.is_null());
    let logs = STREAM.with(|st| st.borrow().logs.clone());
    assert!(
        logs.iter()
            .any(|(level, m)| *level == Level::Critical as u32
                && m.contains("not a valid layover policy")),
        "{logs:?}"
    );
}

#[test]
fn routes_by_rewriting_the_cluster_header_and_clearing_the_route_cache() {
    let stream = Stream::new("/r");
    assert_eq!(stream.request_headers(), headers_status::CONTINUE);
    assert_eq!(stream.header("x-layover-cluster"), [V1]);
    assert!(STREAM.with(|st| st.borrow().route_cache_cleared) >= 1);
    assert_eq!(
        // SAFETY: the fake upholds the hook contract: pointers from config_new/filter_new, live.
        unsafe {
            s::envoy_dynamic_module_on_http_filter_request_body(envoy_ptr(), stream.filter, true)
        },
        body_status::CONTINUE
    );
}

#[test]
fn an_abort_is_a_local_reply_and_stops_the_request() {
    let stream = Stream::new("/deny");
    assert_eq!(stream.request_headers(), headers_status::STOP_ITERATION);
    let sent = STREAM.with(|st| st.borrow().sent.clone()).unwrap();
    assert_eq!(sent.0, 418);
    assert_eq!(sent.2, b"fault filter abort");
    assert_eq!(
        // SAFETY: the fake upholds the hook contract: pointers from config_new/filter_new, live.
        unsafe {
            s::envoy_dynamic_module_on_http_filter_request_body(envoy_ptr(), stream.filter, true)
        },
        body_status::STOP_AND_BUFFER
    );
}

#[test]
fn a_delay_commits_through_the_timer_then_continues() {
    let stream = Stream::new("/slow");
    let started = Instant::now();
    assert_eq!(stream.request_headers(), headers_status::STOP_ITERATION);
    // The cluster is chosen before the delay; the request is held meanwhile.
    assert_eq!(stream.header("x-layover-cluster"), [V2]);
    assert_eq!(
        // SAFETY: the fake upholds the hook contract: pointers from config_new/filter_new, live.
        unsafe {
            s::envoy_dynamic_module_on_http_filter_request_body(envoy_ptr(), stream.filter, false)
        },
        body_status::STOP_AND_BUFFER
    );
    assert_eq!(wait_for_commit(), [DELAY_EVENT]);
    assert!(started.elapsed() >= Duration::from_millis(50));
    // SAFETY: the fake upholds the hook contract: pointers from config_new/filter_new, live.
    unsafe {
        s::envoy_dynamic_module_on_http_filter_scheduled(envoy_ptr(), stream.filter, DELAY_EVENT)
    };
    let (continued, deleted) = STREAM.with(|st| {
        let st = st.borrow();
        (st.continued, st.schedulers_deleted)
    });
    assert_eq!(continued, 1);
    assert_eq!(
        deleted, 1,
        "the scheduler is deleted on the worker once used"
    );
    assert_eq!(
        // SAFETY: the fake upholds the hook contract: pointers from config_new/filter_new, live.
        unsafe {
            s::envoy_dynamic_module_on_http_filter_request_body(envoy_ptr(), stream.filter, true)
        },
        body_status::CONTINUE
    );
}

#[test]
fn a_stream_destroyed_during_its_delay_is_never_committed() {
    let stream = Stream::new("/slow");
    assert_eq!(stream.request_headers(), headers_status::STOP_ITERATION);
    let commits_of_this_stream = LAST_SCHEDULER.with(|l| l.borrow().clone()).unwrap();
    drop(stream);
    assert_eq!(STREAM.with(|st| st.borrow().schedulers_deleted), 1);
    // Past the deadline: the timer found a revoked slot (committing the freed fake scheduler
    // would be a use-after-free).
    std::thread::sleep(Duration::from_millis(150));
    assert!(commits_of_this_stream.lock().unwrap().is_empty());
}

#[test]
fn response_hook_reentered_during_our_own_reply_leaves_state_alone() {
    let stream = Stream::new("/r");
    let filter = filter_ref(stream.filter);
    // Envoy re-enters the response hook from inside send_response while the request hook holds
    // the state: the re-entrant call must neither panic nor touch the state.
    let held = filter.state.borrow_mut();
    let status = with_envoy(|envoy| response_headers(filter, envoy));
    assert_eq!(status, headers_status::CONTINUE);
    assert!(STREAM.with(|st| st.borrow().response.is_empty()));
    assert!(STREAM.with(|st| st.borrow().logs.iter().all(|(_, m)| !m.contains("panic"))));
    drop(held);
}

#[test]
fn a_panic_is_caught_logged_and_fails_closed() {
    STREAM.with(|st| *st.borrow_mut() = fake::Stream::default());
    let got = guard("test_hook", || -> u32 { panic!("boom") }, || 7);
    assert_eq!(got, 7);
    let logs = STREAM.with(|st| st.borrow().logs.clone());
    assert!(logs
        .iter()
        .any(|(_, m)| m.contains("panic in test_hook") && m.contains("boom")));

    let stream = Stream::new("/r");
    let filter = filter_ref(stream.filter);
    with_envoy(|envoy| fail_closed(filter, envoy));
    let sent = STREAM.with(|st| st.borrow().sent.clone()).unwrap();
    assert_eq!(sent.0, 500);
    assert_eq!(sent.3, "layover_internal_error");
}

// Fail closed (README "Security"): internal errors in the hook deny with 500, never forward.
#[test]
fn failed_host_calls_and_bad_filter_state_fail_closed() {
    let sent = || STREAM.with(|st| st.borrow().sent.clone());
    // Envoy refuses to remove the client's cluster header.
    let stream = Stream::new("/r");
    STREAM.with(|st| st.borrow_mut().refuse_header = Some("x-layover-cluster".into()));
    assert_eq!(stream.request_headers(), headers_status::STOP_ITERATION);
    let (status, _, body, details) = sent().unwrap();
    assert_eq!(
        (status, body.as_slice()),
        (500, b"layover: internal error".as_slice())
    );
    assert_eq!(details, "layover");
    drop(stream);
    // Envoy refuses a router control.
    let stream = Stream::new("/r");
    STREAM.with(|st| st.borrow_mut().refuse_header = Some("x-envoy-max-retries".into()));
    assert_eq!(stream.request_headers(), headers_status::STOP_ITERATION);
    assert_eq!(sent().unwrap().0, 500);
    drop(stream);
    // The header map comes back empty (a failed read).
    let stream = Stream::new("/r");
    STREAM.with(|st| st.borrow_mut().request.clear());
    assert_eq!(stream.request_headers(), headers_status::STOP_ITERATION);
    assert_eq!(sent().unwrap().0, 500);
    drop(stream);
    // HBONE filter state that is present but unreadable.
    let stream = Stream::new("/r");
    STREAM.with(|st| {
        st.borrow_mut().filter_state = vec![
            (
                layover_contract::filter_state::CONNECT_AUTHORITY.into(),
                "not an authority".into(),
            ),
            (
                layover_contract::filter_state::PEER_PRINCIPAL.into(),
                "spiffe://cluster.local/ns/a/sa/b".into(),
            ),
        ]
    });
    assert_eq!(stream.request_headers(), headers_status::STOP_ITERATION);
    assert_eq!(sent().unwrap().0, 500);
    assert_eq!(stream.header("x-layover-cluster"), ["client-choice"]);
    drop(stream);
    // Re-entered request hook (state already borrowed): denied, not hung.
    let stream = Stream::new("/r");
    let filter = filter_ref(stream.filter);
    let held = filter.state.borrow_mut();
    assert_eq!(stream.request_headers(), headers_status::STOP_ITERATION);
    assert_eq!(sent().unwrap().0, 500);
    drop(held);
}

#[test]
fn metadata_mode_writes_the_cluster_to_metadata_and_refreshes_only_the_cluster() {
    let wrapped = format!(
        "{{\"cluster_selection\":\"metadata\",\"policy\":{}}}",
        policy_json()
    );
    let stream = Stream::with_config("/r", wrapped);
    assert_eq!(stream.request_headers(), headers_status::CONTINUE);
    // The client's header is gone and no cluster header was written.
    assert!(stream.header("x-layover-cluster").is_empty());
    STREAM.with(|st| {
        let st = st.borrow();
        assert_eq!(
            st.metadata,
            [("layover".to_string(), "cluster".to_string(), V1.to_string())]
        );
        assert_eq!(st.route_cluster_cache_cleared, 1);
    });

    // The cluster specifier reads it back and selects it.
    // SAFETY: the fake upholds the hook contract: buffers valid for the call.
    let config = unsafe {
        s::envoy_dynamic_module_on_cluster_specifier_config_new(
            envoy_ptr(),
            buf(b"layover"),
            buf(b""),
        )
    };
    assert!(!config.is_null());
    // SAFETY: a live config from config_new and a (fake) context pointer.
    let selected =
        unsafe { s::envoy_dynamic_module_on_cluster_specifier_select(config, envoy_ptr()) };
    assert!(selected);
    assert_eq!(
        STREAM.with(|st| st.borrow().selected_cluster.clone()),
        Some(V1.to_string())
    );

    // Without a decision in metadata (the first resolution, before the filter), no selection.
    STREAM.with(|st| {
        let mut st = st.borrow_mut();
        st.metadata.clear();
        st.selected_cluster = None;
    });
    let none = with_specifier(|ctx| {
        crate::hooks::specifier_select(&crate::hooks::SpecifierConfig::for_tests(), ctx)
    });
    assert!(!none);
    assert_eq!(STREAM.with(|st| st.borrow().selected_cluster.clone()), None);
    // SAFETY: destroyed once.
    unsafe { s::envoy_dynamic_module_on_cluster_specifier_config_destroy(config) };
}

#[test]
fn header_mode_still_clears_the_whole_route_cache() {
    let wrapped = format!(
        "{{\"cluster_selection\":\"header\",\"policy\":{}}}",
        policy_json()
    );
    let stream = Stream::with_config("/r", wrapped);
    assert_eq!(stream.request_headers(), headers_status::CONTINUE);
    assert_eq!(stream.header("x-layover-cluster"), [V1]);
    STREAM.with(|st| {
        let st = st.borrow();
        assert!(st.metadata.is_empty());
        assert!(st.route_cache_cleared >= 1);
        assert_eq!(st.route_cluster_cache_cleared, 0);
    });
}
