//! What each Envoy event does, in safe code: [`crate::exports`] converts Envoy's pointers and
//! calls these, and these call Envoy through [`crate::host`]. Every function here catches panics ([`guard`]): a panic is logged, the request fails
//! closed with a 500, and Envoy keeps running.

#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use layover_adapter::{
    connection, load_config, Entropy, InternalError, LocalReply, StreamFilter, StreamHost, Verdict,
    INTERNAL_ERROR_BODY, INTERNAL_ERROR_STATUS,
};
use layover_contract::{metadata, ClusterSelection, FilterMode, CLUSTER_HEADER};
use layover_core::CompiledPolicy;

use crate::host::{
    self, body_status, headers_status, trailers_status, HeaderKind, HttpFilter, Level, Scheduler,
    SpecifierContext,
};
use crate::timer::Timer;

/// How long a mirrored request may take before Envoy abandons it.
const MIRROR_TIMEOUT_MS: u64 = 5_000;

/// One filter configuration: the compiled policy, shared by every stream it creates.
#[derive(Debug)]
pub struct Config {
    policy: Arc<CompiledPolicy>,
    selection: ClusterSelection,
    mode: FilterMode,
}

/// Per-stream state. Hooks get `&Filter`: Envoy can re-enter the filter (our own local reply runs
/// the response-headers hook while the request-headers hook is still on the stack), so the state
/// sits in a `RefCell` and a re-entrant hook that finds it borrowed leaves it alone.
#[derive(Debug)]
pub struct Filter {
    policy: Arc<CompiledPolicy>,
    selection: ClusterSelection,
    pub(crate) state: RefCell<State>,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    stream: StreamFilter,
    /// The request is held by a fault delay; the scheduler wakes it.
    delay: Option<Scheduler>,
    /// A local reply was sent (or the filter failed): nothing else may touch the stream.
    done: bool,
}

/// Runs `f`, turning a panic into `on_panic` after logging it.
pub(crate) fn guard<T>(hook: &str, f: impl FnOnce() -> T, on_panic: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".into());
            host::log(
                Level::Error,
                &format!("layover: panic in {hook} caught at the FFI boundary: {what}"),
            );
            on_panic()
        }
    }
}

/// Fails the request closed after an internal error (a caught panic).
pub(crate) fn fail_closed(filter: &Filter, envoy: HttpFilter<'_>) {
    if let Ok(mut state) = filter.state.try_borrow_mut() {
        if state.done {
            return;
        }
        state.done = true;
        state.delay = None;
    }
    envoy.send_response(
        INTERNAL_ERROR_STATUS,
        &[],
        INTERNAL_ERROR_BODY,
        "layover_internal_error",
    );
}

/// `config_new`: compiles the policy once. `None` makes Envoy reject the configuration.
pub fn config_new(name: &[u8], config: &[u8]) -> Option<Box<Config>> {
    guard(
        "config_new",
        || match load_config(config) {
            Ok(loaded) => {
                host::log(
                    Level::Info,
                    &format!(
                        "layover: policy loaded for filter `{}` (mode: {}, cluster selection: {})",
                        String::from_utf8_lossy(name),
                        loaded.mode.wire_name(),
                        loaded.cluster_selection.wire_name(),
                    ),
                );
                Some(Box::new(Config {
                    policy: Arc::new(loaded.policy),
                    selection: loaded.cluster_selection,
                    mode: loaded.mode,
                }))
            }
            Err(message) => {
                // Never run half a policy: Envoy rejects the whole configuration.
                host::log(Level::Critical, &format!("layover: {message}"));
                None
            }
        },
        || None,
    )
}

/// `filter_new`: per-stream state.
pub fn filter_new(config: &Config) -> Option<Box<Filter>> {
    guard(
        "filter_new",
        || {
            Some(Box::new(Filter {
                policy: Arc::clone(&config.policy),
                selection: config.selection,
                // The stream carries the mode: `StreamFilter` applies it.
                state: RefCell::new(State {
                    stream: StreamFilter::new(config.mode),
                    ..State::default()
                }),
            }))
        },
        || None,
    )
}

/// `filter_destroy` (worker thread): dropping the state deletes a pending delay's scheduler
/// after revoking its timer slot.
pub fn destroy(filter: Box<Filter>) {
    guard("filter_destroy", move || drop(filter), || ());
}

thread_local! {
    /// Per-worker entropy for weighted splits and fault percentages.
    static ENTROPY: RefCell<Entropy> = RefCell::new(Entropy::new(seed()));
}

fn seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0x5eed, |d| d.as_nanos() as u64);
    // RandomState carries per-thread random keys: distinct seeds even for workers started in the
    // same nanosecond.
    std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), nanos)
}

fn next_entropy() -> u64 {
    ENTROPY.with(|e| match e.try_borrow_mut() {
        Ok(mut e) => e.next_u64(),
        Err(_) => seed(),
    })
}

/// `request_headers`: decide and apply.
pub fn request_headers(filter: &Filter, envoy: HttpFilter<'_>) -> u32 {
    guard(
        "request_headers",
        || decide(filter, envoy),
        || {
            fail_closed(filter, envoy);
            headers_status::STOP_ITERATION
        },
    )
}

fn decide(filter: &Filter, envoy: HttpFilter<'_>) -> u32 {
    let Ok(mut state) = filter.state.try_borrow_mut() else {
        // Envoy never re-enters request_headers; if it did, stopping without a reply would hang
        // the request and continuing would forward it undecided: deny.
        host::log(
            Level::Error,
            "layover: request_headers re-entered, request denied",
        );
        fail_closed(filter, envoy);
        return headers_status::STOP_ITERATION;
    };
    let mut host = Host {
        envoy,
        selection: filter.selection,
        request_mutated: false,
        cluster_selected: false,
        cached_request: None,
    };
    // An empty list is a failed read: the adapter fails closed on the missing `:path`.
    let headers = host.envoy.headers(HeaderKind::Request);
    #[cfg(feature = "test-panic")]
    test_panic(&headers);
    // Unreadable HBONE state is an internal error (the request fails closed).
    let conn = connection(&envoy, filter.policy.needs());
    host.cached_request = Some(headers);
    let verdict =
        state
            .stream
            .on_request_headers(&filter.policy, conn.as_ref(), next_entropy(), &mut host);
    match filter.selection {
        // The route was picked before the filter ran; re-pick it from the cluster header.
        ClusterSelection::Header if host.request_mutated => envoy.clear_route_cache(),
        // Only the cluster specifier's `select` runs again, reading the metadata just written.
        ClusterSelection::SpecifierPlugin if host.cluster_selected => {
            envoy.clear_route_cluster_cache()
        }
        _ => {}
    }
    match verdict {
        Verdict::Continue => headers_status::CONTINUE,
        Verdict::Replied => {
            state.done = true;
            headers_status::STOP_ITERATION
        }
        Verdict::Delay(ms) => {
            match start_delay(envoy, ms) {
                Ok(scheduler) => state.delay = Some(scheduler),
                Err(message) => {
                    drop(state);
                    host::log(Level::Error, &format!("layover: fault delay: {message}"));
                    fail_closed(filter, envoy);
                }
            }
            headers_status::STOP_ITERATION
        }
    }
}

/// Registers the stream with the shared timer; the returned scheduler must live in the stream.
fn start_delay(envoy: HttpFilter<'_>, ms: u64) -> Result<Scheduler, String> {
    let scheduler = envoy.new_scheduler().ok_or("Envoy returned no scheduler")?;
    Timer::global().schedule(Instant::now() + Duration::from_millis(ms), scheduler.slot())?;
    Ok(scheduler)
}

#[cfg(feature = "test-panic")]
#[allow(clippy::panic)]
fn test_panic(headers: &[(String, String)]) {
    if headers
        .iter()
        .any(|(n, _)| n == layover_contract::TEST_PANIC_HEADER)
    {
        panic!("test-panic: x-layover-test-panic requested a panic");
    }
}

/// `scheduled` (worker thread): the fault delay elapsed.
pub fn scheduled(filter: &Filter, envoy: HttpFilter<'_>, event: u64) {
    guard(
        "scheduled",
        || {
            if event != host::DELAY_EVENT {
                return;
            }
            let resume = {
                let Ok(mut state) = filter.state.try_borrow_mut() else {
                    return;
                };
                // Deleting the scheduler now (on the worker) rather than at destroy.
                if state.delay.take().is_none() || state.done {
                    return;
                }
                let mut host = Host {
                    envoy,
                    selection: filter.selection,
                    request_mutated: false,
                    cluster_selected: false,
                    cached_request: None,
                };
                match state.stream.on_delay_elapsed(&mut host) {
                    Verdict::Replied => {
                        state.done = true;
                        false
                    }
                    _ => true,
                }
            };
            // Outside the borrow: resuming runs the router, whose local replies (503 …) come
            // back through our response hook.
            if resume {
                envoy.continue_decoding();
            }
        },
        || fail_closed(filter, envoy),
    );
}

/// `request_body`: held while a delay is pending or after a reply.
pub fn request_body(filter: &Filter) -> u32 {
    guard(
        "request_body",
        || match filter.state.try_borrow() {
            Ok(s) if s.delay.is_none() && !s.done => body_status::CONTINUE,
            _ => body_status::STOP_AND_BUFFER,
        },
        || body_status::STOP_AND_BUFFER,
    )
}

/// `request_trailers`: held while a delay is pending or after a reply.
pub fn request_trailers(filter: &Filter) -> u32 {
    guard(
        "request_trailers",
        || match filter.state.try_borrow() {
            Ok(s) if s.delay.is_none() && !s.done => trailers_status::CONTINUE,
            _ => trailers_status::STOP_ITERATION,
        },
        || trailers_status::STOP_ITERATION,
    )
}

/// `response_headers`: the decided response header operations.
pub fn response_headers(filter: &Filter, envoy: HttpFilter<'_>) -> u32 {
    guard(
        "response_headers",
        || {
            // Borrowed: this is the response of our own local reply, which carries its headers.
            if let Ok(mut state) = filter.state.try_borrow_mut() {
                let mut host = Host {
                    envoy,
                    selection: filter.selection,
                    request_mutated: false,
                    cluster_selected: false,
                    cached_request: None,
                };
                state.stream.on_response_headers(&mut host);
            }
            headers_status::CONTINUE
        },
        || {
            fail_closed(filter, envoy);
            headers_status::STOP_ITERATION
        },
    )
}

/// [`StreamHost`] over the dynamic-module callbacks of the current hook.
struct Host<'hook> {
    envoy: HttpFilter<'hook>,
    /// Where the cluster choice goes.
    selection: ClusterSelection,
    /// Any request header changed (the route must be re-selected).
    request_mutated: bool,
    /// The cluster choice was written to dynamic metadata.
    cluster_selected: bool,
    /// The request headers read at the start of the hook (saves a second copy).
    cached_request: Option<Vec<(String, String)>>,
}

impl Host<'_> {
    fn report(&self, what: &str, name: &str, ok: bool) {
        if !ok {
            host::log(
                Level::Warn,
                &format!("layover: host call {what} `{name}` failed"),
            );
        }
    }
}

/// A request-side host call: its failure fails the request closed (the adapter answers 500).
fn required(what: &str, name: &str, ok: bool) -> Result<(), InternalError> {
    if ok {
        Ok(())
    } else {
        Err(InternalError(format!("host call {what} `{name}` failed")))
    }
}

impl StreamHost for Host<'_> {
    fn request_headers(&self) -> Result<Vec<(String, String)>, InternalError> {
        Ok(match &self.cached_request {
            Some(h) => h.clone(),
            None => self.envoy.headers(HeaderKind::Request),
        })
    }
    fn set_request_header(&mut self, name: &str, value: &str) -> Result<(), InternalError> {
        if name == CLUSTER_HEADER && self.selection == ClusterSelection::SpecifierPlugin {
            // The choice never becomes a header: the cluster specifier reads it from metadata.
            self.envoy
                .set_dynamic_metadata_string(metadata::NAMESPACE, metadata::CLUSTER, value);
            self.cluster_selected = true;
            return Ok(());
        }
        self.request_mutated = true;
        self.cached_request = None;
        let ok = self
            .envoy
            .set_header(HeaderKind::Request, name, Some(value));
        required("set request header", name, ok)
    }
    fn add_request_header(&mut self, name: &str, value: &str) -> Result<(), InternalError> {
        self.request_mutated = true;
        self.cached_request = None;
        let ok = self.envoy.add_header(HeaderKind::Request, name, value);
        required("add request header", name, ok)
    }
    fn remove_request_header(&mut self, name: &str) -> Result<(), InternalError> {
        self.request_mutated = true;
        self.cached_request = None;
        let ok = self.envoy.set_header(HeaderKind::Request, name, None);
        required("remove request header", name, ok)
    }
    fn set_response_header(&mut self, name: &str, value: &str) {
        let ok = self
            .envoy
            .set_header(HeaderKind::Response, name, Some(value));
        self.report("set response header", name, ok);
    }
    fn add_response_header(&mut self, name: &str, value: &str) {
        let ok = self.envoy.add_header(HeaderKind::Response, name, value);
        self.report("add response header", name, ok);
    }
    fn remove_response_header(&mut self, name: &str) {
        let ok = self.envoy.set_header(HeaderKind::Response, name, None);
        self.report("remove response header", name, ok);
    }
    fn send_local_reply(&mut self, reply: &LocalReply) {
        self.envoy
            .send_response(reply.status, &reply.headers, &reply.body, "layover");
    }
    fn mirror(&mut self, cluster: &str, headers: &[(String, String)]) {
        if let Err(result) = self.envoy.http_callout(cluster, headers, MIRROR_TIMEOUT_MS) {
            if host::log_enabled(Level::Debug) {
                host::log(
                    Level::Debug,
                    &format!("layover: mirror to {cluster} not sent (callout result {result})"),
                );
            }
        }
    }
    fn warn(&self, message: &str) {
        host::log(Level::Warn, message);
    }
}

/// The cluster specifier plugin's configuration (nothing to configure: it reads what the filter
/// wrote).
#[derive(Debug)]
pub struct SpecifierConfig {
    name: String,
}

#[cfg(test)]
impl SpecifierConfig {
    pub(crate) fn for_tests() -> SpecifierConfig {
        SpecifierConfig {
            name: "test".into(),
        }
    }
}

/// `cluster_specifier_config_new`: any configuration is accepted (it is ignored).
pub fn specifier_config_new(name: &[u8], _config: &[u8]) -> Option<Box<SpecifierConfig>> {
    guard(
        "cluster_specifier_config_new",
        || {
            let name = String::from_utf8_lossy(name).into_owned();
            host::log(
                Level::Info,
                &format!("layover: cluster specifier `{name}` configured"),
            );
            Some(Box::new(SpecifierConfig { name }))
        },
        || None,
    )
}

/// `cluster_specifier_config_destroy`.
pub fn specifier_config_destroy(config: Box<SpecifierConfig>) {
    guard(
        "cluster_specifier_config_destroy",
        move || drop(config),
        || (),
    );
}

/// `cluster_specifier_select`: the cluster the filter wrote to dynamic metadata, if any. `false`
/// (no decision) on the first resolution, before the filter ran: the route then has no cluster,
/// and a request the filter never decided on gets Envoy's cluster-not-found reply, as with an
/// absent `x-layover-cluster` header.
pub fn specifier_select(config: &SpecifierConfig, context: SpecifierContext<'_>) -> bool {
    guard(
        "cluster_specifier_select",
        || match context.dynamic_metadata_string(metadata::NAMESPACE, metadata::CLUSTER) {
            Some(cluster) if !cluster.is_empty() => {
                context.set_cluster_name(&cluster);
                true
            }
            _ => {
                if host::log_enabled(Level::Debug) {
                    host::log(
                        Level::Debug,
                        &format!(
                            "layover: cluster specifier `{}`: no decision yet",
                            config.name
                        ),
                    );
                }
                false
            }
        },
        || false,
    )
}

#[cfg(test)]
mod tests;
