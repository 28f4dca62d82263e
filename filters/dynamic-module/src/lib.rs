//! layover as an Envoy dynamic-module HTTP filter (`liblayover_module.so`).
//!
//! Envoy 1.40.0 loads it through `envoy.filters.http.dynamic_modules`
//! (`dynamic_module_config: {name: layover_module}`, found on `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`);
//! the filter configuration is the layover policy (proto3 JSON or binary protobuf, typically a
//! `google.protobuf.StringValue`, which arrives as its raw bytes). `layover_envoy::dynamic_module_filter`
//! builds the `http_filters` entry.
//!
//! Like the proxy-wasm build, this crate is only host plumbing over [`layover_adapter`]: the
//! policy is compiled once per filter configuration (an invalid one makes `config_new` return
//! null, so Envoy rejects the configuration), and per request
//! [`layover_adapter::StreamFilter`] decides and applies the decision through a
//! [`layover_adapter::StreamHost`] over the dynamic-module callbacks.
//!
//! # Layout
//! - [`sys`]: hand-written bindings for exactly the ABI subset used, checked against the Envoy
//!   1.40.0 binary; the only module with `unsafe`. Also exports the 21 event hooks Envoy requires.
//! - `hooks`: what each event does, in safe code, every hook behind `catch_unwind`.
//! - [`timer`]: the one shared timer thread behind fault delays.
//!
//! # Never crash the host
//! The release profile unwinds (`panic = "unwind"`) and every hook catches panics: a caught panic
//! is logged through Envoy's log, the request fails closed with a 500, and Envoy keeps serving.
//! Feature `test-panic` (tests only) makes a request carrying `x-layover-test-panic` panic inside
//! the filter, which the integration suite uses to prove it.
//!
//! # Fault delays
//! Envoy gives dynamic-module HTTP filters no per-stream timer, only a scheduler that posts an
//! event back to the stream's worker thread from any thread. A delayed request stops iteration,
//! creates its scheduler and registers a deadline with the shared [`timer::Timer`] (a min-heap and
//! a condition variable: no thread per request, no polling). When due, the timer commits the
//! event; `on_http_filter_scheduled` then applies what the decision says follows the delay (the
//! abort reply, or `continue_decoding`). A stream destroyed during its delay revokes its timer
//! slot under the slot's lock and only then deletes its scheduler, on its worker thread, so the
//! timer can never commit a deleted scheduler.
//!
//! # Cluster selection
//! The filter writes `x-layover-cluster` and calls `http_clear_route_cache`, so the bootstrap's
//! single `cluster_header` route re-reads it (`http_clear_route_cluster_cache` alone does not).
//!
//! Envoy 1.40 also offers a dynamic-module cluster-specifier plugin (a route-level `select` hook
//! that could read dynamic metadata the filter writes, re-run with
//! `http_clear_route_cluster_cache` instead of a full route re-match). It was not built, for
//! now: the header path is the one the wasm build and the generated bootstrap already share (one
//! route shape for both builds, visible in access logs and to `layover eval`), and what it could
//! save is one re-match of a single prefix route. Measured on the shared 2-core machine (Envoy
//! `--concurrency 1`, wrk 8 keep-alive connections, an Envoy direct-response upstream, seven
//! interleaved rounds of 8–10 s), Envoy CPU per request was 38–43 µs with no filter, 44–59 µs
//! (median ≈ 50) with this module and 60–72 µs (median ≈ 64) with the proxy-wasm build. The spread
//! between rounds of one build (±7 µs) is larger than a route re-match could plausibly cost, so
//! the plugin stays a possible later optimisation rather than a measured win.
//!
//! # Peer identity
//! Envoy 1.40 has the attribute API (`http_filter_get_attribute_string`):
//! `connection.uri_san_peer_certificate` gives the principal and
//! `connection.requested_server_name` the SNI. The source IP is the socket peer from
//! `http_get_downstream_direct_remote_address`, not the `source.address` attribute, which follows
//! a client-supplied `x-forwarded-for` on a `use_remote_address: false` connection manager (Istio's
//! waypoint setting) and would let a client forge `ipBlocks` matches. The destination port comes
//! from the `:authority`, as in the wasm build; the remote (XFF) IP and destination service are
//! left unset, as in the wasm build.
//!
//! # Module lifetime
//! The timer thread and thread-local state live as long as the process, so the generated filter
//! config sets `do_not_close: true`: Envoy never unloads the module under a running thread.

#![deny(unsafe_code)]

#[allow(unsafe_code)]
pub mod sys;
pub mod timer;

mod hooks;
