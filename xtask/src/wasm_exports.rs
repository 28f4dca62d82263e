//! Removes the proxy-wasm callbacks layover does not implement from the built module's exports.
//!
//! The proxy-wasm Rust SDK exports every `proxy_on_*` callback, whether or not the filter
//! overrides it. Envoy's host (proxy-wasm-cpp-host `src/context.cc`: `onRequestBody`,
//! `onResponseBody`, `onRequestTrailers`, `onLog`, `onHttpCallResponse`, …) skips a callback
//! the module does not export, but calls an exported one on every request body chunk,
//! trailer block and log event: a VM entry and exit each, for a default method that does
//! nothing. Dropping those exports takes them off every request's path.
//!
//! The rewrite touches only the export section of the binary (WebAssembly core spec, 5.5.10);
//! the functions stay in the module, unexported.

use std::path::Path;

/// The callbacks dropped: ones `filters/wasm` does not override and whose absence Envoy's host
/// handles by skipping the call (proxy-wasm-cpp-host `src/context.cc`: each checks its
/// `wasm_->on_…_` pointer first). Anything not listed is kept — `proxy_on_memory_allocate`
/// (the host's `malloc`), the ABI version marker, the lifecycle callbacks, and
/// `proxy_on_http_call_response`: the SDK records every call it dispatches
/// (`hostcalls::dispatch_http_call` → `register_callout`) and forgets it only there, so
/// without it every mirrored request would leave an entry behind.
pub(crate) const DROPPED_CALLBACKS: &[&str] = &[
    "proxy_on_request_body",
    "proxy_on_request_trailers",
    "proxy_on_response_body",
    "proxy_on_response_trailers",
    "proxy_on_log",
    "proxy_on_queue_ready",
    "proxy_on_new_connection",
    "proxy_on_downstream_data",
    "proxy_on_downstream_connection_close",
    "proxy_on_upstream_data",
    "proxy_on_upstream_connection_close",
    "proxy_on_grpc_receive_initial_metadata",
    "proxy_on_grpc_receive",
    "proxy_on_grpc_receive_trailing_metadata",
    "proxy_on_grpc_close",
    "proxy_on_foreign_function",
];

fn dropped(name: &str) -> bool {
    DROPPED_CALLBACKS.contains(&name)
}

/// Rewrites the module at `path` without the dropped exports; returns their names. Running it
/// on an already rewritten module changes nothing.
pub(crate) fn strip_unused_callbacks(path: &Path) -> Result<Vec<String>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let (out, removed) = rewrite(&bytes)
        .map_err(|e| format!("{}: not a wasm module I can rewrite: {e}", path.display()))?;
    if !removed.is_empty() {
        std::fs::write(path, out).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(removed)
}

/// The module without the dropped exports, and their names.
fn rewrite(bytes: &[u8]) -> Result<(Vec<u8>, Vec<String>), String> {
    const HEADER: &[u8] = b"\0asm\x01\0\0\0";
    if !bytes.starts_with(HEADER) {
        return Err("no wasm 1.0 header".into());
    }
    let mut out = HEADER.to_vec();
    let mut removed = Vec::new();
    let mut r = Reader {
        bytes,
        pos: HEADER.len(),
    };
    while r.pos < bytes.len() {
        let id = r.byte()?;
        let len = r.u32()? as usize;
        let body = r.take(len)?;
        out.push(id);
        if id == EXPORT_SECTION {
            let (kept, names) = filter_exports(body)?;
            removed = names;
            write_u32(&mut out, kept.len() as u32);
            out.extend_from_slice(&kept);
        } else {
            write_u32(&mut out, len as u32);
            out.extend_from_slice(body);
        }
    }
    Ok((out, removed))
}

/// Section id of the export section.
const EXPORT_SECTION: u8 = 7;

/// The export section's body without the dropped entries, and their names.
fn filter_exports(body: &[u8]) -> Result<(Vec<u8>, Vec<String>), String> {
    let mut r = Reader {
        bytes: body,
        pos: 0,
    };
    let count = r.u32()?;
    let mut kept = Vec::new();
    let mut kept_count = 0u32;
    let mut removed = Vec::new();
    for _ in 0..count {
        let start = r.pos;
        let name_len = r.u32()? as usize;
        let name = String::from_utf8(r.take(name_len)?.to_vec())
            .map_err(|_| "an export name is not UTF-8".to_string())?;
        let _kind = r.byte()?;
        let _index = r.u32()?;
        if dropped(&name) {
            removed.push(name);
        } else {
            kept.extend_from_slice(&body[start..r.pos]);
            kept_count += 1;
        }
    }
    if r.pos != body.len() {
        return Err("trailing bytes in the export section".into());
    }
    let mut out = Vec::new();
    write_u32(&mut out, kept_count);
    out.extend_from_slice(&kept);
    Ok((out, removed))
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, String> {
        let b = *self.bytes.get(self.pos).ok_or("unexpected end")?;
        self.pos += 1;
        Ok(b)
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).ok_or("length overflow")?;
        let s = self.bytes.get(self.pos..end).ok_or("unexpected end")?;
        self.pos = end;
        Ok(s)
    }
    /// An unsigned LEB128 `u32`.
    fn u32(&mut self) -> Result<u32, String> {
        let mut value = 0u32;
        for shift in (0..35).step_by(7) {
            let b = self.byte()?;
            value |= u32::from(b & 0x7f)
                .checked_shl(shift)
                .ok_or("LEB128 overflow")?;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("LEB128 longer than 5 bytes".into())
    }
}

fn write_u32(out: &mut Vec<u8>, mut v: u32) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn export(name: &str, index: u32) -> Vec<u8> {
        let mut e = Vec::new();
        write_u32(&mut e, name.len() as u32);
        e.extend_from_slice(name.as_bytes());
        e.push(0); // func
        write_u32(&mut e, index);
        e
    }

    /// A module with a custom section, an export section and a trailing custom section.
    fn module(exports: &[(&str, u32)]) -> Vec<u8> {
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        m.extend_from_slice(&[0, 3, 1, b'x', 9]);
        let mut body = Vec::new();
        write_u32(&mut body, exports.len() as u32);
        for (n, i) in exports {
            body.extend(export(n, *i));
        }
        m.push(EXPORT_SECTION);
        write_u32(&mut m, body.len() as u32);
        m.extend(body);
        m.extend_from_slice(&[0, 2, 1, b'y']);
        m
    }

    #[test]
    fn drops_only_unimplemented_callbacks() {
        let all = [
            ("memory", 0),
            ("proxy_on_memory_allocate", 299),
            ("proxy_on_request_headers", 300),
            ("proxy_on_request_body", 301),
            ("proxy_on_log", 302),
            ("proxy_abi_version_0_2_1", 303),
            ("proxy_on_http_call_response", 304),
            ("malloc", 305),
        ];
        let (out, removed) = rewrite(&module(&all)).unwrap();
        assert_eq!(removed, ["proxy_on_request_body", "proxy_on_log"]);
        let want = module(&[
            ("memory", 0),
            ("proxy_on_memory_allocate", 299),
            ("proxy_on_request_headers", 300),
            ("proxy_abi_version_0_2_1", 303),
            ("proxy_on_http_call_response", 304),
            ("malloc", 305),
        ]);
        assert_eq!(out, want);
        // Idempotent.
        let (again, none) = rewrite(&out).unwrap();
        assert_eq!(again, out);
        assert!(none.is_empty());
    }

    #[test]
    fn truncated_module_is_an_error() {
        let m = module(&[("proxy_on_log", 1)]);
        assert!(rewrite(&m[..m.len() - 3]).is_err());
        assert!(rewrite(b"not wasm").is_err());
    }

    /// Every callback the wasm filter overrides must stay exported: a new override (say
    /// `on_http_request_body`) must come off [`DROPPED_CALLBACKS`] or Envoy never calls it.
    #[test]
    fn every_overridden_callback_is_kept() {
        let src = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../filters/wasm/src/lib.rs"),
        )
        .unwrap();
        // SDK trait method → the export that reaches it (proxy-wasm 0.2 dispatcher.rs).
        let map = [
            ("fn on_vm_start", "proxy_on_vm_start"),
            ("fn on_configure", "proxy_on_configure"),
            ("fn on_tick", "proxy_on_tick"),
            ("fn on_queue_ready", "proxy_on_queue_ready"),
            ("fn on_http_request_headers", "proxy_on_request_headers"),
            ("fn on_http_request_body", "proxy_on_request_body"),
            ("fn on_http_request_trailers", "proxy_on_request_trailers"),
            ("fn on_http_response_headers", "proxy_on_response_headers"),
            ("fn on_http_response_body", "proxy_on_response_body"),
            ("fn on_http_response_trailers", "proxy_on_response_trailers"),
            ("fn on_log", "proxy_on_log"),
            ("fn on_done", "proxy_on_done"),
            ("fn on_http_call_response", "proxy_on_http_call_response"),
            ("fn on_new_connection", "proxy_on_new_connection"),
            ("fn on_downstream_data", "proxy_on_downstream_data"),
            ("fn on_upstream_data", "proxy_on_upstream_data"),
        ];
        let mut seen = 0;
        for (method, export) in map {
            if src.contains(&format!("{method}(")) {
                seen += 1;
                assert!(
                    !dropped(export),
                    "{method} needs {export}: take it off DROPPED_CALLBACKS"
                );
            }
        }
        assert!(
            seen >= 4,
            "the wasm filter's overrides were not found in its source"
        );
    }
}
