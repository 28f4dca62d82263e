//! The raw ABI: bindings to the subset of Envoy 1.40.0's dynamic-module C ABI that layover uses.
//! With [`crate::exports`], the only place in the crate with `unsafe`.
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
//! Layout: the C types and the `extern "C"` block (`ffi`); handles for the pointers Envoy lends a
//! hook ([`FilterPtr`], [`SpecifierPtr`]), whose only constructors are `unsafe` (used by
//! `crate::exports`, which receives the pointers); one safe method per callback on them, the
//! `unsafe` call and its safety argument, copying everything Envoy hands out before returning;
//! and the stream's [`Scheduler`], whose soundness (revoke the timer's commit before deleting)
//! must not depend on its callers. Strings, defaults and what a failure means are
//! `crate::host`'s business. In unit tests the `extern` block is replaced by an in-process fake
//! host ([`fake`]).

use std::ffi::{c_char, c_void};
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;

use crate::timer::Revocable;

/// The ABI version this module was written against, NUL-terminated for `on_program_init`.
pub(crate) const ABI_VERSION: &[u8] = b"v0.2.0\0";

/// `envoy_dynamic_module_type_envoy_buffer` / `..._module_buffer`: a byte range (owned by
/// whichever side the type name says; the layout is the same).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct Buffer {
    ptr: *const c_char,
    length: usize,
}

impl Buffer {
    /// A buffer pointing at module-owned bytes (valid as long as `bytes` is).
    pub(crate) fn of(bytes: &[u8]) -> Buffer {
        Buffer {
            ptr: bytes.as_ptr().cast(),
            length: bytes.len(),
        }
    }

    /// The null buffer (`{nullptr, 0}`), e.g. "remove this header".
    pub(crate) fn null() -> Buffer {
        Buffer {
            ptr: std::ptr::null(),
            length: 0,
        }
    }

    /// Copies the bytes of an Envoy-owned buffer.
    ///
    /// # Safety
    /// `ptr` must be null or point to `length` readable bytes for the duration of the call.
    pub(crate) unsafe fn to_vec(self) -> Vec<u8> {
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
pub(crate) struct HttpHeader {
    key: Buffer,
    value: Buffer,
}

/// `envoy_dynamic_module_type_http_header_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum HeaderKind {
    /// Request headers.
    Request = 0,
    /// Response headers.
    Response = 2,
}

/// `envoy_dynamic_module_type_log_level` (trace 0 … critical 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Level {
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
pub(crate) enum Attribute {
    /// `source.address` ("ip:port" of the downstream peer).
    SourceAddress = 24,
    /// `connection.requested_server_name` (TLS SNI).
    RequestedServerName = 30,
    /// `connection.uri_san_peer_certificate` (first URI SAN of the peer certificate).
    UriSanPeerCertificate = 37,
}

/// Status returned from the request/response headers hooks.
pub(crate) mod headers_status {
    /// `Continue`.
    pub(crate) const CONTINUE: u32 = 0;
    /// `StopIteration`.
    pub(crate) const STOP_ITERATION: u32 = 1;
}

/// Status returned from the body hooks.
pub(crate) mod body_status {
    /// `Continue`.
    pub(crate) const CONTINUE: u32 = 0;
    /// `StopIterationAndBuffer`.
    pub(crate) const STOP_AND_BUFFER: u32 = 1;
}

/// Status returned from the trailers hooks.
pub(crate) mod trailers_status {
    /// `Continue`.
    pub(crate) const CONTINUE: u32 = 0;
    /// `StopIteration`.
    pub(crate) const STOP_ITERATION: u32 = 1;
}

/// `envoy_dynamic_module_type_http_callout_init_result_Success`.
pub(crate) const CALLOUT_SUCCESS: u32 = 0;

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

#[cfg(test)]
pub(crate) mod fake;

/// Logs through Envoy's `dynamic_modules` logger.
pub(crate) fn log(level: Level, message: &[u8]) {
    // SAFETY: the buffer points at `message`, which outlives the call; Envoy copies it.
    unsafe { ffi::envoy_dynamic_module_callback_log(level as u32, Buffer::of(message)) }
}

/// True when Envoy would print a message at `level`.
pub(crate) fn log_enabled(level: Level) -> bool {
    // SAFETY: a plain value call.
    unsafe { ffi::envoy_dynamic_module_callback_log_enabled(level as u32) }
}

/// Header entries pointing at module-owned bytes (valid as long as `headers` is).
fn module_headers<K: AsRef<[u8]>, V: AsRef<[u8]>>(headers: &[(K, V)]) -> Vec<HttpHeader> {
    headers
        .iter()
        .map(|(k, v)| HttpHeader {
            key: Buffer::of(k.as_ref()),
            value: Buffer::of(v.as_ref()),
        })
        .collect()
}

/// Copies a buffer Envoy filled in on success; `None` when the call failed or gave nothing.
///
/// # Safety
/// When `ok`, `out` must point to bytes valid for the call (Envoy's contract for every getter).
unsafe fn filled(ok: bool, out: Buffer) -> Option<Vec<u8>> {
    // SAFETY: per the contract, on success Envoy points `out` at bytes valid until the hook
    // returns; they are copied right here.
    (ok && !out.ptr.is_null()).then(|| unsafe { out.to_vec() })
}

/// Envoy's per-stream filter object (`http_filter_envoy_ptr`), usable only during the hook that
/// received it: the lifetime ties it to the hook's frame and the raw pointer makes it `!Send`, so
/// it can neither be kept past the hook nor reach another thread.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FilterPtr<'hook> {
    raw: NonNull<c_void>,
    _hook: PhantomData<&'hook ()>,
}

impl FilterPtr<'_> {
    /// Wraps the filter pointer Envoy passed to the current hook; `None` when null.
    ///
    /// # Safety
    /// `raw` must be null or the stream's live `DynamicModuleHttpFilter`, valid for `'hook` (the
    /// hook's duration), on the stream's worker thread.
    pub(crate) unsafe fn from_raw(raw: *mut c_void) -> Option<Self> {
        NonNull::new(raw).map(|raw| FilterPtr {
            raw,
            _hook: PhantomData,
        })
    }

    fn ptr(self) -> *mut c_void {
        self.raw.as_ptr()
    }

    /// Every header of `kind`, pseudo-headers included, in order, copied out of Envoy; empty when
    /// the map is empty or could not be read.
    pub(crate) fn headers(self, kind: HeaderKind) -> Vec<(Vec<u8>, Vec<u8>)> {
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
            // SAFETY: Envoy filled the entries with views into its header map, valid until
            // the map changes or the hook returns; they are copied right here.
            .map(|h| unsafe { (h.key.to_vec(), h.value.to_vec()) })
            .collect()
    }

    /// Replaces (`Some`) or removes (`None`) a header. False when Envoy refused.
    pub(crate) fn set_header(self, kind: HeaderKind, name: &[u8], value: Option<&[u8]>) -> bool {
        let value = value.map_or_else(Buffer::null, Buffer::of);
        // SAFETY: live filter; both buffers point at module memory valid for the call, which
        // Envoy copies.
        unsafe {
            ffi::envoy_dynamic_module_callback_http_set_header(
                self.ptr(),
                kind as u32,
                Buffer::of(name),
                value,
            )
        }
    }

    /// Appends a header value. False when Envoy refused.
    pub(crate) fn add_header(self, kind: HeaderKind, name: &[u8], value: &[u8]) -> bool {
        // SAFETY: as for `set_header`.
        unsafe {
            ffi::envoy_dynamic_module_callback_http_add_header(
                self.ptr(),
                kind as u32,
                Buffer::of(name),
                Buffer::of(value),
            )
        }
    }

    /// Sends a local reply.
    pub(crate) fn send_response<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        self,
        status: u32,
        headers: &[(K, V)],
        body: &[u8],
        details: &[u8],
    ) {
        let mut raw = module_headers(headers);
        // SAFETY: live filter; `raw` and the buffers it points at (`headers`, `body`, `details`)
        // outlive the call, and Envoy copies them.
        unsafe {
            ffi::envoy_dynamic_module_callback_http_send_response(
                self.ptr(),
                status,
                raw.as_mut_ptr(),
                raw.len(),
                Buffer::of(body),
                Buffer::of(details),
            )
        }
    }

    /// `http_clear_route_cache`.
    pub(crate) fn clear_route_cache(self) {
        // SAFETY: live filter.
        unsafe { ffi::envoy_dynamic_module_callback_http_clear_route_cache(self.ptr()) }
    }

    /// `http_clear_route_cluster_cache`.
    pub(crate) fn clear_route_cluster_cache(self) {
        // SAFETY: live filter.
        unsafe { ffi::envoy_dynamic_module_callback_http_clear_route_cluster_cache(self.ptr()) }
    }

    /// `http_set_dynamic_metadata_string`.
    pub(crate) fn set_dynamic_metadata_string(self, namespace: &[u8], key: &[u8], value: &[u8]) {
        // SAFETY: live filter; the three buffers point at module memory valid for the call, which
        // Envoy copies into the metadata struct.
        unsafe {
            ffi::envoy_dynamic_module_callback_http_set_dynamic_metadata_string(
                self.ptr(),
                Buffer::of(namespace),
                Buffer::of(key),
                Buffer::of(value),
            )
        }
    }

    /// `http_filter_get_attribute_string`, copied; `None` when absent or not available.
    pub(crate) fn attribute_string(self, id: Attribute) -> Option<Vec<u8>> {
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
        unsafe { filled(ok, out) }
    }

    /// `http_get_downstream_direct_remote_address` ("ip:port"), copied.
    pub(crate) fn direct_remote_address(self) -> Option<Vec<u8>> {
        let mut out = Buffer::null();
        // SAFETY: live filter; `out` is a valid place for one buffer.
        let ok = unsafe {
            ffi::envoy_dynamic_module_callback_http_get_downstream_direct_remote_address(
                self.ptr(),
                &mut out,
            )
        };
        // SAFETY: on success Envoy points `out` at bytes valid until the hook returns.
        unsafe { filled(ok, out) }
    }

    /// `http_get_filter_state_bytes`, copied; `None` when absent or of another type.
    pub(crate) fn filter_state_bytes(self, key: &[u8]) -> Option<Vec<u8>> {
        let mut out = Buffer::null();
        // SAFETY: live filter; the key buffer points at `key`, which outlives the call; `out` is
        // a valid place for one buffer.
        let ok = unsafe {
            ffi::envoy_dynamic_module_callback_http_get_filter_state_bytes(
                self.ptr(),
                Buffer::of(key),
                &mut out,
            )
        };
        // SAFETY: on success Envoy points `out` at bytes valid until the hook returns.
        unsafe { filled(ok, out) }
    }

    /// `http_filter_continue_decoding`.
    pub(crate) fn continue_decoding(self) {
        // SAFETY: live filter.
        unsafe { ffi::envoy_dynamic_module_callback_http_filter_continue_decoding(self.ptr()) }
    }

    /// `http_filter_http_callout` without a body: Envoy's init result and the callout id.
    pub(crate) fn http_callout<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        self,
        cluster: &[u8],
        headers: &[(K, V)],
        timeout_ms: u64,
    ) -> (u32, u64) {
        let mut raw = module_headers(headers);
        let mut id = 0u64;
        // SAFETY: live filter; all buffers outlive the call and Envoy copies them; `id` is a
        // valid output place.
        let result = unsafe {
            ffi::envoy_dynamic_module_callback_http_filter_http_callout(
                self.ptr(),
                &mut id,
                Buffer::of(cluster),
                raw.as_mut_ptr(),
                raw.len(),
                Buffer::null(),
                timeout_ms,
            )
        };
        (result, id)
    }
}

/// The cluster-specifier context Envoy passes to `on_cluster_specifier_select`
/// (`cluster_specifier_context_envoy_ptr`: the request headers, the stream info and the selection
/// being built), usable only during that call, like [`FilterPtr`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpecifierPtr<'hook> {
    raw: NonNull<c_void>,
    _hook: PhantomData<&'hook ()>,
}

impl SpecifierPtr<'_> {
    /// Wraps the context pointer Envoy passed to the current `select`; `None` when null.
    ///
    /// # Safety
    /// `raw` must be null or the live selection context of the current call, valid for `'hook`.
    pub(crate) unsafe fn from_raw(raw: *mut c_void) -> Option<Self> {
        NonNull::new(raw).map(|raw| SpecifierPtr {
            raw,
            _hook: PhantomData,
        })
    }

    /// `cluster_specifier_get_dynamic_metadata`, copied; `None` when absent or not a string.
    pub(crate) fn dynamic_metadata_string(self, namespace: &[u8], key: &[u8]) -> Option<Vec<u8>> {
        let mut out = Buffer::null();
        // SAFETY: live context of the current select call; `out` is a valid place for one buffer.
        let ok = unsafe {
            ffi::envoy_dynamic_module_callback_cluster_specifier_get_dynamic_metadata(
                self.raw.as_ptr(),
                Buffer::of(namespace),
                Buffer::of(key),
                &mut out,
            )
        };
        // SAFETY: on success Envoy points `out` at the metadata value, valid during the call.
        unsafe { filled(ok, out) }
    }

    /// `cluster_specifier_set_cluster_name`.
    pub(crate) fn set_cluster_name(self, cluster: &[u8]) {
        // SAFETY: live context; Envoy copies the name into the selection.
        unsafe {
            ffi::envoy_dynamic_module_callback_cluster_specifier_set_cluster_name(
                self.raw.as_ptr(),
                Buffer::of(cluster),
            )
        }
    }
}

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
pub(crate) struct Scheduler {
    raw: NonNull<c_void>,
    slot: Arc<Revocable<CommitFn>>,
}

/// The closure type the commit slot holds.
pub(crate) type CommitFn = Box<dyn FnMut() + Send>;

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
    /// Creates the stream's scheduler, whose slot commits `event`; `None` if Envoy returned null.
    pub(crate) fn new(filter: FilterPtr<'_>, event: u64) -> Option<Scheduler> {
        // SAFETY: live filter; the result is owned by us until `scheduler_delete`.
        let raw =
            unsafe { ffi::envoy_dynamic_module_callback_http_filter_scheduler_new(filter.ptr()) };
        let raw = NonNull::new(raw)?;
        let committer = Committer(raw);
        Some(Scheduler {
            raw,
            slot: Arc::new(Revocable::new(
                Box::new(move || committer.commit(event)) as CommitFn
            )),
        })
    }

    /// The one-shot action the timer fires: commit the event unless revoked.
    pub(crate) fn slot(&self) -> Arc<Revocable<CommitFn>> {
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
