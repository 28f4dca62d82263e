//! The exported event hooks: the `#[no_mangle] extern "C"` entry points Envoy calls (the 21 an
//! HTTP filter module must export, and the 3 cluster-specifier hooks). Each only turns Envoy's
//! pointers into handles and references and calls the safe code in [`crate::hooks`], which
//! catches panics, so no panic crosses the FFI boundary. With [`crate::abi`], the only place in
//! the crate with `unsafe`.

use std::ffi::{c_char, c_void};

use crate::abi::{
    body_status, headers_status, trailers_status, Buffer, FilterPtr, HttpHeader, SpecifierPtr,
    ABI_VERSION,
};
use crate::hooks::{self, Config, Filter, SpecifierConfig};
use crate::host::{HttpFilter, SpecifierContext};

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
///
/// # Safety
/// `raw` must be null or the stream's live filter, valid for the hook (the hook contract above).
unsafe fn envoy_filter<'hook>(raw: *mut c_void) -> Option<HttpFilter<'hook>> {
    // SAFETY: per the contract.
    unsafe { FilterPtr::from_raw(raw) }.map(HttpFilter::new)
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
    // SAFETY: `filter_envoy` is the stream's live filter and `filter` ours, both live during
    // the hook.
    match unsafe { (envoy_filter(filter_envoy), module_filter(filter)) } {
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
    // SAFETY: `filter_envoy` is the stream's live filter and `filter` ours, both live during
    // the hook.
    match unsafe { (envoy_filter(filter_envoy), module_filter(filter)) } {
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
    // SAFETY: `filter_envoy` is the stream's live filter and `filter` ours, both live during the
    // hook.
    let (envoy, module) = unsafe { (envoy_filter(filter_envoy), module_filter(filter)) };
    if let (Some(envoy), Some(filter)) = (envoy, module) {
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
    // SAFETY: `context` is the selection context of this call.
    let context = unsafe { SpecifierPtr::from_raw(context) }.map(SpecifierContext::new);
    match (config, context) {
        (Some(config), Some(context)) => hooks::specifier_select(config, context),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
