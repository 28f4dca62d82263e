//! Retry policies: Istio's built-in default and `retry.ConvertPolicy` for explicit retries.

use super::Ctx;
use crate::diag::ObjRef;
use crate::model::VsRetries;
use crate::util::parse_duration_ms;
use layover_envoyfilter::IstioVersion;
use layover_proto::v1 as pb;

/// Istio's built-in retry policy for routes without `retries`
/// (`pilot/pkg/networking/core/route/retry/retry.go:35-103 @ 1.30.3`, `DefaultPolicy`): two
/// attempts on connect failures, refused streams, `unavailable` and `cancelled`; no retriable
/// status codes — `retriable-status-codes` stays in `retry_on`, but 503 is no longer listed
/// (1.26.8 listed it only under `EXCLUDE_UNSAFE_503_FROM_DEFAULT_RETRY=false`, which defaulted
/// to true: `retry.go:34-56`, `features/pilot.go:258-259 @ 1.26.8`). Up to 1.23.x it lists
/// 503 ([`IstioVersion::default_retry_includes_503`]).
pub fn istio_default_retry(istio: IstioVersion) -> pb::RetryPolicy {
    pb::RetryPolicy {
        attempts: 2,
        per_try_timeout_ms: 0,
        retry_on: [
            "connect-failure",
            "refused-stream",
            "unavailable",
            "cancelled",
            "retriable-status-codes",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        retriable_status_codes: if istio.default_retry_includes_503() {
            vec![503]
        } else {
            Vec::new()
        },
        retry_host_predicates: vec!["envoy.retry_host_predicates.previous_hosts".into()],
        host_selection_retry_max_attempts: 5,
        retry_remote_localities: false,
    }
}

/// Istio's `retry.ConvertPolicy` for an explicit `HTTPRetry`: attempts ≤ 0 disables retries;
/// otherwise the built-in default with the given fields replaced. Bare status codes in
/// `retryOn` become retriable status codes (and add `retriable-status-codes`).
pub(crate) fn convert_retry(
    ctx: &mut Ctx,
    at: &ObjRef,
    path: &str,
    r: &VsRetries,
) -> Option<pb::RetryPolicy> {
    if r.attempts < 0 {
        ctx.err(
            at,
            format!("{path}.attempts"),
            format!("attempts {} < 0", r.attempts),
        );
        return None;
    }
    if r.attempts == 0 {
        // istio validation validateHTTPRetry: settings next to attempts 0 are an error.
        if r.per_try_timeout.is_some()
            || r.retry_on.is_some()
            || r.retry_remote_localities.is_some()
        {
            ctx.err(
                at,
                path,
                "http retry policy configured when attempts are set to 0 (disabled)",
            );
        }
        return Some(pb::RetryPolicy::default());
    }
    let mut out = istio_default_retry(ctx.istio);
    out.attempts = r.attempts as u32;
    if let Some(on) = r.retry_on.as_deref().filter(|s| !s.trim().is_empty()) {
        out.retry_on.clear();
        out.retriable_status_codes.clear();
        // Like istio's validateHTTPRetry, entries are not trimmed: "503, 504" is invalid.
        for part in on.split(',') {
            if let Ok(code) = part.parse::<u32>() {
                if !(100..=599).contains(&code) {
                    ctx.err(
                        at,
                        format!("{path}.retryOn"),
                        format!("{code} is not an HTTP status code"),
                    );
                }
                out.retriable_status_codes.push(code);
            } else {
                const KNOWN: &[&str] = &[
                    "5xx",
                    "gateway-error",
                    "reset",
                    "reset-before-request",
                    "connect-failure",
                    "envoy-ratelimited",
                    "retriable-4xx",
                    "refused-stream",
                    "retriable-status-codes",
                    "retriable-headers",
                    "http3-post-connect-failure",
                    "cancelled",
                    "deadline-exceeded",
                    "internal",
                    "resource-exhausted",
                    "unavailable",
                ];
                if !KNOWN.contains(&part) {
                    ctx.err(
                        at,
                        format!("{path}.retryOn"),
                        format!("{part:?} is not a valid retryOn policy"),
                    );
                }
                out.retry_on.push(part.to_string());
            }
        }
        if !out.retriable_status_codes.is_empty()
            && !out.retry_on.iter().any(|s| s == "retriable-status-codes")
        {
            out.retry_on.push("retriable-status-codes".into());
        }
    }
    if let Some(t) = &r.per_try_timeout {
        match parse_duration_ms(t) {
            Ok(ms) => out.per_try_timeout_ms = ms,
            Err(e) => ctx.err(at, format!("{path}.perTryTimeout"), e),
        }
    }
    if r.retry_remote_localities == Some(true) {
        out.retry_remote_localities = true;
    }
    if r.retry_ignore_previous_hosts == Some(false) {
        out.retry_host_predicates.clear();
        out.host_selection_retry_max_attempts = 0;
    }
    if r.backoff.is_some() {
        ctx.info(
            at,
            format!("{path}.backoff"),
            "retry backoff is not represented in the policy; Envoy's default backoff applies",
        );
    }
    Some(out)
}
