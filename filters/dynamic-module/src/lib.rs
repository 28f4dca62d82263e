//! layover as an Envoy dynamic-module HTTP filter (`liblayover_module.so`).
//!
//! Envoy 1.40.0 loads it through `envoy.filters.http.dynamic_modules`
//! (`dynamic_module_config: {name: layover_module}`, found on `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`);
//! the filter configuration is the layover policy (proto3 JSON or binary protobuf, typically a
//! `google.protobuf.StringValue`, which arrives as its raw bytes). `layover_bootstrap::dynamic_module_filter`
//! builds the `http_filters` entry.
//!
//! Like the proxy-wasm build, this crate is only host plumbing over [`layover_adapter`]: the
//! policy is compiled once per filter configuration (an invalid one makes `config_new` return
//! null, so Envoy rejects the configuration), and per request
//! [`layover_adapter::StreamFilter`] decides and applies the decision through a
//! [`layover_adapter::StreamHost`] over the dynamic-module callbacks.
//!
//! # Layout
//! Three layers, each importing only the one below it; no module imports one above it.
//! - `exports`: the `#[no_mangle] extern "C"` entry points Envoy calls (the 21 event hooks Envoy
//!   requires of an HTTP filter module and the 3 cluster-specifier hooks); they only turn Envoy's
//!   pointers into handles and references and call `hooks`.
//! - `hooks`: what each event does, in safe code, every hook behind `catch_unwind`; it calls Envoy
//!   through `host`.
//! - `host`: safe wrappers over the ABI in Rust types (strings, `Option`, `Result`), and the
//!   `layover_adapter::ConnectionHost` calls.
//! - `abi`: hand-written bindings for exactly the ABI subset used, checked against the Envoy
//!   1.40.0 binary, with one safe method per callback on handles only `exports` can create.
//! - `timer`: the one shared timer thread behind fault delays.
//!
//! `unsafe` is only in `abi` and `exports` (and the fake ABI the unit tests link instead of
//! Envoy's, `abi::fake`); the crate denies it elsewhere and `host` and `hooks` forbid it.
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
//! creates its scheduler and registers a deadline with the shared `timer::Timer` (a min-heap and
//! a condition variable: no thread per request, no polling). When due, the timer commits the
//! event; `on_http_filter_scheduled` then applies what the decision says follows the delay (the
//! abort reply, or `continue_decoding`). A stream destroyed during its delay revokes its timer
//! slot under the slot's lock and only then deletes its scheduler, on its worker thread, so the
//! timer can never commit a deleted scheduler.
//!
//! # Cluster selection
//! Two mechanisms, chosen by the filter configuration (`layover_contract::ClusterSelection` builds
//! the matching route and filter entry):
//!
//! - **Header** (the default): the filter writes `x-layover-cluster` and calls
//!   `http_clear_route_cache`, so the bootstrap's single `cluster_header` route is matched again
//!   and re-reads it (`http_clear_route_cluster_cache` alone does not). The filter configuration
//!   is the policy itself. The same route shape serves the wasm build, which cannot write dynamic
//!   metadata.
//! - **Metadata + cluster specifier plugin**: the filter configuration is the wrapper
//!   `{"cluster_selection":"metadata","policy":{…}}` (recognised before the policy is loaded; a
//!   bare policy still means header mode, and `"header"` is accepted too). The filter then writes
//!   its choice to dynamic metadata `layover.cluster` (`http_set_dynamic_metadata_string`)
//!   instead of the header and calls `http_clear_route_cluster_cache`; the route's
//!   `envoy.router.cluster_specifier_plugin.dynamic_modules` extension, served by this same
//!   module (`on_cluster_specifier_config_new` / `_destroy` / `_select`), re-runs `select`,
//!   which reads the metadata from the stream info (`cluster_specifier_get_dynamic_metadata`)
//!   and sets the cluster (`cluster_specifier_set_cluster_name`). The first `select`, when Envoy
//!   resolves the route before the filter ran, finds nothing and makes no decision. A client
//!   cannot reach dynamic metadata, and a client-sent `x-layover-cluster` is ignored by the
//!   route and stripped by the filter.
//!
//! **Header stays the default: measured, the plugin is not faster.** `cargo xtask
//! bench-cluster-selection` runs both waypoints side by side (Envoy 1.40.0 `--concurrency 1`
//! each, same generated bootstrap apart from the route, direct-response upstream Envoy, 8
//! keep-alive connections, 100 000 requests per run, 7 interleaved rounds with alternating
//! order, waypoint CPU from `/proc/<pid>/stat`) on the shared 2-core machine. First run: header
//! median 52.0 µs Envoy CPU per request (50.7–54.9), 14 041 req/s; plugin 54.3 µs (51.8–55.8),
//! 13 631 req/s: +2.3 µs (+4.4 %), the plugin cheaper in 1 of 7 paired rounds, with a spread of
//! about 4 µs within each mechanism. Second run: header 49.9 µs (48.1–52.7), 14 724 req/s;
//! plugin 51.1 µs (48.7–53.8), 14 747 req/s: +1.2 µs (+2.4 %), req/s equal, the plugin cheaper
//! in 1 of 7 paired rounds. The difference is below the round-to-round spread but has the same
//! sign in 12 of 14 paired rounds: the plugin costs slightly more, never less. It saves a route
//! re-match of one prefix route
//! but pays for a protobuf `Struct` merge into the stream's dynamic metadata, a second `select`
//! call (one per route resolution) and a fresh delegating route entry per request; none of that
//! is cheaper than what it replaces. So the plugin path stays available (and tested under
//! Envoy) but off by default.
//!
//! # Peer identity
//! Envoy 1.40 has the attribute API (`http_filter_get_attribute_string`):
//! `connection.uri_san_peer_certificate` gives the principal and
//! `connection.requested_server_name` the SNI. The source IP is the socket peer from
//! `http_get_downstream_direct_remote_address`, not the `source.address` attribute, which follows
//! a client-supplied `x-forwarded-for` on a `use_remote_address: false` connection manager (Istio's
//! waypoint setting) and would let a client forge `ipBlocks` matches; that attribute is the
//! remote IP (`remoteIpBlocks`). Inside an HBONE tunnel the HBONE listener's filter state says
//! all of it instead. The view itself is `layover_adapter::connection`, the same code as the wasm
//! build's; this crate only implements its host calls (`layover_adapter::ConnectionHost`).
//!
//! # Module lifetime
//! The timer thread and thread-local state live as long as the process, so the generated filter
//! config sets `do_not_close: true`: Envoy never unloads the module under a running thread.

#![deny(unsafe_code)]

#[allow(unsafe_code)]
mod abi;
#[allow(unsafe_code)]
mod exports;
mod hooks;
mod host;
mod timer;
