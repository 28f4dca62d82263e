//! layover as a proxy-wasm HTTP filter.
//!
//! This crate is only host plumbing: the policy arrives as plugin configuration and is compiled
//! once in `on_configure`; per request, [`layover_adapter::StreamFilter`] decides and applies
//! the decision through [`WasmHost`], a [`StreamHost`] over proxy-wasm host calls. Fault delays
//! pause the request and are resumed from the root context's tick.
//!
//! Host calls go through `proxy_wasm::hostcalls` (which return `Result`) rather than the
//! trait helpers (which panic on a host error): a failed host call is logged, never a trap.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use layover_adapter::{
    connection, internal_error_reply, load_config, ConnectionHost, Entropy, InternalError,
    LocalReply, StreamFilter, StreamHost, Verdict,
};
use layover_contract::{filter_state, FilterMode};
use layover_core::CompiledPolicy;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType};

/// How often the root context checks for elapsed fault delays while any are pending.
const TICK: Duration = Duration::from_millis(5);

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// A request held by a fault delay.
struct Delayed {
    context_id: u32,
    deadline_ms: u64,
    /// The abort to send when the delay ends, if the abort fault fired too.
    reply: Option<LocalReply>,
}

/// State shared by the root context and its HTTP contexts (one VM = one worker thread).
#[derive(Default)]
struct Shared {
    delayed: Vec<Delayed>,
    entropy: Option<Entropy>,
}

#[derive(Default)]
struct Root {
    policy: Option<Rc<CompiledPolicy>>,
    /// The configuration's mode (route B's WasmPlugin: authorization only).
    mode: FilterMode,
    shared: Rc<RefCell<Shared>>,
}

fn log(level: LogLevel, message: &str) {
    // Logging is best effort: there is nowhere else to report its failure.
    let _ = hostcalls::log(level, message);
}

fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => Vec::new(),
            Err(status) => {
                log(
                    LogLevel::Critical,
                    &format!("layover: cannot read the plugin configuration: {status:?}"),
                );
                return false;
            }
        };
        // A bare policy or the `{"mode": …, "policy": …}` wrapper (istiod hands a WasmPlugin's
        // `pluginConfig` over as this JSON text, `pilot/pkg/model/extensions.go:228-236 @
        // 1.30.3`).
        match load_config(&config) {
            Ok(loaded) => {
                self.policy = Some(Rc::new(loaded.policy));
                self.mode = loaded.mode;
                let seed = hostcalls::get_current_time()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map_or(0x5eed, |d| d.as_nanos() as u64);
                self.shared.borrow_mut().entropy = Some(Entropy::new(seed));
                log(
                    LogLevel::Info,
                    &format!("layover: policy loaded (mode: {})", loaded.mode.wire_name()),
                );
                true
            }
            Err(message) => {
                // Returning false makes Envoy reject the configuration: never run half a policy.
                log(LogLevel::Critical, &format!("layover: {message}"));
                false
            }
        }
    }

    fn on_tick(&mut self) {
        let now = now_ms();
        let due: Vec<Delayed> = {
            let mut shared = self.shared.borrow_mut();
            let (due, pending): (Vec<_>, Vec<_>) =
                shared.delayed.drain(..).partition(|d| d.deadline_ms <= now);
            shared.delayed = pending;
            if shared.delayed.is_empty() {
                let _ = hostcalls::set_tick_period(Duration::ZERO);
            }
            due
        };
        for d in due {
            // The stream may have ended during its delay: then the context is gone and there
            // is nothing to resume.
            if hostcalls::set_effective_context(d.context_id).is_err() {
                continue;
            }
            match d.reply {
                Some(reply) => WasmHost.send_local_reply(&reply),
                None => {
                    if let Err(status) = hostcalls::resume_http_request() {
                        log(
                            LogLevel::Debug,
                            &format!("layover: resume after delay failed: {status:?}"),
                        );
                    }
                }
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http {
            context_id,
            policy: self.policy.clone(),
            shared: Rc::clone(&self.shared),
            filter: StreamFilter::new(self.mode),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http {
    context_id: u32,
    policy: Option<Rc<CompiledPolicy>>,
    shared: Rc<RefCell<Shared>>,
    filter: StreamFilter,
}

impl Context for Http {}

fn property_string(path: &[&str]) -> Option<String> {
    hostcalls::get_property(path.to_vec())
        .ok()
        .flatten()
        .and_then(|b| String::from_utf8(b).ok())
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        #[cfg(feature = "test-panic")]
        test_panic();
        let mut host = WasmHost;
        let Some(policy) = self.policy.clone() else {
            // No policy means on_configure failed and Envoy should not run us; fail closed.
            log(LogLevel::Error, "layover: no policy loaded, request denied");
            host.send_local_reply(&internal_error_reply());
            return Action::Pause;
        };
        // Unreadable HBONE state is an internal error (the request fails closed).
        let conn = connection(&host, policy.needs());
        let entropy = self
            .shared
            .borrow_mut()
            .entropy
            .get_or_insert_with(|| Entropy::new(u64::from(self.context_id)))
            .next_u64();
        match self
            .filter
            .on_request_headers(&policy, conn.as_ref(), entropy, &mut host)
        {
            Verdict::Continue => Action::Continue,
            Verdict::Replied => Action::Pause,
            Verdict::Delay(ms) => {
                let reply = self.filter.take_pending_reply();
                let mut shared = self.shared.borrow_mut();
                if shared.delayed.is_empty() {
                    let _ = hostcalls::set_tick_period(TICK);
                }
                shared.delayed.push(Delayed {
                    context_id: self.context_id,
                    deadline_ms: now_ms().saturating_add(ms),
                    reply,
                });
                Action::Pause
            }
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.filter.on_response_headers(&mut WasmHost);
        Action::Continue
    }
}

#[cfg(feature = "test-panic")]
#[allow(clippy::panic)]
fn test_panic() {
    if let Ok(Some(_)) = hostcalls::get_map_value(
        MapType::HttpRequestHeaders,
        layover_contract::TEST_PANIC_HEADER,
    ) {
        panic!("test-panic: x-layover-test-panic requested a panic");
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        // A stream that ends while delayed leaves no entry behind.
        if let Ok(mut shared) = self.shared.try_borrow_mut() {
            shared.delayed.retain(|d| d.context_id != self.context_id);
        }
    }
}

/// [`StreamHost`] over proxy-wasm host calls for the current (effective) HTTP context.
struct WasmHost;

fn report(what: &str, result: Result<(), proxy_wasm::types::Status>) {
    if let Err(status) = result {
        log(
            LogLevel::Warn,
            &format!("layover: host call {what} failed: {status:?}"),
        );
    }
}

/// A request-side host call: its failure fails the request closed (the adapter answers 500).
fn required(
    what: &str,
    name: &str,
    result: Result<(), proxy_wasm::types::Status>,
) -> Result<(), InternalError> {
    result.map_err(|status| InternalError(format!("host call {what} `{name}` failed: {status:?}")))
}

/// Each property read is one host call that copies into VM memory; `layover_adapter::connection`
/// reads each at most once, and only when it needs it.
impl ConnectionHost for WasmHost {
    fn filter_state(&self, key: &str) -> Option<String> {
        property_string(&["filter_state", key])
    }
    fn peer_uri_san(&self) -> Option<String> {
        property_string(&["connection", "uri_san_peer_certificate"])
    }
    fn direct_remote_address(&self) -> Option<String> {
        // proxy-wasm has no property for the direct peer: the bootstrap hands it over (see
        // filter_state::DIRECT_REMOTE_ADDRESS), because `source.address` is whatever
        // x-forwarded-for said once the connection manager (use_remote_address: false) has
        // replaced the stream's remote address.
        self.filter_state(filter_state::DIRECT_REMOTE_ADDRESS)
    }
    fn source_address(&self) -> Option<String> {
        property_string(&["source", "address"])
    }
    fn sni(&self) -> Option<String> {
        property_string(&["connection", "requested_server_name"])
    }
}

impl StreamHost for WasmHost {
    fn request_headers(&self) -> Result<Vec<(String, String)>, InternalError> {
        hostcalls::get_map(MapType::HttpRequestHeaders)
            .map_err(|status| InternalError(format!("reading the request headers: {status:?}")))
    }
    fn set_request_header(&mut self, name: &str, value: &str) -> Result<(), InternalError> {
        required(
            "set request header",
            name,
            hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value)),
        )
    }
    fn add_request_header(&mut self, name: &str, value: &str) -> Result<(), InternalError> {
        required(
            "add request header",
            name,
            hostcalls::add_map_value(MapType::HttpRequestHeaders, name, value),
        )
    }
    fn remove_request_header(&mut self, name: &str) -> Result<(), InternalError> {
        required(
            "remove request header",
            name,
            hostcalls::set_map_value(MapType::HttpRequestHeaders, name, None),
        )
    }
    fn set_response_header(&mut self, name: &str, value: &str) {
        report(
            "set response header",
            hostcalls::set_map_value(MapType::HttpResponseHeaders, name, Some(value)),
        );
    }
    fn add_response_header(&mut self, name: &str, value: &str) {
        report(
            "add response header",
            hostcalls::add_map_value(MapType::HttpResponseHeaders, name, value),
        );
    }
    fn remove_response_header(&mut self, name: &str) {
        report(
            "remove response header",
            hostcalls::set_map_value(MapType::HttpResponseHeaders, name, None),
        );
    }
    fn send_local_reply(&mut self, reply: &LocalReply) {
        let headers: Vec<(&str, &str)> = reply
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        report(
            "send local reply",
            hostcalls::send_http_response(u32::from(reply.status), headers, Some(&reply.body)),
        );
    }
    fn mirror(&mut self, cluster: &str, headers: &[(String, String)]) {
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        if let Err(status) = hostcalls::dispatch_http_call(
            cluster,
            headers,
            None,
            Vec::new(),
            Duration::from_secs(5),
        ) {
            log(
                LogLevel::Debug,
                &format!("layover: mirror to {cluster} not sent: {status:?}"),
            );
        }
    }
    fn warn(&self, message: &str) {
        log(LogLevel::Warn, message);
    }
}
