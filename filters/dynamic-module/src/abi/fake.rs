//! An in-process stand-in for Envoy's callbacks, linked into unit tests instead of the `extern`
//! block (`ffi`): one fake stream per test thread, schedulers that record commits from any thread.
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
                let leaked: &'static [u8] = Box::leak(v.clone().into_bytes().into_boxed_slice());
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
                let leaked: &'static [u8] = Box::leak(v.clone().into_bytes().into_boxed_slice());
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
                let leaked: &'static [u8] = Box::leak(v.clone().into_bytes().into_boxed_slice());
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
pub unsafe fn envoy_dynamic_module_callback_http_filter_scheduler_delete(scheduler: *mut c_void) {
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

/// A filter handle over the fake stream (sound: the fake never dereferences the pointer).
pub fn filter_ptr<'hook>() -> super::FilterPtr<'hook> {
    // SAFETY: the fake callbacks ignore the filter pointer; the stream is the thread's fake one.
    unsafe { super::FilterPtr::from_raw(envoy_ptr()) }.unwrap()
}

/// A cluster-specifier context over the fake stream (sound for the same reason).
pub fn specifier_ptr<'hook>() -> super::SpecifierPtr<'hook> {
    // SAFETY: the fake callbacks ignore the context pointer.
    unsafe { super::SpecifierPtr::from_raw(envoy_ptr()) }.unwrap()
}
