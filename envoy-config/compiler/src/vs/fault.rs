//! `HTTPFaultInjection` → delay / abort (istiod `translateFault`).

use super::{duration, percent};
use crate::diag::ObjRef;
use crate::model::VsFault;
use crate::resolve::Ctx;
use layover_proto::v1 as pb;

/// Validates and translates `fault` (at `{path}.fault`).
pub(super) fn fault(ctx: &mut Ctx, at: &ObjRef, path: &str, f: &VsFault) -> pb::FaultInjection {
    if f.delay.is_none() && f.abort.is_none() {
        ctx.err(
            at,
            format!("{path}.fault"),
            "HTTP fault injection must have an abort and/or a delay",
        );
    }
    let mut fi = pb::FaultInjection::default();
    if let Some(d) = &f.delay {
        let dp = format!("{path}.fault.delay");
        if d.exponential_delay.is_some() {
            ctx.err(
                at,
                format!("{dp}.exponentialDelay"),
                "exponentialDelay not supported yet",
            );
        }
        let fixed = match &d.fixed_delay {
            Some(s) => duration(ctx, at, &format!("{dp}.fixedDelay"), s),
            None => {
                if d.exponential_delay.is_none() {
                    ctx.err(at, format!("{dp}.fixedDelay"), "fixedDelay is required");
                }
                0
            }
        };
        // percentage wins; the deprecated integer `percent` is read when it is absent, and
        // neither means no request is delayed: istiod `TranslateFault` reads the unset integer
        // as 0 (route.go:1396-1400 @ 1.30.3; virtual_service.proto:1474 @ 1.30.3 "If left
        // unspecified, no request will be delayed").
        let pct = match (&d.percentage, d.percent) {
            (Some(p), _) => percent(ctx, at, &format!("{dp}.percentage"), p),
            (None, Some(p)) => f64::from(p),
            (None, None) => 0.0,
        };
        fi.delay = Some(pb::FaultDelay {
            fixed_delay_ms: fixed,
            percentage: pct,
        });
    }
    if let Some(a) = &f.abort {
        let ap = format!("{path}.fault.abort");
        if a.http2_error.is_some() {
            ctx.err(
                at,
                format!("{ap}.http2Error"),
                "HTTP/2 abort fault injection not supported yet",
            );
        }
        let grpc = match &a.grpc_status {
            Some(g) => match grpc_code(g) {
                Some(c) => c,
                None => {
                    ctx.err(
                        at,
                        format!("{ap}.grpcStatus"),
                        format!("unknown gRPC status {g:?}"),
                    );
                    0
                }
            },
            None => 0,
        };
        let status = a.http_status.unwrap_or(0);
        if a.http_status.is_some() && !(200..=599).contains(&status) {
            ctx.err(
                at,
                format!("{ap}.httpStatus"),
                format!("status {status} is outside 200..599"),
            );
        }
        if a.http_status.is_none() && a.grpc_status.is_none() && a.http2_error.is_none() {
            ctx.err(at, &ap, "one of httpStatus, grpcStatus must be set");
        }
        // Unset: no request is aborted; istiod leaves Envoy's FaultAbort.percentage unset, a
        // 0% FractionalPercent (route.go:1414-1416 @ 1.30.3; virtual_service.proto:1521 "If
        // not specified, no request will be aborted").
        let pct = match &a.percentage {
            Some(p) => percent(ctx, at, &format!("{ap}.percentage"), p),
            None => 0.0,
        };
        fi.abort = Some(pb::FaultAbort {
            http_status: status,
            grpc_status: grpc,
            percentage: pct,
        });
    }
    fi
}

/// gRPC status names Istio accepts in `fault.abort.grpcStatus`.
fn grpc_code(name: &str) -> Option<u32> {
    const NAMES: &[&str] = &[
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    NAMES
        .iter()
        .position(|n| *n == name)
        .map(|i| i as u32)
        .or_else(|| name.parse().ok().filter(|c| *c <= 16))
}
