//! `HTTPDirectResponse` → a fixed response (body as string or base64 bytes).

use crate::diag::ObjRef;
use crate::model::VsDirectResponse;
use crate::resolve::Ctx;
use crate::util::base64_decode;
use layover_proto::v1 as pb;

/// Validates and translates `directResponse` (at `{path}.directResponse`).
pub(super) fn direct_response(
    ctx: &mut Ctx,
    at: &ObjRef,
    path: &str,
    dr: &VsDirectResponse,
) -> pb::DirectResponse {
    if !(200..=599).contains(&dr.status) {
        ctx.err(
            at,
            format!("{path}.directResponse.status"),
            format!("HTTP status {} is not in range 200-599", dr.status),
        );
    }
    let body = match &dr.body {
        None => Vec::new(),
        Some(b) => match (&b.string, &b.bytes) {
            (Some(s), None) => s.as_bytes().to_vec(),
            (None, Some(bs)) => match base64_decode(bs) {
                Ok(v) => v,
                Err(e) => {
                    ctx.err(at, format!("{path}.directResponse.body.bytes"), e);
                    Vec::new()
                }
            },
            (None, None) => Vec::new(),
            (Some(_), Some(_)) => {
                ctx.err(
                    at,
                    format!("{path}.directResponse.body"),
                    "string and bytes are mutually exclusive",
                );
                Vec::new()
            }
        },
    };
    pb::DirectResponse {
        status: dr.status,
        body,
    }
}
