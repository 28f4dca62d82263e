//! Bindings to the subset of Envoy 1.40.0's dynamic-module C ABI that layover uses, and the
//! only place in the crate with `unsafe`.
//!
//! The header of record is `source/extensions/dynamic_modules/abi/abi.h` at Envoy v1.40.0 (ABI
//! version string `v0.2.0`). The declarations below were written from that header's
//! documentation and then checked against the Envoy 1.40.0 release binary itself, because the
//! argument shapes changed across versions:
//!
//! - every callback declared here is exported by the binary (`nm -D envoy | grep
//!   envoy_dynamic_module_callback_`); a cdylib binds its undefined symbols at load time, so a
//!   missing one would fail `envoy --mode validate`;
//! - the register usage of the callbacks whose shape changed between versions was read from the
//!   disassembly (`objdump -d --start-address=<symbol>`): `http_filter_get_attribute_string`
//!   takes three arguments (the result is one `{ptr, length}` buffer, not a pointer/length pair),
//!   `http_filter_http_callout` takes a `uint64_t*` callout-id *output* in the second register and
//!   32-byte header entries, `http_send_response` reads the `details` buffer from the stack (after
//!   `body` in r8/r9), `log` takes the message as a by-value buffer,
//!   `http_get_downstream_direct_remote_address` takes two arguments and writes one `{ptr, length}`
//!   buffer (the address as "ip:port"; no separate port output as in the access-logger variant);
//!   `http_set_dynamic_metadata_string` takes three by-value buffers and returns nothing (the
//!   value buffer arrives on the stack, after namespace and key in rsi/rdx and rcx/r8);
//!   `http_clear_route_cluster_cache` takes only the filter;
//!   `http_get_filter_state_bytes(filter, key, *result) -> bool` takes the key as one by-value
//!   buffer (rsi/rdx) and writes one `{ptr, length}` buffer through rcx (older headers had a
//!   separate length pointer in r8; the 1.40.0 code stores both words at `rcx`); it returns
//!   objects of type `Router::StringAccessor` (factory `envoy.string`), including ones a
//!   parent (connection) filter state holds, which is where `internal_upstream` puts the
//!   state an HBONE listener shared; the cluster-specifier callbacks take
//!   the context pointer first: `cluster_specifier_get_dynamic_metadata(ctx, namespace, path,
//!   *result) -> bool` (reads the context's stream info, so it sees what the HTTP filter wrote)
//!   and `cluster_specifier_set_cluster_name(ctx, name)`; the cluster-specifier hooks'
//!   argument registers were read from the statically linked module in the same binary
//!   (`hickory_dns_static_envoy_dynamic_module_on_cluster_specifier_{config_new,select}`);
//! - and they are exercised through a real Envoy by the integration tests
//!   (`tests/integration/tests/dynamic_module.rs`, and the dynamic-module arm of `tests/integration/tests/waypoint.rs`).
//!
//! On x86-64 System V a by-value `{ptr, length}` struct travels in two integer registers, exactly
//! like a separate pointer and length, so the module buffers below are ABI-identical to the
//! pointer/length pairs older headers used.
//!
//! Layout: raw types and the `extern "C"` block (`ffi`); safe wrappers ([`HttpFilter`],
//! [`Scheduler`], [`log`]) that copy everything Envoy hands out before returning; and the exported
//! event hooks, which only turn Envoy's pointers into references and call the safe code in
//! `crate::hooks`. In unit tests the `extern` block is replaced by an in-process fake host.

use std::ffi::{c_char, c_void};
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;

use crate::hooks::{self, Config, Filter, SpecifierConfig};
use crate::timer::Revocable;

/// The ABI version this module was written against, NUL-terminated for `on_program_init`.
pub const ABI_VERSION: &[u8] = b"v0.2.0\0";

/// `envoy_dynamic_module_type_envoy_buffer` / `..._module_buffer`: a byte range (owned by
/// whichever side the type name says; the layout is the same).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Buffer {
    ptr: *const c_char,
    length: usize,
}

impl Buffer {
    /// A buffer pointing at module-owned bytes (valid as long as `bytes` is).
    fn of(bytes: &[u8]) -> Buffer {
        Buffer {
            ptr: bytes.as_ptr().cast(),
            length: bytes.len(),
        }
    }

    /// The null buffer (`{nullptr, 0}`), e.g. "remove this header".
    fn null() -> Buffer {
        Buffer {
            ptr: std::ptr::null(),
            length: 0,
        }
    }

    /// Copies the bytes of an Envoy-owned buffer.
    ///
    /// # Safety
    /// `ptr` must be null or point to `length` readable bytes for the duration of the call.
    unsafe fn to_vec(self) -> Vec<u8> {
        if self.ptr.is_null() || self.length == 0 {
            return Vec::new();
        }
        // SAFETY: the caller guarantees `ptr` points to `length` readable bytes.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.length) }.to_vec()
    }
}

/// `envoy_dynamic_module_type_{envoy,module}_http_header`: one header entry (32 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct HttpHeader {
    key: Buffer,
    value: Buffer,
}

/// `envoy_dynamic_module_type_http_header_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum HeaderKind {
    /// Request headers.
    Request = 0,
    /// Response headers.
    Response = 2,
}

/// `envoy_dynamic_module_type_log_level` (trace 0 … critical 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Level {
    /// Debug.
    Debug = 1,
    /// Info.
    Info = 2,
    /// Warning.
    Warn = 3,
    /// Error.
    Error = 4,
    /// Critical.
    Critical = 5,
}

/// Attributes (`envoy_dynamic_module_type_attribute_id`), numbered in the header's enum order
/// (the binary's `get_attribute_string` switch covers ids 0..=41, consistent with that order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Attribute {
    /// `request.protocol` ("HTTP/1.1", "HTTP/2").
    RequestProtocol = 10,
    /// `source.address` ("ip:port" of the downstream peer).
    SourceAddress = 24,
    /// `connection.requested_server_name` (TLS SNI).
    RequestedServerName = 30,
    /// `connection.uri_san_peer_certificate` (first URI SAN of the peer certificate).
    UriSanPeerCertificate = 37,
}

/// Status returned from the request/response headers hooks.
pub mod headers_status {
    /// `Continue`.
    pub const CONTINUE: u32 = 0;
    /// `StopIteration`.
    pub const STOP_ITERATION: u32 = 1;
}

/// Status returned from the body hooks.
pub mod body_status {
    /// `Continue`.
    pub const CONTINUE: u32 = 0;
    /// `StopIterationAndBuffer`.
    pub const STOP_AND_BUFFER: u32 = 1;
}

/// Status returned from the trailers hooks.
pub mod trailers_status {
    /// `Continue`.
    pub const CONTINUE: u32 = 0;
    /// `StopIteration`.
    pub const STOP_ITERATION: u32 = 1;
}

/// `envoy_dynamic_module_type_http_callout_init_result_Success`.
const CALLOUT_SUCCESS: u32 = 0;

/// The raw callbacks Envoy exports. Pointers named `filter` are
/// `envoy_dynamic_module_type_http_filter_envoy_ptr`; `scheduler` is
/// `envoy_dynamic_module_type_http_filter_scheduler_module_ptr`; C enums are passed as `u32`.
#[cfg(not(test))]
mod ffi {
    use super::{Buffer, HttpHeader};
    use std::ffi::c_void;

    extern "C" {
        pub fn envoy_dynamic_module_callback_log(level: u32, message: Buffer);
        pub fn envoy_dynamic_module_callback_log_enabled(level: u32) -> bool;
        pub fn envoy_dynamic_module_callback_http_get_headers_size(
            filter: *mut c_void,
            kind: u32,
        ) -> usize;
        pub fn envoy_dynamic_module_callback_http_get_headers(
            filter: *mut c_void,
            kind: u32,
            result: *mut HttpHeader,
        ) -> bool;
        pub fn envoy_dynamic_module_callback_http_set_header(
            filter: *mut c_void,
            kind: u32,
            key: Buffer,
            value: Buffer,
        ) -> bool;
        pub fn envoy_dynamic_module_callback_http_add_header(
            filter: *mut c_void,
            kind: u32,
            key: Buffer,
            value: Buffer,
        ) -> bool;
        pub fn envoy_dynamic_module_callback_http_send_response(
            filter: *mut c_void,
            status: u32,
            headers: *mut HttpHeader,
            headers_len: usize,
            body: Buffer,
            details: Buffer,
        );
        pub fn envoy_dynamic_module_callback_http_clear_route_cache(filter: *mut c_void);
        pub fn envoy_dynamic_module_callback_http_clear_route_cluster_cache(filter: *mut c_void);
        pub fn envoy_dynamic_module_callback_http_set_dynamic_metadata_string(
            filter: *mut c_void,
            namespace: Buffer,
            key: Buffer,
            value: Buffer,
        );
        pub fn envoy_dynamic_module_callback_cluster_specifier_get_dynamic_metadata(
            context: *mut c_void,
            namespace: Buffer,
            path: Buffer,
            result: *mut Buffer,
        ) -> bool;
        pub fn envoy_dynamic_module_callback_cluster_specifier_set_cluster_name(
            context: *mut c_void,
            cluster: Buffer,
        );
        pub fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
            filter: *mut c_void,
            id: u32,
            result: *mut Buffer,
        ) -> bool;
        pub fn envoy_dynamic_module_callback_http_get_downstream_direct_remote_address(
            filter: *mut c_void,
            result: *mut Buffer,
        ) -> bool;
        pub fn envoy_dynamic_module_callback_http_get_filter_state_bytes(
            filter: *mut c_void,
            key: Buffer,
            result: *mut Buffer,
        ) -> bool;
        pub fn envoy_dynamic_module_callback_http_filter_continue_decoding(filter: *mut c_void);
        pub fn envoy_dynamic_module_callback_http_filter_scheduler_new(
            filter: *mut c_void,
        ) -> *mut c_void;
        pub fn envoy_dynamic_module_callback_http_filter_scheduler_commit(
            scheduler: *mut c_void,
            event_id: u64,
        );
        pub fn envoy_dynamic_module_callback_http_filter_scheduler_delete(scheduler: *mut c_void);
        pub fn envoy_dynamic_module_callback_http_filter_http_callout(
            filter: *mut c_void,
            callout_id: *mut u64,
            cluster: Buffer,
            headers: *mut HttpHeader,
            headers_len: usize,
            body: Buffer,
            timeout_ms: u64,
        ) -> u32;
    }
}

#[cfg(test)]
use fake as ffi;

/// Logs through Envoy's `dynamic_modules` logger.
pub fn log(level: Level, message: &str) {
    // SAFETY: the buffer points at `message`, which outlives the call; Envoy copies it.
    unsafe { ffi::envoy_dynamic_module_callback_log(level as u32, Buffer::of(message.as_bytes())) }
}

/// True when Envoy would print a message at `level` (to skip formatting otherwise).
pub fn log_enabled(level: Level) -> bool {
    // SAFETY: a plain value call.
    unsafe { ffi::envoy_dynamic_module_callback_log_enabled(level as u32) }
}

fn lossy(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Envoy's per-stream filter object (`http_filter_envoy_ptr`), usable only during the hook that
/// received it: the lifetime ties it to the hook's frame and the raw pointer makes it `!Send`, so
/// it can neither be kept past the hook nor reach another thread.
#[derive(Debug, Clone, Copy)]
pub struct HttpFilter<'hook> {
    raw: NonNull<c_void>,
    _hook: PhantomData<&'hook ()>,
}

impl HttpFilter<'_> {
    fn ptr(self) -> *mut c_void {
        self.raw.as_ptr()
    }

    /// Every header of `kind`, pseudo-headers included, in order, copied out of Envoy.
    pub fn headers(self, kind: HeaderKind) -> Vec<(String, String)> {
        // SAFETY: `self` is the live filter of the current hook.
        let count = unsafe {
            ffi::envoy_dynamic_module_callback_http_get_headers_size(self.ptr(), kind as u32)
        };
        if count == 0 {
            return Vec::new();
        }
        let empty = HttpHeader {
            key: Buffer::null(),
            value: Buffer::null(),
        };
        let mut raw = vec![empty; count];
        // SAFETY: `raw` has room for `count` entries, the number Envoy just reported for this map
        // (nothing changed it in between: same thread, no other call).
        let ok = unsafe {
            ffi::envoy_dynamic_module_callback_http_get_headers(
                self.ptr(),
                kind as u32,
                raw.as_mut_ptr(),
            )
        };
        if !ok {
            return Vec::new();
        }
        raw.into_iter()
            .map(|h| {
                // SAFETY: Envoy filled the entries with views into its header map, valid until
                // the map changes or the hook returns; they are copied right here.
                let (k, v) = unsafe { (h.key.to_vec(), h.value.to_vec()) };
                (lossy(k), lossy(v))
            })
            .collect()
    }

    /// Replaces (`Some`) or removes (`None`) a header. False when Envoy refused.
    pub fn set_header(self, kind: HeaderKind, name: &str, value: Option<&str>) -> bool {
        let value = value.map_or_else(Buffer::null, |v| Buffer::of(v.as_bytes()));
        // SAFETY: live filter; both buffers point at module memory valid for the call, which
        // Envoy copies.
        unsafe {
            ffi::envoy_dynamic_module_callback_http_set_header(
                self.ptr(),
                kind as u32,
                Buffer::of(name.as_bytes()),
                value,
            )
        }
    }

    /// Appends a header value. False when Envoy refused.
    pub fn add_header(self, kind: HeaderKind, name: &str, value: &str) -> bool {
        // SAFETY: as for `set_header`.
        unsafe {
            ffi::envoy_dynamic_module_callback_http_add_header(
                self.ptr(),
                kind as u32,
                Buffer::of(name.as_bytes()),
                Buffer::of(value.as_bytes()),
            )
        }
    }

    /// Sends a local reply. `details` is the response-code detail in access logs (a token).
    pub fn send_response(
        self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
        details: &str,
    ) {
        let mut raw: Vec<HttpHeader> = headers
            .iter()
            .map(|(k, v)| HttpHeader {
                key: Buffer::of(k.as_bytes()),
                value: Buffer::of(v.as_bytes()),
            })
            .collect();
        // SAFETY: live filter; `raw` and the buffers it points at (`headers`, `body`, `details`)
        // outlive the call, and Envoy copies them.
        unsafe {
            ffi::envoy_dynamic_module_callback_http_send_response(
                self.ptr(),
                u32::from(status),
                raw.as_mut_ptr(),
                raw.len(),
                Buffer::of(body),
                Buffer::of(details.as_bytes()),
            )
        }
    }

    /// Makes the connection manager re-run route selection (after writing the cluster header).
    pub fn clear_route_cache(self) {
        // SAFETY: live filter.
        unsafe { ffi::envoy_dynamic_module_callback_http_clear_route_cache(self.ptr()) }
    }

    /// Makes the cached route re-select its cluster without re-matching the route: on a route
    /// with the dynamic-module cluster specifier plugin, `on_cluster_specifier_select` runs again.
    pub fn clear_route_cluster_cache(self) {
        // SAFETY: live filter.
        unsafe { ffi::envoy_dynamic_module_callback_http_clear_route_cluster_cache(self.ptr()) }
    }

    /// Sets a string in the stream's dynamic metadata (`namespace` is created when missing, an
    /// existing `key` is overwritten).
    pub fn set_dynamic_metadata_string(self, namespace: &str, key: &str, value: &str) {
        // SAFETY: live filter; the three buffers point at module memory valid for the call, which
        // Envoy copies into the metadata struct.
        unsafe {
            ffi::envoy_dynamic_module_callback_http_set_dynamic_metadata_string(
                self.ptr(),
                Buffer::of(namespace.as_bytes()),
                Buffer::of(key.as_bytes()),
                Buffer::of(value.as_bytes()),
            )
        }
    }

    /// A string attribute, copied; `None` when absent or not available.
    pub fn attribute(self, id: Attribute) -> Option<String> {
        let mut out = Buffer::null();
        // SAFETY: live filter; `out` is a valid place for one buffer.
        let ok = unsafe {
            ffi::envoy_dynamic_module_callback_http_filter_get_attribute_string(
                self.ptr(),
                id as u32,
                &mut out,
            )
        };
        // SAFETY: on success Envoy points `out` at bytes valid until the hook returns.
        (ok && !out.ptr.is_null()).then(|| lossy(unsafe { out.to_vec() }))
    }

    /// The address of the directly connected peer ("ip:port"), copied. Unlike the
    /// `source.address` attribute, which follows `x-forwarded-for` when the connection manager
    /// does not use the remote address (`use_remote_address: false`, as on Istio waypoints),
    /// this is the socket peer a client cannot forge.
    pub fn direct_remote_address(self) -> Option<String> {
        let mut out = Buffer::null();
        // SAFETY: live filter; `out` is a valid place for one buffer.
        let ok = unsafe {
            ffi::envoy_dynamic_module_callback_http_get_downstream_direct_remote_address(
                self.ptr(),
                &mut out,
            )
        };
        // SAFETY: on success Envoy points `out` at bytes valid until the hook returns.
        (ok && !out.ptr.is_null()).then(|| lossy(unsafe { out.to_vec() }))
    }

    /// A string filter-state object (`envoy.string`, e.g. written by `set_filter_state`),
    /// copied; `None` when absent or of another type.
    pub fn filter_state_string(self, key: &str) -> Option<String> {
        let mut out = Buffer::null();
        // SAFETY: live filter; the key buffer points at `key`, which outlives the call; `out` is
        // a valid place for one buffer.
        let ok = unsafe {
            ffi::envoy_dynamic_module_callback_http_get_filter_state_bytes(
                self.ptr(),
                Buffer::of(key.as_bytes()),
                &mut out,
            )
        };
        // SAFETY: on success Envoy points `out` at bytes valid until the hook returns.
        (ok && !out.ptr.is_null()).then(|| lossy(unsafe { out.to_vec() }))
    }

    /// Resumes a request this filter stopped.
    pub fn continue_decoding(self) {
        // SAFETY: live filter.
        unsafe { ffi::envoy_dynamic_module_callback_http_filter_continue_decoding(self.ptr()) }
    }

    /// Creates the stream's scheduler (see [`Scheduler`]); `None` if Envoy returned null.
    pub fn new_scheduler(self) -> Option<Scheduler> {
        // SAFETY: live filter; the result is owned by us until `scheduler_delete`.
        let raw =
            unsafe { ffi::envoy_dynamic_module_callback_http_filter_scheduler_new(self.ptr()) };
        let raw = NonNull::new(raw)?;
        let committer = Committer(raw);
        Some(Scheduler {
            raw,
            slot: Arc::new(Revocable::new(
                Box::new(move || committer.commit(DELAY_EVENT)) as CommitFn,
            )),
        })
    }

    /// Fire-and-forget request to `cluster` (mirroring). `Err` carries Envoy's init result.
    pub fn http_callout(
        self,
        cluster: &str,
        headers: &[(String, String)],
        timeout_ms: u64,
    ) -> Result<u64, u32> {
        let mut raw: Vec<HttpHeader> = headers
            .iter()
            .map(|(k, v)| HttpHeader {
                key: Buffer::of(k.as_bytes()),
                value: Buffer::of(v.as_bytes()),
            })
            .collect();
        let mut id = 0u64;
        // SAFETY: live filter; all buffers outlive the call and Envoy copies them; `id` is a
        // valid output place.
        let result = unsafe {
            ffi::envoy_dynamic_module_callback_http_filter_http_callout(
                self.ptr(),
                &mut id,
                Buffer::of(cluster.as_bytes()),
                raw.as_mut_ptr(),
                raw.len(),
                Buffer::null(),
                timeout_ms,
            )
        };
        if result == CALLOUT_SUCCESS {
            Ok(id)
        } else {
            Err(result)
        }
    }
}

/// The cluster-specifier context Envoy passes to `on_cluster_specifier_select`
/// (`cluster_specifier_context_envoy_ptr`: the request headers, the stream info and the selection
/// being built), usable only during that call, like [`HttpFilter`].
#[derive(Debug, Clone, Copy)]
pub struct SpecifierContext<'hook> {
    raw: NonNull<c_void>,
    _hook: PhantomData<&'hook ()>,
}

impl SpecifierContext<'_> {
    /// A string from the stream's dynamic metadata (`namespace`, then `key`), copied; `None` when
    /// absent or not a string.
    pub fn dynamic_metadata_string(self, namespace: &str, key: &str) -> Option<String> {
        let mut out = Buffer::null();
        // SAFETY: live context of the current select call; `out` is a valid place for one buffer.
        let ok = unsafe {
            ffi::envoy_dynamic_module_callback_cluster_specifier_get_dynamic_metadata(
                self.raw.as_ptr(),
                Buffer::of(namespace.as_bytes()),
                Buffer::of(key.as_bytes()),
                &mut out,
            )
        };
        // SAFETY: on success Envoy points `out` at the metadata value, valid during the call.
        (ok && !out.ptr.is_null()).then(|| lossy(unsafe { out.to_vec() }))
    }

    /// Selects the upstream cluster for the request.
    pub fn set_cluster_name(self, cluster: &str) {
        // SAFETY: live context; Envoy copies the name into the selection.
        unsafe {
            ffi::envoy_dynamic_module_callback_cluster_specifier_set_cluster_name(
                self.raw.as_ptr(),
                Buffer::of(cluster.as_bytes()),
            )
        }
    }
}

/// The event id layover commits when a fault delay elapsed.
pub const DELAY_EVENT: u64 = 1;

/// A copy of the scheduler pointer that can only `commit`, the one scheduler operation Envoy
/// documents as thread-safe (it posts the event to the stream's worker and drops it if the stream
/// is gone).
struct Committer(NonNull<c_void>);

// SAFETY: `scheduler_commit` may be called from any thread. The pointer stays valid because a
// `Committer` lives only inside its `Scheduler`'s `Revocable` slot, which the `Scheduler` revokes
// (waiting for a running commit to finish) before it deletes the scheduler.
unsafe impl Send for Committer {}

impl Committer {
    fn commit(&self, event: u64) {
        // SAFETY: see the `Send` impl: the scheduler has not been deleted while the slot holds us.
        unsafe {
            ffi::envoy_dynamic_module_callback_http_filter_scheduler_commit(self.0.as_ptr(), event)
        }
    }
}

/// A stream's scheduler: lets the shared timer thread wake the stream on its worker thread.
///
/// It owns Envoy's scheduler object and deletes it on drop, which happens on the worker thread
/// (the type is `!Send`). Before deleting, it revokes the commit slot handed to the timer, so the
/// timer can never commit a deleted scheduler: the slot's lock orders a concurrent commit before
/// the delete, and a later fire finds the slot empty.
pub struct Scheduler {
    raw: NonNull<c_void>,
    slot: Arc<Revocable<CommitFn>>,
}

/// The closure type the commit slot holds.
type CommitFn = Box<dyn FnMut() + Send>;

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").field("raw", &self.raw).finish()
    }
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Committer")
    }
}

impl Scheduler {
    /// The one-shot action the timer fires: commit [`DELAY_EVENT`] unless revoked.
    pub fn slot(&self) -> Arc<Revocable<CommitFn>> {
        Arc::clone(&self.slot)
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.slot.revoke();
        // SAFETY: we own the scheduler; after `revoke` no commit is running or can start, and the
        // pointer is never used again.
        unsafe {
            ffi::envoy_dynamic_module_callback_http_filter_scheduler_delete(self.raw.as_ptr())
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Event hooks Envoy calls. Each only converts pointers and forwards to `crate::hooks`, which
// catches panics. Hooks layover has no use for (callout results, streams, watermarks) are no-ops.
//
// Safety contract of every `unsafe` hook (what Envoy guarantees per abi.h): buffers point to
// readable memory of the given length for the duration of the call; a config pointer is one
// `config_new` returned and not yet passed to `config_destroy`; a filter module pointer is one
// `filter_new` returned and not yet passed to `filter_destroy`; the filter envoy pointer is the
// stream's live `DynamicModuleHttpFilter`; all stream hooks run on the stream's worker thread.
// ------------------------------------------------------------------------------------------------

/// Wraps the filter pointer Envoy passed to the current hook.
fn envoy_filter<'hook>(raw: *mut c_void) -> Option<HttpFilter<'hook>> {
    NonNull::new(raw).map(|raw| HttpFilter {
        raw,
        _hook: PhantomData,
    })
}

/// Reborrows the module filter Envoy passes back.
///
/// # Safety
/// `raw` must be null or a pointer returned by `on_http_filter_new` and not yet destroyed.
unsafe fn module_filter<'hook>(raw: *const c_void) -> Option<&'hook Filter> {
    // SAFETY: per the contract, a live `Box<Filter>` allocation. Only shared references are made:
    // Envoy may re-enter a hook (e.g. response headers of our own local reply) while another runs.
    unsafe { raw.cast::<Filter>().as_ref() }
}

/// `envoy_dynamic_module_on_program_init`.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    ABI_VERSION.as_ptr().cast()
}

/// `envoy_dynamic_module_on_http_filter_config_new`: null rejects the configuration.
///
/// # Safety
/// Called by Envoy only, under the hook contract stated above this group of hooks.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    _config_envoy: *mut c_void,
    name: Buffer,
    config: Buffer,
) -> *const c_void {
    // SAFETY: Envoy passes buffers valid for this call; they are copied.
    let (name, config) = unsafe { (name.to_vec(), config.to_vec()) };
    match hooks::config_new(&name, &config) {
        Some(config) => Box::into_raw(config).cast_const().cast(),
        None => std::ptr::null(),
    }
}

/// `envoy_dynamic_module_on_http_filter_config_destroy`.
///
/// # Safety
/// Called by Envoy only, under the hook contract stated above this group of hooks.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: *const c_void) {
    if !config.is_null() {
        // SAFETY: the pointer came from `Box::into_raw` in config_new and Envoy destroys it once.
        drop(unsafe { Box::from_raw(config.cast::<Config>().cast_mut()) });
    }
}

/// `envoy_dynamic_module_on_http_filter_new`: null closes the stream.
///
/// # Safety
/// Called by Envoy only, under the hook contract stated above this group of hooks.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: *const c_void,
    _filter_envoy: *mut c_void,
) -> *const c_void {
    // SAFETY: Envoy passes the pointer config_new returned; the config outlives its filters.
    let Some(config) = (unsafe { config.cast::<Config>().as_ref() }) else {
        return std::ptr::null();
    };
    match hooks::filter_new(config) {
        Some(filter) => Box::into_raw(filter).cast_const().cast(),
        None => std::ptr::null(),
    }
}

/// `envoy_dynamic_module_on_http_filter_destroy` (on the worker thread).
///
/// # Safety
/// Called by Envoy only, under the hook contract stated above this group of hooks.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_destroy(filter: *const c_void) {
    if !filter.is_null() {
        // SAFETY: the pointer came from `Box::into_raw` in filter_new and Envoy destroys it once,
        // after every other hook of the stream returned.
        let filter = unsafe { Box::from_raw(filter.cast::<Filter>().cast_mut()) };
        hooks::destroy(filter);
    }
}

/// `envoy_dynamic_module_on_http_filter_request_headers`.
///
/// # Safety
/// Called by Envoy only, under the hook contract stated above this group of hooks.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter_envoy: *mut c_void,
    filter: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    // SAFETY: `filter` is ours and live during the hook.
    match (envoy_filter(filter_envoy), unsafe { module_filter(filter) }) {
        (Some(envoy), Some(filter)) => hooks::request_headers(filter, envoy),
        _ => headers_status::STOP_ITERATION,
    }
}

/// `envoy_dynamic_module_on_http_filter_request_body`.
///
/// # Safety
/// Called by Envoy only, under the hook contract stated above this group of hooks.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    _filter_envoy: *mut c_void,
    filter: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    // SAFETY: `filter` is ours and live during the hook.
    match unsafe { module_filter(filter) } {
        Some(filter) => hooks::request_body(filter),
        None => body_status::STOP_AND_BUFFER,
    }
}

/// `envoy_dynamic_module_on_http_filter_request_trailers`.
///
/// # Safety
/// Called by Envoy only, under the hook contract stated above this group of hooks.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    _filter_envoy: *mut c_void,
    filter: *const c_void,
) -> u32 {
    // SAFETY: `filter` is ours and live during the hook.
    match unsafe { module_filter(filter) } {
        Some(filter) => hooks::request_trailers(filter),
        None => trailers_status::STOP_ITERATION,
    }
}

/// `envoy_dynamic_module_on_http_filter_response_headers`.
///
/// # Safety
/// Called by Envoy only, under the hook contract stated above this group of hooks.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    filter_envoy: *mut c_void,
    filter: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    // SAFETY: `filter` is ours and live during the hook.
    match (envoy_filter(filter_envoy), unsafe { module_filter(filter) }) {
        (Some(envoy), Some(filter)) => hooks::response_headers(filter, envoy),
        _ => headers_status::CONTINUE,
    }
}

/// `envoy_dynamic_module_on_http_filter_response_body`.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    _filter_envoy: *mut c_void,
    _filter: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    body_status::CONTINUE
}

/// `envoy_dynamic_module_on_http_filter_response_trailers`.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _filter_envoy: *mut c_void,
    _filter: *const c_void,
) -> u32 {
    trailers_status::CONTINUE
}

/// `envoy_dynamic_module_on_http_filter_stream_complete`.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    _filter_envoy: *mut c_void,
    _filter: *const c_void,
) {
}

/// `envoy_dynamic_module_on_http_filter_scheduled`: a committed event, on the worker thread.
///
/// # Safety
/// Called by Envoy only, under the hook contract stated above this group of hooks.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    filter_envoy: *mut c_void,
    filter: *const c_void,
    event_id: u64,
) {
    // SAFETY: `filter` is ours and live during the hook.
    let module = unsafe { module_filter(filter) };
    if let (Some(envoy), Some(filter)) = (envoy_filter(filter_envoy), module) {
        hooks::scheduled(filter, envoy, event_id);
    }
}

/// `envoy_dynamic_module_on_http_filter_http_callout_done`: mirror replies are ignored.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _filter_envoy: *mut c_void,
    _filter: *const c_void,
    _callout_id: u64,
    _result: u32,
    _headers: *mut HttpHeader,
    _headers_len: usize,
    _body: *mut Buffer,
    _body_len: usize,
) {
}

/// `envoy_dynamic_module_on_http_filter_http_stream_headers` (unused: no streamed callouts).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _filter_envoy: *mut c_void,
    _filter: *const c_void,
    _stream_id: u64,
    _headers: *mut HttpHeader,
    _headers_len: usize,
    _end_stream: bool,
) {
}

/// `envoy_dynamic_module_on_http_filter_http_stream_data` (unused).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _filter_envoy: *mut c_void,
    _filter: *const c_void,
    _stream_id: u64,
    _data: *const Buffer,
    _data_len: usize,
    _end_stream: bool,
) {
}

/// `envoy_dynamic_module_on_http_filter_http_stream_trailers` (unused).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _filter_envoy: *mut c_void,
    _filter: *const c_void,
    _stream_id: u64,
    _trailers: *mut HttpHeader,
    _trailers_len: usize,
) {
}

/// `envoy_dynamic_module_on_http_filter_http_stream_complete` (unused).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _filter_envoy: *mut c_void,
    _filter: *const c_void,
    _stream_id: u64,
) {
}

/// `envoy_dynamic_module_on_http_filter_http_stream_reset` (unused).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _filter_envoy: *mut c_void,
    _filter: *const c_void,
    _stream_id: u64,
    _reason: u32,
) {
}

/// `envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark` (unused).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _filter_envoy: *mut c_void,
    _filter: *const c_void,
) {
}

/// `envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark` (unused).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _filter_envoy: *mut c_void,
    _filter: *const c_void,
) {
}

// ------------------------------------------------------------------------------------------------
// Cluster specifier plugin (`envoy.router.cluster_specifier_plugin.dynamic_modules`): Envoy calls
// `select` when it resolves the route and again whenever the filter calls
// `http_clear_route_cluster_cache`. Hook shapes (Envoy 1.40.0): `config_new(config_envoy_ptr,
// name, config) -> config_module_ptr` (null rejects), `config_destroy(config_module_ptr)`,
// `select(config_module_ptr, context_envoy_ptr) -> bool` (false keeps the previous selection).
// ------------------------------------------------------------------------------------------------

/// `envoy_dynamic_module_on_cluster_specifier_config_new`: null rejects the configuration.
///
/// # Safety
/// Called by Envoy only: `name` and `config` point to readable bytes for the call.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_cluster_specifier_config_new(
    _config_envoy: *mut c_void,
    name: Buffer,
    config: Buffer,
) -> *const c_void {
    // SAFETY: Envoy passes buffers valid for this call; they are copied.
    let (name, config) = unsafe { (name.to_vec(), config.to_vec()) };
    match hooks::specifier_config_new(&name, &config) {
        Some(config) => Box::into_raw(config).cast_const().cast(),
        None => std::ptr::null(),
    }
}

/// `envoy_dynamic_module_on_cluster_specifier_config_destroy`.
///
/// # Safety
/// Called by Envoy only, once, with a pointer `config_new` returned.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_cluster_specifier_config_destroy(
    config: *const c_void,
) {
    if !config.is_null() {
        // SAFETY: the pointer came from `Box::into_raw` in config_new and Envoy destroys it once.
        let config = unsafe { Box::from_raw(config.cast::<SpecifierConfig>().cast_mut()) };
        hooks::specifier_config_destroy(config);
    }
}

/// `envoy_dynamic_module_on_cluster_specifier_select` (worker thread, during route resolution).
///
/// # Safety
/// Called by Envoy only: `config` is a live pointer from `config_new`, `context` the selection
/// context valid for this call.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_cluster_specifier_select(
    config: *const c_void,
    context: *mut c_void,
) -> bool {
    // SAFETY: `config` came from config_new and outlives every route using it.
    let config = unsafe { config.cast::<SpecifierConfig>().as_ref() };
    let context = NonNull::new(context).map(|raw| SpecifierContext {
        raw,
        _hook: PhantomData,
    });
    match (config, context) {
        (Some(config), Some(context)) => hooks::specifier_select(config, context),
        _ => false,
    }
}

/// An in-process stand-in for Envoy's callbacks, linked into unit tests instead of [`ffi`]:
/// one fake stream per test thread, schedulers that record commits from any thread.
#[cfg(test)]
pub mod fake {
    // The fake callbacks have exactly the contracts of the `ffi` declarations they replace.
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::missing_safety_doc,
        clippy::type_complexity,
        clippy::not_unsafe_ptr_arg_deref,
        missing_docs
    )]

    use super::{Buffer, HttpHeader};
    use std::cell::RefCell;
    use std::ffi::c_void;
    use std::sync::{Arc, Mutex};

    /// What the fake host saw and holds for the current test thread.
    #[derive(Debug, Default)]
    pub struct Stream {
        pub request: Vec<(String, String)>,
        pub response: Vec<(String, String)>,
        pub sent: Option<(u32, Vec<(String, String)>, Vec<u8>, String)>,
        pub route_cache_cleared: usize,
        pub continued: usize,
        pub logs: Vec<(u32, String)>,
        pub attributes: Vec<(u32, String)>,
        /// String filter-state objects: (key, value).
        pub filter_state: Vec<(String, String)>,
        pub schedulers_deleted: usize,
        pub callouts: Vec<String>,
        pub route_cluster_cache_cleared: usize,
        /// Dynamic metadata: (namespace, key, value).
        pub metadata: Vec<(String, String, String)>,
        /// The cluster the specifier selected.
        pub selected_cluster: Option<String>,
        /// A header name whose request-side set/remove the fake refuses (returns false).
        pub refuse_header: Option<String>,
        /// Storage keeping returned header views alive until the next call.
        views: Vec<(Vec<u8>, Vec<u8>)>,
    }

    thread_local! {
        pub static STREAM: RefCell<Stream> = RefCell::new(Stream::default());
    }

    /// A fake scheduler: records committed event ids (from any thread).
    pub struct FakeScheduler {
        pub commits: Arc<Mutex<Vec<u64>>>,
    }

    thread_local! {
        pub static LAST_SCHEDULER: RefCell<Option<Arc<Mutex<Vec<u64>>>>> = const { RefCell::new(None) };
    }

    fn text(b: Buffer) -> String {
        // SAFETY: test buffers always point at live module memory.
        String::from_utf8(unsafe { b.to_vec() }).unwrap()
    }

    fn map(s: &mut Stream, kind: u32) -> &mut Vec<(String, String)> {
        if kind == 0 {
            &mut s.request
        } else {
            &mut s.response
        }
    }

    pub unsafe fn envoy_dynamic_module_callback_log(level: u32, message: Buffer) {
        STREAM.with(|s| s.borrow_mut().logs.push((level, text(message))));
    }
    pub unsafe fn envoy_dynamic_module_callback_log_enabled(_level: u32) -> bool {
        true
    }
    pub unsafe fn envoy_dynamic_module_callback_http_get_headers_size(
        _f: *mut c_void,
        kind: u32,
    ) -> usize {
        STREAM.with(|s| map(&mut s.borrow_mut(), kind).len())
    }
    pub unsafe fn envoy_dynamic_module_callback_http_get_headers(
        _f: *mut c_void,
        kind: u32,
        result: *mut HttpHeader,
    ) -> bool {
        STREAM.with(|s| {
            let mut s = s.borrow_mut();
            let copy: Vec<(Vec<u8>, Vec<u8>)> = map(&mut s, kind)
                .iter()
                .map(|(k, v)| (k.clone().into_bytes(), v.clone().into_bytes()))
                .collect();
            s.views = copy;
            for (i, (k, v)) in s.views.iter().enumerate() {
                // SAFETY: the caller sized `result` with get_headers_size.
                unsafe {
                    *result.add(i) = HttpHeader {
                        key: Buffer::of(k),
                        value: Buffer::of(v),
                    };
                }
            }
        });
        true
    }
    pub unsafe fn envoy_dynamic_module_callback_http_set_header(
        _f: *mut c_void,
        kind: u32,
        key: Buffer,
        value: Buffer,
    ) -> bool {
        let key = text(key);
        STREAM.with(|s| {
            let mut s = s.borrow_mut();
            if s.refuse_header.as_deref() == Some(key.as_str()) {
                return false;
            }
            let m = map(&mut s, kind);
            m.retain(|(k, _)| *k != key);
            if !value.ptr.is_null() {
                m.push((key, text(value)));
            }
            true
        })
    }
    pub unsafe fn envoy_dynamic_module_callback_http_add_header(
        _f: *mut c_void,
        kind: u32,
        key: Buffer,
        value: Buffer,
    ) -> bool {
        STREAM.with(|s| map(&mut s.borrow_mut(), kind).push((text(key), text(value))));
        true
    }
    pub unsafe fn envoy_dynamic_module_callback_http_send_response(
        _f: *mut c_void,
        status: u32,
        headers: *mut HttpHeader,
        headers_len: usize,
        body: Buffer,
        details: Buffer,
    ) {
        let headers: Vec<(String, String)> = (0..headers_len)
            // SAFETY: the caller passes `headers_len` entries.
            .map(|i| unsafe { *headers.add(i) })
            .map(|h| (text(h.key), text(h.value)))
            .collect();
        // SAFETY: module memory.
        let body = unsafe { body.to_vec() };
        STREAM.with(|s| s.borrow_mut().sent = Some((status, headers, body, text(details))));
    }
    pub unsafe fn envoy_dynamic_module_callback_http_clear_route_cache(_f: *mut c_void) {
        STREAM.with(|s| s.borrow_mut().route_cache_cleared += 1);
    }
    pub unsafe fn envoy_dynamic_module_callback_http_clear_route_cluster_cache(_f: *mut c_void) {
        STREAM.with(|s| s.borrow_mut().route_cluster_cache_cleared += 1);
    }
    pub unsafe fn envoy_dynamic_module_callback_http_set_dynamic_metadata_string(
        _f: *mut c_void,
        namespace: Buffer,
        key: Buffer,
        value: Buffer,
    ) {
        let (ns, key, value) = (text(namespace), text(key), text(value));
        STREAM.with(|s| {
            let mut s = s.borrow_mut();
            s.metadata.retain(|(n, k, _)| !(*n == ns && *k == key));
            s.metadata.push((ns, key, value));
        });
    }
    pub unsafe fn envoy_dynamic_module_callback_cluster_specifier_get_dynamic_metadata(
        _ctx: *mut c_void,
        namespace: Buffer,
        path: Buffer,
        result: *mut Buffer,
    ) -> bool {
        let (ns, key) = (text(namespace), text(path));
        STREAM.with(|s| {
            let s = s.borrow();
            match s.metadata.iter().find(|(n, k, _)| *n == ns && *k == key) {
                Some((_, _, v)) => {
                    // Leaked on purpose: a test-only view that must outlive the borrow.
                    let leaked: &'static [u8] =
                        Box::leak(v.clone().into_bytes().into_boxed_slice());
                    // SAFETY: `result` is a valid output place.
                    unsafe { *result = Buffer::of(leaked) };
                    true
                }
                None => false,
            }
        })
    }
    pub unsafe fn envoy_dynamic_module_callback_cluster_specifier_set_cluster_name(
        _ctx: *mut c_void,
        cluster: Buffer,
    ) {
        let cluster = text(cluster);
        STREAM.with(|s| s.borrow_mut().selected_cluster = Some(cluster));
    }
    pub unsafe fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        _f: *mut c_void,
        id: u32,
        result: *mut Buffer,
    ) -> bool {
        STREAM.with(|s| {
            let s = s.borrow();
            match s.attributes.iter().find(|(i, _)| *i == id) {
                Some((_, v)) => {
                    // Leaked on purpose: a test-only view that must outlive the borrow.
                    let leaked: &'static [u8] =
                        Box::leak(v.clone().into_bytes().into_boxed_slice());
                    // SAFETY: `result` is a valid output place.
                    unsafe { *result = Buffer::of(leaked) };
                    true
                }
                None => false,
            }
        })
    }
    pub unsafe fn envoy_dynamic_module_callback_http_get_downstream_direct_remote_address(
        f: *mut c_void,
        result: *mut Buffer,
    ) -> bool {
        // The fake keeps the direct peer under a pseudo attribute id.
        // SAFETY: same contract as the attribute call.
        unsafe {
            envoy_dynamic_module_callback_http_filter_get_attribute_string(f, DIRECT_REMOTE, result)
        }
    }
    pub unsafe fn envoy_dynamic_module_callback_http_get_filter_state_bytes(
        _f: *mut c_void,
        key: Buffer,
        result: *mut Buffer,
    ) -> bool {
        let key = text(key);
        STREAM.with(|s| {
            let s = s.borrow();
            match s.filter_state.iter().find(|(k, _)| *k == key) {
                Some((_, v)) => {
                    // Leaked on purpose: a test-only view that must outlive the borrow.
                    let leaked: &'static [u8] =
                        Box::leak(v.clone().into_bytes().into_boxed_slice());
                    // SAFETY: `result` is a valid output place.
                    unsafe { *result = Buffer::of(leaked) };
                    true
                }
                None => false,
            }
        })
    }
    /// Fake attribute id holding the direct peer address.
    pub const DIRECT_REMOTE: u32 = 10_000;
    pub unsafe fn envoy_dynamic_module_callback_http_filter_continue_decoding(_f: *mut c_void) {
        STREAM.with(|s| s.borrow_mut().continued += 1);
    }
    pub unsafe fn envoy_dynamic_module_callback_http_filter_scheduler_new(
        _f: *mut c_void,
    ) -> *mut c_void {
        let commits = Arc::new(Mutex::new(Vec::new()));
        LAST_SCHEDULER.with(|l| *l.borrow_mut() = Some(Arc::clone(&commits)));
        Box::into_raw(Box::new(FakeScheduler { commits })).cast()
    }
    pub unsafe fn envoy_dynamic_module_callback_http_filter_scheduler_commit(
        scheduler: *mut c_void,
        event_id: u64,
    ) {
        // SAFETY: a live FakeScheduler (the code under test must never commit a deleted one;
        // a use-after-free here would be caught by the allocator or miri).
        let s = unsafe { &*scheduler.cast::<FakeScheduler>() };
        s.commits.lock().unwrap().push(event_id);
    }
    pub unsafe fn envoy_dynamic_module_callback_http_filter_scheduler_delete(
        scheduler: *mut c_void,
    ) {
        // SAFETY: allocated by scheduler_new, deleted once.
        drop(unsafe { Box::from_raw(scheduler.cast::<FakeScheduler>()) });
        STREAM.with(|s| s.borrow_mut().schedulers_deleted += 1);
    }
    pub unsafe fn envoy_dynamic_module_callback_http_filter_http_callout(
        _f: *mut c_void,
        callout_id: *mut u64,
        cluster: Buffer,
        _headers: *mut HttpHeader,
        _headers_len: usize,
        _body: Buffer,
        _timeout_ms: u64,
    ) -> u32 {
        STREAM.with(|s| s.borrow_mut().callouts.push(text(cluster)));
        // SAFETY: valid output place.
        unsafe { *callout_id = 7 };
        0
    }

    /// A non-null stand-in for Envoy's filter pointer (the fake ignores it).
    pub fn envoy_ptr() -> *mut c_void {
        std::ptr::NonNull::<u8>::dangling().as_ptr().cast()
    }

    /// A module buffer over `bytes`.
    pub fn buffer(bytes: &[u8]) -> Buffer {
        Buffer::of(bytes)
    }

    /// The module filter behind a pointer `on_http_filter_new` returned.
    pub fn filter_ref<'a>(raw: *const c_void) -> &'a crate::hooks::Filter {
        // SAFETY: tests pass pointers from on_http_filter_new that are not destroyed yet.
        unsafe { super::module_filter(raw) }.unwrap()
    }

    /// Runs `f` with an `HttpFilter` over the fake stream.
    pub fn with_envoy<T>(f: impl FnOnce(super::HttpFilter<'_>) -> T) -> T {
        f(super::envoy_filter(envoy_ptr()).unwrap())
    }

    /// Runs `f` with a `SpecifierContext` over the fake stream.
    pub fn with_specifier<T>(f: impl FnOnce(super::SpecifierContext<'_>) -> T) -> T {
        f(super::SpecifierContext {
            raw: std::ptr::NonNull::new(envoy_ptr()).unwrap(),
            _hook: std::marker::PhantomData,
        })
    }
}

#[cfg(test)]
mod tests;
